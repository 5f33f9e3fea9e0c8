//! Convex polygons and their split by an affine function.
//!
//! Written by hand rather than with `geo`'s boolean operations: this split runs once per
//! region per crossing unit in the engine's hot loop, where a general polygon clipper measured
//! about 100× slower, and `geo` snaps coordinates, which would break the exactness argument of
//! `predicates`. The split here needs only the values of the affine function at the vertices
//! (already computed by the caller) and interpolates along edges.

use super::predicates::{orient, same_point, sign, Sign};

/// A convex polygon with counter-clockwise vertices.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ConvexPolygon {
    /// Vertices in counter-clockwise order, without repeating the first.
    pub pts: Vec<[f64; 2]>,
}

/// Result of splitting a polygon by the sign of an affine function.
#[derive(Debug)]
pub enum Split {
    /// The function is negative or zero everywhere on the polygon (some vertex strictly negative).
    Below,
    /// The function is positive or zero everywhere on the polygon (some vertex strictly positive).
    Above,
    /// The function is zero (within tolerance) at every vertex.
    OnLine,
    /// The line crosses the interior: `(negative side, positive side)`.
    Both(ConvexPolygon, ConvexPolygon),
}

/// Where a polygon lies relative to a line: [`Split`] without the pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Negative or zero everywhere (some vertex strictly negative).
    Below,
    /// Positive or zero everywhere (some vertex strictly positive).
    Above,
    /// Zero (within tolerance) at every vertex.
    OnLine,
    /// Vertices strictly on both sides: [`ConvexPolygon::split`] would cut.
    Crossing,
}

/// The side of a polygon whose vertex values are `values`, by the tolerance rule: the same
/// decision [`ConvexPolygon::split`] takes.
pub fn side(values: &[f64], tol: f64) -> Side {
    let mut has_pos = false;
    let mut has_neg = false;
    for &v in values {
        match sign(v, tol) {
            Sign::Pos => has_pos = true,
            Sign::Neg => has_neg = true,
            Sign::Zero => {}
        }
    }
    match (has_neg, has_pos) {
        (false, false) => Side::OnLine,
        (true, false) => Side::Below,
        (false, true) => Side::Above,
        (true, true) => Side::Crossing,
    }
}

impl ConvexPolygon {
    /// The axis-aligned rectangle `[u0, u1] × [v0, v1]`.
    pub fn rect(u0: f64, u1: f64, v0: f64, v1: f64) -> Self {
        ConvexPolygon { pts: vec![[u0, v0], [u1, v0], [u1, v1], [u0, v1]] }
    }

    /// Signed area (positive for counter-clockwise), computed relative to the first vertex so
    /// that it stays accurate far from the origin.
    pub fn area(&self) -> f64 {
        let Some(&o) = self.pts.first() else {
            return 0.0;
        };
        let mut s = 0.0;
        for w in self.pts.windows(2).skip(1) {
            let (p, q) = (w[0], w[1]);
            s += (p[0] - o[0]) * (q[1] - o[1]) - (p[1] - o[1]) * (q[0] - o[0]);
        }
        0.5 * s
    }

    /// Centroid of the vertices; strictly inside for a convex polygon of positive area.
    pub fn vertex_centroid(&self) -> [f64; 2] {
        let n = self.pts.len() as f64;
        let (su, sv) = self.pts.iter().fold((0.0, 0.0), |(a, b), p| (a + p[0], b + p[1]));
        [su / n, sv / n]
    }

    /// Area centroid (the centre of mass); falls back to the vertex centroid for tiny areas.
    pub fn centroid(&self) -> [f64; 2] {
        let n = self.pts.len();
        let o = self.pts[0];
        let (mut a, mut cx, mut cy) = (0.0, 0.0, 0.0);
        for i in 1..n.saturating_sub(1) {
            let p = [self.pts[i][0] - o[0], self.pts[i][1] - o[1]];
            let q = [self.pts[i + 1][0] - o[0], self.pts[i + 1][1] - o[1]];
            let t = p[0] * q[1] - p[1] * q[0];
            a += t;
            cx += t * (p[0] + q[0]);
            cy += t * (p[1] + q[1]);
        }
        if a.abs() <= f64::MIN_POSITIVE {
            return self.vertex_centroid();
        }
        [o[0] + cx / (3.0 * a), o[1] + cy / (3.0 * a)]
    }

