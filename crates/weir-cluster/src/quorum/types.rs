//! The openraft type configuration of the metadata quorum: what one Raft log entry
//! carries ([`MetadataEntry`]), what applying it answers ([`AppliedEntry`]), and how
//! broker ids map to Raft node ids.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::controller::{MetadataImage, MetadataOffset, MetadataRecord};
use crate::partition::BrokerId;

openraft::declare_raft_types!(
    /// The metadata quorum's Raft types. Node ids are `u64` (openraft's storage
    /// conformance suite builds node ids from `u64`); they are broker ids, which are
    /// checked to be non-negative when the voter set is given.
    pub TypeConfig:
        D = MetadataEntry,
        R = AppliedEntry,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type NodeId = u64;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;

/// What one entry of the metadata log carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataEntry {
    /// One controller request's records: they commit together and apply in order.
    Records(Vec<MetadataRecord>),
    /// The image a data directory from before replication becomes
    /// (`docs/replication.md` § 1): its cluster id, topics, configs and partitions at
    /// metadata offset 0. Applies only to an empty image; see [`super::LegacyMigration`].
    Legacy(Box<MetadataImage>),
}

/// What applying one entry answers: the metadata offset of its first record (for an
/// entry without records, the offset the next record will get).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedEntry {
    pub first_offset: MetadataOffset,
}

/// The Raft node id of a broker; `None` for a negative broker id.
pub(crate) fn node_id(broker: BrokerId) -> Option<NodeId> {
    NodeId::try_from(broker).ok()
}

/// The broker id of a Raft node id; `None` if it is not one (no voter has such an id,
/// since voters are broker ids).
pub(crate) fn broker_id(node: NodeId) -> Option<BrokerId> {
    BrokerId::try_from(node).ok()
}
