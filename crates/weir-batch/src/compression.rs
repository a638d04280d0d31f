//! The compression codecs a RecordBatch v2 may use for its records section, writing and
//! reading the exact stream formats Kafka's Java client uses, with a hard cap on how much
//! a decompression may produce.
//!
//! Formats, as Kafka's `CompressionType` writes them:
//!
//! - gzip: a gzip stream (`java.util.zip.GZIPOutputStream`); several concatenated members
//!   are read as one stream, as `GZIPInputStream` does.
//! - snappy: snappy-java's stream framing (`SnappyOutputStream`), a 16-byte header
//!   followed by raw snappy blocks of at most 32 KiB input, each prefixed by its
//!   compressed length as a big-endian u32. Plain raw snappy (no header), which some
//!   non-Java clients write, is read too, as librdkafka and snappy-java read it.
//! - lz4: the LZ4 frame format with independent 64 KiB blocks and no checksums
//!   (`KafkaLZ4BlockOutputStream`).
//! - zstd: zstd frames (zstd-jni's `ZstdOutputStream`), at level 3 by default.
//!
//! Decompression never trusts the sender's idea of the output size: it streams into a
//! buffer that grows geometrically but never past the caller's limit, so a small batch
//! that expands without bound (a "decompression bomb") costs at most that limit in memory
//! before it is refused. [`Compression::decompress`] returns the whole output; a
//! `Decoder` yields it piece by piece under the same limit, for the produce check that
//! walks a compressed batch's records without holding them.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use crate::error::BatchError;

/// gzip level Kafka's Java producer uses unless `compression.gzip.level` is set
/// (`Deflater.DEFAULT_COMPRESSION`, which zlib maps to 6).
const GZIP_LEVEL: u32 = 6;
/// zstd level Kafka's Java producer uses unless `compression.zstd.level` is set.
const ZSTD_LEVEL: i32 = 3;
/// Largest zstd window (log2 bytes) the decoder accepts, which bounds the decoder's own
/// memory whatever the frame header asks for. 27 (128 MiB) is zstd's default limit and
/// zstd-jni's, so anything a Java producer writes at any level decodes.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Uncompressed bytes per block in snappy-java's `SnappyOutputStream` default.
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;
/// snappy-java's stream magic; a stream that does not begin with it is raw snappy.
const SNAPPY_JAVA_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";
/// The full snappy-java header: magic, then format version 1 and minimum compatible
/// version 1 as big-endian i32s (what `SnappyOutputStream` writes and Kafka expects).
const SNAPPY_JAVA_HEADER: &[u8; 16] = b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01";
/// Size of the big-endian length before each snappy-java block.
const SNAPPY_JAVA_BLOCK_LEN_BYTES: usize = 4;

/// Smallest first buffer for a decompression whose output size is unknown.
const MIN_DECOMPRESS_BUFFER_BYTES: usize = 4 * 1024;
/// Guess at the compression ratio, to size the first output buffer from the input.
/// Only a starting point: the buffer grows (within the limit) as the data demands.
const ASSUMED_COMPRESSION_RATIO: usize = 4;

