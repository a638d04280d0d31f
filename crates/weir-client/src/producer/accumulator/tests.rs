//! The accumulator's unit tests: batching, partitioning, memory, ordering, `append_many`
//! and the transactional gate.

use std::time::Duration;

use super::*;
use crate::partitioner::partition_for_key;
use crate::producer::config::ProducerConfig;

const TOPIC: &str = "t";

fn config() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(10),
        batch_bytes: 1024,
        buffer_memory: 1024 * 1024,
        max_in_flight: 2,
        retries: 3,
        retry_backoff: Duration::from_millis(100),
        retry_backoff_max: Duration::from_secs(1),
        // The tests below that are about idempotence turn it on.
        idempotence: false,
        ..ProducerConfig::default()
    }
}

fn idempotent() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::ZERO,
        batch_bytes: 200,
        idempotence: true,
        ..config()
    }
}

/// The (producer id, epoch, first sequence) a batch carries to the broker.
fn numbered(batch: &mut ProducerBatch) -> (i64, i16, i32) {
    let bytes = batch.encode().unwrap();
    let h = weir_batch::BatchHeader::parse(&bytes);
    (h.producer_id, h.producer_epoch, h.base_sequence)
}

const ID: Identity = Identity {
    producer_id: 42,
    epoch: 0,
};

fn accumulator(config: ProducerConfig, partitions: u32, now: Instant) -> Accumulator {
    let acc = Accumulator::new(config);
    acc.set_partitions(TOPIC, partitions, now);
    acc
}

fn record(key: Option<&str>, value: &str) -> Record {
    Record {
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: vec![],
        timestamp: 1_700_000_000_000,
    }
}

async fn append(
    acc: &Accumulator,
    partition: Option<u32>,
    record: &Record,
    now: Instant,
) -> Appended {
    let bytes = Accumulator::record_bytes(record);
    acc.reserve(bytes).await.unwrap();
    acc.append(TOPIC, partition, record, bytes, now)
        .expect("appended")
}

/// Every partition led by broker 0.
fn one_leader(_: &str, _: u32) -> Option<BrokerId> {
    Some(0)
}

fn sent(drained: Drained) -> Vec<ProducerBatch> {
    drained.rounds.into_iter().flatten().collect()
}

