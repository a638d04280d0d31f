//! libFuzzer target: `weir_fuzz::kafka_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::kafka_request(data));
