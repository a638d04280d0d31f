//! Failover time, measured on real processes (the issue's figures): SIGKILL the leader
//! under load and time the kill to the first acknowledged write on the new leader (p50
//! and max over 20 kills; target at most 3 s with default settings), and SIGTERM the
//! leader (controlled shutdown) and time the signal to the new leader in the metadata
//! (target under 0.5 s), counting the errors a retrying client saw (target none).
//!
//! Three `weir serve` processes as `weir_tests::cluster` starts them (no timing flag: the
//! broker defaults, `broker.session.timeout.ms` 2000 and heartbeats every 500 ms), one
//! topic of 1 partition, replication factor 3, `min.insync.replicas=2`, and one producer
//! with the client's defaults (`acks=all`, retries on: 10, backoff 100 ms doubling to
//! 1 s) but a 5 s request timeout, writing 200 records/s to the partition throughout.
//!
//! What is timed, per round:
//!
//! - **SIGKILL round.** `t0` is taken just before SIGKILL of the partition's leader,
//!   `t_dead` once the process is reaped. *Failover* is `t0` to the acknowledgement of
//!   the first write handed to the producer at or after `t_dead` (the earliest such
//!   acknowledgement, by the time the producer's delivery future resolved): that write
//!   cannot have been answered by the dead leader, so it was acknowledged by the new one,
//!   with every in-sync replica holding it. It includes everything a user waits for: the
//!   session timeout, the election, the client's metadata refresh and retry backoff. Also
//!   shown: `t0` to the first DescribeTopic on a surviving node naming another leader
//!   (polled every 10 ms on both survivors), and whether the killed node was the active
//!   controller as well (then a new controller must be elected first, and it counts the
//!   dead node's session from the last Raft request it heard from it).
//! - **Controlled shutdown round.** `t0` is taken just before SIGTERM of the leader
//!   ([`Cluster::terminate`], which then waits for exit status 0). *Move* is `t0` to the
//!   first DescribeTopic on a surviving node naming another leader (polled every 10 ms on
//!   both survivors). *Errors* are the producer's sends and deliveries that returned
//!   `Err` (after its own retries) from `t0` until the node is back and the ISR full.
//!   Also shown: the SIGTERM to exit time, and the longest gap between two consecutive
//!   acknowledgements from the last one before `t0` to the first of a write sent after
//!   the move (the write stall a client sees).
//!
//! Between rounds the stopped node is restarted and the test waits for every node to
//! agree on the leader and a full ISR ([`Cluster::wait_healthy`]). At the end every
//! acknowledged write must be in a full read of the partition. Timings are printed, not
//! asserted (performance is measured, not asserted in timed tests); what is asserted is
//! that each round finds a new leader (and, for kills, an acknowledged write on it)
//! within 15 s, that writes resume within 30 s of a controlled shutdown's move and the
//! stopped broker exits cleanly, and that nothing acknowledged is lost (the producer
//! retries, so a write may be in the log twice: counted, not asserted).
//!
//! By default a short version runs (2 kills, 2 controlled shutdowns). The benchmark:
//!
//! ```sh
//! cargo build --release -p weir-cli
//! WEIR_FAILOVER_BENCH=1 cargo test -p weir-tests --release --test it -- \
//!     --nocapture failover::failover_time
//! ```
//!
//! Whether a killed leader is also the active controller is left to chance (one run had
//! 19 of 20, the next 1 of 20). With `WEIR_FAILOVER_KILL_CONTROLLER=1` every SIGKILL
//! round first moves the controller onto the partition's leader (SIGTERM and restart of
//! the active controller's node, which leads nothing, until the quorum elects the
//! leader's node), so all of them measure the slower case.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tonic::transport::Channel;
use weir_client::{Acks, ClientError, Producer, ProducerConfig, ProducerRecord};
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_tests::binary::weir_binary;
use weir_tests::checker::{self, History, Record};
use weir_tests::cluster::{Cluster, ClusterConfig};
use weir_tests::wait::{bounded, wait_for};
use weir_tests::workload::Ack;

