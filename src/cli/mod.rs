//! The command-line front end: configuration, progress, output files, exit codes.

pub mod args;
mod config;
mod output;

use args::{Cli, Command, MapArgs, SampleArgs, SliceArgs, VerifyArgs};

mod analysis;
mod line;
mod solid;
mod tiles;
use std::io::IsTerminal;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::boundary::{decision_boundary, Segments};
use tessera::export::{JsonRegions, RecordOptions};
use tessera::render::raster::Raster;
use tessera::render::EdgeMode;
use tessera::{EngineError, Options};

/// Errors of the command, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Lib(#[from] tessera::Error),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Decision(#[from] tessera::boundary::DecisionError),
    #[error("cannot draw: {0}")]
    Render(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Lib(tessera::Error::Engine(
                EngineError::TooManyRegions { .. } | EngineError::TimeLimit { .. } | EngineError::MemoryLimit { .. },
            )) => 3,
            CliError::Render(_) => 1,
            _ => 2,
        }
    }
}

pub fn run(cli: Cli) -> Result<i32, CliError> {
    let threads = match &cli.command {
        Command::Map(a) => a.slice.threads,
        Command::Verify(a) => a.slice.threads,
        Command::Sample(a) => a.slice.threads,
        Command::Neurons(a) => a.slice.threads,
        Command::Series(a) => a.slice.threads,
        Command::Local(a) => a.threads,
        Command::Info { .. } | Command::ExportJson { .. } | Command::Merge(_) | Command::Line(_) => 0,
    };
    output::clean_up_on_interrupt();
    if threads > 0 {
        // Everything after the engine (vertex welding, boundaries) runs on rayon's global pool.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    }
    match cli.command {
        Command::Map(a) => map(a),
        Command::Verify(a) => verify(a),
        Command::Sample(a) => sample(a),
        Command::Merge(a) => tiles::merge(a),
        Command::Line(a) => line::line(a),
        Command::Neurons(a) => analysis::neurons(a),
        Command::Local(a) => analysis::local(a),
        Command::Series(a) => analysis::series(a),
        Command::Info { model } => info(&model),
        Command::ExportJson { model, out } => export_json(&model, out.as_deref()),
    }
}

/// Progress on stderr while the engine runs, only when stderr is a terminal: a bar of the share
/// of the domain's area finished, with the region count and an estimate of the time left.
struct Progress {
    done: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// A bar following a run.
    fn start(progress: Arc<tessera::Progress>) -> Self {
        Self::show(Some(progress), String::new())
    }

    /// A spinner with a fixed message.
    fn phase(label: String) -> Self {
        Self::show(None, label)
    }

    fn show(run: Option<Arc<tessera::Progress>>, label: String) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let handle = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            std::thread::spawn(move || {
                let bar = match &run {
                    Some(_) => {
                        let bar = indicatif::ProgressBar::new(1000);
                        bar.set_style(
                            indicatif::ProgressStyle::with_template(
                                "{bar:40} {percent:>3}% of the domain, {msg} [{elapsed}, about {eta} left]",
                            )
                            .expect("valid template"),
                        );
                        bar
                    }
                    None => {
                        let bar = indicatif::ProgressBar::new_spinner();
                        bar.set_style(
                            indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                                .expect("valid template"),
                        );
                        bar.set_message(label);
                        bar
                    }
                };
                // Only show up for runs long enough to be worth it.
                let start = Instant::now();
                while !done.load(Ordering::Relaxed) {
                    if start.elapsed() > Duration::from_millis(300) {
                        match &run {
                            Some(p) => {
                                bar.set_position((p.fraction() * 1000.0) as u64);
                                bar.set_message(format!("{} regions", p.regions()));
                            }
                            None => bar.tick(),
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                bar.finish_and_clear();
            })
        });
        Progress { done, handle }
    }

    fn stop(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn options(s: &SliceArgs, progress: &Arc<tessera::Progress>) -> Options {
    Options {
        time_limit: s.time_limit.and_then(|t| std::time::Duration::try_from_secs_f64(t).ok()),
        memory_limit: Some(s.memory_limit.saturating_mul(1 << 20)),
        threads: s.threads,
        max_regions: s.max_regions,
        progress: Some(progress.clone()),
        ..Options::default()
    }
}

/// The collectors of one `map` run: kept regions, the boundary's segments, the picture, the JSON.
type MapCollect = (
    Option<tessera::Keep>,
    (Option<Segments>, (Option<Raster>, Option<JsonRegions<std::io::BufWriter<std::fs::File>>>)),
);

fn map(a: MapArgs) -> Result<i32, CliError> {
    if a.dims == 3 {
        return solid::map3(a);
    }
    if a.mesh.is_some() {
        return Err(CliError::Usage("--mesh needs --dims 3 (a 2D map's boundary is in --json and --stats)".into()));
    }
    let spec = a.tile.as_deref().map(tessera::tile::TileSpec::parse).transpose().map_err(tessera::Error::from)?;
    let net = Arc::new(config::load_model(&a.model)?);
    let slice = config::build_slice(&net, &a.slice)?;
    let decision = config::decision(&a.decision, net.output_shape().numel())?;
    if let (Some(spec), Some(out)) = (spec, &a.tile_out) {
        return tiles::map_tile(&a, &net, &slice, &decision, spec, out);
    }
    if let Some(l) = a.layer_map.filter(|&l| l >= net.nodes.len()) {
        return Err(CliError::Usage(format!(
            "--layer-map {l}: the model has layers (nodes) 0 to {}",
            net.nodes.len().saturating_sub(1)
        )));
    }
    let render_opts = config::render_options(&a.picture)?;
    let name = a.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    // Everything streams (memory independent of the region count) but what needs the whole
    // partition: an SVG (a polygon per region), statistics plots, edges coloured by layer.
    let layer_edges = render_opts.edges == EdgeMode::Layer && a.picture.png.is_some();
    let keep = a.picture.svg.is_some() || a.picture.plots.is_some() || layer_edges || a.pieces || a.graph.is_some();
    let segments = (a.boundary && !keep).then(|| Segments::new(decision.clone()));
    let raster = (a.picture.png.is_some() && !layer_edges && !a.pieces)
        .then(|| Raster::new(slice.domain, render_opts.clone(), Some(decision.clone())));
    let mut json_file = None;
    let json = match &a.json {
        Some(path) => {
            let (file, mut w) = output::StreamFile::create(path)?;
            w.write_all(tessera::export::header(&slice).as_bytes())
                .map_err(|source| CliError::Write { path: path.display().to_string(), source })?;
            let (plane, _) = slice.normalized();
            let options = RecordOptions {
                decision: a.boundary.then(|| decision.clone()),
                layer_map: a.layer_map.map(|l| (l, net.clone(), plane)),
            };
            let collector = JsonRegions::new(w, options, &file.dir());
            json_file = Some(file);
            Some(collector)
        }
        None => None,
    };
    let collect: MapCollect = (keep.then(tessera::Keep::default), (segments, (raster, json)));
    let progress = Arc::new(tessera::Progress::default());
    let opts = options(&a.slice, &progress);
    let start = Instant::now();
    let bar = Progress::start(progress.clone());
    let run = tessera::stream(&net, &slice, &opts, collect);
    bar.stop();
    let run = run?;
    let elapsed = start.elapsed().as_secs_f64();
    let tessera::Run { summary, collect: (kept, (segments, (raster, json))), frame, layout, output_scale } = run;
    let outputs = net.output_shape().numel();
    let partition = kept.map(|collect| {
        let run = tessera::Run { summary: summary.clone(), collect, frame, layout, output_scale };
        tessera::into_partition(run, slice.domain, outputs)
    });
    let boundary = match (&partition, segments) {
        (Some(p), _) if a.boundary || a.picture.svg.is_some() || layer_edges => Some(decision_boundary(p, &decision)),
        (_, Some(s)) => Some(s.finish()),
        _ => None,
    };
    let mut stats = tessera::export::stats_json(&summary, boundary.as_ref(), elapsed);
    // Linear pieces, and a partition coloured by piece for the pictures.
    let pieces = match (&partition, a.pieces) {
        (Some(p), true) => {
            let lp = tessera::analysis::pieces::linear_pieces(p);
            stats["pieces"] = serde_json::json!(lp.pieces.len());
            eprintln!(
                "{} linear pieces (regions with equal affine maps merged) from {} regions",
                lp.pieces.len(),
                p.regions.len()
            );
            Some(lp)
        }
        _ => None,
    };
    if let (Some(p), Some(path)) = (&partition, &a.graph) {
        let g = tessera::analysis::graph::region_graph(&net, p, &decision).map_err(tessera::Error::from)?;
        output::write_atomically(path, |w| tessera::analysis::graph::write_graphml(&g, w))?;
        eprintln!("wrote {} ({} regions, {} adjacencies)", path.display(), g.node_count(), g.edge_count());
    }
    let by_piece = match (&partition, &pieces) {
        (Some(p), Some(lp)) if a.picture.svg.is_some() || a.picture.png.is_some() => {
            Some(tessera::analysis::pieces::colour_by_piece(p, lp))
        }
        _ => None,
    };
    if let (Some(file), Some(json)) = (json_file, json) {
        let b = boundary.as_ref().filter(|_| a.boundary).map(|b| tessera::export::boundary_json(b, &frame));
        file.commit(json.finish(b, &stats))?;
    }
    let title = Some(format!("{name}: {} regions", summary.regions));
    if let (Some(path), Some(r)) = (&a.picture.png, raster) {
        let bar = Progress::phase(format!("drawing {}", path.display()));
        let rgb = r.finish(title.clone(), slice.anchors);
        let png = tessera::render::encode_png(&rgb, render_opts.size.0, render_opts.size.1);
        bar.stop();
        output::write_atomically(path, |w| w.write_all(&png))?;
        eprintln!("wrote {}", path.display());
    }
    let title = match &pieces {
        Some(lp) => Some(format!("{name}: {} linear pieces ({} regions)", lp.pieces.len(), summary.regions)),
        None => title,
    };
    if let (Some(path), Some(p)) = (&a.picture.png, &by_piece) {
        // Pieces are told apart by colour: region edges would hide them.
        let opts =
            tessera::render::RenderOptions { title: title.clone(), edges: EdgeMode::None, ..render_opts.clone() };
        let png = tessera::render::partition_png(p, &decision, boundary.as_ref(), slice.anchors, &opts);
        output::write_atomically(path, |w| w.write_all(&png))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(p) = by_piece.as_ref().or(partition.as_ref()) {
        let opts = tessera::render::RenderOptions { title: title.clone(), ..render_opts.clone() };
        let scene = tessera::render::Scene { partition: p, boundary: boundary.as_ref(), anchors: slice.anchors };
        if let Some(path) = &a.picture.svg {
            let bar = Progress::phase(format!("drawing {}", path.display()));
            let svg = tessera::render::render_svg(&scene, &opts);
            bar.stop();
            output::write_atomically(path, |w| w.write_all(svg.as_bytes()))?;
            eprintln!("wrote {}", path.display());
        }
        if let (Some(path), true) = (&a.picture.png, layer_edges && by_piece.is_none()) {
            let bar = Progress::phase(format!("drawing {}", path.display()));
            let png = tessera::render::render_png(&scene, &opts);
            bar.stop();
            output::write_atomically(path, |w| w.write_all(&png))?;
            eprintln!("wrote {}", path.display());
        }
        if let Some(dir) = &a.picture.plots {
            std::fs::create_dir_all(dir)
                .map_err(|source| CliError::Write { path: dir.display().to_string(), source })?;
            let plots = tessera::render::plots::stats_plots(p, (800, 500)).map_err(CliError::Render)?;
            for (stem, png) in plots {
                let path = dir.join(format!("{stem}.png"));
                output::write_atomically(&path, |w| w.write_all(&png))?;
            }
            eprintln!("wrote plots to {}", dir.display());
        }
    }
    let d = slice.domain;
    let layers: Vec<String> =
        summary.regions_per_layer.iter().map(|c| format!("{}#{}: {}", c.op, c.layer, c.regions)).collect();
    let vertices = summary.vertices.map(|v| format!(", {v} vertices")).unwrap_or_default();
    eprintln!(
        "{} regions{vertices} over [{}, {}] × [{}, {}] in {:.3} s (after each nonlinear layer: {})",
        summary.regions,
        d.u0,
        d.u1,
        d.v0,
        d.v1,
        elapsed,
        layers.join(", ")
    );
    if let Some(b) = &boundary {
        eprintln!(
            "boundary: length {:.6}, {} components ({} closed), crosses {} regions",
            b.length, b.components, b.closed_components, b.crossed_regions
        );
    }
    if let Some(path) = &a.json {
        eprintln!("wrote {}", path.display());
    }
    if a.stats {
        print_stdout(&format!("{stats}\n"));
    }
    Ok(0)
}

/// Most points `verify` and `sample` accept: bounded memory for their outputs.
const MAX_POINTS: usize = 10_000_000;

/// Relative tolerance of the forward-pass check of boundary points.
const BOUNDARY_TOL: f64 = 1e-9;

fn sample(a: SampleArgs) -> Result<i32, CliError> {
    if a.boundary_points.is_none() && a.region_points.is_none() {
        return Err(CliError::Usage("nothing to sample: give --boundary N and/or --regions N".into()));
    }
    if a.boundary_points.unwrap_or(0) > MAX_POINTS || a.region_points.unwrap_or(0) > MAX_POINTS {
        return Err(CliError::Usage(format!("at most {MAX_POINTS} points can be sampled")));
    }
    if a.near_boundary.is_some_and(|e| !(e.is_finite() && e > 0.0)) {
        return Err(CliError::Usage("--near-boundary must be a positive distance".into()));
    }
    for (given, source, flag, needs) in [
        (a.out.is_some(), a.boundary_points.is_some(), "--out", "--boundary N"),
        (a.pairs_out.is_some(), a.near_boundary.is_some(), "--pairs-out", "--near-boundary EPS"),
        (a.regions_out.is_some(), a.region_points.is_some(), "--regions-out", "--regions N"),
    ] {
        if given && !source {
            return Err(CliError::Usage(format!("{flag} needs {needs}")));
        }
    }
    let outputs_given = a.out.is_some() || a.regions_out.is_some() || a.pairs_out.is_some() || a.json.is_some();
    if !outputs_given {
        return Err(CliError::Usage("no output: give --out, --regions-out, --pairs-out or --json".into()));
    }
    let net = config::load_model(&a.model)?;
    let slice = config::build_slice(&net, &a.slice)?;
    let decision = config::decision(&a.decision, net.output_shape().numel())?;
    let progress = Arc::new(tessera::Progress::default());
    let bar = Progress::start(progress.clone());
    let part = tessera::partition(&net, &slice, &options(&a.slice, &progress));
    bar.stop();
    let part = part?;
    let dims: Vec<u64> = net.input_shape.dims().iter().map(|&d| d as u64).collect();
    let encode = |n: usize, per: &[u64], data: &[f64]| {
        let mut shape = vec![n as u64];
        shape.extend_from_slice(per);
        match a.dtype {
            args::Dtype::F32 => tessera::npy::to_bytes_f32(&shape, data),
            args::Dtype::F64 => tessera::npy::to_bytes_f64(&shape, data),
        }
    };
    let mut failures = 0usize;
    let mut doc = serde_json::Map::new();
    if let Some(n) = a.boundary_points {
        let boundary = decision_boundary(&part, &decision);
        let pts = tessera::sample::boundary_points(&part, &boundary, &decision, n, a.seed);
        if pts.len() < n {
            eprintln!("mismatch: the decision boundary is empty on this domain: no boundary points");
            failures += 1;
        }
        let (mut flat, mut items, mut worst) = (Vec::new(), Vec::new(), 0.0f64);
        let (mut pairs, mut pair_items, mut flips) = (Vec::new(), Vec::new(), 0usize);
        for p in &pts {
            let x = slice.plane.point(p.uv[0], p.uv[1]);
            let y = net.forward(&x);
            match tessera::sample::boundary_gap(&decision, &y, p.classes, BOUNDARY_TOL) {
                Some(gap) if gap <= BOUNDARY_TOL => worst = worst.max(gap),
                Some(gap) => {
                    worst = worst.max(gap);
                    failures += 1;
                }
                None => {
                    worst = f64::INFINITY;
                    failures += 1;
                }
            }
            let (c0, c1) = p.classes;
            items.push(serde_json::json!({"uv": p.uv, "classes": [c0, c1], "region": p.region,
                "scores": [decision.score(&y, c0), decision.score(&y, c1)], "outputs": y}));
            flat.extend_from_slice(&x);
            if let Some(eps) = a.near_boundary {
                let side = |s: f64| [p.uv[0] + s * eps * p.normal[0], p.uv[1] + s * eps * p.normal[1]];
                let (q0, q1) = (side(-1.0), side(1.0));
                let (x0, x1) = (slice.plane.point(q0[0], q0[1]), slice.plane.point(q1[0], q1[1]));
                let (k0, k1) = (decision.class_of(&net.forward(&x0)), decision.class_of(&net.forward(&x1)));
                if (k0, k1) == (c0, c1) {
                    flips += 1;
                } else {
                    failures += 1;
                }
                pair_items.push(serde_json::json!({"uv": [q0, q1], "classes": [k0, k1]}));
                pairs.extend_from_slice(&x0);
                pairs.extend_from_slice(&x1);
            }
        }
        eprintln!(
            "{} boundary points (length {:.6}): worst relative score gap {:.3e} (tolerance {BOUNDARY_TOL:.0e})",
            pts.len(),
            boundary.length,
            worst
        );
        if let Some(path) = &a.out {
            output::write_atomically(path, |w| w.write_all(&encode(pts.len(), &dims, &flat)))?;
        }
        doc.insert("boundary".into(), serde_json::Value::Array(items));
        if let Some(eps) = a.near_boundary {
            eprintln!("{flips} of {} near-boundary pairs (eps {eps:e}) fall on the two expected classes", pts.len());
            if let Some(path) = &a.pairs_out {
                let mut per = vec![2];
                per.extend_from_slice(&dims);
                output::write_atomically(path, |w| w.write_all(&encode(pts.len(), &per, &pairs)))?;
            }
            doc.insert("near_boundary".into(), serde_json::Value::Array(pair_items));
        }
    }
    if let Some(n) = a.region_points {
        let pts = tessera::sample::region_points(&part, n, a.seed);
        let mut flat = Vec::new();
        let mut items = Vec::new();
        for &(region, c, r) in &pts {
            let x = slice.plane.point(c[0], c[1]);
            let y = net.forward(&x);
            items.push(serde_json::json!({"uv": c, "region": region, "radius": r,
                "class": decision.class_of(&y), "outputs": y}));
            flat.extend_from_slice(&x);
        }
        eprintln!("{} region points (Chebyshev centres)", pts.len());
        if let Some(path) = &a.regions_out {
            output::write_atomically(path, |w| w.write_all(&encode(pts.len(), &dims, &flat)))?;
        }
        doc.insert("regions".into(), serde_json::Value::Array(items));
    }
    if let Some(path) = &a.json {
        let value = serde_json::Value::Object(doc);
        output::write_atomically(path, |w| serde_json::to_writer(w, &value).map_err(std::io::Error::other))?;
    }
    if failures > 0 {
        eprintln!("mismatch: {failures} sampled points failed the forward-pass check");
        return Ok(1);
    }
    Ok(0)
}

fn verify(a: VerifyArgs) -> Result<i32, CliError> {
    if a.points > MAX_POINTS {
        return Err(CliError::Usage(format!("--points {} is above the limit of {MAX_POINTS}", a.points)));
    }
    let net = config::load_model(&a.model)?;
    let slice = config::build_slice(&net, &a.slice)?;
    let progress = Arc::new(tessera::Progress::default());
    let bar = Progress::start(progress.clone());
    let part = tessera::partition(&net, &slice, &options(&a.slice, &progress));
    bar.stop();
    let part = part?;
    let report = tessera::check(&net, &slice, &part, a.points, a.seed);
    eprintln!(
        "{} regions; checked {} points ({} random, one per region); worst relative map error {:.3e} (tolerance {:.0e})",
        part.regions.len(),
        report.map_points,
        a.points,
        report.max_map_error,
        tessera::partition::MAP_TOL
    );
    let mut ok = report.is_ok();
    if ok {
        eprintln!("ok: the partition is consistent and every map matches the forward pass");
    } else {
        for v in &report.violations {
            eprintln!("mismatch: {v}");
        }
    }
    if a.exact {
        let start = std::time::Instant::now();
        let cert = tessera::certify::certify(&net, &slice, &part);
        eprintln!(
            "exact: {} regions, {} unit-vertex comparisons, area sum off by {:.3e} of the domain (allowed {:.3e}), in {:.2} s",
            cert.regions,
            cert.comparisons,
            cert.area_discrepancy,
            cert.area_bound,
            start.elapsed().as_secs_f64()
        );
        if cert.within_tolerance > 0 {
            // δ in normalised coordinates (side 2): as a fraction of the domain's side.
            let frac = cert.max_delta / 2.0;
            eprintln!(
                "note: {} decisions were within the tolerance of their line (up to {frac:.1e} of the domain's side){}",
                cert.within_tolerance,
                if frac > 1e-6 {
                    ": huge terms in the network make the rounding noise this large, and regions thinner than that may be merged"
                } else {
                    ""
                }
            );
        }
        if cert.is_ok() {
            eprintln!("ok: certified in exact arithmetic");
        } else {
            for v in &cert.violations {
                eprintln!("not certified: {v}");
            }
            ok = false;
        }
    }
    Ok(if ok { 0 } else { 1 })
}

fn export_json(model: &std::path::Path, out: Option<&std::path::Path>) -> Result<i32, CliError> {
    let net = config::load_model(model)?;
    let text = format!("{}\n", tessera::network::json::to_value(&net));
    match out {
        Some(path) => output::write_atomically(path, |w| w.write_all(text.as_bytes()))?,
        None => print_stdout(&text),
    }
    Ok(0)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn print_stdout(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn info(model: &std::path::Path) -> Result<i32, CliError> {
    use std::fmt::Write;
    let net = config::load_model(model)?;
    let mut text = String::new();
    let _ = writeln!(text, "model {}", model.display());
    let _ = writeln!(text, "input shape {}", net.input_shape);
    let chain = net.is_chain();
    for (i, n) in net.nodes.iter().enumerate() {
        let l = &n.layer;
        let units =
            if l.is_affine() { String::new() } else { format!("  ({} piecewise-linear units)", l.pwl_unit_count()) };
        // Graphs also show each node's name and what it reads.
        let reads = if chain {
            String::new()
        } else {
            let names: Vec<String> = n
                .inputs
                .iter()
                .map(|s| match *s {
                    tessera::network::Src::Input => "input".to_string(),
                    tessera::network::Src::Node(j) => j.to_string(),
                })
                .collect();
            format!("  `{}` <- {}", n.name, names.join(", "))
        };
        let _ = writeln!(
            text,
            "  {i:>3}  {:<12} {} -> {}  params {}{units}{reads}",
            l.op,
            l.input,
            l.output,
            l.parameter_count()
        );
    }
    let _ = writeln!(text, "parameters {}", net.parameter_count());
    let _ = writeln!(text, "piecewise-linear units {}", net.pwl_unit_count());
    print_stdout(&text);
    Ok(0)
}
