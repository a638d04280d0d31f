//! The partition's tests: reads around a sync pause, a new leader's offsets, failed
//! fsyncs and reconfiguration, `acks=all` answers at leadership changes, compaction and
//! retention.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_log::{CompactionOutcome, Compression, Record, RecordBatchBuilder, decode_records};

use super::*;
use crate::config::{CLEANUP_POLICY, RETENTION_MS, SEGMENT_BYTES, TopicConfig};

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn open(dir: &Path, policy: &str) -> Arc<Partition> {
    let overrides: BTreeMap<String, String> = [
        (CLEANUP_POLICY, policy),
        (SEGMENT_BYTES, "1024"),
        (RETENTION_MS, "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = TopicConfig::new(overrides).unwrap().effective().unwrap();
    Partition::open("t", "t-id", 0, dir, config, 0, single_replica())
        .await
        .unwrap()
}

/// A single-replica partition with the default topic config.
pub(super) async fn open_default(dir: &Path) -> Arc<Partition> {
    let config = TopicConfig::new(BTreeMap::new())
        .unwrap()
        .effective()
        .unwrap();
    Partition::open("t", "t-id", 0, dir, config, 0, single_replica())
        .await
        .unwrap()
}

/// 60 updates of three keys, timestamps long past `retention.ms`.
async fn fill(p: &Partition) {
    for i in 0..60 {
        let mut b = RecordBatchBuilder::new(Compression::None);
        b.push(&Record {
            key: Some(bytes::Bytes::from(format!("k{}", i % 3))),
            value: Some(bytes::Bytes::from(format!("value-{i:04}-padding-padding"))),
            timestamp: 1_000,
            ..Record::default()
        });
        let batch = ValidatedBatches::new(b.build().unwrap(), 1 << 20).unwrap();
        p.append(batch, Durability::Written).await.unwrap();
    }
    // Visible once synced, as a consumer waits for them (its wait starts the sync).
    let mut hw = p.subscribe();
    tokio::time::timeout(Duration::from_secs(5), hw.wait_for(|hw| *hw == 60))
        .await
        .expect("the high watermark reaches the log end")
        .unwrap();
}

#[tokio::test]
async fn a_reader_arriving_during_a_sync_pause_waits_for_the_sync_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), "delete").await;
    // acks=leader appends with nobody reading: the flusher syncs, finds more appended
    // meanwhile, and pauses before the next sync.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !p
        .shared
        .sync_paused
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flusher never paused"
        );
        p.append(batch_of("before"), Durability::Written)
            .await
            .unwrap();
    }
    // Appended during the pause (20 ms): not synced, so above the high watermark.
    let last = p
        .append(batch_of("during the pause"), Durability::Written)
        .await
        .unwrap()
        .base_offset;
    // A reader that does not long-poll still gets it: its arrival ends the pause and
    // it waits for that one sync.
    let data = p.read(last, 1 << 20).await.unwrap();
    let records: Vec<_> = data
        .batches()
        .flat_map(|b| decode_records(&b).unwrap())
        .filter(|r| r.offset >= last)
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.as_deref(), Some(&b"during the pause"[..]));
}

pub(super) async fn values(p: &Partition) -> Vec<String> {
    let mut out = Vec::new();
    let mut offset = p.offsets().await.unwrap().log_start_offset;
    loop {
        let data = p.read(offset, 4096).await.unwrap();
        if data.records.is_empty() {
            return out;
        }
        for batch in data.batches() {
            for r in decode_records(&batch).unwrap() {
                if r.offset >= offset {
                    out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                }
            }
        }
        offset = data.next_offset;
    }
}

/// Broker 0's leadership of a partition replicated on brokers 0 and 1, at `leader_epoch`
/// with `isr`.
fn led_with(leader_epoch: i32, isr: Vec<BrokerId>) -> PartitionState {
    PartitionState {
        leader: 0,
        leader_epoch,
        replicas: vec![0, 1],
        isr,
    }
}

