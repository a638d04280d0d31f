//! The one place internal errors become gRPC statuses: [`status`] for whole-call
//! failures and [`partition_error`] for the per-partition errors results carry. Each
//! error kind gets the code a client can act on, and its message says what to fix.
//!
//! Errors share codes (not the leader, a fenced epoch and an out-of-order sequence are all
//! `FAILED_PRECONDITION`), so every whole-call status also carries a
//! `google.rpc.ErrorInfo` detail: domain [`ERROR_DOMAIN`], a reason from the `REASON_*`
//! list below ([`reason`], [`group_status`]), and metadata naming the partition where
//! there is one (and for `NOT_LEADER` the leader, [`META_LEADER_ID`]). Per-partition errors in results
//! carry the code, the message and the reason (`PartitionError.reason`).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use weir_cluster::ClusterError;
use weir_cluster::group::{GroupError, GroupErrorCode};
use weir_log::producers::SequenceError;
use weir_log::{AppendError, MaintenanceError, ReadError};
use weir_proto::v1::PartitionError;

/// The status code for `err`.
pub fn code(err: &ClusterError) -> Code {
    match err {
        ClusterError::UnknownTopic(_) => Code::NotFound,
        ClusterError::TopicExists(_) => Code::AlreadyExists,
        ClusterError::UnknownPartition { .. }
        | ClusterError::TopicName(_)
        | ClusterError::Config(_)
        | ClusterError::InvalidRequest(_) => Code::InvalidArgument,
        ClusterError::OffsetOutOfRange { .. } => Code::OutOfRange,
        // The topic was deleted under the request, or the broker is stopping: retry
        // (against the new topic, or another broker).
        ClusterError::PartitionClosed { .. } => Code::Unavailable,
        ClusterError::LogRecovering { .. } => Code::Unavailable,
        ClusterError::Append { source, .. } => match source {
            AppendError::InvalidBatch { .. }
            | AppendError::MessageTooLarge { .. }
            | AppendError::IdempotentBatchNotAlone { .. }
            | AppendError::Empty => Code::InvalidArgument,
            AppendError::StaleLeaderEpoch { .. }
            | AppendError::OffsetMismatch { .. }
            | AppendError::Sequence(_) => Code::FailedPrecondition,
            AppendError::Io { .. } | AppendError::Failed { .. } => Code::Unavailable,
        },
        ClusterError::Read { source, .. } => match source {
            ReadError::OffsetOutOfRange { .. } => Code::OutOfRange,
            // Corruption is not the caller's fault and retrying will not help.
            ReadError::Corrupt { .. } => Code::DataLoss,
            ReadError::Io { .. } => Code::Unavailable,
        },
        ClusterError::Maintenance { source, .. } => match source {
            MaintenanceError::OffsetOutOfRange { .. } => Code::OutOfRange,
            _ => Code::Unavailable,
        },
        // Go to the leader the message names (or refresh metadata and retry).
        ClusterError::NotLeader { .. } | ClusterError::FencedLeaderEpoch { .. } => {
            Code::FailedPrecondition
        }
        // Retriable: the ISR grows back as followers catch up; a controller is elected;
        // a new leader commits what it inherited.
        ClusterError::NotEnoughReplicas { .. }
        | ClusterError::ControllerUnavailable(_)
        | ClusterError::OffsetNotAvailable { .. } => Code::Unavailable,
        ClusterError::Quorum(_) | ClusterError::Refused(_) => Code::Internal,
        // Nothing is left of the topic; with more descriptors or disk space it would work.
        ClusterError::CreateFailed {
            exhausted: true, ..
        } => Code::ResourceExhausted,
        ClusterError::CreateFailed { .. } => Code::Internal,
        ClusterError::Open { .. }
        | ClusterError::Metadata(_)
        | ClusterError::Io { .. }
        | ClusterError::TaskFailed(_) => Code::Internal,
    }
}

