//! JSON of a 3D partition (`tessera-partition3/1`) and of its statistics.

use super::{Mesh, Slice3, Solid, Summary3};
use serde_json::{json, Value};
use std::io::Write;

/// Statistics of a 3D run as one JSON object (the `--stats` line).
pub fn stats_json(summary: &Summary3, surface: Option<&Mesh>, seconds: f64) -> Value {
    let mut v = serde_json::to_value(summary).expect("a summary serialises");
    let obj = v.as_object_mut().expect("an object");
    obj.insert("dims".into(), json!(3));
    obj.insert("seconds".into(), json!(seconds));
    if let Some(m) = surface {
        obj.insert("surface".into(), surface_json(m));
    }
    v
}

fn surface_json(m: &Mesh) -> Value {
    json!({
        "area": m.area,
        "triangles": m.triangles.len(),
        "vertices": m.vertices.len(),
        "patches": m.patches,
        "watertight": m.watertight(),
        "open_edges": m.open_edges,
        "non_manifold_edges": m.non_manifold_edges,
        "misoriented_edges": m.misoriented_edges,
    })
}

/// Writes every region (vertices and facets in frame coordinates, facet labels, volume, pattern,
/// affine map of the outputs in frame coordinates) with the frame, layout and statistics.
pub fn write_json(mut w: impl Write, solid: &Solid, slice: &Slice3, stats: &Value) -> std::io::Result<()> {
    let head = json!({
        "format": "tessera-partition3/1",
        "box": slice.bounds,
        "origin": slice.origin,
        "axes": slice.axes,
        "anchors": slice.anchors,
        "layout": solid.layout,
        "stats": stats,
    });
    let head = serde_json::to_string(&head)?;
    // Everything of the head but its closing brace, then the regions one by one.
    w.write_all(&head.as_bytes()[..head.len() - 1])?;
    w.write_all(b",\"regions\":[")?;
    for (i, r) in solid.regions.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        let v = json!({
            "vertices": r.vertices,
            "facets": r.facets,
            "volume": r.volume,
            "pattern": r.pattern.to_hex(),
            "jacobian": r.jacobian,
            "offset": r.offset,
        });
        serde_json::to_writer(&mut w, &v)?;
        w.write_all(b"\n")?;
    }
    w.write_all(b"]}\n")
}
