//! The node identity stamped in a data directory: which node owns it and which cluster
//! it belongs to, so a directory is never served under another node's id, nor joined to
//! another cluster, by mistake (Kafka's `meta.properties`).
//!
//! File layout (`node.weir`): one [`weir_log::framed_file`] frame without a kind field,
//! `magic "WEIRNODE" | version u16 | payload_len u32 | payload (JSON) | crc32 u32`,
//! big-endian, CRC-32 (IEEE) over everything before it, at most [`MAX_IDENTITY_BYTES`]
//! in all; the payload is `{"node_id":1,"cluster_id":"<uuid>"}`
//! (`docs/storage-format.md` § Small framed files).
//!
//! The stamp is written once, when a directory without one is first opened: to
//! `node.weir.tmp`, fdatasynced, renamed over `node.weir`, and the directory fsynced, so a
//! crash leaves no stamp (the next start stamps again) or the whole stamp. It is never
//! rewritten: a corrupt stamp stops the broker, since replacing it would discard the one
//! record of whose directory this is.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weir_log::framed_file::{FramedFileError, Framing};
use weir_log::storage::FileStorage;

use crate::error::MetadataError;
use crate::metadata::ClusterMetadata;
use crate::partition::BrokerId;

/// File name of the identity inside the data directory.
pub const IDENTITY_FILE: &str = "node.weir";
const MAGIC: &[u8; 8] = b"WEIRNODE";
/// Bumped when the payload changes incompatibly.
pub const IDENTITY_VERSION: u16 = 1;
/// An identity file larger than this, frame included, is corrupt (a real one is under 100
/// bytes); checked before the file is read into memory.
pub const MAX_IDENTITY_BYTES: usize = 4096;
/// Longest cluster id accepted (a UUID string is 36 bytes; Kafka's base64 ids are 22).
pub const MAX_CLUSTER_ID_BYTES: usize = 64;

/// A data directory's owner: this node's id and its cluster's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    data_dir: PathBuf,
    stamp: Stamp,
}

/// The payload of `node.weir`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamp {
    node_id: BrokerId,
    cluster_id: String,
}

/// The identity file could not be read or written, or names another node or cluster.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Bad input: node ids are 0 or more (-1 means "no broker" in assignments).
    #[error("node id {0} is negative; node ids are 0 or more")]
    NegativeNodeId(BrokerId),
    /// Bad input: a cluster id that cannot be stamped.
    #[error("cluster id {cluster_id:?} is not usable: {reason}")]
    InvalidClusterId { cluster_id: String, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "node identity file {path} is corrupt: {reason}; it is never rewritten \
         automatically: restore it from a backup, or move the data directory aside and \
         start with a new empty one"
    )]
    Corrupt { path: PathBuf, reason: String },
    /// The metadata file whose cluster id a first stamp adopts could not be read.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(
        "data directory {data_dir} belongs to node {stamped} but this broker was given node \
         id {configured} (--node-id); use that node's own directory or a new empty one"
    )]
    NodeMismatch {
        data_dir: PathBuf,
        stamped: BrokerId,
        configured: BrokerId,
    },
    #[error(
        "data directory {data_dir} belongs to cluster {stamped} but this node is now in \
         cluster {given}; use a directory of cluster {given} or a new empty one"
    )]
    ClusterMismatch {
        data_dir: PathBuf,
        stamped: String,
        given: String,
    },
}

