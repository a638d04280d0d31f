//! The sender task: drains the accumulator into requests on one `ProduceStream` per
//! broker, each partition's batches to its leader, matches responses to batches, and
//! reports outcomes back to the accumulator.
//!
//! One task per producer owns the streams. Each request carries one batch per partition
//! of one topic, all led by the broker it goes to; a partition may have up to
//! `max_in_flight` requests outstanding (the accumulator enforces it, and keeps them on
//! one broker) and the broker answers each partition's requests in order. A broken
//! stream (an error, its end, or a request past `request_timeout`) fails every
//! outstanding request on it with a retriable error, in send order, and is reopened on
//! the next send: those batches may or may not have been appended, so a retry can
//! duplicate them (at-least-once, as Kafka without idempotence), but never reorders them.
//!
//! A batch refused because its broker no longer leads the partition, or lost with a
//! broken stream, makes the partition's cached leader stale (see [`crate::retry`]): the
//! sender refreshes metadata in the background, and the accumulator retries the batch,
//! in order, on the leader the refresh finds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::{Stream, StreamExt, StreamMap};
use weir_proto::v1 as pb;

use super::accumulator::{Accumulator, BatchAck, ProducerBatch};
use super::config::{Acks, MAX_REQUESTS_IN_FLIGHT};
use super::stream_body;
use crate::cluster::Cluster;
use crate::error::ClientError;
use crate::group::link::CoordinatorLink;
use crate::outage::Outages;
use crate::retry::{self, RetryDecision};
use crate::routing::BrokerId;

/// One request on a stream, waiting for its response.
struct InFlightRequest {
    broker: BrokerId,
    batches: Vec<ProducerBatch>,
    deadline: Instant,
}

/// What a broker's response stream yields: a response, or `None` once when it ends.
type ResponseEvent = Option<Result<pb::ProduceStreamResponse, tonic::Status>>;
type ResponseStream = Pin<Box<dyn Stream<Item = ResponseEvent> + Send>>;

/// See the module docs.
pub(crate) struct Sender {
    accumulator: Arc<Accumulator>,
    cluster: Cluster,
    /// The request side of each broker's open stream: each request as the chunks of its
    /// gRPC message ([`stream_body`]).
    streams: HashMap<BrokerId, mpsc::Sender<Vec<Bytes>>>,
    /// The response side of each broker's open stream.
    responses: StreamMap<BrokerId, ResponseStream>,
    /// By sequence, which is send order.
    in_flight: BTreeMap<u64, InFlightRequest>,
    next_sequence: u64,
    /// Topics whose metadata is to be refreshed, and the refresh under way.
    stale_topics: BTreeSet<Arc<str>>,
    refresh: Option<JoinHandle<()>>,
    /// Getting a producer identity, while one is wanted (idempotence).
    identity: Option<JoinHandle<()>>,
    /// A transactional producer's coordinator, and the call adding partitions to its
    /// transaction, while one is under way.
    txn_coordinator: Option<Arc<CoordinatorLink>>,
    adding: Option<JoinHandle<()>>,
    /// Brokers whose stream keeps failing, logged once per streak.
    outages: Outages,
}

impl Sender {
    pub(crate) fn new(
        accumulator: Arc<Accumulator>,
        cluster: Cluster,
        txn_coordinator: Option<Arc<CoordinatorLink>>,
    ) -> Sender {
        Sender {
            accumulator,
            cluster,
            streams: HashMap::new(),
            responses: StreamMap::new(),
            in_flight: BTreeMap::new(),
            next_sequence: 0,
            stale_topics: BTreeSet::new(),
            refresh: None,
            identity: None,
            txn_coordinator,
            adding: None,
            outages: Outages::new("produce stream"),
        }
    }

