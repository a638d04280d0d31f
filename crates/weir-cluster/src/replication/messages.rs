//! What replicas say to each other and to the controller about one partition.

use crate::controller::records::{BrokerEpoch, PartitionRegistration};
use crate::partition::BrokerId;

/// A follower's fetch for one partition (one entry of a fetch session's request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Answers carry it back; a follower applies only the answer to its latest fetch.
    pub fetch_id: u64,
    pub replica: BrokerId,
    /// The follower's registration epoch: a restarted follower's fetches are told apart
    /// from its previous incarnation's.
    pub broker_epoch: BrokerEpoch,
    /// The leader epoch the follower believes current.
    pub leader_epoch: i32,
    /// The follower's log end: the leader sends what follows it.
    pub fetch_offset: i64,
    /// The follower's position: its flushed offset under a durable flush policy, its log
    /// end otherwise. The leader counts the follower as holding everything below it
    /// (below `fetch_offset` if this is above it). Below `fetch_offset` while the
    /// follower's flush runs: then the leader answers without holding the fetch
    /// (`docs/replication.md` § The fetch, pipelining).
    pub flushed_offset: i64,
    /// Epoch of the follower's batch just below `fetch_offset`; -1 if its log is empty.
    pub last_fetched_epoch: i32,
}

/// Why a fetch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The receiver does not lead the partition.
    NotLeader,
    /// The follower's leader epoch is older than the leader's: its metadata is stale.
    FencedLeaderEpoch,
    /// The follower's leader epoch is newer: the leader's metadata is stale.
    UnknownLeaderEpoch,
}

/// The leader's answer to a [`FetchRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAnswer {
    /// Send the batches from `from_offset` (up to the log end, at most the fetch size):
    /// the driver reads them and ships them with this answer. Nothing to send yet: the
    /// driver may hold the answer until the log end moves (long poll).
    Data {
        fetch_id: u64,
        leader_epoch: i32,
        from_offset: i64,
        /// The leader's published high watermark; `None` while a new leader has not yet
        /// committed what it inherited.
        high_watermark: Option<i64>,
        log_start_offset: i64,
    },
    /// The follower's log diverged: its `last_fetched_epoch` ends at `end_offset` on the
    /// leader (`epoch` is the largest leader epoch at most the follower's).
    Diverging {
        fetch_id: u64,
        leader_epoch: i32,
        epoch: i32,
        end_offset: i64,
    },
    /// The fetch offset is below the leader's log start (retention removed it).
    OffsetOutOfRange {
        fetch_id: u64,
        leader_epoch: i32,
        log_start_offset: i64,
    },
    Error {
        fetch_id: u64,
        error: FetchError,
    },
}

impl FetchAnswer {
    pub fn fetch_id(&self) -> u64 {
        match self {
            FetchAnswer::Data { fetch_id, .. }
            | FetchAnswer::Diverging { fetch_id, .. }
            | FetchAnswer::OffsetOutOfRange { fetch_id, .. }
            | FetchAnswer::Error { fetch_id, .. } => *fetch_id,
        }
    }
}

/// A leader's proposal to change the ISR (Kafka's AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsrRequest {
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// The proposed ISR with each member's broker epoch as the leader knows it (from its
    /// fetches; the leader's own for itself).
    pub new_isr: Vec<(BrokerId, BrokerEpoch)>,
}

/// The controller's answer to an [`AlterIsrRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterIsrAnswer {
    /// Accepted: the partition's new state (also on its way through the metadata log).
    Accepted(PartitionRegistration),
    /// Refused (stale epochs, ineligible member): nothing was committed for it; wait
    /// for newer metadata.
    Refused,
    /// No answer (the call failed or timed out): the change may have been committed or
    /// not; the metadata log will tell.
    Unknown,
}

/// Why this replica cannot take a produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceRefusal {
    /// Not the leader; `leader` is who is, as far as this replica knows (-1: none).
    NotLeader { leader: BrokerId, leader_epoch: i32 },
    /// `acks=all` with fewer in-sync replicas than `min.insync.replicas`.
    NotEnoughReplicas { isr: usize, min_insync: usize },
    /// The log failed and is being reopened (retriable).
    LogRecovering,
}
