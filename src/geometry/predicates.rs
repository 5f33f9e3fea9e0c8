//! The one place where signs of geometric quantities are decided.
//!
//! # Tolerance policy
//!
//! Every quantity whose sign matters in tessera is the value of an affine function
//! `f(u, v) = a·u + b·v + c` (a pre-activation minus a breakpoint, or the difference of two
//! max-pool candidates) at a polygon vertex. Its floating-point error is bounded by a small
//! multiple of machine epsilon times the *magnitudes of the terms* that produced it, including
//! the rounding accumulated in `a`, `b`, `c` by the layers before. We therefore call a value zero
//! when `|f| <= REL_TOL * scale`, where `scale` is the sum of the absolute values of the terms
//! (`|a|·U + |b|·V + |c|`, with `U`, `V` bounds on `|u|`, `|v|`) — never a bare comparison with
//! `0.0`.
//!
//! The engine works in normalised slice coordinates, where the domain is `[-1, 1]²`, so the
//! policy is invariant to the size and position of the domain (a 1e-9 box behaves as a 1e9 box).
//!
//! Because the coefficients themselves carry rounding from the layers before, the scale also
//! includes a floor proportional to the magnitude of every term that produced the value
//! ([`noise_scale`], [`NOISE`]): a zero threshold is never below the rounding noise of the
//! network's own forward pass.
//!
//! `REL_TOL = 1e-9` leaves five to six orders of magnitude of headroom above the rounding of
//! a few hundred accumulated products (≈ 1e-14 relative), and below it lie only features that
//! f64 cannot place anyway. Consequences, which are the meaning of "exact" in tessera:
//! * a line that passes within `REL_TOL` (relative) of a vertex passes *through* it: no sliver
//!   thinner than that is created, and degenerate configurations (many lines through one point,
//!   coincident lines) are resolved consistently;
//! * a split happens only when some vertex lies strictly on each side, so every emitted piece
//!   contains a vertex at a relative distance above `REL_TOL` from the cutting line and has
//!   positive area.

/// Relative tolerance below which a value is treated as zero (see the module docs).
pub const REL_TOL: f64 = 1e-9;

/// Rounding noise of a network's pre-activation relative to the magnitudes of every term that
/// produced it (`Σ|w|·|x| + |b|` through all earlier layers): about 64 ulps, room for the
/// accumulation of a few hundred products per layer over several layers.
pub const NOISE: f64 = 1e-14;

/// The amount to add to a value's `scale` so that its zero threshold is never below the
/// rounding noise of a quantity whose terms had total magnitude `magnitude`.
///
/// On a small domain far from the origin, a pre-activation's affine coefficients over the
/// domain are tiny while its value is the cancellation of large terms: without this floor, lines
/// that should meet in one point would meet in a cluster of rounding-sized triangles.
#[inline]
pub fn noise_scale(magnitude: f64) -> f64 {
    magnitude * (NOISE / REL_TOL)
}

/// Three-way sign of a value under the tolerance policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// Strictly negative beyond the tolerance.
    Neg,
    /// Within the tolerance of zero.
    Zero,
    /// Strictly positive beyond the tolerance.
    Pos,
}

/// Classifies `value`, whose terms had absolute magnitudes summing to `scale`.
#[inline]
pub fn sign(value: f64, scale: f64) -> Sign {
    let tol = REL_TOL * scale;
    if value > tol {
        Sign::Pos
    } else if value < -tol {
        Sign::Neg
    } else {
        Sign::Zero
    }
}

/// `sign(value, scale) == Sign::Pos`, branch-free for vectorised loops.
#[inline(always)]
pub fn is_pos(value: f64, scale: f64) -> bool {
    value > REL_TOL * scale
}

/// `sign(value, scale) == Sign::Neg`, branch-free for vectorised loops.
#[inline(always)]
pub fn is_neg(value: f64, scale: f64) -> bool {
    value < -REL_TOL * scale
}

/// Threshold below which a value with the given term magnitude counts as zero.
#[inline]
pub fn zero_threshold(scale: f64) -> f64 {
    REL_TOL * scale
}

/// Scale of the affine function `a·u + b·v + c` over a region whose coordinates are bounded by
/// `|u| <= bound_u`, `|v| <= bound_v`.
#[inline]
pub fn affine_scale(a: f64, b: f64, c: f64, bound_u: f64, bound_v: f64) -> f64 {
    a.abs() * bound_u + b.abs() * bound_v + c.abs()
}

/// Two points are the same vertex when they agree within the tolerance relative to
/// `extent` (the size of the domain they live in).
#[inline]
pub fn same_point(p: [f64; 2], q: [f64; 2], extent: f64) -> bool {
    let tol = REL_TOL * extent;
    (p[0] - q[0]).abs() <= tol && (p[1] - q[1]).abs() <= tol
}

/// A polygon (or any 2D quantity of squared length) has positive area when its area is above
/// the tolerance relative to the square of its extent.
#[inline]
pub fn positive_area(area: f64, extent: f64) -> bool {
    area > REL_TOL * REL_TOL * extent * extent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_respects_scale() {
        assert_eq!(sign(1e-12, 1.0), Sign::Zero);
        assert_eq!(sign(1e-12, 1e-6), Sign::Pos);
        assert_eq!(sign(-1e-3, 1.0), Sign::Neg);
        assert_eq!(sign(0.0, 0.0), Sign::Zero);
    }

    #[test]
    fn same_point_is_relative() {
        assert!(same_point([1.0, 1.0], [1.0 + 1e-12, 1.0], 1.0));
        assert!(!same_point([1.0, 1.0], [1.0 + 1e-6, 1.0], 1.0));
        assert!(same_point([1e9, 0.0], [1e9 + 0.1, 0.0], 1e9));
    }
}
