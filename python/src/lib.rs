//! The Python binding of tessera: a thin layer of conversions over the library (which knows
//! nothing of Python). The Python package (`tessera/__init__.py`) wraps these classes into the
//! documented API; names starting with `_` are for it only.
//!
//! Every engine run releases the GIL and runs on its own thread while the calling thread waits in
//! short slices, checking for signals: Ctrl-C in a notebook cancels the run
//! (`Options::cancel`) and raises `KeyboardInterrupt`.

use numpy::ndarray::{Array2, Array3};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArray3, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tessera::boundary::{decision_boundary, Boundary, Decision, RegionClass};
use tessera::render::{ColorScheme, EdgeMode, RenderOptions};
use tessera::slice::{PlaneSpec, Slice};
use tessera::tile::{TileResult, TileSpec};
use tessera::Options;

// The engine allocates many small short-lived buffers on every thread: mimalloc (as in the CLI)
// keeps Python's calls as fast as the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

create_exception!(_tessera, TesseraError, PyException, "Any error of tessera.");
create_exception!(_tessera, ModelError, TesseraError, "The model could not be loaded (JSON or ONNX).");
create_exception!(_tessera, SliceError, TesseraError, "The plane or the box is invalid.");
create_exception!(_tessera, EngineError, TesseraError, "The engine stopped (region, time or memory limit).");
create_exception!(_tessera, TileError, TesseraError, "Tiles could not be made or merged.");
create_exception!(_tessera, CheckError, TesseraError, "A result failed its check against a forward pass.");

/// The library's error as the matching Python exception, with the library's message.
fn py_err(e: tessera::Error) -> PyErr {
    let msg = e.to_string();
    match e {
        tessera::Error::Model(_) | tessera::Error::Onnx(_) => ModelError::new_err(msg),
        tessera::Error::Slice(_) => SliceError::new_err(msg),
        tessera::Error::Engine(_) => EngineError::new_err(msg),
        tessera::Error::Tile(_) => TileError::new_err(msg),
        _ => TesseraError::new_err(msg),
    }
}

/// Runs `job` on its own thread without the GIL; the calling thread checks for signals every
/// 50 ms and cancels the job on an exception (Ctrl-C), returning that exception.
fn run_released<T: Send>(
    py: Python<'_>,
    opts: Options,
    job: impl FnOnce(&Options) -> Result<T, tessera::Error> + Send,
) -> PyResult<T> {
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = Options { cancel: Some(cancel.clone()), ..opts };
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let opts = &opts;
        s.spawn(move || {
            // A panic is a defect of the library: report it instead of taking the interpreter down.
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(opts)));
            let _ = tx.send(out);
        });
        // The receiver moves in and out of each wait: it is `Send` but not `Sync`.
        let mut rx = rx;
        loop {
            let (got, back) = py.detach(move || (rx.recv_timeout(Duration::from_millis(50)), rx));
            rx = back;
            match got {
                Ok(Ok(result)) => return result.map_err(py_err),
                Ok(Err(_)) => return Err(TesseraError::new_err("internal error: the engine panicked (please report)")),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        cancel.store(true, Ordering::Relaxed);
                        // Wait for the engine to stop (it checks the flag between regions).
                        let _ = py.detach(move || rx.recv());
                        return Err(e);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(TesseraError::new_err("internal error: the engine thread vanished"))
                }
            }
        }
    })
}

/// Four flat anchors A, B, C, D of a 3D slice.
type Anchors4 = Option<(Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)>;

/// A loaded network.
#[pyclass(frozen, module = "tessera._tessera")]
struct Network {
    net: Arc<tessera::Network>,
    /// The bytes it was loaded from (identity of tiles, pickling).
    source: Vec<u8>,
    name: String,
    notes: Vec<String>,
}

/// Loads a model from the bytes of a `tessera-model/1` JSON document or an ONNX file (told apart
/// by content); `name` names it in messages and titles.
#[pyfunction]
fn load_bytes(data: Vec<u8>, name: String) -> PyResult<Network> {
    let is_json = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let (net, notes) = if is_json {
        let text =
            std::str::from_utf8(&data).map_err(|e| ModelError::new_err(format!("{name}: not UTF-8 JSON: {e}")))?;
        (tessera::network::json::parse_str(text, &name).map_err(|e| py_err(e.into()))?, Vec::new())
    } else {
        let l = tessera::network::onnx::parse_bytes(&data, &name, None).map_err(|e| py_err(e.into()))?;
        (l.network, l.notes)
    };
    Ok(Network { net: Arc::new(net), source: data, name, notes })
}

