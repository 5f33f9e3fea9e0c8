//! Max-type layers (maxout, max-pool, max joins): which candidates of a group can be the maximum
//! on a cell, and the split of a cell into the cells where each candidate wins.
//!
//! Ties go to the lowest position in the group. Two candidates that are the same affine function
//! on a cell (for instance two dead ReLUs, both 0, feeding one pooling window) never split it:
//! the difference is zero at every vertex, and the lower position dominates. Winner cells come
//! from the tournament of `geometry::envelope`, so they tile the cell by construction.

use crate::geometry::envelope::max_cells;
use crate::geometry::polygon::ConvexPolygon;
use crate::geometry::predicates::{sign, tolerance, Sign};

/// Groups of units and their maximum.
pub(crate) struct MaxLayer {
    /// Candidate units of every group, in increasing order (position = index in the list).
    groups: Vec<Vec<u32>>,
    /// For every unit, the groups it belongs to (CSR: `unit_ptr[u]..unit_ptr[u + 1]`).
    unit_ptr: Vec<u32>,
    unit_groups: Vec<u32>,
    /// Pattern bits per group.
    bits: usize,
    /// When every group has four candidates (2 × 2 pooling): candidate `k` of every group, for
    /// the vectorised box test ([`super::kernels::box_winners4`]).
    quads: Option<super::kernels::Quads>,
}

/// A group whose maximum changes inside a cell.
#[derive(Clone, Debug)]
pub(crate) struct Contest {
    pub group: u32,
    /// The candidates `(position, unit)` that win somewhere, in position order.
    pub alive: Vec<(u32, u32)>,
    /// The position the cell's post-activation and pattern assume.
    pub default: u32,
}

/// A dense classification of every group over a polygon.
pub(crate) struct Classified {
    /// Post-activation map `3 × groups` with every contested group at its default winner.
    pub t: std::sync::Arc<Vec<f64>>,
    pub contests: Vec<Contest>,
    /// The stage's pattern bits (`bits` per group: the winner's position).
    pub bits: Vec<u64>,
}

impl MaxLayer {
    pub(crate) fn new(groups: Vec<Vec<u32>>) -> Self {
        let n = groups.iter().flatten().map(|&u| u as usize + 1).max().unwrap_or(0);
        let mut count = vec![0u32; n + 1];
        for &u in groups.iter().flatten() {
            count[u as usize + 1] += 1;
        }
        for i in 0..n {
            count[i + 1] += count[i];
        }
        let mut fill = count.clone();
        let mut unit_groups = vec![0u32; groups.iter().map(Vec::len).sum()];
        for (g, group) in groups.iter().enumerate() {
            for &u in group {
                unit_groups[fill[u as usize] as usize] = g as u32;
                fill[u as usize] += 1;
            }
        }
        let largest = groups.iter().map(Vec::len).max().unwrap_or(1);
        let bits = crate::network::Layer::max_bits(largest);
        let quads = super::kernels::Quads::new(&groups);
        MaxLayer { groups, unit_ptr: count, unit_groups, bits, quads }
    }

    /// Whether every group has four candidates (the box test of
    /// [`super::kernels::box_winner4_rule`] applies to each).
    pub(crate) fn has_quads(&self) -> bool {
        self.quads.is_some()
    }

    pub(crate) fn groups(&self) -> usize {
        self.groups.len()
    }

    pub(crate) fn bits(&self) -> usize {
        self.bits
    }

    /// The candidate units of group `g`.
    pub(crate) fn group(&self, g: usize) -> &[u32] {
        &self.groups[g]
    }

    /// The groups unit `u` belongs to.
    pub(crate) fn groups_of(&self, u: usize) -> &[u32] {
        match self.unit_ptr.get(u..u + 2) {
            Some(r) => &self.unit_groups[r[0] as usize..r[1] as usize],
            None => &[],
        }
    }

    /// Bound on every output's term magnitude: the largest of its candidates'.
    pub(crate) fn output_magnitude(&self, m: &[f64]) -> Vec<f64> {
        self.groups.iter().map(|g| g.iter().map(|&i| m[i as usize]).fold(0.0, f64::max)).collect()
    }

