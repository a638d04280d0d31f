//! Kafka clients through failures of a 3-node cluster (replication factor 3,
//! `min.insync.replicas=2`), through its Kafka listeners:
//! - confluent-kafka's idempotent producer (acks=all) writes to a partition while the
//!   partition's leader is SIGKILLed. Asserted: every record the producer was told is
//!   written is in the partition exactly once (none lost, none doubled: a batch librdkafka
//!   retries after the kill is stored once, by its producer id and sequence), and nothing
//!   is there that was not sent.
//!   The same while the leader is cut off from the other nodes, and while its disk is full
//!   (writes refused, leadership kept, nothing failed once space returns).
//! - a kafka-python group of 3 consumers reads a topic of 6 partitions while one member
//!   and then one broker are SIGKILLed. Asserted: every record is read at least once, and
//!   nothing is read that was not produced.
//! - a kafka-python group of 2 consumers (the classic protocol) while its coordinator's
//!   broker is SIGKILLed. Asserted: the members go on with their member ids and
//!   generation on the new coordinator (no rebalance: no partition revoked or assigned,
//!   no commit refused), every record is read exactly once, and every record read is
//!   committed.
//!
//! The clients are the pinned ones of `tests/python/requirements.txt`, installed by
//! `tests/python/setup.sh` into the shared venv.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::members::{Members, expected_records, produce_numbered, spawn_member, until};
use anyhow::{Context, bail};
use weir_client::Acks;
use weir_proto::v1 as pb;
use weir_proto::v1::groups_client::GroupsClient;
use weir_tests::cluster::{Cluster, ClusterConfig};
use weir_tests::wait::wait_for;

const TOPIC: &str = "kafka-failover";
const RECORDS: usize = 4000;
/// Over how long the producer spreads its records; the kill comes a third of the way in.
const PRODUCE_SECONDS: u64 = 9;
/// Longest the producer script may run (its records, then retries and the flush).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);
/// Longest the shared Python environment may take to install on a first run.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

