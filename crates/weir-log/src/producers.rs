//! Idempotent producers: what one partition remembers of each producer's recent batches,
//! so a retried batch is not stored twice (Kafka's `ProducerStateManager`).
//!
//! A RecordBatch v2 header carries a producer id, a producer epoch and the sequence
//! number of its first record. For each producer id the log keeps its epoch and the
//! metadata of its last [`PRODUCER_BATCHES_KEPT`] batches (first and last sequence, first
//! and last offset). A leader's append is checked against it
//! ([`ProducerStates::check`]):
//! - the same epoch and the sequences of a kept batch: a duplicate (a retry of a batch
//!   that was written, whose answer the producer did not get); nothing is written and the
//!   original offsets are answered;
//! - the same epoch and the sequence after the last batch's: appended;
//! - the same epoch and any other sequence: [`SequenceError::OutOfOrder`] (a batch before
//!   it is missing; the producer retries them in order);
//! - an older epoch: [`SequenceError::Fenced`] (a newer instance of the producer took
//!   over);
//! - a newer epoch: appended if its sequence is 0 (the producer started over).
//!
//! A producer the partition has no state for (new, or expired) may start at any
//! sequence: its state may have been expired or removed with the segments that held it,
//! and refusing it would strand a producer that did nothing wrong. Batches without a
//! producer id (-1) are not checked.
//!
//! A batch the leader refused for want of space is remembered (in memory) until the
//! producer's next batch is written: a later batch of the same epoch is refused for space
//! too, not as out of order ([`ProducerStates::follows_refused`]), so the producer
//! retries them in order instead of starting over under a new epoch.
//!
//! Transactions (KIP-98): a transactional batch (attribute bit 0x10) of a producer with
//! no ongoing transaction opens one at the batch's first offset; the producer's next
//! control batch (a commit or abort marker, written by the leader for the transaction
//! coordinator) closes it and is answered as a [`CompletedTxn`]. A marker of an epoch
//! older than the producer's is refused ([`ProducerStates::check_marker`]), and so is a
//! marker from a coordinator older than the one that wrote the producer's last marker
//! (its coordinator epoch is lower: a coordinator that lost the transactional id to a
//! newer one after a failover, whose late marker would otherwise end the producer's next
//! transaction, which under transaction version 1 has the same epoch); a marker of
//! a newer epoch (the coordinator bumps the epoch when it ends a transaction, KIP-890)
//! becomes the producer's epoch, and its next batch starts at sequence 0. The smallest
//! first offset of the ongoing transactions is the log's first unstable offset
//! ([`ProducerStates::first_unstable_offset`]). A producer with an ongoing transaction
//! never expires.
//!
//! KIP-890's verification guard: before a leader asks a transactional producer's
//! coordinator whether the partition is in its transaction, it takes a guard here
//! ([`ProducerStates::begin_verification`]; none is needed when the producer already has
//! a transaction going on this partition at that epoch). The batch that opens the
//! transaction is appended only with that guard, and only while it stands: a marker for
//! the producer (its coordinator aborted the transaction meanwhile, say on its timeout)
//! removes it, and the batch is refused ([`SequenceError::NotVerified`]) instead of
//! opening a transaction no coordinator knows of, which would hold the last stable
//! offset back for good (a hanging transaction). Guards live in memory only: after a
//! restart the producer is verified again.
//!
//! The state is part of the log: updated under the log's lock with each append (leader
//! or follower, so a new leader has it), rebuilt on open and after a truncation from a
//! snapshot ([`Kind::ProducerState`](crate::checkpoint::Kind)) plus a scan of the batches
//! after it. No I/O happens in this module: the log writes and reads the encoded form.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::BatchHeader;
use crate::batch::control::{ControlType, TxnMarker};
use crate::checkpoint::PayloadReader;

/// Batches remembered per producer, as Kafka (a producer has at most 5 requests in flight
/// per partition, so a retry is always of one of its last 5 batches).
pub const PRODUCER_BATCHES_KEPT: usize = 5;

/// Most verification guards one partition holds at once (one per transactional producer
/// opening a transaction there): past it one is dropped, whose producer's batch is then
/// refused as unverified (the client aborts the transaction and retries it).
pub const MAX_VERIFICATIONS: usize = 10_000;