/// A partition led by broker 0 alone (epoch 0) holding three committed records.
async fn leading_with_three_records(dir: &std::path::Path) -> std::sync::Arc<Partition> {
    let config = TopicConfig::new(BTreeMap::new())
        .unwrap()
        .effective()
        .unwrap();
    let p = Partition::open("t", "t-id", 0, dir, config, 0, led_with(0, vec![0]))
        .await
        .unwrap();
    for _ in 0..3 {
        p.append(batch_of("committed"), Durability::Durable)
            .await
            .unwrap();
    }
    p
}

#[tokio::test]
async fn a_new_leader_gives_no_latest_offset_until_it_has_committed_what_it_inherited() {
    let dir = tempfile::tempdir().unwrap();
    let p = leading_with_three_records(dir.path()).await;
    assert_eq!(p.leader_offsets().await.unwrap().high_watermark, 3);
    // Follower 1 joins the ISR but never fetches: what is appended now stays above
    // the high watermark.
    p.apply_state(&led_with(1, vec![0, 1])).await;
    for _ in 0..2 {
        p.append(batch_of("uncommitted"), Durability::Written)
            .await
            .unwrap();
    }
    assert_eq!(p.leader_offsets().await.unwrap().high_watermark, 3);
    // A new leadership inherits offsets 3 and 4 uncommitted: no latest offset yet.
    p.apply_state(&led_with(2, vec![0, 1])).await;
    let err = p.leader_offsets().await.unwrap_err();
    assert!(
        matches!(err, ClusterError::OffsetNotAvailable { partition: 0, .. }),
        "{err}"
    );
    // Once the ISR is this replica alone the inherited records commit and it
    // publishes.
    p.apply_state(&led_with(3, vec![0])).await;
    p.tick();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match p.leader_offsets().await {
            Ok(offsets) => {
                assert_eq!(offsets.high_watermark, 5);
                break;
            }
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A follower never answers.
    p.apply_state(&PartitionState {
        leader: 1,
        leader_epoch: 4,
        replicas: vec![0, 1],
        isr: vec![0, 1],
    })
    .await;
    let err = p.leader_offsets().await.unwrap_err();
    assert!(
        matches!(err, ClusterError::NotLeader { leader: 1, .. }),
        "{err}"
    );
}

/// A consumer resuming at an offset its old leader gave out must never hear "out of
/// range" from a replica that cannot know (weir-client then resets to the log start
/// and reads the partition again): a replica that does not lead answers NOT_LEADER,
/// and a leader that has not published in its leadership answers a retriable
/// OFFSET_NOT_AVAILABLE past its log end.
#[tokio::test]
async fn only_a_leader_that_has_published_says_an_offset_is_past_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let p = leading_with_three_records(dir.path()).await;
    // A follower of broker 1, whose log may be far ahead of this one's 3 records.
    p.apply_state(&PartitionState {
        leader: 1,
        leader_epoch: 1,
        replicas: vec![0, 1],
        isr: vec![1],
    })
    .await;
    for offset in [1, 3, 10] {
        let err = p.read_start(offset).await.unwrap_err();
        assert!(
            matches!(err, ClusterError::NotLeader { leader: 1, .. }),
            "offset {offset}: {err}"
        );
    }
    // Leading again at a new epoch, with a follower in the ISR that never fetches:
    // it publishes nothing, so offset 10 may have been given out by broker 1.
    p.apply_state(&led_with(2, vec![0, 1])).await;
    p.append(batch_of("inherited"), Durability::Written)
        .await
        .unwrap();
    p.apply_state(&led_with(3, vec![0, 1])).await;
    for err in [
        p.read_start(10).await.unwrap_err(),
        p.read(10, 1 << 20).await.unwrap_err(),
    ] {
        assert!(
            matches!(err, ClusterError::OffsetNotAvailable { partition: 0, .. }),
            "{err}"
        );
    }
    // Inside the log is fine, and past the high watermark is "nothing yet".
    assert_eq!(p.read_start(4).await.unwrap().log_end_offset, 4);
    assert!(p.read(3, 1 << 20).await.unwrap().records.is_empty());
    // Once it has published, its log end is the partition's: past it is out of range.
    p.apply_state(&led_with(4, vec![0])).await;
    p.tick();
    let mut hw = p.subscribe();
    tokio::time::timeout(Duration::from_secs(5), hw.wait_for(|hw| *hw == 4))
        .await
        .expect("the high watermark reaches the log end")
        .unwrap();
    let err = p.read_start(10).await.unwrap_err();
    assert!(
        matches!(err, ClusterError::OffsetOutOfRange { offset: 10, .. }),
        "{err}"
    );
}