/// A batch's compression codec: bits 0-2 of the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Every codec, in attribute-code order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec for an attribute code (the attributes masked to their compression bits).
    pub fn from_attribute(code: i16) -> Result<Compression, BatchError> {
        match code {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::UnknownCompression(other)),
        }
    }

    /// The attribute code Kafka assigns this codec.
    pub fn attribute(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The name Kafka's `compression.type` setting uses.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Compresses `input` as one stream in this codec's Kafka format and appends it to
    /// `out`. `None` appends `input` unchanged.
    pub fn compress(self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BatchError> {
        let codec = self.name();
        let wrap = |source: io::Error| BatchError::Compress { codec, source };
        match self {
            Compression::None => out.extend_from_slice(input),
            Compression::Gzip => {
                let level = flate2::Compression::new(GZIP_LEVEL);
                let mut encoder = flate2::write::GzEncoder::new(out, level);
                encoder.write_all(input).map_err(wrap)?;
                encoder.finish().map_err(wrap)?;
            }
            Compression::Snappy => snappy_java_compress(input, out).map_err(wrap)?,
            Compression::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
                encoder.write_all(input).map_err(wrap)?;
                encoder.finish().map_err(|e| wrap(e.into()))?;
            }
            Compression::Zstd => {
                let mut encoder =
                    zstd::stream::write::Encoder::new(out, ZSTD_LEVEL).map_err(wrap)?;
                encoder.write_all(input).map_err(wrap)?;
                encoder.finish().map_err(wrap)?;
            }
        }
        Ok(())
    }

    /// Decompresses one stream in this codec's Kafka format. Fails with
    /// [`BatchError::DecompressedTooLarge`] as soon as the output would exceed
    /// `max_output` bytes; the buffer never grows past that.
    pub fn decompress(self, input: &[u8], max_output: usize) -> Result<Vec<u8>, BatchError> {
        match self {
            Compression::None => {
                if input.len() > max_output {
                    return Err(BatchError::DecompressedTooLarge { max: max_output });
                }
                Ok(input.to_vec())
            }
            // Each block states its size: decoded straight into the output, no copy.
            Compression::Snappy => snappy_decompress(input, max_output),
            _ => read_capped(self.decoder(input, max_output)?, input.len(), max_output),
        }
    }

    /// A streaming decompressor of one stream in this codec's Kafka format, which yields
    /// at most `max_output` bytes (see [`Decoder`]).
    pub(crate) fn decoder(
        self,
        input: &[u8],
        max_output: usize,
    ) -> Result<Decoder<'_>, BatchError> {
        let codec = self.name();
        let wrap = |source: io::Error| BatchError::Decompress { codec, source };
        let stream = match self {
            Compression::None => Stream::None(input),
            // The `bufread` decoders read the slice in place, without a copy into a
            // BufReader.
            Compression::Gzip => Stream::Gzip(flate2::bufread::MultiGzDecoder::new(input)),
            Compression::Snappy => Stream::Snappy(SnappyReader::new(input, max_output)?),
            Compression::Lz4 => Stream::Lz4(lz4_flex::frame::FrameDecoder::new(input)),
            Compression::Zstd => {
                // Reads every concatenated frame, as zstd-jni's stream does.
                let mut decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(wrap)?;
                decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(wrap)?;
                Stream::Zstd(Box::new(decoder))
            }
        };
        Ok(Decoder {
            codec: self,
            stream,
            produced: 0,
            max_output,
        })
    }
}

/// A streaming decompressor of one records section, from [`Compression::decoder`]: each
/// [`read`](Decoder::read) yields the next decompressed bytes, so a caller can walk them
/// through a small window instead of holding the whole output (the produce check,
/// `validate_untrusted`, does). It never yields more than the `max_output` it was made
/// with: the read that would pass it fails with [`BatchError::DecompressedTooLarge`],
/// and the decoders' own buffers are bounded (zstd's window by
/// [`ZSTD_WINDOW_LOG_MAX`], a snappy block's size is checked before it is allocated).
pub(crate) struct Decoder<'a> {
    codec: Compression,
    stream: Stream<'a>,
    /// Bytes yielded so far.
    produced: usize,
    max_output: usize,
}

enum Stream<'a> {
    None(&'a [u8]),
    Gzip(flate2::bufread::MultiGzDecoder<&'a [u8]>),
    Snappy(SnappyReader<'a>),
    Lz4(lz4_flex::frame::FrameDecoder<&'a [u8]>),
    // Boxed: zstd's decoder state is large next to the others.
    Zstd(Box<zstd::stream::read::Decoder<'static, &'a [u8]>>),
}

impl fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("codec", &self.codec)
            .field("produced", &self.produced)
            .field("max_output", &self.max_output)
            .finish_non_exhaustive()
    }
}

impl Decoder<'_> {
    /// Reads the next decompressed bytes into `buf`; 0 at the end of the stream.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, BatchError> {
        let codec = self.codec.name();
        let n = match &mut self.stream {
            Stream::None(rest) => read_some(codec, rest, buf)?,
            Stream::Gzip(decoder) => read_some(codec, decoder, buf)?,
            Stream::Snappy(reader) => reader.read(buf)?,
            Stream::Lz4(decoder) => read_some(codec, decoder, buf)?,
            Stream::Zstd(decoder) => read_some(codec, decoder.as_mut(), buf)?,
        };
        self.produced += n;
        if self.produced > self.max_output {
            return Err(BatchError::DecompressedTooLarge {
                max: self.max_output,
            });
        }
        Ok(n)
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A codec name that is none of Kafka's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression codec {0:?}; expected one of none, gzip, snappy, lz4, zstd")]
pub struct ParseCompressionError(pub String);

impl FromStr for Compression {
    type Err = ParseCompressionError;

    /// Parses a `compression.type` name, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Compression, ParseCompressionError> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseCompressionError(s.to_owned()))
    }
}

