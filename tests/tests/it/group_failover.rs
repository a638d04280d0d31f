//! Consumer group coordinator failover on real processes: three `weir serve` processes,
//! a topic of 12 partitions (replication factor 3, `min.insync.replicas=2`), a producer
//! writing throughout, and a group of 3 members (weir-client's `GroupConsumer`, each
//! committing after every poll). Once the group is stable, the broker coordinating the
//! group (the leader of its `__consumer_offsets` partition) is SIGKILLed.
//!
//! Checked, as a user would:
//! - every record the log holds at the end was consumed, none twice (nothing skipped,
//!   nothing re-read: with no partition moving, not even the records after the last
//!   commit are read again);
//! - the members keep their member ids and their partitions: none is told it lost a
//!   partition, and the group's members and assignment are the same on the new
//!   coordinator;
//! - heartbeats and commits go on against the new coordinator (a commit after the kill
//!   is acknowledged).
//!
//! Printed, not asserted (performance is measured, not asserted): for each member, the
//! time from the kill to the first record it consumed afterwards from a partition whose
//! leader did not die, from any partition, and to its first acknowledged commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::sync::watch;
use tokio::time::Instant;
use weir_client::{
    Acks, GroupConsumer, GroupConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, Rebalance, RebalanceListener,
};
use weir_proto::v1 as pb;
use weir_proto::v1::groups_client::GroupsClient;
use weir_tests::cluster::{Cluster, ClusterConfig};
use weir_tests::wait::{bounded, wait_for};

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 12;
const MEMBERS: usize = 3;
const GROUP: &str = "failover-group";
/// Records handed to the producer per second, round robin over the partitions.
const RATE: u64 = 400;
/// How long the load runs after the kill.
const AFTER_KILL: Duration = Duration::from_secs(8);

#[derive(Debug, Clone)]
struct Consumed {
    member: usize,
    partition: u32,
    offset: i64,
    at: Instant,
}

#[derive(Debug, Default)]
struct MemberView {
    member_id: String,
    assignment: BTreeSet<u32>,
    lost: Vec<String>,
    commits: Vec<Instant>,
}

#[derive(Default)]
struct Shared {
    consumed: Mutex<Vec<Consumed>>,
    members: Mutex<Vec<MemberView>>,
}

struct LostListener {
    shared: Arc<Shared>,
    member: usize,
}

