//! Exact decision boundaries and level sets of a finished partition.
//!
//! Inside a region the outputs are affine, so the cells where each class wins are convex
//! polygons, computed by the same tournament as max-pool splits (`geometry::envelope`); the
//! boundary inside the region is made of the edges shared by two classes' cells. Segments from
//! all regions are stitched into polylines on a graph (petgraph) whose vertices are segment
//! endpoints welded by the tolerance rule. Everything is computed in the partition's frame
//! coordinates; lengths are in `(u, v)`. This module reads only the `Partition`: it knows nothing
//! of the network.

use crate::engine::collect::{Collect, Finished};
use crate::geometry::envelope::max_cells;
use crate::geometry::polygon::ConvexPolygon;
use crate::geometry::predicates::{noise_floor, sign, tolerance, Sign};
use crate::geometry::weld::Welder;
use crate::partition::{AffineMap, Partition};
use crate::slice::Normalization;
use petgraph::graph::{NodeIndex, UnGraph};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Which function of the outputs defines the classes.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Decision {
    /// The predicted class: the index of the largest output (ties to the lower index).
    Argmax,
    /// Two classes split by the level set `Σ weightsₖ·yₖ = threshold`: class 0 below (or on),
    /// class 1 above.
    Level {
        /// `(output index, weight)` pairs.
        weights: Vec<(usize, f64)>,
        /// The level.
        threshold: f64,
    },
}

/// Why a decision could not be set up.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum DecisionError {
    /// An output index is out of range.
    #[error("output {index} does not exist: the model has {outputs} outputs")]
    Output {
        /// The index given.
        index: usize,
        /// Number of outputs.
        outputs: usize,
    },
    /// A level specification could not be parsed.
    #[error("cannot parse level `{0}`: expected i=T or i,j=T (output i, or output i minus output j, at level T)")]
    Parse(String),
}

impl Decision {
    /// The default for a model with `outputs` outputs: argmax for two or more, the level set
    /// `y₀ = threshold` (default 0) for one.
    pub fn for_outputs(outputs: usize, threshold: Option<f64>) -> Self {
        if outputs == 1 || threshold.is_some() {
            Decision::Level { weights: vec![(0, 1.0)], threshold: threshold.unwrap_or(0.0) }
        } else {
            Decision::Argmax
        }
    }

    /// Parses `i=T` (output `i` at level `T`) or `i,j=T` (`yᵢ − yⱼ = T`).
    pub fn parse_level(text: &str, outputs: usize) -> Result<Self, DecisionError> {
        let bad = || DecisionError::Parse(text.to_string());
        let (lhs, t) = text.split_once('=').ok_or_else(bad)?;
        let threshold: f64 = t.trim().parse().map_err(|_| bad())?;
        if !threshold.is_finite() {
            return Err(bad());
        }
        let idx: Vec<usize> = lhs.split(',').map(|s| s.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
        if let Some(&index) = idx.iter().find(|&&i| i >= outputs) {
            return Err(DecisionError::Output { index, outputs });
        }
        let weights = match idx[..] {
            [i] => vec![(i, 1.0)],
            [i, j] if i != j => vec![(i, 1.0), (j, -1.0)],
            _ => return Err(bad()),
        };
        Ok(Decision::Level { weights, threshold })
    }

    /// Number of classes.
    pub fn classes(&self, outputs: usize) -> usize {
        match self {
            Decision::Argmax => outputs,
            Decision::Level { .. } => 2,
        }
    }

    /// One affine function `[∂/∂u, ∂/∂v, value at 0]` per class, whose argmax is the class.
    pub fn functions(&self, map: &AffineMap) -> Vec<[f64; 3]> {
        match self {
            Decision::Argmax => map.jacobian.iter().zip(&map.offset).map(|(j, o)| [j[0], j[1], *o]).collect(),
            Decision::Level { weights, threshold } => {
                let mut g = [0.0, 0.0, -threshold];
                for &(k, w) in weights {
                    g[0] += w * map.jacobian[k][0];
                    g[1] += w * map.jacobian[k][1];
                    g[2] += w * map.offset[k];
                }
                vec![[0.0; 3], g]
            }
        }
    }

    /// For each class function, its noise floor (`predicates::noise_floor`), given the magnitude
    /// of the terms behind each output (`Partition::output_scale`).
    pub fn noise(&self, output_scale: &[f64]) -> Vec<f64> {
        let m = |k: usize| output_scale.get(k).copied().unwrap_or(0.0);
        match self {
            Decision::Argmax => (0..output_scale.len()).map(|k| noise_floor(m(k))).collect(),
            Decision::Level { weights, threshold } => {
                let total = weights.iter().fold(threshold.abs(), |acc, &(k, w)| acc + w.abs() * m(k));
                vec![0.0, noise_floor(total)]
            }
        }
    }

    /// The decision function's value for class `class` at outputs `y` (for forward checks).
    pub fn score(&self, y: &[f64], class: usize) -> f64 {
        match self {
            Decision::Argmax => y[class],
            Decision::Level { weights, threshold } => {
                if class == 0 {
                    0.0
                } else {
                    weights.iter().map(|&(k, w)| w * y[k]).sum::<f64>() - threshold
                }
            }
        }
    }

    /// The class at outputs `y`.
    pub fn class_of(&self, y: &[f64]) -> usize {
        let k = self.classes(y.len());
        (0..k).fold(0, |best, c| if self.score(y, c) > self.score(y, best) { c } else { best })
    }
}

/// The class of a region: constant, or several when the boundary crosses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionClass {
    /// One class on the whole region.
    One(usize),
    /// The classes whose cells split the region, in increasing order.
    Several(Vec<usize>),
}

