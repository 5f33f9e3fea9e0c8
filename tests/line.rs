//! Exact 1D paths against independent evaluation: breakpoints found by dense sampling of the
//! pattern (a forward pass written in `tests/common`) plus bisection to 1e-12, outputs against
//! the plain forward pass, the 2D partition's regions on a segment of a 2-input net, and exact
//! integrated gradients (completeness; a Riemann sum of finite-difference gradients).

mod common;

use common::*;
use serde_json::json;
use tessera::boundary::Decision;
use tessera::line::{self, LineError};
use tessera::network::Network;

fn point(a: &[f64], b: &[f64], t: f64) -> Vec<f64> {
    a.iter().zip(b).map(|(p, q)| p + t * (q - p)).collect()
}

/// Every place on `[0, 1]` where the pattern changes, by sampling `n` points and bisecting
/// every change to 1e-12.
fn sampled_breakpoints(net: &Network, a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let code = |t: f64| pattern_code(net, &point(a, b, t));
    let mut out = Vec::new();
    let mut prev = code(0.0);
    for k in 1..=n {
        let t = k as f64 / n as f64;
        let c = code(t);
        if c != prev {
            let (mut lo, mut hi) = ((k - 1) as f64 / n as f64, t);
            while hi - lo > 1e-12 {
                let mid = 0.5 * (lo + hi);
                if code(mid) == prev {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(0.5 * (lo + hi));
        }
        prev = c;
    }
    out
}

/// A piece's pattern as [`pattern_code`]'s codes: hinges passed per unit, winner per group.
fn codes(net: &Network, l: &line::Line, pattern: &tessera::pattern::Pattern) -> Vec<u8> {
    let mut out = Vec::new();
    for bits in &l.layout {
        let units = net.nodes[bits.layer].layer.output.numel();
        let width = bits.bits / units;
        for u in 0..units {
            let v = pattern.bits(bits.offset + u * width, width);
            let elementwise = matches!(net.nodes[bits.layer].layer.kind, tessera::network::LayerKind::Activation(_));
            out.push(if elementwise { v.count_ones() as u8 } else { v as u8 });
        }
    }
    out
}

/// The path's breakpoints equal the sampled ones; each is a real pattern change; the outputs
/// are the forward pass's.
fn check_segment(net: &Network, a: &[f64], b: &[f64]) -> usize {
    let decision = Decision::for_outputs(net.output_shape().numel(), None);
    let l = line::trace(net, &[a.to_vec(), b.to_vec()], &decision).unwrap();
    let ours: Vec<f64> = l.pieces.windows(2).map(|w| w[0].t1).collect();
    assert!(l.pieces.windows(2).all(|w| w[0].t1 == w[1].t0), "pieces tile the segment");
    assert_eq!((l.pieces[0].t0, l.pieces.last().unwrap().t1), (0.0, 1.0));
    assert!(l.pieces.windows(2).all(|w| w[0].pattern != w[1].pattern), "neighbouring pieces differ");
    let reference = sampled_breakpoints(net, a, b, 20_000);
    for r in &reference {
        assert!(ours.iter().any(|t| (t - r).abs() < 1e-9), "sampled breakpoint {r} missing from {} pieces", ours.len());
    }
    for (k, &t) in ours.iter().enumerate() {
        let gap = [t - l.pieces[k].t0, l.pieces[k + 1].t1 - t].into_iter().fold(1e-7, f64::min) / 3.0;
        let (before, after) = (pattern_code(net, &point(a, b, t - gap)), pattern_code(net, &point(a, b, t + gap)));
        assert_ne!(before, after, "breakpoint {t} changes no unit");
    }
    // A few extra pattern changes too close to be sampled apart are allowed; none are missing.
    assert!(ours.len() >= reference.len());
    // Every piece's pattern is the forward pass's at its middle (ties included: a max pool over
    // units switched off picks the first).
    for p in &l.pieces {
        let m = 0.5 * (p.t0 + p.t1);
        assert_eq!(codes(net, &l, &p.pattern), pattern_code(net, &point(a, b, m)), "pattern at t = {m}");
    }
    for p in &l.pieces {
        for s in [0.0, 0.3, 1.0] {
            let t = p.t0 + s * (p.t1 - p.t0);
            let want = naive_forward(net, &point(a, b, t));
            let got = p.eval(t);
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-9 * scale), "outputs at t = {t}");
        }
    }
    // Class changes are where the forward pass's class changes.
    for c in &l.class_changes {
        let at = |t: f64| decision.class_of(&naive_forward(net, &point(a, b, t)));
        assert_eq!((at(c.t - 1e-7), at(c.t + 1e-7)), (c.from, c.to));
    }
    l.pieces.len()
}

