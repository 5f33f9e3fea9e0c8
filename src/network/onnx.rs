//! Loader for ONNX models exported by PyTorch (`torch.onnx.export`, both the TorchScript-based
//! and the dynamo-based exporter), for graphs whose data path is a chain of supported layers.
//!
//! The protobuf is decoded with prost from message declarations in `onnx_proto` (no `protoc`,
//! no build script: two small crates). Nodes whose inputs are all constants (initializers,
//! `Constant` nodes, and the shape arithmetic exporters emit, like `Shape → Gather → Concat →
//! Reshape`) are folded first; the remaining data path is lowered, node by node, to the layers
//! of `tessera-model/1`, which then go through the JSON loader's validation. Anything else —
//! an unsupported op, a branching (residual) data path — is an error naming the node before
//! any computation.

use super::onnx_proto as pb;
use super::{json, Network, Shape};
use serde_json::{json as j, Value};
use std::collections::HashMap;
use std::path::Path;

/// Why an ONNX model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model.
    #[error("{path}: not a valid ONNX model: {message}")]
    Decode {
        /// The file.
        path: String,
        /// The decoder's message.
        message: String,
    },
    /// The graph as a whole is unsupported or malformed.
    #[error("ONNX graph: {0}")]
    Graph(String),
    /// One node is unsupported or malformed.
    #[error("ONNX node `{node}` ({op}): {message}")]
    Node {
        /// The node's name (or its first output when unnamed).
        node: String,
        /// Its op_type.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// The lowered model failed validation.
    #[error("ONNX model lowered to invalid layers: {0}")]
    Model(#[from] json::ModelError),
}

/// Ops the loader lowers (besides constant-folded shape arithmetic).
pub const SUPPORTED_OPS: &[&str] = &[
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Conv",
    "BatchNormalization",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Abs",
    "Clip",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
    "Flatten",
    "Reshape",
    "ReduceMax",
    "Identity",
    "Dropout",
    "Softmax",
    "LogSoftmax",
    "Add/Max/Concat of two branches (a fork's residual, maximum or channel concatenation)",
];

/// A loaded model with notes about what the lowering did.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// The network.
    pub network: Network,
    /// Remarks (for example a trailing softmax that was dropped).
    pub notes: Vec<String>,
}

/// Reads an ONNX file (external data is looked up next to it).
pub fn load_path(path: &Path) -> Result<Lowered, OnnxError> {
    let name = path.display().to_string();
    let size = std::fs::metadata(path).map_err(|source| OnnxError::Io { path: name.clone(), source })?.len();
    if size > super::json::MAX_FILE_BYTES {
        return Err(OnnxError::Decode {
            path: name,
            message: format!("{size} bytes, above the limit of {}", super::json::MAX_FILE_BYTES),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io { path: name.clone(), source })?;
    parse_bytes(&bytes, &name, path.parent())
}

/// A constant tensor (integers are exact in f64 up to 2^53), and whether its element type is an
/// integer one (integer division truncates; float division does not).
#[derive(Clone, Debug)]
struct Tensor {
    dims: Vec<usize>,
    data: Vec<f64>,
    int: bool,
}

impl Tensor {
    /// Checks the invariants every tensor keeps: its dimensions multiply to its number of
    /// values, within the element limit.
    fn checked(self) -> Result<Tensor, String> {
        let count = self.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if count != Some(self.data.len()) {
            return Err(format!("{} values for shape {:?}", self.data.len(), self.dims));
        }
        if self.data.len() > super::MAX_ELEMENTS {
            return Err(format!("{} values, above the limit of {}", self.data.len(), super::MAX_ELEMENTS));
        }
        Ok(self)
    }

    /// A weight: a tensor with at least one value.
    fn weight(self) -> Result<Tensor, String> {
        if self.data.is_empty() {
            return Err(format!("the weight of shape {:?} has no values", self.dims));
        }
        Ok(self)
    }
}

fn tensor(t: &pb::TensorProto, dir: Option<&Path>) -> Result<Tensor, String> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("dimensions overflow")?;
    if count > super::MAX_ELEMENTS {
        return Err(format!("{count} values, above the limit of {}", super::MAX_ELEMENTS));
    }
    let raw: std::borrow::Cow<'_, [u8]> = if t.data_location == 1 {
        let entry = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.clone());
        let file = entry("location").ok_or("external data without a location")?;
        if file.contains("..") || Path::new(&file).is_absolute() {
            return Err(format!("external data location `{file}` must be a file next to the model"));
        }
        // Only the tensor's range is read (its length is bounded by the element count).
        use std::io::{Read, Seek};
        let ext = |e: std::io::Error| format!("external data `{file}`: {e}");
        let mut f = std::fs::File::open(dir.unwrap_or(Path::new(".")).join(&file)).map_err(ext)?;
        let size = f.metadata().map_err(ext)?.len();
        let offset: u64 = entry("offset").map_or(Ok(0), |v| v.parse()).map_err(|_| "bad external data offset")?;
        let length: u64 = entry("length")
            .map_or(Ok(size.saturating_sub(offset)), |v| v.parse())
            .map_err(|_| "bad external data length")?;
        let end = offset.checked_add(length).filter(|&e| e <= size).ok_or("external data out of range")?;
        if length > 8 * count as u64 {
            return Err(format!("external data of {length} bytes for {count} values"));
        }
        f.seek(std::io::SeekFrom::Start(offset)).map_err(ext)?;
        let mut buf = vec![0u8; (end - offset) as usize];
        f.read_exact(&mut buf).map_err(ext)?;
        std::borrow::Cow::Owned(buf)
    } else {
        std::borrow::Cow::Borrowed(&t.raw_data[..])
    };
    let data: Vec<f64> = match t.data_type {
        pb::dtype::FLOAT if !raw.is_empty() => {
            raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
        }
        pb::dtype::FLOAT => t.float_data.iter().map(|&x| x as f64).collect(),
        pb::dtype::DOUBLE if !raw.is_empty() => {
            raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
        }
        pb::dtype::DOUBLE => t.double_data.clone(),
        pb::dtype::INT64 if !raw.is_empty() => {
            raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64).collect()
        }
        pb::dtype::INT64 => t.int64_data.iter().map(|&x| x as f64).collect(),
        pb::dtype::INT32 if !raw.is_empty() => {
            raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as f64).collect()
        }
        pb::dtype::INT32 => t.int32_data.iter().map(|&x| x as f64).collect(),
        other => return Err(format!("element type {other} is not supported (float, double, int32, int64 are)")),
    };
    if data.len() != count {
        return Err(format!("{} values for shape {dims:?}", data.len()));
    }
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(format!("value {i} is not finite"));
    }
    let int = matches!(t.data_type, pb::dtype::INT64 | pb::dtype::INT32);
    Ok(Tensor { dims, data, int })
}

