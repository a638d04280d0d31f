//! The queue checker (docs/queues.md § How it is checked) on real processes: three
//! `weir serve` processes, a topic of 3 partitions (replication factor 3,
//! `min.insync.replicas=2`), a producer writing throughout (every tenth record with a
//! `weir-deliver-at` a second and a half ahead), and 4 share consumers (weir-client's
//! `ShareConsumer`, explicit acknowledgement) that at random accept, release with a
//! delay, reject, or crash holding their locks (a new consumer, a new member id, takes
//! the crashed one's place). The group locks records for 2 s, delivers each at most 4
//! times and names a dead-letter topic. Meanwhile the group's coordinator is SIGKILLed
//! and restarted, then another broker is paused and resumed.
//!
//! Checked from what the clients saw:
//! - every record whose produce was acknowledged is ACCEPTed (acknowledged without
//!   "not held") or in the dead-letter topic: none lost;
//! - no record is handed to a second member while the first one's lock is valid, across
//!   faults too (a new coordinator keeps the locks the old one handed out: docs/queues.md
//!   § promise 3);
//! - no delivery count is over the limit, and a record's counts only grow (in the order
//!   its locks were taken, which its lock deadlines give);
//! - an accepted record is never delivered again;
//! - every dead letter carries headers naming a produced record (its value that
//!   record's; a produce that was not acknowledged may be in the log all the same, at an
//!   offset the producer never learnt), a known reason and a count within the limit, and
//!   every applied REJECT is among them;
//! - no record comes before its `weir-deliver-at`, or before the delay of a RELEASE.
//!
//! The counts are printed (and recorded in docs/queues.md). `WEIR_QUEUE_CHECK_RECORDS`
//! (default 600) runs a longer check.
//!
//! [`ShareCheck`] (the producer, the consumers and the check) is shared with the soak
//! (`soak.rs`), which runs it under its own faults.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use tokio::sync::watch;
use weir_client::{
    AckKind, AckMode, AckStatus, Acks, Admin, Consumer, ConsumerConfig, OffsetQuery, Producer,
    ProducerConfig, ProducerRecord, SeekTo, ShareConsumer, ShareConsumerConfig, ShareGroupSettings,
    ShareStart,
};
use weir_proto::v1 as pb;
use weir_proto::v1::groups_client::GroupsClient;
use weir_tests::cluster::{Cluster, ClusterConfig};
use weir_tests::nemesis::Rng;
use weir_tests::wait::{bounded, wait_for};

const TOPIC: &str = "jobs";
const DLQ: &str = "jobs-dlq";
const GROUP: &str = "queue-check";
const PARTITIONS: u32 = 3;
const CONSUMERS: usize = 4;
const LOCK: Duration = Duration::from_secs(2);
const LIMIT: u32 = 4;
const RELEASE_DELAY: Duration = Duration::from_millis(300);
const DELIVER_AHEAD: Duration = Duration::from_millis(1_500);
/// Records produced per second.
pub(crate) const RATE: u64 = 60;
/// How often this test's consumers crash before a record they were handed, per 1,000
/// records: one in ten, so most polls of 20 end in a crash and most records go out again
/// after a lock runs out. The soak's consumers crash less (`soak.rs`).
const CRASH_PER_MILLE: u64 = 100;
/// A lock's end as the client sees it may differ from the broker's by the time an
/// answer takes on loopback.
const CLOCK_SLACK_MS: i64 = 50;
/// Longest the finish waits for the records still open while no window start moves.
const FINISH_STALL: Duration = Duration::from_secs(120);
/// Longest the finish waits in all: the consumers drain what is left once the producer
/// is done, and a backlog a fault left takes its time.
const FINISH_MAX: Duration = Duration::from_secs(600);
/// Longest the read of the dead letters may take, tries again after a failed call
/// included.
const DLQ_READ_TIMEOUT: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One delivery as a member saw it.
#[derive(Debug, Clone)]
struct Delivery {
    /// Consumer instance (a crashed consumer's replacement is a new one).
    instance: usize,
    count: u32,
    received_ms: i64,
    lock_deadline_ms: i64,
}

/// An acknowledgement the broker applied.
#[derive(Debug, Clone, Copy)]
struct Applied {
    instance: usize,
    kind: AckKind,
    /// When the request carrying it was sent, and when its answer came.
    sent_ms: i64,
    answered_ms: i64,
}

/// One acknowledgement outcome a client heard for a record.
#[derive(Debug, Clone)]
#[allow(dead_code)] // Read through Debug, in a problem's history.
struct Heard {
    instance: usize,
    kind: AckKind,
    /// "applied", "not held", "refused: ..." or "unknown: ...".
    status: String,
    sent_ms: i64,
    answered_ms: i64,
}

