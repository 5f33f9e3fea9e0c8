//! The finished partition of a slice domain into linear regions, and its self-check.
//!
//! A `Partition` is plain data: it knows nothing about the network it came from. Its geometry is
//! kept in the *frame* coordinates the engine computed it in (normalised slice coordinates, where
//! the domain is `[-1, 1]²`: see `slice::Normalization`), so that edges, welding, boundaries and
//! checks behave the same wherever the domain sits; [`Partition::frame`] converts to the user's
//! `(u, v)`. [`Partition::sanity_check`] verifies its own invariants, and, given an oracle (a
//! forward pass), that every region's affine map is the network's function there.

use crate::geometry::polygon::ConvexPolygon;
use crate::geometry::predicates::{self, Sign};
pub use crate::pattern::LayerBits;
use crate::pattern::Pattern;
use crate::slice::{Domain, Normalization};
use rand::{Rng, SeedableRng};

/// An affine map from 2D coordinates to outputs: `y = jacobian·p + offset` (frame coordinates in a
/// [`Region`]; `(u, v)` from [`Partition::map_uv`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AffineMap {
    /// `[∂y_k/∂u, ∂y_k/∂v]` for every output `k`.
    pub jacobian: Vec<[f64; 2]>,
    /// `y_k` at `(u, v) = (0, 0)`.
    pub offset: Vec<f64>,
}

impl AffineMap {
    /// Evaluates the map at `p`.
    pub fn eval(&self, p: [f64; 2]) -> Vec<f64> {
        self.jacobian.iter().zip(&self.offset).map(|(j, o)| j[0] * p[0] + j[1] * p[1] + o).collect()
    }
}

/// One linear region.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    /// The region, a convex polygon with counter-clockwise vertices in frame coordinates (see
    /// [`Partition::polygon_uv`] for `(u, v)`).
    pub polygon: ConvexPolygon,
    /// Area in `(u, v)` units.
    pub area: f64,
    /// Activation pattern of every nonlinear unit (unique to the region).
    pub pattern: Pattern,
    /// The network's output as an affine function of frame coordinates on the region (see
    /// [`Partition::map_uv`] for `(u, v)`).
    pub map: AffineMap,
}

/// Region count after one nonlinear layer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerCount {
    /// Index of the layer in the model.
    pub layer: usize,
    /// Its op name.
    pub op: String,
    /// Regions of the partition by all layers up to and including this one.
    pub regions: u64,
}

/// Counts that every run produces, whether or not it keeps the regions.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Number of linear regions.
    pub regions: u64,
    /// Area of the domain.
    pub domain_area: f64,
    /// Sum of the regions' areas (equals `domain_area` up to rounding).
    pub area_sum: f64,
    /// Distinct vertices of the partition (by Euler's formula from the regions' sides: see
    /// `engine::collect::Tally::vertices`).
    pub vertices: Option<u64>,
    /// Regions after each nonlinear layer.
    pub regions_per_layer: Vec<LayerCount>,
    /// Pieces discarded for having no positive area (the tolerance rule guarantees 0).
    pub dropped_slivers: u64,
    /// Regions by area, in log-spaced bins (non-empty bins only, largest areas first).
    pub area_histogram: Vec<AreaBin>,
    /// Smallest and largest region area.
    pub min_area: f64,
    pub max_area: f64,
}

/// One bin of the area histogram: regions with `min ≤ area < max` (`(u, v)` units).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AreaBin {
    /// Lower bound.
    pub min: f64,
    /// Upper bound.
    pub max: f64,
    /// Regions in the bin.
    pub regions: u64,
}

/// The partition of a domain into linear regions.
#[derive(Clone, Debug)]
pub struct Partition {
    /// The domain that was partitioned, in `(u, v)`.
    pub domain: Domain,
    /// The frame: frame coordinates `[-1, 1]²` ↔ the domain in `(u, v)`.
    pub frame: Normalization,
    /// Regions in a deterministic order.
    pub regions: Vec<Region>,
    /// Counts.
    pub summary: Summary,
    /// Bits of each nonlinear layer in the patterns, in layer order.
    pub layout: Vec<LayerBits>,
    /// Per output, a bound over the domain of the magnitudes of all the terms a forward pass
    /// adds up to compute it: the scale of its f64 rounding (see [`Partition::map_error`]).
    pub output_scale: Vec<f64>,
}

/// Result of [`Partition::sanity_check`].
#[derive(Clone, Debug, Default)]
pub struct SanityReport {
    /// Every violated invariant, described.
    pub violations: Vec<String>,
    /// Largest relative difference between a region's map and the oracle at checked points.
    pub max_map_error: f64,
    /// Points checked against the oracle.
    pub map_points: usize,
}

