//! The sparse engine against its dense reference path, on every family of convolutional
//! network: the same regions (by pattern), the same areas, and both checked against a plain
//! forward pass and a grid of activation patterns.

mod common;

use common::*;
use serde_json::json;
use tessera::{Network, Options, Partition, Slice};

/// Partitions with the default (sparse) engine and with the dense reference path, checks both,
/// and compares them region by region (matched by pattern). Returns the region count.
fn same_as_reference(name: &str, net: &Network, slice: &Slice) -> usize {
    let sparse = checked(net, slice, 2);
    let dense = tessera::partition(net, slice, &Options { dense_reference: true, threads: 2, ..Options::default() })
        .expect("reference path");
    assert_eq!(sparse.regions.len(), dense.regions.len(), "{name}: region counts");
    let by_pattern = |p: &Partition| {
        let mut v: Vec<(String, f64)> = p.regions.iter().map(|r| (r.pattern.to_hex(), r.area)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (a, b) = (by_pattern(&sparse), by_pattern(&dense));
    let domain = slice.domain.area();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0, "{name}: patterns differ");
        assert!((x.1 - y.1).abs() <= 1e-9 * domain, "{name}: areas {} vs {} for pattern {}", x.1, y.1, x.0);
    }
    // Any thread count: the same partition, in the same order.
    assert_eq!(checked(net, slice, 1).regions, sparse.regions, "{name}: one thread");
    let grid = grid_patterns(net, slice, 120);
    assert!(grid <= sparse.regions.len(), "{name}: {grid} patterns on a grid, {} regions", sparse.regions.len());
    eprintln!("{name}: {} regions, {grid} grid patterns", sparse.regions.len());
    sparse.regions.len()
}

#[test]
fn lenet_style_cnn_with_max_pooling() {
    let mut r = rng(7001);
    let net = model(
        &[1, 12, 12],
        vec![
            conv(&mut r, 1, 4, 5, json!({"padding": 2})),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 2}),
            conv(&mut r, 4, 6, 3, json!({})),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 2}),
            json!({"op": "flatten"}),
            linear(&mut r, 24, 10),
            json!({"op": "relu"}),
            linear(&mut r, 10, 3),
        ],
    );
    let slice = random_plane(&mut r, 144, [-0.2, 0.2, -0.2, 0.2]);
    assert!(same_as_reference("lenet", &net, &slice) > 100);
}

#[test]
fn strided_padded_dilated_convolutions() {
    let mut r = rng(7002);
    let net = model(
        &[2, 11, 11],
        vec![
            conv(&mut r, 2, 6, 3, json!({"stride": 2, "padding": 1})),
            json!({"op": "relu"}),
            conv(&mut r, 6, 8, 3, json!({"padding": 2, "dilation": 2})),
            json!({"op": "leaky_relu", "negative_slope": 0.1}),
            conv(&mut r, 8, 4, 2, json!({"stride": 2})),
            json!({"op": "abs"}),
            json!({"op": "flatten"}),
            linear(&mut r, 36, 4),
        ],
    );
    let slice = random_plane(&mut r, 242, [-0.25, 0.25, -0.25, 0.25]);
    assert!(same_as_reference("strided", &net, &slice) > 100);
}

#[test]
fn grouped_and_depthwise_convolutions_with_average_pooling() {
    let mut r = rng(7003);
    let net = model(
        &[4, 8, 8],
        vec![
            conv(&mut r, 2, 8, 3, json!({"groups": 2, "padding": 1})),
            batch_norm(&mut r, 8),
            json!({"op": "relu6"}),
            conv(&mut r, 1, 8, 3, json!({"groups": 8, "padding": 1})),
            json!({"op": "hardtanh", "min_val": -0.5, "max_val": 0.5}),
            json!({"op": "avg_pool2d", "kernel_size": 2}),
            conv(&mut r, 8, 4, 1, json!({})),
            json!({"op": "relu"}),
            json!({"op": "flatten"}),
            linear(&mut r, 64, 3),
        ],
    );
    let slice = random_plane(&mut r, 256, [-0.4, 0.4, -0.4, 0.4]);
    assert!(same_as_reference("grouped", &net, &slice) > 50);
}

