//! Consumer groups against a real broker on 127.0.0.1:0: members sharing partitions
//! through joins and crashes with nothing skipped and no partition owned twice, commits
//! surviving a broker restart, independent groups, regex subscriptions, manual commits,
//! pause/resume, and the group admin calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use weir_client::{
    Admin, ClientError, ConsumerRecord, GroupConsumer, GroupConsumerConfig, GroupState,
    OffsetReset, Producer, ProducerConfig, ProducerRecord, Rebalance, RebalanceListener,
    ResetOffsetsTo, SeekTo, TopicPartition,
};

/// Longest any test waits for a condition.
const WAIT: Duration = Duration::from_secs(60);
/// The broker's heartbeat interval and session timeout for these tests: short, so joins
/// settle and crashed members are removed quickly.
const HEARTBEAT_INTERVAL_MS: u64 = 200;
const SESSION_TIMEOUT_MS: u64 = 2_000;

struct Broker {
    running: Option<weir_server::RunningServer>,
    brokers: Vec<String>,
    dir: tempfile::TempDir,
}

impl Broker {
    async fn start() -> Result<Broker> {
        Broker::start_in(tempfile::tempdir()?).await
    }

    async fn start_in(dir: tempfile::TempDir) -> Result<Broker> {
        let running = weir_server::start(server_config(dir.path())).await?;
        let brokers = vec![running.addr.to_string()];
        Ok(Broker {
            running: Some(running),
            brokers,
            dir,
        })
    }

    /// Stops the broker and starts another on the same data directory (a new port).
    async fn restart(mut self) -> Result<Broker> {
        self.running.take().expect("running").shutdown().await?;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir()?);
        Broker::start_in(dir).await
    }

    async fn admin(&self) -> Result<Admin> {
        Ok(Admin::connect(&self.brokers).await?)
    }

    fn group_config(&self, group: &str) -> GroupConsumerConfig {
        GroupConsumerConfig {
            brokers: self.brokers.clone(),
            group_id: group.to_owned(),
            auto_commit_interval: Duration::from_millis(200),
            ..GroupConsumerConfig::default()
        }
    }

    async fn member(&self, group: &str, topics: &[&str]) -> Result<GroupConsumer> {
        let mut consumer = GroupConsumer::connect(self.group_config(group)).await?;
        consumer.subscribe(topics.iter().copied())?;
        Ok(consumer)
    }

    /// Produces `count` records to each partition of `topic`, valued `p:i`, and waits
    /// until all are acknowledged.
    async fn produce(&self, topic: &str, partitions: u32, from: usize, count: usize) -> Result<()> {
        let producer = Producer::connect(ProducerConfig {
            brokers: self.brokers.clone(),
            ..ProducerConfig::default()
        })
        .await?;
        let mut deliveries = Vec::new();
        for i in from..from + count {
            for p in 0..partitions {
                deliveries.push(
                    producer
                        .send(ProducerRecord::new(topic, format!("{p}:{i}")).partition(p))
                        .await?,
                );
            }
        }
        for delivery in deliveries {
            delivery.await?;
        }
        producer.close().await;
        Ok(())
    }

    async fn stop(mut self) -> Result<()> {
        self.running.take().expect("running").shutdown().await
    }
}

fn server_config(dir: &Path) -> weir_server::ServerConfig {
    weir_server::ServerConfig {
        kafka_listen: None,
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("address"),
        admin_listen: None,
        group_heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        group_session_timeout_ms: SESSION_TIMEOUT_MS,
        ..Default::default()
    }
}

/// Waits until `condition` holds, checking every 20 ms, failing after [`WAIT`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Polls until `count` records arrived.
async fn consume(consumer: &mut GroupConsumer, count: usize) -> Result<Vec<ConsumerRecord>> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        ensure!(
            Instant::now() < deadline,
            "only {} of {count} records arrived",
            out.len()
        );
        out.extend(
            consumer
                .poll(count - out.len(), Duration::from_millis(100))
                .await?,
        );
    }
    Ok(out)
}

