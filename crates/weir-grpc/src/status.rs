//! The one place the gRPC adapter turns the core's errors into statuses: [`broker_status`]
//! for whole-call failures and [`broker_partition_error`] for the per-partition errors
//! results carry (with [`status`] and [`partition_error`] for errors
//! straight from the cluster layer, which the core turns into reasons first). Each
//! [`Reason`] gets the code a client can act on; the message says what to fix.
//!
//! Reasons share codes (not the leader, a fenced epoch and an out-of-order sequence are all
//! `FAILED_PRECONDITION`), so every status also carries a `google.rpc.ErrorInfo` detail:
//! domain [`ERROR_DOMAIN`], the reason's name ([`Reason::name`]), and metadata naming the
//! partition where there is one and what the reason carries (for `NOT_LEADER` the
//! leader, [`META_LEADER_ID`]). Per-partition errors in results carry the code, the
//! message, the reason and the same metadata (`PartitionError`).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use weir_broker::{BrokerError, Reason};
use weir_cluster::ClusterError;
use weir_cluster::txn::TxnError;
use weir_proto::v1::PartitionError;

/// The `google.rpc.ErrorInfo` domain of Weir's reasons.
pub const ERROR_DOMAIN: &str = "weir.dev";
/// Metadata key (`OUT_OF_ORDER_SEQUENCE`, `PRODUCER_FENCED`): the producer id.
pub const META_PRODUCER_ID: &str = "producer_id";
/// Metadata key (`OUT_OF_ORDER_SEQUENCE`): the sequence the partition expected.
pub const META_EXPECTED_SEQUENCE: &str = "expected_sequence";
/// Metadata key (`NOT_COORDINATOR`): the broker id of the coordinator as this broker
/// knows it, in decimal; -1 when there is none right now.
pub const META_COORDINATOR_ID: &str = "coordinator_id";
/// Metadata key (`CORRUPT_BATCH` on a read): the first offset of the stored batch that
/// cannot be decoded, in decimal.
pub const META_OFFSET: &str = "offset";
/// Metadata key (`CORRUPT_BATCH` on a read): the offset after that batch, where a reader
/// that skips it continues, in decimal.
pub const META_NEXT_OFFSET: &str = "next_offset";
/// Metadata key: the topic name.
pub const META_TOPIC: &str = "topic";
/// Metadata key: the partition index, in decimal.
pub const META_PARTITION: &str = "partition";
/// Metadata key (`NOT_LEADER`): the broker id of the leader as this broker knows it, in
/// decimal; -1 when the partition has no leader right now.
pub const META_LEADER_ID: &str = "leader_id";
/// Metadata key (`FENCED_LEADER_EPOCH`): the leader epoch the append was accepted under.
pub const META_LEADER_EPOCH: &str = "leader_epoch";
/// Metadata key (`NOT_ENOUGH_REPLICAS`): the partition's in-sync replica count.
pub const META_ISR: &str = "isr";
/// Metadata key (`NOT_ENOUGH_REPLICAS`): the topic's `min.insync.replicas`.
pub const META_MIN_INSYNC_REPLICAS: &str = "min_insync_replicas";
/// Metadata keys (`REQUEST_TOO_LARGE`): the request's size and the broker's limit.
pub const META_REQUEST_BYTES: &str = "request_bytes";
pub const META_MAX_REQUEST_BYTES: &str = "max_request_bytes";