/// The `google.rpc.ErrorInfo` domain of Weir's reasons.
pub const ERROR_DOMAIN: &str = "weir.dev";
/// Reason: this broker does not lead the partition (code `FAILED_PRECONDITION`).
pub const REASON_NOT_LEADER: &str = "NOT_LEADER";
/// Reason: fewer in-sync replicas than `min.insync.replicas`; nothing was appended (code
/// `UNAVAILABLE`).
pub const REASON_NOT_ENOUGH_REPLICAS: &str = "NOT_ENOUGH_REPLICAS";
/// Reason: the leadership an append was accepted under ended before it was written;
/// nothing was appended (code `FAILED_PRECONDITION`).
pub const REASON_FENCED_LEADER_EPOCH: &str = "FENCED_LEADER_EPOCH";
/// Reason: a new leader does not know its latest offset yet (code `UNAVAILABLE`; retry).
pub const REASON_OFFSET_NOT_AVAILABLE: &str = "OFFSET_NOT_AVAILABLE";
/// Reason: an idempotent producer's batch does not continue its sequence; nothing was
/// appended (code `FAILED_PRECONDITION`).
pub const REASON_OUT_OF_ORDER_SEQUENCE: &str = "OUT_OF_ORDER_SEQUENCE";
/// Reason: a newer instance of the producer took over; nothing was appended (code
/// `FAILED_PRECONDITION`).
pub const REASON_PRODUCER_FENCED: &str = "PRODUCER_FENCED";
/// Metadata key (`OUT_OF_ORDER_SEQUENCE`, `PRODUCER_FENCED`): the producer id.
pub const META_PRODUCER_ID: &str = "producer_id";
/// Metadata key (`OUT_OF_ORDER_SEQUENCE`): the sequence the partition expected.
pub const META_EXPECTED_SEQUENCE: &str = "expected_sequence";
/// Reason: no topic of that name (code `NOT_FOUND`).
pub const REASON_UNKNOWN_TOPIC: &str = "UNKNOWN_TOPIC";
/// Reason: the topic exists already (code `ALREADY_EXISTS`).
pub const REASON_TOPIC_ALREADY_EXISTS: &str = "TOPIC_ALREADY_EXISTS";
/// Reason: the topic has no such partition (code `INVALID_ARGUMENT`).
pub const REASON_UNKNOWN_PARTITION: &str = "UNKNOWN_PARTITION";
/// Reason: the topic name breaks the naming rules (code `INVALID_ARGUMENT`).
pub const REASON_INVALID_TOPIC_NAME: &str = "INVALID_TOPIC_NAME";
/// Reason: an unknown topic setting or a bad value (code `INVALID_ARGUMENT`).
pub const REASON_INVALID_CONFIG: &str = "INVALID_CONFIG";
/// Reason: a request the broker cannot act on as sent (code `INVALID_ARGUMENT` or, for
/// requests that do not fit the partition's state, `FAILED_PRECONDITION`).
pub const REASON_INVALID_REQUEST: &str = "INVALID_REQUEST";
/// Reason: an offset outside the partition's range (code `OUT_OF_RANGE`).
pub const REASON_OFFSET_OUT_OF_RANGE: &str = "OFFSET_OUT_OF_RANGE";
/// Reason: the partition closed under the request (deleted, or the broker stopping);
/// retry (code `UNAVAILABLE`).
pub const REASON_PARTITION_CLOSED: &str = "PARTITION_CLOSED";
/// Reason: a batch over `max.message.bytes` (code `INVALID_ARGUMENT`).
pub const REASON_RECORD_TOO_LARGE: &str = "RECORD_TOO_LARGE";
/// Reason: a request over the broker's `max_request_bytes` (code `RESOURCE_EXHAUSTED`;
/// metadata `request_bytes` and `max_request_bytes`).
pub const REASON_REQUEST_TOO_LARGE: &str = "REQUEST_TOO_LARGE";
/// Reason: a malformed or CRC-failing batch, sent or stored (code `INVALID_ARGUMENT`
/// for a produce, `DATA_LOSS` for a read).
pub const REASON_CORRUPT_BATCH: &str = "CORRUPT_BATCH";
/// Reason: the partition's log failed (an I/O or fsync error); retry (code `UNAVAILABLE`).
pub const REASON_LOG_FAILED: &str = "LOG_FAILED";
/// Reason: no controller answers now (an election); retry (code `UNAVAILABLE`).
pub const REASON_CONTROLLER_UNAVAILABLE: &str = "CONTROLLER_UNAVAILABLE";
/// Reason: the topic could not be created on this broker (code `RESOURCE_EXHAUSTED` for
/// a resource limit, else `INTERNAL`).
pub const REASON_CREATE_FAILED: &str = "CREATE_FAILED";
/// Reason: a fault of the broker, not of the request (code `INTERNAL`).
pub const REASON_INTERNAL: &str = "INTERNAL";
/// Reason: no such consumer group (code `NOT_FOUND`).
pub const REASON_UNKNOWN_GROUP: &str = "UNKNOWN_GROUP";
/// Reason: the group has no such member; join again (code `FAILED_PRECONDITION`).
pub const REASON_UNKNOWN_MEMBER: &str = "UNKNOWN_MEMBER";
/// Reason: the member was fenced (missed its session); join again
/// (code `FAILED_PRECONDITION`).
pub const REASON_FENCED_MEMBER: &str = "FENCED_MEMBER";
/// Reason: the member's epoch is not the group's (code `FAILED_PRECONDITION`).
pub const REASON_STALE_MEMBER_EPOCH: &str = "STALE_MEMBER_EPOCH";
/// Reason: the group still has members (code `FAILED_PRECONDITION`).
pub const REASON_GROUP_NOT_EMPTY: &str = "GROUP_NOT_EMPTY";
/// Reason: a group id that breaks the naming rules (code `INVALID_ARGUMENT`).
pub const REASON_INVALID_GROUP_ID: &str = "INVALID_GROUP_ID";
/// Reason: a limit on groups or members was reached (code `RESOURCE_EXHAUSTED`).
pub const REASON_TOO_MANY: &str = "TOO_MANY";
/// Reason: this broker does not coordinate the group; ask FindCoordinator and retry
/// there (code `UNAVAILABLE`).
pub const REASON_NOT_COORDINATOR: &str = "NOT_COORDINATOR";
/// Reason: this broker just became the group's coordinator and is loading it; retry
/// shortly (code `UNAVAILABLE`).
pub const REASON_COORDINATOR_LOADING: &str = "COORDINATOR_LOADING";
/// Reason: the group's `__consumer_offsets` partition has no leader now, so it has no
/// coordinator (FindCoordinator; code `UNAVAILABLE`).
pub const REASON_COORDINATOR_NOT_AVAILABLE: &str = "COORDINATOR_NOT_AVAILABLE";
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

