//! Analyses of a partition (`tessera::analysis`) against references they share no code with:
//! dense grids of activation patterns by the tests' own forward pass, closed forms for the first
//! layer, networks built so that their linear pieces are known, brute-force counts from the 2D
//! partition of a larger box, and a GraphML parser.

mod common;

use common::*;
use serde_json::json;
use tessera::analysis::graph::{region_graph, write_graphml};
use tessera::analysis::local::{local_complexity, random_plane as local_plane, LocalOptions};
use tessera::analysis::neurons::{check_simplified, neuron_report, simplify, PieceFn, UnitKind, Verdict};
use tessera::analysis::pieces::linear_pieces;
use tessera::boundary::Decision;
use tessera::network::Network;
use tessera::slice::Slice;
use tessera::{Options, Partition};

/// Networks with units of every kind: hinges (relu, hardtanh, leaky, abs), max groups (max-pool,
/// maxout) and a max join, on small domains where many units stay on one piece.
fn networks() -> Vec<(&'static str, Network, Slice)> {
    let mut r = rng(9100);
    let mlp = model(
        &[2],
        vec![
            linear(&mut r, 2, 12),
            json!({"op": "relu"}),
            linear(&mut r, 12, 10),
            json!({"op": "hardtanh", "min_val": -0.2, "max_val": 0.3}),
            linear(&mut r, 10, 12),
            json!({"op": "maxout", "pool_size": 3}),
            linear(&mut r, 4, 8),
            json!({"op": "leaky_relu", "negative_slope": 0.1}),
            linear(&mut r, 8, 6),
            json!({"op": "abs"}),
            linear(&mut r, 6, 3),
        ],
    );
    let cnn = model(
        &[1, 6, 6],
        vec![
            conv(&mut r, 1, 3, 3, json!({"padding": 1})),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 2}),
            json!({"op": "max", "branches": [
                [conv(&mut r, 3, 2, 3, json!({"padding": 1}))],
                [conv(&mut r, 3, 2, 1, json!({}))]]}),
            json!({"op": "flatten"}),
            linear(&mut r, 18, 6),
            json!({"op": "relu"}),
            linear(&mut r, 6, 3),
        ],
    );
    let cnn_slice = random_plane(&mut r, 36, [-0.4, 0.4, -0.4, 0.4]);
    // Graph form: per-channel PReLU, an overlapping padded max-pool (groups of 4, 6 and 9
    // candidates), a min join of three tensors.
    let c1 = conv(&mut r, 1, 3, 3, json!({"padding": 1}));
    let (ca, cb, cc) = (
        conv(&mut r, 3, 2, 3, json!({"padding": 1})),
        conv(&mut r, 3, 2, 1, json!({})),
        conv(&mut r, 3, 2, 3, json!({"padding": 1})),
    );
    let fc = linear(&mut r, 50, 3);
    let node = |name: &str, inputs: &[&str], layer: &serde_json::Value| {
        let mut v = layer.clone();
        v["name"] = json!(name);
        v["inputs"] = json!(inputs);
        v
    };
    let doc = json!({"format": "tessera-model/1", "input_shape": [1, 5, 5], "graph": [
        node("c1", &["input"], &c1),
        node("p", &["c1"], &json!({"op": "prelu", "weight": [0.1, -0.3, 0.5]})),
        node("mp", &["p"], &json!({"op": "max_pool2d", "kernel_size": 3, "stride": 1, "padding": 1})),
        node("a", &["mp"], &ca),
        node("b", &["mp"], &cb),
        node("c", &["mp"], &cc),
        node("m", &["a", "b", "c"], &json!({"op": "min"})),
        node("f", &["m"], &json!({"op": "flatten"})),
        node("out", &["f"], &fc),
    ]});
    let graph = tessera::network::json::parse_value(&doc).expect("valid graph model");
    let graph_slice = random_plane(&mut r, 25, [-0.3, 0.3, -0.3, 0.3]);
    vec![("mlp", mlp, plane_slice([-0.6, 0.4, -0.5, 0.5])), ("cnn", cnn, cnn_slice), ("graph", graph, graph_slice)]
}

