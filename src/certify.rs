//! Certified verification: a referee for partitions in exact rational arithmetic.
//!
//! [`certify`] shares no arithmetic with the engine. It reads the network's weights, the plane and
//! the partition's stored vertices as exact rationals (every f64 is one: `m·2^e`), and for every
//! region pushes the exact affine maps of the plane through the layers with the nonlinearities
//! fixed by the region's stored pattern (naive loops for convolutions and pools, its own reading of
//! each activation's pieces). With those exact maps it checks:
//!
//! 1. **pattern**: at an exactly computed interior point of the region (the centroid of its
//!    largest fan triangle), every unit is on the side its pattern bit says (max groups: the
//!    recorded winner is the maximum, ties to the lowest position);
//! 2. **containment**: at every vertex, every unit is on that side up to the tolerance rule of
//!    `geometry::predicates` (its line crosses the region by at most `DIST` plus the unit's noise
//!    floor over its gradient); the region is convex, so this holds on all of it;
//! 3. **edges**: every edge lies (within the same tolerance) on the line of some unit, of some
//!    pair of max candidates, or on the domain's boundary;
//! 4. **maps**: the stored output map equals the exact map at every vertex, within
//!    `partition::MAP_TOL` relative to the output's term magnitude;
//! 5. **cover**: the regions lie in the domain and their exact areas sum to the domain's, up to the
//!    rounding of the stored vertices, bounded by `DIST` times the total perimeter; patterns are
//!    pairwise distinct.
//!
//! Together: every region lies in the closed cell of its own pattern (up to the tolerance), the
//! cells of distinct patterns do not overlap, and the areas add up, so the regions are the
//! partition, missing nothing thicker than the tolerance. Tolerances (`τ`) are computed in f64
//! from the exact maps; every comparison against them is exact.

use crate::geometry::predicates::{DIST, NOISE};
use crate::network::{Activation, Gather, Layer, LayerKind, Merge, Network, Shape, Src};
use crate::partition::{Partition, MAP_TOL};
use crate::pattern::Pattern;
use crate::slice::Slice;
use num_bigint::BigInt;
use num_traits::{Signed, ToPrimitive, Zero};
use rayon::prelude::*;
use std::cmp::Ordering;

/// The outcome of [`certify`].
#[derive(Clone, Debug, Default)]
pub struct Certificate {
    /// Regions checked.
    pub regions: usize,
    /// Unit-vertex comparisons made.
    pub comparisons: u64,
    /// Exact sum of the regions' areas relative to the domain's, minus one (as f64).
    pub area_discrepancy: f64,
    /// The bound on that discrepancy allowed by the rounding of the stored vertices.
    pub area_bound: f64,
    /// Every violated check, described (at most 100).
    pub violations: Vec<String>,
    /// Decisions the tolerance rule leaves open: a region's interior point on the other side of
    /// a line than its pattern says, but within the line's tolerance `τ` (every vertex too, or a
    /// violation is reported). They are consistent with the rule; see [`Certificate::max_delta`].
    pub within_tolerance: u64,
    /// The largest `δ = τ / (|a| + |b|)` (normalised coordinates, domain side 2) among those
    /// decisions: regions thinner than this may have been merged. Near `DIST` (1e-10) for
    /// well-scaled networks; large when huge terms (weights, offsets) make the noise floor
    /// swamp the differences that decide a region.
    pub max_delta: f64,
}

impl Certificate {
    /// True when every check passed.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// `x = m·2^e` exactly.
fn dyadic(x: f64) -> (BigInt, i64) {
    if x == 0.0 {
        return (BigInt::zero(), 0);
    }
    let bits = x.abs().to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    let (m, e) = if exp == 0 { (frac, -1074) } else { (frac | (1u64 << 52), exp - 1075) };
    let m = BigInt::from(m);
    (if x < 0.0 { -m } else { m }, e)
}

/// Integers `M_i` and one exponent `E` with `values[i] = M_i·2^E` exactly.
fn integers(values: &[f64]) -> (Vec<BigInt>, i64) {
    let parts: Vec<(BigInt, i64)> = values.iter().map(|&v| dyadic(v)).collect();
    let e = parts.iter().filter(|p| !p.0.is_zero()).map(|p| p.1).min().unwrap_or(0);
    (parts.into_iter().map(|(m, pe)| if m.is_zero() { m } else { m << (pe - e) as usize }).collect(), e)
}

/// `n / d` as f64 (for tolerances and reports), robust to numbers beyond f64's range.
fn ratio(n: &BigInt, d: &BigInt) -> f64 {
    if n.is_zero() {
        return 0.0;
    }
    let shift = |x: &BigInt| (x.bits() as i64 - 60).max(0);
    let (sn, sd) = (shift(n), shift(d));
    let nf = (n >> sn as usize).to_f64().unwrap_or(f64::NAN);
    let df = (d >> sd as usize).to_f64().unwrap_or(f64::NAN);
    nf / df * 2f64.powi((sn - sd).clamp(-2000, 2000) as i32)
}

/// Exact affine maps of `n` quantities over frame coordinates: quantity `i` is
/// `(a_i·s + b_i·t + c_i) / den`, `den > 0`.
#[derive(Clone)]
struct Maps {
    a: Vec<BigInt>,
    b: Vec<BigInt>,
    c: Vec<BigInt>,
    den: BigInt,
}

impl Maps {
    fn len(&self) -> usize {
        self.c.len()
    }