/// The `ErrorInfo` reason and metadata for `err`, if it is one a client acts on.
pub fn reason(err: &ClusterError) -> Option<(&'static str, HashMap<String, String>)> {
    let meta = |topic: &str, partition: u32, extra: &[(&str, String)]| {
        let mut metadata = HashMap::with_capacity(2 + extra.len());
        metadata.insert(META_TOPIC.to_owned(), topic.to_owned());
        metadata.insert(META_PARTITION.to_owned(), partition.to_string());
        for (key, value) in extra {
            metadata.insert((*key).to_owned(), value.clone());
        }
        metadata
    };
    match err {
        ClusterError::NotLeader {
            topic,
            partition,
            leader,
        } => Some((
            REASON_NOT_LEADER,
            // Any negative id means "none": say -1, as the contract does.
            meta(
                topic,
                *partition,
                &[(META_LEADER_ID, (*leader).max(-1).to_string())],
            ),
        )),
        ClusterError::NotEnoughReplicas {
            topic,
            partition,
            isr,
            min_insync,
        } => Some((
            REASON_NOT_ENOUGH_REPLICAS,
            meta(
                topic,
                *partition,
                &[
                    (META_ISR, isr.to_string()),
                    (META_MIN_INSYNC_REPLICAS, min_insync.to_string()),
                ],
            ),
        )),
        ClusterError::FencedLeaderEpoch {
            topic,
            partition,
            epoch,
        } => Some((
            REASON_FENCED_LEADER_EPOCH,
            meta(topic, *partition, &[(META_LEADER_EPOCH, epoch.to_string())]),
        )),
        ClusterError::OffsetNotAvailable { topic, partition } => {
            Some((REASON_OFFSET_NOT_AVAILABLE, meta(topic, *partition, &[])))
        }
        ClusterError::Append {
            topic,
            partition,
            source: AppendError::Sequence(e),
        } => Some(match e {
            SequenceError::OutOfOrder {
                producer_id,
                expected,
                ..
            } => (
                REASON_OUT_OF_ORDER_SEQUENCE,
                meta(
                    topic,
                    *partition,
                    &[
                        (META_PRODUCER_ID, producer_id.to_string()),
                        (META_EXPECTED_SEQUENCE, expected.to_string()),
                    ],
                ),
            ),
            SequenceError::Fenced { producer_id, .. } => (
                REASON_PRODUCER_FENCED,
                meta(
                    topic,
                    *partition,
                    &[(META_PRODUCER_ID, producer_id.to_string())],
                ),
            ),
        }),
        ClusterError::UnknownTopic(_) => Some((REASON_UNKNOWN_TOPIC, HashMap::new())),
        ClusterError::TopicExists(_) => Some((REASON_TOPIC_ALREADY_EXISTS, HashMap::new())),
        ClusterError::UnknownPartition {
            topic, partition, ..
        } => Some((REASON_UNKNOWN_PARTITION, meta(topic, *partition, &[]))),
        ClusterError::TopicName(_) => Some((REASON_INVALID_TOPIC_NAME, HashMap::new())),
        ClusterError::Config(_) => Some((REASON_INVALID_CONFIG, HashMap::new())),
        ClusterError::InvalidRequest(_) => Some((REASON_INVALID_REQUEST, HashMap::new())),
        ClusterError::OffsetOutOfRange {
            topic, partition, ..
        }
        | ClusterError::Read {
            topic,
            partition,
            source: ReadError::OffsetOutOfRange { .. },
        }
        | ClusterError::Maintenance {
            topic,
            partition,
            source: MaintenanceError::OffsetOutOfRange { .. },
        } => Some((REASON_OFFSET_OUT_OF_RANGE, meta(topic, *partition, &[]))),
        ClusterError::PartitionClosed { topic, partition } => {
            Some((REASON_PARTITION_CLOSED, meta(topic, *partition, &[])))
        }
        ClusterError::LogRecovering {
            topic, partition, ..
        } => Some((REASON_LOG_FAILED, meta(topic, *partition, &[]))),
        ClusterError::Append {
            topic,
            partition,
            source,
        } => Some((
            match source {
                AppendError::MessageTooLarge { .. } => REASON_RECORD_TOO_LARGE,
                AppendError::InvalidBatch { .. } => REASON_CORRUPT_BATCH,
                AppendError::StaleLeaderEpoch { .. } => REASON_FENCED_LEADER_EPOCH,
                AppendError::Io { .. } | AppendError::Failed { .. } => REASON_LOG_FAILED,
                AppendError::Empty
                | AppendError::IdempotentBatchNotAlone { .. }
                | AppendError::OffsetMismatch { .. }
                | AppendError::Sequence(_) => REASON_INVALID_REQUEST,
            },
            meta(topic, *partition, &[]),
        )),
        ClusterError::Read {
            topic,
            partition,
            source,
        } => Some((
            match source {
                ReadError::Corrupt { .. } => REASON_CORRUPT_BATCH,
                _ => REASON_LOG_FAILED,
            },
            meta(topic, *partition, &[]),
        )),
        ClusterError::Maintenance {
            topic, partition, ..
        } => Some((REASON_LOG_FAILED, meta(topic, *partition, &[]))),
        ClusterError::ControllerUnavailable(_) => {
            Some((REASON_CONTROLLER_UNAVAILABLE, HashMap::new()))
        }
        ClusterError::CreateFailed { .. } => Some((REASON_CREATE_FAILED, HashMap::new())),
        ClusterError::Open { .. }
        | ClusterError::Metadata(_)
        | ClusterError::Io { .. }
        | ClusterError::TaskFailed(_)
        | ClusterError::Quorum(_)
        | ClusterError::Refused(_) => Some((REASON_INTERNAL, HashMap::new())),
    }
}

