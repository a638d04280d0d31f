//! The one error type of the broker core: [`BrokerError`], a [`Reason`] (from one
//! documented list, with the facts a client acts on) and a message a user can act on.
//! Every adapter maps a reason to its own codes in one place (gRPC: a status code and a
//! `google.rpc.ErrorInfo`; Kafka: an error code); nothing here knows either.
//!
//! The cluster layer's errors ([`ClusterError`], [`GroupError`]) become reasons here and
//! only here, so two protocols can never disagree on what an error means.

use weir_cluster::ClusterError;
use weir_cluster::group::GroupError;
use weir_cluster::security::ResourceType;
use weir_cluster::storage::{AppendError, MaintenanceError, ReadError, SequenceError};
use weir_cluster::txn::{TransactionError, TxnError};

/// Why a request (or one partition of it) failed. The variants carry what a client
/// needs to act (the leader to go to, the offsets that are valid); the message carries
/// the rest. Unless a variant says otherwise, nothing was appended or changed.
///
/// Serde gives the reason (and [`BrokerError`]) the form in which one broker hands
/// another the core's error whole (weir-grpc's internal `Forward` service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reason {
    /// This broker does not lead the partition; `leader` does (-1: none right now).
    NotLeader {
        leader: i32,
    },
    /// Fewer in-sync replicas than `min.insync.replicas`; retriable.
    NotEnoughReplicas {
        isr: usize,
        min_insync: usize,
    },
    /// A leader epoch older than the partition's: the leadership an append was accepted
    /// under ended before it was written, or a client's metadata is behind the broker's.
    FencedLeaderEpoch {
        epoch: Option<i32>,
    },
    /// A client's leader epoch is newer than this broker's: its metadata is behind the
    /// client's; retriable.
    UnknownLeaderEpoch,
    /// A new leader does not know its latest offset yet; retriable.
    OffsetNotAvailable,
    /// An idempotent producer's batch does not continue its sequence.
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
    },
    /// A newer instance of the producer took over.
    ProducerFenced {
        producer_id: i64,
    },
    /// A transaction marker from a coordinator older than the one that wrote the
    /// producer's last marker: a newer coordinator owns its transactional id.
    CoordinatorFenced {
        producer_id: i64,
    },
    UnknownTopic,
    TopicAlreadyExists,
    UnknownPartition,
    InvalidTopicName,
    InvalidConfig,
    /// More replicas than the cluster has brokers to place them on.
    InvalidReplicationFactor,
    /// A client's placement of new partitions' replicas that cannot be made (a broker not
    /// registered or listed twice, replica counts that differ, a partition left out).
    InvalidReplicaAssignment,
    /// A partition count a topic cannot have (not more than it has, or over the limit).
    InvalidPartitions,
    /// A request the broker cannot act on as sent (the caller's fault).
    InvalidRequest,
    /// A well-formed request that does not fit the partition's state (an append at an
    /// offset other than the log end, a batch an idempotent producer must send alone).
    StateConflict,
    /// An offset outside the partition's range.
    OffsetOutOfRange {
        log_start_offset: i64,
        high_watermark: i64,
    },
    /// The partition closed under the request (deleted, or the broker stopping); retry.
    PartitionClosed,
    /// The partition's log failed (I/O, fsync) and is being reopened; retry.
    LogFailed,
    /// The broker's data directory is full (no space or quota left on its device): the
    /// write was refused and nothing of it written; retry once space is freed. Reads go
    /// on, and writes resume by themselves when space returns.
    StorageFull,
    /// A batch over `max.message.bytes`.
    RecordTooLarge,
    /// A request over the broker's `max_request_bytes`.
    RequestTooLarge {
        request_bytes: usize,
        max: usize,
    },
    /// A batch sent by a producer is malformed or fails its CRC.
    CorruptBatch,
    /// Records the topic refuses (a record without a key on a compacted topic): the
    /// error's [`BrokerError::record_errors`] name each one; nothing of the partition's
    /// data was appended.
    InvalidRecord,
    /// A stored batch cannot be read or decoded. `batch`: its first offset and the
    /// offset after it, where a reader that skips it continues, when known.
    CorruptData {
        batch: Option<(i64, i64)>,
    },
    /// No controller answers now (an election); retriable.
    ControllerUnavailable,
    /// The topic could not be created on this broker; `exhausted`: a resource limit.
    CreateFailed {
        exhausted: bool,
    },
    /// The request's time ran out; for a produce the records may still be appended.
    Timeout,
    /// The broker is shutting down; retry on another broker.
    ShuttingDown,
    /// A fault of the broker, not of the request.
    Internal,
    UnknownGroup,
    /// The group has no such member; join again.
    UnknownMember,
    /// The member was fenced (missed its session); join again.
    FencedMember,
    /// The member's epoch is not the group's.
    StaleMemberEpoch,
    GroupNotEmpty,
    /// The group's members subscribe to the topic whose offsets were to be deleted.
    GroupSubscribedToTopic,
    InvalidGroupId,
    /// A limit on groups or members was reached.
    TooMany,
    /// This broker does not coordinate the group; `coordinator` does (-1: none now).
    NotCoordinator {
        coordinator: i32,
    },
    /// This broker just became the group's coordinator and is loading it; retry.
    CoordinatorLoading,
    /// The group has no coordinator now (its offsets partition has no leader, or this
    /// broker is still joining its cluster); retry.
    CoordinatorNotAvailable,
    /// A committed offset's metadata is over the limit.
    MetadataTooLarge,
    /// A classic group is rebalancing: the member joins again (JoinGroup) to take part.
    RebalanceInProgress,
    /// A classic member sent a generation that is not the group's.
    IllegalGeneration,
    /// A static member's `group.instance.id` belongs to a newer member now (Kafka's
    /// FENCED_INSTANCE_ID).
    FencedInstanceId,
    /// The member's protocol (classic or KIP-848 consumer, its protocol type, or the
    /// assignors it supports) does not fit the group's.
    InconsistentGroupProtocol,
    /// A session timeout outside the broker's bounds.
    InvalidSessionTimeout,
    /// The request's principal may not do this to a resource of this type (Kafka's
    /// TOPIC_, GROUP_, CLUSTER_ and TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
    NotAuthorized {
        resource_type: ResourceType,
    },
    /// The client did not prove who it is (wrong password, unknown user, no
    /// credentials where they are required).
    AuthenticationFailed,
    /// An authentication mechanism this listener does not offer (SASL's PLAIN outside
    /// TLS, a mechanism Weir does not have).
    UnsupportedMechanism,
    /// An authentication step where none was expected (before a mechanism was chosen,
    /// after the exchange was over).
    IllegalAuthenticationState,
    /// The broker has too many checks of this kind running or waiting (password checks'
    /// PBKDF2s); nothing was decided: retry shortly.
    Busy,
    /// The user or credential named does not exist.
    NotFound,
    /// The transaction coordinator's refusal (Kafka's reasons: PRODUCER_FENCED,
    /// CONCURRENT_TRANSACTIONS, INVALID_TXN_STATE, ...); docs/transactions.md.
    Transaction(TxnError),
}

