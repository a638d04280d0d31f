//! Real processes, real faults: three `weir serve` processes behind the fault proxy, a
//! topic with 3 partitions, replication factor 3 and min.insync.replicas 2, producers
//! (acks=all, unique values) and consumers running throughout, and after each fault is
//! healed the checker's verdict on everything the clients saw plus a full read of every
//! partition. Each test is one fault a user's cluster meets; the last runs a random
//! schedule of them (a few by default, 100+ with `WEIR_FAULTS_LONG=1`).
//!
//! Run one with its output:
//! `cargo test -p weir-tests --test it -- --nocapture faults::a_killed_leader_is`.
//! `WEIR_TESTS_LOG=debug` sets the brokers' log level; a failing test prints the end of
//! every broker's log and keeps the cluster's directory.

use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use weir_tests::availability;
use weir_tests::binary::weir_binary;
use weir_tests::checker::{self, Report};
use weir_tests::cluster::{Cluster, ClusterConfig, Credentials, SecureSetup};
use weir_tests::nemesis::{self, Rng};
use weir_tests::wait::{bounded, wait_for};
use weir_tests::workload::{Workload, WorkloadConfig};

const PARTITIONS: u32 = 3;
/// Hard bound of each short test (the cluster forms in seconds; faults and recovery take
/// seconds each).
const TEST_LIMIT: Duration = Duration::from_secs(90);
/// Longest a leader election or an ISR change may take to show in the metadata.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest the cluster may take to become whole again after a fault is healed.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(40);
/// The brokers' session timeout (docs/replication.md § Broker lifecycle).
const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the quorum may take to name a new active controller after the old one's node
/// is cut off or stopped: its check-quorum (800 ms), the followers' wait for the old
/// leader's lease and an election, with room for a loaded test machine.
const CONTROLLER_FAILOVER_LIMIT: Duration = Duration::from_secs(6);
/// How long a broker may take to stop on SIGTERM with no peer answering: its controlled
/// shutdown's bound, the wait for its own metadata, and its listeners' drain bound
/// (weir-server's `CONTROLLED_SHUTDOWN_TIMEOUT` twice and `LISTENER_DRAIN_TIMEOUT`),
/// with room for a slow machine.
const SIGTERM_WITH_FROZEN_PEERS: Duration = Duration::from_secs(25);

/// Found by these tests (docs/replication.md § Real processes, real faults, found 1):
/// right after leadership moves, the new leader answers a read at the old leader's high
/// watermark with OUT_OF_RANGE (its published high watermark is still 0), and the
/// client's default `auto_offset_reset` (earliest) sends the consumer back to offset 0.
/// While this is true, a jump back *to offset 0* is reported and tolerated; what the
/// consumer reads again is still checked (the same value at every offset), and any other
/// jump back fails. Set to false once the broker is fixed.
const TOLERATE_REWIND_TO_LOG_START: bool = false;

/// The checker's verdict, asserted: the records are right (nothing lost, doubled,
/// changed, taken back or made up) and consumers read in order, nothing skipped.
fn assert_verdict(report: &Report) {
    assert!(report.is_safe(), "{report}");
    assert!(report.skipped.is_empty(), "{report}");
    let rewinds = report.non_monotonic.iter().filter(|s| s.next == 0).count();
    assert_eq!(
        rewinds,
        report.non_monotonic.len(),
        "a consumer went back, and not to the log start: {report}"
    );
    if rewinds > 0 {
        println!(
            "KNOWN BUG (docs/replication.md, found 1): {rewinds} consumer rewind(s) to offset 0 after a leadership move"
        );
        if !TOLERATE_REWIND_TO_LOG_START {
            panic!("{report}");
        }
    }
}

/// Builds the binary (outside every test's time bound: it may wait on cargo's lock) and
/// takes the one-cluster-at-a-time lock.
async fn prepare() -> anyhow::Result<tokio::sync::MutexGuard<'static, ()>> {
    weir_tests::init_client_logs();
    let serial = weir_tests::exclusive().await;
    tokio::task::spawn_blocking(weir_binary).await??;
    Ok(serial)
}

/// A cluster with `topic` created and the load running and acknowledged.
async fn start(topic: &str) -> anyhow::Result<(Cluster, Workload)> {
    start_with(WorkloadConfig::new(topic, PARTITIONS)).await
}

async fn start_with(load: WorkloadConfig) -> anyhow::Result<(Cluster, Workload)> {
    let cluster = Cluster::start(ClusterConfig::default()).await?;
    cluster.create_topic(&load.topic, PARTITIONS, 3, 2).await?;
    let workload = Workload::start(cluster.bootstrap(), load);
    workload.wait_acked(200, Duration::from_secs(30)).await?;
    Ok((cluster, workload))
}

/// After every fault is healed: waits until the cluster is whole and writes go through,
/// stops the load, waits for the replicas to converge, reads every partition back from
/// its leader and checks the whole history.
async fn verdict(cluster: &Cluster, workload: Workload, topic: &str) -> anyhow::Result<Report> {
    cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await?;
    workload
        .wait_progress(50, RECOVERY_TIMEOUT)
        .await
        .context("writes after healing")?;
    let (mut history, errors) = workload.stop().await;
    cluster.wait_quiet(topic, RECOVERY_TIMEOUT).await?;
    history.final_read = cluster.read_all(topic).await?;
    let report = checker::check(&history);
    println!("{report}");
    println!("client errors: {errors:?}");
    Ok(report)
}