/// A straight piece of boundary inside one region.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Endpoints in frame coordinates.
    pub a: [f64; 2],
    /// Second endpoint.
    pub b: [f64; 2],
    /// The two classes it separates, lower first.
    pub classes: (usize, usize),
    /// The region it lies in.
    pub region: usize,
    /// Euclidean length in `(u, v)`.
    pub length: f64,
}

/// Euclidean length in `(u, v)` of the segment between two frame points.
fn uv_length(frame: &Normalization, a: [f64; 2], b: [f64; 2]) -> f64 {
    let d = frame.vec_to_uv([b[0] - a[0], b[1] - a[1]]);
    d[0].hypot(d[1])
}

/// A stitched piece of boundary between one pair of classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Polyline {
    /// Points in order, in frame coordinates; a closed polyline repeats its first point at the end.
    pub points: Vec<[f64; 2]>,
    /// The two classes it separates, lower first.
    pub classes: (usize, usize),
    /// Whether it closes on itself.
    pub closed: bool,
    /// Length in `(u, v)`.
    pub length: f64,
}

/// The decision boundary (or level set) of a partition.
#[derive(Clone, Debug, PartialEq)]
pub struct Boundary {
    /// Class of every region, in the partition's order.
    pub region_classes: Vec<RegionClass>,
    /// Every segment once, region by region.
    pub segments: Vec<Segment>,
    /// The decision the boundary is of.
    pub decision: Decision,
    /// Segments stitched into maximal polylines of one class pair.
    pub polylines: Vec<Polyline>,
    /// Total length.
    pub length: f64,
    /// Length per class pair.
    pub length_per_pair: BTreeMap<(usize, usize), f64>,
    /// Connected components of the boundary graph.
    pub components: usize,
    /// Components without an end (loops inside the domain).
    pub closed_components: usize,
    /// Components with an end (curves that end on the domain's edge).
    pub open_components: usize,
    /// Regions the boundary crosses.
    pub crossed_regions: usize,
    /// Pieces after splitting every region by the boundary.
    pub pieces: usize,
    /// For every region the boundary crosses: `(region, class, cell)` for each class's cell.
    pub split_cells: Vec<(usize, usize, ConvexPolygon)>,
}

