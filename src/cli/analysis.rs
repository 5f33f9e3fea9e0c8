//! `tessera neurons`, `tessera local`, `tessera series`: analyses of finished partitions
//! (`tessera::analysis`), written as CSV, plots and an animation.

use super::args::{LocalArgs, NeuronsArgs, SeriesArgs};
use super::{config, output, partition_with_progress, print_stdout, CliError, Progress};
use std::fmt::Write as _;
use std::path::Path;
use tessera::analysis::neurons::{check_simplified, neuron_report, simplify, Verdict};
use tessera::analysis::{local, series};

/// A CSV field: quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_plots(dir: &Path, plots: Vec<(String, Result<Vec<u8>, String>)>) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|source| CliError::Write { path: dir.display().to_string(), source })?;
    for (stem, png) in plots {
        let png = png.map_err(CliError::Render)?;
        output::write_atomically(&dir.join(format!("{stem}.png")), |w| w.write_all(&png))?;
    }
    eprintln!("wrote plots to {}", dir.display());
    Ok(())
}

pub fn neurons(a: NeuronsArgs) -> Result<i32, CliError> {
    let net = config::load_model(&a.model)?;
    let slice = config::build_slice(&net, &a.slice)?;
    let part = partition_with_progress(&net, &slice, &a.slice)?;
    let report = neuron_report(&net, &part).map_err(tessera::Error::from)?;
    let area = report.domain_area;
    if let Some(path) = &a.csv {
        output::write_atomically(path, |w| {
            writeln!(w, "node,name,op,unit,verdict,active_pieces,edge_length,piece_area_fraction,piece_regions")?;
            for l in &report.layers {
                for u in &l.units {
                    let fr: Vec<String> = u.piece_area.iter().map(|x| format!("{}", x / area)).collect();
                    let rg: Vec<String> = u.piece_regions.iter().map(|x| x.to_string()).collect();
                    writeln!(
                        w,
                        "{},{},{},{},{},{},{},{},{}",
                        l.layer,
                        csv_field(&l.name),
                        csv_field(&l.op),
                        u.unit,
                        u.verdict.name(),
                        u.active_pieces(),
                        u.edge_length,
                        fr.join(";"),
                        rg.join(";")
                    )?;
                }
            }
            Ok(())
        })?;
        eprintln!("wrote {}", path.display());
    }
    let mut table = String::from("node  op           units     dead   linear  switching  edge length\n");
    for l in &report.layers {
        let edges: f64 = l.units.iter().map(|u| u.edge_length).sum();
        let _ = writeln!(
            table,
            "{:<5} {:<10} {:>7} {:>8} {:>8} {:>10}  {:.6}",
            l.layer,
            l.op,
            l.units.len(),
            l.count(Verdict::Dead),
            l.count(Verdict::Linear),
            l.count(Verdict::Switching),
            edges
        );
    }
    let _ = writeln!(
        table,
        "all   {:<10} {:>7} {:>8} {:>8} {:>10}   ({} regions)",
        "",
        report.units(),
        report.count(Verdict::Dead),
        report.count(Verdict::Linear),
        report.count(Verdict::Switching),
        part.regions.len()
    );
    print_stdout(&table);
    if let Some(dir) = &a.plots {
        let labels: Vec<String> = report.layers.iter().map(|l| format!("{} #{}", l.op, l.layer)).collect();
        let series: Vec<(String, Vec<f64>)> = [Verdict::Dead, Verdict::Linear, Verdict::Switching]
            .iter()
            .map(|&v| (v.name().to_string(), report.layers.iter().map(|l| l.count(v) as f64).collect()))
            .collect();
        let edges: Vec<f64> = report.layers.iter().map(|l| l.units.iter().map(|u| u.edge_length).sum()).collect();
        write_plots(
            dir,
            vec![
                (
                    "verdicts".into(),
                    tessera::render::plots::line_chart(
                        "units by verdict on the slice",
                        "nonlinear layer",
                        "units",
                        &labels,
                        &series,
                        (800, 500),
                    ),
                ),
                (
                    "edge_length".into(),
                    tessera::render::plots::bar_chart(
                        "partition edges created by each layer",
                        "nonlinear layer",
                        "edge length",
                        labels.clone(),
                        edges,
                        (800, 500),
                    ),
                ),
            ],
        )?;
    }
    if let Some(path) = &a.rewrite {
        let (small, stats) = simplify(&net, &report).map_err(tessera::Error::from)?;
        let bar = Progress::phase("checking the rewritten network on every region".into());
        let check = check_simplified(&small, &slice, &part);
        bar.stop();
        if !check.is_ok() {
            for v in check.violations.iter().take(5) {
                eprintln!("check: {v}");
            }
            return Err(CliError::Check(format!(
                "the rewritten network does not reproduce the partition (largest difference {:.3e}); {} not written",
                check.max_error,
                path.display()
            )));
        }
        let doc = tessera::network::json::to_value(&small);
        output::write_atomically(path, |w| {
            serde_json::to_writer(&mut *w, &doc).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })?;
        eprintln!(
            "wrote {}: {} of {} units kept ({} dead removed, {} linearised); same map on every region at {} points (largest difference {:.1e})",
            path.display(),
            stats.kept,
            report.units(),
            stats.removed,
            stats.linearised,
            check.points,
            check.max_error
        );
    }
    Ok(0)
}

