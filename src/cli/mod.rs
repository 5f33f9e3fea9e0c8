//! The command-line front end: configuration, progress, output files, exit codes.

pub mod args;
mod config;
mod output;

use args::{Cli, Command, MapArgs, SliceArgs, VerifyArgs};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::{EngineError, Options};

/// Errors of the command, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Lib(#[from] tessera::Error),
    #[error("{0}")]
    Usage(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Lib(tessera::Error::Engine(EngineError::TooManyRegions { .. })) => 3,
            _ => 2,
        }
    }
}

pub fn run(cli: Cli) -> Result<i32, CliError> {
    match cli.command {
        Command::Map(a) => map(a),
        Command::Verify(a) => verify(a),
        Command::Info { model } => info(&model),
    }
}

/// A spinner on stderr while the engine runs, only when stderr is a terminal.
struct Progress {
    done: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(counter: Arc<AtomicU64>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let handle = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            std::thread::spawn(move || {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                        .expect("valid template"),
                );
                // Only show up for runs long enough to be worth it.
                let start = Instant::now();
                while !done.load(Ordering::Relaxed) {
                    if start.elapsed() > Duration::from_millis(300) {
                        bar.set_message(format!("{} regions", counter.load(Ordering::Relaxed)));
                        bar.tick();
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

fn options(s: &SliceArgs, counter: &Arc<AtomicU64>, count_vertices: bool) -> Options {
    Options {
        threads: s.threads,
        max_regions: s.max_regions,
        keep_regions: false,
        count_vertices,
        progress: Some(counter.clone()),
    }
}

fn map(a: MapArgs) -> Result<i32, CliError> {
    let net = config::load_model(&a.model)?;
    let slice = config::build_slice(&net, &a.slice)?;
    let counter = Arc::new(AtomicU64::new(0));
    // Welding vertices costs a sort of every corner: only when the numbers are asked for.
    let opts = options(&a.slice, &counter, a.stats || a.json.is_some());
    let start = Instant::now();
    let progress = Progress::start(counter);
    let result = if a.json.is_some() {
        tessera::partition(&net, &slice, &opts).map(|p| (p.summary.clone(), Some(p)))
    } else {
        tessera::count(&net, &slice, &opts).map(|s| (s, None))
    };
    progress.stop();
    let (summary, partition) = result?;
    let elapsed = start.elapsed().as_secs_f64();
    let stats = output::stats_json(&summary, elapsed);
    if let (Some(path), Some(p)) = (&a.json, &partition) {
        output::write_partition(path, p, &slice, &stats)?;
    }
    let d = slice.domain;
    let layers: Vec<String> = summary
        .regions_per_layer
        .iter()
        .map(|c| format!("{}#{}: {}", c.op, c.layer, c.regions))
        .collect();
    let vertices = summary
        .vertices
        .map(|v| format!(", {v} vertices"))
        .unwrap_or_default();
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
    if let Some(path) = &a.json {
        eprintln!("wrote {}", path.display());
    }
    if a.stats {
        println!("{stats}");
    }
    Ok(0)
}

fn verify(a: VerifyArgs) -> Result<i32, CliError> {
    let net = config::load_model(&a.model)?;
    let slice = config::build_slice(&net, &a.slice)?;
    let counter = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(counter.clone());
    let part = tessera::partition(&net, &slice, &options(&a.slice, &counter, false));
    progress.stop();
    let part = part?;
    let oracle = |p: [f64; 2]| tessera::forward_at(&net, &slice, p);
    let report = part.sanity_check(a.points, a.seed, Some(&oracle));
    eprintln!(
        "{} regions; checked {} points ({} random, one per region); worst relative map error {:.3e} (tolerance {:.0e})",
        part.regions.len(),
        report.map_points,
        a.points,
        report.max_map_error,
        tessera::partition::MAP_TOL
    );
    if report.is_ok() {
        eprintln!("ok: the partition is consistent and every map matches the forward pass");
        Ok(0)
    } else {
        for v in &report.violations {
            eprintln!("mismatch: {v}");
        }
        Ok(1)
    }
}

fn info(model: &std::path::Path) -> Result<i32, CliError> {
    let net = config::load_model(model)?;
    println!("model {}", model.display());
    println!("input shape {}", net.input_shape);
    for (i, l) in net.layers.iter().enumerate() {
        let units = if l.is_affine() {
            String::new()
        } else {
            format!("  ({} piecewise-linear units)", l.output.numel())
        };
        println!(
            "  {i:>3}  {:<12} {} -> {}  params {}{units}",
            l.op,
            l.input,
            l.output,
            l.parameter_count()
        );
    }
    println!("parameters {}", net.parameter_count());
    println!("piecewise-linear units {}", net.pwl_unit_count());
    Ok(0)
}
