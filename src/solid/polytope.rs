//! Convex polytopes of the normalised cube `[-1, 1]³` and their exact splitting by a plane given
//! by an affine function's values at the vertices.
//!
//! Written by hand, not with a geometry crate: this is the hot loop of the 3D path (every split
//! of every cell), it must take the signs the tolerance rule decided rather than recompute
//! them, and it must report where each new vertex lies on which old edge so that the caller can
//! interpolate the network's tensors there.

use crate::geometry::predicates::{self, Sign};

/// What made a facet of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FacetLabel {
    /// A face of the box: `axis` 0, 1, 2 for x, y, z; the upper or the lower face.
    Box {
        /// The axis the face is normal to.
        axis: u8,
        /// Whether it is the upper face.
        upper: bool,
    },
    /// Hinge `hinge` (0 unless the unit has two, like hardtanh) of unit `unit` of node `node`.
    Hinge {
        /// Node index in the network (see `tessera info`).
        node: u32,
        /// Unit (flat index of the node's input).
        unit: u32,
        /// Which hinge of the unit.
        hinge: u8,
    },
    /// Candidates at positions `a < b` of group `group` of max-type node `node` are equal.
    Tie {
        /// Node index.
        node: u32,
        /// Group (output unit of the node).
        group: u32,
        /// One candidate's position in the group.
        a: u16,
        /// The other's.
        b: u16,
    },
}

/// A convex polytope: vertices, and facets as vertex cycles counter-clockwise seen from outside.
#[derive(Clone, Debug)]
pub(crate) struct Poly {
    pub pts: Vec<[f64; 3]>,
    pub faces: Vec<(Vec<u32>, FacetLabel)>,
}

/// A vertex of a piece after a split: one of the polytope's, or a new one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum VRef {
    Old(u32),
    New(u32),
}

/// One side of a split: its vertices and facets (indices into `verts`).
#[derive(Debug)]
pub(crate) struct Side {
    pub verts: Vec<VRef>,
    pub faces: Vec<(Vec<u32>, FacetLabel)>,
}

/// The two sides of a polytope cut by a plane; `new` lists the new vertices, each on the edge
/// from old vertex `a` to old vertex `b` at fraction `t` from `a`.
#[derive(Debug)]
pub(crate) struct Split {
    pub new: Vec<(u32, u32, f64)>,
    pub neg: Side,
    pub pos: Side,
}

pub(crate) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

pub(crate) fn lerp3(a: [f64; 3], b: [f64; 3], t: f64) -> [f64; 3] {
    [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])]
}

/// The mean of `pts`.
pub(crate) fn mean(pts: &[[f64; 3]]) -> [f64; 3] {
    let mut c = [0.0; 3];
    for p in pts {
        (0..3).for_each(|k| c[k] += p[k]);
    }
    let n = pts.len().max(1) as f64;
    c.map(|x| x / n)
}

/// Orders `pts` (points of one plane with normal `normal`) counter-clockwise seen from the side
/// `normal` points to; returns the permutation.
pub(crate) fn order_around(pts: &[[f64; 3]], normal: [f64; 3]) -> Vec<usize> {
    let c = mean(pts);
    // A basis (e1, e2) of the plane with e1 × e2 along the normal.
    let n = normal;
    let k = (0..3).min_by(|&i, &j| n[i].abs().total_cmp(&n[j].abs())).unwrap_or(0);
    let mut axis = [0.0; 3];
    axis[k] = 1.0;
    let e1 = cross(n, axis);
    let e2 = cross(n, e1);
    let mut idx: Vec<usize> = (0..pts.len()).collect();
    let angle: Vec<f64> = pts
        .iter()
        .map(|&p| {
            let d = sub(p, c);
            dot(d, e2).atan2(dot(d, e1))
        })
        .collect();
    idx.sort_by(|&i, &j| angle[i].total_cmp(&angle[j]));
    idx
}

impl Poly {
    /// The cube `[-1, 1]³`.
    pub fn cube() -> Poly {
        let pts: Vec<[f64; 3]> = (0..8)
            .map(|i| [(i & 1) as f64 * 2.0 - 1.0, (i >> 1 & 1) as f64 * 2.0 - 1.0, (i >> 2 & 1) as f64 * 2.0 - 1.0])
            .collect();
        let mut faces = Vec::new();
        for axis in 0..3u8 {
            for upper in [false, true] {
                let on: Vec<usize> = (0..8).filter(|&i| (i >> axis & 1 == 1) == upper).collect();
                let mut out = [0.0; 3];
                out[axis as usize] = if upper { 1.0 } else { -1.0 };
                let face_pts: Vec<[f64; 3]> = on.iter().map(|&i| pts[i]).collect();
                let cyc = order_around(&face_pts, out).into_iter().map(|k| on[k] as u32).collect();
                faces.push((cyc, FacetLabel::Box { axis, upper }));
            }
        }
        Poly { pts, faces }
    }

