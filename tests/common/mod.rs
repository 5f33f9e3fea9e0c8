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

/// Checks a partition against its invariants, the forward pass, the maps its patterns rebuild,
/// and a forward pass written here independently of the library's layers; returns it.
pub fn checked(net: &Network, slice: &Slice, threads: usize) -> tessera::Partition {
    let opts = tessera::Options { threads, ..Default::default() };
    let part = tessera::partition(net, slice, &opts).expect("partition succeeds");
    let report = tessera::check(net, slice, &part, 2000, 5);
    assert!(report.is_ok(), "{:?}", &report.violations[..report.violations.len().min(5)]);
    let naive = |p: [f64; 2]| naive_forward(net, &slice.plane.point(p[0], p[1]));
    let report = part.sanity_check(1000, 6, Some(&naive));
    assert!(report.is_ok(), "naive oracle: {:?}", &report.violations[..report.violations.len().min(5)]);
    assert_eq!(part.summary.dropped_slivers, 0);
    part
}

/// A forward pass written with plain loops from the layers' definitions (PyTorch semantics),
/// sharing no code with the library's `Layer::apply`.
pub fn naive_forward(net: &Network, x: &[f64]) -> Vec<f64> {
    use tessera::network::{LayerKind, Merge, Src};
    let mut outs: Vec<Vec<f64>> = Vec::new();
    for n in &net.nodes {
        let read = |s: &Src| match *s {
            Src::Input => x.to_vec(),
            Src::Node(j) => outs[j].clone(),
        };
        let y = match &n.layer.kind {
            LayerKind::Merge(m) => {
                let ins: Vec<Vec<f64>> = n.inputs.iter().map(read).collect();
                match m {
                    Merge::Concat => ins.concat(),
                    _ => (0..ins[0].len())
                        .map(|i| {
                            let vals = ins.iter().map(|v| v[i]);
                            match m {
                                Merge::Add => vals.sum(),
                                Merge::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                                _ => vals.fold(f64::INFINITY, f64::min),
                            }
                        })
                        .collect(),
                }
            }
            _ => naive_layer(&n.layer, &read(&n.inputs[0])),
        };
        outs.push(y);
    }
    outs.pop().unwrap_or_else(|| x.to_vec())
}

fn naive_layer(l: &tessera::network::Layer, x: &[f64]) -> Vec<f64> {
    use tessera::network::{Activation, Gather, LayerKind, Shape};
    let dims = |s: Shape| match s {
        Shape::Image { c, h, w } => (c, h, w),
        Shape::Flat(n) => (n, 1, 1),
    };
    let (ic, ih, iw) = dims(l.input);
    let (oc, oh, ow) = dims(l.output);
    // The input at (channel, row, column), or None in the padding.
    let at = |c: usize, y: i64, xx: i64| -> Option<f64> {
        (y >= 0 && xx >= 0 && (y as usize) < ih && (xx as usize) < iw)
            .then(|| x[(c * ih + y as usize) * iw + xx as usize])
    };
    match &l.kind {
        LayerKind::Linear { weight, bias } => {
            (0..oc).map(|o| bias[o] + (0..x.len()).map(|i| weight[o * x.len() + i] * x[i]).sum::<f64>()).collect()
        }
        LayerKind::Conv2d { weight, bias, window, groups } => {
            let (icg, ocg) = (ic / groups, oc / groups);
            let [kh, kw] = window.kernel;
            let mut y = vec![0.0; oc * oh * ow];
            for o in 0..oc {
                for r in 0..oh {
                    for c in 0..ow {
                        let mut acc = bias[o];
                        for ci in 0..icg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let yy = (r * window.stride[0] + ky * window.dilation[0]) as i64
                                        - window.padding[0] as i64;
                                    let xx = (c * window.stride[1] + kx * window.dilation[1]) as i64
                                        - window.padding[1] as i64;
                                    if let Some(v) = at((o / ocg) * icg + ci, yy, xx) {
                                        acc += weight[((o * icg + ci) * kh + ky) * kw + kx] * v;
                                    }
                                }
                            }
                        }
                        y[(o * oh + r) * ow + c] = acc;
                    }
                }
            }
            y
        }
        LayerKind::BatchNorm { scale, shift } => {
            let per = x.len() / scale.len();
            x.iter().enumerate().map(|(i, v)| scale[i / per] * v + shift[i / per]).collect()
        }
        LayerKind::Scale { scale, shift } => x.iter().enumerate().map(|(i, v)| scale[i] * v + shift[i]).collect(),
        LayerKind::Gather(g) => g.index.iter().map(|&j| if j == Gather::ZERO { 0.0 } else { x[j as usize] }).collect(),
        LayerKind::AvgPool2d { window, .. } | LayerKind::MaxPool2d { window } => {
            let avg = matches!(l.kind, LayerKind::AvgPool2d { .. });
            let include_pad = matches!(l.kind, LayerKind::AvgPool2d { count_include_pad: true, .. });
            let mut y = vec![0.0; oc * oh * ow];
            for c in 0..oc {
                for r in 0..oh {
                    for q in 0..ow {
                        let (mut sum, mut best, mut count) = (0.0, f64::NEG_INFINITY, 0usize);
                        for ky in 0..window.kernel[0] {
                            for kx in 0..window.kernel[1] {
                                let yy =
                                    (r * window.stride[0] + ky * window.dilation[0]) as i64 - window.padding[0] as i64;
                                let xx =
                                    (q * window.stride[1] + kx * window.dilation[1]) as i64 - window.padding[1] as i64;
                                if let Some(v) = at(c, yy, xx) {
                                    sum += v;
                                    best = best.max(v);
                                    count += 1;
                                } else if include_pad
                                    && yy < (ih + window.padding_end[0]) as i64
                                    && xx < (iw + window.padding_end[1]) as i64
                                {
                                    // Padding counts in the divisor, what lies beyond it does not.
                                    count += 1;
                                }
                            }
                        }
                        y[(c * oh + r) * ow + q] = if avg { sum / count as f64 } else { best };
                    }
                }
            }
            y
        }
        LayerKind::Reshape => x.to_vec(),
        LayerKind::Maxout { pool } => {
            x.chunks(*pool).map(|g| g.iter().copied().fold(f64::NEG_INFINITY, f64::max)).collect()
        }
        LayerKind::Activation(act) => {
            let per = x.len() / l.input.channels().max(1);
            x.iter()
                .enumerate()
                .map(|(i, &z)| match act {
                    Activation::Relu => z.max(0.0),
                    Activation::LeakyRelu { slope } => {
                        if z < 0.0 {
                            slope * z
                        } else {
                            z
                        }
                    }
                    Activation::PRelu { slopes } => {
                        let a = if slopes.len() == 1 { slopes[0] } else { slopes[i / per] };
                        if z < 0.0 {
                            a * z
                        } else {
                            z
                        }
                    }
                    Activation::Abs => z.abs(),
                    Activation::HardTanh { min, max } => z.max(*min).min(*max),
                })
                .collect()
        }
        LayerKind::Merge(_) => unreachable!("joins are handled by naive_forward"),
    }
}

