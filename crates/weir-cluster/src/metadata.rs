//! Cluster metadata as persisted in the data directory: the cluster id, and every topic
//! with its id, configuration and partition assignments (replicas, leader, leader
//! epoch: room for replication, though one node fills them with itself).
//!
//! File layout (`metadata.weir`):
//! `magic "WEIRMETA" | version u16 | payload_len u32 | payload (JSON) | crc32 u32`,
//! big-endian, CRC-32 (IEEE) over everything before it. JSON keeps the file readable
//! by a person and lets fields be added with defaults; the frame makes a torn or
//! flipped file an error instead of a silently different cluster. Writes go to a
//! temporary name, are fsynced, renamed over the file, and the directory is fsynced,
//! as weir-log's checkpoints do, so a crash leaves the old file or the new one.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::MetadataError;
use crate::framed_file::{FRAME_BYTES, Framing};

/// File name of the metadata inside the data directory.
pub const METADATA_FILE: &str = "metadata.weir";
const MAGIC: &[u8; 8] = b"WEIRMETA";
/// Bumped when the payload changes incompatibly.
pub const METADATA_VERSION: u16 = 1;
/// A metadata file larger than this is taken as corrupt rather than read into memory
/// (a million partitions fit well inside it).
pub const MAX_METADATA_BYTES: usize = 256 * 1024 * 1024;

/// Everything the broker must remember across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// Fixed when the data directory is first formatted.
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMetadata>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    /// New for every creation of a name; also names the topic's directory, so a
    /// re-created topic never sees an old incarnation's files.
    pub topic_id: String,
    pub replication_factor: u32,
    /// The keys set on the topic (defaults are not stored, so a changed default applies).
    pub configs: BTreeMap<String, String>,
    /// Partitions in index order.
    pub partitions: Vec<PartitionAssignment>,
}

/// Where one partition lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// Broker ids holding a copy; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// Current leader, -1 if none.
    pub leader: i32,
    /// Bumped on every leadership change.
    pub leader_epoch: i32,
}

impl ClusterMetadata {
    /// Reads the metadata in `dir`; `Ok(None)` if the directory holds none yet.
    pub fn load(dir: &Path) -> Result<Option<ClusterMetadata>, MetadataError> {
        let path = dir.join(METADATA_FILE);
        let buf = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(MetadataError::Io { path, source }),
        };
        decode(&buf)
            .map(Some)
            .map_err(|reason| MetadataError::Corrupt { path, reason })
    }

    /// Writes the metadata to `dir` atomically (temp, fsync, rename, fsync directory).
    pub fn store(&self, dir: &Path) -> Result<(), MetadataError> {
        crate::framed_file::write_atomically(dir, METADATA_FILE, &encode(self))
            .map_err(|(path, source)| MetadataError::Io { path, source })
    }
}

/// `metadata.weir`'s frame.
const FRAMING: Framing = Framing {
    magic: MAGIC,
    version: METADATA_VERSION,
    max_file_bytes: FRAME_BYTES + MAX_METADATA_BYTES,
    what: "metadata file",
};

fn encode(meta: &ClusterMetadata) -> Vec<u8> {
    let payload = serde_json::to_vec_pretty(meta).expect("metadata serializes");
    FRAMING.encode(&payload)
}

fn decode(buf: &[u8]) -> Result<ClusterMetadata, String> {
    let payload = FRAMING.decode(buf)?;
    serde_json::from_slice(payload).map_err(|e| format!("bad payload: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClusterMetadata {
        let mut topics = BTreeMap::new();
        topics.insert(
            "orders".to_string(),
            TopicMetadata {
                name: "orders".into(),
                topic_id: "id-1".into(),
                replication_factor: 1,
                configs: [("retention.ms".to_string(), "1000".to_string())].into(),
                partitions: vec![
                    PartitionAssignment {
                        replicas: vec![0],
                        leader: 0,
                        leader_epoch: 0,
                    };
                    3
                ],
            },
        );
        ClusterMetadata {
            cluster_id: "cluster-1".into(),
            topics,
        }
    }

    #[test]
    fn round_trips_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ClusterMetadata::load(dir.path()).unwrap(), None);
        sample().store(dir.path()).unwrap();
        assert_eq!(ClusterMetadata::load(dir.path()).unwrap(), Some(sample()));
        assert!(!dir.path().join(format!("{METADATA_FILE}.tmp")).exists());
    }

    #[test]
    fn every_flipped_byte_is_a_clear_corruption_error() {
        let dir = tempfile::tempdir().unwrap();
        sample().store(dir.path()).unwrap();
        let path = dir.path().join(METADATA_FILE);
        let good = fs::read(&path).unwrap();
        for i in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            let err = ClusterMetadata::load(dir.path()).unwrap_err();
            assert!(
                matches!(&err, MetadataError::Corrupt { path: p, .. } if p == &path),
                "byte {i}: {err}"
            );
            assert!(err.to_string().contains("metadata.weir"), "{err}");
        }
    }

    #[test]
    fn truncated_or_foreign_files_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        sample().store(dir.path()).unwrap();
        let path = dir.path().join(METADATA_FILE);
        let good = fs::read(&path).unwrap();
        fs::write(&path, &good[..good.len() / 2]).unwrap();
        let err = ClusterMetadata::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        fs::write(&path, b"{\"cluster_id\": \"x\"}").unwrap();
        let err = ClusterMetadata::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
