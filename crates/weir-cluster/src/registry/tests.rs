//! The registry against a single-node cluster: topics, records and metadata survive a
//! reopen; admin errors are typed; a data directory of before the quorum migrates.

use std::collections::BTreeMap;
use std::fs;

use super::*;
use crate::partition::Durability;
use weir_log::{Compression, Record, RecordBatchBuilder, ValidatedBatches};

fn batch(values: &[&str]) -> ValidatedBatches {
    let mut b = RecordBatchBuilder::new(Compression::None);
    for v in values {
        b.push(&Record {
            value: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
            timestamp: 1_000,
            ..Record::default()
        });
    }
    ValidatedBatches::new(b.build().unwrap(), 1 << 20).unwrap()
}

#[tokio::test]
async fn topics_and_records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cluster_id;
    {
        let reg = TopicRegistry::open(dir.path(), 0).await.unwrap();
        cluster_id = reg.cluster_id().to_string();
        let t = reg
            .create_topic(
                "orders",
                2,
                0,
                [("retention.ms".into(), "-1".into())].into(),
            )
            .await
            .unwrap();
        let p = t.partition(1).unwrap();
        let out = p
            .append(batch(&["a", "b"]), Durability::Durable)
            .await
            .unwrap();
        assert_eq!((out.base_offset, out.last_offset), (0, 1));
        assert_eq!(p.high_watermark(), 2);
        reg.create_partitions("orders", 3).await.unwrap();
        reg.close().await.unwrap();
    }
    let reg = TopicRegistry::open(dir.path(), 0).await.unwrap();
    assert_eq!(reg.cluster_id(), cluster_id);
    let t = reg.topic("orders").unwrap();
    assert_eq!(t.partition_count(), 3);
    assert_eq!(t.config().overrides().get("retention.ms").unwrap(), "-1");
    let p = t.partition(1).unwrap();
    let offsets = p.offsets().await.unwrap();
    assert_eq!((offsets.high_watermark, offsets.log_end_offset), (2, 2));
    let data = p.read(0, 1 << 20).await.unwrap();
    assert_eq!(data.next_offset, 2);
}

/// Partitions are opened several at a time (`apply::OPEN_CONCURRENCY`), at creation and
/// at a restart: each must still end up at its own index, with its own log.
#[tokio::test]
async fn partitions_opened_concurrently_each_keep_their_own_log() {
    let dir = tempfile::tempdir().unwrap();
    let count = 3 * apply::OPEN_CONCURRENCY as u32 + 5;
    let value = |i: u32| format!("partition-{i}");
    let check = |reg: &TopicRegistry| {
        let t = reg.topic("many").unwrap();
        assert_eq!(t.partition_count(), count);
        assert_eq!(t.partitions().len(), count as usize);
        t
    };
    {
        let reg = TopicRegistry::open(dir.path(), 0).await.unwrap();
        reg.create_topic("many", count, 0, BTreeMap::new())
            .await
            .unwrap();
        let t = check(&reg);
        for i in 0..count {
            let p = t.partition(i).unwrap();
            assert_eq!(p.index(), i);
            let v = value(i);
            p.append(batch(&[v.as_str()]), Durability::Durable)
                .await
                .unwrap();
        }
        reg.close().await.unwrap();
    }
    let reg = TopicRegistry::open(dir.path(), 0).await.unwrap();
    let t = check(&reg);
    for i in 0..count {
        let p = t.partition(i).unwrap();
        assert_eq!(p.index(), i);
        let data = p.read(0, 1 << 20).await.unwrap();
        assert_eq!(data.next_offset, 1, "partition {i}");
        let records: Vec<_> = data
            .batches()
            .flat_map(|b| weir_log::decode_records(&b).unwrap())
            .collect();
        assert_eq!(records.len(), 1, "partition {i}");
        assert_eq!(
            records[0].value.as_deref(),
            Some(value(i).as_bytes()),
            "partition {i}"
        );
    }
    reg.close().await.unwrap();
}