/// The plane given from Python: `kind` is "identity", "vectors" (origin, du, dv) or "anchors"
/// (a, b, c); vectors are flat float64 arrays.
fn plane_spec(kind: &str, vectors: Option<(Vec<f64>, Vec<f64>, Vec<f64>)>) -> PyResult<PlaneSpec> {
    match (kind, vectors) {
        ("identity", _) => Ok(PlaneSpec::Identity),
        ("vectors", Some((origin, du, dv))) => Ok(PlaneSpec::Vectors { origin, du, dv }),
        ("anchors", Some((a, b, c))) => Ok(PlaneSpec::Anchors { a, b, c }),
        _ => Err(SliceError::new_err(format!("unknown plane `{kind}` or missing vectors"))),
    }
}

fn decision(outputs: usize, threshold: Option<f64>, level: Option<&str>) -> PyResult<Decision> {
    if threshold.is_some_and(|t| !t.is_finite()) {
        return Err(SliceError::new_err("threshold must be a finite number"));
    }
    match level {
        Some(text) => Decision::parse_level(text, outputs).map_err(|e| TesseraError::new_err(e.to_string())),
        None => Ok(Decision::for_outputs(outputs, threshold)),
    }
}

/// Engine options from the keyword arguments.
fn options(threads: usize, max_regions: Option<u64>, time_limit: Option<f64>) -> PyResult<Options> {
    let time_limit = match time_limit {
        Some(t) => Some(
            Duration::try_from_secs_f64(t)
                .map_err(|_| SliceError::new_err(format!("time_limit must be non-negative seconds, got {t}")))?,
        ),
        None => None,
    };
    Ok(Options { threads, max_regions, time_limit, ..Options::default() })
}

type Vectors = Option<(Vec<f64>, Vec<f64>, Vec<f64>)>;

impl Network {
    /// The slice and decision of a call's keyword arguments.
    fn slice_and_decision(
        &self,
        kind: &str,
        vectors: Vectors,
        box_: Option<[f64; 4]>,
        threshold: Option<f64>,
        level: Option<&str>,
    ) -> PyResult<(Slice, Decision)> {
        let slice = Slice::build(self.net.input_shape.numel(), plane_spec(kind, vectors)?, box_)
            .map_err(|e| py_err(e.into()))?;
        Ok((slice, decision(self.outputs(), threshold, level)?))
    }
}

