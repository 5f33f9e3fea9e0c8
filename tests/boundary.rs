//! Decision boundaries and level sets against forward passes: sampled points tie, pairs across
//! the boundary flip class, grid class changes lie next to the boundary, closed forms.

mod common;

use common::*;
use serde_json::json;
use tessera::boundary::{decision_boundary, Boundary, Decision};
use tessera::sample::{boundary_gap, boundary_points, region_points};
use tessera::{Network, Partition, Slice};

fn cases() -> Vec<(&'static str, Network, Slice, Decision)> {
    let box2 = plane_slice([-2.0, 2.0, -2.0, 2.0]);
    let three = first_with_classes(&[2, 12, 12, 3], json!({"op": "abs"}), &box2, &Decision::Argmax, 3);
    let single = first_with_classes(
        &[2, 10, 10, 1],
        json!({"op": "relu"}),
        &plane_slice([-2.0, 2.0, -1.0, 3.0]),
        &Decision::for_outputs(1, Some(0.1)),
        2,
    );
    let mut out = vec![
        ("3-class argmax", three.clone(), plane_slice([-2.0, 2.0, -2.0, 2.0]), Decision::Argmax),
        ("single output at 0.1", single, plane_slice([-2.0, 2.0, -1.0, 3.0]), Decision::for_outputs(1, Some(0.1))),
        (
            "level y1 - y2 = 0.05",
            three,
            plane_slice([-1.0, 1.0, -1.0, 1.0]),
            Decision::parse_level("1,2=0.05", 3).unwrap(),
        ),
    ];
    let reference = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/reference/mlp_2_64x3_2.json");
    let net = tessera::network::json::load_path(&reference).unwrap();
    out.push(("reference", net, plane_slice([-2.0, 2.0, -2.0, 2.0]), Decision::Argmax));
    out
}

fn build(net: &Network, slice: &Slice, d: &Decision) -> (Partition, Boundary) {
    let part = checked(net, slice, 2);
    let b = decision_boundary(&part, d);
    (part, b)
}

#[test]
fn sampled_boundary_points_tie_and_neighbours_flip() {
    for (name, net, slice, d) in cases() {
        let (part, b) = build(&net, &slice, &d);
        assert!(b.length > 0.0, "{name}: empty boundary");
        let pts = boundary_points(&part, &b, &d, 400, 3);
        assert_eq!(pts.len(), 400);
        for p in &pts {
            let y = tessera::forward_at(&net, &slice, p.uv);
            let gap = boundary_gap(&d, &y, p.classes, 1e-9);
            assert!(gap.is_some_and(|g| g <= 1e-9), "{name}: {p:?} has gap {gap:?}");
            let eps = 1e-7;
            let side = |s: f64| [p.uv[0] + s * eps * p.normal[0], p.uv[1] + s * eps * p.normal[1]];
            let k0 = d.class_of(&tessera::forward_at(&net, &slice, side(-1.0)));
            let k1 = d.class_of(&tessera::forward_at(&net, &slice, side(1.0)));
            assert_eq!((k0, k1), p.classes, "{name}: pair across {p:?}");
        }
        // Same seed, same points.
        assert_eq!(boundary_points(&part, &b, &d, 400, 3), pts);
    }
}

#[test]
fn grid_class_changes_lie_within_a_cell_of_the_boundary() {
    for (name, net, slice, d) in cases() {
        let (part, b) = build(&net, &slice, &d);
        let n = 150;
        let dom = slice.domain;
        let (hu, hv) = ((dom.u1 - dom.u0) / n as f64, (dom.v1 - dom.v0) / n as f64);
        let at = |i: usize, j: usize| [dom.u0 + (i as f64 + 0.5) * hu, dom.v0 + (j as f64 + 0.5) * hv];
        let classes: Vec<Vec<usize>> = (0..n)
            .map(|i| (0..n).map(|j| d.class_of(&tessera::forward_at(&net, &slice, at(i, j)))).collect())
            .collect();
        let reach = hu.hypot(hv);
        let mut changes = 0;
        for i in 0..n {
            for j in 0..n {
                for (di, dj) in [(1, 0), (0, 1)] {
                    if i + di >= n || j + dj >= n || classes[i][j] == classes[i + di][j + dj] {
                        continue;
                    }
                    changes += 1;
                    let p = at(i, j);
                    let near = b.polylines.iter().any(|pl| {
                        pl.points
                            .windows(2)
                            .any(|w| dist_to_segment(p, part.frame.to_uv(w[0]), part.frame.to_uv(w[1])) <= reach)
                    });
                    assert!(near, "{name}: class change at {p:?} far from every polyline");
                }
            }
        }
        assert!(changes > 0, "{name}: the grid sees no class change");
        // Conversely, every segment separates the classes it claims: its midpoint ties.
        for s in &b.segments {
            let mid = part.frame.to_uv([0.5 * (s.a[0] + s.b[0]), 0.5 * (s.a[1] + s.b[1])]);
            let y = tessera::forward_at(&net, &slice, mid);
            assert!(boundary_gap(&d, &y, s.classes, 1e-9).is_some_and(|g| g <= 1e-9), "{name}: {s:?}");
        }
    }
}