/// A partition whose log is busy (its write guard held, as while it is reopened after a
/// failure) does not hold up the metadata for the others: a topic created meanwhile is
/// applied and takes records at once, and the busy one catches up once its log is free.
#[tokio::test]
async fn a_busy_partition_log_holds_up_no_other_topic() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TopicRegistry::open(dir.path(), 0).await.unwrap();
    let busy = reg
        .create_topic("busy", 1, 0, BTreeMap::new())
        .await
        .unwrap()
        .partition(0)
        .unwrap();
    let held = busy.hold_log().await;
    // Two: the image applies topics in an order of their ids, so the first may come
    // before the busy one; the second's image comes after an image that holds it.
    for name in ["other-1", "other-2"] {
        let created = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            reg.create_topic(name, 2, 0, BTreeMap::new()),
        )
        .await
        .expect("a topic created while another's log is busy is applied")
        .unwrap();
        let out = created
            .partition(1)
            .unwrap()
            .append(batch(&["x"]), Durability::Durable)
            .await
            .unwrap();
        assert_eq!(out.last_offset, 0);
    }
    drop(held);
    let out = busy
        .append(batch(&["y"]), Durability::Durable)
        .await
        .unwrap();
    assert_eq!(out.last_offset, 0);
    reg.close().await.unwrap();
}

#[tokio::test]
async fn admin_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TopicRegistry::open(dir.path(), 0).await.unwrap();
    reg.create_topic("t", 1, 1, BTreeMap::new()).await.unwrap();
    assert!(matches!(
        reg.create_topic("t", 1, 1, BTreeMap::new()).await,
        Err(ClusterError::TopicExists(_))
    ));
    assert!(matches!(
        reg.create_topic("a/b", 1, 1, BTreeMap::new()).await,
        Err(ClusterError::TopicName(_))
    ));
    assert!(matches!(
        reg.create_topic("z", 0, 1, BTreeMap::new()).await,
        Err(ClusterError::InvalidRequest(_))
    ));
    assert!(matches!(
        reg.create_topic("z", 1, 3, BTreeMap::new()).await,
        Err(ClusterError::InvalidReplicationFactor {
            replication_factor: 3,
            brokers: 1
        })
    ));
    assert!(matches!(
        reg.create_partitions("t", 1).await,
        Err(ClusterError::InvalidRequest(_))
    ));
    assert!(matches!(
        reg.topic("nope"),
        Err(ClusterError::UnknownTopic(_))
    ));
    assert!(matches!(
        reg.topic("t").unwrap().partition(1),
        Err(ClusterError::UnknownPartition { count: 1, .. })
    ));
    let p = reg.topic("t").unwrap().partition(0).unwrap();
    assert!(matches!(
        p.read(5, 100).await,
        Err(ClusterError::OffsetOutOfRange {
            high_watermark: 0,
            ..
        })
    ));
}

#[tokio::test]
async fn delete_and_recreate_starts_empty_and_alter_applies() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TopicRegistry::open(dir.path(), 0).await.unwrap();
    let t = reg.create_topic("t", 1, 1, BTreeMap::new()).await.unwrap();
    t.partition(0)
        .unwrap()
        .append(batch(&["x"]), Durability::Written)
        .await
        .unwrap();
    let set = [("max.message.bytes".to_string(), "2048".to_string())].into();
    reg.alter_topic_config("t", &set, &[]).await.unwrap();
    let p = t.partition(0).unwrap();
    assert_eq!(p.config().log.max_message_bytes, 2048);
    assert_eq!(p.offsets().await.unwrap().log_end_offset, 1);
    reg.delete_topic("t").await.unwrap();
    assert!(matches!(
        p.read(0, 10).await,
        Err(ClusterError::PartitionClosed { .. })
    ));
    let t2 = reg.create_topic("t", 1, 1, BTreeMap::new()).await.unwrap();
    assert_ne!(t2.topic_id, t.topic_id);
    assert_eq!(t2.partition(0).unwrap().high_watermark(), 0);
    assert_eq!(
        fs::read_dir(dir.path().join(TOPICS_DIR)).unwrap().count(),
        1
    );
}