/// Polls for `time`, returning what arrived.
async fn drain(consumer: &mut GroupConsumer, time: Duration) -> Result<Vec<ConsumerRecord>> {
    let until = Instant::now() + time;
    let mut out = Vec::new();
    while Instant::now() < until {
        out.extend(consumer.poll(1_000, Duration::from_millis(50)).await?);
    }
    Ok(out)
}

fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

// ---- The assignment timeline: who held which partition when. ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Assigned,
    Revoked,
    Lost,
    /// The test killed the member (no callback runs).
    Crashed,
}

#[derive(Debug, Clone)]
struct Event {
    member: usize,
    change: Change,
    epoch: i32,
    partitions: Vec<TopicPartition>,
    at: Instant,
}

#[derive(Debug, Clone)]
struct Delivery {
    member: usize,
    partition: u32,
    offset: i64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Timeline {
    events: Mutex<Vec<Event>>,
    deliveries: Mutex<Vec<Delivery>>,
}

impl Timeline {
    fn push(&self, member: usize, change: Change, rebalance: &Rebalance) {
        self.events.lock().unwrap().push(Event {
            member,
            change,
            epoch: rebalance.member_epoch,
            partitions: rebalance.partitions.clone(),
            at: Instant::now(),
        });
    }

    /// The partitions each member holds now, by the callbacks.
    fn holdings(&self) -> BTreeMap<usize, BTreeSet<TopicPartition>> {
        let mut held: BTreeMap<usize, BTreeSet<TopicPartition>> = BTreeMap::new();
        for e in self.events.lock().unwrap().iter() {
            let set = held.entry(e.member).or_default();
            match e.change {
                Change::Assigned => set.extend(e.partitions.iter().cloned()),
                Change::Revoked | Change::Lost => {
                    for p in &e.partitions {
                        set.remove(p);
                    }
                }
                Change::Crashed => set.clear(),
            }
        }
        held
    }

    /// What the group looks like, for a failed wait.
    fn describe(&self) -> String {
        let holdings: BTreeMap<usize, Vec<String>> = self
            .holdings()
            .into_iter()
            .map(|(m, set)| (m, set.iter().map(ToString::to_string).collect()))
            .collect();
        let mut missing: BTreeMap<u32, usize> = BTreeMap::new();
        let delivered = self.delivered();
        let mut last: BTreeMap<u32, i64> = BTreeMap::new();
        for &(p, o) in &delivered {
            let l = last.entry(p).or_insert(-1);
            if o > *l {
                *l = o;
            }
        }
        for (p, l) in &last {
            let have = delivered.iter().filter(|(q, _)| q == p).count();
            missing.insert(*p, (*l + 1) as usize - have);
        }
        format!(
            "holdings {holdings:?}; delivered {} (last offset per partition {last:?}, holes \
             {missing:?}); {} rebalance events",
            delivered.len(),
            self.events.lock().unwrap().len()
        )
    }