    /// Removes the common power of two of every numerator and the denominator.
    fn reduce(mut self) -> Self {
        let tz = |x: &BigInt| x.trailing_zeros();
        let common = self.a.iter().chain(&self.b).chain(&self.c).filter_map(tz).chain(tz(&self.den)).min().unwrap_or(0);
        if common > 0 {
            let k = common as usize;
            for v in self.a.iter_mut().chain(self.b.iter_mut()).chain(self.c.iter_mut()) {
                *v >>= k;
            }
            self.den >>= k;
        }
        self
    }

    /// `y_o = Σ_i w_oi·x_i + bias_o` for integer weights `M·2^E` given as `(o, i, M)` terms.
    fn linear(&self, n_out: usize, terms: &[(u32, u32, BigInt)], bias: &[BigInt], e: i64) -> Maps {
        let mut rows = [vec![BigInt::zero(); n_out], vec![BigInt::zero(); n_out], vec![BigInt::zero(); n_out]];
        for (o, i, m) in terms {
            let (o, i) = (*o as usize, *i as usize);
            rows[0][o] += m * &self.a[i];
            rows[1][o] += m * &self.b[i];
            rows[2][o] += m * &self.c[i];
        }
        for (o, bo) in bias.iter().enumerate() {
            if !bo.is_zero() {
                rows[2][o] += bo * &self.den;
            }
        }
        let [a, b, c] = rows;
        let mut out = Maps { a, b, c, den: self.den.clone() };
        if e < 0 {
            out.den <<= (-e) as usize;
        } else if e > 0 {
            for v in out.a.iter_mut().chain(out.b.iter_mut()).chain(out.c.iter_mut()) {
                *v <<= e as usize;
            }
        }
        out.reduce()
    }

    /// `y_i = s_i·x_i + t_i` for dyadic `s`, `t`.
    fn diagonal(&self, s: &[f64], t: &[f64]) -> Maps {
        let n = s.len();
        let (ints, e) = integers(&[s, t].concat());
        let terms: Vec<(u32, u32, BigInt)> =
            (0..n).filter(|&i| !ints[i].is_zero()).map(|i| (i as u32, i as u32, ints[i].clone())).collect();
        self.linear(n, &terms, &ints[n..], e)
    }

    /// `y_o = x_{index[o]}`, or 0 for [`Gather::ZERO`].
    fn select(&self, index: &[u32]) -> Maps {
        let pick = |v: &[BigInt]| {
            index.iter().map(|&i| if i == Gather::ZERO { BigInt::zero() } else { v[i as usize].clone() }).collect()
        };
        Maps { a: pick(&self.a), b: pick(&self.b), c: pick(&self.c), den: self.den.clone() }
    }

    /// `−x`.
    fn neg(self) -> Maps {
        let neg = |v: Vec<BigInt>| v.into_iter().map(|x| -x).collect();
        Maps { a: neg(self.a), b: neg(self.b), c: neg(self.c), den: self.den }
    }

    /// The maps over one common denominator (the product of theirs, reduced).
    fn common(ms: Vec<Maps>) -> Vec<Maps> {
        let total = ms.iter().fold(BigInt::from(1), |acc, m| acc * &m.den);
        ms.into_iter()
            .map(|m| {
                let k = &total / &m.den;
                Maps {
                    a: m.a.iter().map(|v| v * &k).collect(),
                    b: m.b.iter().map(|v| v * &k).collect(),
                    c: m.c.iter().map(|v| v * &k).collect(),
                    den: total.clone(),
                }
            })
            .collect()
    }

    /// `y_o = x_{src[o]}`.
    fn gather(&self, src: &[usize]) -> Maps {
        let pick = |v: &[BigInt]| src.iter().map(|&i| v[i].clone()).collect();
        Maps { a: pick(&self.a), b: pick(&self.b), c: pick(&self.c), den: self.den.clone() }
    }

    /// The numerator at frame point `(x0, x1) / d` of quantity `i`: `(a·x0 + b·x1 + c·d)`; the
    /// value is that over `den·d`.
    fn at(&self, i: usize, p: &Point) -> BigInt {
        &self.a[i] * &p.x0 + &self.b[i] * &p.x1 + &self.c[i] * &p.d
    }

    /// `|a_i| + |b_i|` as f64 (the gradient's 1-norm, for the tolerance).
    fn grad(&self, i: usize) -> f64 {
        ratio(&self.a[i].abs(), &self.den) + ratio(&self.b[i].abs(), &self.den)
    }

    /// Quantity `i` minus quantity `j`, as a one-quantity map.
    fn diff(&self, i: usize, j: usize) -> Maps {
        Maps {
            a: vec![&self.a[i] - &self.a[j]],
            b: vec![&self.b[i] - &self.b[j]],
            c: vec![&self.c[i] - &self.c[j]],
            den: self.den.clone(),
        }
    }
}

/// An exact point `(x0 / d, x1 / d)` of frame coordinates, `d > 0`, and an f64 approximation.
struct Point {
    x0: BigInt,
    x1: BigInt,
    d: BigInt,
    f: [f64; 2],
}

impl Point {
    fn vertex(p: [f64; 2]) -> Point {
        // p = (M0, M1)·2^e and 1 = M2·2^e: the common denominator is M2.
        let (ints, _) = integers(&[p[0], p[1], 1.0]);
        let [x0, x1, d]: [BigInt; 3] = ints.try_into().expect("three values");
        Point { x0, x1, d, f: p }
    }

