//! One shard of the transaction coordinator: the transactional ids of one
//! `__transaction_state` partition, while this broker leads that partition.
//!
//! A shard is loaded by replaying its partition up to the committed end (the last record
//! of each id is its state), then one task owns the machine (`TxnCoordinator`): it takes
//! requests and events from one queue, and carries out the machine's commands in the
//! order given. An append is queued on the partition under the leader epoch the shard
//! was loaded at (another leadership refuses it; queue order is log order) and reported
//! to the machine once durable (acks=all), so no answer rests on state a failover could
//! take back. Producer ids come from the allocator idempotent producers use; markers go
//! through the broker's [`MarkerWriter`], and a round with retriable partitions is
//! reported [`MARKER_RETRY_BACKOFF`] late (the machine re-sends those at once). A write
//! that fails fails the shard: the
//! coordinator loads it again from the log, and the new machine re-sends the markers of
//! every transaction it finds prepared.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot, watch};
use weir_coordinator::txn::{
    AllocId, AppendFailure, AppendId, Command, ListFilter, MarkerId, MarkerOutcome, Reply,
    RequestId, TopicPartition, TxnConfig, TxnCoordinator, TxnDescription, TxnError, TxnListing,
};

use super::{
    MARKER_RETRY_BACKOFF, MAX_QUEUED_TXN_EVENTS, MarkerRequest, MarkerWriter, TXN_LOAD_WAIT,
    TXN_READ_BYTES, TXN_STATE_TOPIC, TXN_TICK_INTERVAL, TransactionError,
};
use crate::error::ClusterError;
use crate::internal_topic::{self, LoadedShard, SubmitError, WriteFence, wall_clock_ms};
use crate::partition::Partition;
use crate::registry::TopicRegistry;

/// A request for the machine, with where its answer goes.
pub(super) enum Request {
    Init(weir_coordinator::txn::InitProducerId),
    Add(weir_coordinator::txn::AddPartitions),
    AddOffsets {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group_partition: i32,
    },
    End(weir_coordinator::txn::EndTxn),
}

/// ListTransactions' rows, and the state names in the filter that are not states.
type Listed = (Vec<TxnListing>, Vec<String>);

/// What the shard's task takes from its queue.
enum Event {
    Request(Request, oneshot::Sender<Reply>),
    Describe(String, oneshot::Sender<Result<TxnDescription, TxnError>>),
    List(ListFilter, oneshot::Sender<Result<Listed, TxnError>>),
    Appended(AppendId, Result<(), AppendFailure>),
    ProducerId(AllocId, Result<i64, TxnError>),
    Markers(MarkerId, Vec<(TopicPartition, MarkerOutcome)>),
}

/// The transactional ids of one `__transaction_state` partition.
#[derive(Debug)]
pub(super) struct TxnShard {
    pub(super) index: u32,
    partition: Arc<Partition>,
    leader_epoch: i32,
    events: mpsc::Sender<Event>,
    failed: Arc<AtomicBool>,
    /// How many ids the machine held when last asked (for the log line).
    ids: Arc<AtomicUsize>,
    /// Set when it resigns: the task stops and every waiting request hears
    /// NOT_COORDINATOR.
    resigned: watch::Sender<Option<i32>>,
    /// Closed once it is replaced: see [`WriteFence`].
    writes: Arc<WriteFence>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Event::Request(..) => "Request",
            Event::Describe(..) => "Describe",
            Event::List(..) => "List",
            Event::Appended(..) => "Appended",
            Event::ProducerId(..) => "ProducerId",
            Event::Markers(..) => "Markers",
        })
    }
}

impl LoadedShard for TxnShard {
    fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn group_count(&self) -> usize {
        self.ids.load(Ordering::Relaxed)
    }

    fn leads(&self) -> bool {
        self.partition.leads_at(self.leader_epoch)
    }

    fn resign(&self, coordinator: i32) {
        self.resigned.send_replace(Some(coordinator));
    }

    fn writes(&self) -> &WriteFence {
        &self.writes
    }
}

