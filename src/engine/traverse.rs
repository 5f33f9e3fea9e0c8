//! The traversal: cells through the stages, depth-first in bounded batches.
//!
//! A *cell* is a convex polygon (frame coordinates) with a [`Base`] of its stage whose polygon
//! contains it, and *corrections*: for a few units of earlier stages, how the cell's
//! post-activation differs from the base's default (`Δt`). The cell's pre-activations are the
//! base's plus every correction pushed through the edges into the stage (a column each: a
//! convolution's stencil, an identity, or a dense column).
//!
//! Classifying a cell looks only at the units that can change relative to its base: those whose
//! lines cross the base's polygon, and those the corrections touch. A cell whose candidates are
//! a large share of the stage is *rebased*: it becomes a base of its own (a dense copy and one
//! vectorised classification), as every cell of a dense layer does. Each cell is then split by its
//! crossing units; every piece records its flips as corrections, and goes on to the next stage
//! with the base of the next stage over the same polygon, computed once per base and batched.
//!
//! Large split trees and large batches fork with `rayon::join`; the forks depend only on the
//! data, and every fork owns its sinks, so the result is identical for any thread count.

use super::acc::{live_after, scatter, Chunk};
use super::base::{Base, Class};
use super::classify::candidates as candidates_of;
use super::collect::{Collect, Finished};
use super::maxgroup::Contest;
use super::plan::{Nonlinearity, Plan, Stage};
use super::{EngineError, Options};
use crate::geometry::polygon::{ConvexPolygon, Side, Split};
use crate::pattern::Pattern;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// Cells processed together (one batched product for their bases' next stage).
pub const BATCH: usize = 128;
/// Forks per split tree are limited to this depth (2^depth tasks at most per cell): every fork
/// flushes its own partial batches, so deeper forking everywhere fragments the batches (12 was
/// 6% slower on LeNet-5).
const MAX_FORK_DEPTH: u32 = 7;
/// The root cell's split tree (the first stage over the whole domain) forks deeper: its
/// subtrees are the largest tasks of a run, and with 2^7 of them the run often ended on one or
/// two of them alone (0.3–1 s at about one busy core on LeNet-5's 2.5 s; 2^10: 3% faster on
/// two threads, the same on one).
const ROOT_FORK_DEPTH: u32 = 10;
/// A split tree forks only while at least this many splitters remain.
const MIN_FORK_SPLITTERS: usize = 12;
/// A batch forks into halves while it holds at least this many splitters in all.
const MIN_FORK_BATCH: usize = 64;
use super::base::REBASE_FRACTION;
/// In the split tree of a cell that is its own base, a piece whose area fell by this factor
/// since its base's, and which at least [`SUB_CROSSING`] of the remaining lines cross, gets a
/// (virtual) base of its own: the many pieces below it then share one next base.
const SUB_AREA: f64 = 4.0;
const SUB_CROSSING: usize = 8;
/// A cell entering a stage.
pub(crate) struct Cell {
    poly: ConvexPolygon,
    base: Arc<Base>,
    chunks: Vec<Arc<Chunk>>,
    pattern: Pattern,
    /// The cell's pre-activations, when its parent's split tree made them (fully connected
    /// layers, see [`dense_next`]); `base` is then already of the cell's stage and holds only the
    /// partial sums of later targets.
    dense: Option<Vec<f64>>,
}

/// What a run produced.
pub(crate) struct Output<C> {
    /// Cells after each stage.
    pub per_stage: Vec<u64>,
    /// Final region count.
    pub count: u64,
    /// Sum of final areas (frame coordinates).
    pub area_sum: f64,
    /// Pieces dropped for having no positive area (the tolerance rule guarantees none).
    pub dropped: u64,
    /// Per stage, for tuning (`TESSERA_DEBUG`): cells classified sparsely against a shared
    /// base, cells rebased, corrections scattered, candidate units, splitters, corrections, and
    /// nanoseconds spent classifying, making dense-path next bases, and moving bases to the next
    /// stage (timed only with `TESSERA_DEBUG`).
    pub debug: Vec<[u64; DEBUG_FIELDS]>,
    /// The regions went here.
    pub collect: C,
}

impl<C: Collect> Output<C> {
    fn merge(&mut self, other: Output<C>) {
        for (a, b) in self.per_stage.iter_mut().zip(&other.per_stage) {
            *a += b;
        }
        self.count += other.count;
        self.area_sum += other.area_sum;
        self.dropped += other.dropped;
        for (a, b) in self.debug.iter_mut().zip(&other.debug) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        self.collect.absorb(other.collect);
    }
}

