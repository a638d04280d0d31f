//! The one frame of Weir's small durable files, and their atomic replace.
//!
//! Every small file that is replaced whole, rather than appended to, is one frame:
//!
//! ```text
//! magic (8) | version u16 | kind u16 (only where the file kind has one) | payload_len u32 | payload | crc32 u32
//! ```
//!
//! Big-endian, the CRC-32 (IEEE) over every byte before it. weir-log's checkpoints
//! (`WEIRCKPT`) and the metadata quorum's vote, committed, purged and snapshot files
//! (`WEIRQUOR`, in weir-cluster) store a kind, so a file renamed or copied over another
//! is refused rather than read as it; `metadata.weir` (`WEIRMETA`) and `node.weir`
//! (`WEIRNODE`) have no kind field, their magic alone naming them. Both shapes are fixed
//! by files already in data directories, so [`Framing::kind`] says which one a file has
//! instead of one shape being forced on all (`docs/storage-format.md` § Small framed
//! files, byte by byte).
//!
//! It lives in weir-log because the checkpoints use it and weir-cluster depends on
//! weir-log, never the reverse. Writes and reads go through [`Storage`], so the fault
//! injection of [`FaultyStorage`](crate::storage::FaultyStorage) covers them; weir-cluster
//! passes [`FileStorage`](crate::storage::FileStorage).
//!
//! A length read from disk never sizes an allocation before it is checked: the file's
//! size against the kind's [`Framing::max_file_bytes`], and the stored payload length
//! against the file's size.

use std::io;
use std::path::{Path, PathBuf};

use crate::storage::Storage;

/// Magic, version and payload length: the header of a file kind without a kind field.
const BASE_HEADER_BYTES: usize = 8 + 2 + 4;
/// The kind field, where a file kind has one.
const KIND_BYTES: usize = 2;
/// The trailing CRC-32.
const CRC_BYTES: usize = 4;

/// One kind of framed file: its magic, version, kind field and limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub magic: &'static [u8; 8],
    /// The only version this build reads and the one it writes.
    pub version: u16,
    /// The kind stored after the version, or `None` for a file kind without the field.
    pub kind: Option<u16>,
    /// The largest payload accepted; a longer file is corruption, refused before it is
    /// read into memory.
    pub max_payload_bytes: usize,
    /// What the file is, for messages ("node identity file").
    pub what: &'static str,
}

/// Why bytes are not a valid frame of a [`Framing`]. Checked in this order: size,
/// magic, CRC, version, kind, payload length; so a flipped bit anywhere reads as a CRC
/// mismatch, and a file of a later version (with a valid CRC) as that version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("file is {len} bytes; the limit is {max}")]
    TooLong { len: u64, max: usize },
    #[error("file is {len} bytes; a {what} is at least {min}")]
    TooShort {
        len: usize,
        min: usize,
        what: &'static str,
    },
    #[error("bad magic \"{}\" (not a Weir {what})", found.escape_ascii())]
    BadMagic { found: [u8; 8], what: &'static str },
    #[error("CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch {
        stored: u32,
        computed: u32,
        /// Where the stored CRC is.
        position: usize,
    },
    #[error("unsupported version {found} (this broker reads {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("holds kind {found}, expected {expected} ({what})")]
    WrongKind {
        found: u16,
        expected: u16,
        what: &'static str,
    },
    #[error("payload length {stored} does not match the {len}-byte file")]
    PayloadLength {
        stored: u32,
        len: usize,
        /// Where the stored length is.
        position: usize,
    },
}

impl FrameError {
    /// The byte of the file the check failed at (0 for the size and magic).
    pub fn position(&self) -> u64 {
        match *self {
            FrameError::TooLong { .. }
            | FrameError::TooShort { .. }
            | FrameError::BadMagic { .. } => 0,
            FrameError::UnsupportedVersion { .. } => 8,
            FrameError::WrongKind { .. } => 10,
            FrameError::CrcMismatch { position, .. }
            | FrameError::PayloadLength { position, .. } => position as u64,
        }
    }
}

/// A framed file could not be read or written; both kinds name the file.
#[derive(Debug, thiserror::Error)]
pub enum FramedFileError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: FrameError,
    },
}

