//! The quorum's small durable files (vote, committed log id, purge point) and its
//! snapshot: framed, versioned, checksummed, and replaced atomically.
//!
//! Each file is one [`weir_log::framed_file`] frame with a kind field: `magic "WEIRQUOR" |
//! version u16 | kind u16 | payload_len u32 | payload | crc32 u32` (big-endian; CRC-32
//! IEEE over everything before it), the frame of weir-log's checkpoints with the
//! quorum's own magic and kinds (`docs/storage-format.md` § Small framed files). Writes go
//! to `<name>.tmp`, which is fdatasynced, renamed over `<name>`, and the directory
//! fsynced, so a crash leaves the old file or the new one, never a mix. A snapshot is
//! shipped to followers as these exact bytes, so it is checked end to end and stored as
//! received.

use std::fs;
use std::path::Path;

use weir_log::framed_file::{self, FrameError, FramedFileError, Framing};
use weir_log::storage::{FileStorage, Storage};

use super::error::StoreError;

const MAGIC: &[u8; 8] = b"WEIRQUOR";
const VERSION: u16 = 1;
/// The largest payload of a vote, committed log id or purge point file.
pub const MAX_STATE_PAYLOAD_BYTES: usize = 64 * 1024;
/// The largest snapshot (the serialised metadata image); a longer length read from disk
/// or the network is corruption.
pub const MAX_SNAPSHOT_BYTES: usize = 512 * 1024 * 1024;

/// What a file holds; the kind is stored so one file cannot be read as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum FileKind {
    Vote = 1,
    Committed = 2,
    Purged = 3,
    Snapshot = 4,
}

impl FileKind {
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            FileKind::Vote => "vote",
            FileKind::Committed => "committed",
            FileKind::Purged => "purged",
            FileKind::Snapshot => "snapshot",
        }
    }

    /// This kind's frame.
    pub(super) fn framing(self) -> Framing {
        Framing {
            magic: MAGIC,
            version: VERSION,
            kind: Some(self as u16),
            max_payload_bytes: match self {
                FileKind::Snapshot => MAX_SNAPSHOT_BYTES,
                _ => MAX_STATE_PAYLOAD_BYTES,
            },
            what: match self {
                FileKind::Vote => "quorum vote file",
                FileKind::Committed => "quorum committed file",
                FileKind::Purged => "quorum purge point file",
                FileKind::Snapshot => "quorum snapshot",
            },
        }
    }
}

impl From<FramedFileError> for StoreError {
    fn from(e: FramedFileError) -> Self {
        match e {
            FramedFileError::Io { path, source } => StoreError::Io { path, source },
            FramedFileError::Corrupt { path, source } => {
                StoreError::corrupt(path, source.position(), source.to_string())
            }
        }
    }
}

/// The framed bytes of `payload` as a `kind` file.
///
/// Panics if the payload is over the kind's limit: callers check sizes they do not
/// control first.
pub(crate) fn encode(kind: FileKind, payload: &[u8]) -> Vec<u8> {
    kind.framing().encode(payload)
}

/// The payload of framed `kind` bytes, or why they are not a valid `kind` file.
pub(crate) fn decode(kind: FileKind, buf: &[u8]) -> Result<&[u8], FrameError> {
    kind.framing().decode(buf)
}

/// Writes `payload` as the `kind` file in `dir`: temp file, fdatasync, rename, fsync
/// directory.
pub(crate) fn write(dir: &Path, kind: FileKind, payload: &[u8]) -> Result<(), StoreError> {
    write_framed(dir, kind, &encode(kind, payload))
}

/// Writes bytes already framed as a `kind` file (a snapshot received from the leader,
/// checked with [`decode`]) to `dir`, atomically.
pub(crate) fn write_framed(dir: &Path, kind: FileKind, framed: &[u8]) -> Result<(), StoreError> {
    Ok(framed_file::write_atomically(
        &FileStorage,
        dir,
        kind.file_name(),
        framed,
    )?)
}

/// The framed bytes of the `kind` file in `dir`, checked; `Ok(None)` if there is none.
pub(crate) fn read_framed(dir: &Path, kind: FileKind) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(kind
        .framing()
        .read_framed(&FileStorage, &dir.join(kind.file_name()))?)
}

/// The payload of the `kind` file in `dir`; `Ok(None)` if there is none.
pub(crate) fn read(dir: &Path, kind: FileKind) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(kind
        .framing()
        .read(&FileStorage, &dir.join(kind.file_name()))?)
}

/// Reads the `kind` file in `dir` as JSON of `T`.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    dir: &Path,
    kind: FileKind,
) -> Result<Option<T>, StoreError> {
    let Some(payload) = read(dir, kind)? else {
        return Ok(None);
    };
    serde_json::from_slice(&payload).map(Some).map_err(|e| {
        StoreError::corrupt(
            dir.join(kind.file_name()),
            kind.framing().header_bytes() as u64,
            format!("payload does not decode: {e}"),
        )
    })
}

/// Writes `value` as JSON to the `kind` file in `dir`, atomically.
pub(crate) fn write_json<T: serde::Serialize>(
    dir: &Path,
    kind: FileKind,
    value: &T,
) -> Result<(), StoreError> {
    let payload = serde_json::to_vec(value).expect("quorum state serialises");
    write(dir, kind, &payload)
}

/// Fsyncs a directory, so the names created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    FileStorage
        .sync_dir(dir)
        .map_err(|e| StoreError::io(dir, e))
}