pub(crate) fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared venv's python, installing the pinned clients on first use.
pub(crate) fn python() -> anyhow::Result<PathBuf> {
    let script = tests_dir().join("python/setup.sh");
    let output = run_bounded(Command::new(&script), INSTALL_TIMEOUT)?;
    if !output.status.success() {
        bail!(
            "tests/python/setup.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8(output.stdout)?;
    Ok(PathBuf::from(
        stdout.lines().last().context("a path")?.trim(),
    ))
}

/// The last 40 lines of a program's output.
pub(crate) fn last_lines(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Runs `command` to its end, killing it after `limit`; past it, the error carries the
/// end of what it printed.
pub(crate) fn run_bounded(
    mut command: Command,
    limit: Duration,
) -> anyhow::Result<std::process::Output> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => Ok(output?),
        Err(_) => {
            // SAFETY: kill(2) on our own child, which has not been reaped (its waiter
            // thread has not returned).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            // What it printed before it was killed says where it stopped (its waiter
            // returns once it is gone).
            let said = match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(output)) => format!(
                    "\n--- its stdout:\n{}\n--- its stderr:\n{}",
                    last_lines(&output.stdout),
                    last_lines(&output.stderr)
                ),
                _ => String::new(),
            };
            bail!("{command:?} did not finish in {limit:?}{said}")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_kafka_producer_loses_and_doubles_nothing_when_the_leader_is_killed()
-> anyhow::Result<()> {
    idempotent_producer_through(LeaderFault::Kill).await
}

/// As above, with the leader cut off from the other nodes (its Kafka clients still reach
/// it) until the producer is done: the leader steps aside, closes its Kafka connections
/// and turns new ones away, and librdkafka must find the new leader during the cut.
/// Asserted besides: the new leader's high watermark moves before the cut heals, and no
/// record fails (before the cut-off broker turned clients away, librdkafka kept asking it
/// for metadata, was told "no leader" for the whole cut, and every record sent after the
/// cut timed out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_kafka_producer_moves_to_the_new_leader_when_the_leader_is_cut_off()
-> anyhow::Result<()> {
    idempotent_producer_through(LeaderFault::Cut).await
}

/// As above, with the leader's disk full (no room left at all) for a few seconds, on a
/// topic whose segments are small enough that rolls meet the full disk: the leader
/// refuses the writes and keeps leading, and the producer's retries go in once space is
/// freed. Asserted besides: no record fails. Two full-disk bugs wrote records twice in
/// the soak: a roll's producer snapshot ran out of space and failed the log (its
/// leadership ended, and appends written and replicated were answered as failed), and
/// the requests behind a refused one were answered OUT_OF_ORDER_SEQUENCE_NUMBER, on which
/// librdkafka renumbers all it holds unacknowledged under a new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_kafka_producer_loses_and_doubles_nothing_when_the_leaders_disk_fills()
-> anyhow::Result<()> {
    if let Some(reason) = weir_tests::tmpfs::unavailable() {
        println!("SKIPPED: {reason}");
        return Ok(());
    }
    idempotent_producer_through(LeaderFault::DiskFull).await
}

/// What befalls the partition's leader a third of the way into the producer's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaderFault {
    /// SIGKILL, restarted once the producer is done.
    Kill,
    /// Cut off from the other nodes by the proxy, healed once the producer is done.
    Cut,
    /// Its disk filled for [`FULL_DISK_FOR`], then freed.
    DiskFull,
}

/// How long the leader's disk stays full in the full-disk case.
const FULL_DISK_FOR: Duration = Duration::from_secs(4);
/// Each node's tmpfs in the full-disk case: room for the test's writes many times over.
const FULL_DISK_TMPFS_BYTES: u64 = 256 << 20;
/// The topic's segment size in the full-disk case: the producer's writes roll one every
/// half second or so, so rolls meet the full disk.
const FULL_DISK_SEGMENT_BYTES: &str = "4096";

async fn idempotent_producer_through(fault: LeaderFault) -> anyhow::Result<()> {
    let _serial = weir_tests::exclusive().await;
    let python = tokio::task::spawn_blocking(python).await??;
    let full_disk = fault == LeaderFault::DiskFull;
    let mut cluster = Cluster::start(ClusterConfig {
        disk_bytes: full_disk.then_some(FULL_DISK_TMPFS_BYTES),
        ..ClusterConfig::default()
    })
    .await?;
    let mut configs = vec![("min.insync.replicas", "2")];
    if full_disk {
        configs.push(("segment.bytes", FULL_DISK_SEGMENT_BYTES));
    }
    cluster
        .probe()
        .create_topic_with(TOPIC, 1, 3, &configs)
        .await?;
    cluster.wait_healthy(TOPIC, Duration::from_secs(30)).await?;

    let mut command = Command::new(&python);
    command.args([
        tests_dir()
            .join("kafka/idempotent_producer.py")
            .to_string_lossy()
            .as_ref(),
        &cluster.kafka_bootstrap(),
        TOPIC,
        &RECORDS.to_string(),
        &PRODUCE_SECONDS.to_string(),
    ]);
    let producer = tokio::task::spawn_blocking(move || run_bounded(command, SCRIPT_TIMEOUT));

    tokio::time::sleep(Duration::from_secs(PRODUCE_SECONDS / 3)).await;
    let leader = cluster.leader(TOPIC, 0).await?;
    // The full-disk case: who led the partition at the end of the fill.
    let mut led_after_fill = None;
    match fault {
        LeaderFault::Kill => {
            cluster.kill(leader)?;
            eprintln!("killed node {leader}, the leader of {TOPIC}/0");
        }
        LeaderFault::DiskFull => {
            cluster.fill_disk_leaving(leader, 0)?;
            eprintln!("filled node {leader}'s disk, the leader of {TOPIC}/0");
            tokio::time::sleep(FULL_DISK_FOR).await;
            led_after_fill = Some(cluster.leader(TOPIC, 0).await?);
            cluster.free_disk(leader)?;
            eprintln!("freed node {leader}'s disk");
            // The fault was real: the leader refused writes for want of space.
            let refused = cluster.log(leader)?.contains("refusing appends");
            assert!(refused, "node {leader} never ran out of space");
        }
        LeaderFault::Cut => {
            let cut_at = tokio::time::Instant::now();
            cluster.proxy().isolate(leader);
            eprintln!("cut node {leader}, the leader of {TOPIC}/0, off the other nodes");
            let (new, written) = weir_tests::wait::wait_for(
                Duration::from_secs(20),
                "a new leader of the partition during the cut",
                || async {
                    let others = cluster.ids().into_iter().filter(|&id| id != leader);
                    for id in others {
                        let p = cluster
                            .describe_on(id, TOPIC)
                            .await
                            .ok()?
                            .partitions
                            .into_iter()
                            .next()?;
                        if p.leader == id {
                            return Some((id, p.high_watermark));
                        }
                    }
                    None
                },
            )
            .await?;
            weir_tests::wait::wait_for(
                Duration::from_secs(20),
                "the new leader's high watermark to move",
                || async {
                    let p = cluster
                        .describe_on(new, TOPIC)
                        .await
                        .ok()?
                        .partitions
                        .into_iter()
                        .next()?;
                    (p.high_watermark > written).then_some(())
                },
            )
            .await?;
            eprintln!(
                "confluent-kafka writes on node {new}, the new leader, {:.0} ms after the cut",
                cut_at.elapsed().as_secs_f64() * 1e3
            );
        }
    }

    let output = producer.await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("the producer failed: {stderr}");
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("the producer's report: {stderr}"))?;
    let acked: Vec<u64> = report["acked"]
        .as_array()
        .context("acked")?
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    let failed = report["failed"].as_array().context("failed")?.len();
    let bumps = report["epoch_bumps"].as_u64().context("epoch_bumps")?;
    eprintln!(
        "producer: {} acknowledged, {failed} failed, {} unsent, {bumps} epoch bumps; errors: {}",
        acked.len(),
        report["unsent"],
        report["errors"]
    );

    match fault {
        LeaderFault::Kill => cluster.restart(leader).await?,
        LeaderFault::Cut => cluster.proxy().heal(),
        LeaderFault::DiskFull => {}
    }
    cluster.wait_healthy(TOPIC, Duration::from_secs(60)).await?;
    let stored = cluster.read_all(TOPIC).await?;
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for record in &stored {
        *copies.entry(record.value.as_str()).or_default() += 1;
    }
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|i| !copies.contains_key(format!("r-{i}").as_str()))
        .collect();
    let doubled: Vec<&str> = copies
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, _)| *v)
        .collect();
    let unknown: Vec<&str> = copies
        .keys()
        .copied()
        .filter(|v| {
            v.strip_prefix("r-")
                .and_then(|i| i.parse::<usize>().ok())
                .is_none_or(|i| i >= RECORDS)
        })
        .collect();
    cluster.finish();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");
    assert!(unknown.is_empty(), "never sent: {unknown:?}");
    assert!(
        acked.len() > RECORDS / 2,
        "only {} of {RECORDS} acknowledged",
        acked.len()
    );
    if fault != LeaderFault::Kill {
        assert_eq!(
            failed, 0,
            "records failed through {fault:?}: {}",
            report["errors"]
        );
    }
    if fault == LeaderFault::DiskFull {
        // A refusal for space is retried under the same epoch, and so are the requests
        // behind it: nothing the producer holds is renumbered.
        assert_eq!(bumps, 0, "the full disk made the producer bump its epoch");
    }
    if let Some(led_after_fill) = led_after_fill {
        assert_eq!(
            led_after_fill, leader,
            "the full disk ended node {leader}'s leadership"
        );
    }
    Ok(())
}

