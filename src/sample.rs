//! Points from a finished partition: uniform on the decision boundary, one well inside each
//! region, and pairs straddling the boundary. Reads only the `Partition` and `Boundary`.

use crate::boundary::{Boundary, Decision};
use crate::geometry::polygon::ConvexPolygon;
use crate::partition::Partition;
use rand::{Rng, SeedableRng};

/// A point on the decision boundary.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundaryPoint {
    /// Position in `(u, v)`.
    pub uv: [f64; 2],
    /// The two classes that tie there, lower first.
    pub classes: (usize, usize),
    /// Unit normal in `(u, v)` pointing to the side of `classes.1`.
    pub normal: [f64; 2],
    /// The region it lies in.
    pub region: usize,
}

/// `n` points uniform in arc length on the boundary (independent uniform positions, seeded),
/// in order along the segments. Empty when the boundary is empty.
pub fn boundary_points(
    part: &Partition,
    boundary: &Boundary,
    decision: &Decision,
    n: usize,
    seed: u64,
) -> Vec<BoundaryPoint> {
    let segs = &boundary.segments;
    if segs.is_empty() || !(boundary.length > 0.0 && boundary.length.is_finite()) {
        return Vec::new();
    }
    let mut cumulative = Vec::with_capacity(segs.len());
    let mut acc = 0.0f64;
    for s in segs {
        acc += s.length;
        cumulative.push(acc);
    }
    if !(acc > 0.0 && acc.is_finite()) {
        return Vec::new();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut positions: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..acc)).collect();
    positions.sort_by(f64::total_cmp);
    positions
        .into_iter()
        .map(|t| {
            let i = cumulative.partition_point(|&c| c < t).min(segs.len() - 1);
            let s = &segs[i];
            let start = if i == 0 { 0.0 } else { cumulative[i - 1] };
            let f = ((t - start) / s.length.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0);
            let p = [s.a[0] + f * (s.b[0] - s.a[0]), s.a[1] + f * (s.b[1] - s.a[1])];
            let uv = part.frame.to_uv(p);
            let fns = decision.functions(&part.regions[s.region].map);
            let (c0, c1) = s.classes;
            let g = part.frame.grad_to_uv([fns[c1][0] - fns[c0][0], fns[c1][1] - fns[c0][1]]);
            let norm = g[0].hypot(g[1]).max(f64::MIN_POSITIVE);
            BoundaryPoint { uv, classes: s.classes, normal: [g[0] / norm, g[1] / norm], region: s.region }
        })
        .collect()
}

/// The centre and radius of the largest disc inside a convex polygon (its Chebyshev centre).
///
/// Solved exactly rather than with an LP solver: the problem `max r` subject to
/// `nᵢ·p + r ≤ cᵢ` for every edge has three unknowns, so its optimum is at a vertex where
/// three constraints are tight. The polygons here have a handful of edges, so enumerating the
/// triples is both fast and free of solver tolerances.
pub fn chebyshev_center(poly: &ConvexPolygon) -> ([f64; 2], f64) {
    // Work relative to the first vertex, with a tolerance relative to the polygon's size, so
    // that tiny polygons far from the origin are handled like any other.
    let Some(&o) = poly.pts.first() else {
        return ([0.0, 0.0], 0.0);
    };
    let local = ConvexPolygon { pts: poly.pts.iter().map(|p| [p[0] - o[0], p[1] - o[1]]).collect() };
    let (c, r) = chebyshev_local(&local);
    ([c[0] + o[0], c[1] + o[1]], r)
}

