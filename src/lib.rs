//! tessera computes the exact partition of a 2D slice of a piecewise-linear network's input
//! space into linear regions.
//!
//! A network of affine layers (linear, conv, batch-norm in eval mode, average pooling) and
//! continuous piecewise-linear nonlinearities (ReLU, leaky ReLU, PReLU, abs, hardtanh, ReLU6,
//! maxout, max-pooling) is affine on each cell of a partition of its input. On a plane
//! `x(u, v) = origin + u·du + v·dv` each cell is a convex polygon; tessera finds every one, with
//! its activation pattern and its affine map.
//!
//! ```
//! use tessera::{network::json, slice::{Domain, Plane, Slice}, Options};
//! let net = json::parse_str(r#"{"format": "tessera-model/1", "input_shape": [2], "layers": [
//!     {"op": "linear", "weight": [[1, 0], [0, 1], [1, 1]], "bias": [0, 0, -0.5]},
//!     {"op": "relu"}, {"op": "linear", "weight": [[1, -1, 1]]}]}"#, "example").unwrap();
//! let slice = Slice { plane: Plane::identity2(), domain: Domain::new(-1.0, 1.0, -1.0, 1.0).unwrap(), anchors: None };
//! let partition = tessera::partition(&net, &slice, &Options::default()).unwrap();
//! // Three lines (u = 0, v = 0, u + v = 0.5) meeting pairwise inside the square: 1 + 3 + 3 regions.
//! assert_eq!(partition.regions.len(), 7);
//! assert!(partition.sanity_check(1000, 7, None).is_ok());
//! ```
//!
//! # What "exact" means
//! Every region is the polygon bounded by the network's own breakpoint lines, computed in f64
//! with one tolerance policy (`geometry::predicates`): regions thinner than about 1e-9 of the
//! domain's size are not resolved, and nothing else is approximated. Each region's map is the
//! network's function there up to f64 rounding, which `Partition::sanity_check` verifies
//! against a plain forward pass.

pub mod analysis;
pub mod boundary;
pub mod certify;
pub mod engine;
pub mod export;
pub mod geometry;
pub mod layer_map;
pub mod line;
pub mod network;
pub mod npy;
pub mod partition;
pub mod pattern;
pub(crate) mod pointwise;
pub mod render;
pub mod sample;
pub mod slice;
pub mod solid;
pub mod tile;

pub use engine::collect::{Collect, Finished, Keep, Tally};
pub use engine::{EngineError, Options, Pattern, Progress};
pub use network::Network;
pub use partition::{AffineMap, Partition, Region, Summary};
pub use slice::Slice;

use partition::{AreaBin, LayerCount};

