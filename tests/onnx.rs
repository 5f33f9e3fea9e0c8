//! ONNX models exported by PyTorch with both exporters (assets/onnx/, made by
//! scripts/make_assets.py): maps against onnxruntime outputs, agreement with the same networks
//! written as tessera-model/1 JSON, and clear errors for unsupported or malformed files.

mod common;

use common::checked;
use std::path::PathBuf;
use tessera::network::onnx;
use tessera::slice::{Domain, Plane, Slice};

fn asset(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/onnx").join(name)
}

struct Reference {
    slice: Slice,
    probe_uv: Vec<[f64; 2]>,
    probe_out: Vec<Vec<f64>>,
}

fn reference(name: &str) -> Reference {
    let (slice, probe_uv, probe_out, _) = common::onnx_reference(&asset(&format!("{name}.ref.json")));
    Reference { slice, probe_uv, probe_out }
}

#[test]
fn exported_models_match_onnxruntime_and_their_json_twins() {
    for name in ["mlp", "cnn", "maxout", "abs", "gap", "resmlp", "resnet", "skipfirst", "branches", "catcnn"] {
        let r = reference(name);
        let json_net = tessera::network::json::load_path(&asset(&format!("{name}.json"))).unwrap();
        let twin = checked(&json_net, &r.slice, 2);
        for tag in ["ts", "dy"] {
            let file = format!("{name}_{tag}.onnx");
            let net = onnx::load_path(&asset(&file)).unwrap_or_else(|e| panic!("{file}: {e}")).network;
            let part = checked(&net, &r.slice, 2);
            for (p, want) in r.probe_uv.iter().zip(&r.probe_out) {
                let i = part.locate(*p).expect("probe inside a region");
                let got = part.eval_uv(i, *p);
                let scale = want.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
                for (g, w) in got.iter().zip(want) {
                    assert!((g - w).abs() <= 1e-5 * scale, "{file} at {p:?}: {got:?} vs onnxruntime {want:?}");
                }
            }
            // The same network from the ONNX file and from the JSON: the same partition. (The
            // TorchScript exporter fuses batch-norm into the convolution in f32, which moves
            // lines by f32 rounding: areas agree to 1e-6 of the domain, counts exactly.)
            assert_eq!(part.regions.len(), twin.regions.len(), "{file}");
            let mut a: Vec<f64> = part.regions.iter().map(|r| r.area).collect();
            let mut b: Vec<f64> = twin.regions.iter().map(|r| r.area).collect();
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-6 * r.slice.domain.area(), "{file}: areas {x} vs {y}");
            }
        }
    }
}

#[test]
fn unsupported_and_malformed_files_are_clear_errors() {
    let err = |path: PathBuf| onnx::load_path(&path).unwrap_err().to_string();
    let e = err(asset("sigmoid_ts.onnx"));
    assert!(e.contains("Sigmoid") && e.contains("not piecewise linear"), "{e}");
    // A [batch, 4, 3] input is a 1D signal (4 channels of length 3); its Linear(3, 2) acts on
    // the last axis of every row: 4 × 2 outputs, each the same map of its own row.
    let net = onnx::load_path(&asset("rank3_ts.onnx")).unwrap().network;
    assert_eq!(net.input_shape.numel(), 12);
    assert_eq!(net.output_shape().numel(), 8);
    let x: Vec<f64> = (0..12).map(|i| (i as f64 * 0.7).sin()).collect();
    let mut rows = x.clone();
    rows.rotate_left(3);
    let (y, y_rot) = (net.forward(&x), net.forward(&rows));
    for r in 0..4 {
        for o in 0..2 {
            assert!((y[((r + 1) % 4) * 2 + o] - y_rot[r * 2 + o]).abs() < 1e-12, "rows are mapped independently");
        }
    }
    let e = err(asset("missing_initializer.onnx"));
    assert!(e.contains("0.weight") && e.contains("Gemm"), "{e}");
    let bytes = std::fs::read(asset("mlp_ts.onnx")).unwrap();
    let e = onnx::parse_bytes(&bytes[..bytes.len() / 2], "half.onnx", None).unwrap_err().to_string();
    assert!(e.contains("half.onnx"), "{e}");
    let e =
        onnx::parse_bytes(b"\x08\x07garbage that is not protobuf \xff\xff", "junk.onnx", None).unwrap_err().to_string();
    assert!(e.contains("junk.onnx"), "{e}");
    // Through the binary: `verify` passes on an exported ResNet-style model; errors exit 2.
    let v = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["verify", asset("resnet_dy.onnx").to_str().unwrap(), "--points", "200"])
        .args(["--origin", &npy("o", 64, 0.3), "--du", &npy("u", 64, 0.7), "--dv", &npy("v", 64, 1.1)])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    for bad in ["sigmoid_ts.onnx", "missing_initializer.onnx"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["info", asset(bad).to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}");
    }
    // Through the binary: exit 2, no panic.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["map", asset("sigmoid_ts.onnx").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// A seeded direction vector as a .npy file in the temp folder.
fn npy(name: &str, n: usize, phase: f64) -> String {
    let data: Vec<f64> = (0..n).map(|i| ((i as f64 + 1.0) * phase).sin()).collect();
    let path = std::env::temp_dir().join(format!("tessera-onnx-{name}-{}.npy", std::process::id()));
    std::fs::write(&path, tessera::npy::to_bytes_f64(&[n as u64], &data)).unwrap();
    path.display().to_string()
}

#[test]
fn export_json_round_trips_an_onnx_model() {
    let net = onnx::load_path(&asset("cnn_ts.onnx")).unwrap().network;
    let again = tessera::network::json::parse_value(&tessera::network::json::to_value(&net)).unwrap();
    let x: Vec<f64> = (0..64).map(|i| (i as f64 * 0.3).sin()).collect();
    assert_eq!(net.forward(&x), again.forward(&x));
}

/// The performance goal's network: PyTorch's 2-256-256-256-2 ReLU MLP with
/// `torch.manual_seed(0)` and default initialisation has exactly 162,097 regions over [-2, 2]²
/// (three independent exact tools agree).
#[test]
fn pytorch_seed0_256_wide_mlp_has_162097_regions() {
    let net = onnx::load_path(&asset("mlp_2_256x3_2_ts.onnx")).unwrap().network;
    let slice = Slice { plane: Plane::identity2(), domain: Domain::new(-2.0, 2.0, -2.0, 2.0).unwrap(), anchors: None };
    for threads in [1, 2] {
        let s = tessera::count(&net, &slice, &tessera::Options { threads, ..Default::default() }).unwrap();
        assert_eq!(s.regions, 162_097);
        assert!((s.area_sum - 16.0).abs() < 1e-9);
        assert_eq!(s.dropped_slivers, 0);
    }
}
