//! The partition engine: carries regions of a 2D slice through the network, splitting them at
//! every nonlinearity, depth-first in bounded batches.
//!
//! # Data flow
//!
//! The network is lowered to a [`Plan`]: an affine step to the first nonlinearity, then stages of
//! (nonlinearity, affine step to the next one or to the output). A *cell* is a convex polygon in
//! normalised slice coordinates with the affine map (`3 × n`: `∂/∂s`, `∂/∂t`, value) of the
//! pre-activations of the stage it is about to enter.
//!
//! For a batch of at most [`BATCH`] cells of one stage:
//! 1. each cell is classified against every unit (`pwl::classify`, `maxgroup`): units whose
//!    breakpoint lines miss the cell cost one sign test and fix their piece; the others become
//!    *splitters*;
//! 2. the fixed part of every cell's next map is computed for the whole batch as one matrix
//!    product (`AffineStep::apply_maps`);
//! 3. each cell is split by its splitters recursively; every split updates the next map of one
//!    side by a rank-1 term (a column of the next layer times the unit's map), so a child costs
//!    `O(n_next)` per split instead of a full product;
//! 4. children go to a sink that, whenever it holds `BATCH` cells, runs the next stage on them.
//!
//! Memory is therefore bounded by layers × batch × width plus one map per pending split branch
//! (the split recursion continues in place on the largest piece, so its depth grows
//! logarithmically with the leaves of a cell), independent of the region count
//! (unless the caller asks to keep the regions). Large split trees fork with `rayon::join`;
//! every fork owns its sink, so the result is identical for any thread count.

pub(crate) mod affine;
mod kernels;
pub mod layer_map;
mod maxgroup;
mod pwl;

use crate::geometry::polygon::{ConvexPolygon, Split};
use crate::network::Network;
use crate::slice::Plane;
use affine::AffineStep;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Cells processed together in one matrix product.
pub const BATCH: usize = 128;
/// Forks per split tree are limited to this depth (2^depth tasks at most per cell).
const MAX_FORK_DEPTH: u32 = 7;
/// A split tree forks only while at least this many splitters remain.
const MIN_FORK_SPLITTERS: usize = 12;

/// Why the engine stopped without a result.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum EngineError {
    /// More regions than the caller's limit.
    #[error("more than {limit} regions: stopped (raise --max-regions to go on)")]
    TooManyRegions {
        /// The limit.
        limit: u64,
    },
    /// The time budget ran out.
    #[error("the time limit of {seconds} s was reached: stopped (raise --time-limit to go on)")]
    TimeLimit {
        /// The limit in seconds.
        seconds: f64,
    },
    /// The kept regions would exceed the memory budget.
    #[error("the kept regions would need more than {megabytes} MB: stopped (raise --memory-limit, or count only)")]
    MemoryLimit {
        /// The limit in megabytes.
        megabytes: u64,
    },
    /// The thread pool could not be created.
    #[error("cannot start {threads} worker threads: {message}")]
    Threads {
        /// Requested threads.
        threads: usize,
        /// The OS message.
        message: String,
    },
}

/// Engine options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Stop with [`EngineError::TooManyRegions`] beyond this many regions.
    pub max_regions: Option<u64>,
    /// Keep every region's polygon, pattern and map (otherwise only counts are kept).
    pub keep_regions: bool,
    /// Collect region corners to count distinct vertices.
    pub count_vertices: bool,
    /// Incremented with the number of finished regions as they are produced.
    pub progress: Option<Arc<AtomicU64>>,
    /// Stop with [`EngineError::TimeLimit`] after this long.
    pub time_limit: Option<std::time::Duration>,
    /// Stop with [`EngineError::MemoryLimit`] when kept regions would take more bytes.
    pub memory_limit: Option<u64>,
}

/// An activation pattern: one bit per hinge of every elementwise unit, and the winning
/// position of every max group (in `ceil(log2(largest group of the layer))` bits, at least one),
/// over all layers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Pattern(pub Vec<u64>);

