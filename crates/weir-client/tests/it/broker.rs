//! The client against a real broker on 127.0.0.1:0: produce, consume, seek, admin and
//! the errors a user sees.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Result;
use weir_client::partitioner::partition_for_key;
use weir_client::{
    Admin, ClientError, Compression, Consumer, ConsumerConfig, ConsumerRecord, DeliveryFuture,
    OffsetQuery, OffsetReset, Producer, ProducerConfig, ProducerRecord, SeekTo,
};

/// Longest any test waits for records it expects.
const WAIT: Duration = Duration::from_secs(30);

struct Broker {
    running: Option<weir_server::RunningServer>,
    brokers: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Broker {
    async fn start() -> Result<Broker> {
        Broker::start_in(tempfile::tempdir()?).await
    }

    /// Stops the broker, lets `change` edit its data directory, and starts it there again.
    async fn restart_after(mut self, change: impl FnOnce(&std::path::Path)) -> Result<Broker> {
        self.running.take().expect("running").shutdown().await?;
        change(self._dir.path());
        Broker::start_in(self._dir).await
    }

    async fn start_in(dir: tempfile::TempDir) -> Result<Broker> {
        let running = weir_server::start(weir_server::ServerConfig {
            kafka_listen: None,
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse()?,
            admin_listen: None,
            // These tests see unknown topics stay unknown (the error kinds); creation on
            // first use is tested in weir-server's and weir-cli's tests.
            auto_create_topics: false,
            ..Default::default()
        })
        .await?;
        // No scheme: the client adds it.
        let brokers = vec![running.addr.to_string()];
        Ok(Broker {
            running: Some(running),
            brokers,
            _dir: dir,
        })
    }

    async fn admin(&self) -> Result<Admin> {
        Ok(Admin::connect(&self.brokers).await?)
    }

    async fn producer(&self, config: ProducerConfig) -> Result<Producer> {
        Ok(Producer::connect(ProducerConfig {
            brokers: self.brokers.clone(),
            ..config
        })
        .await?)
    }

    async fn consumer(&self, reset: OffsetReset) -> Result<Consumer> {
        Ok(Consumer::connect(ConsumerConfig {
            brokers: self.brokers.clone(),
            auto_offset_reset: reset,
            ..ConsumerConfig::default()
        })
        .await?)
    }

    async fn stop(mut self) -> Result<()> {
        self.running.take().expect("running").shutdown().await
    }
}

/// Polls until `count` records arrived (or fails after [`WAIT`]).
async fn consume(consumer: &mut Consumer, count: usize) -> Result<Vec<ConsumerRecord>> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {count} records arrived",
            out.len()
        );
        out.extend(
            consumer
                .poll(count - out.len(), Duration::from_millis(200))
                .await?,
        );
    }
    Ok(out)
}

fn text(record: &ConsumerRecord) -> String {
    String::from_utf8(record.value.as_deref().unwrap_or_default().to_vec()).unwrap()
}

#[tokio::test]
async fn many_records_over_many_partitions_come_back_complete_in_order_with_their_offsets()
-> Result<()> {
    let broker = Broker::start().await?;
    let admin = broker.admin().await?;
    admin.create_topic("many", 8, 0, HashMap::new()).await?;
    let producer = broker
        .producer(ProducerConfig {
            batch_bytes: 16 * 1024, // many batches, several in flight per partition
            compression: Compression::Lz4,
            ..ProducerConfig::default()
        })
        .await?;
    const RECORDS: usize = 20_000;
    let mut deliveries: Vec<(u32, usize, DeliveryFuture)> = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let partition = (i % 8) as u32;
        let record = ProducerRecord::new("many", format!("{partition}:{i}:{}", "x".repeat(80)))
            .partition(partition);
        deliveries.push((partition, i, producer.send(record).await?));
    }
    producer.flush().await;
    // Offsets per partition are 0, 1, 2... in send order.
    let mut next_offset: BTreeMap<u32, i64> = BTreeMap::new();
    let mut offset_of: HashMap<usize, i64> = HashMap::new();
    for (partition, i, delivery) in deliveries {
        let metadata = delivery
            .try_result()
            .expect("flush waits for every record")?;
        assert_eq!(metadata.partition, partition);
        assert_eq!(&*metadata.topic, "many");
        let expected = next_offset.entry(partition).or_insert(0);
        assert_eq!(metadata.offset, *expected, "record {i}");
        *expected += 1;
        offset_of.insert(i, metadata.offset);
    }

    let mut consumer = broker.consumer(OffsetReset::Earliest).await?;
    let assignment: Vec<(&str, u32)> = (0..8).map(|p| ("many", p)).collect();
    consumer.assign(&assignment);
    let records = consume(&mut consumer, RECORDS).await?;
    assert_eq!(records.len(), RECORDS);
    let mut last: HashMap<u32, usize> = HashMap::new();
    for record in &records {
        let value = text(record);
        let mut parts = value.split(':');
        let partition: u32 = parts.next().unwrap().parse()?;
        let i: usize = parts.next().unwrap().parse()?;
        assert_eq!(partition, record.partition);
        assert_eq!(
            offset_of[&i], record.offset,
            "the offset the delivery reported"
        );
        if let Some(previous) = last.insert(partition, i) {
            assert!(previous < i, "partition {partition}: {i} after {previous}");
        }
    }
    for p in 0..8 {
        assert_eq!(consumer.position("many", p), Some((RECORDS / 8) as i64));
    }
    producer.close().await;
    broker.stop().await
}

