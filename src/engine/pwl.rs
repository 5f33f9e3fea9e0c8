//! Elementwise piecewise-linear layers (ReLU, leaky ReLU, PReLU, abs, hardtanh, ReLU6): which
//! hinges a cell lies above, below, or across, and the split along a crossing hinge's line.
//!
//! Each unit's function is written in hinge form (`network::HingeForm`): a left affine piece plus
//! `Δa·max(0, z − b)` terms. A hinge that a cell lies entirely above contributes its piece to the
//! cell's post-activation; a hinge whose line crosses the cell is a splitter, and the side above
//! it adds `Δa·(z − b)` to the unit's output.

use super::kernels;
use crate::geometry::polygon::{side, ConvexPolygon, Side, Split};
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

/// A hinge crossing a cell.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Crossing {
    pub unit: u32,
    pub slot: u8,
    /// Whether the cell's post-activation and pattern assume the side above the hinge.
    pub above: bool,
}

/// A dense classification of every unit over a polygon (see [`PwlLayer::classify_all`]).
pub(crate) struct Classified {
    /// Post-activation map `3 × n` with every crossing hinge on its default side.
    pub t: Vec<f64>,
    /// The crossing hinges, by unit.
    pub crossing: Vec<Crossing>,
    /// The stage's pattern bits (unit-major, `n_slots` bits per unit) with the defaults.
    pub bits: Vec<u64>,
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
    #[inline]
    pub(crate) fn hinge(&self, unit: usize, slot: usize) -> (f64, f64) {
        (self.slots[slot].bp[unit], self.slots[slot].da[unit])
    }

    /// The activation of every unit of `z` (one value per unit).
    pub(crate) fn eval(&self, z: &[f64]) -> Vec<f64> {
        (0..z.len())
            .map(|i| {
                let mut y = self.slope0[i] * z[i] + self.intercept0[i];
                for s in &self.slots {
                    y += s.da[i] * (z[i] - s.bp[i]).max(0.0);
                }
                y
            })
            .collect()
    }

    /// Bound on every output's term magnitude, given the inputs' (`|slope|·m + |offsets|`).
    pub(crate) fn output_magnitude(&self, m: &[f64]) -> Vec<f64> {
        (0..m.len())
            .map(|i| {
                let (mut slope, mut max_slope) = (self.slope0[i], self.slope0[i].abs());
                let mut offset = self.intercept0[i].abs();
                for s in &self.slots {
                    slope += s.da[i];
                    max_slope = max_slope.max(slope.abs());
                    offset += (s.da[i] * s.bp[i]).abs();
                }
                max_slope * m[i] + offset
            })
            .collect()
    }