/// The values in a batch, decoded from the bytes the broker would get.
fn values(batch: &mut ProducerBatch) -> Vec<String> {
    let bytes = batch.encode().unwrap();
    weir_batch::decode_records(&bytes)
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

fn ack(base_offset: i64) -> Result<BatchAck, ClientError> {
    Ok(BatchAck {
        base_offset,
        log_append_time_ms: -1,
    })
}

#[tokio::test]
async fn idempotent_batches_wait_for_an_identity_and_are_numbered_per_partition() {
    let t0 = Instant::now();
    let acc = accumulator(idempotent(), 2, t0);
    append(&acc, Some(0), &record(None, "a"), t0).await;
    assert!(acc.identity_wanted());
    assert!(
        sent(acc.drain(t0, 100, &one_leader)).is_empty(),
        "no identity yet"
    );
    acc.set_identity(ID);
    assert!(!acc.identity_wanted());
    append(&acc, Some(0), &record(None, "b"), t0).await;
    append(&acc, Some(1), &record(None, "c"), t0).await;
    let mut batches = sent(acc.drain(t0, 100, &one_leader));
    let mut numbers: Vec<_> = batches
        .iter_mut()
        .map(|b| (b.partition, numbered(b)))
        .collect();
    numbers.sort();
    // "a" (closed while waiting) and "b" in partition 0, "c" alone in partition 1.
    assert_eq!(numbers, [(0, (42, 0, 0)), (0, (42, 0, 1)), (1, (42, 0, 0))]);
    for b in batches {
        acc.complete(b, ack(0), t0);
    }
    append(&acc, Some(0), &record(None, "d"), t0).await;
    let mut next = sent(acc.drain(t0, 100, &one_leader));
    assert_eq!(numbered(&mut next[0]), (42, 0, 2), "after a and b");
    // A retry keeps its number.
    acc.complete(
        next.pop().unwrap(),
        Err(ClientError::Unavailable("x".into())),
        t0,
    );
    let mut retried = sent(acc.drain(t0 + Duration::from_secs(1), 100, &one_leader));
    assert_eq!(numbered(&mut retried[0]), (42, 0, 2));
}

#[tokio::test]
async fn a_numbered_batch_that_fails_for_good_fails_those_after_it_and_renumbers() {
    let t0 = Instant::now();
    let acc = accumulator(idempotent(), 1, t0);
    acc.set_identity(ID);
    for v in ["a", "b", "c"] {
        append(&acc, Some(0), &record(None, &v.repeat(150)), t0).await;
    }
    // Two in flight (max_in_flight 2), the third numbered only when it is sent.
    let mut batches = sent(acc.drain(t0, 100, &one_leader));
    assert_eq!(batches.len(), 2);
    let second = batches.pop().unwrap();
    let first = batches.pop().unwrap();
    let bad = ClientError::InvalidArgument("too large".into());
    acc.complete(first, Err(bad), t0);
    assert!(acc.identity_wanted(), "new batches need a new identity");
    // The second was numbered after the failed one: it fails instead of retrying.
    let second_done = second.completion.clone();
    acc.complete(
        second,
        Err(ClientError::OutOfOrderSequence("gap".into())),
        t0,
    );
    assert!(matches!(
        second_done.result(),
        Some(Err(ClientError::OutOfOrderSequence(_)))
    ));
    // The third was never numbered: it waits for the new identity and starts at 0.
    assert!(sent(acc.drain(t0, 100, &one_leader)).is_empty());
    acc.set_identity(Identity {
        producer_id: 43,
        epoch: 0,
    });
    let mut third = sent(acc.drain(t0, 100, &one_leader));
    assert_eq!(values(&mut third[0]), ["c".repeat(150)]);
    assert_eq!(numbered(&mut third[0]), (43, 0, 0));
}

#[tokio::test]
async fn a_fenced_producer_fails_what_is_left_and_every_later_send() {
    let t0 = Instant::now();
    let acc = accumulator(idempotent(), 1, t0);
    acc.set_identity(ID);
    append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
    append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
    let mut batches = sent(acc.drain(t0, 1, &one_leader));
    let waiting = append(&acc, Some(0), &record(None, "c"), t0).await;
    acc.complete(
        batches.pop().unwrap(),
        Err(ClientError::ProducerFenced("newer instance".into())),
        t0,
    );
    assert!(matches!(
        waiting.completion.result(),
        Some(Err(ClientError::ProducerFenced(_)))
    ));
    let r = record(None, "d");
    let bytes = Accumulator::record_bytes(&r);
    acc.reserve(bytes).await.unwrap();
    assert!(matches!(
        acc.append(TOPIC, Some(0), &r, bytes, t0),
        Err(AppendError::Failed(ClientError::ProducerFenced(_)))
    ));
    assert!(!acc.identity_wanted(), "a fenced producer asks for nothing");
}

#[tokio::test]
async fn linger_holds_a_batch_until_it_runs_out() {
    let t0 = Instant::now();
    let acc = accumulator(config(), 1, t0);
    append(&acc, Some(0), &record(None, "a"), t0).await;
    append(&acc, Some(0), &record(None, "b"), t0).await;
    let drained = acc.drain(t0 + Duration::from_millis(9), 100, &one_leader);
    assert!(drained.rounds.is_empty());
    assert_eq!(drained.next_wake, Some(t0 + Duration::from_millis(10)));
    let mut batches = sent(acc.drain(t0 + Duration::from_millis(10), 100, &one_leader));
    assert_eq!(batches.len(), 1);
    assert_eq!(values(&mut batches[0]), ["a", "b"]);
}

#[tokio::test]
async fn send_when_idle_sends_at_once_and_batches_while_a_request_is_in_flight() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::from_secs(3600),
        send_when_idle: true,
        ..config()
    };
    let acc = accumulator(config, 1, t0);
    append(&acc, Some(0), &record(None, "a"), t0).await;
    let mut first = sent(acc.drain(t0, 100, &one_leader));
    assert_eq!(first.len(), 1, "an idle partition sends at once");
    assert_eq!(values(&mut first[0]), ["a"]);
    append(&acc, Some(0), &record(None, "b"), t0).await;
    append(&acc, Some(0), &record(None, "c"), t0).await;
    let held = acc.drain(t0, 100, &one_leader);
    assert!(
        held.rounds.is_empty(),
        "a request is in flight: records wait"
    );
    acc.complete(first.pop().unwrap(), ack(0), t0);
    let mut second = sent(acc.drain(t0, 100, &one_leader));
    assert_eq!(second.len(), 1);
    assert_eq!(values(&mut second[0]), ["b", "c"]);
}

#[tokio::test]
async fn a_full_batch_is_sent_without_lingering_and_stays_within_batch_bytes() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::from_secs(3600),
        ..config()
    };
    let acc = accumulator(config, 1, t0);
    let value = "v".repeat(100);
    for _ in 0..20 {
        append(&acc, Some(0), &record(None, &value), t0).await;
    }
    let mut batches = sent(acc.drain(t0, 100, &one_leader));
    assert!(!batches.is_empty(), "a full batch is ready at once");
    for batch in &mut batches {
        let bytes = batch.encode().unwrap();
        assert!(bytes.len() <= 1024, "batch of {} bytes", bytes.len());
        assert!(batch.record_count > 1);
    }
}

#[tokio::test]
async fn a_partition_has_at_most_max_in_flight_batches_sent_in_order() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        batch_bytes: 200,
        ..config()
    };
    let acc = accumulator(config, 1, t0);
    // 150-byte values: one record per batch.
    let values_sent: Vec<String> = (0..5).map(|i| format!("{i}{}", "x".repeat(149))).collect();
    for v in &values_sent {
        append(&acc, Some(0), &record(None, v), t0).await;
    }
    let mut first = sent(acc.drain(t0, 100, &one_leader));
    assert_eq!(first.len(), 2, "max_in_flight is 2");
    assert_eq!(values(&mut first[0]), [values_sent[0].clone()]);
    assert_eq!(values(&mut first[1]), [values_sent[1].clone()]);
    assert!(
        sent(acc.drain(t0, 100, &one_leader)).is_empty(),
        "nothing while 2 are in flight"
    );
    let second_batch = first.pop().unwrap();
    acc.complete(first.pop().unwrap(), ack(0), t0);
    let mut next = sent(acc.drain(t0, 100, &one_leader));
    assert_eq!(next.len(), 1);
    assert_eq!(values(&mut next[0]), [values_sent[2].clone()]);
    acc.complete(second_batch, ack(1), t0);
    acc.complete(next.pop().unwrap(), ack(2), t0);
    let mut rest = sent(acc.drain(t0, 100, &one_leader));
    let rest_values: Vec<Vec<String>> = rest.iter_mut().map(values).collect();
    assert_eq!(
        rest_values,
        [vec![values_sent[3].clone()], vec![values_sent[4].clone()]]
    );
}

