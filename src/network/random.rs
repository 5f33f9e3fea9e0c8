//! Seeded random networks for examples, benchmarks and tests.

use super::{json, Network};
use rand::{Rng, SeedableRng};
use serde_json::json;

/// A ReLU MLP with `widths` (input first) initialised like PyTorch's `nn.Linear` default:
/// weights and biases uniform in ±1/sqrt(fan_in), rounded to f32 as a PyTorch model would be.
/// Deterministic for a given seed (ChaCha8), but not PyTorch's own random stream.
pub fn relu_mlp(widths: &[usize], seed: u64) -> Network {
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
    let doc = json!({"format": json::FORMAT, "input_shape": [widths[0]], "layers": layers});
    json::parse_value(&doc).unwrap_or_else(|e| unreachable!("a generated MLP is valid: {e}"))
}
