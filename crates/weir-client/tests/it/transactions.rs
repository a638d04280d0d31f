//! The transactional producer against a real broker on 127.0.0.1:0, checked as a user
//! checks it: a read-committed reader sees every committed record once, in order per
//! key, and none of an aborted transaction; a consume-transform-produce loop's offsets
//! follow its commits; a second instance fences the first; misuse is refused.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use weir_client::{
    Admin, ClientError, Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer,
    GroupConsumerConfig, IsolationLevel, OffsetReset, Producer, ProducerConfig, ProducerRecord,
    TransactionalProducer,
};

/// Longest any test waits for records it expects.
const WAIT: Duration = Duration::from_secs(30);

async fn start(dir: &tempfile::TempDir) -> Result<(weir_server::RunningServer, Vec<String>)> {
    let running = weir_server::start(weir_server::ServerConfig {
        kafka_listen: None,
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        admin_listen: None,
        ..Default::default()
    })
    .await?;
    let brokers = vec![running.addr.to_string()];
    Ok((running, brokers))
}

fn config(brokers: &[String], id: &str) -> ProducerConfig {
    ProducerConfig {
        brokers: brokers.to_vec(),
        transactional_id: Some(id.to_owned()),
        ..ProducerConfig::default()
    }
}

fn text(record: &ConsumerRecord) -> String {
    String::from_utf8(record.value.as_deref().unwrap_or_default().to_vec()).unwrap()
}

/// Every record of `topic`'s `partitions` a reader at `isolation` sees, reading until
/// `count` arrived, then briefly on to see that no more come.
async fn read(
    brokers: &[String],
    topic: &str,
    partitions: u32,
    isolation: IsolationLevel,
    count: usize,
) -> Result<Vec<ConsumerRecord>> {
    let mut consumer = Consumer::connect(ConsumerConfig {
        brokers: brokers.to_vec(),
        auto_offset_reset: OffsetReset::Earliest,
        isolation,
        ..ConsumerConfig::default()
    })
    .await?;
    let assignment: Vec<(&str, u32)> = (0..partitions).map(|p| (topic, p)).collect();
    consumer.assign(&assignment);
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < count {
        ensure!(
            Instant::now() < deadline,
            "only {} of {count} records arrived: {:?}",
            out.len(),
            out.iter().map(text).collect::<Vec<_>>()
        );
        out.extend(consumer.poll(count, Duration::from_millis(200)).await?);
    }
    out.extend(consumer.poll(count, Duration::from_millis(300)).await?);
    Ok(out)
}

/// Sends `values` keyed `key-{i % 7}` in one transaction, committed, or written and
/// then aborted.
async fn transaction(
    producer: &TransactionalProducer,
    values: &[String],
    commit: bool,
) -> Result<()> {
    producer.begin_transaction()?;
    let mut deliveries = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let record = ProducerRecord::new("t", v.clone()).key(format!("key-{}", i % 7));
        deliveries.push(producer.send(record).await?);
    }
    if commit {
        producer.commit_transaction().await?;
        for d in deliveries {
            d.await?;
        }
    } else {
        // Written first, so the abort has records in the log to hide.
        producer.flush().await;
        for d in deliveries {
            d.await?;
        }
        producer.abort_transaction().await?;
    }
    Ok(())
}

