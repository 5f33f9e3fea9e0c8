//! Any bytes as a .npy array: an array or a clear error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tessera::npy::parse(data);
});
