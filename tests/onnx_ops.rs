//! One tiny PyTorch model per ONNX op and architecture pattern (assets/onnx/ops/, made by
//! scripts/make_op_assets.py with both exporters and older opsets): every file lowers, its
//! partition passes the self-checks (forward pass, pattern rebuild, an oracle written in the
//! tests), and every probe's region map equals onnxruntime's output; the files of one model
//! give the same region count. Models that are not piecewise linear or malformed are refused
//! naming the node.

mod common;

use common::{checked, onnx_reference as reference};
use std::path::PathBuf;
use tessera::network::onnx;
use tessera::slice::Slice;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/onnx/ops")
}

fn manifest() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir().join("MANIFEST.json")).expect("assets/onnx/ops/MANIFEST.json")).unwrap()
}

/// Maps `net` on `slice` and compares every probe with onnxruntime (relative `tol`); returns
/// the region count.
pub fn probes_match(
    file: &str,
    net: &tessera::Network,
    slice: &Slice,
    uv: &[[f64; 2]],
    want: &[Vec<f64>],
    tol: f64,
) -> usize {
    let part = checked(net, slice, 2);
    for (p, w) in uv.iter().zip(want) {
        let i = part.locate(*p).expect("probe inside a region");
        let got = part.eval_uv(i, *p);
        let scale = w.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
        assert_eq!(got.len(), w.len(), "{file}: output size");
        for (g, x) in got.iter().zip(w) {
            assert!((g - x).abs() <= tol * scale, "{file} at {p:?}: {got:?} vs onnxruntime {w:?}");
        }
    }
    part.regions.len()
}

#[test]
fn every_op_model_matches_onnxruntime() {
    let m = manifest();
    let models = m["models"].as_array().unwrap();
    assert!(models.len() >= 40, "the manifest lists {} models", models.len());
    let mut failures = Vec::new();
    for model in models {
        let name = model["name"].as_str().unwrap().to_string();
        let run = std::panic::catch_unwind(|| check_model(&name));
        if let Err(e) = run {
            let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            failures.push(format!("{name}: {}", msg.unwrap_or_default()));
        }
    }
    assert!(failures.is_empty(), "{} models fail:\n{}", failures.len(), failures.join("\n"));
}

fn check_model(name: &str) {
    {
        let (slice, uv, want, tags) = reference(&dir().join(format!("{name}.ref.json")));
        let mut counts = Vec::new();
        for tag in &tags {
            let file = format!("{name}_{tag}.onnx");
            let lowered = onnx::load_path(&dir().join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            counts.push((tag.clone(), probes_match(&file, &lowered.network, &slice, &uv, &want, 1e-5)));
        }
        // The exporters write the same function: the same partition (f32 folding of
        // batch-norm can move lines by rounding, never add or remove regions here).
        assert!(counts.windows(2).all(|w| w[0].1 == w[1].1), "{name}: region counts {counts:?}");
    }
}

#[test]
fn non_piecewise_linear_and_malformed_graphs_are_refused_naming_the_node() {
    let m = manifest();
    for r in m["refuse"].as_array().unwrap() {
        let file = r["file"].as_str().unwrap();
        let node = r["node"].as_str().unwrap();
        let e = onnx::load_path(&dir().join(file)).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains(node), "{file}: the error does not name `{node}`: {e}");
        // Through the binary: exit 2.
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["info", dir().join(file).to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{file}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// Sorted region areas.
fn areas(p: &tessera::Partition) -> Vec<f64> {
    let mut a: Vec<f64> = p.regions.iter().map(|r| r.area).collect();
    a.sort_by(f64::total_cmp);
    a
}

/// A U-Net with two nested skip levels and a ResNet block whose body holds its own residual
/// branch, exported by PyTorch (forks nest in the ONNX graph), against the same functions
/// written by hand in the nested sequential JSON form (the U-Net's decoder stages as dense
/// layers on the concatenations): the same partition.
#[test]
fn nested_forks_map_like_their_hand_written_emulations() {
    for name in ["unet", "resnest"] {
        let (slice, _, _, tags) = reference(&dir().join(format!("{name}.ref.json")));
        let twin = tessera::network::json::load_path(&dir().join(format!("{name}.json"))).unwrap();
        assert!(twin.nodes.iter().any(|n| n.inputs.len() > 1), "{name}: the twin has joins");
        let want = checked(&twin, &slice, 2);
        for tag in &tags {
            let file = format!("{name}_{tag}.onnx");
            let net = onnx::load_path(&dir().join(&file)).unwrap().network;
            assert!(!net.is_chain(), "{file} lowers to a graph with forks");
            let got = checked(&net, &slice, 2);
            assert_eq!(got.regions.len(), want.regions.len(), "{file}");
            // f32 weights in both; the ONNX graph folds nothing the twin keeps apart, so the
            // areas agree to rounding.
            for (x, y) in areas(&got).iter().zip(&areas(&want)) {
                assert!((x - y).abs() <= 1e-9 * slice.domain.area(), "{file}: areas {x} vs {y}");
            }
        }
    }
}

/// An attribute the lowering does not know is named in the error, with its node.
#[test]
fn unsupported_attributes_are_named() {
    let e = onnx::load_path(&dir().join("bad_attr.onnx")).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("conv_bad_attr") && e.contains("frobnicate"), "{e}");
}