impl SanityReport {
    /// True when no invariant is violated.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Relative tolerance for comparing a region's map with a forward pass.
pub const MAP_TOL: f64 = 1e-9;

/// Largest difference of two output vectors divided by the larger of 1 and their largest
/// magnitude: relative for large outputs, absolute for outputs below 1.
pub fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    let scale = a.iter().chain(b).fold(1e-300f64, |m, x| m.max(x.abs())).max(1.0);
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Uniform grid over the frame's `[-1, 1]²` listing the regions whose bounding box meets each
/// cell.
struct Locator {
    n: usize,
    cells: Vec<Vec<u32>>,
}

impl Locator {
    fn new(regions: &[Region]) -> Self {
        let n = ((regions.len() as f64).sqrt().ceil() as usize).clamp(1, 2048);
        let mut cells = vec![Vec::new(); n * n];
        for (i, r) in regions.iter().enumerate() {
            let b = r.polygon.bbox();
            let (i0, i1) = (Self::cell(b[0], n), Self::cell(b[1], n));
            let (j0, j1) = (Self::cell(b[2], n), Self::cell(b[3], n));
            for j in j0..=j1 {
                for ii in i0..=i1 {
                    cells[j * n + ii].push(i as u32);
                }
            }
        }
        Locator { n, cells }
    }

    fn cell(x: f64, n: usize) -> usize {
        (((x + 1.0) * 0.5 * n as f64).floor().max(0.0) as usize).min(n - 1)
    }

    fn candidates(&self, p: [f64; 2]) -> &[u32] {
        &self.cells[Self::cell(p[1], self.n) * self.n + Self::cell(p[0], self.n)]
    }
}

/// An edge of the partition: a side of one region, shared with a neighbour or on the domain's
/// boundary.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// Endpoints in frame coordinates.
    pub a: [f64; 2],
    /// Second endpoint.
    pub b: [f64; 2],
    /// The region on its left (the polygon it was taken from).
    pub left: usize,
    /// The region on its right, when a neighbour shares exactly this side.
    pub right: Option<usize>,
}

impl Partition {
    /// Difference between a region map's value `a` and a forward pass `b` at the same point,
    /// relative to the larger of the values and the magnitude of the terms behind each output
    /// (`output_scale`): both computations round at that scale, so a correct map differs from
    /// the forward pass by a few ulps of it.
    pub fn map_error(&self, a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .enumerate()
            .map(|(k, (x, y))| {
                let scale = x.abs().max(y.abs()).max(self.output_scale.get(k).copied().unwrap_or(0.0)).max(1e-300);
                (x - y).abs() / scale
            })
            .fold(0.0, f64::max)
    }

    /// Every side of every region once: sides shared by two regions (matched by welded
    /// endpoints) appear once with both regions. A side that a neighbour splits at a vertex of
    /// its own (a T-junction, only in degenerate configurations) appears from each side.
    pub fn edges(&self) -> Vec<Edge> {
        let mut welder = crate::geometry::weld::Welder::new();
        let ids: Vec<Vec<usize>> =
            self.regions.iter().map(|r| r.polygon.pts.iter().map(|&p| welder.id(p).0).collect()).collect();
        let mut seen: rustc_hash::FxHashMap<(usize, usize), usize> = Default::default();
        let mut edges: Vec<Edge> = Vec::new();
        for (i, r) in self.regions.iter().enumerate() {
            let n = r.polygon.pts.len();
            for k in 0..n {
                let (p, q) = (ids[i][k], ids[i][(k + 1) % n]);
                if p == q {
                    continue;
                }
                let key = (p.min(q), p.max(q));
                match seen.get(&key) {
                    Some(&e) if edges[e].right.is_none() && edges[e].left != i => edges[e].right = Some(i),
                    _ => {
                        seen.insert(key, edges.len());
                        edges.push(Edge { a: r.polygon.pts[k], b: r.polygon.pts[(k + 1) % n], left: i, right: None });
                    }
                }
            }
        }
        edges
    }

    /// The nonlinear layer whose units first differ between two patterns: the layer whose
    /// breakpoint line separates two adjacent regions. `None` for equal patterns.
    pub fn separating_layer(&self, a: &Pattern, b: &Pattern) -> Option<&LayerBits> {
        let bit = a.first_difference(b)?;
        self.layout.iter().find(|l| bit >= l.offset && bit < l.offset + l.bits)
    }

    /// The region containing the `(u, v)` point `p` strictly inside (farther than the tolerance
    /// rule's distance from its edges), if any.
    pub fn locate(&self, p: [f64; 2]) -> Option<usize> {
        let q = self.frame.from_uv(p);
        let loc = Locator::new(&self.regions);
        loc.candidates(q).iter().map(|&i| i as usize).find(|&i| self.regions[i].polygon.locate(q) == Sign::Pos)
    }