    /// Classifies every group of the pre-activation map `z` (`3 × n`) over `poly`.
    pub(crate) fn classify_all(
        &self,
        poly: &ConvexPolygon,
        z: &[f64],
        noise: &[f64],
        scratch: &mut super::pwl::Scratch,
    ) -> Classified {
        let n = z.len() / 3;
        let g_count = self.groups.len();
        let mut t = vec![0.0; 3 * g_count];
        let mut bits = vec![0u64; (g_count * self.bits).div_ceil(64)];
        let mut contests = Vec::new();
        let center = box_center(poly);
        // Every unit's range over the polygon's bounding box (in one vectorised pass, or inside
        // the kernel for groups of four): a group whose best lower bound beats every other
        // candidate's upper bound (by more than the tolerance of their difference) is decided
        // without looking at the vertices.
        let bb = poly.bbox();
        let half = [0.5 * (bb[1] - bb[0]), 0.5 * (bb[3] - bb[2])];
        let (lo, hi_tol, tol) = scratch.bounds(n);
        let (za, zb, zc) = (&z[..n], &z[n..2 * n], &z[2 * n..3 * n]);
        // Groups of four (2 × 2 pooling windows, the common case) decided by the box, four at
        // a time, their bounds computed on the way; a group the kernel leaves open is open by
        // the general loop's rule too, so it goes straight to the vertex test below.
        let mut quick = Vec::new();
        if let Some(quads) = &self.quads {
            quick.resize(g_count, super::kernels::UNDECIDED4);
            super::kernels::box_winners4(quads, z, noise, center, half, &mut quick, &mut t);
            // Their pattern bits, a word at a time in a register (one read-modify-write of
            // memory per group was a chain of store-to-load forwards).
            let per = 64 / self.bits;
            for (word, chunk) in bits.iter_mut().zip(quick.chunks(per)) {
                let mut acc = 0u64;
                for (j, &w) in chunk.iter().enumerate() {
                    let decided = if w == super::kernels::UNDECIDED4 { 0 } else { u64::from(w) };
                    acc |= decided << (j * self.bits);
                }
                *word = acc;
            }
        } else {
            super::kernels::box_bounds_tol(za, zb, zc, noise, center, half, lo, hi_tol, tol);
        }
        let (lo, hi_tol, tol) = (&*lo, &*hi_tol, &*tol);
        let mut cands = Vec::new();
        for (g, group) in self.groups.iter().enumerate() {
            let decided = match quick.get(g) {
                // Decided four at a time, winner map and bits written.
                Some(&w) if w != super::kernels::UNDECIDED4 => continue,
                Some(_) => None,
                None => box_decides(group, z, lo, hi_tol, tol),
            };
            let (w, contest) = match decided {
                Some(best) => (best as u32, None),
                None => {
                    cands.clear();
                    cands.extend(group.iter().enumerate().map(|(pos, &u)| (pos as u32, u, unit(z, n, u as usize))));
                    self.classify_group(g, &cands, poly, center, noise, true)
                }
            };
            let zw = unit(z, n, group[w as usize] as usize);
            t[g] = zw[0];
            t[g_count + g] = zw[1];
            t[2 * g_count + g] = zw[2];
            put_bits(&mut bits, g * self.bits, self.bits, w);
            contests.extend(contest);
        }
        Classified { t: t.into(), contests, bits }
    }

    /// Classifies group `g` whose candidates are `(position, unit, map)`: the position the cell
    /// assumes, and the contest when more than one candidate wins somewhere. `box_undecided`:
    /// the caller already found that the ranges over the polygon's bounding box leave the group
    /// undecided (the same test, so it is not repeated).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn classify_group(
        &self,
        g: usize,
        cands: &[(u32, u32, [f64; 3])],
        poly: &ConvexPolygon,
        center: [f64; 2],
        noise: &[f64],
        box_undecided: bool,
    ) -> (u32, Option<Contest>) {
        let alive = match undominated(poly, cands, noise, box_undecided) {
            Ok((pos, _)) => return (pos, None),
            Err(alive) => alive,
        };
        // Start from the candidate largest at the box centre (ties to the lower position).
        let value = |m: [f64; 3]| m[0] * center[0] + m[1] * center[1] + m[2];
        let default = alive
            .iter()
            .map(|&(pos, _)| (pos, value(cands.iter().find(|c| c.0 == pos).expect("alive is a candidate").2)))
            .fold(None, |best: Option<(u32, f64)>, (pos, v)| match best {
                Some((_, bv)) if bv >= v => best,
                _ => Some((pos, v)),
            })
            .map_or(0, |(pos, _)| pos);
        (default, Some(Contest { group: g as u32, alive, default }))
    }

    /// The cells of `poly` where each of `alive` (`(position, map)`) wins; they tile `poly`.
    pub(crate) fn winner_cells(
        &self,
        poly: &ConvexPolygon,
        alive: &[(u32, [f64; 3], f64)],
    ) -> Vec<(u32, ConvexPolygon)> {
        let diff = |c: usize, d: usize, p: [f64; 2]| {
            let (a, b) = (alive[c].1, alive[d].1);
            (a[0] - b[0]) * p[0] + (a[1] - b[1]) * p[1] + (a[2] - b[2])
        };
        let tol = |c: usize, d: usize| {
            let (a, b) = (alive[c].1, alive[d].1);
            tolerance(a[0] - b[0], a[1] - b[1], alive[c].2 + alive[d].2)
        };
        max_cells(poly, alive.len(), diff, tol).into_iter().map(|(i, cell)| (alive[i].0, cell)).collect()
    }
}

