//! `weir bench produce`: one task sends records as fast as the producer takes them
//! (its buffer memory is the backpressure). By default it hands them over in chunks of
//! about a batch's worth with [`Producer::send_all`], and latency is each chunk's call to
//! its acknowledgement (one sample per chunk); with `--per-record` it calls
//! [`Producer::send`] once per record, and latency is each record's send call to its
//! acknowledgement. Either way acknowledgements are observed in send order as they arrive.
//! With `--transactional-id` a [`TransactionalProducer`] sends the chunks and commits a
//! transaction every `--transaction-records` records (the commit waits for every answer,
//! as Kafka's does), the clock running to the last commit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use hdrhistogram::Histogram;
use weir_client::{
    BatchDelivery, ClientError, DeliveryFuture, Producer, ProducerRecord, RecordRef,
    TransactionalProducer,
};

use super::{BenchConfig, Measured, Progress, Report, Stop, latency_histogram, random_values};

/// Runs the scenario.
pub(super) async fn run(config: &BenchConfig, partitions: u32) -> anyhow::Result<Report> {
    let total = match config.stop {
        Stop::Count(n) => Some(n),
        Stop::After(_) => None,
    };
    let progress = Progress::start("producing", total);
    let mut latency = latency_histogram();
    let (sent, elapsed) = match config.transaction_records {
        None => {
            let producer = Producer::connect(config.producer.clone())
                .await
                .context("connecting the producer")?;
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
            producer.close().await;
            (sent, elapsed)
        }
        Some(records) => {
            let producer = TransactionalProducer::connect(config.producer.clone())
                .await
                .context("connecting the transactional producer")?;
            let sink = Sink::Transactional {
                producer: &producer,
                records,
            };
            let started = Instant::now();
            let sent = send_chunks(config, sink, config.stop, &progress, Some(&mut latency)).await;
            let elapsed = started.elapsed();
            producer.close().await;
            (sent, elapsed)
        }
    };
    progress.finish();
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
        send_chunks(config, Sink::Plain(producer), stop, progress, latency).await
    }
}

/// Where [`send_chunks`] sends: a producer, or a transactional producer that commits a
/// transaction every `records` records (`--transaction-records`).
#[derive(Clone, Copy)]
enum Sink<'a> {
    Plain(&'a Producer),
    Transactional {
        producer: &'a TransactionalProducer,
        records: u64,
    },
}

/// [`send`] with one `send_all` call per chunk. Transactional: a chunk never spans two
/// transactions, and a commit (which flushes and waits for every answer) ends each.
async fn send_chunks(
    config: &BenchConfig,
    sink: Sink<'_>,
    stop: Stop,
    progress: &Progress,
    latency: Option<&mut Histogram<u64>>,
) -> anyhow::Result<u64> {
    let value = random_values(config.record_bytes);
    let chunk = chunk_records(config);
    let started = Instant::now();
    let mut window = Window::new(latency);
    let mut sent: u64 = 0;
    // Records in the open transaction.
    let mut in_transaction: u64 = 0;
    loop {
        let mut records = match stop {
            Stop::Count(n) => chunk.min(n - sent),
            Stop::After(d) if started.elapsed() >= d => 0,
            Stop::After(_) => chunk,
        };
        if records == 0 {
            break;
        }
        let at = Instant::now();
        let batch = |n: u64| std::iter::repeat_n(RecordRef::new(&value), n as usize);
        let delivery = match sink {
            Sink::Plain(producer) => producer.send_all(&config.topic, None, batch(records)).await,
            Sink::Transactional {
                producer,
                records: per_transaction,
            } => {
                if in_transaction == 0 {
                    producer.begin_transaction()?;
                }
                records = records.min(per_transaction - in_transaction);
                producer.send_all(&config.topic, None, batch(records)).await
            }
        }
        .with_context(|| format!("producing to topic {}", config.topic))?;
        if let Some(error) = delivery.rejected() {
            return Err(error.clone()).context("a record was refused");
        }
        sent += records;
        window.sent(at, records, delivery);
        if let Sink::Transactional {
            producer,
            records: per_transaction,
        } = sink
        {
            in_transaction += records;
            if in_transaction == per_transaction {
                producer.commit_transaction().await.context("committing")?;
                in_transaction = 0;
            }
        }
        progress
            .done
            .store(window.acknowledged()?, Ordering::Relaxed);
    }
    match sink {
        Sink::Plain(producer) => producer.flush().await,
        Sink::Transactional { producer, .. } if in_transaction > 0 => {
            producer.commit_transaction().await.context("committing")?
        }
        Sink::Transactional { .. } => {}
    }
    window.wait_all().await?;
    Ok(sent)
}

