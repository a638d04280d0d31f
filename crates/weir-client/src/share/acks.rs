//! The share consumer's acknowledgement bookkeeping, without I/O: which delivered
//! records still wait for an acknowledgement ([`Ledger`]), the acknowledgements not sent
//! yet, how they are coalesced into `ShareAck` ranges ([`coalesce`]), and how the
//! broker's results become [`AckOutcome`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use weir_proto::v1 as pb;

use super::AckMode;
use crate::error::ClientError;

/// Longest delay a RELEASE may carry (7 days): the broker refuses longer ones, since a
/// delayed record holds its partition's window until it is due.
pub const MAX_RELEASE_DELAY: Duration = Duration::from_millis(604_800_000);
/// Most offsets one `ShareAck` range may cover (the broker's limit); a longer run of
/// offsets acknowledged alike is split.
pub const MAX_OFFSETS_PER_ACK: i64 = 100_000;
/// Most `ShareAck` ranges one request may carry (the broker's limit); more go in several
/// requests.
pub const MAX_ACKS_PER_REQUEST: usize = 10_000;

/// How a record is acknowledged ([`ShareConsumer::acknowledge`](super::ShareConsumer::acknowledge)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// Done: never delivered again (RabbitMQ's `basic.ack`, SQS's `DeleteMessage`).
    Accept,
    /// Deliver it again, to any member, at once. At the group's delivery limit it is
    /// archived (dead-lettered) instead.
    Release,
    /// Deliver it again, not before this delay from when the broker applies it (at most
    /// [`MAX_RELEASE_DELAY`]; whole milliseconds): a retry with backoff.
    ReleaseAfter(Duration),
    /// Never deliver it again: archived (dead-lettered if the group names a topic).
    Reject,
    /// Keep holding it: its lock is extended to a full lock duration from now. The
    /// record still needs a final acknowledgement (accept, release or reject) later.
    Renew,
}

impl AckKind {
    /// Whether this finishes the member's work on the record (everything but
    /// [`AckKind::Renew`]).
    pub fn is_final(self) -> bool {
        !matches!(self, AckKind::Renew)
    }
}

impl fmt::Display for AckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckKind::Accept => f.write_str("accept"),
            AckKind::Release => f.write_str("release"),
            AckKind::ReleaseAfter(delay) => {
                write!(
                    f,
                    "release after {}",
                    crate::connection::human_duration(*delay)
                )
            }
            AckKind::Reject => f.write_str("reject"),
            AckKind::Renew => f.write_str("renew"),
        }
    }
}

/// An acknowledgement as the API carries it: a type and a delay in ms (RELEASE only).
/// Two are equal exactly when they may share a `ShareAck` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    ty: pb::AckType,
    delay_ms: u64,
}

impl Ack {
    /// `kind` checked: a release delay of at most [`MAX_RELEASE_DELAY`].
    pub(crate) fn new(kind: AckKind) -> Result<Ack, ClientError> {
        let (ty, delay_ms) = match kind {
            AckKind::Accept => (pb::AckType::Accept, 0),
            AckKind::Release => (pb::AckType::Release, 0),
            AckKind::ReleaseAfter(delay) => {
                if delay > MAX_RELEASE_DELAY {
                    return Err(ClientError::InvalidArgument(format!(
                        "a release delay is at most {} (7 days), not {delay:?}",
                        MAX_RELEASE_DELAY.as_millis()
                    )));
                }
                // At most 604,800,000: fits.
                (pb::AckType::Release, delay.as_millis() as u64)
            }
            AckKind::Reject => (pb::AckType::Reject, 0),
            AckKind::Renew => (pb::AckType::Renew, 0),
        };
        Ok(Ack { ty, delay_ms })
    }

    /// The kind back (a release without delay is [`AckKind::Release`]).
    pub(crate) fn kind(self) -> AckKind {
        match self.ty {
            pb::AckType::Release if self.delay_ms > 0 => {
                AckKind::ReleaseAfter(Duration::from_millis(self.delay_ms))
            }
            pb::AckType::Release => AckKind::Release,
            pb::AckType::Reject => AckKind::Reject,
            pb::AckType::Renew => AckKind::Renew,
            pb::AckType::Accept | pb::AckType::Unspecified => AckKind::Accept,
        }
    }
}