#[pymethods]
impl Network {
    /// The input shape (without batch dimension).
    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        self.net.input_shape.dims()
    }

    /// Number of outputs.
    #[getter]
    fn outputs(&self) -> usize {
        self.net.output_shape().numel()
    }

    /// The model's name.
    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// Remarks of the ONNX lowering (e.g. a dropped trailing softmax).
    #[getter]
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    /// The bytes the model was loaded from.
    #[getter]
    fn source<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.source)
    }

    /// The layers, one line each (like `tessera info`).
    #[getter]
    fn layers(&self) -> Vec<String> {
        self.net.nodes.iter().map(|n| format!("{} {} -> {}", n.layer.op, n.layer.input, n.layer.output)).collect()
    }

    /// The network's output at flat input `x` (plain f64 forward pass).
    fn forward<'py>(&self, py: Python<'py>, x: PyReadonlyArray1<'py, f64>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let x = x.as_slice()?;
        let n = self.net.input_shape.numel();
        if x.len() != n {
            return Err(SliceError::new_err(format!("the input has {} values but the model takes {n}", x.len())));
        }
        Ok(self.net.forward(x).into_pyarray(py))
    }

    /// Exact local complexity: `points` `(P, n)` flat inputs; regions meeting the disk of
    /// radius `radius` on `planes` seeded random planes through each point, and the units whose
    /// breakpoints cross it: two `(P, planes)` arrays.
    #[pyo3(signature = (points, radius, planes, seed, threads))]
    #[allow(clippy::type_complexity)]
    fn _local<'py>(
        &self,
        py: Python<'py>,
        points: PyReadonlyArray2<'py, f64>,
        radius: f64,
        planes: usize,
        seed: u64,
        threads: usize,
    ) -> PyResult<(Bound<'py, PyArray2<u64>>, Bound<'py, PyArray2<u64>>)> {
        let pts = points.as_array();
        let n = self.net.input_shape.numel();
        if pts.ncols() != n {
            return Err(SliceError::new_err(format!(
                "points have {} values each but the model takes {n}",
                pts.ncols()
            )));
        }
        let rows: Vec<Vec<f64>> = pts.rows().into_iter().map(|r| r.to_vec()).collect();
        let opts = options(threads, None, None)?;
        let net = self.net.clone();
        let lo = tessera::analysis::local::LocalOptions { radius, planes, seed };
        let counts = run_released(py, opts, |o| tessera::analysis::local::local_complexity(&net, &rows, &lo, o))?;
        let k = planes.max(1);
        let regions = Array2::from_shape_fn((rows.len(), k), |(i, j)| counts[i * k + j].regions);
        let units = Array2::from_shape_fn((rows.len(), k), |(i, j)| counts[i * k + j].units);
        Ok((regions.into_pyarray(py), units.into_pyarray(py)))
    }

    /// Partitions a 3D box (of a 3-input model, or of the 3D slice through four anchors);
    /// keeps every region, and the decision surface when `surface`.
    #[pyo3(signature = (anchors, box_, threads, max_regions, time_limit, surface, threshold, level))]
    #[allow(clippy::too_many_arguments)]
    fn _map3(
        &self,
        py: Python<'_>,
        anchors: Anchors4,
        box_: Option<[f64; 6]>,
        threads: usize,
        max_regions: Option<u64>,
        time_limit: Option<f64>,
        surface: bool,
        threshold: Option<f64>,
        level: Option<&str>,
    ) -> PyResult<Solid> {
        use tessera::solid::{Options3, Slice3, Space3};
        let space = match anchors {
            Some((a, b, c, d)) => Space3::Anchors { a, b, c, d },
            None => Space3::Identity,
        };
        let slice = Slice3::build(self.net.input_shape.numel(), space, box_).map_err(|e| py_err(e.into()))?;
        let decision = decision(self.outputs(), threshold, level)?;
        let engine = options(threads, max_regions, time_limit)?;
        let net = self.net.clone();
        let surface = surface.then(|| decision.clone());
        let start = std::time::Instant::now();
        let solid = run_released(py, engine, |o| {
            let opts = Options3 { engine: o.clone(), keep_regions: true, surface: surface.clone() };
            tessera::solid::partition3(&net, &slice, &opts)
        })?;
        Ok(Solid { solid, slice, net: self.net.clone(), elapsed: start.elapsed().as_secs_f64() })
    }

    /// Partitions a slice; keeps every region.
    #[pyo3(signature = (kind, vectors, box_, threads, max_regions, time_limit, threshold, level))]
    #[allow(clippy::too_many_arguments)]
    fn _map(
        &self,
        py: Python<'_>,
        kind: &str,
        vectors: Vectors,
        box_: Option<[f64; 4]>,
        threads: usize,
        max_regions: Option<u64>,
        time_limit: Option<f64>,
        threshold: Option<f64>,
        level: Option<&str>,
    ) -> PyResult<Partition> {
        let (slice, decision) = self.slice_and_decision(kind, vectors, box_, threshold, level)?;
        let opts = options(threads, max_regions, time_limit)?;
        let net = self.net.clone();
        let start = std::time::Instant::now();
        let part = run_released(py, opts, |o| tessera::partition(&net, &slice, o))?;
        Ok(Partition {
            part,
            slice,
            net: self.net.clone(),
            decision,
            name: self.name.clone(),
            elapsed: start.elapsed().as_secs_f64(),
            boundary: OnceLock::new(),
        })
    }

    /// Counts the regions of a slice without keeping them: the statistics JSON of `map --stats`.
    #[pyo3(signature = (kind, vectors, box_, threads, max_regions, time_limit, threshold, level, boundary))]
    #[allow(clippy::too_many_arguments)]
    fn _count(
        &self,
        py: Python<'_>,
        kind: &str,
        vectors: Vectors,
        box_: Option<[f64; 4]>,
        threads: usize,
        max_regions: Option<u64>,
        time_limit: Option<f64>,
        threshold: Option<f64>,
        level: Option<&str>,
        boundary: bool,
    ) -> PyResult<String> {
        let (slice, decision) = self.slice_and_decision(kind, vectors, box_, threshold, level)?;
        let opts = options(threads, max_regions, time_limit)?;
        let net = self.net.clone();
        let start = std::time::Instant::now();
        let segments = boundary.then(|| tessera::boundary::Segments::new(decision));
        let run = run_released(py, opts, |o| tessera::stream(&net, &slice, o, segments))?;
        let b = run.collect.map(|s| s.finish());
        Ok(tessera::export::stats_json(&run.summary, b.as_ref(), start.elapsed().as_secs_f64()).to_string())
    }

    /// Tile `index` (0-based) of `count`: the tile result as JSON bytes.
    #[pyo3(signature = (kind, vectors, box_, index, count, keep_regions, threads, max_regions, time_limit, threshold, level))]
    #[allow(clippy::too_many_arguments)]
    fn _tile<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        vectors: Vectors,
        box_: Option<[f64; 4]>,
        index: usize,
        count: usize,
        keep_regions: bool,
        threads: usize,
        max_regions: Option<u64>,
        time_limit: Option<f64>,
        threshold: Option<f64>,
        level: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (slice, decision) = self.slice_and_decision(kind, vectors, box_, threshold, level)?;
        let spec = TileSpec::new(index, count).map_err(|e| py_err(e.into()))?;
        let opts = options(threads, max_regions, time_limit)?;
        let id =
            tessera::tile::RunId { key: tessera::tile::fingerprint(&self.source, &slice), name: self.name.clone() };
        let net = self.net.clone();
        let tile =
            run_released(py, opts, |o| tessera::tile::run_tile(&net, &slice, spec, o, &decision, keep_regions, id))?;
        let bytes = serde_json::to_vec(&tile).map_err(|e| TesseraError::new_err(e.to_string()))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Merges tile results (`(name, JSON bytes)`) of this network on this slice: a `Partition`
    /// when every tile kept its regions, else the statistics JSON.
    #[pyo3(signature = (kind, vectors, box_, tiles))]
    fn _merge(
        &self,
        py: Python<'_>,
        kind: &str,
        vectors: Vectors,
        box_: Option<[f64; 4]>,
        tiles: Vec<(String, Vec<u8>)>,
    ) -> PyResult<(Option<Partition>, String)> {
        let slice = Slice::build(self.net.input_shape.numel(), plane_spec(kind, vectors)?, box_)
            .map_err(|e| py_err(e.into()))?;
        let key = tessera::tile::fingerprint(&self.source, &slice);
        let start = std::time::Instant::now();
        let mut parsed = Vec::with_capacity(tiles.len());
        for (name, bytes) in tiles {
            let t: TileResult = serde_json::from_slice(&bytes)
                .map_err(|e| TileError::new_err(format!("{name}: not a tile result: {e}")))?;
            if t.key != key {
                return Err(TileError::new_err(format!("{name} is a tile of another model or slice")));
            }
            parsed.push((name, t));
        }
        let m = py.detach(|| tessera::tile::merge(parsed)).map_err(|e| py_err(e.into()))?;
        let elapsed = start.elapsed().as_secs_f64();
        let stats = tessera::export::stats_json(&m.summary, Some(&m.boundary), elapsed).to_string();
        let part = m.partition.map(|part| Partition {
            part,
            slice,
            net: self.net.clone(),
            decision: m.decision,
            name: self.name.clone(),
            elapsed,
            boundary: OnceLock::new(),
        });
        Ok((part, stats))
    }
}