impl Pattern {
    fn zeros(bits: usize) -> Self {
        Pattern(vec![0; bits.div_ceil(64)])
    }

    #[inline]
    fn set_bit(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    #[inline]
    fn set_bits(&mut self, offset: usize, width: usize, value: u64) {
        for k in 0..width {
            if value >> k & 1 == 1 {
                self.set_bit(offset + k);
            }
        }
    }

    #[inline]
    fn clear_bit(&mut self, bit: usize) {
        self.0[bit / 64] &= !(1 << (bit % 64));
    }

    /// Bit `bit` of the pattern.
    pub fn bit(&self, bit: usize) -> bool {
        self.0.get(bit / 64).is_some_and(|w| w >> (bit % 64) & 1 == 1)
    }

    /// Compact hexadecimal id (little-endian words, trailing zero words trimmed).
    pub fn to_hex(&self) -> String {
        let mut words = self.0.as_slice();
        while let [rest @ .., 0] = words {
            words = rest;
        }
        if words.is_empty() {
            return "0".into();
        }
        words.iter().map(|w| format!("{w:016x}")).collect::<Vec<_>>().join("")
    }
}

/// A unit (or group) whose breakpoint crosses a cell.
#[derive(Clone, Debug)]
pub(crate) enum Splitter {
    /// Hinge `slot` of unit `unit`; `above`: the cell's fixed map and pattern assume the side
    /// above the hinge, else the side below.
    Hinge { unit: u32, slot: u8, bit: u32, above: bool },
    /// Max group `group` whose candidates `(unit, position)` can each win somewhere.
    Max { group: u32, cands: Vec<(u32, u32)> },
}

/// The nonlinearity of a stage.
pub(crate) enum Nonlinearity {
    Pwl(pwl::PwlLayer),
    Max { groups: Vec<Vec<u32>>, bits: usize },
}

/// A nonlinearity and the affine step after it.
pub(crate) struct Stage {
    /// Index in the network of the layer (or residual block) this nonlinearity belongs to.
    pub layer: usize,
    /// The nonlinearity's op name.
    pub op: String,
    nonlin: Nonlinearity,
    /// Units entering the nonlinearity.
    n_in: usize,
    /// First pattern bit of this stage.
    bit_offset: usize,
    /// Every entering unit's noise floor for the tolerance rule (`predicates::noise_floor` of the
    /// magnitude of the terms that produce it).
    noise: Vec<f64>,
    next: AffineStep,
}

/// The network lowered for the engine.
pub(crate) struct Plan {
    first: AffineStep,
    pub stages: Vec<Stage>,
    pattern_bits: usize,
    /// Per output, a bound over the domain of the sum of the magnitudes of every term behind it.
    pub output_magnitude: Vec<f64>,
}

impl Plan {
    /// Lowers `net` for partitions of `plane` (a normalised plane: the domain is `[-1, 1]²`).
    pub(crate) fn new(net: &Network, plane: &Plane) -> Self {
        // Residual blocks become chains over an augmented state (`Layer::expand`); each engine
        // layer remembers the model layer it came from.
        let (origins, layers): (Vec<usize>, Vec<crate::network::Layer>) =
            net.layers.iter().enumerate().flat_map(|(i, l)| l.expand().into_iter().map(move |e| (i, e))).unzip();
        let (noises, output_magnitude) = term_magnitudes(&layers, plane);
        // The affine chains between nonlinear layers: one more chain than nonlinear layers.
        let mut chains: Vec<Vec<crate::network::Layer>> = vec![Vec::new()];
        let mut nonlinear = Vec::new();
        for (index, layer) in layers.iter().enumerate() {
            if layer.is_affine() {
                chains.last_mut().expect("never empty").push(layer.clone());
            } else {
                nonlinear.push(index);
                chains.push(Vec::new());
            }
        }
        let mut chains = chains.into_iter();
        let first = AffineStep::new(chains.next().expect("never empty"), net.input_shape.numel());
        let mut stages = Vec::with_capacity(nonlinear.len());
        let mut bit_offset = 0;
        for ((index, chain), noise) in nonlinear.into_iter().zip(chains).zip(noises) {
            let layer = &layers[index];
            let n_in = layer.input.numel();
            let nonlin = match layer.hinge_forms() {
                Some((forms, slots)) => Nonlinearity::Pwl(pwl::PwlLayer::new(&forms, slots)),
                None => {
                    let groups = layer.max_groups();
                    let largest = groups.iter().map(Vec::len).max().unwrap_or(1);
                    let bits = (usize::BITS - (largest.max(2) - 1).leading_zeros()) as usize;
                    Nonlinearity::Max { groups, bits }
                }
            };
            let bits = stage_bits(&nonlin, n_in);
            let next = AffineStep::new(chain, layer.output.numel());
            let op = layer.op.clone();
            stages.push(Stage { layer: origins[index], op, nonlin, n_in, bit_offset, noise, next });
            bit_offset += bits;
        }
        Plan { first, stages, pattern_bits: bit_offset, output_magnitude }
    }
}

/// For every nonlinear layer, the noise floor of each entering unit: `noise_floor` of an upper
/// bound, over the domain, of the sum of the absolute values of every term that produces the
/// pre-activation (`|W|·bound + |b|` through the layers before).
fn term_magnitudes(layers: &[crate::network::Layer], plane: &Plane) -> (Vec<Vec<f64>>, Vec<f64>) {
    use crate::geometry::predicates::noise_floor;
    let mut mag: Vec<f64> =
        (0..plane.origin.len()).map(|i| plane.origin[i].abs() + plane.du[i].abs() + plane.dv[i].abs()).collect();
    let mut out = Vec::new();
    for layer in layers {
        let mut next = vec![0.0; layer.output.numel()];
        if let Some((forms, _)) = layer.hinge_forms() {
            out.push(mag.iter().map(|&m| noise_floor(m)).collect());
            for ((y, &m), f) in next.iter_mut().zip(&mag).zip(&forms) {
                let (mut slope, mut max_slope) = (f.slope0, f.slope0.abs());
                let mut offset = f.intercept0.abs();
                for &(bp, da) in f.hinges() {
                    slope += da;
                    max_slope = max_slope.max(slope.abs());
                    offset += (da * bp).abs();
                }
                *y = max_slope * m + offset;
            }
        } else if !layer.is_affine() {
            out.push(mag.iter().map(|&m| noise_floor(m)).collect());
            for (y, g) in next.iter_mut().zip(layer.max_groups()) {
                *y = g.iter().map(|&i| mag[i as usize]).fold(0.0, f64::max);
            }
        } else {
            affine::abs_layer(layer).apply(&mag, &mut next);
        }
        mag = next;
    }
    (out, mag)
}

impl Plan {
    /// Where each stage's units sit in the patterns: `(layer, first bit, bits)`.
    pub(crate) fn layout(&self) -> Vec<(usize, String, usize, usize)> {
        self.stages.iter().map(|s| (s.layer, s.op.clone(), s.bit_offset, stage_bits(&s.nonlin, s.n_in))).collect()
    }
}

fn stage_bits(nonlin: &Nonlinearity, n_in: usize) -> usize {
    match nonlin {
        Nonlinearity::Pwl(layer) => layer.n_slots() * n_in,
        Nonlinearity::Max { groups, bits } => bits * groups.len(),
    }
}

/// A region as the engine emits it, in normalised coordinates.
pub(crate) struct RawRegion {
    pub poly: ConvexPolygon,
    /// Output map, `3 × n_out`: `∂/∂s`, `∂/∂t`, value at `(0, 0)`.
    pub map: Vec<f64>,
    pub pattern: Pattern,
}

/// What a run produced.
#[derive(Default)]
pub(crate) struct RawOutput {
    /// Kept regions, in chunks (merging moves chunks, not regions).
    pub regions: Vec<Vec<RawRegion>>,
    /// Cells after each stage.
    pub per_stage: Vec<u64>,
    /// Final region count.
    pub count: u64,
    /// Sum of final areas (normalised coordinates).
    pub area_sum: f64,
    /// Corners of every final region (when counting vertices).
    pub corners: Vec<Vec<[f64; 2]>>,
    /// Pieces dropped for having no positive area (the policy guarantees none).
    pub dropped: u64,
}

impl RawOutput {
    fn merge(&mut self, other: RawOutput) {
        self.regions.extend(other.regions);
        for (a, b) in self.per_stage.iter_mut().zip(&other.per_stage) {
            *a += b;
        }
        self.count += other.count;
        self.area_sum += other.area_sum;
        self.corners.extend(other.corners);
        self.dropped += other.dropped;
    }
}

/// Why a run stopped early (0: it did not).
const STOP_REGIONS: u8 = 1;
const STOP_TIME: u8 = 2;
const STOP_MEMORY: u8 = 3;

struct Ctx<'a> {
    plan: &'a Plan,
    opts: &'a Options,
    produced: AtomicU64,
    kept_bytes: AtomicU64,
    stop: std::sync::atomic::AtomicU8,
    start: std::time::Instant,
}

