//! `weir bench queue`: share-group (queue) throughput with explicit per-record
//! acknowledgement. The topic is filled to `--count` records first if it holds fewer (not
//! timed). Then, for each consumer count of `--consumers`, a fresh share group starting
//! at the log start takes every record with that many `ShareConsumer`s in explicit mode,
//! each record ACCEPTed on its own (the client sends them as ranges with its next
//! fetch). The clock runs from the first fetch until every consumer has closed, that is
//! until every record's ACCEPT is durable; then the group's describe must show every
//! partition finished. A record delivered twice is counted as a duplicate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use weir_client::{AckKind, AckMode, Admin, ShareConsumer, ShareConsumerConfig, ShareStart};

use super::consume::{fill, filled_ranges, log_ranges};
use super::{ConsumeConfig, print, run_id};
use crate::bench::{BYTES_PER_MB, ensure_topic_named};

/// Longest one poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(500);

/// `weir bench queue`, checked.
#[derive(Debug)]
pub struct QueueConfig {
    /// The topic, its fill and the timeouts (as `group-consume`'s).
    pub(super) base: ConsumeConfig,
    /// Consumer counts, one run each.
    pub(super) consumers: Vec<u32>,
    /// Records per fetch.
    pub(super) max_records: u32,
}

#[derive(Debug, Serialize)]
struct QueueReport {
    scenario: &'static str,
    topic: String,
    partitions: u32,
    /// Records in the topic, each taken and accepted by every run.
    records: u64,
    runs: Vec<QueueRun>,
}

#[derive(Debug, Serialize)]
struct QueueRun {
    consumers: u32,
    group_id: String,
    /// Distinct records accepted.
    records: u64,
    /// Deliveries beyond the first of a record (a lock that expired).
    duplicates: u64,
    elapsed_secs: f64,
    /// Records accepted (and durable) per second.
    records_per_sec: f64,
    mb_per_sec: f64,
    /// Records each consumer accepted.
    records_per_consumer: Vec<u64>,
}

/// Runs the scenario.
pub(super) async fn run(config: &QueueConfig) -> anyhow::Result<()> {
    let base = &config.base;
    let admin = Admin::connect_with(
        &base.brokers,
        weir_client::ConnectOptions {
            timeouts: base.timeouts,
            tls: base.tls.clone(),
        },
    )
    .await
    .context("connecting to the broker")?;
    let partitions =
        ensure_topic_named(&admin, &base.topic, base.partitions, &base.topic_configs).await?;
    let mut ranges = log_ranges(&admin, &base.topic, partitions).await?;
    let available: u64 = ranges.iter().map(|&(s, e)| (e - s).max(0) as u64).sum();
    if available < base.count {
        fill(base, partitions, base.count - available).await?;
        ranges = filled_ranges(base, &admin, partitions).await?;
    }
    let records: u64 = ranges.iter().map(|&(s, e)| (e - s).max(0) as u64).sum();
    let id = run_id();
    let mut runs = Vec::new();
    for &consumers in &config.consumers {
        let group_id = format!("weir-bench-queue-{id}-{consumers}");
        runs.push(run_with(config, &admin, consumers, records, group_id).await?);
    }
    let report = QueueReport {
        scenario: "queue",
        topic: base.topic.clone(),
        partitions,
        records,
        runs,
    };
    print(base.format, &report, &text(&report))
}

/// One run: `consumers` consumers of the fresh share group `group_id` accept every record.
async fn run_with(
    config: &QueueConfig,
    admin: &Admin,
    consumers: u32,
    records: u64,
    group_id: String,
) -> anyhow::Result<QueueRun> {
    let base = &config.base;
    let accepted = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut members = Vec::new();
    for slot in 0..consumers {
        let consumer = ShareConsumer::connect(ShareConsumerConfig {
            brokers: base.brokers.clone(),
            timeouts: base.timeouts,
            tls: base.tls.clone(),
            start: ShareStart::Earliest,
            ack_mode: AckMode::Explicit,
            max_records: config.max_records,
            ..ShareConsumerConfig::new(group_id.clone(), vec![base.topic.clone()])
        })
        .await
        .with_context(|| format!("connecting consumer {slot}"))?;
        members.push(consumer);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut consumer in members {
        let (accepted, bytes) = (accepted.clone(), bytes.clone());
        let stall = base.stall_timeout;
        tasks.push(tokio::spawn(async move {
            let mut mine = 0u64;
            let mut last_progress = Instant::now();
            let mut seen = std::collections::HashSet::new();
            let mut duplicates = 0u64;
            while accepted.load(Ordering::Relaxed) < records {
                let got = consumer.poll(POLL_WAIT).await?;
                if got.is_empty() {
                    if last_progress.elapsed() > stall {
                        bail!("no record for {stall:?} with {mine} accepted");
                    }
                    continue;
                }
                last_progress = Instant::now();
                let mut size = 0u64;
                for r in &got {
                    size += r.key.as_ref().map_or(0, |k| k.len()) as u64
                        + r.value.as_ref().map_or(0, |v| v.len()) as u64;
                    if !seen.insert((r.partition, r.offset)) {
                        duplicates += 1;
                    }
                    consumer.acknowledge(r, AckKind::Accept)?;
                }
                mine += got.len() as u64;
                accepted.fetch_add(got.len() as u64, Ordering::Relaxed);
                bytes.fetch_add(size, Ordering::Relaxed);
            }
            let outcomes = consumer.close().await?;
            if let Some(o) = outcomes.iter().find(|o| !o.is_applied()) {
                bail!("an acknowledgement was not applied: {o:?}");
            }
            Ok((mine, duplicates))
        }));
    }
    let mut per_consumer = Vec::new();
    let mut duplicates = 0;
    for task in tasks {
        let (mine, dup) = task.await.context("a consumer task failed")??;
        per_consumer.push(mine);
        duplicates += dup;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let described = admin
        .describe_share_group(&group_id)
        .await
        .with_context(|| format!("describing share group {group_id}"))?;
    for p in &described.partitions {
        if p.start_offset != p.high_watermark || p.acquired != 0 {
            bail!(
                "share group {group_id} did not finish partition {}: {p:?}",
                p.partition
            );
        }
    }
    let total = accepted.load(Ordering::Relaxed);
    Ok(QueueRun {
        consumers,
        group_id,
        records: total - duplicates,
        duplicates,
        elapsed_secs: elapsed,
        records_per_sec: total as f64 / elapsed,
        mb_per_sec: bytes.load(Ordering::Relaxed) as f64 / elapsed / BYTES_PER_MB,
        records_per_consumer: per_consumer,
    })
}

fn text(report: &QueueReport) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "queue: topic {}, {} partition(s), {} records, explicit per-record ACCEPT\n",
        report.topic, report.partitions, report.records
    );
    for r in &report.runs {
        let _ = writeln!(
            out,
            "  {:>3} consumers: {:>12.0} records/s {:>8.1} MB/s in {:.2} s ({} duplicates; per consumer {:?})",
            r.consumers,
            r.records_per_sec,
            r.mb_per_sec,
            r.elapsed_secs,
            r.duplicates,
            r.records_per_consumer
        );
    }
    out
}
