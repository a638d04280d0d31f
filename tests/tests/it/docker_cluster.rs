//! The compose cluster of `deploy/compose` under the faults Docker applies, with a real
//! load (issue 10 § 5): an image of the `weir` binary under test (see
//! `weir_tests::image`), `docker-compose up` of the three voters, every broker unfenced
//! and advertising its host listener, a topic with 3 partitions, replication factor 3
//! and min.insync.replicas 2, idempotent producers (acks=all, retrying) and consumers on
//! the host, bootstrapped from the nodes' host listeners, while, one after another and
//! each healed before the next:
//!
//! 1. `docker kill` of a partition's leader, then `docker start`;
//! 2. `docker pause` of a partition's leader, then `docker unpause`;
//! 3. `docker network disconnect` of a partition's leader from the compose network, then
//!    `docker network connect`;
//! 4. a rolling restart: `docker restart -t 30` of each node in turn, each back healthy
//!    and in every ISR before the next;
//! 5. scale out: `weir-4` (the compose file's `scale-out` profile) started, and
//!    `weir cluster rebalance --wait` moving replicas onto it.
//!
//! Before the faults, Kafka clients on the host (kafka-python) bootstrap from each node's
//! external Kafka listener and must be told every broker's host address, find no topic
//! created on first use, and write and read a replicated topic; and pika, through each
//! node's AMQP host port, publishes with confirms through every node and reads back
//! through another, every message once and in order.
//!
//! For each fault it prints how long each partition took no writes (the longest gap
//! between acknowledgements, `weir_tests::availability`) and the metadata's story (leader,
//! epoch, ISR as they changed). At the end the checker's verdict on everything the
//! clients saw and a full read of every partition: no acknowledged record lost, none
//! stored twice, every offset holding one value, consumers reading in order.
//!
//! One round of faults 1-4 by default (about a minute and a half); `WEIR_DOCKER_LONG=1`
//! runs `WEIR_DOCKER_ROUNDS` (default 5). `WEIR_DOCKER_IMAGE=weir:latest` runs it all on
//! an image already built (the production one, from `deploy/docker/build-image.sh`)
//! instead of building one. Without a Docker engine the test fails, unless
//! `WEIR_SKIP_DOCKER=1`, which makes it say why and pass. With its figures:
//! `cargo test -p weir-tests --test it -- --nocapture docker_cluster::`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;
use weir_tests::availability::{self, Gap};
use weir_tests::binary::weir_binary;
use weir_tests::checker;
use weir_tests::compose::{self, ComposeCluster, SCALE_OUT_NODE, VOTERS};
use weir_tests::image::TestImage;
use weir_tests::probe::Probe;
use weir_tests::wait::{bounded, wait_for};
use weir_tests::workload::{Workload, WorkloadConfig};

