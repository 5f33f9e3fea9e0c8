//! Loader for the native `tessera-model/1` JSON format.
//!
//! Two forms of one format. `layers`: a sequential list of `{"op": ...}` layers with PyTorch
//! names and layouts, where two-branch blocks (`residual`, `concat`, `max`, `min`) nest. `graph`:
//! named nodes, each with the names of its `inputs` (`"input"` is the network input), joined by
//! `add`, `concat`, `max` and `min` nodes: any DAG. Both become the same [`Network`]. Every field
//! is validated on load (shapes, finiteness, unknown ops and fields, work bounds, through
//! [`super::build`]); errors name the layer index or node name, its op and the field at fault.
//! One parser per op (`parse_op`).

use super::build::{self, LayerError};
use super::{Activation, Gather, Layer, LayerKind, Merge, Network, Node, Shape, Src, Window};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// Largest model file read (2 GiB): far above any network whose slices are worth partitioning.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// The format tag this loader accepts.
pub const FORMAT: &str = "tessera-model/1";

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The file could not be read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("{path}: invalid JSON at line {line}, column {column}: {message}")]
    Json {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A top-level field is missing or wrong.
    #[error("model: field `{field}`: {message}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A layer of the sequential form is invalid.
    #[error("layer {index} (op `{op}`){}: {message}", field_suffix(.field))]
    Layer {
        /// Index in `layers`.
        index: usize,
        /// The op name.
        op: String,
        /// The field at fault, when one is.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A node of the graph form is invalid.
    #[error("node `{name}` (op `{op}`){}: {message}", field_suffix(.field))]
    Node {
        /// Its name.
        name: String,
        /// The op name.
        op: String,
        /// The field at fault, when one is.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
}

fn field_suffix(field: &Option<String>) -> String {
    field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default()
}

/// Reads and validates a `tessera-model/1` file.
pub fn load_path(path: &Path) -> Result<Network, ModelError> {
    let io = |source| ModelError::Io { path: path.display().to_string(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(ModelError::Field {
            field: "(file)",
            message: format!("{} is {size} bytes, above the limit of {MAX_FILE_BYTES}", path.display()),
        });
    }
    let text =
        std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
    parse_str(&text, &path.display().to_string())
}

/// Parses and validates a `tessera-model/1` document; `origin` names it in errors.
pub fn parse_str(text: &str, origin: &str) -> Result<Network, ModelError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        let mut message = e.to_string();
        if let Some(i) = message.find(" at line") {
            message.truncate(i);
        }
        if text.contains("NaN") || text.contains("Infinity") {
            message.push_str(" (NaN and Infinity are not valid JSON numbers)");
        }
        ModelError::Json { path: origin.to_string(), line: e.line(), column: e.column(), message }
    })?;
    parse_value(&doc)
}

/// Validates an already parsed JSON document.
pub fn parse_value(doc: &Value) -> Result<Network, ModelError> {
    let obj = doc
        .as_object()
        .ok_or(ModelError::Field { field: "format", message: "the document must be a JSON object".into() })?;
    for key in obj.keys() {
        if !matches!(key.as_str(), "format" | "input_shape" | "layers" | "graph" | "metadata") {
            return Err(ModelError::Field {
                field: "(top level)",
                message: format!("unknown field `{key}`; expected format, input_shape, layers or graph, metadata"),
            });
        }
    }
    match obj.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        other => {
            return Err(ModelError::Field {
                field: "format",
                message: format!("expected \"{FORMAT}\", found {other:?}"),
            })
        }
    }
    let dims: Vec<usize> = obj
        .get("input_shape")
        .ok_or(ModelError::Field { field: "input_shape", message: "missing".into() })
        .and_then(|v| {
            Vec::<usize>::deserialize(v).map_err(|e| ModelError::Field { field: "input_shape", message: e.to_string() })
        })?;
    let input_shape = shape_of_dims(&dims).map_err(|message| ModelError::Field { field: "input_shape", message })?;
    let mut nodes = Vec::new();
    match (obj.get("layers"), obj.get("graph")) {
        (Some(layers), None) => {
            let layers =
                layers.as_array().ok_or(ModelError::Field { field: "layers", message: "not a list".into() })?;
            let mut seq = Seq { nodes: &mut nodes };
            seq.chain(layers, Src::Input, input_shape, "").map_err(|e| e.top())?;
        }
        (None, Some(graph)) => {
            let graph = graph.as_array().ok_or(ModelError::Field { field: "graph", message: "not a list".into() })?;
            parse_graph(graph, input_shape, &mut nodes)?;
        }
        (Some(_), Some(_)) => {
            return Err(ModelError::Field {
                field: "graph",
                message: "give either `layers` or `graph`, not both".into(),
            })
        }
        (None, None) => return Err(ModelError::Field { field: "layers", message: "missing (or `graph`)".into() }),
    }
    Network::new(input_shape, nodes).map_err(|e| ModelError::Node {
        name: e.name,
        op: "?".into(),
        field: None,
        message: e.message,
    })
}