    /// Axis-aligned bounding box `[u0, u1, v0, v1]`.
    pub fn bbox(&self) -> [f64; 4] {
        let mut b = [f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY];
        for p in &self.pts {
            b[0] = b[0].min(p[0]);
            b[1] = b[1].max(p[0]);
            b[2] = b[2].min(p[1]);
            b[3] = b[3].max(p[1]);
        }
        b
    }

    /// True when the polygon has at least three vertices, positive area, and no vertex lies to the
    /// right of the line through its two neighbours (beyond the tolerance rule's distance).
    pub fn is_convex_ccw(&self) -> bool {
        let n = self.pts.len();
        if n < 3 || self.area() <= 0.0 {
            return false;
        }
        (0..n).all(|i| orient(self.pts[i], self.pts[(i + 2) % n], self.pts[(i + 1) % n]) != Sign::Pos)
    }

    /// Where `p` lies: `Pos` inside (farther than the tolerance from every edge line), `Zero` on
    /// the boundary (within the tolerance of an edge line, inside the others), `Neg` outside.
    pub fn locate(&self, p: [f64; 2]) -> Sign {
        let n = self.pts.len();
        let mut on_edge = false;
        for i in 0..n {
            let (a, b) = (self.pts[i], self.pts[(i + 1) % n]);
            if same_point(a, b) {
                continue; // a repeated vertex bounds nothing
            }
            match orient(a, b, p) {
                Sign::Neg => return Sign::Neg,
                Sign::Zero => on_edge = true,
                Sign::Pos => {}
            }
        }
        if on_edge {
            Sign::Zero
        } else {
            Sign::Pos
        }
    }

    /// Signed Euclidean distance from `p` to the nearest edge line: positive inside. A
    /// measurement (for Chebyshev centres and tests), not a sign decision.
    pub fn inner_distance(&self, p: [f64; 2]) -> f64 {
        let n = self.pts.len();
        let mut best = f64::INFINITY;
        for i in 0..n {
            let (a, b) = (self.pts[i], self.pts[(i + 1) % n]);
            let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
            let len = ex.hypot(ey);
            if len > 0.0 {
                best = best.min((ex * (p[1] - a[1]) - ey * (p[0] - a[0])) / len);
            }
        }
        best
    }

    /// The convex hull of `points`, counter-clockwise, without vertices that lie on the line
    /// through their neighbours (within the tolerance rule's distance) and without repeated
    /// points. Used to merge pieces that together form one convex cell.
    pub fn hull(points: &[[f64; 2]]) -> ConvexPolygon {
        let mut pts = points.to_vec();
        pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
        pts.dedup_by(|a, b| same_point(*a, *b));
        if pts.len() < 3 {
            return ConvexPolygon { pts };
        }
        // Andrew's monotone chain: a point stays only where the chain turns left beyond the
        // tolerance.
        let mut hull: Vec<[f64; 2]> = Vec::with_capacity(pts.len() + 1);
        for pass in 0..2 {
            let start = hull.len();
            let mut push = |p: [f64; 2]| {
                while hull.len() >= start + 2 && orient(hull[hull.len() - 2], hull[hull.len() - 1], p) != Sign::Pos {
                    hull.pop();
                }
                hull.push(p);
            };
            if pass == 0 {
                pts.iter().for_each(|&p| push(p));
            } else {
                pts.iter().rev().for_each(|&p| push(p));
            }
            hull.pop(); // the last point starts the other chain
        }
        ConvexPolygon { pts: hull }
    }

