//! Exact local complexity around data points: for each point `x` and each of `K` seeded random
//! planes through it, the number of linear regions that meet the disk of radius `R` around `x`
//! in that plane, and the number of units whose breakpoint set crosses the disk. (The sampled
//! measure of the "local complexity" literature counts breakpoints met by random segments or
//! samples; here both numbers are exact on each plane.)
//!
//! The disk's plane is partitioned over the square `[-R, R]²` around `x`; in the engine's frame
//! that square is `[-1, 1]²` and the disk is the unit disk. A region meets the disk when it
//! reaches more than the tolerance rule's distance `DIST` into it (`geometry::predicates`). A
//! unit crosses the disk exactly when two regions meeting the disk have it on different pieces:
//! the segment joining points of the two inside the disk stays in the disk, and along it the
//! unit's input crosses a breakpoint.

use super::neurons::UnitLocator;
use super::AnalysisError;
use crate::geometry::predicates::DIST;
use crate::network::Network;
use crate::slice::{dot, Domain, Plane, Slice};
use crate::{Keep, Options};
use rand::{Rng, SeedableRng};

/// What to measure.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalOptions {
    /// Radius of the disk, in input units (the planes' axes are orthonormal).
    pub radius: f64,
    /// Random planes per point.
    pub planes: usize,
    /// Seed of the planes' directions.
    pub seed: u64,
}

/// One disk.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalCount {
    /// Index of the point.
    pub point: usize,
    /// Index of the plane through it.
    pub plane: usize,
    /// Regions meeting the disk.
    pub regions: u64,
    /// Units whose breakpoint set crosses the disk.
    pub units: u64,
    /// The same per nonlinear node, in the pattern layout's order.
    pub units_per_layer: Vec<u64>,
}

/// The plane of index `plane` through `x`: two orthonormal directions drawn from a Gaussian
/// (uniform over planes) with a generator seeded by `(seed, point, plane)`.
pub fn random_plane(x: &[f64], seed: u64, point: usize, plane: usize) -> Plane {
    let n = x.len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        seed ^ (point as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (plane as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f).rotate_left(17),
    );
    let mut gaussian = || {
        // Box–Muller: two uniforms give a standard normal.
        let (a, b): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    };
    loop {
        let du: Vec<f64> = (0..n).map(|_| gaussian()).collect();
        let dv: Vec<f64> = (0..n).map(|_| gaussian()).collect();
        let nu = dot(&du, &du).sqrt();
        let du: Vec<f64> = du.iter().map(|v| v / nu).collect();
        let d = dot(&du, &dv);
        let dv: Vec<f64> = dv.iter().zip(&du).map(|(b, a)| b - d * a).collect();
        let nv = dot(&dv, &dv).sqrt();
        if nu > 1e-6 && nv > 1e-6 {
            let dv = dv.iter().map(|v| v / nv).collect();
            return Plane { origin: x.to_vec(), du, dv };
        }
    }
}

/// Most disks one call computes (points × planes): each is a partition.
pub const MAX_DISKS: usize = 1_000_000;