    /// The centroid of three vertices.
    fn centroid(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> Point {
        let (ints, _) = integers(&[a[0], a[1], b[0], b[1], c[0], c[1], 1.0]);
        let three = BigInt::from(3);
        let f = [(a[0] + b[0] + c[0]) / 3.0, (a[1] + b[1] + c[1]) / 3.0];
        Point { x0: &ints[0] + &ints[2] + &ints[4], x1: &ints[1] + &ints[3] + &ints[5], d: &ints[6] * three, f }
    }
}

/// One quantity of exact maps, with f64 approximations of its coefficients for a filter.
struct Quantity<'a> {
    maps: &'a Maps,
    i: usize,
    f: [f64; 3],
}

impl<'a> Quantity<'a> {
    fn new(maps: &'a Maps, i: usize) -> Self {
        let f = [ratio(&maps.a[i], &maps.den), ratio(&maps.b[i], &maps.den), ratio(&maps.c[i], &maps.den)];
        Quantity { maps, i, f }
    }

    /// Compares the quantity's value at `p` with `q`, exactly. A floating-point filter decides
    /// first when the f64 value is farther from `q` than any rounding of it could be (its error
    /// is a few ulps of the terms' magnitudes; the margin is 1e-12 of them); otherwise the
    /// comparison is done in exact arithmetic.
    fn cmp(&self, p: &Point, q: f64) -> Ordering {
        let [a, b, c] = self.f;
        let v = a * p.f[0] + b * p.f[1] + c;
        let err = 1e-12 * ((a * p.f[0]).abs() + (b * p.f[1]).abs() + c.abs() + q.abs() + a.abs() + b.abs());
        if v.is_finite() && err.is_finite() {
            if v - q > err {
                return Ordering::Greater;
            }
            if q - v > err {
                return Ordering::Less;
            }
        }
        cmp(&self.maps.at(self.i, p), &self.maps.den, &p.d, q)
    }
}

/// Compares the value `num / (den·d)` with the f64 `q`.
fn cmp(num: &BigInt, den: &BigInt, d: &BigInt, q: f64) -> Ordering {
    let (m, e) = dyadic(q);
    let rhs = m * den * d;
    if e >= 0 {
        num.cmp(&(rhs << e as usize))
    } else {
        (num << (-e) as usize).cmp(&rhs)
    }
}

/// The exact pieces of an activation: `(slope, intercept)` of piece `k` (0: below the first
/// hinge), read from the definition, not from the engine's hinge form. Also the breakpoints.
fn pieces(act: &Activation, channel: usize) -> (Vec<(f64, f64)>, Vec<f64>) {
    match *act {
        Activation::Relu => (vec![(0.0, 0.0), (1.0, 0.0)], vec![0.0]),
        Activation::LeakyRelu { slope } => (vec![(slope, 0.0), (1.0, 0.0)], vec![0.0]),
        Activation::PRelu { ref slopes } => {
            let a = if slopes.len() == 1 { slopes[0] } else { slopes[channel] };
            (vec![(a, 0.0), (1.0, 0.0)], vec![0.0])
        }
        Activation::Abs => (vec![(-1.0, 0.0), (1.0, 0.0)], vec![0.0]),
        Activation::HardTanh { min, max } => (vec![(0.0, min), (1.0, 0.0), (0.0, max)], vec![min, max]),
    }
}

/// Where one nonlinear layer's bits are.
struct StageBits {
    offset: usize,
    /// Bits in all (hinge slots times units, or bits per group times groups).
    bits: usize,
}

/// The network walked in the engine's documented stage order (a block's main branch, then its
/// shortcut, then a max merge), with exact integer weights.
struct Walker<'a> {
    part: &'a Partition,
    stages: Vec<StageBits>,
    /// Per stage, the bound on every pre-activation's term magnitude (for the noise floor).
    magnitude: Vec<Vec<f64>>,
}

/// What the walk records for one region.
#[derive(Default)]
struct Trace {
    violations: Vec<String>,
    comparisons: u64,
    within_tolerance: u64,
    max_delta: f64,
}

impl Trace {
    /// Records a decision left open by the tolerance `tol` of a quantity with gradient `grad`.
    fn open(&mut self, tol: f64, grad: f64) {
        self.within_tolerance += 1;
        let delta = if grad > 0.0 { tol / grad } else { f64::INFINITY };
        self.max_delta = self.max_delta.max(delta);
    }
}

/// The checks of one nonlinear stage on one region.
struct Check<'a> {
    verts: &'a [Point],
    interior: &'a Point,
    pattern: &'a Pattern,
    /// For each edge of the region, whether some line was found under it.
    edge_on_line: &'a mut [bool],
    region: usize,
}