    fn delivered(&self) -> BTreeSet<(u32, i64)> {
        self.deliveries
            .lock()
            .unwrap()
            .iter()
            .map(|d| (d.partition, d.offset))
            .collect()
    }
}

/// One member's listener: records into the shared timeline under its number.
struct Recorder {
    member: usize,
    timeline: Arc<Timeline>,
}

impl RebalanceListener for Recorder {
    fn on_assigned(&self, rebalance: &Rebalance) {
        self.timeline.push(self.member, Change::Assigned, rebalance);
    }
    fn on_revoked(&self, rebalance: &Rebalance) {
        self.timeline.push(self.member, Change::Revoked, rebalance);
    }
    fn on_lost(&self, rebalance: &Rebalance) {
        self.timeline.push(self.member, Change::Lost, rebalance);
    }
}

/// A member polling in its own task until `stop`, recording what it got.
fn spawn_member(
    config: GroupConsumerConfig,
    topic: &str,
    member: usize,
    timeline: Arc<Timeline>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<()>> {
    let topic = topic.to_owned();
    tokio::spawn(async move {
        let mut consumer = GroupConsumer::connect(config).await?;
        consumer.set_rebalance_listener(Arc::new(Recorder {
            member,
            timeline: timeline.clone(),
        }));
        consumer.subscribe([topic])?;
        while !stop.load(Ordering::SeqCst) {
            // Small polls, so partitions interleave and rebalances land mid-stream.
            let records = consumer.poll(50, Duration::from_millis(50)).await?;
            let at = Instant::now();
            timeline
                .deliveries
                .lock()
                .unwrap()
                .extend(records.iter().map(|r| Delivery {
                    member,
                    partition: r.partition,
                    offset: r.offset,
                    at,
                }));
        }
        consumer.close().await?;
        Ok(())
    })
}

/// One member's hold of one partition, from its assignment to its revocation, loss or
/// crash.
#[derive(Debug, Clone)]
struct Hold {
    member: usize,
    start: Instant,
    end: Instant,
    /// How it ended.
    ended_by: Change,
    start_epoch: i32,
}

/// Every hold of every partition, by partition, in start order.
fn holds(timeline: &Timeline, end_of_test: Instant) -> BTreeMap<u32, Vec<Hold>> {
    let mut open: HashMap<(usize, u32), (Instant, i32)> = HashMap::new();
    let mut out: BTreeMap<u32, Vec<Hold>> = BTreeMap::new();
    let mut events = timeline.events.lock().unwrap().clone();
    events.sort_by_key(|e| e.at);
    for e in events {
        match e.change {
            Change::Assigned => {
                for p in &e.partitions {
                    let previous = open.insert((e.member, p.partition), (e.at, e.epoch));
                    assert!(previous.is_none(), "member {} assigned {p} twice", e.member);
                }
            }
            Change::Revoked | Change::Lost | Change::Crashed => {
                let partitions: Vec<u32> = if e.change == Change::Crashed {
                    open.keys()
                        .filter(|(m, _)| *m == e.member)
                        .map(|(_, p)| *p)
                        .collect()
                } else {
                    e.partitions.iter().map(|p| p.partition).collect()
                };
                for p in partitions {
                    if let Some((start, start_epoch)) = open.remove(&(e.member, p)) {
                        out.entry(p).or_default().push(Hold {
                            member: e.member,
                            start,
                            end: e.at,
                            ended_by: e.change,
                            start_epoch,
                        });
                    }
                }
            }
        }
    }
    for ((member, p), (start, start_epoch)) in open {
        out.entry(p).or_default().push(Hold {
            member,
            start,
            end: end_of_test,
            ended_by: Change::Revoked,
            start_epoch,
        });
    }
    for list in out.values_mut() {
        list.sort_by_key(|h| h.start);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_through_a_join_and_a_crash_and_nothing_is_skipped() -> Result<()>
{
    const PARTITIONS: u32 = 12;
    const PER_PHASE: usize = 40;
    let broker = Broker::start().await?;
    let admin = broker.admin().await?;
    admin
        .create_topic("events", PARTITIONS, 0, HashMap::new())
        .await?;
    let timeline = Arc::new(Timeline::default());
    let stop = Arc::new(AtomicBool::new(false));
    let config = broker.group_config("workers");
    let mut members: Vec<Option<tokio::task::JoinHandle<Result<()>>>> = (0..3)
        .map(|m| {
            Some(spawn_member(
                config.clone(),
                "events",
                m,
                timeline.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // Phase 1: three members split the twelve partitions.
    broker.produce("events", PARTITIONS, 0, PER_PHASE).await?;
    wait_until("three members holding all twelve partitions", || {
        let held = timeline.holdings();
        (0..3).all(|m| held.get(&m).is_some_and(|s| !s.is_empty()))
            && held.values().map(BTreeSet::len).sum::<usize>() == PARTITIONS as usize
    })
    .await
    .with_context(|| timeline.describe())?;
    wait_until("phase 1 delivered", || {
        timeline.delivered().len() == PARTITIONS as usize * PER_PHASE
    })
    .await
    .with_context(|| timeline.describe())?;

    // Phase 2: a fourth member joins and takes partitions from the others.
    members.push(Some(spawn_member(
        config.clone(),
        "events",
        3,
        timeline.clone(),
        stop.clone(),
    )));
    broker
        .produce("events", PARTITIONS, PER_PHASE, PER_PHASE)
        .await?;
    wait_until("the fourth member holding partitions", || {
        timeline.holdings().get(&3).is_some_and(|s| s.len() >= 2)
    })
    .await
    .with_context(|| timeline.describe())?;
    wait_until("phase 2 delivered", || {
        timeline.delivered().len() == PARTITIONS as usize * PER_PHASE * 2
    })
    .await
    .with_context(|| timeline.describe())?;

    // Phase 3: member 0 crashes (no close, no leave); after the session timeout its
    // partitions go to the others, from their last committed offsets.
    let crashed = 0;
    let task = members[crashed].take().expect("running");
    task.abort();
    let _ = task.await;
    timeline.events.lock().unwrap().push(Event {
        member: crashed,
        change: Change::Crashed,
        epoch: -1,
        partitions: Vec::new(),
        at: Instant::now(),
    });
    broker
        .produce("events", PARTITIONS, 2 * PER_PHASE, PER_PHASE)
        .await?;
    wait_until("every record delivered", || {
        timeline.delivered().len() == PARTITIONS as usize * PER_PHASE * 3
    })
    .await
    .with_context(|| timeline.describe())?;
    wait_until("the survivors holding all twelve partitions", || {
        let held = timeline.holdings();
        held.get(&crashed).is_none_or(BTreeSet::is_empty)
            && held.values().map(BTreeSet::len).sum::<usize>() == PARTITIONS as usize
    })
    .await
    .with_context(|| timeline.describe())?;
    stop.store(true, Ordering::SeqCst);
    for task in members.into_iter().flatten() {
        task.await??;
    }
    let end = Instant::now();

    // Every record, at least once.
    let total = PER_PHASE as i64 * 3;
    let delivered = timeline.delivered();
    for p in 0..PARTITIONS {
        for offset in 0..total {
            assert!(
                delivered.contains(&(p, offset)),
                "events/{p}@{offset} never delivered"
            );
        }
    }
    // No partition held by two members at once; every record delivered by a member
    // while it held the partition; in order within a hold; no gap at a handoff, and no
    // repeat after a graceful one.
    let holds = holds(&timeline, end);
    let deliveries = timeline.deliveries.lock().unwrap().clone();
    let mut handoffs = 0;
    for (p, list) in &holds {
        for pair in list.windows(2) {
            assert!(
                pair[0].end <= pair[1].start,
                "events/{p} held by members {} and {} at once: {:?}",
                pair[0].member,
                pair[1].member,
                pair
            );
        }
        let mut next_expected = 0_i64;
        let mut previous: Option<(&Hold, Option<i64>)> = None;
        for hold in list {
            let offsets: Vec<i64> = deliveries
                .iter()
                .filter(|d| {
                    d.partition == *p
                        && d.member == hold.member
                        && hold.start <= d.at
                        && d.at <= hold.end
                })
                .map(|d| d.offset)
                .collect();
            for pair in offsets.windows(2) {
                assert_eq!(
                    pair[1],
                    pair[0] + 1,
                    "events/{p} in order, without gaps: {offsets:?}"
                );
            }
            if let Some(&first) = offsets.first() {
                assert!(
                    first <= next_expected,
                    "events/{p}: member {} started at {first}, skipping from {next_expected}",
                    hold.member
                );
                if let Some((before, Some(last))) = previous
                    && before.ended_by == Change::Revoked
                {
                    assert_eq!(
                        first,
                        last + 1,
                        "events/{p}: after a graceful handoff from member {} (epoch {}), member {} \
                         resumes right after the last record",
                        before.member,
                        before.start_epoch,
                        hold.member
                    );
                    handoffs += 1;
                }
                next_expected = next_expected.max(offsets.last().unwrap() + 1);
            }
            previous = Some((hold, offsets.last().copied()));
        }
    }
    let placed = deliveries.iter().all(|d| {
        holds.get(&d.partition).is_some_and(|list| {
            list.iter()
                .any(|h| h.member == d.member && h.start <= d.at && d.at <= h.end)
        })
    });
    assert!(
        placed,
        "a record was delivered to a member that did not hold its partition"
    );
    assert!(
        handoffs > 0,
        "the join moved partitions with records on both sides"
    );
    let after_crash: Vec<&Hold> = holds
        .values()
        .flatten()
        .filter(|h| h.member != crashed)
        .filter(|h| {
            holds
                .values()
                .flatten()
                .any(|c| c.member == crashed && c.ended_by == Change::Crashed && c.end <= h.start)
        })
        .collect();
    assert!(
        !after_crash.is_empty(),
        "the crashed member's partitions moved"
    );
    broker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_broker_restart_and_reading_resumes_without_a_gap() -> Result<()>
{
    let broker = Broker::start().await?;
    broker
        .admin()
        .await?
        .create_topic("durable", 3, 0, HashMap::new())
        .await?;
    broker.produce("durable", 3, 0, 30).await?;

    let mut first = broker.member("durable-group", &["durable"]).await?;
    let before = consume(&mut first, 45).await?;
    first.commit_sync().await?;
    let mut last: BTreeMap<u32, i64> = BTreeMap::new();
    for r in &before {
        last.insert(r.partition, r.offset);
    }
    for (&p, &offset) in &last {
        assert_eq!(first.position("durable", p), Some(offset + 1));
    }
    first.close().await?;

    let broker = broker.restart().await?;
    broker.produce("durable", 3, 30, 10).await?;
    let mut second = broker.member("durable-group", &["durable"]).await?;
    let committed = second
        .committed(&[("durable", 0), ("durable", 1), ("durable", 2)])
        .await?;
    for c in &committed {
        assert_eq!(
            c.offset,
            Some(last.get(&c.partition.partition).map_or(0, |o| o + 1)),
            "{c:?}"
        );
        assert!(c.commit_timestamp_ms.is_some());
    }
    let after = consume(&mut second, 3 * 40 - 45).await?;
    let mut seen: BTreeSet<(u32, i64)> = before.iter().map(|r| (r.partition, r.offset)).collect();
    for r in &after {
        assert!(
            seen.insert((r.partition, r.offset)),
            "durable/{}@{} delivered twice",
            r.partition,
            r.offset
        );
    }
    assert_eq!(
        seen.len(),
        3 * 40,
        "every record exactly once across the restart"
    );
    second.close().await?;
    broker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_on_one_topic_each_get_every_record() -> Result<()> {
    let broker = Broker::start().await?;
    broker
        .admin()
        .await?
        .create_topic("shared", 4, 0, HashMap::new())
        .await?;
    broker.produce("shared", 4, 0, 25).await?;
    let mut a = broker.member("group-a", &["shared"]).await?;
    let mut b = broker.member("group-b", &["shared"]).await?;
    for consumer in [&mut a, &mut b] {
        let records = consume(consumer, 100).await?;
        let distinct: BTreeSet<(u32, i64)> =
            records.iter().map(|r| (r.partition, r.offset)).collect();
        assert_eq!(distinct.len(), 100, "{}", consumer.group_id());
    }
    a.close().await?;
    b.close().await?;
    broker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_subscription_picks_up_a_topic_created_after_subscribing() -> Result<()> {
    let broker = Broker::start().await?;
    let admin = broker.admin().await?;
    admin
        .create_topic("orders-eu", 1, 0, HashMap::new())
        .await?;
    admin.create_topic("payments", 1, 0, HashMap::new()).await?;
    broker.produce("orders-eu", 1, 0, 5).await?;
    broker.produce("payments", 1, 0, 5).await?;

    let mut consumer = GroupConsumer::connect(broker.group_config("regex")).await?;
    consumer.subscribe_regex("orders-.*")?;
    let first = consume(&mut consumer, 5).await?;
    assert!(first.iter().all(|r| &*r.topic == "orders-eu"), "{first:?}");

    admin
        .create_topic("orders-us", 2, 0, HashMap::new())
        .await?;
    broker.produce("orders-us", 2, 0, 5).await?;
    let later = consume(&mut consumer, 10).await?;
    assert!(later.iter().all(|r| &*r.topic == "orders-us"), "{later:?}");
    assert_eq!(
        consumer.assignment(),
        [tp("orders-eu", 0), tp("orders-us", 0), tp("orders-us", 1)]
    );
    // Nothing from the topic that does not match.
    assert!(
        drain(&mut consumer, Duration::from_millis(300))
            .await?
            .is_empty()
    );
    consumer.close().await?;

    // A bad regex is the broker's INVALID_ARGUMENT, from poll.
    let mut bad = GroupConsumer::connect(broker.group_config("bad-regex")).await?;
    bad.subscribe_regex("orders-(")?;
    let deadline = Instant::now() + WAIT;
    let error = loop {
        ensure!(Instant::now() < deadline, "the bad regex was never refused");
        match bad.poll(10, Duration::from_millis(100)).await {
            Err(error) => break error,
            Ok(records) => assert!(records.is_empty()),
        }
    };
    assert!(
        matches!(error, ClientError::InvalidArgument(_)),
        "{error:?}"
    );
    broker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_commits_are_what_committed_and_describe_report() -> Result<()> {
    let broker = Broker::start().await?;
    let admin = broker.admin().await?;
    admin.create_topic("manual", 2, 0, HashMap::new()).await?;
    broker.produce("manual", 2, 0, 10).await?;
    let mut consumer = GroupConsumer::connect(GroupConsumerConfig {
        auto_commit: false,
        client_id: "manual-client".to_owned(),
        ..broker.group_config("manual-group")
    })
    .await?;
    consumer.subscribe(["manual"])?;
    // Nothing is committed before the application commits.
    let records = consume(&mut consumer, 20).await?;
    assert_eq!(records.len(), 20);
    let nothing = consumer.committed(&[("manual", 0), ("manual", 1)]).await?;
    assert!(nothing.iter().all(|c| c.offset.is_none()), "{nothing:?}");

    consumer.seek("manual", 1, SeekTo::Offset(4)).await?;
    consumer.commit_sync().await?;
    let committed = consumer.committed(&[("manual", 0), ("manual", 1)]).await?;
    assert_eq!(
        committed.iter().map(|c| c.offset).collect::<Vec<_>>(),
        [Some(10), Some(4)]
    );
    let described = admin.describe_group("manual-group").await?;
    assert_eq!(described.state, GroupState::Stable);
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].client_id, "manual-client");
    assert_eq!(described.members[0].member_id, consumer.member_id());
    assert_eq!(
        described.members[0].session_timeout,
        Duration::from_millis(SESSION_TIMEOUT_MS)
    );
    assert!(
        described.members[0].since_heartbeat < Duration::from_millis(SESSION_TIMEOUT_MS),
        "{:?}",
        described.members[0]
    );
    assert!(!described.members[0].is_silent());
    // The broker's settings as this test configured them (a settled member gets the
    // regular interval once the broker's join window after its join is over).
    assert_eq!(
        consumer.session_timeout(),
        Duration::from_millis(SESSION_TIMEOUT_MS)
    );
    wait_until("the regular heartbeat interval", || {
        consumer.heartbeat_interval() == Duration::from_millis(HEARTBEAT_INTERVAL_MS)
    })
    .await?;
    let lag: Vec<(u32, Option<i64>, i64)> = described
        .offsets
        .iter()
        .map(|o| (o.partition, o.committed_offset, o.lag))
        .collect();
    assert_eq!(lag, [(0, Some(10), 0), (1, Some(4), 6)]);

    // The seek shows in the next poll; commit_async commits it.
    let again = consume(&mut consumer, 6).await?;
    assert_eq!(
        again
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect::<Vec<_>>(),
        (4..10).map(|o| (1, o)).collect::<Vec<_>>()
    );
    consumer.commit_async().await.await?;
    assert_eq!(
        consumer.committed(&[("manual", 1)]).await?[0].offset,
        Some(10)
    );

    // Pause: records of the paused partition wait until resume.
    consumer.pause(&[("manual", 0)])?;
    assert_eq!(consumer.paused(), [tp("manual", 0)]);
    broker.produce("manual", 2, 10, 3).await?;
    let unpaused = consume(&mut consumer, 3).await?;
    assert!(unpaused.iter().all(|r| r.partition == 1), "{unpaused:?}");
    assert!(
        drain(&mut consumer, Duration::from_millis(300))
            .await?
            .is_empty()
    );
    consumer.resume(&[("manual", 0)])?;
    let resumed = consume(&mut consumer, 3).await?;
    assert_eq!(
        resumed
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect::<Vec<_>>(),
        [(0, 10), (0, 11), (0, 12)]
    );
    assert!(matches!(
        consumer.pause(&[("manual", 7)]),
        Err(ClientError::InvalidArgument(_))
    ));
    // Without auto commit, close commits nothing.
    consumer.close().await?;
    let after = admin.describe_group("manual-group").await?;
    assert_eq!(after.offsets[0].committed_offset, Some(10));
    broker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_committed_offset_the_reset_policy_decides_where_to_start() -> Result<()> {
    let broker = Broker::start().await?;
    broker
        .admin()
        .await?
        .create_topic("reset", 1, 0, HashMap::new())
        .await?;
    broker.produce("reset", 1, 0, 5).await?;

    // None: poll names the partition until it is positioned.
    let mut none = GroupConsumer::connect(GroupConsumerConfig {
        auto_offset_reset: OffsetReset::None,
        ..broker.group_config("reset-none")
    })
    .await?;
    none.subscribe(["reset"])?;
    let deadline = Instant::now() + WAIT;
    let error = loop {
        ensure!(Instant::now() < deadline, "poll never complained");
        match none.poll(10, Duration::from_millis(100)).await {
            Err(error) => break error,
            Ok(records) => assert!(records.is_empty()),
        }
    };
    assert!(
        matches!(&error, ClientError::InvalidArgument(m) if m.contains("reset/0")),
        "{error:?}"
    );
    assert_eq!(none.unpositioned(), [tp("reset", 0)]);
    none.seek("reset", 0, SeekTo::Offset(3)).await?;
    let records = consume(&mut none, 2).await?;
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [3, 4]);
    none.close().await?;

    // Latest: only records produced after joining.
    let mut latest = GroupConsumer::connect(GroupConsumerConfig {
        auto_offset_reset: OffsetReset::Latest,
        ..broker.group_config("reset-latest")
    })
    .await?;
    latest.subscribe(["reset"])?;
    wait_until_assigned(&mut latest, 1).await?;
    broker.produce("reset", 1, 5, 1).await?;
    let records = consume(&mut latest, 1).await?;
    assert_eq!(records[0].offset, 5);
    latest.close().await?;
    broker.stop().await
}

/// Polls until the member holds `count` partitions.
async fn wait_until_assigned(consumer: &mut GroupConsumer, count: usize) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while consumer.assignment().len() < count {
        ensure!(Instant::now() < deadline, "no assignment");
        let records = consumer.poll(10, Duration::from_millis(50)).await?;
        ensure!(records.is_empty(), "unexpected records: {records:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_admin_lists_resets_and_deletes_only_groups_without_members() -> Result<()> {
    let broker = Broker::start().await?;
    let admin = broker.admin().await?;
    admin.create_topic("admin-t", 2, 0, HashMap::new()).await?;
    broker.produce("admin-t", 2, 0, 10).await?;
    let mut member = broker.member("admin-g", &["admin-t"]).await?;
    consume(&mut member, 20).await?;
    member.commit_sync().await?;

    let listed = admin.list_groups().await?;
    let g = listed
        .iter()
        .find(|g| g.group_id == "admin-g")
        .expect("listed");
    assert_eq!(g.members, 1);

    // With a live member: reset and delete are refused.
    let refused = admin.delete_group("admin-g").await;
    assert!(
        matches!(refused, Err(ClientError::FailedPrecondition(_))),
        "{refused:?}"
    );
    let refused = admin
        .reset_offsets(
            "admin-g",
            &[("admin-t", &[])],
            ResetOffsetsTo::Earliest,
            false,
        )
        .await;
    assert!(
        matches!(refused, Err(ClientError::FailedPrecondition(_))),
        "{refused:?}"
    );
    member.close().await?;
    // Leaving is immediate: the group is empty at once.
    let described = admin.describe_group("admin-g").await?;
    assert!(described.members.is_empty());
    assert_eq!(described.state, GroupState::Empty);

    // A dry run changes nothing; a real run moves the offsets.
    let plan = admin
        .reset_offsets(
            "admin-g",
            &[("admin-t", &[1])],
            ResetOffsetsTo::ShiftBy(-4),
            true,
        )
        .await?;
    assert!(!plan.applied);
    assert_eq!(plan.partitions.len(), 1);
    assert_eq!(
        (
            plan.partitions[0].previous_offset,
            plan.partitions[0].new_offset
        ),
        (Some(10), 6)
    );
    assert_eq!(
        admin.describe_group("admin-g").await?.offsets[1].committed_offset,
        Some(10)
    );
    let applied = admin
        .reset_offsets(
            "admin-g",
            &[("admin-t", &[1])],
            ResetOffsetsTo::ShiftBy(-4),
            false,
        )
        .await?;
    assert!(applied.applied);
    let offsets = admin.describe_group("admin-g").await?.offsets;
    assert_eq!(
        offsets
            .iter()
            .map(|o| (o.committed_offset, o.lag))
            .collect::<Vec<_>>(),
        [(Some(10), 0), (Some(6), 4)]
    );
    // The next member resumes there.
    let mut next = broker.member("admin-g", &["admin-t"]).await?;
    let records = consume(&mut next, 4).await?;
    assert!(
        records.iter().all(|r| r.partition == 1 && r.offset >= 6),
        "{records:?}"
    );
    next.close().await?;

    admin.delete_group("admin-g").await?;
    assert!(matches!(
        admin.describe_group("admin-g").await,
        Err(ClientError::NotFound(_))
    ));
    assert!(matches!(
        admin.delete_group("admin-g").await,
        Err(ClientError::NotFound(_))
    ));
    broker.stop().await
}

/// Three members started at the same moment, on a broker whose settled members heartbeat
/// every 10 s: each holds a partition well within that. The first to join takes every
/// partition; the broker's join window has it heartbeat again within the pending
/// interval, so it hears of the others and hands theirs over, instead of keeping
/// everything until its next regular heartbeat (three consumers started together used to
/// leave two of them idle for a whole interval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_started_together_all_get_partitions_promptly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let running = weir_server::start(weir_server::ServerConfig {
        kafka_listen: None,
        group_heartbeat_interval_ms: 10_000,
        group_session_timeout_ms: 45_000,
        ..server_config(dir.path())
    })
    .await?;
    let brokers = vec![running.addr.to_string()];
    Admin::connect(&brokers)
        .await?
        .create_topic("together", 3, 0, HashMap::new())
        .await?;
    let connect = |slot: usize| {
        let brokers = brokers.clone();
        async move {
            let mut member = GroupConsumer::connect(GroupConsumerConfig {
                brokers,
                group_id: "together".to_owned(),
                client_id: format!("member-{slot}"),
                ..GroupConsumerConfig::default()
            })
            .await?;
            member.subscribe(["together"])?;
            Ok::<_, ClientError>(member)
        }
    };
    let (a, b, c) = tokio::join!(connect(0), connect(1), connect(2));
    let mut members = [a?, b?, c?];
    let started = Instant::now();
    // Well under the 10 s interval, with room for a slow machine.
    let deadline = started + Duration::from_secs(5);
    while members.iter().any(|m| m.assignment().is_empty()) {
        ensure!(
            Instant::now() < deadline,
            "after {:?} the members hold {:?}",
            started.elapsed(),
            members.iter().map(|m| m.assignment()).collect::<Vec<_>>()
        );
        for member in &mut members {
            member.poll(10, Duration::from_millis(20)).await?;
        }
    }
    let held: BTreeSet<TopicPartition> = members.iter().flat_map(|m| m.assignment()).collect();
    assert_eq!(held.len(), 3, "each partition held once");
    for member in members {
        member.close().await?;
    }
    running.shutdown().await
}