impl RebalanceListener for LostListener {
    fn on_lost(&self, rebalance: &Rebalance) {
        self.shared.members.lock().unwrap()[self.member]
            .lost
            .push(format!("{rebalance:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_keep_their_partitions_when_the_coordinator_is_killed() {
    // Waiting for the other cluster tests of this binary is not the test's time.
    let _serial = weir_tests::exclusive().await;
    bounded(Duration::from_secs(240), run())
        .await
        .expect("coordinator failover");
}

async fn run() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterConfig::default()).await?;
    match check(&mut cluster).await {
        Ok(()) => {
            cluster.finish();
            Ok(())
        }
        Err(error) => {
            // Printed before the cluster's logs (which dropping it prints), so a CI
            // summary that keeps an output's first lines shows why.
            println!("FAILED: {error:#}");
            Err(error)
        }
    }
}

async fn check(cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster.create_topic(TOPIC, PARTITIONS, 3, 2).await?;
    let shared = Arc::new(Shared::default());
    shared
        .members
        .lock()
        .unwrap()
        .resize_with(MEMBERS, MemberView::default);

    let (stop_load, load_stopped) = watch::channel(false);
    let producer = Producer::connect(ProducerConfig {
        brokers: cluster.bootstrap(),
        acks: Acks::All,
        ..ProducerConfig::default()
    })
    .await
    .context("connecting the producer")?;
    let load = tokio::spawn(produce(producer, load_stopped));

    let (stop_members, members_stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for member in 0..MEMBERS {
        let consumer = GroupConsumer::connect(GroupConsumerConfig {
            brokers: cluster.bootstrap(),
            group_id: GROUP.to_owned(),
            auto_offset_reset: OffsetReset::Earliest,
            auto_commit: false,
            ..GroupConsumerConfig::default()
        })
        .await
        .context("connecting a member")?;
        tasks.push(tokio::spawn(consume(
            consumer,
            member,
            shared.clone(),
            members_stopped.clone(),
        )));
    }

    // A stable group: every partition held, each member consuming.
    let before = wait_for(Duration::from_secs(60), "a stable group", || async {
        let views = shared.members.lock().unwrap();
        let held: usize = views.iter().map(|v| v.assignment.len()).sum();
        let consuming = {
            let consumed = shared.consumed.lock().unwrap();
            (0..MEMBERS).all(|m| consumed.iter().any(|c| c.member == m))
        };
        // The uniform assignor's end state: every member holds its share.
        let settled = views.iter().all(|v| {
            v.assignment.len() == PARTITIONS as usize / MEMBERS && !v.member_id.is_empty()
        });
        (held == PARTITIONS as usize && settled && consuming).then(|| {
            views
                .iter()
                .map(|v| (v.member_id.clone(), v.assignment.clone()))
                .collect::<Vec<_>>()
        })
    })
    .await?;
    // Settle a moment so every member's state is in the log, then find the coordinator.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let coordinator = find_coordinator(cluster).await?;
    let leaders: BTreeMap<u32, i32> = cluster
        .describe(TOPIC)
        .await?
        .partitions
        .iter()
        .map(|p| (p.partition, p.leader))
        .collect();
    println!("coordinator of {GROUP}: broker {coordinator}; killing it");
    let t0 = Instant::now();
    cluster.kill(coordinator)?;
    let killed_at = Instant::now();

    tokio::time::sleep(AFTER_KILL).await;
    let _ = stop_load.send(true);
    let produced = load.await.context("producer task")??;
    println!("producer: {produced} records acknowledged");

    // Let the members read everything the log holds, then stop them.
    let log = cluster.read_all(TOPIC).await?;
    let wanted: BTreeSet<(u32, i64)> = log.iter().map(|r| (r.partition, r.offset)).collect();
    wait_for(
        Duration::from_secs(60),
        "the members to read the whole log",
        || async {
            let consumed = shared.consumed.lock().unwrap();
            let seen: BTreeSet<(u32, i64)> =
                consumed.iter().map(|c| (c.partition, c.offset)).collect();
            wanted.is_subset(&seen).then_some(())
        },
    )
    .await?;
    let _ = stop_members.send(true);
    for task in tasks {
        task.await.context("member task")??;
    }

    // Nothing skipped, nothing read twice.
    let consumed = shared.consumed.lock().unwrap().clone();
    let mut seen = BTreeSet::new();
    let mut twice = Vec::new();
    for c in &consumed {
        if !seen.insert((c.partition, c.offset)) {
            twice.push((c.partition, c.offset));
        }
    }
    ensure!(twice.is_empty(), "records consumed twice: {twice:?}");
    let skipped: Vec<_> = wanted.difference(&seen).collect();
    ensure!(skipped.is_empty(), "records never consumed: {skipped:?}");
    ensure!(
        produced as usize <= wanted.len(),
        "{produced} acknowledged but the log holds {}",
        wanted.len()
    );

    // The members kept their ids and partitions, and lost nothing.
    let views = std::mem::take(&mut *shared.members.lock().unwrap());
    for (m, view) in views.iter().enumerate() {
        ensure!(
            view.lost.is_empty(),
            "member {m} lost partitions: {:?}",
            view.lost
        );
    }
    for (m, view) in views.iter().enumerate() {
        ensure!(
            (view.member_id.clone(), view.assignment.clone()) == before[m],
            "member {m} changed: before {:?}, after {:?}",
            before[m],
            (&view.member_id, &view.assignment)
        );
        let committed_after = view.commits.iter().find(|at| **at > killed_at);
        let Some(committed_after) = committed_after else {
            let read_after = consumed
                .iter()
                .filter(|c| c.member == m && c.at > killed_at)
                .count();
            bail!(
                "member {m} had no commit acknowledged after the kill ({} before it; it read \
                 {read_after} records after it)",
                view.commits.len()
            );
        };
        let first_after = |filter: &dyn Fn(&Consumed) -> bool| {
            consumed
                .iter()
                .filter(|c| c.member == m && c.at > killed_at && filter(c))
                .map(|c| c.at - t0)
                .min()
        };
        let alive = first_after(&|c| leaders.get(&c.partition) != Some(&coordinator));
        let any = first_after(&|_| true);
        println!(
            "member {m}: consuming again after {:?} (partitions led by a surviving broker: {:?}); \
             first commit acknowledged after {:?}",
            any,
            alive,
            *committed_after - t0
        );
    }
    let new_coordinator = find_coordinator(cluster).await?;
    ensure!(
        new_coordinator != coordinator,
        "the coordinator did not move"
    );
    println!("new coordinator: broker {new_coordinator}");
    Ok(())
}

/// The group's coordinator, as a surviving broker names it.
async fn find_coordinator(cluster: &Cluster) -> anyhow::Result<i32> {
    wait_for(Duration::from_secs(30), "FindCoordinator", || async {
        for address in cluster.bootstrap() {
            let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                .ok()?
                .connect()
                .await
            else {
                continue;
            };
            let answer = GroupsClient::new(channel)
                .find_coordinator(pb::FindCoordinatorRequest {
                    group_id: GROUP.to_owned(),
                    ..Default::default()
                })
                .await;
            if let Ok(answer) = answer {
                return Some(answer.into_inner().broker_id);
            }
        }
        None
    })
    .await
}

/// Writes [`RATE`] records a second until told to stop; returns how many were
/// acknowledged.
async fn produce(producer: Producer, mut stop: watch::Receiver<bool>) -> anyhow::Result<u64> {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    let mut deliveries = Vec::new();
    let mut i: u64 = 0;
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let record = ProducerRecord::new(TOPIC, format!("v{i}"))
            .partition((i % u64::from(PARTITIONS)) as u32);
        deliveries.push(producer.send(record).await?);
        i += 1;
    }
    producer.flush().await;
    let mut acknowledged = 0;
    for delivery in deliveries {
        if delivery.await.is_ok() {
            acknowledged += 1;
        }
    }
    Ok(acknowledged)
}

/// One member: polls, records what it got, commits after every poll, until told to stop.
async fn consume(
    mut consumer: GroupConsumer,
    member: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    consumer.set_rebalance_listener(Arc::new(LostListener {
        shared: shared.clone(),
        member,
    }));
    consumer.subscribe([TOPIC])?;
    while !*stop.borrow_and_update() {
        let records = consumer.poll(500, Duration::from_millis(100)).await?;
        let at = Instant::now();
        {
            let mut consumed = shared.consumed.lock().unwrap();
            consumed.extend(records.iter().map(|r| Consumed {
                member,
                partition: r.partition,
                offset: r.offset,
                at,
            }));
        }
        {
            let mut views = shared.members.lock().unwrap();
            let view = &mut views[member];
            view.member_id = consumer.member_id();
            view.assignment = consumer
                .assignment()
                .iter()
                .map(|tp| tp.partition)
                .collect();
        }
        if !records.is_empty() {
            // A commit may fail while the coordinator moves; the next poll's commit
            // carries the same positions and more.
            if consumer.commit_sync().await.is_ok() {
                shared.members.lock().unwrap()[member]
                    .commits
                    .push(Instant::now());
            }
        }
    }
    consumer.close().await.ok();
    Ok(())
}