#[tokio::test]
async fn a_delivery_carries_the_batch_offset_plus_the_record_index() {
    let t0 = Instant::now();
    let acc = accumulator(config(), 1, t0);
    let a = append(&acc, Some(0), &record(None, "a"), t0).await;
    let b = append(&acc, Some(0), &record(None, "b"), t0).await;
    assert_eq!((a.index, b.index), (0, 1));
    let batch = sent(acc.drain(t0 + Duration::from_secs(1), 100, &one_leader))
        .pop()
        .unwrap();
    acc.complete(batch, ack(41), t0);
    assert_eq!(
        b.completion.result().unwrap().as_ref().unwrap().base_offset,
        41
    );
    assert!(acc.begin_flush().is_empty(), "nothing left incomplete");
    acc.end_flush();
}

#[tokio::test]
async fn retriable_failures_are_retried_after_a_backoff_in_order() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        batch_bytes: 200,
        ..config()
    };
    let acc = accumulator(config, 1, t0);
    let a = append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
    append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
    let mut batches = sent(acc.drain(t0, 100, &one_leader));
    let second = batches.pop().unwrap();
    let first = batches.pop().unwrap();
    let unavailable = || Err(ClientError::Unavailable("down".to_owned()));
    acc.complete(first, unavailable(), t0);
    // The partition pauses: nothing new is sent while the failed batch waits.
    append(&acc, Some(0), &record(None, &"c".repeat(150)), t0).await;
    assert!(sent(acc.drain(t0, 100, &one_leader)).is_empty());
    acc.complete(second, unavailable(), t0);
    assert!(
        a.completion.result().is_none(),
        "not failed: it will be retried"
    );
    let drained = acc.drain(t0 + Duration::from_millis(99), 100, &one_leader);
    assert!(drained.rounds.is_empty(), "backing off");
    assert_eq!(drained.next_wake, Some(t0 + Duration::from_millis(100)));
    let mut retried = sent(acc.drain(t0 + Duration::from_millis(100), 100, &one_leader));
    let firsts: Vec<char> = retried
        .iter_mut()
        .map(|b| values(b)[0].chars().next().unwrap())
        .collect();
    assert_eq!(
        firsts,
        ['a', 'b'],
        "retried in the original order, before c"
    );
    assert_eq!(retried[0].attempts, 1);
}

#[tokio::test]
async fn a_failure_followed_by_a_later_success_is_reported_not_retried() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        batch_bytes: 200,
        ..config()
    };
    let acc = accumulator(config, 1, t0);
    let a = append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
    let b = append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
    let mut batches = sent(acc.drain(t0, 100, &one_leader));
    let second = batches.pop().unwrap();
    acc.complete(
        batches.pop().unwrap(),
        Err(ClientError::ResourceExhausted("busy".to_owned())),
        t0,
    );
    acc.complete(second, ack(7), t0);
    // Retrying `a` now would put it after `b`: it fails instead.
    assert!(matches!(
        a.completion.result(),
        Some(Err(ClientError::ResourceExhausted(_)))
    ));
    assert!(b.completion.result().unwrap().is_ok());
    assert!(sent(acc.drain(t0 + Duration::from_secs(10), 100, &one_leader)).is_empty());
}

#[tokio::test]
async fn fatal_errors_and_exhausted_retries_fail_the_batch() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        retries: 1,
        ..config()
    };
    let acc = accumulator(config, 2, t0);
    let fatal = append(&acc, Some(0), &record(None, "a"), t0).await;
    let retried = append(&acc, Some(1), &record(None, "b"), t0).await;
    let mut batches = sent(acc.drain(t0, 100, &one_leader));
    batches.sort_by_key(|b| b.partition);
    let p1 = batches.pop().unwrap();
    acc.complete(
        batches.pop().unwrap(),
        Err(ClientError::InvalidArgument("bad".to_owned())),
        t0,
    );
    assert!(matches!(
        fatal.completion.result(),
        Some(Err(ClientError::InvalidArgument(_)))
    ));
    acc.complete(p1, Err(ClientError::Unavailable("down".to_owned())), t0);
    let again = sent(acc.drain(t0 + Duration::from_secs(1), 100, &one_leader))
        .pop()
        .unwrap();
    assert_eq!(again.attempts, 1);
    acc.complete(
        again,
        Err(ClientError::Unavailable("still down".to_owned())),
        t0,
    );
    assert!(matches!(
        retried.completion.result(),
        Some(Err(ClientError::Unavailable(m))) if m == "still down"
    ));
}