/// A shape from its dimensions: `[n]`, `[c, l]` (a 1D signal, held as a height-1 image) or
/// `[c, h, w]`, positive and within tessera's size limit.
pub(crate) fn shape_of_dims(dims: &[usize]) -> Result<Shape, String> {
    let too_big = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > super::MAX_ELEMENTS);
    if too_big {
        return Err(format!("{dims:?} has more than {} entries", super::MAX_ELEMENTS));
    }
    match *dims {
        [n] if n > 0 => Ok(Shape::Flat(n)),
        [c, l] if c > 0 && l > 0 => Ok(Shape::Image { c, h: 1, w: l }),
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok(Shape::Image { c, h, w }),
        _ => Err(format!(
            "must be [features], [channels, length] or [channels, height, width] with positive sizes, got {dims:?}"
        )),
    }
}

/// An error inside the sequential form, before it is attached to its top-level layer: the path
/// of layer indices and block fields from the top.
struct SeqError {
    /// Innermost first: `(index, op)` of every enclosing layer, with the block field and label.
    path: Vec<(usize, String, Option<String>, String)>,
    index: usize,
    op: String,
    field: Option<String>,
    message: String,
}

impl SeqError {
    /// The error as reported: the top-level layer, the block field, and the inner layers in the
    /// message (`layers layer 0 (op ...)`).
    fn top(self) -> ModelError {
        let mut err = ModelError::Layer { index: self.index, op: self.op, field: self.field, message: self.message };
        for (index, op, field, label) in self.path {
            err = ModelError::Layer { index, op, field, message: format!("{label} {err}") };
        }
        err
    }
}

/// Builds the nodes of the sequential form, flattening nested blocks into joins.
struct Seq<'a> {
    nodes: &'a mut Vec<Node>,
}

impl Seq<'_> {
    /// The chain `values` applied to `src` (of shape `shape`); returns its output.
    fn chain(
        &mut self,
        values: &[Value],
        mut src: Src,
        mut shape: Shape,
        prefix: &str,
    ) -> Result<(Src, Shape), SeqError> {
        for (index, value) in values.iter().enumerate() {
            let name = format!("{prefix}{index}");
            (src, shape) = self.layer(index, value, src, shape, &name)?;
        }
        Ok((src, shape))
    }

    fn push(&mut self, layer: Layer, inputs: Vec<Src>, name: String) -> (Src, Shape) {
        let out = layer.output;
        self.nodes.push(Node { layer, inputs, name });
        (Src::Node(self.nodes.len() - 1), out)
    }

    fn layer(
        &mut self,
        index: usize,
        value: &Value,
        src: Src,
        shape: Shape,
        name: &str,
    ) -> Result<(Src, Shape), SeqError> {
        let plain = |op: &str, e: LayerError| SeqError {
            path: Vec::new(),
            index,
            op: op.to_string(),
            field: e.field.map(str::to_string),
            message: e.message,
        };
        let (op, rest) = op_and_fields(value).map_err(|e| plain("?", e))?;
        let merge = match op.as_str() {
            "residual" => Some(Merge::Add),
            "concat" => Some(Merge::Concat),
            "max" => Some(Merge::Max),
            "min" => Some(Merge::Min),
            _ => None,
        };
        let Some(merge) = merge else {
            let layer = parse_op(&op, &rest, &[shape]).map_err(|e| plain(&op, e))?;
            return Ok(self.push(layer, vec![src], name.to_string()));
        };
        // A two-branch block: both branches from the block's input, then the join.
        let nest = |e: SeqError, field: &str, label: String| SeqError {
            path: {
                let mut p = e.path;
                p.push((index, op.clone(), Some(field.to_string()), label));
                p
            },
            ..e
        };
        let (first, second, fields): (Vec<Value>, Vec<Value>, [(&str, String); 2]) = if merge == Merge::Add {
            let s: ResidualSpec = spec(&rest).map_err(|e| plain(&op, e))?;
            if s.layers.is_empty() {
                return Err(plain(
                    &op,
                    LayerError { field: Some("layers"), message: "the main branch is empty".into() },
                ));
            }
            (s.layers, s.shortcut.unwrap_or_default(), [("layers", "layers".into()), ("shortcut", "shortcut".into())])
        } else {
            let s: BranchesSpec = spec(&rest).map_err(|e| plain(&op, e))?;
            let n = s.branches.len();
            let Ok::<[Vec<Value>; 2], _>([a, b]) = s.branches.try_into() else {
                return Err(plain(
                    &op,
                    LayerError { field: Some("branches"), message: format!("expected two branches, found {n}") },
                ));
            };
            (a, b, [("branches", "branch 0:".into()), ("branches", "branch 1:".into())])
        };
        let (a, sa) = self
            .chain(&first, src, shape, &format!("{name}.{}.", fields[0].0))
            .map_err(|e| nest(e, fields[0].0, fields[0].1.clone()))?;
        let (b, sb) = self
            .chain(&second, src, shape, &format!("{name}.{}.", fields[1].0))
            .map_err(|e| nest(e, fields[1].0, fields[1].1.clone()))?;
        let layer = build::layer(LayerKind::Merge(merge), &[sa, sb], &op, None).map_err(|e| {
            let message = if merge == Merge::Add {
                format!("the main branch gives {sa} but the shortcut gives {sb}: they must match")
            } else {
                e.message
            };
            plain(&op, LayerError { field: if merge == Merge::Add { None } else { Some("branches") }, message })
        })?;
        Ok(self.push(layer, vec![a, b], name.to_string()))
    }
}

