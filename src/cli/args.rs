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
    /// Sample points on the decision boundary, inside regions, or in pairs across the boundary.
    Sample(SampleArgs),
    /// The exact pieces of a network along a segment or a polyline, class changes, and exact
    /// integrated gradients.
    Line(LineArgs),
    /// Join the tile results of `map --tile I/N` into the single run's statistics, JSON and pictures.
    Merge(MergeArgs),
    /// Per-unit report on the slice: which units are dead, linear or switching, the area and
    /// regions of each piece, the edges each unit creates, and the network without the units
    /// that never switch.
    Neurons(NeuronsArgs),
    /// Exact local complexity around data points: regions and crossing units in a disk on
    /// random planes through each point.
    Local(LocalArgs),
    /// One slice over many checkpoints: statistics per checkpoint (CSV), plots, an animation.
    Series(SeriesArgs),
    /// Show the model's layers, shapes, parameters and piecewise-linear units.
    Info {
        /// Model file (tessera-model/1 JSON or ONNX).
        model: PathBuf,
    },
    /// Write a model (ONNX or JSON) as tessera-model/1 JSON.
    ExportJson {
        /// Model file.
        model: PathBuf,
        /// Output file (stdout when absent).
        #[arg(long, value_name = "OUT.json")]
        out: Option<PathBuf>,
    },
}

/// Which plane and domain to partition.
#[derive(Args, Debug, Clone)]
pub struct SliceArgs {
    /// Domain in slice coordinates: U0,U1,V0,V1 (default -1,1,-1,1, or around the anchors);
    /// with --dims 3, X0,X1,Y0,Y1,Z0,Z1.
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
    /// Plane through three inputs A,B,C (.npy files), with orthonormal (u, v); with --dims 3,
    /// the 3D slice through four inputs A,B,C,D.
    #[arg(long, value_name = "A.npy,B.npy,C.npy")]
    pub anchors: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Stop with exit code 3 beyond this many regions.
    #[arg(long, value_name = "N")]
    pub max_regions: Option<u64>,
    /// Stop with exit code 3 after this many seconds of partitioning.
    #[arg(long, value_name = "SECONDS")]
    pub time_limit: Option<f64>,
    /// Stop with exit code 3 when the kept regions would need more memory (default 8192).
    #[arg(long, value_name = "MB", default_value_t = 8192)]
    pub memory_limit: u64,
}

