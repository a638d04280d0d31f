//! Partition state and the topic registry of a Weir broker.
//!
//! A [`Partition`] owns one partition's `weir_log::Log` plus its replication state
//! (leader, leader epoch, replicas, ISR) and high watermark, an ordered bounded append
//! queue, and a `watch` channel long-polling readers wait on. The [`TopicRegistry`]
//! holds every topic, validates names ([`validate_topic_name`]) and configs
//! ([`TopicConfig`]), and persists metadata ([`ClusterMetadata`]) in the data
//! directory, versioned and checksummed. The [`group`] module is the consumer group
//! coordinator (KIP-848 membership, committed offsets in `__consumer_offsets`).
//!
//! Today this is a single node: each partition's replicas and ISR are this broker. The
//! state has room for leaders, replicas and epochs so replication can fill it in.
//!
//! Architecture invariant: this crate knows nothing of gRPC, prost or HTTP; the broker
//! converts at its edge. It never blocks the async runtime on storage: every call into
//! `weir-log` that may do I/O runs on a blocking thread.

pub mod config;
pub mod controller;
mod error;
mod framed_file;
pub mod group;
pub mod metadata;
pub mod node;
mod node_identity;
mod partition;
pub mod quorum;
mod registry;
pub mod replication;
mod topic_name;

pub use config::{
    CONFIG_KEYS, CleanupPolicy, ConfigEntry, EffectiveConfig, TimestampType, TopicConfig,
};
pub use error::{ClusterError, ConfigError, MetadataError, TopicNameError};
pub use group::{GroupConfig, GroupCoordinator, GroupError};
pub use metadata::ClusterMetadata;
pub use node_identity::{IDENTITY_FILE, IdentityError, NodeIdentity};
pub use partition::{
    APPEND_QUEUE_DEPTH, AppendOutcome, BrokerId, Durability, LogStorage, MAX_APPENDS_PER_WAKEUP,
    Partition, PartitionOffsets, PartitionState, PendingAppend, REOPEN_RETRY, ReplicaHost,
    ReplicationLinks,
};
pub use registry::{
    DataDirLock, MAX_PARTITIONS_PER_TOPIC, NoPeers, REPLICA_FETCH_MAX_BYTES, REPLICA_FETCH_WAIT,
    ReplicationCounters, Topic, TopicRegistry, single_node_settings, wait_unfenced,
};
pub use topic_name::{
    INTERNAL_TOPIC_PREFIX, MAX_TOPIC_NAME_CHARS, is_internal, validate_topic_name,
};
