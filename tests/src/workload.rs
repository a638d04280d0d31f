//! The load that runs while faults happen: producers writing unique values with
//! `acks=all` through the real client (`weir_client`, which follows leaders), and
//! consumers reading every partition from offset 0, everything they see recorded for the
//! [`crate::checker`].
//!
//! By default producers never retry a value: the client is set to `retries: 0` and a
//! failed write is only *attempted* (it may or may not be in the log; the checker allows
//! both), and the next write carries a new value. So a value at two offsets can only be
//! the cluster's doing, never a client's at-least-once retry. With
//! [`WorkloadConfig::retries`] the client resends, and its idempotence must keep every
//! value at one offset. Each write names its partition, round robin, so every partition
//! (and so every leader) is written to. Against a secured cluster every client speaks
//! TLS as [`WorkloadConfig::tls`] says.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use weir_client::{
    Acks, ClientError, ClientTls, Consumer, ConsumerConfig, Producer, ProducerConfig,
    ProducerRecord, SeekTo,
};

use crate::checker::{History, Record};
use crate::wait::wait_for;

/// How long connecting a client may take before another bootstrap order is tried (a
/// paused broker accepts connections and never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait after a client error before the next attempt.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);
/// How long a consumer's poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// Most records per poll.
const POLL_RECORDS: usize = 1000;

/// What to run.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// The topic (already created).
    pub topic: String,
    /// Its partition count.
    pub partitions: u32,
    /// Producer clients.
    pub producers: usize,
    /// Consumer clients (each reads every partition).
    pub consumers: usize,
    /// Writes per second per producer.
    pub rate_per_producer: u32,
    /// Writes awaiting their answer per producer; the producer waits beyond it.
    pub max_in_flight: usize,
    /// The client's request timeout (a write to a paused leader fails after it).
    pub request_timeout: Duration,
    /// Times the client resends a write that failed retriably. 0 by default, so a value
    /// at two offsets is the cluster's doing; above 0 the client's idempotence (on by
    /// default) is what keeps a resent write from being stored twice.
    pub retries: u32,
    /// TLS and credentials of every client (a secured cluster's); `None`: plaintext.
    pub tls: Option<ClientTls>,
}

impl WorkloadConfig {
    /// Two producers at 200 writes/s each and two consumers on `topic`.
    pub fn new(topic: &str, partitions: u32) -> WorkloadConfig {
        WorkloadConfig {
            topic: topic.to_owned(),
            partitions,
            producers: 2,
            consumers: 2,
            rate_per_producer: 200,
            max_in_flight: 256,
            request_timeout: Duration::from_secs(5),
            retries: 0,
            tls: None,
        }
    }
}

/// One acknowledged write and when.
#[derive(Debug, Clone)]
pub struct Ack {
    /// Where the broker put it.
    pub record: Record,
    /// When the producer was handed the record.
    pub sent_at: Instant,
    /// When its acknowledgement arrived.
    pub acked_at: Instant,
}

/// Errors the clients saw, by kind, for the report (faults make plenty; none is an
/// anomaly by itself).
#[derive(Debug, Clone, Default)]
pub struct ClientErrors {
    /// Failed writes by error kind.
    pub produce: BTreeMap<String, usize>,
    /// Failed polls and reconnects by error kind.
    pub consume: BTreeMap<String, usize>,
}

#[derive(Debug, Default)]
struct Observed {
    attempted: Vec<String>,
    acked: Vec<Ack>,
    consumed: Vec<Vec<Record>>,
    errors: ClientErrors,
}

type Shared = Arc<Mutex<Observed>>;

fn observed(shared: &Shared) -> std::sync::MutexGuard<'_, Observed> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running load. [`Workload::stop`] ends it and hands over what it saw.
#[derive(Debug)]
pub struct Workload {
    shared: Shared,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    config: WorkloadConfig,
}