/// A single-replica partition on a storage whose `fail_sync`-th fsync fails.
pub(super) async fn open_failing(dir: &Path, fail_sync: u64) -> Arc<Partition> {
    let storage = weir_log::storage::FaultyStorage::new(weir_log::storage::FaultPlan {
        fail_sync_number: Some(fail_sync),
        ..Default::default()
    });
    open_on(dir, storage, DataDirStatus::default()).await
}

/// A single-replica partition on `storage`, in a data directory whose status is
/// `data_dir`.
pub(super) async fn open_on(
    dir: &Path,
    storage: weir_log::storage::FaultyStorage,
    data_dir: DataDirStatus,
) -> Arc<Partition> {
    let config = TopicConfig::new(BTreeMap::new())
        .unwrap()
        .effective()
        .unwrap();
    let host = ReplicaHost {
        storage: LogStorage(Arc::new(storage)),
        data_dir,
        ..ReplicaHost::from(0)
    };
    Partition::open("t", "t-id", 0, dir, config, host, single_replica())
        .await
        .unwrap()
}

/// Leader 0 of replicas [0] at epoch 0.
pub(super) fn single_replica() -> PartitionState {
    PartitionState {
        leader: 0,
        leader_epoch: 0,
        replicas: vec![0],
        isr: vec![0],
    }
}

/// Appends `acks=all` until one fails; returns the values acknowledged and the error.
pub(super) async fn append_until_failure(p: &Partition) -> (Vec<String>, ClusterError) {
    let mut acked = Vec::new();
    for i in 0..1000 {
        let value = format!("record-{i}");
        match p.append(batch_of(&value), Durability::Durable).await {
            Ok(_) => acked.push(value),
            Err(e) => return (acked, e),
        }
    }
    panic!("no fsync failed in 1000 appends");
}