#[tokio::test]
async fn send_all_records_come_back_in_order_none_lost_none_doubled() -> Result<()> {
    let broker = Broker::start().await?;
    broker
        .admin()
        .await?
        .create_topic("lots", 2, 0, HashMap::new())
        .await?;
    let producer = broker
        .producer(ProducerConfig {
            batch_bytes: 16 * 1024, // calls span several batches, several in flight
            // Less than the records of one call: the calls wait for acknowledgements.
            buffer_memory: 256 * 1024,
            ..ProducerConfig::default()
        })
        .await?;
    const CALLS: usize = 20;
    const PER_CALL: usize = 2_500;
    let mut deliveries = Vec::new();
    let mut next = 0usize;
    for call in 0..CALLS {
        let values: Vec<String> = (next..next + PER_CALL)
            .map(|i| format!("{i}:{}", "y".repeat(60)))
            .collect();
        next += PER_CALL;
        // Alternate an explicit partition and unkeyed records (the sticky partition).
        let partition = (call % 2 == 0).then_some(1);
        let delivery = producer.send_all("lots", partition, &values).await?;
        assert_eq!(delivery.record_count(), PER_CALL as u64);
        assert!(delivery.rejected().is_none());
        deliveries.push((call * PER_CALL, partition, delivery));
    }
    // An empty call is a handle that resolves at once.
    let empty = producer
        .send_all("lots", Some(0), Vec::<&[u8]>::new())
        .await?;
    assert!(empty.await?.ranges.is_empty());

    // Where each record was written, by the handles.
    let mut written: HashMap<(u32, i64), usize> = HashMap::new();
    for (first, partition, delivery) in deliveries {
        let delivered = delivery.await?;
        assert_eq!(&*delivered.topic, "lots");
        assert_eq!(delivered.record_count(), PER_CALL as u64);
        let mut i = first;
        for range in &delivered.ranges {
            if let Some(p) = partition {
                assert_eq!(range.partition, p);
            }
            for offset in range.offsets() {
                assert!(written.insert((range.partition, offset), i).is_none());
                i += 1;
            }
        }
    }
    assert_eq!(written.len(), CALLS * PER_CALL);

    let mut consumer = broker.consumer(OffsetReset::Earliest).await?;
    consumer.assign(&[("lots", 0), ("lots", 1)]);
    let records = consume(&mut consumer, CALLS * PER_CALL).await?;
    let mut seen = vec![false; CALLS * PER_CALL];
    let mut last: HashMap<u32, usize> = HashMap::new();
    for record in &records {
        let i: usize = text(record).split(':').next().unwrap().parse()?;
        assert!(!seen[i], "record {i} arrived twice");
        seen[i] = true;
        assert_eq!(written[&(record.partition, record.offset)], i);
        if let Some(previous) = last.insert(record.partition, i) {
            assert!(
                previous < i,
                "partition {}: {i} after {previous}",
                record.partition
            );
        }
    }
    assert!(seen.iter().all(|s| *s), "every record arrived");
    // Nothing more than what was sent.
    assert!(
        consumer
            .poll(1, Duration::from_millis(300))
            .await?
            .is_empty()
    );
    producer.close().await;
    broker.stop().await
}