#[test]
fn closed_diamond_and_open_line() {
    // y = |u| + |v| - 0.5: the zero level set is a diamond of side √0.5, inside [-1, 1]².
    let net = model(
        &[2],
        vec![
            json!({"op": "linear", "weight": [[1, 0], [0, 1]], "bias": [0, 0]}),
            json!({"op": "abs"}),
            json!({"op": "linear", "weight": [[1, 1]], "bias": [-0.5]}),
        ],
    );
    let slice = plane_slice([-1.0, 1.0, -1.0, 1.0]);
    let (_, b) = build(&net, &slice, &Decision::for_outputs(1, None));
    assert!((b.length - 4.0 * 0.5f64.sqrt()).abs() < 1e-12, "{}", b.length);
    assert_eq!((b.components, b.closed_components, b.open_components), (1, 1, 0));
    assert_eq!(b.polylines.len(), 1);
    assert!(b.polylines[0].closed);
    // At level 1.2 the diamond reaches past the box: four open arcs across the corners.
    let (_, b) = build(&net, &slice, &Decision::for_outputs(1, Some(1.2)));
    assert_eq!((b.components, b.closed_components, b.open_components), (4, 0, 4));
    assert!((b.length - 4.0 * 0.3 * 2f64.sqrt()).abs() < 1e-12, "{}", b.length);
}

#[test]
fn region_points_are_well_inside_their_regions() {
    let net = mlp(81, &[2, 8, 8, 2], json!({"op": "relu"}));
    let slice = plane_slice([-1.0, 1.0, -1.0, 1.0]);
    let part = checked(&net, &slice, 2);
    let pts = region_points(&part, usize::MAX, 0);
    assert_eq!(pts.len(), part.regions.len());
    for (i, c, r) in pts {
        assert!(r > 0.0);
        let uv = tessera::geometry::polygon::ConvexPolygon { pts: part.polygon_uv(i) };
        assert!(uv.inner_distance(c) >= 0.99 * r, "region {i}");
        assert_eq!(part.locate(c), Some(i));
    }
    let some = region_points(&part, 5, 9);
    assert_eq!(some.len(), 5.min(part.regions.len()));
}

#[test]
fn boundary_points_are_uniform_in_arc_length() {
    for (name, net, slice, d) in cases() {
        let (part, b) = build(&net, &slice, &d);
        let pts = boundary_points(&part, &b, &d, 4000, 11);
        // Position of each point along the concatenated segments, as a fraction of the length.
        let mut start = 0.0;
        let mut starts = Vec::new();
        for s in &b.segments {
            starts.push(start);
            start += s.length;
        }
        let mut quarters = [0usize; 4];
        for p in &pts {
            let (i, s) = b
                .segments
                .iter()
                .enumerate()
                .filter(|(_, s)| s.region == p.region && s.classes == p.classes)
                .min_by(|x, y| {
                    let d = |s: &tessera::boundary::Segment| {
                        dist_to_segment(p.uv, part.frame.to_uv(s.a), part.frame.to_uv(s.b))
                    };
                    d(x.1).total_cmp(&d(y.1))
                })
                .expect("a point lies on a segment of its region");
            let a = part.frame.to_uv(s.a);
            let t = (starts[i] + (p.uv[0] - a[0]).hypot(p.uv[1] - a[1])) / b.length;
            quarters[((t * 4.0) as usize).min(3)] += 1;
        }
        // Each quarter of the length gets a quarter of the points (binomial sd ≈ 27 of 1000).
        for q in quarters {
            assert!((q as f64 - 1000.0).abs() < 150.0, "{name}: {quarters:?}");
        }
    }
}
