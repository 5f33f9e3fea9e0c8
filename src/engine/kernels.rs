//! The engine's innermost loops, compiled for the baseline target, for AVX2 and (most of them)
//! for AVX-512F, chosen at run time. The binary stays portable while the loops run four or eight
//! f64 lanes wide where the processor allows. No fused multiply-add is introduced, so both versions round identically;
//! the one exception is [`product_skipping_zeros`], the dense layers' product, which like the
//! blocked product it replaces fuses where the processor can (AVX2 + FMA, or AVX-512).

use crate::geometry::predicates::{is_neg, is_pos, tolerance, DIST, NOISE};
use std::mem::MaybeUninit;

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
}

/// Whether the processor has AVX-512F (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static AVX512: OnceLock<bool> = OnceLock::new();
    *AVX512.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

/// A kernel's portable loop (`$generic`, `#[inline(always)]`) compiled three times: for the
/// baseline target, for AVX2 and for AVX-512F (eight lanes wide), chosen at run time. No fused
/// multiply-add is introduced, so every build rounds as the others.
macro_rules! dispatch {
    ($(#[$doc:meta])* fn $name:ident / $avx:ident / $avx512:ident / $generic:ident ($($arg:ident : $ty:ty),*)) => {
        $(#[$doc])*
        #[inline]
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx512() {
                    // SAFETY: the processor supports AVX-512F, checked just above.
                    unsafe { $avx512($($arg),*) };
                    return;
                }
                if has_avx2() {
                    // SAFETY: the processor supports AVX2, checked just above.
                    unsafe { $avx($($arg),*) };
                    return;
                }
            }
            $generic($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx($($arg: $ty),*) {
            $generic($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx512($($arg: $ty),*) {
            $generic($($arg),*)
        }
    };
}

/// Tolerance of the tolerance rule (`predicates`) for `a·s + b·t + c − bp`, where `noise` is the
/// noise floor of the pre-activation; subtracting the breakpoint adds its own rounding.
#[inline(always)]
pub(crate) fn hinge_tol(a: f64, b: f64, bp: f64, noise: f64) -> f64 {
    tolerance(a, b, noise + NOISE * bp.abs())
}

/// The range of `a·u + b·v + c` over the box `center ± half`.
#[inline(always)]
pub(crate) fn box_range(a: f64, b: f64, c: f64, center: [f64; 2], half: [f64; 2]) -> (f64, f64) {
    let mid = a * center[0] + b * center[1] + c;
    let rad = a.abs() * half[0] + b.abs() * half[1];
    (mid - rad, mid + rad)
}

dispatch! {
    /// Bounds of every unit's `a·u + b·v + c` over the box `center ± half`: a cheap enclosure
    /// of the values over any polygon inside that box.
    fn box_bounds / box_bounds_avx2 / box_bounds_avx512 / box_bounds_generic(a: &[f64], b: &[f64], c: &[f64], center: [f64; 2], half: [f64; 2], lo: &mut [f64], hi: &mut [f64])
}

#[inline(always)]
fn box_bounds_generic(
    a: &[f64],
    b: &[f64],
    c: &[f64],
    center: [f64; 2],
    half: [f64; 2],
    lo: &mut [f64],
    hi: &mut [f64],
) {
    let n = lo.len();
    let (a, b, c, hi) = (&a[..n], &b[..n], &c[..n], &mut hi[..n]);
    for i in 0..n {
        (lo[i], hi[i]) = box_range(a[i], b[i], c[i], center, half);
    }
}

dispatch! {
    /// [`box_bounds`] for max groups: `lo` as there, `hi_tol` the upper bound plus the unit's
    /// tolerance `tol` (`predicates::tolerance` of its slopes and noise floor), the two terms a
    /// group's bounding-box test adds to every candidate (summed in the same order, so the test
    /// decides exactly as the scalar form).
    fn box_bounds_tol / box_bounds_tol_avx2 / box_bounds_tol_avx512 / box_bounds_tol_generic(
        a: &[f64], b: &[f64], c: &[f64], noise: &[f64], center: [f64; 2], half: [f64; 2],
        lo: &mut [f64], hi_tol: &mut [f64], tol: &mut [f64])
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn box_bounds_tol_generic(
    a: &[f64],
    b: &[f64],
    c: &[f64],
    noise: &[f64],
    center: [f64; 2],
    half: [f64; 2],
    lo: &mut [f64],
    hi_tol: &mut [f64],
    tol: &mut [f64],
) {
    let n = lo.len();
    let (a, b, c, noise) = (&a[..n], &b[..n], &c[..n], &noise[..n]);
    let (hi_tol, tol) = (&mut hi_tol[..n], &mut tol[..n]);
    for i in 0..n {
        let (l, h) = box_range(a[i], b[i], c[i], center, half);
        let t = tolerance(a[i], b[i], noise[i]);
        lo[i] = l;
        hi_tol[i] = h + t;
        tol[i] = t;
    }
}

dispatch! {
    /// One pass of [`box_bounds`], [`mark_undecided`], [`classify_slot`] and [`post_activation`]
    /// for a layer with one hinge per unit (ReLU, leaky ReLU, PReLU, abs): every unit decided by
    /// its range over the box `center ± half` gets `state` 0 (below or on the line) or 1
    /// (above) and its post-activation rows in `t` (`3 × n`); a unit the box leaves undecided
    /// gets `state` 2 and is left for the caller to classify over the polygon's vertices. The
    /// same operations in the same order as the separate passes, so the same results; one pass
    /// over the units instead of four moves a third of the memory. Every entry of `t` is
    /// written (so it may come uninitialised: zeroing a fresh map first was a tenth of the
    /// pass).
    fn classify_single / classify_single_avx2 / classify_single_avx512 / classify_single_generic(
        a: &[f64], b: &[f64], c: &[f64], noise: &[f64], center: [f64; 2], half: [f64; 2],
        bp: &[f64], da: &[f64], slope0: &[f64], intercept0: &[f64], t: &mut [MaybeUninit<f64>], state: &mut [u8])
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn classify_single_generic(
    a: &[f64],
    b: &[f64],
    c: &[f64],
    noise: &[f64],
    center: [f64; 2],
    half: [f64; 2],
    bp: &[f64],
    da: &[f64],
    slope0: &[f64],
    intercept0: &[f64],
    t: &mut [MaybeUninit<f64>],
    state: &mut [u8],
) {
    let n = state.len();
    let (a, b, c, noise) = (&a[..n], &b[..n], &c[..n], &noise[..n]);
    let (bp, da, slope0, intercept0) = (&bp[..n], &da[..n], &slope0[..n], &intercept0[..n]);
    let (ta, rest) = t.split_at_mut(n);
    let (tb, tc) = rest.split_at_mut(n);
    let tc = &mut tc[..n];
    for i in 0..n {
        let (lo, hi) = box_range(a[i], b[i], c[i], center, half);
        let tol = hinge_tol(a[i], b[i], bp[i], noise[i]);
        let decided = is_pos(lo - bp[i], tol) | is_neg(hi - bp[i], tol) | (da[i] == 0.0);
        let up = is_pos(hi - bp[i], tol) & (da[i] != 0.0);
        let down = is_neg(lo - bp[i], tol);
        let k = if up & !down { da[i] } else { 0.0 };
        let slope = slope0[i] + k;
        let intercept = intercept0[i] - k * bp[i];
        ta[i].write(slope * a[i]);
        tb[i].write(slope * b[i]);
        tc[i].write(slope * c[i] + intercept);
        state[i] = if decided { up as u8 } else { 2 };
    }
}

dispatch! {
    /// Marks (`mark[i] = 1`) the units whose enclosure `[lo, hi]` is not decisively on one
    /// side of their hinge `(bp, da)`: only those need their exact range over the vertices.
    fn mark_undecided / mark_undecided_avx2 / mark_undecided_avx512 / mark_undecided_generic(
        a: &[f64], b: &[f64], noise: &[f64], lo: &[f64], hi: &[f64], bp: &[f64], da: &[f64], mark: &mut [u8])
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn mark_undecided_generic(
    a: &[f64],
    b: &[f64],
    noise: &[f64],
    lo: &[f64],
    hi: &[f64],
    bp: &[f64],
    da: &[f64],
    mark: &mut [u8],
) {
    let n = mark.len();
    let (a, b, noise) = (&a[..n], &b[..n], &noise[..n]);
    let (lo, hi, bp, da) = (&lo[..n], &hi[..n], &bp[..n], &da[..n]);
    for i in 0..n {
        let tol = hinge_tol(a[i], b[i], bp[i], noise[i]);
        let decided = is_pos(lo[i] - bp[i], tol) | is_neg(hi[i] - bp[i], tol) | (da[i] == 0.0);
        mark[i] |= (!decided) as u8;
    }
}

dispatch! {
    /// Classifies every unit's range `[lo, hi]` against its hinge `(bp, da)` (see
    /// `predicates`): `state` gets 0 (below or on the line), 1 (above) or 2 (crossing), and the
    /// hinge's piece is added to `slope`/`intercept` for units entirely above it.
    fn classify_slot / classify_slot_avx2 / classify_slot_avx512 / classify_slot_generic(
        a: &[f64], b: &[f64], noise: &[f64], lo: &[f64], hi: &[f64], bp: &[f64], da: &[f64],
        slope: &mut [f64], intercept: &mut [f64], state: &mut [u8])
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn classify_slot_generic(
    a: &[f64],
    b: &[f64],
    noise: &[f64],
    lo: &[f64],
    hi: &[f64],
    bp: &[f64],
    da: &[f64],
    slope: &mut [f64],
    intercept: &mut [f64],
    state: &mut [u8],
) {
    let n = state.len();
    let (a, b, noise) = (&a[..n], &b[..n], &noise[..n]);
    let (lo, hi, bp, da) = (&lo[..n], &hi[..n], &bp[..n], &da[..n]);
    let (slope, intercept) = (&mut slope[..n], &mut intercept[..n]);
    for i in 0..n {
        let tol = hinge_tol(a[i], b[i], bp[i], noise[i]);
        let up = is_pos(hi[i] - bp[i], tol) & (da[i] != 0.0);
        let down = is_neg(lo[i] - bp[i], tol);
        let k = if up & !down { da[i] } else { 0.0 };
        slope[i] += k;
        intercept[i] -= k * bp[i];
        state[i] = up as u8 + (up & down) as u8;
    }
}

/// `r0 += c0·col`, `r1 += c1·col`, `r2 += c2·col`: one column of a linear map, times the three
/// coefficients of a correction, added to the three rows of a map (a dense path's
/// pre-activations, or one pixel block of the accumulator).
#[inline]
pub(crate) fn axpy3(r0: &mut [f64], r1: &mut [f64], r2: &mut [f64], col: &[f64], coef: [f64; 3]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: the processor supports AVX-512F, checked just above.
            unsafe { axpy3_avx512(r0, r1, r2, col, coef) };
            return;
        }
        if has_avx2() {
            // SAFETY: the processor supports AVX2, checked just above.
            unsafe { axpy3_avx2(r0, r1, r2, col, coef) };
            return;
        }
    }
    axpy3_generic(r0, r1, r2, col, coef)
}

/// [`axpy3`] in portable code.
#[inline(always)]
pub(crate) fn axpy3_generic(r0: &mut [f64], r1: &mut [f64], r2: &mut [f64], col: &[f64], coef: [f64; 3]) {
    let n = col.len();
    let (r0, r1, r2) = (&mut r0[..n], &mut r1[..n], &mut r2[..n]);
    let [c0, c1, c2] = coef;
    for i in 0..n {
        r0[i] += c0 * col[i];
        r1[i] += c1 * col[i];
        r2[i] += c2 * col[i];
    }
}

/// [`axpy3`] with AVX2 registers, four entries of each row per step, multiplied and added
/// separately as in the portable loop (no fused multiply-add), so both round identically. In
/// intrinsics, and inlined into its AVX2 callers (the convolution scatter calls it once per tap,
/// on runs of a few dozen entries): the portable loop inlined there was left scalar, and passed
/// as a function value it ran behind a call shim compiled for the baseline target.
///
/// # Safety
/// AVX2 must be available. (Every row must hold `col.len()` entries: checked.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn axpy3_avx2(r0: &mut [f64], r1: &mut [f64], r2: &mut [f64], col: &[f64], coef: [f64; 3]) {
    use std::arch::x86_64::*;
    let n = col.len();
    let (r0, r1, r2) = (&mut r0[..n], &mut r1[..n], &mut r2[..n]);
    let c = coef.map(|c| _mm256_set1_pd(c));
    let steps = n / 4;
    for s in 0..steps {
        // SAFETY: 4s + 4 ≤ n, the length of the column and of every row.
        unsafe {
            let w = _mm256_loadu_pd(col.as_ptr().add(4 * s));
            for (r, row) in [r0.as_mut_ptr(), r1.as_mut_ptr(), r2.as_mut_ptr()].into_iter().enumerate() {
                let p = row.add(4 * s);
                _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), _mm256_mul_pd(c[r], w)));
            }
        }
    }
    for i in 4 * steps..n {
        r0[i] += coef[0] * col[i];
        r1[i] += coef[1] * col[i];
        r2[i] += coef[2] * col[i];
    }
}

/// [`axpy3_avx2`] eight entries wide, with a masked last step (the convolution scatter's runs
/// are a channel group's outputs: 16 or 32 entries, or a few more than a multiple of 8).
/// Multiplies and adds separately, as the portable loop.
///
/// # Safety
/// AVX-512F must be available. (Every row must hold `col.len()` entries: checked.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn axpy3_avx512(r0: &mut [f64], r1: &mut [f64], r2: &mut [f64], col: &[f64], coef: [f64; 3]) {
    use std::arch::x86_64::*;
    let n = col.len();
    let (r0, r1, r2) = (&mut r0[..n], &mut r1[..n], &mut r2[..n]);
    let c = coef.map(|c| _mm512_set1_pd(c));
    let rows = [r0.as_mut_ptr(), r1.as_mut_ptr(), r2.as_mut_ptr()];
    let mut at = 0;
    while at < n {
        // All eight lanes, or the ones left in the last step.
        let mask: __mmask8 = if n - at >= 8 { 0xff } else { (1u8 << (n - at)) - 1 };
        // SAFETY: the masked lanes are below n, the length of the column and of every row.
        unsafe {
            let w = _mm512_maskz_loadu_pd(mask, col.as_ptr().add(at));
            for (r, row) in rows.iter().enumerate() {
                let p = row.add(at);
                let v = _mm512_maskz_loadu_pd(mask, p);
                _mm512_mask_storeu_pd(p, mask, _mm512_add_pd(v, _mm512_mul_pd(c[r], w)));
            }
        }
        at += 8;
    }
}

dispatch! {
    /// The post-activation map `h = slope·z + (0, 0, intercept)` of every unit (`h` is `3 × n`).
    fn post_activation / post_activation_avx2 / post_activation_avx512 / post_activation_generic(
        a: &[f64], b: &[f64], c: &[f64], slope: &[f64], intercept: &[f64], h: &mut [f64])
}

#[inline(always)]
fn post_activation_generic(a: &[f64], b: &[f64], c: &[f64], slope: &[f64], intercept: &[f64], h: &mut [f64]) {
    let n = slope.len();
    let (a, b, c, intercept) = (&a[..n], &b[..n], &c[..n], &intercept[..n]);
    let (ha, rest) = h.split_at_mut(n);
    let (hb, hc) = rest.split_at_mut(n);
    let (hc, slope) = (&mut hc[..n], &slope[..n]);
    for i in 0..n {
        ha[i] = slope[i] * a[i];
        hb[i] = slope[i] * b[i];
        hc[i] = slope[i] * c[i] + intercept[i];
    }
}

/// The rows of the transposed matrix of [`product_skipping_zeros`] are padded to a multiple of
/// this many entries.
pub(crate) const PRODUCT_LANES: usize = 8;

/// An input of [`product_skipping_zeros`] left in a group of rows: its index and its three
/// coefficients.
pub(crate) type Input = (usize, [f64; 3]);

/// Widest block of outputs of [`product_skipping_zeros`].
pub(crate) const MAX_BLOCK: usize = 32;

/// `y = x · W` for row vectors `x` given in groups of one to three rows (`groups`, each
/// `g × n_in`: a map's `∂/∂s`, `∂/∂t` and value rows) and `W` given by its rows `wt` (`n_in`
/// rows of `stride` entries: `n_out` weights, then zeros up to `stride`, a multiple of
/// [`PRODUCT_LANES`]), writing the rows one after another into `y`. Inputs that are zero in all three are left out: a
/// quarter to a half of a ReLU layer's units are off in a cell, and a batched product
/// multiplies those zeros too. The outputs go block by block, each block for every group of
/// rows in turn (its weights stay in the cache).
///
/// Every output is the sum over the remaining inputs in ascending order, so a row's result
/// depends on nothing else in the batch (nor on the thread count). Unlike the other kernels
/// here, the vector versions fuse multiply and add (as the blocked product does where the
/// processor has FMA): twice the throughput on the engine's largest products, and results that
/// differ from the baseline build's in the last bits, as those of the blocked product do (the
/// AVX2 and AVX-512 versions round identically).
pub(crate) fn product_skipping_zeros(
    wt: &[f64],
    stride: usize,
    groups: &[&[f64]],
    n_in: usize,
    y: &mut [f64],
    n_out: usize,
) {
    assert!(stride.is_multiple_of(PRODUCT_LANES) && stride >= n_out && wt.len() >= n_in * stride);
    assert!(groups.iter().all(|g| g.len() % n_in.max(1) == 0 && g.len() <= 3 * n_in));
    let rows: usize = groups.iter().map(|g| g.len() / n_in.max(1)).sum();
    assert_eq!(y.len(), rows * n_out);
    if rows == 0 || n_in == 0 || n_out == 0 {
        y.fill(0.0);
        return;
    }
    // The inputs left in each group of rows, with their three coefficients.
    PRODUCT_INPUTS.with_borrow_mut(|(inputs, zero)| {
        product_with(wt, stride, groups, n_in, y, n_out, inputs, zero);
    });
}

thread_local! {
    /// The input lists of [`product_skipping_zeros`] and a row of zeros, kept between calls
    /// (filling fresh ones was a tenth of the product's time).
    static PRODUCT_INPUTS: std::cell::RefCell<(Vec<Input>, Vec<f64>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

#[allow(clippy::too_many_arguments)]
fn product_with(
    wt: &[f64],
    stride: usize,
    groups: &[&[f64]],
    n_in: usize,
    y: &mut [f64],
    n_out: usize,
    inputs: &mut Vec<(usize, [f64; 3])>,
    zero: &mut Vec<f64>,
) {
    if inputs.len() < groups.len() * n_in {
        inputs.resize(groups.len() * n_in, (0, [0.0; 3]));
    }
    if zero.len() < n_in {
        zero.resize(n_in, 0.0);
    }
    let zero = &zero[..n_in];
    let mut starts = Vec::with_capacity(groups.len() + 1);
    starts.push(0);
    let mut len = 0;
    for &xg in groups {
        let row = |r: usize| if r * n_in < xg.len() { &xg[r * n_in..(r + 1) * n_in] } else { zero };
        let (x0, x1, x2) = (row(0), row(1), row(2));
        // Branch-free compaction: every input is written, and kept when it is not zero.
        let slots = &mut inputs[len..len + n_in];
        let mut k = 0;
        for j in 0..n_in {
            let c = [x0[j], x1[j], x2[j]];
            slots[k] = (j, c);
            k += usize::from((c[0] != 0.0) | (c[1] != 0.0) | (c[2] != 0.0));
        }
        len += k;
        starts.push(len);
    }
    let block = block_kernel();
    let mut kb = 0;
    while kb < n_out {
        // A multiple of the padding, so kb + lanes ≤ stride.
        let lanes = MAX_BLOCK.min((n_out - kb).div_ceil(PRODUCT_LANES) * PRODUCT_LANES);
        let m = (n_out - kb).min(lanes);
        let mut rest = &mut y[..];
        for (gi, xg) in groups.iter().enumerate() {
            let g = xg.len() / n_in;
            let (yg, tail) = std::mem::take(&mut rest).split_at_mut(g * n_out);
            rest = tail;
            let mut out = [[0.0; MAX_BLOCK]; 3];
            block(wt, stride, kb, lanes, &inputs[starts[gi]..starts[gi + 1]], &mut out);
            for (r, o) in out.iter().enumerate().take(g) {
                yg[r * n_out + kb..r * n_out + kb + m].copy_from_slice(&o[..m]);
            }
        }
        kb += lanes;
    }
}

/// One output block of the products here: `out[r][..lanes] = Σ c_r · wt[j·stride + kb..]`
/// over the inputs `(j, c)`.
type Block = fn(&[f64], usize, usize, usize, &[Input], &mut [[f64; MAX_BLOCK]; 3]);

/// The widest block kernel the processor runs.
fn block_kernel() -> Block {
    #[cfg(target_arch = "x86_64")]
    {
        // (The feature checks are cached by the standard library.)
        if has_avx512() {
            // SAFETY (both wrappers): the features were detected; both callers assert the
            // blocks' contract (every input's row of `stride` weights is in `wt`, and
            // kb + lanes ≤ stride by the padding).
            |w, s, kb, l, i, o| unsafe { block_avx512(w, s, kb, l, i, o) }
        } else if has_avx2() && std::arch::is_x86_feature_detected!("fma") {
            |w, s, kb, l, i, o| unsafe { block_fma(w, s, kb, l, i, o) }
        } else {
            block_generic
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        block_generic
    }
}

/// One output position of a convolution applied to a map of three rows (`x[r]`, one channel
/// group's inputs each): `Σ_k x_r[taps[k]] · wt[k·stride + o]` for the `n_out` output channels
/// `o`, where `taps` lists the input each tap of the position reads (`u32::MAX` in the
/// padding) and `wt` holds one row of `stride` weights per tap (as for
/// [`product_skipping_zeros`]). As there, taps whose three inputs are zero are left out (after
/// a ReLU, about half of them) and the sums run over the remaining taps in ascending order, so
/// a map's result depends on nothing else. `emit(first output, count, rows)` receives each
/// block of outputs. `inputs` is a work buffer.
pub(crate) fn conv_position(
    wt: &[f64],
    stride: usize,
    n_out: usize,
    x: [&[f64]; 3],
    taps: &[u32],
    inputs: &mut Vec<Input>,
    mut emit: impl FnMut(usize, usize, &[[f64; MAX_BLOCK]; 3]),
) {
    assert!(stride.is_multiple_of(PRODUCT_LANES) && stride >= n_out && wt.len() >= taps.len() * stride);
    if inputs.len() < taps.len() {
        inputs.resize(taps.len(), (0, [0.0; 3]));
    }
    // Branch-free compaction, as in `product_with`.
    let mut len = 0;
    for (k, &t) in taps.iter().enumerate() {
        let c = match x[0].get(t as usize) {
            Some(&c0) => [c0, x[1][t as usize], x[2][t as usize]],
            None => [0.0; 3],
        };
        inputs[len] = (k, c);
        len += usize::from((c[0] != 0.0) | (c[1] != 0.0) | (c[2] != 0.0));
    }
    let block = block_kernel();
    let mut kb = 0;
    while kb < n_out {
        let lanes = MAX_BLOCK.min((n_out - kb).div_ceil(PRODUCT_LANES) * PRODUCT_LANES);
        let mut out = [[0.0; MAX_BLOCK]; 3];
        block(wt, stride, kb, lanes, &inputs[..len], &mut out);
        emit(kb, (n_out - kb).min(lanes), &out);
        kb += lanes;
    }
}

/// Outputs `kb..kb + lanes` (`lanes` a multiple of 8 up to [`MAX_BLOCK`], `kb + lanes ≤
/// stride`) of three rows over `inputs`, into `out[r][..lanes]`: plain multiplies and adds.
fn block_generic(
    wt: &[f64],
    stride: usize,
    kb: usize,
    lanes: usize,
    inputs: &[(usize, [f64; 3])],
    out: &mut [[f64; MAX_BLOCK]; 3],
) {
    for sub in (0..lanes).step_by(PRODUCT_LANES) {
        let mut a = [[0.0; PRODUCT_LANES]; 3];
        for &(j, c) in inputs {
            let at = j * stride + kb + sub;
            let w: &[f64; PRODUCT_LANES] = wt[at..at + PRODUCT_LANES].try_into().expect("lane block");
            for l in 0..PRODUCT_LANES {
                a[0][l] += c[0] * w[l];
                a[1][l] += c[1] * w[l];
                a[2][l] += c[2] * w[l];
            }
        }
        for (o, ar) in out.iter_mut().zip(&a) {
            o[sub..sub + PRODUCT_LANES].copy_from_slice(ar);
        }
    }
}

/// [`block_generic`] in AVX2 registers with fused multiply-adds, sixteen outputs at a time
/// (twelve accumulators for the three rows, one weight vector at a time). Hand-written because
/// the compiler neither fuses (by design) nor keeps twelve accumulators in registers across
/// the input loop.
///
/// # Safety
/// The processor must have AVX2 and FMA; `wt` must hold `stride` entries for every input index
/// in `inputs`, and `kb + lanes ≤ stride` with `lanes` a multiple of 8 up to [`MAX_BLOCK`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_fma(
    wt: &[f64],
    stride: usize,
    kb: usize,
    lanes: usize,
    inputs: &[(usize, [f64; 3])],
    out: &mut [[f64; MAX_BLOCK]; 3],
) {
    let mut sub = 0;
    while sub < lanes {
        // SAFETY (both): kb + sub + 4V ≤ kb + lanes ≤ stride, and the caller's contract.
        if lanes - sub >= 16 {
            unsafe { block_fma_v::<4>(wt, stride, kb + sub, inputs, out, sub) };
            sub += 16;
        } else {
            unsafe { block_fma_v::<2>(wt, stride, kb + sub, inputs, out, sub) };
            sub += 8;
        }
    }
}

/// `V` vectors of four outputs from `kb` on, for three rows, into `out[r][off..off + 4V]`.
///
/// # Safety
/// As [`block_fma`], with `kb + 4V ≤ stride` and `off + 4V ≤ MAX_BLOCK`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn block_fma_v<const V: usize>(
    wt: &[f64],
    stride: usize,
    kb: usize,
    inputs: &[(usize, [f64; 3])],
    out: &mut [[f64; MAX_BLOCK]; 3],
    off: usize,
) {
    use std::arch::x86_64::*;
    let mut a = [[_mm256_setzero_pd(); V]; 3];
    for &(j, c) in inputs {
        debug_assert!(j * stride + kb + 4 * V <= wt.len());
        // SAFETY: the row of input j holds `stride` entries and kb + 4V ≤ stride.
        let p = unsafe { wt.as_ptr().add(j * stride + kb) };
        let (c0, c1, c2) = (_mm256_set1_pd(c[0]), _mm256_set1_pd(c[1]), _mm256_set1_pd(c[2]));
        #[allow(clippy::needless_range_loop)] // one weight vector for the three rows' accumulators
        for v in 0..V {
            // SAFETY: within the row block (see above).
            let w = unsafe { _mm256_loadu_pd(p.add(4 * v)) };
            a[0][v] = _mm256_fmadd_pd(c0, w, a[0][v]);
            a[1][v] = _mm256_fmadd_pd(c1, w, a[1][v]);
            a[2][v] = _mm256_fmadd_pd(c2, w, a[2][v]);
        }
    }
    for (o, ar) in out.iter_mut().zip(&a) {
        for (v, &av) in ar.iter().enumerate() {
            // SAFETY: off + 4V ≤ MAX_BLOCK entries of the row.
            unsafe { _mm256_storeu_pd(o.as_mut_ptr().add(off + 4 * v), av) };
        }
    }
}

/// [`block_fma`] in AVX-512 registers, the whole block at once (up to twelve accumulators):
/// the same fused operations in the same order per output, so both round identically.
///
/// # Safety
/// As [`block_fma`], with AVX-512F instead of AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512(
    wt: &[f64],
    stride: usize,
    kb: usize,
    lanes: usize,
    inputs: &[(usize, [f64; 3])],
    out: &mut [[f64; MAX_BLOCK]; 3],
) {
    // SAFETY (each): kb + 8V = kb + lanes ≤ stride, and the caller's contract.
    match lanes / 8 {
        1 => unsafe { block_avx512_v::<1>(wt, stride, kb, inputs, out) },
        2 => unsafe { block_avx512_v::<2>(wt, stride, kb, inputs, out) },
        3 => unsafe { block_avx512_v::<3>(wt, stride, kb, inputs, out) },
        _ => unsafe { block_avx512_v::<4>(wt, stride, kb, inputs, out) },
    }
}

/// `V` vectors of eight outputs from `kb` on, for three rows, into `out[r][..8V]`.
///
/// # Safety
/// As [`block_avx512`], with `kb + 8V ≤ stride`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block_avx512_v<const V: usize>(
    wt: &[f64],
    stride: usize,
    kb: usize,
    inputs: &[(usize, [f64; 3])],
    out: &mut [[f64; MAX_BLOCK]; 3],
) {
    use std::arch::x86_64::*;
    let mut a = [[_mm512_setzero_pd(); V]; 3];
    for &(j, c) in inputs {
        debug_assert!(j * stride + kb + 8 * V <= wt.len());
        // SAFETY: the row of input j holds `stride` entries and kb + 8V ≤ stride.
        let p = unsafe { wt.as_ptr().add(j * stride + kb) };
        let (c0, c1, c2) = (_mm512_set1_pd(c[0]), _mm512_set1_pd(c[1]), _mm512_set1_pd(c[2]));
        #[allow(clippy::needless_range_loop)] // one weight vector for the three rows' accumulators
        for v in 0..V {
            // SAFETY: within the row block (see above).
            let w = unsafe { _mm512_loadu_pd(p.add(8 * v)) };
            a[0][v] = _mm512_fmadd_pd(c0, w, a[0][v]);
            a[1][v] = _mm512_fmadd_pd(c1, w, a[1][v]);
            a[2][v] = _mm512_fmadd_pd(c2, w, a[2][v]);
        }
    }
    for (o, ar) in out.iter_mut().zip(&a) {
        for (v, &av) in ar.iter().enumerate() {
            // SAFETY: 8V ≤ MAX_BLOCK entries of the row.
            unsafe { _mm512_storeu_pd(o.as_mut_ptr().add(8 * v), av) };
        }
    }
}

