//! libFuzzer target: `weir_fuzz::cluster_files`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::cluster_files(data));
