//! Hostile inputs: thousands of seeded mutations of real files must give an answer or a clear
//! error from the loaders, never a panic. (The coverage-guided fuzz targets in `fuzz/` explore
//! further; this runs in every test pass.)

use rand::{Rng, SeedableRng};
use std::panic::catch_unwind;

fn mutate(rng: &mut rand_chacha::ChaCha8Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..rng.random_range(1..6) {
        if v.is_empty() {
            break;
        }
        let i = rng.random_range(0..v.len());
        match rng.random_range(0..6) {
            0 => v[i] = rng.random(),
            1 => v.truncate(i),
            2 => {
                let b = rng.random_range(b'0'..=b'9');
                v.insert(i, b);
            }
            3 => {
                v.remove(i);
            }
            4 => {
                let s: &[u8] = [&b"-1"[..], b"1e308", b"NaN", b"0", b"[]", b"{}", b"99999999999", b"\"relu\""]
                    [rng.random_range(0..8)];
                v.splice(i..i, s.iter().copied());
            }
            _ => {
                let j = rng.random_range(0..v.len());
                v.swap(i, j);
            }
        }
    }
    v
}

#[test]
fn mutated_models_never_panic_the_loader() {
    let base = br#"{"format": "tessera-model/1", "input_shape": [1, 4, 4], "layers": [
        {"op": "conv2d", "weight": [[[[1, -1], [0.5, 0.2]]], [[[0.3, 0.8], [-0.6, 0.1]]]], "bias": [0.1, -0.2], "padding": 1, "stride": 1},
        {"op": "batch_norm", "weight": [1, 2], "bias": [0, 1], "running_mean": [0.5, 0], "running_var": [1, 4]},
        {"op": "hardtanh", "min_val": -0.5, "max_val": 2}, {"op": "max_pool2d", "kernel_size": 2, "stride": 2},
        {"op": "avg_pool2d", "kernel_size": 1}, {"op": "flatten"}, {"op": "maxout", "pool_size": 2},
        {"op": "linear", "weight": [[1, 2, 3, 4]], "bias": [0]}, {"op": "prelu", "weight": [0.1]}]}"#;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..3000 {
        let bytes = mutate(&mut rng, base);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let result = catch_unwind(|| {
            tessera::network::json::parse_str(&text, "fuzz").map(|net| {
                // A loaded model must also run: forward pass on a point.
                let x = vec![0.25; net.input_shape.numel()];
                net.forward(&x).len()
            })
        });
        match result {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                assert!(!e.to_string().is_empty());
                err += 1;
            }
            Err(_) => panic!("the loader panicked on: {text}"),
        }
    }
    assert!(ok > 0 && err > 0, "{ok} loaded, {err} rejected");
}

#[test]
fn mutated_npy_files_never_panic_the_reader() {
    let base = tessera::npy::to_bytes_f64(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let base32 = tessera::npy::to_bytes_f32(&[1, 4], &[1.0, -2.0, 3.5, 0.0]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    for k in 0..3000 {
        let bytes = mutate(&mut rng, if k % 2 == 0 { &base } else { &base32 });
        let result = catch_unwind(|| tessera::npy::parse(&bytes).map(|a| a.data.len()));
        assert!(result.is_ok(), "the .npy reader panicked on {bytes:?}");
    }
}

#[test]
fn mutated_onnx_files_never_panic_the_loader() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/onnx");
    let bases: Vec<Vec<u8>> =
        ["mlp_ts.onnx", "cnn_ts.onnx", "maxout_dy.onnx"].iter().map(|f| std::fs::read(dir.join(f)).unwrap()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for k in 0..3000 {
        let bytes = mutate(&mut rng, &bases[k % bases.len()]);
        let result = catch_unwind(|| tessera::network::onnx::parse_bytes(&bytes, "fuzz.onnx", Some(&dir)).is_ok());
        assert!(result.is_ok(), "the ONNX loader panicked on mutation {k}");
    }
}