    /// Region `i`'s polygon in `(u, v)`.
    pub fn polygon_uv(&self, i: usize) -> Vec<[f64; 2]> {
        self.regions[i].polygon.pts.iter().map(|&p| self.frame.to_uv(p)).collect()
    }

    /// Region `i`'s map as a function of `(u, v)`.
    pub fn map_uv(&self, i: usize) -> AffineMap {
        self.frame.map_to_uv(&self.regions[i].map)
    }

    /// The outputs at the `(u, v)` point `p` by region `i`'s map.
    pub fn eval_uv(&self, i: usize, p: [f64; 2]) -> Vec<f64> {
        self.regions[i].map.eval(self.frame.from_uv(p))
    }

    /// Checks the partition's invariants (in frame coordinates, with the tolerance rule of
    /// `geometry::predicates`):
    /// * every region is a convex counter-clockwise polygon of positive area inside the domain;
    /// * the areas sum to the domain's area (relative error ≤ 1e-9);
    /// * regions do not overlap and cover the domain: `samples` seeded random points and every
    ///   region's centroid lie inside exactly one region (points on an edge are skipped), and
    ///   each centroid in its own region;
    /// * activation patterns are pairwise distinct (so neighbours differ: a region with a given
    ///   pattern is convex, and two pieces of it would be an unnecessary split);
    /// * the maps of two regions sharing an edge agree at its endpoints (the network is
    ///   continuous), within [`MAP_TOL`];
    /// * with an `oracle` (a forward pass taking `(u, v)`), every region's map equals the oracle
    ///   at its centroid and at the sampled points, within [`MAP_TOL`] (see [`Partition::map_error`]).
    pub fn sanity_check(
        &self,
        samples: usize,
        seed: u64,
        oracle: Option<&(dyn Fn([f64; 2]) -> Vec<f64> + Sync)>,
    ) -> SanityReport {
        let mut report = SanityReport::default();
        let d = self.domain;
        let inside_domain = |x: f64| (-1.0 - predicates::DIST..=1.0 + predicates::DIST).contains(&x);
        let mut frame_area = 0.0;
        for (i, r) in self.regions.iter().enumerate() {
            if !r.polygon.is_convex_ccw() {
                report.violations.push(format!("region {i}: not a convex counter-clockwise polygon"));
            }
            if !r.polygon.pts.iter().all(|p| inside_domain(p[0]) && inside_domain(p[1])) {
                report.violations.push(format!("region {i}: leaves the domain"));
            }
            if r.area.is_nan() || r.area <= 0.0 {
                report.violations.push(format!("region {i}: area {} is not positive", r.area));
            }
            frame_area += r.polygon.area();
        }
        let rel = (frame_area - 4.0).abs() / 4.0;
        if rel > 1e-9 {
            let area_sum: f64 = self.regions.iter().map(|r| r.area).sum();
            report
                .violations
                .push(format!("areas sum to {area_sum}, domain area is {} (relative error {rel:.3e})", d.area()));
        }
        let mut seen = std::collections::HashMap::with_capacity(self.regions.len());
        for (i, r) in self.regions.iter().enumerate() {
            if let Some(j) = seen.insert(&r.pattern, i) {
                report.violations.push(format!("regions {j} and {i} have the same activation pattern"));
            }
        }
        for e in self.edges() {
            let Some(j) = e.right else { continue };
            let (ri, rj) = (&self.regions[e.left], &self.regions[j]);
            let err = self
                .map_error(&ri.map.eval(e.a), &rj.map.eval(e.a))
                .max(self.map_error(&ri.map.eval(e.b), &rj.map.eval(e.b)));
            if err > MAP_TOL {
                report.violations.push(format!(
                    "regions {} and {j}: maps differ by {err:.3e} on their shared edge {:?}–{:?}",
                    e.left,
                    self.frame.to_uv(e.a),
                    self.frame.to_uv(e.b)
                ));
            }
        }
        let loc = Locator::new(&self.regions);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut points: Vec<[f64; 2]> =
            (0..samples).map(|_| [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)]).collect();
        let centroids = points.len();
        points.extend(self.regions.iter().map(|r| r.polygon.centroid()));
        for (k, &p) in points.iter().enumerate() {
            let mut inside = Vec::new();
            let mut near = false;
            for &i in loc.candidates(p) {
                match self.regions[i as usize].polygon.locate(p) {
                    Sign::Pos => inside.push(i as usize),
                    Sign::Zero => near = true,
                    Sign::Neg => {}
                }
            }
            let uv = self.frame.to_uv(p);
            if inside.len() > 1 {
                report.violations.push(format!("point {uv:?} lies inside regions {inside:?}"));
            } else if inside.is_empty() && !near {
                report.violations.push(format!("point {uv:?} lies in no region"));
            }
            if let ([i], true) = (inside.as_slice(), k >= centroids) {
                if k - centroids != *i {
                    report.violations.push(format!("centroid of region {} located in region {i}", k - centroids));
                }
            }
            if let (Some(f), [i]) = (oracle, inside.as_slice()) {
                // The oracle sees `uv` rounded to f64: compare at the frame point it stands for.
                let err = self.map_error(&self.regions[*i].map.eval(self.frame.from_uv(uv)), &f(uv));
                report.map_points += 1;
                report.max_map_error = report.max_map_error.max(err);
                if err > MAP_TOL {
                    report
                        .violations
                        .push(format!("region {i}: map differs from the forward pass at {uv:?} by {err:.3e}"));
                }
            }
            if report.violations.len() > 50 {
                report.violations.push("... stopping after 50 violations".into());
                break;
            }
        }
        report
    }
}