    /// Runs until the producer is closed and every batch has completed.
    pub(crate) async fn run(mut self) {
        loop {
            let now = Instant::now();
            self.expire_requests(now);
            let budget = MAX_REQUESTS_IN_FLIGHT.saturating_sub(self.in_flight.len());
            let table = self.cluster.table();
            let route = |topic: &str, partition: u32| table.route(topic, partition).ok();
            let drained = self.accumulator.drain(now, budget, &route);
            for (topic, _) in drained.unrouted {
                self.stale_topics.insert(topic);
            }
            self.stale_topics.extend(drained.waiting_on_failed);
            // Brokers whose stream broke in this drain: what was to follow for them
            // fails too, so each partition's batches fail (and are retried) in order
            // rather than later ones overtaking on a new stream.
            let mut broken: HashMap<BrokerId, ClientError> = HashMap::new();
            for round in drained.rounds {
                self.send_round(round, &mut broken).await;
            }
            self.start_refresh();
            self.start_identity();
            self.start_adding_partitions();
            if self.accumulator.is_finished() {
                break;
            }
            // Requests are sent in sequence order with one timeout, so the first is the
            // oldest.
            let request_deadline = self.in_flight.values().next().map(|r| r.deadline);
            let wake_at = match (drained.next_wake, request_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                // `StreamMap::next` is cancel-safe: a response is never lost to `select!`.
                Some((broker, event)) = self.responses.next(), if !self.responses.is_empty() => {
                    self.on_response(broker, event);
                }
                () = self.accumulator.wake_sender.notified() => {}
                () = sleep_until(wake_at) => {}
            }
        }
        for task in [self.refresh.take(), self.identity.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        tracing::debug!("producer sender finished");
    }

    /// Fails the streams of brokers with a request past its deadline.
    fn expire_requests(&mut self, now: Instant) {
        let late: BTreeSet<BrokerId> = self
            .in_flight
            .values()
            .filter(|r| r.deadline <= now)
            .map(|r| r.broker)
            .collect();
        for broker in late {
            self.fail_stream(
                broker,
                ClientError::DeadlineExceeded(format!(
                    "broker {broker} did not answer a produce request within request_timeout"
                )),
            );
        }
    }

    /// Sends one round (at most one batch per partition) as one request per leader and
    /// topic. Batches for a broker whose stream broke (now or earlier in this drain) fail
    /// with that error.
    async fn send_round(
        &mut self,
        round: Vec<ProducerBatch>,
        broken: &mut HashMap<BrokerId, ClientError>,
    ) {
        let mut by_request: HashMap<(BrokerId, Arc<str>), Vec<ProducerBatch>> = HashMap::new();
        for batch in round {
            by_request
                .entry((batch.broker, batch.topic.clone()))
                .or_default()
                .push(batch);
        }
        for ((broker, topic), batches) in by_request {
            if let Some(error) = broken.get(&broker) {
                let now = Instant::now();
                for batch in batches {
                    self.accumulator.complete(batch, Err(error.clone()), now);
                }
                continue;
            }
            if let Err(error) = self.send_request(broker, &topic, batches).await {
                broken.insert(broker, error);
            }
        }
    }

    /// Sends one request to `broker`. If its stream breaks, fails what it had in flight
    /// (this request included) and returns the error.
    async fn send_request(
        &mut self,
        broker: BrokerId,
        topic: &Arc<str>,
        batches: Vec<ProducerBatch>,
    ) -> Result<(), ClientError> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let mut partitions = Vec::with_capacity(batches.len());
        let mut sent = Vec::with_capacity(batches.len());
        for mut batch in batches {
            match batch.encode() {
                Ok(bytes) => {
                    partitions.push(pb::PartitionRecords {
                        partition: batch.partition,
                        compression: pb::Compression::Unspecified as i32,
                        data: Some(pb::partition_records::Data::Batches(bytes)),
                        ..Default::default()
                    });
                    batch.send_seq = sequence;
                    sent.push(batch);
                }
                Err(error) => self.accumulator.complete(batch, Err(error), Instant::now()),
            }
        }
        if sent.is_empty() {
            return Ok(());
        }
        let config = self.accumulator.config();
        let request = stream_body::encode(pb::ProduceStreamRequest {
            sequence,
            request: Some(pb::ProduceRequest {
                topic: topic.to_string(),
                partitions,
                acks: match config.acks {
                    Acks::None => pb::Acks::None,
                    Acks::Leader => pb::Acks::Leader,
                    Acks::All => pb::Acks::All,
                } as i32,
                timeout_ms: u32::try_from(config.request_timeout.as_millis()).unwrap_or(u32::MAX),
                transactional_id: config.transactional_id.clone().unwrap_or_default(),
            }),
        });
        let deadline = Instant::now() + config.request_timeout;
        self.in_flight.insert(
            sequence,
            InFlightRequest {
                broker,
                batches: sent,
                deadline,
            },
        );
        if let Err(error) = self.transmit(broker, request).await {
            self.fail_stream(broker, error.clone());
            return Err(error);
        }
        Ok(())
    }

