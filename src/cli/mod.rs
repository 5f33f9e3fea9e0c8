//! The command-line front end: configuration, progress, output files, exit codes.

pub mod args;
mod config;
mod output;

use args::{Cli, Command, SliceArgs};

mod analysis;
mod line;
mod map;
mod sample;
mod solid;
mod tiles;
mod verify;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
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
    #[error(transparent)]
    Decision(#[from] tessera::boundary::DecisionError),
    #[error("cannot draw: {0}")]
    Render(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    /// A result failed its own check (exit 1).
    #[error("{0}")]
    Check(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Lib(tessera::Error::Engine(
                EngineError::TooManyRegions { .. } | EngineError::TimeLimit { .. } | EngineError::MemoryLimit { .. },
            )) => 3,
            CliError::Lib(tessera::Error::Analysis(tessera::analysis::AnalysisError::TooLarge(_))) => 3,
            CliError::Render(_) | CliError::Check(_) => 1,
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
        Command::Map(a) => map::map(a),
        Command::Verify(a) => verify::verify(a),
        Command::Sample(a) => sample::sample(a),
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

/// The partition of `slice` by `net` with the slice flags' limits, with a progress bar.
pub(crate) fn partition_with_progress(
    net: &tessera::Network,
    slice: &tessera::Slice,
    args: &SliceArgs,
) -> Result<tessera::Partition, CliError> {
    let progress = Arc::new(tessera::Progress::default());
    let opts = options(args, &progress);
    let bar = Progress::start(progress.clone());
    let part = tessera::partition(net, slice, &opts);
    bar.stop();
    Ok(part?)
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

/// Most points `verify` and `sample` accept: bounded memory for their outputs.
const MAX_POINTS: usize = 10_000_000;

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