#[tokio::test]
async fn read_committed_sees_each_committed_record_once_and_nothing_aborted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, brokers) = start(&dir).await?;
    Admin::connect(&brokers)
        .await?
        .create_topic("t", 3, 0, HashMap::new())
        .await?;
    let producer = TransactionalProducer::connect(config(&brokers, "writer-1")).await?;

    // Sending outside a transaction is refused, nothing sent.
    let outside = producer.send(ProducerRecord::new("t", "stray")).await;
    assert!(
        matches!(outside, Err(ClientError::FailedPrecondition(_))),
        "{outside:?}"
    );
    let values = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}-{i}")).collect()
    };
    transaction(&producer, &values("c", 300), true).await?;
    transaction(&producer, &values("a", 100), false).await?;
    transaction(&producer, &values("d", 200), true).await?;

    let committed = read(&brokers, "t", 3, IsolationLevel::ReadCommitted, 500).await?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in &committed {
        *seen.entry(text(r)).or_default() += 1;
    }
    let want: Vec<String> = values("c", 300)
        .into_iter()
        .chain(values("d", 200))
        .collect();
    assert_eq!(seen.len(), 500, "every committed record");
    assert!(want.iter().all(|v| seen.get(v) == Some(&1)), "each once");
    // Per key, in send order (a key's records share a partition).
    let mut last: HashMap<Vec<u8>, (char, usize)> = HashMap::new();
    for r in &committed {
        let v = text(r);
        let (prefix, i) = v.split_once('-').unwrap();
        let at = (prefix.chars().next().unwrap(), i.parse::<usize>()?);
        if let Some(before) = last.insert(r.key.clone().unwrap().to_vec(), at) {
            assert!(before < at, "{at:?} after {before:?}");
        }
    }
    let uncommitted = read(&brokers, "t", 3, IsolationLevel::ReadUncommitted, 600).await?;
    assert_eq!(uncommitted.len(), 600, "the aborted records too");

    // A second instance fences the first: its open transaction is aborted, its commit
    // fails for good, and so does every later send.
    producer.begin_transaction()?;
    let late = producer.send(ProducerRecord::new("t", "zombie")).await?;
    producer.flush().await;
    let successor = TransactionalProducer::connect(config(&brokers, "writer-1")).await?;
    let fenced = producer.commit_transaction().await;
    assert!(
        matches!(fenced, Err(ClientError::ProducerFenced(_))),
        "{fenced:?}"
    );
    let _ = late.await;
    transaction(&successor, &values("e", 10), true).await?;
    let committed = read(&brokers, "t", 3, IsolationLevel::ReadCommitted, 510).await?;
    assert!(committed.iter().all(|r| text(r) != "zombie"));
    assert_eq!(committed.len(), 510);

    // An abort while records are still buffered or in flight: what was not sent is
    // dropped (numbered batches among them: a new epoch), and the next transaction
    // commits as usual.
    successor.begin_transaction()?;
    let mut dropped = Vec::new();
    for i in 0..2_000 {
        let record = ProducerRecord::new("t", format!("x-{i}")).key(format!("key-{}", i % 7));
        dropped.push(successor.send(record).await?);
    }
    successor.abort_transaction().await?;
    transaction(&successor, &values("f", 10), true).await?;
    let committed = read(&brokers, "t", 3, IsolationLevel::ReadCommitted, 520).await?;
    assert_eq!(committed.len(), 520);
    assert!(committed.iter().all(|r| !text(r).starts_with("x-")));
    assert_eq!(
        committed
            .iter()
            .filter(|r| text(r).starts_with("f-"))
            .count(),
        10
    );

    producer.close().await;
    successor.close().await;
    server.shutdown().await
}

/// Writes `count` records "in-{i}", keyed `k{i % 5}`, to topic "input".
async fn write_input(brokers: &[String], count: usize) -> Result<()> {
    let input = Producer::connect(ProducerConfig {
        brokers: brokers.to_vec(),
        ..ProducerConfig::default()
    })
    .await?;
    for i in 0..count {
        input
            .send(ProducerRecord::new("input", format!("in-{i}")).key(format!("k{}", i % 5)))
            .await?;
    }
    input.flush().await;
    Ok(())
}

/// A read-committed member of `group` that commits only what it is told to, starting
/// from the earliest offset where the group has none: a copier's consumer.
async fn read_committed_member(brokers: &[String], group: &str) -> Result<GroupConsumer> {
    Ok(GroupConsumer::connect(GroupConsumerConfig {
        brokers: brokers.to_vec(),
        group_id: group.into(),
        auto_offset_reset: OffsetReset::Earliest,
        auto_commit: false,
        isolation: IsolationLevel::ReadCommitted,
        ..GroupConsumerConfig::default()
    })
    .await?)
}