/// Piece number of a unit from the tests' pattern code: hinges passed `c` → bits `2^c − 1`
/// (hinges are passed in order); a winner's position as is.
fn piece_of_code(kind: &UnitKind, c: u8) -> usize {
    match kind {
        UnitKind::Hinge(_) => (1usize << c) - 1,
        _ => c as usize,
    }
}

#[test]
fn neuron_verdicts_agree_with_dense_grids_of_patterns() {
    let mut seen_verdicts = std::collections::HashSet::new();
    for (name, net, slice) in networks() {
        let part = checked(&net, &slice, 2);
        let report = neuron_report(&net, &part).unwrap();
        let n = 300;
        let d = slice.domain;
        // Per unit (flat, in report order), the pieces seen on the grid and how often.
        let units = report.units();
        let mut hits: Vec<std::collections::BTreeMap<usize, usize>> = vec![Default::default(); units];
        for i in 0..n {
            for j in 0..n {
                let u = d.u0 + (i as f64 + 0.5) / n as f64 * (d.u1 - d.u0);
                let v = d.v0 + (j as f64 + 0.5) / n as f64 * (d.v1 - d.v0);
                let code = pattern_code(&net, &slice.plane.point(u, v));
                assert_eq!(code.len(), units, "{name}: one code per unit");
                let mut k = 0;
                for l in &report.layers {
                    for _ in &l.units {
                        *hits[k].entry(piece_of_code(&l.kind, code[k])).or_default() += 1;
                        k += 1;
                    }
                }
            }
        }
        let mut k = 0;
        for l in &report.layers {
            for unit in &l.units {
                let grid = &hits[k];
                k += 1;
                let at = format!("{name}: node {} unit {}", l.layer, unit.unit);
                let area: f64 = unit.piece_area.iter().sum();
                assert!((area - d.area()).abs() < 1e-9 * d.area(), "{at}: piece areas sum to the domain");
                for (&piece, &count) in grid {
                    assert!(
                        unit.piece_regions[piece] > 0,
                        "{at}: piece {piece} seen on the grid but reported inactive"
                    );
                    let frac = count as f64 / (n * n) as f64;
                    let reported = unit.piece_area[piece] / d.area();
                    assert!(
                        (frac - reported).abs() < 0.01,
                        "{at}: piece {piece} on {frac} of the grid, reported {reported}"
                    );
                }
                for (piece, &a) in unit.piece_area.iter().enumerate() {
                    if a / d.area() > 0.01 {
                        assert!(grid.contains_key(&piece), "{at}: piece {piece} has {a} of the area but no grid point");
                    }
                }
                let switching = unit.active_pieces() > 1;
                assert_eq!(unit.verdict == Verdict::Switching, switching, "{at}");
                if grid.len() > 1 {
                    assert_eq!(unit.verdict, Verdict::Switching, "{at}: the grid sees two pieces");
                }
                if let (Verdict::Dead, Some(PieceFn::Affine { slope, .. })) = (unit.verdict, unit.fixed) {
                    assert_eq!(slope, 0.0, "{at}: a dead unit is constant");
                }
                seen_verdicts.insert((name, unit.verdict));
            }
        }
        assert_eq!(k, units);
    }
    // The test networks exercise every verdict.
    for v in [Verdict::Dead, Verdict::Linear, Verdict::Switching] {
        assert!(seen_verdicts.iter().any(|&(_, w)| w == v), "no {v:?} unit in the test networks");
    }
}

