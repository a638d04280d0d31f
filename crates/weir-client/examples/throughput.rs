//! Rough end-to-end throughput of the producer and consumer against an in-process broker
//! (acks=leader, 100 B records produced, 1 KiB records consumed). Not a benchmark of
//! record (see `weir bench` for that); a quick check after changing the client:
//!
//! ```text
//! cargo run --release -p weir-client --example throughput
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use weir_client::{Admin, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};

const PRODUCE_RECORDS: usize = 3_000_000;
const PRODUCE_RECORD_BYTES: usize = 100;
const CONSUME_RECORDS: usize = 1_000_000;
const CONSUME_RECORD_BYTES: usize = 1024;
const PARTITIONS: u32 = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let running = weir_server::start(weir_server::ServerConfig {
        kafka_listen: None,
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        admin_listen: None,
        ..Default::default()
    })
    .await?;
    let brokers = vec![running.addr.to_string()];
    let admin = Admin::connect(&brokers).await?;
    admin
        .create_topic("small", PARTITIONS, 0, HashMap::new())
        .await?;
    admin.create_topic("large", 1, 0, HashMap::new()).await?;

    let producer = Producer::connect(ProducerConfig {
        brokers: brokers.clone(),
        ..ProducerConfig::default()
    })
    .await?;
    let topic: std::sync::Arc<str> = "small".into();
    let value = bytes::Bytes::from(vec![b'x'; PRODUCE_RECORD_BYTES]);
    let started = Instant::now();
    for _ in 0..PRODUCE_RECORDS {
        drop(
            producer
                .send(ProducerRecord::new(topic.clone(), value.clone()))
                .await?,
        );
    }
    producer.flush().await;
    let elapsed = started.elapsed();
    println!(
        "produce: {PRODUCE_RECORDS} x {PRODUCE_RECORD_BYTES} B in {elapsed:.2?}: {:.0} records/s",
        PRODUCE_RECORDS as f64 / elapsed.as_secs_f64()
    );

    let large: std::sync::Arc<str> = "large".into();
    let value = bytes::Bytes::from(vec![b'y'; CONSUME_RECORD_BYTES]);
    for _ in 0..CONSUME_RECORDS {
        drop(
            producer
                .send(ProducerRecord::new(large.clone(), value.clone()))
                .await?,
        );
    }
    producer.close().await;

    let mut consumer = Consumer::connect(ConsumerConfig {
        brokers,
        ..ConsumerConfig::default()
    })
    .await?;
    consumer.assign(&[("large", 0)]);
    let started = Instant::now();
    let mut count = 0;
    let mut bytes = 0;
    while count < CONSUME_RECORDS {
        let records = consumer.poll(10_000, Duration::from_secs(5)).await?;
        anyhow::ensure!(!records.is_empty(), "consumer stalled at {count}");
        count += records.len();
        bytes += records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>();
    }
    let elapsed = started.elapsed();
    println!(
        "consume: {count} x {CONSUME_RECORD_BYTES} B in {elapsed:.2?}: {:.0} MB/s",
        bytes as f64 / 1e6 / elapsed.as_secs_f64()
    );
    running.shutdown().await
}
