//! Every layer type against independent references: closed-form counts for line arrangements,
//! a plain forward pass at random points and region centroids, and activation patterns sampled
//! on a grid (a lower bound on the count).

mod common;

use common::*;
use serde_json::json;
use tessera::slice::{Domain, Plane, Slice};

/// Number of cells that lines `a·u + b·v + c = 0` cut the box into, by direct geometry: each
/// line crossing the box adds one plus the number of earlier lines it meets inside the box
/// (valid in general position).
fn arrangement_count(lines: &[[f64; 3]], b: [f64; 4]) -> usize {
    let inside = |p: [f64; 2]| p[0] > b[0] && p[0] < b[1] && p[1] > b[2] && p[1] < b[3];
    let crosses = |l: &[f64; 3]| {
        let corners = [[b[0], b[2]], [b[1], b[2]], [b[1], b[3]], [b[0], b[3]]];
        let vals: Vec<f64> = corners.iter().map(|p| l[0] * p[0] + l[1] * p[1] + l[2]).collect();
        vals.iter().any(|&v| v > 0.0) && vals.iter().any(|&v| v < 0.0)
    };
    // Scale-free: each line by its unit normal.
    let lines: Vec<[f64; 3]> = lines
        .iter()
        .map(|l| {
            let n = l[0].hypot(l[1]);
            [l[0] / n, l[1] / n, l[2] / n]
        })
        .collect();
    let mut count = 1;
    for (i, l) in lines.iter().enumerate() {
        if !crosses(l) {
            continue;
        }
        count += 1;
        for m in &lines[..i] {
            let det = l[0] * m[1] - l[1] * m[0];
            if det.abs() < 1e-12 || !crosses(m) {
                continue;
            }
            let p = [(l[1] * m[2] - m[1] * l[2]) / det, (m[0] * l[2] - l[0] * m[2]) / det];
            if inside(p) {
                count += 1;
            }
        }
    }
    count
}

fn first_layer_lines(net: &tessera::Network, breakpoints: &[f64]) -> Vec<[f64; 3]> {
    let tessera::network::LayerKind::Linear { weight, bias } = &net.nodes[0].layer.kind else { panic!() };
    let mut lines = Vec::new();
    for (k, &bk) in bias.iter().enumerate() {
        for &t in breakpoints {
            lines.push([weight[2 * k], weight[2 * k + 1], bk - t]);
        }
    }
    lines
}

#[test]
fn one_layer_counts_match_the_line_arrangement() {
    let b = [-1.5, 1.0, -1.0, 2.0];
    let slice = plane_slice(b);
    for (seed, act, bps) in [
        (1, json!({"op": "relu"}), vec![0.0]),
        (2, json!({"op": "leaky_relu", "negative_slope": 0.2}), vec![0.0]),
        (3, json!({"op": "abs"}), vec![0.0]),
        (4, json!({"op": "prelu", "weight": [-0.5]}), vec![0.0]),
        (5, json!({"op": "hardtanh", "min_val": -0.3, "max_val": 0.4}), vec![-0.3, 0.4]),
        (6, json!({"op": "relu6"}), vec![0.0, 6.0]),
    ] {
        let net = mlp(seed, &[2, 24, 2], act.clone());
        // Scale the first layer so that relu6's upper breakpoint also crosses the box.
        let net = if bps.contains(&6.0) { scale_first_layer(&net, 8.0) } else { net };
        let expected = arrangement_count(&first_layer_lines(&net, &bps), b);
        let part = checked(&net, &slice, 2);
        assert_eq!(part.regions.len(), expected, "{act}");
        assert!(grid_patterns(&net, &slice, 300) <= expected);
    }
}

fn scale_first_layer(net: &tessera::Network, s: f64) -> tessera::Network {
    let mut net = net.clone();
    if let tessera::network::LayerKind::Linear { weight, bias } = &mut net.nodes[0].layer.kind {
        weight.iter_mut().for_each(|w| *w *= s);
        bias.iter_mut().for_each(|w| *w *= s);
    }
    net
}

