//! Whole-partition benchmarks: the reference 2-64-64-64-2 network and a 2-256-256-256-2 ReLU
//! MLP with PyTorch's default initialisation (seeded here; ~187k regions over [-2, 2]²).

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use serde_json::json;
use tessera::network::json as model_json;
use tessera::slice::{Domain, Plane, Slice};
use tessera::{Network, Options};

fn random_mlp(widths: &[usize], seed: u64) -> Network {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut layers = Vec::new();
    for (i, pair) in widths.windows(2).enumerate() {
        let bound = 1.0 / (pair[0] as f64).sqrt();
        let mut draw = || (rng.random_range(-bound..bound) as f32) as f64;
        let weight: Vec<Vec<f64>> = (0..pair[1]).map(|_| (0..pair[0]).map(|_| draw()).collect()).collect();
        let bias: Vec<f64> = (0..pair[1]).map(|_| draw()).collect();
        layers.push(json!({"op": "linear", "weight": weight, "bias": bias}));
        if i + 2 < widths.len() {
            layers.push(json!({"op": "relu"}));
        }
    }
    model_json::parse_value(&json!({"format": "tessera-model/1", "input_shape": [widths[0]], "layers": layers}))
        .expect("valid model")
}

fn slice(half: f64) -> Slice {
    Slice { plane: Plane::identity2(), domain: Domain::new(-half, half, -half, half).unwrap(), anchors: None }
}

fn benches(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/networks/mlp_2_64x3_2.json");
    let small = model_json::load_path(&path).expect("bundled example");
    let box2 = slice(2.0);
    let count = Options::default();
    let mut g = c.benchmark_group("mlp_2_64x3_2");
    g.bench_function("count", |b| b.iter(|| tessera::count(&small, &box2, &count).unwrap().regions));
    g.bench_function("count_with_vertices", |b| {
        let o = Options { count_vertices: true, ..Options::default() };
        b.iter(|| tessera::count(&small, &box2, &o).unwrap().vertices)
    });
    g.bench_function("partition", |b| b.iter(|| tessera::partition(&small, &box2, &count).unwrap().regions.len()));
    g.finish();

    let big = random_mlp(&[2, 256, 256, 256, 2], 0);
    let mut g = c.benchmark_group("mlp_2_256x3_2");
    g.sample_size(10);
    g.bench_function("count", |b| b.iter(|| tessera::count(&big, &box2, &count).unwrap().regions));
    g.finish();
}

criterion_group!(partition, benches);
criterion_main!(partition);