/// Waits until the metadata names a leader of `topic`/`partition` other than `old`.
async fn new_leader(
    cluster: &Cluster,
    topic: &str,
    partition: u32,
    old: i32,
) -> anyhow::Result<i32> {
    wait_for(
        ELECTION_TIMEOUT,
        &format!("a leader of {topic}/{partition} other than node {old}"),
        || async {
            let leader = cluster.leader(topic, partition).await.ok()?;
            (leader > 0 && leader != old).then_some(leader)
        },
    )
    .await
}

/// (a) kill -9 the leader of a partition while producing: another in-sync replica takes
/// over, writes resume, nothing acknowledged is lost, nothing is doubled or changed.
/// Prints the failover time: SIGKILL to the first acknowledged write on the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_nothing_acknowledged_is_lost() -> anyhow::Result<()> {
    let _serial = prepare().await?;
    bounded(TEST_LIMIT, async {
        let topic = "killed";
        let (mut cluster, workload) = start(topic).await?;
        let leader = cluster.leader(topic, 0).await?;
        let controller = cluster.controller().await;
        let killed_at = Instant::now();
        cluster.kill(leader)?;
        let successor = new_leader(&cluster, topic, 0, leader).await?;
        let elected = killed_at.elapsed();
        let first = workload
            .wait_ack_sent_since(0, killed_at, ELECTION_TIMEOUT)
            .await?;
        println!(
            "failover of {topic}/0 from node {leader} (the active controller: {}) to node {successor}: \
             new leader in the metadata {:.0} ms after SIGKILL, first acknowledged write on it {:.0} ms after SIGKILL",
            controller == Some(leader),
            elected.as_secs_f64() * 1e3,
            (first.acked_at - killed_at).as_secs_f64() * 1e3,
        );
        // Two in-sync replicas are left: min.insync.replicas=2 still takes writes.
        workload.wait_progress(100, RECOVERY_TIMEOUT).await?;
        cluster.restart(leader).await?;
        let report = verdict(&cluster, workload, topic).await?;
        assert_verdict(&report);
        cluster.finish();
        Ok(())
    })
    .await
}

/// (a') The same with a broker outside the voter set: four nodes, three of them voters.
/// The observer, which follows the metadata through the proxy like every other byte
/// between nodes, leads a partition; kill -9 moves that leadership to an in-sync
/// replica, and restarted, the observer fetches the whole image again and rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_observer_leader_is_replaced_and_rejoins() -> anyhow::Result<()> {
    let _serial = prepare().await?;
    bounded(TEST_LIMIT, async {
        let topic = "observed";
        let observer = 4;
        let mut cluster = Cluster::start(ClusterConfig {
            nodes: 4,
            voters: Some(3),
            ..ClusterConfig::default()
        })
        .await?;
        // Placement spreads four leaders over four brokers: the observer leads one.
        cluster.create_topic(topic, 4, 3, 2).await?;
        let workload = Workload::start(cluster.bootstrap(), WorkloadConfig::new(topic, 4));
        workload.wait_acked(200, Duration::from_secs(30)).await?;
        let mut led = None;
        for partition in 0..4 {
            if cluster.leader(topic, partition).await? == observer {
                led = Some(partition);
            }
        }
        let partition = led.context("the observer leads none of the four partitions")?;
        let killed_at = Instant::now();
        cluster.kill(observer)?;
        let successor = new_leader(&cluster, topic, partition, observer).await?;
        println!(
            "failover of {topic}/{partition} from observer {observer} to node {successor} in {:.0} ms",
            killed_at.elapsed().as_secs_f64() * 1e3
        );
        workload.wait_progress(100, RECOVERY_TIMEOUT).await?;
        cluster.restart(observer).await?;
        let report = verdict(&cluster, workload, topic).await?;
        assert_verdict(&report);
        cluster.finish();
        Ok(())
    })
    .await
}

/// (b) SIGSTOP the leader for longer than the session timeout: the controller fences it
/// and elects another; when it resumes it finds itself replaced, follows, and rejoins the
/// ISR. Nothing acknowledged is lost, nothing doubled or changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_rejoins_when_resumed() -> anyhow::Result<()> {
    let _serial = prepare().await?;
    bounded(TEST_LIMIT, async {
        let topic = "paused";
        let (mut cluster, workload) = start(topic).await?;
        let leader = cluster.leader(topic, 0).await?;
        let paused_at = Instant::now();
        cluster.pause(leader)?;
        let successor = new_leader(&cluster, topic, 0, leader).await?;
        println!(
            "{topic}/0: node {leader} paused; node {successor} leads {:.0} ms later",
            paused_at.elapsed().as_secs_f64() * 1e3
        );
        workload.wait_progress(100, RECOVERY_TIMEOUT).await?;
        // Hold the pause to twice the session timeout before resuming.
        tokio::time::sleep_until(paused_at + 2 * SESSION_TIMEOUT).await;
        cluster.resume(leader)?;
        let resumed_at = Instant::now();
        cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await?;
        println!(
            "node {leader} back in every ISR {:.0} ms after SIGCONT",
            resumed_at.elapsed().as_secs_f64() * 1e3
        );
        let report = verdict(&cluster, workload, topic).await?;
        assert_verdict(&report);
        cluster.finish();
        Ok(())
    })
    .await
}