/// Marks a group of four candidates that the box leaves undecided in [`box_winners4`].
pub(crate) const UNDECIDED4: u8 = u8::MAX;

/// Groups of four candidates (2 × 2 pooling windows): candidate `k` of group `g` is unit
/// `cols[k][g]`, every unit below `n`.
pub(crate) struct Quads {
    cols: [Vec<u32>; 4],
    n: usize,
    /// Per block of four consecutive groups: the row width `w` when the block is four
    /// adjacent 2 × 2 windows of one pair of rows (units `u + 2j + {0, 1, w, w + 1}` for
    /// `j < 4`, the layout of a stride-2 pooling over a channel-major map), else 0. Such a
    /// block's bounds come from four contiguous loads per array instead of gathers.
    rows: Vec<u32>,
}

impl Quads {
    /// The groups as columns, when every group has four candidates and every unit fits the
    /// gathers' 32-bit indices.
    pub(crate) fn new(groups: &[Vec<u32>]) -> Option<Self> {
        let n = groups.iter().flatten().map(|&u| u as usize + 1).max().unwrap_or(0);
        if !(groups.iter().all(|g| g.len() == 4) && n <= i32::MAX as usize) {
            return None;
        }
        let rows = groups
            .chunks_exact(4)
            .map(|b| {
                // (Every unit is below 2³¹, so these sums do not overflow.)
                let (u, w) = (b[0][0], b[0][2].saturating_sub(b[0][0]));
                let regular = w >= 2
                    && b.iter().enumerate().all(|(j, g)| {
                        let v = u + 2 * j as u32;
                        g[..] == [v, v + 1, v + w, v + w + 1]
                    });
                if regular {
                    w
                } else {
                    0
                }
            })
            .collect();
        Some(Quads { cols: std::array::from_fn(|k| groups.iter().map(|g| g[k]).collect()), n, rows })
    }

