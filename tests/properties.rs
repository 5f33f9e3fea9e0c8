//! Property tests over random small networks of every layer type and random boxes: the
//! partition checks itself, and every random probe point's forward pass equals its region's map.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use tessera::slice::Slice;

fn activation(kind: u8, rng: &mut rand_chacha::ChaCha8Rng, width: usize) -> Value {
    use rand::Rng;
    match kind % 6 {
        0 => json!({"op": "relu"}),
        1 => json!({"op": "leaky_relu", "negative_slope": rng.random_range(-0.5..0.5)}),
        2 => json!({"op": "abs"}),
        3 => json!({"op": "hardtanh", "min_val": -0.4, "max_val": rng.random_range(0.1..1.0)}),
        4 => json!({"op": "relu6"}),
        _ => json!({"op": "prelu", "weight": uniform(rng, width, 1.0)}),
    }
}

fn check_probes(net: &tessera::Network, slice: &Slice, seed: u64) -> Result<(), TestCaseError> {
    use rand::Rng;
    let part = checked(net, slice, 2);
    let mut r = rng(seed);
    let d = slice.domain;
    for _ in 0..200 {
        let p = [r.random_range(d.u0..d.u1), r.random_range(d.v0..d.v1)];
        if let Some(i) = part.locate(p) {
            let err = part.map_error(&part.eval_uv(i, p), &tessera::forward_at(net, slice, p));
            prop_assert!(err < 1e-9, "probe {:?} in region {}: error {}", p, i, err);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn random_mlps(seed in 0u64..1_000_000, widths in prop::collection::vec(1usize..=8, 1..=4),
                   kinds in prop::collection::vec(0u8..8, 4), scale in 0.05f64..20.0,
                   cu in -3.0f64..3.0, cv in -3.0f64..3.0, aspect in 0.2f64..5.0) {
        let mut r = rng(seed);
        let mut layers = Vec::new();
        let mut width = 2;
        for (i, &w) in widths.iter().enumerate() {
            match kinds[i] {
                6 => {
                    // maxout over pairs: twice the width, then pooled.
                    layers.push(linear(&mut r, width, 2 * w));
                    layers.push(json!({"op": "maxout", "pool_size": 2}));
                }
                7 => {
                    layers.push(linear(&mut r, width, w));
                    layers.push(batch_norm(&mut r, w));
                    layers.push(json!({"op": "relu"}));
                }
                k => {
                    layers.push(linear(&mut r, width, w));
                    layers.push(activation(k, &mut r, w));
                }
            }
            width = w;
        }
        layers.push(linear(&mut r, width, 2));
        let net = model(&[2], layers);
        let half = [scale * aspect.sqrt(), scale / aspect.sqrt()];
        let slice = plane_slice([cu - half[0], cu + half[0], cv - half[1], cv + half[1]]);
        check_probes(&net, &slice, seed)?;
    }

    #[test]
    fn random_cnns(seed in 0u64..1_000_000, c_in in 1usize..=2, c_mid in 1usize..=3, k in 1usize..=3,
                   pad in 0usize..=1, act in 0u8..6, pool in 0u8..3) {
        let mut r = rng(seed);
        let (h, w) = (4, 5);
        let mut layers = vec![conv(&mut r, c_in, c_mid, k, json!({"padding": pad}))];
        let (oh, ow) = (h + 2 * pad - k + 1, w + 2 * pad - k + 1);
        layers.push(batch_norm(&mut r, c_mid));
        layers.push(activation(act, &mut r, c_mid));
        let (ph, pw) = match pool {
            0 => { layers.push(json!({"op": "max_pool2d", "kernel_size": 2, "stride": 1})); (oh - 1, ow - 1) }
            1 => { layers.push(json!({"op": "avg_pool2d", "kernel_size": 2, "stride": 1})); (oh - 1, ow - 1) }
            _ => (oh, ow),
        };
        layers.push(json!({"op": "flatten"}));
        layers.push(linear(&mut r, c_mid * ph * pw, 3));
        let net = model(&[c_in, h, w], layers);
        let n = c_in * h * w;
        let slice = random_plane(&mut r, n, [-1.0, 1.0, -1.0, 1.0]);
        check_probes(&net, &slice, seed)?;
    }
}