const TOPIC: &str = "failover";
const PARTITION: u32 = 0;
/// Rounds of each kind with `WEIR_FAILOVER_BENCH=1` (the issue's 20 kills).
const BENCH_ROUNDS: usize = 20;
/// Rounds of each kind in the default (short) run.
const SHORT_ROUNDS: usize = 2;
/// The load: writes per second handed to the producer.
const RATE: u32 = 200;
/// Writes awaiting their outcome before the load waits (far above a failover's worth).
const MAX_PENDING: usize = 4096;
/// The producer's request timeout (the client's default is 30 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the survivors' metadata is asked for during a round.
const METADATA_POLL: Duration = Duration::from_millis(10);
/// How often the load's acknowledgements are looked at (their times are exact anyway).
const ACK_POLL: Duration = Duration::from_millis(10);
/// Longest an admin call to a survivor may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest a round may take to show a new leader, or its first acknowledged write: a
/// failure, not a slow figure.
const ROUND_BOUND: Duration = Duration::from_secs(15);
/// Longest writes may take to resume after a controlled shutdown (a failure past it;
/// stalls of about `replica.lag.time.max`, 10 s, were seen).
const RESUME_BOUND: Duration = Duration::from_secs(30);
/// Longest a controlled shutdown may take to exit.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);
/// Longest the cluster may take to become whole again after a round.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Acknowledgements awaited before each round (the load runs on the current leader).
const WARM_ACKS: usize = 50;
/// The broker's session timeout the harness runs with: it passes no flag, so the
/// default (`DEFAULT_SESSION_TIMEOUT_MS` in `weir-cluster/src/controller/active.rs`,
/// docs/replication.md § Broker lifecycle), which `weir serve` does not override.
const SESSION_TIMEOUT_NOTE: &str =
    "broker defaults (broker.session.timeout.ms 2000, heartbeat 500 ms; the harness sets neither)";

/// `WEIR_FAILOVER_BENCH` set (and not `0`): the full 20 + 20 rounds.
fn bench_enabled() -> bool {
    flag("WEIR_FAILOVER_BENCH")
}

/// `WEIR_FAILOVER_KILL_CONTROLLER` set (and not `0`): every killed leader is the active
/// controller too.
fn kill_controller() -> bool {
    flag("WEIR_FAILOVER_KILL_CONTROLLER")
}

fn flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v != "0" && !v.is_empty())
}

/// Attempts at moving the controller onto the partition's leader before a round.
const CONTROLLER_MOVES: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_time_of_a_killed_and_a_stopped_leader() -> anyhow::Result<()> {
    weir_tests::init_client_logs();
    let _serial = weir_tests::exclusive().await;
    let binary = tokio::task::spawn_blocking(weir_binary).await??;
    let bench = bench_enabled();
    let rounds = if bench { BENCH_ROUNDS } else { SHORT_ROUNDS };
    let limit = if bench {
        Duration::from_secs(60 * 60)
    } else {
        Duration::from_secs(240)
    };
    let profile = if binary.components().any(|c| c.as_os_str() == "release") {
        "release"
    } else if binary.components().any(|c| c.as_os_str() == "debug") {
        "debug"
    } else {
        "unknown profile"
    };
    println!(
        "failover bench: {} ({rounds} SIGKILL + {rounds} SIGTERM rounds), brokers {} ({profile}), \
         session timeout: {SESSION_TIMEOUT_NOTE}; topic {TOPIC}: 1 partition, RF 3, \
         min.insync.replicas 2; load {RATE} writes/s, acks=all, retries {} (backoff {:?}..{:?}), \
         request timeout {REQUEST_TIMEOUT:?}",
        if bench {
            "full"
        } else {
            "short (WEIR_FAILOVER_BENCH=1 for 20+20)"
        },
        binary.display(),
        ProducerConfig::default().retries,
        ProducerConfig::default().retry_backoff,
        ProducerConfig::default().retry_backoff_max,
    );
    bounded(limit, run(rounds)).await
}

