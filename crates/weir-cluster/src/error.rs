//! Error types of the cluster layer, one enum per operation family. Bad input (the
//! caller's fault), missing things, and storage failures stay distinct variants so the
//! broker can map each to the right status in one place.

use std::io;
use std::path::PathBuf;

use weir_log::framed_file::FramedFileError;
use weir_log::{AppendError, MaintenanceError, OpenError, ReadError};

/// A topic name that breaks Kafka's rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    #[error("topic name is empty")]
    Empty,
    #[error("topic name is {len} characters; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("topic name cannot be \".\" or \"..\"")]
    Dots,
    #[error(
        "topic name {name:?} has the character {ch:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
    )]
    BadCharacter { name: String, ch: char },
}

/// A topic configuration that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown topic config key {0:?}")]
    UnknownKey(String),
    #[error("bad value {value:?} for {key}: expected {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("invalid topic config: {0}")]
    Invalid(String),
    /// A consumer group config (`crate::controller::group_configs`) refused: the
    /// message names the key, the value and the bound.
    #[error("{0}")]
    Group(String),
}

/// The metadata file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("metadata file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl From<FramedFileError> for MetadataError {
    fn from(e: FramedFileError) -> Self {
        match e {
            FramedFileError::Io { path, source } => MetadataError::Io { path, source },
            FramedFileError::Corrupt { path, source } => MetadataError::Corrupt {
                path,
                reason: source.to_string(),
            },
        }
    }
}

/// Why a cluster operation (topics, partitions, appends, reads) failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {topic:?} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        count: u32,
    },
    #[error(transparent)]
    TopicName(#[from] TopicNameError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// INVALID_REPLICA_ASSIGNMENT: a client's placement of new partitions that cannot be
    /// made.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// RESOURCE_NOT_FOUND: a user or credential that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An exchange or binding change refused (`crate::exchanges`).
    #[error(transparent)]
    Exchange(crate::exchanges::ExchangeError),
    /// INVALID_REPLICATION_FACTOR: more replicas than brokers that can take one.
    #[error(
        "replication factor {replication_factor} cannot be placed: the cluster has {brokers} broker(s) that can take a replica (unfenced, not shutting down)"
    )]
    InvalidReplicationFactor {
        replication_factor: u32,
        brokers: usize,
    },
    #[error(
        "offset {offset} is out of range for {topic}/{partition}; valid offsets are {log_start_offset}..={high_watermark}"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: i64,
        log_start_offset: i64,
        high_watermark: i64,
    },
    #[error(
        "partition {topic}/{partition} is closed (its topic was deleted or the broker is shutting down)"
    )]
    PartitionClosed { topic: String, partition: u32 },
    /// Retriable: the partition's log failed and is being reopened from its last durable
    /// point (`docs/replication.md` § A replica's log fails); nothing was appended.
    #[error(
        "partition {topic}/{partition}: its log failed ({reason}) and is being reopened; retry"
    )]
    LogRecovering {
        topic: String,
        partition: u32,
        reason: String,
    },
    /// Retriable: a coordinator's state write was appended after a write of the same
    /// shard that failed, so it does not make the shard's state durable; the shard loads
    /// again from its log (`internal_topic::WriteFence`).
    #[error(
        "partition {topic}/{partition}: an earlier state write of this coordinator failed; it loads its state again from the log"
    )]
    EarlierWriteFailed { topic: String, partition: u32 },
    #[error("partition {topic}/{partition}: {source}")]
    Append {
        topic: String,
        partition: u32,
        #[source]
        source: AppendError,
    },
    #[error("partition {topic}/{partition}: {source}")]
    Read {
        topic: String,
        partition: u32,
        #[source]
        source: ReadError,
    },
    #[error("partition {topic}/{partition}: {source}")]
    Maintenance {
        topic: String,
        partition: u32,
        #[source]
        source: MaintenanceError,
    },
    /// A topic was created, but this broker could not open its partitions; it undid
    /// what it opened and the topic was deleted again. `exhausted`: the cause was a
    /// resource limit (open files, memory, disk space), not a fault.
    #[error("topic {topic} could not be created here, and was deleted again: {reason}")]
    CreateFailed {
        topic: String,
        reason: String,
        exhausted: bool,
    },
    #[error("partition {topic}/{partition}: cannot open its log: {source}")]
    Open {
        topic: String,
        partition: u32,
        #[source]
        source: OpenError,
    },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("a blocking storage task panicked or was cancelled: {0}")]
    TaskFailed(String),
    /// The controller refused this broker for good (e.g. another cluster's directory).
    #[error("{0}")]
    Refused(String),
    /// The metadata quorum could not start or stopped.
    #[error("metadata quorum: {0}")]
    Quorum(String),
    /// No active controller answered in time (no quorum, or unreachable); retriable.
    #[error("the cluster controller is unavailable: {0}")]
    ControllerUnavailable(String),
    /// NOT_LEADER: this broker does not lead the partition; `leader` does (-1: none now).
    #[error("this broker does not lead {topic}/{partition}; {}", leader_hint(*.leader))]
    NotLeader {
        topic: String,
        partition: u32,
        leader: i32,
    },
    /// OFFSET_NOT_AVAILABLE: a new leader has not committed what it inherited yet, so
    /// its high watermark (the latest offset) is not known; retriable (Kafka's KIP-207).
    #[error(
        "the new leader of {topic}/{partition} has not yet committed the records it inherited, so its latest offset is not known; retry shortly"
    )]
    OffsetNotAvailable { topic: String, partition: u32 },
    /// NOT_ENOUGH_REPLICAS: fewer in-sync replicas than `min.insync.replicas`; nothing
    /// was appended.
    #[error(
        "{topic}/{partition} has {isr} in-sync replica(s), fewer than min.insync.replicas={min_insync}; nothing was appended"
    )]
    NotEnoughReplicas {
        topic: String,
        partition: u32,
        isr: usize,
        min_insync: usize,
    },
    /// FENCED_LEADER_EPOCH: the leadership an append was accepted under ended before it
    /// was written; nothing was appended.
    #[error(
        "the leadership of {topic}/{partition} at epoch {epoch} ended before the append was written; nothing was appended"
    )]
    FencedLeaderEpoch {
        topic: String,
        partition: u32,
        epoch: i32,
    },
}

