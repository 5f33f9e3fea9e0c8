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
    pub t: std::sync::Arc<Vec<f64>>,
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
        if self.slots.len() == 1 {
            return self.classify_single(poly, z, noise, scratch);
        }
        self.classify_slots(poly, z, noise, scratch)
    }

    /// [`PwlLayer::classify_all`] for any number of hinges per unit: one vectorised pass per
    /// hinge slot.
    fn classify_slots(&self, poly: &ConvexPolygon, z: &[f64], noise: &[f64], scratch: &mut Scratch) -> Classified {
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
            // Units above set their bit without a branch (the states of a trained layer are
            // close to random: a branch per unit mispredicts half the time); crossing units are
            // rare and take the branch.
            let mut cross = |i: usize, bits: &mut [u64]| {
                let (bp, da) = (slot.bp[i], slot.da[i]);
                let above = za[i] * center[0] + zb[i] * center[1] + zc[i] > bp;
                if above {
                    slope[i] += da;
                    intercept[i] -= da * bp;
                    let bit = i * n_slots + j;
                    bits[bit / 64] |= 1 << (bit % 64);
                }
                crossing.push(Crossing { unit: i as u32, slot: j as u8, above });
            };
            for (i, &st) in state.iter().enumerate() {
                let bit = i * n_slots + j;
                bits[bit / 64] |= u64::from(st == 1) << (bit % 64);
                if st == 2 {
                    cross(i, &mut bits);
                }
            }
        }
        crossing.sort_by_key(|c| (c.unit, c.slot));
        let mut t = vec![0.0; 3 * n];
        kernels::post_activation(za, zb, zc, slope, intercept, &mut t);
        Classified { t: t.into(), crossing, bits }
    }

    /// [`PwlLayer::classify_all`] for one hinge per unit: the units the polygon's box decides
    /// in one fused pass, the rest over the polygon's vertices (the same decisions).
    fn classify_single(&self, poly: &ConvexPolygon, z: &[f64], noise: &[f64], scratch: &mut Scratch) -> Classified {
        let n = self.slope0.len();
        scratch.resize(n);
        let state = &mut scratch.state;
        let (za, zb, zc) = (&z[..n], &z[n..2 * n], &z[2 * n..3 * n]);
        let bb = poly.bbox();
        let center = [0.5 * (bb[0] + bb[1]), 0.5 * (bb[2] + bb[3])];
        let half = [0.5 * (bb[1] - bb[0]), 0.5 * (bb[3] - bb[2])];
        let Slot { bp, da } = &self.slots[0];
        let mut t = Vec::with_capacity(3 * n);
        kernels::classify_single(
            za,
            zb,
            zc,
            noise,
            center,
            half,
            bp,
            da,
            &self.slope0,
            &self.intercept0,
            &mut t.spare_capacity_mut()[..3 * n],
            state,
        );
        // SAFETY: the kernel wrote all 3n entries (its contract).
        unsafe { t.set_len(3 * n) };
        let mut crossing = Vec::new();
        let mut bits = vec![0u64; n.div_ceil(64)];
        for (w, states) in state.chunks_mut(64).enumerate() {
            if states.contains(&2) {
                // Undecided over the box: the range over the vertices decides, as in the
                // separate passes (a crossing hinge starts on the side of the box centre).
                for (k, st) in states.iter_mut().enumerate().filter(|(_, st)| **st == 2) {
                    let i = 64 * w + k;
                    let (lo, hi) = range(poly, [za[i], zb[i], zc[i]]);
                    let tol = kernels::hinge_tol(za[i], zb[i], bp[i], noise[i]);
                    let up = hi - bp[i] > tol && da[i] != 0.0;
                    let down = lo - bp[i] < -tol;
                    let k = if up && !down { da[i] } else { 0.0 };
                    let mut slope = self.slope0[i] + k;
                    let mut intercept = self.intercept0[i] - k * bp[i];
                    *st = u8::from(up);
                    if up && down {
                        let above = za[i] * center[0] + zb[i] * center[1] + zc[i] > bp[i];
                        if above {
                            slope += da[i];
                            intercept -= da[i] * bp[i];
                        }
                        *st = u8::from(above);
                        crossing.push(Crossing { unit: i as u32, slot: 0, above });
                    }
                    t[i] = slope * za[i];
                    t[n + i] = slope * zb[i];
                    t[2 * n + i] = slope * zc[i] + intercept;
                }
            }
            bits[w] = pack_bits(states);
        }
        Classified { t: t.into(), crossing, bits }
    }

    /// Classifies one unit with pre-activation map `z` over `poly`: its post-activation map (with
    /// crossing hinges on the side of `center`), pushing crossing hinges to `crossing` and setting
    /// the unit's bits through `set_bit(slot, above)`. `center ± half` is the polygon's bounding
    /// box: a hinge the unit's range over the box clears by more than the tolerance is decided
    /// there, as in [`PwlLayer::classify_all`]; the others by the range over the vertices.
    #[inline]
    pub(crate) fn classify_one(
        &self,
        unit: usize,
        z: [f64; 3],
        noise: f64,
        (poly, center, half): (&ConvexPolygon, [f64; 2], [f64; 2]),
        crossing: &mut Vec<Crossing>,
        mut set_bit: impl FnMut(usize, bool),
    ) -> [f64; 3] {
        let (lo_box, hi_box) = kernels::box_range(z[0], z[1], z[2], center, half);
        let mut vertices: Option<(f64, f64)> = None;
        let (mut slope, mut intercept) = (self.slope0[unit], self.intercept0[unit]);
        for (j, slot) in self.slots.iter().enumerate() {
            let (bp, da) = (slot.bp[unit], slot.da[unit]);
            if da == 0.0 {
                set_bit(j, false);
                continue;
            }
            let tol = kernels::hinge_tol(z[0], z[1], bp, noise);
            // Entirely above or below over the box: so over the polygon inside it.
            let (up, down) = if lo_box - bp > tol {
                (true, false)
            } else if hi_box - bp < -tol {
                (false, true)
            } else {
                let (lo, hi) = *vertices.get_or_insert_with(|| range(poly, z));
                (hi - bp > tol, lo - bp < -tol)
            };
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

/// The word whose bit `k` is `states[k]` (at most 64 states, each 0 or 1): eight states at a
/// time, by the multiply that gathers the low bit of each byte of a word into its top byte.
fn pack_bits(states: &[u8]) -> u64 {
    const GATHER: u64 = 0x0102_0408_1020_4080;
    let mut word = 0u64;
    let mut chunks = states.chunks_exact(8);
    for (k, c) in chunks.by_ref().enumerate() {
        let x = u64::from_le_bytes(c.try_into().expect("eight bytes"));
        word |= ((x & 0x0101_0101_0101_0101).wrapping_mul(GATHER) >> 56) << (8 * k);
    }
    let done = states.len() - chunks.remainder().len();
    for (k, &st) in chunks.remainder().iter().enumerate() {
        word |= u64::from(st) << (done + k);
    }
    word
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
    /// Three work arrays of `n` entries (for the box bounds and tolerances of a max layer's
    /// units).
    pub(crate) fn bounds(&mut self, n: usize) -> (&mut [f64], &mut [f64], &mut [f64]) {
        self.lo.resize(n, 0.0);
        self.hi.resize(n, 0.0);
        self.slope.resize(n, 0.0);
        (&mut self.lo[..n], &mut self.hi[..n], &mut self.slope[..n])
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The fused one-hinge classification decides every unit as the per-slot passes do: same
    /// post-activations (bit for bit), pattern bits and crossing hinges, on random layers
    /// (ReLU, leaky ReLU, units without a hinge) over random triangles and boxes, with units
    /// placed so that many straddle or touch their hinge.
    #[test]
    fn pack_bits_puts_state_k_at_bit_k() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for len in 0..=64 {
            let states: Vec<u8> = (0..len).map(|_| u8::from(rng.random_bool(0.5))).collect();
            let want = states.iter().enumerate().fold(0u64, |w, (k, &st)| w | u64::from(st) << k);
            assert_eq!(pack_bits(&states), want, "{len} states");
        }
    }

    /// A random box (`boxed`) or counter-clockwise triangle inside `[-1, 1]²`.
    fn random_polygon(rng: &mut impl Rng, boxed: bool) -> ConvexPolygon {
        if boxed {
            let x0 = rng.random_range(-1.0..0.5);
            let y0 = rng.random_range(-1.0..0.5);
            return ConvexPolygon::rect(x0, x0 + rng.random_range(0.01..0.5), y0, y0 + rng.random_range(0.01..0.5));
        }
        let mut pts: Vec<[f64; 2]> =
            (0..3).map(|_| [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)]).collect();
        let cross =
            (pts[1][0] - pts[0][0]) * (pts[2][1] - pts[0][1]) - (pts[1][1] - pts[0][1]) * (pts[2][0] - pts[0][0]);
        if cross < 0.0 {
            pts.swap(1, 2);
        }
        ConvexPolygon { pts }
    }

    #[test]
    fn fused_single_hinge_pass_matches_the_slot_passes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for round in 0..200 {
            let n = rng.random_range(1..300);
            let forms: Vec<HingeForm> = (0..n)
                .map(|_| match rng.random_range(0..4) {
                    0 => HingeForm::new(0.0, 0.0, &[(0.0, 1.0)]),
                    1 => HingeForm::new(0.1, 0.0, &[(0.0, 0.9)]),
                    2 => HingeForm::new(-1.0, 0.0, &[(0.0, 2.0)]),
                    _ => HingeForm::new(1.0, 0.0, &[]),
                })
                .collect();
            let layer = PwlLayer::new(&forms, 1);
            let mut z = vec![0.0; 3 * n];
            for i in 0..n {
                z[i] = rng.random_range(-1.0..1.0);
                z[n + i] = if rng.random_bool(0.1) { 0.0 } else { rng.random_range(-1.0..1.0) };
                z[2 * n + i] = match rng.random_range(0..3) {
                    0 => 0.0,
                    _ => rng.random_range(-2.0..2.0),
                };
            }
            let noise: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..1e-12)).collect();
            let poly = random_polygon(&mut rng, round % 2 == 0);
            let mut scratch = Scratch::default();
            let fused = layer.classify_single(&poly, &z, &noise, &mut scratch);
            let slots = layer.classify_slots(&poly, &z, &noise, &mut scratch);
            assert_eq!(fused.bits, slots.bits, "round {round}");
            let bits = |t: &[f64]| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fused.t), bits(&slots.t), "round {round}");
            let key = |c: &[Crossing]| c.iter().map(|x| (x.unit, x.slot, x.above)).collect::<Vec<_>>();
            assert_eq!(key(&fused.crossing), key(&slots.crossing), "round {round}");
            assert!(round % 2 == 1 || !fused.crossing.is_empty() || n < 20, "round {round}: nothing crosses");
        }
    }

    /// The sparse path's classification of one unit (box bounds first, the vertices only for
    /// hinges the box leaves open) agrees with the dense classification of every unit, bit for
    /// bit: post-activation, pattern bits and crossing hinges, for one- and two-hinge layers
    /// over random boxes and triangles, with units placed on and near their hinges.
    #[test]
    fn one_unit_classification_matches_the_dense_pass() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let (mut by_box, mut by_vertices) = (0, 0);
        for round in 0..300 {
            let two = round % 3 == 0;
            let n = rng.random_range(1..200);
            let forms: Vec<HingeForm> = (0..n)
                .map(|_| match (two, rng.random_range(0..3)) {
                    (true, _) => HingeForm::new(0.0, -0.5, &[(-0.5, 1.0), (0.5, -1.0)]),
                    (false, 0) => HingeForm::new(0.0, 0.0, &[(0.0, 1.0)]),
                    (false, 1) => HingeForm::new(0.1, 0.0, &[(0.0, 0.9)]),
                    _ => HingeForm::new(1.0, 0.0, &[]),
                })
                .collect();
            let slots = if two { 2 } else { 1 };
            let layer = PwlLayer::new(&forms, slots);
            let mut z = vec![0.0; 3 * n];
            for i in 0..n {
                z[i] = rng.random_range(-1.0..1.0);
                z[n + i] = if rng.random_bool(0.1) { 0.0 } else { rng.random_range(-1.0..1.0) };
                z[2 * n + i] = f64::from(rng.random_range(-4..5)) * 0.25 + rng.random_range(-0.3..0.3);
            }
            let noise: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..1e-12)).collect();
            // A tenth of the units flat, within the tolerance band just above a hinge: on the
            // line, neither side (a box rule that ignored the tolerance would put them above).
            for i in 0..n {
                if let (true, Some(&(bp, _))) = (rng.random_bool(0.1), forms[i].hinges().first()) {
                    z[i] = 0.0;
                    z[n + i] = 0.0;
                    z[2 * n + i] = bp + 0.5 * kernels::hinge_tol(0.0, 0.0, bp, noise[i]);
                }
            }
            let poly = random_polygon(&mut rng, round % 2 == 0);
            let dense = layer.classify_all(&poly, &z, &noise, &mut Scratch::default());
            let bb = poly.bbox();
            let center = [0.5 * (bb[0] + bb[1]), 0.5 * (bb[2] + bb[3])];
            let half = [0.5 * (bb[1] - bb[0]), 0.5 * (bb[3] - bb[2])];
            for u in 0..n {
                let zu = [z[u], z[n + u], z[2 * n + u]];
                let mut crossing = Vec::new();
                let mut bits = 0u64;
                let t = layer.classify_one(u, zu, noise[u], (&poly, center, half), &mut crossing, |j, above| {
                    bits |= u64::from(above) << j;
                });
                let want_t = [dense.t[u], dense.t[n + u], dense.t[2 * n + u]];
                assert_eq!(t.map(f64::to_bits), want_t.map(f64::to_bits), "round {round}, unit {u}");
                let want_bits = (0..slots).fold(0u64, |w, j| {
                    let bit = u * slots + j;
                    w | (dense.bits[bit / 64] >> (bit % 64) & 1) << j
                });
                assert_eq!(bits, want_bits, "round {round}, unit {u}");
                let want: Vec<(u8, bool)> =
                    dense.crossing.iter().filter(|x| x.unit as usize == u).map(|x| (x.slot, x.above)).collect();
                let got: Vec<(u8, bool)> = crossing.iter().map(|x| (x.slot, x.above)).collect();
                assert_eq!(got, want, "round {round}, unit {u}");
                let (lo, hi) = kernels::box_range(zu[0], zu[1], zu[2], center, half);
                let decided = forms[u].hinges().iter().all(|&(bp, _)| {
                    let tol = kernels::hinge_tol(zu[0], zu[1], bp, noise[u]);
                    lo - bp > tol || hi - bp < -tol
                });
                if decided {
                    by_box += 1;
                } else {
                    by_vertices += 1;
                }
            }
        }
        assert!(by_box > 1000 && by_vertices > 1000, "{by_box} by the box, {by_vertices} by the vertices");
    }
}