/// A partition of a slice into linear regions (everything in the slice's `(u, v)`).
#[pyclass(frozen, module = "tessera._tessera")]
struct Partition {
    part: tessera::Partition,
    slice: Slice,
    net: Arc<tessera::Network>,
    decision: Decision,
    name: String,
    elapsed: f64,
    boundary: OnceLock<Boundary>,
}

impl Partition {
    /// The decision boundary, computed once (without the GIL: it can take a while).
    fn boundary_of(&self, py: Python<'_>) -> &Boundary {
        if let Some(b) = self.boundary.get() {
            return b;
        }
        let b = py.detach(|| decision_boundary(&self.part, &self.decision));
        self.boundary.get_or_init(|| b)
    }

    fn render_options(&self, color: &str, edges: &str, size: (u32, u32), axes: bool) -> PyResult<RenderOptions> {
        let color = match color {
            "pattern" => ColorScheme::Pattern,
            "class" => ColorScheme::Class,
            "area" => ColorScheme::Area,
            "slope" => ColorScheme::Slope,
            "density" => ColorScheme::Density,
            other => {
                return Err(TesseraError::new_err(format!(
                    "color `{other}`: expected pattern, class, area, slope or density"
                )))
            }
        };
        let edges = match edges {
            "plain" => EdgeMode::Plain,
            "layer" => EdgeMode::Layer,
            "none" => EdgeMode::None,
            other => return Err(TesseraError::new_err(format!("edges `{other}`: expected plain, layer or none"))),
        };
        if !(16..=20_000).contains(&size.0) || !(16..=20_000).contains(&size.1) {
            return Err(TesseraError::new_err("size must be 16 to 20000 pixels each way"));
        }
        let title = Some(format!("{}: {} regions", self.name, self.part.regions.len()));
        Ok(RenderOptions { size, color, edges, axes, title })
    }
}

#[pymethods]
impl Partition {
    /// Number of regions.
    #[getter]
    fn num_regions(&self) -> usize {
        self.part.regions.len()
    }

    /// Seconds the engine took.
    #[getter]
    fn elapsed(&self) -> f64 {
        self.elapsed
    }

    /// `(u0, u1, v0, v1)`.
    #[getter]
    fn domain(&self) -> (f64, f64, f64, f64) {
        let d = self.part.domain;
        (d.u0, d.u1, d.v0, d.v1)
    }

    /// The anchors' `(u, v)` (three rows), when the plane is through anchors.
    #[getter]
    fn anchors_uv<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray2<f64>>> {
        self.slice.anchors.map(|a| Array2::from_shape_fn((3, 2), |(i, j)| a[i][j]).into_pyarray(py))
    }

