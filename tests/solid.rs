//! 3D partitions: closed-form plane arrangements, distinct activation patterns on a 100³ grid,
//! axis-plane cuts against the 2D engine, meshes of level sets with known areas, self-checks.

mod common;

use common::{linear, model, pattern_code, rng, uniform};
use rand::Rng;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use tessera::boundary::Decision;
use tessera::network::Network;
use tessera::slice::{Domain, Plane, Slice};
use tessera::solid::{self, Options3, Slice3, Solid, Space3};

fn cube() -> Slice3 {
    Slice3::build(3, Space3::Identity, None).unwrap()
}

fn run(net: &Network, slice: &Slice3, surface: Option<Decision>) -> Solid {
    let opts = Options3 { keep_regions: true, surface, ..Default::default() };
    let s = solid::partition3(net, slice, &opts).expect("3D partition succeeds");
    let report = solid::check(net, slice, &s, 300, 7);
    assert!(report.is_ok(), "{:?}", &report.violations[..report.violations.len().min(5)]);
    assert!(report.centres > 0);
    s
}

/// One ReLU layer of the planes `w·x + b = 0`, summed.
fn arrangement(planes: &[([f64; 3], f64)]) -> Network {
    let weight: Vec<Vec<f64>> = planes.iter().map(|(w, _)| w.to_vec()).collect();
    let bias: Vec<f64> = planes.iter().map(|p| p.1).collect();
    model(
        &[3],
        vec![
            json!({"op": "linear", "weight": weight, "bias": bias}),
            json!({"op": "relu"}),
            json!({"op": "linear", "weight": [vec![1.0; planes.len()]], "bias": [0.0]}),
        ],
    )
}

fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> [f64; 3] {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    let mut x = [0.0; 3];
    for k in 0..3 {
        let mut m = a;
        (0..3).for_each(|r| m[r][k] = b[r]);
        x[k] = det(m) / d;
    }
    x
}

fn random_normal(r: &mut rand_chacha::ChaCha8Rng) -> [f64; 3] {
    let v = uniform(r, 3, 1.0);
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    [v[0] / n, v[1] / n, v[2] / n]
}

#[test]
fn planes_in_general_position_give_the_standard_count() {
    for (seed, n) in [(1u64, 6usize), (2, 8), (3, 10)] {
        // Planes near the origin, redrawn (seeded) until every triple meets inside the box: the
        // closed form's precondition (then every pair's line and every plane cross it too).
        let mut r = rng(seed);
        let inside = |planes: &[([f64; 3], f64)]| {
            (0..n).all(|i| {
                (i + 1..n).all(|j| {
                    (j + 1..n).all(|k| {
                        let p =
                            solve3([planes[i].0, planes[j].0, planes[k].0], [-planes[i].1, -planes[j].1, -planes[k].1]);
                        p.iter().all(|x| x.abs() < 0.95)
                    })
                })
            })
        };
        let planes = (0..1000)
            .map(|_| (0..n).map(|_| (random_normal(&mut r), r.random_range(-0.01..0.01))).collect::<Vec<_>>())
            .find(|p| inside(p))
            .expect("a set of planes meeting inside the box");
        let s = run(&arrangement(&planes), &cube(), None);
        let want = 1 + n + n * (n - 1) / 2 + n * (n - 1) * (n - 2) / 6;
        assert_eq!(s.summary.regions as usize, want, "{n} planes in general position");
        assert!((s.summary.volume_sum - 8.0).abs() < 1e-9);
    }
}

#[test]
fn planes_through_one_point_and_parallel_planes() {
    // n planes through one point, no three sharing a line: n(n − 1) + 2 cells.
    let mut r = rng(11);
    let q = [0.1, -0.2, 0.15];
    for n in [3usize, 5, 7] {
        let planes: Vec<([f64; 3], f64)> = (0..n)
            .map(|_| {
                let w = random_normal(&mut r);
                (w, -(w[0] * q[0] + w[1] * q[1] + w[2] * q[2]))
            })
            .collect();
        let s = run(&arrangement(&planes), &cube(), None);
        assert_eq!(s.summary.regions as usize, n * (n - 1) + 2, "{n} planes through a point");
    }
    // Parallel planes x + 2y − z = c: n + 1 slabs, volumes in closed form by 1D integration of
    // the section area is not needed: the slabs' volumes must sum to the box.
    let cs = [-1.5, -0.7, 0.0, 0.6, 1.3];
    let planes: Vec<([f64; 3], f64)> = cs.iter().map(|&c| ([1.0, 2.0, -1.0], -c)).collect();
    let s = run(&arrangement(&planes), &cube(), None);
    assert_eq!(s.summary.regions, 6);
    // Axis-parallel planes x = c: slabs of width known exactly.
    let xs = [-0.5, 0.25, 0.75];
    let planes: Vec<([f64; 3], f64)> = xs.iter().map(|&c| ([1.0, 0.0, 0.0], -c)).collect();
    let s = run(&arrangement(&planes), &cube(), None);
    let mut vols: Vec<f64> = s.regions.iter().map(|r| r.volume).collect();
    vols.sort_by(f64::total_cmp);
    let mut want: Vec<f64> = [0.5, 0.75, 0.5, 0.25].iter().map(|w| w * 4.0).collect();
    want.sort_by(f64::total_cmp);
    for (a, b) in vols.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12, "{vols:?} vs {want:?}");
    }
}