#[tokio::test]
async fn send_waits_while_buffer_memory_is_used_up() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        buffer_memory: 1000,
        batch_bytes: 1000,
        ..config()
    };
    let acc = Arc::new(accumulator(config, 1, t0));
    let big = record(None, &"x".repeat(600));
    append(&acc, Some(0), &big, t0).await;
    let bytes = Accumulator::record_bytes(&big);
    let waiting = {
        let acc = acc.clone();
        tokio::spawn(async move { acc.reserve(bytes).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished(), "blocked while memory is used up");
    let batch = sent(acc.drain(t0, 100, &one_leader)).pop().unwrap();
    acc.complete(batch, ack(0), t0);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("released by the completion")
        .unwrap()
        .unwrap();
    assert!(matches!(
        acc.reserve(1001).await,
        Err(ClientError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn unkeyed_records_stick_to_a_partition_until_its_batch_closes() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::from_secs(3600),
        batch_bytes: 1024,
        ..config()
    };
    let acc = accumulator(config, 8, t0);
    let value = "v".repeat(100);
    let first = append(&acc, None, &record(None, &value), t0).await;
    let sticky = first.completion.partition;
    let mut partition = sticky;
    let mut count = 1;
    while partition == sticky {
        let appended = append(&acc, None, &record(None, &value), t0).await;
        partition = appended.completion.partition;
        count += 1;
        assert!(count < 20, "never moved");
    }
    // Eight 136-byte reservations fill a 1 KiB batch; the ninth closes it, and the
    // record after that moves on.
    assert!(count > 5, "moved after {count} records");
    assert_eq!(
        sent(acc.drain(t0, 100, &one_leader)).len(),
        1,
        "the closed batch is ready"
    );
}

#[tokio::test]
async fn keyed_records_follow_kafkas_partitioner() {
    let t0 = Instant::now();
    let acc = accumulator(config(), 10, t0);
    for key in ["21", "foobar", "abc", "user-1"] {
        let appended = append(&acc, None, &record(Some(key), "v"), t0).await;
        assert_eq!(
            appended.completion.partition,
            partition_for_key(key.as_bytes(), 10)
        );
    }
}

#[tokio::test]
async fn batches_go_to_their_partitions_leader() {
    let t0 = Instant::now();
    let acc = accumulator(
        ProducerConfig {
            linger: Duration::ZERO,
            ..config()
        },
        3,
        t0,
    );
    for partition in 0..3 {
        append(&acc, Some(partition), &record(None, "v"), t0).await;
    }
    let leaders = |_: &str, partition: u32| Some(10 + partition as BrokerId);
    let mut batches = sent(acc.drain(t0, 100, &leaders));
    batches.sort_by_key(|b| b.partition);
    let routed: Vec<(u32, BrokerId)> = batches.iter().map(|b| (b.partition, b.broker)).collect();
    assert_eq!(routed, [(0, 10), (1, 11), (2, 12)]);
}

#[tokio::test]
async fn a_moved_leader_gets_new_batches_only_once_the_old_one_answered() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        batch_bytes: 200,
        ..config()
    };
    let acc = accumulator(config, 1, t0);
    append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
    let mut first = sent(acc.drain(t0, 100, &|_, _| Some(1)));
    assert_eq!(first[0].broker, 1);
    append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
    // Leadership moved to broker 2 while `a` is in flight to broker 1.
    let to_two = |_: &str, _: u32| Some(2);
    assert!(
        sent(acc.drain(t0, 100, &to_two)).is_empty(),
        "b waits: two brokers never hold one partition's batches in flight"
    );
    acc.complete(first.pop().unwrap(), ack(0), t0);
    let mut second = sent(acc.drain(t0, 100, &to_two));
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].broker, 2);
    assert_eq!(values(&mut second[0]), ["b".repeat(150)]);
}

#[tokio::test]
async fn not_leader_failures_are_retried_in_order_on_the_new_leader() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        batch_bytes: 200,
        ..config()
    };
    let acc = accumulator(config, 1, t0);
    let a = append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
    append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
    let mut batches = sent(acc.drain(t0, 100, &|_, _| Some(1)));
    let second = batches.pop().unwrap();
    let first = batches.pop().unwrap();
    let not_leader = || {
        Err(ClientError::NotLeader {
            message: "this broker does not lead t/0; broker 2 does".to_owned(),
            leader: Some(2),
        })
    };
    acc.complete(first, not_leader(), t0);
    append(&acc, Some(0), &record(None, &"c".repeat(150)), t0).await;
    acc.complete(second, not_leader(), t0);
    assert!(
        a.completion.result().is_none(),
        "not failed: it will be retried"
    );
    let later = t0 + Duration::from_millis(100);
    let mut retried = sent(acc.drain(later, 100, &|_, _| Some(2)));
    let order: Vec<(char, BrokerId)> = retried
        .iter_mut()
        .map(|b| (values(b)[0].chars().next().unwrap(), b.broker))
        .collect();
    assert_eq!(
        order,
        [('a', 2), ('b', 2)],
        "in the original order, before c"
    );
}

#[tokio::test]
async fn a_retry_skips_the_backoff_once_the_metadata_names_another_leader() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        batch_bytes: 200,
        retry_backoff: Duration::from_secs(1),
        ..config()
    };
    let acc = accumulator(config, 1, t0);
    let a = append(&acc, Some(0), &record(None, &"a".repeat(150)), t0).await;
    let mut batches = sent(acc.drain(t0, 100, &|_, _| Some(1)));
    let first = batches.pop().unwrap();
    acc.complete(
        first,
        Err(ClientError::Unavailable("broker 1 is gone".to_owned())),
        t0,
    );
    append(&acc, Some(0), &record(None, &"b".repeat(150)), t0).await;
    // Still led by the broker that failed: wait out the backoff, asking for metadata.
    let soon = t0 + Duration::from_millis(10);
    let drained = acc.drain(soon, 100, &|_, _| Some(1));
    assert!(drained.rounds.is_empty(), "backing off");
    assert_eq!(drained.waiting_on_failed, [Arc::from(TOPIC)]);
    assert!(a.completion.result().is_none());
    // A new leader is known: the retry goes now, first, then what followed.
    let mut retried = sent(acc.drain(soon, 100, &|_, _| Some(2)));
    let order: Vec<(char, BrokerId)> = retried
        .iter_mut()
        .map(|b| (values(b)[0].chars().next().unwrap(), b.broker))
        .collect();
    assert_eq!(order, [('a', 2), ('b', 2)]);
}

