//! `weir bench group-commit`: offset commits per second on one broker, and their
//! latency, with C concurrent committers for each C of `--committers`. Each committer
//! is the only member of a group of its own (so no rebalance ever interrupts it), holds
//! the partition(s) of `--topic`, and loops for `--duration`: seek to the next offset,
//! `commit_sync` (the broker appends one record per partition to `__consumer_offsets`
//! and answers once it is durable). Latency is `commit_sync` call to return.
//!
//! With `--placement same` the group ids are chosen so that all of them hash to one
//! `__consumer_offsets` partition, i.e. one coordinator shard, one writer lock and one
//! log: the busiest case for one coordinator. The rule is Kafka's (the broker's
//! `partition_for_group`), computed here because the CLI must not depend on
//! `weir-cluster`, and checked against the partition the broker reports for the group.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use weir_client::{Admin, GroupConsumer, GroupConsumerConfig, SeekTo};

use super::{
    CLOSE_TIMEOUT, CommitConfig, POLL_MAX_RECORDS, POLL_WAIT, Placement, delete_groups, print,
    run_id,
};
use crate::bench::{ensure_topic_named, latency_histogram};

/// The broker's internal topic of committed offsets.
const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The goal.
const GOAL_COMMITS_PER_SEC: f64 = 10_000.0;
/// Candidate group ids tried per id wanted on one partition, per partition (the hash
/// spreads sequential suffixes evenly, so a few per partition suffice).
const CANDIDATES_PER_ID: u64 = 64;

#[derive(Debug, Serialize)]
struct CommitReport {
    scenario: &'static str,
    topic: String,
    /// Partitions of `topic`: offsets per commit.
    topic_partitions: u32,
    placement: Placement,
    offsets_partitions: u32,
    duration_secs: f64,
    rows: Vec<CommitRow>,
    goal_commits_per_sec: f64,
    /// True if some row reached the goal.
    goal_met: bool,
}

#[derive(Debug, Serialize)]
struct CommitRow {
    committers: u32,
    /// The `__consumer_offsets` partitions the groups live on.
    coordinator_partitions: Vec<u32>,
    commits: u64,
    elapsed_secs: f64,
    commits_per_sec: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_p999_ms: f64,
    latency_max_ms: f64,
}

/// Java's `String.hashCode` (over UTF-16 code units), as Kafka hashes group ids.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition of `group_id`: `abs(hashCode) % partitions`, with
/// `abs(i32::MIN)` taken as 0 (Kafka's rule, and the broker's).
fn partition_for_group(group_id: &str, partitions: u32) -> u32 {
    let hash = java_string_hash(group_id);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs as u32 % partitions.max(1)
}

/// `count` group ids starting with `prefix`; with [`Placement::Same`] all on the
/// partition of the first candidate.
fn group_ids(
    prefix: &str,
    count: u32,
    placement: Placement,
    partitions: u32,
) -> anyhow::Result<Vec<String>> {
    let candidate = |i: u64| format!("{prefix}-{i}");
    match placement {
        Placement::Hashed => Ok((0..u64::from(count)).map(candidate).collect()),
        Placement::Same => {
            let target = partition_for_group(&candidate(0), partitions);
            let tries = u64::from(count) * u64::from(partitions.max(1)) * CANDIDATES_PER_ID;
            let ids: Vec<String> = (0..tries)
                .map(candidate)
                .filter(|g| partition_for_group(g, partitions) == target)
                .take(count as usize)
                .collect();
            anyhow::ensure!(
                ids.len() == count as usize,
                "found only {} of {count} group ids on {OFFSETS_TOPIC} partition {target} in \
                 {tries} candidates",
                ids.len()
            );
            Ok(ids)
        }
    }
}

/// Runs the scenario.
pub(super) async fn run(config: &CommitConfig) -> anyhow::Result<()> {
    let admin = Admin::connect_with(
        &config.brokers,
        weir_client::ConnectOptions {
            timeouts: config.timeouts,
            tls: config.tls.clone(),
        },
    )
    .await
    .context("connecting to the broker")?;
    let topic_partitions = ensure_topic_named(&admin, &config.topic, 1, &HashMap::new()).await?;
    let offsets_partitions = admin
        .describe_topic(OFFSETS_TOPIC)
        .await
        .with_context(|| format!("looking up {OFFSETS_TOPIC}"))?
        .partitions
        .len() as u32;
    let id = run_id();
    let mut rows = Vec::with_capacity(config.committers.len());
    let mut all_groups = Vec::new();
    for &committers in &config.committers {
        let prefix = format!("weir-bench-commit-{id}-{committers}");
        let groups = group_ids(&prefix, committers, config.placement, offsets_partitions)?;
        let row = commit_with(config, &admin, &groups, offsets_partitions).await;
        all_groups.extend(groups);
        match row {
            Ok(row) => rows.push(row),
            Err(e) => {
                delete_groups(&admin, &all_groups).await;
                return Err(e);
            }
        }
    }
    delete_groups(&admin, &all_groups).await;
    let best = rows.iter().map(|r| r.commits_per_sec).fold(0.0, f64::max);
    let report = CommitReport {
        scenario: "group-commit",
        topic: config.topic.clone(),
        topic_partitions,
        placement: config.placement,
        offsets_partitions,
        duration_secs: config.duration.as_secs_f64(),
        rows,
        goal_commits_per_sec: GOAL_COMMITS_PER_SEC,
        goal_met: best >= GOAL_COMMITS_PER_SEC,
    };
    print(config.format, &report, &text(&report))
}

