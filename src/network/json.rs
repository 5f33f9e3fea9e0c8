//! Loader for the native `tessera-model/1` JSON format.
//!
//! A sequential list of `{"op": ...}` layers with PyTorch names and layouts. Every field is
//! validated on load (shapes, finiteness, unknown ops and fields); errors name the layer index,
//! its op and the field at fault.

use super::{Activation, Layer, LayerKind, Network, Shape, Window};
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
    /// A layer is invalid.
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
        if !matches!(key.as_str(), "format" | "input_shape" | "layers" | "metadata") {
            return Err(ModelError::Field {
                field: "(top level)",
                message: format!("unknown field `{key}`; expected format, input_shape, layers, metadata"),
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
    let too_big = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > super::MAX_ELEMENTS);
    if too_big {
        return Err(ModelError::Field {
            field: "input_shape",
            message: format!("{dims:?} has more than {} entries", super::MAX_ELEMENTS),
        });
    }
    let input_shape = match dims.as_slice() {
        [n] if *n > 0 => Shape::Flat(*n),
        [c, h, w] if *c > 0 && *h > 0 && *w > 0 => Shape::Image { c: *c, h: *h, w: *w },
        _ => {
            return Err(ModelError::Field {
                field: "input_shape",
                message: format!("must be [features] or [channels, height, width] with positive sizes, got {dims:?}"),
            })
        }
    };
    let layers = obj
        .get("layers")
        .and_then(Value::as_array)
        .ok_or(ModelError::Field { field: "layers", message: "missing or not a list".into() })?;
    let mut shape = input_shape;
    let mut out = Vec::with_capacity(layers.len());
    let mut work = 0u64;
    for (index, value) in layers.iter().enumerate() {
        let layer = parse_layer(index, value, shape)?;
        // Each layer's work is bounded; so is the model's (many affordable layers add up).
        work = work.saturating_add(layer.work().unwrap_or(u64::MAX));
        if work > super::MAX_MODEL_WORK {
            return Err(ModelError::Layer {
                index,
                op: value.get("op").and_then(Value::as_str).unwrap_or("?").to_string(),
                field: None,
                message: format!(
                    "the layers up to this one take more than {} multiply-adds per input in all",
                    super::MAX_MODEL_WORK
                ),
            });
        }
        shape = layer.output;
        out.push(layer);
    }
    Ok(Network { input_shape, layers: out })
}

/// Error builder for one layer.
struct Ctx<'a> {
    index: usize,
    op: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: Option<&str>, message: impl Into<String>) -> ModelError {
        ModelError::Layer {
            index: self.index,
            op: self.op.to_string(),
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    fn finite(&self, field: &str, values: &[f64]) -> Result<(), ModelError> {
        match values.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(self.err(Some(field), format!("entry {i} is not finite ({})", values[i]))),
            None => Ok(()),
        }
    }

    fn len(&self, field: &str, values: &[f64], expected: usize) -> Result<(), ModelError> {
        if values.len() == expected {
            Ok(())
        } else {
            Err(self.err(Some(field), format!("expected {expected} values, found {}", values.len())))
        }
    }

    fn image(&self, shape: Shape) -> Result<(usize, usize, usize), ModelError> {
        match shape {
            Shape::Image { c, h, w } => Ok((c, h, w)),
            Shape::Flat(n) => {
                Err(self.err(None, format!("needs an image input [channels, height, width], got flat [{n}]")))
            }
        }
    }
}

