//! Kafka transactions across the brokers of a 3-node cluster (issue 44): a
//! confluent-kafka transactional producer writes to a topic whose partitions are led by
//! every broker, so the transaction coordinator's markers for the partitions other
//! brokers lead go to them over the internal `Transactions` service
//! (`tests/kafka/transactions_cluster_confluent.py`). The topic has one replica a
//! partition, so the coordinator holds no replica of most of the partitions it adds to a
//! transaction (librdkafka's 0103 found such adds refused with NOT_LEADER). Asserted: every broker leads a
//! partition; each transaction ends within a bound (a marker never written leaves the
//! next transaction waiting on CONCURRENT_TRANSACTIONS, and the script fails); a
//! read_committed consumer sees exactly the committed records of each partition, in
//! order, none doubled.
//!
//! And exactly once under faults: a confluent-kafka consume-transform-produce loop
//! (`tests/kafka/exactly_once_copier.py`, `send_offsets_to_transaction`) copies keyed
//! records from one topic to another while the leaders of the output and input
//! partitions, the transaction coordinator and the group coordinator are SIGKILLed or
//! paused in turn. Asserted: a read_committed read of the output holds every input
//! record exactly once, each key's records in their order.

use std::collections::{BTreeMap, BTreeSet};
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
    cluster.create_topic(TOPIC, PARTITIONS, 1, 1).await?;
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

const EO_INPUT: &str = "eo-in";
const EO_OUTPUT: &str = "eo-out";
const EO_PARTITIONS: u32 = 3;
/// Records copied; the copier's pace (25 per transaction, 0.1 s apart) makes the copy
/// outlast the faults. `WEIR_EO_RECORDS` sets another count (the long form:
/// 100000).
const EO_RECORDS: usize = 4000;
/// The copier's own limit, and the script's.
const EO_COPY_LIMIT: Duration = Duration::from_secs(300);
/// What the test waits between faults, and how long a paused node stays paused.
const EO_FAULT_SPACING: Duration = Duration::from_secs(4);
/// The data directory's tmpfs of each node in the long form's full-disk faults.
const EO_DISK_BYTES: u64 = 1 << 30;
/// The long form's input rate, records a second (the soak's `COPY_RATE`).
const EO_LONG_RATE: usize = 20;
/// About how long one round of the long form's plan takes (ten faults).
const EO_LONG_ROUND: Duration = Duration::from_secs(110);
/// The copier's keys (the script's `KEYS`): the n-th record of key k is "k<k>:<n>".
const EO_KEYS: usize = 30;
/// The transactional id and group of the copier (the script's).
const EO_ID: &str = "eo-copier";
const TRANSACTION_STATE: &str = "__transaction_state";
const CONSUMER_OFFSETS: &str = "__consumer_offsets";

/// The broker leading the partition of `topic` (`__transaction_state` or
/// `__consumer_offsets`) that coordinates the copier's transactional id or group.
async fn coordinator(cluster: &Cluster, topic: &str) -> Option<i32> {
    let partitions = cluster.describe(topic).await.ok()?.partitions.len() as u32;
    let p = weir_coordinator::group::partition_for_group(EO_ID, partitions);
    cluster.leader(topic, p).await.ok().filter(|l| *l > 0)
}

/// What befalls one broker in the exactly-once test.
#[derive(Debug, Clone, Copy)]
enum EoFault {
    Kill,
    Pause,
    /// Its data directory's file system full for a while (the long form only: a tmpfs
    /// per node needs root).
    DiskFull,
}

/// Which broker the exactly-once test's fault strikes.
#[derive(Debug, Clone, Copy)]
enum EoTarget {
    OutputLeader,
    InputLeader,
    TransactionCoordinator,
    GroupCoordinator,
}

