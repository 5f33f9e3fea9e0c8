//! Raw command-line flags (parsing only; validation happens in `cli::config`).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Exact linear regions and decision boundaries of piecewise-linear networks on 2D slices.
#[derive(Parser, Debug)]
#[command(name = "tessera", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Partition a slice of the input space into linear regions.
    Map(MapArgs),
    /// Check every region's affine map against a plain forward pass.
    Verify(VerifyArgs),
    /// Show the model's layers, shapes, parameters and piecewise-linear units.
    Info {
        /// Model file (tessera-model/1 JSON).
        model: PathBuf,
    },
}

/// Which plane and domain to partition.
#[derive(Args, Debug, Clone)]
pub struct SliceArgs {
    /// Domain in slice coordinates: U0,U1,V0,V1 (default -1,1,-1,1, or around the anchors).
    #[arg(long = "box", value_name = "U0,U1,V0,V1", allow_hyphen_values = true)]
    pub box_: Option<String>,
    /// Origin of the plane (.npy shaped like the input, or flat).
    #[arg(long, value_name = "O.npy", requires_all = ["du", "dv"], conflicts_with = "anchors")]
    pub origin: Option<PathBuf>,
    /// Direction of u (.npy).
    #[arg(long, value_name = "DU.npy", requires = "origin")]
    pub du: Option<PathBuf>,
    /// Direction of v (.npy).
    #[arg(long, value_name = "DV.npy", requires = "origin")]
    pub dv: Option<PathBuf>,
    /// Plane through three inputs A,B,C (.npy files), with orthonormal (u, v).
    #[arg(long, value_name = "A.npy,B.npy,C.npy")]
    pub anchors: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Stop with exit code 3 beyond this many regions.
    #[arg(long, value_name = "N")]
    pub max_regions: Option<u64>,
}

#[derive(Args, Debug)]
pub struct MapArgs {
    /// Model file (tessera-model/1 JSON).
    pub model: PathBuf,
    #[command(flatten)]
    pub slice: SliceArgs,
    /// Write every region (polygon, pattern, affine map) to this JSON file.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Print statistics as one JSON object on stdout.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Model file (tessera-model/1 JSON).
    pub model: PathBuf,
    #[command(flatten)]
    pub slice: SliceArgs,
    /// Seeded random points checked in addition to every region's centroid.
    #[arg(long, default_value_t = 1000)]
    pub points: usize,
    /// Seed of the random points.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}