#[test]
fn overlapping_and_padded_max_pooling() {
    let mut r = rng(7004);
    let net = model(
        &[2, 9, 9],
        vec![
            conv(&mut r, 2, 4, 3, json!({"padding": 1})),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 3, "stride": 2, "padding": 1}),
            conv(&mut r, 4, 4, 3, json!({"padding": 1})),
            json!({"op": "prelu", "weight": [0.2, -0.3, 0.5, 0.1]}),
            json!({"op": "max_pool2d", "kernel_size": 2, "stride": 1}),
            json!({"op": "flatten"}),
            linear(&mut r, 64, 5),
            json!({"op": "maxout", "pool_size": 5}),
        ],
    );
    let slice = random_plane(&mut r, 162, [-0.2, 0.2, -0.2, 0.2]);
    assert!(same_as_reference("overlapping pools", &net, &slice) > 50);
}

#[test]
fn residual_concat_and_max_blocks_in_a_cnn() {
    let mut r = rng(7005);
    let block = |r: &mut rand_chacha::ChaCha8Rng, c: usize| {
        json!({"op": "residual", "layers": [
            conv(r, c, c, 3, json!({"padding": 1})), batch_norm(r, c), {"op": "relu"},
            conv(r, c, c, 3, json!({"padding": 1})), batch_norm(r, c)]})
    };
    let b1 = block(&mut r, 4);
    let net = model(
        &[2, 8, 8],
        vec![
            conv(&mut r, 2, 4, 3, json!({"padding": 1})),
            json!({"op": "relu"}),
            b1,
            json!({"op": "relu"}),
            // A strided block with a 1×1 projection shortcut.
            json!({"op": "residual",
                   "layers": [conv(&mut r, 4, 6, 3, json!({"stride": 2, "padding": 1})), {"op": "relu"},
                              conv(&mut r, 6, 6, 3, json!({"padding": 1}))],
                   "shortcut": [conv(&mut r, 4, 6, 1, json!({"stride": 2}))]}),
            json!({"op": "relu"}),
            json!({"op": "concat", "branches": [
                [conv(&mut r, 6, 3, 3, json!({"padding": 1})), {"op": "relu"}],
                [conv(&mut r, 6, 2, 1, json!({})), {"op": "abs"}]]}),
            json!({"op": "max", "branches": [
                [conv(&mut r, 5, 4, 3, json!({"padding": 1}))],
                [conv(&mut r, 5, 4, 1, json!({}))]]}),
            json!({"op": "avg_pool2d", "kernel_size": 4}),
            json!({"op": "flatten"}),
            linear(&mut r, 4, 3),
        ],
    );
    let slice = random_plane(&mut r, 128, [-0.25, 0.25, -0.25, 0.25]);
    assert!(same_as_reference("blocks", &net, &slice) > 50);
}

#[test]
fn mlp_with_every_elementwise_activation() {
    let mut r = rng(7006);
    let net = model(
        &[2],
        vec![
            linear(&mut r, 2, 24),
            json!({"op": "relu"}),
            linear(&mut r, 24, 24),
            json!({"op": "hardtanh", "min_val": -0.3, "max_val": 0.4}),
            linear(&mut r, 24, 16),
            json!({"op": "abs"}),
            linear(&mut r, 16, 12),
            json!({"op": "maxout", "pool_size": 3}),
            linear(&mut r, 4, 2),
        ],
    );
    assert!(same_as_reference("mlp", &net, &plane_slice([-2.0, 2.0, -2.0, 2.0])) > 200);
}

/// The vertex count comes from Euler's formula on the regions' sides; welding every corner
/// (an independent count) must agree.
#[test]
fn euler_vertex_count_equals_welded_corners() {
    let mut r = rng(7007);
    let cnn = model(
        &[1, 6, 6],
        vec![
            conv(&mut r, 1, 3, 3, json!({"padding": 1})),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 2}),
            json!({"op": "flatten"}),
            linear(&mut r, 27, 5),
            json!({"op": "abs"}),
            linear(&mut r, 5, 2),
        ],
    );
    let cases = [
        (mlp(5, &[2, 16, 16, 2], json!({"op": "relu"})), plane_slice([-2.0, 2.0, -2.0, 2.0])),
        (
            mlp(6, &[2, 10, 10, 3], json!({"op": "hardtanh", "min_val": -0.2, "max_val": 0.3})),
            plane_slice([-1.0, 3.0, -2.0, 1.0]),
        ),
        (cnn, random_plane(&mut r, 36, [-0.5, 0.5, -0.5, 0.5])),
    ];
    for (net, slice) in cases {
        let part = checked(&net, &slice, 2);
        let corners: Vec<[f64; 2]> = part.regions.iter().flat_map(|reg| reg.polygon.pts.iter().copied()).collect();
        let welded = tessera::partition::distinct_vertices(corners);
        assert_eq!(part.summary.vertices, Some(welded));
        assert!(part.summary.area_histogram.iter().map(|b| b.regions).sum::<u64>() == part.regions.len() as u64);
    }
}
