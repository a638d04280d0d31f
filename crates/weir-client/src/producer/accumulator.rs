//! The record accumulator: per-partition batches being filled, batches ready to send,
//! and the per-partition bookkeeping of what is in flight and what must be retried.
//!
//! It is synchronous and knows nothing of the network: `send` appends under one short
//! mutex hold (encoding the record into the partition's open batch), the sender task
//! [`drain`](Accumulator::drain)s what may be sent and reports each batch's outcome with
//! [`complete`](Accumulator::complete). Memory is reserved by the caller before an
//! append and released here when a batch completes, so the bytes held in open, ready,
//! failed and in-flight batches never exceed `buffer_memory`: that is the bound on every
//! queue here.
//!
//! Routing: `drain` is given each partition's leader (from the client's metadata) and
//! sends a partition's batches there. A partition whose leader changed keeps its batches
//! back until those in flight to the old leader have answered, so a partition never has
//! batches in flight to two brokers at once: its outcomes still arrive in send order, and
//! the retry rule below still holds across a leader change. A partition with no known
//! leader waits (the sender refreshes metadata meanwhile) for at most `request_timeout`,
//! then its waiting batches fail.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore};
use weir_batch::{Header, Record, RecordBatchBuilder, RecordView};

use super::batch::RecordRef;
use super::config::{METADATA_MAX_AGE, ProducerConfig};
use crate::error::ClientError;
use crate::partitioner::{StickyPartitioner, partition_for_key};
use crate::routing::BrokerId;

/// Upper bound on what a record adds to a batch besides its key, value and header bytes:
/// length (5), attributes (1), timestamp delta (10), offset delta (5), key and value
/// lengths (5 each) and header count (5), as varints at their widest.
pub(crate) const RECORD_OVERHEAD_BYTES: usize = 36;
/// Upper bound on what one header adds besides its key and value bytes: two varint
/// lengths at their widest.
pub(crate) const HEADER_OVERHEAD_BYTES: usize = 10;

/// What the broker said about an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchAck {
    /// Offset of the batch's first record (-1 with `Acks::None`).
    pub base_offset: i64,
    /// The append time if the topic uses LogAppendTime, else -1.
    pub log_append_time_ms: i64,
}

/// The outcome of one batch, shared by the delivery futures of all its records.
#[derive(Debug)]
pub(crate) struct BatchCompletion {
    pub topic: Arc<str>,
    pub partition: u32,
    result: OnceLock<Result<BatchAck, ClientError>>,
    notify: Notify,
}

impl BatchCompletion {
    fn new(topic: Arc<str>, partition: u32) -> BatchCompletion {
        BatchCompletion {
            topic,
            partition,
            result: OnceLock::new(),
            notify: Notify::new(),
        }
    }

    /// Sets the outcome (once) and wakes every waiter.
    fn complete(&self, result: Result<BatchAck, ClientError>) {
        let _ = self.result.set(result);
        self.notify.notify_waiters();
    }

    /// The outcome, if the batch has completed.
    pub fn result(&self) -> Option<&Result<BatchAck, ClientError>> {
        self.result.get()
    }

    /// Waits for the outcome.
    pub async fn wait(&self) -> &Result<BatchAck, ClientError> {
        loop {
            // Register before checking, so a completion between the check and the
            // await is not missed.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.result.get() {
                return result;
            }
            notified.await;
        }
    }
}

/// A record appended to a batch: where its outcome will appear.
#[derive(Debug)]
pub(crate) struct Appended {
    pub completion: Arc<BatchCompletion>,
    /// The record's position in its batch (its offset delta).
    pub index: u32,
}

/// The records of one `send_all` call in one batch: indices `first_index..first_index +
/// count` of the batch, contiguous because they were appended under one lock hold.
#[derive(Debug)]
pub(crate) struct Segment {
    pub completion: Arc<BatchCompletion>,
    pub partition: u32,
    pub first_index: u32,
    pub count: u32,
    batch_id: u64,
    /// The lock hold of the call it was started in: a later hold starts a new segment,
    /// since other sends may have appended to the batch in between.
    hold: u32,
}

/// No segment yet (in [`AppendCall::latest`]).
const NO_SEGMENT: u32 = u32::MAX;

/// The progress of one `send_all` call across its lock holds.
#[derive(Debug, Default)]
pub(crate) struct AppendCall<'r> {
    /// Where the call's records went, one entry per batch (per lock hold).
    pub segments: Vec<Segment>,
    /// Index in `segments` of each partition's latest segment; filled only once a call's
    /// records go to more than one batch (keyed records over several partitions).
    latest: Vec<u32>,
    /// Buffer memory reserved for the call and not yet charged to a batch.
    pub credit: usize,
    /// Records appended.
    pub accepted: u64,
    /// A record taken from the iterator but not appended yet (memory was short, or its
    /// partition's batch was just closed).
    pub pending: Option<RecordRef<'r>>,
    /// The partition already chosen for `pending`, if one was.
    pending_partition: Option<u32>,
    hold: u32,
}

