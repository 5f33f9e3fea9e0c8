//! The partition engine: carries cells of a 2D slice through the network's stages, splitting
//! them at every nonlinearity, depth-first in bounded batches.
//!
//! # Data flow
//!
//! The network is lowered to a stage graph ([`plan`]): one stage per nonlinear layer, and edges
//! (affine maps) from each stage's output, or from the input, to the pre-activations of later
//! stages and of the output. A cell is a convex polygon in frame coordinates (the domain is
//! `[-1, 1]²`) and a sparse description of its pre-activations relative to a shared dense
//! [`base`]. For a batch of at most [`traverse::BATCH`] cells of one stage ([`traverse`]):
//! 1. each cell is classified against the units that can differ from its base (those crossing
//!    the base's polygon, and those its corrections touch): units that do not cross the cell fix
//!    their piece; the others become *splitters*. A cell whose candidates are a large share of the
//!    stage (every cell of a dense layer) becomes a base itself;
//! 2. each cell is split by its splitters recursively; a piece records the units it flips as
//!    corrections (a few numbers each, never a copy of a map);
//! 3. pieces go to a sink that, whenever it holds a batch, computes the next stage's bases of
//!    their bases (one batched product: a GEMM or im2col convolution) and runs the next stage.
//!
//! Memory is bounded by stages × batch × (corrections per cell) plus the live bases, independent
//! of the region count unless regions are kept. Large split trees and batches fork with
//! `rayon::join`; every fork owns its sink, so the result is identical for any thread count.

mod acc;
pub(crate) mod affine;
pub(crate) mod base;
mod classify;
pub mod collect;
mod kernels;
mod maxgroup;
pub(crate) mod plan;
mod pwl;
pub(crate) mod traverse;

use crate::network::Network;
use crate::slice::Plane;
use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::Arc;

pub use crate::pattern::Pattern;
pub(crate) use plan::Plan;
pub(crate) use traverse::Output;

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
    /// The caller cancelled the run (see [`Options::cancel`]).
    #[error("cancelled")]
    Cancelled,
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
    /// Updated as regions are finished: their number and the share of the domain they cover.
    pub progress: Option<Arc<Progress>>,
    /// Stop with [`EngineError::TimeLimit`] after this long.
    pub time_limit: Option<std::time::Duration>,
    /// Stop with [`EngineError::MemoryLimit`] when kept regions would take more bytes.
    pub memory_limit: Option<u64>,
    /// The straightforward path, for tests and comparisons: every cell becomes a dense base of
    /// its own at every stage (no sparse corrections, no shared or virtual bases, no split-tree
    /// maps). Much slower on convolutional networks; the same partition.
    pub dense_reference: bool,
    /// Partition only this rectangle `[s0, s1, t0, t1]` of the frame square `[-1, 1]²` (a tile
    /// of the domain: see `tile`). Everything else — the noise floors, the tolerance, the frame —
    /// stays the whole domain's, so a tile's regions are the whole run's regions cut by the
    /// rectangle. `None`: the whole square.
    pub clip: Option<[f64; 4]>,
    /// Stop with [`EngineError::Cancelled`] soon after this becomes true (checked with the time
    /// limit: every 1024 regions and at every batch): another thread's interrupt, e.g. Ctrl-C
    /// in a notebook.
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// How far a run is, readable from another thread while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    regions: AtomicU64,
    /// Finished area as a fraction of the domain, in units of 2^-40.
    area: AtomicU64,
}

impl Progress {
    /// Regions finished so far.
    pub fn regions(&self) -> u64 {
        self.regions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fraction of the domain's area the finished regions cover, in `[0, 1]`.
    pub fn fraction(&self) -> f64 {
        (self.area.load(std::sync::atomic::Ordering::Relaxed) as f64 / (1u64 << 40) as f64).min(1.0)
    }

    /// Records a finished region of `share` of the domain's area.
    pub(crate) fn add(&self, share: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.regions.fetch_add(1, Relaxed);
        self.area.fetch_add((share * (1u64 << 40) as f64) as u64, Relaxed);
    }
}

/// Partitions the square `[-1, 1]²` of `plane` (a normalised plane: see `Slice::normalized`).
pub(crate) fn run<C: collect::Collect>(
    net: &Network,
    plane: &Plane,
    opts: &Options,
    mut collect: C,
    frame: crate::slice::Normalization,
) -> Result<(Plan, Output<C>), EngineError> {
    let plan = Plan::new(net, plane);
    let layout = plan.layout();
    collect.begin(&collect::Start {
        frame,
        outputs: plan.n_out,
        output_scale: &plan.output_magnitude,
        layout: &layout,
    });
    let threads =
        if opts.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.threads };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(64 << 20)
        .build()
        .map_err(|e| EngineError::Threads { threads, message: e.to_string() })?;
    // Forks are made from a fork: the caller's collector stays the root of the run.
    let proto = collect.fork();
    let ctx = traverse::Ctx {
        plan: &plan,
        opts,
        full: collect.needs_maps(),
        proto: &proto,
        produced: AtomicU64::new(0),
        kept_bytes: AtomicU64::new(0),
        stop: AtomicU8::new(0),
        start: std::time::Instant::now(),
        timing: std::env::var_os("TESSERA_DEBUG").is_some(),
    };
    let mut rows = Vec::with_capacity(3 * plane.origin.len());
    rows.extend_from_slice(&plane.du);
    rows.extend_from_slice(&plane.dv);
    rows.extend_from_slice(&plane.origin);
    let out = pool.install(|| traverse::run(&ctx, &rows, collect));
    if std::env::var_os("TESSERA_DEBUG").is_some() {
        for (s, d) in out.debug.iter().enumerate() {
            let cells = (d[0] + d[1]).max(1) as f64;
            eprintln!(
                "stage {s} ({} units): {} sparse, {} rebased; per cell: {:.1} corrections, {:.1} touched, {:.1} candidates, {:.1} splitters; thread-seconds: classify {:.3}, dense-path bases {:.3}, next bases {:.3}",
                plan.stages[s].n_in,
                d[0],
                d[1],
                d[5] as f64 / cells,
                d[2] as f64 / cells,
                d[3] as f64 / cells,
                d[4] as f64 / cells,
                d[6] as f64 * 1e-9,
                d[7] as f64 * 1e-9,
                d[8] as f64 * 1e-9
            );
        }
    }
    ctx.result()?;
    Ok((plan, out))
}
