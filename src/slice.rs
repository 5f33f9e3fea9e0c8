//! The 2D slice of input space a partition lives on, and its domain.
//!
//! A slice is the affine plane `x(u, v) = origin + u·du + v·dv` in input space, and a domain is a
//! rectangle in `(u, v)`. The engine never sees these user coordinates: it works on a
//! *normalised* plane where the domain is `[-1, 1]²` (see [`Slice::normalized`]), which makes the
//! tolerance policy of `geometry::predicates` independent of the domain's size and position.

/// Why a slice could not be built.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum SliceError {
    /// The box is empty, inverted or not finite.
    #[error("invalid box [{u0}, {u1}] × [{v0}, {v1}]: {reason}")]
    BadBox {
        /// Lower u.
        u0: f64,
        /// Upper u.
        u1: f64,
        /// Lower v.
        v0: f64,
        /// Upper v.
        v1: f64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A vector has the wrong number of entries.
    #[error("{what} has {found} entries but the model input has {expected}")]
    Length {
        /// Which vector.
        what: &'static str,
        /// Its length.
        found: usize,
        /// The input size.
        expected: usize,
    },
    /// A vector contains NaN or infinity.
    #[error("{what} contains a non-finite value at entry {index}")]
    NonFinite {
        /// Which vector.
        what: &'static str,
        /// Where.
        index: usize,
    },
    /// The two directions do not span a plane.
    #[error("degenerate slice: {0}")]
    Degenerate(&'static str),
    /// A bound of a 3D box is invalid.
    #[error("invalid box on the {axis} axis [{lo}, {hi}]: {reason}")]
    BadBox3 {
        /// The axis.
        axis: &'static str,
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A 3D map of a model whose input is not three-dimensional, without anchors.
    #[error(
        "a 3D map needs a model with 3 inputs, or four anchors (--anchors A,B,C,D): the model input has {0} feature(s)"
    )]
    NeedSpace(usize),
    /// The model input is not two-dimensional and no plane was given.
    #[error("the model input has {0} features: give a plane (an origin and two directions, or three anchors)")]
    NeedPlane(usize),
}

/// An affine plane in input space.
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    /// The point at `(u, v) = (0, 0)`.
    pub origin: Vec<f64>,
    /// Direction of `u`.
    pub du: Vec<f64>,
    /// Direction of `v`.
    pub dv: Vec<f64>,
}