impl AppendCall<'_> {
    /// Counts a record appended at `index` of batch `batch_id` of `partition`.
    #[inline]
    fn note(
        &mut self,
        partition: u32,
        partitions: u32,
        batch_id: u64,
        index: u32,
        completion: &Arc<BatchCompletion>,
    ) {
        if let Some(last) = self.segments.last_mut()
            && last.batch_id == batch_id
            && last.hold == self.hold
        {
            last.count += 1;
            return;
        }
        self.note_new(partition, partitions, batch_id, index, completion);
    }

    /// [`note`](Self::note) past its common case (the same batch as the last record).
    #[cold]
    fn note_new(
        &mut self,
        partition: u32,
        partitions: u32,
        batch_id: u64,
        index: u32,
        completion: &Arc<BatchCompletion>,
    ) {
        let hold = self.hold;
        let continues = |s: &Segment| s.batch_id == batch_id && s.hold == hold;
        if !self.segments.is_empty() {
            if self.latest.len() < partitions as usize {
                self.latest.clear();
                self.latest.resize(partitions as usize, NO_SEGMENT);
                for (at, s) in self.segments.iter().enumerate() {
                    self.latest[s.partition as usize] = at as u32;
                }
            }
            let at = self.latest[partition as usize];
            if at != NO_SEGMENT && continues(&self.segments[at as usize]) {
                self.segments[at as usize].count += 1;
                return;
            }
            self.latest[partition as usize] = self.segments.len() as u32;
        }
        self.segments.push(Segment {
            completion: completion.clone(),
            partition,
            first_index: index,
            count: 1,
            batch_id,
            hold,
        });
    }
}

/// Where [`Accumulator::append_many`] stopped.
#[derive(Debug)]
pub(crate) enum AppendStep {
    /// Every record is appended.
    Done,
    /// A batch was closed: the lock was let go so the sender can take it; call again
    /// (the record that closed it goes first, to the same partition, in a new batch).
    Yield,
    /// Reserve this many bytes (after giving back the call's credit), then call again.
    NeedMemory(usize),
    /// As [`AppendError::NeedMetadata`].
    NeedMetadata,
    /// The call cannot go on: the record taken last is dropped, later ones are not taken.
    Failed(ClientError),
}

/// Why an append did not happen.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// The topic's partition count is not known, is stale, or the partition is past it:
    /// fetch metadata and try again.
    NeedMetadata,
    /// The record can never be appended.
    Failed(ClientError),
}

/// A batch's records: still a builder until the sender encodes it (CRC and compression
/// run on the sender task, off the application's `send` path), then bytes kept for
/// retries.
#[derive(Debug)]
pub(crate) enum Payload {
    Open(RecordBatchBuilder),
    Built(Bytes),
}

/// A closed batch on its way to the broker.
#[derive(Debug)]
pub(crate) struct ProducerBatch {
    pub topic: Arc<str>,
    pub partition: u32,
    pub payload: Payload,
    pub record_count: u32,
    pub completion: Arc<BatchCompletion>,
    id: u64,
    reserved_bytes: usize,
    /// Times it was sent and failed retriably.
    pub attempts: u32,
    /// Order of its last send among all sends (set by the sender); responses of one
    /// partition arrive in this order.
    pub send_seq: u64,
    /// The broker it was last drained for (its partition's leader then).
    pub broker: BrokerId,
    /// With idempotence: the identity it was numbered under when first drained (its
    /// sequence is in the batch); retries keep it.
    pub stamp: Option<Identity>,
}

/// An idempotent producer's id and epoch (from `InitProducerId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub producer_id: i64,
    pub epoch: i16,
}

impl ProducerBatch {
    /// The encoded batch, building it on first use.
    pub fn encode(&mut self) -> Result<Bytes, ClientError> {
        if let Payload::Built(bytes) = &self.payload {
            return Ok(bytes.clone());
        }
        let Payload::Open(builder) =
            std::mem::replace(&mut self.payload, Payload::Built(Bytes::new()))
        else {
            unreachable!("checked above");
        };
        let bytes = builder.build()?.freeze();
        self.payload = Payload::Built(bytes.clone());
        Ok(bytes)
    }
}

struct OpenBatch {
    batch: ProducerBatch,
    created: Instant,
}

#[derive(Default)]
struct PartitionState {
    open: Option<OpenBatch>,
    /// Closed batches in append order, not yet sent (or put back for a retry).
    ready: VecDeque<ProducerBatch>,
    in_flight: usize,
    /// The broker the in-flight batches went to (`None` when none are in flight).
    in_flight_broker: Option<BrokerId>,
    /// Since when batches have waited for a leader to be known.
    unrouted_since: Option<Instant>,
    /// The last batch closed here was closed full (not by linger or flush): the next one
    /// gets its whole buffer at once.
    filled: bool,
    /// Batches that failed retriably while later batches of this partition were still
    /// in flight; held until those answer, then retried or failed (see `complete`).
    failed: Vec<(ProducerBatch, ClientError)>,
    /// No sends before this (retry backoff).
    retry_at: Option<Instant>,
    /// The broker the batches waiting out `retry_at` failed on.
    failed_on: Option<BrokerId>,
    /// The identity `next_sequence` counts under (idempotence).
    sequence_of: Option<Identity>,
    /// The sequence of the next record numbered under `sequence_of`.
    next_sequence: i32,
    /// A batch numbered under this identity failed for good, so the ones numbered after
    /// it can never be appended (the partition expects the failed one's sequence): they
    /// fail instead of retrying.
    poisoned: Option<Identity>,
}

