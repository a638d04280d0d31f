//! Small state files written atomically: the recovery point, the log start offset, the
//! leader-epoch history, the high watermark and the producer-state snapshot.
//!
//! Each file is `magic "WEIRCKPT" | version u16 | kind u16 | payload_len u32 | payload |
//! crc32 u32` (big-endian; CRC-32 IEEE over everything before it). Writes go to
//! `<name>.tmp`, which is fsynced, renamed over `<name>`, and the directory fsynced, so a
//! crash leaves either the old file or the new one, never a mix.

use std::path::{Path, PathBuf};

use crate::error::CheckpointError;
use crate::storage::Storage;

const MAGIC: &[u8; 8] = b"WEIRCKPT";
const VERSION: u16 = 1;
const FRAME_BYTES: usize = 8 + 2 + 2 + 4 + 4;
/// No checkpoint payload is larger; a length beyond it means corruption.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// What a checkpoint file holds; the kind is stored so a file cannot be mistaken for
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    RecoveryPoint = 1,
    LogStartOffset = 2,
    LeaderEpochs = 3,
    HighWatermark = 4,
    ProducerState = 5,
}

impl Kind {
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::RecoveryPoint => "recovery-point.checkpoint",
            Kind::LogStartOffset => "log-start-offset.checkpoint",
            Kind::LeaderEpochs => "leader-epoch.checkpoint",
            Kind::HighWatermark => "high-watermark.checkpoint",
            Kind::ProducerState => "producer-state.checkpoint",
        }
    }

    /// The largest payload this kind may have: [`MAX_PAYLOAD_BYTES`], except the
    /// producer-state snapshot, which holds up to `MAX_SNAPSHOT_PRODUCERS` producers.
    pub fn max_payload_bytes(self) -> usize {
        match self {
            Kind::ProducerState => MAX_PRODUCER_STATE_BYTES,
            _ => MAX_PAYLOAD_BYTES,
        }
    }
}

/// Largest producer-state snapshot: `MAX_SNAPSHOT_PRODUCERS` producers of at most 144
/// bytes each, plus its header.
pub const MAX_PRODUCER_STATE_BYTES: usize = 12
    + crate::producers::MAX_SNAPSHOT_PRODUCERS
        * (24 + 24 * crate::producers::PRODUCER_BATCHES_KEPT);

/// Writes `payload` as the `kind` checkpoint in `dir`: temp file, fsync, rename, fsync
/// directory.
pub fn write(
    storage: &dyn Storage,
    dir: &Path,
    kind: Kind,
    payload: &[u8],
) -> Result<(), CheckpointError> {
    assert!(
        payload.len() <= kind.max_payload_bytes(),
        "checkpoint payload over its limit"
    );
    let path = dir.join(kind.file_name());
    let tmp = tmp_path(&path);
    let mut buf = Vec::with_capacity(FRAME_BYTES + payload.len());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_be_bytes());
    buf.extend_from_slice(&(kind as u16).to_be_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_be_bytes());

    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| CheckpointError::io(p, e)
    };
    let file = storage.open(&tmp, true).map_err(io(&tmp))?;
    file.set_len(0).map_err(io(&tmp))?;
    file.write_all_at(&buf, 0).map_err(io(&tmp))?;
    file.sync_data().map_err(io(&tmp))?;
    drop(file);
    storage.rename(&tmp, &path).map_err(io(&path))?;
    storage.sync_dir(dir).map_err(io(dir))?;
    Ok(())
}

