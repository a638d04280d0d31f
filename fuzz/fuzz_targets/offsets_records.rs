//! libFuzzer target: `weir_fuzz::offsets_records`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::offsets_records(data));