#[test]
fn lines_through_one_point_and_duplicates() {
    // Twelve lines through the origin with distinct directions: 24 sectors.
    let k = 12;
    let weight: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            let t = std::f64::consts::PI * (i as f64 + 0.3) / k as f64;
            vec![t.cos(), t.sin()]
        })
        .collect();
    let mut doubled = weight.clone();
    doubled.extend(weight.iter().cloned()); // every neuron twice: coincident lines
    doubled.push(vec![0.0, 0.0]); // a dead unit
    for rows in [&weight, &doubled] {
        let n = rows.len();
        let net = model(
            &[2],
            vec![
                json!({"op": "linear", "weight": rows, "bias": vec![0.0; n]}),
                json!({"op": "relu"}),
                json!({"op": "linear", "weight": [vec![1.0; n]]}),
            ],
        );
        let part = checked(&net, &plane_slice([-1.0, 1.0, -1.0, 1.0]), 2);
        assert_eq!(part.regions.len(), 2 * k, "{n} units");
        // Sectors of equal angle: equal areas up to the box's corners. Each is positive.
        assert!(part.regions.iter().all(|r| r.area > 1e-3));
    }
}

#[test]
fn deep_networks_of_every_elementwise_kind() {
    let slice = plane_slice([-2.0, 2.0, -2.0, 2.0]);
    for (seed, act) in [
        (11, json!({"op": "relu"})),
        (12, json!({"op": "leaky_relu", "negative_slope": 0.1})),
        (13, json!({"op": "abs"})),
        (14, json!({"op": "hardtanh", "min_val": -0.5, "max_val": 0.5})),
        (15, json!({"op": "relu6"})),
        (16, json!({"op": "prelu", "weight": [0.25]})),
    ] {
        let net = mlp(seed, &[2, 10, 10, 10, 3], act.clone());
        let one = checked(&net, &slice, 1);
        let two = checked(&net, &slice, 2);
        assert_eq!(one.regions, two.regions, "{act}: thread count changed the partition");
        let grid = grid_patterns(&net, &slice, 400);
        assert!(grid <= one.regions.len(), "{act}: grid sees {grid} patterns, engine {}", one.regions.len());
        let counts: Vec<u64> = one.summary.regions_per_layer.iter().map(|c| c.regions).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{act}: {counts:?}");
        assert_eq!(*counts.last().unwrap(), one.regions.len() as u64);
    }
}

#[test]
fn prelu_per_channel_and_batch_norm_on_features() {
    let mut r = rng(21);
    let net = model(
        &[2],
        vec![
            linear(&mut r, 2, 6),
            batch_norm(&mut r, 6),
            json!({"op": "prelu", "weight": [0.1, -0.2, 0.3, 0.5, 2.0, 1.0]}),
            linear(&mut r, 6, 5),
            json!({"op": "relu"}),
            linear(&mut r, 5, 2),
        ],
    );
    let slice = plane_slice([-3.0, 3.0, -3.0, 3.0]);
    let part = checked(&net, &slice, 2);
    assert!(grid_patterns(&net, &slice, 400) <= part.regions.len());
}

#[test]
fn maxout_matches_grid_and_ignores_duplicate_candidates() {
    let mut r = rng(31);
    let first = linear(&mut r, 2, 12);
    let rest = vec![
        json!({"op": "maxout", "pool_size": 3}),
        linear(&mut r, 4, 6),
        json!({"op": "maxout", "pool_size": 2}),
        linear(&mut r, 3, 2),
    ];
    let net = model(&[2], [vec![first.clone()], rest.clone()].concat());
    let slice = plane_slice([-2.0, 2.0, -2.0, 2.0]);
    let part = checked(&net, &slice, 2);
    assert!(grid_patterns(&net, &slice, 500) <= part.regions.len());

    // Single maxout layer: the cells of an upper envelope, all seen by a fine grid.
    let single = model(&[2], vec![first.clone(), json!({"op": "maxout", "pool_size": 3})]);
    let p1 = checked(&single, &slice, 2);
    assert_eq!(p1.regions.len(), grid_patterns(&single, &slice, 600));

    // Repeating each candidate (pool 3 -> pool 6 of pairs) changes no region.
    let w = first["weight"].as_array().unwrap();
    let bvec = first["bias"].as_array().unwrap();
    let (mut w2, mut b2) = (Vec::new(), Vec::new());
    for g in 0..4 {
        for c in 0..3 {
            for _ in 0..2 {
                w2.push(w[3 * g + c].clone());
                b2.push(bvec[3 * g + c].clone());
            }
        }
    }
    let dup =
        model(&[2], vec![json!({"op": "linear", "weight": w2, "bias": b2}), json!({"op": "maxout", "pool_size": 6})]);
    let p2 = checked(&dup, &slice, 2);
    assert_eq!(p2.regions.len(), p1.regions.len());
}