impl Reason {
    /// The reason's name in Weir's documented list (the `ErrorInfo` reason of the gRPC
    /// API; `docs/ARCHITECTURE.md` § Errors). Two variants may share a name where the
    /// API has always shown one (both corrupt-batch kinds are `CORRUPT_BATCH`).
    pub fn name(&self) -> &'static str {
        match self {
            Reason::NotLeader { .. } => "NOT_LEADER",
            Reason::NotEnoughReplicas { .. } => "NOT_ENOUGH_REPLICAS",
            Reason::FencedLeaderEpoch { .. } => "FENCED_LEADER_EPOCH",
            Reason::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
            Reason::OffsetNotAvailable => "OFFSET_NOT_AVAILABLE",
            Reason::OutOfOrderSequence { .. } => "OUT_OF_ORDER_SEQUENCE",
            Reason::ProducerFenced { .. } => "PRODUCER_FENCED",
            Reason::CoordinatorFenced { .. } => "TRANSACTION_COORDINATOR_FENCED",
            Reason::UnknownTopic => "UNKNOWN_TOPIC",
            Reason::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            Reason::UnknownPartition => "UNKNOWN_PARTITION",
            Reason::InvalidTopicName => "INVALID_TOPIC_NAME",
            Reason::InvalidConfig => "INVALID_CONFIG",
            Reason::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            Reason::InvalidReplicaAssignment => "INVALID_REPLICA_ASSIGNMENT",
            Reason::InvalidPartitions => "INVALID_PARTITIONS",
            Reason::InvalidRequest | Reason::StateConflict => "INVALID_REQUEST",
            Reason::OffsetOutOfRange { .. } => "OFFSET_OUT_OF_RANGE",
            Reason::PartitionClosed => "PARTITION_CLOSED",
            Reason::LogFailed => "LOG_FAILED",
            Reason::StorageFull => "STORAGE_FULL",
            Reason::RecordTooLarge => "RECORD_TOO_LARGE",
            Reason::RequestTooLarge { .. } => "REQUEST_TOO_LARGE",
            Reason::CorruptBatch | Reason::CorruptData { .. } => "CORRUPT_BATCH",
            Reason::InvalidRecord => "INVALID_RECORD",
            Reason::ControllerUnavailable => "CONTROLLER_UNAVAILABLE",
            Reason::CreateFailed { .. } => "CREATE_FAILED",
            Reason::Timeout => "REQUEST_TIMED_OUT",
            Reason::ShuttingDown => "SHUTTING_DOWN",
            Reason::Internal => "INTERNAL",
            Reason::UnknownGroup => "UNKNOWN_GROUP",
            Reason::UnknownMember => "UNKNOWN_MEMBER",
            Reason::FencedMember => "FENCED_MEMBER",
            Reason::StaleMemberEpoch => "STALE_MEMBER_EPOCH",
            Reason::GroupNotEmpty => "GROUP_NOT_EMPTY",
            Reason::GroupSubscribedToTopic => "GROUP_SUBSCRIBED_TO_TOPIC",
            Reason::InvalidGroupId => "INVALID_GROUP_ID",
            Reason::TooMany => "TOO_MANY",
            Reason::NotCoordinator { .. } => "NOT_COORDINATOR",
            Reason::CoordinatorLoading => "COORDINATOR_LOADING",
            Reason::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            Reason::MetadataTooLarge => "METADATA_TOO_LARGE",
            Reason::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
            Reason::IllegalGeneration => "ILLEGAL_GENERATION",
            Reason::FencedInstanceId => "FENCED_INSTANCE_ID",
            Reason::InconsistentGroupProtocol => "INCONSISTENT_GROUP_PROTOCOL",
            Reason::InvalidSessionTimeout => "INVALID_SESSION_TIMEOUT",
            Reason::NotAuthorized { resource_type } => match resource_type {
                ResourceType::Topic => "TOPIC_AUTHORIZATION_FAILED",
                ResourceType::Group => "GROUP_AUTHORIZATION_FAILED",
                ResourceType::Cluster => "CLUSTER_AUTHORIZATION_FAILED",
                ResourceType::TransactionalId => "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
            },
            Reason::AuthenticationFailed => "AUTHENTICATION_FAILED",
            Reason::UnsupportedMechanism => "UNSUPPORTED_MECHANISM",
            Reason::IllegalAuthenticationState => "ILLEGAL_AUTHENTICATION_STATE",
            Reason::Busy => "BUSY",
            Reason::NotFound => "NOT_FOUND",
            Reason::Transaction(e) => txn_reason_name(*e),
        }
    }

    /// Whether this is the broker's fault or trouble (worth a log line where it is
    /// answered), not the caller's.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Reason::Internal
                | Reason::LogFailed
                | Reason::StorageFull
                | Reason::CorruptData { .. }
                | Reason::CreateFailed { .. }
                | Reason::ControllerUnavailable
        )
    }
}