/// Number of distinct points in `pts` (frame coordinates), welding points that the tolerance rule
/// calls the same (`predicates::same_point`).
///
/// Points are bucketed on a grid of cells much larger than the tolerance and sorted in
/// parallel; a point counts when no earlier point (in sorted order) of its own cell, or of a
/// preceding neighbour cell it lies within tolerance of, is the same point.
pub fn distinct_vertices(pts: Vec<[f64; 2]>) -> u64 {
    use crate::geometry::predicates::{same_point, DIST, WELD_CELL};
    use rayon::prelude::*;
    if pts.is_empty() {
        return 0;
    }
    let tol = DIST;
    let cell = WELD_CELL;
    let (mut x0, mut y0) = (f64::INFINITY, f64::INFINITY);
    for p in &pts {
        x0 = x0.min(p[0]);
        y0 = y0.min(p[1]);
    }
    let (x0, y0) = (x0 - 2.0 * cell, y0 - 2.0 * cell);
    let coord = |p: [f64; 2]| (((p[0] - x0) / cell) as u64, ((p[1] - y0) / cell) as u64);
    let key = |p: [f64; 2]| {
        let (i, j) = coord(p);
        (i << 32) | (j & 0xffff_ffff)
    };
    let mut keyed: Vec<(u64, [f64; 2])> = pts.par_iter().map(|&p| (key(p), p)).collect();
    keyed.par_sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1[0].total_cmp(&b.1[0])).then(a.1[1].total_cmp(&b.1[1])));
    let (keys, pts): (Vec<u64>, Vec<[f64; 2]>) = keyed.into_iter().unzip();
    let range_of = |k: u64| {
        let start = keys.partition_point(|&x| x < k);
        let end = keys.partition_point(|&x| x <= k);
        start..end
    };
    (0..pts.len())
        .into_par_iter()
        .filter(|&i| {
            let p = pts[i];
            let k = keys[i];
            let mut j = i;
            while j > 0 && keys[j - 1] == k {
                j -= 1;
                if same_point(p, pts[j]) {
                    return false;
                }
            }
            // Copies of a vertex may straddle a cell border; look across borders within reach.
            let (ci, cj) = coord(p);
            let fx = (p[0] - x0) / cell - ci as f64;
            let fy = (p[1] - y0) / cell - cj as f64;
            let near_x = fx * cell <= 2.0 * tol;
            let near_y = fy * cell <= 2.0 * tol;
            let far_y = (1.0 - fy) * cell <= 2.0 * tol;
            let mut neighbours = Vec::new();
            if near_x {
                neighbours.push((ci - 1, cj));
                if near_y {
                    neighbours.push((ci - 1, cj - 1));
                }
                if far_y {
                    neighbours.push((ci - 1, cj + 1));
                }
            }
            if near_y {
                neighbours.push((ci, cj - 1));
            }
            !neighbours.into_iter().any(|(a, b)| range_of((a << 32) | b).any(|q| same_point(p, pts[q])))
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welds_copies_and_keeps_distinct_points() {
        let pts = [[0.0, 0.0], [1e-13, -1e-13], [0.5, 0.5], [0.5, 0.5 + 1e-14], [0.5, 0.5 + 1e-6], [-1.0, 1.0]];
        assert_eq!(distinct_vertices(pts.to_vec()), 4);
        // Copies straddling a grid cell border still weld, wherever the border falls.
        for shift in 0..200 {
            let x = 0.123 + shift as f64 * 1e-11;
            let pts = vec![[x, 0.5], [x + 1.5e-11, 0.5 - 1e-11], [x + 0.7e-11, 0.5 + 1e-11], [0.9, 0.9]];
            assert_eq!(distinct_vertices(pts), 2, "shift {shift}");
        }
    }
}
