//! Named regression tests, one per defect found in review.

mod common;

use common::*;
use serde_json::json;
use tessera::network::json::parse_value;
use tessera::slice::{Domain, Plane, Slice};

/// Max-pool positions used to be stored in a `u8`: a 17×17 window (289 candidates) wrapped
/// candidate 256 onto candidate 0, merging patterns and breaking the lowest-index tie rule.
#[test]
fn max_pool_windows_larger_than_256_keep_distinct_patterns() {
    let mut r = rng(91);
    let n = 17 * 17;
    let net = model(&[1, 17, 17], vec![json!({"op": "max_pool2d", "kernel_size": 17}), json!({"op": "flatten"})]);
    let slice = random_plane(&mut r, n, [-1.0, 1.0, -1.0, 1.0]);
    let part = checked(&net, &slice, 2);
    assert_eq!(part.regions.len(), grid_patterns(&net, &slice, 600));
}

fn load_err(layers: serde_json::Value, input: serde_json::Value) -> String {
    parse_value(&json!({"format": "tessera-model/1", "input_shape": input, "layers": layers})).unwrap_err().to_string()
}

/// A pooling window entirely in the padding (dilation 2, padding 1 on a 1×1 image) used to
/// panic in the engine; it is now rejected on load.
#[test]
fn pooling_window_inside_the_padding_is_rejected() {
    let e = load_err(json!([{"op": "max_pool2d", "kernel_size": 2, "padding": 1, "dilation": 2}]), json!([1, 1, 1]));
    assert!(e.contains("layer 0") && e.contains("padding"), "{e}");
}

/// Huge paddings and shapes used to overflow (release builds wrap) or exhaust memory.
#[test]
fn absurd_sizes_are_rejected_without_overflow() {
    let e = load_err(json!([{"op": "conv2d", "weight": [[[[1.0]]]], "padding": 100000}]), json!([1, 2, 2]));
    assert!(e.contains("size limit"), "{e}");
    let e =
        load_err(json!([{"op": "max_pool2d", "kernel_size": 2, "padding": 9223372036854775807u64}]), json!([1, 2, 2]));
    assert!(e.contains("layer 0"), "{e}");
    let e = load_err(json!([]), json!([4294967296u64, 4294967296u64, 2]));
    assert!(e.contains("input_shape"), "{e}");
}

/// Batch-norm with a finite weight over a tiny variance folded to an infinite scale, which the
/// engine then treated as zero everywhere.
#[test]
fn batch_norm_that_folds_to_infinity_is_rejected() {
    let e = load_err(
        json!([{"op": "batch_norm", "weight": [1e300], "running_mean": [0.0], "running_var": [1e-300], "eps": 0.0}]),
        json!([1]),
    );
    assert!(e.contains("not finite"), "{e}");
}

/// A box whose width overflows f64 used to pass validation and panic later.
#[test]
fn boxes_whose_width_overflows_are_rejected() {
    assert!(Domain::new(-1e308, 1e308, -1.0, 1.0).is_err());
    assert!(Domain::new(0.0, 1e-200, 0.0, 1e-200).is_err());
    // The library re-validates slices built by hand.
    let net = mlp(1, &[2, 3, 1], json!({"op": "relu"}));
    let bad =
        Slice { plane: Plane::identity2(), domain: Domain { u0: 1.0, u1: -1.0, v0: 0.0, v1: 1.0 }, anchors: None };
    assert!(tessera::count(&net, &bad, &tessera::Options::default()).is_err());
}

/// Two outputs equal up to rounding must not produce a boundary made of rounding noise.
#[test]
fn equal_outputs_make_no_boundary() {
    use tessera::boundary::{decision_boundary, Decision};
    let net = model(
        &[2],
        vec![
            json!({"op": "linear", "weight": [[0.3, -0.7], [0.9, 0.1]], "bias": [0.1, -0.2]}),
            json!({"op": "relu"}),
            // Both outputs are the same function computed with different rounding.
            json!({"op": "linear", "weight": [[0.1, 0.3], [0.30000000000000004, 0.9000000000000001]], "bias": [0.2, 0.6000000000000001]}),
            json!({"op": "linear", "weight": [[3.0, 0.0], [0.0, 1.0]]}),
        ],
    );
    let part = checked(&net, &plane_slice([-1.0, 1.0, -1.0, 1.0]), 1);
    let b = decision_boundary(&part, &Decision::Argmax);
    assert_eq!(b.length, 0.0);
    assert_eq!(b.crossed_regions, 0);
}