fn cnn(seed: u64) -> Network {
    let mut r = rng(seed);
    model(
        &[1, 8, 8],
        vec![
            conv(&mut r, 1, 4, 3, json!({"padding": 1})),
            batch_norm(&mut r, 4),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 2}),
            conv(&mut r, 4, 6, 3, json!({"stride": 2})),
            json!({"op": "hardtanh", "min_val": -0.5, "max_val": 0.5}),
            json!({"op": "flatten"}),
            linear(&mut r, 6, 3),
        ],
    )
}

fn residual(seed: u64) -> Network {
    let mut r = rng(seed);
    model(
        &[6],
        vec![
            linear(&mut r, 6, 12),
            json!({"op": "relu"}),
            json!({"op": "residual", "layers": [linear(&mut r, 12, 12), json!({"op": "leaky_relu", "negative_slope": 0.1}), linear(&mut r, 12, 12)]}),
            json!({"op": "abs"}),
            json!({"op": "maxout", "pool_size": 2}),
            linear(&mut r, 6, 3),
        ],
    )
}

/// Joins of branches (residual, concat, max, min), average pooling and overlapping max pooling.
fn blocks(seed: u64) -> Network {
    let mut r = rng(seed);
    model(
        &[2, 6, 6],
        vec![
            conv(&mut r, 2, 4, 3, json!({"padding": 1})),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 3, "stride": 1}),
            json!({"op": "residual", "layers": [conv(&mut r, 4, 4, 3, json!({"padding": 1})), {"op": "relu"}]}),
            json!({"op": "concat", "branches": [
                [conv(&mut r, 4, 3, 3, json!({"padding": 1})), {"op": "relu"}],
                [conv(&mut r, 4, 2, 1, json!({})), {"op": "abs"}]]}),
            json!({"op": "max", "branches": [
                [conv(&mut r, 5, 3, 3, json!({"padding": 1}))],
                [conv(&mut r, 5, 3, 1, json!({}))]]}),
            json!({"op": "min", "branches": [
                [conv(&mut r, 3, 3, 1, json!({}))],
                [conv(&mut r, 3, 3, 3, json!({"padding": 1}))]]}),
            json!({"op": "avg_pool2d", "kernel_size": 2}),
            json!({"op": "flatten"}),
            linear(&mut r, 12, 3),
        ],
    )
}

#[test]
fn breakpoints_equal_sampling_on_joins_and_pools() {
    let mut r = rng(6);
    let net = blocks(4);
    for _ in 0..3 {
        let (a, b) = (uniform(&mut r, 72, 2.0), uniform(&mut r, 72, 2.0));
        assert!(check_segment(&net, &a, &b) > 10);
    }
}

#[test]
fn breakpoints_equal_sampling_on_wide_layers() {
    // Wide fully connected layers: every piece changes most units' slopes (the dense scans).
    let mut r = rng(7);
    let net = mlp(11, &[4, 64, 48, 3], json!({"op": "hardtanh", "min_val": -0.5, "max_val": 0.5}));
    for _ in 0..2 {
        let (a, b) = (uniform(&mut r, 4, 3.0), uniform(&mut r, 4, 3.0));
        assert!(check_segment(&net, &a, &b) > 20);
    }
}

#[test]
fn breakpoints_equal_sampling_on_mlps_cnns_and_residual_nets() {
    let mut r = rng(5);
    let mlp = mlp(9, &[5, 16, 16, 3], json!({"op": "relu"}));
    let (cnn, res) = (cnn(2), residual(3));
    for (net, n) in [(&mlp, 5), (&cnn, 64), (&res, 6)] {
        for _ in 0..3 {
            let (a, b) = (uniform(&mut r, n, 2.0), uniform(&mut r, n, 2.0));
            assert!(check_segment(net, &a, &b) > 3);
        }
    }
}

#[test]
fn a_segment_of_a_two_input_net_crosses_the_partitions_regions() {
    let net = tessera::network::json::load_path(std::path::Path::new("assets/networks/mlp_2_64x3_2.json")).unwrap();
    let slice = plane_slice([-2.0, 2.0, -2.0, 2.0]);
    let part = tessera::partition(&net, &slice, &tessera::Options::default()).unwrap();
    let (a, b) = (vec![-1.7, -0.4], vec![1.3, 1.9]);
    let l = line::trace(&net, &[a.clone(), b.clone()], &Decision::Argmax).unwrap();
    assert_eq!(l.layout, part.layout, "one pattern layout for paths and planes");
    let mut regions = Vec::new();
    for p in &l.pieces {
        let mid = point(&a, &b, 0.5 * (p.t0 + p.t1));
        let r = part.locate([mid[0], mid[1]]).expect("inside the domain");
        assert_eq!(p.pattern, part.regions[r].pattern, "the piece's pattern is its region's");
        regions.push(r);
    }
    // The regions the segment meets, by clipping it against every region's polygon.
    let mut crossed: Vec<(f64, usize)> = Vec::new();
    for i in 0..part.regions.len() {
        let pts = part.polygon_uv(i);
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for k in 0..pts.len() {
            let (p, q) = (pts[k], pts[(k + 1) % pts.len()]);
            // Inside: left of the counter-clockwise edge p→q.
            let side = |x: &[f64]| (q[0] - p[0]) * (x[1] - p[1]) - (q[1] - p[1]) * (x[0] - p[0]);
            let (sa, sb) = (side(&a), side(&b));
            if sa < 0.0 && sb < 0.0 {
                hi = -1.0;
            } else if sa < 0.0 || sb < 0.0 {
                let t = sa / (sa - sb);
                if sa < 0.0 {
                    lo = lo.max(t);
                } else {
                    hi = hi.min(t);
                }
            }
        }
        if hi - lo > 1e-9 {
            crossed.push((lo, i));
        }
    }
    crossed.sort_by(|x, y| x.0.total_cmp(&y.0));
    let walked: Vec<usize> = crossed.into_iter().map(|(_, i)| i).collect();
    assert_eq!(regions, walked);
    assert_eq!(l.pieces_per_layer.last().copied(), Some(l.pieces.len()));
}

