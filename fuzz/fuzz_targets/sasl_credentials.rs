//! libFuzzer target: `weir_fuzz::sasl_credentials`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::sasl_credentials(data));
