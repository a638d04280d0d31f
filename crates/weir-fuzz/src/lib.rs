//! The bodies of Weir's fuzz targets: one function per input parser, each taking
//! arbitrary bytes and checking the invariant every parser keeps on input from outside:
//! no panic, no allocation sized by an unchecked length, a clear error.
//!
//! The libFuzzer targets in `fuzz/` (its own workspace, run with `cargo fuzz`) call these
//! functions, and `tests/it/corpus.rs` replays every committed corpus and regression file
//! through them in the default `cargo test`, so CI checks them without cargo-fuzz.
//!
//! Architecture invariant: this crate only calls the other crates' public APIs (plus the
//! `#[doc(hidden)]` replay hook of weir-cluster's group coordinator and weir-security's
//! fixed-nonce SCRAM constructors); it adds no logic of its own beyond splitting the fuzz
//! input and mirroring the broker's produce checks.

mod targets;

pub use targets::{
    SCRAM_PASSWORD, SCRAM_SERVER_NONCE, SCRAM_USER, TARGETS, Target, batch, cluster_files,
    kafka_frame, kafka_request, log_files, offsets_records, produce, sasl_credentials, sasl_scram,
    scram_lookup, segment_recovery,
};
