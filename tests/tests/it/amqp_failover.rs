//! RabbitMQ's clients through failures of a 3-node cluster (issue 43, Faults): pika
//! against every node's AMQP listener, on a queue whose topic is replicated 3 times
//! (`min.insync.replicas=2`):
//! - a publisher with confirms (`tests/amqp/confirms_checker.py`) while the queue's
//!   leader is SIGKILLed and started again, and a consumer acknowledging what it gets.
//!   Asserted: every confirmed message is delivered, nothing is delivered that was not
//!   published, and most messages were confirmed (the publisher moved on to the others).
//! - a consumer (`tests/amqp/held_redelivery.py hold`) holding messages unacknowledged
//!   on one broker is SIGKILLed; another consumer on a third broker drains the queue.
//!   Asserted: every message it held comes again with `redelivered` set, none it
//!   acknowledged comes again, every message arrives, none twice.
//!
//! The clients are the pinned ones of `tests/python/requirements.txt`, installed by
//! `tests/python/setup.sh` into the shared venv.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use weir_tests::cluster::{Cluster, ClusterConfig};

use crate::kafka_failover::{python, run_bounded, tests_dir};

/// How long the confirms checker publishes (at its 50 messages a second).
const PUBLISH_SECONDS: u64 = 18;
/// When the queue's leader is killed, and how long it stays down.
const KILL_AFTER: Duration = Duration::from_secs(6);
const DOWN_FOR: Duration = Duration::from_secs(6);
/// The checker's own bound: its publishing, then its drain (90 s at most), then slack.
const CHECKER_TIMEOUT: Duration = Duration::from_secs(PUBLISH_SECONDS + 150);
/// Messages of the killed-consumer test; how many the consumer holds and acknowledges.
const MESSAGES: usize = 300;
const HOLD: usize = 60;
const ACK: usize = 20;
/// Longest one part of the killed-consumer test may run.
const PART_TIMEOUT: Duration = Duration::from_secs(120);

/// A cluster of 3 with AMQP listeners, and `queue`'s topic replicated 3 times before pika
/// declares the queue on it (the declaration takes the topic as it is).
async fn cluster_with_queue(queue: &str) -> anyhow::Result<Cluster> {
    let cluster = Cluster::start(ClusterConfig {
        amqp: true,
        ..ClusterConfig::default()
    })
    .await?;
    cluster.create_topic(queue, 1, 3, 2).await?;
    cluster.wait_healthy(queue, Duration::from_secs(30)).await?;
    Ok(cluster)
}