pub fn local(a: LocalArgs) -> Result<i32, CliError> {
    if !(a.radius.is_finite() && a.radius > 0.0) {
        return Err(CliError::Usage(format!("--radius must be a positive number, got {}", a.radius)));
    }
    if a.planes == 0 {
        return Err(CliError::Usage("--planes must be at least 1".into()));
    }
    let net = config::load_model(&a.model)?;
    let n = net.input_shape.numel();
    if n < 2 {
        return Err(CliError::Usage(format!("the model has {n} input: a disk needs two or more")));
    }
    let arr = tessera::npy::read(&a.points).map_err(tessera::Error::from)?;
    let shape: Vec<usize> = arr.shape.iter().map(|&d| d as usize).collect();
    let dims = net.input_shape.dims();
    let per: usize = shape.iter().skip(1).try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
    let shape_ok = !shape.is_empty() && (shape[1..] == dims[..] || (shape.len() == 2 && per == n));
    if !shape_ok {
        return Err(CliError::Usage(format!(
            "--points {} has shape {:?}; expected [N, {}] (N points shaped like the input {:?})",
            a.points.display(),
            arr.shape,
            dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            dims
        )));
    }
    let count = shape[0];
    if count == 0 {
        return Err(CliError::Usage(format!("--points {} holds no points", a.points.display())));
    }
    if count.saturating_mul(a.planes) > local::MAX_DISKS {
        return Err(CliError::Usage(format!(
            "{count} points × {} planes is more than {} disks",
            a.planes,
            local::MAX_DISKS
        )));
    }
    let points: Vec<Vec<f64>> = arr.data.chunks(n).map(|c| c.to_vec()).collect();
    let opts = tessera::Options {
        threads: a.threads,
        max_regions: a.max_regions,
        time_limit: a.time_limit.and_then(|t| std::time::Duration::try_from_secs_f64(t).ok()),
        memory_limit: Some(a.memory_limit.saturating_mul(1 << 20)),
        ..Default::default()
    };
    let bar = Progress::phase(format!("{} disks", count * a.planes));
    let counts = local::local_complexity(
        &net,
        &points,
        &local::LocalOptions { radius: a.radius, planes: a.planes, seed: a.seed },
        &opts,
    );
    bar.stop();
    let counts = counts?;
    let layers: Vec<String> = net.pattern_layout().iter().map(|l| format!("{}#{}", l.op, l.layer)).collect();
    if let Some(path) = &a.csv {
        output::write_atomically(path, |w| {
            write!(w, "point,plane,regions,units")?;
            for l in &layers {
                write!(w, ",units_{}", csv_field(l))?;
            }
            writeln!(w)?;
            for c in &counts {
                write!(w, "{},{},{},{}", c.point, c.plane, c.regions, c.units)?;
                for u in &c.units_per_layer {
                    write!(w, ",{u}")?;
                }
                writeln!(w)?;
            }
            Ok(())
        })?;
        eprintln!("wrote {}", path.display());
    }
    let mut regions: Vec<u64> = counts.iter().map(|c| c.regions).collect();
    regions.sort_unstable();
    let mean = regions.iter().sum::<u64>() as f64 / regions.len() as f64;
    let units_mean = counts.iter().map(|c| c.units).sum::<u64>() as f64 / counts.len() as f64;
    print_stdout(&format!(
        "{} disks of radius {} ({count} points × {} planes): regions per disk mean {mean:.2}, median {}, min {}, max {}; crossing units mean {units_mean:.2}\n",
        counts.len(),
        a.radius,
        a.planes,
        regions[regions.len() / 2],
        regions[0],
        regions[regions.len() - 1]
    ));
    if let Some(path) = &a.plot {
        let (lo, hi) = (regions[0], regions[regions.len() - 1]);
        let bins = ((hi - lo + 1) as usize).min(30);
        let width = ((hi - lo + 1) as f64 / bins as f64).max(1.0);
        let mut values = vec![0.0; bins];
        for &r in &regions {
            values[(((r - lo) as f64 / width) as usize).min(bins - 1)] += 1.0;
        }
        let labels = (0..bins).map(|i| format!("{:.0}", lo as f64 + i as f64 * width)).collect();
        let png = tessera::render::plots::bar_chart(
            &format!("regions meeting a disk of radius {}", a.radius),
            "regions (bin start)",
            "disks",
            labels,
            values,
            (800, 500),
        )
        .map_err(CliError::Render)?;
        output::write_atomically(path, |w| w.write_all(&png))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(0)
}

pub fn series(a: SeriesArgs) -> Result<i32, CliError> {
    use image::codecs::gif::{GifEncoder, Repeat};
    use image::{Delay, Frame, RgbaImage};
    // Every checkpoint is loaded once up front (one at a time) to refuse a mismatch before any
    // partition is computed.
    let first = config::load_model(&a.checkpoints[0])?;
    let (shape, outputs) = (first.input_shape, first.output_shape().numel());
    for path in &a.checkpoints[1..] {
        let net = config::load_model(path)?;
        if net.input_shape != shape || net.output_shape().numel() != outputs {
            return Err(CliError::Usage(format!(
                "checkpoint {} takes {} and gives {} outputs, but {} takes {shape} and gives {outputs}",
                path.display(),
                net.input_shape,
                net.output_shape().numel(),
                a.checkpoints[0].display()
            )));
        }
    }
    let slice = config::build_slice(&first, &a.slice)?;
    let decision = config::decision(&a.decision, outputs)?;
    let size = config::picture_size(&a.size)?;
    drop(first);
    let mut gif_file = a.gif.as_deref().map(output::StreamFile::create).transpose()?;
    let mut gif = match gif_file.as_mut() {
        Some((_, w)) => {
            let mut enc = GifEncoder::new_with_speed(w, 10);
            enc.set_repeat(Repeat::Infinite).map_err(|e| CliError::Render(e.to_string()))?;
            Some(enc)
        }
        None => None,
    };
    let mut rows = Vec::with_capacity(a.checkpoints.len());
    for (i, path) in a.checkpoints.iter().enumerate() {
        let net = config::load_model(path)?;
        let part = partition_with_progress(&net, &slice, &a.slice)?;
        let row = series::row_of(&net, &part, &decision).map_err(tessera::Error::from)?;
        eprintln!(
            "{}: {} regions, boundary length {:.6}, {} dead and {} linear of {} units",
            path.display(),
            row.regions,
            row.boundary_length,
            row.dead_units,
            row.linear_units,
            row.dead_units + row.linear_units + row.switching_units
        );
        if let Some(enc) = &mut gif {
            let title = format!("{} ({}/{}): {} regions", stem(path), i + 1, a.checkpoints.len(), row.regions);
            let opts = tessera::render::RenderOptions { size, ..Default::default() };
            let mut raster = tessera::render::raster::Raster::new(slice.domain, opts, Some(decision.clone()));
            tessera::replay(&part, &mut raster);
            let rgb = raster.finish(Some(title), slice.anchors);
            let rgba: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
            let img = RgbaImage::from_raw(size.0, size.1, rgba).expect("frame of the picture's size");
            enc.encode_frame(Frame::from_parts(img, 0, 0, Delay::from_numer_denom_ms(a.frame_ms, 1)))
                .map_err(|e| CliError::Render(e.to_string()))?;
        }
        rows.push((path.clone(), row));
    }
    // The encoder writes the GIF trailer when dropped.
    drop(gif);
    if let Some((file, w)) = gif_file {
        file.commit(Ok(w))?;
        eprintln!("wrote {}", a.gif.as_ref().map(|p| p.display().to_string()).unwrap_or_default());
    }
    if let Some(path) = &a.csv {
        output::write_atomically(path, |w| {
            writeln!(w, "index,checkpoint,regions,regions_per_layer,vertices,boundary_length,boundary_components,boundary_closed_components,boundary_crossed_regions,dead_units,linear_units,switching_units")?;
            for (i, (ckpt, r)) in rows.iter().enumerate() {
                let per: Vec<String> = r.regions_per_layer.iter().map(|x| x.to_string()).collect();
                writeln!(
                    w,
                    "{i},{},{},{},{},{},{},{},{},{},{},{}",
                    csv_field(&ckpt.display().to_string()),
                    r.regions,
                    per.join(";"),
                    r.vertices,
                    r.boundary_length,
                    r.boundary_components,
                    r.boundary_closed_components,
                    r.boundary_crossed_regions,
                    r.dead_units,
                    r.linear_units,
                    r.switching_units
                )?;
            }
            Ok(())
        })?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &a.plots {
        use tessera::render::plots::line_chart;
        let labels: Vec<String> = a.checkpoints.iter().map(|p| stem(p)).collect();
        let col = |f: &dyn Fn(&series::SeriesRow) -> f64| rows.iter().map(|(_, r)| f(r)).collect::<Vec<f64>>();
        let plots = vec![
            (
                "regions".into(),
                line_chart(
                    "regions",
                    "checkpoint",
                    "regions",
                    &labels,
                    &[("regions".into(), col(&|r| r.regions as f64))],
                    (800, 500),
                ),
            ),
            (
                "boundary".into(),
                line_chart(
                    "decision boundary",
                    "checkpoint",
                    "length",
                    &labels,
                    &[("length".into(), col(&|r| r.boundary_length))],
                    (800, 500),
                ),
            ),
            (
                "units".into(),
                line_chart(
                    "units by verdict on the slice",
                    "checkpoint",
                    "units",
                    &labels,
                    &[
                        ("dead".into(), col(&|r| r.dead_units as f64)),
                        ("linear".into(), col(&|r| r.linear_units as f64)),
                        ("switching".into(), col(&|r| r.switching_units as f64)),
                    ],
                    (800, 500),
                ),
            ),
        ];
        write_plots(dir, plots)?;
    }
    Ok(0)
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}