    fn units(&self, g: usize) -> [u32; 4] {
        self.cols.each_ref().map(|c| c[g])
    }
}

/// For every group of `quads`, the position whose lower bound over the box `center ± half`
/// beats every other candidate's upper bound plus the tolerance of both, a later candidate with
/// the very same map not counting against it, or [`UNDECIDED4`]: the rule of
/// [`box_winner4_rule`] on the bounds of [`quad_bounds`] (those of [`box_bounds_tol`]), with
/// the scalar operations in the scalar order, so both versions decide alike. `z` holds the
/// units' maps (`3 × n`), `noise` their noise floors. A decided group's winner map goes to `t`
/// (`3 × groups`, row-major); an undecided group's entries of `t` are left to the caller.
///
/// Written by hand (AVX2: contiguous loads split into even and odd entries for adjacent
/// windows, gathers otherwise) because the compiler does not vectorise these indexed loads;
/// the bounds are computed here from the maps the rule loads anyway, instead of in a separate
/// pass over every unit. Four groups per step instead of one was most of a 2 × 2 max-pool's
/// classification of a base. Panics unless `z` and `noise` cover the quads' units.
#[allow(clippy::too_many_arguments)]
pub(crate) fn box_winners4(
    quads: &Quads,
    z: &[f64],
    noise: &[f64],
    center: [f64; 2],
    half: [f64; 2],
    win: &mut [u8],
    t: &mut [f64],
) {
    let g_count = win.len();
    let n = z.len() / 3;
    assert!(quads.cols[0].len() == g_count && t.len() == 3 * g_count);
    assert!(quads.n <= n && noise.len() >= n);
    let mut start = 0;
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: AVX-512F was detected; every unit is below `quads.n ≤ n`, asserted
            // above, and a block of adjacent windows reads from its first unit to its last one
            // (`u` to `u + w + 7`), all of them units of the block.
            start = unsafe { box_winners4_avx512(quads, z, noise, center, half, win, t) };
        }
        if has_avx2() {
            // SAFETY: as above, with AVX2; the blocks of four left after those done eight at a
            // time (`start`, a multiple of 8).
            start = unsafe { box_winners4_avx2(quads, z, noise, center, half, win, t, start) };
        }
    }
    for g in start..g_count {
        let us = quads.units(g);
        let w = box_winner4_scalar(&us, z, noise, center, half);
        win[g] = w.map_or(UNDECIDED4, |w| w as u8);
        if let Some(w) = w {
            let u = us[w] as usize;
            (t[g], t[g_count + g], t[2 * g_count + g]) = (z[u], z[n + u], z[2 * n + u]);
        }
    }
}