fn mlp3(seed: u64, widths: &[usize]) -> Network {
    let mut r = rng(seed);
    let mut layers = Vec::new();
    for (i, pair) in widths.windows(2).enumerate() {
        layers.push(linear(&mut r, pair[0], pair[1]));
        if i + 2 < widths.len() {
            layers.push(json!({"op": "relu"}));
        }
    }
    model(&[widths[0]], layers)
}

#[test]
fn at_least_as_many_regions_as_grid_patterns() {
    for seed in [1u64, 2, 3] {
        let net = mlp3(seed, &[3, 8, 8, 2]);
        let s = run(&net, &cube(), None);
        let n = 100;
        let mut seen = HashSet::new();
        for i in 0..n {
            for j in 0..n {
                for k in 0..n {
                    let x = [i, j, k].map(|q| -1.0 + (q as f64 + 0.5) * 2.0 / n as f64);
                    seen.insert(pattern_code(&net, &x));
                }
            }
        }
        assert!(
            s.summary.regions as usize >= seen.len(),
            "seed {seed}: {} regions < {} grid patterns",
            s.summary.regions,
            seen.len()
        );
        // And not wildly more: every region's own pattern is a real pattern of the network.
        for r in s.regions.iter().take(50) {
            let c = r.centroid();
            let y = tessera::Network::forward(&net, &c);
            let m = r.eval(c);
            assert!(y.iter().zip(&m).all(|(a, b)| (a - b).abs() < 1e-9));
        }
    }
}

/// The section of a convex polytope by the plane `z = c`: its area and whether it has any.
fn section_area(r: &solid::Region3, c: f64) -> f64 {
    let mut pts: Vec<[f64; 2]> = Vec::new();
    for f in &r.facets {
        for k in 0..f.vertices.len() {
            let (p, q) =
                (r.vertices[f.vertices[k] as usize], r.vertices[f.vertices[(k + 1) % f.vertices.len()] as usize]);
            let (a, b) = (p[2] - c, q[2] - c);
            if a == 0.0 {
                pts.push([p[0], p[1]]);
            }
            if (a < 0.0 && b > 0.0) || (a > 0.0 && b < 0.0) {
                let t = a / (a - b);
                pts.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
            }
        }
    }
    if pts.len() < 3 {
        return 0.0;
    }
    // Convex hull area (points may repeat): sort by angle around the mean.
    let m = [
        pts.iter().map(|p| p[0]).sum::<f64>() / pts.len() as f64,
        pts.iter().map(|p| p[1]).sum::<f64>() / pts.len() as f64,
    ];
    pts.sort_by(|p, q| (p[1] - m[1]).atan2(p[0] - m[0]).total_cmp(&(q[1] - m[1]).atan2(q[0] - m[0])));
    let mut area = 0.0;
    for k in 0..pts.len() {
        let (p, q) = (pts[k], pts[(k + 1) % pts.len()]);
        area += p[0] * q[1] - p[1] * q[0];
    }
    0.5 * area.abs()
}