#[tokio::test]
async fn a_partition_without_a_leader_waits_then_fails_after_request_timeout() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        request_timeout: Duration::from_secs(2),
        ..config()
    };
    let acc = accumulator(config, 2, t0);
    let waiting = append(&acc, Some(0), &record(None, "a"), t0).await;
    let routed = append(&acc, Some(1), &record(None, "b"), t0).await;
    let leaderless = |_: &str, partition: u32| (partition == 1).then_some(1);
    let drained = acc.drain(t0, 100, &leaderless);
    assert_eq!(
        drained.unrouted,
        [(Arc::from(TOPIC), 0)],
        "metadata is asked for"
    );
    assert_eq!(drained.next_wake, Some(t0 + Duration::from_secs(2)));
    let other = drained.rounds.into_iter().flatten().next().unwrap();
    acc.complete(other, ack(0), t0);
    assert!(routed.completion.result().unwrap().is_ok());
    // A leader shows up in time: the batch goes.
    let mut found = sent(acc.drain(t0 + Duration::from_secs(1), 100, &one_leader));
    assert_eq!(found.len(), 1);
    acc.complete(found.pop().unwrap(), ack(0), t0);
    assert!(waiting.completion.result().unwrap().is_ok());
    // One that never shows up: the batch fails after request_timeout.
    let lost = append(&acc, Some(0), &record(None, "c"), t0).await;
    let none = |_: &str, _: u32| None;
    let t1 = t0 + Duration::from_secs(10);
    assert!(acc.drain(t1, 100, &none).rounds.is_empty());
    assert!(lost.completion.result().is_none());
    let drained = acc.drain(t1 + Duration::from_secs(2), 100, &none);
    assert!(drained.rounds.is_empty() && drained.unrouted.is_empty());
    assert!(matches!(
        lost.completion.result(),
        Some(Err(ClientError::Unavailable(m))) if m.contains("no leader")
    ));
    assert!(acc.begin_flush().is_empty(), "nothing left incomplete");
    acc.end_flush();
}

#[tokio::test]
async fn unknown_or_stale_topics_and_missing_partitions_ask_for_metadata() {
    let t0 = Instant::now();
    let acc = accumulator(config(), 2, t0);
    let r = record(None, "v");
    assert!(matches!(
        acc.append("other", None, &r, 0, t0),
        Err(AppendError::NeedMetadata)
    ));
    assert!(matches!(
        acc.append(TOPIC, Some(2), &r, 0, t0),
        Err(AppendError::NeedMetadata)
    ));
    assert!(matches!(
        acc.append(TOPIC, None, &r, 0, t0 + METADATA_MAX_AGE),
        Err(AppendError::NeedMetadata)
    ));
    acc.invalidate(TOPIC);
    assert!(matches!(
        acc.append(TOPIC, None, &r, 0, Instant::now()),
        Err(AppendError::NeedMetadata)
    ));
}

// ---- send_all (append_many) ----

use crate::producer::batch::{BatchDelivery, DeliveredRecords, RecordRef};
use proptest::prelude::*;

const CLOCK_MS: i64 = 1_700_000_000_000;

/// What `Producer::send_all` does with the accumulator, without the metadata refresh.
async fn append_all<'r>(
    acc: &Accumulator,
    partition: Option<u32>,
    records: impl IntoIterator<Item = RecordRef<'r>>,
    now: Instant,
) -> Result<BatchDelivery, ClientError> {
    let mut records = records.into_iter();
    let mut call = AppendCall::default();
    let failure = loop {
        match acc.append_many(TOPIC, partition, &mut records, &mut call, now, CLOCK_MS) {
            AppendStep::Done => break None,
            AppendStep::Yield => {}
            AppendStep::NeedMemory(bytes) => {
                acc.unreserve(std::mem::take(&mut call.credit));
                acc.reserve(bytes).await?;
                call.credit = bytes;
            }
            AppendStep::NeedMetadata => panic!("the topic is known"),
            AppendStep::Failed(error) => break Some(error),
        }
    };
    acc.unreserve(call.credit);
    if call.accepted == 0
        && let Some(error) = failure
    {
        return Err(error);
    }
    Ok(BatchDelivery::new(
        TOPIC.into(),
        call.segments,
        call.accepted,
        failure,
    ))
}

/// Sends and acknowledges every batch there is, in order, numbering offsets per
/// partition from `next`; returns the batches' (partition, decoded records).
fn ack_everything(
    acc: &Accumulator,
    next: &mut HashMap<u32, i64>,
    now: Instant,
) -> Vec<(u32, Vec<weir_batch::DecodedRecord>)> {
    let mut out = Vec::new();
    loop {
        let batches = sent(acc.drain(now + Duration::from_secs(3600), 1000, &one_leader));
        if batches.is_empty() {
            return out;
        }
        for mut batch in batches {
            let bytes = batch.encode().unwrap();
            let records = weir_batch::decode_records(&bytes).unwrap();
            let base = next.entry(batch.partition).or_insert(0);
            let offset = *base;
            *base += i64::from(batch.record_count);
            out.push((batch.partition, records));
            acc.complete(batch, ack(offset), now);
        }
    }
}