/// (b2) SIGTERM a broker while both its peers are frozen (SIGSTOP): no controller
/// answers its controlled shutdown and the peers' connections to it stay open with
/// nobody reading them, yet it stops in bounded time (found by the random faults: a
/// broker waited without end for its listeners to drain connections from paused peers).
/// Once the peers resume and it restarts, nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stops_on_sigterm_while_its_peers_are_frozen() -> anyhow::Result<()> {
    let _serial = prepare().await?;
    bounded(TEST_LIMIT, async {
        let topic = "frozen";
        let (mut cluster, workload) = start(topic).await?;
        let leader = cluster.leader(topic, 0).await?;
        let peers: Vec<i32> = cluster
            .ids()
            .into_iter()
            .filter(|&id| id != leader)
            .collect();
        for &peer in &peers {
            cluster.pause(peer)?;
        }
        // Long enough for the leader's fetch sessions and clients to be waiting on them.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let took = cluster.terminate(leader, SIGTERM_WITH_FROZEN_PEERS).await?;
        println!(
            "node {leader} stopped {:.0} ms after SIGTERM with nodes {peers:?} frozen",
            took.as_secs_f64() * 1e3
        );
        for &peer in &peers {
            cluster.resume(peer)?;
        }
        cluster.restart(leader).await?;
        let report = verdict(&cluster, workload, topic).await?;
        assert_verdict(&report);
        cluster.finish();
        Ok(())
    })
    .await
}

/// (c) Cut a follower off from the other nodes with the proxy: it drops out of the ISR
/// while writes go on with the two left; restored, it catches up and DescribeTopic shows
/// it in the ISR again. Nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_rejoins_the_isr_when_restored() -> anyhow::Result<()> {
    let _serial = prepare().await?;
    bounded(TEST_LIMIT, async {
        let topic = "cut";
        let (cluster, workload) = start(topic).await?;
        let leader = cluster.leader(topic, 0).await?;
        let follower = cluster
            .ids()
            .into_iter()
            .find(|&id| id != leader)
            .expect("3 nodes");
        let cut_at = Instant::now();
        cluster.proxy().isolate(follower);
        wait_for(
            ELECTION_TIMEOUT,
            &format!("node {follower} out of the ISR of {topic}/0"),
            || async {
                let t = cluster.describe(topic).await.ok()?;
                (!t.partitions[0].isr.contains(&follower)).then_some(())
            },
        )
        .await?;
        println!(
            "node {follower} cut off: out of the ISR of {topic}/0 after {:.0} ms",
            cut_at.elapsed().as_secs_f64() * 1e3
        );
        workload.wait_progress(100, RECOVERY_TIMEOUT).await?;
        cluster.proxy().heal();
        let healed_at = Instant::now();
        cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await?;
        let t = cluster.describe(topic).await?;
        assert!(
            t.partitions.iter().all(|p| p.isr.len() == 3),
            "{:?}",
            t.partitions
        );
        println!(
            "node {follower} back in every ISR {:.0} ms after the link was restored; proxy: {:?}",
            healed_at.elapsed().as_secs_f64() * 1e3,
            cluster.proxy().stats()
        );
        let report = verdict(&cluster, workload, topic).await?;
        assert_verdict(&report);
        cluster.finish();
        Ok(())
    })
    .await
}

/// (d) A rolling restart with SIGTERM: each node in turn stops gracefully (controlled
/// shutdown hands its leaderships over first), starts again on its data directory and
/// rejoins every ISR before the next one stops. No acknowledged record is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing() -> anyhow::Result<()> {
    let _serial = prepare().await?;
    bounded(TEST_LIMIT, async {
        let topic = "rolling";
        let (mut cluster, workload) = start(topic).await?;
        for id in cluster.ids() {
            let stopped = cluster.terminate(id, Duration::from_secs(30)).await?;
            cluster.restart(id).await?;
            let restarted_at = Instant::now();
            cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await?;
            workload.wait_progress(50, RECOVERY_TIMEOUT).await?;
            println!(
                "node {id}: stopped gracefully in {:.0} ms, back in every ISR {:.0} ms after its restart",
                stopped.as_secs_f64() * 1e3,
                restarted_at.elapsed().as_secs_f64() * 1e3
            );
        }
        let report = verdict(&cluster, workload, topic).await?;
        assert_verdict(&report);
        cluster.finish();
        Ok(())
    })
    .await
}

/// (e) Producers that retry (the client's default retries, idempotence on): a leader
/// killed, then a leader cut off from the other nodes until its writes time out and are
/// resent. Every resent write that was in fact stored is recognised by its sequence, so
/// the checker finds no value twice; nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_writes_of_idempotent_producers_are_stored_once() -> anyhow::Result<()> {
    let _serial = prepare().await?;
    bounded(TEST_LIMIT, async {
        let topic = "idempotent";
        let load = WorkloadConfig {
            retries: weir_client::ProducerConfig::default().retries,
            request_timeout: Duration::from_secs(2),
            ..WorkloadConfig::new(topic, PARTITIONS)
        };
        let (mut cluster, workload) = start_with(load).await?;
        let leader = cluster.leader(topic, 0).await?;
        cluster.kill(leader)?;
        new_leader(&cluster, topic, 0, leader).await?;
        workload.wait_progress(100, RECOVERY_TIMEOUT).await?;
        cluster.restart(leader).await?;
        cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await?;
        // Cut off, the leader takes writes it cannot commit: the clients time out and
        // resend them (to it, then to its successor).
        let leader = cluster.leader(topic, 1).await?;
        cluster.proxy().isolate(leader);
        new_leader(&cluster, topic, 1, leader).await?;
        workload.wait_progress(100, RECOVERY_TIMEOUT).await?;
        cluster.proxy().heal();
        let report = verdict(&cluster, workload, topic).await?;
        assert_verdict(&report);
        assert!(report.duplicates.is_empty(), "{report}");
        cluster.finish();
        Ok(())
    })
    .await
}