struct TopicState {
    partitions: Vec<PartitionState>,
    sticky: StickyPartitioner,
    /// When the cached partition count must be fetched again.
    expires: Instant,
}

struct State {
    topics: HashMap<Arc<str>, TopicState>,
    /// Every batch not yet completed, for `flush`.
    incomplete: HashMap<u64, Arc<BatchCompletion>>,
    next_batch_id: u64,
    /// Flushes in progress: while any is, open batches are sent without lingering.
    flushing: usize,
    closing: bool,
    /// With idempotence: the identity new batches are numbered under; `None` until the
    /// sender has one, and while a new one is wanted (see `poisoned`).
    identity: Option<Identity>,
    /// A numbered batch failed for good: the sender gets a new identity, under which
    /// every partition numbers from 0 again.
    identity_wanted: bool,
    /// The producer was fenced by a newer instance: every send fails with this.
    fenced: Option<ClientError>,
    /// Buffers of acknowledged batches, for new batches of partitions that fill theirs.
    spare_buffers: Vec<Vec<u8>>,
}

/// The parts of [`State`] that opening a batch updates, borrowed apart from its topics.
struct BatchBook<'a> {
    next_batch_id: &'a mut u64,
    incomplete: &'a mut HashMap<u64, Arc<BatchCompletion>>,
    spare_buffers: &'a mut Vec<Vec<u8>>,
}

/// Most buffers [`State::spare_buffers`] keeps: batches are opened about as often as
/// they complete, so a few cover the churn.
const MAX_SPARE_BUFFERS: usize = 8;

/// What [`Accumulator::drain`] found.
#[derive(Debug, Default)]
pub(crate) struct Drained {
    /// Batches to send now, at most one per partition per round: `rounds[k]` holds the
    /// k-th batch of each partition that had one.
    pub rounds: Vec<Vec<ProducerBatch>>,
    /// When something will next become sendable (a linger or backoff running out).
    pub next_wake: Option<Instant>,
    /// Partitions with batches to send whose leader is not known: metadata is needed.
    pub unrouted: Vec<(Arc<str>, u32)>,
    /// Topics with a partition waiting to retry on the leader that failed: metadata is
    /// refreshed meanwhile (one entry per partition; repeats are harmless).
    pub waiting_on_failed: Vec<Arc<str>>,
}

/// See the module docs.
pub(crate) struct Accumulator {
    config: ProducerConfig,
    state: Mutex<State>,
    memory: Semaphore,
    /// Wakes the sender: a batch was opened (a linger timer to arm), closed, or the
    /// producer is flushing or closing.
    pub wake_sender: Notify,
}

impl std::fmt::Debug for Accumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accumulator")
            .field("available_memory", &self.memory.available_permits())
            .finish_non_exhaustive()
    }
}

impl Accumulator {
    pub(crate) fn new(config: ProducerConfig) -> Accumulator {
        let memory = Semaphore::new(config.buffer_memory);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let idempotence = config.idempotence;
        Accumulator {
            config,
            state: Mutex::new(State {
                topics: HashMap::new(),
                incomplete: HashMap::new(),
                next_batch_id: seed,
                flushing: 0,
                closing: false,
                identity: None,
                identity_wanted: idempotence,
                fenced: None,
                spare_buffers: Vec::new(),
            }),
            memory,
            wake_sender: Notify::new(),
        }
    }

    pub(crate) fn config(&self) -> &ProducerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state is still consistent enough
        // to fail the remaining batches, so keep going rather than cascade panics.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An upper bound on the bytes `record` takes in a batch; what `send` reserves.
    pub(crate) fn record_bytes(record: &Record) -> usize {
        parts_bytes(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        )
    }

    /// Reserves `bytes` of buffer memory, waiting while it is used up.
    pub(crate) async fn reserve(&self, bytes: usize) -> Result<(), ClientError> {
        if bytes > self.config.buffer_memory {
            return Err(ClientError::InvalidArgument(format!(
                "a record of {bytes} bytes is larger than buffer_memory ({} bytes)",
                self.config.buffer_memory
            )));
        }
        // Within MAX_BUFFER_MEMORY_BYTES = u32::MAX, checked by the config.
        let permits = bytes as u32;
        let permit = match self.memory.try_acquire_many(permits) {
            Ok(permit) => permit,
            Err(_) => self
                .memory
                .acquire_many(permits)
                .await
                .map_err(|_| ClientError::Closed)?,
        };
        permit.forget();
        Ok(())
    }

    /// Gives back memory reserved for a record that was not appended.
    pub(crate) fn unreserve(&self, bytes: usize) {
        self.memory.add_permits(bytes);
    }

