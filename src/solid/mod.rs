//! Exact 3D partitions: the linear regions of a network on a 3D box of its input space, as convex
//! polytopes, and its decision boundary or level set there as exact triangle meshes.
//!
//! The box is either the input of a 3-input network or the 3D slice through four inputs
//! (`origin A`, orthonormal axes by Gram–Schmidt of `B − A`, `C − A`, `D − A`). The box is
//! normalised to the cube `[-1, 1]³` and the tolerance rule is the plane's
//! (`geometry::predicates`) with one more coordinate: a vertex is on a unit's plane when it is
//! within `DIST` of it in the max-norm of the cube (`τ = DIST·|∇f|₁ + ν`), so no cell is thinner
//! than that and none is missed unless it is. The traversal (`traverse`) runs every cell through
//! the nodes in order, with each vertex carrying the tensors still to be read (shared with the
//! 1D path: `pointwise`); at a nonlinear node the node's input is affine on the cell, so its
//! vertex values decide every split exactly, and new vertices get interpolated tensors.

mod check;
pub mod export;
pub mod mesh;
mod polytope;
mod traverse;

pub use check::{check, Report};
pub use mesh::Mesh;
pub use polytope::FacetLabel;

use crate::boundary::Decision;
use crate::engine::Options;
use crate::network::Network;
use crate::pattern::{LayerBits, Pattern};
use crate::slice::SliceError;

/// How the 3D box sits in input space.
#[derive(Clone, Debug, PartialEq)]
pub enum Space3 {
    /// The input itself (3-input networks only).
    Identity,
    /// The 3D slice through four inputs: origin `a`, orthonormal axes from `b − a`, `c − a`,
    /// `d − a`.
    Anchors {
        /// Anchor A (the origin).
        a: Vec<f64>,
        /// Anchor B.
        b: Vec<f64>,
        /// Anchor C.
        c: Vec<f64>,
        /// Anchor D.
        d: Vec<f64>,
    },
}

/// A box `[x0, x1] × [y0, y1] × [z0, z1]` in a 3D frame of input space: `x(p) = origin + Σ pₖ·axisₖ`.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice3 {
    /// The input at `p = 0`.
    pub origin: Vec<f64>,
    /// The three axes.
    pub axes: [Vec<f64>; 3],
    /// `[x0, x1, y0, y1, z0, z1]` in frame coordinates.
    pub bounds: [f64; 6],
    /// Frame coordinates of the four anchors, when built from anchors.
    pub anchors: Option<[[f64; 3]; 4]>,
}

use crate::slice::{check as check_vec, dot as dotn};

/// Validates a 3D box: finite, non-empty on every axis and resolvable in f64.
fn check_bounds(b: [f64; 6]) -> Result<(), SliceError> {
    for axis in 0..3 {
        let (lo, hi) = (b[2 * axis], b[2 * axis + 1]);
        let bad = |reason| SliceError::BadBox3 { axis: ["x", "y", "z"][axis], lo, hi, reason };
        if !lo.is_finite() || !hi.is_finite() {
            return Err(bad("bounds must be finite"));
        }
        if hi <= lo {
            return Err(bad("the upper bound must exceed the lower bound"));
        }
        if !(hi - lo).is_normal() || (hi - lo) / lo.abs().max(hi.abs()) < 1e-12 {
            return Err(bad("the extent is too small for f64 relative to its position"));
        }
    }
    if !((b[1] - b[0]) * (b[3] - b[2]) * (b[5] - b[4])).is_normal() {
        return Err(SliceError::BadBox3 {
            axis: "x",
            lo: b[0],
            hi: b[1],
            reason: "the box's volume is not finite and non-zero",
        });
    }
    Ok(())
}

