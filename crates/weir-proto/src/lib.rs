//! Weir's public gRPC API, package `weir.v1`, generated from `proto/weir/v1/*.proto`,
//! and the brokers' internal one, package `weir.internal.v1`, from
//! `proto/weir/internal/v1/*.proto` (replication fetch sessions, controller calls, quorum
//! RPCs, transaction markers). Only the public package is in [`FILE_DESCRIPTOR_SET`], so reflection does not
//! offer the internal services.
//!
//! Architecture invariant: this is the only crate that knows prost-generated types; the
//! broker and the client convert at their edges. It holds no logic.

/// Generated messages and services of `weir.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_debug_implementations, rust_2018_idioms)]
    tonic::include_proto!("weir.v1");
}

/// Generated messages and services of `weir.internal.v1`: broker to broker only.
pub mod internal {
    /// Version 1 of the internal API.
    pub mod v1 {
        #![allow(clippy::all, missing_debug_implementations, rust_2018_idioms)]
        tonic::include_proto!("weir.internal.v1");
    }
}

/// The encoded `FileDescriptorSet` of the public API, for gRPC server reflection (so `grpcurl`
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
        assert_eq!(
            services,
            [
                "Admin",
                "Consumer",
                "Groups",
                "Producer",
                "Queues",
                "Transactions"
            ]
        );
        // Field documentation travels with the descriptor (source info), so reflection
        // clients can show it.
        assert!(set.file.iter().all(|f| f.source_code_info.is_some()));
    }

    #[test]
    fn reflection_does_not_offer_the_internal_api() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let packages: Vec<&str> = set.file.iter().map(|f| f.package()).collect();
        assert!(
            packages.iter().all(|p| !p.starts_with("weir.internal")),
            "{packages:?}"
        );
    }

    #[test]
    fn internal_batches_and_payloads_are_bytes() {
        // Batches travel as `bytes::Bytes` end to end (never copied into a Vec).
        let data = super::internal::v1::FetchedData::default();
        let _: &prost::bytes::Bytes = &data.batches;
        let message = super::internal::v1::RaftMessage::default();
        let _: &prost::bytes::Bytes = &message.payload;
    }
}