/// Creates `dir` (and its parents) if needed, and makes its name durable in its parent.
pub(crate) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path(), FileKind::Vote).unwrap(), None);
        write(dir.path(), FileKind::Vote, b"{\"term\":3}").unwrap();
        assert_eq!(
            read(dir.path(), FileKind::Vote).unwrap().unwrap(),
            b"{\"term\":3}"
        );
        assert!(!dir.path().join("vote.tmp").exists());
    }

    #[test]
    fn every_flipped_byte_is_a_corruption_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), FileKind::Purged, b"{\"index\":7}").unwrap();
        let path = dir.path().join("purged");
        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            fs::write(&path, &bad).unwrap();
            let err = read(dir.path(), FileKind::Purged).unwrap_err();
            assert!(
                matches!(&err, StoreError::Corrupt { path: p, .. } if p == &path),
                "byte {i}: {err}"
            );
        }
        fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(read(dir.path(), FileKind::Purged).is_err());
    }

    use weir_log::framed_file::golden_hex as hex;

    /// Each quorum file's bytes, pinned as the first release wrote them (voters' data
    /// directories hold these): magic | version | kind | payload length | payload |
    /// CRC-32. The vote, committed and purged payloads are openraft's serde JSON of
    /// `Vote`, `Option<LogId>` and `LogId`, pinned too: an openraft upgrade that changes
    /// them must fail here.
    #[test]
    fn golden_bytes_of_every_kind() {
        use openraft::CommittedLeaderId;

        use crate::quorum::types::{LogId, Vote};

        let dir = tempfile::tempdir().unwrap();
        let vote = Vote::new_committed(3, 1);
        let committed = Some(LogId::new(CommittedLeaderId::new(3, 1), 5));
        let purged = LogId::new(CommittedLeaderId::new(2, 1), 4);
        write_json(dir.path(), FileKind::Vote, &vote).unwrap();
        write_json(dir.path(), FileKind::Committed, &committed).unwrap();
        write_json(dir.path(), FileKind::Purged, &purged).unwrap();
        write(dir.path(), FileKind::Snapshot, b"{}").unwrap();

        let cases: [(FileKind, &str, &[u8], &str); 4] = [
            (
                FileKind::Vote,
                "5745495251554f52 0001 0001 00000035",
                br#"{"leader_id":{"term":3,"node_id":1},"committed":true}"#,
                "41b8a56c",
            ),
            (
                FileKind::Committed,
                "5745495251554f52 0001 0002 0000002e",
                br#"{"leader_id":{"term":3,"node_id":1},"index":5}"#,
                "9781b7e7",
            ),
            (
                FileKind::Purged,
                "5745495251554f52 0001 0003 0000002e",
                br#"{"leader_id":{"term":2,"node_id":1},"index":4}"#,
                "e12fe53b",
            ),
            (
                FileKind::Snapshot,
                "5745495251554f52 0001 0004 00000002",
                b"{}",
                "a0a266c1",
            ),
        ];
        for (kind, header, payload, crc) in cases {
            let golden = [&hex(header)[..], payload, &hex(crc)].concat();
            let written = fs::read(dir.path().join(kind.file_name())).unwrap();
            assert_eq!(written, golden, "{kind:?}");
        }
        assert_eq!(read_json(dir.path(), FileKind::Vote).unwrap(), Some(vote));
        assert_eq!(
            read_json(dir.path(), FileKind::Committed).unwrap(),
            Some(committed)
        );
        assert_eq!(
            read_json(dir.path(), FileKind::Purged).unwrap(),
            Some(purged)
        );
        assert_eq!(
            read(dir.path(), FileKind::Snapshot).unwrap().as_deref(),
            Some(&b"{}"[..])
        );
    }

    #[test]
    fn a_file_of_another_kind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), FileKind::Vote, b"{}").unwrap();
        fs::rename(dir.path().join("vote"), dir.path().join("committed")).unwrap();
        let err = read(dir.path(), FileKind::Committed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("kind"), "{err}");
    }

    /// Bytes under the vote, committed or purged file's name, around the payload a real
    /// one holds (the snapshot's are in `state_machine`'s tests).
    fn damaged_state_files() -> impl proptest::strategy::Strategy<Value = (FileKind, Vec<u8>)> {
        use proptest::prelude::*;

        use crate::framed_file_damage::damaged_files;
        let vote = br#"{"leader_id":{"term":3,"node_id":1},"committed":true}"#;
        let log_id = br#"{"leader_id":{"term":3,"node_id":1},"index":5}"#;
        prop_oneof![
            damaged_files(FileKind::Vote.framing(), vote.to_vec())
                .prop_map(|b| (FileKind::Vote, b)),
            damaged_files(FileKind::Committed.framing(), log_id.to_vec())
                .prop_map(|b| (FileKind::Committed, b)),
            damaged_files(FileKind::Purged.framing(), log_id.to_vec())
                .prop_map(|b| (FileKind::Purged, b)),
        ]
    }

    proptest::proptest! {
        /// Whatever lies under the vote, committed or purged file's name, the log store's
        /// `read_json` of its type returns a value or a corruption naming the file: never
        /// a panic.
        #[test]
        fn any_file_is_read_or_refused_as_corrupt((kind, bytes) in damaged_state_files()) {
            use crate::quorum::types::{LogId, Vote};

            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(kind.file_name());
            fs::write(&path, &bytes).unwrap();
            let result = match kind {
                FileKind::Vote => read_json::<Vote>(dir.path(), kind).map(drop),
                FileKind::Committed => read_json::<Option<LogId>>(dir.path(), kind).map(drop),
                FileKind::Purged => read_json::<LogId>(dir.path(), kind).map(drop),
                FileKind::Snapshot => unreachable!("not generated"),
            };
            match result {
                Ok(()) => {}
                Err(StoreError::Corrupt { path: p, .. }) => proptest::prop_assert_eq!(p, path),
                Err(e) => proptest::prop_assert!(false, "{:?}: {}", kind, e),
            }
        }
    }
}