const TOPIC: &str = "docker-faults";
const PARTITIONS: u32 = 3;
/// Hard bound of the short run, and of the long one.
const SHORT_LIMIT: Duration = Duration::from_secs(6 * 60);
const LONG_LIMIT: Duration = Duration::from_secs(60 * 60);
/// Rounds of faults 1-4 in the long run unless `WEIR_DOCKER_ROUNDS` says.
const LONG_ROUNDS: usize = 5;
/// Longest the compose cluster (or a restarted container) may take to be healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a leader election may take to show in the metadata.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest the cluster may take to be whole again after a fault is healed.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// `docker restart -t`: as the compose file's stop_grace_period.
const RESTART_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a client script on the host (Kafka or AMQP) may take (its venv installed
/// beforehand).
const HOST_CLIENTS_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest `weir cluster rebalance --wait` may take.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(120);
/// The producers' request timeout: a write to a frozen or cut-off leader fails after
/// it and is resent (to the new leader, once the metadata names one).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The unavailability the issue sets as the goal for a leader kill, a pause and a
/// rolling restart (reported, not asserted: it depends on the machine's load).
const GOAL: Duration = Duration::from_secs(5);

/// One fault and what writers saw of it.
struct Measured {
    fault: String,
    /// Per partition, the longest wait for an acknowledgement.
    gaps: Vec<Gap>,
    /// What happened, with times from the fault.
    detail: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_the_compose_cluster_lose_no_acknowledged_record() -> anyhow::Result<()> {
    if let Err(e) = compose::docker_available() {
        if std::env::var_os("WEIR_SKIP_DOCKER").is_some_and(|v| v != "0") {
            println!("skipped (WEIR_SKIP_DOCKER=1): {e:#}");
            return Ok(());
        }
        panic!(
            "this test runs the compose cluster on a Docker engine, and there is none: {e:#}\n\
             Start the Docker daemon, or set WEIR_SKIP_DOCKER=1 to skip the test."
        );
    }
    let long = std::env::var_os("WEIR_DOCKER_LONG").is_some_and(|v| v != "0");
    let rounds = match std::env::var("WEIR_DOCKER_ROUNDS") {
        Ok(n) => n.parse().context("WEIR_DOCKER_ROUNDS is a number")?,
        Err(_) if long => LONG_ROUNDS,
        Err(_) => 1,
    };
    let limit = if long { LONG_LIMIT } else { SHORT_LIMIT };
    weir_tests::init_client_logs();
    // The compose file's container names are fixed, so the secure variant's test must not
    // run beside this one, nor a process cluster on the same two cores.
    let _serial = weir_tests::exclusive().await;
    // Outside the time bound: building may wait on cargo's lock.
    let binary = tokio::task::spawn_blocking(weir_binary).await??;
    // Before building anything: the compose file's container names are fixed.
    compose::names_free()?;
    let started = Instant::now();
    // The image: one given (the production image, say), or one built of the binary
    // under test, removed at the end.
    let built;
    let image = match std::env::var("WEIR_DOCKER_IMAGE") {
        Ok(given) => {
            println!("image {given} (WEIR_DOCKER_IMAGE)");
            given
        }
        Err(_) => {
            let tag = format!("weir-test:{}", std::process::id());
            built = tokio::task::spawn_blocking(move || TestImage::build(&binary, &tag)).await??;
            println!(
                "image {}: {:.0} MB, built in {:.1} s",
                built.tag(),
                built.size_bytes as f64 / 1e6,
                built.build_time.as_secs_f64()
            );
            built.tag().to_owned()
        }
    };
    let outcome = bounded(limit, run(&image, rounds)).await;
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    outcome
}

async fn run(image: &str, rounds: usize) -> anyhow::Result<()> {
    let project = format!("weir-test-{}", std::process::id());
    let (mut cluster, healthy_after) = ComposeCluster::up(image, &project, HEALTHY_TIMEOUT).await?;
    let up_started = Instant::now() - healthy_after;
    cluster
        .probe()
        .wait_brokers_unfenced(HEALTHY_TIMEOUT)
        .await
        .context("the compose cluster did not form")?;
    // Each broker tells host clients its host listener, whichever node they ask.
    for id in cluster.ids() {
        let described = cluster.probe().describe_cluster_on(id).await?;
        let mut advertised: Vec<(i32, String)> = described
            .brokers
            .iter()
            .map(|b| (b.broker_id, format!("{}:{}", b.host, b.port)))
            .collect();
        advertised.sort();
        let expected: Vec<(i32, String)> = cluster
            .ids()
            .into_iter()
            .map(|n| (n, cluster.host_address(n).to_string()))
            .collect();
        assert_eq!(advertised, expected, "brokers as weir-{id} describes them");
    }
    println!(
        "compose cluster (project {project}): 3 containers healthy {:.1} s after `up -d`, \
         every broker registered and unfenced after {:.1} s; host listeners {:?}",
        healthy_after.as_secs_f64(),
        up_started.elapsed().as_secs_f64(),
        cluster.bootstrap()
    );
    // The pinned clients' venv, shared with the other tests that run them.
    let python = tokio::task::spawn_blocking(crate::kafka_failover::python).await??;
    kafka_clients_on_the_host(&cluster, &python).await?;
    amqp_clients_on_the_host(&cluster, &python).await?;
    cluster
        .probe()
        .create_topic(TOPIC, PARTITIONS, 3, 2)
        .await?;
    let load = WorkloadConfig {
        retries: weir_client::ProducerConfig::default().retries,
        request_timeout: REQUEST_TIMEOUT,
        // Writes stuck on a partition without a leader must not hold up the others.
        max_in_flight: 4096,
        ..WorkloadConfig::new(TOPIC, PARTITIONS)
    };
    let workload = Workload::start(cluster.bootstrap(), load);
    workload.wait_acked(200, Duration::from_secs(30)).await?;

    let mut measured = Vec::new();
    for round in 0..rounds {
        let partition = round as u32 % PARTITIONS;
        measured.push(isolate_leader(&mut cluster, &workload, partition, Isolation::Kill).await?);
        // The first round pauses the clients' first bootstrap broker (where they asked
        // for metadata first), the worst case for clients; later rounds go on rotating.
        let paused = match round {
            0 => partition_led_by(&cluster, BOOTSTRAP_NODE).await?,
            _ => None,
        };
        measured.push(
            isolate_leader(
                &mut cluster,
                &workload,
                paused.unwrap_or((partition + 1) % PARTITIONS),
                Isolation::Pause,
            )
            .await?,
        );
        measured.push(
            isolate_leader(
                &mut cluster,
                &workload,
                (partition + 2) % PARTITIONS,
                Isolation::Disconnect,
            )
            .await?,
        );
        measured.extend(rolling_restart(&mut cluster, &workload).await?);
    }
    measured.push(scale_out(&mut cluster, &workload).await?);
    println!("{}", table(&measured));

    // The verdict, as the faults module (faults.rs) gives it.
    let probe = cluster.probe();
    probe.wait_healthy(TOPIC, RECOVERY_TIMEOUT).await?;
    workload
        .wait_progress(50, RECOVERY_TIMEOUT)
        .await
        .context("writes after the last fault")?;
    let (mut history, errors) = workload.stop().await;
    probe.wait_quiet(TOPIC, RECOVERY_TIMEOUT).await?;
    history.final_read = probe.read_all(TOPIC).await?;
    let report = checker::check(&history);
    println!("{report}");
    println!("client errors: {errors:?}");
    for partition in 0..PARTITIONS {
        assert!(
            history.final_read.iter().any(|r| r.partition == partition),
            "the full read of partition {partition} is empty"
        );
    }
    assert!(report.is_valid(), "{report}");
    cluster.finish();
    Ok(())
}

/// The node the workload's clients bootstrap from first (`ComposeCluster::bootstrap`).
const BOOTSTRAP_NODE: i32 = 1;

/// Kafka clients on the host (kafka-python, `tests/kafka/compose_cluster.py`) bootstrap
/// from any node's external Kafka listener and are told every broker's host address;
/// topics are not created on first use; a replicated topic takes and gives back records.
async fn kafka_clients_on_the_host(cluster: &ComposeCluster, python: &Path) -> anyhow::Result<()> {
    let addresses: BTreeMap<String, String> = cluster
        .ids()
        .into_iter()
        .map(|n| (n.to_string(), cluster.kafka_host_address(n).to_string()))
        .collect();
    let addresses = format!(
        "{{{}}}",
        addresses
            .iter()
            .map(|(n, a)| format!("\"{n}\": \"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let started = Instant::now();
    let stdout = host_client(python, "tests/kafka/compose_cluster.py", &[&addresses]).await?;
    println!(
        "Kafka clients on the host ({addresses}): every broker at its host address, no topic \
         created on first use, a replicated topic written and read in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        stdout.trim()
    );
    Ok(())
}

/// Runs the client script `script` (from the repository's root) with `args` on the host,
/// within [`HOST_CLIENTS_TIMEOUT`]; its standard output, or why it failed.
async fn host_client(python: &Path, script: &str, args: &[&str]) -> anyhow::Result<String> {
    let run = tokio::process::Command::new(python)
        .arg(repo_root()?.join(script))
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(HOST_CLIENTS_TIMEOUT, run)
        .await
        .with_context(|| format!("{script} on the host did not finish"))?
        .with_context(|| format!("running {script}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{script} on the host failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// pika on the host (`tests/amqp/cluster_queues.py`) through every node's AMQP host port:
/// a queue declared through each node, published to through all three with publisher
/// confirms (most publishes reach a node that does not lead the queue), read back through
/// another: every message once, each publisher's in its order, none nacked.
async fn amqp_clients_on_the_host(cluster: &ComposeCluster, python: &Path) -> anyhow::Result<()> {
    const PER_PUBLISHER: usize = 20;
    let ports: Vec<String> = VOTERS
        .iter()
        .map(|&n| cluster.amqp_host_address(n).port().to_string())
        .collect();
    let started = Instant::now();
    let stdout = host_client(
        python,
        "tests/amqp/cluster_queues.py",
        &[&ports.join(","), &PER_PUBLISHER.to_string()],
    )
    .await?;
    let seen: serde_json::Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("cluster_queues.py printed no JSON: {stdout}"))?;
    for q in 0..VOTERS.len() {
        let queue = &seen[format!("cluster-q{q}")];
        anyhow::ensure!(queue["nacked"] == serde_json::json!([]), "nacked: {seen}");
        let read: Vec<&str> = queue["read"]
            .as_array()
            .context("read")?
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        anyhow::ensure!(
            read.len() == PER_PUBLISHER * VOTERS.len(),
            "cluster-q{q}: {} read, not {}: {read:?}",
            read.len(),
            PER_PUBLISHER * VOTERS.len()
        );
        for b in 0..VOTERS.len() {
            let prefix = format!("b{b}-");
            let mine: Vec<&str> = read
                .iter()
                .copied()
                .filter(|m| m.starts_with(&prefix))
                .collect();
            let expected: Vec<String> = (0..PER_PUBLISHER).map(|i| format!("b{b}-{i}")).collect();
            anyhow::ensure!(mine == expected, "cluster-q{q}, publisher {b}: {mine:?}");
        }
    }
    println!(
        "AMQP clients on the host (ports {}): three queues, each published to through every \
         node with confirms and read back through another, every message once and in order, \
         in {:.1} s",
        ports.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The repository's root.
fn repo_root() -> anyhow::Result<PathBuf> {
    Ok(crate::kafka_failover::tests_dir()
        .parent()
        .context("tests/ is inside the repository")?
        .to_path_buf())
}

/// A partition of the topic `node` leads, if any.
async fn partition_led_by(cluster: &ComposeCluster, node: i32) -> anyhow::Result<Option<u32>> {
    let topic = cluster.probe().describe(TOPIC).await?;
    Ok(topic
        .partitions
        .iter()
        .find(|p| p.leader == node)
        .map(|p| p.partition))
}

/// Faults 1-3 on the leader of a partition: killed (`docker kill`, then `docker start`),
/// frozen (`docker pause`: its connections stay open, it answers nothing; then
/// `unpause`) or cut off (`docker network disconnect` from the compose network, its only
/// one: neither its peers nor the host reach it; then `network connect`). Healed once
/// another replica leads and takes writes.
#[derive(Debug, Clone, Copy)]
enum Isolation {
    Kill,
    Pause,
    Disconnect,
}

impl Isolation {
    /// The docker commands that start and heal it, and what befell the node.
    fn words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Isolation::Kill => ("docker kill", "docker start", "killed"),
            Isolation::Pause => ("docker pause", "docker unpause", "paused"),
            Isolation::Disconnect => (
                "docker network disconnect",
                "docker network connect",
                "cut off",
            ),
        }
    }
}

/// Isolates the leader of `partition` as `how` says, waits for another replica to lead
/// and take writes, heals it, and waits until it is back in every ISR.
async fn isolate_leader(
    cluster: &mut ComposeCluster,
    workload: &Workload,
    partition: u32,
    how: Isolation,
) -> anyhow::Result<Measured> {
    let (start, heal, befell) = how.words();
    let leader = cluster.probe().leader(TOPIC, partition).await?;
    let at = wall_clock();
    let controller = cluster.probe().controller().await;
    let from = Instant::now();
    let watch = MetadataWatch::start(cluster.probe_without(Some(leader)), from);
    println!("[{at}] {start} weir-{leader} (leads p{partition})");
    match how {
        Isolation::Kill => cluster.kill(leader).await?,
        Isolation::Pause => cluster.pause(leader).await?,
        Isolation::Disconnect => cluster.disconnect(leader).await?,
    }
    let applied = Instant::now();
    let successor = new_leader(cluster, partition, leader).await?;
    let elected = from.elapsed();
    let first = workload
        .wait_ack_sent_since(partition, applied, RECOVERY_TIMEOUT)
        .await?;
    match how {
        Isolation::Kill => cluster.start(leader).await?,
        Isolation::Pause => cluster.unpause(leader).await?,
        Isolation::Disconnect => cluster.connect(leader).await?,
    }
    let healed_at = from.elapsed();
    recovered(cluster, leader).await?;
    let healed = Instant::now();
    let gaps = writes_flow(workload, from, healed).await?;
    Ok(Measured {
        fault: format!("{start} weir-{leader} (leads p{partition}), {heal}"),
        gaps,
        detail: format!(
            "[{at}] weir-{leader} {}{befell}: weir-{successor} leads p{partition} after {}, first write sent \
             after `{start}` returned ({}) acknowledged after {}; healed at {}, back in every ISR at {}{}",
            role_note(controller, leader),
            ms(elected),
            ms(applied - from),
            ms(first.acked_at - from),
            ms(healed_at),
            ms(healed - from),
            watch.finish().await
        ),
    })
}

/// Fault 4: a rolling restart, `docker restart -t 30` of each node in turn (SIGTERM: a
/// controlled shutdown moves its leaderships first), each healthy, back in every ISR and
/// writes flowing before the next. One row per node.
async fn rolling_restart(
    cluster: &mut ComposeCluster,
    workload: &Workload,
) -> anyhow::Result<Vec<Measured>> {
    let mut measured = Vec::new();
    for id in cluster.ids() {
        let at = wall_clock();
        let controller = cluster.probe().controller().await;
        let from = Instant::now();
        let watch = MetadataWatch::start(cluster.probe_without(Some(id)), from);
        println!("[{at}] docker restart weir-{id}");
        let took = cluster.restart(id, RESTART_STOP_TIMEOUT).await?;
        recovered(cluster, id).await?;
        let healed = Instant::now();
        let gaps = writes_flow(workload, from, healed).await?;
        measured.push(Measured {
            fault: format!("rolling restart: docker restart weir-{id}"),
            gaps,
            detail: format!(
                "[{at}] weir-{id} {}restarted (stopped and started) in {}, back in every ISR at {}{}",
                role_note(controller, id),
                ms(took),
                ms(healed - from),
                watch.finish().await
            ),
        });
    }
    Ok(measured)
}

/// Fault 5: Scale out: start `weir-4`, wait until it is registered and unfenced, then
/// `weir cluster rebalance --wait` (the CLI under test, from the host) and wait until no
/// partition is moving and every ISR is full.
async fn scale_out(cluster: &mut ComposeCluster, workload: &Workload) -> anyhow::Result<Measured> {
    let at = wall_clock();
    let from = Instant::now();
    let watch = MetadataWatch::start(cluster.probe(), from);
    println!("[{at}] scale out: weir-{SCALE_OUT_NODE}");
    cluster.scale_out(HEALTHY_TIMEOUT).await?;
    cluster
        .probe()
        .wait_brokers_unfenced(HEALTHY_TIMEOUT)
        .await?;
    let joined = from.elapsed();
    let binary = weir_binary()?;
    let brokers = cluster.bootstrap().join(",");
    let rebalance_started = Instant::now();
    let output = tokio::time::timeout(
        REBALANCE_TIMEOUT,
        tokio::process::Command::new(&binary)
            .args(["cluster", "rebalance", "--wait", "--brokers", &brokers])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("weir cluster rebalance --wait timed out")??;
    let rebalanced = rebalance_started.elapsed();
    if !output.status.success() {
        bail!(
            "weir cluster rebalance --wait failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let plan = String::from_utf8_lossy(&output.stdout);
    let moves = plan.lines().filter(|l| l.starts_with(TOPIC)).count();
    let probe = cluster.probe();
    let replicas = wait_for(
        RECOVERY_TIMEOUT,
        &format!("no partition of {TOPIC} moving, weir-{SCALE_OUT_NODE} holding some"),
        || async {
            let t = probe.describe(TOPIC).await.ok()?;
            let moving = t
                .partitions
                .iter()
                .any(|p| !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty());
            let held = t
                .partitions
                .iter()
                .filter(|p| p.replicas.contains(&SCALE_OUT_NODE))
                .count();
            (!moving && held > 0).then_some(held)
        },
    )
    .await?;
    probe.wait_healthy(TOPIC, RECOVERY_TIMEOUT).await?;
    let healed = Instant::now();
    let gaps = writes_flow(workload, from, healed).await?;
    Ok(Measured {
        fault: format!("scale out: weir-{SCALE_OUT_NODE}, rebalance --wait"),
        gaps,
        detail: format!(
            "[{at}] weir-{SCALE_OUT_NODE} unfenced {} after `up -d`; rebalance moved {moves} partition(s) \
             of {TOPIC} in {} (weir-{SCALE_OUT_NODE} now holds {replicas} of its replicas); whole at {}{}",
            ms(joined),
            ms(rebalanced),
            ms(healed - from),
            watch.finish().await
        ),
    })
}

/// After a node was let back (started, unpaused, connected, restarted): Docker reports it
/// healthy, and the cluster is whole (every partition led, every replica in its ISR).
async fn recovered(cluster: &ComposeCluster, id: i32) -> anyhow::Result<()> {
    cluster.wait_container_healthy(id, HEALTHY_TIMEOUT).await?;
    cluster.probe().wait_healthy(TOPIC, RECOVERY_TIMEOUT).await
}

/// Waits until every partition acknowledged a write sent after `since`: writes flow
/// again everywhere.
async fn flowing(workload: &Workload, since: Instant) -> anyhow::Result<()> {
    for partition in 0..PARTITIONS {
        workload
            .wait_ack_sent_since(partition, since, RECOVERY_TIMEOUT)
            .await?;
    }
    Ok(())
}

/// Closes a fault's window: once writes sent after `healed` are acknowledged in every
/// partition (so the next fault starts with writes flowing, and no gap is left open),
/// the longest gap of each partition from `from` on.
async fn writes_flow(
    workload: &Workload,
    from: Instant,
    healed: Instant,
) -> anyhow::Result<Vec<Gap>> {
    flowing(workload, healed).await?;
    Ok(availability::longest_gaps(
        &workload.ack_times(),
        PARTITIONS,
        from,
        Instant::now(),
    ))
}

/// Waits until the metadata names a leader of `partition` other than `old`.
async fn new_leader(cluster: &ComposeCluster, partition: u32, old: i32) -> anyhow::Result<i32> {
    let probe = cluster.probe();
    wait_for(
        ELECTION_TIMEOUT,
        &format!("a leader of {TOPIC}/{partition} other than weir-{old}"),
        || async {
            let leader = probe.leader(TOPIC, partition).await.ok()?;
            (leader > 0 && leader != old).then_some(leader)
        },
    )
    .await
}

/// The metadata's story of a fault: the topic's partitions (leader, leader epoch, ISR)
/// as the active controller's node describes them, polled from a moment on, each change
/// with its time. Says where a fault's unavailability went (an election, an ISR shrink).
struct MetadataWatch {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

/// How often the watch asks.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

impl MetadataWatch {
    /// Starts watching through `probe`, with times counted from `from`; each change is
    /// printed as it is seen too (so a fault that fails has its story told).
    fn start(probe: Probe, from: Instant) -> MetadataWatch {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut story = Vec::new();
            let mut last: BTreeMap<u32, (i32, i32, Vec<i32>)> = BTreeMap::new();
            while !*stopped.borrow() {
                if let Ok(t) = probe.describe(TOPIC).await {
                    for p in t.partitions {
                        let mut isr = p.isr.clone();
                        isr.sort_unstable();
                        let now = (p.leader, p.leader_epoch, isr);
                        if last.get(&p.partition) != Some(&now) {
                            let line = format!(
                                "+{} p{} leader {} epoch {} isr {:?}",
                                ms(from.elapsed()),
                                p.partition,
                                now.0,
                                now.1,
                                now.2
                            );
                            println!("    metadata {line}");
                            story.push(line);
                            last.insert(p.partition, now);
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                    _ = stopped.changed() => {}
                }
            }
            story
        });
        MetadataWatch { stop, task }
    }

    /// Stops watching; the changes seen, one per line.
    async fn finish(self) -> String {
        let _ = self.stop.send(true);
        let story = self.task.await.unwrap_or_default();
        story.iter().map(|line| format!("\n      {line}")).collect()
    }
}

/// The unavailability table: per fault, per partition, the longest wait for an
/// acknowledgement; `>` marks a partition still silent when the window closed, `*` one
/// over the goal.
fn table(measured: &[Measured]) -> String {
    let mut out = format!(
        "writers' unavailability per fault (longest gap between acknowledgements, ms; goal {} s):\n",
        GOAL.as_secs()
    );
    let _ = write!(out, "  {:<48}", "fault");
    for p in 0..PARTITIONS {
        let _ = write!(out, "{:>9}", format!("p{p}"));
    }
    out.push('\n');
    for m in measured {
        let _ = write!(out, "  {:<48}", m.fault);
        for gap in &m.gaps {
            let mark = match (gap.open, gap.longest > GOAL) {
                (true, _) => ">",
                (false, true) => "*",
                (false, false) => "",
            };
            let _ = write!(out, "{:>9}", format!("{mark}{}", gap.longest.as_millis()));
        }
        out.push('\n');
    }
    for m in measured {
        let _ = writeln!(out, "  - {}", m.detail);
    }
    out
}

/// Says that node `id` was the active controller, or the clients' first bootstrap broker,
/// when it was hit.
fn role_note(controller: Option<i32>, id: i32) -> String {
    let mut roles = Vec::new();
    if controller == Some(id) {
        roles.push("the active controller");
    }
    if id == BOOTSTRAP_NODE {
        roles.push("the clients' first bootstrap broker");
    }
    match roles.is_empty() {
        true => String::new(),
        false => format!("({}) ", roles.join(", ")),
    }
}

/// The time of day (UTC), to find a fault in the brokers' logs.
fn wall_clock() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let day_ms = since_epoch.as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}
