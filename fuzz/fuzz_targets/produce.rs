//! libFuzzer target: `weir_fuzz::produce`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::produce(data));