impl Slice3 {
    /// The 3D slice of a network with `n` inputs; the default box is `[-1, 1]³`, or for anchors
    /// their bounding box padded by `slice::ANCHOR_PAD` of its extent on each side.
    pub fn build(n: usize, space: Space3, bounds: Option<[f64; 6]>) -> Result<Slice3, SliceError> {
        let (origin, axes, anchors) = match space {
            Space3::Identity if n == 3 => {
                (vec![0.0; 3], [vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]], None)
            }
            Space3::Identity => return Err(SliceError::NeedSpace(n)),
            Space3::Anchors { a, b, c, d } => {
                check_vec("anchor A", &a, n)?;
                check_vec("anchor B", &b, n)?;
                check_vec("anchor C", &c, n)?;
                check_vec("anchor D", &d, n)?;
                let diff = |p: &[f64]| -> Vec<f64> { p.iter().zip(&a).map(|(x, y)| x - y).collect() };
                let (ab, ac, ad) = (diff(&b), diff(&c), diff(&d));
                let scale = [&ab, &ac, &ad].iter().map(|v| dotn(v, v).sqrt()).fold(0.0f64, f64::max);
                let mut axes: Vec<Vec<f64>> = Vec::new();
                let mut coords = [[0.0; 3]; 4];
                for (k, v) in [&ab, &ac, &ad].into_iter().enumerate() {
                    let mut rest = v.clone();
                    for (j, e) in axes.iter().enumerate() {
                        let p = dotn(v, e);
                        coords[k + 1][j] = p;
                        rest.iter_mut().zip(e).for_each(|(r, e)| *r -= p * e);
                    }
                    let norm = dotn(&rest, &rest).sqrt();
                    if norm.is_nan() || norm <= 1e-9 * scale {
                        return Err(SliceError::Degenerate(match k {
                            0 => "anchors A and B coincide",
                            1 => "anchors A, B and C are collinear",
                            _ => "the four anchors are coplanar",
                        }));
                    }
                    coords[k + 1][k] = norm;
                    axes.push(rest.into_iter().map(|r| r / norm).collect());
                }
                let axes: [Vec<f64>; 3] = axes.try_into().expect("three axes");
                (a, axes, Some(coords))
            }
        };
        let bounds = match (bounds, anchors) {
            (Some(b), _) => b,
            (None, Some(coords)) => {
                let mut b = [0.0; 6];
                for axis in 0..3 {
                    let lo = coords.iter().map(|c| c[axis]).fold(f64::INFINITY, f64::min);
                    let hi = coords.iter().map(|c| c[axis]).fold(f64::NEG_INFINITY, f64::max);
                    let pad = crate::slice::ANCHOR_PAD * (hi - lo);
                    b[2 * axis] = lo - pad;
                    b[2 * axis + 1] = hi + pad;
                }
                b
            }
            (None, None) => [-1.0, 1.0, -1.0, 1.0, -1.0, 1.0],
        };
        check_bounds(bounds)?;
        Ok(Slice3 { origin, axes, bounds, anchors })
    }

    /// Centre and half extents of the box, per axis.
    pub fn center_half(&self) -> ([f64; 3], [f64; 3]) {
        let b = self.bounds;
        let c = [0.5 * (b[0] + b[1]), 0.5 * (b[2] + b[3]), 0.5 * (b[4] + b[5])];
        let h = [0.5 * (b[1] - b[0]), 0.5 * (b[3] - b[2]), 0.5 * (b[5] - b[4])];
        (c, h)
    }

    /// Frame coordinates of normalised cube coordinates `u ∈ [-1, 1]³`.
    pub fn from_unit(&self, u: [f64; 3]) -> [f64; 3] {
        let (c, h) = self.center_half();
        [c[0] + h[0] * u[0], c[1] + h[1] * u[1], c[2] + h[2] * u[2]]
    }

    /// The input at frame coordinates `p`.
    pub fn point(&self, p: [f64; 3]) -> Vec<f64> {
        let mut x = self.origin.clone();
        for (k, axis) in self.axes.iter().enumerate() {
            x.iter_mut().zip(axis).for_each(|(x, a)| *x += p[k] * a);
        }
        x
    }

    /// Volume of the box in frame units.
    pub fn volume(&self) -> f64 {
        let b = self.bounds;
        (b[1] - b[0]) * (b[3] - b[2]) * (b[5] - b[4])
    }
}

