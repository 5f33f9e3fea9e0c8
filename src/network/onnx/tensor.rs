//! Constant tensors of an ONNX graph, and index maps: the shape operations (transpose, slice,
//! gather, pad, expand, concatenate, nearest resize) as a map from output entries to input
//! entries, applied to constants when folding and emitted as a `Gather` layer on the data path.

use super::super::onnx_proto as pb;
use super::super::{Gather, MAX_ELEMENTS};

/// Largest constant (a weight) one tensor may hold: 2^27 values (VGG's 25088 × 4096 classifier
/// fits). Tensors of the data path stay within `MAX_ELEMENTS`.
pub(super) const MAX_CONST: usize = 1 << 27;
use std::path::Path;

/// A constant tensor (integers are exact in f64 up to 2^53), and whether its element type is an
/// integer one (integer division truncates; float division does not).
#[derive(Clone, Debug)]
pub(super) struct Tensor {
    pub dims: Vec<usize>,
    pub data: Vec<f64>,
    pub int: bool,
}

impl Tensor {
    pub fn ints(v: &[i64]) -> Tensor {
        Tensor { dims: vec![v.len()], data: v.iter().map(|&x| x as f64).collect(), int: true }
    }

    pub fn scalar(x: f64, int: bool) -> Tensor {
        Tensor { dims: vec![], data: vec![x], int }
    }

    /// Checks the invariants every tensor keeps: its dimensions multiply to its number of
    /// values, within the element limit.
    pub fn checked(self) -> Result<Tensor, String> {
        let count = numel(&self.dims);
        if count != Some(self.data.len()) {
            return Err(format!("{} values for shape {:?}", self.data.len(), self.dims));
        }
        if self.data.len() > MAX_CONST {
            return Err(format!("{} values, above the limit of {MAX_CONST}", self.data.len()));
        }
        Ok(self)
    }

    /// A weight: a tensor with at least one value.
    pub fn weight(self) -> Result<Tensor, String> {
        if self.data.is_empty() {
            return Err(format!("the weight of shape {:?} has no values", self.dims));
        }
        Ok(self)
    }

    /// The values as integers (shape vectors, axes, indices).
    pub fn as_ints(&self) -> Vec<i64> {
        self.data.iter().map(|&x| x as i64).collect()
    }

    /// The tensor through an index map (zeros where the map says so).
    pub fn mapped(&self, m: &IndexMap) -> Tensor {
        let data = m.index.iter().map(|&j| if j == Gather::ZERO { 0.0 } else { self.data[j as usize] }).collect();
        Tensor { dims: m.dims.clone(), data, int: self.int }
    }
}

/// The product of `dims`, or `None` on overflow.
pub(super) fn numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Decodes an initializer or a `Constant` value; external data is read from `dir`.
pub(super) fn decode(t: &pb::TensorProto, dir: Option<&Path>) -> Result<Tensor, String> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let count = numel(&dims).ok_or("dimensions overflow")?;
    if count > MAX_CONST {
        return Err(format!("{count} values, above the limit of {MAX_CONST}"));
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
        pb::dtype::BOOL | pb::dtype::UINT8 if !raw.is_empty() => raw.iter().map(|&b| b as f64).collect(),
        pb::dtype::INT8 if !raw.is_empty() => raw.iter().map(|&b| b as i8 as f64).collect(),
        pb::dtype::INT32 | pb::dtype::BOOL | pb::dtype::UINT8 | pb::dtype::INT8 => {
            t.int32_data.iter().map(|&x| x as f64).collect()
        }
        other => return Err(format!("element type {other} is not supported (float, double, integers, bool are)")),
    };
    if data.len() != count {
        return Err(format!("{} values for shape {dims:?}", data.len()));
    }
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(format!("value {i} is not finite"));
    }
    let int = !matches!(t.data_type, pb::dtype::FLOAT | pb::dtype::DOUBLE);
    Ok(Tensor { dims, data, int })
}

/// An output shape and, per output entry (row-major), the input entry it copies or
/// [`Gather::ZERO`].
#[derive(Clone, Debug)]
pub(super) struct IndexMap {
    pub dims: Vec<usize>,
    pub index: Vec<u32>,
}