#[tokio::test]
async fn a_consume_transform_produce_loop_commits_its_offsets_with_its_output() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, brokers) = start(&dir).await?;
    let admin = Admin::connect(&brokers).await?;
    admin.create_topic("input", 2, 0, HashMap::new()).await?;
    admin.create_topic("t", 2, 0, HashMap::new()).await?;
    write_input(&brokers, 100).await?;
    let mut consumer = read_committed_member(&brokers, "copier").await?;
    consumer.subscribe(["input"])?;
    let producer = TransactionalProducer::connect(config(&brokers, "copier-1")).await?;
    let deadline = Instant::now() + WAIT;
    let mut copied = 0;
    let mut aborted_once = false;
    while copied < 100 {
        ensure!(Instant::now() < deadline, "copied only {copied} of 100");
        let records = consumer.poll(30, Duration::from_millis(200)).await?;
        if records.is_empty() {
            continue;
        }
        producer.begin_transaction()?;
        for r in &records {
            let value = text(r).replace("in-", "out-");
            producer
                .send(ProducerRecord::new("t", value).key(r.key.clone().unwrap()))
                .await?;
        }
        producer
            .send_offsets_to_transaction(consumer.positions(), &consumer.group_metadata())
            .await?;
        if !aborted_once {
            // The first batch is aborted: its output never appears, and its offsets are
            // not committed, so the loop reads those records again.
            aborted_once = true;
            producer.abort_transaction().await?;
            // Back to each partition's first record of the aborted batch.
            let mut first: BTreeMap<(String, u32), i64> = BTreeMap::new();
            for r in &records {
                let e = first
                    .entry((r.topic.to_string(), r.partition))
                    .or_insert(r.offset);
                *e = (*e).min(r.offset);
            }
            for ((topic, partition), offset) in first {
                consumer
                    .seek(&topic, partition, weir_client::SeekTo::Offset(offset))
                    .await?;
            }
            continue;
        }
        producer.commit_transaction().await?;
        copied += records.len();
    }
    let out = read(&brokers, "t", 2, IsolationLevel::ReadCommitted, 100).await?;
    let mut values: Vec<String> = out.iter().map(text).collect();
    values.sort();
    let mut want: Vec<String> = (0..100).map(|i| format!("out-{i}")).collect();
    want.sort();
    assert_eq!(values, want, "every input record copied exactly once");
    for p in 0..2 {
        let committed = consumer.committed(&[("input", p)]).await?;
        assert_eq!(
            committed[0].offset,
            consumer.position("input", p),
            "partition {p}: the group's offset is where the copy stopped"
        );
    }
    producer.close().await;
    consumer.close().await?;
    server.shutdown().await
}

/// A read-committed member that takes a partition while a transaction has offsets of its
/// group pending there waits for that transaction to end, then starts where it committed
/// (KIP-447): it never reads again what the transaction consumed. Before, it started from
/// the offset committed before the transaction (here none: the log start).
#[tokio::test]
async fn a_read_committed_member_waits_for_a_transactions_pending_offsets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, brokers) = start(&dir).await?;
    let admin = Admin::connect(&brokers).await?;
    admin.create_topic("input", 1, 0, HashMap::new()).await?;
    write_input(&brokers, 10).await?;

    // A copier that consumed the first 6 records: its offset (6) is pending.
    let producer = TransactionalProducer::connect(config(&brokers, "pending-1")).await?;
    producer.begin_transaction()?;
    let group = weir_client::GroupMetadata {
        group_id: "pending".into(),
        member_id: String::new(),
        member_epoch: -1,
    };
    producer
        .send_offsets_to_transaction([(weir_client::TopicPartition::new("input", 0), 6)], &group)
        .await?;

    let mut consumer = read_committed_member(&brokers, "pending").await?;
    consumer.subscribe(["input"])?;
    // Joined (an assignment heard), and a second more, but nothing read while the
    // offset is pending.
    let deadline = Instant::now() + WAIT;
    let mut waiting_until = None;
    while waiting_until.is_none_or(|until| Instant::now() < until) {
        ensure!(Instant::now() < deadline, "the member never joined");
        let read = consumer.poll(10, Duration::from_millis(200)).await?;
        ensure!(
            read.is_empty(),
            "read while the transaction's offset was pending: {:?}",
            read.iter().map(text).collect::<Vec<_>>()
        );
        if waiting_until.is_none() && consumer.member_epoch() > 0 {
            waiting_until = Some(Instant::now() + Duration::from_secs(1));
        }
    }
    ensure!(consumer.assignment().is_empty(), "positioned while pending");
    producer.commit_transaction().await?;
    let deadline = Instant::now() + WAIT;
    let mut read = Vec::new();
    while read.len() < 4 {
        ensure!(Instant::now() < deadline, "read only {read:?}");
        read.extend(
            consumer
                .poll(10, Duration::from_millis(200))
                .await?
                .iter()
                .map(text),
        );
    }
    assert_eq!(
        read,
        ["in-6", "in-7", "in-8", "in-9"],
        "from the transaction's offset on"
    );
    producer.close().await;
    consumer.close().await?;
    server.shutdown().await
}