/// Entries of [`Output::debug`] per stage.
pub(crate) const DEBUG_FIELDS: usize = 9;

/// Nanoseconds since `t` when timing (`TESSERA_DEBUG`), else 0.
fn nanos(t: Option<std::time::Instant>) -> u64 {
    t.map_or(0, |t| t.elapsed().as_nanos() as u64)
}

/// Why a run stopped early (0: it did not).
pub(crate) const STOP_REGIONS: u8 = 1;
pub(crate) const STOP_TIME: u8 = 2;
pub(crate) const STOP_MEMORY: u8 = 3;
pub(crate) const STOP_CANCEL: u8 = 4;

/// Shared state of one run.
pub(crate) struct Ctx<'a, C> {
    pub plan: &'a Plan,
    pub opts: &'a Options,
    /// Whether regions need their output maps and patterns.
    pub full: bool,
    /// The collector forks come from.
    pub proto: &'a C,
    pub produced: AtomicU64,
    pub kept_bytes: AtomicU64,
    pub stop: AtomicU8,
    pub start: std::time::Instant,
    /// Whether to time the phases of every stage (`TESSERA_DEBUG`).
    pub timing: bool,
}

impl<C> Ctx<'_, C> {
    fn clock(&self) -> Option<std::time::Instant> {
        self.timing.then(std::time::Instant::now)
    }
}

impl<C: Collect> Ctx<'_, C> {
    pub(crate) fn empty(&self) -> Output<C> {
        self.output(self.proto.fork())
    }

    fn output(&self, collect: C) -> Output<C> {
        let n = self.plan.stages.len();
        Output {
            per_stage: vec![0; n],
            count: 0,
            area_sum: 0.0,
            dropped: 0,
            debug: vec![[0; DEBUG_FIELDS]; n],
            collect,
        }
    }

    fn aborted(&self) -> bool {
        self.stop.load(Ordering::Relaxed) != 0
    }

    fn halt(&self, reason: u8) {
        let _ = self.stop.compare_exchange(0, reason, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Frame area of the root polygon (the square, or the clip rectangle): progress shares.
    fn root_area(&self) -> f64 {
        self.opts.clip.map_or(4.0, |[s0, s1, t0, t1]| (s1 - s0) * (t1 - t0))
    }

    /// Checks the time budget; true when the run must stop.
    fn out_of_time(&self) -> bool {
        if self.opts.time_limit.is_some_and(|t| self.start.elapsed() > t) {
            self.halt(STOP_TIME);
        }
        if self.opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            self.halt(STOP_CANCEL);
        }
        self.aborted()
    }

    pub(crate) fn result(&self) -> Result<(), EngineError> {
        match self.stop.load(Ordering::Relaxed) {
            0 => Ok(()),
            STOP_REGIONS => Err(EngineError::TooManyRegions { limit: self.opts.max_regions.unwrap_or(0) }),
            STOP_TIME => Err(EngineError::TimeLimit { seconds: self.opts.time_limit.map_or(0.0, |t| t.as_secs_f64()) }),
            STOP_CANCEL => Err(EngineError::Cancelled),
            _ => Err(EngineError::MemoryLimit { megabytes: self.opts.memory_limit.unwrap_or(0) >> 20 }),
        }
    }
}