    /// Puts a request on `broker`'s stream, opening the stream first if there is none.
    async fn transmit(&mut self, broker: BrokerId, request: Vec<Bytes>) -> Result<(), ClientError> {
        if let Some(requests) = self.streams.get(&broker) {
            // Each channel holds MAX_REQUESTS_IN_FLIGHT and no more are outstanding in
            // all, so it is never full; a closed channel means the stream is gone.
            return requests.try_send(request).map_err(|_| {
                ClientError::Unavailable(format!("the produce stream to broker {broker} closed"))
            });
        }
        let channel = self.cluster.channel(broker)?;
        let (requests, receiver) = mpsc::channel(MAX_REQUESTS_IN_FLIGHT);
        // Queue the first request before opening, so the broker has it as soon as the
        // stream exists whatever order it answers headers and reads in.
        requests.try_send(request).expect("a new channel has room");
        // The stream opens as the run loop polls its responses, along with every other
        // broker's, not here: a broker that takes the connection and never answers (a
        // frozen process) then holds only its own requests, until their request_timeout
        // fails the stream. Awaited here, it held the whole sender, so every broker's
        // writes, until HTTP/2 keepalive gave the connection up 50 s later (found by
        // weir-tests' tests/it/docker_cluster.rs: `docker pause` of a leader).
        let open = async move {
            match stream_body::open(channel, receiver).await {
                Ok(responses) => Box::pin(
                    responses
                        .map(Some)
                        .chain(tokio_stream::once(None::<Result<_, tonic::Status>>)),
                ) as ResponseStream,
                Err(status) => Box::pin(tokio_stream::once(Some(Err(status)))),
            }
        };
        let events: ResponseStream = Box::pin(futures_util::StreamExt::flatten(
            futures_util::stream::once(open),
        ));
        self.streams.insert(broker, requests);
        self.responses.insert(broker, events);
        Ok(())
    }

    fn on_response(&mut self, broker: BrokerId, event: ResponseEvent) {
        let response = match event {
            Some(Ok(response)) => response,
            Some(Err(status)) => return self.fail_stream(broker, status.into()),
            None => {
                return self.fail_stream(
                    broker,
                    ClientError::Unavailable(format!("broker {broker} ended the produce stream")),
                );
            }
        };
        self.outages.answered(broker);
        let request = match self.in_flight.remove(&response.sequence) {
            Some(request) if request.broker == broker => request,
            other => {
                tracing::warn!(
                    sequence = response.sequence,
                    broker,
                    "response to no outstanding request"
                );
                if let Some(request) = other {
                    self.in_flight.insert(response.sequence, request);
                }
                return;
            }
        };
        let results = response.response.map(|r| r.results).unwrap_or_default();
        let now = Instant::now();
        for (index, batch) in request.batches.into_iter().enumerate() {
            // Results come in request order; search only if the broker reordered them.
            let result = results
                .get(index)
                .filter(|r| r.partition == batch.partition)
                .or_else(|| results.iter().find(|r| r.partition == batch.partition));
            let outcome = match result {
                None => Err(ClientError::Rpc {
                    code: tonic::Code::Internal,
                    message: format!(
                        "the broker's answer has no result for partition {}",
                        batch.partition
                    ),
                }),
                Some(r) => match &r.error {
                    Some(error) => Err(ClientError::from_partition_error(error)),
                    None => Ok(BatchAck {
                        base_offset: r.base_offset,
                        log_append_time_ms: r.log_append_time_ms,
                    }),
                },
            };
            match &outcome {
                Err(ClientError::NotFound(_)) => self.accumulator.invalidate(&batch.topic),
                Err(error) => self.leader_failed(&batch, error),
                Ok(_) => {}
            }
            self.accumulator.complete(batch, outcome, now);
        }
    }