    /// Region areas, `(N,)`.
    #[getter]
    fn areas<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.part.regions.iter().map(|r| r.area).collect::<Vec<_>>().into_pyarray(py)
    }

    /// Region polygons in `(u, v)`: a list of `(m, 2)` arrays, counter-clockwise.
    #[getter]
    fn polygons<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyArray2<f64>>> {
        (0..self.part.regions.len())
            .map(|i| {
                let pts = self.part.polygon_uv(i);
                Array2::from_shape_fn((pts.len(), 2), |(k, j)| pts[k][j]).into_pyarray(py)
            })
            .collect()
    }

    /// Activation patterns as 64-bit words, `(N, W)` (bit layout: `layers`).
    #[getter]
    fn patterns<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<u64>> {
        let w = self.part.regions.first().map_or(0, |r| r.pattern.0.len());
        Array2::from_shape_fn((self.part.regions.len(), w), |(i, k)| self.part.regions[i].pattern.0[k]).into_pyarray(py)
    }

    /// Patterns as hexadecimal strings (as in the JSON).
    #[getter]
    fn pattern_hex(&self) -> Vec<String> {
        self.part.regions.iter().map(|r| r.pattern.to_hex()).collect()
    }

    /// `(layer index, op, first bit, bits)` of each nonlinear layer in the patterns.
    #[getter]
    fn layers(&self) -> Vec<(usize, String, usize, usize)> {
        self.part.layout.iter().map(|l| (l.layer, l.op.clone(), l.offset, l.bits)).collect()
    }

    /// Output Jacobians in `(u, v)`, `(N, K, 2)`.
    #[getter]
    fn jacobians<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray3<f64>> {
        let k = self.part.output_scale.len();
        let maps: Vec<_> = (0..self.part.regions.len()).map(|i| self.part.map_uv(i)).collect();
        Array3::from_shape_fn((maps.len(), k, 2), |(i, o, j)| maps[i].jacobian[o][j]).into_pyarray(py)
    }

    /// Output offsets (values at `(u, v) = (0, 0)`), `(N, K)`.
    #[getter]
    fn offsets<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        let k = self.part.output_scale.len();
        let maps: Vec<_> = (0..self.part.regions.len()).map(|i| self.part.map_uv(i)).collect();
        Array2::from_shape_fn((maps.len(), k), |(i, o)| maps[i].offset[o]).into_pyarray(py)
    }

    /// Region counts after each nonlinear layer.
    #[getter]
    fn regions_per_layer(&self) -> Vec<u64> {
        self.part.summary.regions_per_layer.iter().map(|c| c.regions).collect()
    }

    /// Each region's class under the decision, or -1 where the boundary crosses it, `(N,)`.
    #[getter]
    fn classes<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let b = self.boundary_of(py);
        b.region_classes
            .iter()
            .map(|c| match c {
                RegionClass::One(k) => *k as i64,
                RegionClass::Several(_) => -1,
            })
            .collect::<Vec<_>>()
            .into_pyarray(py)
    }

    /// Length of the decision boundary in `(u, v)`.
    #[getter]
    fn boundary_length(&self, py: Python<'_>) -> f64 {
        self.boundary_of(py).length
    }

    /// Connected components of the decision boundary.
    #[getter]
    fn boundary_components(&self, py: Python<'_>) -> usize {
        self.boundary_of(py).components
    }

    /// The decision boundary as polylines in `(u, v)`: a list of `(m, 2)` arrays.
    #[getter]
    fn boundary_polylines<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyArray2<f64>>> {
        let f = self.part.frame;
        self.boundary_of(py)
            .polylines
            .iter()
            .map(|p| {
                let pts: Vec<[f64; 2]> = p.points.iter().map(|&q| f.to_uv(q)).collect();
                Array2::from_shape_fn((pts.len(), 2), |(k, j)| pts[k][j]).into_pyarray(py)
            })
            .collect()
    }

    /// For every region the boundary crosses, each class's cell: `(region, class, (m, 2) polygon)`.
    #[getter]
    fn class_cells<'py>(&self, py: Python<'py>) -> Vec<(usize, usize, Bound<'py, PyArray2<f64>>)> {
        let f = self.part.frame;
        self.boundary_of(py)
            .split_cells
            .iter()
            .map(|(r, c, poly)| {
                let pts: Vec<[f64; 2]> = poly.pts.iter().map(|&q| f.to_uv(q)).collect();
                (*r, *c, Array2::from_shape_fn((pts.len(), 2), |(k, j)| pts[k][j]).into_pyarray(py))
            })
            .collect()
    }

    /// The class pair `(lower, upper)` of each polyline.
    #[getter]
    fn boundary_classes(&self, py: Python<'_>) -> Vec<(usize, usize)> {
        self.boundary_of(py).polylines.iter().map(|p| p.classes).collect()
    }

    /// Statistics JSON (as `map --stats --boundary`).
    fn _stats(&self, py: Python<'_>) -> String {
        tessera::export::stats_json(&self.part.summary, Some(self.boundary_of(py)), self.elapsed).to_string()
    }

    /// `n` points uniform in arc length on the boundary, as flat inputs `(n, numel)`, each
    /// checked by a forward pass (the two classes tie within 1e-9 relative).
    fn _sample_boundary<'py>(&self, py: Python<'py>, n: usize, seed: u64) -> PyResult<Bound<'py, PyArray2<f64>>> {
        if n > 10_000_000 {
            return Err(TesseraError::new_err("at most 10000000 points can be sampled"));
        }
        let b = self.boundary_of(py);
        let pts = tessera::sample::boundary_points(&self.part, b, &self.decision, n, seed);
        if pts.len() < n {
            return Err(CheckError::new_err("the decision boundary is empty on this domain: no boundary points"));
        }
        let numel = self.net.input_shape.numel();
        // Forward passes without the GIL.
        let flat = py
            .detach(|| {
                let mut flat = Vec::with_capacity(n * numel);
                for p in &pts {
                    let x = self.slice.plane.point(p.uv[0], p.uv[1]);
                    let y = self.net.forward(&x);
                    match tessera::sample::boundary_gap(&self.decision, &y, p.classes, 1e-9) {
                        Some(gap) if gap <= 1e-9 => {}
                        gap => {
                            return Err(format!(
                                "boundary point at (u, v) = ({}, {}) fails the forward-pass check (gap {gap:?})",
                                p.uv[0], p.uv[1]
                            ))
                        }
                    }
                    flat.extend_from_slice(&x);
                }
                Ok(flat)
            })
            .map_err(CheckError::new_err)?;
        Ok(Array2::from_shape_vec((pts.len(), numel), flat).expect("sizes agree").into_pyarray(py))
    }

    /// Points `(m, 2)` in `(u, v)` as flat inputs `(m, numel)`.
    fn _to_input<'py>(&self, py: Python<'py>, uv: PyReadonlyArray2<'py, f64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let uv = uv.as_array();
        if uv.ncols() != 2 {
            return Err(SliceError::new_err(format!("points must have shape (m, 2), got (m, {})", uv.ncols())));
        }
        let numel = self.net.input_shape.numel();
        let mut flat = Vec::with_capacity(uv.nrows() * numel);
        for row in uv.rows() {
            flat.extend(self.slice.plane.point(row[0], row[1]));
        }
        Ok(Array2::from_shape_vec((uv.nrows(), numel), flat).expect("sizes agree").into_pyarray(py))
    }

    /// The per-unit report: per nonlinear node `(node, name, op, verdicts, piece areas (units ×
    /// pieces), piece regions (units × pieces), edge lengths)`.
    #[allow(clippy::type_complexity)]
    fn _neurons<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<
        Vec<(
            usize,
            String,
            String,
            Vec<&'static str>,
            Bound<'py, PyArray2<f64>>,
            Bound<'py, PyArray2<u64>>,
            Bound<'py, PyArray1<f64>>,
        )>,
    > {
        let report = py
            .detach(|| tessera::analysis::neurons::neuron_report(&self.net, &self.part))
            .map_err(|e| py_err(e.into()))?;
        Ok(report
            .layers
            .iter()
            .map(|l| {
                let k = l.units.first().map_or(0, |u| u.piece_area.len());
                let area = Array2::from_shape_fn((l.units.len(), k), |(i, j)| l.units[i].piece_area[j]);
                let regions = Array2::from_shape_fn((l.units.len(), k), |(i, j)| l.units[i].piece_regions[j]);
                let edges: Vec<f64> = l.units.iter().map(|u| u.edge_length).collect();
                (
                    l.layer,
                    l.name.clone(),
                    l.op.clone(),
                    l.units.iter().map(|u| u.verdict.name()).collect(),
                    area.into_pyarray(py),
                    regions.into_pyarray(py),
                    edges.into_pyarray(py),
                )
            })
            .collect())
    }

    /// The network without the units that never switch on this slice, checked against every
    /// region's map (`CheckError` otherwise), as `tessera-model/1` JSON text, and the counts
    /// `(kept, removed, linearised)`.
    fn _simplified(&self, py: Python<'_>) -> PyResult<(String, (usize, usize, usize))> {
        use tessera::analysis::neurons::{check_simplified, neuron_report, simplify};
        let (net, part, slice) = (&self.net, &self.part, &self.slice);
        let out = py.detach(|| -> Result<_, tessera::Error> {
            let report = neuron_report(net, part)?;
            let (small, stats) = simplify(net, &report)?;
            Ok((check_simplified(&small, slice, part), small, stats))
        });
        let (check, small, stats) = out.map_err(py_err)?;
        if !check.is_ok() {
            return Err(CheckError::new_err(format!(
                "the rewritten network does not reproduce the partition: {}",
                check.violations.first().cloned().unwrap_or_default()
            )));
        }
        let text = tessera::network::json::to_value(&small).to_string();
        Ok((text, (stats.kept, stats.removed, stats.linearised)))
    }

    /// For every region, the index of its linear piece (neighbours with equal maps merged), `(N,)`.
    fn _pieces<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        let lp = py.detach(|| tessera::analysis::pieces::linear_pieces(&self.part));
        lp.piece_of.iter().map(|&p| p as u64).collect::<Vec<_>>().into_pyarray(py)
    }

    /// The region adjacency graph: pairs of neighbouring regions `(E, 2)`, shared edge lengths
    /// `(E,)`, and the `(node, unit)` separating each pair `(E, 2)` (−1 when none).
    #[allow(clippy::type_complexity)]
    fn _adjacency<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyArray2<u64>>, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<i64>>)> {
        let g = py
            .detach(|| tessera::analysis::graph::region_graph(&self.net, &self.part, &self.decision))
            .map_err(|e| py_err(e.into()))?;
        let ends: Vec<(usize, usize)> = g
            .edge_indices()
            .map(|e| g.edge_endpoints(e).map(|(a, b)| (a.index(), b.index())).unwrap_or((0, 0)))
            .collect();
        let pairs =
            Array2::from_shape_fn((ends.len(), 2), |(i, j)| if j == 0 { ends[i].0 as u64 } else { ends[i].1 as u64 });
        let lengths: Vec<f64> = g.edge_weights().map(|w| w.length).collect();
        let units: Vec<(i64, i64)> =
            g.edge_weights().map(|w| w.unit.map_or((-1, -1), |(l, u)| (l as i64, u as i64))).collect();
        let units = Array2::from_shape_fn((units.len(), 2), |(i, j)| if j == 0 { units[i].0 } else { units[i].1 });
        Ok((pairs.into_pyarray(py), lengths.into_pyarray(py), units.into_pyarray(py)))
    }

    /// Writes the region adjacency graph as GraphML (typed attributes; loads in networkx).
    fn save_graphml(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let g = py
            .detach(|| tessera::analysis::graph::region_graph(&self.net, &self.part, &self.decision))
            .map_err(|e| py_err(e.into()))?;
        let mut buf = Vec::new();
        tessera::analysis::graph::write_graphml(&g, &mut buf)
            .and_then(|_| std::fs::write(&path, &buf))
            .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("cannot write {}: {e}", path.display())))
    }

    /// Index of the region containing `(u, v)`, if any.
    fn locate(&self, u: f64, v: f64) -> Option<usize> {
        self.part.locate([u, v])
    }

    /// The self-check: invariants, every map against a forward pass and against the map its
    /// pattern rebuilds; the list of violations (empty when all hold).
    #[pyo3(signature = (samples=1000, seed=0))]
    fn check(&self, py: Python<'_>, samples: usize, seed: u64) -> Vec<String> {
        py.detach(|| tessera::check(&self.net, &self.slice, &self.part, samples, seed).violations)
    }

    /// The SVG picture (as `tessera map --svg`).
    #[pyo3(signature = (color="pattern", edges="plain", size=(1000, 1000), axes=true))]
    fn svg(&self, py: Python<'_>, color: &str, edges: &str, size: (u32, u32), axes: bool) -> PyResult<String> {
        let opts = self.render_options(color, edges, size, axes)?;
        let b = self.boundary_of(py);
        let scene = tessera::render::Scene { partition: &self.part, boundary: Some(b), anchors: self.slice.anchors };
        Ok(py.detach(|| tessera::render::render_svg(&scene, &opts)))
    }

    /// The PNG picture (as `tessera map --png`).
    #[pyo3(signature = (color="pattern", edges="plain", size=(1000, 1000), axes=true))]
    fn png<'py>(
        &self,
        py: Python<'py>,
        color: &str,
        edges: &str,
        size: (u32, u32),
        axes: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let opts = self.render_options(color, edges, size, axes)?;
        let b = self.boundary_of(py);
        let png = py
            .detach(|| tessera::render::partition_png(&self.part, &self.decision, Some(b), self.slice.anchors, &opts));
        Ok(PyBytes::new(py, &png))
    }

    fn __len__(&self) -> usize {
        self.part.regions.len()
    }

    fn __repr__(&self) -> String {
        let d = self.part.domain;
        format!(
            "<tessera.Partition of {}: {} regions over [{}, {}] x [{}, {}]>",
            self.name,
            self.part.regions.len(),
            d.u0,
            d.u1,
            d.v0,
            d.v1
        )
    }
}