#[test]
fn first_layer_verdicts_follow_the_corner_signs() {
    // z = w·(u, v) + b on a box: its line meets the box iff the corner values change sign.
    let mut r = rng(9101);
    let layers = vec![linear(&mut r, 2, 40), json!({"op": "relu"}), linear(&mut r, 40, 2)];
    let w = layers[0]["weight"].clone();
    let b = layers[0]["bias"].clone();
    let net = model(&[2], layers);
    let slice = plane_slice([-0.3, 0.5, -0.2, 0.4]);
    let part = checked(&net, &slice, 1);
    let report = neuron_report(&net, &part).unwrap();
    let first = &report.layers[0];
    let mut kinds = std::collections::HashSet::new();
    for unit in &first.units {
        let (w0, w1, b0) =
            (w[unit.unit][0].as_f64().unwrap(), w[unit.unit][1].as_f64().unwrap(), b[unit.unit].as_f64().unwrap());
        let corners: Vec<f64> =
            [(-0.3, -0.2), (0.5, -0.2), (-0.3, 0.4), (0.5, 0.4)].iter().map(|&(u, v)| w0 * u + w1 * v + b0).collect();
        let expected = if corners.iter().all(|&z| z > 0.0) {
            Verdict::Linear
        } else if corners.iter().all(|&z| z <= 0.0) {
            Verdict::Dead
        } else {
            Verdict::Switching
        };
        assert_eq!(unit.verdict, expected, "unit {}: corners {corners:?}", unit.unit);
        assert_eq!(unit.enters_domain(), expected == Verdict::Switching);
        // Its partition edges are its line clipped to the box: the distance between the two
        // points where the line meets the box's sides.
        let mut hits: Vec<[f64; 2]> = Vec::new();
        for (u, (v0, v1)) in [(-0.3, (-0.2, 0.4)), (0.5, (-0.2, 0.4))] {
            let v = -(w0 * u + b0) / w1;
            if (v0..=v1).contains(&v) {
                hits.push([u, v]);
            }
        }
        for (v, (u0, u1)) in [(-0.2, (-0.3, 0.5)), (0.4, (-0.3, 0.5))] {
            let u = -(w1 * v + b0) / w0;
            if (u0..=u1).contains(&u) {
                hits.push([u, v]);
            }
        }
        let clipped = match hits.as_slice() {
            [p, q, ..] => (p[0] - q[0]).hypot(p[1] - q[1]),
            _ => 0.0,
        };
        assert!(
            (unit.edge_length - clipped).abs() < 1e-9,
            "unit {}: edges {} vs {clipped}",
            unit.unit,
            unit.edge_length
        );
        kinds.insert(expected);
    }
    assert_eq!(kinds.len(), 3, "the seed gives units of all three kinds");
}

/// Areas of a partition's regions, sorted.
fn sorted_areas(p: &Partition) -> Vec<f64> {
    let mut a: Vec<f64> = p.regions.iter().map(|r| r.area).collect();
    a.sort_by(f64::total_cmp);
    a
}

