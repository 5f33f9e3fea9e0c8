//! The decision surface (or a level set) of a 3D partition as an exact triangle mesh.
//!
//! Inside a region the class scores are affine, so the surface there is a convex polygon: the
//! region cut by the plane where two scores tie (clipped, for three classes or more, to where
//! those two beat every other). The polygons of all regions are welded at shared points
//! (`predicates::same_point` in 3D) and then made conforming: where a neighbour's polygon has a
//! vertex inside a shared edge, the edge gets that vertex (a T-junction would otherwise leave a
//! crack). With a continuous network the splits agree across facets, so this arises only where
//! the tolerance rule decided a unit's crossing differently on the two sides.
//! Each polygon is fanned into triangles around its
//! centroid and oriented with its normal towards the higher class (for a level set: towards
//! values above the level). The mesh is *watertight* when every edge not on the box's surface
//! belongs to exactly two triangles, in opposite directions.

use super::polytope::{cross, dot, mean, order_around, signs, sub, Gradient, Poly};
use super::Slice3;
use crate::boundary::Decision;
use crate::geometry::predicates::{Sign, DIST, WELD_CELL};
use rustc_hash::FxHashMap;
use std::io::Write;

/// A polygon of the surface inside one region (normalised coordinates), counter-clockwise
/// around its normal, which points from class `classes.0` to class `classes.1`.
#[derive(Clone, Debug)]
pub(crate) struct Patch {
    pub pts: Vec<[f64; 3]>,
    pub classes: (u16, u16),
}

/// The polygons of the decision surface inside region `poly`, from the outputs `ys` at its
/// vertices.
pub(crate) fn sections(poly: &Poly, ys: &[&[f64]], decision: &Decision, classes: usize, out: &mut Vec<Patch>) {
    let scores: Vec<Vec<f64>> = ys.iter().map(|y| (0..classes).map(|c| decision.score(y, c)).collect()).collect();
    let level = match decision {
        Decision::Level { threshold, .. } => threshold.abs(),
        Decision::Argmax => 0.0,
    };
    let Some(grad) = Gradient::of(&poly.pts) else { return };
    // Every edge of the polytope once.
    let mut edges: Vec<(u32, u32)> = Vec::new();
    for (cyc, _) in &poly.faces {
        for k in 0..cyc.len() {
            let (a, b) = (cyc[k], cyc[(k + 1) % cyc.len()]);
            edges.push((a.min(b), a.max(b)));
        }
    }
    edges.sort_unstable();
    edges.dedup();
    let magnitude = |v: &[f64], i: usize, j: usize| v[i].abs() + v[j].abs() + level;
    for i in 0..classes {
        for j in i + 1..classes {
            let s: Vec<f64> = scores.iter().map(|v| v[j] - v[i]).collect();
            let g = grad.apply(|k| s[k]);
            let m = scores.iter().fold(0.0f64, |m, v| m.max(magnitude(v, i, j)));
            let (sg, neg, pos) = signs(&s, g, m);
            if !(neg && pos) {
                continue;
            }
            // The section: vertices on the plane and edge crossings, with their scores.
            let mut pts: Vec<[f64; 3]> = Vec::new();
            let mut vals: Vec<Vec<f64>> = Vec::new();
            for (k, &x) in sg.iter().enumerate() {
                if x == Sign::Zero {
                    pts.push(poly.pts[k]);
                    vals.push(scores[k].clone());
                }
            }
            for &(a, b) in &edges {
                let (a, b) = (a as usize, b as usize);
                if matches!((sg[a], sg[b]), (Sign::Neg, Sign::Pos) | (Sign::Pos, Sign::Neg)) {
                    let t = s[a] / (s[a] - s[b]);
                    pts.push(super::polytope::lerp3(poly.pts[a], poly.pts[b], t));
                    vals.push(scores[a].iter().zip(&scores[b]).map(|(p, q)| p + t * (q - p)).collect());
                }
            }
            if pts.len() < 3 {
                continue;
            }
            let order = order_around(&pts, g);
            let mut pts: Vec<[f64; 3]> = order.iter().map(|&k| pts[k]).collect();
            let mut vals: Vec<Vec<f64>> = order.iter().map(|&k| vals[k].clone()).collect();
            // Where another class beats both, the surface is not between i and j.
            for other in (0..classes).filter(|&c| c != i && c != j) {
                let d: Vec<f64> = scores.iter().map(|v| v[i] - v[other]).collect();
                let gd = grad.apply(|k| d[k]);
                let md = scores.iter().fold(0.0f64, |m, v| m.max(magnitude(v, i, other)));
                let dv: Vec<f64> = vals.iter().map(|v| v[i] - v[other]).collect();
                let (dsg, dneg, dpos) = signs(&dv, gd, md);
                if !dneg {
                    continue;
                }
                if !dpos {
                    pts.clear();
                    break;
                }
                (pts, vals) = clip(&pts, &vals, &dv, &dsg);
            }
            if pts.len() >= 3 {
                out.push(Patch { pts, classes: (i as u16, j as u16) });
            }
        }
    }
}

