//! One transactional id's metadata, its states, and the transitions Kafka allows between
//! them. Every `prepare_*` returns the whole target metadata (what the record will say);
//! nothing here changes state: the coordinator applies a target once it is replicated.

use std::collections::BTreeSet;

use super::records::{TxnLogRecord, TxnLogValue};
use super::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TopicPartition, TxnVersion};

/// The states of a transactional id, with Kafka's ids (the record's status byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    /// No transaction running (after InitProducerId).
    Empty,
    /// A transaction is running: partitions were added.
    Ongoing,
    /// EndTxn(commit) replicated: markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a fence or a timeout replicated: markers are being written.
    PrepareAbort,
    /// Every commit marker written.
    CompleteCommit,
    /// Every abort marker written.
    CompleteAbort,
    /// Being expired: a tombstone is on its way.
    Dead,
    /// Bumping the epoch to fence a producer (never written; Kafka's in-memory step).
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name DescribeTransactions and ListTransactions show.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The states this one may follow (Kafka's `validPreviousStates`, with TV2's abort
    /// from a finished state).
    pub fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[
                Ongoing,
                PrepareEpochFence,
                Empty,
                CompleteCommit,
                CompleteAbort,
            ],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// Whether an idle id in this state may expire.
    pub fn expiration_allowed(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// What the coordinator knows about one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last rotation (KIP-360 retries, TV2 overflow retries).
    pub previous_producer_id: i64,
    /// TV2: the producer id the next Complete* moves to when the epoch ran out.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump; in memory only (lost on failover, as in Kafka).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    /// When the first partition was added; -1 with no transaction.
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub client_version: TxnVersion,
}

/// An epoch a producer may no longer be given: Short.MAX - 1 and up, so the coordinator can
/// always fence once more.
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

impl TxnMetadata {
    /// A new id: no epoch yet, Empty.
    pub fn new(transactional_id: String, producer_id: i64, timeout_ms: i32, now: i64) -> Self {
        TxnMetadata {
            transactional_id,
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now,
            client_version: TxnVersion::TV0,
        }
    }

    pub fn epoch_exhausted(&self) -> bool {
        epoch_exhausted(self.producer_epoch)
    }

    /// Whether a transaction is running or finishing.
    pub fn has_pending_transaction(&self) -> bool {
        matches!(
            self.state,
            TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
        )
    }

    fn to(&self, state: TxnState, now: i64) -> TxnMetadata {
        debug_assert!(
            state.valid_previous().contains(&self.state),
            "{:?} -> {:?} is not a transition",
            self.state,
            state
        );
        let mut next = self.clone();
        next.state = state;
        next.last_update_ms = now;
        next.next_producer_id = NO_PRODUCER_ID;
        // As Kafka: only EndTxn and its completion carry the client's version; every other
        // transition records version 0.
        next.client_version = TxnVersion::TV0;
        next
    }

    /// InitProducerId on a finished id: the epoch bumped, or with `expected_epoch` (KIP-360)
    /// bumped when it matches and unchanged when it is a retry of the last bump.
    pub fn prepare_increment_epoch(
        &self,
        timeout_ms: i32,
        expected_epoch: Option<i16>,
        now: i64,
    ) -> Option<TxnMetadata> {
        let bumped = self.producer_epoch + 1;
        let (epoch, last) = match expected_epoch {
            None => (bumped, NO_PRODUCER_EPOCH),
            Some(e) if self.producer_epoch == NO_PRODUCER_EPOCH || e == self.producer_epoch => {
                (bumped, self.producer_epoch)
            }
            Some(e) if e == self.last_producer_epoch => {
                (self.producer_epoch, self.last_producer_epoch)
            }
            Some(_) => return None,
        };
        let mut next = self.to(TxnState::Empty, now);
        next.producer_epoch = epoch;
        next.last_producer_epoch = last;
        next.timeout_ms = timeout_ms;
        next.partitions.clear();
        next.start_ms = -1;
        Some(next)
    }

    /// InitProducerId when the epoch ran out: a new producer id at epoch 0.
    pub fn prepare_producer_id_rotation(
        &self,
        new_producer_id: i64,
        timeout_ms: i32,
        record_last_epoch: bool,
        now: i64,
    ) -> TxnMetadata {
        let mut next = self.to(TxnState::Empty, now);
        next.previous_producer_id = self.producer_id;
        next.producer_id = new_producer_id;
        next.producer_epoch = 0;
        next.last_producer_epoch = if record_last_epoch {
            self.producer_epoch
        } else {
            NO_PRODUCER_EPOCH
        };
        next.timeout_ms = timeout_ms;
        next.partitions.clear();
        next.start_ms = -1;
        next
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: Ongoing with the partitions added.
    pub fn prepare_add_partitions(
        &self,
        added: impl IntoIterator<Item = TopicPartition>,
        now: i64,
    ) -> TxnMetadata {
        let mut next = self.to(TxnState::Ongoing, now);
        if matches!(
            self.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        ) {
            next.start_ms = now;
            next.partitions.clear();
        }
        next.partitions.extend(added);
        next
    }

    /// EndTxn (or a fence/timeout abort): PrepareCommit/PrepareAbort. Under TV2 the epoch is
    /// bumped here, and a fresh producer id is kept for Complete* when it ran out.
    pub fn prepare_end(
        &self,
        state: TxnState,
        version: TxnVersion,
        next_producer_id: i64,
        now: i64,
    ) -> TxnMetadata {
        let mut next = self.to(state, now);
        if version.bumps_epoch() {
            next.last_producer_epoch = self.producer_epoch;
            next.producer_epoch = self.producer_epoch + 1;
        }
        next.next_producer_id = next_producer_id;
        next.client_version = version;
        next
    }

    /// The fence (InitProducerId over an ongoing transaction, or its timeout): PrepareAbort
    /// at the epoch bumped once (Kafka's PrepareEpochFence), and under `version` 2 once more
    /// for the abort itself, as Kafka's fence followed by a TV2 abort does. The second bump
    /// is what keeps the fenced producer's EndTxn from passing as a retry of this abort.
    pub fn prepare_fence_abort(&self, version: TxnVersion, now: i64) -> TxnMetadata {
        let mut next = self.to(TxnState::PrepareAbort, now);
        // Never past i16::MAX: no producer is handed an epoch above 32766 (exhausted ids
        // move to a new producer id), so only a foreign log could hold one here.
        let fenced = self.producer_epoch.saturating_add(1);
        if version.bumps_epoch() && fenced < i16::MAX {
            next.producer_epoch = fenced + 1;
            next.last_producer_epoch = fenced;
        } else {
            next.producer_epoch = fenced;
            next.last_producer_epoch = NO_PRODUCER_EPOCH;
        }
        next.client_version = version;
        next
    }

    /// Every marker written: CompleteCommit/CompleteAbort, moving to the next producer id
    /// if the epoch ran out (TV2).
    pub fn prepare_complete(&self, now: i64) -> TxnMetadata {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => panic!("complete from {other:?}: the coordinator only completes a Prepare*"),
        };
        let mut next = self.to(state, now);
        next.client_version = self.client_version;
        if self.client_version.bumps_epoch() && self.next_producer_id != NO_PRODUCER_ID {
            next.previous_producer_id = self.producer_id;
            next.producer_id = self.next_producer_id;
            next.producer_epoch = 0;
        }
        next.last_producer_epoch = self.producer_epoch;
        next.partitions.clear();
        next
    }

    /// Expiry: Dead, written as a tombstone.
    pub fn prepare_dead(&self) -> TxnMetadata {
        let mut next = self.to(TxnState::Dead, self.last_update_ms);
        next.partitions.clear();
        next
    }

    /// The record that says this metadata (`Dead` is a tombstone).
    pub fn to_record(&self) -> TxnLogRecord {
        let value = (self.state != TxnState::Dead).then(|| TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            next_producer_epoch: NO_PRODUCER_EPOCH,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            status: self.state.id(),
            partitions: (self.state != TxnState::Empty)
                .then(|| self.partitions.iter().cloned().collect()),
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_txn_version: self.client_version.0,
        });
        TxnLogRecord {
            transactional_id: self.transactional_id.clone(),
            value,
        }
    }

    /// The metadata a loaded value says (`None`: an unknown state id).
    pub fn from_value(transactional_id: String, value: &TxnLogValue) -> Option<TxnMetadata> {
        let state = TxnState::from_id(value.status)?;
        let partitions = match (&value.partitions, state) {
            (Some(p), s) if s != TxnState::Empty => p.iter().cloned().collect(),
            _ => BTreeSet::new(),
        };
        Some(TxnMetadata {
            transactional_id,
            producer_id: value.producer_id,
            previous_producer_id: value.previous_producer_id,
            next_producer_id: value.next_producer_id,
            producer_epoch: value.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: value.timeout_ms,
            state,
            partitions,
            start_ms: value.start_ms,
            last_update_ms: value.last_update_ms,
            client_version: TxnVersion(value.client_txn_version),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> TxnMetadata {
        let m = TxnMetadata::new("t".into(), 7, 1000, 0);
        let m = m.prepare_increment_epoch(1000, None, 1).unwrap();
        assert_eq!(m.producer_epoch, 0);
        m.prepare_add_partitions([TopicPartition::new("a", 0)], 2)
    }

    #[test]
    fn ids_and_names_are_kafkas() {
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_id(s.id()), Some(s));
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        assert_eq!(TxnState::PrepareEpochFence.id(), 7);
        assert_eq!(TxnState::from_id(8), None);
    }

    #[test]
    fn tv2_end_bumps_the_epoch_and_tv0_does_not() {
        let m = ongoing();
        let v2 = m.prepare_end(TxnState::PrepareCommit, TxnVersion::TV2, NO_PRODUCER_ID, 3);
        assert_eq!((v2.producer_epoch, v2.last_producer_epoch), (1, 0));
        let done = v2.prepare_complete(4);
        assert_eq!(
            (done.state, done.producer_epoch),
            (TxnState::CompleteCommit, 1)
        );
        assert!(done.partitions.is_empty());
        let v0 = m.prepare_end(TxnState::PrepareAbort, TxnVersion::TV0, NO_PRODUCER_ID, 3);
        assert_eq!(v0.producer_epoch, 0);
    }

    #[test]
    fn tv2_overflow_moves_to_the_next_producer_id_on_complete() {
        let mut m = ongoing();
        m.producer_epoch = i16::MAX - 1;
        let p = m.prepare_end(TxnState::PrepareCommit, TxnVersion::TV2, 99, 3);
        assert_eq!(p.producer_epoch, i16::MAX);
        let c = p.prepare_complete(4);
        assert_eq!(
            (c.producer_id, c.producer_epoch, c.previous_producer_id),
            (99, 0, 7)
        );
    }

    #[test]
    fn kip360_retry_of_the_last_bump_keeps_the_epoch() {
        let m = ongoing().prepare_end(TxnState::PrepareAbort, TxnVersion::TV0, -1, 3);
        let m = m.prepare_complete(4);
        let bumped = m.prepare_increment_epoch(1000, Some(0), 5).unwrap();
        assert_eq!((bumped.producer_epoch, bumped.last_producer_epoch), (1, 0));
        let retry = bumped.prepare_increment_epoch(1000, Some(0), 6).unwrap();
        assert_eq!(retry.producer_epoch, 1);
        assert!(bumped.prepare_increment_epoch(1000, Some(5), 6).is_none());
    }

    #[test]
    fn metadata_round_trips_through_its_record() {
        let m = ongoing();
        let r = m.to_record();
        let back = TxnMetadata::from_value("t".into(), r.value.as_ref().unwrap()).unwrap();
        // The last epoch is memory only, as in Kafka.
        assert_eq!(
            back,
            TxnMetadata {
                last_producer_epoch: NO_PRODUCER_EPOCH,
                ..m.clone()
            }
        );
        let idle = TxnMetadata::new("t".into(), 7, 1000, 0);
        assert_eq!(idle.prepare_dead().to_record().value, None);
    }
}