/// Reads the `kind` checkpoint in `dir`; `Ok(None)` if there is none.
pub fn read(
    storage: &dyn Storage,
    dir: &Path,
    kind: Kind,
) -> Result<Option<Vec<u8>>, CheckpointError> {
    let path = dir.join(kind.file_name());
    let file = match storage.open(&path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CheckpointError::io(path, e)),
    };
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.clone(),
        reason,
    };
    let len = file
        .size()
        .map_err(|e| CheckpointError::io(path.clone(), e))? as usize;
    if !(FRAME_BYTES..=FRAME_BYTES + kind.max_payload_bytes()).contains(&len) {
        return Err(corrupt(format!("file is {len} bytes")));
    }
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, 0)
        .map_err(|e| CheckpointError::io(path.clone(), e))?;
    if &buf[..8] != MAGIC {
        return Err(corrupt("bad magic".into()));
    }
    let (body, crc) = buf.split_at(len - 4);
    let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    if crc32fast::hash(body) != stored {
        return Err(corrupt("CRC mismatch".into()));
    }
    let version = u16::from_be_bytes([buf[8], buf[9]]);
    if version != VERSION {
        return Err(corrupt(format!("unsupported version {version}")));
    }
    let stored_kind = u16::from_be_bytes([buf[10], buf[11]]);
    if stored_kind != kind as u16 {
        return Err(corrupt(format!(
            "holds kind {stored_kind}, expected {}",
            kind as u16
        )));
    }
    let payload_len = u32::from_be_bytes(buf[12..16].try_into().expect("4 bytes")) as usize;
    if payload_len != len - FRAME_BYTES {
        return Err(corrupt(format!(
            "payload length {payload_len} does not match file size"
        )));
    }
    Ok(Some(buf[16..16 + payload_len].to_vec()))
}

/// Reads a checkpoint whose payload is one `i64` (log start offset, high watermark).
pub fn read_i64(
    storage: &dyn Storage,
    dir: &Path,
    kind: Kind,
) -> Result<Option<i64>, CheckpointError> {
    let Some(payload) = read(storage, dir, kind)? else {
        return Ok(None);
    };
    let mut r = PayloadReader::new(&payload);
    match (r.i64(), r.is_empty()) {
        (Some(value), true) => Ok(Some(value)),
        _ => Err(CheckpointError::Corrupt {
            path: dir.join(kind.file_name()),
            reason: format!("payload of {} bytes is not one i64", payload.len()),
        }),
    }
}

/// Writes a checkpoint whose payload is one `i64`.
pub fn write_i64(
    storage: &dyn Storage,
    dir: &Path,
    kind: Kind,
    value: i64,
) -> Result<(), CheckpointError> {
    write(storage, dir, kind, &value.to_be_bytes())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .expect("checkpoint path has a file name")
        .to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Reads big-endian fields off a checkpoint payload, failing on a short payload.
pub(crate) struct PayloadReader<'a> {
    bytes: &'a [u8],
}

impl<'a> PayloadReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        PayloadReader { bytes }
    }
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FileStorage;

    #[test]
    fn round_trips_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read(&FileStorage, dir.path(), Kind::HighWatermark).unwrap(),
            None
        );
        write(
            &FileStorage,
            dir.path(),
            Kind::HighWatermark,
            &42i64.to_be_bytes(),
        )
        .unwrap();
        let got = read(&FileStorage, dir.path(), Kind::HighWatermark)
            .unwrap()
            .unwrap();
        assert_eq!(got, 42i64.to_be_bytes());
        assert!(!dir.path().join("high-watermark.checkpoint.tmp").exists());

        // Overwrite replaces atomically.
        write(
            &FileStorage,
            dir.path(),
            Kind::HighWatermark,
            &7i64.to_be_bytes(),
        )
        .unwrap();
        let got = read(&FileStorage, dir.path(), Kind::HighWatermark)
            .unwrap()
            .unwrap();
        assert_eq!(got, 7i64.to_be_bytes());

        // A flipped bit is reported, not returned.
        let path = dir.path().join("high-watermark.checkpoint");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[18] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let err = read(&FileStorage, dir.path(), Kind::HighWatermark).unwrap_err();
        assert!(err.to_string().contains("CRC mismatch"), "{err}");
    }

    #[test]
    fn refuses_a_file_of_another_kind() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &FileStorage,
            dir.path(),
            Kind::HighWatermark,
            &1i64.to_be_bytes(),
        )
        .unwrap();
        std::fs::rename(
            dir.path().join(Kind::HighWatermark.file_name()),
            dir.path().join(Kind::LogStartOffset.file_name()),
        )
        .unwrap();
        let err = read(&FileStorage, dir.path(), Kind::LogStartOffset).unwrap_err();
        assert!(err.to_string().contains("kind"), "{err}");
    }
}
