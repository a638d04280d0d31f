//! The JSON forms in which brokers send each other controller requests, metadata records
//! and images (the internal Controller service, `weir-grpc`). Here, not in the service's
//! crate: serde's code for these types is generic over the serializer, so it is
//! compiled where it is used with a concrete one; with these functions it is compiled
//! once, beside the quorum's own use of it (docs/ARCHITECTURE.md § Build time).

use super::{ControllerRequest, MetadataImage, MetadataRecord};

/// `request` as a controller call carries it.
pub fn encode_request(request: &ControllerRequest) -> Vec<u8> {
    serde_json::to_vec(request).expect("controller requests serialise")
}

pub fn decode_request(bytes: &[u8]) -> Result<ControllerRequest, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// `records` as a metadata fetch answers them.
pub fn encode_records(records: &[MetadataRecord]) -> Vec<u8> {
    serde_json::to_vec(records).expect("metadata records serialise")
}

pub fn decode_records(bytes: &[u8]) -> Result<Vec<MetadataRecord>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// `image` as a metadata fetch answers a broker too far behind for records.
pub fn encode_image(image: &MetadataImage) -> Vec<u8> {
    serde_json::to_vec(image).expect("metadata images serialise")
}

pub fn decode_image(bytes: &[u8]) -> Result<MetadataImage, serde_json::Error> {
    serde_json::from_slice(bytes)
}
