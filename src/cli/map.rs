//! `tessera map` in 2D: one run of the engine streaming to the collectors the flags ask for
//! (kept regions, boundary segments, the PNG raster, the JSON writer), then pictures, pieces, the
//! region graph and the summary.

use super::args::MapArgs;
use super::{config, options, output, print_stdout, solid, tiles, CliError, Progress};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use tessera::boundary::{decision_boundary, Segments};
use tessera::export::{JsonRegions, RecordOptions};
use tessera::render::raster::Raster;
use tessera::render::EdgeMode;

/// The collectors of one `map` run: kept regions, the boundary's segments, the picture, the JSON.
type MapCollect = (
    Option<tessera::Keep>,
    (Option<Segments>, (Option<Raster>, Option<JsonRegions<std::io::BufWriter<std::fs::File>>>)),
);

pub fn map(a: MapArgs) -> Result<i32, CliError> {
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
    if a.pieces && render_opts.edges == EdgeMode::Layer {
        return Err(CliError::Usage(
            "--pieces draws pieces without region edges: --edges layer cannot be used with it".into(),
        ));
    }
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