/// Parses the chain of layers of a block's branch, starting from `input`; errors name the
/// block (through `cx`), the `field` and, in the message, the branch (`label`).
fn parse_chain(
    cx: &Ctx<'_>,
    values: &[Value],
    input: Shape,
    field: &str,
    label: &str,
) -> Result<(Vec<Layer>, Shape), ModelError> {
    let mut shape = input;
    let mut layers = Vec::with_capacity(values.len());
    for (k, v) in values.iter().enumerate() {
        let inner = parse_layer(k, v, shape).map_err(|e| cx.err(Some(field), format!("{label} {e}")))?;
        shape = inner.output;
        layers.push(inner);
    }
    Ok((layers, shape))
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
    dilation: Option<Pair>,
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

/// Ops this loader understands, for error messages.
pub const SUPPORTED_OPS: &[&str] = &[
    "linear",
    "conv2d",
    "batch_norm",
    "avg_pool2d",
    "max_pool2d",
    "flatten",
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
];

/// Validates one layer given as a JSON object (with its `op`) for an input of `input` shape,
/// including tessera's size limit and, for max-pooling, windows that only see padding.
pub(crate) fn parse_layer(index: usize, value: &Value, input: Shape) -> Result<Layer, ModelError> {
    let layer = parse_layer_fields(index, value, input)?;
    let err = |field: Option<&str>, message: String| ModelError::Layer {
        index,
        op: layer.op.clone(),
        field: field.map(str::to_string),
        message,
    };
    match layer.output.checked_numel() {
        Some(n) if n > 0 && n <= super::MAX_ELEMENTS => {}
        _ => {
            return Err(err(
                None,
                format!(
                    "output shape {} is empty or has more than {} entries (tessera's size limit)",
                    layer.output,
                    super::MAX_ELEMENTS
                ),
            ))
        }
    }
    match layer.work() {
        Some(w) if w <= super::MAX_LAYER_WORK => {}
        _ => {
            return Err(err(
                None,
                format!(
                    "one application takes more than {} multiply-adds (kernel or window too large for tessera)",
                    super::MAX_LAYER_WORK
                ),
            ))
        }
    }
    if let (LayerKind::MaxPool2d { window }, Shape::Image { h, w, .. }, Shape::Image { h: oh, w: ow, .. }) =
        (&layer.kind, layer.input, layer.output)
    {
        if layer.work().is_none_or(|w| w > super::MAX_POOL_ENTRIES) {
            return Err(err(
                None,
                format!("the pooling windows hold more than {} candidates in all", super::MAX_POOL_ENTRIES),
            ));
        }
        if window.has_empty_window(0, h, oh) || window.has_empty_window(1, w, ow) {
            return Err(err(Some("padding"), "some pooling window lies entirely in the padding".into()));
        }
    }
    let live = layer.live_entries();
    if live > super::MAX_LIVE_ELEMENTS {
        return Err(err(
            None,
            format!(
                "the nested blocks keep {live} tensor entries alive at once, above tessera's limit of {}",
                super::MAX_LIVE_ELEMENTS
            ),
        ));
    }
    Ok(layer)
}

fn parse_layer_fields(index: usize, value: &Value, input: Shape) -> Result<Layer, ModelError> {
    let unknown = Ctx { index, op: "?" };
    let mut obj = value.as_object().ok_or_else(|| unknown.err(None, "a layer must be a JSON object"))?.clone();
    let op = match obj.remove("op") {
        Some(Value::String(s)) => s,
        _ => return Err(unknown.err(Some("op"), "missing or not a string")),
    };
    let cx = Ctx { index, op: &op };
    let rest = Value::Object(obj);
    fn spec<T: for<'de> Deserialize<'de>>(cx: &Ctx<'_>, v: &Value) -> Result<T, ModelError> {
        T::deserialize(v).map_err(|e| {
            let msg = e.to_string();
            let field = msg.split('`').nth(1).map(str::to_string);
            cx.err(None, if let Some(f) = field { format!("{msg} (field `{f}`)") } else { msg })
        })
    }
    let (kind, output) = match op.as_str() {
        "linear" => {
            let s: LinearSpec = spec(&cx, &rest)?;
            let n_in = match input {
                Shape::Flat(n) => n,
                other => {
                    return Err(
                        cx.err(None, format!("needs a flat input, got {other}; add {{\"op\": \"flatten\"}} before it"))
                    )
                }
            };
            let out = s.weight.len();
            if out == 0 {
                return Err(cx.err(Some("weight"), "has no rows"));
            }
            // Not preallocated: the rows' lengths are checked first.
            let mut weight = Vec::new();
            for (r, row) in s.weight.iter().enumerate() {
                if row.len() != n_in {
                    return Err(cx.err(
                        Some("weight"),
                        format!("row {r} has {} columns but the input has {n_in} features", row.len()),
                    ));
                }
                weight.extend_from_slice(row);
            }
            cx.finite("weight", &weight)?;
            let bias = s.bias.unwrap_or_else(|| vec![0.0; out]);
            cx.len("bias", &bias, out)?;
            cx.finite("bias", &bias)?;
            (LayerKind::Linear { weight, bias }, Shape::Flat(out))
        }
        "conv2d" => {
            let s: ConvSpec = spec(&cx, &rest)?;
            let (c, h, w) = cx.image(input)?;
            let groups = s.groups.unwrap_or(1);
            let oc = s.weight.len();
            if groups == 0 || oc == 0 || c % groups != 0 || oc % groups != 0 {
                return Err(cx.err(
                    Some("groups"),
                    format!("{groups} groups must divide the {c} input and {oc} output channels"),
                ));
            }
            let icg = c / groups;
            let kh = s.weight[0].first().map_or(0, Vec::len);
            let kw = s.weight[0].first().and_then(|k| k.first()).map_or(0, Vec::len);
            if kh == 0 || kw == 0 {
                return Err(cx.err(Some("weight"), "empty kernel"));
            }
            let mut weight = Vec::new();
            for (o, per_out) in s.weight.iter().enumerate() {
                if per_out.len() != icg {
                    return Err(cx.err(
                        Some("weight"),
                        format!(
                            "output channel {o} has {} input channels, expected {icg} (= {c} / {groups} groups)",
                            per_out.len()
                        ),
                    ));
                }
                for k in per_out {
                    if k.len() != kh || k.iter().any(|row| row.len() != kw) {
                        return Err(cx.err(Some("weight"), "kernels must all be kh × kw"));
                    }
                    for row in k {
                        weight.extend_from_slice(row);
                    }
                }
            }
            cx.finite("weight", &weight)?;
            let bias = s.bias.unwrap_or_else(|| vec![0.0; oc]);
            cx.len("bias", &bias, oc)?;
            cx.finite("bias", &bias)?;
            let window = Window {
                kernel: [kh, kw],
                stride: s.stride.map_or([1, 1], |p| p.get()),
                padding: s.padding.map_or([0, 0], |p| p.get()),
                dilation: s.dilation.map_or([1, 1], |p| p.get()),
            };
            if window.stride.contains(&0) || window.dilation.contains(&0) {
                return Err(cx.err(Some("stride"), "stride and dilation must be positive"));
            }
            let (oh, ow) = window
                .output_size(h, w)
                .ok_or_else(|| cx.err(None, format!("a {kh}×{kw} kernel does not fit the {h}×{w} input")))?;
            (LayerKind::Conv2d { weight, bias, window, groups }, Shape::Image { c: oc, h: oh, w: ow })
        }
        "batch_norm" => {
            let s: BatchNormSpec = spec(&cx, &rest)?;
            let ch = input.channels();
            let weight = s.weight.unwrap_or_else(|| vec![1.0; ch]);
            let bias = s.bias.unwrap_or_else(|| vec![0.0; ch]);
            for (name, v) in [
                ("weight", &weight),
                ("bias", &bias),
                ("running_mean", &s.running_mean),
                ("running_var", &s.running_var),
            ] {
                cx.len(name, v, ch)?;
                cx.finite(name, v)?;
            }
            let eps = s.eps.unwrap_or(1e-5);
            if !eps.is_finite() || eps < 0.0 {
                return Err(cx.err(Some("eps"), format!("must be finite and non-negative, got {eps}")));
            }
            let mut scale = Vec::with_capacity(ch);
            let mut shift = Vec::with_capacity(ch);
            for i in 0..ch {
                let var = s.running_var[i] + eps;
                if var <= 0.0 {
                    return Err(
                        cx.err(Some("running_var"), format!("channel {i}: running_var + eps = {var} must be positive"))
                    );
                }
                let sc = weight[i] / var.sqrt();
                scale.push(sc);
                shift.push(bias[i] - s.running_mean[i] * sc);
            }
            cx.finite("running_var", &scale)?;
            cx.finite("running_mean", &shift)?;
            (LayerKind::BatchNorm { scale, shift }, input)
        }
        "avg_pool2d" | "max_pool2d" => {
            let s: PoolSpec = spec(&cx, &rest)?;
            let (c, h, w) = cx.image(input)?;
            let kernel = s.kernel_size.get();
            let window = Window {
                kernel,
                stride: s.stride.map_or(kernel, |p| p.get()),
                padding: s.padding.map_or([0, 0], |p| p.get()),
                dilation: s.dilation.map_or([1, 1], |p| p.get()),
            };
            if kernel.contains(&0) || window.stride.contains(&0) || window.dilation.contains(&0) {
                return Err(cx.err(Some("kernel_size"), "kernel, stride and dilation must be positive"));
            }
            if window.padding[0] > kernel[0] / 2 || window.padding[1] > kernel[1] / 2 {
                return Err(cx.err(Some("padding"), "padding must be at most half the kernel size"));
            }
            if op == "avg_pool2d" && window.dilation != [1, 1] {
                return Err(cx.err(Some("dilation"), "avg_pool2d has no dilation"));
            }
            let (oh, ow) = window.output_size(h, w).ok_or_else(|| {
                cx.err(None, format!("a {}×{} window does not fit the {h}×{w} input", kernel[0], kernel[1]))
            })?;
            let kind =
                if op == "avg_pool2d" { LayerKind::AvgPool2d { window } } else { LayerKind::MaxPool2d { window } };
            (kind, Shape::Image { c, h: oh, w: ow })
        }
        "flatten" => {
            let _: Empty = spec(&cx, &rest)?;
            (LayerKind::Flatten, Shape::Flat(input.numel()))
        }
        "relu" => {
            let _: Empty = spec(&cx, &rest)?;
            (LayerKind::Activation(Activation::Relu), input)
        }
        "abs" => {
            let _: Empty = spec(&cx, &rest)?;
            (LayerKind::Activation(Activation::Abs), input)
        }
        "relu6" => {
            let _: Empty = spec(&cx, &rest)?;
            (LayerKind::Activation(Activation::HardTanh { min: 0.0, max: 6.0 }), input)
        }
        "leaky_relu" => {
            let s: LeakySpec = spec(&cx, &rest)?;
            let slope = s.negative_slope.unwrap_or(0.01);
            cx.finite("negative_slope", &[slope])?;
            (LayerKind::Activation(Activation::LeakyRelu { slope }), input)
        }
        "prelu" => {
            let s: PReluSpec = spec(&cx, &rest)?;
            let ch = input.channels();
            if s.weight.len() != 1 && s.weight.len() != ch {
                return Err(cx.err(
                    Some("weight"),
                    format!("expected 1 or {ch} (one per channel) values, found {}", s.weight.len()),
                ));
            }
            cx.finite("weight", &s.weight)?;
            (LayerKind::Activation(Activation::PRelu { slopes: s.weight }), input)
        }
        "hardtanh" => {
            let s: HardTanhSpec = spec(&cx, &rest)?;
            let min = s.min_val.unwrap_or(-1.0);
            let max = s.max_val.unwrap_or(1.0);
            cx.finite("min_val", &[min])?;
            cx.finite("max_val", &[max])?;
            if min >= max {
                return Err(cx.err(Some("max_val"), format!("max_val {max} must exceed min_val {min}")));
            }
            (LayerKind::Activation(Activation::HardTanh { min, max }), input)
        }
        "residual" => {
            let s: ResidualSpec = spec(&cx, &rest)?;
            let (body, out) = parse_chain(&cx, &s.layers, input, "layers", "layers")?;
            let (shortcut, skip_out) =
                parse_chain(&cx, &s.shortcut.unwrap_or_default(), input, "shortcut", "shortcut")?;
            if body.is_empty() {
                return Err(cx.err(Some("layers"), "the main branch is empty"));
            }
            if out != skip_out {
                return Err(cx.err(
                    None,
                    format!("the main branch gives {out} but the shortcut gives {skip_out}: they must match"),
                ));
            }
            (LayerKind::Residual { body, shortcut, merge: super::Merge::Add }, out)
        }
        "concat" | "max" => {
            let s: BranchesSpec = spec(&cx, &rest)?;
            let chain =
                |values: &[Value], k: usize| parse_chain(&cx, values, input, "branches", &format!("branch {k}:"));
            let [a, b] = s.branches.as_slice() else {
                return Err(cx.err(Some("branches"), format!("expected two branches, found {}", s.branches.len())));
            };
            let ((first, sa), (second, sb)) = (chain(a, 0)?, chain(b, 1)?);
            let (merge, out) = if op == "max" {
                if sa != sb {
                    return Err(cx.err(Some("branches"), format!("branches give {sa} and {sb}: they must match")));
                }
                (super::Merge::Max, sa)
            } else {
                let sum = |p: usize, q: usize| {
                    p.checked_add(q).ok_or_else(|| cx.err(Some("branches"), "concatenation too large".to_string()))
                };
                let out = match (sa, sb) {
                    (Shape::Flat(p), Shape::Flat(q)) => Shape::Flat(sum(p, q)?),
                    (Shape::Image { c: p, h, w }, Shape::Image { c: q, h: h2, w: w2 }) if h == h2 && w == w2 => {
                        Shape::Image { c: sum(p, q)?, h, w }
                    }
                    _ => {
                        return Err(cx.err(Some("branches"), format!("cannot concatenate {sa} and {sb} along channels")))
                    }
                };
                (super::Merge::Concat, out)
            };
            (LayerKind::Residual { body: first, shortcut: second, merge }, out)
        }
        "maxout" => {
            let s: MaxoutSpec = spec(&cx, &rest)?;
            let n = input.numel();
            if s.pool_size == 0 || n % s.pool_size != 0 {
                return Err(cx.err(
                    Some("pool_size"),
                    format!("{} must be positive and divide the {n} input features", s.pool_size),
                ));
            }
            (LayerKind::Maxout { pool: s.pool_size }, Shape::Flat(n / s.pool_size))
        }
        _ => return Err(cx.err(Some("op"), format!("unknown op `{op}`; supported: {}", SUPPORTED_OPS.join(", ")))),
    };
    Ok(Layer { kind, input, output, op })
}

/// Serialises a network back to `tessera-model/1` (batch-norm is written folded, as
/// `running_mean = 0`, `running_var = 1`, `eps = 0`).
pub fn to_value(net: &Network) -> Value {
    use serde_json::json;
    let layers: Vec<Value> = net.layers.iter().map(layer_value).collect();
    json!({"format": FORMAT, "input_shape": net.input_shape.dims(), "layers": layers})
}

/// One layer as `tessera-model/1` JSON (residual blocks recursively).
fn layer_value(l: &Layer) -> Value {
    use serde_json::json;
    let pair = |p: [usize; 2]| json!([p[0], p[1]]);
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
                       "padding": pair(window.padding), "dilation": pair(window.dilation),
                       "groups": groups})
        }
        LayerKind::BatchNorm { scale, shift } => {
            let n = scale.len();
            json!({"op": "batch_norm", "weight": scale, "bias": shift,
                       "running_mean": vec![0.0; n], "running_var": vec![1.0; n], "eps": 0.0})
        }
        LayerKind::AvgPool2d { window } => json!({"op": "avg_pool2d",
                "kernel_size": pair(window.kernel), "stride": pair(window.stride),
                "padding": pair(window.padding)}),
        LayerKind::MaxPool2d { window } => json!({"op": "max_pool2d",
                "kernel_size": pair(window.kernel), "stride": pair(window.stride),
                "padding": pair(window.padding), "dilation": pair(window.dilation)}),
        LayerKind::Flatten => json!({"op": "flatten"}),
        LayerKind::Maxout { pool } => json!({"op": "maxout", "pool_size": pool}),
        LayerKind::Residual { body, shortcut, merge } => {
            let (a, b): (Vec<Value>, Vec<Value>) =
                (body.iter().map(layer_value).collect(), shortcut.iter().map(layer_value).collect());
            match merge {
                super::Merge::Add => json!({"op": "residual", "layers": a, "shortcut": b}),
                super::Merge::Concat => json!({"op": "concat", "branches": [a, b]}),
                super::Merge::Max => json!({"op": "max", "branches": [a, b]}),
            }
        }
        // Engine-internal layers never appear in a loaded network.
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
}