    /// Records `topic`'s partition count. A count never shrinks here (topics only grow),
    /// so batches already queued for a partition keep a place.
    pub(crate) fn set_partitions(&self, topic: &str, partitions: u32, now: Instant) {
        let mut state = self.lock();
        let seed = state.next_batch_id;
        let entry = state
            .topics
            .entry(Arc::from(topic))
            .or_insert_with(|| TopicState {
                partitions: Vec::new(),
                sticky: StickyPartitioner::new(seed),
                expires: now,
            });
        entry.expires = now + METADATA_MAX_AGE;
        let partitions = partitions as usize;
        if entry.partitions.len() < partitions {
            entry
                .partitions
                .resize_with(partitions, PartitionState::default);
        }
    }

    /// Forgets `topic`'s cached partition count, so the next send fetches it again. Keeps
    /// its queued batches.
    pub(crate) fn invalidate(&self, topic: &str) {
        if let Some(t) = self.lock().topics.get_mut(topic) {
            t.expires = Instant::now();
        }
    }

    /// Appends `record` (whose [`record_bytes`](Self::record_bytes) the caller reserved)
    /// to the open batch of its partition.
    pub(crate) fn append(
        &self,
        topic: &str,
        partition: Option<u32>,
        record: &Record,
        reserved_bytes: usize,
        now: Instant,
    ) -> Result<Appended, AppendError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closing {
            return Err(AppendError::Failed(ClientError::Closed));
        }
        if let Some(fenced) = &state.fenced {
            return Err(AppendError::Failed(fenced.clone()));
        }
        let Some((topic_name, topic_state)) = state.topics.get_key_value(topic) else {
            return Err(AppendError::NeedMetadata);
        };
        if topic_state.expires <= now {
            return Err(AppendError::NeedMetadata);
        }
        let topic_name = topic_name.clone();
        let topic_state = state.topics.get_mut(topic).expect("found above");
        let count = topic_state.partitions.len() as u32;
        let partition = match (partition, &record.key) {
            (Some(p), _) if p < count => p,
            (Some(_), _) => return Err(AppendError::NeedMetadata),
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => topic_state.sticky.partition(count),
        };
        let part = &mut topic_state.partitions[partition as usize];
        let mut wake = false;