/// What one committer measured.
struct Committed {
    commits: u64,
    latency: Histogram<u64>,
    last: Instant,
}

/// One row: a committer per group of `groups`, all at once.
async fn commit_with(
    config: &CommitConfig,
    admin: &Admin,
    groups: &[String],
    offsets_partitions: u32,
) -> anyhow::Result<CommitRow> {
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(groups.len());
    let (go, go_rx) = watch::channel::<Option<Instant>>(None);
    let mut tasks = Vec::with_capacity(groups.len());
    for (slot, group_id) in groups.iter().enumerate() {
        let mut consumer = GroupConsumer::connect(GroupConsumerConfig {
            brokers: config.brokers.clone(),
            timeouts: config.timeouts,
            tls: config.tls.clone(),
            group_id: group_id.clone(),
            client_id: format!("weir-bench-committer-{slot}"),
            ..GroupConsumerConfig::default()
        })
        .await
        .with_context(|| format!("connecting committer {slot}"))?;
        consumer
            .subscribe([config.topic.as_str()])
            .with_context(|| format!("subscribing committer {slot}"))?;
        tasks.push(tokio::spawn(committer(
            consumer,
            slot,
            config.settle_timeout,
            config.duration,
            ready_tx.clone(),
            go_rx.clone(),
        )));
    }
    drop(ready_tx);

    // Every committer holds its partitions (or one failed: its sender is gone).
    let deadline = tokio::time::Instant::now() + config.settle_timeout;
    let mut ready = 0;
    while ready < groups.len() {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(())) => ready += 1,
            Ok(None) | Err(_) => {
                for (slot, task) in tasks.into_iter().enumerate() {
                    if task.is_finished() {
                        task.await
                            .with_context(|| format!("committer {slot} panicked"))??;
                    } else {
                        task.abort();
                    }
                }
                anyhow::bail!(
                    "only {ready} of {} committers held their partition within {:?}",
                    groups.len(),
                    config.settle_timeout
                );
            }
        }
    }
    let coordinator_partitions: BTreeSet<u32> = groups
        .iter()
        .map(|g| partition_for_group(g, offsets_partitions))
        .collect();
    let described = admin
        .describe_group(&groups[0])
        .await
        .with_context(|| format!("describing group {}", groups[0]))?;
    let expected = partition_for_group(&groups[0], offsets_partitions);
    anyhow::ensure!(
        described.coordinator_partition == expected,
        "the broker coordinates group {} on {OFFSETS_TOPIC} partition {}, not {expected} as \
         Kafka's rule says: this bench cannot choose the groups' partition",
        groups[0],
        described.coordinator_partition
    );

    let started = Instant::now();
    let _ = go.send(Some(started));
    let mut latency = latency_histogram();
    let mut commits = 0;
    let mut last = started;
    // A commit that started just before the end may take up to the client's commit
    // timeout; closing adds the leave.
    let limit = config.duration + weir_client::group::COMMIT_TIMEOUT + CLOSE_TIMEOUT;
    for (slot, task) in tasks.into_iter().enumerate() {
        let done = tokio::time::timeout_at(tokio::time::Instant::from_std(started + limit), task)
            .await
            .with_context(|| format!("committer {slot} did not finish within {limit:?}"))?
            .with_context(|| format!("committer {slot} panicked"))??;
        commits += done.commits;
        latency
            .add(&done.latency)
            .context("merging latency histograms")?;
        last = last.max(done.last);
    }
    let elapsed = last.duration_since(started);
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(CommitRow {
        committers: groups.len() as u32,
        coordinator_partitions: coordinator_partitions.into_iter().collect(),
        commits,
        elapsed_secs: elapsed.as_secs_f64(),
        commits_per_sec: commits as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        latency_p50_ms: ms(latency.value_at_quantile(0.5)),
        latency_p99_ms: ms(latency.value_at_quantile(0.99)),
        latency_p999_ms: ms(latency.value_at_quantile(0.999)),
        latency_max_ms: ms(latency.max()),
    })
}