/// `dims[start..end]` with ONNX's `Shape` semantics (negative indices count from the end,
/// out-of-range indices are clamped).
fn shape_slice(node: &pb::NodeProto, dims: &[f64]) -> Vec<f64> {
    let r = dims.len() as i64;
    let clamp = |i: i64| (if i < 0 { i + r } else { i }).clamp(0, r) as usize;
    let start = clamp(attr(node, "start").map_or(0, |a| a.i));
    let end = clamp(attr(node, "end").map_or(r, |a| a.i));
    dims[start..end.max(start)].to_vec()
}

fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn attr_i(n: &pb::NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).map_or(default, |a| a.i)
}

fn attr_f(n: &pb::NodeProto, name: &str, default: f64) -> f64 {
    attr(n, name).map_or(default, |a| a.f as f64)
}

fn attr_ints(n: &pb::NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

/// Lowering state: constants by name, and the single data tensor flowing through the chain.
struct Lowering<'a> {
    consts: HashMap<String, Tensor>,
    data: String,
    shape: Shape,
    layers: Vec<Value>,
    /// A `Reshape` to `[N, groups, k]` waiting for the `ReduceMax` that makes it a maxout.
    pending_maxout: Option<usize>,
    dir: Option<&'a Path>,
    notes: Vec<String>,
}

/// The state of one branch of the data path.
struct Branch {
    data: String,
    shape: Shape,
    layers: Vec<Value>,
    pending_maxout: Option<usize>,
}

impl Branch {
    /// Moves the branch state out of `st`, leaving it empty.
    fn take(st: &mut Lowering<'_>) -> Self {
        Branch {
            data: std::mem::take(&mut st.data),
            shape: st.shape,
            layers: std::mem::take(&mut st.layers),
            pending_maxout: st.pending_maxout.take(),
        }
    }
}

impl Lowering<'_> {
    /// Exchanges the branch state held in `self` with `b`.
    fn swap(&mut self, b: &mut Branch) {
        std::mem::swap(&mut self.data, &mut b.data);
        std::mem::swap(&mut self.shape, &mut b.shape);
        std::mem::swap(&mut self.layers, &mut b.layers);
        std::mem::swap(&mut self.pending_maxout, &mut b.pending_maxout);
    }

    /// Puts a saved branch state back into `self`.
    fn restore(&mut self, b: Branch) {
        self.data = b.data;
        self.shape = b.shape;
        self.layers = b.layers;
        self.pending_maxout = b.pending_maxout;
    }

    fn push(&mut self, layer: Value) -> Result<(), json::ModelError> {
        let index = self.layers.len();
        let parsed = json::parse_layer(index, &layer, self.shape)?;
        self.shape = parsed.output;
        self.layers.push(layer);
        Ok(())
    }
}

/// Largest number of values all initializers may hold together (2^27: 1 GiB as f64).
const MAX_WEIGHTS: usize = 1 << 27;