impl NodeIdentity {
    /// Reads the identity stamped in `data_dir`; `Ok(None)` if there is none. Checks
    /// nothing against the configuration (see [`check_node_id`](Self::check_node_id)).
    pub fn load(data_dir: &Path) -> Result<Option<NodeIdentity>, IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        let Some(payload) = FRAMING.read(&FileStorage, &path)? else {
            return Ok(None);
        };
        let stamp = decode(&payload).map_err(|reason| IdentityError::Corrupt { path, reason })?;
        Ok(Some(NodeIdentity {
            data_dir: data_dir.to_path_buf(),
            stamp,
        }))
    }

    /// The identity of `data_dir` for node `node_id`: the stamped one if the directory
    /// has one (refused if it names another node), else a new stamp written durably.
    /// A new stamp keeps the cluster id of the directory's `metadata.weir` if it has one
    /// (a directory from before stamps), else takes a new UUID; a later controller
    /// checks it against the quorum's with [`check_cluster_id`](Self::check_cluster_id).
    /// Creates `data_dir` if needed. Blocking: call it off the async runtime.
    pub fn load_or_create(
        data_dir: &Path,
        node_id: BrokerId,
    ) -> Result<NodeIdentity, IdentityError> {
        if node_id < 0 {
            return Err(IdentityError::NegativeNodeId(node_id));
        }
        if let Some(identity) = NodeIdentity::load(data_dir)? {
            identity.check_node_id(node_id)?;
            return Ok(identity);
        }
        let cluster_id = match ClusterMetadata::load(data_dir)? {
            Some(meta) => meta.cluster_id,
            None => uuid::Uuid::new_v4().to_string(),
        };
        validate_cluster_id(&cluster_id).map_err(|reason| IdentityError::InvalidClusterId {
            cluster_id: cluster_id.clone(),
            reason,
        })?;
        let identity = NodeIdentity {
            data_dir: data_dir.to_path_buf(),
            stamp: Stamp {
                node_id,
                cluster_id,
            },
        };
        identity.store()?;
        tracing::info!(
            node_id,
            cluster_id = identity.stamp.cluster_id,
            dir = %data_dir.display(),
            "stamped data directory with its node identity"
        );
        Ok(identity)
    }

    /// The id of the node that owns the directory.
    /// Stamps a directory that has no stamp with `cluster_id` learned from the metadata
    /// quorum (a new node joining a cluster). Refused if the directory has a stamp
    /// already. Blocking: call it off the async runtime.
    pub fn stamp_joined(
        data_dir: &Path,
        node_id: BrokerId,
        cluster_id: &str,
    ) -> Result<NodeIdentity, IdentityError> {
        if let Some(identity) = NodeIdentity::load(data_dir)? {
            identity.check_node_id(node_id)?;
            identity.check_cluster_id(cluster_id)?;
            return Ok(identity);
        }
        validate_cluster_id(cluster_id).map_err(|reason| IdentityError::InvalidClusterId {
            cluster_id: cluster_id.to_string(),
            reason,
        })?;
        let identity = NodeIdentity {
            data_dir: data_dir.to_path_buf(),
            stamp: Stamp {
                node_id,
                cluster_id: cluster_id.to_string(),
            },
        };
        identity.store()?;
        tracing::info!(node_id, cluster_id, dir = %data_dir.display(), "stamped data directory with the cluster it joined");
        Ok(identity)
    }

    pub fn node_id(&self) -> BrokerId {
        self.stamp.node_id
    }

    /// The id of the cluster the directory belongs to.
    pub fn cluster_id(&self) -> &str {
        &self.stamp.cluster_id
    }

    /// The data directory this identity is stamped in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Refuses a configured node id other than the stamped one.
    pub fn check_node_id(&self, node_id: BrokerId) -> Result<(), IdentityError> {
        if node_id == self.stamp.node_id {
            return Ok(());
        }
        Err(IdentityError::NodeMismatch {
            data_dir: self.data_dir.clone(),
            stamped: self.stamp.node_id,
            configured: node_id,
        })
    }

    /// Refuses a cluster id (learned from the controller quorum, or the metadata) other
    /// than the stamped one: this directory's data belongs to another cluster.
    pub fn check_cluster_id(&self, cluster_id: &str) -> Result<(), IdentityError> {
        if cluster_id == self.stamp.cluster_id {
            return Ok(());
        }
        Err(IdentityError::ClusterMismatch {
            data_dir: self.data_dir.clone(),
            stamped: self.stamp.cluster_id.clone(),
            given: cluster_id.to_owned(),
        })
    }

    /// Writes the stamp: temp file, fdatasync, rename, fsync directory.
    fn store(&self) -> Result<(), IdentityError> {
        let dir = &self.data_dir;
        fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
            path: dir.clone(),
            source,
        })?;
        let payload = serde_json::to_vec(&self.stamp).expect("identity serializes");
        Ok(FRAMING.write(&FileStorage, dir, IDENTITY_FILE, &payload)?)
    }
}