/// Partitions of the group test's topic, and records written to each per round.
const GROUP_PARTITIONS: u32 = 6;
const PER_ROUND: usize = 40;
/// Longest any wait of the group test lasts (a dead member's session is 6 s; a dead
/// coordinator's group moves with its broker's leaderships).
const GROUP_WAIT: Duration = Duration::from_secs(120);

/// Writes records `from..from + count` to every partition of `topic`, acks=all.
async fn produce_round(
    cluster: &Cluster,
    topic: &str,
    from: usize,
    count: usize,
) -> anyhow::Result<()> {
    produce_numbered(
        cluster.bootstrap(),
        Acks::All,
        topic,
        GROUP_PARTITIONS,
        from,
        count,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_python_group_reads_every_record_across_a_member_crash_and_a_broker_crash()
-> anyhow::Result<()> {
    const TOPIC: &str = "kafka-group-failover";
    let _serial = weir_tests::exclusive().await;
    let python = tokio::task::spawn_blocking(python).await??;
    let python = python.to_string_lossy().into_owned();
    let mut cluster = Cluster::start(ClusterConfig::default()).await?;
    cluster.create_topic(TOPIC, GROUP_PARTITIONS, 3, 2).await?;
    cluster.wait_healthy(TOPIC, Duration::from_secs(30)).await?;
    produce_round(&cluster, TOPIC, 0, PER_ROUND).await?;

    let bootstrap = cluster.kafka_bootstrap();
    let args = [bootstrap.as_str(), TOPIC, "workers"];
    let script = tests_dir().join("kafka/groups_member.py");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut processes: Vec<Option<_>> = (0..3)
        .map(|i| spawn_member(&python, &script, &args, i, tx.clone()).map(Some))
        .collect::<anyhow::Result<_>>()?;
    let mut members = Members::new(3);
    until(
        "the 6 partitions spread over 3 members",
        GROUP_WAIT,
        &mut members,
        &rx,
        |m| m.spread_over(&[0, 1, 2], GROUP_PARTITIONS),
    )
    .await?;
    let first = expected_records(GROUP_PARTITIONS, PER_ROUND);
    until("the first round read", GROUP_WAIT, &mut members, &rx, |m| {
        m.read.is_superset(&first)
    })
    .await?;

    // A member dies without leaving; its partitions go to the other two.
    processes[0].take().expect("running");
    until(
        "the partitions spread over the 2 survivors",
        GROUP_WAIT,
        &mut members,
        &rx,
        |m| m.spread_over(&[1, 2], GROUP_PARTITIONS),
    )
    .await?;

    // Then a broker dies: the leader of partition 0, with whatever else it led (the
    // group's coordinator among them, if it was there). The second round is written
    // with it down.
    let victim = cluster.leader(TOPIC, 0).await?;
    cluster.kill(victim)?;
    eprintln!("killed member 0, then node {victim}, the leader of {TOPIC}/0");
    produce_round(&cluster, TOPIC, PER_ROUND, PER_ROUND).await?;
    let everything = expected_records(GROUP_PARTITIONS, 2 * PER_ROUND);
    until(
        "both rounds read by the survivors",
        GROUP_WAIT,
        &mut members,
        &rx,
        |m| m.read.is_superset(&everything),
    )
    .await?;
    eprintln!(
        "{} records read, {} of them again after a crash",
        members.read.len(),
        members.reread
    );
    assert_eq!(members.read, everything, "nothing but the records produced");
    drop(processes);

    cluster.restart(victim).await?;
    cluster.wait_healthy(TOPIC, Duration::from_secs(60)).await?;
    cluster.finish();
    Ok(())
}

/// Longest the classic-failover test waits for anything after the kill (the group's
/// `__consumer_offsets` partition moves with its broker's leaderships in about 2 s, and
/// the new coordinator loads it).
const FAILOVER_WAIT: Duration = Duration::from_secs(40);

/// Kafka keeps a classic group's generation and members in `__consumer_offsets`, so its
/// members go on heartbeating and committing to the new coordinator when the old one
/// dies; Weir must too (before, they were told UNKNOWN_MEMBER_ID and the group
/// rebalanced 6-9 s later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_python_group_keeps_its_members_when_its_coordinator_is_killed()
-> anyhow::Result<()> {
    const TOPIC: &str = "classic-coordinator-failover";
    const GROUP: &str = "classic-failover";
    let _serial = weir_tests::exclusive().await;
    let python = tokio::task::spawn_blocking(python).await??;
    let python = python.to_string_lossy().into_owned();
    let mut cluster = Cluster::start(ClusterConfig::default()).await?;
    cluster.create_topic(TOPIC, GROUP_PARTITIONS, 3, 2).await?;
    cluster.wait_healthy(TOPIC, Duration::from_secs(30)).await?;
    produce_round(&cluster, TOPIC, 0, PER_ROUND).await?;

    let bootstrap = cluster.kafka_bootstrap();
    let args = [bootstrap.as_str(), TOPIC, GROUP];
    let script = tests_dir().join("kafka/groups_member.py");
    let (tx, rx) = std::sync::mpsc::channel();
    let processes = (0..2)
        .map(|i| spawn_member(&python, &script, &args, i, tx.clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut members = Members::new(2);
    until(
        "the 6 partitions spread over 2 members",
        GROUP_WAIT,
        &mut members,
        &rx,
        |m| m.spread_over(&[0, 1], GROUP_PARTITIONS),
    )
    .await?;
    let first = expected_records(GROUP_PARTITIONS, PER_ROUND);
    until("the first round read", GROUP_WAIT, &mut members, &rx, |m| {
        m.read.is_superset(&first)
    })
    .await?;
    wait_committed(&cluster, GROUP, PER_ROUND as i64).await?;

    let coordinator = find_coordinator(&cluster, GROUP).await?;
    let assigned = members.assigned.clone();
    let seen = members.lines.len();
    cluster.kill(coordinator)?;
    eprintln!("killed node {coordinator}, the coordinator of group {GROUP}");
    produce_round(&cluster, TOPIC, PER_ROUND, PER_ROUND).await?;
    let everything = expected_records(GROUP_PARTITIONS, 2 * PER_ROUND);
    until("both rounds read", FAILOVER_WAIT, &mut members, &rx, |m| {
        m.read.is_superset(&everything)
    })
    .await?;
    // Every record read was committed, through the new coordinator: the members' commits
    // carry their generation, which it knows.
    wait_committed(&cluster, GROUP, 2 * PER_ROUND as i64).await?;
    until(
        "the members' last lines",
        Duration::ZERO,
        &mut members,
        &rx,
        |_| true,
    )
    .await?;
    let rebalanced: Vec<&String> = members.lines[seen..]
        .iter()
        .filter(|l| {
            l.contains("\"assigned\"") || l.contains("\"revoked\"") || l.contains("commit_failed")
        })
        .collect();
    assert!(
        rebalanced.is_empty(),
        "the group rebalanced after its coordinator was killed: {rebalanced:#?}"
    );
    assert_eq!(members.assigned, assigned, "partitions moved");
    assert_eq!(members.read, everything, "nothing but the records produced");
    assert_eq!(members.reread, 0, "records read twice");
    drop(processes);
    cluster.finish();
    Ok(())
}

/// The group's coordinator, as a live broker names it.
pub(crate) async fn find_coordinator(cluster: &Cluster, group: &str) -> anyhow::Result<i32> {
    wait_for(Duration::from_secs(30), "FindCoordinator", || async {
        for address in cluster.bootstrap() {
            let Some(mut client) = groups_client(&address).await else {
                continue;
            };
            let answer = client
                .find_coordinator(pb::FindCoordinatorRequest {
                    group_id: group.to_owned(),
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

/// A groups client of the broker at `address`; `None` if it does not answer (a killed
/// node's proxy) within a second.
async fn groups_client(address: &str) -> Option<GroupsClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    Some(GroupsClient::new(channel))
}

/// Waits until `group` has committed `offset` on every partition of the topic (asked of
/// whichever broker coordinates it now).
async fn wait_committed(cluster: &Cluster, group: &str, offset: i64) -> anyhow::Result<()> {
    wait_for(
        FAILOVER_WAIT,
        &format!("group {group} to commit offset {offset} on every partition"),
        || async {
            for address in cluster.bootstrap() {
                let Some(mut client) = groups_client(&address).await else {
                    continue;
                };
                let Ok(answer) = client
                    .fetch_offsets(pb::FetchOffsetsRequest {
                        group_id: group.to_owned(),
                        topics: Vec::new(),
                    })
                    .await
                else {
                    continue;
                };
                let offsets = answer.into_inner().offsets;
                return (offsets.len() == GROUP_PARTITIONS as usize
                    && offsets.iter().all(|o| o.offset == offset))
                .then_some(());
            }
            None
        },
    )
    .await
}

/// confluent-kafka's ShareConsumer on a 3-node cluster: the topic's 3 partitions are led
/// by different brokers, so the share fetches librdkafka sends to each leader reach the
/// group's one share coordinator by forwarding for every partition it does not lead.
/// `tests/kafka/shares_confluent.py` asserts each record is finished exactly once, a
/// released one comes back with delivery count 2, and two implicit-mode members share
/// the records without doubles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_share_consumers_work_across_brokers_whichever_leads_each_partition()
-> anyhow::Result<()> {
    const TOPIC: &str = "kafka-share-cluster";
    const PARTITIONS: u32 = 3;
    let _serial = weir_tests::exclusive().await;
    let python = tokio::task::spawn_blocking(python).await??;
    let cluster = Cluster::start(ClusterConfig::default()).await?;
    cluster.create_topic(TOPIC, PARTITIONS, 3, 2).await?;
    cluster.wait_healthy(TOPIC, Duration::from_secs(30)).await?;
    produce_numbered(cluster.bootstrap(), Acks::All, TOPIC, PARTITIONS, 0, 10).await?;
    let mut leaders = Vec::new();
    for p in 0..PARTITIONS {
        leaders.push(cluster.leader(TOPIC, p).await?);
    }
    eprintln!("partition leaders: {leaders:?}");

    let mut command = Command::new(&python);
    command.args([
        tests_dir()
            .join("kafka/shares_confluent.py")
            .to_string_lossy()
            .as_ref(),
        &cluster.kafka_bootstrap(),
        TOPIC,
        "cluster-workers",
    ]);
    let output =
        tokio::task::spawn_blocking(move || run_bounded(command, SCRIPT_TIMEOUT)).await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    cluster.finish();
    if !output.status.success() {
        bail!("shares_confluent.py failed: {stderr}");
    }
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    Ok(())
}