/// The status code for `reason`.
pub fn code(reason: &Reason) -> Code {
    match reason {
        Reason::UnknownTopic | Reason::UnknownGroup | Reason::NotFound => Code::NotFound,
        Reason::NotAuthorized { .. } => Code::PermissionDenied,
        Reason::AuthenticationFailed
        | Reason::UnsupportedMechanism
        | Reason::IllegalAuthenticationState => Code::Unauthenticated,
        Reason::TopicAlreadyExists => Code::AlreadyExists,
        // The topic exists; the index is past its partition count.
        Reason::UnknownPartition
        | Reason::InvalidTopicName
        | Reason::InvalidConfig
        | Reason::InvalidReplicationFactor
        | Reason::InvalidReplicaAssignment
        | Reason::InvalidPartitions
        | Reason::InvalidRequest
        | Reason::InvalidGroupId
        | Reason::InvalidSessionTimeout
        | Reason::MetadataTooLarge
        | Reason::RecordTooLarge
        | Reason::CorruptBatch
        | Reason::InvalidRecord => Code::InvalidArgument,
        Reason::OffsetOutOfRange { .. } => Code::OutOfRange,
        // Go to the leader the message names (or refresh metadata and retry); or the
        // request does not fit the state it met.
        Reason::NotLeader { .. }
        | Reason::FencedLeaderEpoch { .. }
        | Reason::OutOfOrderSequence { .. }
        | Reason::ProducerFenced { .. }
        | Reason::CoordinatorFenced { .. }
        | Reason::StateConflict
        | Reason::UnknownMember
        | Reason::FencedMember
        | Reason::StaleMemberEpoch
        | Reason::GroupNotEmpty
        | Reason::GroupSubscribedToTopic
        // A classic member must join again (a rebalance, a new generation), or joined
        // with a protocol the group does not run.
        | Reason::RebalanceInProgress
        | Reason::IllegalGeneration
        | Reason::FencedInstanceId
        | Reason::InconsistentGroupProtocol => Code::FailedPrecondition,
        // Retriable: the ISR grows back as followers catch up; a controller is elected;
        // a new leader commits what it inherited; the topic was deleted under the
        // request or the broker is stopping; a coordinator moves or loads.
        Reason::NotEnoughReplicas { .. }
        | Reason::ControllerUnavailable
        | Reason::OffsetNotAvailable
        // This broker's metadata is behind the client's; it catches up.
        | Reason::UnknownLeaderEpoch
        | Reason::PartitionClosed
        | Reason::LogFailed
        | Reason::ShuttingDown
        | Reason::NotCoordinator { .. }
        | Reason::CoordinatorLoading
        | Reason::CoordinatorNotAvailable
        // Nothing was decided; retry shortly.
        | Reason::Busy => Code::Unavailable,
        // Corruption is not the caller's fault and retrying will not help.
        Reason::CorruptData { .. } => Code::DataLoss,
        Reason::RequestTooLarge { .. } | Reason::TooMany => Code::ResourceExhausted,
        // The disk is full: retriable once space is freed, as a full quota is.
        Reason::StorageFull => Code::ResourceExhausted,
        // Nothing is left of the topic; with more descriptors or disk space it would work.
        Reason::CreateFailed { exhausted: true } => Code::ResourceExhausted,
        Reason::CreateFailed { exhausted: false } | Reason::Internal => Code::Internal,
        Reason::Timeout => Code::DeadlineExceeded,
        Reason::Transaction(e) => match e {
            TxnError::ConcurrentTransactions => Code::Unavailable,
            TxnError::TooManyPartitions | TxnError::TooManyTransactionalIds => {
                Code::ResourceExhausted
            }
            TxnError::InvalidRequest | TxnError::InvalidTransactionTimeout => {
                Code::InvalidArgument
            }
            TxnError::TransactionalIdNotFound => Code::NotFound,
            TxnError::UnknownServerError => Code::Internal,
            TxnError::NotCoordinator
            | TxnError::CoordinatorLoadInProgress
            | TxnError::CoordinatorNotAvailable => Code::Unavailable,
            _ => Code::FailedPrecondition,
        },
    }
}

/// The `ErrorInfo` metadata of `err`: its partition and what its reason carries.
pub fn metadata(err: &BrokerError) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if let Some((topic, partition)) = &err.partition {
        m.insert(META_TOPIC.to_owned(), topic.clone());
        m.insert(META_PARTITION.to_owned(), partition.to_string());
    }
    let mut put = |key: &str, value: String| {
        m.insert(key.to_owned(), value);
    };
    match err.reason {
        Reason::NotLeader { leader } => put(META_LEADER_ID, leader.to_string()),
        Reason::NotEnoughReplicas { isr, min_insync } => {
            put(META_ISR, isr.to_string());
            put(META_MIN_INSYNC_REPLICAS, min_insync.to_string());
        }
        Reason::FencedLeaderEpoch { epoch: Some(epoch) } => {
            put(META_LEADER_EPOCH, epoch.to_string())
        }
        Reason::OutOfOrderSequence {
            producer_id,
            expected,
        } => {
            put(META_PRODUCER_ID, producer_id.to_string());
            put(META_EXPECTED_SEQUENCE, expected.to_string());
        }
        Reason::ProducerFenced { producer_id } | Reason::CoordinatorFenced { producer_id } => {
            put(META_PRODUCER_ID, producer_id.to_string())
        }
        Reason::CorruptData {
            batch: Some((offset, next_offset)),
        } => {
            put(META_OFFSET, offset.to_string());
            put(META_NEXT_OFFSET, next_offset.to_string());
        }
        Reason::NotCoordinator { coordinator } => put(META_COORDINATOR_ID, coordinator.to_string()),
        Reason::RequestTooLarge { request_bytes, max } => {
            put(META_REQUEST_BYTES, request_bytes.to_string());
            put(META_MAX_REQUEST_BYTES, max.to_string());
        }
        _ => {}
    }
    m
}