impl Ctx<'_> {
    fn empty(&self) -> RawOutput {
        RawOutput { per_stage: vec![0; self.plan.stages.len()], ..Default::default() }
    }

    fn aborted(&self) -> bool {
        self.stop.load(Ordering::Relaxed) != 0
    }

    fn halt(&self, reason: u8) {
        let _ = self.stop.compare_exchange(0, reason, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Checks the time budget; true when the run must stop.
    fn out_of_time(&self) -> bool {
        if self.opts.time_limit.is_some_and(|t| self.start.elapsed() > t) {
            self.halt(STOP_TIME);
        }
        self.aborted()
    }
}

/// A cell entering a stage.
struct Cell {
    poly: ConvexPolygon,
    map: Vec<f64>,
    pattern: Pattern,
}

/// Collects the children of one stage and runs the next stage on full batches.
struct Sink {
    stage: usize,
    buf: Vec<Cell>,
    out: RawOutput,
}

impl Sink {
    fn new(ctx: &Ctx<'_>, stage: usize) -> Self {
        Sink { stage, buf: Vec::with_capacity(BATCH), out: ctx.empty() }
    }

    fn push(&mut self, ctx: &Ctx<'_>, cell: Cell) {
        self.out.per_stage[self.stage] += 1;
        self.buf.push(cell);
        if self.buf.len() >= BATCH {
            self.flush(ctx);
        }
    }

    fn flush(&mut self, ctx: &Ctx<'_>) {
        if self.buf.is_empty() {
            return;
        }
        let mut cells = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH));
        let stage = &ctx.plan.stages[self.stage];
        if !stage.next.has_columns() {
            // Children carry post-activation maps: apply the affine step to the whole batch.
            let n = stage.next.n_in();
            let mut input = Vec::with_capacity(3 * n * cells.len());
            for c in &cells {
                input.extend_from_slice(&c.map);
            }
            let out = stage.next.apply_maps(&input, cells.len());
            let m = 3 * stage.next.n_out();
            for (c, map) in cells.iter_mut().zip(out.chunks_exact(m.max(1))) {
                c.map = map.to_vec();
            }
        }
        if self.stage + 1 < ctx.plan.stages.len() {
            process_batch(ctx, self.stage + 1, cells, &mut self.out);
        } else {
            for c in cells {
                emit(ctx, c, &mut self.out);
            }
        }
    }

    fn finish(mut self, ctx: &Ctx<'_>) -> RawOutput {
        self.flush(ctx);
        self.out
    }
}

