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
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::producer::config::ProducerConfig;

    const TOPIC: &str = "t";

    fn config() -> ProducerConfig {
        ProducerConfig {
            linger: Duration::from_millis(10),
            batch_bytes: 1024,
            buffer_memory: 1024 * 1024,
            max_in_flight: 2,
            retries: 3,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            // The tests below that are about idempotence turn it on.
            idempotence: false,
            ..ProducerConfig::default()
        }
    }

    fn idempotent() -> ProducerConfig {
        ProducerConfig {
            linger: Duration::ZERO,
            batch_bytes: 200,
            idempotence: true,
            ..config()
        }
    }

    /// The (producer id, epoch, first sequence) a batch carries to the broker.
    fn numbered(batch: &mut ProducerBatch) -> (i64, i16, i32) {
        let bytes = batch.encode().unwrap();
        let h = weir_batch::BatchHeader::parse(&bytes);
        (h.producer_id, h.producer_epoch, h.base_sequence)
    }

    const ID: Identity = Identity {
        producer_id: 42,
        epoch: 0,
    };

    fn accumulator(config: ProducerConfig, partitions: u32, now: Instant) -> Accumulator {
        let acc = Accumulator::new(config);
        acc.set_partitions(TOPIC, partitions, now);
        acc
    }

    fn record(key: Option<&str>, value: &str) -> Record {
        Record {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![],
            timestamp: 1_700_000_000_000,
        }
    }

    async fn append(
        acc: &Accumulator,
        partition: Option<u32>,
        record: &Record,
        now: Instant,
    ) -> Appended {
        let bytes = Accumulator::record_bytes(record);
        acc.reserve(bytes).await.unwrap();
        acc.append(TOPIC, partition, record, bytes, now)
            .expect("appended")
    }

    /// Every partition led by broker 0.
    fn one_leader(_: &str, _: u32) -> Option<BrokerId> {
        Some(0)
    }

    fn sent(drained: Drained) -> Vec<ProducerBatch> {
        drained.rounds.into_iter().flatten().collect()
    }

    /// The values in a batch, decoded from the bytes the broker would get.
    fn values(batch: &mut ProducerBatch) -> Vec<String> {
        let bytes = batch.encode().unwrap();
        weir_batch::decode_records(&bytes)
            .unwrap()
            .into_iter()
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect()
    }

    fn ack(base_offset: i64) -> Result<BatchAck, ClientError> {
        Ok(BatchAck {
            base_offset,
            log_append_time_ms: -1,
        })
    }

    #[tokio::test]
    async fn idempotent_batches_wait_for_an_identity_and_are_numbered_per_partition() {
        let t0 = Instant::now();
        let acc = accumulator(idempotent(), 2, t0);
        append(&acc, Some(0), &record(None, "a"), t0).await;
        assert!(acc.identity_wanted());
        assert!(
            sent(acc.drain(t0, 100, &one_leader)).is_empty(),
            "no identity yet"
        );
        acc.set_identity(ID);
        assert!(!acc.identity_wanted());
        append(&acc, Some(0), &record(None, "b"), t0).await;
        append(&acc, Some(1), &record(None, "c"), t0).await;
        let mut batches = sent(acc.drain(t0, 100, &one_leader));
        let mut numbers: Vec<_> = batches
            .iter_mut()
            .map(|b| (b.partition, numbered(b)))
            .collect();
        numbers.sort();
        // "a" (closed while waiting) and "b" in partition 0, "c" alone in partition 1.
        assert_eq!(numbers, [(0, (42, 0, 0)), (0, (42, 0, 1)), (1, (42, 0, 0))]);
        for b in batches {
            acc.complete(b, ack(0), t0);
        }
        append(&acc, Some(0), &record(None, "d"), t0).await;
        let mut next = sent(acc.drain(t0, 100, &one_leader));
        assert_eq!(numbered(&mut next[0]), (42, 0, 2), "after a and b");
        // A retry keeps its number.
        acc.complete(
            next.pop().unwrap(),
            Err(ClientError::Unavailable("x".into())),
            t0,
        );
        let mut retried = sent(acc.drain(t0 + Duration::from_secs(1), 100, &one_leader));
        assert_eq!(numbered(&mut retried[0]), (42, 0, 2));
    }

    #[tokio::test]
    async fn a_numbered_batch_that_fails_for_good_fails_those_after_it_and_renumbers() {
        let t0 = Instant::now();
        let acc = accumulator(idempotent(), 1, t0);
        acc.set_identity(ID);
        for v in ["a", "b", "c"] {
            append(&acc, Some(0), &record(None, &v.repeat(150)), t0).await;
        }
        // Two in flight (max_in_flight 2), the third numbered only when it is sent.
        let mut batches = sent(acc.drain(t0, 100, &one_leader));
        assert_eq!(batches.len(), 2);
        let second = batches.pop().unwrap();
        let first = batches.pop().unwrap();
        let bad = ClientError::InvalidArgument("too large".into());
        acc.complete(first, Err(bad), t0);
        assert!(acc.identity_wanted(), "new batches need a new identity");
        // The second was numbered after the failed one: it fails instead of retrying.
        let second_done = second.completion.clone();
        acc.complete(
            second,
            Err(ClientError::OutOfOrderSequence("gap".into())),
            t0,
        );
        assert!(matches!(
            second_done.result(),
            Some(Err(ClientError::OutOfOrderSequence(_)))
        ));
        // The third was never numbered: it waits for the new identity and starts at 0.
        assert!(sent(acc.drain(t0, 100, &one_leader)).is_empty());
        acc.set_identity(Identity {
            producer_id: 43,
            epoch: 0,
        });
        let mut third = sent(acc.drain(t0, 100, &one_leader));
        assert_eq!(values(&mut third[0]), ["c".repeat(150)]);
        assert_eq!(numbered(&mut third[0]), (43, 0, 0));
    }

    #[tokio::test]
    async fn a_fenced_producer_fails_what_is_left_and_every_later_send() {
        let t0 = Instant::now();
        let acc = accumulator(idempotent(), 1, t0);
        acc.set_identity(ID);
        append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
        append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
        let mut batches = sent(acc.drain(t0, 1, &one_leader));
        let waiting = append(&acc, Some(0), &record(None, "c"), t0).await;
        acc.complete(
            batches.pop().unwrap(),
            Err(ClientError::ProducerFenced("newer instance".into())),
            t0,
        );
        assert!(matches!(
            waiting.completion.result(),
            Some(Err(ClientError::ProducerFenced(_)))
        ));
        let r = record(None, "d");
        let bytes = Accumulator::record_bytes(&r);
        acc.reserve(bytes).await.unwrap();
        assert!(matches!(
            acc.append(TOPIC, Some(0), &r, bytes, t0),
            Err(AppendError::Failed(ClientError::ProducerFenced(_)))
        ));
        assert!(!acc.identity_wanted(), "a fenced producer asks for nothing");
    }

    #[tokio::test]
    async fn linger_holds_a_batch_until_it_runs_out() {
        let t0 = Instant::now();
        let acc = accumulator(config(), 1, t0);
        append(&acc, Some(0), &record(None, "a"), t0).await;
        append(&acc, Some(0), &record(None, "b"), t0).await;
        let drained = acc.drain(t0 + Duration::from_millis(9), 100, &one_leader);
        assert!(drained.rounds.is_empty());
        assert_eq!(drained.next_wake, Some(t0 + Duration::from_millis(10)));
        let mut batches = sent(acc.drain(t0 + Duration::from_millis(10), 100, &one_leader));
        assert_eq!(batches.len(), 1);
        assert_eq!(values(&mut batches[0]), ["a", "b"]);
    }

    #[tokio::test]
    async fn send_when_idle_sends_at_once_and_batches_while_a_request_is_in_flight() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::from_secs(3600),
            send_when_idle: true,
            ..config()
        };
        let acc = accumulator(config, 1, t0);
        append(&acc, Some(0), &record(None, "a"), t0).await;
        let mut first = sent(acc.drain(t0, 100, &one_leader));
        assert_eq!(first.len(), 1, "an idle partition sends at once");
        assert_eq!(values(&mut first[0]), ["a"]);
        append(&acc, Some(0), &record(None, "b"), t0).await;
        append(&acc, Some(0), &record(None, "c"), t0).await;
        let held = acc.drain(t0, 100, &one_leader);
        assert!(
            held.rounds.is_empty(),
            "a request is in flight: records wait"
        );
        acc.complete(first.pop().unwrap(), ack(0), t0);
        let mut second = sent(acc.drain(t0, 100, &one_leader));
        assert_eq!(second.len(), 1);
        assert_eq!(values(&mut second[0]), ["b", "c"]);
    }

    #[tokio::test]
    async fn a_full_batch_is_sent_without_lingering_and_stays_within_batch_bytes() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::from_secs(3600),
            ..config()
        };
        let acc = accumulator(config, 1, t0);
        let value = "v".repeat(100);
        for _ in 0..20 {
            append(&acc, Some(0), &record(None, &value), t0).await;
        }
        let mut batches = sent(acc.drain(t0, 100, &one_leader));
        assert!(!batches.is_empty(), "a full batch is ready at once");
        for batch in &mut batches {
            let bytes = batch.encode().unwrap();
            assert!(bytes.len() <= 1024, "batch of {} bytes", bytes.len());
            assert!(batch.record_count > 1);
        }
    }

    #[tokio::test]
    async fn a_partition_has_at_most_max_in_flight_batches_sent_in_order() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            batch_bytes: 200,
            ..config()
        };
        let acc = accumulator(config, 1, t0);
        // 150-byte values: one record per batch.
        let values_sent: Vec<String> = (0..5).map(|i| format!("{i}{}", "x".repeat(149))).collect();
        for v in &values_sent {
            append(&acc, Some(0), &record(None, v), t0).await;
        }
        let mut first = sent(acc.drain(t0, 100, &one_leader));
        assert_eq!(first.len(), 2, "max_in_flight is 2");
        assert_eq!(values(&mut first[0]), [values_sent[0].clone()]);
        assert_eq!(values(&mut first[1]), [values_sent[1].clone()]);
        assert!(
            sent(acc.drain(t0, 100, &one_leader)).is_empty(),
            "nothing while 2 are in flight"
        );
        let second_batch = first.pop().unwrap();
        acc.complete(first.pop().unwrap(), ack(0), t0);
        let mut next = sent(acc.drain(t0, 100, &one_leader));
        assert_eq!(next.len(), 1);
        assert_eq!(values(&mut next[0]), [values_sent[2].clone()]);
        acc.complete(second_batch, ack(1), t0);
        acc.complete(next.pop().unwrap(), ack(2), t0);
        let mut rest = sent(acc.drain(t0, 100, &one_leader));
        let rest_values: Vec<Vec<String>> = rest.iter_mut().map(values).collect();
        assert_eq!(
            rest_values,
            [vec![values_sent[3].clone()], vec![values_sent[4].clone()]]
        );
    }

    #[tokio::test]
    async fn a_delivery_carries_the_batch_offset_plus_the_record_index() {
        let t0 = Instant::now();
        let acc = accumulator(config(), 1, t0);
        let a = append(&acc, Some(0), &record(None, "a"), t0).await;
        let b = append(&acc, Some(0), &record(None, "b"), t0).await;
        assert_eq!((a.index, b.index), (0, 1));
        let batch = sent(acc.drain(t0 + Duration::from_secs(1), 100, &one_leader))
            .pop()
            .unwrap();
        acc.complete(batch, ack(41), t0);
        assert_eq!(
            b.completion.result().unwrap().as_ref().unwrap().base_offset,
            41
        );
        assert!(acc.begin_flush().is_empty(), "nothing left incomplete");
        acc.end_flush();
    }

    #[tokio::test]
    async fn retriable_failures_are_retried_after_a_backoff_in_order() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            batch_bytes: 200,
            ..config()
        };
        let acc = accumulator(config, 1, t0);
        let a = append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
        append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
        let mut batches = sent(acc.drain(t0, 100, &one_leader));
        let second = batches.pop().unwrap();
        let first = batches.pop().unwrap();
        let unavailable = || Err(ClientError::Unavailable("down".to_owned()));
        acc.complete(first, unavailable(), t0);
        // The partition pauses: nothing new is sent while the failed batch waits.
        append(&acc, Some(0), &record(None, &"c".repeat(150)), t0).await;
        assert!(sent(acc.drain(t0, 100, &one_leader)).is_empty());
        acc.complete(second, unavailable(), t0);
        assert!(
            a.completion.result().is_none(),
            "not failed: it will be retried"
        );
        let drained = acc.drain(t0 + Duration::from_millis(99), 100, &one_leader);
        assert!(drained.rounds.is_empty(), "backing off");
        assert_eq!(drained.next_wake, Some(t0 + Duration::from_millis(100)));
        let mut retried = sent(acc.drain(t0 + Duration::from_millis(100), 100, &one_leader));
        let firsts: Vec<char> = retried
            .iter_mut()
            .map(|b| values(b)[0].chars().next().unwrap())
            .collect();
        assert_eq!(
            firsts,
            ['a', 'b'],
            "retried in the original order, before c"
        );
        assert_eq!(retried[0].attempts, 1);
    }

    #[tokio::test]
    async fn a_failure_followed_by_a_later_success_is_reported_not_retried() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            batch_bytes: 200,
            ..config()
        };
        let acc = accumulator(config, 1, t0);
        let a = append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
        let b = append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
        let mut batches = sent(acc.drain(t0, 100, &one_leader));
        let second = batches.pop().unwrap();
        acc.complete(
            batches.pop().unwrap(),
            Err(ClientError::ResourceExhausted("busy".to_owned())),
            t0,
        );
        acc.complete(second, ack(7), t0);
        // Retrying `a` now would put it after `b`: it fails instead.
        assert!(matches!(
            a.completion.result(),
            Some(Err(ClientError::ResourceExhausted(_)))
        ));
        assert!(b.completion.result().unwrap().is_ok());
        assert!(sent(acc.drain(t0 + Duration::from_secs(10), 100, &one_leader)).is_empty());
    }

    #[tokio::test]
    async fn fatal_errors_and_exhausted_retries_fail_the_batch() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            retries: 1,
            ..config()
        };
        let acc = accumulator(config, 2, t0);
        let fatal = append(&acc, Some(0), &record(None, "a"), t0).await;
        let retried = append(&acc, Some(1), &record(None, "b"), t0).await;
        let mut batches = sent(acc.drain(t0, 100, &one_leader));
        batches.sort_by_key(|b| b.partition);
        let p1 = batches.pop().unwrap();
        acc.complete(
            batches.pop().unwrap(),
            Err(ClientError::InvalidArgument("bad".to_owned())),
            t0,
        );
        assert!(matches!(
            fatal.completion.result(),
            Some(Err(ClientError::InvalidArgument(_)))
        ));
        acc.complete(p1, Err(ClientError::Unavailable("down".to_owned())), t0);
        let again = sent(acc.drain(t0 + Duration::from_secs(1), 100, &one_leader))
            .pop()
            .unwrap();
        assert_eq!(again.attempts, 1);
        acc.complete(
            again,
            Err(ClientError::Unavailable("still down".to_owned())),
            t0,
        );
        assert!(matches!(
            retried.completion.result(),
            Some(Err(ClientError::Unavailable(m))) if m == "still down"
        ));
    }

    #[tokio::test]
    async fn send_waits_while_buffer_memory_is_used_up() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            buffer_memory: 1000,
            batch_bytes: 1000,
            ..config()
        };
        let acc = Arc::new(accumulator(config, 1, t0));
        let big = record(None, &"x".repeat(600));
        append(&acc, Some(0), &big, t0).await;
        let bytes = Accumulator::record_bytes(&big);
        let waiting = {
            let acc = acc.clone();
            tokio::spawn(async move { acc.reserve(bytes).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "blocked while memory is used up");
        let batch = sent(acc.drain(t0, 100, &one_leader)).pop().unwrap();
        acc.complete(batch, ack(0), t0);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released by the completion")
            .unwrap()
            .unwrap();
        assert!(matches!(
            acc.reserve(1001).await,
            Err(ClientError::InvalidArgument(_))
        ));
    }

    #[tokio::test]
    async fn unkeyed_records_stick_to_a_partition_until_its_batch_closes() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::from_secs(3600),
            batch_bytes: 1024,
            ..config()
        };
        let acc = accumulator(config, 8, t0);
        let value = "v".repeat(100);
        let first = append(&acc, None, &record(None, &value), t0).await;
        let sticky = first.completion.partition;
        let mut partition = sticky;
        let mut count = 1;
        while partition == sticky {
            let appended = append(&acc, None, &record(None, &value), t0).await;
            partition = appended.completion.partition;
            count += 1;
            assert!(count < 20, "never moved");
        }
        // Eight 136-byte reservations fill a 1 KiB batch; the ninth closes it, and the
        // record after that moves on.
        assert!(count > 5, "moved after {count} records");
        assert_eq!(
            sent(acc.drain(t0, 100, &one_leader)).len(),
            1,
            "the closed batch is ready"
        );
    }

    #[tokio::test]
    async fn keyed_records_follow_kafkas_partitioner() {
        let t0 = Instant::now();
        let acc = accumulator(config(), 10, t0);
        for key in ["21", "foobar", "abc", "user-1"] {
            let appended = append(&acc, None, &record(Some(key), "v"), t0).await;
            assert_eq!(
                appended.completion.partition,
                partition_for_key(key.as_bytes(), 10)
            );
        }
    }

    #[tokio::test]
    async fn batches_go_to_their_partitions_leader() {
        let t0 = Instant::now();
        let acc = accumulator(
            ProducerConfig {
                linger: Duration::ZERO,
                ..config()
            },
            3,
            t0,
        );
        for partition in 0..3 {
            append(&acc, Some(partition), &record(None, "v"), t0).await;
        }
        let leaders = |_: &str, partition: u32| Some(10 + partition as BrokerId);
        let mut batches = sent(acc.drain(t0, 100, &leaders));
        batches.sort_by_key(|b| b.partition);
        let routed: Vec<(u32, BrokerId)> =
            batches.iter().map(|b| (b.partition, b.broker)).collect();
        assert_eq!(routed, [(0, 10), (1, 11), (2, 12)]);
    }

    #[tokio::test]
    async fn a_moved_leader_gets_new_batches_only_once_the_old_one_answered() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            batch_bytes: 200,
            ..config()
        };
        let acc = accumulator(config, 1, t0);
        append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
        let mut first = sent(acc.drain(t0, 100, &|_, _| Some(1)));
        assert_eq!(first[0].broker, 1);
        append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
        // Leadership moved to broker 2 while `a` is in flight to broker 1.
        let to_two = |_: &str, _: u32| Some(2);
        assert!(
            sent(acc.drain(t0, 100, &to_two)).is_empty(),
            "b waits: two brokers never hold one partition's batches in flight"
        );
        acc.complete(first.pop().unwrap(), ack(0), t0);
        let mut second = sent(acc.drain(t0, 100, &to_two));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].broker, 2);
        assert_eq!(values(&mut second[0]), ["b".repeat(150)]);
    }

    #[tokio::test]
    async fn not_leader_failures_are_retried_in_order_on_the_new_leader() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            batch_bytes: 200,
            ..config()
        };
        let acc = accumulator(config, 1, t0);
        let a = append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
        append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
        let mut batches = sent(acc.drain(t0, 100, &|_, _| Some(1)));
        let second = batches.pop().unwrap();
        let first = batches.pop().unwrap();
        let not_leader = || {
            Err(ClientError::NotLeader {
                message: "this broker does not lead t/0; broker 2 does".to_owned(),
                leader: Some(2),
            })
        };
        acc.complete(first, not_leader(), t0);
        append(&acc, Some(0), &record(None, &"c".repeat(150)), t0).await;
        acc.complete(second, not_leader(), t0);
        assert!(
            a.completion.result().is_none(),
            "not failed: it will be retried"
        );
        let later = t0 + Duration::from_millis(100);
        let mut retried = sent(acc.drain(later, 100, &|_, _| Some(2)));
        let order: Vec<(char, BrokerId)> = retried
            .iter_mut()
            .map(|b| (values(b)[0].chars().next().unwrap(), b.broker))
            .collect();
        assert_eq!(
            order,
            [('a', 2), ('b', 2)],
            "in the original order, before c"
        );
    }

    #[tokio::test]
    async fn a_retry_skips_the_backoff_once_the_metadata_names_another_leader() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            batch_bytes: 200,
            retry_backoff: Duration::from_secs(1),
            ..config()
        };
        let acc = accumulator(config, 1, t0);
        let a = append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
        let mut batches = sent(acc.drain(t0, 100, &|_, _| Some(1)));
        let first = batches.pop().unwrap();
        acc.complete(
            first,
            Err(ClientError::Unavailable("broker 1 is gone".to_owned())),
            t0,
        );
        append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
        // Still led by the broker that failed: wait out the backoff, asking for metadata.
        let soon = t0 + Duration::from_millis(10);
        let drained = acc.drain(soon, 100, &|_, _| Some(1));
        assert!(drained.rounds.is_empty(), "backing off");
        assert_eq!(drained.waiting_on_failed, [Arc::from(TOPIC)]);
        assert!(a.completion.result().is_none());
        // A new leader is known: the retry goes now, first, then what followed.
        let mut retried = sent(acc.drain(soon, 100, &|_, _| Some(2)));
        let order: Vec<(char, BrokerId)> = retried
            .iter_mut()
            .map(|b| (values(b)[0].chars().next().unwrap(), b.broker))
            .collect();
        assert_eq!(order, [('a', 2), ('b', 2)]);
    }

    #[tokio::test]
    async fn a_partition_without_a_leader_waits_then_fails_after_request_timeout() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            request_timeout: Duration::from_secs(2),
            ..config()
        };
        let acc = accumulator(config, 2, t0);
        let waiting = append(&acc, Some(0), &record(None, "a"), t0).await;
        let routed = append(&acc, Some(1), &record(None, "b"), t0).await;
        let leaderless = |_: &str, partition: u32| (partition == 1).then_some(1);
        let drained = acc.drain(t0, 100, &leaderless);
        assert_eq!(
            drained.unrouted,
            [(Arc::from(TOPIC), 0)],
            "metadata is asked for"
        );
        assert_eq!(drained.next_wake, Some(t0 + Duration::from_secs(2)));
        let other = drained.rounds.into_iter().flatten().next().unwrap();
        acc.complete(other, ack(0), t0);
        assert!(routed.completion.result().unwrap().is_ok());
        // A leader shows up in time: the batch goes.
        let mut found = sent(acc.drain(t0 + Duration::from_secs(1), 100, &one_leader));
        assert_eq!(found.len(), 1);
        acc.complete(found.pop().unwrap(), ack(0), t0);
        assert!(waiting.completion.result().unwrap().is_ok());
        // One that never shows up: the batch fails after request_timeout.
        let lost = append(&acc, Some(0), &record(None, "c"), t0).await;
        let none = |_: &str, _: u32| None;
        let t1 = t0 + Duration::from_secs(10);
        assert!(acc.drain(t1, 100, &none).rounds.is_empty());
        assert!(lost.completion.result().is_none());
        let drained = acc.drain(t1 + Duration::from_secs(2), 100, &none);
        assert!(drained.rounds.is_empty() && drained.unrouted.is_empty());
        assert!(matches!(
            lost.completion.result(),
            Some(Err(ClientError::Unavailable(m))) if m.contains("no leader")
        ));
        assert!(acc.begin_flush().is_empty(), "nothing left incomplete");
        acc.end_flush();
    }

    #[tokio::test]
    async fn unknown_or_stale_topics_and_missing_partitions_ask_for_metadata() {
        let t0 = Instant::now();
        let acc = accumulator(config(), 2, t0);
        let r = record(None, "v");
        assert!(matches!(
            acc.append("other", None, &r, 0, t0),
            Err(AppendError::NeedMetadata)
        ));
        assert!(matches!(
            acc.append(TOPIC, Some(2), &r, 0, t0),
            Err(AppendError::NeedMetadata)
        ));
        assert!(matches!(
            acc.append(TOPIC, None, &r, 0, t0 + METADATA_MAX_AGE),
            Err(AppendError::NeedMetadata)
        ));
        acc.invalidate(TOPIC);
        assert!(matches!(
            acc.append(TOPIC, None, &r, 0, Instant::now()),
            Err(AppendError::NeedMetadata)
        ));
    }

    // ---- send_all (append_many) ----

    use crate::producer::batch::{BatchDelivery, DeliveredRecords, RecordRef};
    use proptest::prelude::*;

    const CLOCK_MS: i64 = 1_700_000_000_000;

    /// What `Producer::send_all` does with the accumulator, without the metadata refresh.
    async fn append_all<'r>(
        acc: &Accumulator,
        partition: Option<u32>,
        records: impl IntoIterator<Item = RecordRef<'r>>,
        now: Instant,
    ) -> Result<BatchDelivery, ClientError> {
        let mut records = records.into_iter();
        let mut call = AppendCall::default();
        let failure = loop {
            match acc.append_many(TOPIC, partition, &mut records, &mut call, now, CLOCK_MS) {
                AppendStep::Done => break None,
                AppendStep::Yield => {}
                AppendStep::NeedMemory(bytes) => {
                    acc.unreserve(std::mem::take(&mut call.credit));
                    acc.reserve(bytes).await?;
                    call.credit = bytes;
                }
                AppendStep::NeedMetadata => panic!("the topic is known"),
                AppendStep::Failed(error) => break Some(error),
            }
        };
        acc.unreserve(call.credit);
        if call.accepted == 0
            && let Some(error) = failure
        {
            return Err(error);
        }
        Ok(BatchDelivery::new(
            TOPIC.into(),
            call.segments,
            call.accepted,
            failure,
        ))
    }

    /// Sends and acknowledges every batch there is, in order, numbering offsets per
    /// partition from `next`; returns the batches' (partition, decoded records).
    fn ack_everything(
        acc: &Accumulator,
        next: &mut HashMap<u32, i64>,
        now: Instant,
    ) -> Vec<(u32, Vec<weir_batch::DecodedRecord>)> {
        let mut out = Vec::new();
        loop {
            let batches = sent(acc.drain(now + Duration::from_secs(3600), 1000, &one_leader));
            if batches.is_empty() {
                return out;
            }
            for mut batch in batches {
                let bytes = batch.encode().unwrap();
                let records = weir_batch::decode_records(&bytes).unwrap();
                let base = next.entry(batch.partition).or_insert(0);
                let offset = *base;
                *base += i64::from(batch.record_count);
                out.push((batch.partition, records));
                acc.complete(batch, ack(offset), now);
            }
        }
    }

    fn hundred_bytes(i: usize) -> Vec<u8> {
        format!("{i:0100}").into_bytes()
    }

    #[tokio::test]
    async fn send_all_spans_batches_in_order_and_resolves_to_the_offsets() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            batch_bytes: 1024,
            ..config()
        };
        let acc = accumulator(config, 1, t0);
        let values: Vec<Vec<u8>> = (0..50).map(hundred_bytes).collect();
        // Something before, from `send`, so the call's offsets do not start at 0.
        append(&acc, Some(0), &record(None, "before"), t0).await;
        let delivery = append_all(&acc, Some(0), values.iter().map(|v| RecordRef::new(v)), t0)
            .await
            .unwrap();
        assert_eq!(delivery.record_count(), 50);
        assert!(delivery.try_result().is_none(), "nothing acknowledged yet");
        let mut next = HashMap::new();
        let batches = ack_everything(&acc, &mut next, t0);
        assert!(
            batches.len() > 5,
            "50 records of 100 B span batches of 1 KiB"
        );
        let got: Vec<Vec<u8>> = batches
            .iter()
            .flat_map(|(_, records)| records.iter().map(|r| r.value.clone().unwrap().to_vec()))
            .collect();
        assert_eq!(got[0], b"before");
        assert_eq!(got[1..], values[..], "every record, in order");
        let DeliveredRecords { topic, ranges } = delivery.try_result().unwrap().unwrap();
        assert_eq!(&*topic, TOPIC);
        assert_eq!(ranges.len(), batches.len(), "one range per batch");
        let offsets: Vec<i64> = ranges.iter().flat_map(|r| r.offsets()).collect();
        assert_eq!(offsets, (1..51).collect::<Vec<i64>>());
        assert!(ranges.iter().all(|r| r.partition == 0));
        // Every byte reserved came back.
        assert_eq!(acc.memory.available_permits(), acc.config.buffer_memory);
    }

    #[tokio::test]
    async fn send_all_waits_while_buffer_memory_is_used_up() {
        static VALUE: [u8; 100] = [7; 100];
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            buffer_memory: 1000,
            batch_bytes: 1000,
            ..config()
        };
        let acc = Arc::new(accumulator(config, 1, t0));
        // 20 records reserve 20 x 136 bytes: more than buffer_memory.
        let call = {
            let acc = acc.clone();
            tokio::spawn(async move {
                let records = std::iter::repeat_n(RecordRef::new(&VALUE), 20);
                append_all(&acc, Some(0), records, t0).await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!call.is_finished(), "blocked while memory is used up");
        let appended = |batches: &[(u32, Vec<weir_batch::DecodedRecord>)]| {
            batches.iter().map(|(_, r)| r.len()).sum::<usize>()
        };
        let mut next = HashMap::new();
        let mut delivered = 0;
        let mut rounds = 0;
        while !call.is_finished() || delivered < 20 {
            let batches = ack_everything(&acc, &mut next, t0);
            delivered += appended(&batches);
            assert!(
                acc.config.buffer_memory - acc.memory.available_permits() <= 1000,
                "never more than buffer_memory reserved"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            rounds += 1;
            assert!(rounds < 1000, "stuck at {delivered} records");
        }
        assert_eq!(delivered, 20);
        let delivery = call.await.unwrap().unwrap();
        let offsets: Vec<i64> = delivery
            .try_result()
            .unwrap()
            .unwrap()
            .ranges
            .iter()
            .flat_map(|r| r.offsets())
            .collect();
        assert_eq!(offsets, (0..20).collect::<Vec<i64>>());
        assert_eq!(acc.memory.available_permits(), 1000);
    }

    #[tokio::test]
    async fn an_oversized_record_fails_the_call_or_stops_it_cleanly() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            buffer_memory: 4096,
            batch_bytes: 1024,
            ..config()
        };
        let acc = accumulator(config, 1, t0);
        let huge = vec![0u8; 5000];
        let small = hundred_bytes(1);
        // First: nothing is sent, the call fails.
        let first = append_all(
            &acc,
            Some(0),
            [RecordRef::new(&huge), RecordRef::new(&small)],
            t0,
        )
        .await;
        assert!(matches!(first, Err(ClientError::InvalidArgument(_))));
        assert!(sent(acc.drain(t0, 100, &one_leader)).is_empty());
        assert_eq!(acc.memory.available_permits(), 4096);
        // Later: the records before it are sent, it and those after it are not.
        let records = [
            RecordRef::new(&small),
            RecordRef::new(&small),
            RecordRef::new(&huge),
            RecordRef::new(&small),
        ];
        let delivery = append_all(&acc, Some(0), records, t0).await.unwrap();
        assert_eq!(delivery.record_count(), 2);
        assert!(matches!(
            delivery.rejected(),
            Some(ClientError::InvalidArgument(_))
        ));
        let batches = ack_everything(&acc, &mut HashMap::new(), t0);
        assert_eq!(batches.iter().map(|(_, r)| r.len()).sum::<usize>(), 2);
        assert!(matches!(
            delivery.try_result(),
            Some(Err(ClientError::InvalidArgument(_)))
        ));
        assert_eq!(acc.memory.available_permits(), 4096);
        // A record larger than a batch but within buffer_memory goes alone, as with send.
        let big = vec![1u8; 2000];
        let delivery = append_all(
            &acc,
            Some(0),
            [RecordRef::new(&small), RecordRef::new(&big)],
            t0,
        )
        .await
        .unwrap();
        let batches = ack_everything(&acc, &mut HashMap::new(), t0);
        let sizes: Vec<usize> = batches.iter().map(|(_, r)| r.len()).collect();
        assert_eq!(sizes, [1, 1]);
        assert_eq!(delivery.try_result().unwrap().unwrap().record_count(), 2);
    }

    #[tokio::test]
    async fn keyed_records_of_one_call_land_where_send_puts_them() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            ..config()
        };
        let acc = accumulator(config, 10, t0);
        let keys: Vec<String> = (0..200).map(|i| format!("user-{}", i % 37)).collect();
        let values: Vec<String> = (0..200).map(|i| i.to_string()).collect();
        let records = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| RecordRef::new(v.as_bytes()).key(k.as_bytes()));
        let delivery = append_all(&acc, None, records, t0).await.unwrap();
        let batches = ack_everything(&acc, &mut HashMap::new(), t0);
        let mut last: HashMap<u32, usize> = HashMap::new();
        for (partition, records) in &batches {
            for r in records {
                let key = r.key.as_deref().unwrap();
                assert_eq!(*partition, partition_for_key(key, 10), "as send places it");
                let i: usize = std::str::from_utf8(r.value.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                if let Some(previous) = last.insert(*partition, i) {
                    assert!(previous < i, "the call's order within a partition");
                }
            }
        }
        let delivered = delivery.try_result().unwrap().unwrap();
        assert_eq!(delivered.record_count(), 200);
        // One range per partition that got records (each partition's records are in one
        // batch here), the ranges' partitions in the order they first appear.
        let mut partitions: Vec<u32> = delivered.ranges.iter().map(|r| r.partition).collect();
        let first_seen: Vec<u32> = {
            let mut seen = Vec::new();
            for k in &keys {
                let p = partition_for_key(k.as_bytes(), 10);
                if !seen.contains(&p) {
                    seen.push(p);
                }
            }
            seen
        };
        assert_eq!(partitions, first_seen);
        partitions.dedup();
        assert_eq!(partitions.len(), delivered.ranges.len());
        // And the same keys through `append` (what `send` does) go to the same places.
        for k in &keys[..37] {
            let appended = append(&acc, None, &record(Some(k), "v"), t0).await;
            assert_eq!(
                appended.completion.partition,
                partition_for_key(k.as_bytes(), 10)
            );
        }
    }

    #[tokio::test]
    async fn unkeyed_records_of_one_call_stick_to_a_partition_per_batch() {
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::from_secs(3600),
            batch_bytes: 1024,
            ..config()
        };
        let acc = accumulator(config, 2, t0);
        let value = hundred_bytes(0);
        let delivery = append_all(
            &acc,
            None,
            std::iter::repeat_n(RecordRef::new(&value), 40),
            t0,
        )
        .await
        .unwrap();
        let batches = ack_everything(&acc, &mut HashMap::new(), t0);
        // As with `send`: eight records fill a batch, the ninth closes it and goes to a
        // new batch of the same partition, and the sticky partition moves on after it.
        // Over two partitions: A 8, B 8, A' 1 + 7, B' 1 + 7, A'' 1 + 6, B'' 1.
        let mut sizes: Vec<usize> = batches.iter().map(|(_, r)| r.len()).collect();
        sizes.sort();
        assert_eq!(sizes, [1, 7, 8, 8, 8, 8]);
        assert_eq!(delivery.try_result().unwrap().unwrap().record_count(), 40);
    }

    /// A record for the proptest, owned.
    #[derive(Debug, Clone)]
    struct Owned {
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<weir_batch::Header>,
        timestamp: Option<i64>,
    }

    fn owned() -> impl Strategy<Value = Owned> {
        let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300));
        let header = ("\\PC{0,6}", bytes()).prop_map(|(key, value)| weir_batch::Header {
            key,
            value: value.map(Bytes::from),
        });
        (
            bytes(),
            bytes(),
            proptest::collection::vec(header, 0..3),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(key, value, headers, timestamp)| Owned {
                key,
                value,
                headers,
                timestamp,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_batches_of_a_call_decode_to_exactly_its_records(
            records in proptest::collection::vec(owned(), 0..120),
            partitions in 1u32..4,
            keyed_partitioning in any::<bool>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let t0 = Instant::now();
            let config = ProducerConfig {
                linger: Duration::ZERO,
                batch_bytes: 2048,
                ..config()
            };
            let acc = accumulator(config, partitions, t0);
            let views = records.iter().map(|r| RecordRef {
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: &r.headers,
                timestamp: r.timestamp,
            });
            let partition = (!keyed_partitioning).then_some(partitions - 1);
            let delivery = runtime.block_on(append_all(&acc, partition, views, t0));
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            };
            prop_assert_eq!(delivery.record_count(), records.len() as u64);
            let batches = ack_everything(&acc, &mut HashMap::new(), t0);
            // Each partition's records, in order, as decoded from its batches.
            let mut decoded: HashMap<u32, Vec<weir_batch::DecodedRecord>> = HashMap::new();
            for (p, rs) in batches {
                decoded.entry(p).or_default().extend(rs);
            }
            let mut expected: HashMap<u32, Vec<&Owned>> = HashMap::new();
            let mut sticky = None;
            for r in &records {
                let p = match (partition, &r.key) {
                    (Some(p), _) => p,
                    (None, Some(k)) => partition_for_key(k, partitions),
                    // Unkeyed records: whichever partition the batches say (the sticky
                    // choice is random); checked below as one sequence per partition.
                    (None, None) => *sticky.get_or_insert(u32::MAX),
                };
                expected.entry(p).or_default().push(r);
            }
            let unkeyed = expected.remove(&u32::MAX).unwrap_or_default();
            let mut unkeyed_got = Vec::new();
            for (p, got) in &decoded {
                let (keyed_got, rest): (Vec<_>, Vec<_>) =
                    got.iter().partition(|d| d.key.is_some() || partition.is_some());
                unkeyed_got.extend(rest.into_iter().map(|d| (*p, d)));
                let want = expected.get(p).map(Vec::as_slice).unwrap_or_default();
                prop_assert_eq!(keyed_got.len(), want.len());
                for (d, r) in keyed_got.iter().zip(want) {
                    prop_assert_eq!(d.key.as_deref(), r.key.as_deref());
                    prop_assert_eq!(d.value.as_deref(), r.value.as_deref());
                    prop_assert_eq!(&d.headers, &r.headers);
                    prop_assert_eq!(d.timestamp, r.timestamp.unwrap_or(CLOCK_MS));
                }
            }
            // Unkeyed records: as many as given, and each partition's in call order (a
            // subsequence of the call's unkeyed records).
            prop_assert_eq!(unkeyed_got.len(), unkeyed.len());
            for p in decoded.keys() {
                let mut want = unkeyed.iter();
                for (_, d) in unkeyed_got.iter().filter(|(q, _)| q == p) {
                    let found = want.any(|r| {
                        d.key.is_none()
                            && d.value.as_deref() == r.value.as_deref()
                            && d.headers == r.headers
                            && d.timestamp == r.timestamp.unwrap_or(CLOCK_MS)
                    });
                    prop_assert!(found, "partition {}: an unkeyed record out of order", p);
                }
            }
            let total: usize = decoded.values().map(Vec::len).sum();
            prop_assert_eq!(total, records.len());
            if let Ok(done) = delivery.try_result().unwrap() {
                prop_assert_eq!(done.record_count(), records.len() as u64);
            } else {
                prop_assert!(false, "every batch was acknowledged");
            }
        }
    }
}
