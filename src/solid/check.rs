//! Self-checks of a 3D partition: what must hold of any correct one, tested against the network
//! itself rather than against the traversal's own bookkeeping.

use super::polytope::{dot, mean};
use super::{Slice3, Solid};
use crate::network::{Network, Src};
use crate::pattern::{LayerBits, Pattern};
use crate::pointwise::{apply_node, decision_values, nonlinear, winner_at, Nonlinear};
use good_lp::{microlp, variable, Expression, ProblemVariables, Solution, SolverModel};
use rand::{Rng, SeedableRng};

/// What the check found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every failed invariant, described.
    pub violations: Vec<String>,
    /// Regions whose Chebyshev centre was computed (a linear program each).
    pub centres: usize,
    /// Largest difference between a region's map and the forward pass, relative to the outputs'
    /// size.
    pub max_map_error: f64,
}

impl Report {
    /// No violations.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The activation pattern of `net` at input `x` in `layout` (the hinges passed, the winners).
pub(crate) fn pattern_at(net: &Network, layout: &[LayerBits], x: &[f64]) -> Pattern {
    let words = layout.last().map_or(0, |l| (l.offset + l.bits).div_ceil(64));
    let mut pat = Pattern(vec![0; words]);
    let mut outs: Vec<Vec<f64>> = Vec::with_capacity(net.nodes.len());
    let mut stage = 0;
    for node in &net.nodes {
        let kind = nonlinear(node);
        let read = |s: &Src| -> &[f64] {
            match *s {
                Src::Input => x,
                Src::Node(j) => &outs[j],
            }
        };
        if let Some(kind) = &kind {
            let bits = &layout[stage];
            stage += 1;
            let negate = matches!(kind, Nonlinear::Max(_, true));
            let v = decision_values(node, read, negate);
            match kind {
                Nonlinear::Activation(layer) => {
                    let (forms, slots) = layer.hinge_forms().expect("an activation has hinge forms");
                    for (u, f) in forms.iter().enumerate() {
                        for (j, &(bp, _)) in f.hinges().iter().enumerate() {
                            if v[u] > bp {
                                pat.set_bit(bits.offset + u * slots + j);
                            }
                        }
                    }
                }
                Nonlinear::Max(groups, _) => {
                    let width = bits.bits / groups.len().max(1);
                    for (g, group) in groups.iter().enumerate() {
                        pat.set_bits(bits.offset + g * width, width, winner_at(group, &v) as u64);
                    }
                }
            }
        }
        let y = apply_node(node, kind.as_ref(), read);
        outs.push(y);
    }
    pat
}

/// A facet's plane in cube coordinates: unit outward normal `n` and offset `d` (`n·x ≤ d`
/// inside), from Newell's normal of its vertex cycle.
fn plane(pts: &[[f64; 3]], cyc: &[u32]) -> Option<([f64; 3], f64)> {
    let mut n = [0.0; 3];
    for k in 0..cyc.len() {
        let (p, q) = (pts[cyc[k] as usize], pts[cyc[(k + 1) % cyc.len()] as usize]);
        n[0] += (p[1] - q[1]) * (p[2] + q[2]);
        n[1] += (p[2] - q[2]) * (p[0] + q[0]);
        n[2] += (p[0] - q[0]) * (p[1] + q[1]);
    }
    let len = dot(n, n).sqrt();
    if len.is_nan() || len <= 0.0 {
        return None;
    }
    let n = n.map(|x| x / len);
    let c: Vec<[f64; 3]> = cyc.iter().map(|&i| pts[i as usize]).collect();
    Some((n, dot(n, mean(&c))))
}

/// The centre and radius of the largest ball inside `n·x ≤ d` for every facet plane (a linear
/// program, solved by `microlp`).
fn chebyshev(planes: &[([f64; 3], f64)]) -> Option<([f64; 3], f64)> {
    let mut vars = ProblemVariables::new();
    let x: Vec<_> = (0..3).map(|_| vars.add(variable().min(-2.0).max(2.0))).collect();
    let r = vars.add(variable().min(0.0).max(4.0));
    let mut model = vars.maximise(r).using(microlp);
    for (n, d) in planes {
        let e: Expression = n[0] * x[0] + n[1] * x[1] + n[2] * x[2] + r;
        model = model.with(e.leq(*d));
    }
    let sol = model.solve().ok()?;
    Some(([sol.value(x[0]), sol.value(x[1]), sol.value(x[2])], sol.value(r)))
}

/// Checks `solid` (with its regions kept): volumes sum to the box; every region is a closed
/// convex polytope with outward facets; its map equals the forward pass at its vertex centroid
/// and, for up to `samples` regions (seeded), at its Chebyshev centre (a linear program), where
/// the pattern must also be the region's; patterns are unique; `samples` random points of the
/// box each lie in exactly one region.
pub fn check(net: &Network, slice: &Slice3, solid: &Solid, samples: usize, seed: u64) -> Report {
    let mut report = Report::default();
    let bad = |r: &mut Report, s: String| {
        if r.violations.len() < 100 {
            r.violations.push(s);
        }
    };
    let vol = slice.volume();
    let sum: f64 = solid.regions.iter().map(|r| r.volume).sum();
    if (sum - vol).abs() > 1e-9 * vol {
        bad(&mut report, format!("region volumes sum to {sum}, the box has {vol}"));
    }
    if solid.regions.len() as u64 != solid.summary.regions {
        bad(&mut report, format!("{} regions kept of {}", solid.regions.len(), solid.summary.regions));
    }
    let (c, h) = slice.center_half();
    let to_unit = |p: [f64; 3]| [(p[0] - c[0]) / h[0], (p[1] - c[1]) / h[1], (p[2] - c[2]) / h[2]];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let lp_every = (solid.regions.len() / samples.max(1)).max(1);
    let lp_phase = rng.random_range(0..lp_every);
    let mut seen = rustc_hash::FxHashSet::default();
    let mut planes_of = Vec::with_capacity(solid.regions.len());
    for (ri, region) in solid.regions.iter().enumerate() {
        let pts: Vec<[f64; 3]> = region.vertices.iter().map(|&p| to_unit(p)).collect();
        let centre = mean(&pts);
        let mut planes = Vec::with_capacity(region.facets.len());
        for f in &region.facets {
            let Some((n, d)) = plane(&pts, &f.vertices) else {
                bad(&mut report, format!("region {ri}: facet {:?} has no normal", f.label));
                continue;
            };
            if dot(n, centre) >= d {
                bad(&mut report, format!("region {ri}: facet {:?} faces inwards", f.label));
            }
            let worst = pts.iter().map(|&p| dot(n, p) - d).fold(f64::NEG_INFINITY, f64::max);
            if worst > 1e-8 {
                bad(
                    &mut report,
                    format!("region {ri}: a vertex lies {worst:e} outside facet {:?} (not convex)", f.label),
                );
            }
            planes.push((n, d));
        }
        // Closed: every edge of a facet cycle is an edge of exactly two facets.
        let mut edges = rustc_hash::FxHashMap::<(u32, u32), u32>::default();
        for f in &region.facets {
            for k in 0..f.vertices.len() {
                let (a, b) = (f.vertices[k], f.vertices[(k + 1) % f.vertices.len()]);
                *edges.entry((a.min(b), a.max(b))).or_default() += 1;
            }
        }
        if let Some((e, n)) = edges.iter().find(|(_, &n)| n != 2) {
            bad(&mut report, format!("region {ri}: edge {e:?} belongs to {n} facets (not closed)"));
        }
        if !seen.insert(region.pattern.clone()) {
            bad(&mut report, format!("region {ri}: pattern {} appears twice", region.pattern.to_hex()));
        }
        let probe = |u: [f64; 3], what: &str, report: &mut Report| {
            let p = slice.from_unit(u);
            let x = slice.point(p);
            let y = net.forward(&x);
            let m = region.eval(p);
            let size = y.iter().fold(1.0f64, |a, v| a.max(v.abs()));
            let err = y.iter().zip(&m).fold(0.0f64, |a, (p, q)| a.max((p - q).abs())) / size;
            report.max_map_error = report.max_map_error.max(err);
            if err > 1e-8 {
                bad(report, format!("region {ri}: map differs from the forward pass at its {what} by {err:e}"));
            }
            err
        };
        probe(centre, "vertex centroid", &mut report);
        if ri % lp_every == lp_phase && report.centres < samples {
            report.centres += 1;
            match chebyshev(&planes) {
                Some((z, r)) if r > 0.0 => {
                    probe(z, "Chebyshev centre", &mut report);
                    let pat = pattern_at(net, &solid.layout, &slice.point(slice.from_unit(z)));
                    if pat != region.pattern {
                        bad(
                            &mut report,
                            format!("region {ri}: the pattern at its Chebyshev centre is not the region's"),
                        );
                    }
                }
                other => bad(&mut report, format!("region {ri}: no interior point (Chebyshev centre {other:?})")),
            }
        }
        planes_of.push(planes);
    }
    // Coverage and overlap at random points, with bounding boxes to skip most regions.
    let boxes: Vec<([f64; 3], [f64; 3])> = solid
        .regions
        .iter()
        .map(|r| {
            let mut lo = [f64::INFINITY; 3];
            let mut hi = [f64::NEG_INFINITY; 3];
            for &p in &r.vertices {
                let u = to_unit(p);
                (0..3).for_each(|k| {
                    lo[k] = lo[k].min(u[k]);
                    hi[k] = hi[k].max(u[k]);
                });
            }
            (lo, hi)
        })
        .collect();
    for s in 0..samples {
        let u: [f64; 3] = [0, 1, 2].map(|_| rng.random_range(-1.0..1.0));
        let (mut loose, mut strict) = (0, 0);
        for (ri, planes) in planes_of.iter().enumerate() {
            let (lo, hi) = boxes[ri];
            if (0..3).any(|k| u[k] < lo[k] - 1e-9 || u[k] > hi[k] + 1e-9) {
                continue;
            }
            let worst = planes.iter().map(|(n, d)| dot(*n, u) - d).fold(f64::NEG_INFINITY, f64::max);
            loose += usize::from(worst <= 1e-9);
            strict += usize::from(worst < -1e-9);
        }
        if loose == 0 || strict > 1 {
            bad(&mut report, format!("sample {s} at {u:?} lies in {loose} regions ({strict} strictly inside)"));
        }
    }
    report
}
