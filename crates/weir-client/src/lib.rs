//! Weir's Rust client: a batching, pipelining [`Producer`], a prefetching [`Consumer`]
//! and an [`Admin`] client, over Weir's gRPC API.
//!
//! - The producer packs Kafka RecordBatch v2 batches itself (compression applied here)
//!   and sends them over one bidirectional `ProduceStream`, several batches in flight per
//!   partition, with retries that never reorder a partition's records (see
//!   [`producer`]). Keys map to partitions exactly as in Kafka's clients
//!   ([`partitioner`]).
//! - The consumer follows each assigned partition with a `Consume` stream of raw batches
//!   and decodes them while the application processes the previous ones (see
//!   [`consumer`]).
//! - The group consumer ([`GroupConsumer`]) is a member of a consumer group: the broker
//!   assigns it partitions, it reads them with a consumer and commits its progress, with
//!   at-least-once delivery (see [`group`]).
//! - The share consumer ([`ShareConsumer`]) is a member of a share group, a queue on the
//!   log: members read the same partitions together and acknowledge each record on its
//!   own (accept, release with an optional delay, reject, renew its lock; see [`share`]).
//! - The admin client has one method per `Admin` RPC (topics, groups, users and ACLs),
//!   plus offset lookups and share group descriptions and settings. Users' passwords are
//!   salted here and never sent ([`Admin::upsert_user`]).
//!
//! # Clusters and leaders
//!
//! `brokers` is a bootstrap list: the client connects to the first address that answers
//! (logging the ones that did not), learns the cluster's brokers and each partition's
//! leader from it (`DescribeCluster`, `DescribeTopic`), and keeps one connection per
//! broker. The producer sends each partition's batches to its leader and the consumer
//! reads each partition from its leader; when a broker answers that it does not lead a
//! partition, or its leader cannot be reached, the client refreshes its metadata and
//! retries on the new leader ([`retry`] has the rule), keeping the producer's per-partition
//! order and the consumer's position. A one-broker cluster sends everything to that
//! broker, as before.
//!
//! Every operation fails with [`ClientError`], which keeps the broker's gRPC code and
//! message, and names the refusals leader following acts on (`NOT_LEADER`,
//! `FENCED_LEADER_EPOCH`, `NOT_ENOUGH_REPLICAS`, from the status's `google.rpc.ErrorInfo`
//! in domain [`ERROR_DOMAIN`]).
//!
//! Architecture invariant: this crate knows the public API (`weir-proto`) and the batch
//! format (`weir-batch`) and nothing of the broker's internals. It logs through `tracing`
//! and never installs a subscriber.
//!
//! # Example
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use weir_client::{Admin, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, SeekTo};
//!
//! # async fn example() -> Result<(), weir_client::ClientError> {
//! let brokers = vec!["127.0.0.1:9292".to_owned()];
//! let admin = Admin::connect(&brokers).await?;
//! admin.create_topic("events", 3, 0, HashMap::new()).await?;
//!
//! let producer = Producer::connect(ProducerConfig { brokers: brokers.clone(), ..Default::default() }).await?;
//! for i in 0..1000 {
//!     // Same key, same partition: per-key order holds.
//!     let record = ProducerRecord::new("events", format!("event {i}")).key(format!("user-{}", i % 10));
//!     producer.send(record).await?;
//! }
//! producer.flush().await;
//!
//! let mut consumer = Consumer::connect(ConsumerConfig { brokers, ..Default::default() }).await?;
//! consumer.assign(&[("events", 0), ("events", 1), ("events", 2)]);
//! consumer.seek("events", 0, SeekTo::Beginning).await?;
//! let records = consumer.poll(10_000, Duration::from_secs(1)).await?;
//! println!("read {} records", records.len());
//! producer.close().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod admin;
mod any_broker;
mod cluster;
pub mod connection;
pub mod consumer;
mod error;
pub mod group;
mod outage;
pub mod partitioner;
pub mod producer;
pub mod retry;
mod routing;
pub mod security;
pub mod share;
mod tokens;

pub use crate::admin::{
    Admin, BrokerInfo, ClusterInfo, ConfigEntry, GroupInfo, GroupListing, GroupMemberInfo,
    GroupPartitionLag, GroupState, ListedOffset, OffsetQuery, OffsetResetPlan, PartitionInfo,
    PartitionMove, PartitionOffsetReset, ResetOffsetsTo, ShareGroupInfo, ShareGroupListing,
    ShareGroupSettings, SharePartitionInfo, ShareResetTo, ShareStartReset, TopicInfo, TopicListing,
};
pub use crate::connection::{ClientTls, ConnectOptions};
pub use crate::consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetReset, SeekTo,
};
pub use crate::error::{
    ClientError, ERROR_DOMAIN, METADATA_LEADER_ID, METADATA_NEXT_OFFSET, METADATA_OFFSET,
    REASON_CORRUPT_BATCH, REASON_FENCED_LEADER_EPOCH, REASON_NOT_ENOUGH_REPLICAS,
    REASON_NOT_LEADER,
};
pub use crate::group::{
    CommitHandle, CommittedOffset, GroupConsumer, GroupConsumerConfig, GroupMetadata, Rebalance,
    RebalanceListener, TopicPartition,
};
pub use crate::producer::{
    Acks, BatchDelivery, DeliveredRecords, DeliveryFuture, OffsetRange, Producer, ProducerConfig,
    ProducerRecord, RecordMetadata, RecordRef, TransactionalProducer,
};
pub use crate::security::{
    AclBinding, AclFilter, AclOperation, AclPatternFilter, AclPatternType, AclPermission,
    AclResourceType, QuotaEntity, QuotaName, ScramMechanism, UserCredentialInfo, UserInfo,
};
pub use crate::share::{
    AckKind, AckMode, AckOutcome, AckStatus, ShareConsumer, ShareConsumerConfig, ShareRecord,
    ShareStart,
};
pub use crate::tokens::{CreatedToken, TokenInfo};
pub use weir_batch::{Compression, Header};
