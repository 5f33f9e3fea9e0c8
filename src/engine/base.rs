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
//! The base of the next target over the same polygon ([`Base::next`]) comes in one of two ways.
//! A *dense* base (the root, or a cell rebased because most of its stage differs) applies every
//! edge to its default post-activations: one batched product for many bases (a GEMM for dense
//! layers, an im2col product per row for convolutions). A *derived* base is its parent (a base of
//! the same target over a larger polygon) plus corrections ([`Origin`]); its next base is derived
//! from the parent's next base the same way: a copy patched by the corrections pushed through the
//! edges, with the parent's classification patched where the corrections or the smaller polygon
//! change it (unless the corrections touch more than [`REBASE_FRACTION`] of its units: it is
//! then classified densely and becomes a dense base). A *virtual* base is only that origin: it
//! stands for the pieces of a large split tree inside its polygon, so that they share one next
//! base instead of each carrying many flips.

use super::acc::{live_after, scatter, Acc, Chunk};
use super::classify::{candidates, Seen};
use super::maxgroup;
use super::plan::{Nonlinearity, Plan, Source};
use super::pwl;
use crate::geometry::polygon::ConvexPolygon;
use std::sync::{Arc, OnceLock};

/// A cell is rebased, and a derived base made dense, when its candidate units (undecided over
/// the parent base, or touched by corrections) exceed this fraction of the stage: one
/// vectorised classification of every unit then costs less than classifying those one by one.
pub(crate) const REBASE_FRACTION: f64 = 0.25;

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

    /// The default post-activation map, shared.
    pub(crate) fn t_shared(&self) -> &Arc<Vec<f64>> {
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

/// How a derived base differs from its parent: corrections relative to the parent's defaults
/// (of the parent's stage, and of earlier stages still feeding later targets).
pub(crate) struct Origin {
    pub parent: Arc<Base>,
    pub chunks: Vec<Arc<Chunk>>,
}

/// A snapshot of one target over a polygon.
pub(crate) struct Base {
    /// The target whose pre-activations `z` holds (a stage, or `plan.stages.len()`).
    pub target: usize,
    /// Where the classification holds.
    pub poly: ConvexPolygon,
    /// Complete pre-activation map of the target, `3 × n` (empty for a virtual base).
    pub z: Arc<Vec<f64>>,
    /// Partial sums (biases included) of later targets, by target.
    pub partial: Vec<(usize, Vec<f64>)>,
    /// The classification over `poly` (`None` for the network output and virtual bases).
    pub class: Option<Class>,
    /// For a derived or virtual base: its parent and the corrections.
    pub origin: Option<Origin>,
    next: OnceLock<Arc<Base>>,
    /// The next target's pre-activations and partial sums over the same polygon, unclassified:
    /// what the dense path starts its pieces from (see [`Base::compute_next_unclassified`]).
    next_z: OnceLock<Arc<Base>>,
}

impl Base {
    /// A dense base for `target` with pre-activations `z` and partial sums `partial`,
    /// classified over `poly`.
    pub(crate) fn new(
        plan: &Plan,
        target: usize,
        poly: ConvexPolygon,
        z: impl Into<Arc<Vec<f64>>>,
        partial: Vec<(usize, Vec<f64>)>,
        scratch: &mut pwl::Scratch,
    ) -> Self {
        let z = z.into();
        let class = plan.stages.get(target).map(|stage| match &stage.nonlin {
            Nonlinearity::Pwl(l) => Class::Pwl(l.classify_all(&poly, &z, &stage.noise, scratch)),
            Nonlinearity::Max(l) => Class::Max(l.classify_all(&poly, &z, &stage.noise, scratch)),
        });
        Base { target, poly, z, partial, class, origin: None, next: OnceLock::new(), next_z: OnceLock::new() }
    }

    /// The base of the whole domain: the plane's three vectors through the input edges.
    pub(crate) fn root(plan: &Plan, rows: &[f64], poly: ConvexPolygon, scratch: &mut pwl::Scratch) -> Self {
        let mut partial = Vec::new();
        contribute(plan, Source::Input, &[rows], std::slice::from_mut(&mut partial));
        let z = take_target(plan, &mut partial, 0);
        Base::new(plan, 0, poly, z, partial, scratch)
    }

    /// A virtual base for the pieces inside `poly` of a split tree whose post-activations differ
    /// from `parent`'s defaults by `chunks`: their next base is derived once for all of them.
    pub(crate) fn virtual_base(parent: &Arc<Base>, poly: ConvexPolygon, chunks: Vec<Arc<Chunk>>) -> Self {
        Base {
            target: parent.target,
            poly,
            z: Arc::default(),
            partial: Vec::new(),
            class: None,
            origin: Some(Origin { parent: Arc::clone(parent), chunks }),
            next: OnceLock::new(),
            next_z: OnceLock::new(),
        }
    }

    /// The base of the next target over the same polygon, if computed.
    pub(crate) fn next(&self) -> Option<&Arc<Base>> {
        self.next.get()
    }

    /// The base of [`Base::compute_next_unclassified`], if computed.
    pub(crate) fn next_unclassified(&self) -> Option<&Arc<Base>> {
        self.next_z.get()
    }

    /// Computes, for every base in `bases` (all of the same target) that lacks it, the next
    /// target's pre-activations and partial sums over the same polygon without classifying
    /// them: the dense path classifies each piece on its own, so a classification over the
    /// whole polygon would go unused. Dense bases go through one batched application of the
    /// edges; derived and virtual ones patch their parents' (computed first).
    pub(crate) fn compute_next_unclassified(plan: &Plan, bases: &[&Arc<Base>], scratch: &mut Scratch) {
        let todo: Vec<&Arc<Base>> = bases.iter().copied().filter(|b| b.next_z.get().is_none()).collect();
        let (derived, dense): (Vec<&Arc<Base>>, Vec<&Arc<Base>>) = todo.into_iter().partition(|b| b.origin.is_some());
        if !derived.is_empty() {
            let mut parents: Vec<&Arc<Base>> = Vec::new();
            for b in &derived {
                let p = &b.origin.as_ref().expect("derived").parent;
                if p.next_z.get().is_none() && !parents.iter().any(|q| Arc::ptr_eq(q, p)) {
                    parents.push(p);
                }
            }
            Base::compute_next_unclassified(plan, &parents, scratch);
            for b in derived {
                let origin = b.origin.as_ref().expect("derived");
                let parent_next = origin.parent.next_z.get().expect("just computed");
                let chunks = live_after(plan, &origin.chunks, b.target);
                let t = parent_next.target;
                let partial = patched_partials(plan, &parent_next.partial, &chunks, t, &mut scratch.acc);
                scatter(plan, &chunks, t, &mut scratch.acc);
                let mut z = parent_next.z.to_vec();
                scratch.acc.add_to(&mut z);
                let _ = b.next_z.set(Arc::new(Base::unclassified(t, b.poly.clone(), z, partial)));
            }
        }
        let Some(first) = dense.first() else { return };
        let s = first.target;
        let maps: Vec<&[f64]> =
            dense.iter().map(|b| b.class.as_ref().expect("a dense stage base is classified").t()).collect();
        let mut partials: Vec<Vec<(usize, Vec<f64>)>> = dense.iter().map(|b| b.partial.clone()).collect();
        contribute(plan, Source::Stage(s), &maps, &mut partials);
        for (b, mut partial) in dense.into_iter().zip(partials) {
            let z = take_target(plan, &mut partial, s + 1);
            let _ = b.next_z.set(Arc::new(Base::unclassified(s + 1, b.poly.clone(), z, partial)));
        }
    }

    fn unclassified(
        target: usize,
        poly: ConvexPolygon,
        z: impl Into<Arc<Vec<f64>>>,
        partial: Vec<(usize, Vec<f64>)>,
    ) -> Self {
        Base {
            target,
            poly,
            z: z.into(),
            partial,
            class: None,
            origin: None,
            next: OnceLock::new(),
            next_z: OnceLock::new(),
        }
    }

    /// Computes [`Base::next`] for every base in `bases` (all of the same target) that lacks it:
    /// dense bases in one batched application of the stage's edges, derived and virtual ones from
    /// their parents' next bases.
    pub(crate) fn compute_next(plan: &Plan, bases: &[&Arc<Base>], scratch: &mut Scratch) {
        let todo: Vec<&Arc<Base>> = bases.iter().copied().filter(|b| b.next.get().is_none()).collect();
        let (derived, dense): (Vec<&Arc<Base>>, Vec<&Arc<Base>>) = todo.into_iter().partition(|b| b.origin.is_some());
        if !derived.is_empty() {
            // Parents first (and theirs, recursively, when they lack them).
            let mut parents: Vec<&Arc<Base>> = Vec::new();
            for b in &derived {
                let p = &b.origin.as_ref().expect("derived").parent;
                if p.next.get().is_none() && !parents.iter().any(|q| Arc::ptr_eq(q, p)) {
                    parents.push(p);
                }
            }
            Base::compute_next(plan, &parents, scratch);
            for b in derived {
                let origin = b.origin.as_ref().expect("derived");
                let parent_next = origin.parent.next.get().expect("just computed");
                let chunks = live_after(plan, &origin.chunks, b.target);
                let next = derive(plan, parent_next, b.poly.clone(), chunks, scratch);
                let _ = b.next.set(Arc::new(next));
            }
        }
        let Some(first) = dense.first() else { return };
        let s = first.target;
        let t0 = first.class.as_ref().expect("a dense stage base is classified").t();
        if let Some(bias) = identity_edge(plan, s, t0.len()).filter(|_| first.partial.is_empty()) {
            // A max-pool right after a ReLU: the next pre-activations are the post-activations
            // plus the bias, made without the batched product's copies (the same sums), and
            // shared rather than copied when the bias is zero.
            let zero_bias = bias.iter().all(|&b| b == 0.0);
            for b in dense {
                let t = b.class.as_ref().expect("a dense stage base is classified").t_shared();
                let z = if zero_bias {
                    Arc::clone(t)
                } else {
                    let n = bias.len();
                    let mut z = t.to_vec();
                    z[2 * n..].iter_mut().zip(bias).for_each(|(d, b)| *d += b);
                    Arc::new(z)
                };
                let next = Base::new(plan, s + 1, b.poly.clone(), z, b.partial.clone(), &mut scratch.pwl);
                let _ = b.next.set(Arc::new(next));
            }
            return;
        }
        let maps: Vec<&[f64]> =
            dense.iter().map(|b| b.class.as_ref().expect("a dense stage base is classified").t()).collect();
        let mut partials: Vec<Vec<(usize, Vec<f64>)>> = dense.iter().map(|b| b.partial.clone()).collect();
        contribute(plan, Source::Stage(s), &maps, &mut partials);
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

/// The base of `parent`'s target over `poly` (inside `parent.poly`) whose pre-activations are
/// `parent`'s plus `chunks` pushed through the edges: a patched copy of `parent`.
pub(crate) fn derive(
    plan: &Plan,
    parent: &Arc<Base>,
    poly: ConvexPolygon,
    chunks: Vec<Arc<Chunk>>,
    scratch: &mut Scratch,
) -> Base {
    let s = parent.target;
    let partial = patched_partials(plan, &parent.partial, &chunks, s, &mut scratch.acc);
    scatter(plan, &chunks, s, &mut scratch.acc);
    let mut z = parent.z.to_vec();
    scratch.acc.add_to(&mut z);
    let Some(stage) = plan.stages.get(s) else {
        // The network output: nothing to classify.
        return Base::unclassified(s, poly, z, partial);
    };
    let parent_class = parent.class.as_ref().expect("a stage base is classified");
    if (parent_class.undecided() + scratch.acc.count()) as f64 > REBASE_FRACTION * stage.n_in as f64 {
        // Most units differ from the parent's: a dense base of its own (its next base then
        // comes from the batched product, not from the parent's).
        return Base::new(plan, s, poly, z, partial, &mut scratch.pwl);
    }
    let found = candidates(stage, parent, &scratch.acc, &poly, &mut scratch.seen);
    let class = match (parent.class.as_ref().expect("a stage base is classified"), &stage.nonlin) {
        (Class::Pwl(c), Nonlinearity::Pwl(layer)) => {
            let (mut t, mut bits) = (c.t.to_vec(), c.bits.clone());
            patch(&mut t, &mut bits, &found.verdicts, layer.n_slots());
            let crossing = found.crossing.iter().map(|(x, _)| *x).collect();
            Class::Pwl(pwl::Classified { t: t.into(), crossing, bits })
        }
        (Class::Max(c), Nonlinearity::Max(layer)) => {
            let (mut t, mut bits) = (c.t.to_vec(), c.bits.clone());
            patch(&mut t, &mut bits, &found.verdicts, layer.bits());
            Class::Max(maxgroup::Classified { t: t.into(), contests: found.contests, bits })
        }
        _ => unreachable!("a base's classification matches its stage"),
    };
    // Relative to the parent, this base's own defaults differ where the candidates changed.
    let mut origin = live_after(plan, &chunks, s);
    if !found.changes.is_empty() {
        origin.push(Arc::new(Chunk { source: s, corrs: found.changes }));
    }
    Base {
        target: s,
        poly,
        z: z.into(),
        partial,
        class: Some(class),
        origin: Some(Origin { parent: Arc::clone(parent), chunks: origin }),
        next: OnceLock::new(),
        next_z: OnceLock::new(),
    }
}

/// The partial sums of later targets than `s`: `partial` plus `chunks` pushed through the edges
/// into them (creating the sums of targets that had none yet).
pub(crate) fn patched_partials(
    plan: &Plan,
    partial: &[(usize, Vec<f64>)],
    chunks: &[Arc<Chunk>],
    s: usize,
    acc: &mut Acc,
) -> Vec<(usize, Vec<f64>)> {
    let mut out = partial.to_vec();
    let mut targets: Vec<usize> = out.iter().map(|p| p.0).collect();
    for chunk in chunks {
        targets.extend(plan.edges(Source::Stage(chunk.source)).iter().map(|e| e.target).filter(|&t| t > s));
    }
    targets.sort_unstable();
    targets.dedup();
    for t in targets {
        scatter(plan, chunks, t, acc);
        acc.add_to(partial_of(plan, &mut out, t));
    }
    out
}

/// Writes the verdicts' post-activations and pattern bits (`width` bits each) into copies of a
/// parent's classification.
fn patch(t: &mut [f64], bits: &mut [u64], verdicts: &[super::classify::Verdict], width: usize) {
    let m = t.len() / 3;
    for v in verdicts {
        let i = v.index as usize;
        t[i] = v.t[0];
        t[m + i] = v.t[1];
        t[2 * m + i] = v.t[2];
        for k in 0..width {
            let bit = i * width + k;
            let (w, mask) = (bit / 64, 1u64 << (bit % 64));
            if v.bits >> k & 1 == 1 {
                bits[w] |= mask;
            } else {
                bits[w] &= !mask;
            }
        }
    }
}

/// When stage `s` feeds only stage `s + 1`, by one identity edge covering it (a max-pool right
/// after a ReLU) and its post-activations have `len` entries: the next target's bias.
fn identity_edge(plan: &Plan, s: usize, len: usize) -> Option<&[f64]> {
    let edges = plan.edges(Source::Stage(s));
    let [edge] = edges else { return None };
    let n = plan.target_len(s + 1);
    if edge.target != s + 1 || !edge.map.is_identity() || edge.offset != 0 || len != 3 * n {
        return None;
    }
    Some(plan.target_bias(s + 1))
}

/// Adds the edges of `source` applied to `maps` (each `3 × n` of the source's output) to each
/// map's partial sums (creating a target's partial sum from its bias).
fn contribute(plan: &Plan, source: Source, maps: &[&[f64]], partials: &mut [Vec<(usize, Vec<f64>)>]) {
    for edge in plan.edges(source) {
        let len = edge.map.n_out();
        let out = edge.map.apply_maps(maps);
        let n = plan.target_len(edge.target);
        for (k, partial) in partials.iter_mut().enumerate() {
            let rows_k = &out[3 * k * len..3 * (k + 1) * len];
            if len == n {
                if let Err(at) = partial.binary_search_by_key(&edge.target, |p| p.0) {
                    // The first contribution to the whole target: the rows plus the bias (the
                    // same sums as adding them to a bias-initialised partial).
                    let mut v = rows_k.to_vec();
                    v[2 * n..].iter_mut().zip(plan.target_bias(edge.target)).for_each(|(d, b)| *d += b);
                    partial.insert(at, (edge.target, v));
                    continue;
                }
            }
            let sum = partial_of(plan, partial, edge.target);
            for r in 0..3 {
                let src = &rows_k[r * len..(r + 1) * len];
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
