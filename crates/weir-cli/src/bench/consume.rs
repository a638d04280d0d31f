//! `weir bench consume`: reads `--count` records from the beginning of every partition
//! with one consumer. If the topic holds fewer records, the missing ones are produced
//! first (not timed). Throughput counts key and value bytes delivered to the application.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use weir_client::{Admin, Consumer, ConsumerConfig, OffsetQuery, Producer, SeekTo};

use super::{BenchConfig, Measured, Progress, Report, Stop};

/// Most records taken per poll.
const POLL_MAX_RECORDS: usize = 16 * 1024;
/// A poll that brings nothing for this long means the records are not there: fail
/// instead of hanging.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the scenario.
pub(super) async fn run(
    config: &BenchConfig,
    admin: &Admin,
    partitions: u32,
) -> anyhow::Result<Report> {
    let Stop::Count(wanted) = config.stop else {
        unreachable!("checked in into_config: consume runs by count");
    };
    let available = available_records(admin, &config.topic, partitions).await?;
    if available < wanted {
        let missing = wanted - available;
        let producer = Producer::connect(config.producer.clone())
            .await
            .context("connecting the producer")?;
        let progress = Progress::start("filling the topic", Some(missing));
        let filled =
            super::produce::send(config, &producer, Stop::Count(missing), &progress, None).await;
        progress.finish();
        producer.close().await;
        filled?;
    }

    let mut consumer = Consumer::connect(ConsumerConfig {
        brokers: config.brokers.clone(),
        timeouts: config.timeouts,
        tls: config.tls.clone(),
        ..ConsumerConfig::default()
    })
    .await
    .context("connecting the consumer")?;
    let assignment: Vec<(&str, u32)> = (0..partitions)
        .map(|p| (config.topic.as_str(), p))
        .collect();
    consumer.assign(&assignment);
    for p in 0..partitions {
        consumer.seek(&config.topic, p, SeekTo::Beginning).await?;
    }
    let progress = Progress::start("consuming", Some(wanted));
    let started = Instant::now();
    let mut records: u64 = 0;
    let mut bytes: u64 = 0;
    while records < wanted {
        let polled = consumer
            .poll(POLL_MAX_RECORDS, STALL_TIMEOUT)
            .await
            .with_context(|| format!("reading topic {}", config.topic))?;
        anyhow::ensure!(
            !polled.is_empty(),
            "no record arrived for {STALL_TIMEOUT:?} after {records} of {wanted}"
        );
        for r in polled.iter().take((wanted - records) as usize) {
            bytes += (r.key.as_ref().map_or(0, |k| k.len())
                + r.value.as_ref().map_or(0, |v| v.len())) as u64;
        }
        records = (records + polled.len() as u64).min(wanted);
        progress.done.store(records, Ordering::Relaxed);
    }
    let elapsed = started.elapsed();
    progress.finish();
    Ok(Report::new(
        config,
        partitions,
        Measured {
            records,
            bytes,
            elapsed,
            latency: None,
            e2e: None,
        },
    ))
}

/// Records between log start and high watermark over all partitions.
async fn available_records(admin: &Admin, topic: &str, partitions: u32) -> anyhow::Result<u64> {
    let query =
        |q: OffsetQuery| -> Vec<(u32, OffsetQuery)> { (0..partitions).map(|p| (p, q)).collect() };
    let starts = admin
        .list_offsets(topic, &query(OffsetQuery::Earliest))
        .await
        .with_context(|| format!("looking up the start of topic {topic}"))?;
    let ends = admin
        .list_offsets(topic, &query(OffsetQuery::Latest))
        .await
        .with_context(|| format!("looking up the end of topic {topic}"))?;
    Ok(starts
        .iter()
        .zip(&ends)
        .map(|(s, e)| (e.offset - s.offset).max(0) as u64)
        .sum())
}