/// What befalls a partition's leader in [`a_cut_off_leader_steps_aside_and_writes_resume_during_the_cut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutKind {
    /// Its traffic to and from the other nodes is refused and its connections to them
    /// closed (a peer's host gone, a firewall that rejects); clients still reach it.
    Closing,
    /// As `Closing`, but silently: packets dropped, connections left open and stalled
    /// (a firewall that drops), so only timeouts and keep-alive pings can tell.
    Silent,
    /// Silently off the whole network, clients included (its host's link or switch
    /// port dead): a client's connections to it stall mid-request.
    SilentWithClients,
    /// Not a cut: the process is stopped (SIGSTOP) and continued when the "cut" ends.
    Pause,
    /// Not a cut: the process is SIGKILLed and restarted when the "cut" ends.
    Kill,
}

impl CutKind {
    /// The default rotation: the three network cuts.
    const CUTS: [CutKind; 3] = [
        CutKind::Closing,
        CutKind::Silent,
        CutKind::SilentWithClients,
    ];

    /// The kinds to rotate through: `WEIR_CUT_KINDS` (comma-separated: closing, silent,
    /// silent-clients, pause, kill), else [`CutKind::CUTS`].
    fn from_env() -> anyhow::Result<Vec<CutKind>> {
        let Ok(list) = std::env::var("WEIR_CUT_KINDS") else {
            return Ok(CutKind::CUTS.to_vec());
        };
        list.split(',')
            .map(|name| match name.trim() {
                "closing" => Ok(CutKind::Closing),
                "silent" => Ok(CutKind::Silent),
                "silent-clients" => Ok(CutKind::SilentWithClients),
                "pause" => Ok(CutKind::Pause),
                "kill" => Ok(CutKind::Kill),
                other => anyhow::bail!(
                    "WEIR_CUT_KINDS: unknown kind {other:?} (closing, silent, silent-clients, pause, kill)"
                ),
            })
            .collect()
    }

    fn apply(self, cluster: &mut Cluster, id: i32) -> anyhow::Result<()> {
        use weir_tests::proxy::Peer;
        let proxy = cluster.proxy();
        match self {
            CutKind::Closing => proxy.isolate(id),
            CutKind::Silent => proxy.isolate_silently(id),
            CutKind::SilentWithClients => {
                proxy.isolate_silently(id);
                proxy.silence(Peer::Client, Peer::Node(id));
                proxy.silence(Peer::Node(id), Peer::Client);
            }
            CutKind::Pause => cluster.pause(id)?,
            CutKind::Kill => cluster.kill(id)?,
        }
        Ok(())
    }

    /// What befell the node, for the printed figures.
    fn what(self) -> &'static str {
        match self {
            CutKind::Closing | CutKind::Silent | CutKind::SilentWithClients => "cut off",
            CutKind::Pause => "stopped (SIGSTOP)",
            CutKind::Kill => "killed (SIGKILL)",
        }
    }

    async fn heal(self, cluster: &mut Cluster, id: i32) -> anyhow::Result<()> {
        match self {
            CutKind::Closing | CutKind::Silent | CutKind::SilentWithClients => {
                cluster.proxy().heal()
            }
            CutKind::Pause => cluster.resume(id)?,
            CutKind::Kill => cluster.restart(id).await?,
        }
        Ok(())
    }
}

