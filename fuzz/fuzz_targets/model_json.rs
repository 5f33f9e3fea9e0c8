//! Any bytes as a tessera-model/1 file: a network or a clear error, and a loaded network runs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(net) = tessera::network::json::parse_str(&text, "fuzz") {
        let x = vec![0.5; net.input_shape.numel()];
        let _ = net.forward(&x);
    }
});
