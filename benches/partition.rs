//! Whole-partition benchmarks: the reference 2-64-64-64-2 network (12,042 regions over [-2, 2]²),
//! PyTorch's 2-256-256-256-2 ReLU MLP with `torch.manual_seed(0)` (162,097 regions), and the
//! trained CNNs of `assets/bench/` on small boxes of their anchor planes. The full table, at the
//! sizes of the performance targets and with peak memory, comes from `scripts/bench_table.py`.

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

    // The trained CNNs on boxes of their anchor planes (counts as in assets/bench/README.md).
    let mut g = c.benchmark_group("cnn");
    g.sample_size(10);
    for (name, half) in [("lenet5", 1.0), ("allconv", 1.0), ("resnet8", 0.01)] {
        let (net, slice) = anchor_plane(name, half);
        g.bench_function(format!("{name}_count_{half}"), |b| {
            b.iter(|| tessera::count(&net, &slice, &count).unwrap().regions)
        });
    }
    g.finish();

    // Exact 1D paths (`tessera line`): a diagonal of the MLP's box, and LeNet-5 from anchor A
    // to anchor B (two test images).
    let mut g = c.benchmark_group("line");
    g.sample_size(10);
    let argmax = tessera::boundary::Decision::Argmax;
    let diagonal = [vec![-2.0, -2.0], vec![2.0, 1.5]];
    g.bench_function("mlp_2_256x3_2_diagonal", |b| {
        b.iter(|| tessera::line::trace(&big, &diagonal, &argmax).unwrap().pieces.len())
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/bench");
    let lenet = tessera::network::onnx::load_path(&dir.join("lenet5.onnx")).expect("benchmark model").network;
    let anchor = |k: &str| tessera::npy::read(&dir.join(format!("lenet5_{k}.npy"))).expect("anchor").data;
    let ab = [anchor("a"), anchor("b")];
    g.bench_function("lenet5_a_to_b", |b| b.iter(|| tessera::line::trace(&lenet, &ab, &argmax).unwrap().pieces.len()));
    g.bench_function("lenet5_a_to_b_integrated_gradients", |b| {
        b.iter(|| tessera::line::integrated_gradients(&lenet, &ab[0], &ab[1], 1).unwrap().sum)
    });
    g.finish();
}

/// A benchmark CNN and the box `[-half, half]²` of the plane through its three anchors.
fn anchor_plane(name: &str, half: f64) -> (tessera::Network, Slice) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/bench");
    let net = tessera::network::onnx::load_path(&dir.join(format!("{name}.onnx"))).expect("benchmark model").network;
    let anchor = |k: &str| tessera::npy::read(&dir.join(format!("{name}_{k}.npy"))).expect("anchor").data;
    let n = net.input_shape.numel();
    let (plane, _) =
        Plane::from_anchors(&anchor("a"), &anchor("b"), &anchor("c"), n).expect("three independent anchors");
    (net, Slice { plane, domain: Domain::new(-half, half, -half, half).unwrap(), anchors: None })
}

criterion_group!(partition, benches);
criterion_main!(partition);
