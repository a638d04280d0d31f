//! Transactions: the shell that drives weir-coordinator's transaction coordinator
//! (`weir_coordinator::txn::TxnCoordinator`) on the leader of each `__transaction_state`
//! partition.
//!
//! - [`coordinator`]: [`TransactionCoordinator`], the async API the broker calls
//!   (InitProducerId with a transactional id, AddPartitionsToTxn, AddOffsetsToTxn,
//!   EndTxn, describe and list), and which shards this broker serves (those of the
//!   `__transaction_state` partitions it leads).
//! - `shard`: one `__transaction_state` partition's shell: load (replay up to the
//!   committed end), then one task that owns the machine, feeds it requests, replicated
//!   appends, producer ids, marker outcomes and the clock, and carries out its commands.
//!
//! The machine itself (states, transitions, record layouts, limits) is weir-coordinator's;
//! docs/transactions.md describes the protocol and the failure cases.

pub mod coordinator;
mod shard;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::ClusterError;

pub use coordinator::{TransactionConfig, TransactionCoordinator};
pub use weir_coordinator::txn::{
    AddPartitions, EndTxn, InitProducerId, ListFilter, MAX_TRANSACTION_TIMEOUT_MS,
    MAX_TRANSACTIONAL_ID_BYTES, MarkerOutcome, PartitionVerdicts, ProducerIdAndEpoch,
    TopicPartition, TxnConfig, TxnDescription, TxnError, TxnListing, TxnResult, TxnState,
    TxnVersion,
};

/// The internal topic that holds the transaction coordinators' state.
pub const TXN_STATE_TOPIC: &str = "__transaction_state";
/// Partitions of `__transaction_state` when the broker creates it: Kafka's
/// `transaction.state.log.num.partitions` (50) scaled as Weir scales
/// `__consumer_offsets` (Kafka's 50, Weir's 16).
pub const DEFAULT_TXN_STATE_PARTITIONS: u32 = 16;
/// Replicas of each `__transaction_state` partition (Kafka's
/// `transaction.state.log.replication.factor`), fewer if fewer brokers are registered.
pub const TXN_STATE_REPLICATION_FACTOR: u32 = 3;
/// `segment.bytes` of `__transaction_state` (Kafka's
/// `transaction.state.log.segment.bytes`): small segments so compaction can clean them.
pub const TXN_STATE_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;
/// Longest a load waits for a new leader's high watermark to reach its log end before it
/// tries again on the next leadership check.
pub const TXN_LOAD_WAIT: Duration = Duration::from_millis(500);
/// Longest [`TransactionCoordinator::open`] waits for the shards this broker leads.
pub const TXN_OPEN_LOAD_WAIT: Duration = Duration::from_secs(10);
/// How often the coordinator checks which `__transaction_state` partitions it leads,
/// besides on every metadata change.
pub const TXN_LEADERSHIP_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Bytes read per call while replaying a `__transaction_state` partition.
pub const TXN_READ_BYTES: usize = 1024 * 1024;
/// How often a shard gives its machine the time: transaction timeouts, markers sent
/// again, transactional ids expired. Kafka checks timeouts every 10 s
/// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`); a shorter period
/// costs one pass over the shard's ids.
pub const TXN_TICK_INTERVAL: Duration = Duration::from_secs(1);
/// Most requests and events waiting for one shard's task.
pub const MAX_QUEUED_TXN_EVENTS: usize = 4096;
/// Longest a request waits for its shard's answer (the state it changed replicated).
pub const TXN_REQUEST_WAIT: Duration = Duration::from_secs(30);

/// How long a marker round that came back with retriable partitions (not the leader
/// now, a leader that cannot be reached, not enough replicas) waits before the machine
/// hears of it, and so before it sends those markers again: the machine re-sends a
/// retriable marker at once, and a writer that answers at once (NOT_LEADER while a
/// leadership moves, a refused connection) must not make that a busy loop. Kafka's
/// marker sender waits `retry.backoff.ms` (100 ms) the same way.
pub const MARKER_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// One transaction's markers, as the coordinator asks for them (Kafka's
/// WriteTxnMarkers entry).
#[derive(Debug, Clone)]
pub struct MarkerRequest {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub result: TxnResult,
    pub transaction_version: TxnVersion,
    pub partitions: Vec<TopicPartition>,
}

/// A future of each partition's marker outcome.
pub type MarkerFuture<'a> =
    Pin<Box<dyn Future<Output = Vec<(TopicPartition, MarkerOutcome)>> + Send + 'a>>;

/// Writes markers on the partitions' leaders (the broker's core: it knows how to reach
/// them). Every partition asked about gets an outcome.
pub trait MarkerWriter: Send + Sync + Debug {
    fn write(&self, markers: MarkerRequest) -> MarkerFuture<'_>;
}

/// Why a transaction request was not served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransactionError {
    /// The coordinator's refusal (Kafka's reasons).
    #[error(transparent)]
    Refused(#[from] TxnError),
    /// Another broker (or none now, -1) coordinates the id.
    #[error(
        "NOT_COORDINATOR: partition {partition} of {TXN_STATE_TOPIC} is led by broker {coordinator}, not this one"
    )]
    NotCoordinator { partition: u32, coordinator: i32 },
    /// This broker leads the id's partition and is loading it.
    #[error("partition {partition} of {TXN_STATE_TOPIC} is loading here; retry shortly")]
    Loading { partition: u32 },
    /// A record of the partition does not decode.
    #[error("record at offset {offset} of {TXN_STATE_TOPIC} partition {partition}: {reason}")]
    CorruptRecord {
        partition: u32,
        offset: i64,
        reason: String,
    },
    #[error(transparent)]
    Cluster(#[from] std::sync::Arc<ClusterError>),
}

impl From<ClusterError> for TransactionError {
    fn from(e: ClusterError) -> Self {
        TransactionError::Cluster(std::sync::Arc::new(e))
    }
}

/// The `__transaction_state` partition of `transactional_id` (Kafka's rule: the Java
/// string hash, as for groups) and its leader (-1: none), from this broker's metadata.
pub fn find_coordinator(
    registry: &crate::registry::TopicRegistry,
    transactional_id: &str,
) -> Result<(u32, i32), TransactionError> {
    check_transactional_id(transactional_id)?;
    Ok(crate::internal_topic::coordinator_of(
        registry,
        TXN_STATE_TOPIC,
        transactional_id,
    )?)
}

/// A transactional id: 1 to [`MAX_TRANSACTIONAL_ID_BYTES`] bytes.
pub fn check_transactional_id(transactional_id: &str) -> Result<(), TxnError> {
    if transactional_id.is_empty() || transactional_id.len() > MAX_TRANSACTIONAL_ID_BYTES {
        return Err(TxnError::InvalidRequest);
    }
    Ok(())
}
