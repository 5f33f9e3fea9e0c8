//! The affine maps between nonlinearities, as the engine applies them: to the three vectors of
//! many cells at once (batched, at matrix-multiply speed), and one column at a time (the sparse
//! change of the next pre-activations when one unit changes).
//!
//! An [`Affine`] is a chain of primitive linear maps ([`Op`]: dense matrices, convolutions,
//! per-channel scales, average pools, embeddings into a wider vector). Small chains are composed
//! into one dense matrix (every MLP); large ones stay a chain and are applied op by op, a
//! convolution as an im2col product per row. Columns come from the dense matrix, from the
//! convolution's kernel (a stencil of `C_out·k·k` entries, generated on the fly), from an
//! identity or embedding, or from a sparse matrix composed once for other chains. A dense
//! matrix that fits a core's cache is applied by `kernels::product_skipping_zeros` (three rows
//! of a map at a time, skipping the inputs a ReLU switched off), and so is a single convolution
//! with eight or more output channels per group, one output position at a time over its
//! gathered taps (`kernels::conv_position`); larger matrices and other convolutions go through
//! `matrixmultiply`. Written by hand because this is the engine's hot path, and the
//! column structure is what makes a convolution's rank-1 updates sparse.

use super::acc::Acc;
use super::kernels;
use crate::network::{Gather, Layer, LayerKind, Shape, Window};
use std::sync::Arc;

/// A gather with its inverse (shared by the chains that copy it).
#[derive(Debug)]
pub(crate) struct GatherMap {
    index: Vec<u32>,
    ptr: Vec<u32>,
    inv: Vec<u32>,
}

impl GatherMap {
    fn new(index: &[u32], n_in: usize) -> Self {
        let mut count = vec![0u32; n_in + 1];
        for &j in index.iter().filter(|&&j| j != Gather::ZERO) {
            count[j as usize + 1] += 1;
        }
        for j in 0..n_in {
            count[j + 1] += count[j];
        }
        let mut fill = count.clone();
        let mut inv = vec![0u32; count[n_in] as usize];
        for (i, &j) in index.iter().enumerate().filter(|(_, &j)| j != Gather::ZERO) {
            inv[fill[j as usize] as usize] = i as u32;
            fill[j as usize] += 1;
        }
        GatherMap { index: index.to_vec(), ptr: count, inv }
    }
}

/// Largest chain composed into one dense matrix (entries): 32 MB of f64.
const MAX_DENSE_ENTRIES: usize = 4 << 20;
/// Largest dense matrix applied by [`kernels::product_skipping_zeros`] (entries: 1 MB, within
/// a core's L2 cache, which that product reads once per map); larger ones go through the
/// blocked product.
const MAX_SKIPPING_ENTRIES: usize = 128 << 10;
/// Largest sparse matrix composed for a chain whose columns have no closed form (entries).
const MAX_SPARSE_ENTRIES: usize = 16 << 20;

/// A primitive linear map between flat vectors (no bias).
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// `y = W x`, `w` row-major `n_out × n_in`.
    Dense { w: Vec<f64>, n_in: usize, n_out: usize },
    /// 2D convolution in PyTorch's layout (weight `[c_out, c_in / groups, kh, kw]`).
    Conv { weight: Vec<f64>, input: [usize; 3], output: [usize; 3], window: Window, groups: usize },
    /// Average pooling, with the inverse divisor of every output position (`oh·ow`).
    AvgPool { input: [usize; 3], output: [usize; 3], window: Window, inv: Arc<Vec<f64>> },
    /// `y_i = x[index_i]` (0 for [`Gather::ZERO`]), with the inverse map for columns: the
    /// outputs reading input `j` are `inv[ptr[j]..ptr[j + 1]]`.
    Gather { map: Arc<GatherMap>, n_in: usize },
    /// `y_i = scale[i / per] · x_i`.
    Scale { scale: Vec<f64>, per: usize },
    /// `x` placed at `offset` in a zero vector of length `n_out`.
    Embed { offset: usize, n_in: usize, n_out: usize },
}

fn dims(s: Shape) -> [usize; 3] {
    match s {
        Shape::Image { c, h, w } => [c, h, w],
        Shape::Flat(n) => [n, 1, 1],
    }
}

impl Op {
    /// The linear part of an affine model layer, or `None` for layers without one (flatten).
    pub(crate) fn from_layer(layer: &Layer) -> Option<Op> {
        match &layer.kind {
            LayerKind::Linear { weight, .. } => {
                Some(Op::Dense { w: weight.clone(), n_in: layer.input.numel(), n_out: layer.output.numel() })
            }
            LayerKind::Conv2d { weight, window, groups, .. } => Some(Op::Conv {
                weight: weight.clone(),
                input: dims(layer.input),
                output: dims(layer.output),
                window: *window,
                groups: *groups,
            }),
            LayerKind::BatchNorm { scale, .. } => {
                Some(Op::Scale { scale: scale.clone(), per: layer.input.per_channel() })
            }
            LayerKind::Scale { scale, .. } => Some(Op::Scale { scale: scale.clone(), per: 1 }),
            LayerKind::AvgPool2d { window, count_include_pad } => {
                let ([_, h, w], [_, oh, ow]) = (dims(layer.input), dims(layer.output));
                let inv = (0..oh * ow)
                    .map(|p| 1.0 / window.avg_divisor(p / ow, p % ow, h, w, *count_include_pad) as f64)
                    .collect();
                Some(Op::AvgPool {
                    input: dims(layer.input),
                    output: dims(layer.output),
                    window: *window,
                    inv: Arc::new(inv),
                })
            }
            LayerKind::Gather(g) => {
                let n_in = layer.input.numel();
                Some(Op::Gather { map: Arc::new(GatherMap::new(&g.index, n_in)), n_in })
            }
            _ => None,
        }
    }

    pub(crate) fn n_in(&self) -> usize {
        match self {
            Op::Dense { n_in, .. } | Op::Embed { n_in, .. } | Op::Gather { n_in, .. } => *n_in,
            Op::Conv { input, .. } | Op::AvgPool { input, .. } => input.iter().product(),
            Op::Scale { scale, per } => scale.len() * per,
        }
    }

    pub(crate) fn n_out(&self) -> usize {
        match self {
            Op::Dense { n_out, .. } | Op::Embed { n_out, .. } => *n_out,
            Op::Gather { map, .. } => map.index.len(),
            Op::Conv { output, .. } | Op::AvgPool { output, .. } => output.iter().product(),
            Op::Scale { scale, per } => scale.len() * per,
        }
    }