/// Most producers one partition remembers a refusal for want of space of
/// ([`ProducerStates::follows_refused`]); past it a refused producer's next batches are
/// answered as Kafka answers them.
pub const MAX_REFUSALS_KEPT: usize = 10_000;

/// Guards are unique in the process, so one taken before a reopen never matches one
/// handed out after it.
static NEXT_GUARD: AtomicU64 = AtomicU64::new(ONGOING_ONLY + 1);

/// The guard of a batch whose producer had its transaction going when it was taken: it
/// never stands, so the batch is appended only while that transaction goes on.
const ONGOING_ONLY: u64 = 0;

/// What [`ProducerStates::begin_verification`] hands a leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    /// To append the producer's batch with (`ValidatedBatches::verified`).
    pub guard: u64,
    /// Whether the coordinator must be asked (no transaction of the producer's is going
    /// here at its epoch).
    pub ask: bool,
}

/// Most producers one partition's snapshot holds. Past it the least recently active are
/// left out of the snapshot (they come back as unknown producers, which are accepted).
pub const MAX_SNAPSHOT_PRODUCERS: usize = 100_000;

/// One batch a producer wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first; empty only after a marker bumped the epoch, or for a producer known
    /// from markers alone (its next batch starts at sequence 0).
    batches: VecDeque<BatchMeta>,
    /// The first offset of the producer's ongoing transaction, if it has one.
    ongoing: Option<i64>,
    /// Newest batch timestamp seen (the batch's max timestamp): expiry is measured from it.
    last_timestamp: i64,
    /// The coordinator epoch of the producer's last marker; -1 before any.
    coordinator_epoch: i32,
}

/// What a control batch's record says: how the transaction ended, and the epoch of the
/// coordinator that had the marker written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerRecord {
    pub control: ControlType,
    pub coordinator_epoch: i32,
}

/// One producer as the partition remembers it (Kafka's DescribeProducers answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    /// The sequence of the last record it wrote.
    pub last_sequence: i32,
    /// The newest batch timestamp seen from it (ms).
    pub last_timestamp: i64,
    /// The offset of the last record it wrote.
    pub last_offset: i64,
    /// The first offset of its ongoing transaction, if it has one.
    pub current_txn_start_offset: Option<i64>,
    /// The epoch of the coordinator that wrote its last marker; -1 before any.
    pub coordinator_epoch: i32,
}

/// A transaction a marker ended (Kafka's `CompletedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    /// The offset of its first batch.
    pub first_offset: i64,
    /// The offset of its marker.
    pub last_offset: i64,
    pub aborted: bool,
}

/// A transaction under way: a producer's transactional batches after its last marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OngoingTxn {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The offset of its first batch.
    pub first_offset: i64,
}

/// What [`ProducerStates::check`] decided about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Write it.
    Append,
    /// Already written at these offsets: write nothing, answer them.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Why a producer's batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error(
        "producer {producer_id} is fenced: its epoch {epoch} is older than epoch {current_epoch}, which a newer instance of it uses"
    )]
    Fenced {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    #[error(
        "a transaction marker for producer {producer_id} from coordinator epoch {coordinator_epoch} is fenced: a coordinator of epoch {current} wrote its last marker"
    )]
    CoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current: i32,
    },
    #[error(
        "producer {producer_id}'s transaction on this partition is not verified: its coordinator's answer is stale (a transaction marker came since) or was never asked"
    )]
    NotVerified { producer_id: i64 },
    #[error(
        "out of order sequence for producer {producer_id} (epoch {epoch}): got {got}, expected {expected}"
    )]
    OutOfOrder {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        got: i32,
    },
}

/// The control type of a batch's record, if it is a control batch whose record can be
/// read (`bytes` is the whole batch).
pub(crate) fn marker_record_of(h: &BatchHeader, bytes: &[u8]) -> Option<MarkerRecord> {
    if !h.is_control() {
        return None;
    }
    let control = crate::batch::control::control_type(bytes, h).ok()?;
    // A marker whose value cannot be read still ends its transaction (its type is what
    // says how); it fences no coordinator.
    let coordinator_epoch = TxnMarker::decode(bytes).map_or(-1, |m| m.coordinator_epoch);
    Some(MarkerRecord {
        control,
        coordinator_epoch,
    })
}

