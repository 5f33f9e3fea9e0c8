//! The one place where signs of geometric quantities are decided, and what "exact" means.
//!
//! # The tolerance rule
//!
//! All geometry in tessera happens in *normalised* slice coordinates `(s, t)`, where the domain
//! is the square `[-1, 1]²` (see `slice::Slice::normalized`); nothing below depends on the size
//! or position of the user's box.
//!
//! Every sign that matters is the sign of an affine function `f(s, t) = a·s + b·t + c` at a point:
//! a pre-activation minus a breakpoint, the difference of two max candidates or of two class
//! scores, or the side of a point with respect to the line through two others. A point `p` is
//! **on the line** `f = 0` when
//!
//! ```text
//! |f(p)| ≤ τ(f) = DIST · (|a| + |b|) + ν
//! ```
//!
//! Because `|f(p)| / (|a| + |b|)` is the distance from `p` to the line in the max-norm, the rule
//! reads: `p` is on the line when it is within [`DIST`] of it, plus `ν / (|a| + |b|)`, the distance
//! by which the rounding of `f`'s own value can move the line. `ν` (the *noise floor*) estimates
//! that rounding: [`NOISE`] times the magnitude of the terms that produced the value, the smaller
//! of two bounds (see `engine::plan`): `Σ|w|·|x| + |b|` propagated through all the layers before
//! and bounded over the domain (rigorous, but on deep networks it exceeds the true values by
//! orders of magnitude, since it grows like the product of the layers' absolute norms), and the
//! layer's own terms `Σ|w|·V + |b|`, with `V` twice the largest value each input of the layer
//! takes on a 9 × 9 grid of the domain, times the number of nonlinear layers so far (each adds
//! its rounding; inherited errors travel through the weights as the values do). The second is an
//! estimate, not a bound: the exact certificate (below) is the referee. Values outside `±τ` have
//! a definite sign.
//!
//! # What this guarantees
//!
//! * A polygon is split by a line only when vertices lie on both sides beyond `τ`: every piece the
//!   engine creates has a vertex farther than `δ(f) = DIST + ν/(|a| + |b|)` from each line that
//!   cut it, so it has positive area.
//! * A region of the true partition can be missed (merged into a neighbour) only when it is
//!   thinner than `δ`: all of its vertices lie within `δ` of one of the lines bounding it. For
//!   every line that f64 places to better than `DIST` (the usual case: `ν` is ~1e-14 of the
//!   terms), `δ = DIST = 1e-10`, i.e. 5·10⁻¹¹ of the domain's side. Nothing else is approximated:
//!   regions are never merged or dropped for being small, only for being thinner than `δ`.
//! * Max-type splits (maxout, max-pool, max joins, argmax class cells) apply the rule to the
//!   difference of two candidates, with the noise floors of both, so candidates that share a large
//!   common offset are compared by their difference, not by their size.
//! * Two points are the same vertex when they are within [`DIST`] of each other in the max-norm
//!   ([`same_point`]); computed copies of one vertex agree far better than that unless the
//!   two lines defining it are nearly parallel.
//!
//! In 3D (`solid`) the same rule holds in the cube `[-1, 1]³`: `τ = DIST·(|a| + |b| + |c|) + ν` for
//! `f = a·x + b·y + c·z + d`, a distance in the max-norm; there (as on 1D paths) the gradient
//! and the noise floor come from the values at a cell's vertices, `ν = NOISE ×` the largest of
//! their magnitudes and the breakpoint's.
//!
//! What the rule cannot do: decide the sign of a value that f64 cannot compute (closer to zero than
//! its noise floor). Such a vertex counts as on the line, which is also what
//! `certify::certify` accepts, with the same `τ` recomputed in exact arithmetic. The noise floor
//! is bounded over the whole domain, so a unit with huge terms (a 1e20 weight, say) raises it for
//! every unit after it, and `δ` can then exceed the domain: whole regions merge. The certificate
//! counts the decisions that were open only within `τ` and reports the largest `δ` among them
//! (`Certificate::max_delta`; `tessera verify --exact` prints it), so this never goes unseen.

/// Distance (max-norm, in normalised coordinates where the domain is `[-1, 1]²`) within which a
/// point counts as on a line: 5·10⁻¹¹ of the domain's side.
pub const DIST: f64 = 1e-10;

/// Rounding noise of a computed value relative to the magnitude of every term that produced it
/// (about 45 ulps: the accumulation of a few hundred products per layer over several layers).
pub const NOISE: f64 = 1e-14;

/// Three-way sign of a value under the tolerance rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// Strictly negative beyond the tolerance.
    Neg,
    /// On the line: within the tolerance of zero.
    Zero,
    /// Strictly positive beyond the tolerance.
    Pos,
}

/// The noise floor `ν` of a value whose terms have total magnitude `magnitude`.
#[inline]
pub fn noise_floor(magnitude: f64) -> f64 {
    NOISE * magnitude
}