/// One record of one partition: what acknowledgements are kept by. Ordered by topic,
/// partition, offset, so a map of them lists each partition's offsets in runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RecordId {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) offset: i64,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// Consecutive offsets of one partition acknowledged alike: one `ShareAck`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckRange {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) ack: Ack,
}

impl AckRange {
    pub(crate) fn to_proto(&self) -> pb::ShareAck {
        pb::ShareAck {
            topic: self.topic.to_string(),
            partition: self.partition,
            first_offset: self.first_offset,
            last_offset: self.last_offset,
            r#type: self.ack.ty.into(),
            delay_ms: self.ack.delay_ms,
        }
    }

    fn covers(&self, id: &RecordId) -> bool {
        *self.topic == *id.topic
            && self.partition == id.partition
            && (self.first_offset..=self.last_offset).contains(&id.offset)
    }
}

/// What became of an acknowledged range of offsets.
#[derive(Debug, Clone)]
pub enum AckStatus {
    /// Applied to every offset of the range except `not_held`: offsets this member did
    /// not hold under a valid lock (it expired, a coordinator failover released it, or a
    /// retried call had applied it already). Those are unchanged and may be delivered
    /// again (Kafka's `INVALID_RECORD_STATE`).
    Applied {
        /// Offsets not applied, ascending as the broker listed them.
        not_held: Vec<i64>,
        /// The call was sent again after a try that failed once it may have reached the
        /// broker (its answer lost, or the coordinator moved after writing it): an offset
        /// in `not_held` may then have been applied by that try, the retry finding it
        /// finished. Without a retry `not_held` is exact.
        retried: bool,
    },
    /// The broker refused the whole range (an unknown topic or partition, a bad range or
    /// delay): nothing of it was applied.
    Refused(ClientError),
    /// The call carrying it failed for good (the coordinator could not be reached or did
    /// not answer within the request timeout): it may or may not have been applied.
    /// Records not applied are delivered again once their locks expire.
    Unknown(ClientError),
}

/// The outcome of acknowledging a range of consecutive offsets of one partition alike.
#[derive(Debug, Clone)]
pub struct AckOutcome {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: u32,
    /// First offset of the range.
    pub first_offset: i64,
    /// Last offset of the range (inclusive).
    pub last_offset: i64,
    /// How they were acknowledged.
    pub kind: AckKind,
    /// What became of it.
    pub status: AckStatus,
}

impl AckOutcome {
    /// Whether every offset of the range was applied.
    pub fn is_applied(&self) -> bool {
        matches!(&self.status, AckStatus::Applied { not_held, .. } if not_held.is_empty())
    }

    /// How many offsets the range covers.
    pub fn offset_count(&self) -> u64 {
        self.last_offset.abs_diff(self.first_offset) + 1
    }

    fn of(range: &AckRange, status: AckStatus) -> AckOutcome {
        AckOutcome {
            topic: range.topic.clone(),
            partition: range.partition,
            first_offset: range.first_offset,
            last_offset: range.last_offset,
            kind: range.ack.kind(),
            status,
        }
    }
}

/// The outcomes of `sent`, from the broker's `results` (in request order, each naming
/// its range). A range the answer does not account for is reported refused, so nothing
/// sent goes unreported.
/// `retried`: the answer is a retry's ([`AckStatus::Applied::retried`]).
pub(crate) fn outcomes(
    sent: &[AckRange],
    results: Vec<pb::ShareAckResult>,
    retried: bool,
) -> Vec<AckOutcome> {
    let mut results = results.into_iter();
    sent.iter()
        .map(|range| {
            let result = results.next().filter(|r| {
                r.topic == *range.topic
                    && r.partition == range.partition
                    && r.first_offset == range.first_offset
                    && r.last_offset == range.last_offset
            });
            let status = match result {
                Some(pb::ShareAckResult {
                    error: Some(error), ..
                }) => AckStatus::Refused(ClientError::from_partition_error(&error)),
                Some(result) => AckStatus::Applied {
                    not_held: result.not_held,
                    retried,
                },
                None => AckStatus::Refused(ClientError::Rpc {
                    code: tonic::Code::Internal,
                    message: format!(
                        "the broker's answer has no result for the acknowledgement of {}/{} \
                         offsets {}..={}",
                        range.topic, range.partition, range.first_offset, range.last_offset
                    ),
                }),
            };
            AckOutcome::of(range, status)
        })
        .collect()
}