#[derive(Debug, Default)]
struct Log {
    /// Produced and acknowledged: value -> (partition, offset, deliver-at).
    produced: HashMap<String, (u32, i64, Option<i64>)>,
    /// Sent but not acknowledged (a fault): each may or may not be in the log, so may be
    /// delivered and dead-lettered, but is owed to no one.
    unacknowledged: HashSet<String>,
    deliveries: HashMap<(u32, i64), Vec<Delivery>>,
    applied: HashMap<(u32, i64), Vec<Applied>>,
    /// Records whose ACCEPT the broker applied.
    accepted: HashSet<(u32, i64)>,
    /// Every acknowledgement outcome the clients heard, by record: printed with a
    /// problem record's deliveries, so a failed check says what happened to it.
    heard: HashMap<(u32, i64), Vec<Heard>>,
    /// Records an ACCEPT was sent for whose outcome is unknown: the call failed, or it
    /// answered "not held" in a fault or to a retried call (a retry after a lost answer
    /// says so of what the first try applied).
    ambiguous: HashSet<(u32, i64)>,
    /// Acknowledgements of any kind whose outcome is unknown (the call failed, or a
    /// retried call answered "not held", which a first try that was applied makes it
    /// say): each may have ended its sender's lock when it was sent.
    maybe_applied: HashMap<(u32, i64), Vec<Applied>>,
    crashes: u64,
    /// Fault windows: [start, end) in wall ms, widened by a lock duration at the end.
    faults: Vec<(i64, i64)>,
    /// A fault is under way (its window is added when it ends).
    fault_open: bool,
    /// Polls that failed, and the last failure (wall ms, slot, error): what a stall
    /// looked like from the consumers' side.
    polls_failed: u64,
    last_poll_error: Option<(i64, usize, String)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_consumers_lose_nothing_and_never_share_a_lock_through_kills_and_pauses() {
    // Waiting for the other cluster tests of this binary is not the test's time.
    let _serial = weir_tests::exclusive().await;
    bounded(Duration::from_secs(300), run())
        .await
        .expect("queue check");
}

async fn run() -> anyhow::Result<()> {
    let records: u64 = std::env::var("WEIR_QUEUE_CHECK_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let mut cluster = Cluster::start(ClusterConfig::default()).await?;
    let check = ShareCheck::start(&cluster, records, CRASH_PER_MILLE).await?;

    // The faults: the coordinator killed and restarted, then another broker paused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let coordinator = share_coordinator(&cluster, GROUP).await?;
    let fault_start = check.fault_started();
    cluster.kill(coordinator)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(coordinator).await?;
    check.fault_ended(fault_start);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paused = cluster
        .ids()
        .into_iter()
        .find(|&id| id != coordinator)
        .expect("three nodes");
    let fault_start = check.fault_started();
    cluster.pause(paused)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.resume(paused)?;
    check.fault_ended(fault_start);

    check.finish(&cluster).await?;
    cluster.finish();
    Ok(())
}

/// A record out for delivery stays with its member while the group's share coordinator
/// moves (docs/queues.md, promise 3): a planned move (its broker stops: controlled
/// shutdown) and a crash (SIGKILL). Another member of the group gets none of the held
/// records from the new coordinators, and the holder's ACCEPTs, sent after both moves,
/// are all applied; nothing comes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_coordinator_that_moves_keeps_the_locks_it_handed_out() {
    let _serial = weir_tests::exclusive().await;
    bounded(Duration::from_secs(240), locks_across_moves())
        .await
        .expect("locks kept across coordinator moves");
}

async fn locks_across_moves() -> anyhow::Result<()> {
    const GROUP: &str = "locks-kept";
    const TOPIC: &str = "held";
    const RECORDS: usize = 10;
    // Each step is printed with its time, so a run that hits the test's bound shows
    // (with --nocapture, or in the failure's output) which step it waited in.
    let began = tokio::time::Instant::now();
    let step = |what: &str| eprintln!("locks across moves: {what} at {:?}", began.elapsed());
    let mut cluster = Cluster::start(ClusterConfig::default()).await?;
    cluster.create_topic(TOPIC, 1, 3, 2).await?;
    let settings = ShareGroupSettings {
        // Longer than the test: no lock runs out by itself.
        lock_duration: Some(Duration::from_secs(300)),
        delivery_count_limit: None,
        dead_letter_topic: None,
        filter: None,
        start: None,
    };
    let (_admin, producer) = configure_group(&cluster, GROUP, &settings).await?;
    for i in 0..RECORDS {
        producer
            .send(ProducerRecord::new(TOPIC, format!("job-{i}")).partition(0))
            .await?
            .await?;
    }
    let member = |id: &str| ShareConsumerConfig {
        brokers: cluster.bootstrap(),
        member_id: Some(id.to_owned()),
        start: ShareStart::Earliest,
        ack_mode: AckMode::Explicit,
        max_records: RECORDS as u32,
        ..ShareConsumerConfig::new(GROUP, vec![TOPIC.to_owned()])
    };
    let mut holder = ShareConsumer::connect(member("holder")).await?;
    let held = loop {
        let got = holder.poll(Duration::from_secs(1)).await?;
        if !got.is_empty() {
            break got;
        }
    };
    let held_offsets: Vec<i64> = held.iter().map(|r| r.offset).collect();
    step(&format!("the holder has {} records", held.len()));
    // The other member takes (and accepts) whatever else there is.
    let mut other = ShareConsumer::connect(member("other")).await?;

    // After each move, the other member asks the new coordinator for records for 5 s:
    // none of the holder's comes.
    for planned in [true, false] {
        let coordinator = share_coordinator(&cluster, GROUP).await?;
        step(&format!(
            "moving the coordinator off broker {coordinator} ({})",
            if planned { "SIGTERM" } else { "kill -9" }
        ));
        if planned {
            cluster
                .terminate(coordinator, Duration::from_secs(30))
                .await?;
        } else {
            cluster.kill(coordinator)?;
        }
        let moved = wait_for(
            Duration::from_secs(30),
            "a new share coordinator",
            || async {
                let now = share_coordinator(&cluster, GROUP).await.ok()?;
                (now != coordinator).then_some(now)
            },
        )
        .await?;
        step(&format!("broker {moved} coordinates"));
        let mut answers = 0;
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < until {
            let Ok(got) = other.poll(Duration::from_millis(500)).await else {
                continue;
            };
            answers += 1;
            let taken: Vec<i64> = got
                .iter()
                .map(|r| r.offset)
                .filter(|o| held_offsets.contains(o))
                .collect();
            ensure!(
                taken.is_empty(),
                "{} moved the coordinator from broker {coordinator} to {moved}: offsets \
                 {taken:?} went to another member while the holder's locks were valid",
                if planned { "a planned move" } else { "a crash" }
            );
            for r in &got {
                other.acknowledge(r, AckKind::Accept)?;
            }
        }
        ensure!(answers > 0, "the other member got no answer in 5 s");
        step(&format!(
            "{answers} answers to the other member; restarting {coordinator}"
        ));
        cluster.restart(coordinator).await?;
        cluster
            .wait_brokers_unfenced(Duration::from_secs(30))
            .await?;
        step("every broker unfenced");
    }

    // The holder finishes its work: every ACCEPT is applied.
    for r in &held {
        holder.acknowledge(r, AckKind::Accept)?;
    }
    let outcomes = holder.commit().await?;
    step("the holder's ACCEPTs answered");
    let applied: usize = outcomes
        .iter()
        .map(|o| match &o.status {
            AckStatus::Applied { not_held, .. } => {
                (o.last_offset - o.first_offset + 1) as usize - not_held.len()
            }
            _ => 0,
        })
        .sum();
    ensure!(
        applied == held.len(),
        "{applied} of {} ACCEPTs applied: {outcomes:?}",
        held.len()
    );
    other.commit().await?;
    let again = other.poll(Duration::from_secs(2)).await?;
    ensure!(
        again.is_empty(),
        "accepted records delivered again: {again:?}"
    );
    cluster.finish();
    Ok(())
}

/// The queue check running on a cluster: its producer (`records` records at [`RATE`] per
/// second), its consumers, and what they saw. Shared with the soak (`soak.rs`), which
/// marks its own faults with [`ShareCheck::fault_started`] and
/// [`ShareCheck::fault_ended`].
pub(crate) struct ShareCheck {
    admin: Admin,
    log: Arc<Mutex<Log>>,
    stop: watch::Sender<bool>,
    load: tokio::task::JoinHandle<anyhow::Result<u64>>,
    consumers: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl ShareCheck {
    /// Creates the topics and the group and starts the producer and the consumers, which
    /// crash before a record they were handed `crash_per_mille` times in 1,000.
    pub(crate) async fn start(
        cluster: &Cluster,
        records: u64,
        crash_per_mille: u64,
    ) -> anyhow::Result<ShareCheck> {
        cluster.create_topic(TOPIC, PARTITIONS, 3, 2).await?;
        cluster.create_topic(DLQ, 1, 3, 2).await?;
        let settings = ShareGroupSettings {
            lock_duration: Some(LOCK),
            delivery_count_limit: Some(LIMIT),
            dead_letter_topic: Some(DLQ.to_owned()),
            filter: None,
            start: None,
        };
        let (admin, producer) = configure_group(cluster, GROUP, &settings).await?;
        let log = Arc::new(Mutex::new(Log::default()));
        let (stop, stopped) = watch::channel(false);
        let load = tokio::spawn(produce(producer, records, log.clone()));
        let mut consumers = Vec::new();
        for slot in 0..CONSUMERS {
            consumers.push(tokio::spawn(consume(
                cluster.bootstrap(),
                slot,
                crash_per_mille,
                log.clone(),
                stopped.clone(),
            )));
        }
        Ok(ShareCheck {
            admin,
            log,
            stop,
            load,
            consumers,
        })
    }

    /// A fault begins now: returns its start, for [`ShareCheck::fault_ended`].
    pub(crate) fn fault_started(&self) -> i64 {
        lock(&self.log).fault_open = true;
        now_ms()
    }

    /// The fault that began at `start` is healed.
    pub(crate) fn fault_ended(&self, start: i64) {
        end_fault(&self.log, start);
    }

    /// How the consumers are doing, a line: deliveries and ACCEPTs so far, how long ago
    /// the last delivery came, and the polls that failed (the last one's error).
    pub(crate) fn progress(&self) -> String {
        progress(&self.log)
    }

    /// The group's windows as its coordinator describes them now, a line.
    pub(crate) async fn windows(&self) -> String {
        match self.admin.describe_share_group(GROUP).await {
            Ok(d) => d
                .partitions
                .iter()
                .map(|p| {
                    format!(
                        "p{} [{}, {}) hw {} available {} delayed {} acquired {} dlq-pending {} \
                         oldest {:?}",
                        p.partition,
                        p.start_offset,
                        p.end_offset,
                        p.high_watermark,
                        p.available,
                        p.delayed,
                        p.acquired,
                        p.archived_pending,
                        p.oldest_unfinished_age
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            Err(e) => format!("describe failed: {e}"),
        }
    }

    /// Waits for the producer to finish, then until the broker says every record is
    /// finished, stops the consumers and checks what they saw; returns the summary.
    pub(crate) async fn finish(self, cluster: &Cluster) -> anyhow::Result<String> {
        let produced = self.load.await.context("the producer task")??;
        ensure!(produced > 0, "nothing was produced");
        // Until the broker says every record is finished (each partition's window start
        // at its high watermark, no dead-letter copy pending); the consumers keep going.
        let admin = &self.admin;
        // What the broker said last, for the message if it never says "finished".
        let mut last_seen;
        // The windows' starts, summed: the check waits while they move, and gives up
        // once they stood still for FINISH_STALL (or after FINISH_MAX in all).
        let mut starts_seen = i64::MIN;
        let began = tokio::time::Instant::now();
        let mut moved = began;
        let finished = loop {
            match admin.describe_share_group(GROUP).await {
                Ok(d) => {
                    let done = d.partitions.len() == PARTITIONS as usize
                        && d.partitions.iter().all(|p| {
                            p.start_offset == p.high_watermark
                                && p.acquired == 0
                                && p.archived_pending == 0
                        });
                    if done {
                        break Ok(d);
                    }
                    let starts = d.partitions.iter().map(|p| p.start_offset).sum();
                    if starts > starts_seen {
                        starts_seen = starts;
                        moved = tokio::time::Instant::now();
                    }
                    last_seen = format!("{:?}", d.partitions);
                }
                Err(e) => last_seen = format!("describe failed: {e}"),
            }
            let why = if moved.elapsed() >= FINISH_STALL {
                format!("no window start moved for {FINISH_STALL:?}")
            } else if began.elapsed() >= FINISH_MAX {
                format!("not finished within {FINISH_MAX:?}")
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            break Err(anyhow::anyhow!(
                "every record finished: {why}; the group's partitions as last described: \
                 {last_seen}; {}",
                progress(&self.log)
            ));
        };
        self.stop.send_replace(true);
        for c in self.consumers {
            c.await.context("a consumer task")??;
        }
        let described = finished?;
        let dead = read_dead_letters(cluster).await?;
        let window_starts: HashMap<u32, i64> = described
            .partitions
            .iter()
            .map(|p| (p.partition, p.start_offset))
            .collect();
        let log = lock(&self.log);
        check(&log, &dead, &window_starts)
    }
}

/// [`ShareCheck::progress`].
fn progress(log: &Mutex<Log>) -> String {
    let l = lock(log);
    let now = now_ms();
    let last_delivery = l.deliveries.values().flatten().map(|d| d.received_ms).max();
    let ago = |at: i64| format!("{:.1} s ago", (now - at) as f64 / 1e3);
    format!(
        "share group: {} deliveries, {} accepted, last delivery {}, {} polls failed{}",
        l.deliveries.values().map(Vec::len).sum::<usize>(),
        l.accepted.len(),
        last_delivery.map_or_else(|| "never".to_owned(), ago),
        l.polls_failed,
        l.last_poll_error
            .as_ref()
            .map(|(at, slot, e)| format!(" (last {}, slot {slot}: {e})", ago(*at)))
            .unwrap_or_default()
    )
}

/// Sets share group `group`'s own settings (retried while the cluster settles), and
/// returns the admin client and an `acks=all` producer for the test's records.
async fn configure_group(
    cluster: &Cluster,
    group: &str,
    settings: &ShareGroupSettings,
) -> anyhow::Result<(Admin, Producer)> {
    let admin = Admin::connect(&cluster.bootstrap()).await?;
    wait_for(Duration::from_secs(30), "the group configured", || async {
        admin.configure_share_group(group, settings).await.ok()
    })
    .await?;
    let producer = Producer::connect(ProducerConfig {
        brokers: cluster.bootstrap(),
        acks: Acks::All,
        ..ProducerConfig::default()
    })
    .await?;
    Ok((admin, producer))
}

/// The broker coordinating share group `group`, asked of each broker in turn (any of
/// them may be down).
async fn share_coordinator(cluster: &Cluster, group: &str) -> anyhow::Result<i32> {
    let bootstrap = cluster.bootstrap();
    wait_for(Duration::from_secs(20), "the share coordinator", || async {
        for address in &bootstrap {
            let Ok(mut client) = GroupsClient::connect(format!("http://{address}")).await else {
                continue;
            };
            let found = client
                .find_coordinator(pb::FindCoordinatorRequest {
                    group_id: group.into(),
                    r#type: pb::CoordinatorType::Share as i32,
                })
                .await;
            if let Ok(found) = found
                && found.get_ref().broker_id > 0
            {
                return Some(found.get_ref().broker_id);
            }
        }
        None
    })
    .await
}

async fn produce(producer: Producer, records: u64, log: Arc<Mutex<Log>>) -> anyhow::Result<u64> {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    let mut pending = Vec::new();
    for i in 0..records {
        tick.tick().await;
        let value = format!("job-{i}");
        let mut record =
            ProducerRecord::new(TOPIC, value.clone()).partition((i % u64::from(PARTITIONS)) as u32);
        let deliver_at = (i % 10 == 0).then(|| now_ms() + DELIVER_AHEAD.as_millis() as i64);
        if let Some(at) = deliver_at {
            record = record.header("weir-deliver-at", at.to_string());
        }
        pending.push((value, deliver_at, producer.send(record).await));
    }
    let mut acknowledged = 0;
    for (value, deliver_at, sent) in pending {
        // A produce that failed (a fault) is not owed to anyone: only acknowledged ones
        // are checked.
        let acked = match sent {
            Ok(delivery) => delivery.wait().await.ok(),
            Err(_) => None,
        };
        let mut l = lock(&log);
        match acked {
            Some(meta) => {
                l.produced
                    .insert(value, (meta.partition, meta.offset, deliver_at));
                acknowledged += 1;
            }
            None => {
                l.unacknowledged.insert(value);
            }
        }
    }
    producer.close().await;
    Ok(acknowledged)
}

/// One consumer slot: a consumer that takes, acknowledges at random, and now and then
/// crashes (is dropped holding its records) and is replaced by a new one.
async fn consume(
    brokers: Vec<String>,
    slot: usize,
    crash_per_mille: u64,
    log: Arc<Mutex<Log>>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut rng = Rng::new(0x5eed_0000 + slot as u64);
    let mut instance = slot;
    let connect = |instance: usize| {
        let brokers = brokers.clone();
        async move {
            let _ = instance;
            ShareConsumer::connect(ShareConsumerConfig {
                brokers,
                start: ShareStart::Earliest,
                ack_mode: AckMode::Explicit,
                max_records: 20,
                ..ShareConsumerConfig::new(GROUP, vec![TOPIC.to_owned()])
            })
            .await
        }
    };
    // Connecting is retried, here as after a crash: a fault under way when the check
    // starts (the soak's begin at once) is no verdict, and a slot given up on would leave
    // its share of the records to the others unnoticed until the end (an hour's soak
    // failed so: "the connection to broker ... broke").
    let reconnect = async |instance: usize| loop {
        match connect(instance).await {
            Ok(c) => break Some(c),
            Err(_) => {
                if *stop.borrow() {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let Some(mut consumer) = reconnect(instance).await else {
        return Ok(());
    };
    while !*stop.borrow() {
        let sent_ms = now_ms();
        let got = match consumer.poll(Duration::from_millis(500)).await {
            Ok(got) => got,
            // Faults make calls fail for a while; what they carried may or may not have
            // been applied, so it is not counted.
            Err(e) => {
                let answered_ms = now_ms();
                {
                    let mut l = lock(&log);
                    l.polls_failed += 1;
                    l.last_poll_error = Some((answered_ms, slot, format!("{e:#}")));
                }
                record_outcomes(&mut consumer, instance, sent_ms, answered_ms, &log);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let answered_ms = now_ms();
        record_outcomes(&mut consumer, instance, sent_ms, answered_ms, &log);
        let mut crash = false;
        {
            let mut l = lock(&log);
            for r in &got {
                l.deliveries
                    .entry((r.partition, r.offset))
                    .or_default()
                    .push(Delivery {
                        instance,
                        count: r.delivery_count,
                        received_ms: answered_ms,
                        lock_deadline_ms: r.lock_deadline_ms,
                    });
            }
        }
        for r in &got {
            if rng.below(1_000) < crash_per_mille {
                crash = true;
                break;
            }
            let kind = match rng.below(90) {
                0..70 => AckKind::Accept,
                70..85 => AckKind::ReleaseAfter(RELEASE_DELAY),
                _ => AckKind::Reject,
            };
            consumer.acknowledge(r, kind)?;
        }
        if crash {
            // Dropped without a word: its locks run out on the broker.
            drop(consumer);
            lock(&log).crashes += 1;
            instance += CONSUMERS;
            tokio::time::sleep(Duration::from_millis(100)).await;
            consumer = match reconnect(instance).await {
                Some(c) => c,
                None => return Ok(()),
            };
        }
    }
    let sent_ms = now_ms();
    if let Ok(outcomes) = consumer.close().await {
        let answered_ms = now_ms();
        apply_outcomes(&outcomes, instance, sent_ms, answered_ms, &log);
    }
    Ok(())
}

/// Takes the outcomes of the acknowledgements `consumer` sent with its last call.
fn record_outcomes(
    consumer: &mut ShareConsumer,
    instance: usize,
    sent_ms: i64,
    answered_ms: i64,
    log: &Mutex<Log>,
) {
    let outcomes = consumer.take_ack_outcomes();
    apply_outcomes(&outcomes, instance, sent_ms, answered_ms, log);
}

/// Marks what the broker applied, by the outcomes it answered.
fn apply_outcomes(
    outcomes: &[weir_client::AckOutcome],
    instance: usize,
    sent_ms: i64,
    answered_ms: i64,
    log: &Mutex<Log>,
) {
    let mut l = lock(log);
    let in_fault_now = l.fault_open || in_fault(&l.faults, sent_ms, answered_ms);
    for o in outcomes {
        for offset in o.first_offset..=o.last_offset {
            let status = match &o.status {
                AckStatus::Applied { not_held, retried } if not_held.contains(&offset) => {
                    format!("not held (retried: {retried})")
                }
                AckStatus::Applied { .. } => "applied".to_owned(),
                AckStatus::Refused(e) => format!("refused: {e}"),
                AckStatus::Unknown(e) => format!("unknown: {e}"),
            };
            l.heard
                .entry((o.partition, offset))
                .or_default()
                .push(Heard {
                    instance,
                    kind: o.kind,
                    status,
                    sent_ms,
                    answered_ms,
                });
        }
        let this = Applied {
            instance,
            kind: o.kind,
            sent_ms,
            answered_ms,
        };
        let accept = matches!(o.kind, AckKind::Accept);
        let (not_held, retried, answered) = match &o.status {
            AckStatus::Applied { not_held, retried } => (not_held.as_slice(), *retried, true),
            AckStatus::Unknown(_) => (&[][..], false, false),
            AckStatus::Refused(_) => continue,
        };
        for offset in o.first_offset..=o.last_offset {
            let key = (o.partition, offset);
            if answered && !not_held.contains(&offset) {
                l.applied.entry(key).or_default().push(this);
                if accept {
                    l.accepted.insert(key);
                }
                continue;
            }
            // The call failed, or answered "not held" to a retry, which is what a first
            // try that was applied leaves (the client says so): it may have been applied
            // when sent. In a fault "not held" may be a retry's too (a coordinator moving
            // back to its preferred broker after the faults).
            let unknown = !answered || retried;
            if unknown {
                l.maybe_applied.entry(key).or_default().push(this);
            }
            if accept && (unknown || in_fault_now) {
                l.ambiguous.insert(key);
            }
        }
    }
}

/// A dead letter's source and headers.
#[derive(Debug)]
struct DeadLetter {
    partition: u32,
    offset: i64,
    reason: String,
    count: u32,
    source_topic: String,
    /// The copy's value: the source record's.
    value: String,
}

async fn read_dead_letters(cluster: &Cluster) -> anyhow::Result<Vec<DeadLetter>> {
    // A call that fails (a connection a broker reset just after the soak's faults, say)
    // is a harness error, not a verdict: the whole read is made again.
    let last_error = Mutex::new(None);
    wait_for(DLQ_READ_TIMEOUT, "the dead letters read", || async {
        read_dead_letters_once(cluster)
            .await
            .map_err(|e| *lock(&last_error) = Some(format!("{e:#}")))
            .ok()
    })
    .await
    .with_context(|| {
        format!(
            "the last read failed: {}",
            lock(&last_error).take().unwrap_or_default()
        )
    })
}

/// The dead letters from the topic's start to its end as listed when the read begins.
async fn read_dead_letters_once(cluster: &Cluster) -> anyhow::Result<Vec<DeadLetter>> {
    let admin = Admin::connect(&cluster.bootstrap()).await?;
    let end = admin
        .list_offsets(DLQ, &[(0, OffsetQuery::Latest)])
        .await?
        .first()
        .map_or(0, |l| l.offset);
    let mut consumer = Consumer::connect(ConsumerConfig {
        brokers: cluster.bootstrap(),
        ..ConsumerConfig::default()
    })
    .await?;
    consumer.assign(&[(DLQ, 0)]);
    consumer.seek(DLQ, 0, SeekTo::Beginning).await?;
    let mut out = Vec::new();
    let give_up = tokio::time::Instant::now() + DLQ_READ_TIMEOUT / 3;
    loop {
        // The position passes what a batch holds, control batches included.
        let at = consumer.position(DLQ, 0).unwrap_or(0);
        if at >= end {
            return Ok(out);
        }
        ensure!(
            tokio::time::Instant::now() < give_up,
            "read only to offset {at} of {end}"
        );
        let got = consumer.poll(1_000, Duration::from_millis(300)).await?;
        for r in got {
            let header = |key: &str| {
                r.headers
                    .iter()
                    .find(|h| h.key == key)
                    .and_then(|h| h.value.as_ref())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            out.push(DeadLetter {
                partition: header("weir-dlq-source-partition")
                    .parse()
                    .unwrap_or(u32::MAX),
                offset: header("weir-dlq-source-offset").parse().unwrap_or(-1),
                reason: header("weir-dlq-reason"),
                count: header("weir-dlq-delivery-count")
                    .parse()
                    .unwrap_or(u32::MAX),
                source_topic: header("weir-dlq-source-topic"),
                value: r
                    .value
                    .as_deref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default(),
            });
        }
    }
}

/// Closes the fault that began at `start`: its window reaches a lock duration past now
/// (locks given before it may be forfeited until then).
fn end_fault(log: &Mutex<Log>, start: i64) {
    let mut l = lock(log);
    l.faults.push((start, now_ms() + LOCK.as_millis() as i64));
    l.fault_open = false;
}

fn in_fault(faults: &[(i64, i64)], from: i64, to: i64) -> bool {
    faults.iter().any(|&(s, e)| from < e && to > s)
}

/// What the clients saw of one record, and the fault windows, for a problem's message.
fn history(log: &Log, key: &(u32, i64)) -> String {
    format!(
        "deliveries {:?}; acknowledgement outcomes {:?}; fault windows {:?}",
        log.deliveries
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default(),
        log.heard.get(key).map(Vec::as_slice).unwrap_or_default(),
        log.faults
    )
}

fn check(
    log: &Log,
    dead: &[DeadLetter],
    window_starts: &HashMap<u32, i64>,
) -> anyhow::Result<String> {
    let by_source: HashSet<(u32, i64)> = log.produced.values().map(|&(p, o, _)| (p, o)).collect();
    let deliver_at: HashMap<(u32, i64), i64> = log
        .produced
        .values()
        .filter_map(|&(p, o, at)| at.map(|at| ((p, o), at)))
        .collect();
    let mut problems = Vec::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for d in dead {
        *reasons.entry(d.reason.clone()).or_default() += 1;
        // A record whose produce was not acknowledged may be in the log all the same; its
        // dead letter names an offset the producer never learnt, and carries its value.
        let known = by_source.contains(&(d.partition, d.offset))
            // Each value is sent once: acknowledged or not, never both.
            || log.unacknowledged.contains(&d.value);
        let copy_of_its_source = log
            .produced
            .get(&d.value)
            .is_none_or(|&(p, o, _)| (p, o) == (d.partition, d.offset));
        if d.source_topic != TOPIC || !known || !copy_of_its_source {
            problems.push(format!("a dead letter names no produced record: {d:?}"));
        }
        if ![
            "rejected",
            "delivery-limit",
            "lock-expired-at-limit",
            "unknown",
        ]
        .contains(&d.reason.as_str())
            || d.count == 0
            || d.count > LIMIT
        {
            problems.push(format!("a dead letter's headers are wrong: {d:?}"));
        }
    }
    let in_dlq: HashSet<(u32, i64)> = dead.iter().map(|d| (d.partition, d.offset)).collect();
    // Finished one way only: an accepted record is never archived, nor the reverse. (A
    // dead letter may be copied twice: its copy is made before the record is marked
    // copied, and a failover in between makes it again.)
    for key in log.accepted.intersection(&in_dlq) {
        problems.push(format!(
            "{key:?}: accepted and dead-lettered; {}",
            history(log, key)
        ));
    }
    let mut redeliveries = 0u64;
    let mut lapsed_on_arrival = 0u64;
    for (key, deliveries) in &log.deliveries {
        // In the order the coordinator acquired them: each lock runs the group's lock
        // duration from its acquisition, so deadlines order acquisitions. (Arrival order
        // is not theirs: an answer waits for its acquisition's write to be durable,
        // seconds under faults, and a later acquisition's answer can overtake it or
        // arrive in the same millisecond.)
        let mut sorted = deliveries.clone();
        sorted.sort_by_key(|d| (d.lock_deadline_ms, d.received_ms));
        redeliveries += sorted.len().saturating_sub(1) as u64;
        lapsed_on_arrival += sorted
            .iter()
            .filter(|d| d.received_ms > d.lock_deadline_ms + CLOCK_SLACK_MS)
            .count() as u64;
        let applied = log.applied.get(key).map_or(&[][..], Vec::as_slice);
        for w in sorted.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if b.count <= a.count {
                problems.push(format!(
                    "{key:?}: delivery count {} after {}; {}",
                    b.count,
                    a.count,
                    history(log, key)
                ));
            }
            // The lock of `a` ended at its deadline, or when its holder's RELEASE/REJECT
            // was applied (or sent, if its outcome is unknown), whichever came first.
            let maybe = log.maybe_applied.get(key).map_or(&[][..], Vec::as_slice);
            let released = applied
                .iter()
                .chain(maybe)
                .filter(|x| x.instance == a.instance && x.answered_ms >= a.received_ms)
                .map(|x| x.sent_ms)
                .min();
            let end = released.map_or(a.lock_deadline_ms, |r| r.min(a.lock_deadline_ms));
            if b.received_ms + CLOCK_SLACK_MS < end {
                problems.push(format!(
                    "{key:?}: delivered to {} at {} while {}'s lock held until {end}; {}",
                    b.instance,
                    b.received_ms,
                    a.instance,
                    history(log, key)
                ));
            }
        }
        for d in &sorted {
            if d.count > LIMIT {
                problems.push(format!(
                    "{key:?}: delivered {} times (limit {LIMIT})",
                    d.count
                ));
            }
        }
        let first_received = sorted.iter().map(|d| d.received_ms).min().unwrap_or(0);
        if let Some(at) = deliver_at.get(key)
            && first_received < *at
        {
            problems.push(format!(
                "{key:?}: delivered at {first_received} before its time {at}"
            ));
        }
        // After an applied ACCEPT nothing more; after an applied RELEASE not before its
        // delay.
        for x in applied {
            let later = sorted.iter().filter(|d| d.received_ms > x.answered_ms);
            match x.kind {
                AckKind::Accept => {
                    if let Some(d) = later.clone().next() {
                        problems.push(format!(
                            "{key:?}: delivered again at {} after its ACCEPT; {}",
                            d.received_ms,
                            history(log, key)
                        ));
                    }
                }
                AckKind::ReleaseAfter(delay) => {
                    let due = x.sent_ms + delay.as_millis() as i64;
                    if let Some(d) = later.clone().find(|d| d.received_ms < due) {
                        problems.push(format!(
                            "{key:?}: back at {} before its delay ended at {due}",
                            d.received_ms
                        ));
                    }
                }
                AckKind::Reject if !in_dlq.contains(key) => {
                    problems.push(format!(
                        "{key:?}: rejected but not dead-lettered; {}",
                        history(log, key)
                    ));
                }
                _ => {}
            }
        }
    }
    let mut ambiguous = 0u64;
    for key in &by_source {
        if log.accepted.contains(key) || in_dlq.contains(key) {
            continue;
        }
        // An ACCEPT whose answer was lost: the broker must have finished the record.
        if log.ambiguous.contains(key) && window_starts.get(&key.0).is_some_and(|&s| s > key.1) {
            ambiguous += 1;
            continue;
        }
        problems.push(format!(
            "{key:?}: produced and acknowledged, never accepted or dead-lettered; {}",
            history(log, key)
        ));
    }
    // The longest the consumers went without a delivery (the records' first deliveries
    // and redeliveries alike).
    let mut received: Vec<i64> = log
        .deliveries
        .values()
        .flatten()
        .map(|d| d.received_ms)
        .collect();
    received.sort_unstable();
    let longest_stall_ms = received.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let summary = format!(
        "queue check: {} records produced and acknowledged, {} accepted ({} more whose ACCEPT's \
         answer was lost), {} dead-lettered ({} copies) {:?}, {} deliveries ({} redeliveries, \
         {} arrived after their lock ran out), {} consumer crashes, {} faults, longest time \
         without a delivery {:.1} s",
        by_source.len(),
        log.accepted.len(),
        ambiguous,
        in_dlq.len(),
        dead.len(),
        reasons,
        log.deliveries.values().map(Vec::len).sum::<usize>(),
        redeliveries,
        lapsed_on_arrival,
        log.crashes,
        log.faults.len(),
        longest_stall_ms as f64 / 1e3
    );
    println!("{summary}");
    // Printed here too: the cluster's logs, dumped when the test fails, come between this
    // and the panic message, and a long CI log may be cut there.
    for problem in &problems {
        println!("queue check problem: {problem}");
    }
    ensure!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    Ok(summary)
}