/// The part of the polygon `pts` (with values `vals`) where `d` (signs `dsg`) is not negative.
fn clip(pts: &[[f64; 3]], vals: &[Vec<f64>], d: &[f64], dsg: &[Sign]) -> (Vec<[f64; 3]>, Vec<Vec<f64>>) {
    let (mut p, mut v) = (Vec::new(), Vec::new());
    for k in 0..pts.len() {
        let l = (k + 1) % pts.len();
        if dsg[k] != Sign::Neg {
            p.push(pts[k]);
            v.push(vals[k].clone());
        }
        if matches!((dsg[k], dsg[l]), (Sign::Neg, Sign::Pos) | (Sign::Pos, Sign::Neg)) {
            let t = d[k] / (d[k] - d[l]);
            p.push(super::polytope::lerp3(pts[k], pts[l], t));
            v.push(vals[k].iter().zip(&vals[l]).map(|(a, b)| a + t * (b - a)).collect());
        }
    }
    (p, v)
}

/// A triangle mesh of the decision surface, in frame coordinates.
#[derive(Clone, Debug, Default)]
pub struct Mesh {
    /// Vertex positions.
    pub vertices: Vec<[f64; 3]>,
    /// Triangles (vertex indices), counter-clockwise around the normal.
    pub triangles: Vec<[u32; 3]>,
    /// Per triangle, the two classes it separates (its normal points to the second).
    pub classes: Vec<(u16, u16)>,
    /// Total area in frame units.
    pub area: f64,
    /// Polygons (one per region and class pair the surface crosses).
    pub patches: usize,
    /// Edges of one triangle only that are not on the box's surface (a crack or a hole).
    pub open_edges: usize,
    /// Edges of more than two triangles (where three classes or more meet).
    pub non_manifold_edges: usize,
    /// Edges of two triangles that run the same way (inconsistent orientation).
    pub misoriented_edges: usize,
}

impl Mesh {
    /// Every edge off the box's surface is shared by exactly two triangles, run in opposite
    /// directions.
    pub fn watertight(&self) -> bool {
        self.open_edges == 0 && self.non_manifold_edges == 0 && self.misoriented_edges == 0
    }

    /// Writes Wavefront OBJ (1-based faces).
    pub fn write_obj(&self, mut w: impl Write) -> std::io::Result<()> {
        writeln!(
            w,
            "# tessera decision surface: {} vertices, {} triangles, area {}",
            self.vertices.len(),
            self.triangles.len(),
            self.area
        )?;
        for p in &self.vertices {
            writeln!(w, "v {} {} {}", p[0], p[1], p[2])?;
        }
        for t in &self.triangles {
            writeln!(w, "f {} {} {}", t[0] + 1, t[1] + 1, t[2] + 1)?;
        }
        Ok(())
    }

