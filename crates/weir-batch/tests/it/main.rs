//! weir-batch's integration tests, one binary: the codec against an independent
//! implementation (`kafka_compat`) and decompression bombs under a counting allocator
//! (`bomb`, which installs the binary's allocator and counts per thread).

mod bomb;
mod kafka_compat;
