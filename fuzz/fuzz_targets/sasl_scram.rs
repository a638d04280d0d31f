//! libFuzzer target: `weir_fuzz::sasl_scram`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::sasl_scram(data));