/// An error of the broker core: a reason, a message that says what to do, and the
/// partition it concerns where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{message}")]
pub struct BrokerError {
    pub reason: Reason,
    pub message: String,
    /// The topic and partition the error is about, if it is about one.
    pub partition: Option<(String, u32)>,
    /// For [`Reason::InvalidRecord`]: each refused record (at most
    /// [`MAX_RECORD_ERRORS`](crate::limits::MAX_RECORD_ERRORS)); read with
    /// [`BrokerError::record_errors`]. Boxed, a pointer wide: this error is the `Err` of
    /// every core call, and a vector inline made each of those results larger.
    #[allow(clippy::box_collection)]
    pub refused_records: Option<Box<Vec<RecordError>>>,
}

/// One record a produce refused: its index among the partition's records in the request
/// (within its batch, for the one batch a Kafka producer sends), and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordError {
    pub batch_index: u32,
    pub message: String,
}

impl BrokerError {
    pub fn new(reason: Reason, message: impl Into<String>) -> BrokerError {
        BrokerError {
            reason,
            message: message.into(),
            partition: None,
            refused_records: None,
        }
    }

    /// The records refused, for [`Reason::InvalidRecord`]; empty for any other error.
    pub fn record_errors(&self) -> &[RecordError] {
        self.refused_records
            .as_deref()
            .map_or(&[], |r| r.as_slice())
    }