/// (f) Network cuts of a partition's leader, of each network [`CutKind`] in turn. Its
/// controller session lapses, so it steps aside (NOT_LEADER to what it holds and what
/// comes) instead of holding writes until the clients' 30 s timeout; if it was the active
/// controller, it stops acting as one for want of a quorum. The others fence it and
/// elect a new leader, and idempotent producers (the client's default retries) move
/// there, told by the old leader's NOT_LEADER or, where they cannot reach it, by their
/// keep-alive pings going unanswered: writes resume during the cut, and after it
/// nothing acknowledged is lost or doubled. Prints the longest wait for an
/// acknowledgement on the partition per cut.
///
/// Three cuts of 7 s by default (one of each kind); `WEIR_CUTS=20` runs 20 cuts of 5-20 s
/// each (about 8 minutes): `WEIR_CUTS=20 cargo test -p weir-tests --test it --
/// --nocapture faults::a_cut_off_leader`. `WEIR_CUT_KINDS=pause` or `=kill` measures a
/// SIGSTOPped or SIGKILLed leader the same way (see [`CutKind::from_env`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_steps_aside_and_writes_resume_during_the_cut() -> anyhow::Result<()> {
    let kinds = CutKind::from_env()?;
    let short = kinds.len();
    let cuts: usize = match std::env::var("WEIR_CUTS") {
        Ok(n) => n.parse().context("WEIR_CUTS is a number")?,
        Err(_) => short,
    };
    let long = cuts > short;
    let limit = match long {
        true => Duration::from_secs(60 * 60),
        false => Duration::from_secs(180),
    };
    let _serial = prepare().await?;
    let seed = nemesis::seed();
    bounded(limit, async {
        let topic = "cut";
        let load = WorkloadConfig {
            retries: weir_client::ProducerConfig::default().retries,
            request_timeout: Duration::from_secs(30),
            ..WorkloadConfig::new(topic, PARTITIONS)
        };
        let (mut cluster, workload) = start_with(load).await?;
        let mut rng = Rng::new(seed);
        let mut longest = Duration::ZERO;
        for i in 0..cuts {
            let kind = kinds[i % kinds.len()];
            let cut = match long {
                true => rng.millis(5_000, 20_000),
                false => Duration::from_secs(7),
            };
            let leader = cluster.leader(topic, 0).await?;
            let controller = cluster.controller().await;
            let from = Instant::now();
            kind.apply(&mut cluster, leader)?;
            tokio::time::sleep(cut).await;
            let healed = Instant::now();
            kind.heal(&mut cluster, leader).await?;
            cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await?;
            workload.wait_progress(50, RECOVERY_TIMEOUT).await?;
            let gap = availability::longest_gaps(&workload.ack_times(), PARTITIONS, from, healed)[0];
            println!(
                "cut {i} ({kind:?}): node {leader}, leader of {topic}/0 (the active controller: {}), \
                 {} for {:.1} s: longest wait for an acknowledgement on {topic}/0 {:.0} ms",
                controller == Some(leader),
                kind.what(),
                cut.as_secs_f64(),
                gap.longest.as_secs_f64() * 1e3
            );
            // Writes resumed before the cut ended: the cut-off leader stepped aside and
            // the producers found its successor (else they wait until the cut heals, or
            // their timeout).
            assert!(
                gap.longest < cut && !gap.open,
                "writes to {topic}/0 did not resume during a {cut:?} {kind:?} cut of node {leader}: {gap:?}"
            );
            longest = longest.max(gap.longest);
        }
        println!(
            "{cuts} cuts (seed {seed}): longest wait for an acknowledgement {:.0} ms",
            longest.as_secs_f64() * 1e3
        );
        let report = verdict(&cluster, workload, topic).await?;
        assert_verdict(&report);
        assert!(report.duplicates.is_empty(), "{report}");
        cluster.finish();
        Ok(())
    })
    .await
}

/// (g) A client cut off from a partition's leader while the brokers still reach each
/// other: the leader stays the leader (nothing is wrong with it), so there is nothing to
/// fail over to. The client must say so, naming the broker, within its retries instead
/// of hanging; its writes to partitions led elsewhere go on; and once the network heals
/// the partition takes its writes again, each record stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_from_a_leader_is_told_so_and_does_not_hang() -> anyhow::Result<()> {
    use weir_client::{Producer, ProducerConfig, ProducerRecord};
    use weir_tests::proxy::Peer;
    /// Retries of the test's producer: enough to span a keep-alive timeout or two.
    const RETRIES: u32 = 2;
    let _serial = prepare().await?;
    bounded(TEST_LIMIT, async {
        let topic = "client-cut";
        let cluster = Cluster::start(ClusterConfig::default()).await?;
        cluster.create_topic(topic, PARTITIONS, 3, 2).await?;
        let leader = cluster.leader(topic, 0).await?;
        let mut elsewhere = None;
        for p in 1..PARTITIONS {
            if cluster.leader(topic, p).await? != leader {
                elsewhere = Some(p);
            }
        }
        let producer = Producer::connect(ProducerConfig {
            brokers: cluster.bootstrap(),
            retries: RETRIES,
            ..ProducerConfig::default()
        })
        .await?;
        let send = |p: u32, value: &str| producer.send(ProducerRecord::new(topic, value.to_owned()).partition(p));
        send(0, "before").await?.wait().await?;

        cluster.proxy().silence(Peer::Client, Peer::Node(leader));
        cluster.proxy().silence(Peer::Node(leader), Peer::Client);
        let cut_at = Instant::now();
        let during = send(0, "during").await?;
        if let Some(p) = elsewhere {
            let acked = tokio::time::timeout(Duration::from_secs(10), send(p, "elsewhere").await?.wait())
                .await
                .with_context(|| format!("a write to {topic}/{p}, led by another node, hung"))?;
            acked.with_context(|| format!("a write to {topic}/{p}, led by another node"))?;
        }
        let outcome = tokio::time::timeout(Duration::from_secs(40), during.wait())
            .await
            .context("a write to a leader the client cannot reach hung for 40 s")?;
        let failed_after = cut_at.elapsed();
        let error = match outcome {
            Ok(meta) => anyhow::bail!("a write through a silent cut was acknowledged: {meta:?}"),
            Err(e) => e.to_string(),
        };
        println!(
            "client cut off from node {leader}, leader of {topic}/0: the write failed after {:.1} s \
             ({RETRIES} retries): {error}",
            failed_after.as_secs_f64()
        );
        let address = cluster.proxy().address(leader).to_string();
        assert!(
            error.contains(&address),
            "the error does not name the unreachable broker {address}: {error}"
        );

        cluster.proxy().heal();
        let after = wait_for(RECOVERY_TIMEOUT, "a write after healing", || async {
            send(0, "after").await.ok()?.wait().await.ok()
        })
        .await?;
        println!("after healing: written at offset {}", after.offset);
        producer.close().await;
        // "during" may be stored or not (its bytes were on the wire when the client gave
        // up; TCP delivers them when the network heals): its outcome was unknown. The
        // others are there, each once, in order.
        let values: Vec<String> = cluster
            .read_all(topic)
            .await?
            .into_iter()
            .filter(|r| r.partition == 0)
            .map(|r| r.value)
            .filter(|v| v != "during")
            .collect();
        assert_eq!(values.first().map(String::as_str), Some("before"), "{values:?}");
        assert_eq!(values.iter().filter(|v| *v == "before").count(), 1, "{values:?}");
        assert!(values.iter().all(|v| v == "before" || v == "after"), "{values:?}");
        cluster.finish();
        Ok(())
    })
    .await
}