async fn run(rounds: usize) -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterConfig::default()).await?;
    cluster.create_topic(TOPIC, 1, 3, 2).await?;
    let load = Load::start(&cluster).await?;
    load.wait_acked(WARM_ACKS, Duration::from_secs(30)).await?;

    let mut kills = Vec::new();
    for round in 1..=rounds {
        let k = kill_round(&mut cluster, &load)
            .await
            .with_context(|| format!("SIGKILL round {round}"))?;
        println!(
            "kill {round:>2}: node {} (controller: {}) -> node {}: first ack on the new leader {:>5.0} ms, \
             new leader in metadata {:>5.0} ms, client errors {}",
            k.old,
            yes_no(k.was_controller),
            k.new,
            ms(k.first_ack),
            ms(k.elected),
            k.errors
        );
        kills.push(k);
    }

    let mut stops = Vec::new();
    for round in 1..=rounds {
        let s = shutdown_round(&mut cluster, &load)
            .await
            .with_context(|| format!("SIGTERM round {round}"))?;
        println!(
            "stop {round:>2}: node {} (controller: {}) -> node {}: new leader in metadata {:>4.0} ms, \
             exited {:>5.0} ms, longest ack gap {:>5.0} ms, client errors {}{}",
            s.old,
            yes_no(s.was_controller),
            s.new,
            ms(s.moved),
            ms(s.exited),
            ms(s.stall),
            s.errors,
            if s.error_kinds.is_empty() {
                String::new()
            } else {
                format!(" {:?}", s.error_kinds)
            }
        );
        stops.push(s);
    }

    // Everything acknowledged is in the log.
    cluster.wait_healthy(TOPIC, RECOVERY_TIMEOUT).await?;
    let seen = load.stop().await;
    cluster.wait_quiet(TOPIC, RECOVERY_TIMEOUT).await?;
    let history = History {
        attempted: seen.attempted.clone(),
        acknowledged: seen.acked.iter().map(|a| a.record.clone()).collect(),
        consumed: Vec::new(),
        final_read: cluster.read_all(TOPIC).await?,
    };
    let report = checker::check(&history);
    println!("{report}");

    let all_errors = error_kinds(&seen.errors);
    println!();
    println!("================ failover summary ({}) ================", {
        if rounds == BENCH_ROUNDS {
            "full"
        } else {
            "short"
        }
    });
    println!("session timeout: {SESSION_TIMEOUT_NOTE}");
    let first_acks: Vec<Duration> = kills.iter().map(|k| k.first_ack).collect();
    let elected: Vec<Duration> = kills.iter().map(|k| k.elected).collect();
    println!(
        "failover (SIGKILL leader -> first ack on new leader) over {} kills: p50 {:.2} s, max {:.2} s \
         (target: at most 3 s)",
        kills.len(),
        p50(&first_acks).as_secs_f64(),
        max(&first_acks).as_secs_f64(),
    );
    println!(
        "  of which SIGKILL -> new leader in metadata: p50 {:.2} s, max {:.2} s; \
         {} of the killed leaders were the active controller too; client errors {}",
        p50(&elected).as_secs_f64(),
        max(&elected).as_secs_f64(),
        kills.iter().filter(|k| k.was_controller).count(),
        kills.iter().map(|k| k.errors).sum::<usize>(),
    );
    let client_share: Vec<Duration> = kills
        .iter()
        .map(|k| k.first_ack.saturating_sub(k.elected))
        .collect();
    println!(
        "  the client's share (first ack - new leader in metadata): p50 {:.2} s, max {:.2} s",
        p50(&client_share).as_secs_f64(),
        max(&client_share).as_secs_f64(),
    );
    for (what, controller) in [
        ("also the active controller", true),
        ("not the controller", false),
    ] {
        let these: Vec<Duration> = kills
            .iter()
            .filter(|k| k.was_controller == controller)
            .map(|k| k.first_ack)
            .collect();
        if !these.is_empty() {
            println!(
                "  killed leader {what}: {} kills, first ack p50 {:.2} s, max {:.2} s",
                these.len(),
                p50(&these).as_secs_f64(),
                max(&these).as_secs_f64(),
            );
        }
    }
    let moves: Vec<Duration> = stops.iter().map(|s| s.moved).collect();
    let stalls: Vec<Duration> = stops.iter().map(|s| s.stall).collect();
    let exits: Vec<Duration> = stops.iter().map(|s| s.exited).collect();
    println!(
        "controlled shutdown (SIGTERM leader -> new leader in metadata) over {}: p50 {:.0} ms, \
         max {:.0} ms; client errors: {} (target: under 500 ms, no error)",
        stops.len(),
        ms(p50(&moves)),
        ms(max(&moves)),
        stops.iter().map(|s| s.errors).sum::<usize>(),
    );
    println!(
        "  longest ack gap: p50 {:.0} ms, max {:.0} ms; SIGTERM -> exit: p50 {:.0} ms, max {:.0} ms",
        ms(p50(&stalls)),
        ms(max(&stalls)),
        ms(p50(&exits)),
        ms(max(&exits)),
    );
    println!(
        "writes: {} attempted, {} acknowledged, {} in the final read; lost {}, duplicated {} \
         (retries may write twice); client errors over the run: {all_errors:?}",
        report.attempted,
        report.acknowledged,
        report.final_records,
        report.lost.len(),
        report.duplicates.len(),
    );
    println!("(p50: nearest rank, the ceil(n/2)-th smallest)");

    assert!(report.lost.is_empty(), "acknowledged writes lost: {report}");
    assert!(report.inconsistent.is_empty(), "{report}");
    assert!(report.unexpected.is_empty(), "{report}");
    cluster.finish();
    Ok(())
}