    /// The error names `topic`/`partition`.
    pub fn at(mut self, topic: &str, partition: u32) -> BrokerError {
        self.partition = Some((topic.to_owned(), partition));
        self
    }

    /// [`Reason::InvalidRequest`] with `message`.
    pub fn invalid(message: impl Into<String>) -> BrokerError {
        BrokerError::new(Reason::InvalidRequest, message)
    }
}

impl From<ClusterError> for BrokerError {
    fn from(err: ClusterError) -> BrokerError {
        let (reason, partition) = cluster_reason(&err);
        BrokerError {
            message: cluster_message(&reason, &err),
            reason,
            partition: partition.map(|(t, p)| (t.to_owned(), p)),
            refused_records: None,
        }
    }
}

impl From<&ClusterError> for BrokerError {
    fn from(err: &ClusterError) -> BrokerError {
        let (reason, partition) = cluster_reason(err);
        BrokerError {
            message: cluster_message(&reason, err),
            reason,
            partition: partition.map(|(t, p)| (t.to_owned(), p)),
            refused_records: None,
        }
    }
}

/// The message for a cluster error: its own, with what to do where that is not plain
/// from it.
fn cluster_message(reason: &Reason, err: &ClusterError) -> String {
    match reason {
        Reason::StorageFull => format!(
            "{err}: the broker's data directory is full; it refuses writes until space is \
             freed on that device and then takes them again by itself (reads go on)"
        ),
        _ => err.to_string(),
    }
}

/// The reason for a refused exchange or binding change: a missing exchange or queue is
/// NOT_FOUND, a redeclare with other settings or a delete of one in use a conflict with
/// the state, a limit TOO_MANY, the rest the caller's.
fn exchange_reason(err: &weir_cluster::exchanges::ExchangeError) -> Reason {
    use weir_cluster::exchanges::ExchangeError as X;
    match err {
        X::UnknownExchange(_) | X::UnknownQueue(_) => Reason::NotFound,
        X::Inequivalent { .. } | X::QueueInequivalent { .. } | X::InUse { .. } => {
            Reason::StateConflict
        }
        X::TooMany(_) => Reason::TooMany,
        X::Predeclared { .. } | X::Invalid(_) => Reason::InvalidRequest,
    }
}

