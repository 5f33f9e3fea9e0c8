//! Elementwise piecewise-linear layers (ReLU, leaky ReLU, PReLU, abs, hardtanh, ReLU6):
//! classifying a region against every hinge, and splitting along a crossing hinge's line.
//!
//! Each unit's function is written in hinge form (`network::HingeForm`): a left affine piece
//! plus `Δa·max(0, z − b)` terms. A hinge that a region lies entirely above contributes its
//! piece to the region's fixed map; a hinge whose line crosses the region becomes a splitter,
//! and the side above it adds `Δa·(z − b)` to the unit's output — one rank-1 update of the
//! next layer's map.

use super::kernels;
use super::{Pattern, Splitter};
use crate::geometry::polygon::{ConvexPolygon, Split};
use crate::network::HingeForm;

/// One hinge slot of every unit, as arrays over units (`da = 0`: the unit has no such hinge).
struct Slot {
    bp: Vec<f64>,
    da: Vec<f64>,
}

/// An elementwise layer in structure-of-arrays form, so classification vectorises.
pub(crate) struct PwlLayer {
    slope0: Vec<f64>,
    intercept0: Vec<f64>,
    slots: Vec<Slot>,
}

impl PwlLayer {
    pub(crate) fn new(forms: &[HingeForm], n_slots: usize) -> Self {
        let slots = (0..n_slots)
            .map(|j| Slot {
                bp: forms.iter().map(|f| f.hinges().get(j).map_or(0.0, |h| h.0)).collect(),
                da: forms.iter().map(|f| f.hinges().get(j).map_or(0.0, |h| h.1)).collect(),
            })
            .collect();
        PwlLayer {
            slope0: forms.iter().map(|f| f.slope0).collect(),
            intercept0: forms.iter().map(|f| f.intercept0).collect(),
            slots,
        }
    }

    pub(crate) fn n_slots(&self) -> usize {
        self.slots.len()
    }

    /// Breakpoint and slope change of hinge `slot` of `unit`.
    pub(crate) fn hinge(&self, unit: usize, slot: usize) -> (f64, f64) {
        (self.slots[slot].bp[unit], self.slots[slot].da[unit])
    }