/// Parses the graph form: nodes in any order (sorted topologically here), each reading named
/// tensors.
fn parse_graph(graph: &[Value], input_shape: Shape, nodes: &mut Vec<Node>) -> Result<(), ModelError> {
    let err = |name: &str, op: &str, e: LayerError| ModelError::Node {
        name: name.to_string(),
        op: op.to_string(),
        field: e.field.map(str::to_string),
        message: e.message,
    };
    struct Raw {
        name: String,
        op: String,
        inputs: Vec<String>,
        rest: Value,
    }
    let mut raw = Vec::with_capacity(graph.len().min(1 << 16));
    let mut by_name = std::collections::HashMap::new();
    for (i, v) in graph.iter().enumerate() {
        let (op, mut rest) = op_and_fields(v).map_err(|e| err(&format!("#{i}"), "?", e))?;
        let obj = rest.as_object_mut().expect("op_and_fields returns an object");
        let name = match obj.remove("name") {
            Some(Value::String(s)) => s,
            None => i.to_string(),
            Some(_) => {
                return Err(err(
                    &format!("#{i}"),
                    &op,
                    LayerError { field: Some("name"), message: "not a string".into() },
                ))
            }
        };
        let inputs: Vec<String> = match obj.remove("inputs") {
            None if i == 0 => vec!["input".into()],
            None => vec![raw.last().map_or("input".into(), |r: &Raw| r.name.clone())],
            Some(v) => Vec::<String>::deserialize(&v).map_err(|e| {
                err(&name, &op, LayerError { field: Some("inputs"), message: format!("a list of node names: {e}") })
            })?,
        };
        if name == "input" || by_name.insert(name.clone(), i).is_some() {
            return Err(err(
                &name,
                &op,
                LayerError { field: Some("name"), message: "names must be unique and not `input`".into() },
            ));
        }
        raw.push(Raw { name, op, inputs, rest });
    }
    // Topological order, keeping the file order among ready nodes; a cycle or an unknown name
    // is an error naming the node.
    let mut reads: Vec<Vec<usize>> = Vec::with_capacity(raw.len());
    for r in &raw {
        let mut deps = Vec::new();
        for inp in r.inputs.iter().filter(|i| *i != "input") {
            let Some(&j) = by_name.get(inp) else {
                return Err(err(
                    &r.name,
                    &r.op,
                    LayerError { field: Some("inputs"), message: format!("no node is named `{inp}`") },
                ));
            };
            deps.push(j);
        }
        reads.push(deps);
    }
    let order = super::topological_order(&reads).map_err(|stuck| {
        err(
            &raw[stuck].name,
            &raw[stuck].op,
            LayerError { field: Some("inputs"), message: "the graph has a cycle through this node".into() },
        )
    })?;
    let mut position = vec![0usize; raw.len()];
    for (k, &i) in order.iter().enumerate() {
        position[i] = k;
    }
    // The output is the last node in the file; it must come last in the order too.
    if let Some(last) = raw.len().checked_sub(1) {
        if position[last] != raw.len() - 1 {
            let r = &raw[last];
            return Err(err(
                &r.name,
                &r.op,
                LayerError {
                    field: None,
                    message: "the last node is the output, but other nodes read it or come after it".into(),
                },
            ));
        }
    }
    for &i in &order {
        let r = &raw[i];
        let srcs: Vec<Src> =
            r.inputs.iter().map(|n| if n == "input" { Src::Input } else { Src::Node(position[by_name[n]]) }).collect();
        let shapes: Vec<Shape> = srcs
            .iter()
            .map(|s| match *s {
                Src::Input => input_shape,
                Src::Node(j) => nodes[j].layer.output,
            })
            .collect();
        let merge = match r.op.as_str() {
            "add" => Some(Merge::Add),
            "concat" => Some(Merge::Concat),
            "max" => Some(Merge::Max),
            "min" => Some(Merge::Min),
            _ => None,
        };
        let layer = match merge {
            Some(m) => {
                let _: Empty = spec(&r.rest).map_err(|e| err(&r.name, &r.op, e))?;
                build::layer(LayerKind::Merge(m), &shapes, &r.op, None)
            }
            None if shapes.len() != 1 => Err(LayerError {
                field: Some("inputs"),
                message: format!("op `{}` takes one input, got {}", r.op, shapes.len()),
            }),
            None => parse_op(&r.op, &r.rest, &shapes),
        }
        .map_err(|e| err(&r.name, &r.op, e))?;
        nodes.push(Node { layer, inputs: srcs, name: r.name.clone() });
    }
    Ok(())
}