/// The outcomes of `sent` when the call carrying them failed with `error`.
pub(crate) fn unknown(sent: &[AckRange], error: &ClientError) -> Vec<AckOutcome> {
    sent.iter()
        .map(|range| AckOutcome::of(range, AckStatus::Unknown(error.clone())))
        .collect()
}

/// `pending` as ranges: runs of consecutive offsets of one partition acknowledged alike,
/// each at most [`MAX_OFFSETS_PER_ACK`] long, by topic, partition and offset.
pub(crate) fn coalesce(pending: &BTreeMap<RecordId, Ack>) -> Vec<AckRange> {
    let mut ranges: Vec<AckRange> = Vec::new();
    for (id, ack) in pending {
        if let Some(last) = ranges.last_mut()
            && last.ack == *ack
            && last.partition == id.partition
            && *last.topic == *id.topic
            && last.last_offset.checked_add(1) == Some(id.offset)
            && last.last_offset - last.first_offset + 1 < MAX_OFFSETS_PER_ACK
        {
            last.last_offset = id.offset;
            continue;
        }
        ranges.push(AckRange {
            topic: id.topic.clone(),
            partition: id.partition,
            first_offset: id.offset,
            last_offset: id.offset,
            ack: *ack,
        });
    }
    ranges
}

/// When [`Ledger::prepare`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moment {
    /// Before a poll: implicit mode accepts what the last poll returned; explicit mode
    /// refuses to go on while any of it is unacknowledged.
    Poll,
    /// `commit`: implicit mode accepts what the last poll returned.
    Commit,
    /// `close`: implicit mode accepts what the last poll returned, explicit mode
    /// releases it (at once to other members, rather than when the locks expire).
    Close,
}

/// The member's acknowledgements: records delivered and not finally acknowledged, and
/// acknowledgements not sent yet.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Returned by `poll`, without a final acknowledgement yet (a renewed record stays).
    awaiting: BTreeSet<RecordId>,
    /// Made and not sent yet (a later one for the same record replaces an unsent RENEW).
    pending: BTreeMap<RecordId, Ack>,
}

impl Ledger {
    /// `poll` returned the record: it waits for an acknowledgement.
    pub(crate) fn delivered(&mut self, id: RecordId) {
        self.awaiting.insert(id);
    }

    /// Records the application's acknowledgement of a record `poll` returned.
    pub(crate) fn acknowledge(&mut self, id: RecordId, kind: AckKind) -> Result<(), ClientError> {
        let ack = Ack::new(kind)?;
        if !self.awaiting.contains(&id) {
            return Err(ClientError::InvalidArgument(format!(
                "record {id} does not wait for an acknowledgement: it was acknowledged already \
                 (accepted, released or rejected), or this consumer's polls did not return it"
            )));
        }
        if kind.is_final() {
            self.awaiting.remove(&id);
        }
        self.pending.insert(id, ack);
        Ok(())
    }

    /// What to send now: the pending acknowledgements as ranges, after `mode` and
    /// `moment` turned the records still waiting into acknowledgements (see [`Moment`]).
    /// Fails with [`ClientError::Unacknowledged`] (changing nothing) before an explicit
    /// mode poll while records wait. The ranges stay pending until [`forget`](Self::forget).
    pub(crate) fn prepare(
        &mut self,
        mode: AckMode,
        moment: Moment,
    ) -> Result<Vec<AckRange>, ClientError> {
        let implied = match (mode, moment) {
            (AckMode::Implicit, _) => Some(pb::AckType::Accept),
            (AckMode::Explicit, Moment::Close) => Some(pb::AckType::Release),
            (AckMode::Explicit, Moment::Commit) => None,
            (AckMode::Explicit, Moment::Poll) => {
                if let Some(first) = self.awaiting.first() {
                    return Err(ClientError::Unacknowledged {
                        count: self.awaiting.len(),
                        first: first.to_string(),
                    });
                }
                None
            }
        };
        if let Some(ty) = implied {
            let ack = Ack { ty, delay_ms: 0 };
            for id in std::mem::take(&mut self.awaiting) {
                self.pending.insert(id, ack);
            }
        }
        Ok(coalesce(&self.pending))
    }