    /// Classifies a region (polygon `poly`, pre-activation map `z = [∂s; ∂t; value]`, `3 × n`)
    /// against every hinge. Sets the pattern bits of hinges the region lies above, pushes the
    /// crossing hinges to `splitters`, and writes to `h` (`3 × n`) the post-activation map with
    /// every crossing hinge on the side of the polygon's box centre.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn classify(
        &self,
        bit_offset: usize,
        poly: &ConvexPolygon,
        z: &[f64],
        noise: &[f64],
        pattern: &mut Pattern,
        splitters: &mut Vec<Splitter>,
        scratch: &mut Scratch,
        h: &mut [f64],
    ) {
        let n = self.slope0.len();
        scratch.resize(n);
        let Scratch { lo, hi, mark, slope, intercept, state } = scratch;
        let n_slots = self.slots.len();
        let (za, zb, zc) = (&z[..n], &z[n..2 * n], &z[2 * n..3 * n]);
        // Enclose every unit's range over the polygon's bounding box first; only units whose
        // enclosure straddles a breakpoint need their exact range over the vertices.
        let bb = poly.bbox();
        let center = [0.5 * (bb[0] + bb[1]), 0.5 * (bb[2] + bb[3])];
        let half = [0.5 * (bb[1] - bb[0]), 0.5 * (bb[3] - bb[2])];
        kernels::box_bounds(za, zb, zc, center, half, lo, hi);
        mark.fill(0);
        for slot in &self.slots {
            kernels::mark_undecided(za, zb, noise, lo, hi, &slot.bp, &slot.da, mark);
        }
        for (i, _) in mark.iter().enumerate().filter(|(_, &m)| m != 0) {
            let (mut l, mut h) = (f64::INFINITY, f64::NEG_INFINITY);
            for p in &poly.pts {
                let val = za[i] * p[0] + zb[i] * p[1] + zc[i];
                l = l.min(val);
                h = h.max(val);
            }
            lo[i] = l;
            hi[i] = h;
        }
        slope.copy_from_slice(&self.slope0);
        intercept.copy_from_slice(&self.intercept0);
        for (j, slot) in self.slots.iter().enumerate() {
            // state: 0 below or on the line, 1 above, 2 crossing.
            kernels::classify_slot(za, zb, noise, lo, hi, &slot.bp, &slot.da, slope, intercept, state);
            // Most units are below (state 0): skip them eight at a time.
            for (block, bytes) in state.chunks(8).enumerate() {
                if bytes.iter().all(|&s| s == 0) {
                    continue;
                }
                for (k, &s) in bytes.iter().enumerate() {
                    if s == 0 {
                        continue;
                    }
                    let i = block * 8 + k;
                    self.record(
                        i,
                        j,
                        s,
                        bit_offset + i * n_slots + j,
                        (za, zb, zc),
                        center,
                        (slope, intercept),
                        pattern,
                        splitters,
                    );
                }
            }
        }
        kernels::post_activation(za, zb, zc, slope, intercept, h);
    }

    /// Records the classification `state` (1 above, 2 crossing) of hinge `slot` of unit `i`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn record(
        &self,
        i: usize,
        j: usize,
        state: u8,
        bit: usize,
        (za, zb, zc): (&[f64], &[f64], &[f64]),
        center: [f64; 2],
        (slope, intercept): (&mut [f64], &mut [f64]),
        pattern: &mut Pattern,
        splitters: &mut Vec<Splitter>,
    ) {
        if state == 1 {
            pattern.set_bit(bit);
            return;
        }
        // A crossing hinge starts from the side holding the box centre, usually the larger one:
        // only pieces on the other side then pay a rank-1 update. (A heuristic choice of
        // starting side, not a geometric decision: either is exact.)
        let (bp, da) = (self.slots[j].bp[i], self.slots[j].da[i]);
        let above = za[i] * center[0] + zb[i] * center[1] + zc[i] > bp;
        if above {
            slope[i] += da;
            intercept[i] -= da * bp;
            pattern.set_bit(bit);
        }
        splitters.push(Splitter::Hinge { unit: i as u32, slot: j as u8, bit: bit as u32, above });
    }
}

/// Per-unit work arrays reused across the cells of a batch.
#[derive(Default)]
pub(crate) struct Scratch {
    lo: Vec<f64>,
    hi: Vec<f64>,
    mark: Vec<u8>,
    slope: Vec<f64>,
    intercept: Vec<f64>,
    state: Vec<u8>,
}

impl Scratch {
    fn resize(&mut self, n: usize) {
        self.lo.resize(n, 0.0);
        self.hi.resize(n, 0.0);
        self.mark.resize(n, 0);
        self.slope.resize(n, 0.0);
        self.intercept.resize(n, 0.0);
        self.state.resize(n, 0);
    }
}

/// Splits `poly` by the line of hinge `(unit, bp)` of map `z` (`3 × n`); `noise` is the unit's
/// noise floor (`predicates::noise_floor`).
///
/// Returns the `Split` and the coefficients `Δa·(z − b)` that the side above adds to the unit
/// relative to the side below.
pub(crate) fn split(
    poly: &ConvexPolygon,
    z: &[f64],
    n: usize,
    (unit, noise): (usize, f64),
    bp: f64,
    da: f64,
) -> (Split, [f64; 3]) {
    let (a, b, c) = (z[unit], z[n + unit], z[2 * n + unit]);
    let eval = |p: &[f64; 2]| (a * p[0] + b * p[1] + c) - bp;
    let tol = kernels::hinge_tol(a, b, bp, noise);
    let mut buf = [0.0; 16];
    let split = if poly.pts.len() <= buf.len() {
        for (v, p) in buf.iter_mut().zip(&poly.pts) {
            *v = eval(p);
        }
        poly.split(&buf[..poly.pts.len()], tol)
    } else {
        poly.split(&poly.pts.iter().map(eval).collect::<Vec<f64>>(), tol)
    };
    (split, [da * a, da * b, da * (c - bp)])
}