/// Class cells of one region (frame coordinates), and the segments between them.
fn region_cells(
    poly: &ConvexPolygon,
    (fns, noise): (&[[f64; 3]], &[f64]),
    region: usize,
    frame: &Normalization,
) -> (Vec<(usize, ConvexPolygon)>, Vec<Segment>) {
    let diff = |c: usize, d: usize, p: [f64; 2]| {
        (fns[c][0] - fns[d][0]) * p[0] + (fns[c][1] - fns[d][1]) * p[1] + (fns[c][2] - fns[d][2])
    };
    // The noise floors of both functions: two outputs equal up to rounding compare as equal
    // instead of being split on rounding noise.
    let tol = |c: usize, d: usize| tolerance(fns[c][0] - fns[d][0], fns[c][1] - fns[d][1], noise[c] + noise[d]);
    let cells = max_cells(poly, fns.len(), diff, tol);
    let mut segments = Vec::new();
    if cells.len() > 1 {
        for (i, (c, cell)) in cells.iter().enumerate() {
            for (d, _) in &cells[i + 1..] {
                let n = cell.pts.len();
                let t = tol(*c, *d);
                for k in 0..n {
                    let (a, b) = (cell.pts[k], cell.pts[(k + 1) % n]);
                    if sign(diff(*c, *d, a), t) == Sign::Zero && sign(diff(*c, *d, b), t) == Sign::Zero {
                        segments.push(Segment { a, b, classes: (*c, *d), region, length: uv_length(frame, a, b) });
                    }
                }
            }
        }
    }
    (cells, segments)
}

/// The decision boundary inside one region.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionBoundary {
    /// The region's class or classes.
    pub class: RegionClass,
    /// When several classes share the region, each class's cell (frame coordinates).
    pub cells: Vec<(usize, ConvexPolygon)>,
    /// The boundary segments inside the region.
    pub segments: Vec<Segment>,
}

impl Decision {
    /// The boundary inside region `index` with polygon `poly` and output map `map` (both in frame
    /// coordinates); `noise`: the class functions' noise floors ([`Decision::noise`]).
    pub fn region_boundary(
        &self,
        poly: &ConvexPolygon,
        map: &AffineMap,
        noise: &[f64],
        frame: &Normalization,
        index: usize,
    ) -> RegionBoundary {
        let fns = self.functions(map);
        let (cells, segments) = region_cells(poly, (&fns, noise), index, frame);
        match cells.as_slice() {
            [(c, _)] => RegionBoundary { class: RegionClass::One(*c), cells: Vec::new(), segments },
            _ => {
                RegionBoundary { class: RegionClass::Several(cells.iter().map(|(c, _)| *c).collect()), cells, segments }
            }
        }
    }
}

/// Computes the decision boundary of `part` for `decision`.
pub fn decision_boundary(part: &Partition, decision: &Decision) -> Boundary {
    let noise = decision.noise(&part.output_scale);
    let per_region: Vec<RegionBoundary> = part
        .regions
        .par_iter()
        .enumerate()
        .map(|(i, r)| decision.region_boundary(&r.polygon, &r.map, &noise, &part.frame, i))
        .collect();
    let mut region_classes = Vec::with_capacity(per_region.len());
    let mut segments = Vec::new();
    let mut split_cells = Vec::new();
    let (mut crossed, mut pieces) = (0, 0);
    for (i, rb) in per_region.into_iter().enumerate() {
        crossed += usize::from(!rb.cells.is_empty());
        pieces += rb.cells.len().max(1);
        region_classes.push(rb.class);
        split_cells.extend(rb.cells.into_iter().map(|(c, poly)| (i, c, poly)));
        segments.extend(rb.segments);
    }
    let mut b = from_segments(decision, segments, &part.frame, crossed, pieces);
    b.region_classes = region_classes;
    b.split_cells = split_cells;
    b
}

/// The boundary made of `segments` (frame coordinates; each found in one region or in two
/// neighbours), stitched into polylines: `crossed` regions were crossed and split into `pieces`
/// class cells. Its `region_classes` and `split_cells` are empty. Used to join the boundaries of
/// tiles (see `tile`).
pub fn from_segments(
    decision: &Decision,
    segments: Vec<Segment>,
    frame: &Normalization,
    crossed: usize,
    pieces: usize,
) -> Boundary {
    let stitched = stitch(&segments, frame);
    // A boundary along a shared region edge is found from both regions: keep one copy, so that
    // lengths and uniform sampling count it once.
    let segments: Vec<Segment> = stitched.kept.iter().map(|&k| segments[k].clone()).collect();
    Boundary {
        decision: decision.clone(),
        region_classes: Vec::new(),
        length: stitched.length_per_pair.values().fold(0.0, |a, b| a + b),
        segments,
        polylines: stitched.polylines,
        length_per_pair: stitched.length_per_pair,
        components: stitched.components,
        closed_components: stitched.closed,
        open_components: stitched.components - stitched.closed,
        crossed_regions: crossed,
        pieces,
        split_cells: Vec::new(),
    }
}