/// The aborted-transaction index entry of a transaction that ended in an abort, with
/// `states` already past its marker.
fn aborted_entry(states: &ProducerStates, done: &CompletedTxn) -> crate::AbortedTxn {
    crate::AbortedTxn {
        producer_id: done.producer_id,
        first_offset: done.first_offset,
        last_offset: done.last_offset,
        last_stable_offset: states
            .first_unstable_offset()
            .unwrap_or(done.last_offset + 1),
    }
}

/// Every producer a partition remembers. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// The ongoing transactions by first offset (the producer id as value): the first key
    /// is the first unstable offset. Kept equal to the entries' `ongoing`.
    ongoing: BTreeMap<i64, i64>,
    /// The verification guards standing, by producer id (see the module docs).
    verifying: HashMap<i64, Standing>,
    /// Producers whose last batch here was refused for want of space, with its epoch and
    /// first sequence (in memory only; see [`ProducerStates::follows_refused`]).
    refused_for_space: HashMap<i64, (i16, i32)>,
}

/// A guard a leader took before asking a producer's coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Standing {
    guard: u64,
    epoch: i16,
}

/// The sequence of the record after `seq` (sequences wrap from `i32::MAX` to 0).
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

/// The sequence of a batch's last record.
fn last_seq(h: &BatchHeader) -> i32 {
    let span = i64::from(h.last_offset_delta);
    ((i64::from(h.base_sequence) + span) % (i64::from(i32::MAX) + 1)) as i32
}

/// Whether a batch belongs to an idempotent producer (control batches do not count).
fn is_idempotent(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && !h.is_control()
}

impl ProducerStates {
    /// How many producers are remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Every producer remembered, by producer id.
    pub fn summaries(&self) -> Vec<ProducerSummary> {
        let mut all: Vec<ProducerSummary> = self
            .producers
            .iter()
            .map(|(&producer_id, e)| {
                let last = e.batches.back();
                ProducerSummary {
                    producer_id,
                    epoch: e.epoch,
                    last_sequence: last.map_or(-1, |b| b.last_seq),
                    last_timestamp: e.last_timestamp,
                    last_offset: last.map_or(-1, |b| b.last_offset),
                    current_txn_start_offset: e.ongoing,
                    coordinator_epoch: e.coordinator_epoch,
                }
            })
            .collect();
        all.sort_by_key(|p| p.producer_id);
        all
    }