/// A 3D partition: regions as convex polytopes, in the box's coordinates.
#[pyclass(frozen, module = "tessera._tessera")]
struct Solid {
    solid: tessera::solid::Solid,
    slice: tessera::solid::Slice3,
    net: Arc<tessera::Network>,
    elapsed: f64,
}

#[pymethods]
impl Solid {
    /// Number of regions.
    #[getter]
    fn num_regions(&self) -> usize {
        self.solid.regions.len()
    }

    /// Seconds the partition took.
    #[getter]
    fn elapsed(&self) -> f64 {
        self.elapsed
    }

    /// The box `(x0, x1, y0, y1, z0, z1)`.
    #[getter]
    fn bounds(&self) -> (f64, f64, f64, f64, f64, f64) {
        let b = self.slice.bounds;
        (b[0], b[1], b[2], b[3], b[4], b[5])
    }

    /// Region volumes, `(N,)`.
    #[getter]
    fn volumes<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.solid.regions.iter().map(|r| r.volume).collect::<Vec<_>>().into_pyarray(py)
    }

    /// Each region's vertices, a list of `(m, 3)` arrays.
    #[getter]
    fn vertices<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyArray2<f64>>> {
        self.solid
            .regions
            .iter()
            .map(|r| Array2::from_shape_fn((r.vertices.len(), 3), |(i, j)| r.vertices[i][j]).into_pyarray(py))
            .collect()
    }

    /// Each region's facets: lists of vertex indices, counter-clockwise seen from outside.
    #[getter]
    fn facets(&self) -> Vec<Vec<Vec<u32>>> {
        self.solid.regions.iter().map(|r| r.facets.iter().map(|f| f.vertices.clone()).collect()).collect()
    }

    /// Output Jacobians, `(N, K, 3)`.
    #[getter]
    fn jacobians<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray3<f64>> {
        let r = &self.solid.regions;
        let k = r.first().map_or(0, |x| x.offset.len());
        Array3::from_shape_fn((r.len(), k, 3), |(i, o, j)| r[i].jacobian[o][j]).into_pyarray(py)
    }

    /// Output offsets (values at the box coordinates' origin), `(N, K)`.
    #[getter]
    fn offsets<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        let r = &self.solid.regions;
        let k = r.first().map_or(0, |x| x.offset.len());
        Array2::from_shape_fn((r.len(), k), |(i, o)| r[i].offset[o]).into_pyarray(py)
    }

    /// Patterns as hexadecimal strings.
    #[getter]
    fn pattern_hex(&self) -> Vec<String> {
        self.solid.regions.iter().map(|r| r.pattern.to_hex()).collect()
    }

    /// Region counts after each nonlinear layer.
    #[getter]
    fn regions_per_layer(&self) -> Vec<u64> {
        self.solid.summary.regions_per_layer.iter().map(|c| c.regions).collect()
    }

    /// The decision surface (when computed): vertices `(V, 3)`, triangles `(T, 3)`, area,
    /// and whether it is watertight.
    #[allow(clippy::type_complexity)]
    fn _mesh<'py>(&self, py: Python<'py>) -> Option<(Bound<'py, PyArray2<f64>>, Bound<'py, PyArray2<u32>>, f64, bool)> {
        let m = self.solid.surface.as_ref()?;
        let v = Array2::from_shape_fn((m.vertices.len(), 3), |(i, j)| m.vertices[i][j]);
        let t = Array2::from_shape_fn((m.triangles.len(), 3), |(i, j)| m.triangles[i][j]);
        Some((v.into_pyarray(py), t.into_pyarray(py), m.area, m.watertight()))
    }

    /// Writes the decision surface as OBJ or PLY (by the extension).
    fn save_mesh(&self, path: std::path::PathBuf) -> PyResult<()> {
        let m = self
            .solid
            .surface
            .as_ref()
            .ok_or_else(|| TesseraError::new_err("no surface was computed: map3(..., surface=True)"))?;
        let mut buf = Vec::new();
        let ply = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ply"));
        if ply { m.write_ply(&mut buf) } else { m.write_obj(&mut buf) }
            .and_then(|_| std::fs::write(&path, &buf))
            .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("cannot write {}: {e}", path.display())))
    }

    /// The self-check (volumes sum to the box, closed convex facets, maps against a forward
    /// pass at vertex centroids and Chebyshev centres, patterns, coverage); the violations.
    #[pyo3(signature = (samples=200, seed=0))]
    fn check(&self, py: Python<'_>, samples: usize, seed: u64) -> Vec<String> {
        py.detach(|| tessera::solid::check(&self.net, &self.slice, &self.solid, samples, seed).violations)
    }

    /// Input points of box coordinates `p` `(m, 3)`, flat `(m, n)`.
    fn to_input<'py>(&self, py: Python<'py>, p: PyReadonlyArray2<'py, f64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let p = p.as_array();
        if p.ncols() != 3 {
            return Err(SliceError::new_err(format!("points must be (m, 3), got (m, {})", p.ncols())));
        }
        let n = self.net.input_shape.numel();
        let mut flat = Vec::with_capacity(p.nrows() * n);
        for row in p.rows() {
            flat.extend(self.slice.point([row[0], row[1], row[2]]));
        }
        Ok(Array2::from_shape_vec((p.nrows(), n), flat).expect("sizes agree").into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        let b = self.slice.bounds;
        format!(
            "<tessera.Solid: {} regions over [{}, {}] × [{}, {}] × [{}, {}]>",
            self.solid.regions.len(),
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5]
        )
    }
}

#[pymodule]
fn _tessera(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load_bytes, m)?)?;
    m.add_class::<Network>()?;
    m.add_class::<Partition>()?;
    m.add_class::<Solid>()?;
    let py = m.py();
    m.add("TesseraError", py.get_type::<TesseraError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("SliceError", py.get_type::<SliceError>())?;
    m.add("EngineError", py.get_type::<EngineError>())?;
    m.add("TileError", py.get_type::<TileError>())?;
    m.add("CheckError", py.get_type::<CheckError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
