//! Small state files written atomically: the recovery point, the log start offset, the
//! leader-epoch history, the high watermark and the producer-state snapshot.
//!
//! Each file is one [`framed_file`](crate::framed_file) frame with a kind field:
//! `magic "WEIRCKPT" | version u16 | kind u16 | payload_len u32 | payload | crc32 u32`
//! (big-endian; CRC-32 IEEE over everything before it), replaced atomically
//! ([`write_atomically`](crate::framed_file::write_atomically): `<name>.tmp`, fdatasync,
//! rename over `<name>`, directory fsync), so a crash leaves either the old file or the
//! new one, never a mix. The recovery point is the exception ([`Kind::written_in_place`]):
//! written over its file and fdatasynced, a crash may leave it torn, which its CRC
//! refuses and which costs a longer scan at the next open.

use std::path::Path;

use crate::error::CheckpointError;
use crate::framed_file::{Framing, write_atomically, write_in_place};
use crate::storage::Storage;

const MAGIC: &[u8; 8] = b"WEIRCKPT";
const VERSION: u16 = 1;
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

    /// Whether [`write`] writes this kind over its file in place
    /// ([`write_in_place`](crate::framed_file::write_in_place)) rather than replacing it
    /// atomically: only the recovery point, which a log writes up to once a second while
    /// it takes appends, and whose loss or damage costs only a longer scan at the next
    /// open. Replaced atomically, it cost a file created, two syncs and a rename each time:
    /// across 1,000 busy partitions, a fifth of the broker's CPU (BENCHMARKS.md § Partition
    /// scale).
    pub fn written_in_place(self) -> bool {
        matches!(self, Kind::RecoveryPoint)
    }

    /// This kind's frame.
    pub fn framing(self) -> Framing {
        Framing {
            magic: MAGIC,
            version: VERSION,
            kind: Some(self as u16),
            max_payload_bytes: self.max_payload_bytes(),
            what: match self {
                Kind::RecoveryPoint => "recovery point checkpoint",
                Kind::LogStartOffset => "log start offset checkpoint",
                Kind::LeaderEpochs => "leader epoch checkpoint",
                Kind::HighWatermark => "high watermark checkpoint",
                Kind::ProducerState => "producer state checkpoint",
            },
        }
    }
}

/// Largest producer-state snapshot: `MAX_SNAPSHOT_PRODUCERS` producers of at most 144
/// bytes each, as many ongoing transactions of 16 bytes and coordinator epochs of 12,
/// plus its three counts and offset.
pub const MAX_PRODUCER_STATE_BYTES: usize = 20
    + crate::producers::MAX_SNAPSHOT_PRODUCERS
        * (24 + 24 * crate::producers::PRODUCER_BATCHES_KEPT + 16 + 12);

/// Writes `payload` as the `kind` checkpoint in `dir`: temp file, fdatasync, rename,
/// fsync directory; or, for a kind [`Kind::written_in_place`], over the file and
/// fdatasync.
///
/// Panics if the payload is over the kind's limit (a checkpoint this build would refuse
/// to read).
pub fn write(
    storage: &dyn Storage,
    dir: &Path,
    kind: Kind,
    payload: &[u8],
) -> Result<(), CheckpointError> {
    let bytes = kind.framing().encode(payload);
    let name = kind.file_name();
    if kind.written_in_place() {
        write_in_place(storage, dir, name, &bytes)?;
    } else {
        write_atomically(storage, dir, name, &bytes)?;
    }
    Ok(())
}

/// Reads the `kind` checkpoint in `dir`; `Ok(None)` if there is none.
pub fn read(
    storage: &dyn Storage,
    dir: &Path,
    kind: Kind,
) -> Result<Option<Vec<u8>>, CheckpointError> {
    Ok(kind.framing().read(storage, &dir.join(kind.file_name()))?)
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

/// Writes a checkpoint that must not be left as it was: the one on disk may claim what
/// the log no longer holds (after a truncation, or a recovery that cut a damaged tail).
/// If it cannot be written for want of space it is removed instead (a removal needs no
/// space), and what it would have saved the next open is done the long way: a scan of
/// every segment for the recovery point, a rebuild from the log start for the producer
/// snapshot.
pub fn write_or_remove(
    storage: &dyn Storage,
    dir: &Path,
    kind: Kind,
    payload: &[u8],
) -> Result<(), CheckpointError> {
    match write(storage, dir, kind, payload) {
        Err(e) if e.is_storage_full() => {
            tracing::warn!(error = %e, "checkpoint not written for want of space: removed, the next open recovers without it");
            remove(storage, dir, kind)
        }
        written => written,
    }
}

/// Removes the `kind` checkpoint in `dir`, durably (none there is fine).
pub fn remove(storage: &dyn Storage, dir: &Path, kind: Kind) -> Result<(), CheckpointError> {
    let path = dir.join(kind.file_name());
    let io = |source| CheckpointError::Io {
        path: path.clone(),
        source,
    };
    match storage.remove_file(&path) {
        Ok(()) => storage.sync_dir(dir).map_err(io),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(e)),
    }
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

    use crate::framed_file::golden_hex as hex;

    /// Every kind's bytes, pinned as the first release wrote them: logs on disk hold
    /// these, so a change of layout must fail here, not in a user's data directory.
    /// Fields: magic | version | kind | payload length | payload | CRC-32.
    #[test]
    fn golden_bytes_of_every_kind() {
        let cases = [
            (
                Kind::RecoveryPoint,
                "57454952434b5054 0001 0001 00000030 \
                 0000000000000000 000000000000003d 0000000000000001 00000000 00000000 \
                 00000000000003e8 0000000000000000 \
                 483ad9c7",
            ),
            (
                Kind::LogStartOffset,
                "57454952434b5054 0001 0002 00000008 0000000000000007 46eb2131",
            ),
            (
                Kind::LeaderEpochs,
                "57454952434b5054 0001 0003 00000010 00000001 00000003 0000000000000064 \
                 4a8180bf",
            ),
            (
                Kind::HighWatermark,
                "57454952434b5054 0001 0004 00000008 000000000000002a a3d1a299",
            ),
            (
                Kind::ProducerState,
                "57454952434b5054 0001 0005 0000000c 0000000000000000 00000000 20626840",
            ),
        ];
        for (kind, golden) in cases {
            let golden = hex(golden);
            let payload = &golden[16..golden.len() - 4];
            let dir = tempfile::tempdir().unwrap();
            write(&FileStorage, dir.path(), kind, payload).unwrap();
            let written = std::fs::read(dir.path().join(kind.file_name())).unwrap();
            assert_eq!(written, golden, "{kind:?}");
            assert_eq!(
                read(&FileStorage, dir.path(), kind).unwrap().as_deref(),
                Some(payload),
                "{kind:?}"
            );
        }
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