/// Makes room for `additional` more bytes in `out`, growing geometrically as `Vec` does but
/// never to a capacity above `limit`. The caller ensures `out.len() + additional <= limit`.
fn reserve_capped(out: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = out.len() + additional;
    if needed > out.capacity() {
        // `reserve` would double past the limit; `reserve_exact` to a capped target does not.
        let target = out.capacity().saturating_mul(2).max(needed).min(limit);
        out.reserve_exact(target - out.len());
    }
}

/// Reads `decoder` to its end into a buffer of at most `max_output` bytes. `input_len`
/// (the compressed size) only sizes the first buffer.
fn read_capped(
    mut decoder: Decoder<'_>,
    input_len: usize,
    max_output: usize,
) -> Result<Vec<u8>, BatchError> {
    let first_len = input_len
        .saturating_mul(ASSUMED_COMPRESSION_RATIO)
        .max(MIN_DECOMPRESS_BUFFER_BYTES);
    let mut out = Vec::new();
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if filled == max_output {
                // Full to the limit. A stream of exactly `max_output` bytes ends here; one
                // probe byte tells it from one that would go on.
                let mut probe = [0u8; 1];
                if decoder.read(&mut probe)? != 0 {
                    return Err(BatchError::DecompressedTooLarge { max: max_output });
                }
                break;
            }
            let new_len = if filled == 0 {
                first_len
            } else {
                filled.saturating_mul(2)
            }
            .min(max_output);
            reserve_capped(&mut out, new_len - filled, max_output);
            // Safe Rust cannot read into uninitialized capacity; the zeroing is one memset
            // over at most the final buffer.
            out.resize(new_len, 0);
        }
        match decoder.read(&mut out[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    out.truncate(filled);
    // Doubling can leave up to half the buffer unused; the records decoded from it live
    // as long as the batch is held, so give it back.
    out.shrink_to_fit();
    Ok(out)
}

/// One `read`, retried on `Interrupted`.
fn read_some(
    codec: &'static str,
    reader: &mut impl Read,
    buf: &mut [u8],
) -> Result<usize, BatchError> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(BatchError::Decompress { codec, source }),
        }
    }
}

/// Writes snappy-java's stream format, as Kafka's Java producer does.
fn snappy_java_compress(input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let mut encoder = snap::raw::Encoder::new();
    out.reserve(
        SNAPPY_JAVA_HEADER.len()
            + input.len().div_ceil(SNAPPY_BLOCK_BYTES) * SNAPPY_JAVA_BLOCK_LEN_BYTES
            + snap::raw::max_compress_len(input.len()),
    );
    out.extend_from_slice(SNAPPY_JAVA_HEADER);
    for block in input.chunks(SNAPPY_BLOCK_BYTES) {
        let len_at = out.len();
        let block_at = len_at + SNAPPY_JAVA_BLOCK_LEN_BYTES;
        out.resize(block_at + snap::raw::max_compress_len(block.len()), 0);
        let written = encoder.compress(block, &mut out[block_at..])?;
        out.truncate(block_at + written);
        // A 32 KiB block compresses to well under 4 GiB.
        let written = u32::try_from(written).map_err(io::Error::other)?;
        out[len_at..block_at].copy_from_slice(&written.to_be_bytes());
    }
    Ok(())
}

fn snappy_error(reason: &'static str) -> BatchError {
    BatchError::Decompress {
        codec: Compression::Snappy.name(),
        source: io::Error::new(io::ErrorKind::InvalidData, reason),
    }
}