/// Length of the chunks in which outputs are collected.
const CHUNK: usize = 4096;

fn push_chunked(chunks: &mut Vec<Vec<[f64; 2]>>, pts: &[[f64; 2]]) {
    if chunks.last().is_none_or(|c| c.len() + pts.len() > 4 * CHUNK) {
        chunks.push(Vec::new());
    }
    chunks.last_mut().expect("just ensured").extend_from_slice(pts);
}

fn emit(ctx: &Ctx<'_>, cell: Cell, out: &mut RawOutput) {
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
    if total % 1024 == 0 && ctx.out_of_time() {
        return;
    }
    if ctx.opts.keep_regions {
        // Polygon, map and pattern plus the vectors' bookkeeping.
        let bytes = (cell.poly.pts.len() * 16 + cell.map.len() * 8 + cell.pattern.0.len() * 8 + 96) as u64;
        let kept = ctx.kept_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if ctx.opts.memory_limit.is_some_and(|m| kept > m) {
            ctx.halt(STOP_MEMORY);
            return;
        }
    }
    if let Some(p) = &ctx.opts.progress {
        p.fetch_add(1, Ordering::Relaxed);
    }
    out.count += 1;
    out.area_sum += area;
    if ctx.opts.count_vertices {
        push_chunked(&mut out.corners, &cell.poly.pts);
    }
    if ctx.opts.keep_regions {
        if out.regions.last().is_none_or(|c| c.len() >= CHUNK) {
            out.regions.push(Vec::new());
        }
        let chunk = out.regions.last_mut().expect("just ensured");
        chunk.push(RawRegion { poly: cell.poly, map: cell.map, pattern: cell.pattern });
    }
}

