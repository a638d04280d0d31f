//! The topic registry: every topic and partition this broker holds, created, grown,
//! reconfigured and deleted under one admin lock, with the metadata file written before
//! a change becomes visible.
//!
//! Data directory layout:
//!
//! ```text
//! <data_dir>/.lock                     held while a broker uses the directory
//! <data_dir>/metadata.weir             cluster id, topics, configs, assignments
//! <data_dir>/topics/<topic_id>/<n>/    partition n's log (weir-log's layout)
//! ```
//!
//! Directories are named by topic id, not name, so deleting and re-creating a name
//! never mixes two incarnations' files. A crash between writing a topic's logs and its
//! metadata (or between dropping its metadata and removing its files) leaves a
//! directory no topic names; opening the registry removes it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::Mutex;

use crate::config::{EffectiveConfig, TopicConfig};
use crate::error::{ClusterError, MetadataError};
use crate::metadata::{ClusterMetadata, PartitionAssignment, TopicMetadata};
use crate::partition::{BrokerId, Partition, PartitionState};
use crate::topic_name::{is_internal, validate_topic_name};

/// Most partitions one topic may have; each is a directory with open files.
pub const MAX_PARTITIONS_PER_TOPIC: u32 = 10_000;
/// Directory under the data directory holding partition logs.
const TOPICS_DIR: &str = "topics";

/// One topic: its identity, settings and partitions.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub topic_id: String,
    pub replication_factor: u32,
    config: RwLock<TopicConfig>,
    partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Topic {
    /// The partition numbered `index`.
    pub fn partition(&self, index: u32) -> Result<Arc<Partition>, ClusterError> {
        let partitions = self.partitions.read().expect("partitions lock");
        partitions
            .get(index as usize)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownPartition {
                topic: self.name.clone(),
                partition: index,
                count: partitions.len() as u32,
            })
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().expect("partitions lock").clone()
    }

    pub fn partition_count(&self) -> u32 {
        self.partitions.read().expect("partitions lock").len() as u32
    }

    pub fn config(&self) -> TopicConfig {
        self.config.read().expect("config lock").clone()
    }

    pub fn is_internal(&self) -> bool {
        is_internal(&self.name)
    }
}

/// Every topic on this broker.
#[derive(Debug)]
pub struct TopicRegistry {
    data_dir: PathBuf,
    broker_id: BrokerId,
    cluster_id: String,
    /// Serializes admin changes; holds the metadata as last written.
    admin: Mutex<ClusterMetadata>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Bumped after every change of the set of topics or their partition counts.
    metadata_version: AtomicU64,
    _lock: File,
}

impl TopicRegistry {
    /// Opens the registry in `data_dir` (formatting it on first use) and opens every
    /// partition's log.
    pub async fn open(data_dir: &Path, broker_id: BrokerId) -> Result<TopicRegistry, ClusterError> {
        let io = |p: &Path| {
            let path = p.to_path_buf();
            move |source| ClusterError::Io { path, source }
        };
        fs::create_dir_all(data_dir.join(TOPICS_DIR)).map_err(io(data_dir))?;
        let lock =
            weir_log::storage::lock_dir(data_dir, "the data directory is in use by another broker")
                .map_err(io(&data_dir.join(weir_log::storage::LOCK_FILE)))?;
        let metadata = match ClusterMetadata::load(data_dir)? {
            Some(m) => m,
            None => {
                let m = ClusterMetadata {
                    cluster_id: uuid::Uuid::new_v4().to_string(),
                    topics: BTreeMap::new(),
                };
                store(data_dir, &m).await?;
                tracing::info!(cluster_id = m.cluster_id, dir = %data_dir.display(), "formatted data directory");
                m
            }
        };
        let mut topics = BTreeMap::new();
        for meta in metadata.topics.values() {
            let topic = open_topic(data_dir, broker_id, meta).await?;
            topics.insert(meta.name.clone(), topic);
        }
        remove_orphans(data_dir, &metadata);
        Ok(TopicRegistry {
            data_dir: data_dir.to_path_buf(),
            broker_id,
            cluster_id: metadata.cluster_id.clone(),
            admin: Mutex::new(metadata),
            topics: RwLock::new(topics),
            metadata_version: AtomicU64::new(1),
            _lock: lock,
        })
    }

    /// A counter bumped after every topic creation, deletion and partition increase (not
    /// config changes), so a caller can tell cheaply whether [`topics`](Self::topics)
    /// changed since it last looked. Starts at 1.
    pub fn metadata_version(&self) -> u64 {
        self.metadata_version.load(Ordering::Acquire)
    }