#[tokio::test]
async fn records_with_one_key_land_on_kafkas_partition_in_send_order() -> Result<()> {
    let broker = Broker::start().await?;
    broker
        .admin()
        .await?
        .create_topic("keys", 4, 0, HashMap::new())
        .await?;
    let producer = broker
        .producer(ProducerConfig {
            compression: Compression::Zstd,
            ..ProducerConfig::default()
        })
        .await?;
    let mut deliveries = Vec::new();
    for i in 0..2_000 {
        let key = format!("key-{}", i % 10);
        deliveries.push((
            key.clone(),
            producer
                .send(ProducerRecord::new("keys", format!("{i}")).key(key))
                .await?,
        ));
    }
    for (key, delivery) in deliveries {
        let metadata = delivery.await?;
        assert_eq!(metadata.partition, partition_for_key(key.as_bytes(), 4));
    }
    let mut consumer = broker.consumer(OffsetReset::Earliest).await?;
    consumer.assign(&[("keys", 0), ("keys", 1), ("keys", 2), ("keys", 3)]);
    let records = consume(&mut consumer, 2_000).await?;
    let mut last: HashMap<Vec<u8>, i64> = HashMap::new();
    for record in &records {
        let key = record.key.as_deref().unwrap().to_vec();
        let i: i64 = text(record).parse()?;
        assert_eq!(
            record.partition,
            partition_for_key(&key, 4),
            "same key, same partition"
        );
        if let Some(previous) = last.insert(key, i) {
            assert!(previous < i, "per-key order");
        }
    }
    producer.close().await;
    broker.stop().await
}