/// What one SIGKILL round measured.
#[derive(Debug)]
struct KillRound {
    old: i32,
    new: i32,
    was_controller: bool,
    /// SIGKILL to the first acknowledged write sent after the process was dead.
    first_ack: Duration,
    /// SIGKILL to a survivor naming another leader.
    elected: Duration,
    errors: usize,
}

async fn kill_round(cluster: &mut Cluster, load: &Load) -> anyhow::Result<KillRound> {
    if kill_controller() {
        move_controller_to_leader(cluster, load).await?;
    }
    let old = current_leader(cluster).await?;
    let was_controller = cluster.controller().await == Some(old);
    let survivors = admin_clients(cluster, old).await?;
    load.wait_progress(WARM_ACKS, RECOVERY_TIMEOUT).await?;
    let errors_before = load.errors();

    let t0 = Instant::now();
    cluster.kill(old)?;
    let dead = Instant::now();
    let (elected, first_ack) = tokio::join!(
        watch_new_leader(&survivors, old, t0),
        load.first_ack_sent_since(dead, t0 + ROUND_BOUND),
    );
    let (elected_at, new) = elected?;
    let first_ack = first_ack?;

    cluster.restart(old).await?;
    cluster.wait_healthy(TOPIC, RECOVERY_TIMEOUT).await?;
    load.wait_progress(WARM_ACKS, RECOVERY_TIMEOUT).await?;
    Ok(KillRound {
        old,
        new,
        was_controller,
        first_ack: first_ack.acked_at - t0,
        elected: elected_at - t0,
        errors: load.errors() - errors_before,
    })
}

/// Stops the active controller's node (with a controlled shutdown) and restarts it once
/// another is elected, until the quorum elects the partition leader's node. The controller's node leads nothing here, so its
/// restart moves no leadership.
async fn move_controller_to_leader(cluster: &mut Cluster, load: &Load) -> anyhow::Result<()> {
    for _ in 0..CONTROLLER_MOVES {
        let leader = current_leader(cluster).await?;
        let controller = wait_for(RECOVERY_TIMEOUT, "an active controller", || async {
            cluster.controller().await
        })
        .await?;
        if controller == leader {
            return Ok(());
        }
        cluster.terminate(controller, SHUTDOWN_LIMIT).await?;
        // Restarted at once, it would stand first (its lease is gone, the others wait
        // out theirs) and win again: it comes back once the others have elected.
        wait_for(RECOVERY_TIMEOUT, "another active controller", || async {
            cluster.controller().await.filter(|c| *c != controller)
        })
        .await?;
        cluster.restart(controller).await?;
        cluster.wait_healthy(TOPIC, RECOVERY_TIMEOUT).await?;
        load.wait_progress(WARM_ACKS, RECOVERY_TIMEOUT).await?;
    }
    bail!("the controller did not move onto the partition's leader in {CONTROLLER_MOVES} restarts")
}

/// What one controlled-shutdown round measured.
#[derive(Debug)]
struct StopRound {
    old: i32,
    new: i32,
    was_controller: bool,
    /// SIGTERM to a survivor naming another leader.
    moved: Duration,
    /// SIGTERM to exit status 0.
    exited: Duration,
    /// Longest gap between consecutive acknowledgements around the move.
    stall: Duration,
    errors: usize,
    error_kinds: Vec<(String, usize)>,
}

