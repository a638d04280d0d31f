//! `weir bench e2e`: produce at a fixed rate while a consumer in the same process reads
//! the records back. Record `i` is due at `start + i / rate`; its value starts with that
//! intended time, and its latency is arrival at the consumer minus the intended time.
//! A stall anywhere (broker, producer backpressure, the load generator itself) therefore
//! counts against every record it delayed, not just the one in flight: no coordinated
//! omission. Records due in the first `--warmup` are sent and checked but not measured.
//! Each record is received exactly once (a duplicate is counted, not measured), and its
//! acknowledgement and how late the generator sent it are measured from the same
//! intended time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use weir_client::{Consumer, ConsumerConfig, DeliveryFuture, Producer, ProducerRecord, SeekTo};

use super::{
    BenchConfig, E2eStats, Measured, Progress, Report, Stop, latency_histogram, random_values,
};

/// Bytes at the start of each value holding its intended send time (ns after the
/// run's start, little-endian).
pub(crate) const STAMP_BYTES: usize = 8;
/// Most records taken per poll.
const POLL_MAX_RECORDS: usize = 16 * 1024;
/// A poll that brings nothing for this long while records are still expected means
/// they are lost: fail instead of hanging.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the scenario.
pub(super) async fn run(
    config: &BenchConfig,
    partitions: u32,
    rate: u64,
    warmup: Duration,
) -> anyhow::Result<Report> {
    let warmup_records = (warmup.as_secs_f64() * rate as f64) as u64;
    let total = warmup_records
        + match config.stop {
            Stop::Count(n) => n,
            Stop::After(d) => ((d.as_secs_f64() * rate as f64) as u64).max(1),
        };
    let interval_ns = 1e9 / rate as f64;

    // The consumer is positioned at the end before the first record is sent.
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
        consumer.seek(&config.topic, p, SeekTo::End).await?;
    }
    let producer = Producer::connect(config.producer.clone())
        .await
        .context("connecting the producer")?;

    let progress = Progress::start("e2e", Some(total));
    let start = Instant::now();
    let receiving = {
        let topic = config.topic.clone();
        let done = progress.done.clone();
        tokio::spawn(async move {
            let mut latency = latency_histogram();
            let mut received: u64 = 0;
            let mut duplicates: u64 = 0;
            let mut bytes: u64 = 0;
            // One bit per record sent, set when it arrives.
            let mut seen = vec![0u64; total.div_ceil(64) as usize];
            while received < total {
                let records = consumer
                    .poll(POLL_MAX_RECORDS, STALL_TIMEOUT)
                    .await
                    .with_context(|| format!("reading topic {topic}"))?;
                anyhow::ensure!(
                    !records.is_empty(),
                    "no record arrived for {STALL_TIMEOUT:?} after {received} of {total}"
                );
                let now = start.elapsed().as_nanos() as u64;
                for r in &records {
                    let value = r.value.as_deref().unwrap_or_default();
                    let Some(stamp) = value.get(..STAMP_BYTES) else {
                        anyhow::bail!(
                            "record {}/{} has no send time: is another producer writing to {topic}?",
                            r.partition,
                            r.offset
                        );
                    };
                    let due = u64::from_le_bytes(stamp.try_into().expect("8 bytes"));
                    // Record i is due at floor(i * interval): rounding gives i back
                    // while the interval is over 2 ns (below 500 M records/s).
                    let i = (due as f64 / interval_ns).round() as u64;
                    anyhow::ensure!(
                        i < total,
                        "record {}/{} was not sent by this run: is another producer writing to {topic}?",
                        r.partition,
                        r.offset
                    );
                    let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
                    if seen[word] & bit != 0 {
                        duplicates += 1;
                        continue;
                    }
                    seen[word] |= bit;
                    received += 1;
                    if i >= warmup_records {
                        latency.saturating_record(now.saturating_sub(due) / 1000);
                    }
                    bytes += value.len() as u64 + r.key.as_ref().map_or(0, |k| k.len() as u64);
                }
                done.store(received, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>((received, duplicates, bytes, start.elapsed(), latency))
        })
    };

    let sending = send_at_rate(config, &producer, total, warmup_records, rate, start).await;
    let received = if sending.is_ok() {
        receiving.await.context("the consumer task failed")?
    } else {
        receiving.abort();
        Err(anyhow::anyhow!("the producer failed"))
    };
    progress.finish();
    producer.close().await;
    let (ack, send_lag) = sending?;
    let (records, duplicates, bytes, elapsed, latency) = received?;
    Ok(Report::new(
        config,
        partitions,
        Measured {
            records,
            bytes,
            elapsed,
            latency: Some((
                "intended send time to consumer, no coordinated omission",
                latency,
            )),
            e2e: Some(E2eStats {
                warmup,
                sent: total,
                received: records,
                duplicates,
                ack,
                send_lag,
            }),
        },
    ))
}

/// Sends `total` records, record `i` no earlier than `start + i / rate`, each stamped
/// with its due time. Checks every acknowledgement. Returns, for the records after the
/// first `warmup_records`, the acknowledgement latency and the generator's lag, both from
/// the intended send time.
async fn send_at_rate(
    config: &BenchConfig,
    producer: &Producer,
    total: u64,
    warmup_records: u64,
    rate: u64,
    start: Instant,
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let mut ack = latency_histogram();
    let mut send_lag = latency_histogram();
    let since_due_us =
        |due_ns: u64| (start.elapsed().as_nanos() as u64).saturating_sub(due_ns) / 1000;
    let topic: Arc<str> = config.topic.as_str().into();
    let filler = random_values(config.record_bytes - STAMP_BYTES);
    let interval_ns = 1e9 / rate as f64;
    // Each delivery with its due time, if measured.
    let mut pending: VecDeque<(Option<u64>, DeliveryFuture)> = VecDeque::new();
    // Values are cut from one buffer refilled in chunks, not allocated per record.
    let mut buffer = BytesMut::new();
    for i in 0..total {
        let due_ns = (i as f64 * interval_ns) as u64;
        let due = start + Duration::from_nanos(due_ns);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if buffer.capacity() < config.record_bytes {
            buffer.reserve(config.record_bytes * 1024);
        }
        buffer.put_u64_le(due_ns);
        buffer.put_slice(&filler);
        let value: Bytes = buffer.split().freeze();
        let measured = (i >= warmup_records).then_some(due_ns);
        if measured.is_some() {
            send_lag.saturating_record(since_due_us(due_ns));
        }
        let delivery = producer
            .send(ProducerRecord::new(topic.clone(), value))
            .await
            .with_context(|| format!("producing to topic {}", config.topic))?;
        pending.push_back((measured, delivery));
        while let Some(result) = pending.front().and_then(|(_, d)| d.try_result()) {
            let (measured, _) = pending.pop_front().expect("front exists");
            result.context("a record was not written")?;
            if let Some(due_ns) = measured {
                ack.saturating_record(since_due_us(due_ns));
            }
        }
    }
    producer.flush().await;
    for (measured, delivery) in pending {
        delivery.wait().await.context("a record was not written")?;
        if let Some(due_ns) = measured {
            ack.saturating_record(since_due_us(due_ns));
        }
    }
    Ok((ack, send_lag))
}