#[derive(Args, Debug)]
pub struct MapArgs {
    /// Model file (tessera-model/1 JSON, or .onnx).
    pub model: PathBuf,
    #[command(flatten)]
    pub slice: SliceArgs,
    /// Write every region (polygon, pattern, affine map) to this JSON file.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Print statistics as one JSON object on stdout.
    #[arg(long)]
    pub stats: bool,
    /// Compute the decision boundary (added to --json and --stats).
    #[arg(long)]
    pub boundary: bool,
    /// Also give each region's affine map of this layer's output (a layer index, see `info`) in --json.
    #[arg(long, value_name = "LAYER", requires = "json")]
    pub layer_map: Option<usize>,
    #[command(flatten)]
    pub decision: DecisionArgs,
    #[command(flatten)]
    pub picture: PictureArgs,
    /// Compute only tile I (from 1) of a grid of N tiles of the domain and write it to
    /// --tile-out; `tessera merge` joins the N tile results into the single run's.
    #[arg(long, value_name = "I/N", requires = "tile_out",
          conflicts_with_all = ["json", "stats", "svg", "png", "plots", "layer_map", "pieces", "graph"])]
    pub tile: Option<String>,
    /// Where the tile result goes (JSON).
    #[arg(long, value_name = "TILE.json", requires = "tile")]
    pub tile_out: Option<PathBuf>,
    /// Keep every region of the tile (not only those on its borders), so that `merge` can
    /// write --json and pictures; without it the tile holds counts and border regions only.
    #[arg(long, requires = "tile")]
    pub tile_regions: bool,
    /// Dimension of the slice: 2 (a plane) or 3 (a box of a 3-input model, or the 3D slice
    /// through four anchors; --box then takes X0,X1,Y0,Y1,Z0,Z1).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub dims: u8,
    /// Merge neighbouring regions with equal affine maps into linear pieces: counts in --stats
    /// and on stderr; --svg and --png are then coloured by piece (the SVG outlines pieces).
    #[arg(long)]
    pub pieces: bool,
    /// Write the region adjacency graph as GraphML: regions (area, class, pattern id, centroid)
    /// and shared edges (length, the node and unit that separate them).
    #[arg(long, value_name = "OUT.graphml")]
    pub graph: Option<PathBuf>,
    /// With --dims 3: write the decision surface (or the --level/--threshold level set) as an
    /// exact triangle mesh, Wavefront OBJ or PLY by the extension.
    #[arg(long, value_name = "OUT.obj|OUT.ply")]
    pub mesh: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LineArgs {
    /// Model file (tessera-model/1 JSON, or .onnx).
    pub model: PathBuf,
    /// Start of the segment: an .npy file shaped like the input, or comma-separated numbers.
    #[arg(long, value_name = "A.npy|x0,x1,...", allow_hyphen_values = true, requires = "to", conflicts_with = "path")]
    pub from: Option<String>,
    /// End of the segment.
    #[arg(long, value_name = "B.npy|x0,x1,...", allow_hyphen_values = true, requires = "from")]
    pub to: Option<String>,
    /// A polyline through these points (.npy files or number lists, separated by `;`).
    #[arg(long, value_name = "P0.npy;P1.npy;...", allow_hyphen_values = true)]
    pub path: Option<String>,
    /// Write every piece (interval, pattern, outputs at both ends) and the class changes.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Print statistics as one JSON object on stdout.
    #[arg(long)]
    pub stats: bool,
    /// Draw the outputs along the path, breakpoints ticked, classes shaded.
    #[arg(long, value_name = "OUT.png")]
    pub png: Option<PathBuf>,
    /// The same picture as SVG.
    #[arg(long, value_name = "OUT.svg")]
    pub svg: Option<PathBuf>,
    /// Picture size in pixels.
    #[arg(long, value_name = "W,H", default_value = "1000,500")]
    pub size: String,
    /// Exact integrated gradients of --target along the straight path from the baseline to --to.
    #[arg(long, requires = "to")]
    pub integrated_gradients: bool,
    /// Baseline of the integrated gradients (default: --from).
    #[arg(long, value_name = "A.npy|x0,...", allow_hyphen_values = true, requires = "integrated_gradients")]
    pub baseline: Option<String>,
    /// Output attributed (default: the class the decision gives at --to, for argmax).
    #[arg(long, value_name = "K", requires = "integrated_gradients")]
    pub target: Option<usize>,
    /// Write the attributions, shaped like the input (float64 .npy).
    #[arg(long, value_name = "IG.npy", requires = "integrated_gradients")]
    pub ig_out: Option<PathBuf>,
    #[command(flatten)]
    pub decision: DecisionArgs,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Tile results of one run (every tile of its grid, each once).
    #[arg(required = true, value_name = "TILE.json")]
    pub tiles: Vec<PathBuf>,
    /// Write every region to this JSON file (tiles made with --tile-regions).
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Print statistics as one JSON object on stdout.
    #[arg(long)]
    pub stats: bool,
    /// Add the decision boundary (of the tiles' --threshold/--level) to --stats and --json.
    #[arg(long)]
    pub boundary: bool,
    #[command(flatten)]
    pub picture: PictureArgs,
}

