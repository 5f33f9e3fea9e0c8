//! Regenerates the pictures shown in README.md (and the small CNN they use):
//! `cargo run --release --example pictures`
//!
//! - `assets/pictures/mlp_2_64x3_2.png`: the bundled reference MLP over [-2, 2]², coloured by
//!   class, edges coloured by the layer that created them, decision boundary in bold.
//! - `assets/networks/cnn_1x8x8.json` + `assets/anchors/{a,b,c}.npy`: a seeded CNN
//!   (conv, batch-norm, ReLU, max-pool, linear) and three 8×8 images (bars and a diagonal).
//! - `assets/pictures/cnn_anchor_plane.png`: its partition on the plane through the images.

use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::Path;
use tessera::boundary::{decision_boundary, Decision};
use tessera::render::{render_png, ColorScheme, EdgeMode, RenderOptions, Scene};
use tessera::slice::{Domain, Plane, Slice};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join("assets/pictures")).unwrap();
    std::fs::create_dir_all(root.join("assets/anchors")).unwrap();

    let mlp = tessera::network::json::load_path(&root.join("assets/networks/mlp_2_64x3_2.json")).unwrap();
    let slice = Slice { plane: Plane::identity2(), domain: Domain::new(-2.0, 2.0, -2.0, 2.0).unwrap(), anchors: None };
    picture(
        &mlp,
        &slice,
        "mlp_2_64x3_2: classes, edges by layer",
        &root.join("assets/pictures/mlp_2_64x3_2.png"),
        EdgeMode::Layer,
    );

    let images = anchor_images();
    let (plane, coords) = Plane::from_anchors(&images[0], &images[1], &images[2], 64).unwrap();
    let slice = Slice { plane, domain: Domain::around(&coords, 0.25).unwrap(), anchors: Some(coords) };
    // The first seed whose network changes its prediction somewhere on the plane.
    let cnn = (0..)
        .map(small_cnn)
        .find(|net| {
            let part = tessera::partition(net, &slice, &tessera::Options::default()).unwrap();
            decision_boundary(&part, &Decision::Argmax).length > 0.0
        })
        .unwrap();
    let doc = tessera::network::json::to_value(&cnn);
    std::fs::write(root.join("assets/networks/cnn_1x8x8.json"), serde_json::to_string(&doc).unwrap()).unwrap();
    for (name, img) in ["a", "b", "c"].iter().zip(&images) {
        std::fs::write(root.join(format!("assets/anchors/{name}.npy")), tessera::npy::to_bytes_f32(&[1, 8, 8], img))
            .unwrap();
    }
    picture(
        &cnn,
        &slice,
        "cnn_1x8x8 on the plane through three images",
        &root.join("assets/pictures/cnn_anchor_plane.png"),
        EdgeMode::Plain,
    );
}

fn picture(net: &tessera::Network, slice: &Slice, title: &str, path: &Path, edges: EdgeMode) {
    let part = tessera::partition(net, slice, &tessera::Options::default()).unwrap();
    let boundary = decision_boundary(&part, &Decision::for_outputs(net.output_shape().numel(), None));
    let opts = RenderOptions {
        size: (900, 760),
        color: ColorScheme::Class,
        edges,
        axes: true,
        title: Some(format!("{title} ({} regions)", part.regions.len())),
    };
    let scene = Scene { partition: &part, boundary: Some(&boundary), anchors: slice.anchors };
    std::fs::write(path, render_png(&scene, &opts)).unwrap();
    println!("{}: {} regions, boundary length {:.4}", path.display(), part.regions.len(), boundary.length);
}

/// Three 8×8 images: a vertical bar, a horizontal bar and a diagonal.
fn anchor_images() -> [Vec<f64>; 3] {
    let img = |f: &dyn Fn(usize, usize) -> bool| -> Vec<f64> {
        (0..64).map(|i| if f(i / 8, i % 8) { 1.0 } else { 0.0 }).collect()
    };
    [img(&|_, c| c == 3 || c == 4), img(&|r, _| r == 3 || r == 4), img(&|r, c| r == c || r + 1 == c)]
}

fn small_cnn(seed: u64) -> tessera::Network {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |n: usize, bound: f64| -> Vec<f64> {
        (0..n).map(|_| ((rng.random_range(-bound..bound)) as f32) as f64).collect()
    };
    let c1: Vec<Vec<Vec<Vec<f64>>>> =
        (0..4).map(|_| vec![draw(9, 1.0 / 3.0).chunks(3).map(|r| r.to_vec()).collect()]).collect();
    let b1 = draw(4, 1.0 / 3.0);
    let w2: Vec<Vec<f64>> = (0..10).map(|_| draw(64, 0.125)).collect();
    let b2 = draw(10, 0.125);
    let w3: Vec<Vec<f64>> = (0..3).map(|_| draw(10, 0.3)).collect();
    let b3 = draw(3, 0.3);
    let doc = json!({"format": "tessera-model/1", "input_shape": [1, 8, 8], "layers": [
        {"op": "conv2d", "weight": c1, "bias": b1, "padding": 1},
        {"op": "batch_norm", "weight": [1.0, 0.8, 1.2, 0.9], "bias": [0.0, 0.1, -0.1, 0.05],
         "running_mean": [0.0, 0.05, -0.05, 0.0], "running_var": [0.5, 0.4, 0.6, 0.5], "eps": 1e-5},
        {"op": "relu"},
        {"op": "max_pool2d", "kernel_size": 2},
        {"op": "flatten"},
        {"op": "linear", "weight": w2, "bias": b2},
        {"op": "relu"},
        {"op": "linear", "weight": w3, "bias": b3}]});
    tessera::network::json::parse_value(&doc).unwrap()
}
