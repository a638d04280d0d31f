//! What the transaction coordinator's shell sees: its settings, the requests it passes in,
//! the commands it gets back, the events it reports and the answers for describe and list.

use std::collections::BTreeSet;

use super::state::TxnState;
use super::{
    MAX_PARTITIONS_PER_TRANSACTION, MAX_TRANSACTION_TIMEOUT_MS,
    MAX_TRANSACTIONAL_IDS_PER_PARTITION, ProducerIdAndEpoch, TRANSACTIONAL_ID_EXPIRATION_MS,
    TopicPartition, TxnError, TxnResult, TxnVersion,
};

/// How long a marker write may go unanswered before the coordinator sends it again (a lost
/// answer must not leave a transaction hanging).
pub const MARKER_RETRY_MS: i64 = 5_000;

/// The coordinator's settings.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub expiration_ms: i64,
    /// The cluster's transaction version: the record version written, and the version of
    /// the coordinator's own aborts (fences, timeouts).
    pub server_version: TxnVersion,
    pub max_transactional_ids: usize,
    pub max_partitions_per_txn: usize,
    pub marker_retry_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: MAX_TRANSACTION_TIMEOUT_MS,
            expiration_ms: TRANSACTIONAL_ID_EXPIRATION_MS,
            server_version: TxnVersion::TV2,
            max_transactional_ids: MAX_TRANSACTIONAL_IDS_PER_PARTITION,
            max_partitions_per_txn: MAX_PARTITIONS_PER_TRANSACTION,
            marker_retry_ms: MARKER_RETRY_MS,
        }
    }
}

/// The shell's handle for one request; the answer names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);
/// One append to the coordinator's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppendId(pub u64);
/// One round of markers for one transaction (re-sends keep the id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MarkerId(pub u64);
/// One producer id allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AllocId(pub u64);

/// What the coordinator asks of its shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Append this record to the coordinator's partition (acks=all) and report with
    /// `on_appended` once it is replicated or failed. `value: None` is a tombstone.
    Append {
        id: AppendId,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// Allocate a fresh producer id and report it with `on_producer_id`.
    AllocateProducerId { id: AllocId },
    /// Write this marker to each partition's leader (WriteTxnMarkers) and report each
    /// partition's outcome with `on_markers`.
    WriteMarkers {
        id: MarkerId,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        result: TxnResult,
        /// The version the transaction ended under: with 2 the marker's epoch is above the
        /// epoch of the transaction's records, and a partition refuses a TV2 marker at the
        /// epoch of its open transaction (a late copy of an earlier marker).
        transaction_version: TxnVersion,
        partitions: Vec<TopicPartition>,
    },
    /// Answer a request.
    Reply { request: RequestId, reply: Reply },
}

/// Per partition: in the transaction, or why not.
pub type PartitionVerdicts = Vec<(TopicPartition, Result<(), TxnError>)>;

/// An answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    InitProducerId(Result<ProducerIdAndEpoch, TxnError>),
    AddPartitions(Result<(), TxnError>),
    /// A verify-only AddPartitionsToTxn (KIP-890's produce-time check): per partition,
    /// whether it is in the transaction (TRANSACTION_ABORTABLE if not).
    VerifyPartitions(Result<PartitionVerdicts, TxnError>),
    AddOffsets(Result<(), TxnError>),
    /// The producer id and epoch to use next (TV2: the bumped epoch).
    EndTxn(Result<ProducerIdAndEpoch, TxnError>),
}

/// InitProducerId with a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerId {
    pub transactional_id: String,
    pub timeout_ms: i32,
    /// KIP-360: the id and epoch the producer had, when it re-initialises after an error.
    pub expected: Option<ProducerIdAndEpoch>,
}

/// One transaction of an AddPartitionsToTxn request (v4+ carries several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddPartitions {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<TopicPartition>,
    /// Only check that the partitions are in the transaction (KIP-890 produce-time).
    pub verify_only: bool,
}

/// EndTxn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub result: TxnResult,
    /// TV2 (EndTxn v5+) bumps the epoch at each end.
    pub version: TxnVersion,
}

/// Why an append did not replicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendFailure {
    /// This broker no longer leads the partition (NOT_LEADER, storage error).
    NotLeader,
    /// Not enough replicas, or a timeout: nothing was appended, the caller may retry.
    Unavailable,
    /// The record was too large.
    TooLarge,
}

/// What a partition said to one marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerOutcome {
    Written,
    /// Not the leader, not enough replicas, a timeout: send it again.
    Retriable,
    /// The partition has a newer epoch for this producer: nothing left to end there.
    StaleProducerEpoch,
    /// The partition has seen a newer coordinator epoch: a newer coordinator finishes this.
    StaleCoordinatorEpoch,
    /// The partition is gone (topic deleted).
    UnknownPartition,
}

/// DescribeTransactions' answer for one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub state: TxnState,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub partitions: Vec<TopicPartition>,
}

/// ListTransactions' filters (empty sets match everything).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub producer_ids: BTreeSet<i64>,
    pub states: BTreeSet<String>,
    /// Only transactions running longer than this (ms).
    pub min_duration_ms: Option<i64>,
}

/// One row of ListTransactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}