impl Framing {
    /// Bytes before the payload.
    pub const fn header_bytes(&self) -> usize {
        match self.kind {
            Some(_) => BASE_HEADER_BYTES + KIND_BYTES,
            None => BASE_HEADER_BYTES,
        }
    }

    /// The header and the trailing CRC: the size of a file with an empty payload.
    pub const fn frame_bytes(&self) -> usize {
        self.header_bytes() + CRC_BYTES
    }

    /// The largest file of this kind.
    pub const fn max_file_bytes(&self) -> usize {
        self.frame_bytes() + self.max_payload_bytes
    }

    /// The framed bytes of `payload`.
    ///
    /// Panics if the payload is over [`max_payload_bytes`](Self::max_payload_bytes): a
    /// file this build would refuse to read is a bug to write. Callers check sizes they
    /// do not control first.
    pub fn encode(&self, payload: &[u8]) -> Vec<u8> {
        assert!(
            payload.len() <= self.max_payload_bytes,
            "{} payload of {} bytes over its {}-byte limit",
            self.what,
            payload.len(),
            self.max_payload_bytes
        );
        let len = u32::try_from(payload.len()).expect("a framed payload fits a u32 length");
        let mut buf = Vec::with_capacity(self.frame_bytes() + payload.len());
        buf.extend_from_slice(self.magic);
        buf.extend_from_slice(&self.version.to_be_bytes());
        if let Some(kind) = self.kind {
            buf.extend_from_slice(&kind.to_be_bytes());
        }
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(payload);
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        buf
    }

    /// The payload of framed bytes, after every check of the frame.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<&'a [u8], FrameError> {
        let len = buf.len();
        if len > self.max_file_bytes() {
            return Err(FrameError::TooLong {
                len: len as u64,
                max: self.max_file_bytes(),
            });
        }
        if len < self.frame_bytes() {
            return Err(FrameError::TooShort {
                len,
                min: self.frame_bytes(),
                what: self.what,
            });
        }
        let (magic, rest) = buf.split_first_chunk::<8>().expect("size checked");
        if magic != self.magic {
            return Err(FrameError::BadMagic {
                found: *magic,
                what: self.what,
            });
        }
        let (body, crc) = buf.split_at(len - CRC_BYTES);
        let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(FrameError::CrcMismatch {
                stored,
                computed,
                position: len - CRC_BYTES,
            });
        }
        let (version, rest) = rest.split_first_chunk::<2>().expect("size checked");
        let version = u16::from_be_bytes(*version);
        if version != self.version {
            return Err(FrameError::UnsupportedVersion {
                found: version,
                supported: self.version,
            });
        }
        let rest = match self.kind {
            Some(expected) => {
                let (kind, rest) = rest.split_first_chunk::<2>().expect("size checked");
                let found = u16::from_be_bytes(*kind);
                if found != expected {
                    return Err(FrameError::WrongKind {
                        found,
                        expected,
                        what: self.what,
                    });
                }
                rest
            }
            None => rest,
        };
        let (stored_len, _) = rest.split_first_chunk::<4>().expect("size checked");
        let stored_len = u32::from_be_bytes(*stored_len);
        let payload = &body[self.header_bytes()..];
        if stored_len as usize != payload.len() {
            return Err(FrameError::PayloadLength {
                stored: stored_len,
                len,
                position: self.header_bytes() - 4,
            });
        }
        Ok(payload)
    }

    /// The whole framed bytes of the file at `path`, every check of the frame passed;
    /// `Ok(None)` if there is no such file. The size is checked against
    /// [`max_file_bytes`](Self::max_file_bytes) before it sizes the buffer.
    pub fn read_framed(
        &self,
        storage: &dyn Storage,
        path: &Path,
    ) -> Result<Option<Vec<u8>>, FramedFileError> {
        let io = |source| FramedFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match storage.open(path, false) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let len = file.size().map_err(io)?;
        if len > self.max_file_bytes() as u64 {
            return Err(FramedFileError::Corrupt {
                path: path.to_path_buf(),
                source: FrameError::TooLong {
                    len,
                    max: self.max_file_bytes(),
                },
            });
        }
        let mut buf = vec![0; len as usize];
        file.read_exact_at(&mut buf, 0).map_err(io)?;
        self.decode(&buf)
            .map_err(|source| FramedFileError::Corrupt {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Some(buf))
    }

    /// The payload of the file at `path`; `Ok(None)` if there is no such file.
    pub fn read(
        &self,
        storage: &dyn Storage,
        path: &Path,
    ) -> Result<Option<Vec<u8>>, FramedFileError> {
        Ok(self.read_framed(storage, path)?.map(|mut framed| {
            framed.truncate(framed.len() - CRC_BYTES);
            framed.drain(..self.header_bytes());
            framed
        }))
    }

    /// Writes `payload` as the file `dir/name`, replacing it atomically
    /// ([`write_atomically`]).
    pub fn write(
        &self,
        storage: &dyn Storage,
        dir: &Path,
        name: &str,
        payload: &[u8],
    ) -> Result<(), FramedFileError> {
        write_atomically(storage, dir, name, &self.encode(payload))
    }
}