async fn shutdown_round(cluster: &mut Cluster, load: &Load) -> anyhow::Result<StopRound> {
    let old = current_leader(cluster).await?;
    let was_controller = cluster.controller().await == Some(old);
    let survivors = admin_clients(cluster, old).await?;
    load.wait_progress(WARM_ACKS, RECOVERY_TIMEOUT).await?;
    let errors_before = load.errors();

    let t0 = Instant::now();
    let (exited, elected) = tokio::join!(
        cluster.terminate(old, SHUTDOWN_LIMIT),
        watch_new_leader(&survivors, old, t0),
    );
    let exited = exited?;
    let (elected_at, new) = elected?;
    let after = load.first_ack_sent_since(elected_at, elected_at + RESUME_BOUND);
    let first_after = after.await?;
    let stall = load.longest_ack_gap(t0, first_after.acked_at);

    cluster.restart(old).await?;
    cluster.wait_healthy(TOPIC, RECOVERY_TIMEOUT).await?;
    load.wait_progress(WARM_ACKS, RECOVERY_TIMEOUT).await?;
    let errors: Vec<(Instant, String)> = load.seen().errors[errors_before..].to_vec();
    Ok(StopRound {
        old,
        new,
        was_controller,
        moved: elected_at - t0,
        exited,
        stall,
        errors: errors.len(),
        error_kinds: error_kinds(&errors),
    })
}

/// The partition's leader, once there is one.
async fn current_leader(cluster: &Cluster) -> anyhow::Result<i32> {
    wait_for(RECOVERY_TIMEOUT, "a leader of the partition", || async {
        let leader = cluster.leader(TOPIC, PARTITION).await.ok()?;
        (leader > 0).then_some(leader)
    })
    .await
}

/// Admin clients to every node but `except`, connected now (through their proxies, as a
/// client would: no fault is set, so they only forward), so polling costs no connect.
async fn admin_clients(
    cluster: &Cluster,
    except: i32,
) -> anyhow::Result<Vec<(i32, AdminClient<Channel>)>> {
    let mut out = Vec::new();
    for id in cluster.ids().into_iter().filter(|&id| id != except) {
        let addr = cluster.proxy().address(id);
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect_timeout(RPC_TIMEOUT)
            .timeout(RPC_TIMEOUT)
            .connect()
            .await
            .with_context(|| format!("connecting to node {id} at {addr}"))?;
        out.push((id, AdminClient::new(channel)));
    }
    Ok(out)
}

/// Polls every survivor's DescribeTopic every [`METADATA_POLL`] until one names a leader
/// of the partition other than `old`; returns when that answer arrived and the leader.
/// Fails past `t0 + ROUND_BOUND`.
async fn watch_new_leader(
    survivors: &[(i32, AdminClient<Channel>)],
    old: i32,
    t0: Instant,
) -> anyhow::Result<(Instant, i32)> {
    let deadline = t0 + ROUND_BOUND;
    let mut tick = tokio::time::interval(METADATA_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = String::new();
    loop {
        tick.tick().await;
        let asks = survivors.iter().map(|(id, admin)| {
            let (id, mut admin) = (*id, admin.clone());
            async move {
                let request = pb::DescribeTopicRequest {
                    name: TOPIC.to_owned(),
                    allow_auto_create: false,
                };
                let answer = tokio::time::timeout(RPC_TIMEOUT, admin.describe_topic(request)).await;
                (id, answer, Instant::now())
            }
        });
        for (id, answer, at) in futures_join_all(asks).await {
            match answer {
                Ok(Ok(response)) => {
                    let leader = response
                        .into_inner()
                        .topic
                        .and_then(|t| t.partitions.into_iter().find(|p| p.partition == PARTITION))
                        .map(|p| p.leader);
                    match leader {
                        Some(leader) if leader > 0 && leader != old => return Ok((at, leader)),
                        other => last = format!("node {id} says leader {other:?}"),
                    }
                }
                Ok(Err(status)) => last = format!("node {id}: {status}"),
                Err(_) => last = format!("node {id} did not answer in {RPC_TIMEOUT:?}"),
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "no survivor named a leader other than node {old} within {ROUND_BOUND:?} (last: {last})"
            );
        }
    }
}

/// Runs the futures concurrently and returns their outputs in order (a few futures: no
/// `futures` dependency for `join_all`).
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<JoinHandle<F::Output>> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("a metadata probe panicked"));
    }
    out
}

/// The load: one producer writing unique values to the partition at [`RATE`] per
/// second, with retries on, recording every acknowledgement and error with its time.
#[derive(Debug)]
struct Load {
    seen: Arc<Mutex<Seen>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default, Clone)]