/// A cluster id goes into file names, logs and messages: short printable ASCII.
fn validate_cluster_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("it is empty".into());
    }
    if id.len() > MAX_CLUSTER_ID_BYTES {
        return Err(format!(
            "it is {} bytes; the limit is {MAX_CLUSTER_ID_BYTES}",
            id.len()
        ));
    }
    if let Some(ch) = id.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!("it has the character {ch:?}"));
    }
    Ok(())
}

/// `node.weir`'s frame: no kind field, 14 bytes of header and 4 of CRC around the
/// payload, so the whole file stays within [`MAX_IDENTITY_BYTES`].
const FRAMING: Framing = Framing {
    magic: MAGIC,
    version: IDENTITY_VERSION,
    kind: None,
    max_payload_bytes: MAX_IDENTITY_BYTES - 18,
    what: "node identity file",
};
const _: () = assert!(FRAMING.max_file_bytes() == MAX_IDENTITY_BYTES);

impl From<FramedFileError> for IdentityError {
    fn from(e: FramedFileError) -> Self {
        match e {
            FramedFileError::Io { path, source } => IdentityError::Io { path, source },
            FramedFileError::Corrupt { path, source } => IdentityError::Corrupt {
                path,
                reason: source.to_string(),
            },
        }
    }
}

/// The stamp in a payload, checked as a new stamp would be.
fn decode(payload: &[u8]) -> Result<Stamp, String> {
    let stamp: Stamp = serde_json::from_slice(payload).map_err(|e| format!("bad payload: {e}"))?;
    if stamp.node_id < 0 {
        return Err(format!("node id {} is negative", stamp.node_id));
    }
    validate_cluster_id(&stamp.cluster_id).map_err(|reason| format!("bad cluster id: {reason}"))?;
    Ok(stamp)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn identity_path(dir: &Path) -> PathBuf {
        dir.join(IDENTITY_FILE)
    }

    /// Writes a frame around `payload` with a valid CRC, as a future or foreign writer
    /// might.
    fn write_frame(dir: &Path, version: u16, payload: &[u8]) {
        let framing = Framing { version, ..FRAMING };
        fs::write(identity_path(dir), framing.encode(payload)).unwrap();
    }

    fn assert_corrupt(dir: &Path, what: &str, expected: &str) {
        let before = fs::read(identity_path(dir)).unwrap();
        let err = NodeIdentity::load_or_create(dir, 1).unwrap_err();
        assert!(
            matches!(&err, IdentityError::Corrupt { path, .. } if path == &identity_path(dir)),
            "{what}: {err}"
        );
        let message = err.to_string();
        assert!(message.contains("node.weir"), "{what}: {message}");
        assert!(message.contains(expected), "{what}: {message}");
        assert_eq!(
            fs::read(identity_path(dir)).unwrap(),
            before,
            "{what}: a corrupt stamp is never rewritten"
        );
    }

    #[test]
    fn first_start_stamps_and_later_starts_read_the_same_identity() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("weir-data");
        assert_eq!(NodeIdentity::load(&dir).unwrap(), None);
        let created = NodeIdentity::load_or_create(&dir, 3).unwrap();
        assert_eq!(created.node_id(), 3);
        assert_eq!(created.data_dir(), dir);
        uuid::Uuid::parse_str(created.cluster_id()).expect("a new cluster id is a UUID");
        assert!(identity_path(&dir).exists());
        assert!(!dir.join(format!("{IDENTITY_FILE}.tmp")).exists());

        let bytes = fs::read(identity_path(&dir)).unwrap();
        let again = NodeIdentity::load_or_create(&dir, 3).unwrap();
        assert_eq!(again, created);
        assert_eq!(NodeIdentity::load(&dir).unwrap(), Some(created));
        assert_eq!(
            fs::read(identity_path(&dir)).unwrap(),
            bytes,
            "not rewritten"
        );
    }

    use weir_log::framed_file::golden_hex as hex;

    /// `node.weir`'s bytes, pinned as the first release wrote them (every data directory
    /// holds one, never rewritten): magic | version | payload length | payload (JSON) |
    /// CRC-32; no kind field.
    #[test]
    fn golden_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let identity = NodeIdentity::stamp_joined(dir.path(), 1, "c").unwrap();
        let golden = [
            &hex("574549524e4f4445 0001 0000001e")[..],
            br#"{"node_id":1,"cluster_id":"c"}"#,
            &hex("1e98ceab"),
        ]
        .concat();
        assert_eq!(fs::read(identity_path(dir.path())).unwrap(), golden);
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), Some(identity));
    }

    #[test]
    fn each_new_directory_gets_its_own_cluster_id() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = NodeIdentity::load_or_create(a.path(), 0).unwrap();
        let b = NodeIdentity::load_or_create(b.path(), 0).unwrap();
        assert_ne!(a.cluster_id(), b.cluster_id());
    }

    #[test]
    fn another_node_id_is_refused_naming_the_directory_and_both_ids() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("weir-data");
        NodeIdentity::load_or_create(&dir, 1).unwrap();
        let bytes = fs::read(identity_path(&dir)).unwrap();
        let err = NodeIdentity::load_or_create(&dir, 2).unwrap_err();
        assert!(
            matches!(
                err,
                IdentityError::NodeMismatch {
                    stamped: 1,
                    configured: 2,
                    ..
                }
            ),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "data directory {} belongs to node 1",
                dir.display()
            )),
            "{message}"
        );
        assert!(message.contains("node id 2"), "{message}");
        assert!(message.contains("new empty one"), "{message}");
        assert_eq!(fs::read(identity_path(&dir)).unwrap(), bytes);
        assert_eq!(NodeIdentity::load_or_create(&dir, 1).unwrap().node_id(), 1);
    }

    #[test]
    fn a_directory_from_before_stamps_is_stamped_keeping_its_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        let meta = ClusterMetadata {
            cluster_id: "0b5e1a8c-7c1e-4f43-9d0a-3f1f6c2b9e11".into(),
            topics: BTreeMap::new(),
        };
        meta.store(dir.path()).unwrap();
        let metadata_bytes = fs::read(dir.path().join(crate::metadata::METADATA_FILE)).unwrap();
        let identity = NodeIdentity::load_or_create(dir.path(), 5).unwrap();
        assert_eq!(
            (identity.node_id(), identity.cluster_id()),
            (5, meta.cluster_id.as_str())
        );
        assert_eq!(
            fs::read(dir.path().join(crate::metadata::METADATA_FILE)).unwrap(),
            metadata_bytes,
            "the metadata is left as it was"
        );
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), Some(identity));
    }

    #[test]
    fn a_corrupt_metadata_file_is_not_papered_over_by_a_new_stamp() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(crate::metadata::METADATA_FILE), b"garbage").unwrap();
        let err = NodeIdentity::load_or_create(dir.path(), 0).unwrap_err();
        assert!(matches!(err, IdentityError::Metadata(_)), "{err}");
        assert!(!identity_path(dir.path()).exists());
    }

    #[test]
    fn every_flipped_byte_is_refused_and_the_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        NodeIdentity::load_or_create(dir.path(), 1).unwrap();
        let good = fs::read(identity_path(dir.path())).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(identity_path(dir.path()), &bad).unwrap();
            assert_corrupt(dir.path(), &format!("byte {i}"), "corrupt");
        }
    }

    #[test]
    fn a_bad_crc_is_named() {
        let dir = tempfile::tempdir().unwrap();
        NodeIdentity::load_or_create(dir.path(), 1).unwrap();
        let mut bytes = fs::read(identity_path(dir.path())).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(identity_path(dir.path()), &bytes).unwrap();
        assert_corrupt(dir.path(), "crc", "CRC mismatch");
    }

    #[test]
    fn an_unknown_version_is_refused_even_with_a_valid_crc() {
        let dir = tempfile::tempdir().unwrap();
        write_frame(dir.path(), 2, br#"{"node_id":1,"cluster_id":"c"}"#);
        assert_corrupt(dir.path(), "version 2", "unsupported version 2");
    }

    #[test]
    fn truncated_and_empty_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        NodeIdentity::load_or_create(dir.path(), 1).unwrap();
        let good = fs::read(identity_path(dir.path())).unwrap();
        for len in [
            0,
            1,
            8,
            FRAMING.frame_bytes() - 1,
            FRAMING.frame_bytes(),
            good.len() / 2,
            good.len() - 1,
        ] {
            fs::write(identity_path(dir.path()), &good[..len]).unwrap();
            assert_corrupt(dir.path(), &format!("{len} bytes"), "corrupt");
        }
    }

    #[test]
    fn an_oversized_file_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(identity_path(dir.path()), vec![0u8; MAX_IDENTITY_BYTES + 1]).unwrap();
        assert_corrupt(dir.path(), "oversized", "the limit is 4096");
    }

    #[test]
    fn well_framed_but_meaningless_payloads_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (payload, expected) in [
            (&br#"{"node_id":-1,"cluster_id":"c"}"#[..], "negative"),
            (br#"{"node_id":1,"cluster_id":""}"#, "bad cluster id"),
            (br#"{"node_id":1}"#, "bad payload"),
            (br#"not json"#, "bad payload"),
        ] {
            write_frame(dir.path(), IDENTITY_VERSION, payload);
            assert_corrupt(dir.path(), &String::from_utf8_lossy(payload), expected);
        }
    }

    #[test]
    fn a_negative_node_id_is_bad_input_and_stamps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = NodeIdentity::load_or_create(dir.path(), -1).unwrap_err();
        assert!(matches!(err, IdentityError::NegativeNodeId(-1)), "{err}");
        assert!(!identity_path(dir.path()).exists());
    }

    #[test]
    fn check_cluster_id_refuses_another_cluster_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let identity = NodeIdentity::load_or_create(dir.path(), 0).unwrap();
        identity.check_cluster_id(identity.cluster_id()).unwrap();
        let err = identity.check_cluster_id("other-cluster").unwrap_err();
        let message = err.to_string();
        assert!(message.contains(identity.cluster_id()), "{message}");
        assert!(message.contains("other-cluster"), "{message}");
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        identity.check_node_id(0).unwrap();
        assert!(identity.check_node_id(1).is_err());
    }

    proptest::proptest! {
        /// Whatever lies under the name, `load` returns an identity or a corruption naming
        /// the file: never a panic, and never a stamp that fails the checks a new one
        /// passes.
        #[test]
        fn any_file_is_loaded_or_refused_as_corrupt(
            bytes in crate::framed_file_damage::damaged_files(
                FRAMING,
                br#"{"node_id":1,"cluster_id":"c"}"#.to_vec(),
            ),
        ) {
            let dir = tempfile::tempdir().unwrap();
            fs::write(identity_path(dir.path()), &bytes).unwrap();
            match NodeIdentity::load(dir.path()) {
                Ok(Some(identity)) => {
                    proptest::prop_assert!(identity.node_id() >= 0);
                    proptest::prop_assert!(validate_cluster_id(identity.cluster_id()).is_ok());
                }
                Err(IdentityError::Corrupt { path, .. }) => {
                    proptest::prop_assert_eq!(path, identity_path(dir.path()));
                }
                other => proptest::prop_assert!(false, "{:?}", other),
            }
        }
    }
}