/// (h) The active controller's node cut off (silently, both ways), SIGKILLed, then
/// stopped (SIGTERM), each time brought back: the other voters elect another controller,
/// which every node then names. Prints the failover time for each (from the fault to
/// both other nodes naming a new controller); asserts it under
/// [`CONTROLLER_FAILOVER_LIMIT`]. When the controller dies, no other broker steps aside:
/// its lease outlasts the failover (`DEFAULT_HEARTBEAT_INTERVAL_MS`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_or_restarted_controller_is_replaced_within_seconds() -> anyhow::Result<()> {
    /// What a broker logs when its lease lapses (`node/lifecycle.rs`).
    const STEPPED_ASIDE: &str = "leaders step aside until one is";
    let _serial = prepare().await?;
    bounded(TEST_LIMIT, async {
        let topic = "controller";
        let (mut cluster, workload) = start(topic).await?;
        for what in ["cut off", "killed (SIGKILL)", "stopped (SIGTERM)"] {
            let old = wait_for(RECOVERY_TIMEOUT, "an active controller", || cluster.controller()).await?;
            let others: Vec<i32> = cluster.ids().into_iter().filter(|&id| id != old).collect();
            let stepped_aside = |cluster: &Cluster| -> anyhow::Result<Vec<usize>> {
                others
                    .iter()
                    .map(|&id| Ok(cluster.log(id)?.matches(STEPPED_ASIDE).count()))
                    .collect()
            };
            let before = stepped_aside(&cluster)?;
            let from = Instant::now();
            match what {
                "cut off" => cluster.proxy().isolate_silently(old),
                "killed (SIGKILL)" => cluster.kill(old)?,
                _ => {
                    cluster.terminate(old, RECOVERY_TIMEOUT).await?;
                }
            }
            let new = wait_for(ELECTION_TIMEOUT, "a new controller named by the others", || async {
                let mut named = None;
                for &id in &others {
                    let c = cluster.describe_cluster_on(id).await.ok()?.controller_id;
                    if c <= 0 || c == old || named.is_some_and(|n| n != c) {
                        return None;
                    }
                    named = Some(c);
                }
                named
            })
            .await?;
            let took = from.elapsed();
            println!(
                "controller on node {old} {what}: node {new} named the active controller after {:.0} ms",
                took.as_secs_f64() * 1e3
            );
            assert!(took < CONTROLLER_FAILOVER_LIMIT, "{what}: {took:?}");
            if what == "killed (SIGKILL)" {
                // A lease would have lapsed by now: a session after the last heartbeat
                // the dead controller answered.
                tokio::time::sleep(Duration::from_secs(1)).await;
                assert_eq!(
                    stepped_aside(&cluster)?,
                    before,
                    "a healthy broker (of {others:?}) stepped aside when the controller died"
                );
            }
            match what {
                "cut off" => cluster.proxy().heal(),
                _ => cluster.restart(old).await?,
            }
            cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await?;
            workload.wait_progress(50, RECOVERY_TIMEOUT).await?;
            // A node cut off counts its lease from the last heartbeat answered before
            // the cut until the controller answers one after the heal (found: the next
            // fault came 100 ms after the cut-off node first heard of the new controller,
            // before that answer, and its lease from before the cut lapsed during the
            // next election). Once a session has passed, every node's lease has been
            // renewed since, or has lapsed and is counted in `before`.
            tokio::time::sleep(SESSION_TIMEOUT + Duration::from_millis(500)).await;
        }
        let report = verdict(&cluster, workload, topic).await?;
        assert_verdict(&report);
        cluster.finish();
        Ok(())
    })
    .await
}

