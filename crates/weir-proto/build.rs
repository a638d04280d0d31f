//! Generates the gRPC API from `proto/weir/v1/*.proto` (public) and
//! `proto/weir/internal/v1/*.proto` (broker to broker) with only cargo: protoc comes from
//! the `protoc-bin-vendored` crate unless `PROTOC` names another one.

use std::env;
use std::path::{Path, PathBuf};

fn protos(root: &Path, package_dir: &str, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|name| root.join(format!("{package_dir}/{name}.proto")))
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let public = protos(
        &root,
        "weir/v1",
        &[
            "records",
            "produce",
            "consume",
            "groups",
            "admin",
            "queues",
            "transactions",
        ],
    );
    let internal = protos(
        &root,
        "weir/internal/v1",
        &[
            "replication",
            "controller",
            "quorum",
            "transactions",
            "reports",
            "forward",
        ],
    );
    if env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment.
        unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let includes = [root.clone(), protoc_bin_vendored::include_path()?];
    let descriptor = PathBuf::from(env::var("OUT_DIR")?).join("weir_v1_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .bytes(".weir.v1")
        .compile_protos(&public, &includes)?;
    // A separate run, so the internal package stays out of the descriptor set that
    // server reflection offers to clients.
    // The public records an internal message carries (a forwarded share fetch's) are
    // the public package's types, not generated twice.
    tonic_prost_build::configure()
        .bytes(".weir.internal.v1")
        .extern_path(".weir.v1", "crate::v1")
        .compile_protos(&internal, &includes)?;
    for proto in public.iter().chain(&internal) {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    Ok(())
}