/// [`send`] with one `send` call per record.
async fn send_per_record(
    config: &BenchConfig,
    producer: &Producer,
    stop: Stop,
    progress: &Progress,
    latency: Option<&mut Histogram<u64>>,
) -> anyhow::Result<u64> {
    let topic: Arc<str> = config.topic.as_str().into();
    let value = random_values(config.record_bytes);
    let started = Instant::now();
    let mut window = Window::new(latency);
    let mut sent: u64 = 0;
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
        window.sent(at, 1, delivery);
        progress
            .done
            .store(window.acknowledged()?, Ordering::Relaxed);
    }
    producer.flush().await;
    window.wait_all().await?;
    Ok(sent)
}

/// What both send paths wait on: `send`'s [`DeliveryFuture`] (one record) or
/// `send_all`'s [`BatchDelivery`] (a chunk).
trait Delivery {
    /// The outcome, if it is known yet.
    fn finished(&self) -> Option<Result<(), ClientError>>;
    /// Waits for the outcome.
    fn wait(self) -> impl Future<Output = Result<(), ClientError>>;
}

impl Delivery for BatchDelivery {
    fn finished(&self) -> Option<Result<(), ClientError>> {
        self.try_result().map(|r| r.map(drop))
    }
    async fn wait(self) -> Result<(), ClientError> {
        BatchDelivery::wait(self).await.map(drop)
    }
}

impl Delivery for DeliveryFuture {
    fn finished(&self) -> Option<Result<(), ClientError>> {
        self.try_result().map(|r| r.map(drop))
    }
    async fn wait(self) -> Result<(), ClientError> {
        DeliveryFuture::wait(self).await.map(drop)
    }
}

/// Sends waiting for their acknowledgement, oldest first, each with when it was sent and
/// its records; acknowledgements are taken in send order, each a latency sample.
struct Window<'a, D> {
    pending: VecDeque<(Instant, u64, D)>,
    acknowledged: u64,
    latency: Option<&'a mut Histogram<u64>>,
}

impl<'a, D: Delivery> Window<'a, D> {
    fn new(latency: Option<&'a mut Histogram<u64>>) -> Self {
        Window {
            pending: VecDeque::new(),
            acknowledged: 0,
            latency,
        }
    }

    fn sent(&mut self, at: Instant, records: u64, delivery: D) {
        self.pending.push_back((at, records, delivery));
    }

    /// Takes the acknowledgements that have come, from the oldest send until one that
    /// has not; returns the records acknowledged so far. Fails at the first record that
    /// was not written.
    fn acknowledged(&mut self) -> anyhow::Result<u64> {
        while let Some(result) = self.pending.front().and_then(|(_, _, d)| d.finished()) {
            let (at, records, _) = self.pending.pop_front().expect("front exists");
            result.context("a record was not written")?;
            self.sample(at);
            self.acknowledged += records;
        }
        Ok(self.acknowledged)
    }

    /// Waits for every acknowledgement still to come, in send order.
    async fn wait_all(mut self) -> anyhow::Result<()> {
        while let Some((at, _, delivery)) = self.pending.pop_front() {
            delivery.wait().await.context("a record was not written")?;
            self.sample(at);
        }
        Ok(())
    }

    fn sample(&mut self, sent_at: Instant) {
        if let Some(h) = self.latency.as_deref_mut() {
            h.saturating_record(sent_at.elapsed().as_micros() as u64);
        }
    }
}