/// Per-thread work arrays.
#[derive(Default)]
struct Scratch {
    base: super::base::Scratch,
    /// Candidates and corrections of the last classified cell (for tuning statistics).
    candidates: usize,
    corrections: usize,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A unit (or group) whose breakpoint crosses a cell.
enum Splitter {
    /// Hinge `slot` of `unit` (pre-activation map `z`); `above`: the cell assumes the side above.
    Hinge { unit: u32, slot: u8, above: bool, z: [f64; 3] },
    /// A max group whose candidates `(position, map, noise floor)` can each win somewhere, and
    /// the default position the cell assumes (with its candidate's map).
    Max { group: u32, alive: Vec<(u32, [f64; 3], f64)>, default: (u32, [f64; 3]) },
}

/// A classified cell, ready to be split.
struct Ready {
    cell: Cell,
    splitters: Vec<Splitter>,
    /// The cell's own corrections of this stage (`Δt` relative to its base).
    common: Option<Arc<Chunk>>,
}

/// Classifies `cell` at stage `s`, rebasing it when most of the stage is a candidate.
fn classify<C: Collect>(ctx: &Ctx<'_, C>, s: usize, mut cell: Cell, scratch: &mut Scratch) -> (Ready, bool) {
    let plan = ctx.plan;
    let stage = &plan.stages[s];
    let sc = &mut scratch.base;
    if let Some(z) = cell.dense.take() {
        // Pre-activations made in the parent's split tree (a fully connected layer): the cell
        // becomes a base of its own.
        scratch.candidates = stage.n_in;
        let base = Base::new(plan, s, cell.poly.clone(), z, cell.base.partial.clone(), &mut sc.pwl);
        cell.base = Arc::new(base);
        if ctx.full {
            let words = cell.base.class.as_ref().expect("classified").bits();
            let first = stage.bit_offset / 64;
            cell.pattern.0[first..first + words.len()].copy_from_slice(words);
        }
        let splitters = base_splitters(stage, &cell.base);
        return (Ready { cell, splitters, common: None }, true);
    }
    let class = cell.base.class.as_ref().expect("stage bases are classified");
    scatter(plan, &cell.chunks, s, &mut sc.acc);
    let candidates = class.undecided() + sc.acc.count();
    scratch.candidates = candidates;
    scratch.corrections = cell.chunks.iter().map(|c| c.corrs.len()).sum();
    let rebase = ctx.opts.dense_reference || candidates as f64 > REBASE_FRACTION * stage.n_in as f64;
    let own = is_own_base(&cell);
    if rebase && !own {
        cell = rebase_cell(plan, cell, sc);
    }
    let class = cell.base.class.as_ref().expect("stage bases are classified");
    if ctx.full {
        let words = class.bits();
        let first = stage.bit_offset / 64;
        cell.pattern.0[first..first + words.len()].copy_from_slice(words);
    }
    if rebase || own {
        // The cell is its base: every undecided unit crosses it, nothing differs.
        let splitters = base_splitters(stage, &cell.base);
        return (Ready { cell, splitters, common: None }, true);
    }
    let found = candidates_of(stage, &cell.base, &sc.acc, &cell.poly, &mut sc.seen);
    if ctx.full {
        let width = match &stage.nonlin {
            Nonlinearity::Pwl(l) => l.n_slots(),
            Nonlinearity::Max(l) => l.bits(),
        };
        for v in &found.verdicts {
            cell.pattern.set_bits(stage.bit_offset + v.index as usize * width, width, v.bits);
        }
    }
    let n = stage.n_in;
    let z = &cell.base.z;
    let acc = &sc.acc;
    let z_of = |u: usize| {
        let d = acc.get(u);
        [z[u] + d[0], z[n + u] + d[1], z[2 * n + u] + d[2]]
    };
    let mut splitters: Vec<Splitter> = found
        .crossing
        .iter()
        .map(|&(x, z)| Splitter::Hinge { unit: x.unit, slot: x.slot, above: x.above, z })
        .collect();
    if let Nonlinearity::Max(layer) = &stage.nonlin {
        splitters
            .extend(found.contests.iter().map(|k| max_splitter(layer.group(k.group as usize), k, &stage.noise, z_of)));
    }
    let common = (!found.changes.is_empty()).then(|| Arc::new(Chunk { source: s, corrs: found.changes }));
    (Ready { cell, splitters, common }, false)
}

/// Whether the cell is exactly its base (the root, or a cell just rebased).
fn is_own_base(cell: &Cell) -> bool {
    cell.chunks.is_empty() && cell.base.poly.pts == cell.poly.pts
}

/// The cell becomes a dense base of its own: its pre-activations and pending partial sums made
/// dense, and every unit classified (the vectorised path, for cells where most units differ).
fn rebase_cell(plan: &Plan, cell: Cell, scratch: &mut super::base::Scratch) -> Cell {
    let s = cell.base.target;
    let mut z = cell.base.z.to_vec();
    scratch.acc.add_to(&mut z);
    let partial = super::base::patched_partials(plan, &cell.base.partial, &cell.chunks, s, &mut scratch.acc);
    let base = Base::new(plan, s, cell.poly.clone(), z, partial, &mut scratch.pwl);
    Cell { poly: cell.poly, base: Arc::new(base), chunks: Vec::new(), pattern: cell.pattern, dense: None }
}

/// Whether the pieces leaving stage `s` get their next pre-activations in the split tree, copied
/// at every split and updated by one column per flip, as in a plain MLP engine: when every edge of
/// the stage is dense and feeds the next target only. Every flip then changes every next unit,
/// and sharing the updates along the tree beats applying each piece's flips on its own.
fn dense_next<C: Collect>(ctx: &Ctx<'_, C>, s: usize) -> bool {
    let edges = &ctx.plan.stages[s].edges;
    !ctx.opts.dense_reference
        && (s + 1 < ctx.plan.stages.len() || ctx.full)
        && !edges.is_empty()
        && edges.iter().all(|e| e.target == s + 1 && e.map.is_dense())
}

/// Splitters of a cell that is its own base: every undecided unit of the base.
fn base_splitters(stage: &Stage, base: &Base) -> Vec<Splitter> {
    let n = stage.n_in;
    let z = &base.z;
    let unit = |u: usize| [z[u], z[n + u], z[2 * n + u]];
    match (&stage.nonlin, base.class.as_ref()) {
        (Nonlinearity::Pwl(_), Some(Class::Pwl(c))) => c
            .crossing
            .iter()
            .map(|x| Splitter::Hinge { unit: x.unit, slot: x.slot, above: x.above, z: unit(x.unit as usize) })
            .collect(),
        (Nonlinearity::Max(layer), Some(Class::Max(c))) => {
            c.contests.iter().map(|k| max_splitter(layer.group(k.group as usize), k, &stage.noise, unit)).collect()
        }
        _ => unreachable!("a base's classification matches its stage"),
    }
}

fn max_splitter(group: &[u32], k: &Contest, noise: &[f64], unit: impl Fn(usize) -> [f64; 3]) -> Splitter {
    let alive = k.alive.iter().map(|&(pos, u)| (pos, unit(u as usize), noise[u as usize])).collect();
    let default = (k.default, unit(group[k.default as usize] as usize));
    Splitter::Max { group: k.group, alive, default }
}

/// A piece of a cell on its way through the cell's splitters.
struct Branch {
    poly: ConvexPolygon,
    pattern: Pattern,
    /// Corrections of this stage relative to the defaults of `base` (or of the cell's base).
    flips: Vec<(u32, [f64; 3])>,
    /// The piece's next pre-activations, on the dense path (see [`dense_next`]).
    z: Option<Vec<f64>>,
    /// A virtual base for this piece inside the split tree, and the area at which the last one
    /// was considered.
    base: Option<Arc<Base>>,
    base_area: f64,
}

impl Branch {
    /// A piece of this branch (same flips and bases so far).
    fn piece(&self, poly: ConvexPolygon) -> Branch {
        Branch {
            poly,
            pattern: self.pattern.clone(),
            flips: self.flips.clone(),
            z: self.z.clone(),
            base: self.base.clone(),
            base_area: self.base_area,
        }
    }
}

/// Collects the cells leaving one stage and runs the next stage on full batches.
struct Sink<C> {
    /// The stage the cells left.
    stage: usize,
    buf: Vec<Cell>,
    out: Output<C>,
}

impl<C: Collect> Sink<C> {
    fn new(ctx: &Ctx<'_, C>, stage: usize) -> Self {
        Sink { stage, buf: Vec::with_capacity(BATCH), out: ctx.empty() }
    }

