//! Weir's public gRPC API, package `weir.v1`, generated from `proto/weir/v1/*.proto`.
//!
//! Architecture invariant: this is the only crate that knows prost-generated types; the
//! broker and the client convert at their edges. It holds no logic.

/// Generated messages and services of `weir.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_debug_implementations, rust_2018_idioms)]
    tonic::include_proto!("weir.v1");
}

/// The encoded `FileDescriptorSet` of the API, for gRPC server reflection (so `grpcurl`
/// works without the .proto files).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("weir_v1_descriptor");

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn the_descriptor_set_describes_every_service_for_reflection() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let mut services: Vec<String> = set
            .file
            .iter()
            .filter(|f| f.package() == "weir.v1")
            .flat_map(|f| f.service.iter().map(|s| s.name().to_string()))
            .collect();
        services.sort();
        assert_eq!(services, ["Admin", "Consumer", "Groups", "Producer"]);
        // Field documentation travels with the descriptor (source info), so reflection
        // clients can show it.
        assert!(set.file.iter().all(|f| f.source_code_info.is_some()));
    }
}