impl EoTarget {
    fn describe(self) -> &'static str {
        match self {
            EoTarget::OutputLeader => "the leader of the output's partition 0",
            EoTarget::InputLeader => "the leader of the input's partition 0",
            EoTarget::TransactionCoordinator => "the transaction coordinator",
            EoTarget::GroupCoordinator => "the group coordinator",
        }
    }

    /// The broker it is now.
    async fn node(self, cluster: &Cluster) -> anyhow::Result<i32> {
        match self {
            EoTarget::OutputLeader => cluster.leader(EO_OUTPUT, 0).await,
            EoTarget::InputLeader => cluster.leader(EO_INPUT, 0).await,
            EoTarget::TransactionCoordinator => coordinator(cluster, TRANSACTION_STATE)
                .await
                .context("the transaction coordinator"),
            EoTarget::GroupCoordinator => coordinator(cluster, CONSUMER_OFFSETS)
                .await
                .context("the group coordinator"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consume_transform_produce_loop_copies_each_record_exactly_once_through_faults()
-> anyhow::Result<()> {
    // The long form, by command: the plan this many times over, each round with full disks
    // of the coordinators and the input's and output's leaders too (docs/transactions.md).
    let rounds: usize = match std::env::var("WEIR_EO_ROUNDS") {
        Ok(n) => n.parse().context("WEIR_EO_ROUNDS is a number")?,
        Err(_) => 1,
    };
    let full_disks = rounds > 1;
    // The long form writes its input beside the copy, at the soak's pace, so the input's
    // producer meets the faults too (as in the soak) and the copy lasts the plan.
    let rate = full_disks.then_some(EO_LONG_RATE);
    let records: usize = match std::env::var("WEIR_EO_RECORDS") {
        Ok(n) => n.parse().context("WEIR_EO_RECORDS is a number")?,
        Err(_) if full_disks => rounds * EO_LONG_ROUND.as_secs() as usize * EO_LONG_RATE,
        Err(_) => EO_RECORDS,
    };
    if full_disks && let Some(why) = weir_tests::tmpfs::unavailable() {
        bail!("WEIR_EO_ROUNDS's full-disk faults need a tmpfs per node: {why}");
    }
    let copy_limit = EO_COPY_LIMIT * rounds as u32;
    let _serial = weir_tests::exclusive().await;
    let python = tokio::task::spawn_blocking(python).await??;
    let mut cluster = Cluster::start(ClusterConfig {
        disk_bytes: full_disks.then_some(EO_DISK_BYTES),
        ..ClusterConfig::default()
    })
    .await?;
    for topic in [EO_INPUT, EO_OUTPUT] {
        cluster.create_topic(topic, EO_PARTITIONS, 3, 2).await?;
        cluster.wait_healthy(topic, Duration::from_secs(30)).await?;
    }
    let mut command = Command::new(&python);
    command.args([
        tests_dir()
            .join("kafka/exactly_once_copier.py")
            .to_string_lossy()
            .as_ref(),
        &cluster.kafka_bootstrap(),
        EO_INPUT,
        EO_OUTPUT,
        &records.to_string(),
        &copy_limit.as_secs().to_string(),
    ]);
    if let Some(rate) = rate {
        command.arg(rate.to_string());
    }
    let limit = copy_limit + Duration::from_secs(150);
    let copier = tokio::task::spawn_blocking(move || run_bounded(command, limit));

    // The faults, once the copier has begun (its input written, its transactional id
    // and group coordinated somewhere).
    weir_tests::wait::wait_for(
        Duration::from_secs(60),
        "the copier's transaction coordinator",
        || coordinator(&cluster, TRANSACTION_STATE),
    )
    .await?;
    tokio::time::sleep(EO_FAULT_SPACING).await;
    let mut plan = Vec::new();
    for _ in 0..rounds {
        plan.extend([
            (EoTarget::OutputLeader, EoFault::Kill),
            (EoTarget::TransactionCoordinator, EoFault::Kill),
            (EoTarget::GroupCoordinator, EoFault::Pause),
            (EoTarget::InputLeader, EoFault::Kill),
            (EoTarget::TransactionCoordinator, EoFault::Pause),
        ]);
        if full_disks {
            plan.extend([
                (EoTarget::GroupCoordinator, EoFault::DiskFull),
                (EoTarget::OutputLeader, EoFault::DiskFull),
                (EoTarget::TransactionCoordinator, EoFault::DiskFull),
                (EoTarget::GroupCoordinator, EoFault::DiskFull),
                // Under its input's writes (the long form writes them beside the copy):
                // where the soak's idempotent input producer wrote batches twice.
                (EoTarget::InputLeader, EoFault::DiskFull),
            ]);
        }
    }
    let mut done = Vec::new();
    for (target, fault) in plan {
        if copier.is_finished() {
            break;
        }
        let what = target.describe();
        // Led by someone again after the last fault (only the output was waited for).
        let node = weir_tests::wait::wait_for(Duration::from_secs(60), what, || async {
            target.node(&cluster).await.ok().filter(|&n| n > 0)
        })
        .await?;
        match fault {
            EoFault::Kill => {
                cluster.kill(node)?;
                tokio::time::sleep(EO_FAULT_SPACING / 2).await;
                cluster.restart(node).await?;
            }
            EoFault::Pause => {
                cluster.pause(node)?;
                tokio::time::sleep(EO_FAULT_SPACING).await;
                cluster.resume(node)?;
            }
            EoFault::DiskFull => {
                cluster.fill_disk(node)?;
                tokio::time::sleep(EO_FAULT_SPACING).await;
                cluster.free_disk(node)?;
            }
        }
        eprintln!("{fault:?} node {node}, {what}");
        done.push(format!("{fault:?} {what} (node {node})"));
        cluster
            .wait_healthy(EO_OUTPUT, Duration::from_secs(60))
            .await?;
        tokio::time::sleep(EO_FAULT_SPACING).await;
    }

    let output = copier.await??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("the copier failed: {stdout}\n{stderr}");
    }
    let report: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["step"] == "done")
        .with_context(|| format!("no report from the copier: {stdout}\n{stderr}"))?;
    eprintln!(
        "copier: {} transactions committed, {} aborted, {} new producers ({} for a stuck \
         call), through {done:?}; errors: {}",
        report["commits"],
        report["aborts"],
        report["new_producers"],
        report["stuck_producers"],
        report["errors"]
    );
    assert!(
        done.len() >= 3,
        "the copy ended before most faults ({done:?}): make it longer"
    );
    exactly_once(&report, records, EO_PARTITIONS)?;
    eprintln!("exactly once: {records} records copied, each once and in its key's order");
    cluster.finish();
    Ok(())
}

/// The verdict on an exactly-once copier's report (`exactly_once_copier.py`'s "done"
/// line) of `records` input records over `partitions` partitions: the copy finished, and
/// its read_committed read of the output holds every input record exactly once, each
/// key's records in their order (a key's records share a partition). Also the soak's.
pub(crate) fn exactly_once(
    report: &serde_json::Value,
    records: usize,
    partitions: u32,
) -> anyhow::Result<()> {
    if report["finished"] != true {
        bail!("the copy did not finish: {report}");
    }
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    let mut out_of_order = Vec::new();
    for p in 0..partitions {
        let values = report["read"][p.to_string()]
            .as_array()
            .with_context(|| format!("no values of partition {p}: {report}"))?;
        let mut next: BTreeMap<&str, u64> = BTreeMap::new();
        for value in values.iter().filter_map(|v| v.as_str()) {
            *copies.entry(value.to_owned()).or_default() += 1;
            let (key, seq) = value.split_once(':').context("a key:seq value")?;
            let seq: u64 = seq.parse().context("a sequence number")?;
            let expected = next.entry(key).or_default();
            if seq != *expected && out_of_order.len() < 10 {
                out_of_order.push(format!("{value} after {key}:{}", expected.wrapping_sub(1)));
            }
            *expected = seq + 1;
        }
    }
    let expected: BTreeSet<String> = (0..records)
        .map(|i| format!("k{}:{}", i % EO_KEYS, i / EO_KEYS))
        .collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|v| !copies.contains_key(*v))
        .take(10)
        .collect();
    let doubled: Vec<(&String, &usize)> = copies.iter().filter(|(_, n)| **n > 1).take(10).collect();
    let unexpected: Vec<&String> = copies
        .keys()
        .filter(|v| !expected.contains(*v))
        .take(10)
        .collect();
    if !(missing.is_empty()
        && doubled.is_empty()
        && unexpected.is_empty()
        && out_of_order.is_empty())
    {
        bail!(
            "read_committed output of {} distinct values (expected {}): missing {missing:?}, \
             doubled {doubled:?}, never sent {unexpected:?}, out of order {out_of_order:?}; \
             where the doubled ones are (input and output offsets): {}; records the copier's \
             consumer handed over twice: {}",
            copies.len(),
            expected.len(),
            report["doubles"],
            report["redelivered"]
        );
    }
    Ok(())
}