    /// The same map with every coefficient replaced by its absolute value: applied to
    /// magnitudes, it bounds the sum of the absolute values of the terms the map adds up.
    pub(crate) fn abs(&self) -> Op {
        let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect();
        match self {
            Op::Dense { w, n_in, n_out } => Op::Dense { w: abs(w), n_in: *n_in, n_out: *n_out },
            Op::Conv { weight, input, output, window, groups } => {
                Op::Conv { weight: abs(weight), input: *input, output: *output, window: *window, groups: *groups }
            }
            Op::Scale { scale, per } => Op::Scale { scale: abs(scale), per: *per },
            other => other.clone(),
        }
    }

    /// Applies the map to `rows` vectors stored one after another in `x`.
    pub(crate) fn apply_rows(&self, x: &[f64], rows: usize) -> Vec<f64> {
        let (n_in, n_out) = (self.n_in(), self.n_out());
        debug_assert_eq!(x.len(), rows * n_in);
        let mut y = vec![0.0; rows * n_out];
        if rows == 0 || n_out == 0 {
            return y;
        }
        match self {
            Op::Dense { w, .. } => dense_rows(w, n_in, n_out, x, rows, &mut y),
            Op::Conv { weight, input, output, window, groups } => {
                let im2col = Im2col { input: *input, output: *output, window: *window, groups: *groups };
                im2col.conv_rows(weight, x, rows, &mut y);
            }
            Op::AvgPool { input, output, window, inv } => {
                let [c, h, w] = *input;
                let [_, oh, ow] = *output;
                for (xr, yr) in x.chunks_exact(n_in.max(1)).zip(y.chunks_exact_mut(n_out)) {
                    for ch in 0..c {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let mut acc = 0.0;
                                for (_, _, iy, ix) in window.taps(oy, ox, h, w) {
                                    acc += xr[(ch * h + iy) * w + ix];
                                }
                                yr[(ch * oh + oy) * ow + ox] = acc * inv[oy * ow + ox];
                            }
                        }
                    }
                }
            }
            Op::Scale { scale, per } => {
                for (xr, yr) in x.chunks_exact(n_in.max(1)).zip(y.chunks_exact_mut(n_out)) {
                    for (c, s) in scale.iter().enumerate() {
                        for i in c * per..(c + 1) * per {
                            yr[i] = s * xr[i];
                        }
                    }
                }
            }
            Op::Embed { offset, .. } => {
                for (xr, yr) in x.chunks_exact(n_in.max(1)).zip(y.chunks_exact_mut(n_out)) {
                    yr[*offset..offset + n_in].copy_from_slice(xr);
                }
            }
            Op::Gather { map, .. } => {
                for (xr, yr) in x.chunks_exact(n_in.max(1)).zip(y.chunks_exact_mut(n_out)) {
                    for (yi, &j) in yr.iter_mut().zip(&map.index) {
                        if j != Gather::ZERO {
                            *yi = xr[j as usize];
                        }
                    }
                }
            }
        }
        y
    }

    /// Pushes a sparse vector through the map: `out[i] += Σ A[i, j]·x_j` for `(j, x_j)` in `x`.
    pub(crate) fn push(&self, x: &[(u32, f64)], out: &mut SparseVec) {
        for &(j, v) in x {
            let j = j as usize;
            match self {
                Op::Dense { w, n_in, n_out } => {
                    for i in 0..*n_out {
                        out.add(i, v * w[i * n_in + j]);
                    }
                }
                Op::Conv { weight, input, output, window, groups } => {
                    conv_column(weight, *input, *output, window, *groups, j, |i, w| out.add(i, v * w));
                }
                Op::AvgPool { input, output, window, inv } => {
                    let pixels = output[1] * output[2];
                    pool_column(*input, *output, window, j, |i| out.add(i, v * inv[i % pixels]));
                }
                Op::Gather { map, .. } => {
                    for &i in &map.inv[map.ptr[j] as usize..map.ptr[j + 1] as usize] {
                        out.add(i as usize, v);
                    }
                }
                Op::Scale { scale, per } => out.add(j, v * scale[j / per]),
                Op::Embed { offset, .. } => out.add(offset + j, v),
            }
        }
    }
}

/// `y (rows × n_out) = x (rows × n_in) · Wᵀ` for `w` row-major `n_out × n_in`.
///
/// Inputs that are zero in every row (units a ReLU switched off, which the cells of a batch
/// mostly share) are left out of the product when they are a fifth of the inputs or more. Every
/// output is still the sum of the same nonzero products; leaving out zero terms changes at most
/// where the product's blocks split the sum, and batches depend only on the data, so results do
/// not depend on the thread count.
fn dense_rows(w: &[f64], n_in: usize, n_out: usize, x: &[f64], rows: usize, y: &mut [f64]) {
    if n_in == 0 {
        return;
    }
    if n_out < 16 {
        // A few outputs (a classifier's logits): dot products, since a product's packing would
        // copy every row for a few sums each.
        for (xr, yr) in x.chunks_exact(n_in).zip(y.chunks_exact_mut(n_out)) {
            for (yo, wo) in yr.iter_mut().zip(w.chunks_exact(n_in)) {
                *yo = dot(xr, wo);
            }
        }
        return;
    }
    let mut active = vec![false; n_in];
    for xr in x.chunks_exact(n_in) {
        for (a, &v) in active.iter_mut().zip(xr) {
            *a |= v != 0.0;
        }
    }
    let idx: Vec<usize> = (0..n_in).filter(|&j| active[j]).collect();
    if idx.is_empty() {
        return;
    }
    if 5 * idx.len() < 4 * n_in {
        let k = idx.len();
        let mut xg = Vec::with_capacity(rows * k);
        for xr in x.chunks_exact(n_in) {
            xg.extend(idx.iter().map(|&j| xr[j]));
        }
        let mut wg = Vec::with_capacity(n_out * k);
        for wo in w.chunks_exact(n_in) {
            wg.extend(idx.iter().map(|&j| wo[j]));
        }
        return gemm_xwt(&wg, k, n_out, &xg, rows, y);
    }
    gemm_xwt(w, n_in, n_out, x, rows, y)
}

/// `Σ a_i·b_i` in four interleaved sums (which the compiler vectorises; a single running sum
/// cannot be reordered).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `y = x · Wᵀ` by the blocked product (`x`: rows × n_in, `w`: n_out × n_in, row-major).
fn gemm_xwt(w: &[f64], n_in: usize, n_out: usize, x: &[f64], rows: usize, y: &mut [f64]) {
    // SAFETY: `x` holds rows×n_in, `w` n_out×n_in and `y` rows×n_out elements, row-major; the
    // strides passed describe exactly these layouts (w is read as its transpose).
    unsafe {
        matrixmultiply::dgemm(
            rows,
            n_in,
            n_out,
            1.0,
            x.as_ptr(),
            n_in as isize,
            1,
            w.as_ptr(),
            1,
            n_in as isize,
            0.0,
            y.as_mut_ptr(),
            n_out as isize,
            1,
        );
    }
}