/// Runs stage `s` on a batch of cells, appending everything downstream to `out`.
fn process_batch(ctx: &Ctx<'_>, s: usize, cells: Vec<Cell>, out: &mut RawOutput) {
    if ctx.out_of_time() {
        return;
    }
    let stage = &ctx.plan.stages[s];
    let mut classified = Vec::with_capacity(cells.len());
    let h_width = 3 * stage.next.n_in();
    let mut fixed = vec![0.0; cells.len() * h_width];
    let mut scratch = pwl::Scratch::default();
    for (cell, h) in cells.iter().zip(fixed.chunks_exact_mut(h_width.max(1))) {
        let mut pattern = cell.pattern.clone();
        let mut splitters = Vec::new();
        match &stage.nonlin {
            Nonlinearity::Pwl(layer) => layer.classify(
                stage.bit_offset,
                &cell.poly,
                &cell.map,
                &stage.noise,
                &mut pattern,
                &mut splitters,
                &mut scratch,
                h,
            ),
            Nonlinearity::Max { groups, bits } => classify_max(
                groups,
                *bits,
                stage.bit_offset,
                maxgroup::Maps { z: &cell.map, noise: &stage.noise, n: stage.n_in },
                cell,
                &mut pattern,
                &mut splitters,
                h,
            ),
        }
        classified.push((pattern, splitters));
    }
    let width = if stage.next.has_columns() { 3 * stage.next.n_out() } else { 3 * stage.next.n_in() };
    let bases = if stage.next.has_columns() { stage.next.apply_maps(&fixed, cells.len()) } else { fixed };
    let mut sink = Sink::new(ctx, s);
    for ((cell, (pattern, splitters)), base) in cells.into_iter().zip(classified).zip(bases.chunks_exact(width.max(1)))
    {
        let branch = Branch { poly: cell.poly, map: base.to_vec(), pattern };
        split_rec(ctx, stage, &cell.map, branch, &splitters, &mut sink, 0);
    }
    out.merge(sink.finish(ctx));
}

#[allow(clippy::too_many_arguments)]
fn classify_max(
    groups: &[Vec<u32>],
    bits: usize,
    bit_offset: usize,
    maps: maxgroup::Maps<'_>,
    cell: &Cell,
    pattern: &mut Pattern,
    splitters: &mut Vec<Splitter>,
    h: &mut [f64],
) {
    let g_count = groups.len();
    let mut cands = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        cands.clear();
        cands.extend(group.iter().enumerate().map(|(pos, &u)| (u, pos as u32)));
        let alive = maxgroup::undominated(&cell.poly, maps, &cands);
        if let [(u, pos)] = alive[..] {
            let [a, b, c] = maps.unit(u as usize);
            h[g] = a;
            h[g_count + g] = b;
            h[2 * g_count + g] = c;
            pattern.set_bits(bit_offset + g * bits, bits, pos as u64);
        } else {
            splitters.push(Splitter::Max { group: g as u32, cands: alive });
        }
    }
}

