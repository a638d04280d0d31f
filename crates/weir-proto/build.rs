//! Generates the gRPC API from `proto/weir/v1/*.proto` with only cargo: protoc comes from
//! the `protoc-bin-vendored` crate unless `PROTOC` names another one.

use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let protos: Vec<PathBuf> = ["records", "produce", "consume", "groups", "admin"]
        .iter()
        .map(|name| root.join(format!("weir/v1/{name}.proto")))
        .collect();
    if env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment.
        unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let includes = [root.clone(), protoc_bin_vendored::include_path()?];
    let descriptor = PathBuf::from(env::var("OUT_DIR")?).join("weir_v1_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .bytes(".weir.v1")
        .compile_protos(&protos, &includes)?;
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    Ok(())
}