/// A whole call failed with `err`.
pub fn broker_status(err: BrokerError) -> Status {
    let code = code(&err.reason);
    if err.reason.is_fault() {
        tracing::warn!(error = %err, reason = err.reason.name(), "request failed");
    }
    let metadata = metadata(&err);
    Status::with_error_details(
        code,
        err.message,
        ErrorDetails::with_error_info(err.reason.name(), ERROR_DOMAIN, metadata),
    )
}

/// A request the broker cannot act on as sent ([`Reason::InvalidRequest`]): the
/// caller's fault, `message` saying what to fix.
pub fn invalid(message: impl Into<String>) -> Status {
    broker_status(BrokerError::invalid(message))
}

/// A status about gRPC's own framing, met before a request reaches the core (a body
/// that is not one uncompressed message, a trailer that cannot be written), which no
/// [`Reason`] describes: the code tonic itself would answer with.
pub fn wire(code: Code, message: impl Into<String>) -> Status {
    Status::new(code, message)
}

/// One partition of a call failed with `err`.
pub fn broker_partition_error(err: &BrokerError) -> PartitionError {
    PartitionError {
        code: code(&err.reason) as i32,
        message: err.message.clone(),
        reason: err.reason.name().to_owned(),
        metadata: metadata(err),
    }
}

/// A whole call failed with a cluster error.
pub fn status(err: ClusterError) -> Status {
    broker_status(err.into())
}

/// A stored batch that a decoded read could not decode: where it is and why.
#[derive(Debug)]
pub struct Undecodable<'a> {
    pub topic: &'a str,
    pub partition: u32,
    /// The batch's first offset.
    pub offset: i64,
    /// The offset after the batch.
    pub next_offset: i64,
    pub error: &'a weir_cluster::storage::BatchError,
}

impl Undecodable<'_> {
    /// The error: `CORRUPT_BATCH` naming the batch's offsets (`DATA_LOSS` over gRPC).
    pub fn error(&self) -> BrokerError {
        BrokerError::new(
            Reason::CorruptData {
                batch: Some((self.offset, self.next_offset)),
            },
            format!(
                "partition {}/{}: the stored batch at offsets {}..{} cannot be decoded: {}; \
                 the records before it were returned, and reading on means skipping the \
                 batch's records: continue from offset {}",
                self.topic,
                self.partition,
                self.offset,
                self.next_offset,
                self.error,
                self.next_offset
            ),
        )
        .at(self.topic, self.partition)
    }

    /// As a per-partition error.
    pub fn partition_error(&self) -> PartitionError {
        broker_partition_error(&self.error())
    }

    /// As a whole-call status (a Consume stream's end).
    pub fn status(&self) -> Status {
        broker_status(self.error())
    }
}

/// The statuses of the brokers' internal services (replication, controller, quorum):
/// failures of the wire between brokers and of the controller and quorum, which are not
/// the core's reasons (a client never sees them).
pub(crate) mod internal {
    use tonic::{Code, Status};
    use weir_cluster::quorum::QuorumError;
    use weir_cluster::replication::MAX_FETCHES_PER_MESSAGE;

    use crate::internal::{CONTROLLER_WIRE_VERSION, ControllerHandlerError};

    /// A forwarded call the core refused: the code a client would get for the reason, and
    /// the core's error whole in the details, which the forwarding broker reads back.
    pub(crate) fn core_error_status(err: weir_broker::BrokerError) -> Status {
        use prost::Message;
        let details = crate::internal::core_error(&err).encode_to_vec();
        Status::with_details(super::code(&err.reason), err.message, details.into())
    }

    /// A session message with more fetches than a message may carry.
    pub(crate) fn too_many_fetches(count: usize) -> Status {
        Status::invalid_argument(format!(
            "a fetch session message carries {count} partition fetches; the limit is {MAX_FETCHES_PER_MESSAGE}: send them in several messages"
        ))
    }