/// Parses ONNX bytes; `origin` names them in errors, `dir` holds external data files.
pub fn parse_bytes(bytes: &[u8], origin: &str, dir: Option<&Path>) -> Result<Lowered, OnnxError> {
    let model: pb::ModelProto = prost::Message::decode(bytes)
        .map_err(|e| OnnxError::Decode { path: origin.to_string(), message: e.to_string() })?;
    let graph =
        model.graph.ok_or_else(|| OnnxError::Decode { path: origin.to_string(), message: "no graph".into() })?;
    let mut consts = HashMap::new();
    let mut total = 0usize;
    for t in &graph.initializer {
        let value = tensor(t, dir).map_err(|m| OnnxError::Graph(format!("initializer `{}`: {m}", t.name)))?;
        // All weights together are bounded too (each tensor is by MAX_ELEMENTS).
        total += value.data.len();
        if total > MAX_WEIGHTS {
            return Err(OnnxError::Graph(format!("the initializers hold more than {MAX_WEIGHTS} values")));
        }
        consts.insert(t.name.clone(), value);
    }
    let inputs: Vec<&pb::ValueInfoProto> = graph.input.iter().filter(|i| !consts.contains_key(&i.name)).collect();
    let [input] = inputs.as_slice() else {
        return Err(OnnxError::Graph(format!("expected one data input, found {}", inputs.len())));
    };
    let dims: Vec<Option<i64>> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.iter().map(|d| d.dim_value).collect())
        .ok_or_else(|| OnnxError::Graph(format!("input `{}` has no tensor shape", input.name)))?;
    // The first dimension is the batch (dynamic or fixed); the rest must be known.
    let known: Option<Vec<usize>> = dims.iter().skip(1).map(|d| d.and_then(|v| usize::try_from(v).ok())).collect();
    let shape = match known.as_deref() {
        Some([n]) if *n > 0 => Shape::Flat(*n),
        Some([c, h, w]) if *c > 0 && *h > 0 && *w > 0 => Shape::Image { c: *c, h: *h, w: *w },
        _ => {
            return Err(OnnxError::Graph(format!(
            "input `{}` must be [batch, features] or [batch, channels, height, width] with known sizes, got {dims:?}",
            input.name
        )))
        }
    };
    let size = known.as_deref().unwrap_or(&[]).iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if size.is_none_or(|n| n > super::MAX_ELEMENTS) {
        return Err(OnnxError::Graph(format!(
            "input `{}` of shape {dims:?} has more than {} values",
            input.name,
            super::MAX_ELEMENTS
        )));
    }
    let input_shape = shape;
    let mut st = Lowering {
        consts,
        data: input.name.clone(),
        shape,
        layers: Vec::new(),
        pending_maxout: None,
        dir,
        notes: Vec::new(),
    };
    // Data-path consumers of every tensor (Shape nodes only read the known shape).
    let mut consumers: HashMap<&str, usize> = HashMap::new();
    for n in graph.node.iter().filter(|n| n.op_type != "Shape") {
        let mut seen: std::collections::HashSet<&str> = Default::default();
        for i in n.input.iter().map(String::as_str).filter(|i| !i.is_empty()) {
            if seen.insert(i) {
                *consumers.entry(i).or_default() += 1;
            }
        }
    }
    let mut dead: std::collections::HashSet<String> = Default::default();
    // Inside a residual block: the model's layers so far, the fork tensor, the other branch
    // (`st` holds the first), and whether the first branch has taken a node yet.
    let mut block: Option<(Branch, String, Branch, bool)> = None;
    for (k, node) in graph.node.iter().enumerate() {
        let name =
            if node.name.is_empty() { node.output.first().cloned().unwrap_or_default() } else { node.name.clone() };
        let err = |message: String| OnnxError::Node { node: name.clone(), op: node.op_type.clone(), message };
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return Err(err(format!("custom domain `{}` is not supported", node.domain)));
        }
        let other_data = block.as_ref().map(|b| b.2.data.clone());
        let reads_st = node.input.contains(&st.data);
        let reads_other = other_data.as_ref().is_some_and(|d| node.input.contains(d));
        let reads_fork = block.as_ref().is_some_and(|b| node.input.contains(&b.1));
        if node.op_type == "Shape" && (reads_st || reads_other || reads_fork) {
            // The data path's shape is known: [batch = 1, dims...].
            let shape = if reads_st {
                st.shape
            } else if reads_other {
                block.as_ref().map_or(st.shape, |b| b.2.shape)
            } else {
                block.as_ref().map_or(st.shape, |b| b.0.shape)
            };
            let mut dims = vec![1.0];
            dims.extend(shape.dims().iter().map(|&d| d as f64));
            let dims = shape_slice(node, &dims);
            let value = Tensor { dims: vec![dims.len()], data: dims, int: true };
            for o in &node.output {
                st.consts.insert(o.clone(), value.clone());
            }
            continue;
        }
        if let Some(old) = node.input.iter().find(|i| dead.contains(i.as_str())) {
            return Err(err(format!(
                "reads `{old}`, an earlier tensor of the data path: only blocks of two branches from one fork, joined by Add, Max or Concat, are supported"
            )));
        }
        if !reads_st && !reads_other {
            fold(&mut st, node).map_err(err)?;
            continue;
        }
        let out = node.output.first().cloned().ok_or_else(|| err("has no output".into()))?;
        // The join of a block: Add, Max or Concat (along channels) of the two branches' ends.
        let joins = matches!(node.op_type.as_str(), "Add" | "Max" | "Concat") && reads_st && reads_other;
        if joins && node.input.len() != 2 {
            return Err(err("a join of two branches must have exactly two inputs".into()));
        }
        if joins {
            let (outer, fork, mut other, _) = block.take().expect("reads_other implies a block");
            let mut first = Branch::take(&mut st);
            if first.pending_maxout.is_some() || other.pending_maxout.is_some() {
                return Err(err("a Reshape inside a branch is not followed by ReduceMax".into()));
            }
            // `first` holds the branch that read the fork first. Concat (and, harmlessly, Max)
            // take the branches in the join's input order; a residual puts the branch with
            // layers first (the JSON's `layers`, which may not be empty).
            let swap = match node.op_type.as_str() {
                "Add" => first.layers.is_empty() && !other.layers.is_empty(),
                _ => node.input.first() == Some(&other.data),
            };
            if swap {
                std::mem::swap(&mut first, &mut other);
            }
            let (a, b) = (std::mem::take(&mut first.layers), std::mem::take(&mut other.layers));
            let layer = match node.op_type.as_str() {
                "Add" => j!({"op": "residual", "layers": a, "shortcut": b}),
                "Max" => j!({"op": "max", "branches": [a, b]}),
                _ => {
                    if attr_i(node, "axis", 0) != 1 || node.input.len() != 2 {
                        return Err(err(
                            "only the concatenation of two branches along channels (axis 1) is supported".into()
                        ));
                    }
                    j!({"op": "concat", "branches": [a, b]})
                }
            };
            st.restore(outer);
            st.push(layer).map_err(OnnxError::Model)?;
            dead.insert(fork);
            st.data = out;
            continue;
        }
        let read = if reads_st { st.data.as_str() } else { other_data.as_deref().unwrap_or("") };
        if consumers.get(read).copied().unwrap_or(0) > 1 {
            match &block {
                // The fork itself, read by the second branch or again by the first.
                Some((_, fork, _, _)) if read == fork => {}
                Some(_) => return Err(err("nested residual blocks are not supported yet".into())),
                None => {
                    // A fork: the data tensor feeds two branches that an Add, Max or Concat joins.
                    let fork = st.data.clone();
                    let outer = Branch {
                        data: fork.clone(),
                        shape: st.shape,
                        layers: std::mem::take(&mut st.layers),
                        pending_maxout: st.pending_maxout.take(),
                    };
                    let other =
                        Branch { data: fork.clone(), shape: st.shape, layers: Vec::new(), pending_maxout: None };
                    block = Some((outer, fork, other, false));
                }
            }
        }
        let last = k + 1 == graph.node.len();
        let to_lower = |st: &mut Lowering<'_>| {
            lower(st, node, last).map_err(|e| match e {
                Lower::Msg(m) => err(m),
                Lower::Model(m) => OnnxError::Model(m),
            })
        };
        // Inside a block the first branch takes the fork's first consumer, the other the rest.
        let use_other = match block.as_mut() {
            Some((_, fork, other, started)) => {
                let to_first = reads_st && (st.data != *fork || !*started);
                if reads_st && st.data == *fork && !*started {
                    *started = true;
                }
                !to_first && node.input.contains(&other.data)
            }
            None => false,
        };
        if use_other {
            let (_, fork, other, _) = block.as_mut().expect("inside a block");
            st.swap(other);
            let result = to_lower(&mut st);
            let old = std::mem::replace(&mut st.data, out);
            st.swap(other);
            result?;
            if old != *fork {
                dead.insert(old);
            }
        } else {
            to_lower(&mut st)?;
            let old = std::mem::replace(&mut st.data, out);
            if block.as_ref().is_none_or(|b| b.1 != old) {
                dead.insert(old);
            }
        }
    }
    if block.is_some() {
        return Err(OnnxError::Graph("a fork of the data path is never joined (by Add, Max or Concat)".into()));
    }
    if st.pending_maxout.is_some() {
        return Err(OnnxError::Graph("a Reshape to [N, groups, k] is not followed by ReduceMax (maxout)".into()));
    }
    if !graph.output.iter().any(|o| o.name == st.data) {
        return Err(OnnxError::Graph("the graph output is not the end of the data path".into()));
    }
    let doc = j!({"format": json::FORMAT, "input_shape": input_shape.dims(), "layers": st.layers});
    let network = json::parse_value(&doc)?;
    Ok(Lowered { network, notes: st.notes })
}