thread_local! {
    /// The patch matrix and product of [`Im2col::conv_block`], kept between products: a fresh
    /// megabyte each time cost a zero fill (and often fresh pages) per block, 15 % of an
    /// all-conv run.
    static IM2COL: std::cell::RefCell<(Vec<f64>, Vec<f64>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// A convolution's geometry, for the im2col product.
struct Im2col {
    input: [usize; 3],
    output: [usize; 3],
    window: Window,
    groups: usize,
}

impl Im2col {
    /// For every output position and tap (`positions × icg·kh·kw`, tap order `(ci, ky, kx)`),
    /// the offset of the input pixel it reads within a channel group (`ci·h·w + iy·w + ix`), or
    /// `u32::MAX` in the padding. Computed once per product, shared by every row and group.
    fn gather_table(&self) -> Vec<u32> {
        let [ic, h, w] = self.input;
        let [_, oh, ow] = self.output;
        let icg = ic / self.groups;
        let [kh, kw] = self.window.kernel;
        let k = icg * kh * kw;
        let mut table = vec![u32::MAX; oh * ow * k];
        for oy in 0..oh {
            for ox in 0..ow {
                let row = &mut table[(oy * ow + ox) * k..(oy * ow + ox + 1) * k];
                for (ky, kx, iy, ix) in self.window.taps(oy, ox, h, w) {
                    for ci in 0..icg {
                        row[(ci * kh + ky) * kw + kx] = ((ci * h + iy) * w + ix) as u32;
                    }
                }
            }
        }
        table
    }

    /// `y = conv(x)` for `rows` inputs stored one after another (no bias): per group, the
    /// patches of every row as one matrix (`rows·positions × taps`) times the group's kernels,
    /// so that the product runs at matrix-multiply speed however few positions a layer has.
    fn conv_rows(&self, weight: &[f64], x: &[f64], rows: usize, y: &mut [f64]) {
        let [ic, h, w] = self.input;
        let [oc, oh, ow] = self.output;
        let (n_in, n_out) = (ic * h * w, oc * oh * ow);
        let k = ic / self.groups * self.window.kernel[0] * self.window.kernel[1];
        // Rows in blocks whose patch matrix stays around a megabyte (cache-sized, and no
        // allocation growing with the batch).
        let block = ((1usize << 17) / (oh * ow * k).max(1)).clamp(1, rows.max(1));
        let table = self.gather_table();
        IM2COL.with(|buffers| {
            let (cols, out) = &mut *buffers.borrow_mut();
            for start in (0..rows).step_by(block) {
                let r = block.min(rows - start);
                self.conv_block(
                    weight,
                    &table,
                    &x[start * n_in..(start + r) * n_in],
                    r,
                    &mut y[start * n_out..(start + r) * n_out],
                    (cols, out),
                );
            }
        });
    }

    /// One block of [`Im2col::conv_rows`]; `cols` and `out` are work buffers, grown as needed
    /// and overwritten whole (the gather writes every patch entry, the product every output).
    fn conv_block(
        &self,
        weight: &[f64],
        table: &[u32],
        x: &[f64],
        rows: usize,
        y: &mut [f64],
        (cols, out): (&mut Vec<f64>, &mut Vec<f64>),
    ) {
        let [ic, h, w] = self.input;
        let [oc, oh, ow] = self.output;
        let (icg, ocg) = (ic / self.groups, oc / self.groups);
        let [kh, kw] = self.window.kernel;
        let k = icg * kh * kw;
        let positions = oh * ow;
        let (n_in, n_out) = (ic * h * w, oc * positions);
        let m = rows * positions;
        if cols.len() < m * k {
            cols.resize(m * k, 0.0);
        }
        if out.len() < m * ocg {
            out.resize(m * ocg, 0.0);
        }
        let (cols, out) = (&mut cols[..m * k], &mut out[..m * ocg]);
        for g in 0..self.groups {
            for r in 0..rows {
                let xg = &x[r * n_in + g * icg * h * w..r * n_in + (g + 1) * icg * h * w];
                let dst = &mut cols[r * positions * k..(r + 1) * positions * k];
                for (d, &t) in dst.iter_mut().zip(table) {
                    *d = if t == u32::MAX { 0.0 } else { xg[t as usize] };
                }
            }
            let wg = &weight[g * ocg * k..(g + 1) * ocg * k];
            // out[i, o] = Σ_k cols[i, k] · wg[o, k], i = row·positions + position.
            // SAFETY: `cols` is m×k, `wg` ocg×k (read as its transpose) and `out` m×ocg
            // elements, row-major, matching the dimensions and strides passed.
            unsafe {
                matrixmultiply::dgemm(
                    m,
                    k,
                    ocg,
                    1.0,
                    cols.as_ptr(),
                    k as isize,
                    1,
                    wg.as_ptr(),
                    1,
                    k as isize,
                    0.0,
                    out.as_mut_ptr(),
                    ocg as isize,
                    1,
                );
            }
            // Channel-major outputs: y[row][(g·ocg + o)·positions + position].
            for r in 0..rows {
                let yr = &mut y[r * n_out + g * ocg * positions..r * n_out + (g + 1) * ocg * positions];
                let src = &out[r * positions * ocg..(r + 1) * positions * ocg];
                for (p, vals) in src.chunks_exact(ocg).enumerate() {
                    for (o, &v) in vals.iter().enumerate() {
                        yr[o * positions + p] = v;
                    }
                }
            }
        }
    }
}

/// Calls `f(output index, weight)` for every output that input `j` of a convolution feeds.
fn conv_column(
    weight: &[f64],
    [ic, h, w]: [usize; 3],
    [oc, oh, ow]: [usize; 3],
    window: &Window,
    groups: usize,
    j: usize,
    mut f: impl FnMut(usize, f64),
) {
    let (c, iy, ix) = (j / (h * w), (j / w) % h, j % w);
    let (icg, ocg) = (ic / groups, oc / groups);
    let (g, ci) = (c / icg, c % icg);
    let [kh, kw] = window.kernel;
    for ky in 0..kh {
        let Some(oy) = window.output_of(iy, ky, 0, oh) else { continue };
        for kx in 0..kw {
            let Some(ox) = window.output_of(ix, kx, 1, ow) else { continue };
            for o in g * ocg..(g + 1) * ocg {
                f((o * oh + oy) * ow + ox, weight[((o * icg + ci) * kh + ky) * kw + kx]);
            }
        }
    }
}

/// Calls `f(output index)` for every output of an average pool that input `j` lies under.
fn pool_column([_, h, w]: [usize; 3], [_, oh, ow]: [usize; 3], window: &Window, j: usize, mut f: impl FnMut(usize)) {
    let (c, iy, ix) = (j / (h * w), (j / w) % h, j % w);
    for ky in 0..window.kernel[0] {
        let Some(oy) = window.output_of(iy, ky, 0, oh) else { continue };
        for kx in 0..window.kernel[1] {
            let Some(ox) = window.output_of(ix, kx, 1, ow) else { continue };
            f((c * oh + oy) * ow + ox);
        }
    }
}

/// A sparse vector built by accumulation into a dense buffer (with the touched indices).
pub(crate) struct SparseVec {
    dense: Vec<f64>,
    touched: Vec<u32>,
    mark: Vec<bool>,
}

impl SparseVec {
    pub(crate) fn new(n: usize) -> Self {
        SparseVec { dense: vec![0.0; n], touched: Vec::new(), mark: vec![false; n] }
    }

    #[inline]
    fn add(&mut self, i: usize, v: f64) {
        if !self.mark[i] {
            self.mark[i] = true;
            self.touched.push(i as u32);
        }
        self.dense[i] += v;
    }

    /// Appends the nonzero entries to `idx`/`val` in the order they were first touched (not
    /// sorted: the path tracer's readers take a piece's changes in any order), leaving the
    /// buffer empty.
    pub(crate) fn drain_nonzero(&mut self, idx: &mut Vec<u32>, val: &mut Vec<f64>) {
        for &i in &self.touched {
            let v = std::mem::take(&mut self.dense[i as usize]);
            self.mark[i as usize] = false;
            if v != 0.0 {
                idx.push(i);
                val.push(v);
            }
        }
        self.touched.clear();
    }

    /// The entries (sorted by index), leaving the buffer empty.
    pub(crate) fn take(&mut self) -> Vec<(u32, f64)> {
        self.touched.sort_unstable();
        let out = self.touched.iter().map(|&i| (i, self.dense[i as usize])).collect();
        for &i in &self.touched {
            self.dense[i as usize] = 0.0;
            self.mark[i as usize] = false;
        }
        self.touched.clear();
        out
    }
}

/// How the columns of an [`Affine`] are found.
#[derive(Debug)]
enum Columns {
    /// Transposed dense matrix: column `j` is `wt[j·stride..j·stride + n_out]`, zero-padded to
    /// `stride` (a multiple of [`kernels::PRODUCT_LANES`]) for the product's output blocks.
    Dense { wt: Vec<f64>, stride: usize },
    /// The identity (the chain is empty) or an embedding at an offset.
    Shift(usize),
    /// A convolution (the chain's only op): its kernels transposed (see [`conv_transposed`]) and
    /// the taps every input pixel reaches (see [`ConvReach`]).
    Conv(Vec<f64>, ConvReach),
    /// A composed sparse matrix in compressed columns.
    Csc { ptr: Vec<u32>, idx: Vec<u32>, val: Vec<f64> },
}

/// A chain of linear maps from `n_in` to `n_out` entries, applied batched and by columns.
#[derive(Debug)]
pub(crate) struct Affine {
    ops: Vec<Op>,
    n_in: usize,
    n_out: usize,
    columns: Columns,
    /// For a single convolution with at least [`kernels::PRODUCT_LANES`] output channels per
    /// group: its product by output position, leaving out zero inputs.
    conv: Option<ConvProduct>,
}

/// A convolution laid out for [`kernels::conv_position`]: per output position, the taps'
/// inputs gathered, the taps whose three rows are zero left out (after a ReLU, about half of
/// them: the im2col product multiplies those zeros too), the rest against the taps' weight rows.
#[derive(Debug)]
struct ConvProduct {
    /// Per channel group, one row of `stride` weights per tap (tap order `(ci, ky, kx)`): the
    /// weights of the group's output channels, zero-padded.
    wt: Vec<f64>,
    stride: usize,
    /// [`Im2col::gather_table`]: per output position, the input each tap reads.
    table: Vec<u32>,
    taps: usize,
    positions: usize,
    groups: usize,
    /// Output channels per group, and inputs per group.
    ocg: usize,
    group_inputs: usize,
}

impl ConvProduct {
    fn new(weight: &[f64], input: [usize; 3], output: [usize; 3], window: Window, groups: usize) -> Option<Self> {
        let [ic, h, w] = input;
        let [oc, oh, ow] = output;
        let ocg = oc / groups.max(1);
        if ocg < kernels::PRODUCT_LANES {
            return None;
        }
        let taps = ic / groups * window.kernel[0] * window.kernel[1];
        let stride = ocg.div_ceil(kernels::PRODUCT_LANES) * kernels::PRODUCT_LANES;
        let mut wt = vec![0.0; groups * taps * stride];
        for g in 0..groups {
            for o in 0..ocg {
                for k in 0..taps {
                    wt[(g * taps + k) * stride + o] = weight[(g * ocg + o) * taps + k];
                }
            }
        }
        let table = Im2col { input, output, window, groups }.gather_table();
        Some(ConvProduct {
            wt,
            stride,
            table,
            taps,
            positions: oh * ow,
            groups,
            ocg,
            group_inputs: ic / groups * h * w,
        })
    }

    /// The convolution of maps of one to three rows (`maps[k]`: `g × n_in`) into `y`, the
    /// rows one after another (`n_out` each).
    fn apply(&self, maps: &[&[f64]], n_in: usize, n_out: usize, y: &mut [f64]) {
        let zero = vec![0.0; n_in];
        let mut inputs = Vec::new();
        let (taps, positions, ocg) = (self.taps, self.positions, self.ocg);
        let mut first = 0;
        for m in maps {
            let g = m.len() / n_in.max(1);
            let row = |r: usize| if r < g { &m[r * n_in..(r + 1) * n_in] } else { &zero[..] };
            let rows = [row(0), row(1), row(2)];
            for gi in 0..self.groups {
                let part = gi * self.group_inputs..(gi + 1) * self.group_inputs;
                let x = rows.map(|r| &r[part.clone()]);
                let wg = &self.wt[gi * taps * self.stride..(gi + 1) * taps * self.stride];
                for p in 0..positions {
                    let table = &self.table[p * taps..(p + 1) * taps];
                    kernels::conv_position(wg, self.stride, ocg, x, table, &mut inputs, |kb, count, out| {
                        for (r, o) in out.iter().enumerate().take(g) {
                            let yr = &mut y[(first + r) * n_out..(first + r + 1) * n_out];
                            for (c, &v) in o[..count].iter().enumerate() {
                                yr[(gi * ocg + kb + c) * positions + p] = v;
                            }
                        }
                    });
                }
            }
            first += g;
        }
    }
}

impl Affine {
    /// The chain `ops` (applied in order) from `n_in` entries; an empty chain is the identity.
    pub(crate) fn new(ops: Vec<Op>, n_in: usize) -> Self {
        let n_out = ops.last().map_or(n_in, Op::n_out);
        let ops = fold_scales(ops);
        let columns = match ops.as_slice() {
            [] => Columns::Shift(0),
            [Op::Embed { offset, .. }] => Columns::Shift(*offset),
            [Op::Dense { w, .. }] => dense_columns(&transpose(w, n_out, n_in), n_in, n_out),
            [Op::Conv { weight, input, output, window, groups }] => Columns::Conv(
                conv_transposed(weight, input[0], output[0], window, *groups),
                ConvReach::new(input, output, window),
            ),
            _ if n_in.saturating_mul(n_out) <= MAX_DENSE_ENTRIES => {
                // Compose the chain into one matrix: push every unit vector through it.
                let mut wt = vec![0.0; n_in * n_out];
                let mut acc = SparseVec::new(ops.iter().map(Op::n_out).max().unwrap_or(0));
                for j in 0..n_in {
                    for (i, v) in push_chain(&ops, j, &mut acc) {
                        wt[j * n_out + i as usize] = v;
                    }
                }
                let w = transpose(&wt, n_in, n_out);
                let columns = dense_columns(&wt, n_in, n_out);
                return Affine { ops: vec![Op::Dense { w, n_in, n_out }], n_in, n_out, columns, conv: None };
            }
            _ => compose_sparse(&ops, n_in),
        };
        let conv = match ops.as_slice() {
            [Op::Conv { weight, input, output, window, groups }] => {
                ConvProduct::new(weight, *input, *output, *window, *groups)
            }
            _ => None,
        };
        Affine { ops, n_in, n_out, columns, conv }
    }

    pub(crate) fn n_out(&self) -> usize {
        self.n_out
    }

    /// The same chain with absolute coefficients, applied to one magnitude vector.
    pub(crate) fn abs_apply(&self, x: &[f64]) -> Vec<f64> {
        let mut cur = x.to_vec();
        for op in &self.ops {
            cur = op.abs().apply_rows(&cur, 1);
        }
        cur
    }

    /// Applies the chain to `rows` vectors stored one after another.
    pub(crate) fn apply_rows(&self, x: &[f64], rows: usize) -> Vec<f64> {
        debug_assert_eq!(x.len(), rows * self.n_in);
        if self.ops.is_empty() {
            return x.to_vec();
        }
        if self.skips_zeros() {
            let groups: Vec<&[f64]> = x.chunks(3 * self.n_in.max(1)).collect();
            return self.apply_maps(&groups);
        }
        let mut cur = self.ops[0].apply_rows(x, rows);
        for op in &self.ops[1..] {
            cur = op.apply_rows(&cur, rows);
        }
        cur
    }

    /// Whether a dense chain is applied by [`kernels::product_skipping_zeros`].
    fn skips_zeros(&self) -> bool {
        matches!(&self.columns, Columns::Dense { stride, .. } if self.n_in * stride <= MAX_SKIPPING_ENTRIES)
    }

    /// Applies the chain to maps of one to three rows each (`maps[k]`: `g × n_in`), the rows
    /// one after another in the result: [`Affine::apply_rows`] of their concatenation, without
    /// copying them together for a dense chain.
    pub(crate) fn apply_maps(&self, maps: &[&[f64]]) -> Vec<f64> {
        let n = self.n_in.max(1);
        let rows: usize = maps.iter().map(|m| m.len() / n).sum();
        match &self.columns {
            Columns::Dense { wt, stride } if self.skips_zeros() => {
                let mut y = vec![0.0; rows * self.n_out];
                kernels::product_skipping_zeros(wt, *stride, maps, self.n_in, &mut y, self.n_out);
                y
            }
            _ if self.conv.is_some() => {
                let mut y = vec![0.0; rows * self.n_out];
                self.conv.as_ref().expect("checked").apply(maps, self.n_in, self.n_out, &mut y);
                y
            }
            _ => self.apply_rows(&maps.concat(), rows),
        }
    }

    /// Whether every column is dense (a fully connected chain).
    pub(crate) fn is_identity(&self) -> bool {
        self.ops.is_empty()
    }

    pub(crate) fn is_dense(&self) -> bool {
        matches!(self.columns, Columns::Dense { .. })
    }

    /// Adds `coef ⊗ column j` to the block starting at `offset` of a map `z` in structure-of-
    /// arrays form (`3 × n`). Only for dense chains (see [`Affine::is_dense`]).
    #[inline]
    pub(crate) fn add_dense_column(&self, j: usize, coef: [f64; 3], z: &mut [f64], offset: usize) {
        let Columns::Dense { wt, stride } = &self.columns else { unreachable!("dense columns of a dense chain") };
        let col = &wt[j * stride..j * stride + self.n_out];
        let n = z.len() / 3;
        let (r0, rest) = z.split_at_mut(n);
        let (r1, r2) = rest.split_at_mut(n);
        let len = self.n_out;
        super::kernels::axpy3(
            &mut r0[offset..offset + len],
            &mut r1[offset..offset + len],
            &mut r2[offset..offset + len],
            col,
            coef,
        );
    }

    /// [`Affine::scatter`] of every correction `(j, coef)` of `corrs`.
    pub(crate) fn scatter_all(&self, corrs: &[(u32, [f64; 3])], acc: &mut Acc, offset: usize) {
        if let (Columns::Conv(wt, reach), Some(Op::Conv { input, output, groups, .. })) =
            (&self.columns, self.ops.first())
        {
            let pixels = output[1] * output[2];
            if acc.pixels() == pixels && offset.is_multiple_of(pixels) {
                let conv = ConvColumns { wt, reach, input: *input, output: *output, groups: *groups };
                conv_scatter_all(&conv, corrs, acc, offset / pixels);
                return;
            }
        }
        for &(j, c) in corrs {
            self.scatter(j as usize, c, acc, offset);
        }
    }

    /// Adds `coef ⊗ column j` to `acc` at the target units starting at `offset`.
    #[inline]
    pub(crate) fn scatter(&self, j: usize, coef: [f64; 3], acc: &mut Acc, offset: usize) {
        match &self.columns {
            Columns::Dense { wt, stride } => {
                let col = &wt[j * stride..j * stride + self.n_out];
                if acc.pixels() == 1 {
                    let [r0, r1, r2] = acc.block(0);
                    let at = offset..offset + self.n_out;
                    super::kernels::axpy3(&mut r0[at.clone()], &mut r1[at.clone()], &mut r2[at], col, coef);
                } else {
                    for (i, &w) in col.iter().enumerate() {
                        acc.add(offset + i, coef, w);
                    }
                }
            }
            Columns::Shift(k) => acc.add(offset + k + j, coef, 1.0),
            Columns::Conv(wt, reach) => {
                let Op::Conv { input, output, window, groups, .. } = &self.ops[0] else {
                    unreachable!("conv columns come from a conv")
                };
                let pixels = output[1] * output[2];
                if acc.pixels() == pixels && offset.is_multiple_of(pixels) {
                    let conv = ConvColumns { wt, reach, input: *input, output: *output, groups: *groups };
                    conv_scatter_all(&conv, &[(j as u32, coef)], acc, offset / pixels);
                } else {
                    // The target is laid out differently (a flattened image): unit by unit.
                    let Op::Conv { weight, .. } = &self.ops[0] else { unreachable!() };
                    conv_column(weight, *input, *output, window, *groups, j, |i, w| acc.add(offset + i, coef, w));
                }
            }
            Columns::Csc { ptr, idx, val } => {
                for k in ptr[j] as usize..ptr[j + 1] as usize {
                    acc.add(offset + idx[k] as usize, coef, val[k]);
                }
            }
        }
    }
}

/// A convolution's kernels as `[group][c_in/groups][kh][kw][c_out/groups]`: the weights one input
/// pixel gives a group's output channels at one tap are one contiguous run, added to the three
/// rows of the accumulator's pixel block by [`super::kernels::axpy3`].
fn conv_transposed(weight: &[f64], ic: usize, oc: usize, window: &Window, groups: usize) -> Vec<f64> {
    let (icg, ocg) = (ic / groups, oc / groups);
    let [kh, kw] = window.kernel;
    let mut t = vec![0.0; weight.len()];
    for g in 0..groups {
        for o in 0..ocg {
            for ci in 0..icg {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let src = (((g * ocg + o) * icg + ci) * kh + ky) * kw + kx;
                        let dst = ((((g * icg + ci) * kh + ky) * kw + kx) * ocg) + o;
                        t[dst] = weight[src];
                    }
                }
            }
        }
    }
    t
}