/// Checks a vector's length against the input size and that it is finite.
pub(crate) fn check(what: &'static str, v: &[f64], n: usize) -> Result<(), SliceError> {
    if v.len() != n {
        return Err(SliceError::Length { what, found: v.len(), expected: n });
    }
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(SliceError::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// `o + (p + pe) + (q + qe)` rounded once (the products' rounding errors `pe`, `qe` come from
/// fused multiply-adds): Knuth's two-sum keeps every rounding error of the additions.
fn sum3(o: f64, p: f64, pe: f64, q: f64, qe: f64) -> f64 {
    let two_sum = |a: f64, b: f64| {
        let s = a + b;
        let bb = s - a;
        (s, (a - (s - bb)) + (b - bb))
    };
    let (s1, e1) = two_sum(o, p);
    let (s2, e2) = two_sum(s1, q);
    s2 + (e1 + e2 + pe + qe)
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Plane {
    /// The input plane of a two-feature model: `x = (u, v)`.
    pub fn identity2() -> Self {
        Plane { origin: vec![0.0, 0.0], du: vec![1.0, 0.0], dv: vec![0.0, 1.0] }
    }

    /// A plane from explicit vectors, each of length `n` (the model's input size).
    ///
    /// Rejects non-finite entries, a zero direction and parallel directions.
    pub fn from_vectors(origin: Vec<f64>, du: Vec<f64>, dv: Vec<f64>, n: usize) -> Result<Self, SliceError> {
        check("origin", &origin, n)?;
        check("du", &du, n)?;
        check("dv", &dv, n)?;
        let (nu, nv) = (dot(&du, &du).sqrt(), dot(&dv, &dv).sqrt());
        if nu == 0.0 || nv == 0.0 {
            return Err(SliceError::Degenerate("a direction vector has zero length"));
        }
        let cos = dot(&du, &dv) / (nu * nv);
        if 1.0 - cos.abs() < 1e-12 {
            return Err(SliceError::Degenerate("du and dv are parallel"));
        }
        Ok(Plane { origin, du, dv })
    }

    /// The plane through three inputs: origin `a`, orthonormal directions from Gram–Schmidt of
    /// `b − a` then `c − a`, so `(u, v)` are Euclidean lengths in input space.
    ///
    /// Returns the plane and the `(u, v)` coordinates of the three anchors.
    pub fn from_anchors(a: &[f64], b: &[f64], c: &[f64], n: usize) -> Result<(Self, [[f64; 2]; 3]), SliceError> {
        check("anchor A", a, n)?;
        check("anchor B", b, n)?;
        check("anchor C", c, n)?;
        let ab: Vec<f64> = b.iter().zip(a).map(|(x, y)| x - y).collect();
        let ac: Vec<f64> = c.iter().zip(a).map(|(x, y)| x - y).collect();
        let nab = dot(&ab, &ab).sqrt();
        let scale = nab.max(dot(&ac, &ac).sqrt()).max(a.iter().fold(0.0f64, |m, x| m.max(x.abs())));
        if nab <= 1e-12 * scale || nab == 0.0 {
            return Err(SliceError::Degenerate("anchors A and B coincide"));
        }
        let e1: Vec<f64> = ab.iter().map(|x| x / nab).collect();
        let p = dot(&ac, &e1);
        let rest: Vec<f64> = ac.iter().zip(&e1).map(|(x, e)| x - p * e).collect();
        let nr = dot(&rest, &rest).sqrt();
        if nr <= 1e-9 * dot(&ac, &ac).sqrt().max(nab) {
            return Err(SliceError::Degenerate("the three anchors are collinear"));
        }
        let e2: Vec<f64> = rest.iter().map(|x| x / nr).collect();
        let coords = [[0.0, 0.0], [nab, 0.0], [p, nr]];
        Ok((Plane { origin: a.to_vec(), du: e1, dv: e2 }, coords))
    }

    /// The input point at `(u, v)`, each entry `origin + u·du + v·dv` rounded once: the sum is
    /// accumulated in double-double arithmetic, so that a domain far from the origin (where
    /// `u·du` and `origin` nearly cancel) loses nothing to the cancellation.
    pub fn point(&self, u: f64, v: f64) -> Vec<f64> {
        self.origin
            .iter()
            .zip(&self.du)
            .zip(&self.dv)
            .map(|((&o, &a), &b)| sum3(o, u * a, u.mul_add(a, -(u * a)), v * b, v.mul_add(b, -(v * b))))
            .collect()
    }
}

/// An axis-aligned rectangle `[u0, u1] × [v0, v1]` in slice coordinates.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Domain {
    /// Lower u.
    pub u0: f64,
    /// Upper u.
    pub u1: f64,
    /// Lower v.
    pub v0: f64,
    /// Upper v.
    pub v1: f64,
}

impl Domain {
    /// Validates a box: finite, non-empty, and resolvable in f64 relative to its position.
    pub fn new(u0: f64, u1: f64, v0: f64, v1: f64) -> Result<Self, SliceError> {
        let bad = |reason| SliceError::BadBox { u0, u1, v0, v1, reason };
        if ![u0, u1, v0, v1].iter().all(|x| x.is_finite()) {
            return Err(bad("bounds must be finite"));
        }
        if u1 <= u0 || v1 <= v0 {
            return Err(bad("each upper bound must exceed its lower bound"));
        }
        let area = (u1 - u0) * (v1 - v0);
        if !(u1 - u0).is_finite() || !(v1 - v0).is_finite() || !area.is_normal() {
            return Err(bad("the box's width, height and area must be finite and non-zero in f64"));
        }
        let rel = |a: f64, b: f64| (b - a) / a.abs().max(b.abs());
        if rel(u0, u1) < 1e-12 || rel(v0, v1) < 1e-12 {
            return Err(bad("the box is too small relative to its distance from the origin for f64"));
        }
        Ok(Domain { u0, u1, v0, v1 })
    }

    /// The bounding box of `pts`, padded by `pad` times its width and height on each side.
    pub fn around(pts: &[[f64; 2]], pad: f64) -> Result<Self, SliceError> {
        let (mut u0, mut u1, mut v0, mut v1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for p in pts {
            u0 = u0.min(p[0]);
            u1 = u1.max(p[0]);
            v0 = v0.min(p[1]);
            v1 = v1.max(p[1]);
        }
        let (w, h) = (u1 - u0, v1 - v0);
        Domain::new(u0 - pad * w, u1 + pad * w, v0 - pad * h, v1 + pad * h)
    }

    /// Area of the box.
    pub fn area(&self) -> f64 {
        (self.u1 - self.u0) * (self.v1 - self.v0)
    }

    /// Corners, counter-clockwise from `(u0, v0)`.
    pub fn corners(&self) -> [[f64; 2]; 4] {
        [[self.u0, self.v0], [self.u1, self.v0], [self.u1, self.v1], [self.u0, self.v1]]
    }
}

/// A plane together with a domain on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    /// The plane in input space.
    pub plane: Plane,
    /// The domain in `(u, v)`.
    pub domain: Domain,
    /// Anchor points in `(u, v)`, when the plane was built from anchors.
    pub anchors: Option<[[f64; 2]; 3]>,
}

/// Maps normalised coordinates `(s, t) ∈ [-1, 1]²` to slice coordinates `(u, v)`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Centre of the domain in `(u, v)`.
    pub center: [f64; 2],
    /// Half-width and half-height of the domain.
    pub half: [f64; 2],
}

impl Normalization {
    /// Slice coordinates of a normalised point.
    #[inline]
    pub fn to_uv(&self, p: [f64; 2]) -> [f64; 2] {
        [self.center[0] + self.half[0] * p[0], self.center[1] + self.half[1] * p[1]]
    }

    /// Normalised coordinates of a slice point.
    #[inline]
    pub fn from_uv(&self, p: [f64; 2]) -> [f64; 2] {
        [(p[0] - self.center[0]) / self.half[0], (p[1] - self.center[1]) / self.half[1]]
    }

    /// A displacement in normalised coordinates as a displacement in `(u, v)`.
    #[inline]
    pub fn vec_to_uv(&self, d: [f64; 2]) -> [f64; 2] {
        [self.half[0] * d[0], self.half[1] * d[1]]
    }

    /// A gradient with respect to normalised coordinates as a gradient with respect to `(u, v)`.
    #[inline]
    pub fn grad_to_uv(&self, g: [f64; 2]) -> [f64; 2] {
        [g[0] / self.half[0], g[1] / self.half[1]]
    }

    /// Converts one output's affine map `y = A·s + B·t + c` in normalised coordinates to
    /// `y = J·(u, v) + offset`, returning `(dy/du, dy/dv, offset)`.
    #[inline]
    pub fn affine_to_uv(&self, a: f64, b: f64, c: f64) -> (f64, f64, f64) {
        let ju = a / self.half[0];
        let jv = b / self.half[1];
        (ju, jv, c - ju * self.center[0] - jv * self.center[1])
    }

    /// Converts a map of normalised coordinates to a map of `(u, v)`.
    pub fn map_to_uv(&self, m: &crate::partition::AffineMap) -> crate::partition::AffineMap {
        let (jacobian, offset) = m
            .jacobian
            .iter()
            .zip(&m.offset)
            .map(|(j, &o)| {
                let (ju, jv, c) = self.affine_to_uv(j[0], j[1], o);
                ([ju, jv], c)
            })
            .unzip();
        crate::partition::AffineMap { jacobian, offset }
    }
}

/// How a slice's plane is given.
#[derive(Clone, Debug, PartialEq)]
pub enum PlaneSpec {
    /// The input itself (2-input networks only).
    Identity,
    /// `origin + u·du + v·dv`.
    Vectors {
        /// The origin.
        origin: Vec<f64>,
        /// Direction of u.
        du: Vec<f64>,
        /// Direction of v.
        dv: Vec<f64>,
    },
    /// The plane through three inputs, origin at `a`, with orthonormal `(u, v)`.
    Anchors {
        /// Anchor A.
        a: Vec<f64>,
        /// Anchor B.
        b: Vec<f64>,
        /// Anchor C.
        c: Vec<f64>,
    },
}

/// Padding of the default domain around three anchors, as a fraction of their bounding box.
pub const ANCHOR_PAD: f64 = 0.25;

impl Slice {
    /// The slice of a network with `n` inputs on `plane` over `domain` `[u0, u1, v0, v1]`; the
    /// default domain is `[-1, 1]²`, or for anchors their bounding box padded by [`ANCHOR_PAD`].
    pub fn build(n: usize, plane: PlaneSpec, domain: Option<[f64; 4]>) -> Result<Slice, SliceError> {
        let (plane, anchors) = match plane {
            PlaneSpec::Identity if n == 2 => (Plane::identity2(), None),
            PlaneSpec::Identity => return Err(SliceError::NeedPlane(n)),
            PlaneSpec::Vectors { origin, du, dv } => (Plane::from_vectors(origin, du, dv, n)?, None),
            PlaneSpec::Anchors { a, b, c } => {
                let (plane, coords) = Plane::from_anchors(&a, &b, &c, n)?;
                (plane, Some(coords))
            }
        };
        let domain = match (domain, anchors) {
            (Some([u0, u1, v0, v1]), _) => Domain::new(u0, u1, v0, v1),
            (None, Some(coords)) => Domain::around(&coords, ANCHOR_PAD),
            (None, None) => Domain::new(-1.0, 1.0, -1.0, 1.0),
        }?;
        Ok(Slice { plane, domain, anchors })
    }

    /// The plane whose `[-1, 1]²` is this slice's domain, and the map back to `(u, v)`.
    pub fn normalized(&self) -> (Plane, Normalization) {
        let d = &self.domain;
        let center = [0.5 * (d.u0 + d.u1), 0.5 * (d.v0 + d.v1)];
        let half = [0.5 * (d.u1 - d.u0), 0.5 * (d.v1 - d.v0)];
        let origin = self.plane.point(center[0], center[1]);
        let du = self.plane.du.iter().map(|x| x * half[0]).collect();
        let dv = self.plane.dv.iter().map(|x| x * half[1]).collect();
        (Plane { origin, du, dv }, Normalization { center, half })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_orthonormal_and_reproduced() {
        let a = [1.0, 0.0, 2.0];
        let b = [2.0, 1.0, 2.0];
        let c = [0.0, 3.0, 1.0];
        let (plane, uv) = Plane::from_anchors(&a, &b, &c, 3).unwrap();
        assert!((dot(&plane.du, &plane.dv)).abs() < 1e-14);
        for (anchor, coords) in [a, b, c].iter().zip(uv) {
            let x = plane.point(coords[0], coords[1]);
            for (p, q) in x.iter().zip(anchor.iter()) {
                assert!((p - q).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn rejects_collinear_anchors_and_bad_boxes() {
        let e = Plane::from_anchors(&[0.0, 0.0], &[1.0, 1.0], &[2.0, 2.0], 2).unwrap_err();
        assert_eq!(e, SliceError::Degenerate("the three anchors are collinear"));
        assert!(Domain::new(1.0, 1.0, 0.0, 1.0).is_err());
        assert!(Domain::new(0.0, f64::NAN, 0.0, 1.0).is_err());
        assert!(Domain::new(-2.0, 2.0, -2.0, 2.0).is_ok());
    }

    #[test]
    fn normalization_round_trips_maps() {
        let s = Slice { plane: Plane::identity2(), domain: Domain::new(1.0, 5.0, -3.0, -1.0).unwrap(), anchors: None };
        let (plane, norm) = s.normalized();
        // y = 2u - v + 1 on the user plane; in normalised coordinates via the plane vectors.
        let f = |x: &[f64]| 2.0 * x[0] - x[1] + 1.0;
        let c = f(&plane.origin);
        let a = f(&plane.point(1.0, 0.0)) - c;
        let b = f(&plane.point(0.0, 1.0)) - c;
        let (ju, jv, off) = norm.affine_to_uv(a, b, c);
        assert!((ju - 2.0).abs() < 1e-14 && (jv + 1.0).abs() < 1e-14 && (off - 1.0).abs() < 1e-14);
        let p = norm.to_uv([1.0, -1.0]);
        assert_eq!(p, [5.0, -3.0]);
        assert_eq!(norm.from_uv(p), [1.0, -1.0]);
    }
}
