//! The quorum's small durable files (vote, committed log id, purge point) and its
//! snapshot: framed, versioned, checksummed, and replaced atomically.
//!
//! Each file is `magic "WEIRQUOR" | version u16 | kind u16 | payload_len u32 | payload |
//! crc32 u32` (big-endian; CRC-32 IEEE over everything before it): weir-log's
//! checkpoint frame with the quorum's own magic and kinds. Writes go to `<name>.tmp`,
//! which is fsynced, renamed over `<name>`, and the directory fsynced, so a crash leaves
//! the old file or the new one, never a mix. A snapshot is shipped to followers as
//! these exact bytes, so it is checked end to end and stored as received.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::error::StoreError;

const MAGIC: &[u8; 8] = b"WEIRQUOR";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 8 + 2 + 2 + 4;
const FRAME_BYTES: usize = HEADER_BYTES + 4;
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

    fn max_payload(self) -> usize {
        match self {
            FileKind::Snapshot => MAX_SNAPSHOT_BYTES,
            _ => MAX_STATE_PAYLOAD_BYTES,
        }
    }
}

/// The framed bytes of `payload` as a `kind` file.
///
/// Panics if the payload is over the kind's limit: callers check sizes they do not
/// control first.
pub(crate) fn encode(kind: FileKind, payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= kind.max_payload(),
        "{kind:?} payload of {} bytes over its limit",
        payload.len()
    );
    let mut buf = Vec::with_capacity(FRAME_BYTES + payload.len());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_be_bytes());
    buf.extend_from_slice(&(kind as u16).to_be_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_be_bytes());
    buf
}

/// The payload of framed `kind` bytes, or why they are not a valid `kind` file.
pub(crate) fn decode(kind: FileKind, buf: &[u8]) -> Result<&[u8], String> {
    let len = buf.len();
    if !(FRAME_BYTES..=FRAME_BYTES + kind.max_payload()).contains(&len) {
        return Err(format!("{len} bytes is not a {kind:?} file"));
    }
    if &buf[..8] != MAGIC {
        return Err("bad magic (not a Weir quorum file)".into());
    }
    let (body, crc) = buf.split_at(len - 4);
    let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    let actual = crc32fast::hash(body);
    if actual != stored {
        return Err(format!(
            "CRC mismatch (stored {stored:#010x}, computed {actual:#010x})"
        ));
    }
    let version = u16::from_be_bytes([buf[8], buf[9]]);
    if version != VERSION {
        return Err(format!(
            "unsupported version {version} (this broker reads {VERSION})"
        ));
    }
    let stored_kind = u16::from_be_bytes([buf[10], buf[11]]);
    if stored_kind != kind as u16 {
        return Err(format!(
            "holds kind {stored_kind}, expected {} ({kind:?})",
            kind as u16
        ));
    }
    let payload_len = u32::from_be_bytes(buf[12..16].try_into().expect("4 bytes")) as usize;
    if payload_len != len - FRAME_BYTES {
        return Err(format!(
            "payload length {payload_len} does not match the {len}-byte file"
        ));
    }
    Ok(&buf[HEADER_BYTES..len - 4])
}

/// Writes `payload` as the `kind` file in `dir`: temp file, fsync, rename, fsync
/// directory.
pub(crate) fn write(dir: &Path, kind: FileKind, payload: &[u8]) -> Result<(), StoreError> {
    write_framed(dir, kind, &encode(kind, payload))
}

/// Writes bytes already framed as a `kind` file (a snapshot received from the leader,
/// checked with [`decode`]) to `dir`, atomically.
pub(crate) fn write_framed(dir: &Path, kind: FileKind, framed: &[u8]) -> Result<(), StoreError> {
    let path = dir.join(kind.file_name());
    let tmp = dir.join(format!("{}.tmp", kind.file_name()));
    let mut file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    file.write_all(framed)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    sync_dir(dir)
}

/// The framed bytes of the `kind` file in `dir`, checked; `Ok(None)` if there is none.
pub(crate) fn read_framed(dir: &Path, kind: FileKind) -> Result<Option<Vec<u8>>, StoreError> {
    let path = dir.join(kind.file_name());
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let len = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
    // The size is checked before it sizes the buffer.
    if len > (FRAME_BYTES + kind.max_payload()) as u64 {
        return Err(StoreError::corrupt(
            path,
            0,
            format!("{len} bytes is over the {kind:?} limit"),
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    io::Read::read_to_end(&mut io::Read::take(file, len), &mut buf)
        .map_err(|e| StoreError::io(&path, e))?;
    decode(kind, &buf).map_err(|reason| StoreError::corrupt(&path, 0, reason))?;
    Ok(Some(buf))
}

/// The payload of the `kind` file in `dir`; `Ok(None)` if there is none.
pub(crate) fn read(dir: &Path, kind: FileKind) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(read_framed(dir, kind)?.map(|framed| {
        decode(kind, &framed)
            .expect("read_framed checked the frame")
            .to_vec()
    }))
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
            HEADER_BYTES as u64,
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
    File::open(dir)
        .and_then(|d| d.sync_all())
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
}
