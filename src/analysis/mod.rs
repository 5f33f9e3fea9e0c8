//! Analyses of a finished partition, none of which touches the engine: per-neuron verdicts and
//! the rewrite without the units that never switch (`neurons`), linear pieces of the function
//! as unions of regions (`pieces`), the region adjacency graph (`graph`), exact local complexity
//! around data points (`local`), and one row of statistics per checkpoint of a training run
//! (`series`).

pub mod graph;
pub mod local;
pub mod neurons;
pub mod pieces;
pub mod series;

/// Why an analysis could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// The partition's pattern layout does not belong to the network given with it.
    #[error("{0}")]
    Layout(String),
    /// The analysis would need more memory than tessera allows.
    #[error("{0}")]
    TooLarge(String),
    /// Bad parameters (points, radius, planes, checkpoints).
    #[error("{0}")]
    Input(String),
}
