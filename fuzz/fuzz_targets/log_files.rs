//! libFuzzer target: `weir_fuzz::log_files`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::log_files(data));