/// Any error of the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model could not be loaded.
    #[error(transparent)]
    Model(#[from] network::json::ModelError),
    /// An ONNX model could not be loaded.
    #[error(transparent)]
    Onnx(#[from] network::onnx::OnnxError),
    /// The slice is invalid.
    #[error(transparent)]
    Slice(#[from] slice::SliceError),
    /// An array could not be read.
    #[error(transparent)]
    Npy(#[from] npy::NpyError),
    /// The engine stopped.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A path could not be traced.
    #[error(transparent)]
    Line(#[from] line::LineError),
    /// Tiles could not be made or merged.
    #[error(transparent)]
    Tile(#[from] tile::TileError),
    /// A decision (level set) does not fit the model.
    #[error(transparent)]
    Decision(#[from] boundary::DecisionError),
    /// An analysis of a partition could not be done.
    #[error(transparent)]
    Analysis(#[from] analysis::AnalysisError),
}

fn check_slice(net: &Network, slice: &Slice) -> Result<(), slice::SliceError> {
    let d = slice.domain;
    slice::Domain::new(d.u0, d.u1, d.v0, d.v1)?;
    let p = &slice.plane;
    slice::Plane::from_vectors(p.origin.clone(), p.du.clone(), p.dv.clone(), net.input_shape.numel())?;
    Ok(())
}

/// A finished run: the counts, the collector the regions went to, and what is needed to read
/// them (the frame, the pattern layout, the output term magnitudes).
pub struct Run<C> {
    /// Counts and statistics.
    pub summary: Summary,
    /// The collector, with everything it received.
    pub collect: C,
    /// Frame coordinates (the regions') ↔ `(u, v)`.
    pub frame: slice::Normalization,
    /// Where each nonlinear layer's units sit in the patterns.
    pub layout: Vec<pattern::LayerBits>,
    /// Per output, a bound over the domain of the magnitude of the terms behind it.
    pub output_scale: Vec<f64>,
}

/// Partitions `slice`'s domain, streaming every finished region to `collect` (see
/// [`engine::collect`]); memory grows with what the collector keeps, not with the region count.
pub fn stream<C: Collect>(net: &Network, slice: &Slice, opts: &Options, collect: C) -> Result<Run<C>, Error> {
    check_slice(net, slice)?;
    let (plane, frame) = slice.normalized();
    let (plan, out) = engine::run(net, &plane, opts, (collect, Tally::default()), frame)?;
    let scale = frame.half[0] * frame.half[1];
    let regions_per_layer = plan
        .stages
        .iter()
        .zip(&out.per_stage)
        .map(|(s, &regions)| LayerCount { layer: s.layer, op: s.op.clone(), regions })
        .collect();
    let (collect, tally) = out.collect;
    let summary = summarize(out.count, slice.domain, scale, out.area_sum, &tally, regions_per_layer, out.dropped);
    Ok(Run { summary, collect, frame, layout: plan.layout(), output_scale: plan.output_magnitude.clone() })
}

/// The summary of `regions` regions over `domain` with statistics `tally` and total area
/// `area_sum` in frame units (`scale`: the frame's area unit in `(u, v)`).
pub(crate) fn summarize(
    regions: u64,
    domain: slice::Domain,
    scale: f64,
    area_sum: f64,
    tally: &Tally,
    regions_per_layer: Vec<LayerCount>,
    dropped: u64,
) -> Summary {
    let domain_area = domain.area();
    let area_histogram = tally
        .area_bins
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(k, &regions)| {
            let at = |k: usize| domain_area * 10f64.powf(-(k as f64) / engine::collect::AREA_BINS_PER_DECADE as f64);
            AreaBin { min: at(k + 1), max: at(k), regions }
        })
        .collect();
    Summary {
        regions,
        domain_area,
        area_sum: area_sum * scale,
        vertices: Some(tally.vertices(regions)),
        regions_per_layer,
        dropped_slivers: dropped,
        area_histogram,
        min_area: tally.min_area * scale,
        max_area: tally.max_area * scale,
    }
}

/// Computes the partition of `slice`'s domain, keeping every region.
pub fn partition(net: &Network, slice: &Slice, opts: &Options) -> Result<Partition, Error> {
    let run = stream(net, slice, opts, Keep::default())?;
    Ok(into_partition(run, slice.domain, net.output_shape().numel()))
}

/// The partition of a run that kept its regions, over `domain`, of a network with `outputs`
/// outputs.
pub fn into_partition(run: Run<Keep>, domain: slice::Domain, outputs: usize) -> Partition {
    let Run { summary, collect, frame, layout, output_scale } = run;
    let scale = frame.half[0] * frame.half[1];
    let out_dim = outputs;
    let regions = collect
        .chunks
        .into_iter()
        .flatten()
        .map(|r| {
            let jacobian = (0..out_dim).map(|k| [r.map[k], r.map[out_dim + k]]).collect();
            let offset = r.map[2 * out_dim..3 * out_dim].to_vec();
            let area = r.poly.area() * scale;
            Region { polygon: r.poly, area, pattern: r.pattern, map: AffineMap { jacobian, offset } }
        })
        .collect();
    Partition { domain, frame, regions, summary, layout, output_scale }
}

/// Feeds the regions of `part` to `collect` as a run would stream them (after
/// [`Collect::begin`]): pictures, boundaries and JSON of a partition that was computed earlier
/// or merged from tiles, with the same collectors as a streaming run.
pub fn replay<C: Collect>(part: &Partition, collect: &mut C) {
    let outputs = part.output_scale.len();
    collect.begin(&engine::collect::Start {
        frame: part.frame,
        outputs,
        output_scale: &part.output_scale,
        layout: &part.layout,
    });
    for r in &part.regions {
        let mut map = Vec::with_capacity(3 * outputs);
        map.extend(r.map.jacobian.iter().map(|j| j[0]));
        map.extend(r.map.jacobian.iter().map(|j| j[1]));
        map.extend_from_slice(&r.map.offset);
        collect.add(&Finished { poly: r.polygon.clone(), area: r.polygon.area(), map, pattern: r.pattern.clone() });
    }
}

/// Counts the regions of `slice`'s domain without keeping them, in memory independent of the
/// region count: counts per layer, areas, vertices, an area histogram.
pub fn count(net: &Network, slice: &Slice, opts: &Options) -> Result<Summary, Error> {
    Ok(stream(net, slice, opts, Tally::default())?.summary)
}

/// The affine map of `(u, v)`, on region `region` of `part` (a partition of `slice` by `net`), of
/// the output of top-level layer `layer` of `net`: the network truncated after that layer, with
/// every nonlinearity fixed by the region's pattern. `None` for an index out of range.
pub fn layer_map(net: &Network, slice: &Slice, part: &Partition, region: usize, layer: usize) -> Option<AffineMap> {
    let r = part.regions.get(region)?;
    // Built over the partition's frame (precise far from the origin), then converted.
    let (plane, _) = slice.normalized();
    let m = layer_map::layer_map(net, &plane, &part.layout, &r.pattern, Some(layer))?;
    Some(part.frame.map_to_uv(&m))
}

/// Checks `part`, a partition of `slice` by `net`: [`Partition::sanity_check`] against a plain
/// forward pass at `samples` seeded points and every centroid, and every region's map against
/// the map its pattern rebuilds ([`layer_map::layer_map`]) at every vertex.
pub fn check(net: &Network, slice: &Slice, part: &Partition, samples: usize, seed: u64) -> partition::SanityReport {
    use rayon::prelude::*;
    let oracle = |p: [f64; 2]| forward_at(net, slice, p);
    let mut report = part.sanity_check(samples, seed, Some(&oracle));
    let (plane, _) = slice.normalized();
    let mismatches: Vec<String> = part
        .regions
        .par_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let Some(m) = layer_map::layer_map(net, &plane, &part.layout, &r.pattern, None) else {
                return Some(format!("region {i}: its pattern does not fit the layout"));
            };
            let worst = r.polygon.pts.iter().map(|&p| part.map_error(&r.map.eval(p), &m.eval(p))).fold(0.0, f64::max);
            (worst > partition::MAP_TOL)
                .then(|| format!("region {i}: its pattern rebuilds a map that differs by {worst:.3e}"))
        })
        .collect();
    report.violations.extend(mismatches.into_iter().take(50));
    report
}

/// The network's output at slice point `(u, v)` by a plain forward pass.
pub fn forward_at(net: &Network, slice: &Slice, p: [f64; 2]) -> Vec<f64> {
    net.forward(&slice.plane.point(p[0], p[1]))
}