fn amqp_port(cluster: &Cluster, id: i32) -> anyhow::Result<u16> {
    cluster
        .amqp_port(id)
        .with_context(|| format!("node {id} has no AMQP listener"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pika_publisher_with_confirms_loses_nothing_when_the_queue_s_leader_is_killed()
-> anyhow::Result<()> {
    const QUEUE: &str = "amqp-confirms-failover";
    let _serial = weir_tests::exclusive().await;
    let python = tokio::task::spawn_blocking(python).await??;
    let mut cluster = cluster_with_queue(QUEUE).await?;
    let ports: Vec<String> = cluster
        .ids()
        .into_iter()
        .map(|id| amqp_port(&cluster, id).map(|p| p.to_string()))
        .collect::<anyhow::Result<_>>()?;

    let mut command = Command::new(&python);
    command
        .arg(tests_dir().join("amqp/confirms_checker.py"))
        .args([
            ports.join(","),
            QUEUE.to_owned(),
            PUBLISH_SECONDS.to_string(),
        ]);
    let checker = tokio::task::spawn_blocking(move || run_bounded(command, CHECKER_TIMEOUT));

    tokio::time::sleep(KILL_AFTER).await;
    let leader = cluster.leader(QUEUE, 0).await?;
    cluster.kill(leader)?;
    eprintln!("killed node {leader}, the leader of the queue's partition");
    tokio::time::sleep(DOWN_FOR).await;
    cluster.restart(leader).await?;

    let output = checker.await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdict: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("the checker's verdict; stdout: {stdout}\nstderr: {stderr}"))?;
    eprintln!("pika confirms through the kill: {verdict}");
    cluster.wait_healthy(QUEUE, Duration::from_secs(60)).await?;
    cluster.finish();

    let missing = verdict["missing_count"].as_u64().context("missing_count")?;
    ensure!(
        missing == 0,
        "{missing} confirmed messages never delivered: {}",
        verdict["missing"]
    );
    ensure!(
        verdict["unpublished"].as_array().is_some_and(Vec::is_empty),
        "delivered but never published: {}",
        verdict["unpublished"]
    );
    let confirmed = verdict["confirmed"].as_u64().context("confirmed")?;
    let sent = PUBLISH_SECONDS * 50;
    ensure!(
        confirmed > sent / 2,
        "only {confirmed} of about {sent} messages confirmed: {verdict}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pika_consumer_s_messages_come_again_redelivered_and_its_acks_hold()
-> anyhow::Result<()> {
    const QUEUE: &str = "amqp-held-failover";
    let _serial = weir_tests::exclusive().await;
    let python = tokio::task::spawn_blocking(python).await??;
    let cluster = cluster_with_queue(QUEUE).await?;
    // Each part through another broker: the holder's fetches, acks and the release at
    // its death cross to the queue's share coordinator wherever that is.
    let ids = cluster.ids();
    let [publisher, holder, drainer] = [ids[0], ids[1], ids[2]].map(|id| amqp_port(&cluster, id));
    let (publisher, holder, drainer) = (publisher?, holder?, drainer?);
    let script = tests_dir().join("amqp/held_redelivery.py");

    let published = part(&python, &script, "publish", publisher, QUEUE, &[MESSAGES]).await?;
    ensure!(
        published["confirmed"].as_u64() == Some(MESSAGES as u64),
        "{published}"
    );

    let mut child = Command::new(&python)
        .arg(&script)
        .args(["hold", &holder.to_string(), QUEUE])
        .args([HOLD.to_string(), ACK.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = match tokio::time::timeout(PART_TIMEOUT, first_line).await {
        Ok(line) => line??,
        Err(_) => {
            let _ = child.kill();
            bail!("the holder reported nothing in {PART_TIMEOUT:?}");
        }
    };
    // SIGKILL: the holder's connection ends without a close; the broker must release.
    child.kill()?;
    let _ = child.wait();
    let report: Value =
        serde_json::from_str(&line).with_context(|| format!("the holder's report: {line:?}"))?;
    let strings = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (acked, held) = (strings(&report["acked"]), strings(&report["held"]));
    ensure!(acked.len() == ACK && held.len() >= HOLD - ACK, "{report}");
    eprintln!(
        "the holder acknowledged {} and held {} when it was killed",
        acked.len(),
        held.len()
    );

    let expected = MESSAGES - acked.len();
    let drained = part(&python, &script, "drain", drainer, QUEUE, &[expected]).await?;
    cluster.finish();

    let mut copies: HashMap<String, Vec<bool>> = HashMap::new();
    for delivery in drained["deliveries"].as_array().context("deliveries")? {
        let body = delivery[0].as_str().context("a body")?.to_owned();
        let redelivered = delivery[1].as_bool().context("redelivered")?;
        copies.entry(body).or_default().push(redelivered);
    }
    let again: Vec<&String> = acked.iter().filter(|b| copies.contains_key(*b)).collect();
    ensure!(
        again.is_empty(),
        "acknowledged, then delivered again: {again:?}"
    );
    let doubled: Vec<&String> = copies
        .iter()
        .filter(|(_, d)| d.len() > 1)
        .map(|(b, _)| b)
        .collect();
    ensure!(
        doubled.is_empty(),
        "delivered twice to the drainer: {doubled:?}"
    );
    let all: BTreeSet<String> = (0..MESSAGES).map(|i| format!("m-{i}")).collect();
    let seen: BTreeSet<String> = copies
        .keys()
        .cloned()
        .chain(acked.iter().cloned())
        .collect();
    let lost: Vec<&String> = all.difference(&seen).collect();
    ensure!(
        lost.is_empty(),
        "never delivered: {} of them, {lost:?}",
        lost.len()
    );
    let unknown: Vec<&String> = seen.difference(&all).collect();
    ensure!(unknown.is_empty(), "never published: {unknown:?}");
    let not_flagged: Vec<&String> = held.iter().filter(|b| copies[*b] != [true]).collect();
    ensure!(
        not_flagged.is_empty(),
        "held by the killed consumer, delivered again without `redelivered`: {not_flagged:?}"
    );
    let flagged = copies.iter().filter(|(_, d)| d[0]).count();
    ensure!(
        flagged == held.len(),
        "{flagged} deliveries flagged `redelivered`, {} held by the killed consumer",
        held.len()
    );
    Ok(())
}

/// Runs one part of `held_redelivery.py` to its end; its last stdout line, JSON.
async fn part(
    python: &Path,
    script: &Path,
    name: &str,
    port: u16,
    queue: &str,
    numbers: &[usize],
) -> anyhow::Result<Value> {
    let mut command = Command::new(python);
    command
        .arg(script)
        .args([name, &port.to_string(), queue])
        .args(numbers.iter().map(ToString::to_string));
    let output = tokio::task::spawn_blocking(move || run_bounded(command, PART_TIMEOUT)).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("held_redelivery.py {name} failed: {stderr}");
    }
    stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("{name}'s report; stdout: {stdout}\nstderr: {stderr}"))
}