/// Distinct activation patterns seen on an `n × n` grid (cell centres): a lower bound on the
/// region count, computed by a forward pass that records every unit's piece.
pub fn grid_patterns(net: &Network, slice: &Slice, n: usize) -> usize {
    let d = slice.domain;
    let mut seen = std::collections::HashSet::new();
    for i in 0..n {
        for j in 0..n {
            let u = d.u0 + (i as f64 + 0.5) / n as f64 * (d.u1 - d.u0);
            let v = d.v0 + (j as f64 + 0.5) / n as f64 * (d.v1 - d.v0);
            seen.insert(pattern_code(net, &slice.plane.point(u, v)));
        }
    }
    seen.len()
}

/// The activation pattern at input `x` as one code per unit (hinges passed, or the winner's
/// position), by a plain forward pass written here.
pub fn pattern_code(net: &Network, x: &[f64]) -> Vec<u8> {
    use tessera::network::{LayerKind, Merge, Src};
    let x = x.to_vec();
    let mut code: Vec<u8> = Vec::new();
    let mut outs: Vec<Vec<f64>> = Vec::new();
    for n in &net.nodes {
        let read = |s: &Src| match *s {
            Src::Input => x.clone(),
            Src::Node(j) => outs[j].clone(),
        };
        let l = &n.layer;
        let mut y = vec![0.0; l.output.numel()];
        let x = read(&n.inputs[0]);
        match &l.kind {
            LayerKind::Merge(m) => {
                let ins: Vec<Vec<f64>> = n.inputs.iter().map(read).collect();
                let refs: Vec<&[f64]> = ins.iter().map(|v| v.as_slice()).collect();
                y = tessera::network::Layer::merge(*m, &refs);
                if matches!(m, Merge::Max | Merge::Min) {
                    for i in 0..y.len() {
                        code.push(ins.iter().position(|v| v[i] == y[i]).unwrap_or(0) as u8);
                    }
                }
            }
            _ => l.apply(&x, &mut y),
        }
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
        outs.push(y);
    }
    code
}

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

/// An onnxruntime reference (`.ref.json`, written by scripts/make_assets.py and
/// scripts/make_op_assets.py): the slice, the probe points, onnxruntime's outputs there, and the
/// exporter tags of the files it covers.
pub type OnnxReference = (Slice, Vec<[f64; 2]>, Vec<Vec<f64>>, Vec<String>);

/// Reads an onnxruntime reference.
pub fn onnx_reference(path: &std::path::Path) -> OnnxReference {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let vec = |k: &str| -> Vec<f64> { serde_json::from_value(v["plane"][k].clone()).unwrap() };
    let b: Vec<f64> = serde_json::from_value(v["box"].clone()).unwrap();
    let n = vec("origin").len();
    let slice = Slice {
        plane: tessera::slice::Plane::from_vectors(vec("origin"), vec("du"), vec("dv"), n).unwrap(),
        domain: tessera::slice::Domain::new(b[0], b[1], b[2], b[3]).unwrap(),
        anchors: None,
    };
    let tags = serde_json::from_value(v["exporters"].clone()).unwrap_or_else(|_| vec!["ts".to_string()]);
    let probes = serde_json::from_value(v["probe_uv"].clone()).unwrap();
    (slice, probes, serde_json::from_value(v["probe_out"].clone()).unwrap(), tags)
}