/// Unit `u`'s `(lo, hi_tol, tol)` over the box `center ± half`: one entry of
/// [`box_bounds_tol`], by the same operations.
#[inline]
pub(crate) fn quad_bounds(z: &[f64], noise: &[f64], center: [f64; 2], half: [f64; 2], u: usize) -> (f64, f64, f64) {
    let n = z.len() / 3;
    map_bounds([z[u], z[n + u], z[2 * n + u]], noise[u], center, half)
}

/// The `(lo, hi_tol, tol)` of [`quad_bounds`] for a unit given by its map and noise floor.
#[inline]
pub(crate) fn map_bounds(m: [f64; 3], noise: f64, center: [f64; 2], half: [f64; 2]) -> (f64, f64, f64) {
    let (l, h) = box_range(m[0], m[1], m[2], center, half);
    let t = tolerance(m[0], m[1], noise);
    (l, h + t, t)
}

/// [`box_winner4_rule`] of four candidates given by their maps and noise floors: the box test
/// of a group that the sparse classification of a cell gathered (its units' maps are the base's
/// plus the cell's corrections).
#[inline]
pub(crate) fn box_winner4_of_maps(
    maps: [[f64; 3]; 4],
    noise: [f64; 4],
    center: [f64; 2],
    half: [f64; 2],
) -> Option<usize> {
    let b: [(f64, f64, f64); 4] = std::array::from_fn(|k| map_bounds(maps[k], noise[k], center, half));
    box_winner4_rule(b.map(|b| b.0), b.map(|b| b.1), b.map(|b| b.2), maps)
}