#[tokio::test]
async fn seek_to_beginning_end_offset_and_timestamp() -> Result<()> {
    let broker = Broker::start().await?;
    broker
        .admin()
        .await?
        .create_topic("seek", 1, 0, HashMap::new())
        .await?;
    let producer = broker.producer(ProducerConfig::default()).await?;
    for i in 0..10_i64 {
        producer
            .send(
                ProducerRecord::new("seek", format!("v{i}"))
                    .timestamp(1_000_000 + i * 10)
                    .header("n", i.to_string()),
            )
            .await?;
    }
    producer.flush().await;

    let mut consumer = broker.consumer(OffsetReset::None).await?;
    consumer.assign(&[("seek", 0)]);
    consumer.seek("seek", 0, SeekTo::Beginning).await?;
    let all = consume(&mut consumer, 10).await?;
    assert_eq!(
        all.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(all[3].timestamp, 1_000_030);
    assert_eq!(all[3].headers[0].key, "n");
    assert_eq!(all[3].headers[0].value.as_deref(), Some(&b"3"[..]));

    consumer.seek("seek", 0, SeekTo::Offset(5)).await?;
    assert_eq!(consumer.position("seek", 0), Some(5));
    assert_eq!(consume(&mut consumer, 1).await?[0].offset, 5);

    consumer
        .seek("seek", 0, SeekTo::Timestamp(1_000_065))
        .await?;
    let from_time = consume(&mut consumer, 1).await?;
    assert_eq!(
        (from_time[0].offset, text(&from_time[0]).as_str()),
        (7, "v7")
    );

    consumer.seek("seek", 0, SeekTo::End).await?;
    assert_eq!(consumer.position("seek", 0), Some(10));
    assert!(
        consumer
            .poll(10, Duration::from_millis(200))
            .await?
            .is_empty()
    );
    let delivery = producer.send(ProducerRecord::new("seek", "later")).await?;
    assert_eq!(delivery.await?.offset, 10);
    let later = consume(&mut consumer, 1).await?;
    assert_eq!((later[0].offset, text(&later[0]).as_str()), (10, "later"));
    producer.close().await;
    broker.stop().await
}

#[tokio::test]
async fn poll_returns_nothing_promptly_when_there_is_nothing() -> Result<()> {
    let broker = Broker::start().await?;
    broker
        .admin()
        .await?
        .create_topic("empty", 2, 0, HashMap::new())
        .await?;
    let mut consumer = broker.consumer(OffsetReset::Earliest).await?;
    consumer.assign(&[("empty", 0), ("empty", 1)]);
    let started = Instant::now();
    let records = consumer.poll(100, Duration::from_millis(300)).await?;
    let waited = started.elapsed();
    assert!(records.is_empty());
    assert!(
        waited >= Duration::from_millis(250),
        "returned early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "returned late: {waited:?}");
    broker.stop().await
}

#[tokio::test]
async fn errors_surface_with_their_kind() -> Result<()> {
    let broker = Broker::start().await?;
    let admin = broker.admin().await?;
    admin.create_topic("two", 2, 0, HashMap::new()).await?;
    let producer = broker.producer(ProducerConfig::default()).await?;

    let unknown_topic = producer.send(ProducerRecord::new("nope", "v")).await;
    assert!(
        matches!(unknown_topic, Err(ClientError::NotFound(_))),
        "{unknown_topic:?}"
    );
    let bad_partition = producer
        .send(ProducerRecord::new("two", "v").partition(5))
        .await;
    assert!(
        matches!(bad_partition, Err(ClientError::NotFound(_))),
        "{bad_partition:?}"
    );

    assert!(matches!(
        admin.create_topic("two", 1, 0, HashMap::new()).await,
        Err(ClientError::AlreadyExists(_))
    ));
    assert!(matches!(
        admin.create_topic("bad name!", 1, 0, HashMap::new()).await,
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        admin.describe_topic("nope").await,
        Err(ClientError::NotFound(_))
    ));

    let mut consumer = broker.consumer(OffsetReset::None).await?;
    consumer.assign(&[("nope", 0), ("two", 0)]);
    assert!(matches!(
        consumer.seek("nope", 0, SeekTo::Beginning).await,
        Err(ClientError::NotFound(_))
    ));
    assert!(matches!(
        consumer.seek("two", 1, SeekTo::Beginning).await,
        Err(ClientError::InvalidArgument(_)) // not assigned
    ));
    consumer.assign(&[("two", 0)]);
    consumer.seek("two", 0, SeekTo::Offset(1_000)).await?;
    let out_of_range = consumer.poll(10, Duration::from_secs(5)).await;
    assert!(
        matches!(out_of_range, Err(ClientError::OutOfRange(_))),
        "{out_of_range:?}"
    );
    producer.close().await;
    broker.stop().await
}

#[tokio::test]
async fn every_admin_rpc_round_trips() -> Result<()> {
    let broker = Broker::start().await?;
    let admin = broker.admin().await?;
    let created = admin
        .create_topic(
            "admin",
            2,
            0,
            HashMap::from([("retention.ms".to_owned(), "60000".to_owned())]),
        )
        .await?;
    assert_eq!(created.partitions.len(), 2);
    let listed = admin.list_topics(false).await?;
    assert!(
        listed
            .iter()
            .any(|t| t.name == "admin" && t.partitions == 2)
    );
    let grown = admin.create_partitions("admin", 3).await?;
    assert_eq!(grown.partitions.len(), 3);
    assert_eq!(admin.describe_topic("admin").await?.partitions.len(), 3);

    let config = admin.describe_topic_config("admin").await?;
    let retention = config.iter().find(|e| e.name == "retention.ms").unwrap();
    assert_eq!(
        (retention.value.as_str(), retention.is_default),
        ("60000", false)
    );
    let altered = admin
        .alter_topic_config("admin", HashMap::new(), vec!["retention.ms".to_owned()])
        .await?;
    assert!(
        altered
            .iter()
            .find(|e| e.name == "retention.ms")
            .unwrap()
            .is_default
    );

    let producer = broker.producer(ProducerConfig::default()).await?;
    for i in 0..5 {
        producer
            .send(ProducerRecord::new("admin", format!("{i}")).partition(0))
            .await?;
    }
    producer.flush().await;
    let offsets = admin
        .list_offsets(
            "admin",
            &[(0, OffsetQuery::Earliest), (0, OffsetQuery::Latest)],
        )
        .await?;
    assert_eq!((offsets[0].offset, offsets[1].offset), (0, 5));
    assert_eq!(admin.delete_records("admin", &[(0, 3)]).await?, [(0, 3)]);
    let offsets = admin
        .list_offsets("admin", &[(0, OffsetQuery::Earliest)])
        .await?;
    assert_eq!(offsets[0].offset, 3);

    let cluster = admin.describe_cluster().await?;
    assert!(!cluster.brokers.is_empty());

    admin.delete_topic("admin").await?;
    assert!(matches!(
        admin.delete_topic("admin").await,
        Err(ClientError::NotFound(_))
    ));
    producer.close().await;
    broker.stop().await
}

#[tokio::test]
async fn a_bootstrap_list_whose_first_address_refuses_uses_the_next() -> Result<()> {
    let broker = Broker::start().await?;
    // Port 1 on loopback refuses at once; the real broker is second in one entry, as
    // `--brokers 127.0.0.1:1,HOST:PORT` gives it.
    let brokers = vec![format!("127.0.0.1:1,{}", broker.brokers[0])];

    let admin = Admin::connect(&brokers).await?;
    admin.create_topic("boot", 2, 0, HashMap::new()).await?;
    assert_eq!(admin.describe_cluster().await?.brokers.len(), 1);

    let producer = Producer::connect(ProducerConfig {
        brokers: brokers.clone(),
        ..ProducerConfig::default()
    })
    .await?;
    let mut deliveries = Vec::new();
    for i in 0..20 {
        let record = ProducerRecord::new("boot", format!("r{i}")).partition(i % 2);
        deliveries.push(producer.send(record).await?);
    }
    producer.flush().await;
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let metadata = delivery.await?;
        assert_eq!(metadata.partition, (i % 2) as u32);
        assert_eq!(metadata.offset, (i / 2) as i64);
    }

    let mut consumer = Consumer::connect(ConsumerConfig {
        brokers: brokers.clone(),
        ..ConsumerConfig::default()
    })
    .await?;
    consumer.assign(&[("boot", 0), ("boot", 1)]);
    consumer.seek("boot", 1, SeekTo::End).await?;
    assert_eq!(consumer.position("boot", 1), Some(10));
    consumer.seek("boot", 1, SeekTo::Beginning).await?;
    let mut values: Vec<String> = consume(&mut consumer, 20).await?.iter().map(text).collect();
    values.sort_by_key(|v| v[1..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    assert_eq!(values, expected);
    let offsets = admin
        .list_offsets(
            "boot",
            &[(0, OffsetQuery::Latest), (1, OffsetQuery::Latest)],
        )
        .await?;
    assert_eq!(
        offsets.iter().map(|o| o.offset).collect::<Vec<_>>(),
        [10, 10]
    );

    // None answering names them all.
    let error = Admin::connect(&["127.0.0.1:1,127.0.0.1:2".to_owned()])
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Connect { ref failures } if failures.len() == 2));
    producer.close().await;
    broker.stop().await
}

/// More partitions than one HTTP/2 connection may carry streams for: the broker allows
/// `MAX_CONCURRENT_STREAMS_PER_CONNECTION` (256) per connection, and a `Consume` stream
/// past that would wait for ever. The consumer spreads its streams over several
/// connections to the broker, so every partition's records arrive.
#[tokio::test]
async fn a_consumer_of_more_partitions_than_one_connection_carries_gets_every_record() -> Result<()>
{
    const PARTITIONS: u32 = weir_server::MAX_CONCURRENT_STREAMS_PER_CONNECTION + 44;
    const PER_PARTITION: usize = 3;
    assert!(
        weir_client::connection::MAX_STREAMS_PER_CONNECTION
            <= weir_server::MAX_CONCURRENT_STREAMS_PER_CONNECTION as usize
    );
    let broker = Broker::start().await?;
    let admin = broker.admin().await?;
    admin
        .create_topic("wide", PARTITIONS, 0, HashMap::new())
        .await?;
    let mut consumer = broker.consumer(OffsetReset::Earliest).await?;
    let assignment: Vec<(&str, u32)> = (0..PARTITIONS).map(|p| ("wide", p)).collect();
    consumer.assign(&assignment);
    // A first poll opens every stream; the records come after, on the open streams.
    consumer.poll(1, Duration::from_millis(200)).await?;

    let producer = broker.producer(ProducerConfig::default()).await?;
    for i in 0..PER_PARTITION {
        for p in 0..PARTITIONS {
            producer
                .send(ProducerRecord::new("wide", format!("{p}:{i}")).partition(p))
                .await?;
        }
    }
    producer.flush().await;

    let records = consume(&mut consumer, PARTITIONS as usize * PER_PARTITION).await?;
    let mut by_partition: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for record in &records {
        by_partition
            .entry(record.partition)
            .or_default()
            .push(text(record));
    }
    assert_eq!(by_partition.len(), PARTITIONS as usize);
    for (p, values) in by_partition {
        let expected: Vec<String> = (0..PER_PARTITION).map(|i| format!("{p}:{i}")).collect();
        assert_eq!(
            values, expected,
            "partition {p}: each record once, in order"
        );
    }
    producer.close().await;
    broker.stop().await
}

/// The broker lists groups a page at a time (at most `MAX_PAGE_SIZE`); `list_groups`
/// follows the pages and returns every group once.
#[tokio::test]
async fn list_groups_returns_every_group_across_pages() -> Result<()> {
    use weir_proto::v1 as pb;
    let broker = Broker::start().await?;
    let admin = broker.admin().await?;
    admin.create_topic("t", 1, 0, HashMap::new()).await?;
    let channel = weir_client::connection::connect(&broker.brokers, &Default::default()).await?;
    let count = weir_server::MAX_PAGE_SIZE as usize + 3;
    let ids: Vec<String> = (0..count).map(|i| format!("group-{i:05}")).collect();
    for chunk in ids.chunks(100) {
        let mut commits = tokio::task::JoinSet::new();
        for id in chunk {
            let mut groups = pb::groups_client::GroupsClient::new(channel.clone());
            // A commit from outside a group makes the group.
            let request = pb::CommitOffsetsRequest {
                group_id: id.clone(),
                topics: vec![pb::TopicOffsetCommit {
                    topic: "t".into(),
                    partitions: vec![pb::PartitionOffsetCommit {
                        partition: 0,
                        offset: 0,
                        metadata: String::new(),
                    }],
                }],
                ..Default::default()
            };
            commits.spawn(async move { groups.commit_offsets(request).await });
        }
        while let Some(done) = commits.join_next().await {
            done??;
        }
    }
    let listed = admin.list_groups().await?;
    let listed_ids: Vec<&str> = listed.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(listed_ids, ids);
    assert!(
        listed
            .iter()
            .all(|g| g.state == weir_client::GroupState::Empty && g.members == 0)
    );
    broker.stop().await
}

/// Finds the first compressed batch stored in a partition directory under `data_dir` (the
/// broker stopped), inverts bytes in the middle of its records section and recomputes
/// its CRC: a batch every integrity check passes but that cannot be decoded, as a broker
/// that did not decompress compressed batches on produce could store. Returns its first
/// offset and the offset after it.
fn damage_first_compressed_batch(data_dir: &std::path::Path) -> (i64, i64) {
    let topics = data_dir.join("topics");
    for topic in std::fs::read_dir(&topics).unwrap() {
        let partition = topic.unwrap().path().join("0");
        for file in std::fs::read_dir(&partition).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let mut bytes = std::fs::read(&path).unwrap();
            let mut at = 0;
            while let Ok(len) = weir_batch::framed_len(&bytes[at..]) {
                let batch = &mut bytes[at..at + len];
                let header = weir_batch::BatchHeader::parse(batch);
                if header.compression().unwrap() != Compression::None {
                    let middle = weir_batch::HEADER_BYTES + (len - weir_batch::HEADER_BYTES) / 2;
                    for byte in &mut batch[middle..middle + 16] {
                        *byte = !*byte;
                    }
                    weir_batch::reseal(batch, header.record_count);
                    std::fs::write(&path, &bytes).unwrap();
                    return (header.base_offset, header.next_offset());
                }
                at += len;
            }
        }
    }
    panic!("no compressed batch under {}", topics.display());
}

