//! The `tessera-partition/1` JSON document, written as the engine streams regions.
//!
//! ```text
//! {"format": "tessera-partition/1", "domain": [[u, v] × 4], "anchors": [[u, v] × 3] | null,
//!  "regions": [{"vertices": [[u, v], ...], "area": a, "pattern": "hex",
//!               "map": {"jacobian": [[∂u, ∂v] per output], "offset": [...]},
//!               "class": k | [k, ...], "layer_map": {...}}, ...],
//!  "boundary": {...}, "stats": {...}}
//! ```
//!
//! Regions are written in the run's order, the same for any thread count: the collector at the
//! root of the run writes to the file as regions arrive, and the collector of a fork buffers its
//! records (in memory, then in an unlinked temporary file once large) until the fork joins and its
//! records follow the parent's.

use crate::boundary::{finished_map, Boundary, Decision, RegionClass};
use crate::engine::collect::{Collect, Finished};
use crate::network::Network;
use crate::partition::Summary;
use crate::pattern::LayerBits;
use crate::slice::{Normalization, Plane, Slice};
use serde_json::{json, Value};
use std::io::{Read, Seek, Write};
use std::sync::{Arc, Mutex};

/// The format tag of partition documents.
pub const FORMAT: &str = "tessera-partition/1";

/// Statistics as one JSON object (what `tessera map --stats` prints).
pub fn stats_json(s: &Summary, boundary: Option<&Boundary>, elapsed: f64) -> Value {
    let mut v = json!({
        "regions": s.regions,
        "domain_area": s.domain_area,
        "area_sum": s.area_sum,
        "vertices": s.vertices,
        "regions_per_layer": s.regions_per_layer.iter().map(|c| c.regions).collect::<Vec<_>>(),
        "nonlinear_layers": s.regions_per_layer.iter().map(|c| json!({"layer": c.layer, "op": c.op})).collect::<Vec<_>>(),
        "dropped_slivers": s.dropped_slivers,
        "min_area": s.min_area,
        "max_area": s.max_area,
        "area_histogram": s.area_histogram,
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

/// The boundary as JSON (polylines in `(u, v)`).
pub fn boundary_json(b: &Boundary, frame: &Normalization) -> Value {
    let decision = match &b.decision {
        Decision::Argmax => json!("argmax"),
        Decision::Level { weights, threshold } => json!({"level": {"weights": weights, "threshold": threshold}}),
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

/// The opening of a document, up to the regions' array.
pub fn header(slice: &Slice) -> String {
    header_of(&slice.domain, slice.anchors)
}

/// The opening of a document over `domain` with optional anchors, up to the regions' array.
pub fn header_of(domain: &crate::slice::Domain, anchors: Option<[[f64; 2]; 3]>) -> String {
    format!(
        "{{\"format\":\"{FORMAT}\",\"domain\":{},\"anchors\":{},\"regions\":[",
        json!(domain.corners()),
        json!(anchors)
    )
}

/// What each region record holds besides its geometry and map.
pub struct RecordOptions {
    /// Each region's class (or classes) under this decision.
    pub decision: Option<Decision>,
    /// Each region's map of this top-level layer's output, rebuilt from its pattern, for a run of
    /// the network over the plane (the run's normalised plane: see `Slice::normalized`).
    pub layer_map: Option<(usize, Arc<Network>, Plane)>,
}

struct Config {
    frame: Normalization,
    outputs: usize,
    options: RecordOptions,
    /// Decision noise floors, computed once.
    noise: Vec<f64>,
    layout: Vec<LayerBits>,
    /// Where forks spill their records.
    spill_dir: std::path::PathBuf,
}

/// Bytes a fork keeps in memory before moving its records to a temporary file.
const SPILL: usize = 32 << 20;

/// Where a collector's records go.
enum Out<W> {
    /// The document (the root of the run); `started`: whether a record was written yet.
    Root { w: W, started: bool },
    /// A fork's records, each preceded by a comma: in memory, then in a temporary file.
    Fork { buf: Vec<u8>, file: Option<std::fs::File> },
}

/// Streams region records into a `tessera-partition/1` document.
pub struct JsonRegions<W> {
    config: Arc<Config>,
    out: Out<W>,
    /// The first I/O error, reported when the document is finished.
    error: Arc<Mutex<Option<std::io::Error>>>,
}

impl<W: Write + Send + Sync> JsonRegions<W> {
    /// Records go to `w` (after [`header`]); forks spill into unlinked files in `spill_dir`. The
    /// run's frame, outputs and layout come when it starts ([`Collect::begin`]).
    pub fn new(w: W, options: RecordOptions, spill_dir: &std::path::Path) -> Self {
        let frame = Normalization { center: [0.0; 2], half: [1.0; 2] };
        let spill_dir = spill_dir.to_path_buf();
        JsonRegions {
            config: Arc::new(Config { frame, outputs: 0, options, noise: Vec::new(), layout: Vec::new(), spill_dir }),
            out: Out::Root { w, started: false },
            error: Arc::new(Mutex::new(None)),
        }
    }

    /// Closes the regions' array, adds the boundary and statistics, and returns the writer.
    pub fn finish(self, boundary: Option<Value>, stats: &Value) -> std::io::Result<W> {
        if let Some(e) = self.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        let Out::Root { mut w, .. } = self.out else { unreachable!("the run's root collector writes the document") };
        write!(w, "],\"boundary\":{},\"stats\":{}}}", boundary.unwrap_or(Value::Null), stats)?;
        w.flush()?;
        Ok(w)
    }

    fn fail(&self, e: std::io::Error) {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn record(&self, r: &Finished) -> Vec<u8> {
        let cfg = &self.config;
        let f = &cfg.frame;
        let map = finished_map(&r.map, cfg.outputs);
        let uv = f.map_to_uv(&map);
        let mut rec = json!({
            "vertices": r.poly.pts.iter().map(|&p| f.to_uv(p)).collect::<Vec<_>>(),
            "area": r.area * f.half[0] * f.half[1],
            "pattern": r.pattern.to_hex(),
            "map": {"jacobian": uv.jacobian, "offset": uv.offset},
        });
        if let Some(d) = &cfg.options.decision {
            let rb = d.region_boundary(&r.poly, &map, &cfg.noise, f, 0);
            rec["class"] = match rb.class {
                RegionClass::One(k) => json!(k),
                RegionClass::Several(ks) => json!(ks),
            };
        }
        if let Some((layer, net, plane)) = &cfg.options.layer_map {
            if let Some(m) = crate::layer_map::layer_map(net, plane, &cfg.layout, &r.pattern, Some(*layer)) {
                let m = f.map_to_uv(&m);
                rec["layer_map"] = json!({"layer": layer, "jacobian": m.jacobian, "offset": m.offset});
            }
        }
        let mut bytes = vec![b','];
        serde_json::to_writer(&mut bytes, &rec).unwrap_or_else(|e| unreachable!("a JSON value serialises: {e}"));
        bytes
    }

    /// Appends records (each starting with a comma) to this collector's output.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.out {
            Out::Root { w, started } => {
                // The document's first record has no comma before it.
                let body = if *started || bytes.is_empty() { bytes } else { &bytes[1..] };
                *started |= !bytes.is_empty();
                w.write_all(body)
            }
            Out::Fork { buf, file } => {
                buf.extend_from_slice(bytes);
                if buf.len() > SPILL {
                    if file.is_none() {
                        *file = Some(spill_file(&self.config.spill_dir)?);
                    }
                    file.as_mut().expect("just made").write_all(buf)?;
                    buf.clear();
                }
                Ok(())
            }
        }
    }
}

/// A temporary file that disappears with its handle (unlinked at once).
fn spill_file(dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".tessera-spill-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

impl<W: Write + Send + Sync> Collect for JsonRegions<W> {
    fn begin(&mut self, start: &crate::engine::collect::Start<'_>) {
        let cfg = Arc::get_mut(&mut self.config).expect("begin comes before any fork");
        cfg.frame = start.frame;
        cfg.outputs = start.outputs;
        cfg.layout = start.layout.to_vec();
        cfg.noise = cfg.options.decision.as_ref().map_or(Vec::new(), |d| d.noise(start.output_scale));
    }

    fn needs_maps(&self) -> bool {
        true
    }

    fn fork(&self) -> Self {
        JsonRegions {
            config: Arc::clone(&self.config),
            out: Out::Fork { buf: Vec::new(), file: None },
            error: Arc::clone(&self.error),
        }
    }

    fn absorb(&mut self, fork: Self) {
        let Out::Fork { buf, file, .. } = fork.out else { unreachable!("only forks are absorbed") };
        let result = (|| {
            if let Some(mut f) = file {
                f.rewind()?;
                let mut chunk = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    self.append(&chunk[..n])?;
                }
            }
            self.append(&buf)
        })();
        if let Err(e) = result {
            self.fail(e);
        }
    }

    fn add(&mut self, r: &Finished) -> u64 {
        let bytes = self.record(r);
        if let Err(e) = self.append(&bytes) {
            self.fail(e);
        }
        0
    }
}