/// [`box_winners4`] for one group, in scalar code.
#[inline]
pub(crate) fn box_winner4_scalar(
    us: &[u32; 4],
    z: &[f64],
    noise: &[f64],
    center: [f64; 2],
    half: [f64; 2],
) -> Option<usize> {
    let n = z.len() / 3;
    let u = us.map(|u| u as usize);
    let b = u.map(|u| quad_bounds(z, noise, center, half, u));
    let maps = u.map(|u| [z[u], z[n + u], z[2 * n + u]]);
    box_winner4_rule(b.map(|b| b.0), b.map(|b| b.1), b.map(|b| b.2), maps)
}

/// The box test of a group of four candidates with lower bounds `l`, upper bounds plus
/// tolerance `h`, tolerances `t` and maps `maps`: the first candidate with the largest lower
/// bound, when every other one's upper bound plus the winner's tolerance is below it or, for a
/// later candidate, its map is the very same (two dead units feeding one window: the tie goes
/// to the lower position) — the rule of the max layer's classification. Straight-line selects
/// with no branch per candidate: the outcome is close to random in a trained layer.
#[inline]
pub(crate) fn box_winner4_rule(l: [f64; 4], h: [f64; 4], t: [f64; 4], maps: [[f64; 3]; 4]) -> Option<usize> {
    // First largest: ties keep the lower position, as the sequential scan does.
    let (b01, l01) = if l[1] > l[0] { (1, l[1]) } else { (0, l[0]) };
    let (b23, l23) = if l[3] > l[2] { (3, l[3]) } else { (2, l[2]) };
    let (best, best_lo) = if l23 > l01 { (b23, l23) } else { (b01, l01) };
    let tb = t[best];
    let mut below = true;
    for (k, &hk) in h.iter().enumerate() {
        below &= (k == best) | (hk + tb < best_lo) | (k > best && maps[k] == maps[best]);
    }
    below.then_some(best)
}

