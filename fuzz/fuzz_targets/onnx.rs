//! Any bytes as an ONNX model: a network or a clear error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(lowered) = tessera::network::onnx::parse_bytes(data, "fuzz.onnx", None) {
        let x = vec![0.5; lowered.network.input_shape.numel()];
        let _ = lowered.network.forward(&x);
    }
});
