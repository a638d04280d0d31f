//! Tells the bench which versions of the peer clients it was built with, read from the
//! workspace's Cargo.lock, so every result names its client exactly.

use std::env;
use std::fs;
use std::path::PathBuf;

/// The clients whose versions results report, and the variable each one's goes in.
const CLIENTS: [(&str, &str); 5] = [
    ("async-nats", "WEIR_PEER_BENCH_ASYNC_NATS_VERSION"),
    ("redis", "WEIR_PEER_BENCH_REDIS_VERSION"),
    (
        "rabbitmq-stream-client",
        "WEIR_PEER_BENCH_RABBITMQ_STREAM_CLIENT_VERSION",
    ),
    ("rdkafka", "WEIR_PEER_BENCH_RDKAFKA_VERSION"),
    ("lapin", "WEIR_PEER_BENCH_LAPIN_VERSION"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    // benches/peers -> the workspace root.
    let lock = manifest_dir.join("../../Cargo.lock");
    println!("cargo::rerun-if-changed={}", lock.display());
    let text = fs::read_to_string(&lock).unwrap_or_default();
    for (package, var) in CLIENTS {
        let version = locked_version(&text, package).unwrap_or("unknown");
        println!("cargo::rustc-env={var}={version}");
    }
}

/// The version of `package` in a Cargo.lock (the first, if several are locked).
fn locked_version<'a>(lock: &'a str, package: &str) -> Option<&'a str> {
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    lines.find(|l| *l == name_line)?;
    lines
        .next()?
        .strip_prefix("version = \"")?
        .strip_suffix('"')
}