    /// Checks a leader's batch against the producer's state (see the module docs).
    /// `verification`: the guard the leader took before asking the producer's
    /// coordinator, for a transactional batch whose producer it verified (`None`: not
    /// verified here, as for a batch that is not transactional).
    pub fn check(
        &self,
        h: &BatchHeader,
        verification: Option<u64>,
    ) -> Result<SequenceCheck, SequenceError> {
        if !is_idempotent(h) {
            return Ok(SequenceCheck::Append);
        }
        let entry = self.producers.get(&h.producer_id);
        if let Some(guard) = verification
            && h.is_transactional()
            && !entry.is_some_and(|e| e.ongoing.is_some() && e.epoch == h.producer_epoch)
        {
            let standing = Standing {
                guard,
                epoch: h.producer_epoch,
            };
            if self.verifying.get(&h.producer_id) != Some(&standing) {
                return Err(SequenceError::NotVerified {
                    producer_id: h.producer_id,
                });
            }
        }
        let Some(entry) = entry else {
            return Ok(SequenceCheck::Append);
        };
        let out_of_order = |expected| SequenceError::OutOfOrder {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            expected,
            got: h.base_sequence,
        };
        if h.producer_epoch < entry.epoch {
            return Err(SequenceError::Fenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            return match h.base_sequence {
                0 => Ok(SequenceCheck::Append),
                _ => Err(out_of_order(0)),
            };
        }
        let Some(newest) = entry.batches.back() else {
            // The epoch was bumped by a marker: the producer starts over at 0.
            return match h.base_sequence {
                0 => Ok(SequenceCheck::Append),
                _ => Err(out_of_order(0)),
            };
        };
        let last = last_seq(h);
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
            });
        }
        let expected = next_seq(newest.last_seq);
        if h.base_sequence == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(out_of_order(expected))
        }
    }

    /// Before a leader asks `producer_id`'s coordinator whether this partition is in its
    /// transaction: the guard its batch must carry, the standing one if another request
    /// of the producer took it first. When the producer has a transaction going here at
    /// `epoch` there is nothing to ask ([`Verification::ask`] is false) and the guard
    /// holds only while that transaction goes on.
    pub fn begin_verification(&mut self, producer_id: i64, epoch: i16) -> Verification {
        if let Some(e) = self.producers.get(&producer_id)
            && e.ongoing.is_some()
            && e.epoch == epoch
        {
            return Verification {
                guard: ONGOING_ONLY,
                ask: false,
            };
        }
        if let Some(v) = self.verifying.get(&producer_id)
            && v.epoch == epoch
        {
            return Verification {
                guard: v.guard,
                ask: true,
            };
        }
        if self.verifying.len() >= MAX_VERIFICATIONS
            && let Some(&dropped) = self.verifying.keys().next()
        {
            self.verifying.remove(&dropped);
        }
        let guard = NEXT_GUARD.fetch_add(1, Ordering::Relaxed);
        self.verifying
            .insert(producer_id, Standing { guard, epoch });
        Verification { guard, ask: true }
    }

    /// Checks a transaction marker of `producer_id` at `epoch`, from a coordinator of
    /// `coordinator_epoch`, before the leader writes it: a marker of an epoch older than
    /// the producer's is refused (a newer instance of the producer took over, or a zombie
    /// coordinator's marker arrived late), and so is one from a coordinator older than
    /// the one that wrote the producer's last marker (Kafka's
    /// TRANSACTION_COORDINATOR_FENCED).
    pub fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), SequenceError> {
        let Some(e) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if epoch < e.epoch {
            return Err(SequenceError::Fenced {
                producer_id,
                epoch,
                current_epoch: e.epoch,
            });
        }
        if coordinator_epoch < e.coordinator_epoch {
            return Err(SequenceError::CoordinatorFenced {
                producer_id,
                coordinator_epoch,
                current: e.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a written batch (offsets assigned): on the leader after [`check`]
    /// (Self::check), on a follower for every batch it copies, and when rebuilding.
    /// `control` is the type of a control batch's record (`None` for a data batch, or a
    /// control batch whose record could not be read, which then changes nothing). Returns
    /// the transaction a marker ended, if it ended one.
    pub fn record(
        &mut self,
        h: &BatchHeader,
        marker: Option<MarkerRecord>,
    ) -> Option<CompletedTxn> {
        if h.producer_id < 0 {
            return None;
        }
        if h.is_control() {
            return self.record_marker(h, marker?);
        }
        self.refused_for_space.remove(&h.producer_id);
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        let entry = self.entry(h);
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == PRODUCER_BATCHES_KEPT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(meta);
        let opens = h.is_transactional() && entry.ongoing.is_none();
        if opens {
            entry.ongoing = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, h.producer_id);
            // Its next batches find the transaction going: the guard has done its work.
            self.verifying.remove(&h.producer_id);
        }
        None
    }

    /// Records a written batch (`bytes` is the whole batch) as [`record`](Self::record)
    /// does, and returns the aborted-transaction index entry it makes: `Some` for an
    /// abort marker that ended a transaction.
    pub(crate) fn record_batch(
        &mut self,
        h: &BatchHeader,
        bytes: &[u8],
    ) -> Option<crate::AbortedTxn> {
        let done = self.record(h, marker_record_of(h, bytes))?;
        done.aborted.then(|| aborted_entry(self, &done))
    }

    /// Notes that the leader refused `h` for want of space (nothing of it was written).
    pub(crate) fn note_refused_for_space(&mut self, h: &BatchHeader) {
        if !is_idempotent(h)
            || (self.refused_for_space.len() >= MAX_REFUSALS_KEPT
                && !self.refused_for_space.contains_key(&h.producer_id))
        {
            return;
        }
        self.refused_for_space
            .insert(h.producer_id, (h.producer_epoch, h.base_sequence));
    }

    /// Whether `h` comes after a batch of the same producer and epoch that was refused
    /// for want of space and not written since: the first sequence of that batch. Such a
    /// batch is refused the same way, with nothing written, until the refused one is
    /// retried (`Log::append`). Kafka answers it OUT_OF_ORDER_SEQUENCE_NUMBER, and a
    /// producer with a request behind a failed one takes that for "not written": it
    /// renumbers everything it holds unacknowledged, on every partition, under a new
    /// epoch (librdkafka's epoch bump), and a message another partition had answered
    /// with a lost connection or NOT_LEADER, which may have been written, is then
    /// written twice (librdkafka issue 4953; the soak found five such doubles). Refused
    /// for space like the batch before it, the request is retried in order, under the
    /// same epoch. It also keeps a producer this partition had no state for from having
    /// its second batch written before its refused first.
    pub(crate) fn follows_refused(&self, h: &BatchHeader) -> Option<i32> {
        if self.refused_for_space.is_empty() {
            return None; // every append asks: no hashing while nothing was refused
        }
        let &(epoch, seq) = self.refused_for_space.get(&h.producer_id)?;
        (is_idempotent(h) && h.producer_epoch == epoch && h.base_sequence > seq).then_some(seq)
    }

    /// The entry of the batch's producer (created if new), its newest timestamp updated.
    fn entry(&mut self, h: &BatchHeader) -> &mut ProducerEntry {
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::with_capacity(PRODUCER_BATCHES_KEPT),
                ongoing: None,
                last_timestamp: h.max_timestamp,
                coordinator_epoch: -1,
            });
        entry.last_timestamp = entry.last_timestamp.max(h.max_timestamp);
        entry
    }

    fn record_marker(&mut self, h: &BatchHeader, marker: MarkerRecord) -> Option<CompletedTxn> {
        // A verification taken before this marker vouches for a transaction that ended.
        self.verifying.remove(&h.producer_id);
        self.refused_for_space.remove(&h.producer_id);
        let entry = self.entry(h);
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = entry.coordinator_epoch.max(marker.coordinator_epoch);
        let first_offset = entry.ongoing.take()?;
        self.ongoing.remove(&first_offset);
        Some(CompletedTxn {
            producer_id: h.producer_id,
            first_offset,
            last_offset: h.last_offset(),
            aborted: marker.control == ControlType::Abort,
        })
    }

    /// The smallest first offset of the ongoing transactions: every offset before it
    /// belongs to a finished transaction or none (Kafka's first unstable offset).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// The ongoing transactions, oldest first.
    pub fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        self.ongoing
            .iter()
            .map(|(&first_offset, &producer_id)| OngoingTxn {
                producer_id,
                producer_epoch: self.producers[&producer_id].epoch,
                first_offset,
            })
            .collect()
    }

    /// Forgets producers whose newest batch is older than `max_idle_ms` at `now_ms`
    /// (Kafka's `producer.id.expiration.ms`). Returns how many were forgotten.
    pub fn expire(&mut self, now_ms: i64, max_idle_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.ongoing.is_some() || e.last_timestamp >= now_ms.saturating_sub(max_idle_ms)
        });
        before - self.producers.len()
    }

    /// The snapshot payload: the state as of `offset` (the offset after the last batch
    /// recorded). Big-endian: `offset i64 | count u32 | count × (producer id i64 | epoch
    /// i32 | last timestamp i64 | batches u32 | batches × (first seq i32 | last seq i32 |
    /// base offset i64 | last offset i64))`, then the ongoing transactions: `ongoing u32 |
    /// ongoing × (producer id i64 | first offset i64)`, then the coordinator epochs of
    /// the producers that had a marker written: `epochs u32 | epochs × (producer id i64 |
    /// coordinator epoch i32)`. A snapshot written before transactions ends after the
    /// producers and reads as one with none ongoing; one written before coordinator
    /// epochs were kept ends after the ongoing transactions and reads as one whose
    /// producers had no marker from a known coordinator (an older `weir` reads a newer
    /// snapshot as malformed and rebuilds the state from the log instead). At most
    /// [`MAX_SNAPSHOT_PRODUCERS`]: those with an ongoing transaction, then the most
    /// recently active.
    pub fn encode(&self, offset: i64) -> Vec<u8> {
        let mut entries: Vec<(&i64, &ProducerEntry)> = self.producers.iter().collect();
        if entries.len() > MAX_SNAPSHOT_PRODUCERS {
            entries
                .sort_by_key(|(_, e)| (e.ongoing.is_none(), std::cmp::Reverse(e.last_timestamp)));
            entries.truncate(MAX_SNAPSHOT_PRODUCERS);
        }
        entries.sort_by_key(|(id, _)| **id);
        let mut out = Vec::with_capacity(
            20 + entries.len() * (24 + 24 * PRODUCER_BATCHES_KEPT + 12) + self.ongoing.len() * 16,
        );
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for &(id, e) in &entries {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&i32::from(e.epoch).to_be_bytes());
            out.extend_from_slice(&e.last_timestamp.to_be_bytes());
            out.extend_from_slice(&(e.batches.len() as u32).to_be_bytes());
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.ongoing.len() as u32).to_be_bytes());
        for (first_offset, producer_id) in &self.ongoing {
            out.extend_from_slice(&producer_id.to_be_bytes());
            out.extend_from_slice(&first_offset.to_be_bytes());
        }
        let epochs: Vec<(i64, i32)> = entries
            .iter()
            .filter(|(_, e)| e.coordinator_epoch >= 0)
            .map(|&(id, e)| (*id, e.coordinator_epoch))
            .collect();
        out.extend_from_slice(&(epochs.len() as u32).to_be_bytes());
        for (id, coordinator_epoch) in epochs {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&coordinator_epoch.to_be_bytes());
        }
        out
    }

    /// Reads a snapshot payload; `None` if it is malformed (every count is checked
    /// against its limit before anything is allocated for it).
    pub fn decode(payload: &[u8]) -> Option<(i64, ProducerStates)> {
        let mut r = PayloadReader::new(payload);
        let offset = r.i64()?;
        let count = r.u32()? as usize;
        if count > MAX_SNAPSHOT_PRODUCERS {
            return None;
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = i16::try_from(r.i32()?).ok()?;
            let last_timestamp = r.i64()?;
            let n = r.u32()? as usize;
            if n > PRODUCER_BATCHES_KEPT || id < 0 {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            let entry = ProducerEntry {
                epoch,
                batches,
                ongoing: None,
                last_timestamp,
                coordinator_epoch: -1,
            };
            if producers.insert(id, entry).is_some() {
                return None;
            }
        }
        let mut ongoing = BTreeMap::new();
        // Written before transactions: no ongoing section.
        if !r.is_empty() {
            let n = r.u32()? as usize;
            if n > count {
                return None;
            }
            for _ in 0..n {
                let (id, first_offset) = (r.i64()?, r.i64()?);
                let entry: &mut ProducerEntry = producers.get_mut(&id)?;
                if entry.ongoing.replace(first_offset).is_some()
                    || first_offset >= offset
                    || ongoing.insert(first_offset, id).is_some()
                {
                    return None;
                }
            }
        }
        // Written before coordinator epochs were kept: no epochs section.
        if !r.is_empty() {
            let n = r.u32()? as usize;
            if n > count {
                return None;
            }
            for _ in 0..n {
                let (id, coordinator_epoch) = (r.i64()?, r.i32()?);
                let entry: &mut ProducerEntry = producers.get_mut(&id)?;
                if entry.coordinator_epoch >= 0 || coordinator_epoch < 0 {
                    return None;
                }
                entry.coordinator_epoch = coordinator_epoch;
            }
        }
        r.is_empty().then_some((
            offset,
            ProducerStates {
                producers,
                ongoing,
                verifying: HashMap::new(),
                refused_for_space: HashMap::new(),
            },
        ))
    }
}

#[cfg(test)]
mod tests;