fn snap_error(e: snap::Error) -> BatchError {
    BatchError::Decompress {
        codec: Compression::Snappy.name(),
        source: e.into(),
    }
}

/// The raw snappy blocks of a snappy stream: those of snappy-java's stream format, or the
/// whole input as one raw block if the magic is absent (snappy-java's
/// `SnappyInputStream` falls back the same way). Each raw block states its uncompressed
/// length up front, which readers check against their limit before allocating for it.
struct SnappyBlocks<'a> {
    rest: &'a [u8],
    /// Raw snappy: `rest` is the one block, not yet returned.
    raw: bool,
}

impl<'a> SnappyBlocks<'a> {
    fn new(input: &'a [u8]) -> Result<SnappyBlocks<'a>, BatchError> {
        let Some(after_magic) = input.strip_prefix(SNAPPY_JAVA_MAGIC) else {
            return Ok(SnappyBlocks {
                rest: input,
                raw: true,
            });
        };
        // Both version fields are 1 in every stream snappy-java has written; like
        // librdkafka, accept the header without interpreting them.
        let versions_len = SNAPPY_JAVA_HEADER.len() - SNAPPY_JAVA_MAGIC.len();
        let rest = after_magic
            .get(versions_len..)
            .ok_or_else(|| snappy_error("truncated snappy-java stream header"))?;
        Ok(SnappyBlocks { rest, raw: false })
    }

    /// The next raw block and its uncompressed length; `None` at the end.
    fn next_block(&mut self) -> Result<Option<(&'a [u8], usize)>, BatchError> {
        let block = if self.raw {
            self.raw = false;
            std::mem::take(&mut self.rest)
        } else {
            if self.rest.is_empty() {
                return Ok(None);
            }
            let (len_bytes, after_len) = self
                .rest
                .split_first_chunk::<SNAPPY_JAVA_BLOCK_LEN_BYTES>()
                .ok_or_else(|| snappy_error("truncated snappy-java block length"))?;
            let block_len = u32::from_be_bytes(*len_bytes) as usize;
            let Some((block, after_block)) = after_len.split_at_checked(block_len) else {
                return Err(snappy_error(
                    "snappy-java block runs past the end of the stream",
                ));
            };
            self.rest = after_block;
            block
        };
        let len = snap::raw::decompress_len(block).map_err(snap_error)?;
        Ok(Some((block, len)))
    }
}

/// Reads snappy-java's stream format, or raw snappy (see [`SnappyBlocks`]), straight into
/// one buffer of at most `max_output` bytes.
fn snappy_decompress(input: &[u8], max_output: usize) -> Result<Vec<u8>, BatchError> {
    let mut blocks = SnappyBlocks::new(input)?;
    let mut decoder = snap::raw::Decoder::new();
    let mut out = Vec::new();
    while let Some((block, len)) = blocks.next_block()? {
        if len > max_output - out.len() {
            return Err(BatchError::DecompressedTooLarge { max: max_output });
        }
        let start = out.len();
        reserve_capped(&mut out, len, max_output);
        out.resize(start + len, 0);
        let written = decoder
            .decompress(block, &mut out[start..])
            .map_err(snap_error)?;
        out.truncate(start + written);
    }
    Ok(out)
}

/// Streams snappy (see [`SnappyBlocks`]) one block at a time: holds one decompressed
/// block (32 KiB from snappy-java; a raw block's stated size otherwise, checked against
/// the limit before it is allocated).
struct SnappyReader<'a> {
    blocks: SnappyBlocks<'a>,
    decoder: snap::raw::Decoder,
    block: Vec<u8>,
    /// Bytes of `block` already read.
    pos: usize,
    /// Bytes decompressed so far, and the most allowed.
    decoded: usize,
    max_output: usize,
}

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8], max_output: usize) -> Result<SnappyReader<'a>, BatchError> {
        Ok(SnappyReader {
            blocks: SnappyBlocks::new(input)?,
            decoder: snap::raw::Decoder::new(),
            block: Vec::new(),
            pos: 0,
            decoded: 0,
            max_output,
        })
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, BatchError> {
        while self.pos == self.block.len() {
            let Some((block, len)) = self.blocks.next_block()? else {
                return Ok(0);
            };
            if len > self.max_output - self.decoded {
                return Err(BatchError::DecompressedTooLarge {
                    max: self.max_output,
                });
            }
            self.block.resize(len, 0);
            let written = self
                .decoder
                .decompress(block, &mut self.block)
                .map_err(snap_error)?;
            self.block.truncate(written);
            self.decoded += written;
            self.pos = 0;
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Compressible but not trivially so: repeated text with a counter.
    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(format!("record-{i} payload payload;").as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn compressed(codec: Compression, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        codec.compress(input, &mut out).expect("compress");
        out
    }

    #[test]
    fn every_codec_round_trips_various_sizes() {
        for codec in Compression::ALL {
            for len in [
                0,
                1,
                17,
                4096,
                SNAPPY_BLOCK_BYTES,
                SNAPPY_BLOCK_BYTES + 1,
                300_000,
            ] {
                let input = sample(len);
                let packed = compressed(codec, &input);
                let unpacked = codec.decompress(&packed, usize::MAX).expect("decompress");
                assert_eq!(unpacked, input, "{codec} at {len} bytes");
            }
        }
    }

    #[test]
    fn compress_appends_after_existing_bytes() {
        for codec in Compression::ALL {
            let mut out = b"prefix".to_vec();
            codec.compress(b"hello", &mut out).expect("compress");
            assert_eq!(&out[..6], b"prefix");
            assert_eq!(
                codec.decompress(&out[6..], 1024).expect("decompress"),
                b"hello"
            );
        }
    }

    #[test]
    fn output_of_exactly_the_limit_is_accepted_and_one_byte_more_is_refused() {
        for codec in Compression::ALL {
            let input = sample(100_000);
            let packed = compressed(codec, &input);
            let exact = codec
                .decompress(&packed, input.len())
                .expect("at the limit");
            assert_eq!(exact, input, "{codec}");
            let err = codec
                .decompress(&packed, input.len() - 1)
                .expect_err("over the limit");
            assert!(
                matches!(err, BatchError::DecompressedTooLarge { max } if max == input.len() - 1),
                "{codec}: {err:?}"
            );
        }
    }

    #[test]
    fn decompression_bomb_is_refused_at_the_limit() {
        // 64 MiB of zeros compresses to a few KiB to a few hundred KiB depending on codec.
        let bomb = vec![0u8; 64 << 20];
        let limit = 1 << 20;
        for codec in Compression::ALL
            .into_iter()
            .filter(|&c| c != Compression::None)
        {
            let packed = compressed(codec, &bomb);
            assert!(
                packed.len() < bomb.len() / 10,
                "{codec} should compress zeros"
            );
            let err = codec.decompress(&packed, limit).expect_err("bomb");
            assert!(
                matches!(err, BatchError::DecompressedTooLarge { max } if max == limit),
                "{codec}"
            );
        }
    }

    #[test]
    fn unknown_attribute_codes_are_errors() {
        for code in [5, 6, 7, 8, -1, i16::MAX] {
            assert!(matches!(
                Compression::from_attribute(code),
                Err(BatchError::UnknownCompression(c)) if c == code
            ));
        }
    }

    #[test]
    fn attribute_codes_and_names_round_trip() {
        for (code, codec) in Compression::ALL.into_iter().enumerate() {
            assert_eq!(codec.attribute(), code as i16);
            assert_eq!(
                Compression::from_attribute(code as i16).expect("known"),
                codec
            );
            assert_eq!(codec.to_string().parse::<Compression>(), Ok(codec));
        }
        assert_eq!("ZSTD".parse::<Compression>(), Ok(Compression::Zstd));
        assert_eq!(
            "brotli".parse::<Compression>(),
            Err(ParseCompressionError("brotli".to_owned()))
        );
    }

    #[test]
    fn snappy_writes_snappy_java_framing() {
        // "abc" is too short to match, so the raw block is a 3-byte literal: the
        // uncompressed length varint (3), a literal tag ((3 - 1) << 2), the bytes.
        let mut expected = SNAPPY_JAVA_HEADER.to_vec();
        expected.extend_from_slice(&[0, 0, 0, 5, 0x03, 0x08, b'a', b'b', b'c']);
        assert_eq!(compressed(Compression::Snappy, b"abc"), expected);
    }

    #[test]
    fn snappy_splits_input_into_32_kib_blocks() {
        let input = sample(3 * SNAPPY_BLOCK_BYTES + 10);
        let packed = compressed(Compression::Snappy, &input);
        let mut rest = &packed[SNAPPY_JAVA_HEADER.len()..];
        let mut blocks = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            let block = &rest[4..4 + len];
            blocks.push(snap::raw::decompress_len(block).expect("raw block"));
            rest = &rest[4 + len..];
        }
        assert_eq!(
            blocks,
            [
                SNAPPY_BLOCK_BYTES,
                SNAPPY_BLOCK_BYTES,
                SNAPPY_BLOCK_BYTES,
                10
            ]
        );
    }

    #[test]
    fn snappy_reads_raw_snappy_without_framing() {
        let input = sample(50_000);
        let raw = snap::raw::Encoder::new()
            .compress_vec(&input)
            .expect("raw snappy");
        assert_eq!(
            Compression::Snappy
                .decompress(&raw, input.len())
                .expect("raw"),
            input
        );
        assert!(matches!(
            Compression::Snappy.decompress(&raw, input.len() - 1),
            Err(BatchError::DecompressedTooLarge { .. })
        ));
    }

    #[test]
    fn snappy_java_stream_with_header_only_is_empty() {
        let out = Compression::Snappy
            .decompress(SNAPPY_JAVA_HEADER, 0)
            .expect("empty stream");
        assert!(out.is_empty());
    }

    #[test]
    fn truncated_snappy_java_streams_are_errors() {
        let packed = compressed(Compression::Snappy, &sample(1000));
        for cut in SNAPPY_JAVA_MAGIC.len()..packed.len() {
            if cut == SNAPPY_JAVA_HEADER.len() {
                continue; // a header alone is a valid, empty stream
            }
            let result = Compression::Snappy.decompress(&packed[..cut], usize::MAX);
            assert!(
                matches!(result, Err(BatchError::Decompress { .. })),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn gzip_reads_concatenated_members() {
        let mut packed = compressed(Compression::Gzip, b"first ");
        packed.extend(compressed(Compression::Gzip, b"second"));
        assert_eq!(
            Compression::Gzip.decompress(&packed, 64).expect("gzip"),
            b"first second"
        );
    }

    #[test]
    fn lz4_frame_header_matches_kafka_java() {
        let packed = compressed(Compression::Lz4, b"hello");
        // Magic, then FLG = version 01, independent blocks, no checksums or content size,
        // and BD = 64 KiB maximum block size.
        assert_eq!(&packed[..4], &[0x04, 0x22, 0x4d, 0x18]);
        assert_eq!(packed[4], 0b0110_0000);
        assert_eq!(packed[5], 0b0100_0000);
    }

    #[test]
    fn zstd_output_is_a_zstd_frame() {
        let packed = compressed(Compression::Zstd, b"hello");
        assert_eq!(&packed[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics_or_exceeds_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            framed in any::<bool>(),
        ) {
            // Half the cases start with a valid snappy-java header, to get past the magic.
            let mut input = if framed { SNAPPY_JAVA_HEADER.to_vec() } else { Vec::new() };
            input.extend_from_slice(&bytes);
            let limit = 4096;
            for codec in Compression::ALL {
                if let Ok(out) = codec.decompress(&input, limit) {
                    prop_assert!(out.len() <= limit);
                }
            }
        }

        #[test]
        fn corrupted_streams_never_panic(
            len in 1usize..20_000,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let input = sample(len);
            for codec in Compression::ALL {
                let mut packed = compressed(codec, &input);
                for (at, xor) in &flips {
                    let at = at.index(packed.len());
                    packed[at] ^= xor;
                }
                if let Ok(out) = codec.decompress(&packed, 2 * len) {
                    prop_assert!(out.len() <= 2 * len);
                }
            }
        }
    }
}