#[test]
fn an_axis_plane_cut_equals_the_2d_partition() {
    for (seed, c) in [(4u64, 0.137), (5, -0.61), (6, 0.4)] {
        let net = mlp3(seed, &[3, 10, 8, 3]);
        let s = run(&net, &cube(), None);
        let plane = Plane::from_vectors(vec![0.0, 0.0, c], vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], 3).unwrap();
        let slice = Slice { plane, domain: Domain::new(-1.0, 1.0, -1.0, 1.0).unwrap(), anchors: None };
        let part = common::checked(&net, &slice, 1);
        let flat: BTreeMap<Vec<u64>, f64> = part.regions.iter().map(|r| (r.pattern.0.clone(), r.area * 1.0)).collect();
        let total: f64 = part.regions.iter().map(|r| r.area).sum();
        let scale = 4.0 / total; // region areas in the frame's units → (u, v) units
        let cut: BTreeMap<Vec<u64>, f64> = s
            .regions
            .iter()
            .filter_map(|r| {
                let a = section_area(r, c);
                (a > 1e-9).then(|| (r.pattern.0.clone(), a))
            })
            .collect();
        assert_eq!(cut.len(), flat.len(), "seed {seed}: sections vs 2D regions");
        for (p, a) in &cut {
            let b = flat.get(p).unwrap_or_else(|| panic!("seed {seed}: a section's pattern is not a 2D region"));
            assert!((a - b * scale).abs() < 1e-9, "seed {seed}: area {a} vs {}", b * scale);
        }
    }
}