    fn push(&mut self, ctx: &Ctx<'_, C>, cell: Cell) {
        self.out.per_stage[self.stage] += 1;
        self.buf.push(cell);
        if self.buf.len() >= BATCH {
            self.flush(ctx);
        }
    }

    fn flush(&mut self, ctx: &Ctx<'_, C>) {
        if self.buf.is_empty() {
            return;
        }
        let mut cells = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH));
        let last = self.stage + 1 == ctx.plan.stages.len();
        if !last || ctx.full {
            // The cells' bases move to the next target: computed once per base, batched.
            // (Cells from the dense path already have theirs.)
            let mut bases: Vec<&Arc<Base>> = Vec::with_capacity(cells.len());
            for c in cells.iter().filter(|c| c.dense.is_none()) {
                if bases.last().is_none_or(|b| !Arc::ptr_eq(b, &c.base)) {
                    bases.push(&c.base);
                }
            }
            let t0 = ctx.clock();
            SCRATCH.with(|s| Base::compute_next(ctx.plan, &bases, &mut s.borrow_mut().base));
            self.out.debug[self.stage][8] += nanos(t0);
            for c in cells.iter_mut().filter(|c| c.dense.is_none()) {
                let next = Arc::clone(c.base.next().expect("just computed"));
                c.base = next;
            }
        }
        if last {
            for c in cells {
                emit(ctx, c, &mut self.out);
            }
        } else {
            process_batch(ctx, self.stage + 1, cells, &mut self.out);
        }
    }

    fn finish(mut self, ctx: &Ctx<'_, C>) -> Output<C> {
        self.flush(ctx);
        self.out
    }
}