/// The reason for a cluster error and the partition it names.
fn cluster_reason(err: &ClusterError) -> (Reason, Option<(&str, u32)>) {
    use ClusterError as E;
    match err {
        E::NotLeader {
            topic,
            partition,
            leader,
        } => (
            // Any negative id means "none": -1, as the API says.
            Reason::NotLeader {
                leader: (*leader).max(-1),
            },
            Some((topic, *partition)),
        ),
        E::NotEnoughReplicas {
            topic,
            partition,
            isr,
            min_insync,
        } => (
            Reason::NotEnoughReplicas {
                isr: *isr,
                min_insync: *min_insync,
            },
            Some((topic, *partition)),
        ),
        E::FencedLeaderEpoch {
            topic,
            partition,
            epoch,
        } => (
            Reason::FencedLeaderEpoch {
                epoch: Some(*epoch),
            },
            Some((topic, *partition)),
        ),
        E::OffsetNotAvailable { topic, partition } => {
            (Reason::OffsetNotAvailable, Some((topic, *partition)))
        }
        E::UnknownTopic(_) => (Reason::UnknownTopic, None),
        E::TopicExists(_) => (Reason::TopicAlreadyExists, None),
        E::UnknownPartition {
            topic, partition, ..
        } => (Reason::UnknownPartition, Some((topic, *partition))),
        E::TopicName(_) => (Reason::InvalidTopicName, None),
        E::Config(_) => (Reason::InvalidConfig, None),
        E::InvalidRequest(_) => (Reason::InvalidRequest, None),
        E::NotFound(_) => (Reason::NotFound, None),
        E::Exchange(e) => (exchange_reason(e), None),
        E::InvalidReplicationFactor { .. } => (Reason::InvalidReplicationFactor, None),
        E::InvalidReplicaAssignment(_) => (Reason::InvalidReplicaAssignment, None),
        E::OffsetOutOfRange {
            topic,
            partition,
            log_start_offset,
            high_watermark,
            ..
        } => (
            Reason::OffsetOutOfRange {
                log_start_offset: *log_start_offset,
                high_watermark: *high_watermark,
            },
            Some((topic, *partition)),
        ),
        E::PartitionClosed { topic, partition } => {
            (Reason::PartitionClosed, Some((topic, *partition)))
        }
        E::LogRecovering {
            topic, partition, ..
        } => (Reason::LogFailed, Some((topic, *partition))),
        E::EarlierWriteFailed { topic, partition } => {
            (Reason::CoordinatorLoading, Some((topic, *partition)))
        }
        E::Append {
            topic,
            partition,
            source,
        } => (append_reason(source), Some((topic, *partition))),
        E::Read {
            topic,
            partition,
            source,
        } => (
            match source {
                ReadError::OffsetOutOfRange {
                    log_start_offset,
                    log_end_offset,
                    ..
                } => Reason::OffsetOutOfRange {
                    log_start_offset: *log_start_offset,
                    high_watermark: *log_end_offset,
                },
                ReadError::Corrupt { .. } => Reason::CorruptData { batch: None },
                ReadError::Io { .. } => Reason::LogFailed,
            },
            Some((topic, *partition)),
        ),
        E::Maintenance {
            topic,
            partition,
            source,
        } => (
            match source {
                MaintenanceError::OffsetOutOfRange {
                    log_start_offset,
                    log_end_offset,
                    ..
                } => Reason::OffsetOutOfRange {
                    log_start_offset: *log_start_offset,
                    high_watermark: *log_end_offset,
                },
                _ => Reason::LogFailed,
            },
            Some((topic, *partition)),
        ),
        E::ControllerUnavailable(_) => (Reason::ControllerUnavailable, None),
        E::CreateFailed { exhausted, .. } => (
            Reason::CreateFailed {
                exhausted: *exhausted,
            },
            None,
        ),
        E::Open { .. }
        | E::Metadata(_)
        | E::Io { .. }
        | E::TaskFailed(_)
        | E::Quorum(_)
        | E::Refused(_) => (Reason::Internal, None),
    }
}