/// `err` as a whole-call status, with an `ErrorInfo` detail where [`reason`] has one.
pub fn status(err: ClusterError) -> Status {
    let code = code(&err);
    if matches!(code, Code::Internal | Code::Unavailable | Code::DataLoss) {
        tracing::warn!(error = %err, "request failed");
    }
    match reason(&err) {
        Some((reason, metadata)) => Status::with_error_details(
            code,
            err.to_string(),
            ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
        ),
        None => Status::new(code, err.to_string()),
    }
}

/// A group operation's failure as a whole-call status.
pub fn group_status(err: GroupError) -> Status {
    let code = match err.code() {
        GroupErrorCode::InvalidArgument => Code::InvalidArgument,
        GroupErrorCode::NotFound => Code::NotFound,
        GroupErrorCode::FailedPrecondition => Code::FailedPrecondition,
        GroupErrorCode::ResourceExhausted => Code::ResourceExhausted,
        GroupErrorCode::Internal => Code::Internal,
        GroupErrorCode::Unavailable => Code::Unavailable,
        GroupErrorCode::Cluster => match err {
            GroupError::Cluster(inner) => return status(inner),
            _ => Code::Internal,
        },
    };
    if code == Code::Internal {
        tracing::warn!(error = %err, "group request failed");
    }
    let reason = match &err {
        GroupError::UnknownGroup(_) => REASON_UNKNOWN_GROUP,
        GroupError::UnknownTopic(_) => REASON_UNKNOWN_TOPIC,
        GroupError::UnknownPartition { .. } => REASON_UNKNOWN_PARTITION,
        GroupError::UnknownMember { .. } => REASON_UNKNOWN_MEMBER,
        GroupError::FencedMember { .. } => REASON_FENCED_MEMBER,
        GroupError::StaleEpoch { .. } => REASON_STALE_MEMBER_EPOCH,
        GroupError::GroupNotEmpty { .. } => REASON_GROUP_NOT_EMPTY,
        GroupError::InvalidGroupId { .. } => REASON_INVALID_GROUP_ID,
        GroupError::InvalidRegex { .. } | GroupError::InvalidRequest(_) => REASON_INVALID_REQUEST,
        GroupError::TooManyMembers { .. } | GroupError::TooManyGroups { .. } => REASON_TOO_MANY,
        GroupError::CorruptRecord { .. } | GroupError::Cluster(_) => REASON_INTERNAL,
        GroupError::NotCoordinator { .. } => REASON_NOT_COORDINATOR,
        GroupError::CoordinatorLoading { .. } => REASON_COORDINATOR_LOADING,
    };
    let mut metadata = HashMap::new();
    if let GroupError::NotCoordinator { coordinator, .. } = &err {
        metadata.insert(
            META_COORDINATOR_ID.to_owned(),
            (*coordinator).max(-1).to_string(),
        );
    }
    Status::with_error_details(
        code,
        err.to_string(),
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
    )
}

