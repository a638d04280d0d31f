//! Kafka transactions across the brokers of a 3-node cluster (issue 44): a
//! confluent-kafka transactional producer writes to a topic whose partitions are led by
//! every broker, so the transaction coordinator's markers for the partitions other
//! brokers lead go to them over the internal `Transactions` service
//! (`tests/kafka/transactions_cluster_confluent.py`). Asserted: every broker leads a
//! partition; each transaction ends within a bound (a marker never written leaves the
//! next transaction waiting on CONCURRENT_TRANSACTIONS, and the script fails); a
//! read_committed consumer sees exactly the committed records of each partition, in
//! order, none doubled.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use weir_tests::cluster::{Cluster, ClusterConfig};

use crate::kafka_failover::{python, run_bounded, tests_dir};

const TOPIC: &str = "txn-cluster";
/// Enough partitions that the controller's placement gives each of the 3 brokers the
/// leadership of some.
const PARTITIONS: u32 = 6;
/// Longest the script may run: three transactions and a read, each call bounded by the
/// script's own 30 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);
/// Longest one commit or abort may take, markers on every broker included. A marker
/// that is retried waits `MARKER_RETRY_BACKOFF` (100 ms), and one unanswered a few
/// seconds: a healthy cluster ends a transaction well within this.
const END_BOUND_MS: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_transaction_commits_and_aborts_on_partitions_every_broker_leads()
-> anyhow::Result<()> {
    let _serial = weir_tests::exclusive().await;
    let python = tokio::task::spawn_blocking(python).await??;
    let cluster = Cluster::start(ClusterConfig::default()).await?;
    cluster.create_topic(TOPIC, PARTITIONS, 3, 2).await?;
    cluster.wait_healthy(TOPIC, Duration::from_secs(30)).await?;
    let mut leaders = BTreeSet::new();
    for p in 0..PARTITIONS {
        leaders.insert(cluster.leader(TOPIC, p).await?);
    }
    let brokers: BTreeSet<i32> = cluster.ids().into_iter().collect();
    assert_eq!(
        leaders, brokers,
        "every broker leads a partition of {TOPIC}"
    );

    let mut command = Command::new(&python);
    command.args([
        tests_dir()
            .join("kafka/transactions_cluster_confluent.py")
            .to_string_lossy()
            .as_ref(),
        &cluster.kafka_bootstrap(),
        TOPIC,
    ]);
    let output =
        tokio::task::spawn_blocking(move || run_bounded(command, SCRIPT_TIMEOUT)).await??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("the transactional producer failed: {stdout}\n{stderr}");
    }
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("the script's lines: {stdout}"))?;
    let step = |name: &'static str| lines.iter().filter(move |l| l["step"] == name);

    // The script's metadata agrees: the transaction spans every broker's partitions.
    let seen: BTreeSet<i64> = step("leaders")
        .flat_map(|l| l["leaders"].as_object().cloned().unwrap_or_default())
        .filter_map(|(_, leader)| leader.as_i64())
        .collect();
    assert_eq!(seen.len(), 3, "the client's metadata: {stdout}");

    let ends: Vec<(String, u64)> = step("end")
        .map(|l| {
            (
                l["name"].as_str().unwrap_or_default().to_string(),
                l["ms"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    assert_eq!(
        ends.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["c", "a", "d"],
        "{stdout}"
    );
    for (name, ms) in &ends {
        assert!(
            *ms <= END_BOUND_MS,
            "transaction {name} took {ms} ms to end: {stdout}"
        );
    }

    let read = step("read").next().context("no read line")?;
    for p in 0..PARTITIONS {
        let values: Vec<&str> = read["values"][p.to_string()]
            .as_array()
            .with_context(|| format!("no values of partition {p}: {stdout}"))?
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let want = [format!("c-{p}-0"), format!("c-{p}-1"), format!("d-{p}-0")];
        assert_eq!(
            values,
            want,
            "partition {p} (led by broker {}) holds exactly the committed records, in order: {stdout}",
            cluster.leader(TOPIC, p).await?
        );
    }
    cluster.finish();
    Ok(())
}