    fn bump_metadata_version(&self) {
        self.metadata_version.fetch_add(1, Ordering::AcqRel);
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn broker_id(&self) -> BrokerId {
        self.broker_id
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, ClusterError> {
        self.topics
            .read()
            .expect("topics lock")
            .get(name)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownTopic(name.to_string()))
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect()
    }

    /// Creates a topic. `replication_factor` 0 means the default (1); more copies than
    /// brokers (one) are refused.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, ClusterError> {
        validate_topic_name(name)?;
        check_partition_count(partitions)?;
        let replication_factor = match replication_factor {
            0 | 1 => 1,
            n => {
                return Err(ClusterError::InvalidRequest(format!(
                    "replication factor {n} is larger than the number of brokers (1)"
                )));
            }
        };
        let config = TopicConfig::new(configs)?;
        let mut admin = self.admin.lock().await;
        if admin.topics.contains_key(name) {
            return Err(ClusterError::TopicExists(name.to_string()));
        }
        let meta = TopicMetadata {
            name: name.to_string(),
            topic_id: uuid::Uuid::new_v4().to_string(),
            replication_factor,
            configs: config.overrides().clone(),
            partitions: (0..partitions).map(|_| self.assignment()).collect(),
        };
        // Logs first, metadata second: a crash in between leaves only an orphan
        // directory, which the next open removes.
        let topic = open_topic(&self.data_dir, self.broker_id, &meta).await?;
        let mut next = admin.clone();
        next.topics.insert(name.to_string(), meta);
        store(&self.data_dir, &next).await?;
        *admin = next;
        self.topics
            .write()
            .expect("topics lock")
            .insert(name.to_string(), topic.clone());
        self.bump_metadata_version();
        tracing::info!(
            topic = name,
            partitions,
            topic_id = topic.topic_id,
            "topic created"
        );
        Ok(topic)
    }

    /// Deletes a topic and its records.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClusterError> {
        let mut admin = self.admin.lock().await;
        let mut next = admin.clone();
        let meta = next
            .topics
            .remove(name)
            .ok_or_else(|| ClusterError::UnknownTopic(name.to_string()))?;
        store(&self.data_dir, &next).await?;
        *admin = next;
        let topic = self.topics.write().expect("topics lock").remove(name);
        self.bump_metadata_version();
        if let Some(topic) = topic {
            for p in topic.partitions() {
                if let Err(e) = p.close().await {
                    tracing::warn!(topic = name, partition = p.index(), error = %e, "closing a deleted partition failed");
                }
            }
        }
        let dir = topic_dir(&self.data_dir, &meta.topic_id);
        tokio::task::spawn_blocking(move || fs::remove_dir_all(&dir).map_err(|e| (dir, e)))
            .await
            .map_err(|e| ClusterError::TaskFailed(e.to_string()))?
            .map_err(|(path, source)| ClusterError::Io { path, source })?;
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Grows a topic to `total` partitions (more than it has).
    pub async fn create_partitions(
        &self,
        name: &str,
        total: u32,
    ) -> Result<Arc<Topic>, ClusterError> {
        check_partition_count(total)?;
        let mut admin = self.admin.lock().await;
        let topic = self.topic(name)?;
        let current = topic.partition_count();
        if total <= current {
            return Err(ClusterError::InvalidRequest(format!(
                "topic {name:?} has {current} partitions; the new count must be larger (partitions are never removed)"
            )));
        }
        let mut next = admin.clone();
        let meta = next
            .topics
            .get_mut(name)
            .expect("registry and metadata agree");
        let effective = topic.config().effective()?;
        let mut added = Vec::new();
        for index in current..total {
            let assignment = self.assignment();
            let dir = partition_dir(&self.data_dir, &meta.topic_id, index);
            added.push(
                Partition::open(
                    name,
                    &meta.topic_id,
                    index,
                    &dir,
                    effective.clone(),
                    self.broker_id,
                    state_of(&assignment, self.broker_id),
                )
                .await?,
            );
            meta.partitions.push(assignment);
        }
        store(&self.data_dir, &next).await?;
        *admin = next;
        topic
            .partitions
            .write()
            .expect("partitions lock")
            .extend(added);
        self.bump_metadata_version();
        tracing::info!(topic = name, from = current, to = total, "partitions added");
        Ok(topic)
    }