    /// A WriteTxnMarkers call naming more partitions than one call may.
    pub(crate) fn too_many_markers(count: usize, limit: usize) -> Status {
        Status::invalid_argument(format!(
            "a write-txn-markers call names {count} partitions; at most {limit} are accepted"
        ))
    }

    /// A call naming more groups than one call may.
    pub(crate) fn too_many_groups(what: &str, count: usize) -> Status {
        Status::invalid_argument(format!(
            "{what} names {count} groups; at most {} are accepted",
            weir_broker::limits::MAX_GROUPS_PER_REQUEST
        ))
    }

    /// A call naming more partitions than one call may.
    pub(crate) fn too_many_partitions(what: &str, count: usize) -> Status {
        Status::invalid_argument(format!(
            "{what} names {count} partitions; at most {} are accepted",
            weir_broker::limits::MAX_PARTITIONS_PER_REQUEST
        ))
    }

    /// A message that does not decode into what it should carry.
    pub(crate) fn malformed(what: &str, reason: impl std::fmt::Display) -> Status {
        Status::invalid_argument(format!("malformed {what}: {reason}"))
    }

    /// A message over the service's size limit (`detail` is the decoder's message).
    pub(crate) fn oversized(what: &str, detail: &str) -> Status {
        Status::resource_exhausted(format!("{what} too large: {detail}"))
    }

    /// A controller message of another wire version than this build's.
    pub(crate) fn wire_version_mismatch(given: u32) -> Status {
        Status::failed_precondition(format!(
            "controller wire version {given}, but this broker speaks version {CONTROLLER_WIRE_VERSION}: every broker of a cluster must run the same build"
        ))
    }

    /// This broker is stopping: the caller goes elsewhere or retries later.
    pub(crate) fn shutting_down() -> Status {
        Status::unavailable("this broker is shutting down")
    }

    /// A quorum message meant for another voter.
    pub(crate) fn wrong_voter(me: i32, target: i32) -> Status {
        Status::failed_precondition(format!(
            "this is voter {me}, not voter {target}: the sender's controller voter set names this address for node {target}"
        ))
    }

    /// A controller handler's failure as a status (its NotController is an answer, not a
    /// status, and never comes here).
    pub(crate) fn handler_status(err: ControllerHandlerError) -> Status {
        let code = match &err {
            ControllerHandlerError::NotController { .. }
            | ControllerHandlerError::Unavailable { .. } => Code::Unavailable,
            ControllerHandlerError::InvalidArgument { .. } => Code::InvalidArgument,
        };
        if code == Code::Unavailable {
            tracing::info!(error = %err, "controller call failed");
        }
        Status::new(code, err.to_string())
    }

