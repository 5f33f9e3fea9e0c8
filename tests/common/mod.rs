//! Seeded generators of small networks for the integration tests.

#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tessera::network::{json as model_json, Network};
use tessera::slice::{Domain, Plane, Slice};

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn uniform(rng: &mut ChaCha8Rng, n: usize, bound: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

pub fn linear(rng: &mut ChaCha8Rng, n_in: usize, n_out: usize) -> Value {
    let bound = 1.0 / (n_in as f64).sqrt();
    let weight: Vec<Vec<f64>> = (0..n_out).map(|_| uniform(rng, n_in, bound)).collect();
    json!({"op": "linear", "weight": weight, "bias": uniform(rng, n_out, bound)})
}

pub fn conv(rng: &mut ChaCha8Rng, c_in: usize, c_out: usize, k: usize, extra: Value) -> Value {
    let bound = 1.0 / ((c_in * k * k) as f64).sqrt();
    let weight: Vec<Vec<Vec<Vec<f64>>>> =
        (0..c_out).map(|_| (0..c_in).map(|_| (0..k).map(|_| uniform(rng, k, bound)).collect()).collect()).collect();
    let mut layer = json!({"op": "conv2d", "weight": weight, "bias": uniform(rng, c_out, bound)});
    if let (Some(obj), Some(more)) = (layer.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    layer
}

pub fn batch_norm(rng: &mut ChaCha8Rng, c: usize) -> Value {
    let var: Vec<f64> = (0..c).map(|_| rng.random_range(0.5..2.0)).collect();
    json!({"op": "batch_norm", "weight": uniform(rng, c, 1.5), "bias": uniform(rng, c, 0.5),
           "running_mean": uniform(rng, c, 0.3), "running_var": var, "eps": 1e-5})
}

pub fn model(input_shape: &[usize], layers: Vec<Value>) -> Network {
    let doc = json!({"format": "tessera-model/1", "input_shape": input_shape, "layers": layers});
    model_json::parse_value(&doc).expect("generated model is valid")
}

pub fn plane_slice(b: [f64; 4]) -> Slice {
    Slice { plane: Plane::identity2(), domain: Domain::new(b[0], b[1], b[2], b[3]).unwrap(), anchors: None }
}

/// A 2-input MLP: linear(2→w) then, for each activation, `act` and linear(w→w), ending with
/// linear(w→out).
pub fn mlp(seed: u64, widths: &[usize], act: Value) -> Network {
    let mut r = rng(seed);
    let mut layers = Vec::new();
    for (i, pair) in widths.windows(2).enumerate() {
        layers.push(linear(&mut r, pair[0], pair[1]));
        if i + 2 < widths.len() {
            layers.push(act.clone());
        }
    }
    model(&[widths[0]], layers)
}

/// Checks a partition against its invariants and the forward pass; returns it.
pub fn checked(net: &Network, slice: &Slice, threads: usize) -> tessera::Partition {
    let opts = tessera::Options { threads, ..Default::default() };
    let part = tessera::partition(net, slice, &opts).expect("partition succeeds");
    let oracle = |p: [f64; 2]| tessera::forward_at(net, slice, p);
    let report = part.sanity_check(3000, 5, Some(&oracle));
    assert!(report.is_ok(), "{:?}", &report.violations[..report.violations.len().min(5)]);
    assert_eq!(part.summary.dropped_slivers, 0);
    part
}

/// Distinct activation patterns seen on an `n × n` grid (cell centres): a lower bound on the
/// region count, computed by a forward pass that records every unit's piece.
pub fn grid_patterns(net: &Network, slice: &Slice, n: usize) -> usize {
    use tessera::network::LayerKind;
    let d = slice.domain;
    let mut seen = std::collections::HashSet::new();
    for i in 0..n {
        for j in 0..n {
            let u = d.u0 + (i as f64 + 0.5) / n as f64 * (d.u1 - d.u0);
            let v = d.v0 + (j as f64 + 0.5) / n as f64 * (d.v1 - d.v0);
            let mut x = slice.plane.point(u, v);
            let mut code: Vec<u8> = Vec::new();
            for l in &net.layers {
                let mut y = vec![0.0; l.output.numel()];
                l.apply(&x, &mut y);
                match &l.kind {
                    LayerKind::Activation(a) => {
                        let per = l.input.per_channel();
                        for (k, &z) in x.iter().enumerate() {
                            let f = a.hinge_form(k / per);
                            code.push(f.hinges().iter().filter(|h| z > h.0).count() as u8);
                        }
                    }
                    LayerKind::MaxPool2d { .. } | LayerKind::Maxout { .. } => {
                        for g in l.max_groups() {
                            let best = g.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (p, &k)| {
                                if x[k as usize] > b.1 {
                                    (p, x[k as usize])
                                } else {
                                    b
                                }
                            });
                            code.push(best.0 as u8);
                        }
                    }
                    _ => {}
                }
                x = y;
            }
            seen.insert(code);
        }
    }
    seen.len()
}

/// The first seeded network whose classes (under `d`) take at least `k` values on a coarse grid.
pub fn first_with_classes(
    widths: &[usize],
    act: Value,
    slice: &Slice,
    d: &tessera::boundary::Decision,
    k: usize,
) -> Network {
    (100..200)
        .map(|seed| mlp(seed, widths, act.clone()))
        .find(|net| {
            let dom = slice.domain;
            let mut seen = std::collections::HashSet::new();
            for i in 0..20 {
                for j in 0..20 {
                    let p = [
                        dom.u0 + (i as f64 + 0.5) / 20.0 * (dom.u1 - dom.u0),
                        dom.v0 + (j as f64 + 0.5) / 20.0 * (dom.v1 - dom.v0),
                    ];
                    seen.insert(d.class_of(&tessera::forward_at(net, slice, p)));
                }
            }
            seen.len() >= k
        })
        .expect("some seed gives that many classes")
}

/// Distance from `p` to the segment `ab`.
pub fn dist_to_segment(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 { (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
    (p[0] - a[0] - t * dx).hypot(p[1] - a[1] - t * dy)
}

/// A seeded random plane through an `n`-input model, over `domain`.
pub fn random_plane(r: &mut ChaCha8Rng, n: usize, domain: [f64; 4]) -> Slice {
    Slice {
        plane: Plane::from_vectors(uniform(r, n, 1.0), uniform(r, n, 1.0), uniform(r, n, 1.0), n).unwrap(),
        domain: Domain::new(domain[0], domain[1], domain[2], domain[3]).unwrap(),
        anchors: None,
    }
}