/// `err` as a per-partition error in a result.
pub fn partition_error(err: &ClusterError) -> PartitionError {
    let (reason, metadata) = reason(err)
        .map(|(r, metadata)| (r.to_owned(), metadata))
        .unwrap_or_default();
    PartitionError {
        code: code(err) as i32,
        message: err.to_string(),
        reason,
        metadata,
    }
}

/// A per-partition error for bad input found at the edge (before the cluster layer).
pub fn invalid_argument(message: impl Into<String>) -> PartitionError {
    partition_error_code(Code::InvalidArgument, message)
}

/// A per-partition error with an explicit code.
pub fn partition_error_code(code: Code, message: impl Into<String>) -> PartitionError {
    PartitionError {
        code: code as i32,
        message: message.into(),
        reason: String::new(),
        metadata: HashMap::new(),
    }
}

/// A request for a partition the broker cannot act on as sent: `INVALID_ARGUMENT`,
/// reason `INVALID_REQUEST`.
pub fn invalid_request(topic: &str, partition: u32, message: String) -> PartitionError {
    PartitionError {
        code: Code::InvalidArgument as i32,
        message,
        reason: REASON_INVALID_REQUEST.to_owned(),
        metadata: HashMap::from([
            (META_TOPIC.to_owned(), topic.to_owned()),
            (META_PARTITION.to_owned(), partition.to_string()),
        ]),
    }
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
    pub error: &'a weir_log::BatchError,
}