/// The decision boundary computed region by region as the engine streams them: keeps only the
/// boundary's segments (memory grows with the boundary, not with the region count).
pub struct Segments {
    decision: Decision,
    noise: Vec<f64>,
    frame: Normalization,
    outputs: usize,
    segments: Vec<Segment>,
    regions: usize,
    crossed: usize,
    pieces: usize,
}

impl Segments {
    /// A collector of the boundary of `decision` (the run's frame and outputs are filled in when
    /// it starts).
    pub fn new(decision: Decision) -> Self {
        let frame = Normalization { center: [0.0; 2], half: [1.0; 2] };
        Segments {
            decision,
            noise: Vec::new(),
            frame,
            outputs: 0,
            segments: Vec::new(),
            regions: 0,
            crossed: 0,
            pieces: 0,
        }
    }

    /// The segments found so far (not stitched: a segment on an edge shared by two regions is
    /// there twice), the regions crossed and their class cells.
    pub fn finish_raw(self) -> (Vec<Segment>, usize, usize) {
        (self.segments, self.crossed, self.pieces)
    }

    /// The stitched boundary (its `region_classes` and `split_cells` are empty).
    pub fn finish(self) -> Boundary {
        from_segments(&self.decision, self.segments, &self.frame, self.crossed, self.pieces)
    }
}

/// The output map of a finished region (`3 × n` rows) as an [`AffineMap`].
pub fn finished_map(map: &[f64], outputs: usize) -> AffineMap {
    AffineMap {
        jacobian: (0..outputs).map(|k| [map[k], map[outputs + k]]).collect(),
        offset: map[2 * outputs..3 * outputs].to_vec(),
    }
}

impl Collect for Segments {
    fn begin(&mut self, start: &crate::engine::collect::Start<'_>) {
        self.frame = start.frame;
        self.outputs = start.outputs;
        self.noise = self.decision.noise(start.output_scale);
    }

    fn needs_maps(&self) -> bool {
        true
    }

    fn fork(&self) -> Self {
        self.clone_config()
    }

    fn absorb(&mut self, fork: Self) {
        // The fork's regions come after this collector's in the run's order.
        let offset = self.regions;
        self.segments.extend(fork.segments.into_iter().map(|s| Segment { region: s.region + offset, ..s }));
        self.regions += fork.regions;
        self.crossed += fork.crossed;
        self.pieces += fork.pieces;
    }

    fn add(&mut self, r: &Finished) -> u64 {
        let map = finished_map(&r.map, self.outputs);
        let rb = self.decision.region_boundary(&r.poly, &map, &self.noise, &self.frame, self.regions);
        self.regions += 1;
        self.crossed += usize::from(!rb.cells.is_empty());
        self.pieces += rb.cells.len().max(1);
        let bytes = (rb.segments.len() * std::mem::size_of::<Segment>()) as u64;
        self.segments.extend(rb.segments);
        bytes
    }
}

impl Segments {
    fn clone_config(&self) -> Self {
        Segments {
            decision: self.decision.clone(),
            noise: self.noise.clone(),
            frame: self.frame,
            outputs: self.outputs,
            segments: Vec::new(),
            regions: 0,
            crossed: 0,
            pieces: 0,
        }
    }
}

struct Stitched {
    /// Indices of the segments that made it into the graph (no duplicates, no points).
    kept: Vec<usize>,
    polylines: Vec<Polyline>,
    components: usize,
    closed: usize,
    length_per_pair: BTreeMap<(usize, usize), f64>,
}

