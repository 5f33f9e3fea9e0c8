//! Whole-partition benchmarks: the reference 2-64-64-64-2 network (12,042 regions over [-2, 2]²)
//! and PyTorch's 2-256-256-256-2 ReLU MLP with `torch.manual_seed(0)` (162,097 regions).

use criterion::{criterion_group, criterion_main, Criterion};
use tessera::network::json as model_json;
use tessera::slice::{Domain, Plane, Slice};
use tessera::Options;

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
    g.bench_function("partition", |b| b.iter(|| tessera::partition(&small, &box2, &count).unwrap().regions.len()));
    g.finish();

    // PyTorch's 2-256-256-256-2 ReLU MLP, torch.manual_seed(0): 162,097 regions over [-2, 2]².
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/onnx/mlp_2_256x3_2_ts.onnx");
    let big = tessera::network::onnx::load_path(&path).expect("bundled benchmark network").network;
    let mut g = c.benchmark_group("mlp_2_256x3_2");
    g.sample_size(10);
    g.bench_function("count", |b| b.iter(|| tessera::count(&big, &box2, &count).unwrap().regions));
    g.finish();
}

criterion_group!(partition, benches);
criterion_main!(partition);