/// Emits a cell that went through every stage (its base is the output's, when maps are kept).
pub(crate) fn emit<C: Collect>(ctx: &Ctx<'_, C>, cell: Cell, out: &mut Output<C>) {
    if ctx.aborted() {
        return;
    }
    let area = cell.poly.area();
    // Every piece keeps a vertex off each cutting line (see `predicates`), so its area is
    // positive; count any exception rather than emit it.
    if area.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        out.dropped += 1;
        return;
    }
    let total = ctx.produced.fetch_add(1, Ordering::Relaxed) + 1;
    if ctx.opts.max_regions.is_some_and(|limit| total > limit) {
        ctx.halt(STOP_REGIONS);
        return;
    }
    if total.is_multiple_of(1024) && ctx.out_of_time() {
        return;
    }
    if let Some(p) = &ctx.opts.progress {
        p.add(area / ctx.root_area());
    }
    out.count += 1;
    out.area_sum += area;
    let (map, pattern) = if ctx.full {
        let map = cell.dense.unwrap_or_else(|| {
            let mut map = cell.base.z.to_vec();
            SCRATCH.with(|s| {
                let acc = &mut s.borrow_mut().base.acc;
                scatter(ctx.plan, &cell.chunks, ctx.plan.stages.len(), acc);
                acc.add_to(&mut map);
            });
            map
        });
        (map, cell.pattern)
    } else {
        (Vec::new(), Pattern::default())
    };
    let bytes = out.collect.take(Finished { poly: cell.poly, area, map, pattern });
    if bytes > 0 {
        let kept = ctx.kept_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if ctx.opts.memory_limit.is_some_and(|m| kept > m) {
            ctx.halt(STOP_MEMORY);
        }
    }
}

/// Runs stage `s` on a batch of cells, appending everything downstream to `out`.
pub(crate) fn process_batch<C: Collect>(ctx: &Ctx<'_, C>, s: usize, cells: Vec<Cell>, out: &mut Output<C>) {
    if ctx.out_of_time() {
        return;
    }
    let t0 = ctx.clock();
    let ready: Vec<Ready> = SCRATCH.with(|sc| {
        let sc = &mut *sc.borrow_mut();
        cells
            .into_iter()
            .map(|c| {
                let (r, rebased) = classify(ctx, s, c, sc);
                let d = &mut out.debug[s];
                d[usize::from(rebased)] += 1;
                d[2] += sc.base.acc.count() as u64;
                d[3] += sc.candidates as u64;
                d[4] += r.splitters.len() as u64;
                d[5] += sc.corrections as u64;
                r
            })
            .collect()
    });
    out.debug[s][6] += nanos(t0);
    let t0 = ctx.clock();
    if dense_next(ctx, s) {
        // The pieces' next pre-activations are made in the split trees: the cells' next bases
        // first, in one batched product.
        let mut bases: Vec<&Arc<Base>> = Vec::with_capacity(ready.len());
        for r in &ready {
            if bases.last().is_none_or(|b| !Arc::ptr_eq(b, &r.cell.base)) {
                bases.push(&r.cell.base);
            }
        }
        SCRATCH.with(|sc| Base::compute_next_unclassified(ctx.plan, &bases, &mut sc.borrow_mut().base));
    }
    out.debug[s][7] += nanos(t0);
    let mut sink = Sink::new(ctx, s);
    split_cells(ctx, s, ready, &mut sink);
    out.merge(sink.finish(ctx));
}

/// Splits a list of classified cells, forking into halves while there is enough work.
fn split_cells<C: Collect>(ctx: &Ctx<'_, C>, s: usize, mut ready: Vec<Ready>, sink: &mut Sink<C>) {
    let work: usize = ready.iter().map(|r| r.splitters.len()).sum();
    if ready.len() >= 2 && work >= MIN_FORK_BATCH {
        let tail = ready.split_off(ready.len() / 2);
        let right = rayon::join(
            || split_cells(ctx, s, ready, sink),
            || {
                let mut own = Sink::new(ctx, s);
                split_cells(ctx, s, tail, &mut own);
                own.finish(ctx)
            },
        )
        .1;
        sink.out.merge(right);
        return;
    }
    let plan = ctx.plan;
    let dense = dense_next(ctx, s);
    for r in ready {
        let Ready { cell, splitters, common } = r;
        let Cell { poly, base, chunks, pattern, .. } = cell;
        // Corrections that still feed a later stage, then this stage's own.
        let mut live = live_after(plan, &chunks, s);
        live.extend(common);
        let own = live.is_empty();
        let base_area = poly.area();
        let mut branch = Branch { poly, pattern, flips: Vec::new(), z: None, base: None, base_area };
        let next = match base.next_unclassified() {
            Some(next) if dense && live.iter().all(|c| plan.stages[c.source].last_target() <= s + 1) => {
                // The dense path: the next pre-activations, with every correction folded in.
                let mut z = next.z.to_vec();
                SCRATCH.with(|sc| {
                    let acc = &mut sc.borrow_mut().base.acc;
                    scatter(plan, &live, s + 1, acc);
                    acc.add_to(&mut z);
                });
                branch.z = Some(z);
                live.clear();
                Some(Arc::clone(next))
            }
            _ => None,
        };
        let edges = &plan.stages[s].edges;
        let leaf = Leaf { base: &base, live: &live, own, dense_reference: ctx.opts.dense_reference, next, edges };
        let list: Vec<&Splitter> = splitters.iter().collect();
        split_rec(ctx, s, &leaf, branch, &list, sink, 0);
    }
}

