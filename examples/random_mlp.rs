//! Writes a ReLU MLP with PyTorch's default initialisation (weights and biases uniform in
//! ±1/sqrt(fan_in)) as tessera-model/1 JSON.
//!
//! `cargo run --release --example random_mlp -- 2,256,256,256,2 0 > mlp.json`

use rand::{Rng, SeedableRng};
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let widths: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "2,64,64,64,2".into())
        .split(',')
        .map(|w| w.parse().expect("widths are integers"))
        .collect();
    let seed: u64 = args.next().map_or(0, |s| s.parse().expect("the seed is an integer"));
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
    let doc = json!({"format": "tessera-model/1", "input_shape": [widths[0]], "layers": layers});
    println!("{doc}");
}