/// For every input pixel of a convolution, the taps that read it and the output pixel each
/// feeds, in the order of the kernel (rows, then columns): the scatter's inner loop without the
/// divisions of locating them (a division per tap and five per correction cost more than the
/// arithmetic on a 3 × 3 kernel's short runs).
#[derive(Clone, Debug)]
pub(crate) struct ConvReach {
    /// Entries of input pixel `p`: `ptr[p]..ptr[p + 1]`.
    ptr: Vec<u32>,
    /// `(tap ky·kw + kx, output pixel oy·ow + ox)`.
    taps: Vec<(u32, u32)>,
}

impl ConvReach {
    fn new(input: &[usize; 3], output: &[usize; 3], window: &Window) -> Self {
        let ([_, h, w], [_, oh, ow]) = (*input, *output);
        let [kh, kw] = window.kernel;
        let mut ptr = Vec::with_capacity(h * w + 1);
        let mut taps = Vec::new();
        ptr.push(0);
        for iy in 0..h {
            for ix in 0..w {
                for ky in 0..kh {
                    let Some(oy) = window.output_of(iy, ky, 0, oh) else { continue };
                    for kx in 0..kw {
                        let Some(ox) = window.output_of(ix, kx, 1, ow) else { continue };
                        taps.push(((ky * kw + kx) as u32, (oy * ow + ox) as u32));
                    }
                }
                ptr.push(taps.len() as u32);
            }
        }
        ConvReach { ptr, taps }
    }
}