    /// The ranges were sent (whatever came of it): they are no longer pending.
    pub(crate) fn forget(&mut self, sent: &[AckRange]) {
        for range in sent {
            let ids: Vec<RecordId> = self
                .pending
                .range(
                    RecordId {
                        topic: range.topic.clone(),
                        partition: range.partition,
                        offset: range.first_offset,
                    }..,
                )
                .take_while(|(id, _)| range.covers(id))
                .filter(|(_, ack)| **ack == range.ack)
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                self.pending.remove(&id);
            }
        }
    }

    /// Records returned by `poll` still waiting for a final acknowledgement.
    pub(crate) fn awaiting(&self) -> usize {
        self.awaiting.len()
    }

    /// Acknowledgements made and not sent yet.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id(topic: &str, partition: u32, offset: i64) -> RecordId {
        RecordId {
            topic: Arc::from(topic),
            partition,
            offset,
        }
    }

    fn ack(kind: AckKind) -> Ack {
        Ack::new(kind).expect("valid kind")
    }

    /// `(topic, partition, first, last, kind)` of each range.
    fn spans(ranges: &[AckRange]) -> Vec<(String, u32, i64, i64, AckKind)> {
        ranges
            .iter()
            .map(|r| {
                (
                    r.topic.to_string(),
                    r.partition,
                    r.first_offset,
                    r.last_offset,
                    r.ack.kind(),
                )
            })
            .collect()
    }

    #[test]
    fn consecutive_offsets_acknowledged_alike_make_one_range() {
        let pending: BTreeMap<RecordId, Ack> = (10..20)
            .map(|o| (id("t", 0, o), ack(AckKind::Accept)))
            .collect();
        assert_eq!(
            spans(&coalesce(&pending)),
            [("t".to_owned(), 0, 10, 19, AckKind::Accept)]
        );
    }

    #[test]
    fn gaps_kinds_delays_partitions_and_topics_split_ranges() {
        let second = Duration::from_secs(1);
        let pending: BTreeMap<RecordId, Ack> = [
            (id("a", 0, 1), AckKind::Accept),
            (id("a", 0, 2), AckKind::Accept),
            (id("a", 0, 4), AckKind::Accept), // gap
            (id("a", 0, 5), AckKind::Reject), // kind
            (id("a", 0, 6), AckKind::ReleaseAfter(second)),
            (id("a", 0, 7), AckKind::ReleaseAfter(second)),
            (id("a", 0, 8), AckKind::ReleaseAfter(2 * second)), // delay
            (id("a", 1, 9), AckKind::ReleaseAfter(2 * second)), // partition
            (id("b", 1, 10), AckKind::ReleaseAfter(2 * second)), // topic
        ]
        .into_iter()
        .map(|(id, kind)| (id, ack(kind)))
        .collect();
        assert_eq!(
            spans(&coalesce(&pending)),
            [
                ("a".to_owned(), 0, 1, 2, AckKind::Accept),
                ("a".to_owned(), 0, 4, 4, AckKind::Accept),
                ("a".to_owned(), 0, 5, 5, AckKind::Reject),
                ("a".to_owned(), 0, 6, 7, AckKind::ReleaseAfter(second)),
                ("a".to_owned(), 0, 8, 8, AckKind::ReleaseAfter(2 * second)),
                ("a".to_owned(), 1, 9, 9, AckKind::ReleaseAfter(2 * second)),
                ("b".to_owned(), 1, 10, 10, AckKind::ReleaseAfter(2 * second)),
            ]
        );
    }

    #[test]
    fn a_run_longer_than_the_brokers_limit_is_split() {
        let run = MAX_OFFSETS_PER_ACK * 2 + 5;
        let pending: BTreeMap<RecordId, Ack> = (0..run)
            .map(|o| (id("t", 0, o), ack(AckKind::Accept)))
            .collect();
        let ranges = coalesce(&pending);
        assert_eq!(
            spans(&ranges),
            [
                (
                    "t".to_owned(),
                    0,
                    0,
                    MAX_OFFSETS_PER_ACK - 1,
                    AckKind::Accept
                ),
                (
                    "t".to_owned(),
                    0,
                    MAX_OFFSETS_PER_ACK,
                    2 * MAX_OFFSETS_PER_ACK - 1,
                    AckKind::Accept
                ),
                (
                    "t".to_owned(),
                    0,
                    2 * MAX_OFFSETS_PER_ACK,
                    run - 1,
                    AckKind::Accept
                ),
            ]
        );
    }

    #[test]
    fn release_delays_are_whole_ms_up_to_seven_days() {
        assert_eq!(
            ack(AckKind::ReleaseAfter(Duration::ZERO)).kind(),
            AckKind::Release
        );
        assert_eq!(
            ack(AckKind::ReleaseAfter(Duration::from_micros(2_500))).kind(),
            AckKind::ReleaseAfter(Duration::from_millis(2))
        );
        assert!(Ack::new(AckKind::ReleaseAfter(MAX_RELEASE_DELAY)).is_ok());
        let too_long = Ack::new(AckKind::ReleaseAfter(
            MAX_RELEASE_DELAY + Duration::from_millis(1),
        ));
        assert!(
            matches!(too_long, Err(ClientError::InvalidArgument(_))),
            "{too_long:?}"
        );
        let proto = AckRange {
            topic: Arc::from("t"),
            partition: 3,
            first_offset: 5,
            last_offset: 6,
            ack: ack(AckKind::ReleaseAfter(Duration::from_secs(2))),
        }
        .to_proto();
        assert_eq!(proto.r#type, pb::AckType::Release as i32);
        assert_eq!(proto.delay_ms, 2_000);
    }

    #[test]
    fn implicit_mode_accepts_what_the_application_did_not_acknowledge() {
        let mut ledger = Ledger::default();
        for o in 0..5 {
            ledger.delivered(id("t", 0, o));
        }
        ledger.acknowledge(id("t", 0, 2), AckKind::Reject).unwrap();
        let ranges = ledger.prepare(AckMode::Implicit, Moment::Poll).unwrap();
        assert_eq!(
            spans(&ranges),
            [
                ("t".to_owned(), 0, 0, 1, AckKind::Accept),
                ("t".to_owned(), 0, 2, 2, AckKind::Reject),
                ("t".to_owned(), 0, 3, 4, AckKind::Accept),
            ]
        );
        assert_eq!(ledger.awaiting(), 0);
        // Pending until sent: a poll dropped mid-call sends them again next time.
        assert_eq!(ledger.pending(), 5);
        assert_eq!(
            ledger.prepare(AckMode::Implicit, Moment::Poll).unwrap(),
            ranges
        );
        ledger.forget(&ranges);
        assert_eq!(ledger.pending(), 0);
        assert!(
            ledger
                .prepare(AckMode::Implicit, Moment::Commit)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn implicit_mode_accepts_on_commit_and_close_too() {
        for moment in [Moment::Commit, Moment::Close] {
            let mut ledger = Ledger::default();
            ledger.delivered(id("t", 1, 7));
            let ranges = ledger.prepare(AckMode::Implicit, moment).unwrap();
            assert_eq!(spans(&ranges), [("t".to_owned(), 1, 7, 7, AckKind::Accept)]);
        }
    }

    #[test]
    fn explicit_mode_refuses_to_poll_past_unacknowledged_records() {
        let mut ledger = Ledger::default();
        for o in [3, 4] {
            ledger.delivered(id("t", 0, o));
        }
        ledger.acknowledge(id("t", 0, 4), AckKind::Accept).unwrap();
        let error = ledger.prepare(AckMode::Explicit, Moment::Poll).unwrap_err();
        assert!(
            matches!(&error, ClientError::Unacknowledged { count: 1, first } if first == "t/0@3"),
            "{error:?}"
        );
        assert!(!error.is_retriable());
        // Nothing changed: a commit sends only what was acknowledged.
        let ranges = ledger.prepare(AckMode::Explicit, Moment::Commit).unwrap();
        assert_eq!(spans(&ranges), [("t".to_owned(), 0, 4, 4, AckKind::Accept)]);
        ledger.forget(&ranges);
        assert_eq!(ledger.awaiting(), 1);
        ledger.acknowledge(id("t", 0, 3), AckKind::Release).unwrap();
        let ranges = ledger.prepare(AckMode::Explicit, Moment::Poll).unwrap();
        assert_eq!(
            spans(&ranges),
            [("t".to_owned(), 0, 3, 3, AckKind::Release)]
        );
    }

    #[test]
    fn explicit_mode_releases_unacknowledged_records_on_close() {
        let mut ledger = Ledger::default();
        for o in [1, 2, 3] {
            ledger.delivered(id("t", 0, o));
        }
        ledger.acknowledge(id("t", 0, 1), AckKind::Accept).unwrap();
        ledger.acknowledge(id("t", 0, 3), AckKind::Renew).unwrap();
        let ranges = ledger.prepare(AckMode::Explicit, Moment::Close).unwrap();
        assert_eq!(
            spans(&ranges),
            [
                ("t".to_owned(), 0, 1, 1, AckKind::Accept),
                ("t".to_owned(), 0, 2, 3, AckKind::Release),
            ]
        );
    }

    #[test]
    fn a_renewed_record_still_needs_a_final_acknowledgement() {
        let mut ledger = Ledger::default();
        ledger.delivered(id("t", 0, 9));
        ledger.acknowledge(id("t", 0, 9), AckKind::Renew).unwrap();
        assert_eq!(ledger.awaiting(), 1);
        // The renewal is sent by a commit...
        let ranges = ledger.prepare(AckMode::Explicit, Moment::Commit).unwrap();
        assert_eq!(spans(&ranges), [("t".to_owned(), 0, 9, 9, AckKind::Renew)]);
        ledger.forget(&ranges);
        // ...and polling is still refused until the record is finished.
        assert!(ledger.prepare(AckMode::Explicit, Moment::Poll).is_err());
        ledger.acknowledge(id("t", 0, 9), AckKind::Renew).unwrap();
        // An unsent renewal is replaced by the final acknowledgement.
        ledger.acknowledge(id("t", 0, 9), AckKind::Accept).unwrap();
        let ranges = ledger.prepare(AckMode::Explicit, Moment::Poll).unwrap();
        assert_eq!(spans(&ranges), [("t".to_owned(), 0, 9, 9, AckKind::Accept)]);
    }

    #[test]
    fn only_records_waiting_for_an_acknowledgement_can_be_acknowledged() {
        let mut ledger = Ledger::default();
        let never = ledger.acknowledge(id("t", 0, 1), AckKind::Accept);
        assert!(
            matches!(never, Err(ClientError::InvalidArgument(_))),
            "{never:?}"
        );
        ledger.delivered(id("t", 0, 1));
        ledger.acknowledge(id("t", 0, 1), AckKind::Accept).unwrap();
        let twice = ledger.acknowledge(id("t", 0, 1), AckKind::Reject);
        assert!(
            matches!(twice, Err(ClientError::InvalidArgument(_))),
            "{twice:?}"
        );
        // A bad delay changes nothing.
        ledger.delivered(id("t", 0, 2));
        let long = AckKind::ReleaseAfter(MAX_RELEASE_DELAY * 2);
        assert!(ledger.acknowledge(id("t", 0, 2), long).is_err());
        assert_eq!(ledger.awaiting(), 1);
        assert_eq!(ledger.pending(), 1);
    }

    #[test]
    fn forgetting_sent_ranges_keeps_acknowledgements_made_since() {
        let mut ledger = Ledger::default();
        for o in 0..4 {
            ledger.delivered(id("t", 0, o));
        }
        ledger.acknowledge(id("t", 0, 0), AckKind::Renew).unwrap();
        ledger.acknowledge(id("t", 0, 1), AckKind::Accept).unwrap();
        let sent = ledger.prepare(AckMode::Explicit, Moment::Commit).unwrap();
        // Made while the commit was out (not possible through `&mut self`, but forget
        // must not drop what it did not send).
        ledger.acknowledge(id("t", 0, 0), AckKind::Accept).unwrap();
        ledger.forget(&sent);
        let left = ledger.prepare(AckMode::Explicit, Moment::Commit).unwrap();
        assert_eq!(spans(&left), [("t".to_owned(), 0, 0, 0, AckKind::Accept)]);
    }

    #[test]
    fn results_are_matched_to_the_ranges_sent() {
        let sent = vec![
            AckRange {
                topic: Arc::from("t"),
                partition: 0,
                first_offset: 0,
                last_offset: 9,
                ack: ack(AckKind::Accept),
            },
            AckRange {
                topic: Arc::from("t"),
                partition: 1,
                first_offset: 5,
                last_offset: 5,
                ack: ack(AckKind::Reject),
            },
            AckRange {
                topic: Arc::from("u"),
                partition: 0,
                first_offset: 1,
                last_offset: 2,
                ack: ack(AckKind::Release),
            },
        ];
        let results = vec![
            pb::ShareAckResult {
                topic: "t".to_owned(),
                partition: 0,
                first_offset: 0,
                last_offset: 9,
                error: None,
                not_held: vec![3, 4],
            },
            pb::ShareAckResult {
                topic: "t".to_owned(),
                partition: 1,
                first_offset: 5,
                last_offset: 5,
                error: Some(pb::PartitionError {
                    code: tonic::Code::NotFound as i32,
                    message: "no partition 1".to_owned(),
                    reason: String::new(),
                    metadata: Default::default(),
                }),
                not_held: vec![],
            },
            // The third is missing from the answer.
        ];
        let got = outcomes(&sent, results, false);
        assert_eq!(got.len(), 3);
        assert!(
            matches!(&got[0].status, AckStatus::Applied { not_held, retried: false } if not_held == &[3, 4])
        );
        assert!(!got[0].is_applied());
        assert_eq!(got[0].offset_count(), 10);
        assert!(matches!(
            &got[1].status,
            AckStatus::Refused(ClientError::NotFound(_))
        ));
        assert_eq!(got[1].kind, AckKind::Reject);
        assert!(matches!(&got[2].status, AckStatus::Refused(_)));
        let failed = unknown(&sent, &ClientError::Unavailable("down".to_owned()));
        assert!(
            failed
                .iter()
                .all(|o| matches!(o.status, AckStatus::Unknown(_)))
        );
    }

    fn kind() -> impl Strategy<Value = AckKind> {
        prop_oneof![
            Just(AckKind::Accept),
            Just(AckKind::Release),
            (1u64..3).prop_map(|s| AckKind::ReleaseAfter(Duration::from_secs(s))),
            Just(AckKind::Reject),
            Just(AckKind::Renew),
        ]
    }

    proptest! {
        /// Against the model (one acknowledgement per offset): the ranges cover exactly
        /// the pending acknowledgements, in order, and are maximal (no two neighbours
        /// could have been one).
        #[test]
        fn ranges_expand_back_to_the_acknowledgements(
            acks in proptest::collection::btree_map(
                (prop_oneof![Just("a"), Just("b")], 0u32..3, 0i64..60),
                kind(),
                0..200,
            )
        ) {
            let pending: BTreeMap<RecordId, Ack> = acks
                .iter()
                .map(|(&(t, p, o), &k)| (id(t, p, o), ack(k)))
                .collect();
            let ranges = coalesce(&pending);
            let expanded: Vec<(RecordId, Ack)> = ranges
                .iter()
                .flat_map(|r| {
                    (r.first_offset..=r.last_offset).map(move |o| {
                        (RecordId { topic: r.topic.clone(), partition: r.partition, offset: o }, r.ack)
                    })
                })
                .collect();
            let model: Vec<(RecordId, Ack)> = pending.into_iter().collect();
            prop_assert_eq!(expanded, model);
            for pair in ranges.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                let mergeable = a.topic == b.topic
                    && a.partition == b.partition
                    && a.ack == b.ack
                    && a.last_offset + 1 == b.first_offset;
                prop_assert!(!mergeable, "{:?} and {:?} should be one range", a, b);
            }
        }
    }
}