enum Lower {
    Msg(String),
    Model(json::ModelError),
}

impl From<String> for Lower {
    fn from(m: String) -> Self {
        Lower::Msg(m)
    }
}

impl From<&str> for Lower {
    fn from(m: &str) -> Self {
        Lower::Msg(m.to_string())
    }
}

impl From<json::ModelError> for Lower {
    fn from(m: json::ModelError) -> Self {
        Lower::Model(m)
    }
}

/// Evaluates a node whose inputs are all constants (shape arithmetic, `Constant`).
fn fold(st: &mut Lowering<'_>, node: &pb::NodeProto) -> Result<(), String> {
    let get = |i: usize| -> Result<Tensor, String> {
        let name = node.input.get(i).ok_or("missing input")?;
        st.consts.get(name).cloned().ok_or_else(|| format!("input `{name}` is neither a constant nor the data path"))
    };
    let scalar_dims = |v: &Tensor| v.dims.clone();
    let out = match node.op_type.as_str() {
        "Constant" => {
            let a = attr(node, "value")
                .and_then(|a| a.t.as_ref())
                .map(|t| tensor(t, st.dir))
                .transpose()?
                .or_else(|| {
                    attr(node, "value_float").map(|a| Tensor { dims: vec![], data: vec![a.f as f64], int: false })
                })
                .or_else(|| attr(node, "value_int").map(|a| Tensor { dims: vec![], data: vec![a.i as f64], int: true }))
                .or_else(|| {
                    attr(node, "value_ints").map(|a| Tensor {
                        dims: vec![a.ints.len()],
                        data: a.ints.iter().map(|&x| x as f64).collect(),
                        int: true,
                    })
                })
                .or_else(|| {
                    attr(node, "value_floats").map(|a| Tensor {
                        dims: vec![a.floats.len()],
                        data: a.floats.iter().map(|&x| x as f64).collect(),
                        int: false,
                    })
                });
            a.ok_or("Constant without a supported value attribute")?
        }
        "Shape" => {
            // Only reached for constant inputs; the data path's shape is handled in `lower`.
            let a = get(0)?;
            let dims = shape_slice(node, &a.dims.iter().map(|&d| d as f64).collect::<Vec<_>>());
            Tensor { dims: vec![dims.len()], data: dims, int: true }
        }
        "Identity" => get(0)?,
        "Cast" => {
            // ONNX element types: 1 float, 10 float16, 11 double, 16 bfloat16; the rest integers
            // or booleans (whose values f64 holds exactly).
            let to = attr(node, "to").map_or(1, |a| a.i);
            let int = !matches!(to, 1 | 10 | 11 | 16);
            let mut t = get(0)?;
            if int {
                t.data.iter_mut().for_each(|x| *x = x.trunc());
            }
            Tensor { int, ..t }
        }
        "Unsqueeze" | "Squeeze" | "Reshape" => {
            let a = get(0)?;
            // Shapes of small shape vectors: keep the data, recompute the layout.
            let dims = if node.op_type == "Reshape" {
                let s = get(1)?;
                let mut d: Vec<i64> = s.data.iter().map(|&x| x as i64).collect();
                let known = d
                    .iter()
                    .filter(|&&x| x > 0)
                    .try_fold(1i64, |p, &x| p.checked_mul(x))
                    .ok_or("the reshape target overflows")?;
                for x in d.iter_mut() {
                    if *x == -1 {
                        *x = a.data.len() as i64 / known.max(1);
                    }
                }
                d.into_iter().map(|x| x.max(0) as usize).collect()
            } else if a.data.len() == 1 && node.op_type == "Unsqueeze" {
                vec![1]
            } else {
                vec![a.data.len()]
            };
            Tensor { dims, data: a.data, int: a.int }
        }
        "Concat" => {
            let (mut data, mut int) = (Vec::new(), true);
            for i in 0..node.input.len() {
                let t = get(i)?;
                int &= t.int;
                if data.len() + t.data.len() > super::MAX_ELEMENTS {
                    return Err(format!("the concatenation exceeds {} values", super::MAX_ELEMENTS));
                }
                data.extend(t.data);
            }
            Tensor { dims: vec![data.len()], data, int }
        }
        "Gather" => {
            let (a, idx) = (get(0)?, get(1)?);
            let n = a.data.len() as i64;
            let data = idx
                .data
                .iter()
                .map(|&i| {
                    let i = i as i64;
                    let k = if i < 0 { i + n } else { i };
                    a.data.get(k as usize).copied().ok_or_else(|| format!("index {i} out of range"))
                })
                .collect::<Result<Vec<f64>, String>>()?;
            Tensor { dims: scalar_dims(&idx), data, int: a.int }
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let (a, b) = (get(0)?, get(1)?);
            let n = a.data.len().max(b.data.len());
            if a.data.is_empty() || b.data.is_empty() {
                return Err(format!("a constant operand of {} is empty", node.op_type));
            }
            if a.data.len() != b.data.len() && a.data.len() != 1 && b.data.len() != 1 {
                return Err(format!(
                    "constant operands of {} and {} values do not broadcast",
                    a.data.len(),
                    b.data.len()
                ));
            }
            let at = |t: &Tensor, i: usize| if t.data.len() == 1 { t.data[0] } else { t.data[i] };
            let int = a.int && b.int;
            let data = (0..n)
                .map(|i| match node.op_type.as_str() {
                    "Add" => Ok(at(&a, i) + at(&b, i)),
                    "Sub" => Ok(at(&a, i) - at(&b, i)),
                    "Mul" => Ok(at(&a, i) * at(&b, i)),
                    // Integer division truncates toward zero; float division is exact division.
                    _ if int && at(&b, i) == 0.0 => Err("integer division by zero".to_string()),
                    _ if int => Ok((at(&a, i) / at(&b, i)).trunc()),
                    _ => Ok(at(&a, i) / at(&b, i)),
                })
                .collect::<Result<Vec<f64>, String>>()?;
            Tensor { dims: if a.data.len() >= b.data.len() { a.dims } else { b.dims }, data, int }
        }
        other => return Err(format!("constant folding of {other} is not supported")),
    };
    let out = out.checked()?;
    let [o] = &node.output[..] else {
        return Err(format!("expected one output, found {}", node.output.len()));
    };
    st.consts.insert(o.clone(), out);
    Ok(())
}

