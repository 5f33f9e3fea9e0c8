//! Convex polygons and their split by an affine function.
//!
//! Written by hand rather than with `geo`'s boolean operations: this split runs once per
//! region per crossing unit in the engine's hot loop, where a general polygon clipper measured
//! about 100× slower, and `geo` snaps coordinates, which would break the exactness argument of
//! `predicates`. The split here needs only the values of the affine function at the vertices
//! (already computed by the caller) and interpolates along edges.

use super::predicates::{sign, Sign};

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

    /// True when every turn is left (or straight within tolerance) and the area is positive.
    ///
    /// The tolerance covers the rounding of the coordinates themselves, which dominates for a
    /// polygon that is tiny relative to its distance from the origin.
    pub fn is_convex_ccw(&self, extent: f64) -> bool {
        let n = self.pts.len();
        if n < 3 || self.area() <= 0.0 {
            return false;
        }
        let coord = self.pts.iter().fold(0.0f64, |m, p| m.max(p[0].abs()).max(p[1].abs()));
        let ulp = 4.0 * f64::EPSILON * coord;
        for i in 0..n {
            let a = self.pts[i];
            let b = self.pts[(i + 1) % n];
            let c = self.pts[(i + 2) % n];
            let cross = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]);
            let e1 = (b[0] - a[0]).abs() + (b[1] - a[1]).abs();
            let e2 = (c[0] - b[0]).abs() + (c[1] - b[1]).abs();
            let scale = e1 * e2 + ulp * (e1 + e2) / super::predicates::REL_TOL + extent * extent * f64::EPSILON;
            if sign(cross, scale) == Sign::Neg {
                return false;
            }
        }
        true
    }

    /// Whether `p` lies strictly inside, farther than `margin` from every edge line.
    pub fn contains_strictly(&self, p: [f64; 2], margin: f64) -> bool {
        let n = self.pts.len();
        for i in 0..n {
            let a = self.pts[i];
            let b = self.pts[(i + 1) % n];
            let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
            let len = ex.hypot(ey);
            if len == 0.0 {
                continue; // a repeated vertex bounds nothing
            }
            let cross = ex * (p[1] - a[1]) - ey * (p[0] - a[0]);
            if cross <= margin * len {
                return false;
            }
        }
        true
    }

    /// Splits by the affine function whose values at the vertices are `values`, each of whose
    /// terms summed to at most `scale` in magnitude (see `predicates`).
    ///
    /// Vertices within tolerance of zero belong to both sides, so a line through a vertex never
    /// creates a degenerate piece; a split happens only when vertices lie strictly on both sides.
    pub fn split(&self, values: &[f64], scale: f64) -> Split {
        debug_assert_eq!(values.len(), self.pts.len());
        let mut has_pos = false;
        let mut has_neg = false;
        for &v in values {
            match sign(v, scale) {
                Sign::Pos => has_pos = true,
                Sign::Neg => has_neg = true,
                Sign::Zero => {}
            }
        }
        match (has_neg, has_pos) {
            (false, false) => return Split::OnLine,
            (true, false) => return Split::Below,
            (false, true) => return Split::Above,
            (true, true) => {}
        }
        let n = self.pts.len();
        let mut neg = Vec::with_capacity(n + 2);
        let mut pos = Vec::with_capacity(n + 2);
        let tol = super::predicates::zero_threshold(scale);
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

    fn values(poly: &ConvexPolygon, f: impl Fn([f64; 2]) -> f64) -> Vec<f64> {
        poly.pts.iter().map(|&p| f(p)).collect()
    }

    #[test]
    fn split_square_through_diagonal_vertices() {
        let sq = ConvexPolygon::rect(-1.0, 1.0, -1.0, 1.0);
        // u - v = 0 passes exactly through two corners: two triangles, no extra points.
        let vals = values(&sq, |p| p[0] - p[1]);
        let Split::Both(neg, pos) = sq.split(&vals, 3.0) else { panic!("must split") };
        assert_eq!(neg.pts.len(), 3);
        assert_eq!(pos.pts.len(), 3);
        assert!((neg.area() - 2.0).abs() < 1e-15 && (pos.area() - 2.0).abs() < 1e-15);
        assert!(neg.is_convex_ccw(2.0) && pos.is_convex_ccw(2.0));
    }

    #[test]
    fn split_conserves_area_and_classifies_sides() {
        let sq = ConvexPolygon::rect(0.0, 2.0, 0.0, 1.0);
        let f = |p: [f64; 2]| 0.3 * p[0] + 0.7 * p[1] - 0.5;
        let Split::Both(neg, pos) = sq.split(&values(&sq, f), 1.5) else { panic!() };
        assert!((neg.area() + pos.area() - 2.0).abs() < 1e-14);
        assert!(f(neg.centroid()) < 0.0 && f(pos.centroid()) > 0.0);
    }

    #[test]
    fn line_touching_a_vertex_does_not_split() {
        let sq = ConvexPolygon::rect(0.0, 1.0, 0.0, 1.0);
        let vals = values(&sq, |p| p[0] + p[1]); // zero only at the corner (0, 0)
        assert!(matches!(sq.split(&vals, 2.0), Split::Above));
        let near = values(&sq, |p| p[0] + p[1] - 1e-13); // within tolerance of that corner
        assert!(matches!(sq.split(&near, 2.0), Split::Above));
        assert!(matches!(sq.split(&[0.0; 4], 1.0), Split::OnLine));
    }

    #[test]
    fn contains_strictly_excludes_boundary() {
        let sq = ConvexPolygon::rect(0.0, 1.0, 0.0, 1.0);
        assert!(sq.contains_strictly([0.5, 0.5], 0.0));
        assert!(!sq.contains_strictly([0.0, 0.5], 0.0));
        assert!(!sq.contains_strictly([1.5, 0.5], 0.0));
    }
}