#[tokio::test]
async fn a_stored_batch_that_cannot_be_decoded_stops_the_consumer_after_the_records_before_it_until_skipped()
-> Result<()> {
    let broker = Broker::start().await?;
    let admin = broker.admin().await?;
    admin.create_topic("t", 1, 0, HashMap::new()).await?;
    let plain = broker.producer(ProducerConfig::default()).await?;
    let zstd = broker
        .producer(ProducerConfig {
            compression: Compression::Zstd,
            ..ProducerConfig::default()
        })
        .await?;
    for (producer, values) in [
        (&plain, vec!["a0".to_owned(), "a1".to_owned()]),
        (&zstd, (0..50).map(|i| format!("b{i}")).collect()),
        (&plain, vec!["c".to_owned()]),
    ] {
        for value in values {
            producer
                .send(ProducerRecord::new("t", value).partition(0))
                .await?;
        }
        producer.flush().await;
    }
    drop((plain, zstd, admin));
    let mut bad = (0, 0);
    let broker = broker
        .restart_after(|dir| bad = damage_first_compressed_batch(dir))
        .await?;
    let (offset, next_offset) = bad;
    assert!(offset >= 2 && next_offset <= 52, "{bad:?}");

    let mut consumer = broker.consumer(OffsetReset::Earliest).await?;
    consumer.assign(&[("t", 0)]);
    // Records up to the batch, then its error, which says where to go on.
    let deadline = Instant::now() + WAIT;
    let mut before = Vec::new();
    let error = loop {
        assert!(Instant::now() < deadline, "no error after {before:?}");
        match consumer.poll(100, Duration::from_millis(200)).await {
            Ok(records) => before.extend(records.iter().map(|r| r.offset)),
            Err(error) => break error,
        }
    };
    assert_eq!(before, (0..offset).collect::<Vec<_>>());
    match &error {
        ClientError::CorruptBatch {
            topic,
            partition: 0,
            offset: at,
            next_offset: past,
            ..
        } => {
            assert_eq!((topic.as_str(), *at, *past), ("t", offset, next_offset));
        }
        other => panic!("expected CorruptBatch, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains(&format!("seek to offset {next_offset}")),
        "{error}"
    );
    assert!(!error.is_retriable());
    assert_eq!(consumer.position("t", 0), Some(offset));
    // Polling again meets it again; seeking past it reads on.
    assert!(matches!(
        consumer.poll(100, WAIT).await,
        Err(ClientError::CorruptBatch { .. })
    ));
    consumer.seek("t", 0, SeekTo::Offset(next_offset)).await?;
    let rest = consume(&mut consumer, (53 - next_offset) as usize).await?;
    assert_eq!(rest.last().map(text).as_deref(), Some("c"));
    broker.stop().await
}

/// A TCP proxy in front of a broker that can be frozen: from then on it forwards nothing
/// in either direction while keeping the connections open, as a broker process that was
/// stopped (SIGSTOP) or hangs looks to its clients.
struct FreezingProxy {
    address: String,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    async fn start(upstream: &str) -> Result<FreezingProxy> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let frozen = std::sync::Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let flag = frozen.clone();
        let task = tokio::spawn(async move {
            // Dropped with this task: aborting the proxy closes every connection.
            let mut pumps = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                    ),
                    (Box::new(server_read), Box::new(client_write)),
                ] {
                    let flag = flag.clone();
                    pumps.spawn(async move {
                        let mut buffer = vec![0; 64 * 1024];
                        loop {
                            let read = match from.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if flag.load(Ordering::SeqCst) {
                                // Frozen: hold the connection, forward nothing, ever.
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buffer[..read]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Ok(FreezingProxy {
            address,
            frozen,
            task,
        })
    }

    fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A broker that stops answering after the client connected: a request fails after the
/// request timeout with an error naming the broker, instead of waiting until HTTP/2
/// keep-alive gives up (50 s), as every command did.
#[tokio::test]
async fn a_broker_that_stops_answering_fails_requests_after_the_request_timeout() -> Result<()> {
    tokio::time::timeout(WAIT * 2, stops_answering())
        .await
        .expect("the test finishes in time")
}

async fn stops_answering() -> Result<()> {
    let broker = Broker::start().await?;
    broker
        .admin()
        .await?
        .create_topic("t", 1, 0, HashMap::new())
        .await?;
    let proxy = FreezingProxy::start(&broker.brokers[0]).await?;
    let timeouts = weir_client::connection::Timeouts {
        connect: Duration::from_secs(10),
        request: Duration::from_millis(500),
    };
    let admin =
        Admin::connect_with_timeouts(std::slice::from_ref(&proxy.address), timeouts).await?;
    assert_eq!(admin.list_topics(false).await?.len(), 1);

    proxy.freeze();
    let started = Instant::now();
    let error = tokio::time::timeout(WAIT, admin.list_topics(false))
        .await
        .expect("the request timeout bounds the call")
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(error, ClientError::DeadlineExceeded(_)),
        "{error:?}"
    );
    assert!(error.is_retriable());
    assert_eq!(
        error.to_string(),
        format!(
            "deadline exceeded: broker {} did not answer within 500 ms",
            proxy.address
        )
    );
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // The broker's shutdown waits for its connections, the proxy's too.
    drop(admin);
    drop(proxy);
    broker.stop().await
}
