//! One lowering per ONNX op type, registered by name in [`lower`]. Each reads its inputs from
//! the lowering state (constants, or tensors of the data path with their ONNX shapes), folds
//! when every input it needs is constant, and otherwise emits network nodes. Attributes are read
//! through [`Attrs`], so an attribute a lowering does not read is reported as unsupported.

use super::super::{Activation, LayerKind, Merge, Window};
use super::tensor::{self, IndexMap, PadMode, Tensor};
use super::{pb, Attrs, Cx, Data, Val};

type Res = Result<(), String>;

/// The lowering of one op type.
type Lowering = fn(&mut Cx<'_>, &pb::NodeProto, &Attrs<'_>) -> Res;

/// Op types with a lowering (besides constant folding of the ops in [`FOLD_ONLY`]).
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Expand",
    "Flatten",
    "Gather",
    "GatherND",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "Identity",
    "LeakyRelu",
    "MatMul",
    "Max",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Pad",
    "PRelu",
    "Range",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "Shape",
    "Size",
    "Slice",
    "Softmax (last)",
    "LogSoftmax (last)",
    "Split",
    "Squeeze",
    "Sub",
    "Sum",
    "Transpose",
    "Unsqueeze",
    "Upsample",
    "Where",
];

/// Ops evaluated only on constants (shape arithmetic, batch-norm decompositions): on the data
/// path they are not piecewise linear.
const FOLD_ONLY: &[&str] = &[
    "Sqrt",
    "Reciprocal",
    "Pow",
    "Exp",
    "Log",
    "Floor",
    "Ceil",
    "Equal",
    "Less",
    "Greater",
    "Not",
    "And",
    "Or",
    "Sigmoid",
    "Tanh",
    "Erf",
];

/// Ops that are not piecewise linear, with what they are.
const NOT_PWL: &[(&str, &str)] = &[
    ("Sigmoid", "a smooth activation"),
    ("Tanh", "a smooth activation"),
    ("Gelu", "a smooth activation"),
    ("Elu", "a smooth activation"),
    ("Selu", "a smooth activation"),
    ("Celu", "a smooth activation"),
    ("Softplus", "a smooth activation"),
    ("Softsign", "a smooth activation"),
    ("Mish", "a smooth activation"),
    ("HardSwish", "x times a clamp: quadratic between its breakpoints"),
    ("Erf", "a smooth function"),
    ("Exp", "a smooth function"),
    ("Log", "a smooth function"),
    ("Sqrt", "a smooth function"),
    ("Reciprocal", "a smooth function"),
    ("Pow", "a polynomial"),
    ("LayerNormalization", "a normalisation by statistics of the input"),
    ("InstanceNormalization", "a normalisation by statistics of the input"),
    ("GroupNormalization", "a normalisation by statistics of the input"),
    ("LpNormalization", "a normalisation by a norm of the input"),
    ("LRN", "a normalisation by statistics of the input"),
    ("Softmax", "a smooth function (dropped only as the last op)"),
    ("LogSoftmax", "a smooth function (dropped only as the last op)"),
    ("Attention", "a softmax attention"),
];