fn hundred_bytes(i: usize) -> Vec<u8> {
    format!("{i:0100}").into_bytes()
}

#[tokio::test]
async fn send_all_spans_batches_in_order_and_resolves_to_the_offsets() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        batch_bytes: 1024,
        ..config()
    };
    let acc = accumulator(config, 1, t0);
    let values: Vec<Vec<u8>> = (0..50).map(hundred_bytes).collect();
    // Something before, from `send`, so the call's offsets do not start at 0.
    append(&acc, Some(0), &record(None, "before"), t0).await;
    let delivery = append_all(&acc, Some(0), values.iter().map(|v| RecordRef::new(v)), t0)
        .await
        .unwrap();
    assert_eq!(delivery.record_count(), 50);
    assert!(delivery.try_result().is_none(), "nothing acknowledged yet");
    let mut next = HashMap::new();
    let batches = ack_everything(&acc, &mut next, t0);
    assert!(
        batches.len() > 5,
        "50 records of 100 B span batches of 1 KiB"
    );
    let got: Vec<Vec<u8>> = batches
        .iter()
        .flat_map(|(_, records)| records.iter().map(|r| r.value.clone().unwrap().to_vec()))
        .collect();
    assert_eq!(got[0], b"before");
    assert_eq!(got[1..], values[..], "every record, in order");
    let DeliveredRecords { topic, ranges } = delivery.try_result().unwrap().unwrap();
    assert_eq!(&*topic, TOPIC);
    assert_eq!(ranges.len(), batches.len(), "one range per batch");
    let offsets: Vec<i64> = ranges.iter().flat_map(|r| r.offsets()).collect();
    assert_eq!(offsets, (1..51).collect::<Vec<i64>>());
    assert!(ranges.iter().all(|r| r.partition == 0));
    // Every byte reserved came back.
    assert_eq!(acc.memory.available_permits(), acc.config.buffer_memory);
}

#[tokio::test]
async fn send_all_waits_while_buffer_memory_is_used_up() {
    static VALUE: [u8; 100] = [7; 100];
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        buffer_memory: 1000,
        batch_bytes: 1000,
        ..config()
    };
    let acc = Arc::new(accumulator(config, 1, t0));
    // 20 records reserve 20 x 136 bytes: more than buffer_memory.
    let call = {
        let acc = acc.clone();
        tokio::spawn(async move {
            let records = std::iter::repeat_n(RecordRef::new(&VALUE), 20);
            append_all(&acc, Some(0), records, t0).await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!call.is_finished(), "blocked while memory is used up");
    let appended = |batches: &[(u32, Vec<weir_batch::DecodedRecord>)]| {
        batches.iter().map(|(_, r)| r.len()).sum::<usize>()
    };
    let mut next = HashMap::new();
    let mut delivered = 0;
    let mut rounds = 0;
    while !call.is_finished() || delivered < 20 {
        let batches = ack_everything(&acc, &mut next, t0);
        delivered += appended(&batches);
        assert!(
            acc.config.buffer_memory - acc.memory.available_permits() <= 1000,
            "never more than buffer_memory reserved"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        rounds += 1;
        assert!(rounds < 1000, "stuck at {delivered} records");
    }
    assert_eq!(delivered, 20);
    let delivery = call.await.unwrap().unwrap();
    let offsets: Vec<i64> = delivery
        .try_result()
        .unwrap()
        .unwrap()
        .ranges
        .iter()
        .flat_map(|r| r.offsets())
        .collect();
    assert_eq!(offsets, (0..20).collect::<Vec<i64>>());
    assert_eq!(acc.memory.available_permits(), 1000);
}

#[tokio::test]
async fn an_oversized_record_fails_the_call_or_stops_it_cleanly() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        buffer_memory: 4096,
        batch_bytes: 1024,
        ..config()
    };
    let acc = accumulator(config, 1, t0);
    let huge = vec![0u8; 5000];
    let small = hundred_bytes(1);
    // First: nothing is sent, the call fails.
    let first = append_all(
        &acc,
        Some(0),
        [RecordRef::new(&huge), RecordRef::new(&small)],
        t0,
    )
    .await;
    assert!(matches!(first, Err(ClientError::InvalidArgument(_))));
    assert!(sent(acc.drain(t0, 100, &one_leader)).is_empty());
    assert_eq!(acc.memory.available_permits(), 4096);
    // Later: the records before it are sent, it and those after it are not.
    let records = [
        RecordRef::new(&small),
        RecordRef::new(&small),
        RecordRef::new(&huge),
        RecordRef::new(&small),
    ];
    let delivery = append_all(&acc, Some(0), records, t0).await.unwrap();
    assert_eq!(delivery.record_count(), 2);
    assert!(matches!(
        delivery.rejected(),
        Some(ClientError::InvalidArgument(_))
    ));
    let batches = ack_everything(&acc, &mut HashMap::new(), t0);
    assert_eq!(batches.iter().map(|(_, r)| r.len()).sum::<usize>(), 2);
    assert!(matches!(
        delivery.try_result(),
        Some(Err(ClientError::InvalidArgument(_)))
    ));
    assert_eq!(acc.memory.available_permits(), 4096);
    // A record larger than a batch but within buffer_memory goes alone, as with send.
    let big = vec![1u8; 2000];
    let delivery = append_all(
        &acc,
        Some(0),
        [RecordRef::new(&small), RecordRef::new(&big)],
        t0,
    )
    .await
    .unwrap();
    let batches = ack_everything(&acc, &mut HashMap::new(), t0);
    let sizes: Vec<usize> = batches.iter().map(|(_, r)| r.len()).collect();
    assert_eq!(sizes, [1, 1]);
    assert_eq!(delivery.try_result().unwrap().unwrap().record_count(), 2);
}