/// A polygon with a repeated vertex used to contain no point at all.
#[test]
fn repeated_vertices_do_not_empty_a_polygon() {
    let p = tessera::geometry::polygon::ConvexPolygon { pts: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]] };
    assert_eq!(p.locate([0.2, 0.2]), tessera::geometry::predicates::Sign::Pos);
}

/// The Chebyshev centre of a tiny polygon far from the origin stays inside it.
#[test]
fn chebyshev_centre_of_a_tiny_far_polygon() {
    let o = [1e3, -2e3];
    let s = 1e-9;
    let tri =
        tessera::geometry::polygon::ConvexPolygon { pts: vec![o, [o[0] + 4.0 * s, o[1]], [o[0], o[1] + 3.0 * s]] };
    let (c, r) = tessera::sample::chebyshev_center(&tri);
    assert!((r / s - 1.0).abs() < 1e-3, "radius {r}");
    assert!(((c[0] - o[0]) / s - 1.0).abs() < 1e-3 && ((c[1] - o[1]) / s - 1.0).abs() < 1e-3);
}

/// Layers inside blocks skipped the loader's size checks, and nested blocks could double the
/// engine's state without bound.
#[test]
fn layers_inside_blocks_are_size_checked() {
    let e = load_err(
        json!([{"op": "residual", "layers": [{"op": "conv2d", "weight": [[[[1.0]]]], "padding": 100000}], "shortcut": []}]),
        json!([1, 2, 2]),
    );
    assert!(e.contains("size limit"), "{e}");
    let e = load_err(
        json!([{"op": "residual", "layers": [{"op": "max_pool2d", "kernel_size": 2, "padding": 1, "dilation": 2}]}]),
        json!([1, 1, 1]),
    );
    assert!(e.contains("padding"), "{e}");
    // Each nesting level keeps its own input alive for the merge (a ReLU of the level above
    // feeds the next): 20 distinct tensors of 2^22 entries at once.
    let nest = |levels: usize| {
        let mut block = json!({"op": "relu"});
        for _ in 0..levels {
            block = json!({"op": "residual", "layers": [{"op": "relu"}, block]});
        }
        block
    };
    let e = load_err(json!([nest(20)]), json!([1 << 22]));
    assert!(e.contains("alive at once"), "{e}");
    // A few levels are fine: the engine carries no copy of a branch's state.
    assert!(parse_value(&json!({"format": "tessera-model/1", "input_shape": [1 << 10], "layers": [nest(20)]})).is_ok());
}

fn regression_onnx(name: &str) -> Result<tessera::Network, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/onnx/regressions").join(name);
    tessera::network::onnx::load_path(&path).map(|l| l.network).map_err(|e| e.to_string())
}

/// Constant `Div` used to truncate every quotient, as if all constants were integers: a float
/// scale `3.0 / 2.0` became 1. Integer division still truncates.
#[test]
fn constant_division_is_exact_for_floats_and_truncates_for_integers() {
    let x = [1.0, -2.0, 0.5, 4.0];
    for (file, scale) in [("div_float.onnx", 1.5), ("div_int.onnx", 3.0)] {
        let net = regression_onnx(file).unwrap();
        let y = net.forward(&x);
        let want: Vec<f64> = x.iter().map(|v| v * scale).collect();
        assert_eq!(y, want, "{file}");
    }
}

/// A Gemm bias of the wrong length used to be accepted and read modulo its length.
#[test]
fn gemm_bias_of_the_wrong_length_is_refused() {
    let e = regression_onnx("gemm_bias_length.onnx").unwrap_err();
    assert!(e.contains("bad_gemm") && e.contains("does not broadcast to 3 outputs"), "{e}");
}

/// `Shape`'s `start`/`end` attributes used to be ignored, so `Reshape(x, Concat(Shape(x, end=1),
/// [-1]))` (a flatten) received the whole shape.
#[test]
fn shape_start_and_end_are_honoured() {
    let net = regression_onnx("shape_end.onnx").unwrap();
    let x: Vec<f64> = (0..8).map(|i| i as f64 - 3.0).collect();
    // y = W·x with W[o][i] = (8·o + i − 12) / 10, as the generator wrote it (f32-rounded).
    let want: Vec<f64> = (0..3)
        .map(|o| {
            (0..8)
                .map(|i| ((8 * o + i) as f32 - 12.0) as f64 / 10.0)
                .map(|w| (w as f32) as f64)
                .zip(&x)
                .map(|(w, v)| w * v)
                .sum()
        })
        .collect();
    let y = net.forward(&x);
    for (a, b) in y.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{y:?} vs {want:?}");
    }
}