/// Random faults under load: kills, graceful stops, pauses, cuts and delays, on leaders
/// half the time, sometimes two at once, each healed and recovered from before the next.
/// A few by default; `WEIR_FAULTS_LONG=1` runs `WEIR_FAULTS_COUNT` (default 100), best in
/// release: `WEIR_FAULTS_LONG=1 cargo test -p weir-tests --release -- --nocapture random`.
/// `WEIR_FAULTS_SEED` replays a schedule. `WEIR_FAULTS_RETRIES=1` makes the producers
/// retry (idempotent, the client's defaults), so the checker's duplicates count what
/// idempotence failed to catch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_under_load() -> anyhow::Result<()> {
    let long = std::env::var_os("WEIR_FAULTS_LONG").is_some_and(|v| v != "0");
    let retrying = std::env::var_os("WEIR_FAULTS_RETRIES").is_some_and(|v| v != "0");
    let faults: usize = match std::env::var("WEIR_FAULTS_COUNT") {
        Ok(n) => n.parse().context("WEIR_FAULTS_COUNT is a number")?,
        Err(_) if long => 100,
        Err(_) => 2,
    };
    let limit = if long {
        Duration::from_secs(60 * 60)
    } else {
        TEST_LIMIT
    };
    let _serial = prepare().await?;
    let seed = nemesis::seed();
    println!(
        "random faults: {faults} faults, seed {seed} (WEIR_FAULTS_SEED={seed} replays the schedule)"
    );
    bounded(limit, async {
        let topic = "random";
        let started = Instant::now();
        let mut load = WorkloadConfig::new(topic, PARTITIONS);
        if retrying {
            load.retries = weir_client::ProducerConfig::default().retries;
        }
        let (mut cluster, workload) = start_with(load).await?;
        let mut rng = Rng::new(seed);
        let log = nemesis::run(&mut cluster, &workload, topic, PARTITIONS, faults, &mut rng).await;
        println!(
            "random faults: {} applied in {:.0} s (seed {seed}); proxy: {:?}",
            log.applied.len(),
            started.elapsed().as_secs_f64(),
            cluster.proxy().stats()
        );
        for (at, fault) in &log.applied {
            println!("  {at:>7.1} s  {fault}");
        }
        assert!(
            log.errors.is_empty(),
            "seed {seed}: faults that failed: {:#?}",
            log.errors
        );
        assert!(
            log.stuck.is_empty(),
            "seed {seed}: the cluster got stuck: {:#?}",
            log.stuck
        );
        let report = verdict(&cluster, workload, topic).await?;
        println!("seed {seed}");
        assert_verdict(&report);
        cluster.finish();
        Ok(())
    })
    .await
}

/// How a client of a secured cluster fared when it tried to use `topic`: the gRPC code
/// it was refused with when it described the topic, wrote to it and read it (connecting
/// included: a client may be refused there already). `None`: allowed.
#[derive(Debug)]
struct Refusals {
    describe: Option<tonic::Code>,
    write: Option<tonic::Code>,
    read: Option<tonic::Code>,
}

async fn refusals(cluster: &Cluster, who: &Credentials, topic: &str) -> anyhow::Result<Refusals> {
    use weir_client::{
        Admin, ConnectOptions, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
        SeekTo,
    };
    let tls = cluster.client_tls(who)?;
    let options = ConnectOptions {
        tls: Some(tls.clone()),
        ..ConnectOptions::default()
    };
    let describe = match Admin::connect_with(&cluster.bootstrap(), options).await {
        Ok(admin) => admin.describe_topic(topic).await.err().map(|e| e.code()),
        Err(e) => Some(e.code()),
    };
    let config = ProducerConfig {
        brokers: cluster.bootstrap(),
        retries: 0,
        request_timeout: Duration::from_secs(5),
        // Not idempotent: the write itself is what is refused, not a producer id.
        idempotence: false,
        tls: Some(tls.clone()),
        ..ProducerConfig::default()
    };
    let write = match Producer::connect(config).await {
        Ok(producer) => {
            let record = ProducerRecord::new(topic, "intruder").partition(0);
            let outcome = match producer.send(record).await {
                Ok(delivery) => delivery.wait().await.err().map(|e| e.code()),
                Err(e) => Some(e.code()),
            };
            producer.close().await;
            outcome
        }
        Err(e) => Some(e.code()),
    };
    let config = ConsumerConfig {
        brokers: cluster.bootstrap(),
        tls: Some(tls),
        ..ConsumerConfig::default()
    };
    let read = match Consumer::connect(config).await {
        Ok(mut consumer) => {
            consumer.assign(&[(topic, 0)]);
            match consumer.seek(topic, 0, SeekTo::Offset(0)).await {
                Err(e) => Some(e.code()),
                Ok(()) => consumer
                    .poll(100, Duration::from_secs(2))
                    .await
                    .err()
                    .map(|e| e.code()),
            }
        }
        Err(e) => Some(e.code()),
    };
    Ok(Refusals {
        describe,
        write,
        read,
    })
}

