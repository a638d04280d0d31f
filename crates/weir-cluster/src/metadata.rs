//! The metadata file of a single-node broker from before the metadata quorum
//! (`metadata.weir`): the cluster id, and every topic with its id, configuration and
//! partition assignments. Brokers no longer write it; a voter reads it once to migrate it
//! into the quorum (`quorum::legacy`), and a node without a stamp adopts its cluster id
//! (`node_identity`). [`ClusterMetadata::store`] remains for tests and tools that build
//! such a directory.
//!
//! File layout: one [`weir_log::framed_file`] frame without a kind field,
//! `magic "WEIRMETA" | version u16 | payload_len u32 | payload | crc32 u32`, big-endian,
//! CRC-32 (IEEE) over everything before it; the payload is [`ClusterMetadata`] as pretty
//! JSON (`docs/storage-format.md` § Small framed files). JSON keeps the file readable by
//! a person and lets fields be added with defaults; the frame makes a torn or flipped
//! file an error instead of a silently different cluster. Writes replace the file
//! atomically (temporary name, fdatasync, rename, directory fsync).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use weir_log::framed_file::Framing;
use weir_log::storage::FileStorage;

use crate::error::MetadataError;

/// File name of the metadata inside the data directory.
pub const METADATA_FILE: &str = "metadata.weir";
const MAGIC: &[u8; 8] = b"WEIRMETA";
/// Bumped when the payload changes incompatibly.
pub const METADATA_VERSION: u16 = 1;
/// A metadata payload larger than this is taken as corrupt rather than read into memory
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
    /// Reads the metadata in `dir`; `Ok(None)` if the directory holds none.
    pub fn load(dir: &Path) -> Result<Option<ClusterMetadata>, MetadataError> {
        let path = dir.join(METADATA_FILE);
        let Some(payload) = FRAMING.read(&FileStorage, &path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&payload)
            .map(Some)
            .map_err(|e| MetadataError::Corrupt {
                path,
                reason: format!("bad payload: {e}"),
            })
    }

    /// Writes the metadata to `dir` atomically (temp, fdatasync, rename, fsync
    /// directory).
    ///
    /// Panics if the JSON is over [`MAX_METADATA_BYTES`].
    pub fn store(&self, dir: &Path) -> Result<(), MetadataError> {
        let payload = serde_json::to_vec_pretty(self).expect("metadata serializes");
        Ok(FRAMING.write(&FileStorage, dir, METADATA_FILE, &payload)?)
    }
}

/// `metadata.weir`'s frame: no kind field.
const FRAMING: Framing = Framing {
    magic: MAGIC,
    version: METADATA_VERSION,
    kind: None,
    max_payload_bytes: MAX_METADATA_BYTES,
    what: "metadata file",
};

#[cfg(test)]
mod tests {
    use std::fs;

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

    use weir_log::framed_file::golden_hex as hex;

    /// `metadata.weir`'s bytes, pinned as the single-node releases wrote them (data
    /// directories from before the quorum hold these until they are migrated): magic |
    /// version | payload length | payload (pretty JSON) | CRC-32; no kind field.
    #[test]
    fn golden_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let meta = ClusterMetadata {
            cluster_id: "c".into(),
            topics: BTreeMap::new(),
        };
        meta.store(dir.path()).unwrap();
        let golden = [
            &hex("574549524d455441 0001 00000027")[..],
            b"{\n  \"cluster_id\": \"c\",\n  \"topics\": {}\n}",
            &hex("03fc7d00"),
        ]
        .concat();
        assert_eq!(fs::read(dir.path().join(METADATA_FILE)).unwrap(), golden);
        assert_eq!(ClusterMetadata::load(dir.path()).unwrap(), Some(meta));
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

    proptest::proptest! {
        /// Whatever lies under the name, `load` returns metadata or a corruption naming
        /// the file: never a panic, never an allocation sized by the file's own claims.
        #[test]
        fn any_file_is_loaded_or_refused_as_corrupt(
            bytes in crate::framed_file_damage::damaged_files(
                FRAMING,
                serde_json::to_vec_pretty(&sample()).unwrap(),
            ),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(METADATA_FILE);
            fs::write(&path, &bytes).unwrap();
            match ClusterMetadata::load(dir.path()) {
                Ok(Some(_)) => {}
                Err(MetadataError::Corrupt { path: p, .. }) => proptest::prop_assert_eq!(p, path),
                other => proptest::prop_assert!(false, "{:?}", other),
            }
        }
    }
}