impl Walker<'_> {
    /// A join of `ins` at stage `stage` (max and min joins are a stage).
    fn merge(&self, merge: Merge, ins: Vec<Maps>, stage: &mut usize, ck: &mut Check<'_>, tr: &mut Trace) -> Maps {
        let (k, n) = (ins.len(), ins[0].len());
        let ins = Maps::common(ins);
        let den = ins[0].den.clone();
        match merge {
            Merge::Add => {
                let mut it = ins.into_iter();
                let first = it.next().expect("joins have inputs");
                it.fold(first, |acc, m| Maps {
                    a: acc.a.iter().zip(&m.a).map(|(p, q)| p + q).collect(),
                    b: acc.b.iter().zip(&m.b).map(|(p, q)| p + q).collect(),
                    c: acc.c.iter().zip(&m.c).map(|(p, q)| p + q).collect(),
                    den: acc.den,
                })
                .reduce()
            }
            Merge::Concat | Merge::Max | Merge::Min => {
                let neg = merge == Merge::Min;
                let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
                for m in ins {
                    let m = if neg { m.neg() } else { m };
                    a.extend(m.a);
                    b.extend(m.b);
                    c.extend(m.c);
                }
                let all = Maps { a, b, c, den }.reduce();
                if merge == Merge::Concat {
                    return all;
                }
                // min(x, y) = −max(−x, −y): the same winners, ties to the first input.
                let groups: Vec<Vec<u32>> =
                    (0..n as u32).map(|i| (0..k as u32).map(|q| q * n as u32 + i).collect()).collect();
                let y = self.max(&groups, all, stage, ck, tr);
                if neg {
                    y.neg()
                } else {
                    y
                }
            }
        }
    }

    fn layer(&self, l: &Layer, x: Maps, stage: &mut usize, ck: &mut Check<'_>, tr: &mut Trace) -> Maps {
        match &l.kind {
            LayerKind::Linear { weight, bias } => {
                let (n_in, n_out) = (l.input.numel(), l.output.numel());
                let (ints, e) = integers(&[weight.as_slice(), bias.as_slice()].concat());
                let terms: Vec<(u32, u32, BigInt)> = (0..n_out * n_in)
                    .filter(|&k| !ints[k].is_zero())
                    .map(|k| ((k / n_in) as u32, (k % n_in) as u32, ints[k].clone()))
                    .collect();
                x.linear(n_out, &terms, &ints[n_out * n_in..], e)
            }
            LayerKind::Conv2d { weight, bias, window, groups } => {
                let (Shape::Image { c: ic, h, w }, Shape::Image { c: oc, h: oh, w: ow }) = (l.input, l.output) else {
                    unreachable!("validated conv shapes")
                };
                let (ints, e) = integers(&[weight.as_slice(), bias.as_slice()].concat());
                let (icg, ocg) = (ic / groups, oc / groups);
                let [kh, kw] = window.kernel;
                let mut terms = Vec::new();
                for o in 0..oc {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            for ci in 0..icg {
                                for ky in 0..kh {
                                    for kx in 0..kw {
                                        let iy = (oy * window.stride[0] + ky * window.dilation[0]) as i64
                                            - window.padding[0] as i64;
                                        let ix = (ox * window.stride[1] + kx * window.dilation[1]) as i64
                                            - window.padding[1] as i64;
                                        if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                            continue;
                                        }
                                        let m = &ints[((o * icg + ci) * kh + ky) * kw + kx];
                                        if m.is_zero() {
                                            continue;
                                        }
                                        let c = (o / ocg) * icg + ci;
                                        let i = (c * h + iy as usize) * w + ix as usize;
                                        terms.push((((o * oh + oy) * ow + ox) as u32, i as u32, m.clone()));
                                    }
                                }
                            }
                        }
                    }
                }
                let per = oh * ow;
                let bias: Vec<BigInt> = (0..oc * per).map(|k| ints[weight.len() + k / per].clone()).collect();
                x.linear(oc * per, &terms, &bias, e)
            }
            LayerKind::BatchNorm { scale, shift } => {
                let per = l.input.per_channel();
                let n = l.input.numel();
                let s: Vec<f64> = (0..n).map(|i| scale[i / per]).collect();
                let t: Vec<f64> = (0..n).map(|i| shift[i / per]).collect();
                x.diagonal(&s, &t)
            }
            LayerKind::Scale { scale, shift } => x.diagonal(scale, shift),
            LayerKind::Gather(g) => x.select(&g.index),
            LayerKind::AvgPool2d { window, count_include_pad } => {
                let (Shape::Image { c, h, w }, Shape::Image { h: oh, w: ow, .. }) = (l.input, l.output) else {
                    unreachable!("validated pool shapes")
                };
                // Every position's divisor d_p: the terms carry L / d_p over a denominator L, the
                // least common multiple of the divisors.
                let divisors: Vec<u64> =
                    (0..oh * ow).map(|p| window.avg_divisor(p / ow, p % ow, h, w, *count_include_pad) as u64).collect();
                let lcm = divisors.iter().fold(1u64, |l, &d| l / gcd(l, d) * d);
                let mut terms = Vec::new();
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            for ky in 0..window.kernel[0] {
                                for kx in 0..window.kernel[1] {
                                    let iy = (oy * window.stride[0] + ky) as i64 - window.padding[0] as i64;
                                    let ix = (ox * window.stride[1] + kx) as i64 - window.padding[1] as i64;
                                    if iy >= 0 && ix >= 0 && iy < h as i64 && ix < w as i64 {
                                        let i = (ch * h + iy as usize) * w + ix as usize;
                                        let k = BigInt::from(lcm / divisors[oy * ow + ox]);
                                        terms.push((((ch * oh + oy) * ow + ox) as u32, i as u32, k));
                                    }
                                }
                            }
                        }
                    }
                }
                let mut y = x.linear(c * oh * ow, &terms, &[], 0);
                y.den *= BigInt::from(lcm);
                y
            }
            LayerKind::Reshape => x,
            LayerKind::Merge(_) => unreachable!("joins go through Walker::merge"),
            LayerKind::Activation(act) => self.activation(l, act, x, stage, ck, tr),
            LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => {
                let groups = l.max_groups();
                self.max(&groups, x, stage, ck, tr)
            }
        }
    }

    fn violation(&self, tr: &mut Trace, message: String) {
        if tr.violations.len() < 20 {
            tr.violations.push(message);
        }
    }

    fn activation(
        &self,
        l: &Layer,
        act: &Activation,
        z: Maps,
        stage: &mut usize,
        ck: &mut Check<'_>,
        tr: &mut Trace,
    ) -> Maps {
        let k = *stage;
        *stage += 1;
        let Some(sb) = self.stages.get(k) else {
            self.violation(tr, format!("the partition's layout has no stage {k}"));
            return z;
        };
        let n = z.len();
        let per = l.input.per_channel();
        let width = sb.bits / n.max(1);
        let (mut s, mut t) = (vec![0.0; n], vec![0.0; n]);
        for u in 0..n {
            let (pcs, bps) = pieces(act, u / per);
            let bits: Vec<bool> = (0..width).map(|j| ck.pattern.bit(sb.offset + u * width + j)).collect();
            let piece = bits.iter().filter(|&&b| b).count();
            // Bits of a unit are monotone (above the second hinge implies above the first).
            if bits.windows(2).any(|w| !w[0] && w[1]) || bits.len() != bps.len() {
                self.violation(tr, format!("region {}: stage {k} unit {u}: inconsistent bits {bits:?}", ck.region));
            }
            (s[u], t[u]) = pcs[piece.min(pcs.len() - 1)];
            let noise = NOISE * self.magnitude[k][u];
            for (j, &bp) in bps.iter().enumerate() {
                // A breakpoint where the function does not bend is no boundary: its bit stays 0.
                if pcs[j] == pcs[j + 1] {
                    if bits[j] {
                        self.violation(
                            tr,
                            format!("region {}: stage {k} unit {u}: bit of a hinge that does not bend", ck.region),
                        );
                    }
                    continue;
                }
                let above = bits[j];
                let tol = DIST * z.grad(u) + noise + NOISE * bp.abs();
                self.hinge(&z, u, bp, tol, above, ck, tr, &format!("stage {k} unit {u} hinge {j}"));
            }
        }
        z.diagonal(&s, &t)
    }

    /// Checks one hinge `bp` of quantity `u` of `z` on the region: the interior point strictly on
    /// side `above`, every vertex on it up to `tol`; records the edges lying on its line.
    #[allow(clippy::too_many_arguments)]
    fn hinge(
        &self,
        z: &Maps,
        u: usize,
        bp: f64,
        tol: f64,
        above: bool,
        ck: &mut Check<'_>,
        tr: &mut Trace,
        what: &str,
    ) {
        let q = Quantity::new(z, u);
        let side = q.cmp(ck.interior, bp);
        let consistent = match side {
            Ordering::Greater => above,
            Ordering::Less => !above,
            Ordering::Equal => true,
        };
        if !consistent {
            let within =
                q.cmp(ck.interior, bp - tol) != Ordering::Less && q.cmp(ck.interior, bp + tol) != Ordering::Greater;
            if within {
                tr.open(tol, z.grad(u));
            } else {
                self.violation(tr, format!("region {}: {what}: the interior point is on the other side", ck.region));
            }
        }
        let mut on = Vec::with_capacity(ck.verts.len());
        for (k, v) in ck.verts.iter().enumerate() {
            tr.comparisons += 1;
            let (lo, hi) = (q.cmp(v, bp - tol) != Ordering::Less, q.cmp(v, bp + tol) != Ordering::Greater);
            let ok = if above { lo } else { hi };
            if !ok {
                self.violation(
                    tr,
                    format!("region {}: {what}: vertex {k} lies beyond the tolerance on the wrong side", ck.region),
                );
            }
            on.push(lo && hi);
        }
        let m = on.len();
        for e in 0..m {
            if on[e] && on[(e + 1) % m] {
                ck.edge_on_line[e] = true;
            }
        }
    }

    fn max(&self, groups: &[Vec<u32>], z: Maps, stage: &mut usize, ck: &mut Check<'_>, tr: &mut Trace) -> Maps {
        let k = *stage;
        *stage += 1;
        let Some(sb) = self.stages.get(k) else {
            self.violation(tr, format!("the partition's layout has no stage {k}"));
            return z;
        };
        let mut winners = Vec::with_capacity(groups.len());
        let width = sb.bits / groups.len().max(1);
        for (g, group) in groups.iter().enumerate() {
            let pos = ck.pattern.bits(sb.offset + g * width, width) as usize;
            let Some(&w) = group.get(pos) else {
                self.violation(tr, format!("region {}: stage {k} group {g}: position {pos} out of range", ck.region));
                winners.push(group[0] as usize);
                continue;
            };
            let w = w as usize;
            for (q, &d) in group.iter().enumerate() {
                if q == pos {
                    continue;
                }
                let diff = z.diff(w, d as usize);
                let tol = DIST * diff.grad(0) + NOISE * (self.magnitude[k][w] + self.magnitude[k][d as usize]);
                // The winner is strictly larger than earlier positions at the interior point and
                // at least as large as later ones (ties to the lowest position).
                let side = Quantity::new(&diff, 0).cmp(ck.interior, 0.0);
                let ok = if q < pos { side == Ordering::Greater } else { side != Ordering::Less };
                let within = || Quantity::new(&diff, 0).cmp(ck.interior, -tol) != Ordering::Less;
                if !ok && within() {
                    tr.open(tol, diff.grad(0));
                } else if !ok {
                    self.violation(
                        tr,
                        format!(
                            "region {}: stage {k} group {g}: candidate {q} beats the recorded winner {pos}",
                            ck.region
                        ),
                    );
                }
                self.hinge_vertices(&diff, tol, ck, tr, &format!("stage {k} group {g} candidates {pos}/{q}"));
            }
            winners.push(w);
        }
        z.gather(&winners)
    }

    /// The vertices of the region where `diff ≥ 0` must hold up to `tol`; edges on its line.
    fn hinge_vertices(&self, diff: &Maps, tol: f64, ck: &mut Check<'_>, tr: &mut Trace, what: &str) {
        let mut on = Vec::with_capacity(ck.verts.len());
        let q = Quantity::new(diff, 0);
        for (k, v) in ck.verts.iter().enumerate() {
            tr.comparisons += 1;
            if q.cmp(v, -tol) == Ordering::Less {
                self.violation(tr, format!("region {}: {what}: vertex {k} is beaten beyond the tolerance", ck.region));
            }
            on.push(q.cmp(v, tol) != Ordering::Greater);
        }
        let m = on.len();
        for e in 0..m {
            if on[e] && on[(e + 1) % m] {
                ck.edge_on_line[e] = true;
            }
        }
    }
}