    /// Classifies every unit of the pre-activation map `z` (`3 × n`: `∂/∂s`, `∂/∂t`, value)
    /// over `poly` (`noise`: every unit's noise floor). Crossing hinges start on the side of the
    /// polygon's box centre (a heuristic: usually the larger side, so fewer pieces pay an update).
    pub(crate) fn classify_all(
        &self,
        poly: &ConvexPolygon,
        z: &[f64],
        noise: &[f64],
        scratch: &mut Scratch,
    ) -> Classified {
        let n = self.slope0.len();
        let n_slots = self.slots.len();
        scratch.resize(n);
        let Scratch { lo, hi, mark, slope, intercept, state } = scratch;
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
            let (l, h) = range(poly, [za[i], zb[i], zc[i]]);
            lo[i] = l;
            hi[i] = h;
        }
        slope.copy_from_slice(&self.slope0);
        intercept.copy_from_slice(&self.intercept0);
        let mut bits = vec![0u64; (n * n_slots).div_ceil(64)];
        let mut crossing = Vec::new();
        for (j, slot) in self.slots.iter().enumerate() {
            // state: 0 below or on the line, 1 above, 2 crossing.
            kernels::classify_slot(za, zb, noise, lo, hi, &slot.bp, &slot.da, slope, intercept, state);
            // Most units are below (state 0): skip them eight at a time.
            for (block, bytes) in state.chunks(8).enumerate() {
                if bytes.iter().all(|&s| s == 0) {
                    continue;
                }
                for (k, &st) in bytes.iter().enumerate() {
                    let i = block * 8 + k;
                    let bit = i * n_slots + j;
                    match st {
                        0 => {}
                        1 => bits[bit / 64] |= 1 << (bit % 64),
                        _ => {
                            let (bp, da) = (slot.bp[i], slot.da[i]);
                            let above = za[i] * center[0] + zb[i] * center[1] + zc[i] > bp;
                            if above {
                                slope[i] += da;
                                intercept[i] -= da * bp;
                                bits[bit / 64] |= 1 << (bit % 64);
                            }
                            crossing.push(Crossing { unit: i as u32, slot: j as u8, above });
                        }
                    }
                }
            }
        }
        crossing.sort_by_key(|c| (c.unit, c.slot));
        let mut t = vec![0.0; 3 * n];
        kernels::post_activation(za, zb, zc, slope, intercept, &mut t);
        Classified { t, crossing, bits }
    }

    /// Classifies one unit with pre-activation map `z` over `poly`: its post-activation map (with
    /// crossing hinges on the side of `center`), pushing crossing hinges to `crossing` and setting
    /// the unit's bits through `set_bit(slot, above)`.
    #[inline]
    pub(crate) fn classify_one(
        &self,
        unit: usize,
        z: [f64; 3],
        noise: f64,
        (poly, center): (&ConvexPolygon, [f64; 2]),
        crossing: &mut Vec<Crossing>,
        mut set_bit: impl FnMut(usize, bool),
    ) -> [f64; 3] {
        let (lo, hi) = range(poly, z);
        let (mut slope, mut intercept) = (self.slope0[unit], self.intercept0[unit]);
        for (j, slot) in self.slots.iter().enumerate() {
            let (bp, da) = (slot.bp[unit], slot.da[unit]);
            if da == 0.0 {
                set_bit(j, false);
                continue;
            }
            let tol = kernels::hinge_tol(z[0], z[1], bp, noise);
            let up = hi - bp > tol;
            let down = lo - bp < -tol;
            let above = if up && down {
                let above = z[0] * center[0] + z[1] * center[1] + z[2] > bp;
                crossing.push(Crossing { unit: unit as u32, slot: j as u8, above });
                above
            } else {
                up
            };
            if above {
                slope += da;
                intercept -= da * bp;
            }
            set_bit(j, above);
        }
        [slope * z[0], slope * z[1], slope * z[2] + intercept]
    }

    /// Splits `poly` by the line of hinge `slot` of `unit` (pre-activation map `z`, noise floor
    /// `noise`). Returns the split and `Δa·(z − b)`, what the side above adds to the unit's
    /// output relative to the side below.
    pub(crate) fn split(
        &self,
        poly: &ConvexPolygon,
        unit: usize,
        slot: usize,
        z: [f64; 3],
        noise: f64,
    ) -> (Split, [f64; 3]) {
        let (bp, da) = self.hinge(unit, slot);
        let eval = |p: &[f64; 2]| (z[0] * p[0] + z[1] * p[1] + z[2]) - bp;
        let tol = kernels::hinge_tol(z[0], z[1], bp, noise);
        let mut buf = [0.0; 16];
        let split = if poly.pts.len() <= buf.len() {
            for (v, p) in buf.iter_mut().zip(&poly.pts) {
                *v = eval(p);
            }
            poly.split(&buf[..poly.pts.len()], tol)
        } else {
            poly.split(&poly.pts.iter().map(eval).collect::<Vec<f64>>(), tol)
        };
        (split, [da * z[0], da * z[1], da * (z[2] - bp)])
    }

    /// `Δa·(z − b)` of hinge `slot` of `unit`: what the side above adds to the unit's output
    /// relative to the side below (as [`PwlLayer::split`] returns it).
    pub(crate) fn hinge_coef(&self, unit: usize, slot: usize, z: [f64; 3]) -> [f64; 3] {
        let (bp, da) = self.hinge(unit, slot);
        [da * z[0], da * z[1], da * (z[2] - bp)]
    }
}

impl PwlLayer {
    /// Where `poly` lies relative to the line of hinge `slot` of `unit`: the decision
    /// [`PwlLayer::split`] takes, without building pieces.
    pub(crate) fn side(&self, poly: &ConvexPolygon, unit: usize, slot: usize, z: [f64; 3], noise: f64) -> Side {
        let (bp, _) = self.hinge(unit, slot);
        let tol = kernels::hinge_tol(z[0], z[1], bp, noise);
        let mut buf = [0.0; 16];
        let n = poly.pts.len().min(buf.len());
        for (v, p) in buf.iter_mut().zip(&poly.pts) {
            *v = (z[0] * p[0] + z[1] * p[1] + z[2]) - bp;
        }
        if poly.pts.len() > buf.len() {
            let all: Vec<f64> = poly.pts.iter().map(|p| (z[0] * p[0] + z[1] * p[1] + z[2]) - bp).collect();
            return side(&all, tol);
        }
        side(&buf[..n], tol)
    }
}

/// Range of `a·s + b·t + c` over the vertices of `poly`.
#[inline]
fn range(poly: &ConvexPolygon, z: [f64; 3]) -> (f64, f64) {
    let (mut l, mut h) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in &poly.pts {
        let v = z[0] * p[0] + z[1] * p[1] + z[2];
        l = l.min(v);
        h = h.max(v);
    }
    (l, h)
}

/// Per-unit work arrays reused across classifications.
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
    /// Two work arrays of `n` entries (for the box bounds of a max layer's units).
    pub(crate) fn bounds(&mut self, n: usize) -> (&mut [f64], &mut [f64]) {
        self.lo.resize(n, 0.0);
        self.hi.resize(n, 0.0);
        (&mut self.lo[..n], &mut self.hi[..n])
    }

    fn resize(&mut self, n: usize) {
        self.lo.resize(n, 0.0);
        self.hi.resize(n, 0.0);
        self.mark.resize(n, 0);
        self.slope.resize(n, 0.0);
        self.intercept.resize(n, 0.0);
        self.state.resize(n, 0);
    }
}