fn stitch(segments: &[Segment], frame: &Normalization) -> Stitched {
    let mut welder = Welder::new();
    let mut graph: UnGraph<[f64; 2], (usize, usize)> = UnGraph::default();
    let mut nodes: Vec<Option<NodeIndex>> = Vec::new();
    let mut length_per_pair = BTreeMap::new();
    let mut kept = Vec::with_capacity(segments.len());
    for (k, s) in segments.iter().enumerate() {
        let (ia, ib) = (welder.id(s.a).0, welder.id(s.b).0);
        // A segment shorter than the tolerance is a point: it adds nothing.
        if ia == ib {
            continue;
        }
        nodes.resize(welder.len(), None);
        let mut node = |id: usize, p: [f64; 2]| *nodes[id].get_or_insert_with(|| graph.add_node(p));
        let (a, b) = (node(ia, s.a), node(ib, s.b));
        // A boundary along a shared region edge is found from both sides: keep it once.
        if !graph.edges_connecting(a, b).any(|e| *e.weight() == s.classes) {
            graph.add_edge(a, b, s.classes);
            *length_per_pair.entry(s.classes).or_insert(0.0) += s.length;
            kept.push(k);
        }
    }
    let components = petgraph::algo::connected_components(&graph);
    // A component is open when it has an end: a vertex of degree one (on the domain's edge).
    let mut uf = petgraph::unionfind::UnionFind::new(graph.node_count());
    for e in graph.edge_indices() {
        let (a, b) = graph.edge_endpoints(e).expect("edge exists");
        uf.union(a.index(), b.index());
    }
    let mut open_roots = std::collections::HashSet::new();
    for n in graph.node_indices() {
        if graph.edges(n).count() == 1 {
            open_roots.insert(uf.find(n.index()));
        }
    }
    let mut polylines = Vec::new();
    let mut used = vec![false; graph.edge_count()];
    let degree = |n: NodeIndex| graph.edges(n).count();
    let walk = |start: NodeIndex, first: petgraph::graph::EdgeIndex, used: &mut Vec<bool>| {
        let pair = graph[first];
        let mut points = vec![graph[start]];
        let (mut cur, mut edge) = (start, first);
        loop {
            used[edge.index()] = true;
            let (a, b) = graph.edge_endpoints(edge).expect("edge exists");
            let next = if a == cur { b } else { a };
            points.push(graph[next]);
            cur = next;
            if degree(cur) != 2 || cur == start {
                break;
            }
            match graph.edges(cur).find(|e| !used[e.id().index()] && *e.weight() == pair) {
                Some(e) => edge = e.id(),
                None => break,
            }
        }
        let closed = cur == start && points.len() > 2;
        let length = points.windows(2).map(|w| uv_length(frame, w[0], w[1])).sum();
        Polyline { points, classes: pair, closed, length }
    };
    use petgraph::visit::EdgeRef;
    for n in graph.node_indices() {
        if degree(n) != 2 {
            let edges: Vec<_> = graph.edges(n).map(|e| e.id()).collect();
            for e in edges {
                if !used[e.index()] {
                    polylines.push(walk(n, e, &mut used));
                }
            }
        }
    }
    for e in graph.edge_indices() {
        if !used[e.index()] {
            let (a, _) = graph.edge_endpoints(e).expect("edge exists");
            polylines.push(walk(a, e, &mut used));
        }
    }
    Stitched { kept, polylines, components, closed: components - open_roots.len(), length_per_pair }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_levels() {
        assert_eq!(
            Decision::parse_level("1,0=0.5", 2).unwrap(),
            Decision::Level { weights: vec![(1, 1.0), (0, -1.0)], threshold: 0.5 }
        );
        assert_eq!(
            Decision::parse_level("0=-1", 1).unwrap(),
            Decision::Level { weights: vec![(0, 1.0)], threshold: -1.0 }
        );
        assert!(Decision::parse_level("2=0", 2).is_err());
        assert!(Decision::parse_level("0,0=1", 2).is_err());
        assert!(Decision::parse_level("x", 2).is_err());
    }

    #[test]
    fn three_classes_meet_at_a_junction() {
        // y = (u, v, 0) on [-1, 1]²: three cells meeting at the origin.
        let map = AffineMap { jacobian: vec![[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], offset: vec![0.0; 3] };
        let fns = Decision::Argmax.functions(&map);
        let frame = Normalization { center: [0.0, 0.0], half: [1.0, 1.0] };
        let (cells, segs) = region_cells(&ConvexPolygon::rect(-1.0, 1.0, -1.0, 1.0), (&fns, &[0.0; 3]), 0, &frame);
        assert_eq!(cells.len(), 3);
        let total: f64 = segs.iter().map(|s| s.length).sum();
        // u = v for u, v > 0 (length √2), u = 0 for v < 0 (1), v = 0 for u < 0 (1).
        assert!((total - (2.0 + 2f64.sqrt())).abs() < 1e-12, "{total}");
        let stitched = stitch(&segs, &frame);
        assert_eq!(stitched.components, 1);
        assert_eq!(stitched.closed, 0);
        assert_eq!(stitched.polylines.len(), 3);
    }
}