#[test]
fn removing_the_units_that_never_switch_keeps_every_region_map() {
    let mut partly_rewritten = std::collections::BTreeSet::new();
    for (name, net, slice) in networks() {
        let part = checked(&net, &slice, 2);
        let report = neuron_report(&net, &part).unwrap();
        let (small, stats) = simplify(&net, &report).unwrap();
        assert!(stats.removed + stats.linearised > 0, "{name}: something to remove");
        for l in &report.layers {
            let kept = l.count(Verdict::Switching);
            if 0 < kept && kept < l.units.len() {
                partly_rewritten.insert(match l.kind {
                    UnitKind::Hinge(_) => "hinge",
                    UnitKind::MaxGroup => "max group",
                    UnitKind::Join(_) => "join",
                });
            }
        }
        assert_eq!(stats.kept, report.count(Verdict::Switching));
        assert_eq!(small.pwl_unit_count(), stats.kept, "{name}: only the switching units stay piecewise-linear");
        let check = check_simplified(&small, &slice, &part);
        assert!(check.is_ok(), "{name}: {:?}", &check.violations[..check.violations.len().min(3)]);
        assert!(check.points > part.regions.len());
        // The same partition (the removed units never split), checked on its own.
        let again = checked(&small, &slice, 2);
        assert_eq!(again.regions.len(), part.regions.len(), "{name}");
        for (a, b) in sorted_areas(&again).iter().zip(sorted_areas(&part)) {
            assert!((a - b).abs() <= 1e-9 * slice.domain.area(), "{name}: areas {a} vs {b}");
        }
        // The rewrite survives the JSON writer and loader.
        let text = tessera::network::json::to_value(&small);
        let back = tessera::network::json::parse_value(&text).unwrap();
        let x = slice.plane.point(0.01, -0.02);
        assert_eq!(back.forward(&x), small.forward(&x));

        // A wrong rewrite is caught: fix a switching hinge unit to its largest piece. (A unit
        // whose other piece never wins a later max group does not change the function, so the
        // first few switching units of the last hinge layer are tried: one must be caught.)
        let l = report
            .layers
            .iter()
            .rposition(|l| matches!(l.kind, UnitKind::Hinge(_)) && l.count(Verdict::Switching) > 0)
            .expect("a hinge layer with switching units");
        let UnitKind::Hinge(act) = &report.layers[l].kind else { unreachable!() };
        let per = net.nodes[report.layers[l].layer].layer.input.per_channel();
        let switching: Vec<usize> = (0..report.layers[l].units.len())
            .filter(|&u| report.layers[l].units[u].verdict == Verdict::Switching)
            .take(8)
            .collect();
        assert!(!switching.is_empty(), "{name}: a switching hinge unit");
        let caught = switching.iter().any(|&u| {
            let mut wrong = report.clone();
            let unit = &mut wrong.layers[l].units[u];
            let piece =
                (0..unit.piece_area.len()).max_by(|&a, &b| unit.piece_area[a].total_cmp(&unit.piece_area[b])).unwrap();
            // The piece's slope and intercept, from the hinge form written out here.
            let f = act.hinge_form(u / per);
            let passed = || f.hinges().iter().enumerate().filter(|(j, _)| piece >> j & 1 == 1);
            let slope = f.slope0 + passed().map(|(_, h)| h.1).sum::<f64>();
            let intercept = f.intercept0 - passed().map(|(_, h)| h.1 * h.0).sum::<f64>();
            unit.fixed = Some(PieceFn::Affine { slope, intercept });
            unit.verdict = Verdict::Linear;
            let (bad, _) = simplify(&net, &wrong).unwrap();
            !check_simplified(&bad, &slice, &part).is_ok()
        });
        assert!(caught, "{name}: linearising a switching unit must be caught");
    }
    // Every kind of node was rewritten in part (some units kept, some replaced) somewhere.
    assert_eq!(partly_rewritten.into_iter().collect::<Vec<_>>(), ["hinge", "join", "max group"]);
}

/// A 2-input net whose hidden unit 2 has zero outgoing weights (its line splits regions with
/// equal maps), and whose units 3 and 4 are one line with opposite outgoing weights (they
/// cancel: their common line also splits equal maps).
fn net_with_redundant_units() -> (Network, Network) {
    let w1 = json!([[1.0, 0.3], [-0.4, 1.0], [0.7, -0.7], [0.2, 0.9], [0.2, 0.9]]);
    let b1 = json!([0.1, -0.2, 0.05, 0.15, 0.15]);
    let w2 = json!([[1.0, -0.5, 0.0, 0.8, -0.8], [0.3, 1.2, 0.0, -0.6, 0.6]]);
    let net = model(
        &[2],
        vec![
            json!({"op": "linear", "weight": w1, "bias": b1}),
            json!({"op": "relu"}),
            json!({"op": "linear", "weight": w2, "bias": [0.0, 0.1]}),
        ],
    );
    // The same function with the two useful units only.
    let reduced = model(
        &[2],
        vec![
            json!({"op": "linear", "weight": [[1.0, 0.3], [-0.4, 1.0]], "bias": [0.1, -0.2]}),
            json!({"op": "relu"}),
            json!({"op": "linear", "weight": [[1.0, -0.5], [0.3, 1.2]], "bias": [0.0, 0.1]}),
        ],
    );
    (net, reduced)
}