        // Close the open batch first if this record would take it past batch_bytes.
        if let Some(open) = &part.open
            && !open.batch.is_empty()
            && open.estimated_size() + reserved_bytes > self.config.batch_bytes
        {
            let open = part.open.take().expect("checked");
            part.ready.push_back(open.batch);
            part.filled = true;
            topic_state.sticky.batch_closed(partition, count);
            wake = true;
        }
        if part.open.is_none() {
            let mut book = BatchBook {
                next_batch_id: &mut state.next_batch_id,
                incomplete: &mut state.incomplete,
                spare_buffers: &mut state.spare_buffers,
            };
            self.open_batch(part, &mut book, &topic_name, partition, now);
            // The sender arms the linger timer of the new batch.
            wake = true;
        }
        let open = part.open.as_mut().expect("opened above");
        let Payload::Open(builder) = &mut open.batch.payload else {
            unreachable!("an open batch is never built");
        };
        if let Err(error) = builder.try_push(record) {
            if builder.is_empty() {
                // Nothing to close: the record alone is over a batch limit.
                drop(guard);
                return Err(AppendError::Failed(error.into()));
            }
            drop(guard);
            // The record may still fit an empty batch: close this one and retry once.
            self.close_open(topic, partition);
            return self.append(topic, Some(partition), record, reserved_bytes, now);
        }
        let index = open.batch.record_count;
        open.batch.record_count += 1;
        open.batch.reserved_bytes += reserved_bytes;
        let appended = Appended {
            completion: open.batch.completion.clone(),
            index,
        };
        drop(guard);
        if wake {
            self.wake_sender.notify_one();
        }
        Ok(appended)
    }

    /// Opens a new batch on `part` (which has none open).
    fn open_batch(
        &self,
        part: &mut PartitionState,
        book: &mut BatchBook<'_>,
        topic_name: &Arc<str>,
        partition: u32,
        now: Instant,
    ) {
        let id = *book.next_batch_id;
        *book.next_batch_id = book.next_batch_id.wrapping_add(1);
        let completion = Arc::new(BatchCompletion::new(topic_name.clone(), partition));
        book.incomplete.insert(id, completion.clone());
        let spare_buffers = &mut *book.spare_buffers;
        // A partition whose last batch filled up will likely fill this one too: it gets a
        // full-size buffer at once (an acknowledged batch's, else a new one) instead of one
        // doubled up from the default (which copies as many bytes again as the batch
        // holds, and faults in fresh pages per batch). Others start small.
        let compression = self.config.compression;
        let builder = match spare_buffers.pop() {
            Some(buf) if part.filled => RecordBatchBuilder::with_buffer(compression, buf),
            None if part.filled => {
                RecordBatchBuilder::with_capacity(compression, self.config.batch_bytes)
            }
            spare => {
                spare_buffers.extend(spare);
                RecordBatchBuilder::new(compression)
            }
        };
        part.open = Some(OpenBatch {
            batch: ProducerBatch {
                topic: topic_name.clone(),
                partition,
                payload: Payload::Open(builder),
                record_count: 0,
                completion,
                id,
                reserved_bytes: 0,
                attempts: 0,
                send_seq: 0,
                broker: crate::routing::NO_BROKER,
                stamp: None,
            },
            created: now,
        });
    }

    /// How much memory a `send_all` call reserves when its credit runs out at a record of
    /// `need` bytes with `rest` (a size hint) still to come: the whole rest at once, if it
    /// fits a chunk of about four batches (a quarter of `buffer_memory` at most, and never
    /// less than a batch), else such a chunk; always at least `need`.
    fn want(&self, need: usize, rest: (usize, Option<usize>)) -> usize {
        let batch = self.config.batch_bytes;
        let chunk = batch.max((self.config.buffer_memory / 4).min(4 * batch));
        let rest = match rest {
            (_, Some(0)) => 0,
            // Not known: take a chunk, and give back what is left at the end.
            (0, _) => chunk,
            (lower, _) => need.saturating_mul(lower),
        };
        need.saturating_add(rest).min(chunk).max(need)
    }

    /// Appends records from `records` (after `call.pending`) to their partitions' open
    /// batches under one lock hold, as [`append`](Self::append) would one by one: the
    /// same partition choice (`partition`, else the key's hash, else the sticky
    /// partition) and the same batch closing rule. Memory comes from `call.credit`, topped
    /// up without waiting while the semaphore has it; stops when it has not
    /// ([`AppendStep::NeedMemory`]), and after closing a batch, so the sender is not kept
    /// waiting on the lock for more than a batch's records.
    pub(crate) fn append_many<'r>(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: &mut impl Iterator<Item = RecordRef<'r>>,
        call: &mut AppendCall<'r>,
        now: Instant,
        now_ms: i64,
    ) -> AppendStep {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closing {
            return AppendStep::Failed(ClientError::Closed);
        }
        if let Some(fenced) = &state.fenced {
            return AppendStep::Failed(fenced.clone());
        }
        let Some((topic_name, topic_state)) = state.topics.get_key_value(topic) else {
            return AppendStep::NeedMetadata;
        };
        let count = topic_state.partitions.len() as u32;
        if topic_state.expires <= now || partition.is_some_and(|p| p >= count) {
            return AppendStep::NeedMetadata;
        }
        let topic_name = topic_name.clone();
        let State {
            topics,
            incomplete,
            next_batch_id,
            spare_buffers,
            ..
        } = state;
        let mut book = BatchBook {
            next_batch_id,
            incomplete,
            spare_buffers,
        };
        let topic_state = topics.get_mut(topic).expect("found above");
        let batch_bytes = self.config.batch_bytes;
        call.hold = call.hold.wrapping_add(1);
        let mut wake = false;
        let step = loop {
            let Some(record) = call.pending.take().or_else(|| records.next()) else {
                break AppendStep::Done;
            };
            let need = parts_bytes(record.key, record.value, record.headers);
            if need > call.credit {
                if need > self.config.buffer_memory {
                    break AppendStep::Failed(ClientError::InvalidArgument(format!(
                        "a record of {need} bytes is larger than buffer_memory ({} bytes)",
                        self.config.buffer_memory
                    )));
                }
                let want = self.want(need, records.size_hint());
                // Within MAX_BUFFER_MEMORY_BYTES = u32::MAX, checked by the config.
                match self.memory.try_acquire_many(want as u32) {
                    Ok(permit) => {
                        permit.forget();
                        call.credit += want;
                    }
                    Err(_) => {
                        call.pending = Some(record);
                        break AppendStep::NeedMemory(want);
                    }
                }
            }
            let p = match (call.pending_partition.take(), partition, record.key) {
                (Some(p), _, _) | (None, Some(p), _) => p,
                (None, None, Some(key)) => partition_for_key(key, count),
                (None, None, None) => topic_state.sticky.partition(count),
            };
            let part = &mut topic_state.partitions[p as usize];
            if let Some(open) = &part.open
                && !open.batch.is_empty()
                && open.estimated_size() + need > batch_bytes
            {
                let open = part.open.take().expect("checked");
                part.ready.push_back(open.batch);
                part.filled = true;
                topic_state.sticky.batch_closed(p, count);
                // Let the sender have the lock; the record goes on where `send` would
                // put it (a new batch of the same partition) in the next hold.
                call.pending = Some(record);
                call.pending_partition = Some(p);
                wake = true;
                break AppendStep::Yield;
            }
            let view = RecordView {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp: record.timestamp.unwrap_or(now_ms),
            };
            let pushed = loop {
                if part.open.is_none() {
                    self.open_batch(part, &mut book, &topic_name, p, now);
                    wake = true;
                }
                let open = part.open.as_mut().expect("opened above");
                let Payload::Open(builder) = &mut open.batch.payload else {
                    unreachable!("an open batch is never built");
                };
                match builder.try_push_view(view) {
                    Ok(()) => break Ok(()),
                    // Nothing to close: the record alone is over a batch limit.
                    Err(error) if builder.is_empty() => break Err(error),
                    Err(_) => {
                        // It may still fit an empty batch: close this one, try once more.
                        let open = part.open.take().expect("checked");
                        part.ready.push_back(open.batch);
                        topic_state.sticky.batch_closed(p, count);
                        wake = true;
                    }
                }
            };
            if let Err(error) = pushed {
                break AppendStep::Failed(error.into());
            }
            let batch = &mut part.open.as_mut().expect("pushed to it").batch;
            let index = batch.record_count;
            batch.record_count += 1;
            batch.reserved_bytes += need;
            call.credit -= need;
            call.accepted += 1;
            call.note(p, count, batch.id, index, &batch.completion);
        };
        drop(guard);
        if wake {
            self.wake_sender.notify_one();
        }
        step
    }

    fn close_open(&self, topic: &str, partition: u32) {
        let mut state = self.lock();
        if let Some(t) = state.topics.get_mut(topic) {
            let count = t.partitions.len() as u32;
            let part = &mut t.partitions[partition as usize];
            if let Some(open) = part.open.take() {
                part.ready.push_back(open.batch);
                t.sticky.batch_closed(partition, count);
            }
        }
        drop(state);
        self.wake_sender.notify_one();
    }

    /// Closes batches whose linger ran out (all open batches when flushing or closing) and
    /// takes up to `budget` batches that may be sent now: the oldest ready batches of each
    /// partition that has fewer than `max_in_flight` in flight, is not backing off, is
    /// not waiting to retry earlier batches, and whose leader (`route`) is known and the
    /// broker its in-flight batches went to, if any. Taken batches count as in flight
    /// until [`complete`](Self::complete) is called for them.
    pub(crate) fn drain(
        &self,
        now: Instant,
        budget: usize,
        route: &dyn Fn(&str, u32) -> Option<BrokerId>,
    ) -> Drained {
        let mut guard = self.lock();
        let state = &mut *guard;
        let send_all = state.flushing > 0 || state.closing;
        let mut drained = Drained::default();
        let mut expired: Vec<(ProducerBatch, ClientError)> = Vec::new();
        let mut budget = budget;
        // The identity to number new batches under, if they are numbered and one is known.
        let numbering = match (self.config.idempotence, state.identity) {
            (false, _) => Numbering::Off,
            (true, Some(identity)) if !state.identity_wanted => Numbering::Under(identity),
            (true, _) => Numbering::Waiting,
        };
        let wake = |at: Instant, next: &mut Option<Instant>| {
            *next = Some(next.map_or(at, |n| n.min(at)));
        };
        for (topic_name, topic) in state.topics.iter_mut() {
            let count = topic.partitions.len() as u32;
            for (index, part) in topic.partitions.iter_mut().enumerate() {
                if let Some(open) = &part.open {
                    let deadline = open.created + self.config.linger;
                    let idle = self.config.send_when_idle
                        && part.in_flight == 0
                        && part.ready.is_empty()
                        && part.failed.is_empty()
                        && part.retry_at.is_none();
                    if send_all || idle || deadline <= now {
                        let open = part.open.take().expect("checked");
                        part.ready.push_back(open.batch);
                        part.filled = false;
                        topic.sticky.batch_closed(index as u32, count);
                    } else {
                        wake(deadline, &mut drained.next_wake);
                    }
                }
                if part.ready.is_empty() || !part.failed.is_empty() {
                    continue;
                }
                if let Some(at) = part.retry_at {
                    // The backoff is for the broker that failed. Once the metadata names
                    // another leader, the retry goes at once (Kafka's KIP-951); until
                    // then the metadata is refreshed while waiting, so a new leader is
                    // seen within a refresh interval of its election, not a backoff.
                    let moved = match (route(topic_name, index as u32), part.failed_on) {
                        (Some(now_leader), Some(failed)) => now_leader != failed,
                        _ => false,
                    };
                    if at > now && !moved {
                        drained.waiting_on_failed.push(topic_name.clone());
                        wake(at, &mut drained.next_wake);
                        continue;
                    }
                    part.retry_at = None;
                    part.failed_on = None;
                }
                let Some(broker) = route(topic_name, index as u32) else {
                    let since = *part.unrouted_since.get_or_insert(now);
                    let give_up = since + self.config.request_timeout;
                    if give_up <= now {
                        let error = ClientError::Unavailable(format!(
                            "no leader of {topic_name}/{index} was known for {:?} (request_timeout)",
                            self.config.request_timeout
                        ));
                        expired.extend(part.ready.drain(..).map(|b| (b, error.clone())));
                        part.unrouted_since = None;
                    } else {
                        drained.unrouted.push((topic_name.clone(), index as u32));
                        wake(give_up, &mut drained.next_wake);
                    }
                    continue;
                };
                part.unrouted_since = None;
                if part.in_flight > 0 && part.in_flight_broker != Some(broker) {
                    // The leader moved: what went to the old one answers first.
                    continue;
                }
                let mut round = 0;
                while budget > 0 && part.in_flight < self.config.max_in_flight {
                    let Some(mut batch) = part.ready.pop_front() else {
                        break;
                    };
                    if batch.stamp.is_none() {
                        match numbering {
                            Numbering::Off => {}
                            Numbering::Waiting => {
                                part.ready.push_front(batch);
                                break;
                            }
                            Numbering::Under(identity) => part.stamp(&mut batch, identity),
                        }
                    }
                    part.in_flight_broker = Some(broker);
                    batch.broker = broker;
                    part.in_flight += 1;
                    budget -= 1;
                    if drained.rounds.len() == round {
                        drained.rounds.push(Vec::new());
                    }
                    drained.rounds[round].push(batch);
                    round += 1;
                }
            }
        }
        if !expired.is_empty() {
            let mut released = 0;
            for (batch, _) in &expired {
                state.incomplete.remove(&batch.id);
                released += batch.reserved_bytes;
            }
            drop(guard);
            for (batch, error) in expired {
                tracing::debug!(topic = %batch.topic, partition = batch.partition, %error, "produce failed");
                batch.completion.complete(Err(error));
            }
            self.memory.add_permits(released);
        }
        drained
    }

    /// Records the outcome of one sent batch (each partition's outcomes in send order).
    ///
    /// The ordering rule: a batch that failed retriably is retried only if no later batch
    /// of its partition was appended meanwhile. So the partition pauses at the first
    /// failure; later in-flight batches answer; a later success means the earlier failures
    /// can no longer be retried without reordering, so they fail with their errors; once
    /// nothing is in flight, the batches still failed go back to the front of the queue,
    /// in order, after a backoff.
    pub(crate) fn complete(
        &self,
        mut batch: ProducerBatch,
        outcome: Result<BatchAck, ClientError>,
        now: Instant,
    ) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut done: Vec<(ProducerBatch, Result<BatchAck, ClientError>)> = Vec::new();
        let part = state
            .topics
            .get_mut(&*batch.topic)
            .and_then(|t| t.partitions.get_mut(batch.partition as usize))
            .expect("a batch's partition stays known");
        part.in_flight -= 1;
        if part.in_flight == 0 {
            part.in_flight_broker = None;
        }
        let poisoned = batch.stamp.is_some() && batch.stamp == part.poisoned;
        let mut fenced = None;
        match outcome {
            Ok(ack) => {
                done.extend(part.failed.drain(..).map(|(b, e)| (b, Err(e))));
                done.push((batch, Ok(ack)));
            }
            Err(error)
                if !poisoned && error.is_retriable() && batch.attempts < self.config.retries =>
            {
                batch.attempts += 1;
                tracing::debug!(
                    topic = %batch.topic, partition = batch.partition, attempt = batch.attempts,
                    error = %error, "produce failed; will retry"
                );
                part.failed.push((batch, error));
            }
            Err(error) => {
                if let Some(identity) = batch.stamp.filter(|_| !poisoned) {
                    // The batches numbered after it cannot be appended now: those not
                    // sent yet fail at once, those in flight when they answer; new
                    // batches are numbered under a new identity.
                    part.poisoned = Some(identity);
                    if state.identity == Some(identity) {
                        state.identity_wanted = true;
                    }
                    let context = format!(
                        "not sent: an earlier batch of {}/{} failed for good ({error}), and this one was numbered after it",
                        batch.topic, batch.partition
                    );
                    let (dead, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut part.ready)
                        .into_iter()
                        .partition(|b| b.stamp == Some(identity));
                    part.ready = kept;
                    done.extend(
                        dead.into_iter()
                            .map(|b| (b, Err(ClientError::FailedPrecondition(context.clone())))),
                    );
                }
                if matches!(error, ClientError::ProducerFenced(_)) && state.fenced.is_none() {
                    state.fenced = Some(error.clone());
                    fenced = Some(error.clone());
                }
                done.push((batch, Err(error)));
            }
        }
        if part.in_flight == 0 && !part.failed.is_empty() {
            let attempts = part
                .failed
                .iter()
                .map(|(b, _)| b.attempts)
                .max()
                .unwrap_or(1);
            part.failed_on = part.failed.first().map(|(b, _)| b.broker);
            for (batch, _) in part.failed.drain(..).rev() {
                part.ready.push_front(batch);
            }
            part.retry_at = Some(now + self.config.backoff(attempts));
        }
        let mut released = 0;
        for (batch, _) in &mut done {
            state.incomplete.remove(&batch.id);
            released += batch.reserved_bytes;
            self.recycle(&mut state.spare_buffers, &mut batch.payload);
        }
        drop(guard);
        for (batch, result) in done {
            if let Err(error) = &result {
                tracing::debug!(topic = %batch.topic, partition = batch.partition, error = %error, "produce failed");
            }
            batch.completion.complete(result);
        }
        self.memory.add_permits(released);
        if let Some(error) = fenced {
            // A newer instance of this producer took over: nothing more is sent.
            self.fail_unsent(&error);
        }
        // A retry may be due, or an in-flight slot freed.
        self.wake_sender.notify_one();
    }

    /// Keeps the buffer of a completed batch for a new one, if it is the size of a full
    /// batch and nothing else holds it (the request that carried it is long encoded).
    fn recycle(&self, spare: &mut Vec<Vec<u8>>, payload: &mut Payload) {
        if spare.len() >= MAX_SPARE_BUFFERS {
            return;
        }
        let Payload::Built(bytes) = std::mem::replace(payload, Payload::Built(Bytes::new())) else {
            return;
        };
        if let Ok(buf) = bytes.try_into_mut() {
            let buf = Vec::from(buf);
            let batch = self.config.batch_bytes;
            if (batch..=2 * batch).contains(&buf.capacity()) {
                spare.push(buf);
            }
        }
    }

    /// Whether new batches wait for a producer identity (idempotence).
    pub(crate) fn identity_wanted(&self) -> bool {
        let state = self.lock();
        state.identity_wanted && state.fenced.is_none()
    }

    /// The identity to number new batches under, from `InitProducerId`.
    pub(crate) fn set_identity(&self, identity: Identity) {
        let mut state = self.lock();
        state.identity = Some(identity);
        state.identity_wanted = false;
        drop(state);
        self.wake_sender.notify_one();
    }

    /// Getting an identity failed for good: every batch not sent fails, and so does
    /// every later send.
    pub(crate) fn fail_fatal(&self, error: ClientError) {
        self.lock().fenced = Some(error.clone());
        self.fail_unsent(&error);
    }

    /// Starts a flush: open batches are sent at once until [`end_flush`](Self::end_flush).
    /// Returns the completions of every batch not yet completed.
    pub(crate) fn begin_flush(&self) -> Vec<Arc<BatchCompletion>> {
        let mut state = self.lock();
        state.flushing += 1;
        let pending = state.incomplete.values().cloned().collect();
        drop(state);
        self.wake_sender.notify_one();
        pending
    }

    /// Ends a flush started with [`begin_flush`](Self::begin_flush).
    pub(crate) fn end_flush(&self) {
        self.lock().flushing -= 1;
    }

    /// Refuses further appends; what is buffered is still sent.
    pub(crate) fn close(&self) {
        self.lock().closing = true;
        self.wake_sender.notify_one();
    }

    /// Whether the producer is closing and nothing is left to send or await.
    pub(crate) fn is_finished(&self) -> bool {
        let state = self.lock();
        state.closing && state.incomplete.is_empty()
    }

    /// Fails every batch not yet sent or in flight (the sender is stopping for good).
    pub(crate) fn fail_unsent(&self, error: &ClientError) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut failed = Vec::new();
        for topic in state.topics.values_mut() {
            for part in &mut topic.partitions {
                failed.extend(part.open.take().map(|o| o.batch));
                failed.extend(part.ready.drain(..));
                failed.extend(part.failed.drain(..).map(|(b, _)| b));
            }
        }
        let mut released = 0;
        for batch in &failed {
            state.incomplete.remove(&batch.id);
            released += batch.reserved_bytes;
        }
        drop(guard);
        for batch in failed {
            batch.completion.complete(Err(error.clone()));
        }
        self.memory.add_permits(released);
    }
}