/// Candidate `k` of the four groups of block `s` (groups `4s..4s + 4`) from the array `a`: four
/// gathers, or for four adjacent windows of one row pair two contiguous loads per row (of the
/// window rows' eight entries) split into even and odd entries.
///
/// # Safety
/// AVX2 must be available; the block's units must index `a` (for adjacent windows, `u` to
/// `u + w + 7`, all of them units of the block).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn quad_block(quads: &Quads, s: usize, a: &[f64]) -> [std::arch::x86_64::__m256d; 4] {
    use std::arch::x86_64::*;
    let g = 4 * s;
    let w = quads.rows[s] as usize;
    // SAFETY (each): the caller's contract.
    unsafe {
        if w == 0 {
            let idx: [__m128i; 4] = std::array::from_fn(|k| _mm_loadu_si128(quads.cols[k].as_ptr().add(g).cast()));
            std::array::from_fn(|k| _mm256_i32gather_pd::<8>(a.as_ptr(), idx[k]))
        } else {
            let u = quads.cols[0][g] as usize;
            let (r0, r1) = (a.as_ptr().add(u), a.as_ptr().add(u + w));
            let (a0, a1) = (_mm256_loadu_pd(r0), _mm256_loadu_pd(r0.add(4)));
            let (b0, b1) = (_mm256_loadu_pd(r1), _mm256_loadu_pd(r1.add(4)));
            // unpack gives [x0, y0, x2, y2]; the permute puts it in group order.
            let order = |v| _mm256_permute4x64_pd::<0b11_01_10_00>(v);
            [
                order(_mm256_unpacklo_pd(a0, a1)),
                order(_mm256_unpackhi_pd(a0, a1)),
                order(_mm256_unpacklo_pd(b0, b1)),
                order(_mm256_unpackhi_pd(b0, b1)),
            ]
        }
    }
}

/// The groups of [`box_winners4`] eight at a time (two blocks of [`quad_block`] side by side in
/// 512-bit registers: with 32 registers nothing spills, which the AVX2 version's maps and
/// bounds did); returns how many it did (a multiple of 8). The same operations as
/// [`box_winners4_avx2`], lane for lane.
///
/// # Safety
/// AVX-512F must be available, and every unit of `quads` must index `noise` and the three rows
/// of `z`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn box_winners4_avx512(
    quads: &Quads,
    z: &[f64],
    noise: &[f64],
    center: [f64; 2],
    half: [f64; 2],
    win: &mut [u8],
    t: &mut [f64],
) -> usize {
    use std::arch::x86_64::*;
    let (g_count, n) = (win.len(), z.len() / 3);
    let steps = g_count / 8;
    let pos: [__m512d; 4] = [0.0, 1.0, 2.0, 3.0].map(|p| _mm512_set1_pd(p));
    let (cx, cy, hx, hy) =
        (_mm512_set1_pd(center[0]), _mm512_set1_pd(center[1]), _mm512_set1_pd(half[0]), _mm512_set1_pd(half[1]));
    let (dist, sign) = (_mm512_set1_pd(DIST), _mm512_set1_pd(-0.0));
    for s in 0..steps {
        let g = 8 * s;
        // SAFETY: g + 8 ≤ g_count = every column's length, and t has 3 rows of g_count; the
        // units index the bounds and z's rows (the caller's contract).
        unsafe {
            let load = |a: &[f64]| -> [__m512d; 4] {
                let (lo, hi) = (quad_block(quads, 2 * s, a), quad_block(quads, 2 * s + 1, a));
                std::array::from_fn(|k| _mm512_insertf64x4::<1>(_mm512_castpd256_pd512(lo[k]), hi[k]))
            };
            let maps: [[__m512d; 4]; 3] = std::array::from_fn(|r| load(&z[r * n..(r + 1) * n]));
            let nz = load(noise);
            let abs = |v| _mm512_castsi512_pd(_mm512_andnot_si512(_mm512_castpd_si512(sign), _mm512_castpd_si512(v)));
            let (mut l, mut h, mut tl) = ([_mm512_setzero_pd(); 4], [_mm512_setzero_pd(); 4], [_mm512_setzero_pd(); 4]);
            for k in 0..4 {
                let (a, b, c) = (maps[0][k], maps[1][k], maps[2][k]);
                let mid = _mm512_add_pd(_mm512_add_pd(_mm512_mul_pd(a, cx), _mm512_mul_pd(b, cy)), c);
                let rad = _mm512_add_pd(_mm512_mul_pd(abs(a), hx), _mm512_mul_pd(abs(b), hy));
                tl[k] = _mm512_add_pd(_mm512_mul_pd(dist, _mm512_add_pd(abs(a), abs(b))), nz[k]);
                l[k] = _mm512_sub_pd(mid, rad);
                h[k] = _mm512_add_pd(_mm512_add_pd(mid, rad), tl[k]);
            }
            // First largest lower bound (ties keep the lower position), as in the AVX2 version.
            let m01 = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(l[1], l[0]);
            let m23 = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(l[3], l[2]);
            let m = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(
                _mm512_mask_blend_pd(m23, l[2], l[3]),
                _mm512_mask_blend_pd(m01, l[0], l[1]),
            );
            let pick = |v: &[__m512d; 4]| {
                _mm512_mask_blend_pd(m, _mm512_mask_blend_pd(m01, v[0], v[1]), _mm512_mask_blend_pd(m23, v[2], v[3]))
            };
            let (best_lo, best, tb) = (pick(&l), pick(&pos), pick(&tl));
            let best_map = maps.each_ref().map(pick);
            let mut below: __mmask8 = 0xff;
            for k in 0..4 {
                let is_best = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(best, pos[k]);
                let under = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(_mm512_add_pd(h[k], tb), best_lo);
                // A later candidate with the winner's very map does not count against it.
                let mut same = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(pos[k], best);
                for r in 0..3 {
                    same &= _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(maps[r][k], best_map[r]);
                }
                below &= is_best | under | same;
            }
            for (r, v) in best_map.iter().enumerate() {
                _mm512_storeu_pd(t.as_mut_ptr().add(r * g_count + g), *v);
            }
            let mut b = [0.0; 8];
            _mm512_storeu_pd(b.as_mut_ptr(), best);
            for (j, &bj) in b.iter().enumerate() {
                win[g + j] = if below >> j & 1 == 1 { bj as u8 } else { UNDECIDED4 };
            }
        }
    }
    8 * steps
}