/// Waits until some node's audit log has a line with each of `needles`, asking again as
/// `who` (to be refused) every second meanwhile: a node writes at most 20 audit lines per
/// 10 s, and the probe's calls as the admin before the nodes had made it may have used
/// a window up.
async fn wait_audited(
    cluster: &Cluster,
    who: &Credentials,
    topic: &str,
    needles: &[&str],
) -> anyhow::Result<()> {
    /// Longer than the audit log's window.
    const AUDIT_WAIT: Duration = Duration::from_secs(15);
    let deadline = Instant::now() + AUDIT_WAIT;
    loop {
        for id in cluster.ids() {
            let log = cluster.log(id)?;
            let mut audit = log.lines().filter(|l| l.contains("weir::audit"));
            if audit.any(|l| needles.iter().all(|n| l.contains(n))) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            anyhow::bail!("no audit line with {needles:?} within {AUDIT_WAIT:?}");
        }
        refusals(cluster, who, topic).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// (i) The kill and the cut of the tests above on a secured cluster (issue 29): TLS on
/// every listener and between the nodes (through the proxy, which relays the TLS bytes),
/// client certificates verified, authentication required, authorization on. The load
/// runs over TLS as `workload`, a user the admin makes with only the ACLs it needs
/// (Write, Read, Describe on the topic, IdempotentWrite on the cluster); while it runs,
/// a client with no credentials and one with a wrong password are UNAUTHENTICATED, and
/// a client whose certificate names a user without ACLs is PERMISSION_DENIED writing to
/// the topic and reading it.
/// Then a partition's leader is SIGKILLed and restarted, and another's cut off from its
/// peers (closing cut) and healed: every acknowledged record is read back, none twice,
/// no node ever heard plaintext from a peer, and the audit log names the refused
/// clients. Prints the longest wait for an acknowledgement during each fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_cluster_survives_a_kill_and_a_cut_and_refuses_strangers() -> anyhow::Result<()> {
    /// How long the leader stays cut off: its session (2 s) lapses well within it.
    const CUT: Duration = Duration::from_secs(5);
    let _serial = prepare().await?;
    bounded(Duration::from_secs(60), async {
        let topic = "secured";
        let started = Instant::now();
        let mut cluster = Cluster::start(ClusterConfig {
            security: Some(SecureSetup::default()),
            ..ClusterConfig::default()
        })
        .await?;
        cluster.create_topic(topic, PARTITIONS, 3, 2).await?;
        let workload_tls = cluster
            .grant_workload("workload", "workload-password", topic)
            .await?;
        let load = WorkloadConfig {
            retries: weir_client::ProducerConfig::default().retries,
            request_timeout: Duration::from_secs(10),
            tls: Some(workload_tls),
            ..WorkloadConfig::new(topic, PARTITIONS)
        };
        let workload = Workload::start(cluster.bootstrap(), load);
        workload.wait_acked(200, Duration::from_secs(30)).await?;

        use tonic::Code;
        let intruder = Credentials::User {
            user: "intruder".into(),
            password: "guess".into(),
        };
        for who in [Credentials::Nobody, intruder.clone()] {
            let refused = refusals(&cluster, &who, topic).await?;
            println!("{who:?}: {refused:?}");
            let code = Some(Code::Unauthenticated);
            assert_eq!(
                (refused.describe, refused.write, refused.read),
                (code, code, code),
                "{who:?}"
            );
        }
        // The certificate's name is the principal, User:client; it has no ACLs. Its
        // DescribeTopic is not asserted: gRPC DescribeTopic checks no ACL yet (the
        // weir-broker core's `topic` ignores the request's principal).
        let who = Credentials::Certificate("client".into());
        let refused = refusals(&cluster, &who, topic).await?;
        println!("{who:?}: {refused:?}");
        let code = Some(Code::PermissionDenied);
        assert_eq!((refused.write, refused.read), (code, code), "{who:?}");

        // SIGKILL the leader of partition 0, restart it once another leads.
        let killed = cluster.leader(topic, 0).await?;
        let killed_at = Instant::now();
        cluster.kill(killed)?;
        new_leader(&cluster, topic, 0, killed).await?;
        workload.wait_progress(100, RECOVERY_TIMEOUT).await?;
        cluster.restart(killed).await?;
        cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await?;
        let kill_gap =
            availability::longest_gaps(&workload.ack_times(), PARTITIONS, killed_at, Instant::now())[0];

        // Cut off (closing) the leader of a partition another node leads now.
        let mut target = None;
        for p in 0..PARTITIONS {
            let leader = cluster.leader(topic, p).await?;
            if leader != killed {
                target = Some((p, leader));
                break;
            }
        }
        let (cut_partition, cut_node) = target.context("the restarted node leads every partition")?;
        let cut_at = Instant::now();
        cluster.proxy().isolate(cut_node);
        tokio::time::sleep(CUT).await;
        let healed_at = Instant::now();
        cluster.proxy().heal();
        cluster.wait_healthy(topic, RECOVERY_TIMEOUT).await?;
        workload.wait_progress(50, RECOVERY_TIMEOUT).await?;
        let cut_gap = availability::longest_gaps(&workload.ack_times(), PARTITIONS, cut_at, healed_at)
            [cut_partition as usize];

        let report = verdict(&cluster, workload, topic).await?;
        println!(
            "secured: node {killed} (leader of {topic}/0) killed: longest wait for an acknowledgement \
             on {topic}/0 {:.0} ms; node {cut_node} (leader of {topic}/{cut_partition}) cut off for \
             {:.0} s: longest wait on {topic}/{cut_partition} {:.0} ms; {} records acknowledged; \
             {:.1} s in all",
            kill_gap.longest.as_secs_f64() * 1e3,
            CUT.as_secs_f64(),
            cut_gap.longest.as_secs_f64() * 1e3,
            report.acknowledged,
            started.elapsed().as_secs_f64()
        );
        assert_verdict(&report);
        assert!(report.duplicates.is_empty(), "{report}");
        assert!(
            cut_gap.longest < CUT && !cut_gap.open,
            "writes to {topic}/{cut_partition} did not resume during the cut of node {cut_node}: {cut_gap:?}"
        );

        for id in cluster.ids() {
            let log = cluster.log(id)?;
            assert!(
                !log.contains("spoke plaintext"),
                "node {id} heard plaintext on a TLS listener:\n{}",
                cluster.log_tail(id, 40)
            );
        }
        let client = Credentials::Certificate("client".into());
        wait_audited(&cluster, &client, topic, &["authorization denied", "User:client"]).await?;
        wait_audited(&cluster, &intruder, topic, &["authentication failed", "intruder"]).await?;
        cluster.finish();
        Ok(())
    })
    .await
}