#[test]
fn per_layer_counts_and_thread_independence() {
    let net = mlp3(9, &[3, 12, 12, 2]);
    let one = solid::partition3(
        &net,
        &cube(),
        &Options3 {
            keep_regions: true,
            engine: tessera::Options { threads: 1, ..Default::default() },
            ..Default::default()
        },
    )
    .unwrap();
    let two = solid::partition3(
        &net,
        &cube(),
        &Options3 {
            keep_regions: true,
            engine: tessera::Options { threads: 2, ..Default::default() },
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(one.summary, two.summary);
    for (a, b) in one.regions.iter().zip(&two.regions) {
        assert_eq!(a.pattern, b.pattern);
        assert_eq!(a.volume, b.volume);
    }
    let per = &one.summary.regions_per_layer;
    assert_eq!(per.len(), 2);
    assert!(per[0].regions <= per[1].regions);
    assert_eq!(per[1].regions, one.summary.regions);
    // Distinct first-layer patterns of the regions = the first layer's count.
    let first: HashSet<u64> = one.regions.iter().map(|r| r.pattern.0[0]).collect();
    assert_eq!(first.len() as u64, per[0].regions);
}

/// |x| + |y| + |z| − r with ReLUs: its zero set is the octahedron of "radius" r.
fn octahedron(r: f64) -> Network {
    model(
        &[3],
        vec![
            json!({"op": "linear", "weight": [[1,0,0],[-1,0,0],[0,1,0],[0,-1,0],[0,0,1],[0,0,-1]], "bias": [0,0,0,0,0,0]}),
            json!({"op": "relu"}),
            json!({"op": "linear", "weight": [[1,1,1,1,1,1]], "bias": [-r]}),
        ],
    )
}

#[test]
fn level_set_of_an_octahedron_is_exact_and_watertight() {
    let r = 0.5;
    let net = octahedron(r);
    let slice = Slice3::build(3, Space3::Identity, Some([-0.8, 0.9, -0.7, 0.75, -0.9, 0.6])).unwrap();
    let s = run(&net, &slice, Some(Decision::for_outputs(1, None)));
    let mesh = s.surface.as_ref().unwrap();
    // Eight equilateral triangles of side r√2.
    let want = 4.0 * 3f64.sqrt() * r * r;
    assert!((mesh.area - want).abs() < 1e-12, "area {} vs {want}", mesh.area);
    assert!(mesh.watertight(), "{mesh:?}");
    for v in &mesh.vertices {
        let y = net.forward(v);
        assert!(y[0].abs() < 1e-12, "mesh vertex {v:?} has f = {}", y[0]);
    }
    // Normals point outwards (towards f > 0).
    for t in &mesh.triangles {
        let [p, q, w] = t.map(|i| mesh.vertices[i as usize]);
        let n = [
            (q[1] - p[1]) * (w[2] - p[2]) - (q[2] - p[2]) * (w[1] - p[1]),
            (q[2] - p[2]) * (w[0] - p[0]) - (q[0] - p[0]) * (w[2] - p[2]),
            (q[0] - p[0]) * (w[1] - p[1]) - (q[1] - p[1]) * (w[0] - p[0]),
        ];
        let c = [(p[0] + q[0] + w[0]) / 3.0, (p[1] + q[1] + w[1]) / 3.0, (p[2] + q[2] + w[2]) / 3.0];
        assert!(n[0] * c[0] + n[1] * c[1] + n[2] * c[2] > 0.0, "a triangle faces inwards");
    }
}

#[test]
fn decision_surfaces_of_random_nets_lie_on_ties() {
    for (first, outputs) in [(21u64, 2usize), (40, 2), (60, 3)] {
        // The first seeded net whose boundary crosses the cube.
        let (seed, net, s) = (first..first + 20)
            .map(|seed| {
                let net = mlp3(seed, &[3, 10, 10, outputs]);
                let s = run(&net, &cube(), Some(Decision::Argmax));
                (seed, net, s)
            })
            .find(|(_, _, s)| s.surface.as_ref().is_some_and(|m| m.triangles.len() > 20))
            .expect("a net whose boundary crosses the cube");
        let mesh = s.surface.as_ref().unwrap();
        if outputs == 2 {
            assert!(mesh.watertight(), "seed {seed}: {} open, {} misoriented", mesh.open_edges, mesh.misoriented_edges);
        }
        for (t, &(a, b)) in mesh.triangles.iter().zip(&mesh.classes) {
            for &i in t {
                let y = net.forward(&mesh.vertices[i as usize]);
                let size = y.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                assert!(
                    (y[a as usize] - y[b as usize]).abs() < 1e-9 * size,
                    "seed {seed}: a mesh vertex is not on a tie"
                );
                let top = y[a as usize].max(y[b as usize]);
                assert!(y.iter().all(|&v| v <= top + 1e-9 * size), "seed {seed}: another class beats the tie");
            }
        }
    }
}

#[test]
fn anchors_span_an_orthonormal_frame_and_bad_slices_are_refused() {
    let mut r = rng(31);
    let n = 6;
    let [a, b, c, d] = [0, 1, 2, 3].map(|_| uniform(&mut r, n, 1.0));
    let s = Slice3::build(n, Space3::Anchors { a: a.clone(), b: b.clone(), c: c.clone(), d: d.clone() }, None).unwrap();
    let coords = s.anchors.unwrap();
    for (anchor, p) in [&a, &b, &c, &d].iter().zip(coords) {
        let x = s.point(p);
        assert!(x.iter().zip(anchor.iter()).all(|(p, q)| (p - q).abs() < 1e-12));
    }
    for i in 0..3 {
        for j in 0..3 {
            let dot: f64 = s.axes[i].iter().zip(&s.axes[j]).map(|(p, q)| p * q).sum();
            assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-12);
        }
    }
    // D in the plane of A, B, C.
    let dd: Vec<f64> = a.iter().zip(&b).zip(&c).map(|((a, b), c)| a + 0.3 * (b - a) + 0.5 * (c - a)).collect();
    let e = Slice3::build(n, Space3::Anchors { a: a.clone(), b: b.clone(), c: c.clone(), d: dd }, None).unwrap_err();
    assert!(e.to_string().contains("coplanar"), "{e}");
    let e = Slice3::build(n, Space3::Anchors { a: a.clone(), b: b.clone(), c: c.clone(), d: vec![0.0; 5] }, None)
        .unwrap_err();
    assert!(e.to_string().contains("anchor D has 5 entries"), "{e}");
    let e = Slice3::build(1, Space3::Identity, None).unwrap_err();
    assert!(e.to_string().contains("3 inputs"), "{e}");
    assert!(Slice3::build(3, Space3::Identity, Some([0.0, 1.0, 1.0, 1.0, 0.0, 1.0])).is_err());
}

#[test]
fn a_3d_slice_of_a_cnn_through_four_images() {
    // conv → relu → max-pool → linear on a 1×6×6 input, through four random images.
    let mut r = rng(41);
    let net = model(
        &[1, 6, 6],
        vec![
            common::conv(&mut r, 1, 2, 3, json!({})),
            json!({"op": "relu"}),
            json!({"op": "max_pool2d", "kernel_size": 2}),
            json!({"op": "flatten"}),
            linear(&mut r, 8, 3),
        ],
    );
    let [a, b, c, d] = [0, 1, 2, 3].map(|_| uniform(&mut r, 36, 1.0));
    let slice = Slice3::build(36, Space3::Anchors { a, b, c, d }, None).unwrap();
    let s = run(&net, &slice, Some(Decision::Argmax));
    assert!(s.summary.regions > 10);
    assert!((s.summary.volume_sum - slice.volume()).abs() < 1e-9 * slice.volume());
    // The independent pattern at each region's centroid is different for every region (the
    // regions are exactly the pattern cells), and it agrees with the region's own pattern.
    let mut codes = std::collections::HashMap::new();
    for reg in &s.regions {
        let code = pattern_code(&net, &slice.point(reg.centroid()));
        assert!(codes.insert(code, reg.pattern.clone()).is_none(), "two regions with one pattern");
    }
    assert_eq!(codes.len() as u64, s.summary.regions);
}