/// What the leaves of one cell share.
struct Leaf<'a> {
    base: &'a Arc<Base>,
    live: &'a [Arc<Chunk>],
    /// Whether the cell is its base (no corrections): its pieces may get bases of their own.
    own: bool,
    /// The reference path (no virtual bases).
    dense_reference: bool,
    /// On the dense path, the next base (holding the partial sums of later targets).
    next: Option<Arc<Base>>,
    /// The stage's edges (for flips on the dense path).
    edges: &'a [super::plan::Edge],
}

impl Leaf<'_> {
    fn cell(&self, s: usize, b: Branch) -> Cell {
        if let Some(z) = b.z {
            let base = Arc::clone(self.next.as_ref().expect("the dense path has the next base"));
            return Cell { poly: b.poly, base, chunks: Vec::new(), pattern: b.pattern, dense: Some(z) };
        }
        let mut chunks = self.live.to_vec();
        if !b.flips.is_empty() {
            chunks.push(Arc::new(Chunk { source: s, corrs: b.flips }));
        }
        let base = b.base.unwrap_or_else(|| Arc::clone(self.base));
        Cell { poly: b.poly, base, chunks, pattern: b.pattern, dense: None }
    }

    /// Gives a piece of a large split tree a virtual base of its own (see [`SUB_AREA`]), into
    /// which its flips so far are folded. The remaining splitters that do not cross the piece
    /// are decided for it here, once (their flips folded into the base too), and the crossing
    /// ones are returned: the pieces below then test only those.
    fn maybe_base<'s>(
        &self,
        s: usize,
        stage: &Stage,
        b: &mut Branch,
        rest: &[&'s Splitter],
        full: bool,
    ) -> Option<Vec<&'s Splitter>> {
        if !self.own || b.z.is_some() || rest.len() < SUB_CROSSING || self.dense_reference {
            return None;
        }
        let area = b.poly.area();
        if area * SUB_AREA > b.base_area {
            return None;
        }
        b.base_area = area;
        if crossing_count(stage, &b.poly, rest, SUB_CROSSING) < SUB_CROSSING {
            return None;
        }
        let mut crossing = Vec::with_capacity(rest.len());
        for &sp in rest {
            if !self.decide(stage, b, sp, full) {
                crossing.push(sp);
            }
        }
        let parent = b.base.as_ref().unwrap_or(self.base);
        let flips = std::mem::take(&mut b.flips);
        let chunks = if flips.is_empty() { Vec::new() } else { vec![Arc::new(Chunk { source: s, corrs: flips })] };
        b.base = Some(Arc::new(Base::virtual_base(parent, b.poly.clone(), chunks)));
        Some(crossing)
    }

    /// Decides `sp` for the whole piece `b` when it does not cut it (recording the flip when
    /// the piece is off the splitter's default); false when it cuts.
    fn decide(&self, stage: &Stage, b: &mut Branch, sp: &Splitter, full: bool) -> bool {
        match (sp, &stage.nonlin) {
            (Splitter::Hinge { unit, slot, above, z }, Nonlinearity::Pwl(layer)) => {
                let u = *unit as usize;
                let side = layer.side(&b.poly, u, *slot as usize, *z, stage.noise[u]);
                let is_above = match side {
                    Side::Crossing => return false,
                    Side::Above => true,
                    Side::Below | Side::OnLine => false,
                };
                if is_above != *above {
                    let coef = layer.hinge_coef(u, *slot as usize, *z);
                    self.flip_hinge(stage, b, *unit, *slot, *above, coef, full);
                }
                true
            }
            (Splitter::Max { group, alive, default }, Nonlinearity::Max(layer)) => {
                let cells = layer.winner_cells(&b.poly, alive);
                if cells.len() != 1 {
                    return false;
                }
                self.set_winner(stage, b, *group, alive, *default, cells[0].0, full);
                true
            }
            _ => unreachable!("splitters match their stage"),
        }
    }

    /// Moves `b` from the assumed side of a hinge (`above`) to the other one.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn flip_hinge(&self, stage: &Stage, b: &mut Branch, unit: u32, slot: u8, above: bool, coef: [f64; 3], full: bool) {
        let Nonlinearity::Pwl(layer) = &stage.nonlin else { unreachable!("hinge splitter in a max stage") };
        let bit = stage.bit_offset + unit as usize * layer.n_slots() + slot as usize;
        if above {
            self.record(b, unit, coef.map(|c| -c));
            if full {
                b.pattern.clear_bit(bit);
            }
        } else {
            self.record(b, unit, coef);
            if full {
                b.pattern.set_bit(bit);
            }
        }
    }

    /// Records that candidate `pos` of max group `group` wins on `b` (a flip when it is not
    /// the default).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn set_winner(
        &self,
        stage: &Stage,
        b: &mut Branch,
        group: u32,
        alive: &[(u32, [f64; 3], f64)],
        default: (u32, [f64; 3]),
        pos: u32,
        full: bool,
    ) {
        if pos == default.0 {
            return;
        }
        let Nonlinearity::Max(layer) = &stage.nonlin else { unreachable!("max splitter in a pwl stage") };
        let zw = alive.iter().find(|a| a.0 == pos).expect("winner is alive").1;
        let d = default.1;
        self.record(b, group, [zw[0] - d[0], zw[1] - d[1], zw[2] - d[2]]);
        if full {
            let bits = layer.bits();
            b.pattern.set_bits(stage.bit_offset + group as usize * bits, bits, pos as u64);
        }
    }

    /// Records that the piece `b` adds `coef` to output `unit` of the stage: a flip, or on the
    /// dense path one column of every edge added to its next pre-activations.
    #[inline]
    fn record(&self, b: &mut Branch, unit: u32, coef: [f64; 3]) {
        match &mut b.z {
            Some(z) => {
                for e in self.edges {
                    e.map.add_dense_column(unit as usize, coef, z, e.offset);
                }
            }
            None => b.flips.push((unit, coef)),
        }
    }
}