impl Workload {
    /// Starts the producers and consumers against the cluster reached at `bootstrap`.
    pub fn start(bootstrap: Vec<String>, config: WorkloadConfig) -> Workload {
        let shared: Shared = Arc::default();
        observed(&shared).consumed = vec![Vec::new(); config.consumers];
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for n in 0..config.producers {
            tasks.push(tokio::spawn(produce(
                shared.clone(),
                bootstrap.clone(),
                config.clone(),
                n,
                stopped.clone(),
            )));
        }
        for n in 0..config.consumers {
            tasks.push(tokio::spawn(consume(
                shared.clone(),
                bootstrap.clone(),
                config.clone(),
                n,
                stopped.clone(),
            )));
        }
        Workload {
            shared,
            stop,
            tasks,
            config,
        }
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> usize {
        observed(&self.shared).acked.len()
    }

    /// When each acknowledgement so far arrived: `(partition, acknowledged at)`, for
    /// [`crate::availability`].
    pub fn ack_times(&self) -> Vec<(u32, Instant)> {
        observed(&self.shared)
            .acked
            .iter()
            .map(|a| (a.record.partition, a.acked_at))
            .collect()
    }

    /// Waits until at least `n` writes have been acknowledged.
    pub async fn wait_acked(&self, n: usize, limit: Duration) -> anyhow::Result<()> {
        wait_for(limit, &format!("{n} acknowledged writes"), || {
            std::future::ready((self.acked() >= n).then_some(()))
        })
        .await
    }

    /// Waits until `n` more writes than now have been acknowledged.
    pub async fn wait_progress(&self, n: usize, limit: Duration) -> anyhow::Result<()> {
        let target = self.acked() + n;
        self.wait_acked(target, limit).await
    }

    /// Waits for the first acknowledged write to `partition` that the producer was handed
    /// at or after `since`, and returns it: if the leader was killed at `since`, only its
    /// successor can have answered it.
    pub async fn wait_ack_sent_since(
        &self,
        partition: u32,
        since: Instant,
        limit: Duration,
    ) -> anyhow::Result<Ack> {
        wait_for(
            limit,
            &format!("an acknowledged write to partition {partition} sent after the fault"),
            || {
                let found = observed(&self.shared)
                    .acked
                    .iter()
                    .filter(|a| a.record.partition == partition && a.sent_at >= since)
                    .min_by_key(|a| a.acked_at)
                    .cloned();
                std::future::ready(found)
            },
        )
        .await
    }

    /// Stops every client (writes in flight get up to the request timeout to answer) and
    /// returns the history, without the final read, and the errors the clients saw.
    pub async fn stop(self) -> (History, ClientErrors) {
        let _ = self.stop.send(true);
        let grace = self.config.request_timeout + Duration::from_secs(10);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace, task).await.is_err() {
                abort.abort();
            }
        }
        let mut o = observed(&self.shared);
        let history = History {
            attempted: std::mem::take(&mut o.attempted),
            acknowledged: o.acked.iter().map(|a| a.record.clone()).collect(),
            consumed: std::mem::take(&mut o.consumed),
            final_read: Vec::new(),
        };
        (history, std::mem::take(&mut o.errors))
    }
}