fn append_reason(source: &AppendError) -> Reason {
    match source {
        AppendError::MessageTooLarge { .. } => Reason::RecordTooLarge,
        AppendError::InvalidBatch { .. } => Reason::CorruptBatch,
        AppendError::StaleLeaderEpoch { .. } => Reason::FencedLeaderEpoch { epoch: None },
        source if source.is_storage_full() => Reason::StorageFull,
        AppendError::Io { .. } | AppendError::Failed { .. } => Reason::LogFailed,
        AppendError::Sequence(SequenceError::OutOfOrder {
            producer_id,
            expected,
            ..
        }) => Reason::OutOfOrderSequence {
            producer_id: *producer_id,
            expected: *expected,
        },
        AppendError::Sequence(SequenceError::Fenced { producer_id, .. }) => {
            Reason::ProducerFenced {
                producer_id: *producer_id,
            }
        }
        // KIP-890: the batch's verification no longer stands (a marker came since);
        // the producer aborts the transaction and retries it.
        AppendError::Sequence(SequenceError::NotVerified { .. }) => {
            Reason::Transaction(TxnError::TransactionAbortable)
        }
        AppendError::Sequence(SequenceError::CoordinatorFenced { producer_id, .. }) => {
            Reason::CoordinatorFenced {
                producer_id: *producer_id,
            }
        }
        AppendError::Empty => Reason::InvalidRequest,
        AppendError::IdempotentBatchNotAlone { .. } | AppendError::OffsetMismatch { .. } => {
            Reason::StateConflict
        }
    }
}

/// A transaction refusal's name in Weir's documented list (Kafka's name for it).
fn txn_reason_name(e: TxnError) -> &'static str {
    match e {
        TxnError::NotCoordinator => "NOT_COORDINATOR",
        TxnError::CoordinatorLoadInProgress => "COORDINATOR_LOADING",
        TxnError::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
        TxnError::ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
        TxnError::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
        TxnError::ProducerFenced => "PRODUCER_FENCED",
        TxnError::InvalidTxnState => "INVALID_TXN_STATE",
        TxnError::InvalidProducerIdMapping => "INVALID_PRODUCER_ID_MAPPING",
        TxnError::InvalidTransactionTimeout => "INVALID_TRANSACTION_TIMEOUT",
        TxnError::TransactionalIdNotFound => "TRANSACTIONAL_ID_NOT_FOUND",
        TxnError::TransactionAbortable => "TRANSACTION_ABORTABLE",
        TxnError::InvalidRequest => "INVALID_REQUEST",
        TxnError::TooManyPartitions | TxnError::TooManyTransactionalIds => "TOO_MANY",
        TxnError::UnknownServerError => "INTERNAL",
    }
}

impl From<TransactionError> for BrokerError {
    fn from(err: TransactionError) -> BrokerError {
        let message = err.to_string();
        let reason = match err {
            TransactionError::Cluster(inner) => return BrokerError::from(&*inner),
            TransactionError::NotCoordinator { coordinator, .. } => Reason::NotCoordinator {
                coordinator: coordinator.max(-1),
            },
            TransactionError::Loading { .. } => Reason::CoordinatorLoading,
            TransactionError::CorruptRecord { .. } => Reason::Internal,
            TransactionError::Refused(TxnError::NotCoordinator) => {
                Reason::NotCoordinator { coordinator: -1 }
            }
            TransactionError::Refused(TxnError::CoordinatorLoadInProgress) => {
                Reason::CoordinatorLoading
            }
            TransactionError::Refused(TxnError::CoordinatorNotAvailable) => {
                Reason::CoordinatorNotAvailable
            }
            TransactionError::Refused(e) => Reason::Transaction(e),
        };
        BrokerError::new(reason, message)
    }
}

