//! libFuzzer target: `weir_fuzz::segment_recovery`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::segment_recovery(data));