/// The error's kind: its variant name (`NotLeader`, `Unavailable`, ...).
fn kind(error: &ClientError) -> String {
    let debug = format!("{error:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `brokers` rotated by `turn`, so successive attempts bootstrap from different nodes.
fn rotated(brokers: &[String], turn: usize) -> Vec<String> {
    let mut b = brokers.to_vec();
    if !b.is_empty() {
        let len = b.len();
        b.rotate_left(turn % len);
    }
    b
}

async fn connect_producer(
    shared: &Shared,
    bootstrap: &[String],
    config: &WorkloadConfig,
    stopped: &watch::Receiver<bool>,
) -> Option<Producer> {
    for attempt in 0.. {
        if *stopped.borrow() {
            return None;
        }
        let producer_config = ProducerConfig {
            brokers: rotated(bootstrap, attempt),
            acks: Acks::All,
            retries: config.retries,
            linger: Duration::from_millis(2),
            request_timeout: config.request_timeout,
            tls: config.tls.clone(),
            ..ProducerConfig::default()
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, Producer::connect(producer_config)).await {
            Ok(Ok(p)) => return Some(p),
            Ok(Err(e)) => {
                *observed(shared)
                    .errors
                    .produce
                    .entry(format!("connect: {}", kind(&e)))
                    .or_default() += 1
            }
            Err(_) => {
                *observed(shared)
                    .errors
                    .produce
                    .entry("connect: timeout".into())
                    .or_default() += 1
            }
        }
        tokio::time::sleep(ERROR_BACKOFF).await;
    }
    None
}

async fn produce(
    shared: Shared,
    bootstrap: Vec<String>,
    config: WorkloadConfig,
    n: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let Some(producer) = connect_producer(&shared, &bootstrap, &config, &stopped).await else {
        return;
    };
    let permits = Arc::new(Semaphore::new(config.max_in_flight));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / config.rate_per_producer.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deliveries = JoinSet::new();
    for seq in 0u64.. {
        tokio::select! {
            _ = stopped.changed() => {}
            _ = tick.tick() => {}
        }
        if *stopped.borrow() {
            break;
        }
        let permit = tokio::select! {
            _ = stopped.changed() => break,
            p = permits.clone().acquire_owned() => p.expect("never closed"),
        };
        let partition = ((seq + n as u64) % u64::from(config.partitions)) as u32;
        let value = format!("p{n}-{seq}");
        observed(&shared).attempted.push(value.clone());
        let sent_at = Instant::now();
        let record = ProducerRecord::new(config.topic.as_str(), value.clone()).partition(partition);
        match producer.send(record).await {
            Ok(delivery) => {
                let shared = shared.clone();
                deliveries.spawn(async move {
                    let outcome = delivery.await;
                    let mut o = observed(&shared);
                    match outcome {
                        Ok(m) => o.acked.push(Ack {
                            record: Record::new(m.partition, m.offset, value),
                            sent_at,
                            acked_at: Instant::now(),
                        }),
                        Err(e) => *o.errors.produce.entry(kind(&e)).or_default() += 1,
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                *observed(&shared)
                    .errors
                    .produce
                    .entry(format!("send: {}", kind(&e)))
                    .or_default() += 1
            }
        }
        while deliveries.try_join_next().is_some() {}
    }
    let drained = async { while deliveries.join_next().await.is_some() {} };
    if tokio::time::timeout(config.request_timeout + Duration::from_secs(5), drained)
        .await
        .is_err()
    {
        // Unanswered writes stay "attempted": they may or may not be in the log.
        deliveries.abort_all();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), producer.close()).await;
}

async fn consume(
    shared: Shared,
    bootstrap: Vec<String>,
    config: WorkloadConfig,
    n: usize,
    stopped: watch::Receiver<bool>,
) {
    // Where this consumer is in each partition: a new client picks up from here, so the
    // consumer's polls stay one sequence across reconnects.
    let mut positions: HashMap<u32, i64> = (0..config.partitions).map(|p| (p, 0)).collect();
    let partitions: Vec<(&str, u32)> = (0..config.partitions)
        .map(|p| (config.topic.as_str(), p))
        .collect();
    let error = |what: String| *observed(&shared).errors.consume.entry(what).or_default() += 1;
    for attempt in 0.. {
        if *stopped.borrow() {
            return;
        }
        let consumer_config = ConsumerConfig {
            brokers: rotated(&bootstrap, attempt + n),
            tls: config.tls.clone(),
            ..ConsumerConfig::default()
        };
        let mut consumer =
            match tokio::time::timeout(CONNECT_TIMEOUT, Consumer::connect(consumer_config)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    error(format!("connect: {}", kind(&e)));
                    tokio::time::sleep(ERROR_BACKOFF).await;
                    continue;
                }
                Err(_) => {
                    error("connect: timeout".into());
                    continue;
                }
            };
        consumer.assign(&partitions);
        for (&partition, &offset) in &positions {
            if let Err(e) = consumer
                .seek(&config.topic, partition, SeekTo::Offset(offset))
                .await
            {
                error(format!("seek: {}", kind(&e)));
            }
        }
        // Polls are never cancelled (a cancelled poll could drop records it had taken).
        while !*stopped.borrow() {
            match consumer.poll(POLL_RECORDS, POLL_WAIT).await {
                Ok(records) => {
                    let mut o = observed(&shared);
                    for r in records {
                        positions.insert(r.partition, r.offset + 1);
                        let value = r
                            .value
                            .as_deref()
                            .map(String::from_utf8_lossy)
                            .unwrap_or_default();
                        o.consumed[n].push(Record::new(r.partition, r.offset, value));
                    }
                }
                Err(e) => {
                    error(kind(&e));
                    tokio::time::sleep(ERROR_BACKOFF).await;
                    break;
                }
            }
        }
    }
}
