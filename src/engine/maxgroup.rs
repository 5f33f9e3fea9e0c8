//! Max-type layers (maxout, max-pool): which candidates of a group can be the maximum on a
//! region, and the split of a region into the cells where each candidate wins.
//!
//! Ties go to the lowest index. Two candidates that are the same affine function on a region
//! (for instance two dead ReLUs, both 0, feeding one pooling window) never split it: the
//! difference is zero at every vertex, and the lower index dominates.

use crate::geometry::envelope::max_cells;
use crate::geometry::polygon::ConvexPolygon;
use crate::geometry::predicates::{sign, tolerance, Sign};

/// The pre-activation maps of a cell (`z`, `3 × n`) with every unit's rounding floor.
#[derive(Clone, Copy)]
pub(crate) struct Maps<'a> {
    pub z: &'a [f64],
    pub noise: &'a [f64],
    pub n: usize,
}

impl Maps<'_> {
    /// Tolerance of `z_p − z_q` under the tolerance rule: its gradient, and both noise floors.
    #[inline]
    fn diff_tol(&self, p: usize, q: usize) -> f64 {
        let (z, n) = (self.z, self.n);
        tolerance(z[p] - z[q], z[n + p] - z[n + q], self.noise[p] + self.noise[q])
    }

    #[inline]
    fn diff_at(&self, p: usize, q: usize, pt: [f64; 2]) -> f64 {
        let (z, n) = (self.z, self.n);
        (z[p] - z[q]) * pt[0] + (z[n + p] - z[n + q]) * pt[1] + (z[2 * n + p] - z[2 * n + q])
    }

    /// The 3-vector map of unit `p`.
    #[inline]
    pub(crate) fn unit(&self, p: usize) -> [f64; 3] {
        [self.z[p], self.z[self.n + p], self.z[2 * self.n + p]]
    }

    /// Whether candidate `q` (unit, group position) dominates `p` on `poly`: `z_q ≥ z_p` at
    /// every vertex, with ties everywhere resolved by position.
    fn dominates(&self, poly: &ConvexPolygon, (q, qi): (usize, u32), (p, pi): (usize, u32)) -> bool {
        let tol = self.diff_tol(q, p);
        let mut all_zero = true;
        for &pt in &poly.pts {
            match sign(self.diff_at(q, p, pt), tol) {
                Sign::Neg => return false,
                Sign::Pos => all_zero = false,
                Sign::Zero => {}
            }
        }
        !all_zero || qi < pi
    }
}

/// The candidates `(unit, position)` not dominated by another on `poly`.
pub(crate) fn undominated(poly: &ConvexPolygon, m: Maps<'_>, cands: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let out: Vec<(u32, u32)> = cands
        .iter()
        .copied()
        .filter(|&(p, pi)| {
            !cands.iter().any(|&(q, qi)| qi != pi && m.dominates(poly, (q as usize, qi), (p as usize, pi)))
        })
        .collect();
    if out.is_empty() {
        // Only reachable through tolerance decisions among three or more nearly equal
        // candidates that dominate each other in a cycle: let the tournament decide among all.
        return cands.to_vec();
    }
    out
}

/// The cells of `poly` where each candidate of `cands` is the maximum (they tile `poly`).
pub(crate) fn winner_cells(
    poly: &ConvexPolygon,
    m: Maps<'_>,
    cands: &[(u32, u32)],
) -> Vec<((u32, u32), ConvexPolygon)> {
    // `cands` are in group order, so ties by index are ties by position.
    let unit = |i: usize| cands[i].0 as usize;
    max_cells(poly, cands.len(), |c, d, p| m.diff_at(unit(c), unit(d), p), |c, d| m.diff_tol(unit(c), unit(d)))
        .into_iter()
        .map(|(i, cell)| (cands[i], cell))
        .collect()
}
