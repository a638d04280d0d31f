//! The transaction coordinator of one `__transaction_state` partition: requests and events
//! in, [`Command`]s out.
//!
//! Kafka's pending-state discipline, made explicit: a request that changes an id's state
//! yields `Command::Append` with the target's record and parks the target beside the id;
//! the id takes the target only when the shell calls [`TxnCoordinator::on_appended`] with
//! success (the record is replicated), and only then is the request answered. While a
//! target is parked, other changes to that id are refused with CONCURRENT_TRANSACTIONS.
//! After PrepareCommit/PrepareAbort applies, `Command::WriteMarkers` goes to the
//! transaction's partitions; when every partition's marker is reported written, the
//! coordinator appends CompleteCommit/CompleteAbort. A producer id comes from the shell
//! (`Command::AllocateProducerId`, answered by [`TxnCoordinator::on_producer_id`]). The
//! one exception to answering CONCURRENT_TRANSACTIONS at once: an AddPartitionsToTxn or
//! AddOffsetsToTxn that meets the producer's previous transaction still completing
//! waits for it, and its Ongoing record is the completion (`waiting.rs`).

use std::collections::{BTreeMap, BTreeSet};

use super::api::*;
use super::records::{RecordError, TxnLogRecord};
use super::state::{TxnMetadata, TxnState, epoch_exhausted};
use super::{
    CONSUMER_OFFSETS_TOPIC, MAX_TRANSACTIONAL_ID_BYTES, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    ProducerIdAndEpoch, TopicPartition, TxnError, TxnResult,
};

mod clock;
mod describe;
mod markers;
mod waiting;

pub use waiting::ADD_WAIT_MS;
use waiting::WaitingAdd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Loading,
    Active,
    Resigned,
}

/// What to do once a parked target is replicated.
#[derive(Debug, Clone)]
enum Then {
    ReplyInit(RequestId),
    ReplyAdd(RequestId),
    ReplyAddOffsets(RequestId),
    /// Prepare*: answer the EndTxn (if a client's) or the fencing InitProducerId with
    /// CONCURRENT_TRANSACTIONS, then write the markers.
    Ended {
        end_txn: Option<RequestId>,
        fencing_init: Option<RequestId>,
    },
    Completed,
    /// The completion written as the Ongoing record of the add that waited for it
    /// (`waiting.rs`): answer the add.
    CompletedAndAdded(WaitingAdd),
    Expired,
}

#[derive(Debug, Clone)]
enum Pending {
    Append {
        id: AppendId,
        target: Box<TxnMetadata>,
        then: Then,
    },
    Allocating,
}

#[derive(Debug, Clone)]
struct MarkerRound {
    id: MarkerId,
    outstanding: BTreeSet<TopicPartition>,
    sent_ms: i64,
}

#[derive(Debug, Clone)]
struct Entry {
    meta: TxnMetadata,
    pending: Option<Pending>,
    markers: Option<MarkerRound>,
    /// The Complete* append failed retriably: append it again on the next tick.
    retry_complete: bool,
    /// Adds that came while a change was in flight, oldest first (`waiting.rs`).
    waiting: Vec<WaitingAdd>,
}

impl Entry {
    /// A change in flight: an append, a producer id allocation, markers being written, or
    /// a completion waiting to be appended again (Kafka's pending state).
    fn busy(&self) -> bool {
        self.pending.is_some() || self.markers.is_some() || self.retry_complete
    }
}

/// A request waiting for a producer id.
#[derive(Debug, Clone)]
enum Parked {
    Init(RequestId, InitProducerId),
    End(RequestId, EndTxn),
}

/// The coordinator of one `__transaction_state` partition.
#[derive(Debug)]
pub struct TxnCoordinator {
    config: TxnConfig,
    coordinator_epoch: i32,
    status: Status,
    entries: BTreeMap<String, Entry>,
    appends: BTreeMap<AppendId, String>,
    rounds: BTreeMap<MarkerId, String>,
    parked: BTreeMap<AllocId, Parked>,
    next_id: u64,
}