fn pair(v: Option<Vec<i64>>, default: [i64; 2]) -> Result<[usize; 2], String> {
    let v = v.unwrap_or_else(|| default.to_vec());
    match v.as_slice() {
        [a, b] if *a >= 0 && *b >= 0 => Ok([*a as usize, *b as usize]),
        _ => Err(format!("expected two non-negative values, got {v:?}")),
    }
}

fn pads(node: &pb::NodeProto) -> Result<[usize; 2], String> {
    if attr(node, "auto_pad").is_some_and(|a| !a.s.is_empty() && a.s != b"NOTSET") {
        return Err("auto_pad is not supported; export with explicit padding".into());
    }
    match attr_ints(node, "pads").as_deref() {
        None => Ok([0, 0]),
        Some([t, l, b, r]) if t == b && l == r && *t >= 0 && *l >= 0 => Ok([*t as usize, *l as usize]),
        Some(p) => Err(format!("asymmetric or negative pads {p:?} are not supported")),
    }
}

/// Lowers one node of the data path.
fn lower(st: &mut Lowering<'_>, node: &pb::NodeProto, last: bool) -> Result<(), Lower> {
    let konst = |i: usize| -> Result<Tensor, Lower> {
        let name = node.input.get(i).ok_or("missing input")?;
        Ok(st.consts.get(name).cloned().ok_or_else(|| {
            format!("input `{name}` must be a constant, but no initializer, Constant or shape computation produces it")
        })?)
    };
    let data_first = node.input.first() == Some(&st.data);
    if st.pending_maxout.is_some() && node.op_type != "ReduceMax" {
        return Err("a Reshape to [N, groups, k] must be followed by ReduceMax (maxout)".into());
    }
    match node.op_type.as_str() {
        "Identity" | "Dropout" => {}
        "Softmax" | "LogSoftmax" if last => st.notes.push(format!(
            "the trailing {} was dropped: it does not change the argmax, so boundaries are computed on the logits",
            node.op_type
        )),
        "Relu" => st.push(j!({"op": "relu"}))?,
        "Abs" => st.push(j!({"op": "abs"}))?,
        "LeakyRelu" => st.push(j!({"op": "leaky_relu", "negative_slope": attr_f(node, "alpha", 0.01)}))?,
        "PRelu" => {
            let w = konst(1)?;
            if w.data.len() != 1 && w.data.len() != st.shape.channels() {
                return Err(format!("slope has {} values; expected 1 or one per channel", w.data.len()).into());
            }
            st.push(j!({"op": "prelu", "weight": w.data}))?
        }
        "Clip" => {
            let bound = |i: usize, name: &str| -> Result<Option<f64>, Lower> {
                match node.input.get(i).filter(|s| !s.is_empty()) {
                    Some(_) => Ok(Some(konst(i)?.data.first().copied().ok_or("empty bound")?)),
                    None => Ok(attr(node, name).map(|a| a.f as f64)),
                }
            };
            match (bound(1, "min")?, bound(2, "max")?) {
                (Some(min), Some(max)) => st.push(j!({"op": "hardtanh", "min_val": min, "max_val": max}))?,
                (Some(0.0), None) => st.push(j!({"op": "relu"}))?,
                _ => return Err("Clip needs both bounds (or min 0 alone)".into()),
            }
        }
        "Gemm" => {
            if attr_i(node, "transA", 0) != 0 {
                return Err("transA is not supported".into());
            }
            let (b, alpha, beta) = (konst(1)?.weight()?, attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0));
            let [r, c] = b.dims[..] else { return Err("B must be a matrix".into()) };
            let trans_b = attr_i(node, "transB", 0) != 0;
            let (out, inp) = if trans_b { (r, c) } else { (c, r) };
            let weight: Vec<Vec<f64>> = (0..out)
                .map(|o| {
                    (0..inp).map(|i| alpha * if trans_b { b.data[o * c + i] } else { b.data[i * c + o] }).collect()
                })
                .collect();
            let bias: Vec<f64> = match node.input.get(2).filter(|s| !s.is_empty()) {
                Some(_) => {
                    let t = konst(2)?;
                    // C broadcasts to the output row: one value, or one per output.
                    match t.data.len() {
                        1 => vec![beta * t.data[0]; out],
                        n if n == out => t.data.iter().map(|v| beta * v).collect(),
                        n => return Err(format!("the bias C has {n} values for {out} outputs").into()),
                    }
                }
                None => vec![0.0; out],
            };
            st.push(j!({"op": "linear", "weight": weight, "bias": bias}))?
        }
        "MatMul" if data_first => {
            let b = konst(1)?.weight()?;
            let [r, c] = b.dims[..] else { return Err("the weight must be a matrix".into()) };
            let weight: Vec<Vec<f64>> = (0..c).map(|o| (0..r).map(|i| b.data[i * c + o]).collect()).collect();
            st.push(j!({"op": "linear", "weight": weight, "bias": vec![0.0; c]}))?
        }
        "Add" | "Sub" | "Mul" | "Div" => elementwise(st, node)?,
        "Conv" => {
            let w = konst(1)?.weight()?;
            let [oc, icg, kh, kw] = w.dims[..] else { return Err("the kernel must be 4-D".into()) };
            let weight: Vec<Vec<Vec<Vec<f64>>>> = (0..oc)
                .map(|o| {
                    (0..icg)
                        .map(|c| (0..kh).map(|y| w.data[((o * icg + c) * kh + y) * kw..][..kw].to_vec()).collect())
                        .collect()
                })
                .collect();
            let bias = match node.input.get(2).filter(|s| !s.is_empty()) {
                Some(_) => konst(2)?.data,
                None => vec![0.0; oc],
            };
            st.push(j!({"op": "conv2d", "weight": weight, "bias": bias,
                "stride": pair(attr_ints(node, "strides"), [1, 1])?, "padding": pads(node)?,
                "dilation": pair(attr_ints(node, "dilations"), [1, 1])?, "groups": attr_i(node, "group", 1)}))?
        }
        "BatchNormalization" => {
            let (scale, bias, mean, var) = (konst(1)?, konst(2)?, konst(3)?, konst(4)?);
            st.push(j!({"op": "batch_norm", "weight": scale.data, "bias": bias.data, "running_mean": mean.data,
                "running_var": var.data, "eps": attr_f(node, "epsilon", 1e-5)}))?
        }
        "MaxPool" | "AveragePool" => {
            if attr_i(node, "ceil_mode", 0) != 0 {
                return Err("ceil_mode is not supported".into());
            }
            let kernel = pair(attr_ints(node, "kernel_shape"), [0, 0])?;
            let padding = pads(node)?;
            let mut layer =
                j!({"kernel_size": kernel, "stride": pair(attr_ints(node, "strides"), [1, 1])?, "padding": padding});
            if node.op_type == "MaxPool" {
                if node.output.len() > 1 && node.output[1..].iter().any(|o| !o.is_empty()) {
                    return Err("MaxPool indices output is not supported".into());
                }
                layer["op"] = j!("max_pool2d");
                layer["dilation"] = j!(pair(attr_ints(node, "dilations"), [1, 1])?);
            } else {
                if padding != [0, 0] && attr_i(node, "count_include_pad", 0) == 0 {
                    return Err(
                        "padding without count_include_pad is not supported (PyTorch's default includes it)".into()
                    );
                }
                layer["op"] = j!("avg_pool2d");
            }
            st.push(layer)?
        }
        "GlobalAveragePool" => global_average(st)?,
        "ReduceMean" => {
            let axes =
                attr_ints(node, "axes").or_else(|| konst(1).ok().map(|t| t.data.iter().map(|&x| x as i64).collect()));
            match axes.as_deref() {
                Some([2, 3]) | Some([-2, -1]) | Some([3, 2]) | Some([-1, -2])
                    if matches!(st.shape, Shape::Image { .. }) =>
                {
                    global_average(st)?;
                    if attr_i(node, "keepdims", 1) == 0 {
                        st.push(j!({"op": "flatten"}))?;
                    }
                }
                _ => return Err(format!("only the mean over both spatial axes is supported, got axes {axes:?}").into()),
            }
        }
        "Flatten" => {
            if attr_i(node, "axis", 1) != 1 {
                return Err("only axis 1 (keep the batch) is supported".into());
            }
            st.push(j!({"op": "flatten"}))?
        }
        "Reshape" => {
            let target: Vec<i64> = konst(1)?.data.iter().map(|&x| x as i64).collect();
            let n = st.shape.numel() as i64;
            match target.as_slice() {
                [_, f] if *f == n || *f == -1 => st.push(j!({"op": "flatten"}))?,
                [_, g, k] if *g > 0 && *k > 0 && g.checked_mul(*k) == Some(n) => st.pending_maxout = Some(*k as usize),
                [_, -1, k] if *k > 0 && n % k == 0 => st.pending_maxout = Some(*k as usize),
                [_, g, -1] if *g > 0 && n % g == 0 => st.pending_maxout = Some((n / g) as usize),
                _ => {
                    return Err(format!(
                        "reshape to {target:?} is supported only as a flatten or as [N, groups, k] before ReduceMax"
                    )
                    .into())
                }
            }
        }
        "ReduceMax" => {
            let k = st
                .pending_maxout
                .take()
                .ok_or("ReduceMax is supported only over the last axis after a Reshape to [N, groups, k] (maxout)")?;
            let axes =
                attr_ints(node, "axes").or_else(|| konst(1).ok().map(|t| t.data.iter().map(|&x| x as i64).collect()));
            if !matches!(axes.as_deref(), Some([-1]) | Some([2])) || attr_i(node, "keepdims", 1) != 0 {
                return Err("ReduceMax must reduce the last axis with keepdims=0".into());
            }
            st.push(j!({"op": "flatten"}))?;
            st.push(j!({"op": "maxout", "pool_size": k}))?
        }
        other => {
            return Err(format!("op {other} is not supported; supported: {}", SUPPORTED_OPS.join(", ")).into());
        }
    }
    Ok(())
}