/// The tolerance `τ` on the value of `a·s + b·t + c` whose rounding is bounded by `noise`.
#[inline(always)]
pub fn tolerance(a: f64, b: f64, noise: f64) -> f64 {
    DIST * (a.abs() + b.abs()) + noise
}

/// The tolerance `τ` on the value of `a·x + b·y + c·z + d` (gradient `g`) in the cube
/// `[-1, 1]³` of a 3D map, whose rounding is bounded by `noise`.
#[inline]
pub fn tolerance3(g: [f64; 3], noise: f64) -> f64 {
    DIST * (g[0].abs() + g[1].abs() + g[2].abs()) + noise
}

/// Classifies `value` against the tolerance `tol` (from [`tolerance`]).
#[inline]
pub fn sign(value: f64, tol: f64) -> Sign {
    if value > tol {
        Sign::Pos
    } else if value < -tol {
        Sign::Neg
    } else {
        Sign::Zero
    }
}

/// `sign(value, tol) == Sign::Pos`, branch-free for vectorised loops.
#[inline(always)]
pub fn is_pos(value: f64, tol: f64) -> bool {
    value > tol
}

/// `sign(value, tol) == Sign::Neg`, branch-free for vectorised loops.
#[inline(always)]
pub fn is_neg(value: f64, tol: f64) -> bool {
    value < -tol
}

/// Rounding of a line through two points with coordinates of magnitude at most `coord`: the
/// cross product that decides the side of a third point carries a few ulps of `coord` per unit
/// of gradient.
#[inline]
fn orient_noise(grad: f64, coord: f64) -> f64 {
    8.0 * f64::EPSILON * grad * coord.max(1.0)
}

/// Side of `p` with respect to the directed line from `a` to `b`: `Pos` on the left (counter-
/// clockwise), `Neg` on the right, `Zero` within the tolerance of the line (or when `a` and `b`
/// are the same point, which defines no line).
#[inline]
pub fn orient(a: [f64; 2], b: [f64; 2], p: [f64; 2]) -> Sign {
    // f(p) = (b − a) × (p − a): an affine function of p with gradient (−(b−a).y, (b−a).x).
    let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
    let grad = ex.abs() + ey.abs();
    if grad == 0.0 {
        return Sign::Zero;
    }
    let value = ex * (p[1] - a[1]) - ey * (p[0] - a[0]);
    let coord = a[0].abs().max(a[1].abs()).max(p[0].abs()).max(p[1].abs());
    sign(value, DIST * grad + orient_noise(grad, coord))
}

/// Whether two points are the same vertex: within [`DIST`] of each other in the max-norm.
#[inline]
pub fn same_point(p: [f64; 2], q: [f64; 2]) -> bool {
    (p[0] - q[0]).abs() <= DIST && (p[1] - q[1]).abs() <= DIST
}

/// Side length of the grid cells used to bucket points before comparing them with
/// [`same_point`]: much larger than the tolerance, so copies of a point fall in one cell or in
/// adjacent ones.
pub const WELD_CELL: f64 = 1024.0 * DIST;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_is_a_distance() {
        // The same line scaled by 1e6 or by 1e-6 has the same on-line band.
        for k in [1e-6, 1.0, 1e6] {
            let tol = tolerance(k, 0.0, 0.0);
            assert_eq!(sign(k * 0.5 * DIST, tol), Sign::Zero);
            assert_eq!(sign(k * 2.0 * DIST, tol), Sign::Pos);
            assert_eq!(sign(-k * 2.0 * DIST, tol), Sign::Neg);
        }
        // A large offset does not widen the band (the old value-relative rule did).
        let tol = tolerance(1e-6, 0.0, noise_floor(6.0));
        assert_eq!(sign(1e-6 * 1e-6, tol), Sign::Pos, "a point 1e-6 away from a flat line far from zero");
    }

    #[test]
    fn noise_floor_bounds_rounding() {
        assert_eq!(sign(1e-15, tolerance(0.0, 0.0, noise_floor(1.0))), Sign::Zero);
        assert_eq!(sign(1e-12, tolerance(0.0, 0.0, noise_floor(1.0))), Sign::Pos);
    }

    #[test]
    fn orientation_by_distance() {
        let (a, b) = ([0.0, 0.0], [1.0, 0.0]);
        assert_eq!(orient(a, b, [0.5, 1e-3]), Sign::Pos);
        assert_eq!(orient(a, b, [0.5, -1e-3]), Sign::Neg);
        assert_eq!(orient(a, b, [0.5, 1e-11]), Sign::Zero);
        // A short segment defines the same line: the band does not shrink with its length.
        let b = [1e-6, 0.0];
        assert_eq!(orient(a, b, [0.5, 1e-11]), Sign::Zero);
        assert_eq!(orient(a, b, [0.5, 1e-9]), Sign::Pos);
        assert_eq!(orient(a, a, [0.5, 0.5]), Sign::Zero);
    }

    #[test]
    fn same_point_is_a_distance() {
        assert!(same_point([1.0, 1.0], [1.0 + 1e-11, 1.0]));
        assert!(!same_point([1.0, 1.0], [1.0 + 1e-9, 1.0]));
    }
}
