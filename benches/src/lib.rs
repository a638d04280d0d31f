//! Weir's storage benchmarks: what the criterion benches (`benches/`) and the
//! `weir-storage-bench` binary share.
//!
//! - [`workload`]: deterministic record payloads and RecordBatch v2 batches built the way a
//!   producer builds them, so every bench measures the same bytes.
//! - [`byte_size`]: `64KiB`-style sizes for the command line and for printing.
//!
//! Architecture invariant: this crate only drives `weir-log` through its public API, as a
//! broker would; it never reaches into the log's files except to compare against plain
//! file I/O of the same bytes.

pub mod byte_size;
pub mod workload;