#[test]
fn linear_pieces_merge_exactly_the_regions_with_equal_maps() {
    let (net, reduced) = net_with_redundant_units();
    let slice = plane_slice([-1.0, 1.0, -1.0, 1.0]);
    let part = checked(&net, &slice, 1);
    let reference = checked(&reduced, &slice, 1);
    let pieces = linear_pieces(&part);
    assert!(part.regions.len() > reference.regions.len(), "the redundant lines split regions");
    assert_eq!(pieces.pieces.len(), reference.regions.len(), "one piece per region of the reduced net");
    // Regions in one piece are exactly those with the same useful units (bits 0 and 1).
    for (i, a) in part.regions.iter().enumerate() {
        for (j, b) in part.regions.iter().enumerate() {
            let same = a.pattern.bits(0, 2) == b.pattern.bits(0, 2);
            assert_eq!(pieces.piece_of[i] == pieces.piece_of[j], same, "regions {i} and {j}");
        }
    }
    // Each piece is a region of the reduced net: same area, and its union has that area.
    let want = sorted_areas(&reference);
    let mut got: Vec<f64> = pieces.pieces.iter().map(|p| p.area).collect();
    got.sort_by(f64::total_cmp);
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12, "piece area {a} vs region {b}");
    }
    let total: f64 = pieces.pieces.iter().map(|p| p.area).sum();
    assert!((total - 4.0).abs() < 1e-12);
    for p in &pieces.pieces {
        assert!((p.shape_area() - p.area).abs() < 1e-9, "union area {} vs {}", p.shape_area(), p.area);
        // The reduced net's regions are convex: so is each union (one polygon, no hole).
        assert_eq!(p.shape.0.len(), 1);
    }

    // A generic network: every region is its own piece.
    let net = mlp(9102, &[2, 10, 10, 3], json!({"op": "relu"}));
    let part = checked(&net, &slice, 1);
    let pieces = linear_pieces(&part);
    assert_eq!(pieces.pieces.len(), part.regions.len());
    let total: f64 = pieces.pieces.iter().map(|p| p.area).sum();
    assert!((total - 4.0).abs() < 1e-9);
}