#[test]
fn integrated_gradients_are_exact() {
    let mut r = rng(11);
    let small = residual(4);
    for (net, n) in [(&mlp(1, &[4, 12, 12, 2], json!({"op": "relu"})), 4), (&cnn(7), 64), (&small, 6)] {
        let (a, b) = (uniform(&mut r, n, 1.5), uniform(&mut r, n, 1.5));
        for k in 0..net.output_shape().numel() {
            let ig = line::integrated_gradients(net, &a, &b, k).unwrap();
            let want = naive_forward(net, &b)[k] - naive_forward(net, &a)[k];
            assert!((ig.sum - want).abs() <= 1e-9 * want.abs().max(1.0), "completeness: {} vs {want}", ig.sum);
            assert!((ig.difference - want).abs() <= 1e-12 * want.abs().max(1.0));
        }
    }
    // Against a Riemann sum of central-difference gradients (PWL: exact inside pieces).
    let (a, b) = (uniform(&mut r, 6, 1.0), uniform(&mut r, 6, 1.0));
    let ig = line::integrated_gradients(&small, &a, &b, 1).unwrap();
    let steps = 4000;
    let mut riemann = vec![0.0; 6];
    for s in 0..steps {
        let x = point(&a, &b, (s as f64 + 0.5) / steps as f64);
        for i in 0..6 {
            let (mut p, mut m) = (x.clone(), x.clone());
            p[i] += 1e-7;
            m[i] -= 1e-7;
            let g = (naive_forward(&small, &p)[1] - naive_forward(&small, &m)[1]) / 2e-7;
            riemann[i] += g * (b[i] - a[i]) / steps as f64;
        }
    }
    for (e, r) in ig.values.iter().zip(&riemann) {
        assert!((e - r).abs() < 2e-2 * ig.values.iter().fold(0.0f64, |m, v| m.max(v.abs())), "{e} vs {r}");
    }
}

#[test]
fn bad_paths_are_refused() {
    let net = mlp(1, &[3, 4, 2], json!({"op": "relu"}));
    let d = Decision::Argmax;
    assert_eq!(line::trace(&net, &[vec![0.0; 3]], &d).unwrap_err(), LineError::TooFewPoints(1));
    assert_eq!(line::trace(&net, &[vec![0.0; 3], vec![0.0; 3]], &d).unwrap_err(), LineError::ZeroLength { segment: 0 });
    assert!(matches!(
        line::trace(&net, &[vec![0.0; 3], vec![1.0; 4]], &d),
        Err(LineError::Length { index: 1, found: 4, expected: 3 })
    ));
    assert!(matches!(
        line::trace(&net, &[vec![0.0; 3], vec![f64::NAN; 3]], &d),
        Err(LineError::NonFinite { index: 1 })
    ));
    assert!(matches!(
        line::integrated_gradients(&net, &[0.0; 3], &[1.0; 3], 2),
        Err(LineError::BadOutput { index: 2, outputs: 2 })
    ));
    // A polyline: pieces of every segment, in order.
    let l = line::trace(&net, &[vec![-1.0; 3], vec![1.0, 0.0, -1.0], vec![0.5; 3]], &d).unwrap();
    assert!(l.pieces.iter().any(|p| p.segment == 1) && l.pieces.windows(2).all(|w| w[0].segment <= w[1].segment));
    assert_eq!(l.segment_lengths.len(), 2);
}

#[test]
fn paths_do_not_depend_on_the_thread_count() {
    let mut r = rng(8);
    let net = cnn(2);
    let (a, b) = (uniform(&mut r, 64, 2.0), uniform(&mut r, 64, 2.0));
    let d = Decision::for_outputs(3, None);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| line::trace(&net, &[a.clone(), b.clone()], &d).unwrap())
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.pieces, two.pieces);
    assert_eq!(one.pieces_per_layer, two.pieces_per_layer);
}
