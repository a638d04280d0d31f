//! Consumer groups over the Kafka protocol with the real Kafka clients (kafka-python
//! 3.0.12, confluent-kafka 2.16.1, aiokafka 0.14.0; `tests/python/setup.sh` installs
//! them) against a
//! broker on 127.0.0.1:0 with its Kafka listener on, and across protocols with this
//! crate's gRPC group consumer. The Python scripts are in `tests/kafka/groups_*.py`.
//!
//! It lives here rather than in weir-server's tests because the cross-protocol checks
//! need the real gRPC client (`weir-client`), which weir-server does not depend on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::members::{Members, expected_records, produce_numbered, spawn_member, until};
use anyhow::{Context, Result, ensure};
use weir_client::{Admin, GroupConsumer, GroupConsumerConfig, GroupState, ProducerConfig};

/// Longest any wait for a condition lasts.
const WAIT: Duration = Duration::from_secs(90);

struct Broker {
    running: weir_server::RunningServer,
    grpc: Vec<String>,
    kafka: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    async fn start() -> Result<Broker> {
        let dir = tempfile::tempdir()?;
        let running = weir_server::start(weir_server::ServerConfig {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse()?,
            admin_listen: None,
            kafka_listen: Some("127.0.0.1:0".parse()?),
            // gRPC members: short heartbeats so joins settle quickly.
            group_heartbeat_interval_ms: 200,
            group_session_timeout_ms: 2_000,
            // Classic groups: members started together join within a second.
            group_initial_rebalance_delay_ms: 1_000,
            auto_create_topics: false,
            ..Default::default()
        })
        .await?;
        let grpc = vec![running.addr.to_string()];
        let kafka = running
            .kafka_addr
            .context("the Kafka listener is on")?
            .to_string();
        Ok(Broker {
            running,
            grpc,
            kafka,
            _dir: dir,
        })
    }

    async fn admin(&self) -> Result<Admin> {
        Ok(Admin::connect(&self.grpc).await?)
    }

    /// Creates `topic` with `partitions` partitions holding `count` records each, valued
    /// `p:i` (record `i` of partition `p` at offset `i`), produced over gRPC.
    async fn topic(&self, topic: &str, partitions: u32, count: usize) -> Result<()> {
        self.admin()
            .await?
            .create_topic(topic, partitions, 1, HashMap::new())
            .await?;
        self.produce(topic, partitions, 0, count).await
    }

    async fn produce(&self, topic: &str, partitions: u32, from: usize, count: usize) -> Result<()> {
        let acks = ProducerConfig::default().acks;
        produce_numbered(self.grpc.clone(), acks, topic, partitions, from, count).await
    }

