//! Elementwise piecewise-linear layers (ReLU, leaky ReLU, PReLU, abs, hardtanh, ReLU6):
//! classifying a region against every hinge, and splitting along a crossing hinge's line.
//!
//! Each unit's function is written in hinge form (`network::HingeForm`): a left affine piece
//! plus `Δa·max(0, z − b)` terms. A hinge that a region lies entirely above contributes its
//! piece to the region's fixed map; a hinge whose line crosses the region becomes a splitter,
//! and the side above it adds `Δa·(z − b)` to the unit's output — one rank-1 update of the
//! next layer's map.

use super::{Pattern, Splitter};
use crate::geometry::polygon::{ConvexPolygon, Split};
use crate::geometry::predicates::{sign, Sign};
use crate::network::HingeForm;

/// Scale of `z − b` for the tolerance policy (domain coordinates bounded by 1).
#[inline]
pub(crate) fn hinge_scale(a: f64, b: f64, c: f64, bp: f64) -> f64 {
    a.abs() + b.abs() + c.abs() + bp.abs()
}

/// Classifies a region (polygon `poly`, pre-activation map `z = [∂s; ∂t; value]`, `3 × n`)
/// against every hinge. Sets the pattern bits of hinges the region lies above, pushes the
/// crossing hinges to `splitters`, and returns the post-activation map with crossing hinges
/// left at their lower piece.
pub(crate) fn classify(
    forms: &[HingeForm],
    slots: usize,
    bit_offset: usize,
    poly: &ConvexPolygon,
    z: &[f64],
    pattern: &mut Pattern,
    splitters: &mut Vec<Splitter>,
) -> Vec<f64> {
    let n = forms.len();
    let (za, zb, zc) = (&z[..n], &z[n..2 * n], &z[2 * n..3 * n]);
    let mut lo = vec![f64::INFINITY; n];
    let mut hi = vec![f64::NEG_INFINITY; n];
    for p in &poly.pts {
        let (u, v) = (p[0], p[1]);
        for i in 0..n {
            let val = za[i] * u + zb[i] * v + zc[i];
            lo[i] = lo[i].min(val);
            hi[i] = hi[i].max(val);
        }
    }
    let mut h = vec![0.0; 3 * n];
    for (i, form) in forms.iter().enumerate() {
        let mut slope = form.slope0;
        let mut intercept = form.intercept0;
        for (j, &(bp, da)) in form.hinges().iter().enumerate() {
            let scale = hinge_scale(za[i], zb[i], zc[i], bp);
            let above = sign(hi[i] - bp, scale) == Sign::Pos;
            let below = sign(lo[i] - bp, scale) == Sign::Neg;
            let bit = bit_offset + i * slots + j;
            if above && below {
                splitters.push(Splitter::Hinge {
                    unit: i as u32,
                    bp,
                    da,
                    bit: bit as u32,
                });
            } else if above {
                slope += da;
                intercept -= da * bp;
                pattern.set_bit(bit);
            }
            // Below, or on the line everywhere: the lower piece, whose bit is 0.
        }
        h[i] = slope * za[i];
        h[n + i] = slope * zb[i];
        h[2 * n + i] = slope * zc[i] + intercept;
    }
    h
}

/// Splits `poly` by the line of hinge `(unit, bp)` of map `z` (`3 × n`).
///
/// Returns the `Split` and the coefficients `Δa·(z − b)` that the side above adds to the unit.
pub(crate) fn split(
    poly: &ConvexPolygon,
    z: &[f64],
    n: usize,
    unit: usize,
    bp: f64,
    da: f64,
) -> (Split, [f64; 3]) {
    let (a, b, c) = (z[unit], z[n + unit], z[2 * n + unit]);
    let values: Vec<f64> = poly
        .pts
        .iter()
        .map(|p| (a * p[0] + b * p[1] + c) - bp)
        .collect();
    let split = poly.split(&values, hinge_scale(a, b, c, bp));
    (split, [da * a, da * b, da * (c - bp)])
}