/// Retries `f` until it succeeds (the log is being reopened meanwhile).
pub(super) async fn eventually<T>(
    what: &str,
    mut f: impl AsyncFnMut() -> Result<T, ClusterError>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(
                    matches!(e, ClusterError::LogRecovering { .. }),
                    "{what}: {e}"
                );
                assert!(tokio::time::Instant::now() < deadline, "{what}: {e}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_failed_fsync_reopens_the_log_and_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    // Syncs 1-3 belong to opening the log; some appends succeed first.
    let p = open_failing(dir.path(), 8).await;
    let (acked, err) = append_until_failure(&p).await;
    assert!(!acked.is_empty());
    assert!(
        matches!(
            err,
            ClusterError::Maintenance { .. } | ClusterError::LogRecovering { .. }
        ),
        "{err}"
    );
    // The partition reopens its log by itself and takes appends again.
    eventually("append after the failure", async || {
        p.append(batch_of("after"), Durability::Durable).await
    })
    .await;
    let values = values(&p).await;
    assert_eq!(
        &values[..acked.len()],
        &acked[..],
        "acknowledged records kept"
    );
    assert_eq!(values.last().map(String::as_str), Some("after"));
    assert_eq!(
        values.len(),
        acked.len() + 1,
        "nothing unacknowledged kept: {values:?}"
    );
    p.close().await.unwrap();
}

/// Events posted while the log's write guard is held (a reopen, a reconfigure) wait in
/// the partition's inbox without holding up the poster, and are handled in order once the
/// log is free: the lease lapsed then renewed leaves the replica leading, at the epoch of
/// the registration posted meanwhile.
#[tokio::test]
async fn events_posted_while_the_log_is_busy_wait_and_are_handled_in_order_after() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), "delete").await;
    let held = p.hold_log().await;
    p.set_lease_lapsed(true);
    p.apply_registration(registration(&PartitionState {
        leader: 0,
        leader_epoch: 1,
        replicas: vec![0],
        isr: vec![0],
    }));
    // A lone leader with nothing to publish is at rest: its tick is not even posted.
    p.tick();
    p.set_lease_lapsed(false);
    // The two lease events keep only the last, behind the registration.
    assert_eq!(p.shared.posted_waiting(), 2);
    assert_eq!(p.shared.replica().role(), Role::Leader { leader_epoch: 0 });
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = (p.shared.posted_waiting(), p.shared.replica().role());
        if now == (0, Role::Leader { leader_epoch: 1 }) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.append(batch_of("after"), Durability::Durable)
        .await
        .unwrap();
    p.close().await.unwrap();
}

#[tokio::test]
async fn reconfiguring_a_failed_log_does_not_close_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_failing(dir.path(), 8).await;
    let (acked, _) = append_until_failure(&p).await;
    let overrides = [(SEGMENT_BYTES.to_string(), "2048".to_string())].into();
    let config = TopicConfig::new(overrides).unwrap().effective().unwrap();
    p.reconfigure(config).await.unwrap();
    eventually("append after reconfiguring", async || {
        p.append(batch_of("after"), Durability::Durable).await
    })
    .await;
    assert_eq!(p.config().log.segment_bytes, 2048);
    let values = values(&p).await;
    assert_eq!(&values[..acked.len()], &acked[..]);
    p.close().await.unwrap();
}

pub(super) fn batch_of(value: &str) -> ValidatedBatches {
    let mut b = RecordBatchBuilder::new(Compression::None);
    b.push(&Record {
        value: Some(bytes::Bytes::from(value.to_string())),
        ..Record::default()
    });
    ValidatedBatches::new(b.build().unwrap(), 1 << 20).unwrap()
}

/// An `acks=all` append whose write finishes just after its leadership ended (the
/// appender runs beside the metadata, both under the log's read lock) is answered
/// NOT_LEADER at once; one that waits while its leadership ends is answered then.
/// The first used to wait until its request's timeout: its waiter was pushed after
/// the end of the leadership had failed the waiters there were (found by the
/// compose cluster's rolling restart: writes to a stopping leader waited out their
/// 2 s request timeout).
#[tokio::test]
async fn an_acks_all_append_written_as_its_leadership_ends_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig::new(BTreeMap::new())
        .unwrap()
        .effective()
        .unwrap();
    // Follower 1 never fetches: nothing commits, so only the end of a leadership
    // answers a waiter.
    let state = |leader, leader_epoch| PartitionState {
        leader,
        leader_epoch,
        replicas: vec![0, 1],
        isr: vec![0, 1],
    };
    let p = Partition::open("t", "t-id", 0, dir.path(), config, 0, state(0, 0))
        .await
        .unwrap();
    let waiter = |leader_epoch| {
        let (reply, answer) = oneshot::channel();
        let outcome = AppendOutcome {
            base_offset: 0,
            last_offset: 0,
            records: 1,
            bytes: 70,
            duplicate: false,
        };
        let waiter = driver::AckWaiter {
            leader_epoch,
            outcome,
            reply,
        };
        (waiter, answer)
    };

    // Written under epoch 0, which ended (broker 1 leads at 1) before it waits.
    p.apply_state(&state(1, 1)).await;
    let (late, mut answer) = waiter(0);
    p.shared.await_commit(late);
    let err = answer.try_recv().expect("answered at once").unwrap_err();
    assert!(
        matches!(err, ClusterError::NotLeader { leader: 1, .. }),
        "{err}"
    );

    // Leading again at epoch 2: a waiter waits, until that leadership ends.
    p.apply_state(&state(0, 2)).await;
    let (waiting, mut answer) = waiter(2);
    p.shared.await_commit(waiting);
    assert!(
        answer.try_recv().is_err(),
        "nothing committed, nothing ended"
    );
    p.apply_state(&state(1, 3)).await;
    let err = answer.try_recv().expect("answered by the end").unwrap_err();
    assert!(
        matches!(err, ClusterError::NotLeader { leader: 1, .. }),
        "{err}"
    );
}