impl TxnShard {
    /// Loads the shard of `partition`, which this broker leads at `leader_epoch`, and
    /// starts its task. `Ok(None)`: not ready yet; try again later.
    pub(super) async fn load(
        index: u32,
        partition: Arc<Partition>,
        leader_epoch: i32,
        registry: Arc<TopicRegistry>,
        config: TxnConfig,
        writer: Option<Arc<dyn MarkerWriter>>,
    ) -> Result<Option<Arc<TxnShard>>, TransactionError> {
        let Some(end) = internal_topic::wait_committed(&partition, TXN_LOAD_WAIT).await? else {
            return Ok(None);
        };
        let corrupt = |offset, reason| TransactionError::CorruptRecord {
            partition: index,
            offset,
            reason,
        };
        // The leader epoch is the coordinator epoch: a newer leadership's markers win.
        let mut machine = TxnCoordinator::new(config, leader_epoch);
        internal_topic::for_each_record(&partition, end, TXN_READ_BYTES, corrupt, |record| {
            let Some(key) = &record.key else {
                return Ok(());
            };
            machine
                .load_record(key, record.value.as_deref())
                .map_err(|e| corrupt(record.offset, e.to_string()))
        })
        .await?;
        if partition.state().leader_epoch != leader_epoch {
            return Ok(None);
        }
        let first = machine.finish_loading(wall_clock_ms());
        let (events, queue) = mpsc::channel(MAX_QUEUED_TXN_EVENTS);
        let (resigned, resigned_rx) = watch::channel(None);
        let shard = Arc::new(TxnShard {
            index,
            partition: partition.clone(),
            leader_epoch,
            events: events.clone(),
            failed: Arc::new(AtomicBool::new(false)),
            ids: Arc::new(AtomicUsize::new(machine.len())),
            resigned,
            writes: Arc::new(WriteFence::default()),
        });
        let task = ShardTask {
            index,
            partition,
            leader_epoch,
            registry,
            writer,
            machine,
            events,
            waiting: HashMap::new(),
            next_request: 0,
            failed: shard.failed.clone(),
            ids: shard.ids.clone(),
            writes: shard.writes.clone(),
        };
        tokio::spawn(task.run(queue, resigned_rx, first));
        Ok(Some(shard))
    }

    /// Passes `request` to the machine; the answer comes once what it changed is durable.
    pub(super) async fn request(&self, request: Request) -> Result<Reply, TransactionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Event::Request(request, tx)).await?;
        self.answer(rx).await
    }

    pub(super) async fn describe(&self, id: String) -> Result<TxnDescription, TransactionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Event::Describe(id, tx)).await?;
        Ok(self.answer(rx).await??)
    }

    pub(super) async fn list(&self, filter: ListFilter) -> Result<Listed, TransactionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Event::List(filter, tx)).await?;
        Ok(self.answer(rx).await??)
    }

    async fn send(&self, event: Event) -> Result<(), TransactionError> {
        self.events
            .send(event)
            .await
            .map_err(|_| self.not_coordinator())
    }

    async fn answer<T>(&self, rx: oneshot::Receiver<T>) -> Result<T, TransactionError> {
        rx.await.map_err(|_| self.not_coordinator())
    }

    /// The shard stopped serving before it answered.
    fn not_coordinator(&self) -> TransactionError {
        let coordinator = self.resigned.borrow().unwrap_or(-1);
        TransactionError::NotCoordinator {
            partition: self.index,
            coordinator,
        }
    }
}

/// The task that owns one shard's machine.
struct ShardTask {
    index: u32,
    partition: Arc<Partition>,
    leader_epoch: i32,
    registry: Arc<TopicRegistry>,
    writer: Option<Arc<dyn MarkerWriter>>,
    machine: TxnCoordinator,
    /// For the events of the work it starts (appends, allocations, markers).
    events: mpsc::Sender<Event>,
    waiting: HashMap<RequestId, oneshot::Sender<Reply>>,
    next_request: u64,
    failed: Arc<AtomicBool>,
    ids: Arc<AtomicUsize>,
    writes: Arc<WriteFence>,
}

