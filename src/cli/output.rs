//! Output files: the partition JSON (written to a temporary file, then renamed) and statistics.

use super::CliError;
use serde::Serialize;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use tessera::boundary::{Boundary, Decision, RegionClass};
use tessera::{Partition, Slice, Summary};

pub fn stats_json(s: &Summary, boundary: Option<&Boundary>, elapsed: f64) -> Value {
    let mut v = json!({
        "regions": s.regions,
        "domain_area": s.domain_area,
        "area_sum": s.area_sum,
        "vertices": s.vertices,
        "regions_per_layer": s.regions_per_layer.iter().map(|c| c.regions).collect::<Vec<_>>(),
        "nonlinear_layers": s.regions_per_layer.iter().map(|c| json!({"layer": c.layer, "op": c.op})).collect::<Vec<_>>(),
        "dropped_slivers": s.dropped_slivers,
        "elapsed_s": elapsed,
    });
    if let Some(b) = boundary {
        v["boundary_length"] = json!(b.length);
        v["boundary_components"] = json!(b.components);
        v["boundary_closed_components"] = json!(b.closed_components);
        v["boundary_crossed_regions"] = json!(b.crossed_regions);
        v["boundary_pieces"] = json!(b.pieces);
    }
    v
}

fn boundary_json(b: &Boundary, decision: &Decision, frame: &tessera::slice::Normalization) -> Value {
    let decision = match decision {
        Decision::Argmax => json!("argmax"),
        Decision::Level { weights, threshold } => {
            json!({"level": {"weights": weights, "threshold": threshold}})
        }
    };
    json!({
        "decision": decision,
        "length": b.length,
        "components": b.components,
        "closed_components": b.closed_components,
        "open_components": b.open_components,
        "crossed_regions": b.crossed_regions,
        "pieces": b.pieces,
        "length_per_pair": b.length_per_pair.iter().map(|(k, l)| json!({"classes": [k.0, k.1], "length": l})).collect::<Vec<_>>(),
        "polylines": b.polylines.iter().map(|p| json!({"classes": [p.classes.0, p.classes.1],
            "closed": p.closed, "length": p.length,
            "points": p.points.iter().map(|&q| frame.to_uv(q)).collect::<Vec<_>>()})).collect::<Vec<_>>(),
    })
}

#[derive(Serialize)]
struct MapOut {
    jacobian: Vec<[f64; 2]>,
    offset: Vec<f64>,
}

#[derive(Serialize)]
struct RegionOut {
    vertices: Vec<[f64; 2]>,
    area: f64,
    pattern: String,
    map: MapOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer_map: Option<Value>,
}

#[derive(Serialize)]
struct Doc<'a> {
    format: &'static str,
    domain: [[f64; 2]; 4],
    anchors: Option<[[f64; 2]; 3]>,
    regions: Vec<RegionOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    boundary: Option<Value>,
    stats: &'a Value,
}

/// Gives a region's map of one layer's output, by region index.
pub type LayerMapFn<'a> = dyn Fn(usize) -> Option<tessera::AffineMap> + 'a;

/// Writes `tessera-partition/1` JSON atomically: a failed or interrupted run leaves no file.
/// With a boundary, every region also gets its `class` and the document a `boundary` object.
pub fn write_partition(
    path: &Path,
    p: &Partition,
    slice: &Slice,
    stats: &Value,
    boundary: Option<(&Boundary, &Decision)>,
    layer_map: Option<(usize, &LayerMapFn<'_>)>,
) -> Result<(), CliError> {
    let class_of = |i: usize| {
        boundary.map(|(b, _)| match &b.region_classes[i] {
            RegionClass::One(k) => json!(k),
            RegionClass::Several(ks) => json!(ks),
        })
    };
    let doc = Doc {
        format: "tessera-partition/1",
        domain: slice.domain.corners(),
        anchors: slice.anchors,
        regions: p
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| RegionOut {
                vertices: p.polygon_uv(i),
                area: r.area,
                pattern: r.pattern.to_hex(),
                map: {
                    let m = p.map_uv(i);
                    MapOut { jacobian: m.jacobian, offset: m.offset }
                },
                class: class_of(i),
                layer_map: layer_map.and_then(|(layer, f)| {
                    f(i).map(|m| json!({"layer": layer, "jacobian": m.jacobian, "offset": m.offset}))
                }),
            })
            .collect(),
        boundary: boundary.map(|(b, d)| boundary_json(b, d, &p.frame)),
        stats,
    };
    write_atomically(path, |w| serde_json::to_writer(w, &doc).map_err(std::io::Error::other))
}

/// Temporary files being written, removed if the user interrupts the run.
static IN_PROGRESS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// On Ctrl-C, removes any temporary output file and exits with code 130: an interrupted run
/// leaves no half-written file (finished files are complete: they are renamed into place).
pub fn clean_up_on_interrupt() {
    let _ = ctrlc::set_handler(|| {
        if let Ok(list) = IN_PROGRESS.lock() {
            for p in list.iter() {
                let _ = std::fs::remove_file(p);
            }
        }
        eprintln!("tessera: interrupted");
        std::process::exit(130);
    });
}

pub fn write_atomically(path: &Path, body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), CliError> {
    let err = |source| CliError::Write { path: path.display().to_string(), source };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        // Registered before it exists: an interrupt in between finds nothing to remove, and one
        // after removes it (the handler holds the lock, so creation cannot race past it).
        let file = {
            let mut list = IN_PROGRESS.lock().map_err(|_| std::io::Error::other("poisoned lock"))?;
            list.push(tmp.clone());
            std::fs::File::create(&tmp)?
        };
        let mut w = std::io::BufWriter::new(file);
        body(&mut w)?;
        w.flush()?;
        w.get_ref().sync_all()?;
        drop(w);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    if let Ok(mut list) = IN_PROGRESS.lock() {
        list.retain(|p| p != &tmp);
    }
    result.map_err(err)
}
