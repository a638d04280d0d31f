//! What one broker does for a client of another (`weir.internal.v1.Forward`): share-group
//! calls carried to the group's share coordinator, and produces carried to a
//! partition's leader.
//!
//! [`GrpcForwarder`] is both of the core's forwarders ([`ShareForwarder`] and
//! [`ProduceForwarder`]): it calls the other broker's internal listener, after the core
//! authorised the client and applied its quotas here. [`ForwardService`] runs each call
//! through the same core functions a local client's call reaches, as the broker itself
//! ([`Listener::INTERNAL`](weir_broker::Listener::INTERNAL): no second authorisation or
//! quota). Only brokers reach it: on a
//! secured cluster the internal services answer only callers whose certificate names a
//! super user (`authn.rs`).
//!
//! [`ShareForwarder`]: weir_broker::shares::ShareForwarder
//! [`ProduceForwarder`]: weir_broker::produce::ProduceForwarder
//!
//! The core's errors cross whole ([`CoreError`](pb::CoreError): a `BrokerError`'s serde
//! form), in a failed call's status details or in an entry; only a call that reached no
//! core (the peer unreachable, the deadline passed) is read from its status code.
//!
//! `service.rs` is the receiving side, `client.rs` the sending side; this file holds the
//! wire forms both read and write.

mod client;
mod service;

use prost::Message;
use tonic::{Code, Status};
use weir_broker::shares::{AckKind, AckRange, AckResult};
use weir_broker::{BrokerError, Reason};
use weir_proto::internal::v1::{self as pb};

use crate::status::internal::malformed;

pub use client::GrpcForwarder;
pub use service::ForwardService;

/// The core's error whole, as it crosses to another broker.
pub(crate) fn core_error(err: &BrokerError) -> pb::CoreError {
    pb::CoreError {
        message: err.message.clone(),
        // A BrokerError is strings, numbers and enums: it always serialises.
        error_json: serde_json::to_vec(err).unwrap_or_default().into(),
    }
}

/// [`core_error`]'s inverse: an error that names a reason this build does not know is
/// kept as an internal error with its message.
pub(crate) fn broker_error(who: &str, err: pb::CoreError) -> BrokerError {
    match serde_json::from_slice::<BrokerError>(&err.error_json) {
        Ok(e) => e,
        Err(_) => BrokerError::new(Reason::Internal, format!("{who}: {}", err.message)),
    }
}

/// A failed forwarded call as the core's error: the error the other broker's core
/// answered, or, for a call that reached no core, what its status code means
/// (`unreachable`: the reason for a peer that could not be reached, retriable).
fn call_error(who: &str, status: Status, unreachable: Reason) -> BrokerError {
    if !status.details().is_empty()
        && let Ok(err) = pb::CoreError::decode(status.details())
    {
        return broker_error(who, err);
    }
    let reason = match status.code() {
        Code::DeadlineExceeded => Reason::Timeout,
        // Refused or reset connections, a peer stopping, a build without the service.
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Unimplemented => unreachable,
        _ => Reason::Internal,
    };
    BrokerError::new(reason, format!("{who}: {}", status.message()))
}

fn ack_ranges(acks: Vec<pb::ForwardedAck>) -> Result<Vec<AckRange>, Status> {
    acks.into_iter()
        .map(|a| {
            let kind = match pb::ForwardedAckKind::try_from(a.kind) {
                Ok(pb::ForwardedAckKind::Accept) => AckKind::Accept,
                Ok(pb::ForwardedAckKind::Release) => AckKind::Release {
                    delay_ms: a.delay_ms,
                },
                Ok(pb::ForwardedAckKind::Reject) => AckKind::Reject,
                Ok(pb::ForwardedAckKind::Renew) => AckKind::Renew,
                _ => return Err(malformed("a forwarded acknowledgement", "it has no kind")),
            };
            Ok(AckRange {
                topic: a.topic,
                partition: a.partition,
                first: a.first,
                last: a.last,
                kind,
            })
        })
        .collect()
}

fn forwarded_ack(a: &AckRange) -> pb::ForwardedAck {
    let (kind, delay_ms) = match a.kind {
        AckKind::Accept => (pb::ForwardedAckKind::Accept, 0),
        AckKind::Release { delay_ms } => (pb::ForwardedAckKind::Release, delay_ms),
        AckKind::Reject => (pb::ForwardedAckKind::Reject, 0),
        AckKind::Renew => (pb::ForwardedAckKind::Renew, 0),
    };
    pb::ForwardedAck {
        topic: a.topic.clone(),
        partition: a.partition,
        first: a.first,
        last: a.last,
        kind: kind as i32,
        delay_ms,
    }
}

fn ack_result(r: &AckResult) -> pb::ForwardedAckResult {
    match &r.outcome {
        Ok(not_held) => pb::ForwardedAckResult {
            not_held: not_held.clone(),
            error: None,
        },
        Err(e) => pb::ForwardedAckResult {
            not_held: Vec::new(),
            error: Some(core_error(e)),
        },
    }
}