fn chebyshev_local(poly: &ConvexPolygon) -> ([f64; 2], f64) {
    let n = poly.pts.len();
    // Edge constraints n·p ≤ c with unit outward normals (counter-clockwise polygon).
    let cons: Vec<([f64; 2], f64)> = (0..n)
        .filter_map(|i| {
            let (a, b) = (poly.pts[i], poly.pts[(i + 1) % n]);
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let len = dx.hypot(dy);
            (len > 0.0).then(|| {
                let nrm = [dy / len, -dx / len];
                (nrm, nrm[0] * a[0] + nrm[1] * a[1])
            })
        })
        .collect();
    let mut best = (poly.centroid(), 0.0);
    let b = poly.bbox();
    let slack = 1e-12 * (b[1] - b[0]).max(b[3] - b[2]);
    for i in 0..cons.len() {
        for j in i + 1..cons.len() {
            for k in j + 1..cons.len() {
                let rows = [cons[i], cons[j], cons[k]];
                // Solve [n_x n_y 1]·(x, y, r) = c for the three rows (Cramer's rule).
                let m = |r: usize, col: usize| match col {
                    0 => rows[r].0[0],
                    1 => rows[r].0[1],
                    _ => 1.0,
                };
                let det3 = |c0: [f64; 3], c1: [f64; 3], c2: [f64; 3]| {
                    c0[0] * (c1[1] * c2[2] - c1[2] * c2[1]) - c1[0] * (c0[1] * c2[2] - c0[2] * c2[1])
                        + c2[0] * (c0[1] * c1[2] - c0[2] * c1[1])
                };
                let col = |c: usize| [m(0, c), m(1, c), m(2, c)];
                let rhs = [rows[0].1, rows[1].1, rows[2].1];
                let d = det3(col(0), col(1), col(2));
                if d.abs() < 1e-12 {
                    continue; // two parallel edges: no unique vertex
                }
                let x = det3(rhs, col(1), col(2)) / d;
                let y = det3(col(0), rhs, col(2)) / d;
                let r = det3(col(0), col(1), rhs) / d;
                if r > best.1 && cons.iter().all(|(nrm, c)| nrm[0] * x + nrm[1] * y + r <= c + slack) {
                    best = ([x, y], r);
                }
            }
        }
    }
    best
}

/// One well-inside point per region for up to `n` regions (all when `n` is at least the count;
/// otherwise a seeded random subset, in region order): `(region, centre, radius)` in `(u, v)`.
pub fn region_points(part: &Partition, n: usize, seed: u64) -> Vec<(usize, [f64; 2], f64)> {
    let count = part.regions.len();
    let chosen: Vec<usize> = if n >= count {
        (0..count).collect()
    } else {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut idx = rand::seq::index::sample(&mut rng, count, n).into_vec();
        idx.sort_unstable();
        idx
    };
    chosen
        .into_iter()
        .map(|i| {
            // In `(u, v)` lengths, relative to the domain's centre: Euclidean radii, and no
            // precision lost to a domain far from the origin.
            let f = &part.frame;
            let pts = part.regions[i].polygon.pts.iter().map(|&p| f.vec_to_uv(p)).collect();
            let (c, r) = chebyshev_center(&ConvexPolygon { pts });
            (i, [c[0] + f.center[0], c[1] + f.center[1]], r)
        })
        .collect()
}

/// The forward-pass check of a boundary point: with outputs `y` there, the two classes must be
/// the top two and their scores equal within `tol` relative to the output scale. Returns the
/// relative gap, or `None` when another class is above both.
pub fn boundary_gap(decision: &Decision, y: &[f64], classes: (usize, usize), tol: f64) -> Option<f64> {
    let scale = y.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let (s0, s1) = (decision.score(y, classes.0), decision.score(y, classes.1));
    let top = s0.max(s1);
    let k = decision.classes(y.len());
    let beaten = (0..k).any(|c| c != classes.0 && c != classes.1 && decision.score(y, c) > top + tol * scale);
    (!beaten).then(|| (s0 - s1).abs() / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chebyshev_centre_of_simple_shapes() {
        let (c, r) = chebyshev_center(&ConvexPolygon::rect(0.0, 4.0, 0.0, 2.0));
        assert!((r - 1.0).abs() < 1e-12 && (c[1] - 1.0).abs() < 1e-12 && c[0] > 1.0 - 1e-12 && c[0] < 3.0 + 1e-12);
        // Right triangle with legs 3 and 4: inradius (3 + 4 - 5) / 2 = 1, centre (1, 1).
        let tri = ConvexPolygon { pts: vec![[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]] };
        let (c, r) = chebyshev_center(&tri);
        assert!((r - 1.0).abs() < 1e-12 && (c[0] - 1.0).abs() < 1e-12 && (c[1] - 1.0).abs() < 1e-12);
    }
}
