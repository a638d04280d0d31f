//! [`ClientError`]: what every client operation can fail with, keeping the broker's gRPC
//! code and message so a caller (the CLI) can print something actionable and pick an exit
//! status, and saying whether retrying can help.
//!
//! Three broker refusals matter to leader following and share their codes with other
//! errors, so they have variants of their own: [`ClientError::NotLeader`],
//! [`ClientError::FencedLeaderEpoch`] and [`ClientError::NotEnoughReplicas`]. They are
//! recognised by the `google.rpc.ErrorInfo` detail of a whole-call status (domain
//! [`ERROR_DOMAIN`], reasons below), and where there is none (per-partition errors in
//! results carry only a code and a message, and older brokers send no details) by the
//! code and the broker's wording.

use std::sync::Arc;

use tonic::Code;
use tonic_types::{ErrorInfo, StatusExt};
use weir_batch::BatchError;

use crate::connection::{BrokerFailure, FailureReason, broker_failure};

/// The `google.rpc.ErrorInfo` domain of Weir's error reasons.
pub const ERROR_DOMAIN: &str = "weir.dev";
/// `ErrorInfo` reason: the broker does not lead the partition.
pub const REASON_NOT_LEADER: &str = "NOT_LEADER";
/// `ErrorInfo` reason: too few in-sync replicas for `acks=all`.
pub const REASON_NOT_ENOUGH_REPLICAS: &str = "NOT_ENOUGH_REPLICAS";
/// `ErrorInfo` reason: the leadership an append was accepted under ended first.
pub const REASON_FENCED_LEADER_EPOCH: &str = "FENCED_LEADER_EPOCH";
/// `ErrorInfo` reason: an idempotent producer's batch does not continue its sequence.
pub const REASON_OUT_OF_ORDER_SEQUENCE: &str = "OUT_OF_ORDER_SEQUENCE";
/// `ErrorInfo` reason: a newer instance of this named producer took over.
pub const REASON_PRODUCER_FENCED: &str = "PRODUCER_FENCED";
/// `ErrorInfo` metadata key of `NOT_LEADER`: the leader's broker id, -1 if none.
pub const METADATA_LEADER_ID: &str = "leader_id";
/// `ErrorInfo` reason: a malformed batch (a produce's, `INVALID_ARGUMENT`), or a stored
/// batch a read could not decode (`DATA_LOSS`, with [`METADATA_OFFSET`] and
/// [`METADATA_NEXT_OFFSET`]).
pub const REASON_CORRUPT_BATCH: &str = "CORRUPT_BATCH";
/// `ErrorInfo` metadata key of `CORRUPT_BATCH` on a read: the batch's first offset.
pub const METADATA_OFFSET: &str = "offset";
/// `ErrorInfo` metadata key of `CORRUPT_BATCH` on a read: the offset after the batch.
pub const METADATA_NEXT_OFFSET: &str = "next_offset";
/// `ErrorInfo` metadata key: the topic.
const METADATA_TOPIC: &str = "topic";
/// `ErrorInfo` metadata key: the partition index.
const METADATA_PARTITION: &str = "partition";

