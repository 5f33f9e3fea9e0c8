//! `tessera line`: the exact pieces of a network along a path, its class changes, and exact
//! integrated gradients.

use super::args::LineArgs;
use super::{config, output, print_stdout, CliError};
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use tessera::line;

/// A point: an `.npy` file, or numbers separated by commas.
fn read_point(text: &str, n: usize, what: &str) -> Result<Vec<f64>, CliError> {
    let text = text.trim();
    if text.ends_with(".npy") {
        return config::read_vector(Path::new(text), n, what);
    }
    let values: Result<Vec<f64>, _> = text.split(',').map(|s| s.trim().parse::<f64>()).collect();
    let values = values.map_err(|_| {
        CliError::Usage(format!("{what}: expected an .npy file or comma-separated numbers, got `{text}`"))
    })?;
    if values.len() != n {
        return Err(CliError::Usage(format!("{what} has {} values but the model input has {n}", values.len())));
    }
    Ok(values)
}

pub fn line(a: LineArgs) -> Result<i32, CliError> {
    let net = config::load_model(&a.model)?;
    let n = net.input_shape.numel();
    let outputs = net.output_shape().numel();
    let decision = config::decision(&a.decision, outputs)?;
    let picture_size = config::picture_size(&a.size)?;
    let points: Vec<Vec<f64>> = match (&a.from, &a.to, &a.path) {
        (Some(f), Some(t), None) => vec![read_point(f, n, "--from")?, read_point(t, n, "--to")?],
        (None, None, Some(p)) => p
            .split(';')
            .enumerate()
            .map(|(k, q)| read_point(q, n, &format!("--path point {k}")))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(CliError::Usage(
                "give a segment with --from A --to B, or a polyline with --path P0;P1;...".into(),
            ))
        }
    };
    let start = Instant::now();
    let traced = line::trace(&net, &points, &decision).map_err(tessera::Error::from)?;
    let elapsed = start.elapsed().as_secs_f64();
    let layers: Vec<String> =
        traced.layout.iter().zip(&traced.pieces_per_layer).map(|(l, c)| format!("{}#{}: {c}", l.op, l.layer)).collect();
    let length: f64 = traced.segment_lengths.iter().sum();
    eprintln!(
        "{} pieces along {} segment(s) of total length {:.6} in {:.2} ms (after each nonlinear layer: {}); {} class change(s)",
        traced.pieces.len(),
        traced.segment_lengths.len(),
        length,
        elapsed * 1e3,
        layers.join(", "),
        traced.class_changes.len()
    );
    for c in traced.class_changes.iter().take(20) {
        eprintln!("  class {} -> {} at t = {:.12} of segment {}", c.from, c.to, c.t, c.segment);
    }
    let changes: Vec<_> = traced
        .class_changes
        .iter()
        .map(|c| json!({"segment": c.segment, "t": c.t, "from": c.from, "to": c.to}))
        .collect();
    let mut stats = json!({
        "pieces": traced.pieces.len(),
        "pieces_per_layer": traced.pieces_per_layer,
        "nonlinear_layers": traced.layout.iter().map(|l| json!({"layer": l.layer, "op": l.op})).collect::<Vec<_>>(),
        "segments": traced.segment_lengths.len(),
        "segment_lengths": traced.segment_lengths,
        "class_changes": changes,
        "elapsed_s": elapsed,
    });
    let mut status = 0;
    if a.integrated_gradients {
        let input = points.last().expect("two points at least");
        let baseline = match &a.baseline {
            Some(b) => read_point(b, n, "--baseline")?,
            None => points[0].clone(),
        };
        let target = match (a.target, &decision) {
            (Some(k), _) => k,
            (None, tessera::boundary::Decision::Argmax) => decision.class_of(&net.forward(input)),
            (None, _) => {
                return Err(CliError::Usage(
                    "--integrated-gradients with --threshold or --level needs --target K (an output index)".into(),
                ))
            }
        };
        let ig = line::integrated_gradients(&net, &baseline, input, target).map_err(tessera::Error::from)?;
        // Relative to the terms that were added up: the attributions' and the outputs' sizes.
        let f_in = net.forward(input)[target].abs();
        let f_base = net.forward(&baseline)[target].abs();
        let scale = ig.values.iter().map(|v| v.abs()).sum::<f64>().max(f_in).max(f_base).max(1e-300);
        let err = (ig.sum - ig.difference).abs() / scale;
        eprintln!(
            "integrated gradients of output {target} over {} pieces: attributions sum to {:.12e}, f(input) - f(baseline) = {:.12e} (difference {err:.1e} of the terms' size)",
            ig.pieces, ig.sum, ig.difference
        );
        // Completeness holds by construction up to rounding: a larger gap is a defect.
        if err > 1e-9 {
            eprintln!("mismatch: the attributions do not sum to the output difference");
            status = 1;
        }
        if let Some(path) = &a.ig_out {
            let dims: Vec<u64> = net.input_shape.dims().iter().map(|&d| d as u64).collect();
            let bytes = tessera::npy::to_bytes_f64(&dims, &ig.values);
            output::write_atomically(path, |w| w.write_all(&bytes))?;
            eprintln!("wrote {}", path.display());
        }
        stats["integrated_gradients"] = json!({"output": target, "pieces": ig.pieces, "sum": ig.sum,
            "difference": ig.difference, "relative_error": err});
    }
    if let Some(path) = &a.json {
        let pieces: Vec<_> = traced
            .pieces
            .iter()
            .map(|p| {
                json!({"segment": p.segment, "t": [p.t0, p.t1], "pattern": p.pattern.to_hex(),
                       "outputs_t0": p.y0, "outputs_t1": p.y1, "slope": p.slope()})
            })
            .collect();
        let doc = json!({"format": "tessera-line/1", "pieces": pieces, "stats": stats});
        output::write_atomically(path, |w| serde_json::to_writer(w, &doc).map_err(std::io::Error::other))?;
        eprintln!("wrote {}", path.display());
    }
    let name = a.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let title = format!("{name}: {} pieces, {} class changes", traced.pieces.len(), traced.class_changes.len());
    if let Some(path) = &a.png {
        let png =
            tessera::render::line_plot::line_png(&traced, &decision, &title, picture_size).map_err(CliError::Render)?;
        output::write_atomically(path, |w| w.write_all(&png))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &a.svg {
        let svg =
            tessera::render::line_plot::line_svg(&traced, &decision, &title, picture_size).map_err(CliError::Render)?;
        output::write_atomically(path, |w| w.write_all(svg.as_bytes()))?;
        eprintln!("wrote {}", path.display());
    }
    if a.stats {
        print_stdout(&format!("{stats}\n"));
    }
    Ok(status)
}