/// How many of `splitters` cross `poly`, counting up to `enough`.
fn crossing_count(stage: &Stage, poly: &ConvexPolygon, splitters: &[&Splitter], enough: usize) -> usize {
    let mut count = 0;
    for &sp in splitters {
        let crosses = match (sp, &stage.nonlin) {
            (Splitter::Hinge { unit, slot, z, .. }, Nonlinearity::Pwl(layer)) => {
                let (bp, _) = layer.hinge(*unit as usize, *slot as usize);
                let tol = super::kernels::hinge_tol(z[0], z[1], bp, stage.noise[*unit as usize]);
                let (mut pos, mut neg) = (false, false);
                for p in &poly.pts {
                    let v = z[0] * p[0] + z[1] * p[1] + z[2] - bp;
                    pos |= v > tol;
                    neg |= v < -tol;
                }
                pos && neg
            }
            _ => true,
        };
        count += usize::from(crosses);
        if count >= enough {
            break;
        }
    }
    count
}

/// Splits `b` by `splitters`, pushing the leaves.
fn split_rec<C: Collect>(
    ctx: &Ctx<'_, C>,
    s: usize,
    leaf: &Leaf<'_>,
    mut b: Branch,
    splitters: &[&Splitter],
    sink: &mut Sink<C>,
    forks: u32,
) {
    let stage = &ctx.plan.stages[s];
    let full = ctx.full;
    let mut i = 0;
    while i < splitters.len() {
        if ctx.aborted() {
            return;
        }
        let rest = &splitters[i + 1..];
        i += 1;
        let branches = match splitters[i - 1] {
            Splitter::Hinge { unit, slot, above, z } => {
                let u = *unit as usize;
                let Nonlinearity::Pwl(layer) = &stage.nonlin else { unreachable!("hinge splitter in a max stage") };
                let (split, coef) = layer.split(&b.poly, u, *slot as usize, *z, stage.noise[u]);
                match split {
                    Split::Below | Split::OnLine if *above => {
                        leaf.flip_hinge(stage, &mut b, *unit, *slot, *above, coef, full);
                        continue;
                    }
                    Split::Above if !*above => {
                        leaf.flip_hinge(stage, &mut b, *unit, *slot, *above, coef, full);
                        continue;
                    }
                    Split::Below | Split::OnLine | Split::Above => continue,
                    Split::Both(neg, pos) => {
                        let mut other = b.piece(pos);
                        b.poly = neg;
                        // `b` is now below and `other` above: flip whichever is off its default.
                        if *above {
                            leaf.flip_hinge(stage, &mut b, *unit, *slot, *above, coef, full);
                        } else {
                            leaf.flip_hinge(stage, &mut other, *unit, *slot, *above, coef, full);
                        }
                        vec![b, other]
                    }
                }
            }
            Splitter::Max { group, alive, default } => {
                let Nonlinearity::Max(layer) = &stage.nonlin else { unreachable!("max splitter in a pwl stage") };
                let mut cells = layer.winner_cells(&b.poly, alive);
                if cells.len() == 1 {
                    leaf.set_winner(stage, &mut b, *group, alive, *default, cells[0].0, full);
                    continue;
                }
                cells
                    .drain(..)
                    .map(|(pos, poly)| {
                        let mut nb = b.piece(poly);
                        leaf.set_winner(stage, &mut nb, *group, alive, *default, pos, full);
                        nb
                    })
                    .collect()
            }
        };
        match fork_or_recurse(ctx, s, leaf, branches, rest, sink, forks) {
            Some(largest) => b = largest,
            None => return,
        }
    }
    sink.push(ctx, leaf.cell(s, b));
}