#[test]
fn the_region_graph_has_every_shared_edge_once_and_its_unit() {
    for (name, net, slice) in networks() {
        let part = checked(&net, &slice, 2);
        let decision = Decision::for_outputs(3, None);
        let g = region_graph(&net, &part, &decision).unwrap();
        assert_eq!(g.node_count(), part.regions.len());
        // Shared sides by brute force: pairs of regions with a common side of positive length
        // (both endpoints of a side of one lie on a side of the other).
        let on_side = |p: [f64; 2], poly: &[[f64; 2]]| {
            (0..poly.len()).any(|k| dist_to_segment(p, poly[k], poly[(k + 1) % poly.len()]) < 1e-9)
        };
        let mut pairs = std::collections::BTreeSet::new();
        for (i, a) in part.regions.iter().enumerate() {
            let pa = &a.polygon.pts;
            for (j, b) in part.regions.iter().enumerate().skip(i + 1) {
                let pb = &b.polygon.pts;
                let shared = (0..pa.len()).any(|k| {
                    let (p, q) = (pa[k], pa[(k + 1) % pa.len()]);
                    let mid = [(p[0] + q[0]) / 2.0, (p[1] + q[1]) / 2.0];
                    on_side(p, pb) && on_side(q, pb) && on_side(mid, pb)
                });
                if shared {
                    pairs.insert((i, j));
                }
            }
        }
        assert_eq!(g.edge_count(), pairs.len(), "{name}");
        let layers: Vec<usize> = part.layout.iter().map(|l| l.layer).collect();
        for e in g.edge_indices() {
            let (a, b) = g.edge_endpoints(e).unwrap();
            let (a, b) = (a.index(), b.index());
            assert!(pairs.contains(&(a.min(b), a.max(b))), "{name}: edge {a}-{b}");
            let (layer, unit) = g[e].unit.expect("neighbours differ in a unit");
            // The unit's piece differs between the two regions (the tests' own forward pass).
            let code = |i: usize| {
                let c = part.frame.to_uv(part.regions[i].polygon.centroid());
                pattern_code(&net, &slice.plane.point(c[0], c[1]))
            };
            let at = layers.iter().position(|&l| l == layer).unwrap();
            let before: usize = part.layout[..at]
                .iter()
                .map(|l| match &net.nodes[l.layer].layer.kind {
                    tessera::network::LayerKind::Activation(_) => net.nodes[l.layer].layer.input.numel(),
                    _ => net.nodes[l.layer].layer.output.numel(),
                })
                .sum();
            assert_ne!(
                code(a)[before + unit],
                code(b)[before + unit],
                "{name}: edge {a}-{b} on node {layer} unit {unit}"
            );
            assert!(g[e].length > 0.0);
        }
        // GraphML: typed keys, one node per region, one edge per pair, lengths as doubles.
        let mut buf = Vec::new();
        write_graphml(&g, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap();
        let count = |tag: &str| doc.descendants().filter(|n| n.has_tag_name(tag)).count();
        assert_eq!(count("node"), part.regions.len());
        assert_eq!(count("edge"), pairs.len());
        let key =
            doc.descendants().find(|n| n.has_tag_name("key") && n.attribute("attr.name") == Some("length")).unwrap();
        assert_eq!(key.attribute("attr.type"), Some("double"));
        let total: f64 = doc
            .descendants()
            .filter(|n| n.has_tag_name("data") && n.attribute("key") == key.attribute("id"))
            .map(|n| n.text().unwrap().parse::<f64>().unwrap())
            .sum();
        let want: f64 = g.edge_weights().map(|e| e.length).sum();
        assert!((total - want).abs() < 1e-9 * want);
    }
}

/// Regions of `part` meeting the disk of radius `r` around `(u, v) = c`, by distance from `c`
/// to each polygon in `(u, v)`, computed here.
fn regions_meeting_disk(part: &Partition, c: [f64; 2], r: f64) -> Vec<usize> {
    (0..part.regions.len())
        .filter(|&i| {
            let poly = part.polygon_uv(i);
            let n = poly.len();
            let inside = (0..n).all(|k| {
                let (a, b) = (poly[k], poly[(k + 1) % n]);
                (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) >= 0.0
            });
            inside || (0..n).any(|k| dist_to_segment(c, poly[k], poly[(k + 1) % n]) < r)
        })
        .collect()
}

#[test]
fn local_complexity_equals_a_count_from_a_larger_partition() {
    // 2 inputs: every plane through a point is the input plane; the disk is the same one.
    let net = mlp(9103, &[2, 16, 16, 3], json!({"op": "relu"}));
    let points = vec![vec![0.1, -0.2], vec![0.5, 0.4], vec![-0.7, 0.0]];
    let opts = LocalOptions { radius: 0.3, planes: 3, seed: 4 };
    let counts = local_complexity(&net, &points, &opts, &Options::default()).unwrap();
    assert_eq!(counts.len(), 9);
    for c in &counts {
        let x = &points[c.point];
        let big = checked(&net, &plane_slice([x[0] - 0.6, x[0] + 0.6, x[1] - 0.6, x[1] + 0.6]), 2);
        let meeting = regions_meeting_disk(&big, [x[0], x[1]], 0.3);
        assert_eq!(c.regions, meeting.len() as u64, "point {} plane {}", c.point, c.plane);
        // Units crossing the disk: those on different pieces in two regions meeting it (a
        // region's pattern is the same at every interior point: take its centroid), by the
        // tests' own forward pass.
        let codes: Vec<Vec<u8>> = meeting
            .iter()
            .map(|&i| {
                let cen = big.frame.to_uv(big.regions[i].polygon.centroid());
                pattern_code(&net, &[cen[0], cen[1]])
            })
            .collect();
        let crossing = (0..codes[0].len()).filter(|&k| codes.iter().any(|c| c[k] != codes[0][k])).count();
        assert_eq!(c.units, crossing as u64, "point {} plane {}", c.point, c.plane);
        assert_eq!(c.units, c.units_per_layer.iter().sum::<u64>());
    }
    // All planes of a 2-input model give the same disk.
    for p in 0..3 {
        let of_point: Vec<_> = counts.iter().filter(|c| c.point == p).collect();
        assert!(of_point.iter().all(|c| c.regions == of_point[0].regions && c.units == of_point[0].units));
    }

    // A CNN: each random plane's count equals the count from a larger box on the same plane.
    let (_, cnn, _) = networks().remove(1);
    let mut r = rng(9104);
    let points: Vec<Vec<f64>> = (0..2).map(|_| uniform(&mut r, 36, 0.5)).collect();
    let opts = LocalOptions { radius: 0.2, planes: 2, seed: 11 };
    let counts = local_complexity(&cnn, &points, &opts, &Options::default()).unwrap();
    for c in &counts {
        let plane = local_plane(&points[c.point], 11, c.point, c.plane);
        let slice = Slice { plane, domain: tessera::slice::Domain::new(-0.5, 0.5, -0.5, 0.5).unwrap(), anchors: None };
        let big = checked(&cnn, &slice, 2);
        assert_eq!(c.regions, regions_meeting_disk(&big, [0.0, 0.0], 0.2).len() as u64);
        assert!(c.regions > 1);
    }

    // Bad parameters are refused.
    let bad = |o: LocalOptions, pts: &[Vec<f64>]| local_complexity(&net, pts, &o, &Options::default()).is_err();
    assert!(bad(LocalOptions { radius: -1.0, planes: 1, seed: 0 }, &[vec![0.0, 0.0]]));
    assert!(bad(LocalOptions { radius: 0.1, planes: 0, seed: 0 }, &[vec![0.0, 0.0]]));
    assert!(bad(LocalOptions { radius: 0.1, planes: 1, seed: 0 }, &[vec![0.0, 0.0, 0.0]]));
}

#[test]
fn a_series_row_matches_the_partition_it_comes_from() {
    let net = mlp(9105, &[2, 12, 12, 3], json!({"op": "relu"}));
    let slice = plane_slice([-1.0, 1.0, -1.0, 1.0]);
    let decision = Decision::for_outputs(3, None);
    let row = tessera::analysis::series::series_row(&net, &slice, &decision, &Options::default()).unwrap();
    let summary = tessera::count(&net, &slice, &Options::default()).unwrap();
    assert_eq!(row.regions, summary.regions);
    assert_eq!(row.vertices, summary.vertices.unwrap());
    assert_eq!(row.regions_per_layer, summary.regions_per_layer.iter().map(|c| c.regions).collect::<Vec<_>>());
    let part = checked(&net, &slice, 1);
    let b = tessera::boundary::decision_boundary(&part, &decision);
    assert_eq!(row.boundary_components, b.components);
    assert!((row.boundary_length - b.length).abs() < 1e-12);
    let report = neuron_report(&net, &part).unwrap();
    assert_eq!(
        (row.dead_units, row.linear_units, row.switching_units),
        (report.count(Verdict::Dead), report.count(Verdict::Linear), report.count(Verdict::Switching))
    );
    assert_eq!(row.dead_units + row.linear_units + row.switching_units, 24);
    // A partition of another network is refused (its pattern layout is not this one's).
    let other = mlp(9106, &[2, 8, 3], json!({"op": "relu"}));
    assert!(neuron_report(&other, &part).is_err());
}
