//! Bases: dense snapshots of a target's pre-activations over a polygon, shared by every cell
//! inside that polygon.
//!
//! A [`Base`] holds, for one target (a stage or the network output), the complete pre-activation
//! map `z` (`3 × n`: `∂/∂s`, `∂/∂t`, value), the classification of every unit over the base's
//! polygon, and the partial sums of later targets that wait for skip connections. A cell inside
//! the polygon is the base plus sparse corrections: units whose lines do not cross the base's
//! polygon and whose maps the corrections do not touch are decided for the cell without looking
//! at them.
//!
//! The base of the next target over the same polygon ([`Base::next`]) applies every edge to the
//! base's default post-activations, for all the cells that share it, batched over many bases: a
//! GEMM for dense layers, an im2col product per row for convolutions.

use super::acc::Acc;
use super::classify::Seen;
use super::maxgroup;
use super::plan::{Nonlinearity, Plan, Source};
use super::pwl;
use crate::geometry::polygon::ConvexPolygon;
use std::sync::{Arc, OnceLock};

/// The classification of a base's stage over its polygon.
pub(crate) enum Class {
    Pwl(pwl::Classified),
    Max(maxgroup::Classified),
}

impl Class {
    /// The default post-activation map (`3 × n_out`).
    pub(crate) fn t(&self) -> &[f64] {
        match self {
            Class::Pwl(c) => &c.t,
            Class::Max(c) => &c.t,
        }
    }

    /// The stage's pattern bits with the defaults.
    pub(crate) fn bits(&self) -> &[u64] {
        match self {
            Class::Pwl(c) => &c.bits,
            Class::Max(c) => &c.bits,
        }
    }

    /// Number of undecided units (hinges) or groups.
    pub(crate) fn undecided(&self) -> usize {
        match self {
            Class::Pwl(c) => c.crossing.len(),
            Class::Max(c) => c.contests.len(),
        }
    }
}

/// A snapshot of one target over a polygon.
pub(crate) struct Base {
    /// The target whose pre-activations `z` holds (a stage, or `plan.stages.len()`).
    pub target: usize,
    /// Where the classification holds.
    pub poly: ConvexPolygon,
    /// Complete pre-activation map of the target, `3 × n`.
    pub z: Vec<f64>,
    /// Partial sums (biases included) of later targets, by target.
    pub partial: Vec<(usize, Vec<f64>)>,
    /// The classification over `poly` (`None` for the network output).
    pub class: Option<Class>,
    next: OnceLock<Arc<Base>>,
}

impl Base {
    /// A dense base for `target` with pre-activations `z` and partial sums `partial`,
    /// classified over `poly`.
    pub(crate) fn new(
        plan: &Plan,
        target: usize,
        poly: ConvexPolygon,
        z: Vec<f64>,
        partial: Vec<(usize, Vec<f64>)>,
        scratch: &mut pwl::Scratch,
    ) -> Self {
        let class = plan.stages.get(target).map(|stage| match &stage.nonlin {
            Nonlinearity::Pwl(l) => Class::Pwl(l.classify_all(&poly, &z, &stage.noise, scratch)),
            Nonlinearity::Max(l) => Class::Max(l.classify_all(&poly, &z, &stage.noise)),
        });
        Base { target, poly, z, partial, class, next: OnceLock::new() }
    }

    /// The base of the whole domain: the plane's three vectors through the input edges.
    pub(crate) fn root(plan: &Plan, rows: &[f64], poly: ConvexPolygon, scratch: &mut pwl::Scratch) -> Self {
        let mut partial = Vec::new();
        contribute(plan, Source::Input, rows, 1, std::slice::from_mut(&mut partial));
        let z = take_target(plan, &mut partial, 0);
        Base::new(plan, 0, poly, z, partial, scratch)
    }

    /// The base of the next target over the same polygon, if computed.
    pub(crate) fn next(&self) -> Option<&Arc<Base>> {
        self.next.get()
    }

    /// Computes [`Base::next`] for every base in `bases` (all of the same target) that lacks it,
    /// in one batched application of the stage's edges.
    pub(crate) fn compute_next(plan: &Plan, bases: &[&Arc<Base>], scratch: &mut Scratch) {
        let dense: Vec<&Arc<Base>> = bases.iter().copied().filter(|b| b.next.get().is_none()).collect();
        let Some(first) = dense.first() else { return };
        let s = first.target;
        let mut rows = Vec::with_capacity(dense.len() * 3 * plan.stages[s].n_out);
        for b in &dense {
            debug_assert_eq!(b.target, s);
            rows.extend_from_slice(b.class.as_ref().expect("a dense stage base is classified").t());
        }
        let mut partials: Vec<Vec<(usize, Vec<f64>)>> = dense.iter().map(|b| b.partial.clone()).collect();
        contribute(plan, Source::Stage(s), &rows, dense.len(), &mut partials);
        for (b, mut partial) in dense.into_iter().zip(partials) {
            let z = take_target(plan, &mut partial, s + 1);
            let next = Base::new(plan, s + 1, b.poly.clone(), z, partial, &mut scratch.pwl);
            // Another thread may have computed the same base meanwhile: both are identical.
            let _ = b.next.set(Arc::new(next));
        }
    }
}

/// Work arrays of base computations.
#[derive(Default)]
pub(crate) struct Scratch {
    pub pwl: pwl::Scratch,
    pub acc: Acc,
    pub seen: Seen,
}

/// Adds the edges of `source` applied to `m` maps (`rows`: `3·m` rows of the source's output)
/// to each map's partial sums (creating a target's partial sum from its bias).
fn contribute(plan: &Plan, source: Source, rows: &[f64], m: usize, partials: &mut [Vec<(usize, Vec<f64>)>]) {
    for edge in plan.edges(source) {
        let len = edge.map.n_out();
        let out = edge.map.apply_rows(rows, 3 * m);
        let n = plan.target_len(edge.target);
        for (k, partial) in partials.iter_mut().enumerate() {
            let sum = partial_of(plan, partial, edge.target);
            for r in 0..3 {
                let src = &out[(3 * k + r) * len..(3 * k + r + 1) * len];
                let dst = &mut sum[r * n + edge.offset..r * n + edge.offset + len];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        }
    }
}

/// The partial sum of `target` in `partial`, created from the target's bias when absent.
pub(crate) fn partial_of<'a>(plan: &Plan, partial: &'a mut Vec<(usize, Vec<f64>)>, target: usize) -> &'a mut Vec<f64> {
    let at = match partial.binary_search_by_key(&target, |p| p.0) {
        Ok(i) => i,
        Err(i) => {
            let n = plan.target_len(target);
            let mut v = vec![0.0; 3 * n];
            v[2 * n..].copy_from_slice(plan.target_bias(target));
            partial.insert(i, (target, v));
            i
        }
    };
    &mut partial[at].1
}

/// Removes and returns the (now complete) pre-activations of `target` (its bias alone when
/// nothing feeds it).
fn take_target(plan: &Plan, partial: &mut Vec<(usize, Vec<f64>)>, target: usize) -> Vec<f64> {
    partial_of(plan, partial, target);
    let i = partial.binary_search_by_key(&target, |p| p.0).expect("just created");
    partial.remove(i).1
}