fn leader_hint(leader: i32) -> String {
    if leader < 0 {
        "it has no leader right now; retry shortly".to_string()
    } else {
        format!("broker {leader} does")
    }
}

impl ClusterError {
    /// Whether an I/O error somewhere in this error's causes is a resource limit: too
    /// many open files (process or system), no memory, no disk space or quota.
    pub fn is_resource_limit(&self) -> bool {
        any_io_cause(self, |io| {
            matches!(
                io.raw_os_error(),
                Some(
                    libc_errno::EMFILE
                        | libc_errno::ENFILE
                        | libc_errno::ENOMEM
                        | libc_errno::ENOSPC
                        | libc_errno::EDQUOT
                )
            )
        })
    }

    /// Whether an I/O error somewhere in this error's causes is a full disk (ENOSPC, or
    /// EDQUOT on a quota): what freeing space would let through.
    pub fn is_storage_full(&self) -> bool {
        caused_by_no_space(self)
    }
}

/// Whether an I/O error among `err`'s causes is for want of space (ENOSPC, EDQUOT).
pub(crate) fn caused_by_no_space(err: &(dyn std::error::Error + 'static)) -> bool {
    any_io_cause(err, |io| {
        matches!(
            io.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
    })
}

/// Whether `err` or one of its causes is an I/O error that `is` says yes to.
fn any_io_cause(err: &(dyn std::error::Error + 'static), is: impl Fn(&io::Error) -> bool) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.downcast_ref::<io::Error>().is_some_and(&is) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The Linux errno values [`ClusterError::is_resource_limit`] looks for (without a libc
/// dependency for five numbers).
mod libc_errno {
    pub const ENOMEM: i32 = 12;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const ENOSPC: i32 = 28;
    pub const EDQUOT: i32 = 122;
}