#[test]
fn max_pool_of_dead_relus_does_not_split() {
    // Channel 0 is a dead ReLU everywhere (constant 0 in all four pooled pixels); channel 1
    // carries the pixels. Pooling channel 0 compares four identical candidates.
    let layers = |with_dead: bool| {
        let (w, b) = if with_dead {
            (json!([[[[0.0]]], [[[1.0]]]]), json!([-1.0, 0.0]))
        } else {
            (json!([[[[1.0]]]]), json!([0.0]))
        };
        vec![
            json!({"op": "conv2d", "weight": w, "bias": b}),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 2}),
            json!({"op": "flatten"}),
        ]
    };
    let slice = Slice {
        plane: Plane::from_vectors(
            vec![0.1, -0.2, 0.05, 0.0],
            vec![1.0, 0.3, -0.5, 0.2],
            vec![-0.2, 0.9, 0.4, -1.0],
            4,
        )
        .unwrap(),
        domain: Domain::new(-1.0, 1.0, -1.0, 1.0).unwrap(),
        anchors: None,
    };
    let with = checked(&model(&[1, 2, 2], layers(true)), &slice, 2);
    let without = checked(&model(&[1, 2, 2], layers(false)), &slice, 2);
    assert_eq!(with.regions.len(), without.regions.len());
    assert!(with.regions.len() > 4);
}

#[test]
fn cnn_with_batch_norm_pooling_on_an_anchor_plane() {
    let mut r = rng(41);
    let net = model(
        &[2, 6, 6],
        vec![
            conv(&mut r, 2, 3, 3, json!({"padding": 1})),
            batch_norm(&mut r, 3),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 2}),
            conv(&mut r, 3, 4, 2, json!({"stride": 1, "dilation": 1})),
            json!({"op": "leaky_relu", "negative_slope": 0.05}),
            json!({"op": "avg_pool2d", "kernel_size": 2}),
            json!({"op": "flatten"}),
            linear(&mut r, 4, 5),
            json!({"op": "abs"}),
            linear(&mut r, 5, 3),
        ],
    );
    let n = 72;
    let a = uniform(&mut r, n, 1.0);
    let b = uniform(&mut r, n, 1.0);
    let c = uniform(&mut r, n, 1.0);
    let (plane, coords) = Plane::from_anchors(&a, &b, &c, n).unwrap();
    let slice = Slice { plane, domain: Domain::around(&coords, 0.25).unwrap(), anchors: Some(coords) };
    let part = checked(&net, &slice, 2);
    // The anchors themselves map back to the input images.
    for (anchor, p) in [&a, &b, &c].iter().zip(coords) {
        let i = part.locate(p).expect("anchor inside a region");
        let y = part.eval_uv(i, p);
        let want = net.forward(anchor);
        assert!(tessera::partition::relative_error(&y, &want) < 1e-9);
    }
    assert!(grid_patterns(&net, &slice, 300) <= part.regions.len());
    let one = checked(&net, &slice, 1);
    assert_eq!(one.regions, part.regions);
}

#[test]
fn grouped_strided_conv_and_padding() {
    let mut r = rng(51);
    let net = model(
        &[4, 5, 5],
        vec![
            // Weights for 2 input channels per output: the 4 input channels in 2 groups.
            conv(&mut r, 2, 4, 3, json!({"stride": [2, 1], "padding": [1, 0], "groups": 2})),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": [2, 2], "stride": 1, "padding": 1}),
            json!({"op": "flatten"}),
        ],
    );
    let n = 100;
    let slice = random_plane(&mut r, n, [-0.7, 0.7, -0.5, 0.9]);
    let part = checked(&net, &slice, 2);
    assert!(grid_patterns(&net, &slice, 300) <= part.regions.len());
}

#[test]
fn affine_only_network_is_one_region() {
    let mut r = rng(61);
    let net = model(&[2], vec![linear(&mut r, 2, 3), linear(&mut r, 3, 2)]);
    let part = checked(&net, &plane_slice([-1.0, 1.0, -1.0, 1.0]), 1);
    assert_eq!(part.regions.len(), 1);
    assert!((part.regions[0].area - 4.0).abs() < 1e-12);
}