impl ShardTask {
    async fn run(
        mut self,
        mut queue: mpsc::Receiver<Event>,
        mut resigned: watch::Receiver<Option<i32>>,
        first: Vec<Command>,
    ) {
        self.carry_out(first).await;
        let mut tick = tokio::time::interval(TXN_TICK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if resigned.borrow().is_some() || self.failed.load(Ordering::Acquire) {
                break;
            }
            let commands = tokio::select! {
                changed = resigned.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    continue;
                }
                _ = tick.tick() => {
                    if !self.partition.leads_at(self.leader_epoch) {
                        break;
                    }
                    self.machine.tick(wall_clock_ms())
                }
                event = queue.recv() => match event {
                    Some(event) => self.apply(event),
                    None => break,
                },
            };
            self.carry_out(commands).await;
            self.ids.store(self.machine.len(), Ordering::Relaxed);
        }
        // Forget everything: the waiting requests hear NOT_COORDINATOR (their senders
        // dropped), and late events find nobody.
        self.machine.resign();
        self.waiting.clear();
        tracing::debug!(
            partition = self.index,
            "transaction coordinator shard stopped"
        );
    }

    fn apply(&mut self, event: Event) -> Vec<Command> {
        let now = wall_clock_ms();
        match event {
            Event::Request(request, reply) => {
                self.next_request += 1;
                let id = RequestId(self.next_request);
                self.waiting.insert(id, reply);
                match request {
                    Request::Init(init) => self.machine.init_producer_id(id, init, now),
                    Request::Add(add) => self.machine.add_partitions(id, add, now),
                    Request::AddOffsets {
                        transactional_id,
                        producer_id,
                        producer_epoch,
                        group_partition,
                    } => self.machine.add_offsets(
                        id,
                        transactional_id,
                        producer_id,
                        producer_epoch,
                        group_partition,
                        now,
                    ),
                    Request::End(end) => self.machine.end_txn(id, end, now),
                }
            }
            Event::Describe(id, reply) => {
                let _ = reply.send(self.machine.describe(&id));
                Vec::new()
            }
            Event::List(filter, reply) => {
                let _ = reply.send(self.machine.list(&filter, now));
                Vec::new()
            }
            Event::Appended(id, result) => self.machine.on_appended(id, result, now),
            Event::ProducerId(id, result) => self.machine.on_producer_id(id, result, now),
            Event::Markers(id, outcomes) => self.machine.on_markers(id, outcomes, now),
        }
    }

    /// Carries out `commands` in order, and those the machine gives back on the way (an
    /// append that could not even be queued is reported at once).
    async fn carry_out(&mut self, commands: Vec<Command>) {
        let mut work: VecDeque<Command> = commands.into();
        while let Some(command) = work.pop_front() {
            match command {
                Command::Reply { request, reply } => {
                    if let Some(tx) = self.waiting.remove(&request) {
                        let _ = tx.send(reply);
                    }
                }
                Command::Append { id, key, value } => {
                    let queued = internal_topic::submit_records(
                        &self.writes,
                        &self.partition,
                        TXN_STATE_TOPIC,
                        self.leader_epoch,
                        [internal_topic::keyed(&key, value.as_deref())],
                    )
                    .await;
                    match queued {
                        Ok(pending) => {
                            let events = self.events.clone();
                            let failed = self.failed.clone();
                            let index = self.index;
                            tokio::spawn(async move {
                                let outcome = match pending.await {
                                    Ok(Ok(_)) => Ok(()),
                                    Ok(Err(e)) => {
                                        fail(&failed, index, &e);
                                        Err(append_failure(&e))
                                    }
                                    Err(_) => {
                                        fail(&failed, index, &"the partition closed");
                                        Err(AppendFailure::NotLeader)
                                    }
                                };
                                let _ = events.send(Event::Appended(id, outcome)).await;
                            });
                        }
                        Err(e) => {
                            let failure = match &e {
                                SubmitError::TooLarge { .. } => AppendFailure::TooLarge,
                                SubmitError::Encode(_) => AppendFailure::TooLarge,
                                // Replaced: this task stops at its next turn.
                                SubmitError::Fenced => AppendFailure::NotLeader,
                                SubmitError::Cluster(c) => {
                                    fail(&self.failed, self.index, &e);
                                    append_failure(c)
                                }
                            };
                            let now = wall_clock_ms();
                            work.extend(self.machine.on_appended(id, Err(failure), now));
                        }
                    }
                }
                Command::AllocateProducerId { id } => {
                    let events = self.events.clone();
                    let registry = self.registry.clone();
                    tokio::spawn(async move {
                        let result = match registry.cluster().init_producer_id(None).await {
                            Ok((pid, _)) => Ok(pid),
                            Err(e) => {
                                tracing::warn!(error = %e, "allocating a producer id for a transactional id failed");
                                Err(TxnError::CoordinatorNotAvailable)
                            }
                        };
                        let _ = events.send(Event::ProducerId(id, result)).await;
                    });
                }
                Command::WriteMarkers {
                    id,
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    result,
                    transaction_version,
                    partitions,
                } => {
                    tracing::debug!(
                        transactional_id,
                        producer_id,
                        producer_epoch,
                        ?result,
                        partitions = partitions.len(),
                        "writing transaction markers"
                    );
                    let request = MarkerRequest {
                        producer_id,
                        producer_epoch,
                        coordinator_epoch,
                        result,
                        transaction_version,
                        partitions,
                    };
                    let events = self.events.clone();
                    let writer = self.writer.clone();
                    tokio::spawn(async move {
                        let outcomes = match writer {
                            Some(w) => w.write(request).await,
                            // No way to reach the leaders: the machine sends them again.
                            None => request
                                .partitions
                                .into_iter()
                                .map(|tp| (tp, MarkerOutcome::Retriable))
                                .collect(),
                        };
                        if outcomes.iter().any(|(_, o)| *o == MarkerOutcome::Retriable) {
                            tokio::time::sleep(MARKER_RETRY_BACKOFF).await;
                        }
                        let _ = events.send(Event::Markers(id, outcomes)).await;
                    });
                }
            }
        }
    }
}

/// An append's failure as the machine hears it.
fn append_failure(e: &ClusterError) -> AppendFailure {
    match e {
        ClusterError::NotEnoughReplicas { .. } => AppendFailure::Unavailable,
        _ => AppendFailure::NotLeader,
    }
}

fn fail(failed: &AtomicBool, index: u32, error: &dyn std::fmt::Display) {
    if !failed.swap(true, Ordering::AcqRel) {
        tracing::warn!(
            partition = index,
            %error,
            "a transaction state write failed; this {TXN_STATE_TOPIC} partition loads again from its log"
        );
    }
}
