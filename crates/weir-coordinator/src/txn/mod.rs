//! The transaction coordinator (KIP-98 with the KIP-890 hardening of Kafka 4.0) as a pure
//! state machine over its `__transaction_state` partition.
//!
//! `records` holds the internal topic's byte layouts, `state` one transactional id's
//! metadata and the transitions Kafka allows, `api` what the shell passes in and gets back,
//! `coordinator` the machine itself (with its markers, its clock and its describe/list in
//! `coordinator/`): requests and events in, [`Command`]s out. A state change is a command
//! to append a record; it applies only when the shell reports the record replicated, so the
//! coordinator never answers from state a failover could take back. `sim` (tests) drives it
//! with producers, partitions, crashes and lost messages from one seed. docs/transactions.md
//! describes the protocol, the states and the failure cases.

pub mod api;
pub mod coordinator;
pub mod records;
#[cfg(test)]
mod sim;
pub mod state;
#[cfg(test)]
mod tests;

pub use api::{
    AddPartitions, AllocId, AppendFailure, AppendId, Command, EndTxn, InitProducerId, ListFilter,
    MARKER_RETRY_MS, MarkerId, MarkerOutcome, PartitionVerdicts, Reply, RequestId, TxnConfig,
    TxnDescription, TxnListing,
};
pub use coordinator::TxnCoordinator;
pub use records::{RecordError, TxnLogRecord, TxnLogValue};
pub use state::{TxnMetadata, TxnState};

/// Kafka's `transaction.max.timeout.ms` default: a longer transaction timeout is refused.
pub const MAX_TRANSACTION_TIMEOUT_MS: i32 = 15 * 60 * 1000;
/// Kafka's `transactional.id.expiration.ms` default (7 days): an id idle this long in a
/// finished state is forgotten (tombstoned).
pub const TRANSACTIONAL_ID_EXPIRATION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// The most partitions one transaction may touch (Kafka has no limit; this bounds a record
/// and what decoding one may allocate).
pub const MAX_PARTITIONS_PER_TRANSACTION: usize = 10_000;
/// The longest transactional id, in bytes.
pub const MAX_TRANSACTIONAL_ID_BYTES: usize = 4096;
/// The longest topic name in a record (Kafka's 249-character limit).
pub const MAX_TOPIC_NAME_BYTES: usize = 249;
/// The most transactional ids one coordinator partition keeps.
pub const MAX_TRANSACTIONAL_IDS_PER_PARTITION: usize = 100_000;
/// Kafka's `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;
/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// The consumer offsets topic: AddOffsetsToTxn adds one of its partitions.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// A producer id and epoch, as answered to InitProducerId and EndTxn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerIdAndEpoch {
    pub producer_id: i64,
    pub epoch: i16,
}

/// Commit or abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnResult {
    Commit,
    Abort,
}

/// The transaction protocol version a client speaks (Kafka's `transaction.version`
/// feature levels). 2 is KIP-890 part 2: every EndTxn bumps the producer epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxnVersion(pub i16);

impl TxnVersion {
    pub const TV0: TxnVersion = TxnVersion(0);
    pub const TV1: TxnVersion = TxnVersion(1);
    pub const TV2: TxnVersion = TxnVersion(2);

    /// Whether EndTxn bumps the epoch (TV2 and later).
    pub fn bumps_epoch(self) -> bool {
        self.0 >= 2
    }

    /// The `__transaction_state` value version this level writes.
    pub fn log_value_version(self) -> i16 {
        if self.0 >= 1 { 1 } else { 0 }
    }
}

/// Why the coordinator refused: Kafka's reasons, without Kafka's codes (the Kafka adapter
/// maps them; other protocols have their own tables).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum TxnError {
    #[error("NOT_COORDINATOR: this broker does not lead the id's __transaction_state partition")]
    NotCoordinator,
    #[error("COORDINATOR_LOAD_IN_PROGRESS: the coordinator is still loading its partition")]
    CoordinatorLoadInProgress,
    #[error("COORDINATOR_NOT_AVAILABLE: the state could not be replicated, retry")]
    CoordinatorNotAvailable,
    #[error("CONCURRENT_TRANSACTIONS: another change of this transactional id is in flight")]
    ConcurrentTransactions,
    #[error("INVALID_PRODUCER_EPOCH: the producer epoch is not the current one")]
    InvalidProducerEpoch,
    #[error("PRODUCER_FENCED: a newer producer with this transactional id exists")]
    ProducerFenced,
    #[error("INVALID_TXN_STATE: the request does not fit the transaction's state")]
    InvalidTxnState,
    #[error("INVALID_PRODUCER_ID_MAPPING: the producer id is not this transactional id's")]
    InvalidProducerIdMapping,
    #[error("INVALID_TRANSACTION_TIMEOUT: the timeout is not within 1 ms..=the maximum")]
    InvalidTransactionTimeout,
    #[error("TRANSACTIONAL_ID_NOT_FOUND: the coordinator has no such transactional id")]
    TransactionalIdNotFound,
    #[error("TRANSACTION_ABORTABLE: the partition is not part of the transaction")]
    TransactionAbortable,
    #[error("INVALID_REQUEST: the transactional id is empty or longer than the limit")]
    InvalidRequest,
    #[error("the transaction would have more partitions than the limit")]
    TooManyPartitions,
    #[error("the coordinator partition holds the most transactional ids it may")]
    TooManyTransactionalIds,
    #[error("UNKNOWN_SERVER_ERROR: the state record was refused as too large")]
    UnknownServerError,
}