/// Local complexity of `net` around every point of `points` (each shaped like the input,
/// flattened): `opts.planes` disks per point, in point-major order. A 2-input model has a single
/// plane through each point, so its planes all give the first one's counts (computed once).
/// `engine` bounds every disk's run (regions, time, memory, cancellation).
pub fn local_complexity(
    net: &Network,
    points: &[Vec<f64>],
    opts: &LocalOptions,
    engine: &Options,
) -> Result<Vec<LocalCount>, crate::Error> {
    let n = net.input_shape.numel();
    if !(opts.radius.is_finite() && opts.radius > 0.0) {
        return Err(AnalysisError::Input(format!("the radius must be a positive number, got {}", opts.radius)).into());
    }
    if opts.planes == 0 {
        return Err(AnalysisError::Input("at least one plane per point is needed".into()).into());
    }
    if n < 2 {
        return Err(AnalysisError::Input(format!("the model has {n} input: a disk needs two or more")).into());
    }
    if let Some((i, p)) = points.iter().enumerate().find(|(_, p)| p.len() != n || p.iter().any(|v| !v.is_finite())) {
        return Err(AnalysisError::Input(format!(
            "point {i} has {} values (or a non-finite one); the model input has {n}",
            p.len()
        ))
        .into());
    }
    let disks = points.len().checked_mul(opts.planes).filter(|&d| d <= MAX_DISKS).ok_or_else(|| {
        AnalysisError::Input(format!("{} points × {} planes is more than {MAX_DISKS} disks", points.len(), opts.planes))
    })?;
    let r = opts.radius;
    let domain = Domain::new(-r, r, -r, r)?;
    let layout = net.pattern_layout();
    let locate = UnitLocator::new(net, &layout)?;
    let mut out: Vec<LocalCount> = Vec::with_capacity(disks);
    for (i, x) in points.iter().enumerate() {
        for k in 0..opts.planes {
            if n == 2 && k > 0 {
                // A 2-input model has one plane: every disk around the point is the same.
                let first = out.last().expect("plane 0 came first").clone();
                out.push(LocalCount { plane: k, ..first });
                continue;
            }
            let plane = if n == 2 {
                Plane { origin: x.clone(), du: vec![1.0, 0.0], dv: vec![0.0, 1.0] }
            } else {
                random_plane(x, opts.seed, i, k)
            };
            let slice = Slice { plane, domain, anchors: None };
            let run = crate::stream(net, &slice, engine, Keep::default())?;
            let mut first: Option<crate::Pattern> = None;
            let mut differ: Vec<u64> = Vec::new();
            let mut regions = 0u64;
            for f in run.collect.chunks.iter().flatten() {
                if !meets_unit_disk(&f.poly.pts) {
                    continue;
                }
                regions += 1;
                match &first {
                    None => {
                        differ = vec![0; f.pattern.0.len()];
                        first = Some(f.pattern.clone());
                    }
                    Some(p0) => {
                        for ((d, a), b) in differ.iter_mut().zip(&p0.0).zip(&f.pattern.0) {
                            *d |= a ^ b;
                        }
                    }
                }
            }
            let mut per_layer = vec![0u64; layout.len()];
            let mut last: Option<(usize, usize)> = None;
            for (w, &word) in differ.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let bit = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    if let Some(u) = locate.unit_of_bit(bit) {
                        // Bits of one unit are adjacent: count each unit once.
                        if last != Some(u) {
                            let s = layout.iter().position(|l| l.layer == u.0).expect("unit of the layout");
                            per_layer[s] += 1;
                            last = Some(u);
                        }
                    }
                }
            }
            out.push(LocalCount {
                point: i,
                plane: k,
                regions,
                units: per_layer.iter().sum(),
                units_per_layer: per_layer,
            });
        }
    }
    Ok(out)
}

/// Whether a convex polygon (frame coordinates) reaches more than `DIST` into the unit disk:
/// its distance from the origin is below `1 − DIST`.
pub fn meets_unit_disk(pts: &[[f64; 2]]) -> bool {
    distance_from_origin(pts) < 1.0 - DIST
}

/// Distance from the origin to a convex counter-clockwise polygon (0 inside).
fn distance_from_origin(pts: &[[f64; 2]]) -> f64 {
    let n = pts.len();
    let mut inside = true;
    let mut best = f64::INFINITY;
    for k in 0..n {
        let (a, b) = (pts[k], pts[(k + 1) % n]);
        let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
        // The origin is left of every edge of a CCW polygon when inside.
        if ex * (-a[1]) - ey * (-a[0]) < 0.0 {
            inside = false;
        }
        let len2 = ex * ex + ey * ey;
        let t = if len2 > 0.0 { ((-a[0]) * ex + (-a[1]) * ey) / len2 } else { 0.0 };
        let t = t.clamp(0.0, 1.0);
        let (px, py) = (a[0] + t * ex, a[1] + t * ey);
        best = best.min(px.hypot(py));
    }
    if inside {
        0.0
    } else {
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_distance_to_the_origin() {
        let square = [[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]];
        assert_eq!(distance_from_origin(&square), 0.0);
        let far = [[2.0, -1.0], [3.0, -1.0], [3.0, 1.0], [2.0, 1.0]];
        assert!((distance_from_origin(&far) - 2.0).abs() < 1e-15);
        let corner = [[0.8, 0.8], [1.0, 0.8], [1.0, 1.0], [0.8, 1.0]];
        assert!((distance_from_origin(&corner) - 0.8f64.hypot(0.8)).abs() < 1e-15);
        assert!(!meets_unit_disk(&corner));
        let plane = random_plane(&[0.0; 5], 3, 1, 2);
        let dot = plane.du.iter().zip(&plane.dv).map(|(a, b)| a * b).sum::<f64>();
        assert!(dot.abs() < 1e-12);
        assert_eq!(random_plane(&[0.0; 5], 3, 1, 2), plane);
        assert_ne!(random_plane(&[0.0; 5], 3, 1, 3), plane);
    }
}