/// Why a client operation failed.
///
/// Broker answers keep their gRPC code as the variant and the broker's message as the
/// text. The type is `Clone` because one produce outcome is delivered to every record of
/// a batch; causes that are not `Clone` are shared behind an [`Arc`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No such topic or partition (gRPC `NOT_FOUND`).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request was refused as malformed: a bad name, count, offset or record
    /// (gRPC `INVALID_ARGUMENT`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An offset outside the partition's valid range (gRPC `OUT_OF_RANGE`).
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// The topic already exists (gRPC `ALREADY_EXISTS`).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The broker cannot serve the request in its current state, for example a group
    /// that still has members (gRPC `FAILED_PRECONDITION`).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The broker does not lead the partition (gRPC `FAILED_PRECONDITION`, reason
    /// `NOT_LEADER`). The producer and consumer refresh their metadata and retry on the
    /// leader by themselves; retriable.
    #[error("not the leader: {message}")]
    NotLeader {
        /// The broker's message.
        message: String,
        /// The leader the broker named, if it knows one.
        leader: Option<i32>,
    },
    /// The leadership the append was accepted under ended before it was written; nothing
    /// was appended (gRPC `FAILED_PRECONDITION`, reason `FENCED_LEADER_EPOCH`). Retriable
    /// on the new leader.
    #[error("fenced leader epoch: {0}")]
    FencedLeaderEpoch(String),
    /// Fewer in-sync replicas than the topic's `min.insync.replicas`, so an `acks=all`
    /// produce was refused and nothing appended (gRPC `UNAVAILABLE`, reason
    /// `NOT_ENOUGH_REPLICAS`); retriable once followers catch up.
    #[error("not enough replicas: {0}")]
    NotEnoughReplicas(String),
    /// An idempotent producer's batch did not continue its sequence at the partition;
    /// nothing was appended (gRPC `FAILED_PRECONDITION`, reason
    /// `OUT_OF_ORDER_SEQUENCE`). Retriable: the producer resends its batches in order.
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// A newer instance of this named producer started; this one may not write any more
    /// (gRPC `FAILED_PRECONDITION`, reason `PRODUCER_FENCED`). Not retriable.
    #[error("producer fenced: {0}")]
    ProducerFenced(String),
    /// The broker is not reachable or not ready (gRPC `UNAVAILABLE`); retriable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The broker is overloaded (gRPC `RESOURCE_EXHAUSTED`); retriable.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// No answer in time (gRPC `DEADLINE_EXCEEDED`, or the client's request timeout);
    /// retriable.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// Any other gRPC status.
    #[error("{code:?}: {message}")]
    Rpc {
        /// The gRPC code.
        code: Code,
        /// The broker's message.
        message: String,
    },
    /// No broker in the list could be connected to (or none answered gRPC within the
    /// connect timeout); retriable.
    #[error("{}", connect_message(failures))]
    Connect {
        /// Every address tried, in order, with why it failed.
        failures: Vec<BrokerFailure>,
    },
    /// A broker's address answered, but not with gRPC: typically the broker's HTTP
    /// (metrics and health) port instead of its client port. Not retriable.
    #[error("{0}")]
    NotGrpc(BrokerFailure),
    /// A client setting or argument is wrong (found before anything was sent).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Records could not be encoded, or a message from the broker did not hold whole,
    /// intact batches.
    #[error("record batch error")]
    Batch(#[source] Arc<BatchError>),
    /// A batch stored in the partition cannot be decoded (gRPC `DATA_LOSS`, reason
    /// `CORRUPT_BATCH`, or found by this client decoding the batch): its records, at
    /// offsets `offset..next_offset`, cannot be read. The records before it were
    /// returned. Not retriable: reading on means skipping them, by seeking to
    /// `next_offset` ([`Consumer::seek`](crate::Consumer::seek)).
    #[error(
        "the batch at offsets {offset}..{next_offset} of {topic}/{partition} cannot be decoded ({reason}); seek to offset {next_offset} to skip its records"
    )]
    CorruptBatch {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: u32,
        /// The batch's first offset.
        offset: i64,
        /// The offset after the batch: where reading continues past it.
        next_offset: i64,
        /// Why it cannot be decoded, as the broker or this client's decoder said.
        reason: String,
    },
    /// A [`ShareConsumer`](crate::ShareConsumer) with explicit acknowledgement
    /// ([`AckMode::Explicit`](crate::AckMode::Explicit)) was polled while records of its
    /// previous poll were not acknowledged (Kafka's `IllegalStateException`). Nothing was
    /// sent; acknowledge them, then poll again. Not retriable.
    #[error(
        "{count} record(s) of the previous poll are not acknowledged (the first: {first}); with explicit acknowledgement, acknowledge every record (accept, release or reject) before polling again"
    )]
    Unacknowledged {
        /// How many records wait for an acknowledgement.
        count: usize,
        /// The first of them, as `topic/partition@offset`.
        first: String,
    },
    /// The producer or consumer was closed.
    #[error("the client is closed")]
    Closed,
}

impl ClientError {
    /// The gRPC code this error corresponds to (`Unknown` for client-side errors that
    /// have none, `Unavailable` for connection failures).
    pub fn code(&self) -> Code {
        match self {
            ClientError::NotFound(_) => Code::NotFound,
            ClientError::InvalidArgument(_) | ClientError::Config(_) => Code::InvalidArgument,
            ClientError::OutOfRange(_) => Code::OutOfRange,
            ClientError::AlreadyExists(_) => Code::AlreadyExists,
            ClientError::FailedPrecondition(_)
            | ClientError::NotLeader { .. }
            | ClientError::FencedLeaderEpoch(_)
            | ClientError::OutOfOrderSequence(_)
            | ClientError::ProducerFenced(_)
            | ClientError::Unacknowledged { .. } => Code::FailedPrecondition,
            ClientError::Unavailable(_)
            | ClientError::NotEnoughReplicas(_)
            | ClientError::Connect { .. } => Code::Unavailable,
            ClientError::ResourceExhausted(_) => Code::ResourceExhausted,
            ClientError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            ClientError::NotGrpc(_) => Code::Unimplemented,
            ClientError::Rpc { code, .. } => *code,
            ClientError::Batch(_) | ClientError::CorruptBatch { .. } => Code::DataLoss,
            ClientError::Closed => Code::Cancelled,
        }
    }

