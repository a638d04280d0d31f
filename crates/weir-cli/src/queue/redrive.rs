//! `weir queue redrive`: moves dead letters back to where they came from (SQS's DLQ
//! redrive). A topic cannot forget a record, so "moved" is kept by a share group on the
//! dead-letter topic: each dead letter is taken by that group, produced again to its
//! source topic and partition (`weir-dlq-source-*` headers; its key, value and own
//! headers, without the `weir-dlq-*` ones) with `acks=all`, and ACCEPTed only once that
//! produce is acknowledged. A redrive that stops half way (Ctrl-C, a failure) goes on
//! where it stopped next time; one crash between a produce and its ACCEPT may send a
//! record back twice, never lose it. A redriven record is a new record at a new offset,
//! delivered with a count from 0.

use std::time::Duration;

use anyhow::Context;
use weir_client::share::DLQ_HEADER_PREFIX;
use weir_client::{
    AckKind, AckMode, Acks, Producer, ProducerConfig, ProducerRecord, ShareConsumer,
    ShareConsumerConfig, ShareRecord, ShareStart,
};

use crate::brokers::BrokerArgs;

/// How long a redrive waits for more dead letters before it ends.
const IDLE_END: Duration = Duration::from_secs(2);
/// Dead letters taken per fetch.
const REDRIVE_BATCH: u32 = 500;

/// What one dead letter is produced back as; `None` if its headers do not name a source.
fn back_to_source(r: &ShareRecord) -> Option<ProducerRecord> {
    let header = |key: &str| {
        r.headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value.as_ref())
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let topic = header("weir-dlq-source-topic")?;
    let partition: u32 = header("weir-dlq-source-partition")?.parse().ok()?;
    let mut record = ProducerRecord::new(topic.to_owned(), r.value.clone().unwrap_or_default())
        .partition(partition)
        .timestamp(r.timestamp);
    if let Some(key) = &r.key {
        record = record.key(key.clone());
    }
    for h in &r.headers {
        if !h.key.starts_with(DLQ_HEADER_PREFIX) {
            record = record.header(h.key.clone(), h.value.clone().unwrap_or_default());
        }
    }
    Some(record)
}

/// Redrives the dead letters of `dlq` that share group `group` has not redriven yet, up
/// to `count`; prints how many went back (and how many name no source, left in place).
pub(super) async fn redrive(
    brokers: &BrokerArgs,
    dlq: &str,
    group: &str,
    count: Option<u64>,
) -> anyhow::Result<()> {
    let mut consumer = ShareConsumer::connect(ShareConsumerConfig {
        brokers: brokers.list(),
        timeouts: brokers.timeouts(),
        tls: brokers.tls()?,
        start: ShareStart::Earliest,
        ack_mode: AckMode::Explicit,
        max_records: REDRIVE_BATCH,
        ..ShareConsumerConfig::new(group, [dlq])
    })
    .await
    .with_context(|| format!("joining share group {group} on {dlq}"))?;
    let producer = Producer::connect(ProducerConfig {
        brokers: brokers.list(),
        acks: Acks::All,
        connect_timeout: brokers.timeouts().connect,
        request_timeout: brokers.timeouts().request,
        tls: brokers.tls()?,
        ..ProducerConfig::default()
    })
    .await
    .context("connecting the producer")?;
    let (mut moved, mut skipped) = (0u64, 0u64);
    while count.is_none_or(|n| moved < n) {
        let mut got = consumer.poll(IDLE_END).await?;
        if got.is_empty() {
            break;
        }
        if let Some(n) = count {
            // Those beyond --count go back to the group at once.
            for r in got.split_off(got.len().min((n - moved) as usize)) {
                consumer.acknowledge(&r, AckKind::Release)?;
            }
        }
        let mut sent = Vec::with_capacity(got.len());
        for r in &got {
            match back_to_source(r) {
                Some(record) => sent.push((r, producer.send(record).await?)),
                None => {
                    // Not a dead letter Weir wrote: left for a person to look at.
                    skipped += 1;
                    consumer.acknowledge(r, AckKind::Release)?;
                }
            }
        }
        for (r, delivery) in sent {
            delivery.wait().await.with_context(|| {
                format!(
                    "producing the dead letter at {dlq}/{}:{} back",
                    r.partition, r.offset
                )
            })?;
            consumer.acknowledge(r, AckKind::Accept)?;
            moved += 1;
        }
        consumer.commit().await?;
        if skipped > 0 && moved == 0 {
            // Only records without a source are left: they would come back for ever.
            break;
        }
    }
    producer.close().await;
    consumer.close().await?;
    println!("redrove {moved} dead letter(s) from {dlq} to their source topics");
    if skipped > 0 {
        eprintln!(
            "weir: {skipped} record(s) of {dlq} name no source (no weir-dlq-source-topic and \
             -partition headers) and were left in place"
        );
    }
    Ok(())
}