impl Undecodable<'_> {
    fn message(&self) -> String {
        format!(
            "partition {}/{}: the stored batch at offsets {}..{} cannot be decoded: {}; \
             the records before it were returned, and reading on means skipping the \
             batch's records: continue from offset {}",
            self.topic, self.partition, self.offset, self.next_offset, self.error, self.next_offset
        )
    }

    fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            (META_TOPIC.to_owned(), self.topic.to_owned()),
            (META_PARTITION.to_owned(), self.partition.to_string()),
            (META_OFFSET.to_owned(), self.offset.to_string()),
            (META_NEXT_OFFSET.to_owned(), self.next_offset.to_string()),
        ])
    }

    /// As a per-partition error: `DATA_LOSS`, reason `CORRUPT_BATCH`, with the batch's
    /// offsets in the metadata.
    pub fn partition_error(&self) -> PartitionError {
        PartitionError {
            code: Code::DataLoss as i32,
            message: self.message(),
            reason: REASON_CORRUPT_BATCH.to_owned(),
            metadata: self.metadata(),
        }
    }

    /// As a whole-call status (a Consume stream's end): the same, in an `ErrorInfo`.
    pub fn status(&self) -> Status {
        Status::with_error_details(
            Code::DataLoss,
            self.message(),
            ErrorDetails::with_error_info(REASON_CORRUPT_BATCH, ERROR_DOMAIN, self.metadata()),
        )
    }
}

#[cfg(test)]
mod tests {
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
            let partition = partition_error(&err);
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
                Code::NotFound,
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
            let status = group_status(err);
            assert_eq!(status.code(), code, "{what}");
            let info = error_info(&status);
            assert_eq!(
                (info.reason.as_str(), info.domain.as_str()),
                (reason, ERROR_DOMAIN),
                "{what}"
            );
        }
        // NOT_COORDINATOR names the coordinator, -1 when there is none.
        let info = error_info(&group_status(GroupError::NotCoordinator {
            partition: 0,
            coordinator: -7,
        }));
        assert_eq!(info.metadata, metadata(&[("coordinator_id", "-1")]));
    }

    #[test]
    fn per_partition_errors_carry_the_code_and_the_reason() {
        let error = partition_error(&ClusterError::NotLeader {
            topic: "t".to_owned(),
            partition: 0,
            leader: 1,
        });
        assert_eq!(error.code, Code::FailedPrecondition as i32);
        assert!(error.message.contains("does not lead"));
        assert_eq!(error.reason, "NOT_LEADER");
    }
}