/// Bounds on every nonlinear stage's pre-activation term magnitudes over the frame square, in
/// the engine's stage order (plain f64: a bound for the noise floor, not a decision).
fn magnitudes(net: &Network, input: Vec<f64>) -> (Vec<Vec<f64>>, Vec<f64>) {
    fn step(l: &Layer, m: &[f64], out: &mut Vec<Vec<f64>>) -> Vec<f64> {
        let mut y = vec![0.0; l.output.numel()];
        match &l.kind {
            LayerKind::Activation(act) => {
                out.push(m.to_vec());
                let per = l.input.per_channel();
                m.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let (pcs, _) = pieces(act, i / per);
                        pcs.iter().map(|(s, t)| s.abs() * v + t.abs()).fold(0.0, f64::max)
                    })
                    .collect()
            }
            LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => {
                out.push(m.to_vec());
                l.max_groups().iter().map(|g| g.iter().map(|&i| m[i as usize]).fold(0.0, f64::max)).collect()
            }
            _ => {
                // |W|·m + |b|: the layer with absolute parameters applied to the magnitudes.
                let mut abs = l.clone();
                let a = |v: &mut Vec<f64>| v.iter_mut().for_each(|x| *x = x.abs());
                match &mut abs.kind {
                    LayerKind::Linear { weight, bias } | LayerKind::Conv2d { weight, bias, .. } => {
                        a(weight);
                        a(bias);
                    }
                    LayerKind::BatchNorm { scale, shift } | LayerKind::Scale { scale, shift } => {
                        a(scale);
                        a(shift);
                    }
                    _ => {}
                }
                abs.apply(m, &mut y);
                y
            }
        }
    }
    let mut out = Vec::new();
    let mut values: Vec<Vec<f64>> = Vec::with_capacity(net.nodes.len());
    for node in &net.nodes {
        let read = |s: &Src| -> &[f64] {
            match *s {
                Src::Input => &input,
                Src::Node(j) => &values[j],
            }
        };
        let y = match &node.layer.kind {
            LayerKind::Merge(m) => {
                let ins: Vec<&[f64]> = node.inputs.iter().map(read).collect();
                match m {
                    Merge::Add | Merge::Concat => Layer::merge(*m, &ins),
                    Merge::Max | Merge::Min => {
                        out.push(ins.concat());
                        Layer::merge(Merge::Max, &ins)
                    }
                }
            }
            _ => step(&node.layer, read(&node.inputs[0]), &mut out),
        };
        values.push(y);
    }
    let last = values.pop().unwrap_or(input);
    // A small margin over f64 rounding of the bound itself.
    let widen = |v: Vec<f64>| v.into_iter().map(|x| x * (1.0 + 1e-9)).collect();
    (out.into_iter().map(widen).collect(), widen(last))
}