    async fn stop(self) -> Result<()> {
        self.running.shutdown().await
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python with the pinned clients (installed on first use).
async fn python() -> Result<String> {
    let setup = root().join("tests/python/setup.sh");
    let out =
        tokio::task::spawn_blocking(move || Command::new("bash").arg(setup).output()).await??;
    ensure!(
        out.status.success(),
        "tests/python/setup.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Runs `tests/kafka/<script>` with `args` to completion (at most 240 s); its stdout.
async fn run_script(python: &str, script: &str, args: &[&str]) -> Result<String> {
    let mut command = Command::new("timeout");
    command
        .args(["--kill-after=10", "240", python])
        .arg(root().join("tests/kafka").join(script))
        .args(args);
    let out = tokio::task::spawn_blocking(move || command.output()).await??;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    ensure!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    Ok(stdout)
}

/// The `{"committed": {"0": n, ...}}` line a script prints last.
fn committed_line(stdout: &str) -> Result<BTreeMap<u32, i64>> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.contains("\"committed\""))
        .context("the script printed its committed offsets")?;
    let parsed: serde_json::Value = serde_json::from_str(line)?;
    parsed["committed"]
        .as_object()
        .context("an object")?
        .iter()
        .map(|(p, o)| Ok((p.parse()?, o.as_i64().context("an offset")?)))
        .collect()
}

/// The committed offsets of `group` on `topic` as `weir group describe` (gRPC
/// DescribeGroup) shows them.
async fn described_offsets(
    broker: &Broker,
    group: &str,
    topic: &str,
) -> Result<BTreeMap<u32, i64>> {
    let d = broker.admin().await?.describe_group(group).await?;
    Ok(d.offsets
        .iter()
        .filter(|o| o.topic == topic)
        .filter_map(|o| Some((o.partition, o.committed_offset?)))
        .collect())
}

/// A gRPC member of `group` reads until it has `count` records; their (partition,
/// offset, value), and it leaves.
async fn grpc_member_reads(
    broker: &Broker,
    group: &str,
    topic: &str,
    count: usize,
) -> Result<Vec<(u32, i64, String)>> {
    let mut consumer = GroupConsumer::connect(GroupConsumerConfig {
        brokers: broker.grpc.clone(),
        group_id: group.to_owned(),
        ..GroupConsumerConfig::default()
    })
    .await?;
    consumer.subscribe([topic])?;
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < count {
        ensure!(
            Instant::now() < deadline,
            "only {} of {count} records",
            got.len()
        );
        for r in consumer
            .poll(count - got.len(), Duration::from_millis(100))
            .await?
        {
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
            got.push((r.partition, r.offset, value.into_owned()));
        }
    }
    consumer.close().await?;
    got.sort();
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_commits_and_seeks_in_a_group_and_a_grpc_member_resumes_from_its_offsets()
-> Result<()> {
    let python = python().await?;
    let broker = Broker::start().await?;
    broker.topic("orders", 3, 10).await?;

    let stdout = run_script(
        &python,
        "groups_kafka_python.py",
        &[&broker.kafka, "orders", "billing"],
    )
    .await?;
    let committed = committed_line(&stdout)?;
    assert_eq!(committed[&0], 7, "the offset chosen after the seek");
    assert_eq!(committed[&1], 9, "the commit from outside the group");
    assert_eq!(committed[&2], 10, "partition 2 read to its end");

    // What kafka-python committed is what `weir group describe` shows.
    assert_eq!(
        described_offsets(&broker, "billing", "orders").await?,
        committed
    );
    let d = broker.admin().await?.describe_group("billing").await?;
    assert_eq!(d.state, GroupState::Empty, "every Kafka member left");

    // A gRPC member of the same group resumes where the Kafka clients left off: the
    // three records after partition 0's offset 7 and the one after partition 1's 9.
    let read = grpc_member_reads(&broker, "billing", "orders", 4).await?;
    let expected: Vec<(u32, i64, String)> = [(0, 7), (0, 8), (0, 9), (1, 9)]
        .into_iter()
        .map(|(p, i)| (p, i, format!("{p}:{i}")))
        .collect();
    assert_eq!(read, expected);
    broker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_kafka_python_members_share_six_partitions_and_lose_nothing_when_one_is_killed()
-> Result<()> {
    const PARTITIONS: u32 = 6;
    const PER_PARTITION: usize = 50;
    let python = python().await?;
    let broker = Broker::start().await?;
    broker.topic("events", PARTITIONS, PER_PARTITION).await?;
    let args = [broker.kafka.as_str(), "events", "workers"];
    let (tx, rx) = mpsc::channel();
    let script = root().join("tests/kafka/groups_member.py");
    let mut processes: Vec<Option<_>> = (0..3)
        .map(|i| spawn_member(&python, &script, &args, i, tx.clone()).map(Some))
        .collect::<Result<_>>()?;
    let mut members = Members::new(3);
    let all = |n: usize| expected_records(PARTITIONS, n);

    // The partitions spread over the three, and the first records are read.
    until(
        "the 6 partitions spread over 3 members",
        WAIT,
        &mut members,
        &rx,
        |m| m.spread_over(&[0, 1, 2], PARTITIONS),
    )
    .await?;
    let first = all(PER_PARTITION);
    until("every record read once", WAIT, &mut members, &rx, |m| {
        m.read.is_superset(&first)
    })
    .await?;

    // Kill member 0 without leaving (SIGKILL), then produce more: its partitions move
    // to the other two once its session ends, and every record is read.
    processes[0].take().expect("running");
    broker
        .produce("events", PARTITIONS, PER_PARTITION, PER_PARTITION)
        .await?;
    until(
        "the partitions spread over the 2 survivors",
        WAIT,
        &mut members,
        &rx,
        |m| m.spread_over(&[1, 2], PARTITIONS),
    )
    .await?;
    let everything = all(2 * PER_PARTITION);
    until(
        "every record of both rounds read",
        WAIT,
        &mut members,
        &rx,
        |m| m.read.is_superset(&everything),
    )
    .await?;
    assert_eq!(members.read, everything, "nothing but the records produced");

    // The group as `weir group describe` shows it: the killed member gone, the two
    // survivors holding the partitions, and every partition committed to its end once
    // their last commits land.
    let admin = broker.admin().await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let d = admin.describe_group("workers").await?;
        let committed: Vec<Option<i64>> = d.offsets.iter().map(|o| o.committed_offset).collect();
        let owners: BTreeSet<&str> = d
            .offsets
            .iter()
            .filter_map(|o| o.member_id.as_deref())
            .collect();
        if d.members.len() == 2
            && owners.len() == 2
            && committed == vec![Some(2 * PER_PARTITION as i64); PARTITIONS as usize]
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the group did not settle: {d:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(processes);
    broker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_consumes_and_commits_with_the_classic_protocol_and_with_kip_848()
-> Result<()> {
    let python = python().await?;
    let broker = Broker::start().await?;
    for protocol in ["classic", "consumer"] {
        let (topic, group) = (format!("t-{protocol}"), format!("g-{protocol}"));
        broker.topic(&topic, 3, 10).await?;
        let stdout = run_script(
            &python,
            "groups_confluent.py",
            &[&broker.kafka, &topic, &group, protocol],
        )
        .await?;
        let committed = committed_line(&stdout)?;
        assert_eq!(
            committed,
            (0..3).map(|p| (p, 11)).collect(),
            "group.protocol={protocol}"
        );
        assert_eq!(
            described_offsets(&broker, &group, &topic).await?,
            committed,
            "group.protocol={protocol}"
        );
    }
    broker.stop().await
}

/// Static members (KIP-345) through librdkafka, as its test 0102 uses them: a restarted
/// static member gets its partitions back at once and the other member sees no
/// rebalance; a second consumer with the same instance id fences the first
/// (`tests/kafka/groups_static_confluent.py` asserts each step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_confluent_kafka_static_member_keeps_its_partitions_without_a_rebalance()
-> Result<()> {
    let python = python().await?;
    let broker = Broker::start().await?;
    broker.topic("static", 3, 10).await?;
    let stdout = run_script(
        &python,
        "groups_static_confluent.py",
        &[&broker.kafka, "static", "static-group"],
    )
    .await?;
    let report: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .last()
            .context("groups_static_confluent.py printed its report")?,
    )?;
    eprintln!("{report}");
    assert_eq!(report["other_member_events"], serde_json::json!([]));
    broker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiokafka_consumes_and_commits_in_a_group_with_the_oldest_versions_clients_send()
-> Result<()> {
    let python = python().await?;
    let broker = Broker::start().await?;
    broker.topic("logs", 3, 10).await?;
    let stdout = run_script(
        &python,
        "groups_aiokafka.py",
        &[&broker.kafka, "logs", "indexers"],
    )
    .await?;
    let committed = committed_line(&stdout)?;
    assert_eq!(committed, (0..3).map(|p| (p, 11)).collect());
    assert_eq!(
        described_offsets(&broker, "indexers", "logs").await?,
        committed
    );
    broker.stop().await
}

/// confluent-kafka's ShareConsumer (KIP-932): explicit ACCEPT / RELEASE / REJECT with
/// delivery counts, then two implicit-mode members sharing the partitions
/// (`tests/kafka/shares_confluent.py` asserts what each saw). Afterwards the broker's own
/// view of both groups (the gRPC DescribeShareGroup) agrees: every record finished, none
/// held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_share_consumers_accept_release_and_reject_and_share_partitions()
-> Result<()> {
    let python = python().await?;
    let broker = Broker::start().await?;
    broker.topic("tasks", 3, 10).await?;
    let stdout = run_script(
        &python,
        "shares_confluent.py",
        &[&broker.kafka, "tasks", "workers"],
    )
    .await?;
    let summary: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .last()
            .context("shares_confluent.py printed nothing")?,
    )?;
    assert_eq!(
        summary["accepted"].as_u64().unwrap() + summary["rejected"].as_u64().unwrap(),
        30
    );
    assert_eq!(summary["rejected"], 9, "{summary}");
    let admin = broker.admin().await?;
    for group in ["workers", "workers-implicit"] {
        let described = admin.describe_share_group(group).await?;
        assert_eq!(described.partitions.len(), 3, "{group}: {described:?}");
        for p in &described.partitions {
            assert_eq!(
                (p.start_offset, p.end_offset, p.available, p.acquired),
                (10, 10, 0, 0),
                "{group}: {p:?}"
            );
        }
    }
    broker.stop().await
}