    /// Splits by the affine function whose values at the vertices are `values`, with the tolerance
    /// `tol` of the tolerance rule (`predicates::tolerance` of the function's gradient and noise).
    ///
    /// Vertices within tolerance of zero belong to both sides, so a line through a vertex never
    /// creates a degenerate piece; a split happens only when vertices lie strictly on both sides.
    pub fn split(&self, values: &[f64], tol: f64) -> Split {
        debug_assert_eq!(values.len(), self.pts.len());
        match side(values, tol) {
            Side::OnLine => return Split::OnLine,
            Side::Below => return Split::Below,
            Side::Above => return Split::Above,
            Side::Crossing => {}
        }
        let n = self.pts.len();
        let mut neg = Vec::with_capacity(n + 2);
        let mut pos = Vec::with_capacity(n + 2);
        for i in 0..n {
            let j = if i + 1 == n { 0 } else { i + 1 };
            let (p, si, sj) = (self.pts[i], values[i], values[j]);
            if si > tol {
                pos.push(p);
            } else if si < -tol {
                neg.push(p);
            } else {
                pos.push(p);
                neg.push(p);
            }
            if (si > tol && sj < -tol) || (si < -tol && sj > tol) {
                // Strictly opposite signs: the denominator exceeds 2·tol, and t is in (0, 1).
                let t = si / (si - sj);
                let q = self.pts[j];
                let x = [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])];
                pos.push(x);
                neg.push(x);
            }
        }
        Split::Both(ConvexPolygon { pts: neg }, ConvexPolygon { pts: pos })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::predicates::tolerance;

    fn values(poly: &ConvexPolygon, f: impl Fn([f64; 2]) -> f64) -> Vec<f64> {
        poly.pts.iter().map(|&p| f(p)).collect()
    }

    #[test]
    fn split_square_through_diagonal_vertices() {
        let sq = ConvexPolygon::rect(-1.0, 1.0, -1.0, 1.0);
        // u - v = 0 passes exactly through two corners: two triangles, no extra points.
        let vals = values(&sq, |p| p[0] - p[1]);
        let Split::Both(neg, pos) = sq.split(&vals, tolerance(1.0, 1.0, 0.0)) else { panic!("must split") };
        assert_eq!(neg.pts.len(), 3);
        assert_eq!(pos.pts.len(), 3);
        assert!((neg.area() - 2.0).abs() < 1e-15 && (pos.area() - 2.0).abs() < 1e-15);
        assert!(neg.is_convex_ccw() && pos.is_convex_ccw());
    }

    #[test]
    fn split_conserves_area_and_classifies_sides() {
        let sq = ConvexPolygon::rect(0.0, 2.0, 0.0, 1.0);
        let f = |p: [f64; 2]| 0.3 * p[0] + 0.7 * p[1] - 0.5;
        let Split::Both(neg, pos) = sq.split(&values(&sq, f), tolerance(0.3, 0.7, 0.0)) else { panic!() };
        assert!((neg.area() + pos.area() - 2.0).abs() < 1e-14);
        assert!(f(neg.centroid()) < 0.0 && f(pos.centroid()) > 0.0);
    }

    #[test]
    fn line_touching_a_vertex_does_not_split() {
        let sq = ConvexPolygon::rect(0.0, 1.0, 0.0, 1.0);
        let tol = tolerance(1.0, 1.0, 0.0);
        let vals = values(&sq, |p| p[0] + p[1]); // zero only at the corner (0, 0)
        assert!(matches!(sq.split(&vals, tol), Split::Above));
        let near = values(&sq, |p| p[0] + p[1] - 1e-11); // within the distance of that corner
        assert!(matches!(sq.split(&near, tol), Split::Above));
        let beyond = values(&sq, |p| p[0] + p[1] - 1e-9); // a real sliver beyond it
        assert!(matches!(sq.split(&beyond, tol), Split::Both(..)));
        assert!(matches!(sq.split(&[0.0; 4], tol), Split::OnLine));
    }

    #[test]
    fn locate_by_distance() {
        let sq = ConvexPolygon::rect(0.0, 1.0, 0.0, 1.0);
        assert_eq!(sq.locate([0.5, 0.5]), Sign::Pos);
        assert_eq!(sq.locate([0.0, 0.5]), Sign::Zero);
        assert_eq!(sq.locate([1e-11, 0.5]), Sign::Zero);
        assert_eq!(sq.locate([1.5, 0.5]), Sign::Neg);
        assert!((sq.inner_distance([0.25, 0.5]) - 0.25).abs() < 1e-15);
    }

    #[test]
    fn hull_drops_collinear_and_repeated_points() {
        let pts = [[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5], [1.0, 1.0 + 1e-13]];
        let h = ConvexPolygon::hull(&pts);
        assert_eq!(h.pts.len(), 4, "{:?}", h.pts);
        assert!(h.is_convex_ccw());
        assert!((h.area() - 1.0).abs() < 1e-12);
    }
}