/// Writes `bytes` over `dir/name` (created if missing) from its start, and `fdatasync`:
/// no temporary file, no rename and no directory sync, so it costs one write and one
/// sync where [`write_atomically`] creates an inode, syncs twice and renames. A crash
/// leaves the old bytes, the new ones or (in a write torn across sectors) a mix that the
/// frame's CRC refuses; a file created by the first write may also be lost with its
/// directory entry. So only for a file whose loss or damage costs time and nothing else
/// (the recovery point: a log without one scans more at open). A shorter write than the
/// file's length cuts the file after it.
pub fn write_in_place(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), FramedFileError> {
    let path = dir.join(name);
    let at = |source| FramedFileError::Io {
        path: path.clone(),
        source,
    };
    let file = storage.open(&path, true).map_err(at)?;
    file.write_all_at(bytes, 0).map_err(at)?;
    if file.size().map_err(at)? > bytes.len() as u64 {
        file.set_len(bytes.len() as u64).map_err(at)?;
    }
    file.sync_data().map_err(at)?;
    Ok(())
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old file or the new one,
/// never a mix: written to `name.tmp`, `fdatasync`, renamed over `name`, and `dir`
/// fsynced so the rename is durable. The error names the path the failed step was on.
///
/// `fdatasync` (not `fsync`) is enough: it makes the data and the file's size durable,
/// and the rename is made durable by the directory's fsync.
pub fn write_atomically(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), FramedFileError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let at = |p: &Path| {
        let path = p.to_path_buf();
        move |source| FramedFileError::Io { path, source }
    };
    let file = storage.open(&tmp, true).map_err(at(&tmp))?;
    // A `.tmp` left by a crash may be longer than this write.
    file.set_len(0).map_err(at(&tmp))?;
    file.write_all_at(bytes, 0).map_err(at(&tmp))?;
    file.sync_data().map_err(at(&tmp))?;
    drop(file);
    storage.rename(&tmp, &path).map_err(at(&path))?;
    storage.sync_dir(dir).map_err(at(dir))?;
    Ok(())
}