    /// Whether sending the request again may succeed: the broker was unreachable,
    /// overloaded or slow, or leadership moved (sent again to the new leader; see
    /// [`crate::retry`]). Bad input, missing topics and data errors are never retried.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ClientError::NotLeader { .. }
                | ClientError::FencedLeaderEpoch(_)
                | ClientError::OutOfOrderSequence(_)
        ) || matches!(
            self.code(),
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Aborted
        )
    }

    /// The error for a gRPC code and message, from a `Status` or a per-partition error.
    pub fn from_code(code: Code, message: impl Into<String>) -> ClientError {
        let message = message.into();
        match code {
            Code::NotFound => ClientError::NotFound(message),
            Code::InvalidArgument => ClientError::InvalidArgument(message),
            Code::OutOfRange => ClientError::OutOfRange(message),
            Code::AlreadyExists => ClientError::AlreadyExists(message),
            Code::FailedPrecondition => ClientError::FailedPrecondition(message),
            Code::Unavailable => ClientError::Unavailable(message),
            Code::ResourceExhausted => ClientError::ResourceExhausted(message),
            Code::DeadlineExceeded => ClientError::DeadlineExceeded(message),
            code => ClientError::Rpc { code, message },
        }
    }

    /// The error for a gRPC code, message and (if the broker sent one) `ErrorInfo`:
    /// Weir's reasons become their own variants; without an `ErrorInfo`, the broker's
    /// wording for them is recognised (see the module docs); anything else is
    /// [`from_code`](Self::from_code).
    pub fn from_details(
        code: Code,
        message: impl Into<String>,
        info: Option<&ErrorInfo>,
    ) -> ClientError {
        let message = message.into();
        match info.filter(|i| i.domain == ERROR_DOMAIN) {
            Some(info) => match info.reason.as_str() {
                REASON_NOT_LEADER => ClientError::NotLeader {
                    leader: info
                        .metadata
                        .get(METADATA_LEADER_ID)
                        .and_then(|id| id.parse::<i32>().ok())
                        .filter(|id| *id >= 0),
                    message,
                },
                REASON_FENCED_LEADER_EPOCH => ClientError::FencedLeaderEpoch(message),
                REASON_NOT_ENOUGH_REPLICAS => ClientError::NotEnoughReplicas(message),
                REASON_OUT_OF_ORDER_SEQUENCE => ClientError::OutOfOrderSequence(message),
                REASON_PRODUCER_FENCED => ClientError::ProducerFenced(message),
                REASON_CORRUPT_BATCH if code == Code::DataLoss => {
                    corrupt_batch(&info.metadata, &message)
                        .unwrap_or_else(|| ClientError::from_code(code, message))
                }
                _ => ClientError::from_code(code, message),
            },
            None => ClientError::from_wording(code, message),
        }
    }

    /// Weir's reasons recognised by code and wording, for errors that carry no
    /// `ErrorInfo`. The phrases are the broker's (`weir-cluster`'s `ClusterError`
    /// messages; `weir-grpc`'s status tests pin them).
    fn from_wording(code: Code, message: String) -> ClientError {
        match code {
            Code::FailedPrecondition if message.contains("does not lead") => {
                ClientError::NotLeader {
                    leader: leader_in_message(&message),
                    message,
                }
            }
            Code::FailedPrecondition if message.contains("ended before the append was written") => {
                ClientError::FencedLeaderEpoch(message)
            }
            Code::Unavailable if message.contains("min.insync.replicas") => {
                ClientError::NotEnoughReplicas(message)
            }
            code => ClientError::from_code(code, message),
        }
    }

    /// The error a per-partition result carries: a code, a message and (from brokers
    /// that send one) a reason.
    pub(crate) fn from_partition_error(error: &weir_proto::v1::PartitionError) -> ClientError {
        let info = (!error.reason.is_empty()).then(|| ErrorInfo {
            reason: error.reason.clone(),
            domain: ERROR_DOMAIN.to_owned(),
            metadata: error.metadata.clone(),
        });
        ClientError::from_details(
            Code::from_i32(error.code),
            error.message.clone(),
            info.as_ref(),
        )
    }

    /// For [`ClientError::NotLeader`], the leader the broker named, if any.
    pub fn leader_hint(&self) -> Option<i32> {
        match self {
            ClientError::NotLeader { leader, .. } => *leader,
            _ => None,
        }
    }
}