impl TxnCoordinator {
    /// A coordinator about to load its partition at `coordinator_epoch` (the partition's
    /// leader epoch). Until [`finish_loading`](Self::finish_loading) it answers
    /// COORDINATOR_LOAD_IN_PROGRESS.
    pub fn new(config: TxnConfig, coordinator_epoch: i32) -> Self {
        TxnCoordinator {
            config,
            coordinator_epoch,
            status: Status::Loading,
            entries: BTreeMap::new(),
            appends: BTreeMap::new(),
            rounds: BTreeMap::new(),
            parked: BTreeMap::new(),
            next_id: 0,
        }
    }

    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    /// Applies one record of the partition, in offset order, up to its high watermark.
    /// A key of an unknown version is skipped (as Kafka does); a value that does not decode
    /// is an error the shell reports as corruption.
    pub fn load_record(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        assert_eq!(
            self.status,
            Status::Loading,
            "records load only while loading"
        );
        let record = match TxnLogRecord::decode(key, value) {
            Err(RecordError::UnknownKeyVersion(_)) => return Ok(()),
            other => other?,
        };
        match record.value {
            None => {
                self.entries.remove(&record.transactional_id);
            }
            Some(value) => {
                let meta = TxnMetadata::from_value(record.transactional_id.clone(), &value)
                    .ok_or(RecordError::BadState(value.status))?;
                if matches!(meta.state, TxnState::Dead | TxnState::PrepareEpochFence) {
                    return Err(RecordError::BadState(value.status));
                }
                self.entries.insert(
                    record.transactional_id,
                    Entry {
                        meta,
                        pending: None,
                        markers: None,
                        retry_complete: false,
                        waiting: Vec::new(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Loading is done: answer requests, and finish what the previous coordinator started
    /// (markers for every PrepareCommit/PrepareAbort).
    pub fn finish_loading(&mut self, now: i64) -> Vec<Command> {
        assert_eq!(self.status, Status::Loading, "loading finishes once");
        self.status = Status::Active;
        let mut out = Vec::new();
        let preparing: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e.meta.state,
                    TxnState::PrepareCommit | TxnState::PrepareAbort
                )
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in preparing {
            self.start_markers(&id, now, &mut out);
        }
        out
    }

    /// This broker no longer leads the partition: forget everything; every later request
    /// is answered NOT_COORDINATOR and every later event ignored.
    pub fn resign(&mut self) {
        self.status = Status::Resigned;
        self.entries.clear();
        self.appends.clear();
        self.rounds.clear();
        self.parked.clear();
    }

    fn check_active(&self) -> Result<(), TxnError> {
        match self.status {
            Status::Active => Ok(()),
            Status::Loading => Err(TxnError::CoordinatorLoadInProgress),
            Status::Resigned => Err(TxnError::NotCoordinator),
        }
    }

    fn check_id(id: &str) -> Result<(), TxnError> {
        if id.is_empty() || id.len() > MAX_TRANSACTIONAL_ID_BYTES {
            return Err(TxnError::InvalidRequest);
        }
        Ok(())
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// InitProducerId: a new id gets a producer id; an existing one is fenced (epoch bump),
    /// aborting its ongoing transaction first (the client retries on
    /// CONCURRENT_TRANSACTIONS); an exhausted epoch gets a new producer id.
    pub fn init_producer_id(
        &mut self,
        request: RequestId,
        init: InitProducerId,
        now: i64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        if let Err(e) = self.init_inner(request, init, None, now, &mut out) {
            out.push(Command::Reply {
                request,
                reply: Reply::InitProducerId(Err(e)),
            });
        }
        out
    }

    fn init_inner(
        &mut self,
        request: RequestId,
        init: InitProducerId,
        fresh_pid: Option<i64>,
        now: i64,
        out: &mut Vec<Command>,
    ) -> Result<(), TxnError> {
        self.check_active()?;
        Self::check_id(&init.transactional_id)?;
        if init.timeout_ms <= 0 || init.timeout_ms > self.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        let Some(entry) = self.entries.get_mut(&init.transactional_id) else {
            if self.entries.len() >= self.config.max_transactional_ids {
                return Err(TxnError::TooManyTransactionalIds);
            }
            let meta = TxnMetadata::new(
                init.transactional_id.clone(),
                NO_PRODUCER_ID,
                init.timeout_ms,
                now,
            );
            let id = init.transactional_id.clone();
            self.entries.insert(
                id,
                Entry {
                    meta,
                    pending: None,
                    markers: None,
                    retry_complete: false,
                    waiting: Vec::new(),
                },
            );
            self.park(Parked::Init(request, init), out);
            return Ok(());
        };
        if entry.pending.is_some() {
            return Err(TxnError::ConcurrentTransactions);
        }
        let meta = &entry.meta;
        if let Some(expected) = init.expected {
            let valid = meta.producer_epoch == NO_PRODUCER_EPOCH
                || expected.producer_id == meta.producer_id
                || (expected.producer_id == meta.previous_producer_id
                    && epoch_exhausted(expected.epoch));
            if !valid {
                return Err(TxnError::ProducerFenced);
            }
        }
        let (target, then) = match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(TxnError::ConcurrentTransactions);
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let rotate = meta.epoch_exhausted()
                    && init.expected.is_none_or(|e| e.epoch == meta.producer_epoch);
                let target = if rotate {
                    let Some(pid) = fresh_pid else {
                        self.park(Parked::Init(request, init), out);
                        return Ok(());
                    };
                    meta.prepare_producer_id_rotation(
                        pid,
                        init.timeout_ms,
                        init.expected.is_some(),
                        now,
                    )
                } else {
                    meta.prepare_increment_epoch(
                        init.timeout_ms,
                        init.expected.map(|e| e.epoch),
                        now,
                    )
                    .ok_or(TxnError::ProducerFenced)?
                };
                (target, Then::ReplyInit(request))
            }
            TxnState::Ongoing => (
                meta.prepare_fence_abort(self.config.server_version, now),
                Then::Ended {
                    end_txn: None,
                    fencing_init: Some(request),
                },
            ),
            TxnState::Dead | TxnState::PrepareEpochFence => {
                unreachable!("{:?} is never an applied state", meta.state)
            }
        };
        let id = init.transactional_id;
        self.append(&id, target, then, out);
        Ok(())
    }

    fn park(&mut self, parked: Parked, out: &mut Vec<Command>) {
        let txn_id = match &parked {
            Parked::Init(_, i) => &i.transactional_id,
            Parked::End(_, e) => &e.transactional_id,
        };
        self.entries
            .get_mut(txn_id)
            .expect("parked for an id it holds")
            .pending = Some(Pending::Allocating);
        let id = AllocId(self.fresh_id());
        self.parked.insert(id, parked);
        out.push(Command::AllocateProducerId { id });
    }

    /// The shell's answer to `AllocateProducerId`.
    pub fn on_producer_id(
        &mut self,
        id: AllocId,
        result: Result<i64, TxnError>,
        now: i64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        let Some(parked) = self.parked.remove(&id) else {
            return out;
        };
        let (txn_id, request) = match &parked {
            Parked::Init(r, i) => (i.transactional_id.clone(), *r),
            Parked::End(r, e) => (e.transactional_id.clone(), *r),
        };
        let Some(entry) = self.entries.get_mut(&txn_id) else {
            return out;
        };
        entry.pending = None;
        let pid = match result {
            Ok(pid) => pid,
            Err(e) => {
                if entry.meta.producer_id == NO_PRODUCER_ID {
                    self.entries.remove(&txn_id);
                }
                let reply = match parked {
                    Parked::Init(..) => Reply::InitProducerId(Err(e)),
                    Parked::End(..) => Reply::EndTxn(Err(e)),
                };
                out.push(Command::Reply { request, reply });
                return out;
            }
        };
        match parked {
            Parked::Init(request, init) => {
                let new_id = entry.meta.producer_id == NO_PRODUCER_ID;
                if new_id {
                    // Kafka's freshly created metadata: in memory only until the
                    // InitProducerId record replicates.
                    entry.meta.producer_id = pid;
                }
                let fresh = (!new_id).then_some(pid);
                if let Err(e) = self.init_inner(request, init, fresh, now, &mut out) {
                    out.push(Command::Reply {
                        request,
                        reply: Reply::InitProducerId(Err(e)),
                    });
                }
            }
            Parked::End(request, end) => {
                if let Err(e) = self.end_inner(request, end, Some(pid), now, &mut out) {
                    out.push(Command::Reply {
                        request,
                        reply: Reply::EndTxn(Err(e)),
                    });
                }
            }
        }
        out
    }

    /// AddPartitionsToTxn for one transaction (`verify_only`: KIP-890's produce-time check).
    pub fn add_partitions(
        &mut self,
        request: RequestId,
        add: AddPartitions,
        now: i64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        let waiting = WaitingAdd::new(request, add, false, now);
        self.admit_add(waiting, now, &mut out);
        out
    }

    /// AddPartitionsToTxn v4+: several transactions, each answered on its own.
    pub fn add_partitions_batch(
        &mut self,
        transactions: Vec<(RequestId, AddPartitions)>,
        now: i64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        for (request, add) in transactions {
            out.extend(self.add_partitions(request, add, now));
        }
        out
    }

    /// AddOffsetsToTxn: the shell names the `__consumer_offsets` partition of the group.
    pub fn add_offsets(
        &mut self,
        request: RequestId,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group_partition: i32,
        now: i64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        let add = AddPartitions {
            transactional_id,
            producer_id,
            producer_epoch,
            partitions: vec![TopicPartition::new(CONSUMER_OFFSETS_TOPIC, group_partition)],
            verify_only: false,
        };
        self.admit_add(WaitingAdd::new(request, add, true, now), now, &mut out);
        out
    }

    /// `Ok(Some(add))`: the add met a change in flight and is handed back to wait.
    fn add_inner(
        &mut self,
        waiting: WaitingAdd,
        now: i64,
        out: &mut Vec<Command>,
    ) -> Result<Option<WaitingAdd>, TxnError> {
        let WaitingAdd {
            request,
            add,
            for_offsets,
            ..
        } = &waiting;
        let (request, for_offsets) = (*request, *for_offsets);
        self.check_active()?;
        Self::check_id(&add.transactional_id)?;
        let entry = self
            .entries
            .get(&add.transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        let meta = &entry.meta;
        let preparing = matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort);
        // A TV2 producer handed the next producer id while the markers of the overflowing
        // transaction are still being written: it waits, as it would with the current id.
        if meta.producer_id != add.producer_id {
            if preparing && meta.next_producer_id == add.producer_id && add.producer_epoch == 0 {
                return Err(TxnError::ConcurrentTransactions);
            }
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if meta.producer_epoch != add.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        if add.verify_only {
            // Answered from the applied state: a partition counts once its add replicated.
            if preparing {
                return Err(TxnError::ConcurrentTransactions);
            }
            let ongoing = meta.state == TxnState::Ongoing;
            let results = add
                .partitions
                .iter()
                .map(|tp| {
                    let r = if ongoing && meta.partitions.contains(tp) {
                        Ok(())
                    } else {
                        Err(TxnError::TransactionAbortable)
                    };
                    (tp.clone(), r)
                })
                .collect();
            out.push(Command::Reply {
                request,
                reply: Reply::VerifyPartitions(Ok(results)),
            });
            return Ok(None);
        }
        if entry.busy() || preparing {
            return Ok(Some(waiting));
        }
        let add = waiting.add;
        let ongoing = meta.state == TxnState::Ongoing;
        if ongoing && add.partitions.iter().all(|tp| meta.partitions.contains(tp)) {
            out.push(waiting::answer(request, for_offsets, Ok(())));
            return Ok(None);
        }
        let mut union: BTreeSet<&TopicPartition> = if ongoing {
            meta.partitions.iter().collect()
        } else {
            BTreeSet::new()
        };
        union.extend(add.partitions.iter());
        if union.len() > self.config.max_partitions_per_txn {
            return Err(TxnError::TooManyPartitions);
        }
        let target = meta.prepare_add_partitions(add.partitions, now);
        let then = if for_offsets {
            Then::ReplyAddOffsets(request)
        } else {
            Then::ReplyAdd(request)
        };
        self.append(&add.transactional_id, target, then, out);
        Ok(None)
    }

    /// EndTxn: commit or abort. Retries of a finished EndTxn are answered as Kafka does
    /// (success with the current id and epoch); TV2 bumps the epoch.
    pub fn end_txn(&mut self, request: RequestId, end: EndTxn, now: i64) -> Vec<Command> {
        let mut out = Vec::new();
        if let Err(e) = self.end_inner(request, end, None, now, &mut out) {
            out.push(Command::Reply {
                request,
                reply: Reply::EndTxn(Err(e)),
            });
        }
        out
    }

    fn end_inner(
        &mut self,
        request: RequestId,
        end: EndTxn,
        fresh_pid: Option<i64>,
        now: i64,
        out: &mut Vec<Command>,
    ) -> Result<(), TxnError> {
        use TxnState::*;
        self.check_active()?;
        Self::check_id(&end.transactional_id)?;
        let entry = self
            .entries
            .get(&end.transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        let meta = &entry.meta;
        // Whether the id's last change was a TV2 end (its epoch bumped): only then can an
        // EndTxn one epoch below be a retry. A TV2 request meeting a state a TV0 producer
        // left is not a retry: that epoch belongs to someone else.
        let bumped = meta.client_version.bumps_epoch();
        // Transaction version 2 semantics when the client speaks it or the last EndTxn did.
        let tv2 = end.version.bumps_epoch() || bumped;
        // A TV2 retry after the epoch overflowed: the id moved to the next producer id.
        let retry_on_overflow = bumped
            && meta.previous_producer_id == end.producer_id
            && end.producer_epoch == i16::MAX - 1
            && meta.producer_epoch == 0;
        if meta.producer_id != end.producer_id && !retry_on_overflow {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        // A change in flight (markers included) first: an empty abort right after a commit
        // must wait for the commit, not fence its own producer (KAFKA-18464).
        if entry.busy() {
            return Err(TxnError::ConcurrentTransactions);
        }
        let current = meta.producer_epoch == end.producer_epoch;
        // A TV2 retry of an EndTxn whose bump is already applied.
        let retry = retry_on_overflow
            || (bumped && i32::from(meta.producer_epoch) == i32::from(end.producer_epoch) + 1);
        let ids = ProducerIdAndEpoch {
            producer_id: meta.producer_id,
            epoch: meta.producer_epoch,
        };
        let done = |out: &mut Vec<Command>| {
            out.push(Command::Reply {
                request,
                reply: Reply::EndTxn(Ok(ids)),
            });
            Ok(())
        };
        let next_state = match end.result {
            TxnResult::Commit => PrepareCommit,
            TxnResult::Abort => PrepareAbort,
        };
        // Kafka 4.0's table for a finished transaction under TV2 (KAFKA-14563), a retry
        // being the epoch one below the current:
        //
        //   state          | abort retry | abort current | commit retry | commit current
        //   Empty          | FENCED      | bump          | INVALID      | INVALID
        //   CompleteAbort  | success     | bump          | FENCED       | INVALID
        //   CompleteCommit | INVALID     | bump          | success      | INVALID
        //
        // "bump" aborts an empty transaction with an epoch bump: a TV2 client that cannot
        // tell whether a partition was added at produce time aborts to be sure. A commit
        // retried into CompleteAbort can only be one the coordinator's own abort (timeout,
        // fence) overtook: FENCED, which clients recover from (KAFKA-20785).
        let begin_end = match (meta.state, end.result) {
            (Ongoing, _) if current => true,
            (Ongoing, _) => return Err(TxnError::ProducerFenced),
            (PrepareCommit | PrepareAbort, _) => return Err(TxnError::ConcurrentTransactions),
            _ if !tv2 => match (meta.state, end.result) {
                _ if !current => return Err(TxnError::ProducerFenced),
                (CompleteCommit, TxnResult::Commit) | (CompleteAbort, TxnResult::Abort) => {
                    return done(out);
                }
                _ => return Err(TxnError::InvalidTxnState),
            },
            (CompleteCommit, TxnResult::Commit) | (CompleteAbort, TxnResult::Abort) if retry => {
                return done(out);
            }
            (Empty | CompleteCommit | CompleteAbort, TxnResult::Abort)
                if current && end.version.bumps_epoch() =>
            {
                true
            }
            (CompleteAbort, TxnResult::Commit) if retry => {
                return Err(TxnError::ProducerFenced);
            }
            (Empty, TxnResult::Abort) if retry => return Err(TxnError::ProducerFenced),
            _ if current || retry => return Err(TxnError::InvalidTxnState),
            _ => return Err(TxnError::ProducerFenced),
        };
        debug_assert!(begin_end);
        // Under TV2 with the epoch run out, the bump moves to a fresh producer id.
        let next_pid = if end.version.bumps_epoch() && meta.epoch_exhausted() {
            match fresh_pid {
                Some(pid) => pid,
                None => {
                    self.park(Parked::End(request, end), out);
                    return Ok(());
                }
            }
        } else {
            NO_PRODUCER_ID
        };
        let target = meta.prepare_end(next_state, end.version, next_pid, now);
        let then = Then::Ended {
            end_txn: Some(request),
            fencing_init: None,
        };
        let id = end.transactional_id;
        self.append(&id, target, then, out);
        Ok(())
    }

    fn append(&mut self, txn_id: &str, target: TxnMetadata, then: Then, out: &mut Vec<Command>) {
        let id = AppendId(self.fresh_id());
        let (key, value) = target
            .to_record()
            .encode(self.config.server_version.log_value_version());
        let entry = self
            .entries
            .get_mut(txn_id)
            .expect("appending for an id it holds");
        debug_assert!(entry.pending.is_none(), "one change at a time per id");
        entry.pending = Some(Pending::Append {
            id,
            target: Box::new(target),
            then,
        });
        self.appends.insert(id, txn_id.to_owned());
        out.push(Command::Append { id, key, value });
    }

    /// The shell's report on an append: replicated, or failed (nothing appended). Adds
    /// that waited for it go on.
    pub fn on_appended(
        &mut self,
        id: AppendId,
        result: Result<(), AppendFailure>,
        now: i64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        let Some(txn_id) = self.appends.remove(&id) else {
            return out;
        };
        let removed = self.apply_appended(&txn_id, id, result, now, &mut out);
        self.release_waiting(&txn_id, removed, now, &mut out);
        out
    }

    /// [`on_appended`](Self::on_appended) for `txn_id`'s append `id`; returns the adds
    /// that waited on an entry it removed (an expired id).
    fn apply_appended(
        &mut self,
        txn_id: &str,
        id: AppendId,
        result: Result<(), AppendFailure>,
        now: i64,
        out: &mut Vec<Command>,
    ) -> Vec<WaitingAdd> {
        let Some(entry) = self.entries.get_mut(txn_id) else {
            return Vec::new();
        };
        let Some(Pending::Append {
            id: pending_id,
            target,
            then,
        }) = entry.pending.take()
        else {
            return Vec::new();
        };
        assert_eq!(pending_id, id, "an id's append answered out of turn");
        let err = match result {
            Ok(()) => None,
            Err(AppendFailure::NotLeader) => Some(TxnError::NotCoordinator),
            Err(AppendFailure::Unavailable) => Some(TxnError::CoordinatorNotAvailable),
            Err(AppendFailure::TooLarge) => Some(TxnError::UnknownServerError),
        };
        if let Some(e) = err {
            // Kafka resets the pending state: the id stays what the log last said.
            match then {
                Then::ReplyInit(r) => out.push(Command::Reply {
                    request: r,
                    reply: Reply::InitProducerId(Err(e)),
                }),
                Then::ReplyAdd(r) => out.push(Command::Reply {
                    request: r,
                    reply: Reply::AddPartitions(Err(e)),
                }),
                Then::ReplyAddOffsets(r) => out.push(Command::Reply {
                    request: r,
                    reply: Reply::AddOffsets(Err(e)),
                }),
                Then::Ended {
                    end_txn,
                    fencing_init,
                } => {
                    if let Some(r) = end_txn {
                        out.push(Command::Reply {
                            request: r,
                            reply: Reply::EndTxn(Err(e)),
                        });
                    }
                    if let Some(r) = fencing_init {
                        out.push(Command::Reply {
                            request: r,
                            reply: Reply::InitProducerId(Err(e)),
                        });
                    }
                }
                // The markers are all written: the completion must be appended eventually.
                Then::Completed => entry.retry_complete = e == TxnError::CoordinatorNotAvailable,
                // The same, and the add waits again, first in line.
                Then::CompletedAndAdded(add) => {
                    entry.retry_complete = e == TxnError::CoordinatorNotAvailable;
                    entry.waiting.insert(0, add);
                }
                Then::Expired => {}
            }
            return Vec::new();
        }
        if let Then::Expired = then {
            return self
                .entries
                .remove(txn_id)
                .map_or_else(Vec::new, |e| e.waiting);
        }
        entry.meta = *target;
        let meta = &entry.meta;
        match then {
            Then::ReplyInit(r) => {
                let ok = ProducerIdAndEpoch {
                    producer_id: meta.producer_id,
                    epoch: meta.producer_epoch,
                };
                out.push(Command::Reply {
                    request: r,
                    reply: Reply::InitProducerId(Ok(ok)),
                });
            }
            Then::ReplyAdd(r) => out.push(Command::Reply {
                request: r,
                reply: Reply::AddPartitions(Ok(())),
            }),
            Then::ReplyAddOffsets(r) => out.push(Command::Reply {
                request: r,
                reply: Reply::AddOffsets(Ok(())),
            }),
            Then::Ended {
                end_txn,
                fencing_init,
            } => {
                if let Some(r) = end_txn {
                    // Under TV2 with the epoch run out, the producer continues with the next
                    // producer id at epoch 0 (what Complete* will move the id to).
                    let next = if meta.next_producer_id != NO_PRODUCER_ID {
                        ProducerIdAndEpoch {
                            producer_id: meta.next_producer_id,
                            epoch: 0,
                        }
                    } else {
                        ProducerIdAndEpoch {
                            producer_id: meta.producer_id,
                            epoch: meta.producer_epoch,
                        }
                    };
                    out.push(Command::Reply {
                        request: r,
                        reply: Reply::EndTxn(Ok(next)),
                    });
                }
                if let Some(r) = fencing_init {
                    out.push(Command::Reply {
                        request: r,
                        reply: Reply::InitProducerId(Err(TxnError::ConcurrentTransactions)),
                    });
                }
                self.start_markers(txn_id, now, out);
            }
            Then::CompletedAndAdded(add) => out.push(add.reply(Ok(()))),
            Then::Completed | Then::Expired => {}
        }
        Vec::new()
    }
}
