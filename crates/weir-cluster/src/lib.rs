//! Partition state and the topic registry of a Weir broker.
//!
//! A [`Partition`] owns one partition's `weir_log::Log` plus its replication state
//! (leader, leader epoch, replicas, ISR) and high watermark, an ordered bounded append
//! queue, and a `watch` channel long-polling readers wait on. The [`TopicRegistry`]
//! holds every topic the metadata image names, validates names
//! ([`validate_topic_name`]) and configs ([`TopicConfig`]), and hosts this broker's
//! partitions. The metadata itself is persisted by the quorum (`quorum`), not by the
//! registry; [`ClusterMetadata`] is only the single-node file of before the quorum, read
//! once to migrate it. The [`group`] and [`share`] modules are the shells of the consumer
//! group and share group coordinators, whose state machines are weir-coordinator's: they
//! replay `__consumer_offsets` and `__share_group_state` into them, write what they
//! decide and answer once it is durable.
//!
//! The data directory's small files (`node.weir`, `metadata.weir`, the quorum's vote,
//! committed, purged and snapshot files) are framed and replaced by weir-log's
//! `framed_file`, as the partitions' checkpoints are (`docs/storage-format.md`).
//!
//! Partitions are replicated Kafka's way (`replication`: leader and follower state
//! machines, ISR, leader epochs, truncation), the cluster metadata is an openraft quorum
//! of controller voters (`quorum`, `controller`), and `node` runs one broker's part in
//! it (registration, heartbeats, following the metadata image).
//!
//! Architecture invariant: this crate knows nothing of gRPC, prost or HTTP; the broker
//! converts at its edge. It never blocks the async runtime on storage: every call into
//! `weir-log` that may do I/O runs on a blocking thread.

pub mod broker_configs;
pub mod config;
pub mod controller;
mod error;
pub mod exchanges;
#[cfg(test)]
mod framed_file_damage;
pub mod group;
mod internal_topic;
pub mod metadata;
pub mod node;
mod node_identity;
mod partition;
pub mod peer_log;
pub mod quorum;
mod registry;
pub mod replication;
pub mod security;
pub mod share;
pub mod tokens;
mod topic_name;
pub mod txn;

pub use config::{
    CONFIG_KEYS, CleanupPolicy, ConfigEntry, ConfigType, EffectiveConfig, TimestampType,
    TopicConfig,
};
pub use error::{ClusterError, ConfigError, MetadataError, TopicNameError};
pub use group::{GroupConfig, GroupCoordinator, GroupError};
pub use metadata::ClusterMetadata;
pub use node_identity::{IDENTITY_FILE, IdentityError, NodeIdentity};
pub use partition::{
    APPEND_QUEUE_DEPTH, AppendOutcome, BrokerId, DataDirStatus, DiskUsage, Durability,
    IsolatedRead, Isolation, LogStorage, MAX_APPENDS_PER_WAKEUP, Partition, PartitionOffsets,
    PartitionState, PendingAppend, REPEATED_FAILURE_WINDOW, ReplicaHost, ReplicationLinks,
};
pub use registry::{
    DataDirLock, MAX_PARTITIONS_PER_TOPIC, NoPeers, REPLICA_FETCH_MAX_BYTES, REPLICA_FETCH_WAIT,
    ReplicationCounters, Topic, TopicRegistry, single_node_settings, wait_unfenced,
};
/// The storage types a broker core sees through this crate (batches it hands to a
/// partition, what a read returns, the errors inside a [`ClusterError`]): the core
/// reaches storage only through weir-cluster, never by calling `weir-log` itself.
pub mod storage {
    pub use weir_log::batch::control::{ControlType, TxnMarker};
    pub use weir_log::batch::{HEADER_BYTES as BATCH_HEADER_BYTES, MAX_BATCH_BYTES};
    pub use weir_log::producers::{ProducerSummary, SequenceError, Verification};
    pub use weir_log::{AbortedTxn, OngoingTxn};
    pub use weir_log::{
        AppendError, BatchError, BatchHeader, Compression, DecodedRecord, FetchData, FileSlice,
        FlushPolicy, Header, MaintenanceError, ReadError, ReadTo, Record, RecordBatchBuilder,
        ValidatedBatches, decode_records,
    };
}
pub use topic_name::{
    INTERNAL_TOPIC_PREFIX, MAX_TOPIC_NAME_CHARS, is_internal, validate_topic_name,
};
