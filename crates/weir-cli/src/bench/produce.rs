//! `weir bench produce`: one task sends records as fast as the producer takes them
//! (its buffer memory is the backpressure). By default it hands them over in chunks of
//! about a batch's worth with [`Producer::send_all`], and latency is each chunk's call to
//! its acknowledgement (one sample per chunk); with `--per-record` it calls
//! [`Producer::send`] once per record, and latency is each record's send call to its
//! acknowledgement. Either way acknowledgements are observed in send order as they arrive.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use hdrhistogram::Histogram;
use weir_client::{BatchDelivery, DeliveryFuture, Producer, ProducerRecord, RecordRef};

use super::{BenchConfig, Measured, Progress, Report, Stop, latency_histogram, random_values};

/// Runs the scenario.
pub(super) async fn run(config: &BenchConfig, partitions: u32) -> anyhow::Result<Report> {
    let producer = Producer::connect(config.producer.clone())
        .await
        .context("connecting the producer")?;
    let total = match config.stop {
        Stop::Count(n) => Some(n),
        Stop::After(_) => None,
    };
    let progress = Progress::start("producing", total);
    let mut latency = latency_histogram();
    let started = Instant::now();
    let sent = send(
        config,
        &producer,
        config.stop,
        &progress,
        Some(&mut latency),
    )
    .await;
    let elapsed = started.elapsed();
    progress.finish();
    producer.close().await;
    let records = sent?;
    Ok(Report::new(
        config,
        partitions,
        Measured {
            records,
            bytes: records * config.record_bytes as u64,
            elapsed,
            latency: Some((latency_label(config), latency)),
            e2e: None,
        },
    ))
}

/// What the latency of a produce run measures.
pub(super) fn latency_label(config: &BenchConfig) -> &'static str {
    if config.per_record {
        "send to acknowledgement"
    } else {
        "send_all call to acknowledgement, per chunk"
    }
}

/// Records per `send_all` call: `--chunk-records`, else about a batch's worth (the batch
/// size over the record's size with its framing).
pub(super) fn chunk_records(config: &BenchConfig) -> u64 {
    config.chunk_records.unwrap_or_else(|| {
        // Framing of an unkeyed record without headers: at most 10 bytes at these sizes.
        let framed = config.record_bytes + 10;
        (config.producer.batch_bytes / framed).max(1) as u64
    })
}

/// Sends unkeyed records until `stop`, then waits for every acknowledgement; returns how
/// many were written. Fails at the first record that was not.
pub(super) async fn send(
    config: &BenchConfig,
    producer: &Producer,
    stop: Stop,
    progress: &Progress,
    latency: Option<&mut Histogram<u64>>,
) -> anyhow::Result<u64> {
    if config.per_record {
        send_per_record(config, producer, stop, progress, latency).await
    } else {
        send_chunks(config, producer, stop, progress, latency).await
    }
}

/// [`send`] with one `send_all` call per chunk.
async fn send_chunks(
    config: &BenchConfig,
    producer: &Producer,
    stop: Stop,
    progress: &Progress,
    mut latency: Option<&mut Histogram<u64>>,
) -> anyhow::Result<u64> {
    let value = random_values(config.record_bytes);
    let chunk = chunk_records(config);
    let started = Instant::now();
    let mut pending: VecDeque<(Instant, BatchDelivery)> = VecDeque::new();
    let mut sent: u64 = 0;
    let mut acknowledged: u64 = 0;
    loop {
        let records = match stop {
            Stop::Count(n) => chunk.min(n - sent),
            Stop::After(d) if started.elapsed() >= d => 0,
            Stop::After(_) => chunk,
        };
        if records == 0 {
            break;
        }
        let at = Instant::now();
        let delivery = producer
            .send_all(
                &config.topic,
                None,
                std::iter::repeat_n(RecordRef::new(&value), records as usize),
            )
            .await
            .with_context(|| format!("producing to topic {}", config.topic))?;
        if let Some(error) = delivery.rejected() {
            return Err(error.clone()).context("a record was refused");
        }
        sent += records;
        pending.push_back((at, delivery));
        while let Some(result) = pending.front().and_then(|(_, d)| d.try_result()) {
            let (at, delivery) = pending.pop_front().expect("front exists");
            result.context("a record was not written")?;
            if let Some(h) = latency.as_deref_mut() {
                h.saturating_record(at.elapsed().as_micros() as u64);
            }
            acknowledged += delivery.record_count();
        }
        progress.done.store(acknowledged, Ordering::Relaxed);
    }
    producer.flush().await;
    while let Some((at, delivery)) = pending.pop_front() {
        delivery.wait().await.context("a record was not written")?;
        if let Some(h) = latency.as_deref_mut() {
            h.saturating_record(at.elapsed().as_micros() as u64);
        }
    }
    Ok(sent)
}

/// [`send`] with one `send` call per record.
async fn send_per_record(
    config: &BenchConfig,
    producer: &Producer,
    stop: Stop,
    progress: &Progress,
    mut latency: Option<&mut Histogram<u64>>,
) -> anyhow::Result<u64> {
    let topic: Arc<str> = config.topic.as_str().into();
    let value = random_values(config.record_bytes);
    let started = Instant::now();
    let mut pending: VecDeque<(Instant, DeliveryFuture)> = VecDeque::new();
    let mut sent: u64 = 0;
    let mut acknowledged: u64 = 0;
    loop {
        match stop {
            Stop::Count(n) if sent >= n => break,
            // Checking the clock every record costs little next to a send.
            Stop::After(d) if started.elapsed() >= d => break,
            _ => {}
        }
        let record = ProducerRecord::new(topic.clone(), value.clone());
        let at = Instant::now();
        let delivery = producer
            .send(record)
            .await
            .with_context(|| format!("producing to topic {}", config.topic))?;
        sent += 1;
        pending.push_back((at, delivery));
        while let Some(result) = pending.front().and_then(|(_, d)| d.try_result()) {
            let (at, _) = pending.pop_front().expect("front exists");
            result.context("a record was not written")?;
            if let Some(h) = latency.as_deref_mut() {
                h.saturating_record(at.elapsed().as_micros() as u64);
            }
            acknowledged += 1;
        }
        progress.done.store(acknowledged, Ordering::Relaxed);
    }
    producer.flush().await;
    while let Some((at, delivery)) = pending.pop_front() {
        delivery.wait().await.context("a record was not written")?;
        if let Some(h) = latency.as_deref_mut() {
            h.saturating_record(at.elapsed().as_micros() as u64);
        }
    }
    Ok(sent)
}