impl IndexMap {
    /// Whether the map copies every entry in place.
    pub fn is_identity(&self) -> bool {
        self.index.iter().enumerate().all(|(i, &j)| j as usize == i)
    }
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Builds a map of output shape `out` from `f(output multi-index) -> input flat index`.
fn build(out: Vec<usize>, mut f: impl FnMut(&[usize]) -> Option<usize>) -> Result<IndexMap, String> {
    let n = numel(&out).filter(|&n| n <= MAX_CONST).ok_or_else(|| format!("shape {out:?} is too large"))?;
    let mut index = Vec::with_capacity(n);
    let mut idx = vec![0usize; out.len()];
    for _ in 0..n {
        index.push(f(&idx).map_or(Gather::ZERO, |j| j as u32));
        for a in (0..out.len()).rev() {
            idx[a] += 1;
            if idx[a] < out[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    Ok(IndexMap { dims: out, index })
}

/// A normalised axis (negative counts from the end).
pub(super) fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let k = if a < 0 { a + r } else { a };
    if (0..r).contains(&k) {
        Ok(k as usize)
    } else {
        Err(format!("axis {a} is out of range for rank {rank}"))
    }
}

pub(super) fn transpose(dims: &[usize], perm: &[usize]) -> Result<IndexMap, String> {
    let mut seen = vec![false; dims.len()];
    if perm.len() != dims.len() || perm.iter().any(|&p| p >= dims.len() || std::mem::replace(&mut seen[p], true)) {
        return Err(format!("perm {perm:?} is not a permutation of {} axes", dims.len()));
    }
    let st = strides(dims);
    let out: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    build(out, |o| Some(o.iter().zip(perm).map(|(&i, &p)| i * st[p]).sum()))
}

/// ONNX `Slice`: per axis, `start`, `end`, `step` (clamped as the spec says).
pub(super) fn slice(
    dims: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: &[usize],
    steps: &[i64],
) -> Result<IndexMap, String> {
    let mut first: Vec<i64> = vec![0; dims.len()];
    let mut step: Vec<i64> = vec![1; dims.len()];
    let mut out = dims.to_vec();
    for (k, &a) in axes.iter().enumerate() {
        let n = dims[a] as i64;
        let s = *steps.get(k).unwrap_or(&1);
        if s == 0 {
            return Err("slice step 0".into());
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
        let (lo, hi) = if s > 0 { (0, n) } else { (-1, n - 1) };
        let b = norm(starts[k]).clamp(lo, hi);
        let e = norm(ends[k]).clamp(lo, hi);
        let len = if s > 0 { ((e - b).max(0) + s - 1) / s } else { ((b - e).max(0) - s - 1) / -s };
        first[a] = b;
        step[a] = s;
        out[a] = len as usize;
    }
    let st = strides(dims);
    build(out, |o| Some(o.iter().enumerate().map(|(a, &i)| (first[a] + i as i64 * step[a]) as usize * st[a]).sum()))
}

/// ONNX `Gather` along `axis` with constant `indices` (negative ones count from the end).
pub(super) fn gather(dims: &[usize], ax: usize, indices: &Tensor) -> Result<IndexMap, String> {
    let n = dims[ax] as i64;
    let idx: Vec<usize> = indices
        .as_ints()
        .into_iter()
        .map(|i| {
            let k = if i < 0 { i + n } else { i };
            if (0..n).contains(&k) {
                Ok(k as usize)
            } else {
                Err(format!("index {i} is out of range for a dimension of {n}"))
            }
        })
        .collect::<Result<_, _>>()?;
    let mut out: Vec<usize> = dims[..ax].to_vec();
    out.extend(&indices.dims);
    out.extend(&dims[ax + 1..]);
    let st = strides(dims);
    let (r, q) = (indices.dims.len(), strides(&indices.dims));
    build(out, |o| {
        let flat: usize = o[ax..ax + r].iter().zip(&q).map(|(i, s)| i * s).sum();
        let mut j = idx[flat] * st[ax];
        for a in 0..ax {
            j += o[a] * st[a];
        }
        for a in ax + 1..dims.len() {
            j += o[a - 1 + r] * st[a];
        }
        Some(j)
    })
}

/// ONNX `GatherND` (no batch dimensions) with constant `indices` of shape `[..., k]`.
pub(super) fn gather_nd(dims: &[usize], indices: &Tensor) -> Result<IndexMap, String> {
    let k = *indices.dims.last().ok_or("indices must have at least one axis")?;
    if k == 0 || k > dims.len() {
        return Err(format!("index tuples of {k} entries for a tensor of rank {}", dims.len()));
    }
    let st = strides(dims);
    let tuples = indices.as_ints();
    let block: usize = dims[k..].iter().product();
    let mut out: Vec<usize> = indices.dims[..indices.dims.len() - 1].to_vec();
    out.extend(&dims[k..]);
    let count = tuples.len() / k;
    let mut starts = Vec::with_capacity(count);
    for t in tuples.chunks(k) {
        let mut j = 0usize;
        for (a, &i) in t.iter().enumerate() {
            let n = dims[a] as i64;
            let i = if i < 0 { i + n } else { i };
            if !(0..n).contains(&i) {
                return Err(format!("index {i} is out of range for a dimension of {n}"));
            }
            j += i as usize * st[a];
        }
        starts.push(j);
    }
    let mut flat = 0usize;
    build(out, |_| {
        let j = starts[flat / block.max(1)] + flat % block.max(1);
        flat += 1;
        Some(j)
    })
}

/// How `Pad` fills.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum PadMode {
    Constant,
    Reflect,
    Edge,
}

/// ONNX `Pad` with per-axis `begin`/`end` amounts (negative ones crop).
pub(super) fn pad(dims: &[usize], begin: &[i64], end: &[i64], mode: PadMode) -> Result<IndexMap, String> {
    let mut out = Vec::with_capacity(dims.len());
    for a in 0..dims.len() {
        let n = dims[a] as i64 + begin[a] + end[a];
        if n < 0 {
            return Err(format!("pads crop axis {a} below zero"));
        }
        if mode == PadMode::Reflect && (begin[a] >= dims[a] as i64 || end[a] >= dims[a] as i64) {
            return Err(format!("reflect pads of axis {a} must be smaller than its size {}", dims[a]));
        }
        if mode != PadMode::Constant && dims[a] == 0 {
            return Err("cannot pad an empty axis by reflection or edge".into());
        }
        out.push(n as usize);
    }
    let st = strides(dims);
    build(out, |o| {
        let mut j = 0;
        for a in 0..dims.len() {
            let n = dims[a] as i64;
            let mut i = o[a] as i64 - begin[a];
            if !(0..n).contains(&i) {
                match mode {
                    PadMode::Constant => return None,
                    PadMode::Edge => i = i.clamp(0, n - 1),
                    PadMode::Reflect => {
                        if n == 1 {
                            i = 0;
                        } else {
                            let period = 2 * (n - 1);
                            i = i.rem_euclid(period);
                            if i >= n {
                                i = period - i;
                            }
                        }
                    }
                }
            }
            j += i as usize * st[a];
        }
        Some(j)
    })
}

/// The numpy broadcast of two shapes.
pub(super) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let get = |d: &[usize], i: usize| if i + d.len() >= r { d[i + d.len() - r] } else { 1 };
    (0..r)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// The map that broadcasts `dims` to `to` (`Expand`, and operands of elementwise ops).
pub(super) fn expand(dims: &[usize], to: &[usize]) -> Result<IndexMap, String> {
    if broadcast_shape(dims, to)? != to {
        return Err(format!("{dims:?} does not broadcast to {to:?}"));
    }
    let st = strides(dims);
    let off = to.len() - dims.len();
    build(to.to_vec(), |o| Some((0..dims.len()).map(|a| if dims[a] == 1 { 0 } else { o[a + off] * st[a] }).sum()))
}

/// Nearest-neighbour resize to `out` (ONNX `Resize` coordinate and rounding modes).
pub(super) fn resize_nearest(
    dims: &[usize],
    out: &[usize],
    scales: &[f64],
    coord: &str,
    rounding: &str,
) -> Result<IndexMap, String> {
    if numel(out).is_none_or(|n| n > MAX_CONST) {
        return Err(format!("the resized shape {out:?} is too large"));
    }
    let st = strides(dims);
    let src = |a: usize, i: usize| -> Result<usize, String> {
        let (n_in, n_out, s) = (dims[a] as f64, out[a] as f64, scales[a]);
        let x = i as f64;
        let orig = match coord {
            "half_pixel" => (x + 0.5) / s - 0.5,
            "pytorch_half_pixel" => {
                if n_out > 1.0 {
                    (x + 0.5) / s - 0.5
                } else {
                    0.0
                }
            }
            "align_corners" => {
                if n_out > 1.0 {
                    x * (n_in - 1.0) / (n_out - 1.0)
                } else {
                    0.0
                }
            }
            "asymmetric" => x / s,
            "tf_half_pixel_for_nn" => (x + 0.5) / s,
            other => return Err(format!("coordinate_transformation_mode `{other}` is not supported")),
        };
        let r = match rounding {
            "round_prefer_floor" => {
                if orig.fract() == 0.5 {
                    orig.floor()
                } else {
                    orig.round()
                }
            }
            "round_prefer_ceil" => orig.round(),
            "floor" => orig.floor(),
            "ceil" => orig.ceil(),
            other => return Err(format!("nearest_mode `{other}` is not supported")),
        };
        Ok(r.clamp(0.0, n_in - 1.0) as usize)
    };
    // Per axis, the source coordinate of every output coordinate.
    let table: Vec<Vec<usize>> =
        (0..dims.len()).map(|a| (0..out[a]).map(|i| src(a, i)).collect::<Result<_, _>>()).collect::<Result<_, _>>()?;
    build(out.to_vec(), |o| Some(o.iter().enumerate().map(|(a, &i)| table[a][i] * st[a]).sum()))
}

/// Per output entry of a concatenation, `(part, entry of that part)`.
pub(super) type Sources = Vec<(u32, u32)>;

/// Concatenation along `ax` of tensors of shapes `parts`: the output shape, and where each
/// output entry comes from.
pub(super) fn concat(parts: &[Vec<usize>], ax: usize) -> Result<(Vec<usize>, Sources), String> {
    let first = &parts[0];
    let mut out = first.clone();
    out[ax] = 0;
    for p in parts {
        if p.len() != first.len() || (0..p.len()).any(|a| a != ax && p[a] != first[a]) {
            return Err(format!("cannot concatenate {first:?} and {p:?} along axis {ax}"));
        }
        out[ax] = out[ax]
            .checked_add(p[ax])
            .ok_or_else(|| format!("the concatenation exceeds the limit of {MAX_ELEMENTS} values"))?;
    }
    let n = numel(&out)
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| format!("the concatenation exceeds the limit of {MAX_ELEMENTS} values"))?;
    let mut entries = Vec::with_capacity(n);
    let outer: usize = out[..ax].iter().product();
    for o in 0..outer {
        for (k, p) in parts.iter().enumerate() {
            let block: usize = p[ax..].iter().product();
            entries.extend((o * block..(o + 1) * block).map(|j| (k as u32, j as u32)));
        }
    }
    Ok((out, entries))
}

/// `f(a, b)` elementwise with numpy broadcasting.
pub(super) fn binary(a: &Tensor, b: &Tensor, f: impl Fn(f64, f64) -> Result<f64, String>) -> Result<Tensor, String> {
    let dims = broadcast_shape(&a.dims, &b.dims)?;
    let (ea, eb) = (expand(&a.dims, &dims)?, expand(&b.dims, &dims)?);
    let data = ea
        .index
        .iter()
        .zip(&eb.index)
        .map(|(&i, &j)| f(a.data[i as usize], b.data[j as usize]))
        .collect::<Result<Vec<f64>, String>>()?;
    Ok(Tensor { dims, data, int: a.int && b.int })
}