/// A convolution's transposed kernels (see [`conv_transposed`]) with its geometry.
struct ConvColumns<'a> {
    wt: &'a [f64],
    reach: &'a ConvReach,
    input: [usize; 3],
    output: [usize; 3],
    groups: usize,
}

/// [`conv_scatter`] of every correction, in one call compiled for AVX2 where the processor has
/// it (the per-tap runs are short, so a feature check per tap was overhead on every one).
fn conv_scatter_all(conv: &ConvColumns<'_>, corrs: &[(u32, [f64; 3])], acc: &mut Acc, channel_offset: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::kernels::has_avx512() {
            // SAFETY: the processor supports AVX-512F, checked just above.
            unsafe { conv_scatter_all_avx512(conv, corrs, acc, channel_offset) };
            return;
        }
        if super::kernels::has_avx2() {
            // SAFETY: the processor supports AVX2, checked just above.
            unsafe { conv_scatter_all_avx2(conv, corrs, acc, channel_offset) };
            return;
        }
    }
    conv_scatter_all_generic(conv, corrs, acc, channel_offset);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn conv_scatter_all_avx512(
    conv: &ConvColumns<'_>,
    corrs: &[(u32, [f64; 3])],
    acc: &mut Acc,
    channel_offset: usize,
) {
    // SAFETY: AVX-512F is available (this function's contract).
    conv_scatter_all_with(conv, corrs, acc, channel_offset, |r0, r1, r2, w, c| unsafe {
        super::kernels::axpy3_avx512(r0, r1, r2, w, c)
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn conv_scatter_all_avx2(
    conv: &ConvColumns<'_>,
    corrs: &[(u32, [f64; 3])],
    acc: &mut Acc,
    channel_offset: usize,
) {
    // SAFETY: AVX2 is available (this function's contract).
    conv_scatter_all_with(conv, corrs, acc, channel_offset, |r0, r1, r2, w, c| unsafe {
        super::kernels::axpy3_avx2(r0, r1, r2, w, c)
    });
}

fn conv_scatter_all_generic(conv: &ConvColumns<'_>, corrs: &[(u32, [f64; 3])], acc: &mut Acc, channel_offset: usize) {
    conv_scatter_all_with(conv, corrs, acc, channel_offset, super::kernels::axpy3_generic);
}

/// [`conv_scatter`] of every correction with `axpy`, inlined into each build above.
#[inline(always)]
fn conv_scatter_all_with(
    conv: &ConvColumns<'_>,
    corrs: &[(u32, [f64; 3])],
    acc: &mut Acc,
    channel_offset: usize,
    mut axpy: impl FnMut(&mut [f64], &mut [f64], &mut [f64], &[f64], [f64; 3]),
) {
    for &(j, coef) in corrs {
        conv_scatter(conv, j as usize, coef, acc, channel_offset, &mut axpy);
    }
}

/// `acc += coef ⊗ column j` of a convolution, pixel by pixel: at each tap, the weights to the
/// group's output channels are one contiguous run, added by `axpy`. (The AVX2 and AVX-512 builds
/// pass closures over the intrinsics versions: a plain function item went through a call shim
/// compiled for the baseline target and ran two lanes wide, a fifth of the all-conv net's time.)
#[inline(always)]
fn conv_scatter(
    conv: &ConvColumns<'_>,
    j: usize,
    coef: [f64; 3],
    acc: &mut Acc,
    channel_offset: usize,
    mut axpy: impl FnMut(&mut [f64], &mut [f64], &mut [f64], &[f64], [f64; 3]),
) {
    let ([ic, h, w], [oc, _, _]) = (conv.input, conv.output);
    let (c, pixel) = (j / (h * w), j % (h * w));
    let (icg, ocg) = (ic / conv.groups, oc / conv.groups);
    let (g, ci) = if conv.groups == 1 { (0, c) } else { (c / icg, c % icg) };
    let first = channel_offset + g * ocg;
    // The kernel's weights of input channel `ci` of group `g`, tap by tap.
    let kernel = &conv.wt[(g * icg + ci) * (conv.wt.len() / ic.max(1))..];
    let reach = conv.reach;
    for &(tap, out) in &reach.taps[reach.ptr[pixel] as usize..reach.ptr[pixel + 1] as usize] {
        let weights = &kernel[tap as usize * ocg..(tap as usize + 1) * ocg];
        let [r0, r1, r2] = acc.block(out as usize);
        axpy(&mut r0[first..first + ocg], &mut r1[first..first + ocg], &mut r2[first..first + ocg], weights, coef);
    }
}

/// Scales next to a dense map or a convolution are folded into it, so that columns keep their
/// closed form (batch norm after a convolution, as in most CNNs).
fn fold_scales(ops: Vec<Op>) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::with_capacity(ops.len());
    for op in ops {
        match (out.last_mut(), op) {
            (Some(Op::Dense { w, n_in, .. }), Op::Scale { scale, per }) => {
                for (i, row) in w.chunks_exact_mut((*n_in).max(1)).enumerate() {
                    row.iter_mut().for_each(|x| *x *= scale[i / per]);
                }
            }
            (Some(Op::Conv { weight, output, .. }), Op::Scale { scale, per }) if per == output[1] * output[2] => {
                let per_out = weight.len() / output[0].max(1);
                for (o, kernel) in weight.chunks_exact_mut(per_out.max(1)).enumerate() {
                    kernel.iter_mut().for_each(|x| *x *= scale[o]);
                }
            }
            (Some(Op::Scale { scale: s0, per: p0 }), Op::Scale { scale, per }) if *p0 == per => {
                s0.iter_mut().zip(&scale).for_each(|(a, b)| *a *= b);
            }
            (_, op) => out.push(op),
        }
    }
    out
}

/// Dense columns from the transposed matrix `wt` (`n_in × n_out`), rows padded.
fn dense_columns(wt: &[f64], n_in: usize, n_out: usize) -> Columns {
    let stride = n_out.div_ceil(kernels::PRODUCT_LANES) * kernels::PRODUCT_LANES;
    let mut padded = vec![0.0; n_in * stride];
    for (dst, src) in padded.chunks_exact_mut(stride.max(1)).zip(wt.chunks_exact(n_out.max(1))) {
        dst[..n_out].copy_from_slice(src);
    }
    Columns::Dense { wt: padded, stride }
}

fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// Column `j` of a chain: the unit vector pushed through every op.
fn push_chain(ops: &[Op], j: usize, acc: &mut SparseVec) -> Vec<(u32, f64)> {
    let mut cur = vec![(j as u32, 1.0)];
    for op in ops {
        op.push(&cur, acc);
        cur = acc.take();
    }
    cur
}

/// A chain composed into compressed sparse columns (when it fits the budget; otherwise columns
/// are still composed, as the chain has no other form the engine can use).
fn compose_sparse(ops: &[Op], n_in: usize) -> Columns {
    let mut acc = SparseVec::new(ops.iter().map(Op::n_out).max().unwrap_or(0));
    let (mut ptr, mut idx, mut val) = (vec![0u32], Vec::new(), Vec::new());
    for j in 0..n_in {
        for (i, v) in push_chain(ops, j, &mut acc) {
            idx.push(i);
            val.push(v);
        }
        debug_assert!(idx.len() <= MAX_SPARSE_ENTRIES * 4, "sparse composition far over budget");
        ptr.push(idx.len() as u32);
    }
    Columns::Csc { ptr, idx, val }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(k: usize, s: usize, p: usize, d: usize) -> Window {
        Window::symmetric([k, k], [s, s], [p, p], [d, d])
    }

    /// The plain definition of a convolution, written separately from `Im2col` and
    /// `conv_column`.
    fn naive_conv(weight: &[f64], x: &[f64], i: [usize; 3], o: [usize; 3], win: &Window, groups: usize) -> Vec<f64> {
        let (icg, ocg) = (i[0] / groups, o[0] / groups);
        let [kh, kw] = win.kernel;
        let mut y = vec![0.0; o.iter().product()];
        for oc in 0..o[0] {
            for oy in 0..o[1] {
                for ox in 0..o[2] {
                    let mut acc = 0.0;
                    for ci in 0..icg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * win.stride[0] + ky * win.dilation[0]) as isize - win.padding[0] as isize;
                                let ix = (ox * win.stride[1] + kx * win.dilation[1]) as isize - win.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy as usize >= i[1] || ix as usize >= i[2] {
                                    continue;
                                }
                                let c = (oc / ocg) * icg + ci;
                                acc += weight[((oc * icg + ci) * kh + ky) * kw + kx]
                                    * x[(c * i[1] + iy as usize) * i[2] + ix as usize];
                            }
                        }
                    }
                    y[(oc * o[1] + oy) * o[2] + ox] = acc;
                }
            }
        }
        y
    }

    #[test]
    fn conv_rows_and_columns_match_the_definition() {
        for (groups, win) in [(1, window(3, 1, 1, 1)), (2, window(3, 2, 1, 1)), (4, window(2, 1, 0, 2))] {
            let i = [4, 7, 6];
            let o = [8, (7 + 2 * win.padding[0] - (win.dilation[0] * (win.kernel[0] - 1) + 1)) / win.stride[0] + 1, 0];
            let o = [
                o[0],
                o[1],
                (6 + 2 * win.padding[1] - (win.dilation[1] * (win.kernel[1] - 1) + 1)) / win.stride[1] + 1,
            ];
            let k = (i[0] / groups) * win.kernel[0] * win.kernel[1];
            let weight: Vec<f64> = (0..o[0] * k).map(|t| ((t * 37 % 23) as f64 - 11.0) / 7.0).collect();
            let op = Op::Conv { weight: weight.clone(), input: i, output: o, window: win, groups };
            let x: Vec<f64> = (0..op.n_in() * 2).map(|t| ((t * 13 % 17) as f64 - 8.0) / 5.0).collect();
            let y = op.apply_rows(&x, 2);
            for r in 0..2 {
                let want = naive_conv(&weight, &x[r * op.n_in()..(r + 1) * op.n_in()], i, o, &win, groups);
                for (a, b) in y[r * op.n_out()..(r + 1) * op.n_out()].iter().zip(&want) {
                    assert!((a - b).abs() < 1e-12, "groups {groups}: {a} vs {b}");
                }
            }
            // Columns: the image of each unit vector, through the pixel-major accumulator and
            // through a flat one.
            let chain = Affine::new(vec![op.clone()], op.n_in());
            for j in (0..op.n_in()).step_by(5) {
                let mut e = vec![0.0; op.n_in()];
                e[j] = 1.0;
                let want = naive_conv(&weight, &e, i, o, &win, groups);
                for (channels, pixels) in [(o[0], o[1] * o[2]), (op.n_out(), 1)] {
                    let mut acc = Acc::default();
                    acc.reset(channels, pixels);
                    chain.scatter(j, [1.0, -2.0, 0.5], &mut acc, 0);
                    for (u, w) in want.iter().enumerate() {
                        assert_eq!(acc.get(u), [*w, -2.0 * w, 0.5 * w], "column {j}, unit {u}");
                    }
                }
            }
            // Many columns at once (the batched AVX2 path): the definition applied to the sum
            // of the corrections, per coefficient.
            let corrs: Vec<(u32, [f64; 3])> =
                (0..op.n_in()).step_by(3).map(|j| (j as u32, [1.0 + j as f64, -0.5, 0.25 * j as f64])).collect();
            for (channels, pixels) in [(o[0], o[1] * o[2]), (op.n_out(), 1)] {
                let mut acc = Acc::default();
                acc.reset(channels, pixels);
                chain.scatter_all(&corrs, &mut acc, 0);
                for k in 0..3 {
                    let mut x = vec![0.0; op.n_in()];
                    corrs.iter().for_each(|&(j, c)| x[j as usize] = c[k]);
                    let want = naive_conv(&weight, &x, i, o, &win, groups);
                    for (u, w) in want.iter().enumerate() {
                        let got = acc.get(u)[k];
                        assert!((got - w).abs() < 1e-12, "groups {groups}, unit {u}, coefficient {k}: {got} vs {w}");
                    }
                }
            }
        }
    }

    /// The product by output position (convolutions with eight or more output channels per
    /// group) against the definition: output blocks wider than one kernel block and padded ones,
    /// grouped, strided and dilated windows, inputs with zeros (left out), and maps of three
    /// rows and of one.
    #[test]
    fn conv_maps_by_position_match_the_definition() {
        for (groups, ocg, win) in [(1, 40, window(3, 1, 1, 1)), (2, 12, window(3, 2, 1, 1)), (3, 8, window(2, 1, 0, 2))]
        {
            let i = [3 * groups, 7, 6];
            let out = |n: usize, d: usize| {
                (n + 2 * win.padding[d] - (win.dilation[d] * (win.kernel[d] - 1) + 1)) / win.stride[d] + 1
            };
            let o = [groups * ocg, out(7, 0), out(6, 1)];
            let k = (i[0] / groups) * win.kernel[0] * win.kernel[1];
            let weight: Vec<f64> = (0..o[0] * k).map(|t| ((t * 37 % 23) as f64 - 11.0) / 7.0).collect();
            let op = Op::Conv { weight: weight.clone(), input: i, output: o, window: win, groups };
            let chain = Affine::new(vec![op.clone()], op.n_in());
            assert!(chain.conv.is_some(), "{ocg} output channels per group take the product by position");
            let n = op.n_in();
            // About a third of the entries zero, and one input zero in all three rows of a map.
            let x: Vec<f64> = (0..4 * n)
                .map(|t| if t % 3 == 0 || t % n == 5 { 0.0 } else { ((t * 13 % 17) as f64 - 8.0) / 5.0 })
                .collect();
            let maps: Vec<&[f64]> = vec![&x[..3 * n], &x[3 * n..]];
            let y = chain.apply_maps(&maps);
            assert_eq!(y.len(), 4 * op.n_out());
            for r in 0..4 {
                let want = naive_conv(&weight, &x[r * n..(r + 1) * n], i, o, &win, groups);
                for (u, (a, b)) in y[r * op.n_out()..(r + 1) * op.n_out()].iter().zip(&want).enumerate() {
                    assert!((a - b).abs() < 1e-12, "groups {groups}, row {r}, output {u}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn composed_chains_agree_with_op_by_op_application() {
        let conv = Op::Conv {
            weight: (0..2 * 9).map(|t| t as f64 * 0.1 - 0.8).collect(),
            input: [1, 6, 6],
            output: [2, 6, 6],
            window: window(3, 1, 1, 1),
            groups: 1,
        };
        let pool = Op::AvgPool {
            input: [2, 6, 6],
            output: [2, 3, 3],
            window: window(2, 2, 0, 1),
            inv: Arc::new(vec![0.25; 9]),
        };
        let bn = Op::Scale { scale: vec![2.0, -0.5], per: 9 };
        let dense = Op::Dense { w: (0..18 * 4).map(|t| ((t * 7) % 11) as f64 - 5.0).collect(), n_in: 18, n_out: 4 };
        let ops = vec![conv, pool, bn, dense];
        let x: Vec<f64> = (0..36).map(|t| (t as f64 * 0.37).sin()).collect();
        let mut want = x.clone();
        for op in &ops {
            want = op.apply_rows(&want, 1);
        }
        let a = Affine::new(ops.clone(), 36);
        assert!(matches!(a.columns, Columns::Dense { .. }));
        let got = a.apply_rows(&x, 1);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12);
        }
        // The sparse composition (used when a chain is too large to densify).
        let Columns::Csc { ptr, idx, val } = compose_sparse(&ops, 36) else { unreachable!() };
        let mut by_cols = [0.0; 4];
        for j in 0..36 {
            for k in ptr[j] as usize..ptr[j + 1] as usize {
                by_cols[idx[k] as usize] += val[k] * x[j];
            }
        }
        for (g, w) in by_cols.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12);
        }
    }
}
