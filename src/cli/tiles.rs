//! `map --tile I/N` and `merge`: one map as independent tile jobs, joined exactly.

use super::args::{MapArgs, MergeArgs};
use super::{config, options, output, print_stdout, CliError, Progress};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use tessera::boundary::decision_boundary;
use tessera::export::{JsonRegions, RecordOptions};

/// `map --tile I/N`: one tile of the domain, written as a tile result.
pub fn map_tile(
    a: &MapArgs,
    net: &tessera::Network,
    slice: &tessera::Slice,
    decision: &tessera::boundary::Decision,
    spec: tessera::tile::TileSpec,
    out: &std::path::Path,
) -> Result<i32, CliError> {
    let model =
        std::fs::read(&a.model).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", a.model.display())))?;
    let key = tessera::tile::fingerprint(&model, slice);
    let name = a.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let progress = Arc::new(tessera::Progress::default());
    let opts = options(&a.slice, &progress);
    let start = Instant::now();
    let bar = Progress::start(progress.clone());
    let tile =
        tessera::tile::run_tile(net, slice, spec, &opts, decision, a.tile_regions, tessera::tile::RunId { key, name });
    bar.stop();
    let tile = tile?;
    output::write_atomically(out, |w| serde_json::to_writer(w, &tile).map_err(std::io::Error::other))?;
    eprintln!(
        "tile {}/{}: {} regions ({} on its borders) in {:.3} s; wrote {}",
        spec.index + 1,
        spec.count,
        tile.regions,
        tile.border.len(),
        start.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(0)
}

/// `merge`: the tiles of one run joined into its statistics, JSON and pictures.
pub fn merge(a: MergeArgs) -> Result<i32, CliError> {
    let start = Instant::now();
    let mut tiles = Vec::with_capacity(a.tiles.len());
    let bar = Progress::phase(format!("reading {} tiles", a.tiles.len()));
    for path in &a.tiles {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| CliError::Usage(format!("cannot read tile {name}: {e}")));
        let tile = file.and_then(|f| {
            serde_json::from_reader::<_, tessera::tile::TileResult>(std::io::BufReader::new(f))
                .map_err(|e| CliError::Usage(format!("{name}: not a tile result: {e}")))
        });
        match tile {
            Ok(t) => tiles.push((name, t)),
            Err(e) => {
                bar.stop();
                return Err(e);
            }
        }
    }
    bar.stop();
    let m = tessera::tile::merge(tiles).map_err(tessera::Error::from)?;
    let wants_regions =
        a.json.is_some() || a.picture.svg.is_some() || a.picture.png.is_some() || a.picture.plots.is_some();
    if wants_regions && m.partition.is_none() {
        return Err(CliError::Usage(
            "--json, --svg, --png and --plots need every region: make the tiles with `map --tile I/N --tile-regions`"
                .into(),
        ));
    }
    let render_opts = config::render_options(&a.picture)?;
    // A kept partition gives the boundary with every region's class (for the SVG and JSON).
    let boundary = match &m.partition {
        Some(p) => decision_boundary(p, &m.decision),
        None => m.boundary.clone(),
    };
    let summary = &m.summary;
    let stats = tessera::export::stats_json(summary, a.boundary.then_some(&boundary), start.elapsed().as_secs_f64());
    if let (Some(path), Some(p)) = (&a.json, &m.partition) {
        let (file, mut w) = output::StreamFile::create(path)?;
        w.write_all(tessera::export::header_of(&m.domain, m.anchors).as_bytes())
            .map_err(|source| CliError::Write { path: path.display().to_string(), source })?;
        let options = RecordOptions { decision: a.boundary.then(|| m.decision.clone()), layer_map: None };
        let mut json = JsonRegions::new(w, options, &file.dir());
        tessera::replay(p, &mut json);
        let b = a.boundary.then(|| tessera::export::boundary_json(&boundary, &m.frame));
        file.commit(json.finish(b, &stats))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(p) = &m.partition {
        let title = Some(format!("{}: {} regions", m.name, summary.regions));
        let opts = tessera::render::RenderOptions { title: title.clone(), ..render_opts.clone() };
        if let Some(path) = &a.picture.png {
            // Drawn as `map --png` draws the single run: the same picture.
            let png = tessera::render::partition_png(p, &m.decision, Some(&boundary), m.anchors, &opts);
            output::write_atomically(path, |w| w.write_all(&png))?;
            eprintln!("wrote {}", path.display());
        }
        if let Some(path) = &a.picture.svg {
            let scene = tessera::render::Scene { partition: p, boundary: Some(&boundary), anchors: m.anchors };
            let svg = tessera::render::render_svg(&scene, &opts);
            output::write_atomically(path, |w| w.write_all(svg.as_bytes()))?;
            eprintln!("wrote {}", path.display());
        }
        if let Some(dir) = &a.picture.plots {
            std::fs::create_dir_all(dir)
                .map_err(|source| CliError::Write { path: dir.display().to_string(), source })?;
            for (stem, png) in tessera::render::plots::stats_plots(p, (800, 500)).map_err(CliError::Render)? {
                output::write_atomically(&dir.join(format!("{stem}.png")), |w| w.write_all(&png))?;
            }
            eprintln!("wrote plots to {}", dir.display());
        }
    }
    let layers: Vec<String> =
        summary.regions_per_layer.iter().map(|c| format!("{}#{}: {}", c.op, c.layer, c.regions)).collect();
    eprintln!(
        "{} regions from {} tiles (after each nonlinear layer: {}); boundary length {:.6}, {} components",
        summary.regions,
        a.tiles.len(),
        layers.join(", "),
        boundary.length,
        boundary.components
    );
    if a.stats {
        print_stdout(&format!("{stats}\n"));
    }
    Ok(0)
}
