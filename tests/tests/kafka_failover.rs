//! A Kafka client through a failover: confluent-kafka's idempotent producer (acks=all)
//! writes to a partition of a 3-node cluster (replication factor 3,
//! `min.insync.replicas=2`) through its Kafka listeners while the partition's leader is
//! SIGKILLed. Asserted: every record the producer was told is written is in the
//! partition exactly once (none lost, none doubled: a batch librdkafka retries after the
//! kill is stored once, by its producer id and sequence), and nothing is there that was
//! not sent.
//!
//! The client is the pinned confluent-kafka of `tests/python/requirements.txt`, installed
//! by `tests/python/setup.sh` into the shared venv.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use weir_tests::cluster::{Cluster, ClusterConfig};

const TOPIC: &str = "kafka-failover";
const RECORDS: usize = 4000;
/// Over how long the producer spreads its records; the kill comes a third of the way in.
const PRODUCE_SECONDS: u64 = 9;
/// Longest the producer script may run (its records, then retries and the flush).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);
/// Longest the shared Python environment may take to install on a first run.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared venv's python, installing the pinned clients on first use.
fn python() -> anyhow::Result<PathBuf> {
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

/// Runs `command` to its end, killing it after `limit`.
fn run_bounded(mut command: Command, limit: Duration) -> anyhow::Result<std::process::Output> {
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
            bail!("{command:?} did not finish in {limit:?}")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_kafka_producer_loses_and_doubles_nothing_when_the_leader_is_killed()
-> anyhow::Result<()> {
    let python = tokio::task::spawn_blocking(python).await??;
    let mut cluster = Cluster::start(ClusterConfig::default()).await?;
    cluster.create_topic(TOPIC, 1, 3, 2).await?;
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
    cluster.kill(leader)?;
    eprintln!("killed node {leader}, the leader of {TOPIC}/0");

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
    eprintln!(
        "producer: {} acknowledged, {failed} failed, {} unsent",
        acked.len(),
        report["unsent"]
    );

    cluster.restart(leader).await?;
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
    Ok(())
}