/// [`ClientError::CorruptBatch`] from a read's `CORRUPT_BATCH` metadata, if it has every
/// field.
fn corrupt_batch(
    metadata: &std::collections::HashMap<String, String>,
    message: &str,
) -> Option<ClientError> {
    let field = |key: &str| metadata.get(key);
    Some(ClientError::CorruptBatch {
        topic: field(METADATA_TOPIC)?.clone(),
        partition: field(METADATA_PARTITION)?.parse().ok()?,
        offset: field(METADATA_OFFSET)?.parse().ok()?,
        next_offset: field(METADATA_NEXT_OFFSET)?.parse().ok()?,
        reason: message.to_owned(),
    })
}

/// The leader id in "...; broker 3 does", the broker's NOT_LEADER wording.
fn leader_in_message(message: &str) -> Option<i32> {
    let (_, rest) = message.rsplit_once("; broker ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    rest[digits.len()..]
        .starts_with(" does")
        .then(|| digits.parse().ok())
        .flatten()
}

/// One sentence: the failure itself for one broker; for several, their addresses and
/// the reason (once if they all failed alike).
fn connect_message(failures: &[BrokerFailure]) -> String {
    match failures {
        [] => "no broker to connect to".to_owned(),
        [one] => one.to_string(),
        several => {
            let addresses: Vec<&str> = several.iter().map(|f| f.address.as_str()).collect();
            let reasons: Vec<String> = several.iter().map(BrokerFailure::reason_text).collect();
            let why = if reasons.iter().all(|r| *r == reasons[0]) {
                reasons[0].clone()
            } else {
                several
                    .iter()
                    .zip(&reasons)
                    .map(|(f, r)| format!("{}: {r}", f.address))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            format!(
                "could not connect to any broker of {}: {why}",
                addresses.join(", ")
            )
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> ClientError {
        // Made by a `BrokerChannel`: the connection, not the broker, failed.
        if let Some(failure) = broker_failure(&status) {
            let message = failure.to_string();
            return match failure.reason {
                FailureReason::NotGrpc(_) => ClientError::NotGrpc(failure.clone()),
                FailureReason::Silent(_) | FailureReason::RequestTimedOut(_) => {
                    ClientError::DeadlineExceeded(message)
                }
                _ => ClientError::Unavailable(message),
            };
        }
        // A status made here from a transport error (it has a source; one from the broker
        // never does) with no better code: the connection broke mid-call, typically a
        // stream whose broker died, or the broker reset the stream as it exited (HTTP/2
        // CANCEL, which tonic reports as `CANCELLED`; seen on a controlled shutdown in
        // the failover bench). Retriable, like a refused connect (`UNAVAILABLE`). A call
        // this client cancels is dropped, so it never sees a status of its own.
        if matches!(status.code(), Code::Unknown | Code::Cancelled)
            && std::error::Error::source(&status).is_some()
        {
            return ClientError::Unavailable(format!(
                "the connection to the broker broke: {}",
                status.message()
            ));
        }
        let info = status.get_details_error_info();
        ClientError::from_details(status.code(), status.message(), info.as_ref())
    }
}

impl From<BatchError> for ClientError {
    fn from(error: BatchError) -> ClientError {
        ClientError::Batch(Arc::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_the_transport_broke_or_the_broker_reset_is_retriable() {
        for code in [Code::Unknown, Code::Cancelled] {
            let mut status = tonic::Status::new(code, "operation was canceled");
            status.set_source(Arc::new(std::io::Error::other("stream reset")));
            let error = ClientError::from(status);
            assert!(matches!(error, ClientError::Unavailable(_)), "{error:?}");
            assert!(error.is_retriable());
            // The same code from the broker itself (no source) is its answer.
            let error = ClientError::from(tonic::Status::new(code, "x"));
            assert!(!error.is_retriable(), "{error:?}");
        }
    }

    #[test]
    fn statuses_keep_their_code_and_message() {
        let error = ClientError::from(tonic::Status::not_found("topic t does not exist"));
        assert!(matches!(&error, ClientError::NotFound(m) if m == "topic t does not exist"));
        assert_eq!(error.code(), Code::NotFound);
        let other = ClientError::from(tonic::Status::permission_denied("no"));
        assert_eq!(other.code(), Code::PermissionDenied);
        assert_eq!(other.to_string(), "PermissionDenied: no");
    }

    #[test]
    fn only_availability_errors_are_retriable() {
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
        ] {
            assert!(ClientError::from_code(code, "x").is_retriable(), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::OutOfRange,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::Internal,
        ] {
            assert!(
                !ClientError::from_code(code, "x").is_retriable(),
                "{code:?}"
            );
        }
    }

    fn weir_status(code: Code, message: &str, reason: &str, leader_id: &str) -> tonic::Status {
        let metadata = std::collections::HashMap::from([
            ("topic".to_owned(), "t".to_owned()),
            ("partition".to_owned(), "0".to_owned()),
            ("leader_id".to_owned(), leader_id.to_owned()),
        ]);
        tonic::Status::with_error_details(
            code,
            message,
            tonic_types::ErrorDetails::with_error_info(reason, "weir.dev", metadata),
        )
    }

    /// A coordinator that moved or is still loading its partition, and a new leader that
    /// does not know its log end yet: the group consumer retries its offset fetches,
    /// commits and heartbeats (finding the coordinator again), and a partition's stream
    /// reopens instead of resetting its position.
    #[test]
    fn coordinator_and_new_leader_reasons_are_retried() {
        for reason in [
            "NOT_COORDINATOR",
            "COORDINATOR_LOADING",
            "OFFSET_NOT_AVAILABLE",
        ] {
            let error = ClientError::from(weir_status(Code::Unavailable, "x", reason, ""));
            assert!(error.is_retriable(), "{reason}");
            assert_ne!(
                crate::retry::decide(&error),
                crate::retry::RetryDecision::Fail,
                "{reason}"
            );
        }
    }

    #[test]
    fn error_info_reasons_become_their_variants() {
        let error = ClientError::from(weir_status(
            Code::FailedPrecondition,
            "moved",
            "NOT_LEADER",
            "2",
        ));
        assert!(
            matches!(&error, ClientError::NotLeader { message, leader: Some(2) } if message == "moved"),
            "{error:?}"
        );
        assert_eq!(error.code(), Code::FailedPrecondition);
        assert!(error.is_retriable());
        assert_eq!(error.leader_hint(), Some(2));

        let none = ClientError::from(weir_status(
            Code::FailedPrecondition,
            "x",
            "NOT_LEADER",
            "-1",
        ));
        assert!(matches!(none, ClientError::NotLeader { leader: None, .. }));

        let fenced = ClientError::from(weir_status(
            Code::FailedPrecondition,
            "x",
            "FENCED_LEADER_EPOCH",
            "",
        ));
        assert!(matches!(fenced, ClientError::FencedLeaderEpoch(_)));
        assert!(fenced.is_retriable());

        let replicas = ClientError::from(weir_status(
            Code::Unavailable,
            "x",
            "NOT_ENOUGH_REPLICAS",
            "",
        ));
        assert!(matches!(replicas, ClientError::NotEnoughReplicas(_)));
        assert_eq!(replicas.code(), Code::Unavailable);
        assert!(replicas.is_retriable());
    }

    #[test]
    fn a_read_corrupt_batch_names_the_offsets_to_skip_and_a_produce_one_stays_invalid() {
        let metadata = std::collections::HashMap::from([
            ("topic".to_owned(), "t".to_owned()),
            ("partition".to_owned(), "2".to_owned()),
            ("offset".to_owned(), "10".to_owned()),
            ("next_offset".to_owned(), "60".to_owned()),
        ]);
        let read = tonic::Status::with_error_details(
            Code::DataLoss,
            "cannot be decoded",
            tonic_types::ErrorDetails::with_error_info("CORRUPT_BATCH", "weir.dev", metadata),
        );
        let error = ClientError::from(read);
        assert!(
            matches!(
                &error,
                ClientError::CorruptBatch { topic, partition: 2, offset: 10, next_offset: 60, .. }
                    if topic == "t"
            ),
            "{error:?}"
        );
        assert_eq!(error.code(), Code::DataLoss);
        assert!(!error.is_retriable());
        assert!(error.to_string().contains("seek to offset 60"), "{error}");
        // A produce refused as CORRUPT_BATCH has no offsets: the code says what it is.
        let produce = ClientError::from_partition_error(&weir_proto::v1::PartitionError {
            code: Code::InvalidArgument as i32,
            message: "batch 0 is invalid".to_owned(),
            reason: "CORRUPT_BATCH".to_owned(),
            metadata: Default::default(),
        });
        assert!(
            matches!(produce, ClientError::InvalidArgument(_)),
            "{produce:?}"
        );
    }

    #[test]
    fn other_domains_and_unknown_reasons_keep_the_code() {
        let other = tonic::Status::with_error_details(
            Code::FailedPrecondition,
            "x",
            tonic_types::ErrorDetails::with_error_info(
                "NOT_LEADER",
                "example.com",
                std::collections::HashMap::new(),
            ),
        );
        assert!(matches!(
            ClientError::from(other),
            ClientError::FailedPrecondition(_)
        ));
        let unknown = weir_status(Code::FailedPrecondition, "x", "SOMETHING_NEW", "");
        assert!(matches!(
            ClientError::from(unknown),
            ClientError::FailedPrecondition(_)
        ));
    }

    #[test]
    fn without_details_the_brokers_wording_is_recognised() {
        let per_partition = |code: Code, message: &str| {
            ClientError::from_partition_error(&weir_proto::v1::PartitionError {
                code: code as i32,
                message: message.to_owned(),
                reason: String::new(),
                metadata: Default::default(),
            })
        };
        let moved = per_partition(
            Code::FailedPrecondition,
            "this broker does not lead orders/3; broker 12 does",
        );
        assert!(
            matches!(
                moved,
                ClientError::NotLeader {
                    leader: Some(12),
                    ..
                }
            ),
            "{moved:?}"
        );
        let leaderless = per_partition(
            Code::FailedPrecondition,
            "this broker does not lead orders/3; it has no leader right now; retry shortly",
        );
        assert!(matches!(
            leaderless,
            ClientError::NotLeader { leader: None, .. }
        ));
        assert!(matches!(
            per_partition(
                Code::FailedPrecondition,
                "the leadership of t/0 at epoch 3 ended before the append was written; nothing was appended"
            ),
            ClientError::FencedLeaderEpoch(_)
        ));
        assert!(matches!(
            per_partition(
                Code::Unavailable,
                "t/0 has 1 in-sync replica(s), fewer than min.insync.replicas=2; nothing was appended"
            ),
            ClientError::NotEnoughReplicas(_)
        ));
        // The same code with other wording stays what it was.
        assert!(matches!(
            per_partition(Code::FailedPrecondition, "the group has live members"),
            ClientError::FailedPrecondition(_)
        ));
        assert!(matches!(
            ClientError::from(tonic::Status::failed_precondition(
                "this broker does not lead t/0; broker 1 does"
            )),
            ClientError::NotLeader {
                leader: Some(1),
                ..
            }
        ));
    }

    #[test]
    fn a_broken_connection_is_unavailable_but_a_brokers_unknown_is_not() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let local = tonic::Status::from_error(Box::new(io));
        assert_eq!(local.code(), Code::Unknown);
        let error = ClientError::from(local);
        assert!(
            matches!(&error, ClientError::Unavailable(m) if m.contains("reset")),
            "{error:?}"
        );
        assert!(error.is_retriable());
        let remote = ClientError::from(tonic::Status::unknown("the broker said so"));
        assert!(matches!(
            remote,
            ClientError::Rpc {
                code: Code::Unknown,
                ..
            }
        ));
    }

    #[test]
    fn a_connect_error_names_every_address_tried() {
        let refused = |address: &str| BrokerFailure::new(address, FailureReason::Refused);
        assert_eq!(
            connect_message(&[refused("a:1")]),
            "could not connect to broker a:1: connection refused"
        );
        assert_eq!(
            connect_message(&[refused("a:1"), refused("b:2")]),
            "could not connect to any broker of a:1, b:2: connection refused"
        );
        let silent = BrokerFailure::new(
            "c:3",
            FailureReason::Silent(std::time::Duration::from_secs(3)),
        );
        assert_eq!(
            connect_message(&[refused("a:1"), silent]),
            "could not connect to any broker of a:1, c:3: a:1: connection refused; c:3: \
             accepted the connection but did not answer within 3 s"
        );
    }
}