/// Lowers `node` by the function registered for its op type.
pub(super) fn lower(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let f: Lowering = match node.op_type.as_str() {
        "Constant" => constant,
        "Shape" => shape,
        "Size" => size,
        "Identity" => identity,
        "Dropout" => dropout,
        "Cast" => cast,
        "Reshape" => reshape,
        "Flatten" => flatten,
        "Squeeze" => squeeze,
        "Unsqueeze" => unsqueeze,
        "Transpose" => transpose,
        "Slice" => slice,
        "Gather" => gather,
        "GatherND" => gather_nd,
        "Expand" => expand,
        "Pad" => pad,
        "Concat" => concat,
        "Split" => split,
        "Resize" => resize,
        "Upsample" => upsample,
        "ConstantOfShape" => constant_of_shape,
        "Range" => range,
        "Where" => where_,
        "Add" => add,
        "Sub" => sub,
        "Mul" => mul,
        "Div" => div,
        "Sum" => sum,
        "Max" => max,
        "Min" => min,
        "Neg" => neg,
        "Abs" => abs,
        "Relu" => relu,
        "LeakyRelu" => leaky_relu,
        "PRelu" => prelu,
        "Clip" => clip,
        "HardSigmoid" => hard_sigmoid,
        "Gemm" => gemm,
        "MatMul" => matmul,
        "Conv" => conv,
        "ConvTranspose" => conv_transpose,
        "BatchNormalization" => batch_norm,
        "MaxPool" => max_pool,
        "AveragePool" => average_pool,
        "GlobalAveragePool" => global_average_pool,
        "GlobalMaxPool" => global_max_pool,
        "ReduceMean" => reduce_mean,
        "ReduceSum" => reduce_sum,
        "ReduceMax" => reduce_max,
        "ReduceMin" => reduce_min,
        "Softmax" | "LogSoftmax" => softmax,
        op if FOLD_ONLY.contains(&op) => fold_only,
        op => {
            return Err(match NOT_PWL.iter().find(|(n, _)| *n == op) {
                Some((_, what)) => format!(
                    "{op} is not piecewise linear ({what}); tessera computes exact regions of piecewise-linear networks only"
                ),
                None => format!("op {op} is not supported; supported: {}", SUPPORTED_OPS.join(", ")),
            })
        }
    };
    f(cx, node, a)
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Input `i` as a value (constant or data).
fn val(cx: &Cx<'_>, node: &pb::NodeProto, i: usize) -> Result<Val, String> {
    cx.input(node, i)?.cloned().ok_or_else(|| format!("input {i} is missing"))
}

fn all_const(cx: &Cx<'_>, node: &pb::NodeProto) -> bool {
    (0..node.input.len()).all(|i| !matches!(cx.input(node, i), Ok(Some(Val::Data(_)))))
}

/// A list of integers from an attribute (older opsets) or an input (newer ones).
fn ints_from(
    cx: &Cx<'_>,
    node: &pb::NodeProto,
    a: &Attrs<'_>,
    attr: &str,
    input: usize,
) -> Result<Option<Vec<i64>>, String> {
    if let Some(v) = a.ints(attr) {
        return Ok(Some(v));
    }
    Ok(cx.konst(node, input)?.map(|t| t.as_ints()))
}

/// Applies an index map to a constant or a data tensor.
fn map_val(cx: &mut Cx<'_>, v: &Val, m: IndexMap, op: &str) -> Result<Val, String> {
    match v {
        Val::Const(t) => Ok(Val::Const(t.mapped(&m).checked()?)),
        Val::Data(d) => Ok(Val::Data(cx.gather(d, m, op)?)),
    }
}

fn dims_of(v: &Val) -> &[usize] {
    match v {
        Val::Const(t) => &t.dims,
        Val::Data(d) => &d.dims,
    }
}

/// `y = scale·x + shift` per entry of `d` (a batch-norm node when both are constant per
/// channel, so that it folds into a preceding convolution).
fn affine(cx: &mut Cx<'_>, d: &Data, scale: Vec<f64>, shift: Vec<f64>, op: &str) -> Result<Data, String> {
    if scale.iter().all(|&s| s == 1.0) && shift.iter().all(|&t| t == 0.0) {
        return Ok(d.clone());
    }
    let shape = super::canonical(&d.dims)?;
    let (ch, per) = (shape.channels(), shape.per_channel());
    let uniform = |v: &[f64]| (0..ch).all(|c| v[c * per..(c + 1) * per].iter().all(|&x| x == v[c * per]));
    if uniform(&scale) && uniform(&shift) {
        let pick = |v: &[f64]| (0..ch).map(|c| v[c * per]).collect();
        return cx.emit(LayerKind::BatchNorm { scale: pick(&scale), shift: pick(&shift) }, &[d], d.dims.clone(), op);
    }
    cx.emit(LayerKind::Scale { scale, shift }, &[d], d.dims.clone(), op)
}

/// A constant broadcast to `dims`, as one value per entry.
fn spread(c: &Tensor, dims: &[usize]) -> Result<Vec<f64>, String> {
    let m = tensor::expand(&c.dims, dims)?;
    Ok(m.index.iter().map(|&j| c.data[j as usize]).collect())
}

/// `d` broadcast to `dims` (a gather when its shape differs).
fn broadcast_data(cx: &mut Cx<'_>, d: &Data, dims: &[usize]) -> Result<Data, String> {
    if d.dims == dims {
        return Ok(d.clone());
    }
    let m = tensor::expand(&d.dims, dims)?;
    cx.gather(d, m, "expand")
}

fn activation(cx: &mut Cx<'_>, node: &pb::NodeProto, act: Activation, op: &str) -> Res {
    match val(cx, node, 0)? {
        Val::Const(mut t) => {
            t.data.iter_mut().for_each(|x| *x = act.eval(*x, 0));
            cx.set(node, 0, Val::Const(t))
        }
        Val::Data(d) => {
            let y = cx.emit(LayerKind::Activation(act), &[&d], d.dims.clone(), op)?;
            cx.set(node, 0, Val::Data(y))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Constants and shapes.

fn constant(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let t = if let Some(t) = a.get("value").and_then(|v| v.t.as_ref()) {
        tensor::decode(t, cx.dir())?
    } else if let Some(v) = a.get("value_float") {
        Tensor::scalar(v.f as f64, false)
    } else if let Some(v) = a.get("value_int") {
        Tensor::scalar(v.i as f64, true)
    } else if let Some(v) = a.get("value_ints") {
        Tensor::ints(&v.ints)
    } else if let Some(v) = a.get("value_floats") {
        Tensor { dims: vec![v.floats.len()], data: v.floats.iter().map(|&x| x as f64).collect(), int: false }
    } else {
        return Err("Constant without a supported value attribute".into());
    };
    cx.set(node, 0, Val::Const(t.checked()?))
}

fn shape(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let dims: Vec<f64> = dims_of(&val(cx, node, 0)?).iter().map(|&d| d as f64).collect();
    let r = dims.len() as i64;
    let clamp = |i: i64| (if i < 0 { i + r } else { i }).clamp(0, r) as usize;
    let (start, end) = (clamp(a.int("start", 0)), clamp(a.int("end", r)));
    let data = dims[start..end.max(start)].to_vec();
    cx.set(node, 0, Val::Const(Tensor { dims: vec![data.len()], data, int: true }))
}

fn size(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    let n = tensor::numel(dims_of(&val(cx, node, 0)?)).ok_or("size overflows")?;
    cx.set(node, 0, Val::Const(Tensor::scalar(n as f64, true)))
}

fn identity(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    cx.set(node, 0, v)
}

fn dropout(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    a.ignore(&["seed", "ratio", "is_test"]);
    if cx.konst(node, 2)?.is_some_and(|t| t.data.first().is_some_and(|&x| x != 0.0)) {
        return Err("training_mode is set: tessera maps the network in evaluation mode".into());
    }
    if node.output.get(1).is_some_and(|m| !m.is_empty()) {
        // The mask of an evaluation-mode dropout is all true.
        let dims = dims_of(&val(cx, node, 0)?).to_vec();
        let n = tensor::numel(&dims).ok_or("size overflows")?;
        cx.set(node, 1, Val::Const(Tensor { dims, data: vec![1.0; n], int: true }))?;
    }
    identity(cx, node, a)
}

fn cast(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    // ONNX element types: 1 float, 10 float16, 11 double, 16 bfloat16; the rest integers or
    // booleans (whose values f64 holds exactly).
    let to = a.int("to", 1);
    a.ignore(&["saturate"]);
    let int = !matches!(to, 1 | 10 | 11 | 16);
    match val(cx, node, 0)? {
        Val::Const(mut t) => {
            if int {
                t.data.iter_mut().for_each(|x| *x = if to == 9 { f64::from(*x != 0.0) } else { x.trunc() });
            }
            t.int = int;
            cx.set(node, 0, Val::Const(t))
        }
        Val::Data(_) if int => Err("a cast of the data path to integers is not piecewise linear".into()),
        v @ Val::Data(_) => cx.set(node, 0, v),
    }
}

/// The shape a `Reshape` target gives for `dims` (0 copies a dimension unless `allowzero`, −1
/// is inferred).
fn reshape_target(dims: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let n = tensor::numel(dims).ok_or("size overflows")? as i64;
    let mut out: Vec<i64> = target
        .iter()
        .enumerate()
        .map(|(i, &t)| if t == 0 && !allowzero { dims.get(i).map(|&d| d as i64).unwrap_or(0) } else { t })
        .collect();
    let known = out
        .iter()
        .filter(|&&x| x >= 0)
        .try_fold(1i64, |p, &x| p.checked_mul(x))
        .ok_or("the reshape target overflows")?;
    match out.iter().filter(|&&x| x == -1).count() {
        0 => {}
        1 if known > 0 && n % known == 0 => *out.iter_mut().find(|x| **x == -1).expect("one -1") = n / known,
        _ => return Err(format!("cannot reshape {dims:?} to {target:?}")),
    }
    if out.iter().any(|&x| x < 0) || out.iter().try_fold(1i64, |p, &x| p.checked_mul(x)) != Some(n) {
        return Err(format!("cannot reshape {dims:?} to {target:?}"));
    }
    Ok(out.into_iter().map(|x| x as usize).collect())
}

/// Sets output 0 to `v` with new dimensions (same entries).
fn with_dims(cx: &mut Cx<'_>, node: &pb::NodeProto, v: Val, dims: Vec<usize>) -> Res {
    let out = match v {
        Val::Const(t) => Val::Const(Tensor { dims, ..t }.checked()?),
        Val::Data(d) => Val::Data(cx.reshape(&d, dims)?),
    };
    cx.set(node, 0, out)
}

fn reshape(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let target = ints_from(cx, node, a, "shape", 1)?.ok_or("the target shape is missing")?;
    let dims = reshape_target(dims_of(&v), &target, a.int("allowzero", 0) != 0)?;
    with_dims(cx, node, v, dims)
}

fn flatten(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let d = dims_of(&v);
    let ax = if d.is_empty() { 0 } else { tensor::axis(a.int("axis", 1), d.len() + 1)? };
    let (p, q) = (d[..ax].iter().product::<usize>(), d[ax..].iter().product::<usize>());
    with_dims(cx, node, v, vec![p, q])
}

fn squeeze(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let d = dims_of(&v).to_vec();
    let axes = match ints_from(cx, node, a, "axes", 1)? {
        Some(ax) => ax.iter().map(|&x| tensor::axis(x, d.len())).collect::<Result<Vec<_>, _>>()?,
        None => (0..d.len()).filter(|&i| d[i] == 1).collect(),
    };
    for &ax in &axes {
        if d[ax] != 1 {
            return Err(format!("axis {ax} has size {}, not 1", d[ax]));
        }
    }
    let dims = (0..d.len()).filter(|i| !axes.contains(i)).map(|i| d[i]).collect();
    with_dims(cx, node, v, dims)
}

fn unsqueeze(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let d = dims_of(&v).to_vec();
    let axes = ints_from(cx, node, a, "axes", 1)?.ok_or("axes are missing")?;
    let r = d.len() + axes.len();
    let mut axes = axes.iter().map(|&x| tensor::axis(x, r)).collect::<Result<Vec<_>, _>>()?;
    axes.sort_unstable();
    let mut rest = d.into_iter();
    let dims: Vec<usize> = (0..r).map(|i| if axes.contains(&i) { 1 } else { rest.next().unwrap_or(1) }).collect();
    with_dims(cx, node, v, dims)
}

fn transpose(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let r = dims_of(&v).len();
    let perm: Vec<usize> = match a.ints("perm") {
        Some(p) => p.iter().map(|&x| tensor::axis(x, r)).collect::<Result<_, _>>()?,
        None => (0..r).rev().collect(),
    };
    let m = tensor::transpose(dims_of(&v), &perm)?;
    let out = map_val(cx, &v, m, "transpose")?;
    cx.set(node, 0, out)
}

fn slice(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let d = dims_of(&v).to_vec();
    let starts = ints_from(cx, node, a, "starts", 1)?.ok_or("starts are missing")?;
    let ends = ints_from(cx, node, a, "ends", 2)?.ok_or("ends are missing")?;
    let axes = match ints_from(cx, node, a, "axes", 3)? {
        Some(ax) => ax.iter().map(|&x| tensor::axis(x, d.len())).collect::<Result<Vec<_>, _>>()?,
        None => (0..starts.len()).collect(),
    };
    let steps = cx.konst(node, 4)?.map(|t| t.as_ints()).unwrap_or_else(|| vec![1; axes.len()]);
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    let m = tensor::slice(&d, &starts, &ends, &axes, &steps)?;
    let out = map_val(cx, &v, m, "slice")?;
    cx.set(node, 0, out)
}

fn gather(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let indices = cx.konst(node, 1)?.ok_or("indices are missing")?;
    let ax = tensor::axis(a.int("axis", 0), dims_of(&v).len())?;
    let m = tensor::gather(dims_of(&v), ax, &indices)?;
    let out = map_val(cx, &v, m, "gather")?;
    cx.set(node, 0, out)
}

fn gather_nd(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    if a.int("batch_dims", 0) != 0 {
        return Err("batch_dims other than 0 is not supported".into());
    }
    let v = val(cx, node, 0)?;
    let indices = cx.konst(node, 1)?.ok_or("indices are missing")?;
    let m = tensor::gather_nd(dims_of(&v), &indices)?;
    let out = map_val(cx, &v, m, "gather")?;
    cx.set(node, 0, out)
}

fn expand(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let target: Vec<usize> = cx
        .need_konst(node, 1)?
        .as_ints()
        .into_iter()
        .map(|x| usize::try_from(x).map_err(|_| "negative size"))
        .collect::<Result<_, _>>()?;
    let to = tensor::broadcast_shape(dims_of(&v), &target)?;
    let m = tensor::expand(dims_of(&v), &to)?;
    let out = map_val(cx, &v, m, "expand")?;
    cx.set(node, 0, out)
}

fn pad(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let d = dims_of(&v).to_vec();
    let r = d.len();
    let pads = ints_from(cx, node, a, "pads", 1)?.ok_or("pads are missing")?;
    let value = match a.get("value") {
        Some(x) => x.f as f64,
        None => cx.konst(node, 2)?.and_then(|t| t.data.first().copied()).unwrap_or(0.0),
    };
    let axes: Vec<usize> = match cx.konst(node, 3)? {
        Some(t) => t.as_ints().iter().map(|&x| tensor::axis(x, r)).collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let (mut begin, mut end) = (vec![0i64; r], vec![0i64; r]);
    for (k, &ax) in axes.iter().enumerate() {
        begin[ax] = pads[k];
        end[ax] = pads[k + axes.len()];
    }
    let mode = match a.string("mode", "constant").as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        other => return Err(format!("pad mode `{other}` is not supported")),
    };
    let m = tensor::pad(&d, &begin, &end, mode)?;
    let holes: Vec<bool> = m.index.iter().map(|&j| j == super::super::Gather::ZERO).collect();
    let out = map_val(cx, &v, m, "pad")?;
    let out = match out {
        Val::Const(mut t) if value != 0.0 => {
            t.data.iter_mut().zip(&holes).filter(|(_, &h)| h).for_each(|(x, _)| *x = value);
            Val::Const(t)
        }
        Val::Data(dd) if value != 0.0 => {
            let shift = holes.iter().map(|&h| if h { value } else { 0.0 }).collect();
            Val::Data(affine(cx, &dd, vec![1.0; holes.len()], shift, "pad")?)
        }
        other => other,
    };
    cx.set(node, 0, out)
}

fn concat(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let vals: Vec<Val> = (0..node.input.len()).map(|i| val(cx, node, i)).collect::<Result<_, _>>()?;
    let r = dims_of(&vals[0]).len();
    let ax = tensor::axis(a.int("axis", 0), r)?;
    let dims: Vec<Vec<usize>> = vals.iter().map(|v| dims_of(v).to_vec()).collect();
    let (out_dims, entries) = tensor::concat(&dims, ax)?;
    if vals.iter().all(|v| matches!(v, Val::Const(_))) {
        let t: Vec<&Tensor> = vals.iter().map(|v| if let Val::Const(t) = v { t } else { unreachable!() }).collect();
        let data = entries.iter().map(|&(k, j)| t[k as usize].data[j as usize]).collect();
        let int = t.iter().all(|t| t.int);
        return cx.set(node, 0, Val::Const(Tensor { dims: out_dims, data, int }.checked()?));
    }
    let data: Vec<(usize, Data)> = vals
        .iter()
        .enumerate()
        .filter_map(|(k, v)| if let Val::Data(d) = v { Some((k, d.clone())) } else { None })
        .collect();
    // The common case: data tensors joined along channels, no constants.
    let channels = ax == 1 && data.len() == vals.len() && (r == 2 || r == 3 || r == 4);
    if channels && data.len() > 1 {
        let refs: Vec<&Data> = data.iter().map(|(_, d)| d).collect();
        let y = cx.emit(LayerKind::Merge(Merge::Concat), &refs, out_dims, "concat")?;
        return cx.set(node, 0, Val::Data(y));
    }
    // Otherwise: the data parts flattened and concatenated, then reordered; constant parts are
    // zeros in the gather plus a shift.
    let mut flat = Vec::with_capacity(data.len());
    let mut offset = vec![0usize; vals.len()];
    let mut total = 0usize;
    for (k, d) in &data {
        let n = tensor::numel(&d.dims).ok_or("size overflows")?;
        flat.push(cx.reshape(d, vec![1, n])?);
        offset[*k] = total;
        total += n;
    }
    let joined = if flat.len() == 1 {
        flat.pop().expect("one part")
    } else {
        let refs: Vec<&Data> = flat.iter().collect();
        cx.emit(LayerKind::Merge(Merge::Concat), &refs, vec![1, total], "concat")?
    };
    let mut shift = Vec::with_capacity(entries.len());
    let index: Vec<u32> = entries
        .iter()
        .map(|&(k, j)| match &vals[k as usize] {
            Val::Const(t) => {
                shift.push(t.data[j as usize]);
                super::super::Gather::ZERO
            }
            Val::Data(_) => {
                shift.push(0.0);
                (offset[k as usize] + j as usize) as u32
            }
        })
        .collect();
    let y = cx.gather(&joined, IndexMap { dims: out_dims, index }, "concat")?;
    let n = shift.len();
    let y = affine(cx, &y, vec![1.0; n], shift, "concat")?;
    cx.set(node, 0, Val::Data(y))
}

fn split(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let d = dims_of(&v).to_vec();
    let ax = tensor::axis(a.int("axis", 0), d.len())?;
    let k = node.output.len();
    let sizes: Vec<i64> = match ints_from(cx, node, a, "split", 1)? {
        Some(s) => s,
        None => {
            let parts = a.int("num_outputs", k as i64).max(1) as usize;
            let chunk = d[ax].div_ceil(parts);
            (0..parts).map(|p| chunk.min(d[ax].saturating_sub(p * chunk)) as i64).collect()
        }
    };
    if sizes.len() != k || sizes.iter().any(|&s| s < 0) || sizes.iter().sum::<i64>() != d[ax] as i64 {
        return Err(format!("split sizes {sizes:?} do not divide axis {ax} of {d:?} into {k} outputs"));
    }
    let mut start = 0i64;
    for (o, &s) in sizes.iter().enumerate() {
        let m = tensor::slice(&d, &[start], &[start + s], &[ax], &[1])?;
        let out = map_val(cx, &v, m, "split")?;
        start += s;
        if node.output[o].is_empty() {
            continue;
        }
        cx.set(node, o, out)?;
    }
    Ok(())
}

/// Nearest resize of `v` to `out` dims with `scales` per axis.
fn nearest(
    cx: &mut Cx<'_>,
    node: &pb::NodeProto,
    v: Val,
    out: Vec<usize>,
    scales: Vec<f64>,
    coord: &str,
    round: &str,
) -> Res {
    let m = tensor::resize_nearest(dims_of(&v), &out, &scales, coord, round)?;
    let y = map_val(cx, &v, m, "resize")?;
    cx.set(node, 0, y)
}

fn resize(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let d = dims_of(&v).to_vec();
    let mode = a.string("mode", "nearest");
    if mode != "nearest" {
        return Err(format!(
            "mode `{mode}` is not supported (nearest is; linear and cubic interpolation are not lowered yet)"
        ));
    }
    if a.int("antialias", 0) != 0 {
        return Err("antialias is not supported".into());
    }
    a.ignore(&["cubic_coeff_a", "exclude_outside", "extrapolation_value"]);
    if a.get("axes").is_some() || a.get("keep_aspect_ratio_policy").is_some_and(|p| p.s != b"stretch") {
        return Err("axes and keep_aspect_ratio_policy are not supported".into());
    }
    let coord = a.string("coordinate_transformation_mode", "half_pixel");
    let round = a.string("nearest_mode", "round_prefer_floor");
    // Opset 10: (X, scales); 11+: (X, roi, scales, sizes).
    let (scales, sizes) =
        if node.input.len() == 2 { (cx.konst(node, 1)?, None) } else { (cx.konst(node, 2)?, cx.konst(node, 3)?) };
    let (out, scales): (Vec<usize>, Vec<f64>) = match (scales.filter(|s| !s.data.is_empty()), sizes) {
        (Some(s), _) if s.data.len() == d.len() => {
            (d.iter().zip(&s.data).map(|(&n, &k)| (n as f64 * k).floor() as usize).collect(), s.data.clone())
        }
        (_, Some(z)) if z.data.len() == d.len() => {
            let out: Vec<usize> = z.data.iter().map(|&x| x as usize).collect();
            let scales = d.iter().zip(&out).map(|(&n, &o)| o as f64 / n as f64).collect();
            (out, scales)
        }
        _ => return Err("needs constant scales or sizes for every axis".into()),
    };
    if scales.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
        return Err(format!("scales {scales:?} must be positive"));
    }
    nearest(cx, node, v, out, scales, &coord, &round)
}

fn upsample(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let v = val(cx, node, 0)?;
    let d = dims_of(&v).to_vec();
    let mode = a.string("mode", "nearest");
    if mode != "nearest" {
        return Err(format!("mode `{mode}` is not supported (nearest is)"));
    }
    let scales: Vec<f64> = match a.get("scales") {
        Some(s) => s.floats.iter().map(|&x| x as f64).collect(),
        None => cx.need_konst(node, 1)?.data,
    };
    if scales.len() != d.len() || scales.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
        return Err(format!("scales {scales:?} must be positive, one per axis"));
    }
    let out = d.iter().zip(&scales).map(|(&n, &k)| (n as f64 * k).floor() as usize).collect();
    nearest(cx, node, v, out, scales, "asymmetric", "floor")
}

fn constant_of_shape(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let dims: Vec<usize> = cx
        .need_konst(node, 0)?
        .as_ints()
        .into_iter()
        .map(|x| usize::try_from(x).map_err(|_| "negative size"))
        .collect::<Result<_, _>>()?;
    let value = match a.get("value").and_then(|v| v.t.as_ref()) {
        Some(t) => tensor::decode(t, cx.dir())?,
        None => Tensor::scalar(0.0, false),
    };
    let n = tensor::numel(&dims).filter(|&n| n <= super::super::MAX_ELEMENTS).ok_or("the shape is too large")?;
    let x = value.data.first().copied().unwrap_or(0.0);
    cx.set(node, 0, Val::Const(Tensor { dims, data: vec![x; n], int: value.int }))
}

fn range(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    let get = |i: usize| -> Result<f64, String> {
        cx.need_konst(node, i)?.data.first().copied().ok_or_else(|| "an empty bound".to_string())
    };
    let (start, limit, delta) = (get(0)?, get(1)?, get(2)?);
    if delta == 0.0 {
        return Err("delta is 0".into());
    }
    let n = ((limit - start) / delta).ceil().max(0.0);
    if n > super::super::MAX_ELEMENTS as f64 {
        return Err("the range is too long".into());
    }
    let data: Vec<f64> = (0..n as usize).map(|i| start + i as f64 * delta).collect();
    let int = cx.need_konst(node, 0)?.int;
    cx.set(node, 0, Val::Const(Tensor { dims: vec![data.len()], data, int }))
}

fn where_(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    if !all_const(cx, node) {
        return Err("Where on the data path is not supported (only on constants)".into());
    }
    let (c, x, y) = (cx.need_konst(node, 0)?, cx.need_konst(node, 1)?, cx.need_konst(node, 2)?);
    let dims = tensor::broadcast_shape(&tensor::broadcast_shape(&c.dims, &x.dims)?, &y.dims)?;
    let (cv, xv, yv) = (spread(&c, &dims)?, spread(&x, &dims)?, spread(&y, &dims)?);
    let data = (0..cv.len()).map(|i| if cv[i] != 0.0 { xv[i] } else { yv[i] }).collect();
    cx.set(node, 0, Val::Const(Tensor { dims, data, int: x.int && y.int }.checked()?))
}

fn fold_only(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    let op = node.op_type.as_str();
    if !all_const(cx, node) {
        return Err(match NOT_PWL.iter().find(|(n, _)| *n == op) {
            Some((_, what)) => format!(
                "{op} is not piecewise linear ({what}); tessera computes exact regions of piecewise-linear networks only"
            ),
            None => format!("{op} of the data path is not piecewise linear"),
        });
    }
    let x = cx.need_konst(node, 0)?;
    let out = match op {
        "Equal" | "Less" | "Greater" | "And" | "Or" | "Pow" => {
            let y = cx.need_konst(node, 1)?;
            let mut t = tensor::binary(&x, &y, |p, q| {
                Ok(match op {
                    "Equal" => f64::from(p == q),
                    "Less" => f64::from(p < q),
                    "Greater" => f64::from(p > q),
                    "And" => f64::from(p != 0.0 && q != 0.0),
                    "Or" => f64::from(p != 0.0 || q != 0.0),
                    _ => p.powf(q),
                })
            })?;
            t.int = op != "Pow";
            t
        }
        _ => {
            let f = |v: f64| match op {
                "Sqrt" => v.sqrt(),
                "Reciprocal" => 1.0 / v,
                "Exp" => v.exp(),
                "Log" => v.ln(),
                "Floor" => v.floor(),
                "Ceil" => v.ceil(),
                "Not" => f64::from(v == 0.0),
                "Sigmoid" => 1.0 / (1.0 + (-v).exp()),
                "Tanh" => v.tanh(),
                _ => f64::NAN,
            };
            Tensor {
                data: x.data.iter().map(|&v| f(v)).collect(),
                int: x.int && matches!(op, "Floor" | "Ceil" | "Not"),
                ..x
            }
        }
    };
    if out.data.iter().any(|v| !v.is_finite()) {
        return Err(format!("folding {op} gives a value that is not finite"));
    }
    cx.set(node, 0, Val::Const(out.checked()?))
}

// ---------------------------------------------------------------------------------------------
// Arithmetic.

/// `a op b` where at least one side is on the data path.
fn binary(cx: &mut Cx<'_>, node: &pb::NodeProto, op: &str) -> Res {
    let (x, y) = (val(cx, node, 0)?, val(cx, node, 1)?);
    match (x, y) {
        (Val::Const(p), Val::Const(q)) => {
            let int = p.int && q.int;
            let t = tensor::binary(&p, &q, |u, v| match op {
                "Add" => Ok(u + v),
                "Sub" => Ok(u - v),
                "Mul" => Ok(u * v),
                // Integer division truncates toward zero; float division is exact division.
                _ if int && v == 0.0 => Err("integer division by zero".to_string()),
                _ if int => Ok((u / v).trunc()),
                _ if v == 0.0 => Err("division by zero".to_string()),
                _ => Ok(u / v),
            })?;
            cx.set(node, 0, Val::Const(t.checked()?))
        }
        (Val::Data(d), Val::Const(c)) | (Val::Const(c), Val::Data(d)) => {
            let data_first = matches!(val(cx, node, 0)?, Val::Data(_));
            let dims = tensor::broadcast_shape(&d.dims, &c.dims)?;
            let d = broadcast_data(cx, &d, &dims)?;
            let cv = spread(&c, &dims)?;
            let n = cv.len();
            let (scale, shift): (Vec<f64>, Vec<f64>) = match (op, data_first) {
                ("Add", _) => (vec![1.0; n], cv),
                ("Sub", true) => (vec![1.0; n], cv.iter().map(|v| -v).collect()),
                ("Sub", false) => (vec![-1.0; n], cv),
                ("Mul", _) => (cv, vec![0.0; n]),
                ("Div", true) => {
                    if cv.contains(&0.0) {
                        return Err("division by a constant with zeros".into());
                    }
                    (cv.iter().map(|v| 1.0 / v).collect(), vec![0.0; n])
                }
                _ => return Err("a constant divided by the data path is not piecewise linear".into()),
            };
            let y = affine(cx, &d, scale, shift, &op.to_lowercase())?;
            cx.set(node, 0, Val::Data(y))
        }
        (Val::Data(p), Val::Data(q)) => {
            let dims = tensor::broadcast_shape(&p.dims, &q.dims)?;
            let (p, q) = (broadcast_data(cx, &p, &dims)?, broadcast_data(cx, &q, &dims)?);
            let y = match op {
                "Add" => cx.emit(LayerKind::Merge(Merge::Add), &[&p, &q], dims, "add")?,
                "Sub" => {
                    let n = tensor::numel(&dims).ok_or("size overflows")?;
                    let negq = affine(cx, &q, vec![-1.0; n], vec![0.0; n], "neg")?;
                    cx.emit(LayerKind::Merge(Merge::Add), &[&p, &negq], dims, "sub")?
                }
                _ => {
                    return Err(format!(
                        "{op} of two tensors that depend on the input is not piecewise linear (a product)"
                    ))
                }
            };
            cx.set(node, 0, Val::Data(y))
        }
    }
}

fn add(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    binary(cx, node, "Add")
}

fn sub(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    binary(cx, node, "Sub")
}

fn mul(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    binary(cx, node, "Mul")
}

fn div(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    binary(cx, node, "Div")
}

/// Sum, Max or Min of any number of inputs (constants folded into one).
fn variadic(cx: &mut Cx<'_>, node: &pb::NodeProto, merge: Merge) -> Res {
    let vals: Vec<Val> = (0..node.input.len()).map(|i| val(cx, node, i)).collect::<Result<_, _>>()?;
    let f = |u: f64, v: f64| -> Result<f64, String> {
        Ok(match merge {
            Merge::Add => u + v,
            Merge::Max => u.max(v),
            _ => u.min(v),
        })
    };
    let mut konst: Option<Tensor> = None;
    let mut data: Vec<Data> = Vec::new();
    for v in vals {
        match v {
            Val::Const(t) => {
                konst = Some(match konst {
                    None => t,
                    Some(k) => tensor::binary(&k, &t, f)?,
                })
            }
            Val::Data(d) => data.push(d),
        }
    }
    if data.is_empty() {
        return cx.set(node, 0, Val::Const(konst.ok_or("no inputs")?.checked()?));
    }
    let mut dims = data[0].dims.clone();
    for d in &data[1..] {
        dims = tensor::broadcast_shape(&dims, &d.dims)?;
    }
    if let Some(k) = &konst {
        dims = tensor::broadcast_shape(&dims, &k.dims)?;
    }
    let data: Vec<Data> = data.iter().map(|d| broadcast_data(cx, d, &dims)).collect::<Result<_, _>>()?;
    let mut y = if data.len() == 1 {
        data[0].clone()
    } else {
        let refs: Vec<&Data> = data.iter().collect();
        cx.emit(LayerKind::Merge(merge), &refs, dims.clone(), merge.name())?
    };
    if let Some(k) = konst {
        let c = spread(&k, &dims)?;
        let n = c.len();
        y = match merge {
            Merge::Add => affine(cx, &y, vec![1.0; n], c, "add")?,
            // max(x, c) = c + relu(x − c); min(x, c) = c − relu(c − x).
            Merge::Max | Merge::Min => {
                let s = if merge == Merge::Max { 1.0 } else { -1.0 };
                let shifted = affine(cx, &y, vec![s; n], c.iter().map(|v| -s * v).collect(), "shift")?;
                let r = cx.emit(LayerKind::Activation(Activation::Relu), &[&shifted], dims.clone(), merge.name())?;
                affine(cx, &r, vec![s; n], c, "shift")?
            }
            Merge::Concat => unreachable!("not variadic"),
        };
    }
    cx.set(node, 0, Val::Data(y))
}

fn sum(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    variadic(cx, node, Merge::Add)
}

fn max(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    variadic(cx, node, Merge::Max)
}

fn min(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    variadic(cx, node, Merge::Min)
}

fn neg(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    match val(cx, node, 0)? {
        Val::Const(mut t) => {
            t.data.iter_mut().for_each(|x| *x = -*x);
            cx.set(node, 0, Val::Const(t))
        }
        Val::Data(d) => {
            let n = tensor::numel(&d.dims).ok_or("size overflows")?;
            let y = affine(cx, &d, vec![-1.0; n], vec![0.0; n], "neg")?;
            cx.set(node, 0, Val::Data(y))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Activations.

fn abs(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    activation(cx, node, Activation::Abs, "abs")
}

fn relu(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    activation(cx, node, Activation::Relu, "relu")
}

fn leaky_relu(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    activation(cx, node, Activation::LeakyRelu { slope: a.float("alpha", 0.01) }, "leaky_relu")
}

fn prelu(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    let d = cx.data(node, 0)?;
    let w = cx.need_konst(node, 1)?;
    let ch = super::canonical(&d.dims)?.channels();
    // One slope, or one per channel ([C], [C, 1], [C, 1, 1]).
    let per_channel = w.data.len() == ch && w.dims.iter().filter(|&&x| x != 1).count() <= 1;
    if w.data.len() != 1 && !per_channel {
        return Err(format!("slope of shape {:?}: expected one value or one per channel", w.dims));
    }
    let y = cx.emit(LayerKind::Activation(Activation::PRelu { slopes: w.data }), &[&d], d.dims.clone(), "prelu")?;
    cx.set(node, 0, Val::Data(y))
}

/// `clamp(x, lo, hi)` with either bound optional.
fn clamp(cx: &mut Cx<'_>, d: &Data, lo: Option<f64>, hi: Option<f64>, op: &str) -> Result<Data, String> {
    let n = tensor::numel(&d.dims).ok_or("size overflows")?;
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo < hi => {
            cx.emit(LayerKind::Activation(Activation::HardTanh { min: lo, max: hi }), &[d], d.dims.clone(), op)
        }
        // An empty range: the constant `hi` (ONNX's min(max(x, lo), hi)).
        (Some(_), Some(hi)) => affine(cx, d, vec![0.0; n], vec![hi; n], op),
        (Some(0.0), None) => cx.emit(LayerKind::Activation(Activation::Relu), &[d], d.dims.clone(), op),
        (Some(lo), None) => {
            let s = affine(cx, d, vec![1.0; n], vec![-lo; n], op)?;
            let r = cx.emit(LayerKind::Activation(Activation::Relu), &[&s], d.dims.clone(), op)?;
            affine(cx, &r, vec![1.0; n], vec![lo; n], op)
        }
        (None, Some(hi)) => {
            let s = affine(cx, d, vec![-1.0; n], vec![hi; n], op)?;
            let r = cx.emit(LayerKind::Activation(Activation::Relu), &[&s], d.dims.clone(), op)?;
            affine(cx, &r, vec![-1.0; n], vec![hi; n], op)
        }
        (None, None) => Ok(d.clone()),
    }
}

fn clip(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let bound = |i: usize, name: &str| -> Result<Option<f64>, String> {
        if let Some(t) = cx.konst(node, i)? {
            return Ok(Some(t.data.first().copied().ok_or("empty bound")?));
        }
        Ok(a.get(name).map(|x| x.f as f64).filter(|v| v.is_finite() && v.abs() < 3e38))
    };
    let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
    match val(cx, node, 0)? {
        Val::Const(mut t) => {
            t.data.iter_mut().for_each(|x| *x = x.max(lo.unwrap_or(f64::MIN)).min(hi.unwrap_or(f64::MAX)));
            cx.set(node, 0, Val::Const(t))
        }
        Val::Data(d) => {
            let y = clamp(cx, &d, lo, hi, "clip")?;
            cx.set(node, 0, Val::Data(y))
        }
    }
}

fn hard_sigmoid(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let (alpha, beta) = (a.float("alpha", 0.2), a.float("beta", 0.5));
    let d = cx.data(node, 0)?;
    let n = tensor::numel(&d.dims).ok_or("size overflows")?;
    // max(0, min(1, αx + β)).
    let s = affine(cx, &d, vec![alpha; n], vec![beta; n], "hardsigmoid")?;
    let y = clamp(cx, &s, Some(0.0), Some(1.0), "hardsigmoid")?;
    cx.set(node, 0, Val::Data(y))
}

fn softmax(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    a.ignore(&["axis"]);
    if !cx.is_output(node) {
        return Err(format!(
            "{} is not piecewise linear (a smooth function); it is dropped only as the model's last op",
            node.op_type
        ));
    }
    cx.note(format!(
        "the trailing {} was dropped: it does not change the argmax, so boundaries are computed on the logits",
        node.op_type
    ));
    identity(cx, node, a)
}

// ---------------------------------------------------------------------------------------------
// Linear layers.

fn gemm(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    if a.int("transA", 0) != 0 {
        return Err("transA is not supported".into());
    }
    let d = cx.data(node, 0)?;
    let b = cx.need_konst(node, 1)?.weight()?;
    let (alpha, beta) = (a.float("alpha", 1.0), a.float("beta", 1.0));
    let [r, c] = b.dims[..] else { return Err("B must be a matrix".into()) };
    let trans_b = a.int("transB", 0) != 0;
    let (out, inp) = if trans_b { (r, c) } else { (c, r) };
    if d.dims != [1, inp] {
        return Err(format!("A of shape {:?} does not match B ({inp} inputs)", d.dims));
    }
    let mut weight = Vec::with_capacity(out * inp);
    for o in 0..out {
        weight.extend((0..inp).map(|i| alpha * if trans_b { b.data[o * c + i] } else { b.data[i * c + o] }));
    }
    let bias: Vec<f64> = match cx.konst(node, 2)? {
        // C broadcasts to the output row.
        Some(t) => spread(&t, &[1, out])
            .map_err(|_| format!("the bias C of shape {:?} does not broadcast to {out} outputs", t.dims))?
            .into_iter()
            .map(|v| beta * v)
            .collect(),
        None => vec![0.0; out],
    };
    let y = cx.emit(LayerKind::Linear { weight, bias }, &[&d], vec![1, out], "linear")?;
    cx.set(node, 0, Val::Data(y))
}

fn matmul(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    if all_const(cx, node) {
        return Err("MatMul of constants is not folded".into());
    }
    let d = cx.data(node, 0).map_err(|_| "MatMul with the data path on the right is not supported".to_string())?;
    let b = cx.need_konst(node, 1)?.weight()?;
    let [k, n] = b.dims[..] else { return Err("the weight must be a matrix".into()) };
    if d.dims.last() != Some(&k) {
        return Err(format!("{:?} times a {k}×{n} matrix", d.dims));
    }
    let mut weight = Vec::with_capacity(n * k);
    for o in 0..n {
        weight.extend((0..k).map(|i| b.data[i * n + o]));
    }
    if d.dims.len() == 2 {
        let y = cx.emit(LayerKind::Linear { weight, bias: vec![0.0; n] }, &[&d], vec![1, n], "linear")?;
        return cx.set(node, 0, Val::Data(y));
    }
    // A product over the last axis of every row: rows as the pixels of a 1×1 convolution.
    let rows = d.dims[1..d.dims.len() - 1].iter().product::<usize>();
    let flat = cx.reshape(&d, vec![1, rows, k])?;
    let t = tensor::transpose(&flat.dims, &[0, 2, 1])?;
    let cols = cx.gather(&flat, t, "transpose")?;
    let window = Window::symmetric([1, 1], [1, 1], [0, 0], [1, 1]);
    let conv = cx.emit(
        LayerKind::Conv2d { weight, bias: vec![0.0; n], window, groups: 1 },
        &[&cols],
        vec![1, n, rows],
        "matmul",
    )?;
    let back = tensor::transpose(&conv.dims, &[0, 2, 1])?;
    let y = cx.gather(&conv, back, "transpose")?;
    let mut dims = d.dims.clone();
    *dims.last_mut().expect("rank > 2") = n;
    let y = cx.reshape(&y, dims)?;
    cx.set(node, 0, Val::Data(y))
}

/// Kernel, strides, pads, dilations of a 1D or 2D window op on `d`, as a 2D window (1D ops
/// are 2D ops on a height-1 image). `kernel` comes from the weight when there is one.
fn window(a: &Attrs<'_>, d: &Data, kernel: Option<Vec<usize>>, ceil: bool) -> Result<Window, String> {
    let spatial = d.dims.len().checked_sub(2).filter(|&s| s == 1 || s == 2).ok_or_else(|| {
        format!("needs a [batch, channels, length] or [batch, channels, height, width] input, got {:?}", d.dims)
    })?;
    let list = |name: &str, default: usize| -> Result<Vec<usize>, String> {
        match a.ints(name) {
            None => Ok(vec![default; spatial]),
            Some(v) if v.len() == spatial && v.iter().all(|&x| x >= 0) => Ok(v.iter().map(|&x| x as usize).collect()),
            Some(v) => Err(format!("{name} {v:?} must be {spatial} non-negative values")),
        }
    };
    let k = match a.ints("kernel_shape") {
        Some(v) if v.len() == spatial && v.iter().all(|&x| x > 0) => v.iter().map(|&x| x as usize).collect(),
        Some(v) => return Err(format!("kernel_shape {v:?} must be {spatial} positive values")),
        None => kernel.ok_or("kernel_shape is missing")?,
    };
    let (s, dil) = (list("strides", 1)?, list("dilations", 1)?);
    let input = &d.dims[2..];
    let (mut begin, mut end) = (vec![0usize; spatial], vec![0usize; spatial]);
    match a.string("auto_pad", "NOTSET").as_str() {
        "NOTSET" => {
            if let Some(p) = a.ints("pads") {
                if p.len() != 2 * spatial || p.iter().any(|&x| x < 0) {
                    return Err(format!("pads {p:?} must be {} non-negative values", 2 * spatial));
                }
                for i in 0..spatial {
                    (begin[i], end[i]) = (p[i] as usize, p[i + spatial] as usize);
                }
            }
        }
        "VALID" => {}
        mode @ ("SAME_UPPER" | "SAME_LOWER") => {
            for i in 0..spatial {
                let out = input[i].div_ceil(s[i].max(1));
                let span = dil[i] * (k[i] - 1) + 1;
                let total = ((out - 1) * s[i] + span).saturating_sub(input[i]);
                let small = total / 2;
                (begin[i], end[i]) = if mode == "SAME_UPPER" { (small, total - small) } else { (total - small, small) };
            }
        }
        other => return Err(format!("auto_pad `{other}` is not supported")),
    }
    let two = |v: &[usize], fill: usize| if spatial == 1 { [fill, v[0]] } else { [v[0], v[1]] };
    Ok(Window {
        kernel: two(&k, 1),
        stride: two(&s, 1),
        padding: two(&begin, 0),
        padding_end: two(&end, 0),
        dilation: two(&dil, 1),
        ceil_mode: ceil,
    })
}

/// The ONNX output dims of a window op with `channels` outputs on `d`.
fn window_dims(d: &Data, channels: usize, w: &Window) -> Result<Vec<usize>, String> {
    let (h, wd) = if d.dims.len() == 3 { (1, d.dims[2]) } else { (d.dims[2], d.dims[3]) };
    let (oh, ow) = w.output_size(h, wd).ok_or_else(|| format!("the window does not fit the input {:?}", d.dims))?;
    Ok(if d.dims.len() == 3 { vec![1, channels, ow] } else { vec![1, channels, oh, ow] })
}

fn conv(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let d = cx.data(node, 0)?;
    let w = cx
        .konst(node, 1)
        .map_err(|_| "a convolution whose kernel depends on the input is not piecewise linear".to_string())?
        .ok_or("the kernel is missing")?
        .weight()?;
    if w.dims.len() != d.dims.len() {
        return Err(format!("kernel of shape {:?} for an input of shape {:?}", w.dims, d.dims));
    }
    let oc = w.dims[0];
    let win = window(a, &d, Some(w.dims[2..].to_vec()), false)?;
    let groups = usize::try_from(a.int("group", 1)).map_err(|_| "negative group")?;
    let bias = match cx.konst(node, 2)? {
        Some(b) => b.data,
        None => vec![0.0; oc],
    };
    let dims = window_dims(&d, oc, &win)?;
    let y = cx.emit(LayerKind::Conv2d { weight: w.data, bias, window: win, groups }, &[&d], dims, "conv2d")?;
    cx.set(node, 0, Val::Data(y))
}

/// A transposed convolution as zero insertion and padding (a gather) followed by a stride-1
/// convolution with the kernel flipped and its channel axes swapped per group.
fn conv_transpose(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let d = cx.data(node, 0)?;
    let w = cx.need_konst(node, 1)?.weight()?;
    if w.dims.len() != d.dims.len() {
        return Err(format!("kernel of shape {:?} for an input of shape {:?}", w.dims, d.dims));
    }
    let groups = usize::try_from(a.int("group", 1)).ok().filter(|&g| g > 0).ok_or("group must be positive")?;
    let (ic, ocg) = (w.dims[0], w.dims[1]);
    if ic != d.dims[1] || ic % groups != 0 {
        return Err(format!("kernel of shape {:?} for {} input channels in {groups} groups", w.dims, d.dims[1]));
    }
    let spatial = d.dims.len() - 2;
    let k: Vec<usize> = w.dims[2..].to_vec();
    let ints = |name: &str, default: i64| -> Result<Vec<i64>, String> {
        match a.ints(name) {
            None => Ok(vec![default; spatial]),
            Some(v) if v.len() == spatial => Ok(v),
            Some(v) => Err(format!("{name} {v:?} must have {spatial} values")),
        }
    };
    let (s, dil, op) = (ints("strides", 1)?, ints("dilations", 1)?, ints("output_padding", 0)?);
    if s.iter().chain(&dil).any(|&x| x <= 0) || op.iter().any(|&x| x < 0) {
        return Err("strides and dilations must be positive, output_padding non-negative".into());
    }
    if a.get("kernel_shape").is_some_and(|ks| ks.ints.iter().map(|&x| x as usize).ne(k.iter().copied())) {
        return Err("kernel_shape differs from the kernel".into());
    }
    let input = &d.dims[2..];
    let (mut begin, mut end) = (vec![0i64; spatial], vec![0i64; spatial]);
    let auto = a.string("auto_pad", "NOTSET");
    if let Some(out_shape) = a.ints("output_shape") {
        // Padding from the requested size (ONNX: SAME_UPPER puts the extra at the end).
        if out_shape.len() != spatial {
            return Err("output_shape must give every spatial size".into());
        }
        for i in 0..spatial {
            let total = s[i] * (input[i] as i64 - 1) + op[i] + (k[i] as i64 - 1) * dil[i] + 1 - out_shape[i];
            let half = total / 2;
            (begin[i], end[i]) = if auto == "SAME_UPPER" { (half, total - half) } else { (total - half, half) };
        }
    } else {
        match auto.as_str() {
            "NOTSET" => {
                if let Some(p) = a.ints("pads") {
                    if p.len() != 2 * spatial {
                        return Err(format!("pads {p:?} must have {} values", 2 * spatial));
                    }
                    for i in 0..spatial {
                        (begin[i], end[i]) = (p[i], p[i + spatial]);
                    }
                }
            }
            "VALID" => {}
            other => return Err(format!("auto_pad `{other}` without output_shape is not supported")),
        }
    }
    // Zero insertion and padding: position y of the padded input reads input (y − lead) / s.
    let mut dims2 = vec![1, ic];
    let mut lead = Vec::with_capacity(spatial);
    for i in 0..spatial {
        let span = (k[i] as i64 - 1) * dil[i];
        let l = span - begin[i];
        let n2 = (input[i] as i64 - 1) * s[i] + 1 + l + (span - end[i] + op[i]);
        if n2 < span + 1 {
            return Err("the pads leave no output".into());
        }
        lead.push(l);
        dims2.push(n2 as usize);
    }
    let n_in: Vec<i64> = input.iter().map(|&x| x as i64).collect();
    let total =
        tensor::numel(&dims2).filter(|&n| n <= super::super::MAX_ELEMENTS).ok_or("the upsampled input is too large")?;
    let mut index = Vec::with_capacity(total);
    let inner: usize = dims2[2..].iter().product();
    let in_inner: usize = input.iter().product();
    for c in 0..ic {
        for p in 0..inner {
            // Spatial coordinates of p in dims2[2..].
            let (y, x) = if spatial == 1 { (0, p as i64) } else { ((p / dims2[3]) as i64, (p % dims2[3]) as i64) };
            let coords: Vec<i64> = if spatial == 1 { vec![x] } else { vec![y, x] };
            let mut src = Some(0usize);
            for i in 0..spatial {
                let t = coords[i] - lead[i];
                let ok = t >= 0 && t % s[i] == 0 && t / s[i] < n_in[i];
                src = match (src, ok) {
                    (Some(acc), true) => Some(acc * input[i] + (t / s[i]) as usize),
                    _ => None,
                };
            }
            index.push(src.map_or(super::super::Gather::ZERO, |j| (c * in_inner + j) as u32));
        }
    }
    let up = cx.gather(&d, IndexMap { dims: dims2.clone(), index }, "conv_transpose")?;
    // Kernel [ic, ocg, k...] to [oc, icg, k...] flipped.
    let icg = ic / groups;
    let oc = ocg * groups;
    let kk: usize = k.iter().product();
    let mut weight = vec![0.0; oc * icg * kk];
    for g in 0..groups {
        for ci in 0..icg {
            for o in 0..ocg {
                for t in 0..kk {
                    let src = ((g * icg + ci) * ocg + o) * kk + t;
                    let dst = ((g * ocg + o) * icg + ci) * kk + (kk - 1 - t);
                    weight[dst] = w.data[src];
                }
            }
        }
    }
    let bias = match cx.konst(node, 2)? {
        Some(b) => b.data,
        None => vec![0.0; oc],
    };
    let two =
        |v: &[i64], fill: usize| if spatial == 1 { [fill, v[0] as usize] } else { [v[0] as usize, v[1] as usize] };
    let kernel = if spatial == 1 { [1, k[0]] } else { [k[0], k[1]] };
    let win = Window::symmetric(kernel, [1, 1], [0, 0], two(&dil, 1));
    let dims = window_dims(&up, oc, &win)?;
    let y = cx.emit(LayerKind::Conv2d { weight, bias, window: win, groups }, &[&up], dims, "conv_transpose")?;
    cx.set(node, 0, Val::Data(y))
}

fn batch_norm(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    a.ignore(&["momentum", "spatial"]);
    if a.int("training_mode", 0) != 0 || node.output.len() > 1 && node.output[1..].iter().any(|o| !o.is_empty()) {
        return Err("training mode is not supported: tessera maps the network in evaluation mode".into());
    }
    let d = cx.data(node, 0)?;
    let (g, b, mean, var) =
        (cx.need_konst(node, 1)?, cx.need_konst(node, 2)?, cx.need_konst(node, 3)?, cx.need_konst(node, 4)?);
    let eps = a.float("epsilon", 1e-5);
    let ch = d.dims.get(1).copied().ok_or("needs a channel axis")?;
    if [&g, &b, &mean, &var].iter().any(|t| t.data.len() != ch) {
        return Err(format!("parameters must have {ch} values, one per channel"));
    }
    let mut scale = Vec::with_capacity(ch);
    let mut shift = Vec::with_capacity(ch);
    for i in 0..ch {
        let v = var.data[i] + eps;
        if v <= 0.0 {
            return Err(format!("channel {i}: variance + epsilon = {v} must be positive"));
        }
        let sc = g.data[i] / v.sqrt();
        scale.push(sc);
        shift.push(b.data[i] - mean.data[i] * sc);
    }
    let y = cx.emit(LayerKind::BatchNorm { scale, shift }, &[&d], d.dims.clone(), "batch_norm")?;
    cx.set(node, 0, Val::Data(y))
}

fn max_pool(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    if node.output.len() > 1 && node.output[1..].iter().any(|o| !o.is_empty()) {
        return Err("the indices output of MaxPool is not supported".into());
    }
    if a.int("storage_order", 0) != 0 {
        return Err("storage_order 1 is not supported".into());
    }
    let d = cx.data(node, 0)?;
    let win = window(a, &d, None, a.int("ceil_mode", 0) != 0)?;
    let dims = window_dims(&d, d.dims[1], &win)?;
    let y = cx.emit(LayerKind::MaxPool2d { window: win }, &[&d], dims, "max_pool2d")?;
    cx.set(node, 0, Val::Data(y))
}

fn average_pool(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    let d = cx.data(node, 0)?;
    let win = window(a, &d, None, a.int("ceil_mode", 0) != 0)?;
    if win.dilation != [1, 1] {
        return Err("dilations are not supported for AveragePool".into());
    }
    let count_include_pad = a.int("count_include_pad", 0) != 0;
    let dims = window_dims(&d, d.dims[1], &win)?;
    let y = cx.emit(LayerKind::AvgPool2d { window: win, count_include_pad }, &[&d], dims, "avg_pool2d")?;
    cx.set(node, 0, Val::Data(y))
}

/// Kinds of reduction.
#[derive(Clone, Copy, PartialEq)]
enum Reduce {
    Mean,
    Sum,
    Max,
    Min,
}

/// A reduction over `axes` of `v` (the reduced axes moved last by a gather when they are not
/// already, then a pool over them, then the output shape).
fn reduce(cx: &mut Cx<'_>, node: &pb::NodeProto, v: Val, axes: Vec<usize>, keep: bool, how: Reduce) -> Res {
    let d = dims_of(&v).to_vec();
    let out_dims: Vec<usize> = if keep {
        d.iter().enumerate().map(|(i, &n)| if axes.contains(&i) { 1 } else { n }).collect()
    } else {
        d.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &n)| n).collect()
    };
    let kept: Vec<usize> = (0..d.len()).filter(|i| !axes.contains(i)).collect();
    let perm: Vec<usize> = kept.iter().chain(axes.iter()).copied().collect();
    let k: usize = axes.iter().map(|&i| d[i]).product();
    let rest: usize = kept.iter().map(|&i| d[i]).product();
    if let Val::Const(t) = v {
        let m = tensor::transpose(&d, &perm)?;
        let t = t.mapped(&m);
        let data = t
            .data
            .chunks(k.max(1))
            .map(|c| match how {
                Reduce::Mean => c.iter().sum::<f64>() / k as f64,
                Reduce::Sum => c.iter().sum(),
                Reduce::Max => c.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Reduce::Min => c.iter().copied().fold(f64::INFINITY, f64::min),
            })
            .collect();
        return cx.set(
            node,
            0,
            Val::Const(Tensor { dims: out_dims, data, int: t.int && how != Reduce::Mean }.checked()?),
        );
    }
    let Val::Data(data) = v else { unreachable!() };
    if k == 0 {
        return Err("reduces over an empty axis".into());
    }
    let m = tensor::transpose(&d, &perm)?;
    let moved = cx.gather(&data, m, "transpose")?;
    // `rest` rows of `k` entries (rest includes the batch 1).
    let y = match how {
        Reduce::Max | Reduce::Min => {
            let sign = if how == Reduce::Min { -1.0 } else { 1.0 };
            let n = rest * k;
            let flat = cx.reshape(&moved, vec![1, n])?;
            let flat = affine(cx, &flat, vec![sign; n], vec![0.0; n], "neg")?;
            let y = cx.emit(LayerKind::Maxout { pool: k }, &[&flat], vec![1, rest], "reduce_max")?;
            affine(cx, &y, vec![sign; rest], vec![0.0; rest], "neg")?
        }
        Reduce::Mean | Reduce::Sum => {
            let rows = cx.reshape(&moved, vec![1, rest, 1, k])?;
            let win = Window::symmetric([1, k], [1, k], [0, 0], [1, 1]);
            let y = cx.emit(
                LayerKind::AvgPool2d { window: win, count_include_pad: true },
                &[&rows],
                vec![1, rest, 1, 1],
                "reduce_mean",
            )?;
            let y = cx.reshape(&y, vec![1, rest])?;
            if how == Reduce::Sum {
                affine(cx, &y, vec![k as f64; rest], vec![0.0; rest], "reduce_sum")?
            } else {
                y
            }
        }
    };
    let y = cx.reshape(&y, out_dims)?;
    cx.set(node, 0, Val::Data(y))
}

fn reduce_axes(cx: &Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>, rank: usize) -> Result<Vec<usize>, String> {
    let axes = ints_from(cx, node, a, "axes", 1)?.unwrap_or_default();
    let noop = a.int("noop_with_empty_axes", 0) != 0;
    if axes.is_empty() {
        if noop {
            return Err("noop_with_empty_axes is not supported".into());
        }
        return Ok((0..rank).collect());
    }
    let mut v = axes.iter().map(|&x| tensor::axis(x, rank)).collect::<Result<Vec<_>, _>>()?;
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

fn reduce_op(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>, how: Reduce) -> Res {
    let v = val(cx, node, 0)?;
    let axes = reduce_axes(cx, node, a, dims_of(&v).len())?;
    let keep = a.int("keepdims", 1) != 0;
    reduce(cx, node, v, axes, keep, how)
}

fn reduce_mean(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    reduce_op(cx, node, a, Reduce::Mean)
}

fn reduce_sum(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    reduce_op(cx, node, a, Reduce::Sum)
}

fn reduce_max(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    reduce_op(cx, node, a, Reduce::Max)
}

fn reduce_min(cx: &mut Cx<'_>, node: &pb::NodeProto, a: &Attrs<'_>) -> Res {
    reduce_op(cx, node, a, Reduce::Min)
}

fn global_average_pool(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    let d = cx.data(node, 0)?;
    let axes = (2..d.dims.len()).collect();
    reduce(cx, node, Val::Data(d), axes, true, Reduce::Mean)
}

fn global_max_pool(cx: &mut Cx<'_>, node: &pb::NodeProto, _: &Attrs<'_>) -> Res {
    let d = cx.data(node, 0)?;
    let axes = (2..d.dims.len()).collect();
    reduce(cx, node, Val::Data(d), axes, true, Reduce::Max)
}