/// The `op` of a layer object and its other fields.
fn op_and_fields(value: &Value) -> Result<(String, Value), LayerError> {
    let mut obj =
        value.as_object().ok_or(LayerError { field: None, message: "a layer must be a JSON object".into() })?.clone();
    match obj.remove("op") {
        Some(Value::String(s)) => Ok((s, Value::Object(obj))),
        _ => Err(LayerError { field: Some("op"), message: "missing or not a string".into() }),
    }
}

/// Deserialises an op's fields, naming the field serde complains about.
fn spec<T: for<'de> Deserialize<'de>>(v: &Value) -> Result<T, LayerError> {
    T::deserialize(v).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split('`').nth(1).map(str::to_string);
        LayerError { field: None, message: if let Some(f) = field { format!("{msg} (field `{f}`)") } else { msg } }
    })
}

/// A pair given either as one number or as `[h, w]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Pair {
    One(usize),
    Two([usize; 2]),
}

impl Pair {
    fn get(&self) -> [usize; 2] {
        match *self {
            Pair::One(v) => [v, v],
            Pair::Two(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearSpec {
    weight: Vec<Vec<f64>>,
    bias: Option<Vec<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConvSpec {
    weight: Vec<Vec<Vec<Vec<f64>>>>,
    bias: Option<Vec<f64>>,
    stride: Option<Pair>,
    padding: Option<Pair>,
    padding_end: Option<Pair>,
    dilation: Option<Pair>,
    groups: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchNormSpec {
    weight: Option<Vec<f64>>,
    bias: Option<Vec<f64>>,
    running_mean: Vec<f64>,
    running_var: Vec<f64>,
    eps: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolSpec {
    kernel_size: Pair,
    stride: Option<Pair>,
    padding: Option<Pair>,
    padding_end: Option<Pair>,
    dilation: Option<Pair>,
    ceil_mode: Option<bool>,
    count_include_pad: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeakySpec {
    negative_slope: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PReluSpec {
    weight: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HardTanhSpec {
    min_val: Option<f64>,
    max_val: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxoutSpec {
    pool_size: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleSpec {
    scale: Vec<f64>,
    shift: Option<Vec<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatherSpec {
    index: Vec<i64>,
    shape: Vec<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReshapeSpec {
    shape: Vec<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchesSpec {
    branches: Vec<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResidualSpec {
    layers: Vec<Value>,
    shortcut: Option<Vec<Value>>,
}

/// Ops this loader understands, for error messages (blocks in the sequential form, joins in
/// the graph form).
pub const SUPPORTED_OPS: &[&str] = &[
    "linear",
    "conv2d",
    "batch_norm",
    "scale",
    "avg_pool2d",
    "max_pool2d",
    "flatten",
    "reshape",
    "gather",
    "relu",
    "leaky_relu",
    "prelu",
    "abs",
    "hardtanh",
    "relu6",
    "maxout",
    "residual",
    "concat",
    "max",
    "min",
    "add",
];

/// Parses one non-join op with inputs of `inputs` shapes: the fields into a layer kind (with
/// the structural checks of nested arrays), then [`build::layer`] for everything else.
fn parse_op(op: &str, rest: &Value, inputs: &[Shape]) -> Result<Layer, LayerError> {
    let input = inputs[0];
    let (kind, to) = match op {
        "linear" => parse_linear(spec(rest)?, input)?,
        "conv2d" => parse_conv(spec(rest)?)?,
        "batch_norm" => parse_batch_norm(spec(rest)?, input)?,
        "scale" => {
            let s: ScaleSpec = spec(rest)?;
            let shift = s.shift.unwrap_or_else(|| vec![0.0; s.scale.len()]);
            (LayerKind::Scale { scale: s.scale, shift }, None)
        }
        "avg_pool2d" | "max_pool2d" => parse_pool(op, spec(rest)?)?,
        "flatten" => {
            let _: Empty = spec(rest)?;
            (LayerKind::Reshape, None)
        }
        "reshape" => {
            let s: ReshapeSpec = spec(rest)?;
            let to = shape_of_dims(&s.shape).map_err(|message| LayerError { field: Some("shape"), message })?;
            (LayerKind::Reshape, Some(to))
        }
        "gather" => {
            let s: GatherSpec = spec(rest)?;
            let to = shape_of_dims(&s.shape).map_err(|message| LayerError { field: Some("shape"), message })?;
            let mut index = Vec::new();
            for (i, &j) in s.index.iter().enumerate() {
                index.push(match j {
                    -1 => Gather::ZERO,
                    0..=0xFFFF_FFFE => j as u32,
                    _ => {
                        return Err(LayerError {
                            field: Some("index"),
                            message: format!("entry {i} is {j}: indices are entries of the input, or -1 for zero"),
                        })
                    }
                });
            }
            (LayerKind::Gather(Gather { index }), Some(to))
        }
        "relu" | "abs" | "relu6" => {
            let _: Empty = spec(rest)?;
            let act = match op {
                "relu" => Activation::Relu,
                "abs" => Activation::Abs,
                _ => Activation::HardTanh { min: 0.0, max: 6.0 },
            };
            (LayerKind::Activation(act), None)
        }
        "leaky_relu" => {
            let s: LeakySpec = spec(rest)?;
            (LayerKind::Activation(Activation::LeakyRelu { slope: s.negative_slope.unwrap_or(0.01) }), None)
        }
        "prelu" => {
            let s: PReluSpec = spec(rest)?;
            (LayerKind::Activation(Activation::PRelu { slopes: s.weight }), None)
        }
        "hardtanh" => {
            let s: HardTanhSpec = spec(rest)?;
            let (min, max) = (s.min_val.unwrap_or(-1.0), s.max_val.unwrap_or(1.0));
            (LayerKind::Activation(Activation::HardTanh { min, max }), None)
        }
        "maxout" => {
            let s: MaxoutSpec = spec(rest)?;
            (LayerKind::Maxout { pool: s.pool_size }, None)
        }
        "add" => {
            return Err(LayerError {
                field: Some("op"),
                message: "`add` is a join of the graph form; in `layers`, use a `residual` block".into(),
            })
        }
        _ => {
            return Err(LayerError {
                field: Some("op"),
                message: format!("unknown op `{op}`; supported: {}", SUPPORTED_OPS.join(", ")),
            })
        }
    };
    build::layer(kind, inputs, op, to)
}

type Parsed = (LayerKind, Option<Shape>);

fn parse_linear(s: LinearSpec, input: Shape) -> Result<Parsed, LayerError> {
    let field = Some("weight");
    let n_in = match input {
        Shape::Flat(n) => n,
        other => {
            return Err(LayerError {
                field: None,
                message: format!("needs a flat input, got {other}; add {{\"op\": \"flatten\"}} before it"),
            })
        }
    };
    let out = s.weight.len();
    if out == 0 {
        return Err(LayerError { field, message: "has no rows".into() });
    }
    // Not preallocated: the rows' lengths are checked first.
    let mut weight = Vec::new();
    for (r, row) in s.weight.iter().enumerate() {
        if row.len() != n_in {
            return Err(LayerError {
                field,
                message: format!("row {r} has {} columns but the input has {n_in} features", row.len()),
            });
        }
        weight.extend_from_slice(row);
    }
    let bias = s.bias.unwrap_or_else(|| vec![0.0; out]);
    if bias.len() != out {
        return Err(LayerError {
            field: Some("bias"),
            message: format!("expected {out} values, found {}", bias.len()),
        });
    }
    Ok((LayerKind::Linear { weight, bias }, None))
}

fn parse_conv(s: ConvSpec) -> Result<Parsed, LayerError> {
    let field = Some("weight");
    let oc = s.weight.len();
    let icg = s.weight.first().map_or(0, Vec::len);
    let kh = s.weight.first().and_then(|o| o.first()).map_or(0, Vec::len);
    let kw = s.weight.first().and_then(|o| o.first()).and_then(|k| k.first()).map_or(0, Vec::len);
    if oc == 0 || icg == 0 || kh == 0 || kw == 0 {
        return Err(LayerError { field, message: "empty kernel".into() });
    }
    let mut weight = Vec::new();
    for (o, per_out) in s.weight.iter().enumerate() {
        if per_out.len() != icg {
            return Err(LayerError {
                field,
                message: format!("output channel {o} has {} input channels, output channel 0 has {icg}", per_out.len()),
            });
        }
        for k in per_out {
            if k.len() != kh || k.iter().any(|row| row.len() != kw) {
                return Err(LayerError { field, message: "kernels must all be kh × kw".into() });
            }
            for row in k {
                weight.extend_from_slice(row);
            }
        }
    }
    let bias = s.bias.unwrap_or_else(|| vec![0.0; oc]);
    if bias.len() != oc {
        return Err(LayerError { field: Some("bias"), message: format!("expected {oc} values, found {}", bias.len()) });
    }
    let padding = s.padding.map_or([0, 0], |p| p.get());
    let window = Window {
        kernel: [kh, kw],
        stride: s.stride.map_or([1, 1], |p| p.get()),
        padding,
        padding_end: s.padding_end.map_or(padding, |p| p.get()),
        dilation: s.dilation.map_or([1, 1], |p| p.get()),
        ceil_mode: false,
    };
    Ok((LayerKind::Conv2d { weight, bias, window, groups: s.groups.unwrap_or(1) }, None))
}

fn parse_batch_norm(s: BatchNormSpec, input: Shape) -> Result<Parsed, LayerError> {
    let ch = input.channels();
    let weight = s.weight.unwrap_or_else(|| vec![1.0; ch]);
    let bias = s.bias.unwrap_or_else(|| vec![0.0; ch]);
    for (name, v) in
        [("weight", &weight), ("bias", &bias), ("running_mean", &s.running_mean), ("running_var", &s.running_var)]
    {
        if v.len() != ch {
            return Err(LayerError { field: Some(name), message: format!("expected {ch} values, found {}", v.len()) });
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(LayerError { field: Some(name), message: format!("entry {i} is not finite ({})", v[i]) });
        }
    }
    let eps = s.eps.unwrap_or(1e-5);
    if !eps.is_finite() || eps < 0.0 {
        return Err(LayerError { field: Some("eps"), message: format!("must be finite and non-negative, got {eps}") });
    }
    let mut scale = Vec::with_capacity(ch);
    let mut shift = Vec::with_capacity(ch);
    for i in 0..ch {
        let var = s.running_var[i] + eps;
        if var <= 0.0 {
            return Err(LayerError {
                field: Some("running_var"),
                message: format!("channel {i}: running_var + eps = {var} must be positive"),
            });
        }
        let sc = weight[i] / var.sqrt();
        scale.push(sc);
        shift.push(bias[i] - s.running_mean[i] * sc);
    }
    Ok((LayerKind::BatchNorm { scale, shift }, None))
}

fn parse_pool(op: &str, s: PoolSpec) -> Result<Parsed, LayerError> {
    let kernel = s.kernel_size.get();
    let padding = s.padding.map_or([0, 0], |p| p.get());
    let window = Window {
        kernel,
        stride: s.stride.map_or(kernel, |p| p.get()),
        padding,
        padding_end: s.padding_end.map_or(padding, |p| p.get()),
        dilation: s.dilation.map_or([1, 1], |p| p.get()),
        ceil_mode: s.ceil_mode.unwrap_or(false),
    };
    if op == "avg_pool2d" {
        Ok((LayerKind::AvgPool2d { window, count_include_pad: s.count_include_pad.unwrap_or(true) }, None))
    } else {
        if s.count_include_pad.is_some() {
            return Err(LayerError { field: Some("count_include_pad"), message: "only avg_pool2d has it".into() });
        }
        Ok((LayerKind::MaxPool2d { window }, None))
    }
}

/// Serialises a network to `tessera-model/1`: the sequential form for chains, the graph form
/// otherwise (batch-norm is written folded, as `running_mean = 0`, `running_var = 1`, `eps = 0`).
pub fn to_value(net: &Network) -> Value {
    use serde_json::json;
    if net.is_chain() {
        let layers: Vec<Value> = net.nodes.iter().map(|n| layer_value(&n.layer)).collect();
        return json!({"format": FORMAT, "input_shape": net.input_shape.dims(), "layers": layers});
    }
    // Graph form: names made unique and never `input`.
    let names: Vec<String> = net.nodes.iter().enumerate().map(|(i, _)| format!("n{i}")).collect();
    let graph: Vec<Value> = net
        .nodes
        .iter()
        .zip(&names)
        .map(|(n, name)| {
            let mut v = match &n.layer.kind {
                LayerKind::Merge(m) => json!({"op": m.name()}),
                _ => layer_value(&n.layer),
            };
            let inputs: Vec<&str> = n
                .inputs
                .iter()
                .map(|s| match *s {
                    Src::Input => "input",
                    Src::Node(j) => names[j].as_str(),
                })
                .collect();
            v["inputs"] = json!(inputs);
            v["name"] = json!(name);
            v
        })
        .collect();
    json!({"format": FORMAT, "input_shape": net.input_shape.dims(), "graph": graph})
}

/// One non-join layer as `tessera-model/1` JSON.
fn layer_value(l: &Layer) -> Value {
    use serde_json::json;
    let pair = |p: [usize; 2]| json!([p[0], p[1]]);
    let dims = |s: Shape| s.dims();
    match &l.kind {
        LayerKind::Linear { weight, bias } => {
            let n_in = l.input.numel();
            let rows: Vec<&[f64]> = weight.chunks(n_in).collect();
            json!({"op": "linear", "weight": rows, "bias": bias})
        }
        LayerKind::Conv2d { weight, bias, window, groups } => {
            let [kh, kw] = window.kernel;
            let icg = l.input.channels() / groups;
            let w4: Vec<Vec<Vec<&[f64]>>> = weight
                .chunks(icg * kh * kw)
                .map(|o| o.chunks(kh * kw).map(|k| k.chunks(kw).collect()).collect())
                .collect();
            json!({"op": "conv2d", "weight": w4, "bias": bias, "stride": pair(window.stride),
                       "padding": pair(window.padding), "padding_end": pair(window.padding_end),
                       "dilation": pair(window.dilation), "groups": groups})
        }
        LayerKind::BatchNorm { scale, shift } => {
            let n = scale.len();
            json!({"op": "batch_norm", "weight": scale, "bias": shift,
                       "running_mean": vec![0.0; n], "running_var": vec![1.0; n], "eps": 0.0})
        }
        LayerKind::Scale { scale, shift } => json!({"op": "scale", "scale": scale, "shift": shift}),
        LayerKind::AvgPool2d { window, count_include_pad } => json!({"op": "avg_pool2d",
                "kernel_size": pair(window.kernel), "stride": pair(window.stride),
                "padding": pair(window.padding), "padding_end": pair(window.padding_end),
                "ceil_mode": window.ceil_mode, "count_include_pad": count_include_pad}),
        LayerKind::MaxPool2d { window } => json!({"op": "max_pool2d",
                "kernel_size": pair(window.kernel), "stride": pair(window.stride),
                "padding": pair(window.padding), "padding_end": pair(window.padding_end),
                "dilation": pair(window.dilation), "ceil_mode": window.ceil_mode}),
        LayerKind::Reshape => match l.output {
            Shape::Flat(_) => json!({"op": "flatten"}),
            out => json!({"op": "reshape", "shape": dims(out)}),
        },
        LayerKind::Gather(g) => {
            let index: Vec<i64> = g.index.iter().map(|&j| if j == Gather::ZERO { -1 } else { j as i64 }).collect();
            json!({"op": "gather", "index": index, "shape": dims(l.output)})
        }
        LayerKind::Maxout { pool } => json!({"op": "maxout", "pool_size": pool}),
        LayerKind::Merge(m) => json!({"op": m.name()}),
        LayerKind::Activation(a) => match a {
            Activation::Relu => json!({"op": "relu"}),
            Activation::Abs => json!({"op": "abs"}),
            Activation::LeakyRelu { slope } => {
                json!({"op": "leaky_relu", "negative_slope": slope})
            }
            Activation::PRelu { slopes } => json!({"op": "prelu", "weight": slopes}),
            Activation::HardTanh { min, max } => {
                json!({"op": "hardtanh", "min_val": min, "max_val": max})
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(text: &str) -> String {
        parse_str(text, "t.json").unwrap_err().to_string()
    }

    #[test]
    fn names_layer_and_field() {
        let e = err_of(
            r#"{"format":"tessera-model/1","input_shape":[2],"layers":[
               {"op":"linear","weight":[[1,2],[3,4]],"bias":[0,0]},
               {"op":"linear","weight":[[1,2,3]]}]}"#,
        );
        assert!(e.contains("layer 1") && e.contains("linear") && e.contains("weight"), "{e}");
    }

    #[test]
    fn rejects_unknown_op_and_field() {
        let e = err_of(r#"{"format":"tessera-model/1","input_shape":[2],"layers":[{"op":"gelu"}]}"#);
        assert!(e.contains("unknown op `gelu`") && e.contains("layer 0"), "{e}");
        let e = err_of(r#"{"format":"tessera-model/1","input_shape":[2],"layers":[{"op":"relu","inplace":true}]}"#);
        assert!(e.contains("inplace"), "{e}");
    }

    #[test]
    fn rejects_nan_literal_with_hint() {
        let e = err_of(r#"{"format":"tessera-model/1","input_shape":[1],"layers":[{"op":"linear","weight":[[NaN]]}]}"#);
        assert!(e.contains("line 1") && e.contains("NaN"), "{e}");
    }

    #[test]
    fn round_trips() {
        let text = r#"{"format":"tessera-model/1","input_shape":[1,4,4],"layers":[
            {"op":"conv2d","weight":[[[[1,0],[0,-1]]],[[[0.5,0.5],[0.5,0.5]]]],"bias":[0.1,-0.2],"padding":1},
            {"op":"batch_norm","weight":[1,2],"bias":[0,1],"running_mean":[0.5,0],"running_var":[1,4]},
            {"op":"hardtanh","min_val":-0.5,"max_val":2},
            {"op":"max_pool2d","kernel_size":2},{"op":"flatten"},{"op":"maxout","pool_size":2}]}"#;
        let net = parse_str(text, "t").unwrap();
        let again = parse_value(&to_value(&net)).unwrap();
        let x: Vec<f64> = (0..16).map(|i| (i as f64 * 0.37).sin()).collect();
        let (a, b) = (net.forward(&x), again.forward(&x));
        assert_eq!(a.len(), 4);
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-12);
        }
    }

    #[test]
    fn graph_form_expresses_nested_forks_and_round_trips() {
        // y = max(relu(conv(x)) + x, concat-free skip): a fork inside a branch.
        let text = r#"{"format":"tessera-model/1","input_shape":[1,3,3],"graph":[
            {"name":"c","op":"conv2d","inputs":["input"],"weight":[[[[0.5,-1],[1,0.25]]]],"padding":[1,1],"padding_end":[0,0]},
            {"name":"r","op":"relu","inputs":["c"]},
            {"name":"a","op":"add","inputs":["r","input"]},
            {"name":"n","op":"abs","inputs":["input"]},
            {"name":"m","op":"min","inputs":["a","n"]},
            {"name":"f","op":"flatten"}]}"#;
        let net = parse_str(text, "g").unwrap();
        assert_eq!(net.nodes.len(), 6);
        assert!(!net.is_chain());
        let x: Vec<f64> = (0..9).map(|i| (i as f64 * 0.9).cos()).collect();
        // By hand: conv with padding 1 before and 0 after keeps 3×3.
        let w = [[0.5, -1.0], [1.0, 0.25]];
        let at =
            |r: i64, c: i64| if (0..3).contains(&r) && (0..3).contains(&c) { x[(r * 3 + c) as usize] } else { 0.0 };
        let y = net.forward(&x);
        for r in 0..3i64 {
            for c in 0..3i64 {
                let conv: f64 = (0..2)
                    .flat_map(|ky| (0..2).map(move |kx| (ky, kx)))
                    .map(|(ky, kx)| w[ky][kx] * at(r + ky as i64 - 1, c + kx as i64 - 1))
                    .sum();
                let a = conv.max(0.0) + at(r, c);
                let want = a.min(at(r, c).abs());
                assert!((y[(r * 3 + c) as usize] - want).abs() < 1e-12);
            }
        }
        // export-json writes the graph form; it loads back to the same function.
        let again = parse_value(&to_value(&net)).unwrap();
        assert_eq!(again.forward(&x), y);
    }

    #[test]
    fn graph_form_errors_name_the_node() {
        let doc = |graph: &str| format!(r#"{{"format":"tessera-model/1","input_shape":[2],"graph":[{graph}]}}"#);
        let e = err_of(&doc(r#"{"name":"a","op":"relu","inputs":["b"]},{"name":"b","op":"relu","inputs":["a"]}"#));
        assert!(e.contains("cycle") && e.contains("node `a`"), "{e}");
        let e = err_of(&doc(r#"{"name":"a","op":"relu","inputs":["ghost"]}"#));
        assert!(e.contains("ghost") && e.contains("node `a`"), "{e}");
        let e = err_of(&doc(
            r#"{"name":"a","op":"linear","weight":[[1,0],[0,1],[1,1]]},{"name":"j","op":"add","inputs":["a","input"]}"#,
        ));
        assert!(e.contains("node `j`") && e.contains("[3]") && e.contains("[2]"), "{e}");
        let e = err_of(&doc(r#"{"name":"a","op":"relu","inputs":["input","input"]}"#));
        assert!(e.contains("node `a`") && e.contains("one input"), "{e}");
    }
}