struct Seen {
    attempted: Vec<String>,
    acked: Vec<Ack>,
    /// When and what: sends and deliveries that returned `Err`.
    errors: Vec<(Instant, String)>,
}

impl Load {
    async fn start(cluster: &Cluster) -> anyhow::Result<Load> {
        let config = ProducerConfig {
            brokers: cluster.bootstrap(),
            acks: Acks::All,
            request_timeout: REQUEST_TIMEOUT,
            ..ProducerConfig::default()
        };
        let producer = tokio::time::timeout(Duration::from_secs(10), Producer::connect(config))
            .await
            .context("connecting the producer timed out")??;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(produce(seen.clone(), producer, stopped));
        Ok(Load { seen, stop, task })
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        lock(&self.seen)
    }

    fn errors(&self) -> usize {
        self.seen().errors.len()
    }

    async fn wait_acked(&self, n: usize, limit: Duration) -> anyhow::Result<()> {
        wait_for(limit, &format!("{n} acknowledged writes"), || {
            std::future::ready((self.seen().acked.len() >= n).then_some(()))
        })
        .await
    }

    async fn wait_progress(&self, n: usize, limit: Duration) -> anyhow::Result<()> {
        let target = self.seen().acked.len() + n;
        self.wait_acked(target, limit).await
    }

    /// The earliest-acknowledged write handed to the producer at or after `since`,
    /// looked for until `deadline`.
    async fn first_ack_sent_since(&self, since: Instant, deadline: Instant) -> anyhow::Result<Ack> {
        let mut tick = tokio::time::interval(ACK_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let found = self
                .seen()
                .acked
                .iter()
                .filter(|a| a.sent_at >= since)
                .min_by_key(|a| a.acked_at)
                .cloned();
            if let Some(ack) = found {
                return Ok(ack);
            }
            if Instant::now() >= deadline {
                bail!(
                    "no write sent after the fault was acknowledged within {:?} of it",
                    deadline - since
                );
            }
        }
    }

    /// The longest gap between consecutive acknowledgements from the last one before
    /// `from` to `until`.
    fn longest_ack_gap(&self, from: Instant, until: Instant) -> Duration {
        let seen = self.seen();
        let mut times: Vec<Instant> = seen.acked.iter().map(|a| a.acked_at).collect();
        times.sort();
        let start = times.partition_point(|&t| t < from).saturating_sub(1);
        let end = times.partition_point(|&t| t <= until);
        times[start..end]
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    /// Stops the producer (writes in flight get their outcome) and returns what it saw.
    async fn stop(self) -> Seen {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(15), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
        lock(&self.seen).clone()
    }
}

async fn produce(seen: Arc<Mutex<Seen>>, producer: Producer, mut stopped: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(MAX_PENDING));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
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
        let value = format!("v{seq}");
        lock(&seen).attempted.push(value.clone());
        let sent_at = Instant::now();
        let record = ProducerRecord::new(TOPIC, value.clone()).partition(PARTITION);
        match producer.send(record).await {
            Ok(delivery) => {
                let seen = seen.clone();
                deliveries.spawn(async move {
                    let outcome = delivery.await;
                    let now = Instant::now();
                    let mut s = lock(&seen);
                    match outcome {
                        Ok(m) => s.acked.push(Ack {
                            record: Record::new(m.partition, m.offset, value),
                            sent_at,
                            acked_at: now,
                        }),
                        Err(e) => s.errors.push((now, kind(&e))),
                    }
                    drop(permit);
                });
            }
            Err(e) => lock(&seen)
                .errors
                .push((Instant::now(), format!("send: {}", kind(&e)))),
        }
        while deliveries.try_join_next().is_some() {}
    }
    let drained = async { while deliveries.join_next().await.is_some() {} };
    if tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(5), drained)
        .await
        .is_err()
    {
        deliveries.abort_all();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), producer.close()).await;
}

/// The error's kind: its variant name (`NotLeader`, `Unavailable`, ...).
fn kind(error: &ClientError) -> String {
    format!("{error:?}")
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Errors by kind.
fn error_kinds(errors: &[(Instant, String)]) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (_, what) in errors {
        *counts.entry(what.clone()).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// Nearest-rank median: the ceil(n/2)-th smallest.
fn p50(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted
        .get(values.len().div_ceil(2).saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

fn max(values: &[Duration]) -> Duration {
    values.iter().copied().max().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
