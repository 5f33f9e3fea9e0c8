//! Times count-only runs of a model over a box: `time_count MODEL U0,U1,V0,V1 [THREADS] [RUNS]`.
//! (Benchmarks proper live in `benches/`; this is a quick look from the command line.)

use std::time::Instant;
use tessera::slice::{Domain, Plane, Slice};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let net = tessera::network::json::load_path(args[1].as_ref()).expect("model loads");
    let b: Vec<f64> = args[2].split(',').map(|x| x.parse().expect("number")).collect();
    let threads = args.get(3).map_or(0, |t| t.parse().expect("threads"));
    let runs = args.get(4).map_or(5, |t| t.parse().expect("runs"));
    let slice =
        Slice { plane: Plane::identity2(), domain: Domain::new(b[0], b[1], b[2], b[3]).expect("box"), anchors: None };
    let opts = tessera::Options { threads, ..Default::default() };
    let mut best = f64::INFINITY;
    let mut regions = 0;
    for _ in 0..runs {
        let t = Instant::now();
        regions = tessera::count(&net, &slice, &opts).expect("runs").regions;
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{regions} regions, best of {runs}: {best:.4} s");
}