#[tokio::test]
async fn keyed_records_of_one_call_land_where_send_puts_them() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        ..config()
    };
    let acc = accumulator(config, 10, t0);
    let keys: Vec<String> = (0..200).map(|i| format!("user-{}", i % 37)).collect();
    let values: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    let records = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| RecordRef::new(v.as_bytes()).key(k.as_bytes()));
    let delivery = append_all(&acc, None, records, t0).await.unwrap();
    let batches = ack_everything(&acc, &mut HashMap::new(), t0);
    let mut last: HashMap<u32, usize> = HashMap::new();
    for (partition, records) in &batches {
        for r in records {
            let key = r.key.as_deref().unwrap();
            assert_eq!(*partition, partition_for_key(key, 10), "as send places it");
            let i: usize = std::str::from_utf8(r.value.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            if let Some(previous) = last.insert(*partition, i) {
                assert!(previous < i, "the call's order within a partition");
            }
        }
    }
    let delivered = delivery.try_result().unwrap().unwrap();
    assert_eq!(delivered.record_count(), 200);
    // One range per partition that got records (each partition's records are in one
    // batch here), the ranges' partitions in the order they first appear.
    let mut partitions: Vec<u32> = delivered.ranges.iter().map(|r| r.partition).collect();
    let first_seen: Vec<u32> = {
        let mut seen = Vec::new();
        for k in &keys {
            let p = partition_for_key(k.as_bytes(), 10);
            if !seen.contains(&p) {
                seen.push(p);
            }
        }
        seen
    };
    assert_eq!(partitions, first_seen);
    partitions.dedup();
    assert_eq!(partitions.len(), delivered.ranges.len());
    // And the same keys through `append` (what `send` does) go to the same places.
    for k in &keys[..37] {
        let appended = append(&acc, None, &record(Some(k), "v"), t0).await;
        assert_eq!(
            appended.completion.partition,
            partition_for_key(k.as_bytes(), 10)
        );
    }
}

#[tokio::test]
async fn unkeyed_records_of_one_call_stick_to_a_partition_per_batch() {
    let t0 = Instant::now();
    let config = ProducerConfig {
        linger: Duration::from_secs(3600),
        batch_bytes: 1024,
        ..config()
    };
    let acc = accumulator(config, 2, t0);
    let value = hundred_bytes(0);
    let delivery = append_all(
        &acc,
        None,
        std::iter::repeat_n(RecordRef::new(&value), 40),
        t0,
    )
    .await
    .unwrap();
    let batches = ack_everything(&acc, &mut HashMap::new(), t0);
    // As with `send`: eight records fill a batch, the ninth closes it and goes to a
    // new batch of the same partition, and the sticky partition moves on after it.
    // Over two partitions: A 8, B 8, A' 1 + 7, B' 1 + 7, A'' 1 + 6, B'' 1.
    let mut sizes: Vec<usize> = batches.iter().map(|(_, r)| r.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [1, 7, 8, 8, 8, 8]);
    assert_eq!(delivery.try_result().unwrap().unwrap().record_count(), 40);
}

/// A record for the proptest, owned.
#[derive(Debug, Clone)]
struct Owned {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<weir_batch::Header>,
    timestamp: Option<i64>,
}

