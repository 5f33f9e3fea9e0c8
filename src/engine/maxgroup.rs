//! Max-type layers (maxout, max-pool): which candidates of a group can be the maximum on a
//! region, and the split of a region into the cells where each candidate wins.
//!
//! Ties go to the lowest index. Two candidates that are the same affine function on a region
//! (for instance two dead ReLUs, both 0, feeding one pooling window) never split it: the
//! difference is zero at every vertex, and the lower index dominates.

use crate::geometry::envelope::max_cells;
use crate::geometry::polygon::ConvexPolygon;
use crate::geometry::predicates::{sign, Sign};

/// The pre-activation maps of a cell (`z`, `3 × n`) with every unit's rounding floor.
#[derive(Clone, Copy)]
pub(crate) struct Maps<'a> {
    pub z: &'a [f64],
    pub noise: &'a [f64],
    pub n: usize,
}

impl Maps<'_> {
    /// Scale of `z_p − z_q` for the tolerance policy (domain coordinates bounded by 1).
    #[inline]
    fn diff_scale(&self, p: usize, q: usize) -> f64 {
        let (z, n) = (self.z, self.n);
        z[p].abs()
            + z[q].abs()
            + z[n + p].abs()
            + z[n + q].abs()
            + z[2 * n + p].abs()
            + z[2 * n + q].abs()
            + self.noise[p]
            + self.noise[q]
    }

    #[inline]
    fn diff_at(&self, p: usize, q: usize, pt: [f64; 2]) -> f64 {
        let (z, n) = (self.z, self.n);
        (z[p] - z[q]) * pt[0] + (z[n + p] - z[n + q]) * pt[1] + (z[2 * n + p] - z[2 * n + q])
    }

    #[inline]
    fn value_at(&self, p: usize, pt: [f64; 2]) -> f64 {
        let (z, n) = (self.z, self.n);
        z[p] * pt[0] + z[n + p] * pt[1] + z[2 * n + p]
    }

    /// The 3-vector map of unit `p`.
    #[inline]
    pub(crate) fn unit(&self, p: usize) -> [f64; 3] {
        [self.z[p], self.z[self.n + p], self.z[2 * self.n + p]]
    }

    /// Whether candidate `q` (unit, group position) dominates `p` on `poly`: `z_q ≥ z_p` at
    /// every vertex, with ties everywhere resolved by position.
    fn dominates(&self, poly: &ConvexPolygon, (q, qi): (usize, u32), (p, pi): (usize, u32)) -> bool {
        let scale = self.diff_scale(q, p);
        let mut all_zero = true;
        for &pt in &poly.pts {
            match sign(self.diff_at(q, p, pt), scale) {
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
    let mut out: Vec<(u32, u32)> = cands
        .iter()
        .copied()
        .filter(|&(p, pi)| {
            !cands.iter().any(|&(q, qi)| qi != pi && m.dominates(poly, (q as usize, qi), (p as usize, pi)))
        })
        .collect();
    if out.is_empty() {
        // Only reachable through inconsistent tolerance decisions among three or more nearly
        // equal candidates: keep the one that is largest at the centroid.
        out.push(best_at_centroid(poly, m, cands));
    }
    out
}

/// The candidate largest at the polygon's vertex centroid (ties to the lower position).
/// `cands` is never empty: the loader rejects empty pooling windows.
pub(crate) fn best_at_centroid(poly: &ConvexPolygon, m: Maps<'_>, cands: &[(u32, u32)]) -> (u32, u32) {
    let c = poly.vertex_centroid();
    cands
        .iter()
        .copied()
        .max_by(|a, b| {
            let (va, vb) = (m.value_at(a.0 as usize, c), m.value_at(b.0 as usize, c));
            va.total_cmp(&vb).then(b.1.cmp(&a.1))
        })
        .unwrap_or((0, 0))
}

/// The cells of `poly` where each candidate of `cands` (all undominated) is the maximum.
pub(crate) fn winner_cells(
    poly: &ConvexPolygon,
    m: Maps<'_>,
    cands: &[(u32, u32)],
) -> Vec<((u32, u32), ConvexPolygon)> {
    // `cands` are in group order, so ties by index are ties by position.
    let unit = |i: usize| cands[i].0 as usize;
    max_cells(poly, cands.len(), |c, d, p| m.diff_at(unit(c), unit(d), p), |c, d| m.diff_scale(unit(c), unit(d)))
        .into_iter()
        .map(|(i, cell)| (cands[i], cell))
        .collect()
}