/// The position winning `group` over the whole box, by its units' bounds (`lo`, `hi_tol`,
/// `tol` over the box) and maps (`z`, `3 × n`): the first largest lower bound, when every
/// other candidate's upper bound plus the winner's tolerance is below it, or its map is the
/// very same for a later candidate (two dead units: the tie goes to the lower position).
/// Branch-free selects: which candidate has the largest lower bound is close to random in a
/// trained layer, and a branch on it mispredicts.
fn box_decides(group: &[u32], z: &[f64], lo: &[f64], hi_tol: &[f64], tol: &[f64]) -> Option<usize> {
    let n = z.len() / 3;
    let (za, zb, zc) = (&z[..n], &z[n..2 * n], &z[2 * n..3 * n]);
    let (mut best, mut best_lo) = (0, lo[group[0] as usize]);
    for (k, &u) in group.iter().enumerate().skip(1) {
        let v = lo[u as usize];
        let better = v > best_lo;
        best = if better { k } else { best };
        best_lo = if better { v } else { best_lo };
    }
    let b = group[best] as usize;
    let tol_b = tol[b];
    let same = |u: usize| za[u] == za[b] && zb[u] == zb[b] && zc[u] == zc[b];
    let decided = group.iter().enumerate().all(|(k, &u)| {
        let u = u as usize;
        k == best || hi_tol[u] + tol_b < best_lo || (k > best && same(u))
    });
    decided.then_some(best)
}

/// Sets the `width` bits at `offset` of `bits` (zero there) to `w`.
#[inline]
fn put_bits(bits: &mut [u64], offset: usize, width: usize, w: u32) {
    for k in 0..width {
        bits[(offset + k) / 64] |= u64::from(w >> k & 1) << ((offset + k) % 64);
    }
}

#[inline]
fn unit(z: &[f64], n: usize, u: usize) -> [f64; 3] {
    [z[u], z[n + u], z[2 * n + u]]
}

/// Centre of a polygon's bounding box.
pub(crate) fn box_center(poly: &ConvexPolygon) -> [f64; 2] {
    let bb = poly.bbox();
    [0.5 * (bb[0] + bb[1]), 0.5 * (bb[2] + bb[3])]
}

/// Whether candidate `q` dominates `p` on `poly`: `z_q ≥ z_p` at every vertex (within the
/// tolerance), with ties everywhere resolved by position.
fn dominates(poly: &ConvexPolygon, (qi, q, nq): (u32, [f64; 3], f64), (pi, p, np): (u32, [f64; 3], f64)) -> bool {
    let d = [q[0] - p[0], q[1] - p[1], q[2] - p[2]];
    let tol = tolerance(d[0], d[1], nq + np);
    let mut all_zero = true;
    for pt in &poly.pts {
        match sign(d[0] * pt[0] + d[1] * pt[1] + d[2], tol) {
            Sign::Neg => return false,
            Sign::Pos => all_zero = false,
            Sign::Zero => {}
        }
    }
    !all_zero || qi < pi
}

