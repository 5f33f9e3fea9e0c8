//! Linear pieces of the network's function on the slice: maximal unions of activation regions,
//! connected through shared edges, on which the output is one affine map. Two regions can have
//! the same map although their patterns differ (a unit whose outgoing weights are zero, two
//! duplicated units, a unit that only matters elsewhere), so pieces can be fewer than regions,
//! and a piece can be non-convex.

use crate::partition::{Partition, MAP_TOL};
use geo::{Area, Coord, LineString, MultiPolygon, Polygon};
use petgraph::unionfind::UnionFind;

/// One linear piece.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearPiece {
    /// Its regions (indices into the partition), in increasing order.
    pub regions: Vec<usize>,
    /// Sum of the regions' areas, in `(u, v)` units.
    pub area: f64,
    /// The union of its regions in `(u, v)`: one polygon for a connected piece, possibly with
    /// holes (a piece surrounding another).
    pub shape: MultiPolygon<f64>,
}

/// The partition's regions grouped into linear pieces.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearPieces {
    /// For every region, the index of its piece.
    pub piece_of: Vec<usize>,
    /// The pieces, ordered by their first region.
    pub pieces: Vec<LinearPiece>,
}

/// Whether regions `a` and `b` of `part` have the same affine map: the maps agree at three
/// corners of the domain within [`MAP_TOL`] (the tolerance of `Partition::map_error`, relative
/// to the magnitude of each output's terms).
pub fn same_map(part: &Partition, a: usize, b: usize) -> bool {
    let (ma, mb) = (&part.regions[a].map, &part.regions[b].map);
    [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]].iter().all(|&p| part.map_error(&ma.eval(p), &mb.eval(p)) <= MAP_TOL)
}

/// Groups `part`'s regions into linear pieces: neighbours across a shared edge with the same
/// map ([`same_map`]) join, transitively. Shapes are unions by `geo`'s boolean operations, of
/// the regions' polygons with their vertex copies welded first (so shared edges coincide).
pub fn linear_pieces(part: &Partition) -> LinearPieces {
    let n = part.regions.len();
    let mut uf = UnionFind::<usize>::new(n);
    for e in part.edges() {
        if let Some(r) = e.right {
            if same_map(part, e.left, r) {
                uf.union(e.left, r);
            }
        }
    }
    let mut index_of_root = vec![usize::MAX; n];
    let mut piece_of = vec![0; n];
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, slot) in piece_of.iter_mut().enumerate() {
        let root = uf.find(i);
        if index_of_root[root] == usize::MAX {
            index_of_root[root] = members.len();
            members.push(Vec::new());
        }
        *slot = index_of_root[root];
        members[*slot].push(i);
    }
    // Welded coordinates: every copy of a vertex becomes its first copy's position.
    let mut welder = crate::geometry::weld::Welder::new();
    let mut canonical: Vec<[f64; 2]> = Vec::new();
    let mut polygon_uv = |i: usize| -> Polygon<f64> {
        let mut ring: Vec<Coord<f64>> = Vec::new();
        for &p in &part.regions[i].polygon.pts {
            let (id, new) = welder.id(p);
            if new {
                canonical.push(p);
            }
            let q = part.frame.to_uv(canonical[id]);
            ring.push(Coord { x: q[0], y: q[1] });
        }
        Polygon::new(LineString::new(ring), vec![])
    };
    let pieces = members
        .into_iter()
        .map(|regions| {
            let polys: Vec<Polygon<f64>> = regions.iter().map(|&i| polygon_uv(i)).collect();
            let shape = match polys.len() {
                1 => MultiPolygon::new(polys),
                _ => geo::unary_union(&polys),
            };
            let area = regions.iter().map(|&i| part.regions[i].area).sum();
            LinearPiece { regions, area, shape }
        })
        .collect();
    LinearPieces { piece_of, pieces }
}

impl LinearPiece {
    /// Area of the union shape (equals [`LinearPiece::area`] up to rounding when the union is
    /// right).
    pub fn shape_area(&self) -> f64 {
        self.shape.unsigned_area()
    }
}

/// A copy of `part` in which every region carries the pattern of its piece's first region, so
/// that pictures colour pieces (pattern colours) and draw no edge inside a piece (the SVG draws
/// edges only between different patterns). For pictures only: patterns are no longer unique.
pub fn colour_by_piece(part: &Partition, pieces: &LinearPieces) -> Partition {
    let mut out = part.clone();
    for (r, &p) in out.regions.iter_mut().zip(&pieces.piece_of) {
        r.pattern = part.regions[pieces.pieces[p].regions[0]].pattern.clone();
    }
    out
}