/// Pictures of the partition.
#[derive(Args, Debug, Clone)]
pub struct PictureArgs {
    /// Write an SVG picture (a tooltip per region).
    #[arg(long, value_name = "OUT.svg")]
    pub svg: Option<PathBuf>,
    /// Write a PNG picture.
    #[arg(long, value_name = "OUT.png")]
    pub png: Option<PathBuf>,
    /// Region colours.
    #[arg(long, value_enum, default_value_t = ColorArg::Pattern)]
    pub color: ColorArg,
    /// Region edges: plain, coloured by the layer that created them, or none.
    #[arg(long, value_enum, default_value_t = EdgesArg::Plain)]
    pub edges: EdgesArg,
    /// No region edges (same as --edges none).
    #[arg(long)]
    pub no_edges: bool,
    /// No axes, title or legend: the domain fills the picture.
    #[arg(long)]
    pub no_axes: bool,
    /// Picture size in pixels.
    #[arg(long, value_name = "W,H", default_value = "1000,1000")]
    pub size: String,
    /// Write statistics plots (areas, vertices per region, regions per layer) as PNGs here.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorArg {
    Pattern,
    Class,
    Area,
    Slope,
    /// Regions per pixel (PNG; the SVG uses area).
    Density,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgesArg {
    Plain,
    Layer,
    None,
}

/// Which classes the boundary separates.
#[derive(Args, Debug, Clone)]
pub struct DecisionArgs {
    /// For a single-output model (or to force two classes): the level of output 0 (default 0).
    #[arg(long, allow_hyphen_values = true, conflicts_with = "level")]
    pub threshold: Option<f64>,
    /// A level set instead of the argmax boundary: `i=T` (output i) or `i,j=T` (output i − output j).
    #[arg(long, value_name = "i[,j]=T", allow_hyphen_values = true)]
    pub level: Option<String>,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Model file (tessera-model/1 JSON, or .onnx).
    pub model: PathBuf,
    #[command(flatten)]
    pub slice: SliceArgs,
    #[command(flatten)]
    pub decision: DecisionArgs,
    /// Points uniform in arc length on the boundary, written to --out.
    #[arg(long = "boundary", value_name = "N")]
    pub boundary_points: Option<usize>,
    /// One interior point (the Chebyshev centre) for N regions, written to --regions-out.
    #[arg(long = "regions", value_name = "N")]
    pub region_points: Option<usize>,
    /// Pairs at distance EPS on either side of each boundary point, written to --pairs-out.
    #[arg(long, value_name = "EPS", requires = "boundary_points")]
    pub near_boundary: Option<f64>,
    /// Seed of the random positions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Boundary points as an array shaped [N, *input_shape].
    #[arg(long, value_name = "points.npy")]
    pub out: Option<PathBuf>,
    /// Region points as an array shaped [N, *input_shape].
    #[arg(long, value_name = "regions.npy")]
    pub regions_out: Option<PathBuf>,
    /// Near-boundary pairs as an array shaped [N, 2, *input_shape] (index 0: the lower class's side).
    #[arg(long, value_name = "pairs.npy")]
    pub pairs_out: Option<PathBuf>,
    /// Every sampled point with its (u, v), classes and outputs.
    #[arg(long, value_name = "points.json")]
    pub json: Option<PathBuf>,
    /// Element type of the .npy arrays.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Model file (tessera-model/1 JSON, or .onnx).
    pub model: PathBuf,
    #[command(flatten)]
    pub slice: SliceArgs,
    /// Seeded random points checked in addition to every region's centroid.
    #[arg(long, default_value_t = 1000)]
    pub points: usize,
    /// Seed of the random points.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also certify the partition in exact rational arithmetic, independently of the engine
    /// (patterns at interior points, every vertex on its pattern's side of every line, edges on
    /// lines, exact maps, areas summing to the domain).
    #[arg(long)]
    pub exact: bool,
}

#[derive(Args, Debug)]
pub struct NeuronsArgs {
    /// Model file (tessera-model/1 JSON, or .onnx).
    pub model: PathBuf,
    #[command(flatten)]
    pub slice: SliceArgs,
    /// One row per unit: node, op, unit, verdict, area fraction and regions of each piece,
    /// edge length.
    #[arg(long, value_name = "OUT.csv")]
    pub csv: Option<PathBuf>,
    /// Write plots (verdicts per layer, edge length per layer) as PNGs here.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Write the network without the units that never switch on the slice (dead units as
    /// constants, linear ones as affine maps) as tessera-model/1 JSON, after checking that it
    /// gives every region's map.
    #[arg(long, value_name = "OUT.json")]
    pub rewrite: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LocalArgs {
    /// Model file (tessera-model/1 JSON, or .onnx).
    pub model: PathBuf,
    /// Data points, an array shaped [N, *input_shape] (or [N, features]).
    #[arg(long, value_name = "X.npy")]
    pub points: PathBuf,
    /// Radius of the disk around each point, in input units.
    #[arg(long, allow_hyphen_values = true)]
    pub radius: f64,
    /// Random planes through each point.
    #[arg(long, default_value_t = 8)]
    pub planes: usize,
    /// Seed of the planes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// One row per point and plane: regions, crossing units, crossing units per layer.
    #[arg(long, value_name = "OUT.csv")]
    pub csv: Option<PathBuf>,
    /// A histogram of the region counts per disk.
    #[arg(long, value_name = "OUT.png")]
    pub plot: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Stop with exit code 3 when a disk's partition has more than this many regions.
    #[arg(long, value_name = "N")]
    pub max_regions: Option<u64>,
    /// Stop with exit code 3 when one disk's partition takes longer than this.
    #[arg(long, value_name = "SECONDS")]
    pub time_limit: Option<f64>,
    /// Stop with exit code 3 when a disk's kept regions would need more memory (default 8192).
    #[arg(long, value_name = "MB", default_value_t = 8192)]
    pub memory_limit: u64,
}

#[derive(Args, Debug)]
pub struct SeriesArgs {
    /// Checkpoints (ONNX or JSON files), in training order; all with the same input shape.
    #[arg(required = true, value_name = "CKPT")]
    pub checkpoints: Vec<PathBuf>,
    #[command(flatten)]
    pub slice: SliceArgs,
    #[command(flatten)]
    pub decision: DecisionArgs,
    /// One row per checkpoint: regions, per-layer counts, vertices, boundary length and
    /// components, dead, linear and switching units.
    #[arg(long, value_name = "OUT.csv")]
    pub csv: Option<PathBuf>,
    /// Write line plots over the checkpoints as PNGs here.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// An animated GIF of the partitions, one frame per checkpoint (colours follow the
    /// activation pattern, so a region keeps its colour while its pattern lives).
    #[arg(long, value_name = "OUT.gif")]
    pub gif: Option<PathBuf>,
    /// Frame size of the GIF in pixels.
    #[arg(long, value_name = "W,H", default_value = "480,480")]
    pub size: String,
    /// Time each frame shows, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub frame_ms: u32,
}