    /// Writes ASCII PLY, with the two classes of each face as properties.
    pub fn write_ply(&self, mut w: impl Write) -> std::io::Result<()> {
        writeln!(w, "ply\nformat ascii 1.0\ncomment tessera decision surface, area {}", self.area)?;
        writeln!(w, "element vertex {}\nproperty double x\nproperty double y\nproperty double z", self.vertices.len())?;
        writeln!(
            w,
            "element face {}\nproperty list uchar int vertex_indices\nproperty ushort class_below\nproperty ushort class_above\nend_header",
            self.triangles.len()
        )?;
        for p in &self.vertices {
            writeln!(w, "{} {} {}", p[0], p[1], p[2])?;
        }
        for (t, c) in self.triangles.iter().zip(&self.classes) {
            writeln!(w, "3 {} {} {} {} {}", t[0], t[1], t[2], c.0, c.1)?;
        }
        Ok(())
    }
}

fn same_point3(p: [f64; 3], q: [f64; 3]) -> bool {
    (0..3).all(|k| (p[k] - q[k]).abs() <= DIST)
}

/// Both points on one face of the cube `[-1, 1]³`.
fn on_box_face(p: [f64; 3], q: [f64; 3]) -> bool {
    let tol = 4.0 * DIST;
    (0..3).any(|k| [-1.0, 1.0].iter().any(|&s| (p[k] - s).abs() <= tol && (q[k] - s).abs() <= tol))
}

