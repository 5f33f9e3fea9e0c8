//! Writes a ReLU MLP with PyTorch's default initialisation as tessera-model/1 JSON:
//! `cargo run --release --example random_mlp -- 2,256,256,256,2 0 > mlp.json`

fn main() {
    let mut args = std::env::args().skip(1);
    let widths: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "2,64,64,64,2".into())
        .split(',')
        .map(|w| w.parse().expect("widths are integers"))
        .collect();
    let seed: u64 = args.next().map_or(0, |s| s.parse().expect("the seed is an integer"));
    let net = tessera::network::random::relu_mlp(&widths, seed);
    println!("{}", tessera::network::json::to_value(&net));
}
