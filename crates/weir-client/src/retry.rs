//! What a failed request to a partition's leader does next: [`decide`] looks only at the
//! error, so the producer, the consumer and routed lookups all follow one rule.
//!
//! - Leadership moved ([`ClientError::NotLeader`], [`ClientError::FencedLeaderEpoch`]) or
//!   the leader could not be reached or did not answer (`UNAVAILABLE`, a failed connect,
//!   `DEADLINE_EXCEEDED`): the cached leader is wrong or dead, so refresh metadata and
//!   send again to the leader it names ([`RetryDecision::RefreshMetadata`]).
//! - The leader is right but cannot take the request now ([`ClientError::NotEnoughReplicas`],
//!   `RESOURCE_EXHAUSTED`, `ABORTED`): send again to it after a backoff
//!   ([`RetryDecision::Backoff`]).
//! - Anything else (bad input, a missing topic, corruption) fails at once.
//!
//! Every retry waits first (each caller's doubling backoff), and metadata refreshes are
//! rate limited by [`crate::cluster`], so a cluster in an election is asked a few times
//! a second, not in a loop. How many times a request is retried is the caller's bound:
//! the producer's `retries`, [`MAX_ROUTED_ATTEMPTS`] for lookups; a consumer's stream is
//! reopened for as long as it is wanted.

use std::time::Duration;

use crate::error::ClientError;

/// Most attempts of a routed one-off request (an offset lookup) before its error is
/// returned: with the doubling backoff from [`ROUTED_RETRY_BACKOFF`] they span about
/// 6 s, longer than a leader failover (the broker session timeout, 2 s by default).
pub const MAX_ROUTED_ATTEMPTS: u32 = 7;
/// First wait before retrying a routed one-off request; doubles per attempt.
pub const ROUTED_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// What to do after a failed request to a partition's leader. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Refresh metadata (the leader moved or is unreachable), then retry on the leader.
    RefreshMetadata,
    /// Retry on the same leader after a backoff.
    Backoff,
    /// Do not retry: return the error.
    Fail,
}

/// See the module docs.
pub fn decide(error: &ClientError) -> RetryDecision {
    match error {
        ClientError::NotLeader { .. }
        | ClientError::FencedLeaderEpoch(_)
        | ClientError::Unavailable(_)
        | ClientError::Connect { .. }
        | ClientError::DeadlineExceeded(_) => RetryDecision::RefreshMetadata,
        ClientError::NotEnoughReplicas(_) | ClientError::ResourceExhausted(_) => {
            RetryDecision::Backoff
        }
        ClientError::Rpc {
            code: tonic::Code::Aborted,
            ..
        } => RetryDecision::Backoff,
        _ => RetryDecision::Fail,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tonic::Code;

    use super::*;

    #[test]
    fn a_moved_or_unreachable_leader_refreshes_metadata() {
        for error in [
            ClientError::NotLeader {
                message: "x".to_owned(),
                leader: Some(2),
            },
            ClientError::NotLeader {
                message: "x".to_owned(),
                leader: None,
            },
            ClientError::FencedLeaderEpoch("x".to_owned()),
            ClientError::Unavailable("tcp connect error".to_owned()),
            ClientError::DeadlineExceeded("x".to_owned()),
        ] {
            assert_eq!(decide(&error), RetryDecision::RefreshMetadata, "{error:?}");
            assert!(error.is_retriable(), "{error:?}");
        }
    }

    #[test]
    fn a_busy_leader_is_retried_where_it_is() {
        for error in [
            ClientError::NotEnoughReplicas("x".to_owned()),
            ClientError::ResourceExhausted("x".to_owned()),
            ClientError::from_code(Code::Aborted, "x"),
        ] {
            assert_eq!(decide(&error), RetryDecision::Backoff, "{error:?}");
            assert!(error.is_retriable(), "{error:?}");
        }
    }

    #[test]
    fn what_retrying_cannot_fix_fails() {
        for error in [
            ClientError::NotFound("x".to_owned()),
            ClientError::InvalidArgument("x".to_owned()),
            ClientError::OutOfRange("x".to_owned()),
            ClientError::FailedPrecondition("the group has live members".to_owned()),
            ClientError::from_code(Code::Internal, "x"),
            ClientError::from_code(Code::DataLoss, "x"),
            ClientError::Config("x".to_owned()),
            ClientError::Closed,
            ClientError::Batch(Arc::new(weir_batch::BatchError::Truncated {
                needed: 2,
                available: 1,
            })),
        ] {
            assert_eq!(decide(&error), RetryDecision::Fail, "{error:?}");
            assert!(!error.is_retriable(), "{error:?}");
        }
    }

    #[test]
    fn every_retriable_error_has_a_way_to_retry() {
        for code in 0..=16 {
            let error = ClientError::from_code(Code::from_i32(code), "x");
            assert_eq!(
                decide(&error) != RetryDecision::Fail,
                error.is_retriable(),
                "{error:?}"
            );
        }
    }

    #[test]
    fn the_wording_fallback_reaches_the_same_decision() {
        let error = ClientError::from(tonic::Status::failed_precondition(
            "this broker does not lead t/0; broker 2 does",
        ));
        assert_eq!(decide(&error), RetryDecision::RefreshMetadata);
    }
}