#[test]
fn tiny_and_huge_domains_keep_exact_counts() {
    // Lines through a point, seen through windows from 1e-9 to 1e9 wide around it.
    let k = 7;
    let center = [0.3, -0.2];
    let rows: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            let t = std::f64::consts::PI * (i as f64 + 0.5) / k as f64;
            vec![t.cos(), t.sin()]
        })
        .collect();
    let bias: Vec<f64> = rows.iter().map(|w| -(w[0] * center[0] + w[1] * center[1])).collect();
    let net = model(
        &[2],
        vec![
            json!({"op": "linear", "weight": rows, "bias": bias}),
            json!({"op": "relu"}),
            json!({"op": "linear", "weight": [vec![1.0; k]]}),
        ],
    );
    for half in [1e-9, 1e-3, 1.0, 1e9] {
        let slice = plane_slice([center[0] - half, center[0] + half, center[1] - half, center[1] + half]);
        let part = checked(&net, &slice, 2);
        assert_eq!(part.regions.len(), 2 * k, "half-width {half}");
    }
}

fn relu_lines(lines: &[[f64; 3]]) -> tessera::Network {
    let weight: Vec<Vec<f64>> = lines.iter().map(|l| vec![l[0], l[1]]).collect();
    let bias: Vec<f64> = lines.iter().map(|l| l[2]).collect();
    let n = lines.len();
    model(
        &[2],
        vec![
            json!({"op": "linear", "weight": weight, "bias": bias}),
            json!({"op": "relu"}),
            json!({"op": "linear", "weight": [vec![1.0; n]]}),
        ],
    )
}

#[test]
fn lines_through_domain_corners_and_existing_vertices() {
    // u = v and u = -v through all four corners, u = 0 and v = 0 through their crossing, and
    // u + v = 1 through the boundary points where u = 0 and v = 0 end, parallel to u = -v.
    // Euler: F = 1 + lines + Σ (lines through an interior point − 1) = 1 + 5 + 3 + 1.
    let lines = [[1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, -1.0]];
    let part = checked(&relu_lines(&lines), &plane_slice([-1.0, 1.0, -1.0, 1.0]), 2);
    assert_eq!(part.regions.len(), 10);
    assert_eq!(part.summary.dropped_slivers, 0);
}

#[test]
fn parallel_lines() {
    let mut lines: Vec<[f64; 3]> = (-4..=4).map(|k| [1.0, 0.0, -(k as f64) / 5.0]).collect();
    lines.push([0.0, 1.0, -0.3]);
    let part = checked(&relu_lines(&lines), &plane_slice([-1.0, 1.0, -1.0, 1.0]), 2);
    assert_eq!(part.regions.len(), 20);
}

#[test]
fn weights_from_1e_minus_8_to_1e8() {
    use rand::Rng;
    let mut r = rng(97);
    let b = [-1.0, 1.0, -1.0, 1.0];
    let lines: Vec<[f64; 3]> = (0..20)
        .map(|_| {
            let s = 10f64.powf(r.random_range(-8.0..8.0));
            let t: f64 = r.random_range(0.0..std::f64::consts::PI);
            [s * t.cos(), s * t.sin(), s * r.random_range(-0.8..0.8)]
        })
        .collect();
    let part = checked(&relu_lines(&lines), &plane_slice(b), 2);
    assert_eq!(part.regions.len(), arrangement_count(&lines, b));
}

#[test]
fn layer_maps_match_truncated_forward_passes() {
    let mut r = rng(77);
    let plain = model(
        &[1, 4, 4],
        vec![
            conv(&mut r, 1, 2, 2, json!({"padding": 1})),
            json!({"op": "hardtanh", "min_val": -0.3, "max_val": 0.5}),
            json!({"op": "max_pool2d", "kernel_size": 2}),
            json!({"op": "flatten"}),
            linear(&mut r, 8, 6),
            json!({"op": "maxout", "pool_size": 2}),
            linear(&mut r, 3, 2),
        ],
    );
    // Blocks too: the pattern layout puts a block's main branch, then its shortcut, then a max.
    let blocks = model(
        &[1, 4, 4],
        vec![
            conv(&mut r, 1, 2, 3, json!({"padding": 1})),
            json!({"op": "residual", "layers": [{"op": "relu"}, conv(&mut r, 2, 2, 3, json!({"padding": 1}))],
                   "shortcut": [{"op": "abs"}]}),
            json!({"op": "max", "branches": [[{"op": "leaky_relu"}], [conv(&mut r, 2, 2, 1, json!({}))]]}),
            json!({"op": "flatten"}),
            linear(&mut r, 32, 3),
        ],
    );
    for net in [plain, blocks] {
        layer_maps_of(&net, &mut r);
    }
}