/// One facet of a region: its vertex cycle (counter-clockwise seen from outside) and what made it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Facet {
    /// Indices into the region's vertices.
    pub vertices: Vec<u32>,
    /// The box face, hinge or tie it lies on.
    pub label: FacetLabel,
}

/// One linear region of a 3D partition.
#[derive(Clone, Debug)]
pub struct Region3 {
    /// Vertices in frame coordinates.
    pub vertices: Vec<[f64; 3]>,
    /// Facets.
    pub facets: Vec<Facet>,
    /// Volume in frame units.
    pub volume: f64,
    /// Activation pattern (layout: [`Solid::layout`]).
    pub pattern: Pattern,
    /// The outputs as an affine function of frame coordinates: `y = jacobian·p + offset`
    /// (`jacobian` is outputs × 3).
    pub jacobian: Vec<[f64; 3]>,
    /// Offset of the affine map.
    pub offset: Vec<f64>,
}

impl Region3 {
    /// The outputs at frame point `p` by the region's affine map.
    pub fn eval(&self, p: [f64; 3]) -> Vec<f64> {
        self.jacobian.iter().zip(&self.offset).map(|(j, o)| o + j[0] * p[0] + j[1] * p[1] + j[2] * p[2]).collect()
    }

    /// The mean of the vertices (an interior point: the region is convex with positive volume).
    pub fn centroid(&self) -> [f64; 3] {
        polytope::mean(&self.vertices)
    }
}

/// Counts of a finished 3D run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary3 {
    /// Regions.
    pub regions: u64,
    /// Cells after each nonlinear node, in node order.
    pub regions_per_layer: Vec<crate::partition::LayerCount>,
    /// Box volume (frame units).
    pub volume: f64,
    /// Sum of the region volumes (equals `volume` up to rounding).
    pub volume_sum: f64,
    /// Smallest region volume.
    pub min_volume: f64,
    /// Largest region volume.
    pub max_volume: f64,
    /// Mean vertices per region.
    pub mean_vertices: f64,
    /// Mean facets per region.
    pub mean_facets: f64,
}

/// A finished 3D partition.
#[derive(Clone, Debug)]
pub struct Solid {
    /// Counts and statistics.
    pub summary: Summary3,
    /// Every region, in traversal order (empty unless kept: [`Options3::keep_regions`]).
    pub regions: Vec<Region3>,
    /// Where each nonlinear layer's units sit in the patterns.
    pub layout: Vec<LayerBits>,
    /// The decision surface, when asked for ([`Options3::surface`]).
    pub surface: Option<Mesh>,
}

/// What a 3D run computes beyond the counts.
#[derive(Clone, Debug, Default)]
pub struct Options3 {
    /// Limits, threads and progress (as for the plane; `dense_reference` and `clip` do not apply).
    pub engine: Options,
    /// Keep every region (polytope, pattern, map).
    pub keep_regions: bool,
    /// Compute the decision surface of this decision: the boundary between classes (argmax), or
    /// the level set of a level decision.
    pub surface: Option<Decision>,
}

/// Partitions `slice`'s box into the network's linear regions.
pub fn partition3(net: &Network, slice: &Slice3, opts: &Options3) -> Result<Solid, crate::Error> {
    let n = net.input_shape.numel();
    check_vec("origin", &slice.origin, n)?;
    for axis in &slice.axes {
        check_vec("axis", axis, n)?;
    }
    check_bounds(slice.bounds)?;
    if let Some(Decision::Level { weights, .. }) = &opts.surface {
        let outputs = net.output_shape().numel();
        if let Some(&(index, _)) = weights.iter().find(|(i, _)| *i >= outputs) {
            return Err(crate::Error::Decision(crate::boundary::DecisionError::Output { index, outputs }));
        }
    }
    let out = traverse::run(net, slice, opts).map_err(crate::Error::from)?;
    Ok(out)
}