    /// Volume (fans of tetrahedra from the vertex centroid, which is inside: the polytope is
    /// convex).
    pub fn volume(&self) -> f64 {
        let c = mean(&self.pts);
        let mut v = 0.0;
        for (cyc, _) in &self.faces {
            let p0 = sub(self.pts[cyc[0] as usize], c);
            for w in cyc[1..].windows(2) {
                let (p1, p2) = (sub(self.pts[w[0] as usize], c), sub(self.pts[w[1] as usize], c));
                v += dot(p0, cross(p1, p2)).abs();
            }
        }
        v / 6.0
    }

    /// Cuts the polytope by the plane on which `s` (an affine function's values at the
    /// vertices, signs `sg` decided by the tolerance rule) vanishes; `normal` is the function's
    /// gradient. Vertices on the plane (`Zero`) belong to both sides; each edge from a `Neg` to a
    /// `Pos` vertex gets a new vertex where `s` interpolates to zero. The new facet is labelled
    /// `label`. Call only when some vertex is `Neg` and some `Pos`.
    pub fn split(&self, s: &[f64], sg: &[Sign], normal: [f64; 3], label: FacetLabel) -> Split {
        let n_old = self.pts.len() as u32;
        let mut new: Vec<(u32, u32, f64)> = Vec::new();
        let mut new_pts: Vec<[f64; 3]> = Vec::new();
        let mut new_id = |a: u32, b: u32, new: &mut Vec<(u32, u32, f64)>| -> u32 {
            let key = (a.min(b), a.max(b));
            if let Some(k) = new.iter().position(|&(p, q, _)| (p.min(q), p.max(q)) == key) {
                return n_old + k as u32;
            }
            let t = s[a as usize] / (s[a as usize] - s[b as usize]);
            new.push((a, b, t));
            new_pts.push(lerp3(self.pts[a as usize], self.pts[b as usize], t));
            n_old + new.len() as u32 - 1
        };
        let (mut neg_faces, mut pos_faces) = (Vec::new(), Vec::new());
        for (cyc, label) in &self.faces {
            let (mut nf, mut pf) = (Vec::with_capacity(cyc.len() + 1), Vec::with_capacity(cyc.len() + 1));
            let (mut has_neg, mut has_pos) = (false, false);
            for k in 0..cyc.len() {
                let (a, b) = (cyc[k], cyc[(k + 1) % cyc.len()]);
                let (sa, sb) = (sg[a as usize], sg[b as usize]);
                match sa {
                    Sign::Neg => {
                        nf.push(a);
                        has_neg = true;
                    }
                    Sign::Pos => {
                        pf.push(a);
                        has_pos = true;
                    }
                    Sign::Zero => {
                        nf.push(a);
                        pf.push(a);
                    }
                }
                if matches!((sa, sb), (Sign::Neg, Sign::Pos) | (Sign::Pos, Sign::Neg)) {
                    let id = new_id(a, b, &mut new);
                    nf.push(id);
                    pf.push(id);
                }
            }
            if has_neg && nf.len() >= 3 {
                neg_faces.push((nf, *label));
            }
            if has_pos && pf.len() >= 3 {
                pos_faces.push((pf, *label));
            }
        }
        // The cap: every vertex on the plane, ordered around the normal.
        let mut cap: Vec<u32> = (0..n_old).filter(|&i| sg[i as usize] == Sign::Zero).collect();
        cap.extend(n_old..n_old + new.len() as u32);
        let point = |id: u32| if id < n_old { self.pts[id as usize] } else { new_pts[(id - n_old) as usize] };
        if cap.len() >= 3 {
            let cap_pts: Vec<[f64; 3]> = cap.iter().map(|&i| point(i)).collect();
            let ordered: Vec<u32> = order_around(&cap_pts, normal).into_iter().map(|k| cap[k]).collect();
            let mut reversed = ordered.clone();
            reversed.reverse();
            // Outward normal of the negative side points to the positive one.
            neg_faces.push((ordered, label));
            pos_faces.push((reversed, label));
        }
        let side = |faces: Vec<(Vec<u32>, FacetLabel)>| -> Side {
            let mut map: Vec<u32> = vec![u32::MAX; (n_old as usize) + new.len()];
            let mut verts = Vec::new();
            let faces = faces
                .into_iter()
                .map(|(cyc, l)| {
                    let cyc = cyc
                        .into_iter()
                        .map(|id| {
                            if map[id as usize] == u32::MAX {
                                map[id as usize] = verts.len() as u32;
                                verts.push(if id < n_old { VRef::Old(id) } else { VRef::New(id - n_old) });
                            }
                            map[id as usize]
                        })
                        .collect();
                    (cyc, l)
                })
                .collect();
            Side { verts, faces }
        };
        let (neg, pos) = (side(neg_faces), side(pos_faces));
        Split { new, neg, pos }
    }
}

/// Least-squares gradient operator of a set of points: `grad(f) = P·f` for the values `f` of an
/// affine function at the points (exact for affine values up to rounding). `None` when the
/// points do not span three dimensions.
#[derive(Clone, Debug)]
pub(crate) struct Gradient {
    rows: [Vec<f64>; 3],
}