/// One committer: polls until it holds its partitions, says so, waits for the start,
/// then commits in a loop until `duration` has passed, and closes.
async fn committer(
    mut consumer: GroupConsumer,
    slot: usize,
    settle_timeout: Duration,
    duration: Duration,
    ready: mpsc::Sender<()>,
    mut go: watch::Receiver<Option<Instant>>,
) -> anyhow::Result<Committed> {
    let settle_by = Instant::now() + settle_timeout;
    while consumer.assignment().is_empty() {
        anyhow::ensure!(
            Instant::now() < settle_by,
            "committer {slot} got no partition within {settle_timeout:?}"
        );
        consumer
            .poll(POLL_MAX_RECORDS, POLL_WAIT)
            .await
            .with_context(|| format!("committer {slot} polling"))?;
    }
    let held = consumer.assignment();
    let _ = ready.send(()).await;
    drop(ready);
    let started = match go.wait_for(Option::is_some).await {
        Ok(start) => start.expect("waited for Some"),
        Err(_) => anyhow::bail!("committer {slot}: the run was abandoned"),
    };
    let end = started + duration;
    let mut latency = latency_histogram();
    let mut commits = 0u64;
    let mut offset = 0i64;
    while Instant::now() < end {
        // A new offset each time, as a consumer making progress commits.
        offset += 1;
        for tp in &held {
            consumer
                .seek(&tp.topic, tp.partition, SeekTo::Offset(offset))
                .await
                .with_context(|| format!("committer {slot} seeking {tp}"))?;
        }
        let at = Instant::now();
        consumer
            .commit_sync()
            .await
            .with_context(|| format!("committer {slot}: commit {commits} failed"))?;
        latency.saturating_record(at.elapsed().as_micros() as u64);
        commits += 1;
    }
    let last = Instant::now();
    tokio::time::timeout(CLOSE_TIMEOUT, consumer.close())
        .await
        .with_context(|| format!("committer {slot} did not close within {CLOSE_TIMEOUT:?}"))?
        .with_context(|| format!("closing committer {slot}"))?;
    Ok(Committed {
        commits,
        latency,
        last,
    })
}

fn text(r: &CommitReport) -> String {
    let mut out = String::new();
    let placement = match r.placement {
        Placement::Same => "every group on one __consumer_offsets partition",
        Placement::Hashed => "groups where their ids hash",
    };
    let _ = writeln!(
        out,
        "group-commit: one-member groups on {} ({} offset(s) per commit), {placement} \
         (of {}), {:.1} s per row",
        r.topic, r.topic_partitions, r.offsets_partitions, r.duration_secs
    );
    let _ = writeln!(
        out,
        "  {:>10} {:>11} {:>8} {:>8} {:>8} {:>8}  on {OFFSETS_TOPIC}",
        "committers", "commits/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for row in &r.rows {
        let parts = match &row.coordinator_partitions[..] {
            [one] => format!("#{one}"),
            many => format!("{} partitions", many.len()),
        };
        let _ = writeln!(
            out,
            "  {:>10} {:>11.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3}  {parts}",
            row.committers,
            row.commits_per_sec,
            row.latency_p50_ms,
            row.latency_p99_ms,
            row.latency_p999_ms,
            row.latency_max_ms
        );
    }
    let reached: Vec<String> = r
        .rows
        .iter()
        .filter(|row| row.commits_per_sec >= r.goal_commits_per_sec)
        .map(|row| row.committers.to_string())
        .collect();
    let _ = writeln!(
        out,
        "  goal >= {:.0} commits/s: {}",
        r.goal_commits_per_sec,
        if reached.is_empty() {
            "NOT met".to_owned()
        } else {
            format!("met with {} committers", reached.join(", "))
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_hash_like_java_and_the_broker() {
        // Values from Java (the broker's own tests use the same).
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for_group("polygenelubricants", 16), 0);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(partition_for_group("my-group", 16), 1_906_497_762 % 16);
    }

    #[test]
    fn same_placement_puts_every_group_on_one_partition() {
        let ids = group_ids("weir-bench-commit-x", 64, Placement::Same, 16).unwrap();
        assert_eq!(ids.len(), 64);
        let parts: BTreeSet<u32> = ids.iter().map(|g| partition_for_group(g, 16)).collect();
        assert_eq!(parts.len(), 1);
        let spread = group_ids("weir-bench-commit-x", 64, Placement::Hashed, 16).unwrap();
        let parts: BTreeSet<u32> = spread.iter().map(|g| partition_for_group(g, 16)).collect();
        assert!(parts.len() > 8, "{parts:?}");
    }
}
