//! `tessera map --dims 3`: regions as polytopes, the decision surface as a mesh.

use super::args::MapArgs;
use super::{config, output, print_stdout, CliError, Progress};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tessera::solid::{self, Options3, Slice3, Space3};

/// Mesh formats by extension.
enum MeshFormat {
    Obj,
    Ply,
}

fn mesh_format(path: &Path) -> Result<MeshFormat, CliError> {
    match path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).as_deref() {
        Some("obj") => Ok(MeshFormat::Obj),
        Some("ply") => Ok(MeshFormat::Ply),
        _ => Err(CliError::Usage(format!("--mesh {}: the file must end in .obj or .ply", path.display()))),
    }
}

/// Flags of the plane that a 3D map does not take, with why.
fn refuse_2d_flags(a: &MapArgs) -> Result<(), CliError> {
    let p = &a.picture;
    let refused = [
        (p.svg.is_some(), "--svg", "pictures are of planes; use --mesh for the surface"),
        (p.png.is_some(), "--png", "pictures are of planes; use --mesh for the surface"),
        (p.plots.is_some(), "--plots", "statistics plots are of planes; --stats gives the numbers"),
        (a.tile.is_some(), "--tile", "tiles are of planes"),
        (a.layer_map.is_some(), "--layer-map", "not available in 3D yet"),
        (a.pieces, "--pieces", "linear pieces are merged on planes only"),
        (a.graph.is_some(), "--graph", "the region graph is of planes only"),
        (a.slice.origin.is_some(), "--origin/--du/--dv", "a 3D slice is given by four anchors (--anchors A,B,C,D)"),
    ];
    match refused.iter().find(|r| r.0) {
        Some((_, flag, why)) => Err(CliError::Usage(format!("{flag} cannot be used with --dims 3: {why}"))),
        None => Ok(()),
    }
}

pub fn map3(a: MapArgs) -> Result<i32, CliError> {
    refuse_2d_flags(&a)?;
    let format = a.mesh.as_deref().map(mesh_format).transpose()?;
    let net = config::load_model(&a.model)?;
    let n = net.input_shape.numel();
    let bounds = a.slice.box_.as_deref().map(config::parse_box3).transpose()?;
    let space = match &a.slice.anchors {
        Some(list) => {
            let files: Vec<&str> = list.split(',').collect();
            if files.len() != 4 {
                return Err(CliError::Usage(format!(
                    "--anchors with --dims 3 expects four files A,B,C,D, got `{list}`"
                )));
            }
            let read = |k: usize, what| config::read_vector(Path::new(files[k]), n, what);
            Space3::Anchors {
                a: read(0, "anchor A")?,
                b: read(1, "anchor B")?,
                c: read(2, "anchor C")?,
                d: read(3, "anchor D")?,
            }
        }
        None => Space3::Identity,
    };
    let slice = Slice3::build(n, space, bounds).map_err(tessera::Error::from)?;
    let decision = config::decision(&a.decision, net.output_shape().numel())?;
    let progress = Arc::new(tessera::Progress::default());
    let opts = Options3 {
        engine: super::options(&a.slice, &progress),
        keep_regions: a.json.is_some(),
        surface: (a.mesh.is_some() || a.boundary).then(|| decision.clone()),
    };
    let start = Instant::now();
    let bar = Progress::start(progress.clone());
    let run = solid::partition3(&net, &slice, &opts);
    bar.stop();
    let part = run?;
    let elapsed = start.elapsed().as_secs_f64();
    let stats = solid::export::stats_json(&part.summary, part.surface.as_ref(), elapsed);
    let mut code = 0;
    if let Some(path) = &a.json {
        // The kept regions are checked before they are written: volumes, convexity, maps and
        // patterns against the forward pass (Chebyshev centres by linear programs), coverage.
        let report = solid::check(&net, &slice, &part, 200, 0);
        for v in report.violations.iter().take(10) {
            eprintln!("check failed: {v}");
        }
        if !report.is_ok() {
            code = 1;
        }
        output::write_atomically(path, |w| solid::export::write_json(w, &part, &slice, &stats))?;
        eprintln!("wrote {}", path.display());
    }
    if let (Some(path), Some(format), Some(mesh)) = (&a.mesh, format, &part.surface) {
        output::write_atomically(path, |w| match format {
            MeshFormat::Obj => mesh.write_obj(w),
            MeshFormat::Ply => mesh.write_ply(w),
        })?;
        eprintln!("wrote {}", path.display());
    }
    let s = &part.summary;
    let b = slice.bounds;
    let layers: Vec<String> =
        s.regions_per_layer.iter().map(|c| format!("{}#{}: {}", c.op, c.layer, c.regions)).collect();
    eprintln!(
        "{} regions over [{}, {}] × [{}, {}] × [{}, {}] in {elapsed:.3} s (after each nonlinear layer: {})",
        s.regions,
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        layers.join(", ")
    );
    if let Some(m) = &part.surface {
        eprintln!(
            "surface: area {:.6}, {} triangles, {}",
            m.area,
            m.triangles.len(),
            if m.watertight() {
                "watertight".to_string()
            } else {
                format!(
                    "not closed ({} open, {} non-manifold, {} misoriented edges)",
                    m.open_edges, m.non_manifold_edges, m.misoriented_edges
                )
            }
        );
    }
    if a.stats {
        print_stdout(&format!("{stats}\n"));
    }
    Ok(code)
}