/// A piece of a cell on its way through the cell's splitters.
struct Branch {
    poly: ConvexPolygon,
    /// Next map (dense steps) or post-activation map (layer-by-layer steps).
    map: Vec<f64>,
    pattern: Pattern,
}

impl Branch {
    /// Records that the unit (or group) `unit` of this stage adds `coef` on this branch.
    #[inline]
    fn add(&mut self, stage: &Stage, unit: usize, coef: [f64; 3]) {
        if stage.next.has_columns() {
            stage.next.add_column(unit, coef, &mut self.map);
        } else {
            let n = stage.next.n_in();
            for (r, c) in coef.iter().enumerate() {
                self.map[r * n + unit] += c;
            }
        }
    }
}

/// Splits `b` by `splitters` (of a cell whose pre-activation map is `z`), pushing the leaves.
fn split_rec(
    ctx: &Ctx<'_>,
    stage: &Stage,
    z: &[f64],
    mut b: Branch,
    splitters: &[Splitter],
    sink: &mut Sink,
    forks: u32,
) {
    let n = stage.n_in;
    let mut i = 0;
    while i < splitters.len() {
        if ctx.aborted() {
            return;
        }
        let rest = &splitters[i + 1..];
        i += 1;
        match &splitters[i - 1] {
            Splitter::Hinge { unit, slot, bit, above } => {
                let unit = *unit as usize;
                let Nonlinearity::Pwl(layer) = &stage.nonlin else { unreachable!("hinge splitter in a max stage") };
                let (bp, da) = layer.hinge(unit, *slot as usize);
                let (split, coef) = pwl::split(&b.poly, z, n, (unit, stage.noise[unit]), bp, da);
                let bit = *bit as usize;
                // Moves a branch from the assumed side of the hinge to the other one.
                let flip = |br: &mut Branch| {
                    if *above {
                        br.add(stage, unit, coef.map(|c| -c));
                        br.pattern.clear_bit(bit);
                    } else {
                        br.add(stage, unit, coef);
                        br.pattern.set_bit(bit);
                    }
                };
                match split {
                    Split::Below | Split::OnLine if *above => flip(&mut b),
                    Split::Above if !*above => flip(&mut b),
                    Split::Below | Split::OnLine | Split::Above => {}
                    Split::Both(neg, pos) => {
                        let mut other = Branch { poly: pos, map: b.map.clone(), pattern: b.pattern.clone() };
                        b.poly = neg;
                        // `b` is now below and `other` above: flip whichever is off its default.
                        if *above {
                            flip(&mut b);
                        } else {
                            flip(&mut other);
                        }
                        match fork_or_recurse(ctx, stage, z, vec![b, other], rest, sink, forks) {
                            Some(largest) => b = largest,
                            None => return,
                        }
                    }
                }
            }
            Splitter::Max { group, cands } => {
                let maps = maxgroup::Maps { z, noise: &stage.noise, n };
                let alive = maxgroup::undominated(&b.poly, maps, cands);
                let cells = if alive.len() == 1 {
                    vec![(alive[0], std::mem::take(&mut b.poly))]
                } else {
                    maxgroup::winner_cells(&b.poly, maps, &alive)
                };
                let (bits, offset) = match &stage.nonlin {
                    Nonlinearity::Max { bits, .. } => (*bits, stage.bit_offset + *group as usize * *bits),
                    Nonlinearity::Pwl { .. } => {
                        unreachable!("max splitter in an elementwise stage")
                    }
                };
                let branches: Vec<Branch> = cells
                    .into_iter()
                    .map(|((u, pos), poly)| {
                        let u = u as usize;
                        let mut nb = Branch { poly, map: b.map.clone(), pattern: b.pattern.clone() };
                        nb.add(stage, *group as usize, maps.unit(u));
                        nb.pattern.set_bits(offset, bits, pos as u64);
                        nb
                    })
                    .collect();
                match fork_or_recurse(ctx, stage, z, branches, rest, sink, forks) {
                    Some(largest) => b = largest,
                    None => return,
                }
            }
        }
    }
    sink.push(ctx, Cell { poly: b.poly, map: b.map, pattern: b.pattern });
}

