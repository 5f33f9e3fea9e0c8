//! Whole-partition benchmarks: the reference 2-64-64-64-2 network (12,042 regions over [-2, 2]²),
//! PyTorch's 2-256-256-256-2 ReLU MLP with `torch.manual_seed(0)` (162,097 regions), and the
//! trained CNNs of `assets/bench/` on small boxes of their anchor planes. The full table, at the
//! sizes of the performance targets and with peak memory, comes from `scripts/bench_table.py`.

use criterion::{criterion_group, criterion_main, Criterion};

// The allocator of the binary and the Python extension, so that the figures are what users get
// (the system allocator made a tenth of a path's time malloc and free).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
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

    // 3D (`map --dims 3`): a 3-64-64-2 ReLU MLP (seeded, PyTorch's default uniform
    // initialisation) over [-1, 1]³, counting; and the bundled torus SDF with its zero-level mesh.
    let mut g = c.benchmark_group("solid");
    g.sample_size(10);
    let cube = tessera::solid::Slice3::build(3, tessera::solid::Space3::Identity, None).unwrap();
    let mlp3 = mlp(&[3, 64, 64, 2], 0);
    let count3 = tessera::solid::Options3::default();
    let regions = tessera::solid::partition3(&mlp3, &cube, &count3).unwrap().summary.regions;
    eprintln!("solid/mlp_3_64x2_2: {regions} regions over [-1, 1]³");
    g.bench_function("mlp_3_64x2_2_count", |b| {
        b.iter(|| tessera::solid::partition3(&mlp3, &cube, &count3).unwrap().summary.regions)
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/networks/sdf_torus_3_32x2_1.json");
    let torus = model_json::load_path(&path).expect("bundled example");
    let mesh = tessera::solid::Options3 {
        surface: Some(tessera::boundary::Decision::for_outputs(1, None)),
        ..Default::default()
    };
    g.bench_function("sdf_torus_mesh", |b| {
        b.iter(|| tessera::solid::partition3(&torus, &cube, &mesh).unwrap().surface.map(|m| m.triangles.len()))
    });
    g.finish();

    // Analyses of a finished partition (`tessera::analysis`): the 162,097-region MLP (768 units)
    // and LeNet-5 on [-1, 1]² of its anchor plane (its conv and pool units).
    let mut g = c.benchmark_group("analysis");
    g.sample_size(10);
    let part = tessera::partition(&big, &box2, &count).unwrap();
    g.bench_function("mlp_2_256x3_2_neurons", |b| {
        b.iter(|| tessera::analysis::neurons::neuron_report(&big, &part).unwrap().units())
    });
    g.bench_function("mlp_2_256x3_2_pieces", |b| {
        b.iter(|| tessera::analysis::pieces::linear_pieces(&part).pieces.len())
    });
    let (lenet, lenet_slice) = anchor_plane("lenet5", 1.0);
    let lenet_part = tessera::partition(&lenet, &lenet_slice, &count).unwrap();
    g.bench_function("lenet5_neurons_1.0", |b| {
        b.iter(|| tessera::analysis::neurons::neuron_report(&lenet, &lenet_part).unwrap().units())
    });
    g.finish();
}

/// A ReLU MLP of the given widths, weights and biases uniform in ±1/√fan_in (seeded).
fn mlp(widths: &[usize], seed: u64) -> tessera::Network {
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut layers = Vec::new();
    for (k, w) in widths.windows(2).enumerate() {
        let b = 1.0 / (w[0] as f64).sqrt();
        let weight: Vec<Vec<f64>> = (0..w[1]).map(|_| (0..w[0]).map(|_| r.random_range(-b..b)).collect()).collect();
        let bias: Vec<f64> = (0..w[1]).map(|_| r.random_range(-b..b)).collect();
        layers.push(serde_json::json!({"op": "linear", "weight": weight, "bias": bias}));
        if k + 2 < widths.len() {
            layers.push(serde_json::json!({"op": "relu"}));
        }
    }
    let doc = serde_json::json!({"format": "tessera-model/1", "input_shape": [widths[0]], "layers": layers});
    model_json::parse_value(&doc).expect("a valid model")
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