/// An upper bound on the bytes a record of these parts takes in a batch.
fn parts_bytes(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    let len = |b: Option<&[u8]>| b.map_or(0, <[u8]>::len);
    RECORD_OVERHEAD_BYTES
        + len(key)
        + len(value)
        + headers
            .iter()
            .map(|h| HEADER_OVERHEAD_BYTES + h.key.len() + len(h.value.as_deref()))
            .sum::<usize>()
}

/// How [`Accumulator::drain`] numbers batches sent for the first time.
#[derive(Debug, Clone, Copy)]
enum Numbering {
    /// Not idempotent.
    Off,
    Under(Identity),
    /// No identity yet (or a new one is wanted): unnumbered batches wait.
    Waiting,
}

impl PartitionState {
    /// Numbers `batch` under `identity` with this partition's next sequence (from 0 for
    /// a new identity); sequences wrap past `i32::MAX` as Kafka's.
    fn stamp(&mut self, batch: &mut ProducerBatch, identity: Identity) {
        if self.sequence_of != Some(identity) {
            self.sequence_of = Some(identity);
            self.next_sequence = 0;
        }
        let first = self.next_sequence;
        if let Payload::Open(builder) = &mut batch.payload {
            builder.set_producer(identity.producer_id, identity.epoch, first);
        }
        let next = (i64::from(first) + i64::from(batch.record_count)) % (i64::from(i32::MAX) + 1);
        self.next_sequence = next as i32;
        batch.stamp = Some(identity);
    }
}

impl OpenBatch {
    fn estimated_size(&self) -> usize {
        match &self.batch.payload {
            Payload::Open(builder) => builder.estimated_size(),
            Payload::Built(bytes) => bytes.len(),
        }
    }
}

impl ProducerBatch {
    fn is_empty(&self) -> bool {
        self.record_count == 0
    }
}

#[cfg(test)]
mod tests;