    /// Marks the batch's leader stale if `error` calls for new metadata.
    fn leader_failed(&mut self, batch: &ProducerBatch, error: &ClientError) {
        if retry::decide(error) == RetryDecision::RefreshMetadata {
            self.cluster
                .leader_failed(&batch.topic, batch.partition, batch.broker, error);
            self.stale_topics.insert(batch.topic.clone());
        }
    }

    /// Drops `broker`'s stream and fails every request outstanding on it with `error`,
    /// in send order.
    fn fail_stream(&mut self, broker: BrokerId, error: ClientError) {
        self.streams.remove(&broker);
        self.responses.remove(&broker);
        let failed: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, r)| r.broker == broker)
            .map(|(sequence, _)| *sequence)
            .collect();
        if !failed.is_empty() {
            tracing::debug!(broker, requests = failed.len(), error = %error, "produce stream failed");
            self.outages.failed(broker, &error);
        }
        let now = Instant::now();
        for sequence in failed {
            let request = self.in_flight.remove(&sequence).expect("listed above");
            for batch in request.batches {
                self.leader_failed(&batch, &error);
                self.accumulator.complete(batch, Err(error.clone()), now);
            }
        }
    }

    /// Starts getting a producer identity if one is wanted and none is being got; the
    /// accumulator wakes the sender when it has one.
    fn start_identity(&mut self) {
        // A transactional producer's identity is its coordinator's to give, asked for by
        // `TransactionalProducer` (after an abort, when a batch failed for good).
        if self.identity.as_ref().is_some_and(|t| !t.is_finished())
            || !self.accumulator.identity_wanted()
            || self.txn_coordinator.is_some()
        {
            return;
        }
        let (accumulator, cluster) = (self.accumulator.clone(), self.cluster.clone());
        self.identity = Some(tokio::spawn(async move {
            super::identity::acquire(&accumulator, &cluster).await;
        }));
    }

    /// Adds the partitions a transactional producer's batches wait for to its open
    /// transaction, unless an add is under way (`transactional::add_partitions`).
    fn start_adding_partitions(&mut self) {
        let Some(coordinator) = &self.txn_coordinator else {
            return;
        };
        if self.adding.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let (accumulator, coordinator) = (self.accumulator.clone(), coordinator.clone());
        self.adding = Some(tokio::spawn(async move {
            super::transactional::add_partitions(&accumulator, &coordinator).await;
        }));
    }

    /// Starts a metadata refresh of the stale topics unless one is running; it wakes the
    /// sender when done. The cluster spaces refreshes out, so a partition that stays
    /// without a leader costs a few requests a second.
    fn start_refresh(&mut self) {
        if self.stale_topics.is_empty() || self.refresh.as_ref().is_some_and(|r| !r.is_finished()) {
            return;
        }
        let topics: Vec<Arc<str>> = std::mem::take(&mut self.stale_topics).into_iter().collect();
        let cluster = self.cluster.clone();
        let accumulator = self.accumulator.clone();
        self.refresh = Some(tokio::spawn(async move {
            let names: Vec<&str> = topics.iter().map(|t| &**t).collect();
            if let Err(error) = cluster.refresh(&names).await {
                tracing::debug!(?names, %error, "metadata refresh failed");
                if let ClientError::NotFound(_) = error {
                    for topic in &topics {
                        accumulator.invalidate(topic);
                    }
                }
            }
            accumulator.wake_sender.notify_one();
        }));
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
