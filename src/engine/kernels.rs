//! The engine's innermost loops, compiled twice: for the baseline target and for AVX2, chosen
//! at run time. The binary stays portable while the loops run four f64 lanes wide where the
//! processor allows. No fused multiply-add is introduced, so both versions round identically.

use crate::geometry::predicates::{is_neg, is_pos, tolerance, NOISE};

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
}

macro_rules! dispatch {
    ($(#[$doc:meta])* fn $name:ident / $avx:ident / $generic:ident ($($arg:ident : $ty:ty),*)) => {
        $(#[$doc])*
        #[inline]
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
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
fn box_range(a: f64, b: f64, c: f64, center: [f64; 2], half: [f64; 2]) -> (f64, f64) {
    let mid = a * center[0] + b * center[1] + c;
    let rad = a.abs() * half[0] + b.abs() * half[1];
    (mid - rad, mid + rad)
}

dispatch! {
    /// Bounds of every unit's `a·u + b·v + c` over the box `center ± half`: a cheap enclosure
    /// of the values over any polygon inside that box.
    fn box_bounds / box_bounds_avx2 / box_bounds_generic(a: &[f64], b: &[f64], c: &[f64], center: [f64; 2], half: [f64; 2], lo: &mut [f64], hi: &mut [f64])
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
    fn box_bounds_tol / box_bounds_tol_avx2 / box_bounds_tol_generic(
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
    /// over the units instead of four moves a third of the memory.
    fn classify_single / classify_single_avx2 / classify_single_generic(
        a: &[f64], b: &[f64], c: &[f64], noise: &[f64], center: [f64; 2], half: [f64; 2],
        bp: &[f64], da: &[f64], slope0: &[f64], intercept0: &[f64], t: &mut [f64], state: &mut [u8])
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
    t: &mut [f64],
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
        ta[i] = slope * a[i];
        tb[i] = slope * b[i];
        tc[i] = slope * c[i] + intercept;
        state[i] = if decided { up as u8 } else { 2 };
    }
}

dispatch! {
    /// Marks (`mark[i] = 1`) the units whose enclosure `[lo, hi]` is not decisively on one
    /// side of their hinge `(bp, da)`: only those need their exact range over the vertices.
    fn mark_undecided / mark_undecided_avx2 / mark_undecided_generic(
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
    fn classify_slot / classify_slot_avx2 / classify_slot_generic(
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

dispatch! {
    /// `r0 += c0·col`, `r1 += c1·col`, `r2 += c2·col`.
    fn axpy3 / axpy3_avx2 / axpy3_generic(r0: &mut [f64], r1: &mut [f64], r2: &mut [f64], col: &[f64], coef: [f64; 3])
}

#[inline(always)]
fn axpy3_generic(r0: &mut [f64], r1: &mut [f64], r2: &mut [f64], col: &[f64], coef: [f64; 3]) {
    let n = col.len();
    let (r0, r1, r2) = (&mut r0[..n], &mut r1[..n], &mut r2[..n]);
    let [c0, c1, c2] = coef;
    for i in 0..n {
        r0[i] += c0 * col[i];
        r1[i] += c1 * col[i];
        r2[i] += c2 * col[i];
    }
}

dispatch! {
    /// `x[3i + k] += coef[k] · w3[3i + k]`: `coef ⊗ column` added to interleaved 3-vectors, with
    /// the column's weights stored tripled (`w3[3i..3i + 3]` all equal) so that the loop runs
    /// over one flat run of the accumulator, vector lanes wide.
    fn axpy_interleaved3 / axpy_interleaved3_avx2 / axpy_interleaved3_generic(x: &mut [f64], w3: &[f64], coef: [f64; 3])
}

#[inline(always)]
pub(crate) fn axpy_interleaved3_generic(x: &mut [f64], w3: &[f64], coef: [f64; 3]) {
    // Twelve lanes: a multiple of both the 3-vector and a 4-lane register.
    let c: [f64; 12] = std::array::from_fn(|k| coef[k % 3]);
    let n = w3.len();
    let x = &mut x[..n];
    let mut xs = x.chunks_exact_mut(12);
    let mut ws = w3.chunks_exact(12);
    for (xc, wc) in (&mut xs).zip(&mut ws) {
        for k in 0..12 {
            xc[k] += c[k] * wc[k];
        }
    }
    for (k, (xv, wv)) in xs.into_remainder().iter_mut().zip(ws.remainder()).enumerate() {
        *xv += c[k] * wv;
    }
}

dispatch! {
    /// The post-activation map `h = slope·z + (0, 0, intercept)` of every unit (`h` is `3 × n`).
    fn post_activation / post_activation_avx2 / post_activation_generic(
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // Interleaved: every length, so that both the 12-lane body and the tail are used.
        for len in [0, 1, 5, 12, 13, 40] {
            let w3: Vec<f64> = (0..3 * len).map(|i| a[i / 3 % n]).collect();
            let mut x: Vec<f64> = (0..3 * len).map(|i| i as f64).collect();
            axpy_interleaved3(&mut x, &w3, [2.0, 0.5, -1.0]);
            for i in 0..3 * len {
                let coef = [2.0, 0.5, -1.0][i % 3];
                assert_eq!(x[i], i as f64 + coef * a[i / 3 % n], "length {len}, entry {i}");
            }
        }
    }
}