/// Bytes from hex digits with spaces between fields, for the golden-byte tests of framed
/// files here and in the crates that frame their files with this module (weir-cluster's
/// metadata, node identity and quorum files). Panics on anything but hex digits and
/// whitespace: a test helper, not for input from outside.
#[doc(hidden)]
pub fn golden_hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::storage::{FaultPlan, FaultyStorage, FileStorage};

    const WITH_KIND: Framing = Framing {
        magic: b"WEIRTEST",
        version: 1,
        kind: Some(7),
        max_payload_bytes: 64,
        what: "test file",
    };
    const WITHOUT_KIND: Framing = Framing {
        kind: None,
        ..WITH_KIND
    };

    use super::golden_hex as hex;

    #[test]
    fn both_shapes_byte_by_byte() {
        assert_eq!(
            WITH_KIND.encode(b"ab"),
            hex("5745495254455354 0001 0007 00000002 6162 7d6c29fb")
        );
        assert_eq!(
            WITHOUT_KIND.encode(b"ab"),
            hex("5745495254455354 0001 00000002 6162 3908489e")
        );
        assert_eq!(
            (WITH_KIND.header_bytes(), WITH_KIND.frame_bytes()),
            (16, 20)
        );
        assert_eq!(
            (WITHOUT_KIND.header_bytes(), WITHOUT_KIND.frame_bytes()),
            (14, 18)
        );
        assert_eq!(WITH_KIND.max_file_bytes(), 84);
    }

    #[test]
    fn each_check_names_what_failed() {
        let good = WITH_KIND.encode(b"payload");
        assert_eq!(WITH_KIND.decode(&good), Ok(&b"payload"[..]));
        assert_eq!(WITH_KIND.decode(&WITH_KIND.encode(b"")), Ok(&b""[..]));

        let err = WITH_KIND.decode(&good[..19]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "file is 19 bytes; a test file is at least 20"
        );
        let err = WITH_KIND.decode(&[0; 85]).unwrap_err();
        assert_eq!(err.to_string(), "file is 85 bytes; the limit is 84");

        let mut bad = good.clone();
        bad[0] = b'X';
        let err = WITH_KIND.decode(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad magic \"XEIRTEST\" (not a Weir test file)"
        );

        let mut bad = good.clone();
        bad[20] ^= 1;
        let err = WITH_KIND.decode(&bad).unwrap_err();
        assert!(err.to_string().starts_with("CRC mismatch"), "{err}");
        assert_eq!(err.position(), good.len() as u64 - 4);

        let later = Framing {
            version: 2,
            ..WITH_KIND
        };
        let err = WITH_KIND.decode(&later.encode(b"x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported version 2 (this broker reads 1)"
        );
        assert_eq!(err.position(), 8);

        let other = Framing {
            kind: Some(8),
            ..WITH_KIND
        };
        let err = WITH_KIND.decode(&other.encode(b"x")).unwrap_err();
        assert_eq!(err.to_string(), "holds kind 8, expected 7 (test file)");
        assert_eq!(err.position(), 10);

        // A stored length that disagrees with the file, under a valid CRC.
        let mut bad = WITHOUT_KIND.encode(b"abc");
        bad[13] = 2;
        let crc_at = bad.len() - 4;
        let crc = crc32fast::hash(&bad[..crc_at]);
        bad[crc_at..].copy_from_slice(&crc.to_be_bytes());
        let err = WITHOUT_KIND.decode(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload length 2 does not match the 21-byte file"
        );
        assert_eq!(err.position(), 10);
    }

    #[test]
    #[should_panic(expected = "test file payload of 65 bytes over its 64-byte limit")]
    fn encoding_over_the_limit_is_a_bug() {
        WITH_KIND.encode(&[0; 65]);
    }

    #[test]
    fn writes_replace_atomically_and_reads_check_the_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        assert_eq!(WITH_KIND.read(&FileStorage, &path).unwrap(), None);

        // A longer `.tmp` left by a crash does not leak into the new file.
        std::fs::write(dir.path().join("state.tmp"), [0xAA; 200]).unwrap();
        WITH_KIND
            .write(&FileStorage, dir.path(), "state", b"first")
            .unwrap();
        WITH_KIND
            .write(&FileStorage, dir.path(), "state", b"second")
            .unwrap();
        assert!(!dir.path().join("state.tmp").exists());
        assert_eq!(
            WITH_KIND.read(&FileStorage, &path).unwrap().as_deref(),
            Some(&b"second"[..])
        );
        assert_eq!(
            WITH_KIND.read_framed(&FileStorage, &path).unwrap(),
            Some(WITH_KIND.encode(b"second"))
        );

        // Over the limit: refused from the size alone, naming the file.
        std::fs::write(&path, vec![0; WITH_KIND.max_file_bytes() + 1]).unwrap();
        let err = WITH_KIND.read(&FileStorage, &path).unwrap_err();
        assert!(
            matches!(&err, FramedFileError::Corrupt { path: p, source: FrameError::TooLong { .. } } if p == &path),
            "{err}"
        );
        assert!(err.to_string().contains("state"), "{err}");
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_old_file_or_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        WITH_KIND
            .write(&FileStorage, dir.path(), "state", b"old")
            .unwrap();
        for step in 1.. {
            let storage = FaultyStorage::new(FaultPlan {
                crash_at_operation: Some(step),
                ..FaultPlan::default()
            });
            let result = WITH_KIND.write(&storage, dir.path(), "state", b"new");
            let now = WITH_KIND.read(&FileStorage, &path).unwrap().unwrap();
            match result {
                Ok(()) => {
                    assert_eq!(now, b"new");
                    break;
                }
                Err(FramedFileError::Io { .. }) => {
                    assert!(now == b"old" || now == b"new", "step {step}: {now:?}");
                }
                Err(e) => panic!("step {step}: {e}"),
            }
            // Back to the old file for the next step.
            WITH_KIND
                .write(&FileStorage, dir.path(), "state", b"old")
                .unwrap();
        }
    }

    #[test]
    fn a_write_in_place_replaces_the_frame_without_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("point");
        let frame = |payload: &[u8]| WITH_KIND.encode(payload);
        write_in_place(
            &FileStorage,
            dir.path(),
            "point",
            &frame(b"a longer first frame"),
        )
        .unwrap();
        // A shorter frame over a longer one: the file is cut after it.
        write_in_place(&FileStorage, dir.path(), "point", &frame(b"short")).unwrap();
        assert!(!dir.path().join("point.tmp").exists());
        assert_eq!(
            WITH_KIND.read_framed(&FileStorage, &path).unwrap(),
            Some(WITH_KIND.encode(b"short"))
        );
        // A crash at any step leaves the old frame, the new one, or a torn one the frame
        // check refuses: never a wrong payload read as good.
        for step in 1.. {
            let storage = FaultyStorage::new(FaultPlan {
                crash_at_operation: Some(step),
                ..FaultPlan::default()
            });
            let result = write_in_place(&storage, dir.path(), "point", &frame(b"new!!"));
            match (result, WITH_KIND.read(&FileStorage, &path)) {
                (Ok(()), now) => {
                    assert_eq!(now.unwrap().as_deref(), Some(&b"new!!"[..]));
                    break;
                }
                (Err(FramedFileError::Io { .. }), Ok(now)) => {
                    let now = now.unwrap();
                    assert!(now == b"short" || now == b"new!!", "step {step}: {now:?}");
                }
                (Err(FramedFileError::Io { .. }), Err(FramedFileError::Corrupt { .. })) => {}
                (result, now) => panic!("step {step}: {result:?}, then {now:?}"),
            }
            write_in_place(&FileStorage, dir.path(), "point", &frame(b"short")).unwrap();
        }
    }

    /// A valid frame of either shape, then damaged: bytes flipped, cut or added.
    fn damaged_frames() -> impl Strategy<Value = (bool, Vec<u8>)> {
        (
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..80),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            proptest::option::of(any::<usize>()),
            proptest::collection::vec(any::<u8>(), 0..4),
        )
            .prop_map(|(kind, payload, flips, cut, tail)| {
                let framing = if kind { WITH_KIND } else { WITHOUT_KIND };
                let payload = &payload[..payload.len().min(framing.max_payload_bytes)];
                let mut bytes = framing.encode(payload);
                for (at, xor) in flips {
                    let at = at % bytes.len();
                    bytes[at] ^= xor;
                }
                if let Some(cut) = cut {
                    bytes.truncate(cut % (bytes.len() + 1));
                }
                bytes.extend(tail);
                (kind, bytes)
            })
    }

    fn any_bytes() -> impl Strategy<Value = (bool, Vec<u8>)> {
        (
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..120),
        )
    }

    /// Decoded means re-encoding gives the same bytes: nothing unchecked got through.
    fn decoded_or_refused(kind: bool, bytes: &[u8]) -> Result<(), TestCaseError> {
        let framing = if kind { WITH_KIND } else { WITHOUT_KIND };
        if let Ok(payload) = framing.decode(bytes) {
            prop_assert_eq!(framing.encode(payload), bytes);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_bytes_are_decoded_or_refused((kind, bytes) in any_bytes()) {
            decoded_or_refused(kind, &bytes)?;
        }

        #[test]
        fn damaged_frames_are_decoded_or_refused((kind, bytes) in damaged_frames()) {
            decoded_or_refused(kind, &bytes)?;
        }

        #[test]
        fn any_file_is_read_or_refused_naming_it(
            (kind, bytes) in prop_oneof![any_bytes(), damaged_frames()],
        ) {
            let framing = if kind { WITH_KIND } else { WITHOUT_KIND };
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state");
            std::fs::write(&path, &bytes).unwrap();
            match framing.read(&FileStorage, &path) {
                Ok(Some(payload)) => prop_assert_eq!(framing.encode(&payload), bytes),
                Ok(None) => prop_assert!(false, "the file exists"),
                Err(FramedFileError::Corrupt { path: p, .. }) => prop_assert_eq!(p, path),
                Err(e) => prop_assert!(false, "not corruption: {}", e),
            }
        }
    }
}