fn layer_maps_of(net: &tessera::Network, r: &mut rand_chacha::ChaCha8Rng) {
    let net = net.clone();
    let n = 16;
    let slice = random_plane(r, n, [-1.0, 1.0, -1.0, 1.0]);
    let part = checked(&net, &slice, 2);
    for (i, region) in part.regions.iter().enumerate().step_by(3) {
        let c = part.frame.to_uv(region.polygon.centroid());
        let mut x = slice.plane.point(c[0], c[1]);
        // Every node's output, by a walk of the graph.
        let input = x.clone();
        let mut outs: Vec<Vec<f64>> = Vec::new();
        for (layer, node) in net.nodes.iter().enumerate() {
            let read = |s: &tessera::network::Src| match *s {
                tessera::network::Src::Input => input.clone(),
                tessera::network::Src::Node(j) => outs[j].clone(),
            };
            let l = &node.layer;
            let ins: Vec<Vec<f64>> = node.inputs.iter().map(read).collect();
            x = match &l.kind {
                tessera::network::LayerKind::Merge(m) => {
                    tessera::network::Layer::merge(*m, &ins.iter().map(|v| v.as_slice()).collect::<Vec<_>>())
                }
                _ => {
                    let mut y = vec![0.0; l.output.numel()];
                    l.apply(&ins[0], &mut y);
                    y
                }
            };
            outs.push(x.clone());
            let map = tessera::layer_map(&net, &slice, &part, i, layer).expect("valid layer");
            let got = map.eval(c);
            let err = got.iter().zip(&x).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(err < 1e-9, "region {i}, layer {layer}: {err}");
        }
    }
    assert!(tessera::layer_map(&net, &slice, &part, 0, 99).is_none());
}

/// `x + L2·relu(L1·x + b1) + b2` as a residual block, against the same function written
/// sequentially with pass-through units `relu(x)` (always active on a box where x > 0): same
/// regions, same maps.
#[test]
fn residual_block_equals_its_sequential_emulation() {
    let mut r = rng(123);
    let l1 = linear(&mut r, 2, 6);
    let l2 = linear(&mut r, 6, 2);
    let head = linear(&mut r, 2, 3);
    let res =
        model(&[2], vec![json!({"op": "residual", "layers": [l1.clone(), {"op": "relu"}, l2.clone()]}), head.clone()]);
    let mut w1: Vec<serde_json::Value> = l1["weight"].as_array().unwrap().clone();
    w1.extend([json!([1.0, 0.0]), json!([0.0, 1.0])]);
    let mut b1: Vec<serde_json::Value> = l1["bias"].as_array().unwrap().clone();
    b1.extend([json!(0.0), json!(0.0)]);
    let w2: Vec<serde_json::Value> = l2["weight"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(k, row)| {
            let mut row = row.as_array().unwrap().clone();
            row.extend([json!(if k == 0 { 1.0 } else { 0.0 }), json!(if k == 1 { 1.0 } else { 0.0 })]);
            json!(row)
        })
        .collect();
    let seq = model(
        &[2],
        vec![
            json!({"op": "linear", "weight": w1, "bias": b1}),
            json!({"op": "relu"}),
            json!({"op": "linear", "weight": w2, "bias": l2["bias"]}),
            head,
        ],
    );
    let slice = plane_slice([0.5, 2.0, 0.3, 1.7]);
    let a = checked(&res, &slice, 2);
    let b = checked(&seq, &slice, 2);
    assert_eq!(a.regions.len(), b.regions.len());
    for reg in a.regions.iter().step_by(3) {
        let c = reg.polygon.centroid();
        let j = b.locate(a.frame.to_uv(c)).expect("inside");
        let (ya, yb) = (reg.map.eval(c), b.regions[j].map.eval(c));
        assert!(tessera::partition::relative_error(&ya, &yb) < 1e-12);
    }
    assert_eq!(checked(&res, &slice, 1).regions, a.regions);
}

