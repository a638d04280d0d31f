//! Reading a data partition the share coordinator hosts no replica of.
//!
//! A share group's coordinator is the leader of its `__share_group_state` partition, which
//! need not host a replica of every partition the group reads (a topic with fewer
//! replicas than the cluster has brokers). Such a partition is read at its leader, as a
//! consumer reads it, through a [`RemoteLog`] the server provides (dead-letter copies go
//! out through a `DeadLetterSink` the same way): only records below the leader's high
//! watermark come back, so the group still hands out only committed records.
//!
//! A remote partition has no high watermark to watch: a share fetch that waits for its
//! records looks again every `FOLLOWER_RECHECK`, as it does for a partition it follows.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::PartitionOffsets;

/// What a [`RemoteLog`] returns.
pub type RemoteFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Committed batches of a partition, read at its leader.
#[derive(Debug, Clone)]
pub struct RemoteBatches {
    /// Concatenated RecordBatch v2 bytes, from the batch holding the offset asked for (it
    /// may start before it) up to at most the bytes asked for (at least one batch when any
    /// is committed); empty at the high watermark.
    pub records: Bytes,
    /// The offset after the last batch returned.
    pub next_offset: i64,
}

/// Why a [`RemoteLog`] read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteReadError {
    /// The offset is outside the leader's log: below its start (retention moved it) or
    /// past its high watermark.
    #[error("offset out of range")]
    OutOfRange,
    /// The leader could not be reached or refused the read, with what it said.
    #[error("{0}")]
    Failed(String),
}

/// Reads partitions at their leaders, for a coordinator that hosts no replica of them.
pub trait RemoteLog: Send + Sync + Debug {
    /// The partition's log start offset and high watermark at its leader
    /// (`log_end_offset` is the high watermark: nothing past it is readable).
    fn offsets<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
    ) -> RemoteFuture<'a, Result<PartitionOffsets, RemoteReadError>>;

    /// Committed batches from `offset` on, at most about `max_bytes` of them.
    fn read<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
    ) -> RemoteFuture<'a, Result<RemoteBatches, RemoteReadError>>;
}

/// A remote partition as the share reader sees it.
#[derive(Debug, Clone)]
pub(super) struct RemotePartition {
    pub(super) log: Arc<dyn RemoteLog>,
    pub(super) topic: Arc<str>,
    pub(super) partition: u32,
}