fn global_average(st: &mut Lowering<'_>) -> Result<(), Lower> {
    let Shape::Image { h, w, .. } = st.shape else { return Err("global pooling needs an image".into()) };
    st.push(j!({"op": "avg_pool2d", "kernel_size": [h, w], "stride": [h, w]}))?;
    Ok(())
}

/// `x ± c`, `x · c`, `x / c` with a constant `c`: folded into the previous linear layer's bias
/// when possible, otherwise a per-channel (or scalar) batch-norm-shaped affine layer.
fn elementwise(st: &mut Lowering<'_>, node: &pb::NodeProto) -> Result<(), Lower> {
    let (data_at, other) = if node.input.first() == Some(&st.data) { (0, 1) } else { (1, 0) };
    let name = node.input.get(other).ok_or("missing input")?;
    let c = st
        .consts
        .get(name)
        .cloned()
        .ok_or("the other operand is neither a constant nor the end of the other branch of a fork")?;
    let op = node.op_type.as_str();
    if data_at == 1 && (op == "Sub" || op == "Div") {
        return Err(format!("{op} with the data path as second operand is not supported").into());
    }
    let ch = st.shape.channels();
    let per = st.shape.per_channel();
    // Broadcast the constant to one value per channel (scalar, [C], [1, C], [C, 1, 1], ...).
    let values: Vec<f64> = if c.data.len() == 1 {
        vec![c.data[0]; ch]
    } else if c.data.len() == ch && (per == 1 || c.dims.iter().rev().take(2).all(|&d| d == 1)) {
        c.data.clone()
    } else {
        return Err(format!("constant of shape {:?} does not broadcast per channel", c.dims).into());
    };
    if op == "Add" || op == "Sub" {
        let sign = if op == "Add" { 1.0 } else { -1.0 };
        if let Some(prev) = st.layers.last_mut().filter(|l| l["op"] == "linear" && per == 1) {
            if let Some(bias) = prev["bias"].as_array_mut() {
                for (b, v) in bias.iter_mut().zip(&values) {
                    *b = j!(b.as_f64().unwrap_or(0.0) + sign * v);
                }
                return Ok(());
            }
        }
        let shift: Vec<f64> = values.iter().map(|v| sign * v).collect();
        st.push(j!({"op": "batch_norm", "weight": vec![1.0; ch], "bias": shift, "running_mean": vec![0.0; ch],
            "running_var": vec![1.0; ch], "eps": 0.0}))?;
    } else {
        let scale: Vec<f64> = if op == "Mul" { values } else { values.iter().map(|v| 1.0 / v).collect() };
        st.push(j!({"op": "batch_norm", "weight": scale, "bias": vec![0.0; ch], "running_mean": vec![0.0; ch],
            "running_var": vec![1.0; ch], "eps": 0.0}))?;
    }
    Ok(())
}