/// Continues the branches with the remaining splitters. Large remaining work forks onto other
/// threads (each fork owns its sink, so results do not depend on scheduling) and returns `None`.
/// Otherwise every branch but the largest is recursed into and the largest is returned for the
/// caller to continue in place: recursion depth then grows only when a piece is split into
/// comparable halves, logarithmically in the number of leaves, not with the number of lines.
fn fork_or_recurse<C: Collect>(
    ctx: &Ctx<'_, C>,
    s: usize,
    leaf: &Leaf<'_>,
    branches: Vec<Branch>,
    rest: &[&Splitter],
    sink: &mut Sink<C>,
    forks: u32,
) -> Option<Branch> {
    let stage = &ctx.plan.stages[s];
    // Branches that got a virtual base continue with the splitters that still cross them.
    let mut branches: Vec<(Branch, Option<Vec<&Splitter>>)> = branches
        .into_iter()
        .map(|mut br| {
            let list = leaf.maybe_base(s, stage, &mut br, rest, ctx.full);
            (br, list)
        })
        .collect();
    let depth = if s == 0 { ROOT_FORK_DEPTH } else { MAX_FORK_DEPTH };
    if branches.len() >= 2 && forks < depth && rest.len() >= MIN_FORK_SPLITTERS {
        let tail = branches.split_off(branches.len() / 2);
        let (_, right) = rayon::join(
            || {
                for (br, list) in branches {
                    split_rec(ctx, s, leaf, br, list.as_deref().unwrap_or(rest), sink, forks + 1);
                }
            },
            || {
                let mut own = Sink::new(ctx, s);
                for (br, list) in tail {
                    split_rec(ctx, s, leaf, br, list.as_deref().unwrap_or(rest), &mut own, forks + 1);
                }
                own.finish(ctx)
            },
        );
        sink.out.merge(right);
        return None;
    }
    // The largest branch that keeps the caller's splitters continues in the caller's loop.
    let largest = (0..branches.len())
        .filter(|&x| branches[x].1.is_none())
        .max_by(|&x, &y| branches[x].0.poly.area().total_cmp(&branches[y].0.poly.area()));
    let keep = largest.map(|k| branches.swap_remove(k).0);
    for (br, list) in branches {
        split_rec(ctx, s, leaf, br, list.as_deref().unwrap_or(rest), sink, forks);
    }
    keep
}

/// Partitions the square `[-1, 1]²` (or the clip rectangle of the options): the root base, then
/// every stage.
pub(crate) fn run<C: Collect>(ctx: &Ctx<'_, C>, plane_rows: &[f64], collect: C) -> Output<C> {
    let plan = ctx.plan;
    let [s0, s1, t0, t1] = ctx.opts.clip.unwrap_or([-1.0, 1.0, -1.0, 1.0]);
    let square = ConvexPolygon::rect(s0, s1, t0, t1);
    let pattern = if ctx.full { Pattern::zeros(plan.pattern_bits) } else { Pattern::default() };
    let mut out = ctx.output(collect);
    let root = SCRATCH.with(|s| Base::root(plan, plane_rows, square.clone(), &mut s.borrow_mut().base.pwl));
    let cell = Cell { poly: square, base: Arc::new(root), chunks: Vec::new(), pattern, dense: None };
    if plan.stages.is_empty() {
        // An affine network: one region, whose base is already the output's.
        emit(ctx, cell, &mut out);
    } else {
        process_batch(ctx, 0, vec![cell], &mut out);
    }
    out
}