/// Checks `part`, a partition of `slice` by `net`, in exact arithmetic (see the module docs).
pub fn certify(net: &Network, slice: &Slice, part: &Partition) -> Certificate {
    let n = net.input_shape.numel();
    let p = &slice.plane;
    let f = &part.frame;
    let input = input_maps(slice, part);
    let input_mag: Vec<f64> = (0..n)
        .map(|i| {
            let (ha, hb) = (f.half[0] * p.du[i].abs(), f.half[1] * p.dv[i].abs());
            (p.origin[i] + f.center[0] * p.du[i] + f.center[1] * p.dv[i]).abs() + ha + hb
        })
        .map(|v| v * (1.0 + 1e-9))
        .collect();
    let (magnitude, out_mag) = magnitudes(net, input_mag);
    let stages: Vec<StageBits> = part.layout.iter().map(|b| StageBits { offset: b.offset, bits: b.bits }).collect();
    let mut cert = Certificate { regions: part.regions.len(), ..Default::default() };
    if part.layout.len() != magnitude.len() {
        cert.violations.push(format!(
            "the partition's layout has {} nonlinear stages, the network {}",
            part.layout.len(),
            magnitude.len()
        ));
        return cert;
    }
    let walker = Walker { part, stages, magnitude };
    // Regions sorted by pattern share the maps of the layers before their first differing
    // stage: each chunk keeps the last output of every affine layer with the pattern words
    // that determined it.
    let mut order: Vec<usize> = (0..part.regions.len()).collect();
    order.sort_by(|&x, &y| part.regions[x].pattern.0.cmp(&part.regions[y].pattern.0));
    let words = prefix_words(net, part);
    let chunk = order.len().div_ceil(64).max(1);
    let traces: Vec<Trace> = order
        .par_chunks(chunk)
        .flat_map_iter(|ids| {
            let mut cache: Vec<Option<(Vec<u64>, Maps)>> = vec![None; net.nodes.len()];
            ids.iter().map(|&i| region(&walker, net, &input, &out_mag, i, &words, &mut cache)).collect::<Vec<_>>()
        })
        .collect();
    for t in traces {
        cert.comparisons += t.comparisons;
        cert.within_tolerance += t.within_tolerance;
        cert.max_delta = cert.max_delta.max(t.max_delta);
        for v in t.violations {
            if cert.violations.len() < 100 {
                cert.violations.push(v);
            }
        }
    }
    cover(part, &mut cert);
    cert
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The plane's three vectors in frame coordinates, exactly: `x(s, t) = c + s·a + t·b`.
fn input_maps(slice: &Slice, part: &Partition) -> Maps {
    let (p, f) = (&slice.plane, &part.frame);
    let n = p.origin.len();
    // Exact products and sums of dyadics: put everything on one exponent. a_i = hu·du_i,
    // b_i = hv·dv_i, c_i = o_i + cu·du_i + cv·dv_i.
    let mut parts: Vec<(BigInt, i64)> = Vec::with_capacity(5 * n);
    let mul = |x: f64, y: f64| {
        let ((mx, ex), (my, ey)) = (dyadic(x), dyadic(y));
        (mx * my, ex + ey)
    };
    for i in 0..n {
        parts.push(mul(f.half[0], p.du[i]));
        parts.push(mul(f.half[1], p.dv[i]));
        parts.push(dyadic(p.origin[i]));
        parts.push(mul(f.center[0], p.du[i]));
        parts.push(mul(f.center[1], p.dv[i]));
    }
    let e = parts.iter().filter(|q| !q.0.is_zero()).map(|q| q.1).min().unwrap_or(0);
    let int = |q: &(BigInt, i64)| if q.0.is_zero() { BigInt::zero() } else { &q.0 << (q.1 - e) as usize };
    let (mut a, mut b, mut c) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        a.push(int(&parts[5 * i]));
        b.push(int(&parts[5 * i + 1]));
        c.push(int(&parts[5 * i + 2]) + int(&parts[5 * i + 3]) + int(&parts[5 * i + 4]));
    }
    let mut m = Maps { a, b, c, den: BigInt::from(1) };
    if e < 0 {
        m.den <<= (-e) as usize;
    } else {
        for v in m.a.iter_mut().chain(m.b.iter_mut()).chain(m.c.iter_mut()) {
            *v <<= e as usize;
        }
    }
    m.reduce()
}

