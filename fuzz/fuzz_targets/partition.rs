//! Small models from any bytes, partitioned over a box under region and time limits: whenever it
//! completes, the partition must check itself (forward passes, patterns rebuilding maps), agree
//! with the dense reference path, and, when small, pass the exact certificate.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tessera::slice::{Domain, Plane, Slice};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(net) = tessera::network::json::parse_str(&text, "fuzz") else { return };
    let n = net.input_shape.numel();
    if n > 64 || net.parameter_count() > 4096 {
        return;
    }
    let plane = if n == 2 {
        Plane::identity2()
    } else {
        let v = |k: usize| (0..n).map(|i| ((i * 7 + k * 3) % 5) as f64 - 2.0).collect::<Vec<f64>>();
        match Plane::from_vectors(v(0), v(1), v(2), n) {
            Ok(p) => p,
            Err(_) => return,
        }
    };
    let slice = Slice { plane, domain: Domain::new(-1.5, 1.0, -1.0, 2.0).unwrap(), anchors: None };
    let opts = tessera::Options {
        threads: 1,
        max_regions: Some(20_000),
        time_limit: Some(std::time::Duration::from_secs(2)),
        ..Default::default()
    };
    if let Ok(part) = tessera::partition(&net, &slice, &opts) {
        let report = tessera::check(&net, &slice, &part, 200, 1);
        assert!(report.is_ok(), "{:?}", report.violations);
        let dense = tessera::Options { dense_reference: true, ..opts.clone() };
        if let Ok(reference) = tessera::count(&net, &slice, &dense) {
            assert_eq!(reference.regions, part.regions.len() as u64, "the dense reference path disagrees");
        }
        if part.regions.len() <= 300 && net.parameter_count() <= 512 {
            let cert = tessera::certify::certify(&net, &slice, &part);
            assert!(cert.is_ok(), "{:?}", cert.violations);
        }
    }
});