/// Welds, conforms, checks and triangulates the patches.
pub(crate) fn build(patches: Vec<Patch>, slice: &Slice3) -> Mesh {
    // Weld: points within DIST are one vertex (bucketed by grid cells much larger than DIST).
    let mut pts: Vec<[f64; 3]> = Vec::new();
    let mut grid: FxHashMap<[i64; 3], Vec<u32>> = FxHashMap::default();
    let mut weld = |p: [f64; 3], pts: &mut Vec<[f64; 3]>| -> u32 {
        let key = p.map(|x| (x / WELD_CELL).floor() as i64);
        for dx in -1..=1 {
            for dy in -1..=1 {
                for dz in -1..=1 {
                    if let Some(list) = grid.get(&[key[0] + dx, key[1] + dy, key[2] + dz]) {
                        if let Some(&i) = list.iter().find(|&&i| same_point3(pts[i as usize], p)) {
                            return i;
                        }
                    }
                }
            }
        }
        pts.push(p);
        grid.entry(key).or_default().push(pts.len() as u32 - 1);
        pts.len() as u32 - 1
    };
    let mut polys: Vec<(Vec<u32>, (u16, u16))> = Vec::with_capacity(patches.len());
    for patch in &patches {
        let mut cyc: Vec<u32> = patch.pts.iter().map(|&p| weld(p, &mut pts)).collect();
        cyc.dedup();
        while cyc.len() > 1 && cyc.first() == cyc.last() {
            cyc.pop();
        }
        if cyc.len() >= 3 {
            polys.push((cyc, patch.classes));
        }
    }
    // Conform: an edge of one polygon only gets the vertices of other lone edges lying on it.
    let key = |a: u32, b: u32| (a.min(b), a.max(b));
    let mut count: FxHashMap<(u32, u32), u32> = FxHashMap::default();
    for (cyc, _) in &polys {
        for k in 0..cyc.len() {
            *count.entry(key(cyc[k], cyc[(k + 1) % cyc.len()])).or_default() += 1;
        }
    }
    let mut lone: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for (&(a, b), &c) in &count {
        if c == 1 && !on_box_face(pts[a as usize], pts[b as usize]) {
            lone.entry(a).or_default().push(b);
            lone.entry(b).or_default().push(a);
        }
    }
    for (cyc, _) in polys.iter_mut() {
        let mut out = Vec::with_capacity(cyc.len());
        for k in 0..cyc.len() {
            let (a, b) = (cyc[k], cyc[(k + 1) % cyc.len()]);
            out.push(a);
            if count.get(&key(a, b)) != Some(&1) || !lone.contains_key(&a) {
                continue;
            }
            let (pa, pb) = (pts[a as usize], pts[b as usize]);
            let e = sub(pb, pa);
            let len2 = dot(e, e);
            if len2 == 0.0 {
                continue;
            }
            // Walk from a towards b along lone edges whose far end lies on the segment.
            let (mut cur, mut t_cur) = (a, 0.0);
            loop {
                let next = lone.get(&cur).into_iter().flatten().filter_map(|&r| {
                    if r == b || r == a {
                        return None;
                    }
                    let d = sub(pts[r as usize], pa);
                    let t = dot(d, e) / len2;
                    let off = sub(d, e.map(|x| x * t));
                    let on_line = off.iter().all(|x| x.abs() <= 4.0 * DIST);
                    (on_line && t > t_cur && t < 1.0).then_some((t, r))
                });
                match next.min_by(|x, y| x.0.total_cmp(&y.0)) {
                    Some((t, r)) => {
                        out.push(r);
                        cur = r;
                        t_cur = t;
                    }
                    None => break,
                }
            }
        }
        *cyc = out;
    }
    // Check: undirected counts and directed duplicates.
    let mut undirected: FxHashMap<(u32, u32), u32> = FxHashMap::default();
    let mut directed: FxHashMap<(u32, u32), u32> = FxHashMap::default();
    for (cyc, _) in &polys {
        for k in 0..cyc.len() {
            let (a, b) = (cyc[k], cyc[(k + 1) % cyc.len()]);
            *undirected.entry(key(a, b)).or_default() += 1;
            *directed.entry((a, b)).or_default() += 1;
        }
    }
    let mut mesh = Mesh { patches: polys.len(), ..Mesh::default() };
    for (&(a, b), &c) in &undirected {
        match c {
            1 if !on_box_face(pts[a as usize], pts[b as usize]) => mesh.open_edges += 1,
            1 | 2 => {}
            _ => mesh.non_manifold_edges += 1,
        }
        if c == 2 && (directed.get(&(a, b)) == Some(&2) || directed.get(&(b, a)) == Some(&2)) {
            mesh.misoriented_edges += 1;
        }
    }
    // Triangulate around each polygon's centroid (no sliver triangles at conforming vertices).
    let to_frame = |u: [f64; 3]| slice.from_unit(u);
    mesh.vertices = pts.iter().map(|&u| to_frame(u)).collect();
    for (cyc, classes) in &polys {
        let fan_from = if cyc.len() == 3 {
            None
        } else {
            let c: Vec<[f64; 3]> = cyc.iter().map(|&i| pts[i as usize]).collect();
            mesh.vertices.push(to_frame(mean(&c)));
            Some(mesh.vertices.len() as u32 - 1)
        };
        let tri = |t: [u32; 3], mesh: &mut Mesh| {
            let [p, q, r] = t.map(|i| mesh.vertices[i as usize]);
            let n = cross(sub(q, p), sub(r, p));
            mesh.area += 0.5 * dot(n, n).sqrt();
            mesh.triangles.push(t);
            mesh.classes.push(*classes);
        };
        match fan_from {
            None => tri([cyc[0], cyc[1], cyc[2]], &mut mesh),
            Some(c) => {
                for k in 0..cyc.len() {
                    tri([c, cyc[k], cyc[(k + 1) % cyc.len()]], &mut mesh);
                }
            }
        }
    }
    mesh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_junctions_are_conformed() {
        // A square next to two squares that split its shared edge at the origin.
        let patch = |pts: &[[f64; 2]]| Patch { pts: pts.iter().map(|p| [p[0], p[1], 0.0]).collect(), classes: (0, 1) };
        let patches = vec![
            patch(&[[-0.5, -0.5], [0.0, -0.5], [0.0, 0.5], [-0.5, 0.5]]),
            patch(&[[0.0, -0.5], [0.5, -0.5], [0.5, 0.0], [0.0, 0.0]]),
            patch(&[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]),
        ];
        let slice = Slice3::build(3, super::super::Space3::Identity, None).unwrap();
        let mesh = build(patches, &slice);
        // The outline (seven edges) is open; the shared edge is not, once the left square has
        // the origin as a vertex (without it: three more open edges).
        assert_eq!(mesh.open_edges, 7);
        assert_eq!(mesh.misoriented_edges, 0);
        assert!((mesh.area - 1.0).abs() < 1e-15);
    }
}