/// For every node, how many words of a pattern hold the stages before it (the bits that
/// determine the node's inputs).
fn prefix_words(net: &Network, part: &Partition) -> Vec<usize> {
    let words = part.regions.first().map_or(0, |r| r.pattern.0.len());
    let mut before = 0;
    net.nodes
        .iter()
        .map(|n| {
            let w = part.layout.get(before).map_or(words, |b| b.offset / 64);
            before += usize::from(!n.layer.is_affine());
            w
        })
        .collect()
}

/// Checks one region (`cache`: the last output of every affine top-level layer, with the
/// pattern words it was computed for).
#[allow(clippy::too_many_arguments)]
fn region(
    w: &Walker<'_>,
    net: &Network,
    input: &Maps,
    out_mag: &[f64],
    i: usize,
    words: &[usize],
    cache: &mut [Option<(Vec<u64>, Maps)>],
) -> Trace {
    let mut tr = Trace::default();
    let r = &w.part.regions[i];
    let pts = &r.polygon.pts;
    if pts.len() < 3 {
        tr.violations.push(format!("region {i}: fewer than three vertices"));
        return tr;
    }
    let verts: Vec<Point> = pts.iter().map(|&p| Point::vertex(p)).collect();
    // The largest fan triangle's centroid: strictly inside a convex polygon of positive area.
    let cross = |a: [f64; 2], b: [f64; 2], c: [f64; 2]| (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
    let k = (1..pts.len() - 1)
        .max_by(|&x, &y| cross(pts[0], pts[x], pts[x + 1]).total_cmp(&cross(pts[0], pts[y], pts[y + 1])));
    let k = k.unwrap_or(1);
    let interior = Point::centroid(pts[0], pts[k], pts[k + 1]);
    let mut edge_on_line = vec![false; pts.len()];
    // Edges on the domain's boundary.
    for e in 0..pts.len() {
        let (a, b) = (pts[e], pts[(e + 1) % pts.len()]);
        for axis in 0..2 {
            for side in [-1.0, 1.0] {
                if (a[axis] - side).abs() <= DIST && (b[axis] - side).abs() <= DIST {
                    edge_on_line[e] = true;
                }
            }
        }
    }
    let mut ck =
        Check { verts: &verts, interior: &interior, pattern: &r.pattern, edge_on_line: &mut edge_on_line, region: i };
    let mut stage = 0;
    // Node outputs, dropped after their last reader.
    let (_, last) = net.last_uses();
    let mut values: Vec<Option<Maps>> = Vec::with_capacity(net.nodes.len());
    for (l, node) in net.nodes.iter().enumerate() {
        let key = &r.pattern.0[..words[l].min(r.pattern.0.len())];
        let cached = match &cache[l] {
            Some((k, out)) if node.layer.is_affine() && k.as_slice() == key => Some(out.clone()),
            _ => None,
        };
        let y = match cached {
            Some(y) => y,
            None => {
                let mut ins: Vec<Maps> = Vec::with_capacity(node.inputs.len());
                for (q, s) in node.inputs.iter().enumerate() {
                    ins.push(match *s {
                        Src::Input => input.clone(),
                        // The last reader takes the tensor (unless it reads it twice).
                        Src::Node(j) if last[j] == Some(l) && !node.inputs[q + 1..].contains(s) => {
                            values[j].take().expect("alive until its last reader")
                        }
                        Src::Node(j) => values[j].clone().expect("alive until its last reader"),
                    });
                }
                let y = match &node.layer.kind {
                    LayerKind::Merge(m) => w.merge(*m, ins, &mut stage, &mut ck, &mut tr),
                    _ => w.layer(&node.layer, ins.pop().expect("one input"), &mut stage, &mut ck, &mut tr),
                };
                if node.layer.is_affine() {
                    cache[l] = Some((key.to_vec(), y.clone()));
                }
                y
            }
        };
        for s in &node.inputs {
            if let Src::Node(j) = *s {
                if last[j] == Some(l) {
                    values[j] = None;
                }
            }
        }
        values.push(Some(y));
    }
    let out = values.pop().flatten().unwrap_or_else(|| input.clone());
    if stage != w.stages.len() {
        tr.violations
            .push(format!("region {i}: the network has {stage} nonlinear stages, the layout {}", w.stages.len()));
    }
    for (e, on) in edge_on_line.iter().enumerate() {
        if !on {
            tr.violations.push(format!("region {i}: edge {e} lies on no unit's line and not on the domain's boundary"));
        }
    }
    // The stored map against the exact one, at every vertex.
    for (k, (v, p)) in verts.iter().zip(pts).enumerate() {
        for o in 0..out.len() {
            let exact = ratio(&out.at(o, v), &(&out.den * &v.d));
            let stored = r.map.jacobian[o][0] * p[0] + r.map.jacobian[o][1] * p[1] + r.map.offset[o];
            let scale = exact.abs().max(stored.abs()).max(out_mag.get(o).copied().unwrap_or(0.0)).max(1e-300);
            if (exact - stored).abs() > MAP_TOL * scale {
                tr.violations.push(format!(
                    "region {i}: output {o} at vertex {k}: stored map gives {stored}, the exact map {exact}"
                ));
                break;
            }
        }
    }
    tr
}

/// The cover checks: vertices inside the domain, exact area sum, distinct patterns.
fn cover(part: &Partition, cert: &mut Certificate) {
    let mut total = BigInt::zero();
    let mut perimeter = 0.0;
    let mut terms: Vec<(BigInt, i64)> = Vec::new();
    for (i, r) in part.regions.iter().enumerate() {
        let pts = &r.polygon.pts;
        for p in pts {
            if p.iter().any(|x| x.abs() > 1.0 + DIST) {
                cert.violations.push(format!("region {i}: a vertex lies outside the domain"));
                break;
            }
        }
        for k in 0..pts.len() {
            let (a, b) = (pts[k], pts[(k + 1) % pts.len()]);
            perimeter += (b[0] - a[0]).hypot(b[1] - a[1]);
            // Twice the signed area: Σ (a.x·b.y − b.x·a.y), every product exact.
            let ((ax, eax), (ay, eay), (bx, ebx), (by, eby)) = (dyadic(a[0]), dyadic(a[1]), dyadic(b[0]), dyadic(b[1]));
            terms.push((ax * by, eax + eby));
            terms.push((-(bx * ay), ebx + eay));
        }
    }
    let e = terms.iter().filter(|t| !t.0.is_zero()).map(|t| t.1).min().unwrap_or(0);
    for (m, te) in terms {
        if !m.is_zero() {
            total += m << (te - e) as usize;
        }
    }
    // Twice the domain's area in frame coordinates is 8: the exact difference, then as f64.
    let discrepancy = if e <= 0 {
        let unit = BigInt::from(1) << (-e) as usize;
        ratio(&(total - BigInt::from(8) * &unit), &(unit * BigInt::from(8)))
    } else {
        ratio(&((total << e as usize) - BigInt::from(8)), &BigInt::from(8))
    };
    let bound = DIST * perimeter / 4.0;
    cert.area_discrepancy = discrepancy;
    cert.area_bound = bound;
    if discrepancy.abs() > bound {
        cert.violations.push(format!(
            "the regions' exact areas sum to {:.17} of the domain's (allowed discrepancy {bound:.3e})",
            1.0 + discrepancy
        ));
    }
    let mut seen = std::collections::HashMap::with_capacity(part.regions.len());
    for (i, r) in part.regions.iter().enumerate() {
        if let Some(j) = seen.insert(&r.pattern, i) {
            cert.violations.push(format!("regions {j} and {i} have the same pattern"));
        }
    }
}