/// The coordinator's outcomes laid back on the ranges sent, in order.
fn ack_results(
    who: &str,
    ranges: Vec<AckRange>,
    results: Vec<pb::ForwardedAckResult>,
) -> Vec<AckResult> {
    let mut results = results.into_iter();
    ranges
        .into_iter()
        .map(|range| {
            let outcome = match results.next() {
                Some(pb::ForwardedAckResult { error: Some(e), .. }) => Err(broker_error(who, e)),
                Some(r) => Ok(r.not_held),
                None => Err(short_answer(who)),
            };
            AckResult { range, outcome }
        })
        .collect()
}

fn result(r: Result<i64, BrokerError>) -> pb::ForwardedResult {
    match r {
        Ok(offset) => pb::ForwardedResult {
            offset,
            error: None,
        },
        Err(e) => pb::ForwardedResult {
            offset: 0,
            error: Some(core_error(&e)),
        },
    }
}

/// One outcome per entry sent, in order (an answer short of entries fails the rest).
fn results(
    who: &str,
    sent: usize,
    results: Vec<pb::ForwardedResult>,
) -> Vec<Result<i64, BrokerError>> {
    let mut outcomes: Vec<Result<i64, BrokerError>> = results
        .into_iter()
        .map(|r| match r.error {
            Some(e) => Err(broker_error(who, e)),
            None => Ok(r.offset),
        })
        .collect();
    outcomes.truncate(sent);
    outcomes.resize_with(sent, || Err(short_answer(who)));
    outcomes
}

fn short_answer(who: &str) -> BrokerError {
    BrokerError::new(
        Reason::Internal,
        format!("{who} answered fewer entries than it was sent"),
    )
}

#[cfg(test)]
mod tests {
    use weir_broker::RecordError;
    use weir_cluster::security::ResourceType;
    use weir_cluster::txn::TxnError;

    use super::*;
    use crate::status::internal::core_error_status;

    /// Errors cross whole: the reason with its facts, the partition and refused records;
    /// a status with the error in its details reads back as that error, and one without
    /// (a peer never reached) by its code.
    #[test]
    fn core_errors_cross_whole() {
        let mut refused = BrokerError::new(Reason::InvalidRecord, "no key").at("t", 3);
        refused.refused_records = Some(Box::new(vec![RecordError {
            batch_index: 2,
            message: "a compacted topic's record needs a key".into(),
        }]));
        let errors = [
            BrokerError::new(Reason::NotLeader { leader: 4 }, "not here").at("t", 1),
            BrokerError::new(Reason::NotCoordinator { coordinator: -1 }, "moved"),
            BrokerError::new(
                Reason::OffsetOutOfRange {
                    log_start_offset: 10,
                    high_watermark: 20,
                },
                "out",
            ),
            BrokerError::new(Reason::StateConflict, "conflict"),
            BrokerError::new(
                Reason::CorruptData {
                    batch: Some((5, 9)),
                },
                "bad",
            ),
            BrokerError::new(
                Reason::NotAuthorized {
                    resource_type: ResourceType::TransactionalId,
                },
                "no",
            ),
            BrokerError::new(
                Reason::Transaction(TxnError::ConcurrentTransactions),
                "busy",
            ),
            refused,
        ];
        for err in errors {
            let crossed = broker_error("peer", core_error(&err));
            assert_eq!(crossed, err);
            let status = core_error_status(err.clone());
            assert_eq!(status.code(), crate::status::code(&err.reason));
            assert_eq!(call_error("peer", status, Reason::Internal), err);
        }
        let unreached = call_error(
            "broker 2",
            Status::unavailable("connection refused"),
            Reason::CoordinatorNotAvailable,
        );
        assert_eq!(unreached.reason, Reason::CoordinatorNotAvailable);
        assert_eq!(unreached.message, "broker 2: connection refused");
        assert_eq!(
            call_error("b", Status::deadline_exceeded("late"), Reason::Internal).reason,
            Reason::Timeout
        );
    }

    /// A reason a newer build added reads as an internal error with its message.
    #[test]
    fn an_unknown_reason_is_kept_as_an_internal_error() {
        let err = pb::CoreError {
            message: "something new".into(),
            error_json: br#"{"reason":"SomethingNew","message":"something new"}"#
                .to_vec()
                .into(),
        };
        let read = broker_error("broker 3", err);
        assert_eq!(read.reason, Reason::Internal);
        assert_eq!(read.message, "broker 3: something new");
    }

    #[test]
    fn an_answer_short_of_entries_fails_the_rest() {
        let answer = vec![
            result(Ok(7)),
            result(Err(BrokerError::new(Reason::UnknownPartition, "no p"))),
        ];
        let read = results("broker 1", 3, answer);
        assert_eq!(read[0], Ok(7));
        assert_eq!(
            read[1].as_ref().unwrap_err().reason,
            Reason::UnknownPartition
        );
        assert_eq!(read[2].as_ref().unwrap_err().reason, Reason::Internal);
    }
}