#[test]
fn residual_blocks_with_projections_nesting_and_convolutions() {
    let mut r = rng(321);
    // Projection shortcut (8 → 6) around a ReLU branch, nested inside another block, then maxout.
    let inner = json!({"op": "residual", "layers": [linear(&mut r, 8, 8), {"op": "abs"}, linear(&mut r, 8, 8)]});
    let mlp_net = model(
        &[2],
        vec![
            linear(&mut r, 2, 8),
            json!({"op": "relu"}),
            json!({"op": "residual", "layers": [inner, {"op": "relu"}, linear(&mut r, 8, 6)], "shortcut": [linear(&mut r, 8, 6)]}),
            json!({"op": "maxout", "pool_size": 2}),
            linear(&mut r, 3, 2),
        ],
    );
    let slice = plane_slice([-2.0, 2.0, -2.0, 2.0]);
    let part = checked(&mlp_net, &slice, 2);
    assert!(grid_patterns(&mlp_net, &slice, 300) <= part.regions.len());
    assert_eq!(checked(&mlp_net, &slice, 1).regions, part.regions);
    // A ResNet-style block on an image: conv-bn-relu-conv + identity, then pooling and a head.
    let cnn = model(
        &[2, 5, 5],
        vec![
            json!({"op": "residual", "layers": [
                conv(&mut r, 2, 2, 3, json!({"padding": 1})), batch_norm(&mut r, 2), {"op": "relu"},
                conv(&mut r, 2, 2, 3, json!({"padding": 1}))]}),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 2}),
            json!({"op": "flatten"}),
            linear(&mut r, 8, 3),
        ],
    );
    let slice = random_plane(&mut r, 50, [-1.0, 1.0, -1.0, 1.0]);
    let part = checked(&cnn, &slice, 2);
    assert!(part.regions.len() > 10);
    // Round trip through the JSON format.
    let again = tessera::network::json::parse_value(&tessera::network::json::to_value(&cnn)).unwrap();
    assert_eq!(tessera::partition(&again, &slice, &Default::default()).unwrap().regions, part.regions);
    // Invalid blocks are named errors.
    let bad = tessera::network::json::parse_value(&json!({"format": "tessera-model/1", "input_shape": [2], "layers": [
        {"op": "residual", "layers": [{"op": "linear", "weight": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}]}]}));
    assert!(bad.unwrap_err().to_string().contains("layer 0 (op `residual`)"));
    // Both branches nonlinear: the engine lifts each onto its half of the state.
    let both = model(
        &[2],
        vec![
            linear(&mut r, 2, 5),
            json!({"op": "residual", "layers": [{"op": "relu"}, linear(&mut r, 5, 4)],
                   "shortcut": [{"op": "abs"}, linear(&mut r, 5, 4), {"op": "leaky_relu", "negative_slope": 0.2}]}),
            linear(&mut r, 4, 2),
        ],
    );
    let slice = plane_slice([-2.0, 2.0, -2.0, 2.0]);
    let part = checked(&both, &slice, 2);
    assert!(grid_patterns(&both, &slice, 200) <= part.regions.len());
}

#[test]
fn concat_and_max_of_branches() {
    let mut r = rng(555);
    let net = model(
        &[2],
        vec![
            json!({"op": "concat", "branches": [[linear(&mut r, 2, 4), {"op": "relu"}], [linear(&mut r, 2, 3), {"op": "abs"}]]}),
            json!({"op": "max", "branches": [[linear(&mut r, 7, 5), {"op": "relu"}, linear(&mut r, 5, 4)], [linear(&mut r, 7, 4)]]}),
            linear(&mut r, 4, 2),
        ],
    );
    let slice = plane_slice([-2.0, 2.0, -2.0, 2.0]);
    let part = checked(&net, &slice, 2);
    assert!(grid_patterns(&net, &slice, 200) <= part.regions.len());
    assert_eq!(checked(&net, &slice, 1).regions, part.regions);
    // max(a, a) is a, and a max of a branch with itself adds no region.
    let a = vec![linear(&mut r, 2, 3), json!({"op": "relu"})];
    let same = model(&[2], vec![json!({"op": "max", "branches": [a.clone(), a.clone()]}), linear(&mut r, 3, 1)]);
    let plain = model(&[2], a);
    let (p1, p2) = (checked(&same, &slice, 2), checked(&plain, &slice, 2));
    assert_eq!(p1.regions.len(), p2.regions.len());
    let bad = tessera::network::json::parse_value(&json!({"format": "tessera-model/1", "input_shape": [2], "layers": [
        {"op": "max", "branches": [[linear(&mut r, 2, 3)], [linear(&mut r, 2, 4)]]}]}));
    assert!(bad.unwrap_err().to_string().contains("must match"));
}