impl Gradient {
    pub fn of(pts: &[[f64; 3]]) -> Option<Gradient> {
        let c = mean(pts);
        let mut a = [[0.0; 3]; 3];
        for p in pts {
            let d = sub(*p, c);
            for i in 0..3 {
                for j in 0..3 {
                    a[i][j] += d[i] * d[j];
                }
            }
        }
        let inv = invert3(a)?;
        let mut rows = [vec![0.0; pts.len()], vec![0.0; pts.len()], vec![0.0; pts.len()]];
        for (k, p) in pts.iter().enumerate() {
            let d = sub(*p, c);
            for i in 0..3 {
                rows[i][k] = inv[i][0] * d[0] + inv[i][1] * d[1] + inv[i][2] * d[2];
            }
        }
        Some(Gradient { rows })
    }

    /// The gradient of the affine function with values `f` at the points.
    pub fn apply(&self, f: impl Fn(usize) -> f64) -> [f64; 3] {
        let mut g = [0.0; 3];
        for k in 0..self.rows[0].len() {
            let v = f(k);
            (0..3).for_each(|i| g[i] += self.rows[i][k] * v);
        }
        g
    }
}

/// The inverse of a 3×3 matrix, or `None` when it is singular relative to its size.
pub(crate) fn invert3(a: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let c = |i: usize, j: usize| {
        let (i1, i2, j1, j2) = ((i + 1) % 3, (i + 2) % 3, (j + 1) % 3, (j + 2) % 3);
        a[i1][j1] * a[i2][j2] - a[i1][j2] * a[i2][j1]
    };
    let det = a[0][0] * c(0, 0) + a[0][1] * c(0, 1) + a[0][2] * c(0, 2);
    let scale = a.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    if !(det.abs() > 1e-300 && det.abs() > 1e-30 * scale * scale * scale) {
        return None;
    }
    Some(std::array::from_fn(|j| std::array::from_fn(|i| c(i, j) / det)))
}

/// The signs of `s` (values of an affine function with gradient `g` and noise floor from
/// `magnitude` at the points) under the tolerance rule (`predicates::tolerance3`).
pub(crate) fn signs(s: &[f64], g: [f64; 3], magnitude: f64) -> (Vec<Sign>, bool, bool) {
    let tol = predicates::tolerance3(g, predicates::noise_floor(magnitude));
    let mut out = Vec::with_capacity(s.len());
    let (mut neg, mut pos) = (false, false);
    for &v in s {
        let sg = predicates::sign(v, tol);
        neg |= sg == Sign::Neg;
        pos |= sg == Sign::Pos;
        out.push(sg);
    }
    (out, neg, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cube_is_closed_and_outward() {
        let c = Poly::cube();
        assert_eq!(c.faces.len(), 6);
        assert!((c.volume() - 8.0).abs() < 1e-12);
        for (cyc, label) in &c.faces {
            let p: Vec<[f64; 3]> = cyc.iter().map(|&i| c.pts[i as usize]).collect();
            let n = cross(sub(p[1], p[0]), sub(p[2], p[0]));
            let FacetLabel::Box { axis, upper } = *label else { panic!() };
            let want = if upper { 1.0 } else { -1.0 };
            assert!(n[axis as usize] * want > 0.0, "face {label:?} points inward");
        }
    }

    #[test]
    fn split_halves_the_cube() {
        let c = Poly::cube();
        // x + y + z = 0.5 cuts a corner-heavy piece.
        let s: Vec<f64> = c.pts.iter().map(|p| p[0] + p[1] + p[2] - 0.5).collect();
        let (sg, neg, pos) = signs(&s, [1.0; 3], 1.0);
        assert!(neg && pos);
        let split = c.split(&s, &sg, [1.0; 3], FacetLabel::Hinge { node: 0, unit: 0, hinge: 0 });
        let build = |side: &Side| {
            let pts = side
                .verts
                .iter()
                .map(|v| match *v {
                    VRef::Old(i) => c.pts[i as usize],
                    VRef::New(k) => {
                        let (a, b, t) = split.new[k as usize];
                        lerp3(c.pts[a as usize], c.pts[b as usize], t)
                    }
                })
                .collect();
            Poly { pts, faces: side.faces.clone() }
        };
        let (a, b) = (build(&split.neg), build(&split.pos));
        assert!((a.volume() + b.volume() - 8.0).abs() < 1e-12);
        // The plane's cap is a hexagon on both sides.
        assert_eq!(a.faces.len(), 7);
        assert_eq!(b.faces.len(), 7);
        // Closed form: with x = 2a − 1 etc., x + y + z ≥ 0.5 is a + b + c ≥ 1.75 in the unit
        // cube, whose volume is the Irwin–Hall CDF at 1.25: (1.25³ − 3·0.25³) / 6.
        let est = 8.0 * (1.0 - (1.25f64.powi(3) - 3.0 * 0.25f64.powi(3)) / 6.0);
        assert!((a.volume() - est).abs() < 1e-12, "{} vs {}", a.volume(), est);
    }
}