/// An `acks=all` append that a concurrent sync committed (the high watermark passed
/// it) before its appender asked to wait is answered at once. It used to wait for a
/// publish that never came, until its request's timeout.
#[tokio::test]
async fn an_acks_all_append_committed_before_it_waits_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), "delete").await;
    let (reply, mut answer) = oneshot::channel();
    let outcome = AppendOutcome {
        base_offset: 0,
        last_offset: 0,
        records: 1,
        bytes: 70,
        duplicate: false,
    };
    // What the flusher publishes after syncing offset 0.
    p.shared.high_watermark.send_replace(1);
    p.shared.await_commit(driver::AckWaiter {
        leader_epoch: 0,
        outcome,
        reply,
    });
    let got = answer.try_recv().expect("answered at once").unwrap();
    assert_eq!((got.base_offset, got.last_offset), (0, 0));
}

#[tokio::test]
async fn a_compacted_topic_keeps_the_newest_value_per_key_and_skips_retention() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), "compact").await;
    fill(&p).await;
    let now = 1_000_000_000;
    let retention = p.apply_retention(now).await.unwrap();
    assert_eq!(retention.segments_deleted, 0, "no delete in the policy");
    let outcome = p.compact(now, DAY).await.unwrap();
    assert!(outcome.records_removed > 40, "{outcome:?}");
    let values = values(&p).await;
    for newest in ["value-0057", "value-0058", "value-0059"] {
        assert!(values.iter().any(|v| v.starts_with(newest)), "{values:?}");
    }
    assert_eq!(p.offsets().await.unwrap().log_end_offset, 60);
    // Not due again until there is as much new data.
    let again = p.compact(now, DAY).await.unwrap();
    assert_eq!(again, CompactionOutcome::default());
    p.close().await.unwrap();
}

#[tokio::test]
async fn a_delete_topic_keeps_retention() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), "delete").await;
    fill(&p).await;
    let retention = p.apply_retention(1_000_000_000).await.unwrap();
    assert!(retention.segments_deleted > 0);
    p.close().await.unwrap();
}

/// An idle partition's log is parked (its files closed) and serves as before: what was
/// acknowledged reads back, and the next append opens it again.
#[tokio::test]
async fn a_parked_partition_serves_reads_and_appends_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), "delete").await;
    p.append(batch_of("one"), Durability::Durable)
        .await
        .unwrap();
    assert!(
        !p.park_if_idle(Duration::from_secs(3600)).await.unwrap(),
        "used just now"
    );
    assert!(p.park_if_idle(Duration::ZERO).await.unwrap());
    assert!(
        !p.park_if_idle(Duration::ZERO).await.unwrap(),
        "parked already"
    );
    assert_eq!(values(&p).await, ["one"]);
    p.append(batch_of("two"), Durability::Durable)
        .await
        .unwrap();
    assert_eq!(values(&p).await, ["one", "two"]);
    p.close().await.unwrap();
}
