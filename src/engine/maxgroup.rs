//! Max-type layers (maxout, max-pool): which candidates of a group can be the maximum on a
//! region, and the split of a region into the cells where each candidate wins.
//!
//! Ties go to the lowest index. Two candidates that are the same affine function on a region
//! (for instance two dead ReLUs, both 0, feeding one pooling window) never split it: the
//! difference is zero at every vertex, and the lower index dominates.

use crate::geometry::polygon::{ConvexPolygon, Split};
use crate::geometry::predicates::{sign, Sign};

/// Scale of `z_p − z_q` for the tolerance policy (domain coordinates bounded by 1).
#[inline]
fn diff_scale(z: &[f64], n: usize, p: usize, q: usize) -> f64 {
    z[p].abs()
        + z[q].abs()
        + z[n + p].abs()
        + z[n + q].abs()
        + z[2 * n + p].abs()
        + z[2 * n + q].abs()
}

#[inline]
fn diff_at(z: &[f64], n: usize, p: usize, q: usize, pt: [f64; 2]) -> f64 {
    (z[p] - z[q]) * pt[0] + (z[n + p] - z[n + q]) * pt[1] + (z[2 * n + p] - z[2 * n + q])
}

/// Whether candidate `q` (unit index, group position `qi`) dominates `p` (position `pi`) on
/// `poly`: `z_q ≥ z_p` at every vertex, with ties everywhere resolved by position.
fn dominates(
    poly: &ConvexPolygon,
    z: &[f64],
    n: usize,
    (q, qi): (usize, usize),
    (p, pi): (usize, usize),
) -> bool {
    let scale = diff_scale(z, n, q, p);
    let mut all_zero = true;
    for &pt in &poly.pts {
        match sign(diff_at(z, n, q, p, pt), scale) {
            Sign::Neg => return false,
            Sign::Pos => all_zero = false,
            Sign::Zero => {}
        }
    }
    !all_zero || qi < pi
}

/// Positions (into `cands`) of the candidates not dominated by another on `poly`.
pub(crate) fn undominated(
    poly: &ConvexPolygon,
    z: &[f64],
    n: usize,
    cands: &[(u32, u8)],
) -> Vec<(u32, u8)> {
    let mut out: Vec<(u32, u8)> = cands
        .iter()
        .copied()
        .filter(|&(p, pi)| {
            !cands.iter().any(|&(q, qi)| {
                qi != pi
                    && dominates(
                        poly,
                        z,
                        n,
                        (q as usize, qi as usize),
                        (p as usize, pi as usize),
                    )
            })
        })
        .collect();
    if out.is_empty() {
        // Only reachable through inconsistent tolerance decisions among three or more nearly
        // equal candidates: keep the one that is largest at the centroid.
        let c = poly.vertex_centroid();
        let best = cands
            .iter()
            .copied()
            .max_by(|a, b| {
                let va =
                    z[a.0 as usize] * c[0] + z[n + a.0 as usize] * c[1] + z[2 * n + a.0 as usize];
                let vb =
                    z[b.0 as usize] * c[0] + z[n + b.0 as usize] * c[1] + z[2 * n + b.0 as usize];
                va.total_cmp(&vb).then(b.1.cmp(&a.1))
            })
            .expect("groups are never empty");
        out.push(best);
    }
    out
}

/// The cells of `poly` where each candidate of `cands` (all undominated) is the maximum.
pub(crate) fn winner_cells(
    poly: &ConvexPolygon,
    z: &[f64],
    n: usize,
    cands: &[(u32, u8)],
) -> Vec<((u32, u8), ConvexPolygon)> {
    let mut cells = Vec::with_capacity(cands.len());
    'cand: for &(c, ci) in cands {
        let mut cur = poly.clone();
        for &(d, di) in cands {
            if di == ci {
                continue;
            }
            let (c_, d_) = (c as usize, d as usize);
            let values: Vec<f64> = cur
                .pts
                .iter()
                .map(|&pt| diff_at(z, n, c_, d_, pt))
                .collect();
            match cur.split(&values, diff_scale(z, n, c_, d_)) {
                Split::Above => {}
                Split::Below => continue 'cand,
                Split::OnLine => {
                    if ci > di {
                        continue 'cand;
                    }
                }
                Split::Both(_, pos) => cur = pos,
            }
        }
        cells.push(((c, ci), cur));
    }
    cells
}
