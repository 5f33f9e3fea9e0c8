//! One row of statistics per checkpoint of a training run, all on the same slice: the region
//! count (and per nonlinear layer), vertices, the decision boundary's length and components,
//! and the dead, linear and switching units. Each row is computed from one partition that is
//! dropped before the next checkpoint, so a series' memory does not grow with its length.

use super::neurons::{neuron_report, Verdict};
use super::AnalysisError;
use crate::boundary::{decision_boundary, Decision};
use crate::network::Network;
use crate::slice::Slice;
use crate::{Options, Partition};

/// The statistics of one checkpoint.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SeriesRow {
    /// Regions.
    pub regions: u64,
    /// Regions after each nonlinear layer.
    pub regions_per_layer: Vec<u64>,
    /// Distinct vertices.
    pub vertices: u64,
    /// Length of the decision boundary in `(u, v)`.
    pub boundary_length: f64,
    /// Its connected components, and how many of them are closed.
    pub boundary_components: usize,
    /// Closed components.
    pub boundary_closed_components: usize,
    /// Regions the boundary crosses.
    pub boundary_crossed_regions: usize,
    /// Units with each verdict on the slice (see `neurons`).
    pub dead_units: usize,
    /// Linear units.
    pub linear_units: usize,
    /// Switching units.
    pub switching_units: usize,
}

/// The row of `net` on `slice`: the same numbers as `map --stats --boundary` for the counts
/// and the boundary, plus the unit verdicts of [`neuron_report`].
pub fn series_row(
    net: &Network,
    slice: &Slice,
    decision: &Decision,
    opts: &Options,
) -> Result<SeriesRow, crate::Error> {
    let part = crate::partition(net, slice, opts)?;
    Ok(row_of(net, &part, decision)?)
}

/// The row of a partition `part` computed for `net`.
pub fn row_of(net: &Network, part: &Partition, decision: &Decision) -> Result<SeriesRow, AnalysisError> {
    let boundary = decision_boundary(part, decision);
    let report = neuron_report(net, part)?;
    let s = &part.summary;
    Ok(SeriesRow {
        regions: s.regions,
        regions_per_layer: s.regions_per_layer.iter().map(|c| c.regions).collect(),
        vertices: s.vertices.unwrap_or(0),
        boundary_length: boundary.length,
        boundary_components: boundary.components,
        boundary_closed_components: boundary.closed_components,
        boundary_crossed_regions: boundary.crossed_regions,
        dead_units: report.count(Verdict::Dead),
        linear_units: report.count(Verdict::Linear),
        switching_units: report.count(Verdict::Switching),
    })
}