/// The groups of [`box_winners4`] four at a time; returns how many it did (a multiple of 4).
///
/// # Safety
/// AVX2 must be available, and every unit of `quads` must index `noise` and the three rows of
/// `z`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn box_winners4_avx2(
    quads: &Quads,
    z: &[f64],
    noise: &[f64],
    center: [f64; 2],
    half: [f64; 2],
    win: &mut [u8],
    t: &mut [f64],
    from: usize,
) -> usize {
    use std::arch::x86_64::*;
    let (g_count, n) = (win.len(), z.len() / 3);
    let steps = g_count / 4;
    let pos: [__m256d; 4] = [0.0, 1.0, 2.0, 3.0].map(|p| _mm256_set1_pd(p));
    let (cx, cy, hx, hy) =
        (_mm256_set1_pd(center[0]), _mm256_set1_pd(center[1]), _mm256_set1_pd(half[0]), _mm256_set1_pd(half[1]));
    let (dist, sign, zero) = (_mm256_set1_pd(DIST), _mm256_set1_pd(-0.0), _mm256_setzero_pd());
    for s in from / 4..steps {
        let g = 4 * s;
        // SAFETY: g + 4 ≤ g_count = every column's length, and t has 3 rows of g_count; the
        // units index the bounds and z's rows (the caller's contract).
        unsafe {
            let load = |a: &[f64]| quad_block(quads, s, a);
            // The candidates' maps (for the bounds, the tie rule and the winner's map), and their
            // bounds as in `quad_bounds`, operation for operation.
            let maps: [[__m256d; 4]; 3] = std::array::from_fn(|r| load(&z[r * n..(r + 1) * n]));
            let nz = load(noise);
            let abs = |v| _mm256_andnot_pd(sign, v);
            let (mut l, mut h, mut tl) = ([zero; 4], [zero; 4], [zero; 4]);
            for k in 0..4 {
                let (a, b, c) = (maps[0][k], maps[1][k], maps[2][k]);
                let mid = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(a, cx), _mm256_mul_pd(b, cy)), c);
                let rad = _mm256_add_pd(_mm256_mul_pd(abs(a), hx), _mm256_mul_pd(abs(b), hy));
                tl[k] = _mm256_add_pd(_mm256_mul_pd(dist, _mm256_add_pd(abs(a), abs(b))), nz[k]);
                l[k] = _mm256_sub_pd(mid, rad);
                h[k] = _mm256_add_pd(_mm256_add_pd(mid, rad), tl[k]);
            }
            let m01 = _mm256_cmp_pd::<_CMP_GT_OQ>(l[1], l[0]);
            let m23 = _mm256_cmp_pd::<_CMP_GT_OQ>(l[3], l[2]);
            let m = _mm256_cmp_pd::<_CMP_GT_OQ>(_mm256_blendv_pd(l[2], l[3], m23), _mm256_blendv_pd(l[0], l[1], m01));
            let pick = |v: &[__m256d; 4]| {
                _mm256_blendv_pd(_mm256_blendv_pd(v[0], v[1], m01), _mm256_blendv_pd(v[2], v[3], m23), m)
            };
            let (best_lo, best, tb) = (pick(&l), pick(&pos), pick(&tl));
            let best_map = maps.each_ref().map(pick);
            let mut below = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
            for k in 0..4 {
                let is_best = _mm256_cmp_pd::<_CMP_EQ_OQ>(best, pos[k]);
                let under = _mm256_cmp_pd::<_CMP_LT_OQ>(_mm256_add_pd(h[k], tb), best_lo);
                // A later candidate with the winner's very map does not count against it.
                let mut same = _mm256_cmp_pd::<_CMP_GT_OQ>(pos[k], best);
                for r in 0..3 {
                    same = _mm256_and_pd(same, _mm256_cmp_pd::<_CMP_EQ_OQ>(maps[r][k], best_map[r]));
                }
                below = _mm256_and_pd(below, _mm256_or_pd(_mm256_or_pd(is_best, under), same));
            }
            for (r, v) in best_map.iter().enumerate() {
                _mm256_storeu_pd(t.as_mut_ptr().add(r * g_count + g), *v);
            }
            let decided = _mm256_movemask_pd(below);
            let mut b = [0.0; 4];
            _mm256_storeu_pd(b.as_mut_ptr(), best);
            for (j, &bj) in b.iter().enumerate() {
                win[g + j] = if decided >> j & 1 == 1 { bj as u8 } else { UNDECIDED4 };
            }
        }
    }
    4 * steps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Maps `3 × n` of units, half of them the zero map of a dead unit and the rest drawn from
    /// a few values, so that candidates with the very same map are common.
    fn coarse_maps(rng: &mut impl rand::Rng, n: usize) -> Vec<f64> {
        let mut z = vec![0.0; 3 * n];
        for u in 0..n {
            if rng.random_bool(0.5) {
                for r in 0..3 {
                    z[r * n + u] = f64::from(rng.random_range(-1..2)) * 0.5;
                }
            }
        }
        z
    }

    /// Runs [`box_winners4`] on `groups` (units below `n`) with coarse random maps, noise
    /// floors and boxes, where ties, equal maps and near misses are common, and checks every
    /// group against the scalar test: the same verdict, and a decided group's map. Counts
    /// (undecided, decided).
    fn check_winners4(rng: &mut impl rand::Rng, groups: &[Vec<u32>], n: usize, outcomes: &mut [usize; 2]) {
        let quads = Quads::new(groups).expect("groups of four");
        let z = coarse_maps(rng, n);
        let noise: Vec<f64> = (0..n).map(|_| f64::from(rng.random_range(0..2)) * 0.125).collect();
        let center = [f64::from(rng.random_range(-2..3)) * 0.5, f64::from(rng.random_range(-2..3)) * 0.5];
        let half = [f64::from(rng.random_range(0..3)) * 0.25, f64::from(rng.random_range(0..3)) * 0.25];
        let g_count = groups.len();
        let mut win = vec![0u8; g_count];
        let mut t = vec![f64::NAN; 3 * g_count];
        box_winners4(&quads, &z, &noise, center, half, &mut win, &mut t);
        for (g, &got) in win.iter().enumerate() {
            let us: [u32; 4] = groups[g].clone().try_into().expect("four");
            let want = box_winner4_scalar(&us, &z, &noise, center, half);
            assert_eq!(want.map_or(UNDECIDED4, |b| b as u8), got, "group {g} of {us:?}");
            if let Some(b) = want {
                let u = us[b] as usize;
                let map = [t[g], t[g_count + g], t[2 * g_count + g]];
                assert_eq!(map, [z[u], z[n + u], z[2 * n + u]], "map of group {g}");
            }
            outcomes[usize::from(want.is_some())] += 1;
        }
        // The bounds are those of the vectorised pass.
        let (mut lo, mut hi_tol, mut tol) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let (a, b, c) = (&z[..n], &z[n..2 * n], &z[2 * n..]);
        box_bounds_tol(a, b, c, &noise, center, half, &mut lo, &mut hi_tol, &mut tol);
        for u in 0..n {
            assert_eq!(quad_bounds(&z, &noise, center, half, u), (lo[u], hi_tol[u], tol[u]), "unit {u}");
        }
    }

    /// Groups of a 2 × 2 stride-2 pooling over channel-major maps, whose blocks of adjacent
    /// windows take contiguous loads (and blocks that straddle two rows, or channels, take
    /// gathers): the same winners and maps as the scalar test.
    #[test]
    fn box_winners4_of_pooling_windows_match_the_scalar_test() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let mut outcomes = [0usize; 2];
        // (channels, height, width, blocks of four adjacent windows in one row pair)
        for (c, h, w, adjacent) in [(3, 6, 8, 9), (2, 4, 10, 2), (1, 8, 16, 8), (4, 2, 2, 0)] {
            let mut list = Vec::new();
            for ch in 0..c {
                for i in 0..h / 2 {
                    for j in 0..w / 2 {
                        let u = (ch * h * w + 2 * i * w + 2 * j) as u32;
                        list.push(vec![u, u + 1, u + w as u32, u + w as u32 + 1]);
                    }
                }
            }
            let rows = Quads::new(&list).expect("groups of four").rows;
            assert_eq!(rows.iter().filter(|&&r| r != 0).count(), adjacent, "{c}×{h}×{w}: {rows:?}");
            for _ in 0..50 {
                check_winners4(&mut rng, &list, c * h * w, &mut outcomes);
            }
        }
        assert!(outcomes.iter().all(|&c| c > 200), "{outcomes:?}");
    }

    /// The same on groups of random units, with groups left over after the blocks of four.
    #[test]
    fn box_winners4_match_the_scalar_test() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut outcomes = [0usize; 2];
        for trial in 0..200 {
            let n = 40;
            let groups = 1 + trial % 23;
            let list: Vec<Vec<u32>> =
                (0..groups).map(|_| (0..4).map(|_| rng.random_range(0..n as u32)).collect()).collect();
            check_winners4(&mut rng, &list, n, &mut outcomes);
        }
        assert!(outcomes.iter().all(|&c| c > 200), "{outcomes:?}");
    }

    #[test]
    fn builds_of_a_kernel_round_alike() {
        // The dense classification, in every build this processor runs, on the same inputs:
        // equal to the last bit (none of them fuses a multiply and an add).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 203;
        let mut draw = |s: f64| -> Vec<f64> { (0..n).map(|_| rng.random_range(-s..s)).collect() };
        let (a, b, c, noise, bp) = (draw(1.0), draw(1.0), draw(0.5), draw(1e-6), draw(0.2));
        let da: Vec<f64> = (0..n).map(|i| if i % 7 == 0 { 0.0 } else { 1.0 }).collect();
        let (slope0, intercept0) = (vec![0.0; n], vec![0.0; n]);
        type Kernel<'a> = &'a dyn Fn(&mut [MaybeUninit<f64>], &mut [u8]);
        let run = |f: Kernel<'_>| {
            let mut t = vec![MaybeUninit::new(f64::NAN); 3 * n];
            let mut state = vec![9u8; n];
            f(&mut t, &mut state);
            // SAFETY: every kernel writes all 3n entries (and they started initialised).
            (t.iter().map(|x| unsafe { x.assume_init() }.to_bits()).collect::<Vec<u64>>(), state)
        };
        let (center, half) = ([0.1, -0.2], [0.3, 0.25]);
        let plain = run(&|t, st| {
            classify_single_generic(&a, &b, &c, &noise, center, half, &bp, &da, &slope0, &intercept0, t, st)
        });
        assert!(plain.1.iter().all(|&s| s <= 2) && plain.1.contains(&2) && plain.1.contains(&1));
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx2() {
                // SAFETY: AVX2 was detected.
                let got = run(&|t, st| unsafe {
                    classify_single_avx2(&a, &b, &c, &noise, center, half, &bp, &da, &slope0, &intercept0, t, st)
                });
                assert_eq!(got, plain, "AVX2");
            }
            if has_avx512() {
                // SAFETY: AVX-512F was detected.
                let got = run(&|t, st| unsafe {
                    classify_single_avx512(&a, &b, &c, &noise, center, half, &bp, &da, &slope0, &intercept0, t, st)
                });
                assert_eq!(got, plain, "AVX-512");
            }
        }
    }

    #[test]
    fn dispatched_kernels_match_plain_loops() {
        let n = 13;
        let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
        let b: Vec<f64> = (0..n).map(|i| (i as f64 * 1.3).cos()).collect();
        let c: Vec<f64> = (0..n).map(|i| i as f64 * 0.1 - 0.6).collect();
        let pts = [[-1.0, -1.0], [1.0, -0.5], [0.3, 1.0]];
        let (mut lo, mut hi) = (vec![0.0; n], vec![0.0; n]);
        box_bounds(&a, &b, &c, [0.0, 0.0], [1.0, 1.0], &mut lo, &mut hi);
        for i in 0..n {
            for p in pts {
                let val = a[i] * p[0] + b[i] * p[1] + c[i];
                assert!(lo[i] <= val && val <= hi[i]);
            }
            assert!((hi[i] - lo[i] - 2.0 * (a[i].abs() + b[i].abs())).abs() < 1e-12);
        }
        let mut mark = vec![0u8; n];
        mark_undecided(&a, &b, &vec![0.0; n], &lo, &hi, &vec![0.0; n], &vec![1.0; n], &mut mark);
        for i in 0..n {
            assert_eq!(mark[i] == 1, lo[i] < 0.0 && hi[i] > 0.0, "unit {i}");
        }
        let bp = vec![0.0; n];
        let da = vec![1.0; n];
        let (mut slope, mut icpt, mut state) = (vec![0.0; n], vec![0.0; n], vec![0u8; n]);
        classify_slot(&a, &b, &bp, &lo, &hi, &bp, &da, &mut slope, &mut icpt, &mut state);
        for i in 0..n {
            let tol = hinge_tol(a[i], b[i], 0.0, 0.0);
            let expect = if lo[i] > tol {
                1
            } else if hi[i] < -tol {
                0
            } else {
                2
            };
            assert_eq!(state[i], expect, "unit {i}: [{}, {}]", lo[i], hi[i]);
            assert_eq!(slope[i], if expect == 1 { 1.0 } else { 0.0 });
        }
        let (mut r0, mut r1, mut r2) = (vec![1.0; n], vec![2.0; n], vec![3.0; n]);
        axpy3(&mut r0, &mut r1, &mut r2, &a, [2.0, 0.0, -1.0]);
        for i in 0..n {
            assert_eq!((r0[i], r1[i], r2[i]), (1.0 + 2.0 * a[i], 2.0, 3.0 - a[i]));
        }
        // The AVX2 version against the portable one, at every length (body and tail), equal
        // to the last bit (neither fuses).
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            for len in [0, 1, 3, 4, 5, 8, 13, 16, 32, 40] {
                let col: Vec<f64> = (0..len).map(|i| a[i % n] * (1.0 + i as f64 / 7.0)).collect();
                let rows: Vec<Vec<f64>> =
                    (0..3).map(|r| (0..len).map(|i| (i * 3 + r) as f64 / 3.0).collect()).collect();
                let (mut p0, mut p1, mut p2) = (rows[0].clone(), rows[1].clone(), rows[2].clone());
                let (mut v0, mut v1, mut v2) = (rows[0].clone(), rows[1].clone(), rows[2].clone());
                axpy3_generic(&mut p0, &mut p1, &mut p2, &col, [2.0, 0.3, -1.1]);
                let (mut w0, mut w1, mut w2) = (v0.clone(), v1.clone(), v2.clone());
                // SAFETY: AVX2 was detected; the rows are as long as the column.
                unsafe { axpy3_avx2(&mut v0, &mut v1, &mut v2, &col, [2.0, 0.3, -1.1]) };
                assert_eq!((&v0, &v1, &v2), (&p0, &p1, &p2), "length {len}");
                if has_avx512() {
                    // SAFETY: AVX-512F was detected; the rows are as long as the column.
                    unsafe { axpy3_avx512(&mut w0, &mut w1, &mut w2, &col, [2.0, 0.3, -1.1]) };
                    assert_eq!((w0, w1, w2), (p0, p1, p2), "AVX-512, length {len}");
                }
            }
        }
    }

    /// The product that skips zero inputs against a plain triple loop, over shapes that
    /// exercise every block width, partial groups of rows and padded strides; and the
    /// dispatched (fused, where the processor has it) version against the plain blocks.
    #[test]
    fn product_skipping_zeros_matches_plain_product() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (rows, n_in, n_out) in
            [(1usize, 1usize, 1usize), (2, 5, 8), (3, 37, 13), (4, 120, 84), (7, 16, 33), (6, 9, 40)]
        {
            let stride = n_out.div_ceil(PRODUCT_LANES) * PRODUCT_LANES;
            let mut wt = vec![0.0; n_in * stride];
            for j in 0..n_in {
                for k in 0..n_out {
                    wt[j * stride + k] = rng.random_range(-1.0..1.0);
                }
            }
            // About half the inputs zero in all three rows of a group, some in only one row.
            let mut x = vec![0.0; rows * n_in];
            for (g, xg) in x.chunks_mut(3 * n_in).enumerate() {
                let h = xg.len() / n_in;
                for j in 0..n_in {
                    if (j + g) % 2 == 0 {
                        for r in 0..h {
                            if (r + j) % 3 != 0 {
                                xg[r * n_in + j] = rng.random_range(-2.0..2.0);
                            }
                        }
                    }
                }
            }
            let mut y = vec![f64::NAN; rows * n_out];
            let groups: Vec<&[f64]> = x.chunks(3 * n_in).collect();
            product_skipping_zeros(&wt, stride, &groups, n_in, &mut y, n_out);
            for r in 0..rows {
                for k in 0..n_out {
                    let want: f64 = (0..n_in).map(|j| x[r * n_in + j] * wt[j * stride + k]).sum();
                    let scale: f64 = (0..n_in).map(|j| (x[r * n_in + j] * wt[j * stride + k]).abs()).sum();
                    assert!(
                        (y[r * n_out + k] - want).abs() <= 1e-14 * scale.max(1.0),
                        "{rows}×{n_in}→{n_out}: row {r}, output {k}"
                    );
                }
            }
            // The plain blocks give the plain loop's sums exactly (same order, no fusing).
            let inputs: Vec<(usize, [f64; 3])> = (0..n_in)
                .map(|j| (j, std::array::from_fn(|r| if r < rows { x[r * n_in + j] } else { 0.0 })))
                .filter(|(_, c)| *c != [0.0; 3])
                .collect();
            let lanes = MAX_BLOCK.min(stride);
            let mut out = [[0.0; MAX_BLOCK]; 3];
            block_generic(&wt, stride, 0, lanes, &inputs, &mut out);
            for r in 0..rows.min(3) {
                for k in 0..lanes.min(n_out) {
                    let mut want = 0.0;
                    for &(j, c) in &inputs {
                        want += c[r] * wt[j * stride + k];
                    }
                    assert_eq!(out[r][k], want, "{rows}×{n_in}→{n_out}: row {r}, output {k}");
                }
            }
        }
    }
}
