//! Weir's small state files in the data directory (`metadata.weir`, `node.weir`):
//! `magic (8 bytes) | version u16 | payload_len u32 | payload | crc32 u32`, big-endian,
//! CRC-32 (IEEE) over everything before it, written to a temporary name, fsynced,
//! renamed over the file, and the directory fsynced, so a crash leaves the old file or
//! the new one and a torn or flipped file reads as an error.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Magic, version and payload length.
pub(crate) const HEADER_BYTES: usize = 8 + 2 + 4;
/// The header and the trailing CRC: a file with an empty payload.
pub(crate) const FRAME_BYTES: usize = HEADER_BYTES + 4;

/// One kind of framed file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Framing {
    pub(crate) magic: &'static [u8; 8],
    pub(crate) version: u16,
    /// Largest whole file accepted.
    pub(crate) max_file_bytes: usize,
    /// What the file is, for messages ("node identity file").
    pub(crate) what: &'static str,
}

impl Framing {
    pub(crate) fn encode(&self, payload: &[u8]) -> Vec<u8> {
        assert!(
            FRAME_BYTES + payload.len() <= self.max_file_bytes,
            "{} over its size limit",
            self.what
        );
        let mut buf = Vec::with_capacity(FRAME_BYTES + payload.len());
        buf.extend_from_slice(self.magic);
        buf.extend_from_slice(&self.version.to_be_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(payload);
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        buf
    }

    /// The payload of `buf`, after every check of the frame; the error says which failed.
    pub(crate) fn decode<'a>(&self, buf: &'a [u8]) -> Result<&'a [u8], String> {
        if !(FRAME_BYTES..=self.max_file_bytes).contains(&buf.len()) {
            return Err(format!("file is {} bytes", buf.len()));
        }
        if &buf[..8] != self.magic {
            return Err(format!("bad magic (not a Weir {})", self.what));
        }
        let (body, crc) = buf.split_at(buf.len() - 4);
        let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
        let actual = crc32fast::hash(body);
        if actual != stored {
            return Err(format!(
                "CRC mismatch (stored {stored:#010x}, computed {actual:#010x})"
            ));
        }
        let version = u16::from_be_bytes([buf[8], buf[9]]);
        if version != self.version {
            return Err(format!(
                "unsupported version {version} (this broker reads {})",
                self.version
            ));
        }
        let len = u32::from_be_bytes(buf[10..14].try_into().expect("4 bytes")) as usize;
        let payload = &body[HEADER_BYTES..];
        if len != payload.len() {
            return Err(format!(
                "payload length {len} does not match the file ({} bytes)",
                payload.len()
            ));
        }
        Ok(payload)
    }
}

/// Writes `bytes` to `dir/name` atomically: `name.tmp`, fsync, rename, fsync `dir`. The
/// error names the path the failed step was on.
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), (PathBuf, io::Error)> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let mut file = File::create(&tmp).map_err(at(&tmp))?;
    file.write_all(bytes).map_err(at(&tmp))?;
    file.sync_all().map_err(at(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(at(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))?;
    Ok(())
}