impl From<GroupError> for BrokerError {
    fn from(err: GroupError) -> BrokerError {
        let reason = match &err {
            GroupError::Cluster(inner) => return BrokerError::from(inner),
            GroupError::UnknownGroup(_) => Reason::UnknownGroup,
            GroupError::UnknownTopic(_) => Reason::UnknownTopic,
            GroupError::UnknownPartition { .. } => Reason::UnknownPartition,
            GroupError::UnknownMember { .. } => Reason::UnknownMember,
            GroupError::FencedMember { .. } => Reason::FencedMember,
            GroupError::StaleEpoch { .. } => Reason::StaleMemberEpoch,
            GroupError::GroupNotEmpty { .. } => Reason::GroupNotEmpty,
            GroupError::InvalidGroupId { .. } => Reason::InvalidGroupId,
            GroupError::InvalidRegex { .. } | GroupError::InvalidRequest(_) => {
                Reason::InvalidRequest
            }
            GroupError::TooManyMembers { .. } | GroupError::TooManyGroups { .. } => Reason::TooMany,
            GroupError::CorruptRecord { .. } => Reason::Internal,
            GroupError::NotCoordinator { coordinator, .. } => Reason::NotCoordinator {
                coordinator: (*coordinator).max(-1),
            },
            GroupError::CoordinatorLoading { .. } => Reason::CoordinatorLoading,
            GroupError::RebalanceInProgress { .. } => Reason::RebalanceInProgress,
            GroupError::IllegalGeneration { .. } => Reason::IllegalGeneration,
            GroupError::FencedInstanceId { .. } => Reason::FencedInstanceId,
            GroupError::InconsistentGroupProtocol { .. } => Reason::InconsistentGroupProtocol,
            GroupError::GroupSubscribedToTopic { .. } => Reason::GroupSubscribedToTopic,
            GroupError::InvalidSessionTimeout { .. } => Reason::InvalidSessionTimeout,
        };
        let partition = match &err {
            GroupError::UnknownPartition {
                topic, partition, ..
            } => Some((topic.clone(), *partition)),
            _ => None,
        };
        BrokerError {
            reason,
            message: err.to_string(),
            partition,
            refused_records: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_names_the_leader_and_the_partition() {
        let err = BrokerError::from(ClusterError::NotLeader {
            topic: "orders".into(),
            partition: 3,
            leader: -7,
        });
        assert_eq!(err.reason, Reason::NotLeader { leader: -1 });
        assert_eq!(err.partition, Some(("orders".into(), 3)));
        assert!(err.message.contains("does not lead"), "{err}");
    }

    #[test]
    fn a_sequence_error_keeps_what_the_producer_needs() {
        let err = BrokerError::from(ClusterError::Append {
            topic: "t".into(),
            partition: 0,
            source: AppendError::Sequence(SequenceError::OutOfOrder {
                producer_id: 9,
                epoch: 0,
                expected: 5,
                got: 7,
            }),
        });
        assert_eq!(
            err.reason,
            Reason::OutOfOrderSequence {
                producer_id: 9,
                expected: 5
            }
        );
        assert_eq!(err.reason.name(), "OUT_OF_ORDER_SEQUENCE");
    }

    #[test]
    fn group_errors_wrapping_cluster_errors_map_as_cluster_errors() {
        let err = BrokerError::from(GroupError::Cluster(ClusterError::UnknownTopic("t".into())));
        assert_eq!(err.reason, Reason::UnknownTopic);
        let err = BrokerError::from(GroupError::NotCoordinator {
            partition: 1,
            coordinator: -3,
        });
        assert_eq!(err.reason, Reason::NotCoordinator { coordinator: -1 });
    }
}