/// The branches of a residual block used to be matched by element count: `[2, 2, 2]` plus `[8]`
/// was accepted.
#[test]
fn residual_branches_must_have_the_same_shape() {
    let e = load_err(
        json!([{"op": "residual", "layers": [{"op": "relu"}, {"op": "flatten"}], "shortcut": []}]),
        json!([2, 2, 2]),
    );
    assert!(e.contains("must match"), "{e}");
}

/// A 200-byte model with a 10^18-wide pooling window used to make `tessera info` run forever.
#[test]
fn absurd_pooling_windows_are_refused_at_once() {
    for op in ["max_pool2d", "avg_pool2d"] {
        let e = load_err(
            json!([{"op": op, "kernel_size": 1_000_000_000_000_000_000u64, "padding": 500_000_000_000_000_000u64}]),
            json!([1, 2, 2]),
        );
        assert!(e.contains("multiply-adds"), "{e}");
    }
}

/// Found by fuzzing (`fuzz/run.sh`, target `onnx`): a Reshape target whose two sizes multiply
/// past `i64` panicked with an overflow instead of being refused.
#[test]
fn reshape_sizes_that_overflow_are_refused() {
    let e = regression_onnx("fuzz_reshape_overflow.onnx").unwrap_err();
    assert!(e.to_lowercase().contains("reshape") || e.contains("Reshape"), "{e}");
}

/// Found by review of the loader: malformed constants and shapes that used to panic or ask for
/// absurd allocations are refused with an error naming the node.
#[test]
fn malformed_onnx_constants_and_shapes_are_refused() {
    for (file, expect) in [
        ("fold_empty_operand.onnx", "cannot reshape [1, 4] to []"),
        ("reshape_weight_mismatch.onnx", "cannot reshape [6] to [3, 3]"),
        ("empty_weight_huge_dims.onnx", "has no values"),
        ("huge_input.onnx", "at most 16777216 values"),
        ("concat_doubling.onnx", "exceeds"),
    ] {
        let start = std::time::Instant::now();
        let e = regression_onnx(file).unwrap_err();
        assert!(e.contains(expect), "{file}: {e}");
        assert!(start.elapsed().as_secs() < 5, "{file} took {:?}", start.elapsed());
    }
}

/// Found by review: JSON layers preallocated their weights from unchecked sizes (a 3 kB file
/// asked for ~100 GB), a large max-pool window built every candidate list (16 GB) before any
/// check, and many affordable layers added up without bound.
#[test]
fn json_models_are_bounded_before_allocating() {
    let rows: Vec<serde_json::Value> = (0..1000).map(|_| json!([])).collect();
    let e = load_err(json!([{"op": "linear", "weight": rows}]), json!([1 << 24]));
    assert!(e.contains("row 0 has 0 columns"), "{e}");
    let chans: Vec<serde_json::Value> = (0..1000).map(|k| if k == 0 { json!([[[0.0]]]) } else { json!([]) }).collect();
    let e = load_err(json!([{"op": "conv2d", "weight": chans}]), json!([1 << 24, 1, 1]));
    assert!(e.contains("input channels"), "{e}");
    let start = std::time::Instant::now();
    let e = load_err(json!([{"op": "max_pool2d", "kernel_size": 200, "stride": 1}]), json!([1, 512, 512]));
    assert!(e.contains("candidates"), "{e}");
    assert!(start.elapsed().as_secs() < 2);
    let pools: Vec<serde_json::Value> =
        (0..100).map(|_| json!({"op": "avg_pool2d", "kernel_size": 60, "stride": 1, "padding": 29})).collect();
    let e = load_err(json!(pools), json!([1, 1000, 1000]));
    assert!(e.contains("in all"), "{e}");
}

/// Found by fuzzing the rewritten ONNX loader (`fuzz/run.sh 180 onnx`, a mutation of the U-Net
/// test model): a Resize whose scales make the output absurdly large built its per-axis index
/// tables before any size check and hung allocating them; it is refused at once.
#[test]
fn resize_to_an_absurd_size_is_refused_at_once() {
    let start = std::time::Instant::now();
    let e = regression_onnx("fuzz_resize_huge_scale.onnx").unwrap_err();
    assert!(e.contains("Resize") && e.contains("too large"), "{e}");
    assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
}
