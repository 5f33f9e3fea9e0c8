//! Output files: the partition JSON (written to a temporary file, then renamed) and statistics.

use super::CliError;
use serde::Serialize;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use tessera::{Partition, Slice, Summary};

pub fn stats_json(s: &Summary, elapsed: f64) -> Value {
    json!({
        "regions": s.regions,
        "domain_area": s.domain_area,
        "area_sum": s.area_sum,
        "vertices": s.vertices,
        "regions_per_layer": s.regions_per_layer.iter().map(|c| c.regions).collect::<Vec<_>>(),
        "nonlinear_layers": s.regions_per_layer.iter().map(|c| json!({"layer": c.layer, "op": c.op})).collect::<Vec<_>>(),
        "dropped_slivers": s.dropped_slivers,
        "elapsed_s": elapsed,
    })
}

#[derive(Serialize)]
struct MapOut<'a> {
    jacobian: &'a [[f64; 2]],
    offset: &'a [f64],
}

#[derive(Serialize)]
struct RegionOut<'a> {
    vertices: &'a [[f64; 2]],
    area: f64,
    pattern: String,
    map: MapOut<'a>,
}

#[derive(Serialize)]
struct Doc<'a> {
    format: &'static str,
    domain: [[f64; 2]; 4],
    anchors: Option<[[f64; 2]; 3]>,
    regions: Vec<RegionOut<'a>>,
    stats: &'a Value,
}

/// Writes `tessera-partition/1` JSON atomically: a failed or interrupted run leaves no file.
pub fn write_partition(
    path: &Path,
    p: &Partition,
    slice: &Slice,
    stats: &Value,
) -> Result<(), CliError> {
    let doc = Doc {
        format: "tessera-partition/1",
        domain: slice.domain.corners(),
        anchors: slice.anchors,
        regions: p
            .regions
            .iter()
            .map(|r| RegionOut {
                vertices: &r.polygon.pts,
                area: r.area,
                pattern: r.pattern.to_hex(),
                map: MapOut {
                    jacobian: &r.map.jacobian,
                    offset: &r.map.offset,
                },
            })
            .collect(),
        stats,
    };
    write_atomically(path, |w| {
        serde_json::to_writer(w, &doc).map_err(std::io::Error::other)
    })
}

pub fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), CliError> {
    let err = |source| CliError::Write {
        path: path.display().to_string(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
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
    result.map_err(err)
}