/// The candidates `(position, unit)` not dominated by another on `poly`: `Ok` with the one
/// winner (the usual case, found without allocating), or `Err` with several.
fn undominated(
    poly: &ConvexPolygon,
    cands: &[(u32, u32, [f64; 3])],
    noise: &[f64],
    box_undecided: bool,
) -> Result<(u32, u32), Vec<(u32, u32)>> {
    let with_noise = |&(pos, u, m): &(u32, u32, [f64; 3])| (pos, m, noise[u as usize]);
    // First by ranges over the vertices: a candidate whose largest value is below the largest
    // smallest value, by more than any tolerance of their difference, is dominated by that
    // candidate (its difference is positive beyond the tolerance at every vertex). Usually
    // this leaves one candidate, and the pairwise test runs only on the rest.
    let mut ranges = [(0.0, 0.0, 0.0); 16];
    let mut buf = Vec::new();
    let ranges: &mut [(f64, f64, f64)] = if cands.len() <= ranges.len() {
        &mut ranges[..cands.len()]
    } else {
        buf.resize(cands.len(), (0.0, 0.0, 0.0));
        &mut buf
    };
    let (mut best, mut best_lo) = (0, f64::NEG_INFINITY);
    if !box_undecided {
        // Ranges over the bounding box first (four products a candidate); the vertices only when the
        // box leaves the group undecided.
        let bb = poly.bbox();
        let (center, half) =
            ([0.5 * (bb[0] + bb[1]), 0.5 * (bb[2] + bb[3])], [0.5 * (bb[1] - bb[0]), 0.5 * (bb[3] - bb[2])]);
        for (k, &(_, u, m)) in cands.iter().enumerate() {
            let mid = m[0] * center[0] + m[1] * center[1] + m[2];
            let rad = m[0].abs() * half[0] + m[1].abs() * half[1];
            let margin = tolerance(m[0], m[1], noise[u as usize]);
            ranges[k] = (mid - rad, mid + rad, margin);
            if mid - rad > best_lo {
                (best, best_lo) = (k, mid - rad);
            }
        }
        let boxed = |k: usize| {
            k == best
                || ranges[k].1 + ranges[k].2 + ranges[best].2 < best_lo
                || (k > best && cands[k].2 == cands[best].2)
        };
        if (0..cands.len()).all(boxed) {
            let (pos, u, _) = cands[best];
            return Ok((pos, u));
        }
    }
    (best, best_lo) = (0, f64::NEG_INFINITY);
    for (k, &(_, u, m)) in cands.iter().enumerate() {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for p in &poly.pts {
            let v = m[0] * p[0] + m[1] * p[1] + m[2];
            lo = lo.min(v);
            hi = hi.max(v);
        }
        // Half of a bound on the tolerance of this candidate's difference with any other.
        let margin = tolerance(m[0], m[1], noise[u as usize]);
        ranges[k] = (lo, hi, margin);
        if lo > best_lo {
            (best, best_lo) = (k, lo);
        }
    }
    // A later candidate with the very same map (two dead units) loses every tie.
    let beaten = |k: usize| {
        k != best && (ranges[k].1 + ranges[k].2 + ranges[best].2 < best_lo || (k > best && cands[k].2 == cands[best].2))
    };
    if (0..cands.len()).all(|k| k == best || beaten(k)) {
        let (pos, u, _) = cands[best];
        return Ok((pos, u));
    }
    let rest: Vec<usize> = (0..cands.len()).filter(|&k| !beaten(k)).collect();
    let out: Vec<(u32, u32)> = rest
        .iter()
        .map(|&k| &cands[k])
        .filter(|p| !rest.iter().any(|&k| cands[k].0 != p.0 && dominates(poly, with_noise(&cands[k]), with_noise(p))))
        .map(|&(pos, u, _)| (pos, u))
        .collect();
    match out[..] {
        // Only reachable through tolerance decisions among three or more nearly equal
        // candidates that dominate each other in a cycle: let the tournament decide among all.
        [] => Err(cands.iter().map(|&(pos, u, _)| (pos, u)).collect()),
        [one] => Ok(one),
        _ => Err(out),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::kernels::box_winner4_rule;
    use rand::{Rng, SeedableRng};

    /// The straight-line test decides exactly the groups the sequential scan decides by bounds
    /// alone, with the same winner: ties (drawn often here) go to the lowest position.
    #[test]
    fn box_winner4_matches_the_sequential_scan() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut by_ties = 0;
        for _ in 0..20_000 {
            // Coarse values, so that equal bounds, equal maps and near misses are common.
            let lo: Vec<f64> = (0..6).map(|_| f64::from(rng.random_range(-3..4)) * 0.5).collect();
            let hi_tol: Vec<f64> = lo.iter().map(|&l| l + f64::from(rng.random_range(0..3)) * 0.25).collect();
            let tol: Vec<f64> = (0..6).map(|_| f64::from(rng.random_range(0..2)) * 0.125).collect();
            let z: Vec<f64> = (0..18).map(|_| f64::from(rng.random_range(0..2))).collect();
            let mut us = [0u32; 4];
            for u in &mut us {
                *u = rng.random_range(0..6);
            }
            let mut best = 0;
            for k in 1..4 {
                if lo[us[k] as usize] > lo[us[best] as usize] {
                    best = k;
                }
            }
            let (b, best_lo, tb) = (us[best] as usize, lo[us[best] as usize], tol[us[best] as usize]);
            let same = |u: usize| (0..3).all(|r| z[6 * r + u] == z[6 * r + b]);
            let by_bounds = (0..4).all(|k| k == best || hi_tol[us[k] as usize] + tb < best_lo);
            let decided = (0..4).all(|k| {
                let u = us[k] as usize;
                k == best || hi_tol[u] + tb < best_lo || (k > best && same(u))
            });
            by_ties += usize::from(decided && !by_bounds);
            let at = |v: &[f64]| us.map(|u| v[u as usize]);
            let maps = us.map(|u| [z[u as usize], z[6 + u as usize], z[12 + u as usize]]);
            let got = box_winner4_rule(at(&lo), at(&hi_tol), at(&tol), maps);
            assert_eq!(got, decided.then_some(best), "{us:?} {lo:?} {hi_tol:?} {tol:?}");
            // The general loop's rule, which a group the kernel leaves open skips.
            assert_eq!(super::box_decides(&us, &z, &lo, &hi_tol, &tol), got, "{us:?}");
        }
        assert!(by_ties > 100, "the tie rule decided {by_ties} groups");
    }

    /// The sparse classification's shortcut: the straight-line box test of a group's gathered
    /// maps, then the vertex test only for open groups, classifies every group as the general
    /// path (box phase and vertex phase of `undominated`) does, winner and contest alike.
    #[test]
    fn box_test_of_gathered_maps_then_vertices_matches_the_general_path() {
        use crate::geometry::polygon::ConvexPolygon;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let layer = super::MaxLayer::new(vec![vec![0, 1, 2, 3]]);
        let noise = [0.0, 1e-3, 0.0, 2e-3];
        let (mut by_box, mut open) = (0, 0);
        for _ in 0..20_000 {
            let x0 = f64::from(rng.random_range(-4..4)) * 0.25;
            let y0 = f64::from(rng.random_range(-4..4)) * 0.25;
            let poly = ConvexPolygon::rect(x0, x0 + 0.25 * f64::from(rng.random_range(1..4)), y0, y0 + 0.5);
            // Coarse maps: dead units (the zero map), equal maps and near ties are common, and
            // offsets of the order of the noise floors put bounds at the tolerance's edge.
            let maps: [[f64; 3]; 4] = std::array::from_fn(|_| {
                if rng.random_bool(0.3) {
                    [0.0; 3]
                } else {
                    let mut m: [f64; 3] = std::array::from_fn(|_| f64::from(rng.random_range(-2..3)) * 0.5);
                    m[2] += f64::from(rng.random_range(-3..4)) * 5e-4;
                    m
                }
            });
            let cands: [(u32, u32, [f64; 3]); 4] = std::array::from_fn(|k| (k as u32, k as u32, maps[k]));
            let center = super::box_center(&poly);
            let bb = poly.bbox();
            let half = [0.5 * (bb[1] - bb[0]), 0.5 * (bb[3] - bb[2])];
            let general = layer.classify_group(0, &cands, &poly, center, &noise, false);
            let shortcut = match crate::engine::kernels::box_winner4_of_maps(maps, noise, center, half) {
                Some(w) => {
                    by_box += 1;
                    (w as u32, None)
                }
                None => {
                    open += 1;
                    layer.classify_group(0, &cands, &poly, center, &noise, true)
                }
            };
            assert_eq!(shortcut.0, general.0, "{maps:?} over {:?}", poly.pts);
            assert_eq!(shortcut.1.map(|c| c.alive), general.1.map(|c| c.alive), "{maps:?}");
        }
        assert!(by_box > 1000 && open > 1000, "{by_box} decided by the box, {open} open");
    }
}
