//! The reference networks whose exact region counts are known from three independent exact
//! tools, with PyTorch float64 outputs at 500 probe points. The files are bundled in
//! `assets/reference/` (copies of `../shared/reference/`), so the tests always run; when the
//! shared folder is next to the repository, the copies are checked to be identical to it.

use std::path::PathBuf;
use tessera::network::json;
use tessera::slice::{Domain, Plane, Slice};
use tessera::Options;

const FILES: [&str; 4] =
    ["mlp_2_64x3_2.json", "mlp_2_64x3_2.case.json", "mlp_2_64x3_2_leaky.json", "mlp_2_64x3_2_leaky.case.json"];

/// The bundled copy of a reference file.
fn bundled(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/reference").join(name)
}

#[test]
fn bundled_reference_files_are_the_shared_ones() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference");
    if !dir.exists() {
        eprintln!("note: {} is absent; the bundled copies in assets/reference/ are used", dir.display());
        return;
    }
    for f in FILES {
        let a = std::fs::read(dir.join(f)).unwrap();
        let b = std::fs::read(bundled(f)).unwrap();
        assert!(a == b, "assets/reference/{f} differs from ../shared/reference/{f}");
    }
}

struct Case {
    box_: [f64; 4],
    probe_uv: Vec<[f64; 2]>,
    probe_out: Vec<Vec<f64>>,
    grid_distinct_codes: u64,
}

fn load_case(name: &str) -> Case {
    let text = std::fs::read_to_string(bundled(name)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let b: Vec<f64> = serde_json::from_value(v["box"].clone()).unwrap();
    Case {
        box_: [b[0], b[1], b[2], b[3]],
        probe_uv: serde_json::from_value(v["probe_uv"].clone()).unwrap(),
        probe_out: serde_json::from_value(v["probe_out"].clone()).unwrap(),
        grid_distinct_codes: v["grid_distinct_codes"].as_u64().unwrap(),
    }
}

fn check_reference(model: &str, case: &str, expected: u64, per_layer: [u64; 3]) {
    let case = load_case(case);
    let net = json::load_path(&bundled(model)).unwrap();
    let [u0, u1, v0, v1] = case.box_;
    let slice = Slice { plane: Plane::identity2(), domain: Domain::new(u0, u1, v0, v1).unwrap(), anchors: None };
    for threads in [1, 2] {
        let part = tessera::partition(&net, &slice, &Options { threads, ..Options::default() }).unwrap();
        assert_eq!(part.regions.len() as u64, expected, "threads = {threads}");
        let counts: Vec<u64> = part.summary.regions_per_layer.iter().map(|c| c.regions).collect();
        assert_eq!(counts, per_layer);
        assert!(part.summary.regions >= case.grid_distinct_codes);
        assert_eq!(part.summary.dropped_slivers, 0);
        let oracle = |p: [f64; 2]| tessera::forward_at(&net, &slice, p);
        let report = part.sanity_check(2000, 11, Some(&oracle));
        assert!(report.is_ok(), "{:?}", &report.violations[..report.violations.len().min(5)]);
        // Probe points: the region's map must reproduce PyTorch's float64 outputs.
        for (p, want) in case.probe_uv.iter().zip(&case.probe_out) {
            let i = part.locate(*p).expect("probe inside some region");
            let got = part.eval_uv(i, *p);
            assert!(tessera::partition::relative_error(&got, want) < 1e-9, "{p:?}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn mlp_2_64x3_2_has_12042_regions() {
    check_reference("mlp_2_64x3_2.json", "mlp_2_64x3_2.case.json", 12_042, [1_312, 5_122, 12_042]);
}

#[test]
fn mlp_2_64x3_2_leaky_has_11345_regions() {
    check_reference("mlp_2_64x3_2_leaky.json", "mlp_2_64x3_2_leaky.case.json", 11_345, [1_312, 5_086, 11_345]);
}

#[test]
fn mlp_2_64x3_2_vertex_count() {
    let net = json::load_path(&bundled("mlp_2_64x3_2.json")).unwrap();
    let slice = Slice { plane: Plane::identity2(), domain: Domain::new(-2.0, 2.0, -2.0, 2.0).unwrap(), anchors: None };
    let s = tessera::count(&net, &slice, &Options::default()).unwrap();
    assert_eq!(s.regions, 12_042);
    assert_eq!(s.vertices, Some(12_230));
}

#[test]
fn mlp_2_64x3_2_decision_boundary() {
    use tessera::boundary::{decision_boundary, Decision, RegionClass};
    let net = json::load_path(&bundled("mlp_2_64x3_2.json")).unwrap();
    let slice = Slice { plane: Plane::identity2(), domain: Domain::new(-2.0, 2.0, -2.0, 2.0).unwrap(), anchors: None };
    let mut lengths = Vec::new();
    for threads in [1, 2] {
        let part = tessera::partition(&net, &slice, &Options { threads, ..Options::default() }).unwrap();
        let b = decision_boundary(&part, &Decision::Argmax);
        assert!((b.length - 6.0814).abs() < 1e-3, "length {}", b.length);
        assert_eq!(b.crossed_regions, 166);
        assert_eq!(b.pieces, 12_208);
        // One straight segment in each crossed region.
        assert_eq!(b.segments.len(), 166);
        let several = b.region_classes.iter().filter(|c| matches!(c, RegionClass::Several(_))).count();
        assert_eq!(several, 166);
        let polyline_length: f64 = b.polylines.iter().map(|p| p.length).sum();
        assert!((polyline_length - b.length).abs() < 1e-9);
        lengths.push((b.length, b.components, b.polylines.len()));
    }
    assert_eq!(lengths[0], lengths[1]);
}
