//! The `tessera` binary on real files: outputs, exit codes and error messages.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXAMPLE: &str = "assets/networks/mlp_2_64x3_2.json";

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn write_npy(dir: &Path, name: &str, shape: &[u64], data: &[f64]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, tessera::npy::to_bytes_f64(shape, data)).unwrap();
    p.display().to_string()
}

#[test]
fn map_writes_stats_and_partition_json() {
    let dir = tempdir("map");
    let out = dir.join("map.json");
    let o = tessera(&["map", EXAMPLE, "--box", "-2,2,-2,2", "--stats", "--json", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: Value = serde_json::from_slice(&o.stdout).expect("one JSON object on stdout");
    assert_eq!(stats["regions"], 12_042);
    assert_eq!(stats["regions_per_layer"], serde_json::json!([1_312, 5_122, 12_042]));
    assert_eq!(stats["vertices"], 12_230);
    assert_eq!(stats["domain_area"], 16.0);
    assert!((stats["area_sum"].as_f64().unwrap() - 16.0).abs() < 1e-9);
    assert!(stats["elapsed_s"].as_f64().unwrap() > 0.0);
    assert!(stderr(&o).contains("12042 regions"));

    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc["format"], "tessera-partition/1");
    let regions = doc["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 12_042);
    // Spot-check maps against the library's forward pass at each region's vertex centroid.
    let net = tessera::network::json::load_path(Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE).as_path()).unwrap();
    let mut patterns = std::collections::HashSet::new();
    for r in regions.iter().step_by(97) {
        let verts: Vec<[f64; 2]> = serde_json::from_value(r["vertices"].clone()).unwrap();
        let c =
            verts.iter().fold([0.0, 0.0], |a, p| [a[0] + p[0] / verts.len() as f64, a[1] + p[1] / verts.len() as f64]);
        let jac: Vec<[f64; 2]> = serde_json::from_value(r["map"]["jacobian"].clone()).unwrap();
        let off: Vec<f64> = serde_json::from_value(r["map"]["offset"].clone()).unwrap();
        let want = net.forward(&c);
        for k in 0..2 {
            let got = jac[k][0] * c[0] + jac[k][1] * c[1] + off[k];
            assert!((got - want[k]).abs() < 1e-9 * (1.0 + want[k].abs()));
        }
        assert!(r["area"].as_f64().unwrap() > 0.0);
        assert!(patterns.insert(r["pattern"].as_str().unwrap().to_string()));
    }
    // No temporary file is left next to the output.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn verify_and_info_succeed_on_the_example() {
    let o = tessera(&["verify", EXAMPLE, "--box=-1,1,-1,1", "--points", "300"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("ok:"));
    let o = tessera(&["verify", EXAMPLE, "--box=-0.5,0.5,-0.5,0.5", "--points", "100", "--exact"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("certified in exact arithmetic"), "{}", stderr(&o));
    let o = tessera(&["info", EXAMPLE]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("relu") && text.contains("piecewise-linear units 192"), "{text}");
}

#[test]
fn anchors_plane_on_an_image_model() {
    let dir = tempdir("anchors");
    let model = write(
        &dir,
        "cnn.json",
        r#"{"format": "tessera-model/1", "input_shape": [1, 3, 3], "layers": [
            {"op": "conv2d", "weight": [[[[1, -1], [0.5, 0.2]]], [[[0.3, 0.8], [-0.6, 0.1]]]], "bias": [0.1, -0.2]},
            {"op": "relu"}, {"op": "max_pool2d", "kernel_size": 2}, {"op": "flatten"},
            {"op": "linear", "weight": [[1, -1], [0.5, 2]], "bias": [0, 0.1]}]}"#,
    );
    let a = write_npy(&dir, "a.npy", &[1, 1, 3, 3], &[0.1, 0.5, -0.3, 0.2, 0.0, 0.9, -0.4, 0.3, 0.6]);
    let b = write_npy(&dir, "b.npy", &[1, 3, 3], &[-0.5, 0.2, 0.4, 0.1, 0.7, -0.2, 0.3, -0.6, 0.0]);
    let c = write_npy(&dir, "c.npy", &[9], &[0.8, -0.1, 0.2, -0.3, 0.4, 0.5, 0.0, 0.2, -0.7]);
    let anchors = format!("{a},{b},{c}");
    let o = tessera(&["map", &model, "--anchors", &anchors, "--stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(stats["regions"].as_u64().unwrap() > 1);
    let o = tessera(&["verify", &model, "--anchors", &anchors]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Collinear anchors: C on the line through A and B.
    let mid: Vec<f64> = [0.1, 0.5, -0.3, 0.2, 0.0, 0.9, -0.4, 0.3, 0.6]
        .iter()
        .zip([-0.5, 0.2, 0.4, 0.1, 0.7, -0.2, 0.3, -0.6, 0.0])
        .map(|(x, y)| 2.0 * y - x)
        .collect();
    let c2 = write_npy(&dir, "c2.npy", &[9], &mid);
    let o = tessera(&["map", &model, "--anchors", &format!("{a},{b},{c2}")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("collinear"), "{}", stderr(&o));
}

#[test]
fn bad_inputs_exit_2_with_a_clear_message() {
    let dir = tempdir("errors");
    let head = r#"{"format": "tessera-model/1", "input_shape": [2], "layers": ["#;
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["map".into(), dir.join("missing.json").display().to_string()], "cannot read model file"),
        (vec!["map".into(), write(&dir, "trunc.json", &format!("{head}{{\"op\": \"relu\""))], "invalid JSON at line 1"),
        (
            vec!["map".into(), write(&dir, "unknown.json", &format!("{head}{{\"op\": \"gelu\"}}]}}"))],
            "layer 0 (op `gelu`)",
        ),
        (
            vec![
                "map".into(),
                write(&dir, "shape.json", &format!("{head}{{\"op\": \"linear\", \"weight\": [[1, 2, 3]]}}]}}")),
            ],
            "field `weight`",
        ),
        (
            vec![
                "map".into(),
                write(&dir, "nan.json", &format!("{head}{{\"op\": \"linear\", \"weight\": [[NaN, 1]]}}]}}")),
            ],
            "NaN",
        ),
        (
            vec![
                "map".into(),
                write(&dir, "huge.json", &format!("{head}{{\"op\": \"linear\", \"weight\": [[1e999, 1]]}}]}}")),
            ],
            "invalid JSON",
        ),
        (vec!["map".into(), EXAMPLE.into(), "--box".into(), "1,1,0,1".into()], "invalid box"),
        (vec!["map".into(), EXAMPLE.into(), "--box".into(), "0,1,0".into()], "--box expects four numbers"),
        (
            vec![
                "map".into(),
                write(
                    &dir,
                    "img.json",
                    r#"{"format": "tessera-model/1", "input_shape": [1, 2, 2], "layers": [{"op": "relu"}]}"#,
                ),
            ],
            "give a plane",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = tessera(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let msg = stderr(&o);
        assert!(msg.contains(needle), "{args:?}: expected `{needle}` in: {msg}");
        assert!(!msg.contains("panicked"), "{msg}");
    }
}

#[test]
fn max_regions_stops_with_exit_3_and_no_output_file() {
    let dir = tempdir("limit");
    let out = dir.join("never.json");
    let o = tessera(&["map", EXAMPLE, "--max-regions", "100", "--json", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("more than 100 regions"));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing half-written");
}

#[test]
fn map_with_boundary_and_sample_points() {
    let dir = tempdir("boundary");
    let out = dir.join("b.json");
    let o = tessera(&["map", EXAMPLE, "--box", "-2,2,-2,2", "--boundary", "--stats", "--json", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!((stats["boundary_length"].as_f64().unwrap() - 6.0814).abs() < 1e-3);
    assert_eq!(stats["boundary_crossed_regions"], 166);
    assert!(stats["boundary_components"].as_u64().unwrap() >= 1);
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let polylines = doc["boundary"]["polylines"].as_array().unwrap();
    let total: f64 = polylines.iter().map(|p| p["length"].as_f64().unwrap()).sum();
    assert!((total - 6.0814).abs() < 1e-3);
    let several = doc["regions"].as_array().unwrap().iter().filter(|r| r["class"].is_array()).count();
    assert_eq!(several, 166);

    let pts = dir.join("p.npy");
    let pairs = dir.join("pairs.npy");
    let regs = dir.join("r.npy");
    let js = dir.join("p.json");
    let o = tessera(&[
        "sample",
        EXAMPLE,
        "--box",
        "-2,2,-2,2",
        "--boundary",
        "200",
        "--near-boundary",
        "1e-6",
        "--regions",
        "30",
        "--seed",
        "4",
        "--out",
        pts.to_str().unwrap(),
        "--pairs-out",
        pairs.to_str().unwrap(),
        "--regions-out",
        regs.to_str().unwrap(),
        "--json",
        js.to_str().unwrap(),
        "--dtype",
        "f64",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("200 of 200 near-boundary pairs"), "{}", stderr(&o));
    let a = tessera::npy::read(&pts).unwrap();
    assert_eq!(a.shape, vec![200, 2]);
    assert_eq!(tessera::npy::read(&pairs).unwrap().shape, vec![200, 2, 2]);
    assert_eq!(tessera::npy::read(&regs).unwrap().shape, vec![30, 2]);
    let doc: Value = serde_json::from_slice(&std::fs::read(&js).unwrap()).unwrap();
    let first = &doc["boundary"][0];
    let s = first["scores"].as_array().unwrap();
    assert!((s[0].as_f64().unwrap() - s[1].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(first["uv"][0].as_f64().unwrap(), a.data[0]);

    let o = tessera(&["sample", EXAMPLE, "--out", pts.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nothing to sample"));
    let o = tessera(&["map", EXAMPLE, "--boundary", "--level", "5=0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("output 5 does not exist"), "{}", stderr(&o));
}

#[test]
fn time_and_memory_budgets_stop_with_exit_3() {
    let dir = tempdir("budgets");
    let out = dir.join("never.json");
    let o = tessera(&["map", EXAMPLE, "--time-limit", "0", "--json", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("time limit"), "{}", stderr(&o));
    // An SVG needs the whole partition in memory: a 1 MB budget stops it, and nothing is left.
    let svg = dir.join("never.svg");
    let o = tessera(&["map", EXAMPLE, "--box=-2,2,-2,2", "--memory-limit", "1", "--svg", svg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("MB"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // Counting and JSON stream the regions, so the same budget is no obstacle.
    let o = tessera(&["map", EXAMPLE, "--box=-2,2,-2,2", "--memory-limit", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = tessera(&["map", EXAMPLE, "--box=-2,2,-2,2", "--memory-limit", "1", "--json", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc["regions"].as_array().unwrap().len(), 12042);
}

#[test]
fn pictures_plots_and_layer_maps_through_the_binary() {
    let dir = tempdir("pictures");
    let (svg, png, plots, js) = (dir.join("m.svg"), dir.join("m.png"), dir.join("plots"), dir.join("m.json"));
    let o = tessera(&[
        "map",
        EXAMPLE,
        "--box=-2,2,-2,2",
        "--svg",
        svg.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
        "--json",
        js.to_str().unwrap(),
        "--layer-map",
        "1",
        "--color",
        "slope",
        "--edges",
        "layer",
        "--size",
        "400,300",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(roxmltree::Document::parse(&text).is_ok());
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (400, 300));
    for name in ["areas.png", "vertices.png", "layers.png"] {
        assert!(image::open(plots.join(name)).is_ok(), "{name}");
    }
    let doc: Value = serde_json::from_slice(&std::fs::read(&js).unwrap()).unwrap();
    let r = &doc["regions"][5];
    assert_eq!(r["layer_map"]["layer"], 1);
    // Layer 1 is the first ReLU: on each region its map is the first layer's map or zero, unit by unit.
    let net = tessera::network::json::load_path(Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE).as_path()).unwrap();
    let verts: Vec<[f64; 2]> = serde_json::from_value(r["vertices"].clone()).unwrap();
    let c = verts.iter().fold([0.0, 0.0], |a, p| [a[0] + p[0] / verts.len() as f64, a[1] + p[1] / verts.len() as f64]);
    let mut h = vec![0.0; 64];
    net.nodes[0].layer.apply(&c, &mut h);
    let jac: Vec<[f64; 2]> = serde_json::from_value(r["layer_map"]["jacobian"].clone()).unwrap();
    let off: Vec<f64> = serde_json::from_value(r["layer_map"]["offset"].clone()).unwrap();
    for k in 0..64 {
        let got = jac[k][0] * c[0] + jac[k][1] * c[1] + off[k];
        assert!((got - h[k].max(0.0)).abs() < 1e-12, "unit {k}");
    }
    // Output flags without their source, and an empty boundary, are reported.
    let o = tessera(&["sample", EXAMPLE, "--regions", "3", "--out", dir.join("x.npy").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--out needs --boundary"), "{}", stderr(&o));
    let o = tessera(&[
        "sample",
        EXAMPLE,
        "--box=1.5,1.9,-1.9,-1.5",
        "--boundary",
        "5",
        "--json",
        dir.join("e.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = tessera(&["map", EXAMPLE, "--time-limit", "1e30"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `map --tile I/N` jobs merged by `merge` give the single run's statistics (every field but
/// the time) and the same PNG, byte for byte; a missing tile is named.
#[test]
fn tiles_merge_into_the_single_run() {
    let dir = tempdir("tiles");
    let d = |name: &str| dir.join(name).display().to_string();
    let single = tessera(&["map", EXAMPLE, "--box", "-2,2,-2,2", "--stats", "--boundary", "--png", &d("single.png")]);
    assert!(single.status.success(), "{}", stderr(&single));
    let mut want: Value = serde_json::from_slice(&single.stdout).unwrap();
    want.as_object_mut().unwrap().remove("elapsed_s");
    for n in [2, 9] {
        let mut files = Vec::new();
        for i in 1..=n {
            let f = d(&format!("t{n}-{i}.json"));
            let spec = format!("{i}/{n}");
            let o =
                tessera(&["map", EXAMPLE, "--box", "-2,2,-2,2", "--tile", &spec, "--tile-out", &f, "--tile-regions"]);
            assert!(o.status.success(), "{}", stderr(&o));
            files.push(f);
        }
        let png = d(&format!("merged{n}.png"));
        let mut args = vec!["merge", "--stats", "--boundary", "--png", &png];
        args.extend(files.iter().map(String::as_str));
        let o = tessera(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut got: Value = serde_json::from_slice(&o.stdout).unwrap();
        got.as_object_mut().unwrap().remove("elapsed_s");
        for key in ["boundary_length", "area_sum", "min_area", "max_area"] {
            let (g, w) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
            assert!((g - w).abs() <= 1e-9 * w.abs(), "N = {n}: {key} {g} vs {w}");
            got[key] = want[key].clone();
        }
        let bins = |v: &Value| {
            v["area_histogram"].as_array().unwrap().iter().map(|b| b["regions"].clone()).collect::<Vec<_>>()
        };
        assert_eq!(bins(&got), bins(&want), "N = {n}: area histogram");
        got["area_histogram"] = want["area_histogram"].clone();
        assert_eq!(got, want, "N = {n}: merged statistics differ from the single run's");
        assert!(std::fs::read(&png).unwrap() == std::fs::read(d("single.png")).unwrap(), "N = {n}: PNG differs");
    }
    // A failed job leaves no file: merge names the missing tile.
    let o = tessera(&[
        "merge",
        &d("t9-1.json"),
        &d("t9-2.json"),
        &d("t9-4.json"),
        &d("t9-5.json"),
        &d("t9-6.json"),
        &d("t9-7.json"),
        &d("t9-8.json"),
        &d("t9-9.json"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("tile 3/9 is missing"), "{}", stderr(&o));
    // Count-only tiles merge statistics, and refuse pictures with a message.
    let (a, b) = (d("c1.json"), d("c2.json"));
    for (spec, f) in [("1/2", &a), ("2/2", &b)] {
        let o = tessera(&["map", EXAMPLE, "--box", "-2,2,-2,2", "--tile", spec, "--tile-out", f]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = tessera(&["merge", &a, &b, "--stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(got["regions"], 12_042);
    let o = tessera(&["merge", &a, &b, "--png", &d("x.png")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--tile-regions"), "{}", stderr(&o));
    assert!(!dir.join("x.png").exists());
    // Bad tile specs.
    for spec in ["0/4", "5/4", "x"] {
        let o = tessera(&["map", EXAMPLE, "--tile", spec, "--tile-out", &d("y.json")]);
        assert_eq!(o.status.code(), Some(2), "{spec}");
        assert!(stderr(&o).contains("bad tile"), "{}", stderr(&o));
    }
}

/// `tessera line`: pieces, class changes and exact integrated gradients of a segment, written
/// as statistics, JSON, attributions shaped like the input, and pictures; bad paths exit 2.
#[test]
fn line_traces_a_segment() {
    let dir = tempdir("line");
    let d = |name: &str| dir.join(name).display().to_string();
    let o = tessera(&[
        "line",
        EXAMPLE,
        "--from",
        "-1.7,-0.4",
        "--to",
        "1.3,1.9",
        "--stats",
        "--json",
        &d("l.json"),
        "--png",
        &d("l.png"),
        "--svg",
        &d("l.svg"),
        "--integrated-gradients",
        "--target",
        "1",
        "--ig-out",
        &d("ig.npy"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    let pieces = stats["pieces"].as_u64().unwrap();
    assert!(pieces > 10);
    assert_eq!(stats["pieces_per_layer"].as_array().unwrap().last().unwrap().as_u64(), Some(pieces));
    let ig = &stats["integrated_gradients"];
    assert!((ig["sum"].as_f64().unwrap() - ig["difference"].as_f64().unwrap()).abs() < 1e-9);
    let doc: Value = serde_json::from_slice(&std::fs::read(d("l.json")).unwrap()).unwrap();
    assert_eq!(doc["format"], "tessera-line/1");
    let recs = doc["pieces"].as_array().unwrap();
    assert_eq!(recs.len() as u64, pieces);
    assert_eq!(recs[0]["t"][0], 0.0);
    assert_eq!(recs.last().unwrap()["t"][1], 1.0);
    // The attributions: shaped like the input, summing to f(B) - f(A) of output 1.
    let arr = tessera::npy::read(&dir.join("ig.npy")).unwrap();
    assert_eq!(arr.shape, vec![2]);
    assert!((arr.data.iter().sum::<f64>() - ig["difference"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(&std::fs::read(d("l.png")).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    assert!(std::fs::read_to_string(d("l.svg")).unwrap().contains("<svg"));
    for (args, msg) in [
        (vec!["--from", "1,1", "--to", "1,1"], "zero length"),
        (vec!["--from", "1,1,1", "--to", "1,1"], "has 3 values but the model input has 2"),
        (vec!["--from", "a,b", "--to", "1,1"], "expected an .npy file or comma-separated numbers"),
        (vec!["--path", "0,0"], "at least two points"),
    ] {
        let mut full = vec!["line", EXAMPLE];
        full.extend(args);
        let o = tessera(&full);
        assert_eq!(o.status.code(), Some(2), "{msg}");
        assert!(stderr(&o).contains(msg), "{}", stderr(&o));
    }
}

#[test]
fn map_in_3d_writes_polytopes_and_an_exact_mesh() {
    let dir = tempdir("solid");
    let d = |name: &str| dir.join(name).display().to_string();
    // |x| + |y| + |z| − 0.5 with ReLUs: its zero set is an octahedron of area 4·√3·0.5².
    let model = write(
        &dir,
        "octa.json",
        r#"{"format": "tessera-model/1", "input_shape": [3], "layers": [
            {"op": "linear", "weight": [[1,0,0],[-1,0,0],[0,1,0],[0,-1,0],[0,0,1],[0,0,-1]], "bias": [0,0,0,0,0,0]},
            {"op": "relu"}, {"op": "linear", "weight": [[1,1,1,1,1,1]], "bias": [-0.5]}]}"#,
    );
    let o = tessera(&[
        "map",
        &model,
        "--dims",
        "3",
        "--box",
        "-1,1,-0.9,0.8,-0.7,1",
        "--stats",
        "--json",
        &d("p.json"),
        "--mesh",
        &d("m.obj"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    // The six coordinate half-spaces: the eight octants.
    assert_eq!(stats["regions"], 8);
    let volume = 2.0 * 1.7 * 1.7;
    assert!((stats["volume_sum"].as_f64().unwrap() - volume).abs() < 1e-12);
    let surface = &stats["surface"];
    assert_eq!(surface["watertight"], true);
    assert!((surface["area"].as_f64().unwrap() - 4.0 * 3f64.sqrt() * 0.25).abs() < 1e-12);
    let doc: Value = serde_json::from_slice(&std::fs::read(d("p.json")).unwrap()).unwrap();
    assert_eq!(doc["format"], "tessera-partition3/1");
    let regions = doc["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 8);
    let sum: f64 = regions.iter().map(|r| r["volume"].as_f64().unwrap()).sum();
    assert!((sum - volume).abs() < 1e-12);
    // Every facet is a box face or a hinge of the first layer.
    for r in regions {
        for f in r["facets"].as_array().unwrap() {
            assert!(matches!(f["label"]["kind"].as_str(), Some("box" | "hinge")), "{f}");
        }
    }
    let obj = std::fs::read_to_string(d("m.obj")).unwrap();
    let faces = obj.lines().filter(|l| l.starts_with("f ")).count();
    assert_eq!(faces as u64, surface["triangles"].as_u64().unwrap());
    // Every vertex of the mesh is on the octahedron.
    for l in obj.lines().filter(|l| l.starts_with("v ")) {
        let p: Vec<f64> = l[2..].split(' ').map(|x| x.parse().unwrap()).collect();
        assert!((p[0].abs() + p[1].abs() + p[2].abs() - 0.5).abs() < 1e-12, "{l}");
    }
    // Another level, as PLY.
    let o = tessera(&["map", &model, "--dims", "3", "--level", "0=0.1", "--stats", "--mesh", &d("m.ply")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!((stats["surface"]["area"].as_f64().unwrap() - 4.0 * 3f64.sqrt() * 0.36).abs() < 1e-12);
    let ply = std::fs::read_to_string(d("m.ply")).unwrap();
    assert!(ply.starts_with("ply\nformat ascii 1.0\n"));
    assert!(ply.contains(&format!("element face {}\n", stats["surface"]["triangles"])));
}

#[test]
fn bad_3d_inputs_exit_2_with_a_clear_message() {
    let dir = tempdir("solid_bad");
    let model4 = write(
        &dir,
        "m4.json",
        r#"{"format": "tessera-model/1", "input_shape": [4], "layers": [
            {"op": "linear", "weight": [[1,0,0,1],[0,1,1,0]], "bias": [0,0]}, {"op": "relu"}]}"#,
    );
    let model1 =
        write(&dir, "m1.json", r#"{"format": "tessera-model/1", "input_shape": [1], "layers": [{"op": "relu"}]}"#);
    let a = write_npy(&dir, "a.npy", &[4], &[0.0, 0.0, 0.0, 0.0]);
    let b = write_npy(&dir, "b.npy", &[4], &[1.0, 0.0, 0.0, 0.0]);
    let c = write_npy(&dir, "c.npy", &[4], &[0.0, 1.0, 0.0, 0.0]);
    let d = write_npy(&dir, "d.npy", &[4], &[0.0, 0.0, 1.0, 0.0]);
    let flat = write_npy(&dir, "flat.npy", &[4], &[1.0, 1.0, 0.0, 0.0]);
    let short = write_npy(&dir, "short.npy", &[3], &[0.0, 0.0, 1.0]);
    let anchors = |list: [&str; 4]| list.join(",");
    let ok = tessera(&["map", &model4, "--dims", "3", "--anchors", &anchors([&a, &b, &c, &d])]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--anchors".into(), anchors([&a, &b, &c, &flat])], "coplanar"),
        (vec!["--anchors".into(), anchors([&a, &b, &c, &short])], "has shape [3] (3 values) but the model input has 4"),
        (vec!["--anchors".into(), [a.as_str(), &b, &c].join(",")], "expects four files"),
        (vec!["--box".into(), "0,1,0,1,0".into(), "--anchors".into(), anchors([&a, &b, &c, &d])], "six numbers"),
        (vec!["--box".into(), "0,1,0,1,1,0".into(), "--anchors".into(), anchors([&a, &b, &c, &d])], "z axis"),
        (vec!["--mesh".into(), "x.stl".into(), "--anchors".into(), anchors([&a, &b, &c, &d])], ".obj or .ply"),
        (vec!["--png".into(), "x.png".into()], "--png cannot be used with --dims 3"),
        (vec![], "a 3D map needs a model with 3 inputs"),
    ];
    for (extra, want) in cases {
        let mut args: Vec<&str> = vec!["map", &model4, "--dims", "3"];
        args.extend(extra.iter().map(String::as_str));
        let o = tessera(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let o = tessera(&["map", &model1, "--dims", "3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("the model input has 1 feature"), "{}", stderr(&o));
    let o = tessera(&["map", &model1, "--mesh", "m.obj"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--mesh needs --dims 3"), "{}", stderr(&o));
}

/// Rows of a CSV file as maps from column name to text.
fn read_csv(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(cells.len(), header.len(), "row `{l}`");
            header.iter().cloned().zip(cells.iter().map(|c| c.to_string())).collect()
        })
        .collect()
}

#[test]
fn neurons_report_and_a_rewrite_with_the_same_partition() {
    let dir = tempdir("neurons");
    let (csv, small, plots) = (dir.join("n.csv"), dir.join("small.json"), dir.join("plots"));
    let o = tessera(&[
        "neurons",
        EXAMPLE,
        "--box",
        "-2,2,-2,2",
        "--csv",
        csv.to_str().unwrap(),
        "--rewrite",
        small.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = read_csv(&csv);
    assert_eq!(rows.len(), 192, "one row per unit of the 2-64-64-64-2 net");
    let switching = rows.iter().filter(|r| r["verdict"] == "switching").count();
    for r in &rows {
        let fractions: f64 = r["piece_area_fraction"].split(';').map(|x| x.parse::<f64>().unwrap()).sum();
        assert!((fractions - 1.0).abs() < 1e-9);
        let pieces = r["piece_regions"].split(';').filter(|x| *x != "0").count();
        assert_eq!(pieces > 1, r["verdict"] == "switching");
        assert_eq!(r["edge_length"].parse::<f64>().unwrap() > 0.0, r["verdict"] == "switching");
    }
    assert!(switching < 192, "some units never switch on [-2, 2]²");
    // The table's last line: units, dead, linear, switching over all layers, as in the CSV.
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let all: Vec<usize> = table
        .lines()
        .find(|l| l.starts_with("all"))
        .expect("a total line")
        .split_whitespace()
        .skip(1)
        .take(4)
        .map(|x| x.parse().unwrap())
        .collect();
    let count = |v: &str| rows.iter().filter(|r| r["verdict"] == v).count();
    assert_eq!(all, [192, count("dead"), count("linear"), switching], "{table}");
    for stem in ["verdicts", "edge_length"] {
        assert!(std::fs::read(plots.join(format!("{stem}.png"))).unwrap().starts_with(b"\x89PNG"));
    }
    // The rewritten network: as many piecewise-linear units as switching ones, same partition.
    let info = tessera(&["info", small.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&info.stdout).contains(&format!("piecewise-linear units {switching}")));
    let a = tessera(&["map", EXAMPLE, "--box", "-2,2,-2,2", "--stats", "--boundary"]);
    let b = tessera(&["map", small.to_str().unwrap(), "--box", "-2,2,-2,2", "--stats", "--boundary"]);
    let (a, b): (Value, Value) =
        (serde_json::from_slice(&a.stdout).unwrap(), serde_json::from_slice(&b.stdout).unwrap());
    for key in ["regions", "vertices", "boundary_components"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert!((a["boundary_length"].as_f64().unwrap() - b["boundary_length"].as_f64().unwrap()).abs() < 1e-9);
}

#[test]
fn map_pieces_and_the_region_graph() {
    let dir = tempdir("pieces");
    let (graph, svg) = (dir.join("g.graphml"), dir.join("p.svg"));
    let o = tessera(&[
        "map",
        EXAMPLE,
        "--box",
        "-2,2,-2,2",
        "--stats",
        "--pieces",
        "--graph",
        graph.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    // A generic trained net: no two neighbours share a map.
    assert_eq!(stats["pieces"], stats["regions"]);
    let text = std::fs::read_to_string(&graph).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(doc.descendants().filter(|n| n.has_tag_name("node")).count(), 12_042);
    // The adjacency graph of a partition of the square is connected and planar:
    // regions − 1 ≤ edges ≤ 3·regions − 6.
    let edges = doc.descendants().filter(|n| n.has_tag_name("edge")).count();
    assert!((12_042 - 1..=3 * 12_042 - 6).contains(&edges), "{edges} adjacencies");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("12042 linear pieces"));

    // Redundant units (zero outgoing weights): fewer pieces than regions.
    let model = write(
        &dir,
        "red.json",
        r#"{"format": "tessera-model/1", "input_shape": [2], "layers": [
            {"op": "linear", "weight": [[1.0, 0.3], [-0.4, 1.0], [0.7, -0.7]], "bias": [0.1, -0.2, 0.05]},
            {"op": "relu"},
            {"op": "linear", "weight": [[1.0, -0.5, 0.0], [0.3, 1.2, 0.0]], "bias": [0.0, 0.1]}]}"#,
    );
    let png = dir.join("p.png");
    let o = tessera(&["map", &model, "--stats", "--pieces", "--png", png.to_str().unwrap(), "--size", "300,200"]);
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stats["pieces"], 4, "the lines of units 0 and 1 cross inside the square: four pieces");
    assert!(stats["regions"].as_u64().unwrap() > 4);
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (300, 200));
    // Refused combinations.
    for (args, needle) in [
        (vec!["--pieces", "--dims", "3"], "--pieces cannot be used with --dims 3"),
        (vec!["--pieces", "--svg", "x.svg", "--edges", "layer"], "--edges layer cannot be used"),
        (vec!["--graph", "g.graphml", "--tile", "1/2", "--tile-out", "t.json"], "cannot be used with"),
    ] {
        let mut all = vec!["map", model.as_str()];
        all.extend(args);
        let o = tessera(&all);
        assert_eq!(o.status.code(), Some(2), "{all:?}");
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
    }
}

#[test]
fn local_complexity_through_the_binary() {
    let dir = tempdir("local");
    let pts = write_npy(&dir, "x.npy", &[3, 2], &[0.1, -0.2, 0.5, 0.4, -0.7, 0.0]);
    let csv = dir.join("l.csv");
    let plot = dir.join("l.png");
    let o = tessera(&[
        "local",
        EXAMPLE,
        "--points",
        &pts,
        "--radius",
        "0.3",
        "--planes",
        "2",
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = read_csv(&csv);
    assert_eq!(rows.len(), 6);
    // Both planes through a point of a 2-input model are its input plane.
    for p in rows.chunks(2) {
        assert_eq!(p[0]["regions"], p[1]["regions"]);
        let per: u64 =
            ["units_relu#1", "units_relu#3", "units_relu#5"].iter().map(|k| p[0][*k].parse::<u64>().unwrap()).sum();
        assert_eq!(per, p[0]["units"].parse::<u64>().unwrap());
    }
    assert!(std::fs::read(&plot).unwrap().starts_with(b"\x89PNG"));
    // Bad input.
    let bad = write_npy(&dir, "bad.npy", &[2, 3], &[0.0; 6]);
    for (args, needle) in [
        (vec!["--points", bad.as_str(), "--radius", "0.3"], "has shape [2, 3]"),
        (vec!["--points", pts.as_str(), "--radius", "-1"], "--radius must be a positive number"),
        (vec!["--points", pts.as_str(), "--radius", "0.3", "--planes", "0"], "--planes must be at least 1"),
    ] {
        let mut all = vec!["local", EXAMPLE];
        all.extend(args);
        let o = tessera(&all);
        assert_eq!(o.status.code(), Some(2), "{all:?}");
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
    }
}

#[test]
fn series_rows_equal_separate_maps_of_each_checkpoint() {
    let dir = tempdir("series");
    let base: Value = serde_json::from_slice(&std::fs::read(EXAMPLE).unwrap()).unwrap();
    // Checkpoints: the bundled net with its even hidden rows scaled down step by step.
    let mut ckpts = Vec::new();
    for (k, s) in [1.0, 0.7, 0.4].iter().enumerate() {
        let mut doc = base.clone();
        for layer in doc["layers"].as_array_mut().unwrap() {
            if let Some(w) = layer.get_mut("weight") {
                for (i, row) in w.as_array_mut().unwrap().iter_mut().enumerate() {
                    for x in row.as_array_mut().unwrap() {
                        if i % 2 == 0 {
                            *x = serde_json::json!(x.as_f64().unwrap() * s);
                        }
                    }
                }
            }
        }
        ckpts.push(write(&dir, &format!("ck{k}.json"), &doc.to_string()));
    }
    let (csv, gif, plots) = (dir.join("s.csv"), dir.join("s.gif"), dir.join("plots"));
    let mut args = vec!["series"];
    args.extend(ckpts.iter().map(String::as_str));
    args.extend(["--box", "-2,2,-2,2", "--csv", csv.to_str().unwrap(), "--gif", gif.to_str().unwrap()]);
    args.extend(["--plots", plots.to_str().unwrap(), "--size", "200,200"]);
    let o = tessera(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = read_csv(&csv);
    assert_eq!(rows.len(), 3);
    for (row, ck) in rows.iter().zip(&ckpts) {
        let m = tessera(&["map", ck, "--box", "-2,2,-2,2", "--stats", "--boundary"]);
        let s: Value = serde_json::from_slice(&m.stdout).unwrap();
        assert_eq!(row["regions"], s["regions"].to_string());
        let per: Vec<String> = s["regions_per_layer"].as_array().unwrap().iter().map(|v| v.to_string()).collect();
        assert_eq!(row["regions_per_layer"], per.join(";"));
        for key in ["vertices", "boundary_components", "boundary_closed_components", "boundary_crossed_regions"] {
            assert_eq!(row[key], s[key].to_string(), "{key}");
        }
        let length: f64 = row["boundary_length"].parse().unwrap();
        assert!((length - s["boundary_length"].as_f64().unwrap()).abs() <= 1e-12 * length.max(1.0));
        let units: usize =
            ["dead_units", "linear_units", "switching_units"].iter().map(|k| row[*k].parse::<usize>().unwrap()).sum();
        assert_eq!(units, 192);
    }
    assert_ne!(rows[0]["regions"], rows[2]["regions"], "the checkpoints differ");
    // One frame per checkpoint, at the asked size.
    let decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(std::fs::read(&gif).unwrap())).unwrap();
    use image::AnimationDecoder;
    let frames: Vec<_> = decoder.into_frames().collect::<Result<_, _>>().unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].buffer().dimensions(), (200, 200));
    for stem in ["regions", "boundary", "units"] {
        assert!(std::fs::read(plots.join(format!("{stem}.png"))).unwrap().starts_with(b"\x89PNG"));
    }
    // A checkpoint of another input shape is refused by name before any work: the CSV of the
    // run above is left as it was.
    let before = std::fs::read(&csv).unwrap();
    let o = tessera(&["series", &ckpts[0], "assets/networks/cnn_1x8x8.json", "--csv", csv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cnn_1x8x8.json takes [1, 8, 8]"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&csv).unwrap(), before);
}
