//! Committed offsets across coordinator failovers (issue 42), checked the way a Kafka user
//! would see them: a confluent-kafka group of 3 members committing after every batch and
//! an idempotent producer (`tests/kafka/coordinator_kill_checker.py`) run against a
//! 3-node cluster while the group's coordinator is SIGKILLed every 10-15 s and started
//! again 3 s later. Asserted: no member ever starts a partition below the group's highest
//! successfully committed offset, nothing acknowledged is left unread, nothing is read
//! that was not sent, and the group never stops reading for longer than
//! [`LONGEST_STALL`] while records are produced.
//!
//! The default run is the short form ([`DEFAULT_SECONDS`] of producing, 3 or 4 kills). The
//! long form is the same test with `WEIR_COORDINATOR_KILL_SECONDS=1200` (20 minutes,
//! about 95 kills):
//!
//! ```text
//! WEIR_COORDINATOR_KILL_SECONDS=1200 cargo test -p weir-tests --test it -- coordinator_kills --nocapture
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use weir_tests::cluster::{Cluster, ClusterConfig};

use crate::kafka_failover::{find_coordinator, python, run_bounded, tests_dir};

const TOPIC: &str = "coordinator-kills";
const GROUP: &str = "coordinator-kills";
const PARTITIONS: u32 = 6;
/// How long the checker produces in the default run.
const DEFAULT_SECONDS: u64 = 60;
/// The kills' spacing, in turn (the issue's "every 10-15 s").
const KILL_EVERY: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(15),
    Duration::from_secs(12),
];
/// How long a killed coordinator stays down.
const DOWN_FOR: Duration = Duration::from_secs(3);
/// The longest the group may go without reading while records are produced.
const LONGEST_STALL: f64 = 10.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_committed_offset_is_lost_when_the_group_coordinator_is_killed_again_and_again()
-> anyhow::Result<()> {
    let seconds: u64 = match std::env::var("WEIR_COORDINATOR_KILL_SECONDS") {
        Ok(text) => text
            .parse()
            .context("WEIR_COORDINATOR_KILL_SECONDS: a number of seconds")?,
        Err(_) => DEFAULT_SECONDS,
    };
    let _serial = weir_tests::exclusive().await;
    let python = tokio::task::spawn_blocking(python).await??;
    let mut cluster = Cluster::start(ClusterConfig::default()).await?;
    cluster.create_topic(TOPIC, PARTITIONS, 3, 2).await?;
    cluster.wait_healthy(TOPIC, Duration::from_secs(30)).await?;

    let mut command = Command::new(&python);
    command.args([
        tests_dir()
            .join("kafka/coordinator_kill_checker.py")
            .to_string_lossy()
            .as_ref(),
        &cluster.kafka_bootstrap(),
        TOPIC,
        GROUP,
        &seconds.to_string(),
    ]);
    // Its producing, the drain (at most 90 s) and the members' close.
    let limit = Duration::from_secs(seconds + 240);
    let checker = tokio::task::spawn_blocking(move || run_bounded(command, limit));

    let started = Instant::now();
    let mut kills = Vec::new();
    // No kill in the last 10 s of producing: the last failover is then checked too.
    for wait in KILL_EVERY.iter().cycle() {
        tokio::time::sleep(*wait).await;
        if started.elapsed() + Duration::from_secs(10) > Duration::from_secs(seconds)
            || checker.is_finished()
        {
            break;
        }
        let coordinator = find_coordinator(&cluster, GROUP).await?;
        cluster.kill(coordinator)?;
        eprintln!(
            "{:>5.1}s killed node {coordinator}, the coordinator of {GROUP}",
            started.elapsed().as_secs_f64()
        );
        kills.push(coordinator);
        tokio::time::sleep(DOWN_FOR).await;
        cluster.restart(coordinator).await?;
    }

    let output = checker.await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("the checker's summary; stdout: {stdout}\nstderr: {stderr}"))?;
    eprintln!("{} kills ({kills:?}): {summary}", kills.len());
    assert!(!kills.is_empty(), "the coordinator was never killed");
    assert!(
        summary["acked"].as_u64().unwrap_or(0) > 0,
        "nothing was acknowledged: {summary}"
    );
    for field in ["violations", "missing", "unproduced"] {
        assert_eq!(
            summary[field].as_array().map(Vec::len),
            Some(0),
            "{field}: {summary}"
        );
    }
    let stall = summary["longest_stall_s"]
        .as_f64()
        .context("longest_stall_s")?;
    assert!(
        stall <= LONGEST_STALL,
        "the group stopped reading for {stall} s (at most {LONGEST_STALL}): {summary}"
    );
    cluster.finish();
    Ok(())
}