    /// The quorum's failure to serve an RPC as a status.
    pub(crate) fn quorum_status(err: QuorumError) -> Status {
        match err {
            QuorumError::BadRpc(_) => {
                tracing::warn!(error = %err, "refused a malformed quorum RPC");
                Status::invalid_argument(err.to_string())
            }
            QuorumError::Stopped(_) | QuorumError::Shutdown(_) => {
                Status::unavailable(err.to_string())
            }
            _ => {
                tracing::warn!(error = %err, "quorum RPC failed");
                Status::internal(err.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_cluster::group::GroupError;
    use weir_cluster::storage::{AppendError, SequenceError};

    use super::*;

    fn error_info(status: &Status) -> tonic_types::ErrorInfo {
        status
            .get_details_error_info()
            .unwrap_or_else(|| panic!("{status:?} carries an ErrorInfo"))
    }

    fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn not_leader_is_failed_precondition_naming_the_leader() {
        let status = status(ClusterError::NotLeader {
            topic: "orders".to_owned(),
            partition: 3,
            leader: 2,
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        // weir-client recognises NOT_LEADER by this phrase where no ErrorInfo can be
        // carried (per-partition errors): keep them in step.
        assert!(status.message().contains("does not lead"), "{status:?}");
        let info = error_info(&status);
        assert_eq!(info.domain, "weir.dev");
        assert_eq!(info.reason, "NOT_LEADER");
        assert_eq!(
            info.metadata,
            metadata(&[("topic", "orders"), ("partition", "3"), ("leader_id", "2")])
        );
    }

    #[test]
    fn offset_not_available_is_retriable_unavailable() {
        let status = status(ClusterError::OffsetNotAvailable {
            topic: "t".to_owned(),
            partition: 1,
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("retry shortly"), "{status:?}");
        let info = error_info(&status);
        assert_eq!(info.reason, "OFFSET_NOT_AVAILABLE");
        assert_eq!(
            info.metadata,
            metadata(&[("topic", "t"), ("partition", "1")])
        );
    }

    #[test]
    fn not_leader_without_a_leader_says_minus_one() {
        let status = status(ClusterError::NotLeader {
            topic: "t".to_owned(),
            partition: 0,
            leader: -1,
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(error_info(&status).metadata["leader_id"], "-1");
    }

    #[test]
    fn not_enough_replicas_is_unavailable() {
        let status = status(ClusterError::NotEnoughReplicas {
            topic: "t".to_owned(),
            partition: 1,
            isr: 1,
            min_insync: 2,
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().contains("min.insync.replicas"),
            "{status:?}"
        );
        let info = error_info(&status);
        assert_eq!(
            (info.domain.as_str(), info.reason.as_str()),
            ("weir.dev", "NOT_ENOUGH_REPLICAS")
        );
        assert_eq!(
            info.metadata,
            metadata(&[
                ("topic", "t"),
                ("partition", "1"),
                ("isr", "1"),
                ("min_insync_replicas", "2")
            ])
        );
    }

    #[test]
    fn fenced_leader_epoch_is_failed_precondition() {
        let status = status(ClusterError::FencedLeaderEpoch {
            topic: "t".to_owned(),
            partition: 0,
            epoch: 7,
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status
                .message()
                .contains("ended before the append was written"),
            "{status:?}"
        );
        let info = error_info(&status);
        assert_eq!(
            (info.domain.as_str(), info.reason.as_str()),
            ("weir.dev", "FENCED_LEADER_EPOCH")
        );
        assert_eq!(
            info.metadata,
            metadata(&[("topic", "t"), ("partition", "0"), ("leader_epoch", "7")])
        );
    }

    #[test]
    fn the_details_survive_the_wire_encoding() {
        // What a client decodes: the status as trailers, parsed back.
        let sent = status(ClusterError::NotLeader {
            topic: "t".to_owned(),
            partition: 0,
            leader: 1,
        });
        let mut headers = tonic::metadata::MetadataMap::new().into_headers();
        sent.add_header(&mut headers).expect("encodes");
        let received = Status::from_header_map(&headers).expect("a status");
        assert_eq!(received.code(), Code::FailedPrecondition);
        assert_eq!(error_info(&received).reason, "NOT_LEADER");
    }

    #[test]
    fn every_error_carries_a_reason_with_its_code() {
        let cases = [
            (
                ClusterError::UnknownTopic("t".to_owned()),
                Code::NotFound,
                "UNKNOWN_TOPIC",
            ),
            (
                ClusterError::TopicExists("t".to_owned()),
                Code::AlreadyExists,
                "TOPIC_ALREADY_EXISTS",
            ),
            (
                ClusterError::Append {
                    topic: "t".to_owned(),
                    partition: 2,
                    source: AppendError::MessageTooLarge { bytes: 9, max: 1 },
                },
                Code::InvalidArgument,
                "RECORD_TOO_LARGE",
            ),
            (
                ClusterError::Append {
                    topic: "t".to_owned(),
                    partition: 2,
                    source: AppendError::Failed {
                        reason: "fsync".to_owned(),
                    },
                },
                Code::Unavailable,
                "LOG_FAILED",
            ),
            (
                ClusterError::Append {
                    topic: "t".to_owned(),
                    partition: 2,
                    source: AppendError::Sequence(SequenceError::Fenced {
                        producer_id: 4,
                        epoch: 0,
                        current_epoch: 1,
                    }),
                },
                Code::FailedPrecondition,
                "PRODUCER_FENCED",
            ),
            (
                ClusterError::LogRecovering {
                    topic: "t".to_owned(),
                    partition: 2,
                    reason: "fsync".to_owned(),
                },
                Code::Unavailable,
                "LOG_FAILED",
            ),
            (
                ClusterError::Quorum("x".to_owned()),
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (err, code, reason) in cases {
            let partition = broker_partition_error(&BrokerError::from(&err));
            assert_eq!(partition.reason, reason);
            let status = status(err);
            assert_eq!(status.code(), code);
            assert_eq!(error_info(&status).reason, reason);
            assert_eq!(error_info(&status).domain, ERROR_DOMAIN);
        }
    }

    #[test]
    fn every_group_error_maps_to_its_code_and_reason() {
        let member = || ("g".to_owned(), "m".to_owned());
        let cases = [
            (
                GroupError::UnknownGroup("g".into()),
                Code::NotFound,
                "UNKNOWN_GROUP",
            ),
            (
                GroupError::UnknownTopic("t".into()),
                Code::NotFound,
                "UNKNOWN_TOPIC",
            ),
            (
                GroupError::UnknownPartition {
                    topic: "t".into(),
                    partition: 9,
                    count: 1,
                },
                Code::InvalidArgument,
                "UNKNOWN_PARTITION",
            ),
            (
                GroupError::UnknownMember {
                    group_id: member().0,
                    member_id: member().1,
                },
                Code::FailedPrecondition,
                "UNKNOWN_MEMBER",
            ),
            (
                GroupError::FencedMember {
                    group_id: member().0,
                    member_id: member().1,
                    given: 1,
                    current: 2,
                },
                Code::FailedPrecondition,
                "FENCED_MEMBER",
            ),
            (
                GroupError::StaleEpoch {
                    group_id: member().0,
                    member_id: member().1,
                    given: 1,
                    current: 2,
                },
                Code::FailedPrecondition,
                "STALE_MEMBER_EPOCH",
            ),
            (
                GroupError::GroupNotEmpty {
                    group_id: "g".into(),
                    members: 1,
                    operation: "deleting",
                },
                Code::FailedPrecondition,
                "GROUP_NOT_EMPTY",
            ),
            (
                GroupError::InvalidRegex {
                    regex: "(".into(),
                    reason: "unclosed".into(),
                },
                Code::InvalidArgument,
                "INVALID_REQUEST",
            ),
            (
                GroupError::InvalidGroupId {
                    group_id: "a b".into(),
                    reason: "space".into(),
                },
                Code::InvalidArgument,
                "INVALID_GROUP_ID",
            ),
            (
                GroupError::InvalidRequest("x".into()),
                Code::InvalidArgument,
                "INVALID_REQUEST",
            ),
            (
                GroupError::TooManyMembers {
                    group_id: "g".into(),
                    max: 1,
                },
                Code::ResourceExhausted,
                "TOO_MANY",
            ),
            (
                GroupError::TooManyGroups { max: 1 },
                Code::ResourceExhausted,
                "TOO_MANY",
            ),
            (
                GroupError::CorruptRecord {
                    partition: 0,
                    offset: 1,
                    reason: "x".into(),
                },
                Code::Internal,
                "INTERNAL",
            ),
            (
                GroupError::NotCoordinator {
                    partition: 3,
                    coordinator: 2,
                },
                Code::Unavailable,
                "NOT_COORDINATOR",
            ),
            (
                GroupError::CoordinatorLoading { partition: 3 },
                Code::Unavailable,
                "COORDINATOR_LOADING",
            ),
            (
                GroupError::Cluster(ClusterError::UnknownTopic("t".into())),
                Code::NotFound,
                "UNKNOWN_TOPIC",
            ),
        ];
        for (err, code, reason) in cases {
            let what = format!("{err:?}");
            let status = broker_status(err.into());
            assert_eq!(status.code(), code, "{what}");
            let info = error_info(&status);
            assert_eq!(
                (info.reason.as_str(), info.domain.as_str()),
                (reason, ERROR_DOMAIN),
                "{what}"
            );
        }
        // NOT_COORDINATOR names the coordinator, -1 when there is none.
        let info = error_info(&broker_status(
            GroupError::NotCoordinator {
                partition: 0,
                coordinator: -7,
            }
            .into(),
        ));
        assert_eq!(info.metadata, metadata(&[("coordinator_id", "-1")]));
    }

    #[test]
    fn per_partition_errors_carry_the_code_and_the_reason() {
        let error = broker_partition_error(&BrokerError::from(ClusterError::NotLeader {
            topic: "t".to_owned(),
            partition: 0,
            leader: 1,
        }));
        assert_eq!(error.code, Code::FailedPrecondition as i32);
        assert!(error.message.contains("does not lead"));
        assert_eq!(error.reason, "NOT_LEADER");
    }
}