    /// Sets and resets configuration keys of a topic, all or nothing, and applies the
    /// result to its open partitions (each reopens its log with the new settings).
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        reset: &[String],
    ) -> Result<TopicConfig, ClusterError> {
        let mut admin = self.admin.lock().await;
        let topic = self.topic(name)?;
        let config = topic.config().altered(set, reset)?;
        let effective: EffectiveConfig = config.effective()?;
        let mut next = admin.clone();
        next.topics
            .get_mut(name)
            .expect("registry and metadata agree")
            .configs = config.overrides().clone();
        store(&self.data_dir, &next).await?;
        *admin = next;
        *topic.config.write().expect("config lock") = config.clone();
        for p in topic.partitions() {
            p.reconfigure(effective.clone()).await?;
        }
        tracing::info!(topic = name, "topic config altered");
        Ok(config)
    }

    /// Flushes and closes every partition (at shutdown).
    pub async fn close(&self) -> Result<(), ClusterError> {
        let _admin = self.admin.lock().await;
        let mut first_error = None;
        for topic in self.topics() {
            for p in topic.partitions() {
                if let Err(e) = p.close().await {
                    tracing::error!(topic = topic.name, partition = p.index(), error = %e, "closing partition failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn assignment(&self) -> PartitionAssignment {
        PartitionAssignment {
            replicas: vec![self.broker_id],
            leader: self.broker_id,
            leader_epoch: 0,
        }
    }
}

fn check_partition_count(partitions: u32) -> Result<(), ClusterError> {
    if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
        return Err(ClusterError::InvalidRequest(format!(
            "partition count {partitions} is outside 1..={MAX_PARTITIONS_PER_TOPIC}"
        )));
    }
    Ok(())
}

fn topic_dir(data_dir: &Path, topic_id: &str) -> PathBuf {
    data_dir.join(TOPICS_DIR).join(topic_id)
}

fn partition_dir(data_dir: &Path, topic_id: &str, index: u32) -> PathBuf {
    topic_dir(data_dir, topic_id).join(index.to_string())
}

fn state_of(assignment: &PartitionAssignment, broker_id: BrokerId) -> PartitionState {
    // One node: the leader is this broker and the ISR is every replica that is this
    // broker. With replication the ISR comes from the controller instead.
    PartitionState {
        leader: assignment.leader,
        leader_epoch: assignment.leader_epoch,
        replicas: assignment.replicas.clone(),
        isr: assignment
            .replicas
            .iter()
            .copied()
            .filter(|r| *r == broker_id)
            .collect(),
    }
}

async fn open_topic(
    data_dir: &Path,
    broker_id: BrokerId,
    meta: &TopicMetadata,
) -> Result<Arc<Topic>, ClusterError> {
    let config = TopicConfig::new(meta.configs.clone())?;
    let effective = config.effective()?;
    let mut partitions = Vec::with_capacity(meta.partitions.len());
    for (index, assignment) in meta.partitions.iter().enumerate() {
        let dir = partition_dir(data_dir, &meta.topic_id, index as u32);
        partitions.push(
            Partition::open(
                &meta.name,
                &meta.topic_id,
                index as u32,
                &dir,
                effective.clone(),
                broker_id,
                state_of(assignment, broker_id),
            )
            .await?,
        );
    }
    Ok(Arc::new(Topic {
        name: meta.name.clone(),
        topic_id: meta.topic_id.clone(),
        replication_factor: meta.replication_factor,
        config: RwLock::new(config),
        partitions: RwLock::new(partitions),
    }))
}

async fn store(data_dir: &Path, metadata: &ClusterMetadata) -> Result<(), MetadataError> {
    let (dir, metadata) = (data_dir.to_path_buf(), metadata.clone());
    tokio::task::spawn_blocking(move || metadata.store(&dir))
        .await
        .expect("metadata store task panicked")
}

/// Removes topic directories no topic names (left by a crash mid-create or mid-delete).
fn remove_orphans(data_dir: &Path, metadata: &ClusterMetadata) {
    let Ok(entries) = fs::read_dir(data_dir.join(TOPICS_DIR)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !metadata.topics.values().any(|t| t.topic_id == name) {
            tracing::warn!(dir = %entry.path().display(), "removing a topic directory no topic names");
            if let Err(e) = fs::remove_dir_all(entry.path()) {
                tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove orphan directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
            Err(ClusterError::InvalidRequest(_))
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
    async fn a_corrupt_metadata_file_fails_open_clearly() {
        let dir = tempfile::tempdir().unwrap();
        TopicRegistry::open(dir.path(), 0).await.unwrap();
        let path = dir.path().join(crate::metadata::METADATA_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = TopicRegistry::open(dir.path(), 0)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("corrupt") && err.contains("metadata.weir"),
            "{err}"
        );
    }
}
