//! torchvision architectures with random weights at 3×32×32 (ResNet-18, VGG-11 with batch
//! norm, MobileNetV2, SqueezeNet 1.1), exported with both exporters by
//! `python3 scripts/make_op_assets.py --arch`: the ONNX files are too large to commit (3–500
//! MB), their onnxruntime references are committed (assets/onnx/arch/*.ref.json). When a file
//! is absent the test says so and skips it; when present it must lower, map a small box of the
//! plane through three images with the self-checks, and match every probe.

mod common;

use std::path::PathBuf;
use tessera::network::onnx;

#[test]
fn torchvision_architectures_match_onnxruntime() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/onnx/arch");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("MANIFEST.json")).unwrap()).unwrap();
    let mut ran = 0;
    for model in m["models"].as_array().unwrap() {
        let name = model["name"].as_str().unwrap();
        let (slice, uv, want, _) = common::onnx_reference(&dir.join(format!("{name}.ref.json")));
        // onnxruntime computes in f32: MobileNetV2's outputs differ from an exact (f64) forward
        // pass by up to 4e-5 relative (measured against PyTorch in float64), the others by
        // under 1e-5.
        let tol = if name == "mobilenet_v2" { 1e-4 } else { 1e-5 };
        for tag in model["exporters"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()) {
            let file = dir.join(format!("{name}_{tag}.onnx"));
            if !file.exists() {
                eprintln!(
                    "skipping {}: absent (make it with python3 scripts/make_op_assets.py --arch)",
                    file.display()
                );
                continue;
            }
            let start = std::time::Instant::now();
            let net = onnx::load_path(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).network;
            eprintln!("{name}_{tag}: lowered in {:?}, {} nodes", start.elapsed(), net.nodes.len());
            // The library's self-checks (forward pass at samples, every region's pattern rebuilt);
            // the test oracle's plain loops would take minutes per sample on these networks.
            let part =
                tessera::partition(&net, &slice, &tessera::Options { threads: 2, ..Default::default() }).unwrap();
            // Invariants on 2000 points; the forward pass (seconds per call on these networks)
            // at 16 regions' centroids; onnxruntime at the probes below.
            let report = part.sanity_check(2000, 5, None);
            for r in part.regions.iter().step_by(part.regions.len().div_ceil(16).max(1)) {
                let c = part.frame.to_uv(r.polygon.centroid());
                let (got, want) = (r.map.eval(r.polygon.centroid()), tessera::forward_at(&net, &slice, c));
                let err = got.iter().zip(&want).fold(0.0f64, |e, (x, y)| e.max((x - y).abs() / (1.0 + y.abs())));
                assert!(err < 1e-6, "{name}_{tag}: map vs forward pass {err}: {got:?} vs {want:?}");
            }
            assert!(report.is_ok(), "{name}_{tag}: {:?}", &report.violations[..report.violations.len().min(5)]);
            // Patterns rebuild their maps (a forward pass of three vectors each: a sample).
            let (plane, _) = slice.normalized();
            for r in part.regions.iter().step_by(part.regions.len().div_ceil(8).max(1)) {
                let m = tessera::layer_map::layer_map(&net, &plane, &part.layout, &r.pattern, None).expect("fits");
                let c = r.polygon.centroid();
                let (a, b) = (m.eval(c), r.map.eval(c));
                let err = a.iter().zip(&b).fold(0.0f64, |e, (x, y)| e.max((x - y).abs() / (1.0 + y.abs())));
                assert!(err < 1e-6, "{name}_{tag}: a pattern rebuilds a different map ({err})");
            }
            for (p, w) in uv.iter().zip(&want) {
                let i = part.locate(*p).expect("probe inside a region");
                let got = part.eval_uv(i, *p);
                let scale = w.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
                for (g, x) in got.iter().zip(w) {
                    assert!((g - x).abs() <= tol * scale, "{name}_{tag} at {p:?}: {got:?} vs onnxruntime {w:?}");
                }
            }
            eprintln!("{name}_{tag}: {} regions, mapped in {:?}", part.regions.len(), start.elapsed());
            ran += 1;
        }
    }
    eprintln!("{ran} architecture files checked");
}