/// Continues the branches with the remaining splitters. Large remaining work forks onto other
/// threads (each fork owns its sink, so results do not depend on scheduling) and returns `None`.
/// Otherwise every branch but the largest is recursed into and the largest is returned for the
/// caller to continue in place: recursion depth then grows only when a piece is split into
/// comparable halves, logarithmically in the number of leaves, not with the number of lines.
fn fork_or_recurse(
    ctx: &Ctx<'_>,
    stage: &Stage,
    z: &[f64],
    mut branches: Vec<Branch>,
    rest: &[Splitter],
    sink: &mut Sink,
    forks: u32,
) -> Option<Branch> {
    if branches.len() >= 2 && forks < MAX_FORK_DEPTH && rest.len() >= MIN_FORK_SPLITTERS {
        let tail = branches.split_off(branches.len() / 2);
        let stage_index = sink.stage;
        let (_, right) = rayon::join(
            || {
                for br in branches {
                    split_rec(ctx, stage, z, br, rest, sink, forks + 1);
                }
            },
            || {
                let mut own = Sink::new(ctx, stage_index);
                for br in tail {
                    split_rec(ctx, stage, z, br, rest, &mut own, forks + 1);
                }
                own.finish(ctx)
            },
        );
        sink.out.merge(right);
        return None;
    }
    let largest = (0..branches.len()).max_by(|&x, &y| branches[x].poly.area().total_cmp(&branches[y].poly.area()))?;
    let keep = branches.swap_remove(largest);
    for br in branches {
        split_rec(ctx, stage, z, br, rest, sink, forks);
    }
    Some(keep)
}

/// Partitions the square `[-1, 1]²` of `plane` (a normalised plane: see `Slice::normalized`).
pub(crate) fn run(net: &Network, plane: &Plane, opts: &Options) -> Result<(Plan, RawOutput), EngineError> {
    let plan = Plan::new(net, plane);
    let threads =
        if opts.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.threads };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(64 << 20)
        .build()
        .map_err(|e| EngineError::Threads { threads, message: e.to_string() })?;
    let ctx = Ctx {
        plan: &plan,
        opts,
        produced: AtomicU64::new(0),
        kept_bytes: AtomicU64::new(0),
        stop: std::sync::atomic::AtomicU8::new(0),
        start: std::time::Instant::now(),
    };
    let mut input = Vec::with_capacity(3 * plane.origin.len());
    input.extend_from_slice(&plane.du);
    input.extend_from_slice(&plane.dv);
    input.extend_from_slice(&plane.origin);
    let z0 = plan.first.apply_maps(&input, 1);
    let domain =
        Cell { poly: ConvexPolygon::rect(-1.0, 1.0, -1.0, 1.0), map: z0, pattern: Pattern::zeros(plan.pattern_bits) };
    let mut out = ctx.empty();
    pool.install(|| {
        if plan.stages.is_empty() {
            emit(&ctx, domain, &mut out);
        } else {
            process_batch(&ctx, 0, vec![domain], &mut out);
        }
    });
    match ctx.stop.load(Ordering::Relaxed) {
        0 => Ok((plan, out)),
        STOP_REGIONS => Err(EngineError::TooManyRegions { limit: opts.max_regions.unwrap_or(0) }),
        STOP_TIME => Err(EngineError::TimeLimit { seconds: opts.time_limit.map_or(0.0, |t| t.as_secs_f64()) }),
        _ => Err(EngineError::MemoryLimit { megabytes: opts.memory_limit.unwrap_or(0) >> 20 }),
    }
}