fn owned() -> impl Strategy<Value = Owned> {
    let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300));
    let header = ("\\PC{0,6}", bytes()).prop_map(|(key, value)| weir_batch::Header {
        key,
        value: value.map(Bytes::from),
    });
    (
        bytes(),
        bytes(),
        proptest::collection::vec(header, 0..3),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(key, value, headers, timestamp)| Owned {
            key,
            value,
            headers,
            timestamp,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_batches_of_a_call_decode_to_exactly_its_records(
        records in proptest::collection::vec(owned(), 0..120),
        partitions in 1u32..4,
        keyed_partitioning in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let t0 = Instant::now();
        let config = ProducerConfig {
            linger: Duration::ZERO,
            batch_bytes: 2048,
            ..config()
        };
        let acc = accumulator(config, partitions, t0);
        let views = records.iter().map(|r| RecordRef {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &r.headers,
            timestamp: r.timestamp,
        });
        let partition = (!keyed_partitioning).then_some(partitions - 1);
        let delivery = runtime.block_on(append_all(&acc, partition, views, t0));
        let delivery = match delivery {
            Ok(d) => d,
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        prop_assert_eq!(delivery.record_count(), records.len() as u64);
        let batches = ack_everything(&acc, &mut HashMap::new(), t0);
        // Each partition's records, in order, as decoded from its batches.
        let mut decoded: HashMap<u32, Vec<weir_batch::DecodedRecord>> = HashMap::new();
        for (p, rs) in batches {
            decoded.entry(p).or_default().extend(rs);
        }
        let mut expected: HashMap<u32, Vec<&Owned>> = HashMap::new();
        let mut sticky = None;
        for r in &records {
            let p = match (partition, &r.key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, partitions),
                // Unkeyed records: whichever partition the batches say (the sticky
                // choice is random); checked below as one sequence per partition.
                (None, None) => *sticky.get_or_insert(u32::MAX),
            };
            expected.entry(p).or_default().push(r);
        }
        let unkeyed = expected.remove(&u32::MAX).unwrap_or_default();
        let mut unkeyed_got = Vec::new();
        for (p, got) in &decoded {
            let (keyed_got, rest): (Vec<_>, Vec<_>) =
                got.iter().partition(|d| d.key.is_some() || partition.is_some());
            unkeyed_got.extend(rest.into_iter().map(|d| (*p, d)));
            let want = expected.get(p).map(Vec::as_slice).unwrap_or_default();
            prop_assert_eq!(keyed_got.len(), want.len());
            for (d, r) in keyed_got.iter().zip(want) {
                prop_assert_eq!(d.key.as_deref(), r.key.as_deref());
                prop_assert_eq!(d.value.as_deref(), r.value.as_deref());
                prop_assert_eq!(&d.headers, &r.headers);
                prop_assert_eq!(d.timestamp, r.timestamp.unwrap_or(CLOCK_MS));
            }
        }
        // Unkeyed records: as many as given, and each partition's in call order (a
        // subsequence of the call's unkeyed records).
        prop_assert_eq!(unkeyed_got.len(), unkeyed.len());
        for p in decoded.keys() {
            let mut want = unkeyed.iter();
            for (_, d) in unkeyed_got.iter().filter(|(q, _)| q == p) {
                let found = want.any(|r| {
                    d.key.is_none()
                        && d.value.as_deref() == r.value.as_deref()
                        && d.headers == r.headers
                        && d.timestamp == r.timestamp.unwrap_or(CLOCK_MS)
                });
                prop_assert!(found, "partition {}: an unkeyed record out of order", p);
            }
        }
        let total: usize = decoded.values().map(Vec::len).sum();
        prop_assert_eq!(total, records.len());
        if let Ok(done) = delivery.try_result().unwrap() {
            prop_assert_eq!(done.record_count(), records.len() as u64);
        } else {
            prop_assert!(false, "every batch was acknowledged");
        }
    }
}

fn transactional() -> ProducerConfig {
    ProducerConfig {
        transactional_id: Some("tx".into()),
        ..idempotent()
    }
}

#[tokio::test]
async fn a_transactional_partition_waits_until_it_is_in_the_transaction() {
    let t0 = Instant::now();
    let acc = accumulator(transactional(), 2, t0);
    assert!(!acc.identity_wanted(), "its coordinator gives the identity");
    // Outside a transaction a send is refused.
    let r = record(None, "stray");
    let bytes = Accumulator::record_bytes(&r);
    let refused = acc.append(TOPIC, Some(0), &r, bytes, t0);
    assert!(matches!(
        refused,
        Err(AppendError::Failed(ClientError::FailedPrecondition(_)))
    ));
    acc.set_identity(ID);
    acc.begin_transaction().unwrap();
    append(&acc, Some(0), &record(None, "a"), t0).await;
    assert!(
        sent(acc.drain(t0, 100, &one_leader)).is_empty(),
        "not in the transaction yet"
    );
    let add = acc.take_partitions_to_add().expect("partition 0 is wanted");
    assert_eq!(add.partitions, vec![(Arc::from(TOPIC), 0)]);
    assert!(acc.take_partitions_to_add().is_none(), "one add at a time");
    acc.partitions_added(add);
    let mut batches = sent(acc.drain(t0, 100, &one_leader));
    assert_eq!(batches.len(), 1);
    let bytes = batches[0].encode().unwrap();
    let header = weir_batch::BatchHeader::parse(&bytes);
    assert!(header.is_transactional());
    assert_eq!((header.producer_id, header.base_sequence), (42, 0));
    assert!(acc.anything_in_transaction());
}

#[tokio::test]
async fn an_add_answered_after_its_transaction_ended_does_not_count_for_the_next() {
    let t0 = Instant::now();
    let acc = accumulator(transactional(), 2, t0);
    acc.set_identity(ID);
    acc.begin_transaction().unwrap();
    append(&acc, Some(0), &record(None, "a"), t0).await;
    assert!(sent(acc.drain(t0, 100, &one_leader)).is_empty());
    let stale = acc.take_partitions_to_add().expect("partition 0 is wanted");
    // Aborted while the add is on its way.
    acc.drop_unsent(&ClientError::FailedPrecondition("aborted".into()));
    acc.end_transaction();
    acc.begin_transaction().unwrap();
    append(&acc, Some(0), &record(None, "b"), t0).await;
    assert!(sent(acc.drain(t0, 100, &one_leader)).is_empty());
    acc.partitions_added(stale);
    assert!(
        sent(acc.drain(t0, 100, &one_leader)).is_empty(),
        "added to the aborted transaction, not this one"
    );
    let add = acc.take_partitions_to_add().expect("added again");
    acc.partitions_added(add);
    assert_eq!(sent(acc.drain(t0, 100, &one_leader)).len(), 1);
}