#[tokio::test]
async fn a_single_node_data_directory_of_before_the_quorum_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let topic_id;
    {
        let reg = TopicRegistry::open(dir.path(), 0).await.unwrap();
        let t = reg
            .create_topic("legacy", 1, 0, BTreeMap::new())
            .await
            .unwrap();
        topic_id = t.topic_id.clone();
        t.partition(0)
            .unwrap()
            .append(batch(&["kept"]), Durability::Durable)
            .await
            .unwrap();
        reg.close().await.unwrap();
    }
    // Make the directory look like one written before the quorum: its metadata in
    // metadata.weir, no quorum state.
    let legacy = crate::metadata::ClusterMetadata {
        cluster_id: "legacy-cluster".into(),
        topics: [(
            "legacy".to_string(),
            crate::metadata::TopicMetadata {
                name: "legacy".into(),
                topic_id: topic_id.clone(),
                replication_factor: 1,
                configs: BTreeMap::new(),
                partitions: vec![crate::metadata::PartitionAssignment {
                    replicas: vec![0],
                    leader: 0,
                    leader_epoch: 0,
                }],
            },
        )]
        .into(),
    };
    fs::remove_dir_all(dir.path().join("metadata")).unwrap();
    fs::remove_file(dir.path().join(crate::IDENTITY_FILE)).unwrap();
    legacy.store(dir.path()).unwrap();
    let reg = TopicRegistry::open(dir.path(), 0).await.unwrap();
    assert_eq!(reg.cluster_id(), "legacy-cluster");
    let t = reg.topic("legacy").unwrap();
    assert_eq!(t.topic_id, topic_id);
    let data = t.partition(0).unwrap().read(0, 1 << 20).await.unwrap();
    assert_eq!(data.next_offset, 1);
    assert!(!dir.path().join(crate::metadata::METADATA_FILE).exists());
    // A corrupt legacy file is refused clearly instead of being migrated.
    reg.close().await.unwrap();
    drop(reg);
    let other = tempfile::tempdir().unwrap();
    legacy.store(other.path()).unwrap();
    let path = other.path().join(crate::metadata::METADATA_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&path, bytes).unwrap();
    let err = TopicRegistry::open(other.path(), 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("corrupt") && err.contains("metadata.weir"),
        "{err}"
    );
}

#[test]
fn leader_elections_and_isr_changes_are_counted_from_the_second_sighting() {
    let reg = |leader, leader_epoch, isr: &[i32]| PartitionRegistration {
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        leader,
        leader_epoch,
        partition_epoch: 0,
        reassignment: None,
    };
    let mut changes = ReplicationChanges::default();
    let counts = |c: &ReplicationChanges| {
        let c = c.counters;
        (c.leader_elections, c.isr_shrinks, c.isr_expands)
    };
    // First seen at start: nothing counted.
    changes.saw(1, "t", 0, &reg(1, 3, &[1, 2, 3]));
    assert_eq!(counts(&changes), (0, 0, 0));
    // This broker leads: a shrink, an expansion, then one change doing both.
    changes.saw(1, "t", 0, &reg(1, 3, &[1, 2]));
    changes.saw(1, "t", 0, &reg(1, 3, &[1, 2, 3]));
    changes.saw(1, "t", 0, &reg(1, 3, &[1, 2, 4]));
    assert_eq!(counts(&changes), (0, 2, 2));
    // Another broker leads now: an election, and its ISR changes are not ours.
    changes.saw(1, "t", 0, &reg(2, 4, &[2, 4]));
    changes.saw(1, "t", 0, &reg(2, 4, &[2]));
    // No leader is no election; the next leader is.
    changes.saw(1, "t", 0, &reg(-1, 5, &[2]));
    changes.saw(1, "t", 0, &reg(2, 6, &[2]));
    assert_eq!(counts(&changes), (2, 2, 2));
}
