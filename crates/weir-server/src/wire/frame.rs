//! The experimental wire protocol's frames: parsing requests and encoding answers.
//!
//! Every frame is a `u32` big-endian length of what follows, then a `u8` kind, a `u64`
//! correlation id and the kind's body; integers are big-endian. Requests:
//!
//! - PRODUCE (1): `u8 acks` (0 none, 1 leader, 2 all), `u32 timeout_ms`, `u16` topic
//!   length and the topic (UTF-8), `u32 partition`, then packed RecordBatch v2 bytes to
//!   the end of the frame.
//! - FETCH (2): `u16` topic length and topic, `u32 partition`, `i64 offset`,
//!   `u32 max_bytes` (0: the default; capped at [`MAX_FETCH_BYTES`]).
//!
//! Answers carry the request's correlation id, in request order:
//!
//! - PRODUCE_RESPONSE (0x81): `u32 code` (a gRPC status code, 0 = OK), `i64 base_offset`,
//!   `u16` message length and message.
//! - FETCH_RESPONSE (0x82): `u32 code`, `i64 high_watermark`, `i64 next_offset`, `u16`
//!   message length and message, then the stored batches to the end of the frame.
//! - ERROR (0xFF): `u32 code`, `u16` message length and message; the broker closes the
//!   connection after it (a frame it could not read, of an unknown kind, or too large).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tonic::Code;

/// Bytes of the length prefix.
pub const LENGTH_BYTES: usize = 4;
/// Bytes of the kind and correlation id that start every frame after its length.
pub const HEAD_BYTES: usize = 1 + 8;
/// What a request frame may hold beyond `max_request_bytes` of batches: its head and the
/// fixed fields and topic name of a PRODUCE (the name is at most 249 bytes).
pub const FRAME_HEAD_ALLOWANCE: usize = 1024;
/// Longest message in an answer; longer ones are cut (at a character boundary).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;
/// Largest FETCH answer's batch bytes (`max_bytes` is capped to it; the read may exceed
/// it by one batch, as a gRPC fetch may).
pub const MAX_FETCH_BYTES: usize = 16 * 1024 * 1024;

pub const KIND_PRODUCE: u8 = 1;
pub const KIND_FETCH: u8 = 2;
pub const KIND_PRODUCE_RESPONSE: u8 = 0x81;
pub const KIND_FETCH_RESPONSE: u8 = 0x82;
pub const KIND_ERROR: u8 = 0xFF;

/// Why a frame could not be read; answered with an ERROR frame, then the connection
/// closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame {
    pub code: Code,
    pub message: String,
}

impl BadFrame {
    fn invalid(message: impl Into<String>) -> BadFrame {
        BadFrame {
            code: Code::InvalidArgument,
            message: message.into(),
        }
    }
}

/// The acks of a PRODUCE, as the wire numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireAcks {
    None,
    Leader,
    All,
}

/// A PRODUCE's body; `batches` is a slice of the connection's read buffer.
#[derive(Debug, Clone)]
pub struct Produce {
    pub acks: WireAcks,
    pub timeout_ms: u32,
    pub topic: String,
    pub partition: u32,
    pub batches: Bytes,
}

/// A FETCH's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub max_bytes: u32,
}

/// A request frame, without its length.
#[derive(Debug, Clone)]
pub enum Request {
    Produce(Produce),
    Fetch(Fetch),
}

/// The head of a frame: its length (of what follows the prefix), kind and correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub length: usize,
    pub kind: u8,
    pub correlation_id: u64,
}

/// Reads the head at the start of `buf`, if all of it is there; checks the length
/// against `limit` before anything is allocated for the body.
pub fn head(buf: &[u8], limit: usize) -> Option<Result<Head, (Head, BadFrame)>> {
    if buf.len() < LENGTH_BYTES + HEAD_BYTES {
        return None;
    }
    let mut b = buf;
    let length = b.get_u32() as usize;
    let head = Head {
        length,
        kind: b.get_u8(),
        correlation_id: b.get_u64(),
    };
    if length < HEAD_BYTES {
        return Some(Err((
            head,
            BadFrame::invalid(format!(
                "frame length {length} is shorter than a frame's head ({HEAD_BYTES} bytes)"
            )),
        )));
    }
    if length > limit {
        return Some(Err((
            head,
            BadFrame {
                code: Code::ResourceExhausted,
                message: format!(
                    "frame of {length} bytes is over the limit of {limit} (max_request_bytes \
                     and {FRAME_HEAD_ALLOWANCE} bytes for the head)"
                ),
            },
        )));
    }
    Some(Ok(head))
}

/// Parses a whole request frame: `frame` is what follows its length prefix.
pub fn request(head: Head, mut frame: Bytes) -> Result<Request, BadFrame> {
    frame.advance(HEAD_BYTES);
    match head.kind {
        KIND_PRODUCE => {
            let acks = match u8_of(&mut frame, "acks")? {
                0 => WireAcks::None,
                1 => WireAcks::Leader,
                2 => WireAcks::All,
                n => return Err(BadFrame::invalid(format!("unknown acks {n} (0, 1 or 2)"))),
            };
            let timeout_ms = u32_of(&mut frame, "timeout_ms")?;
            let topic = topic_of(&mut frame)?;
            let partition = u32_of(&mut frame, "partition")?;
            if frame.is_empty() {
                return Err(BadFrame::invalid("PRODUCE without record batches"));
            }
            Ok(Request::Produce(Produce {
                acks,
                timeout_ms,
                topic,
                partition,
                batches: frame,
            }))
        }
        KIND_FETCH => {
            let topic = topic_of(&mut frame)?;
            let partition = u32_of(&mut frame, "partition")?;
            let offset = u64_of(&mut frame, "offset")? as i64;
            let max_bytes = u32_of(&mut frame, "max_bytes")?;
            if !frame.is_empty() {
                return Err(BadFrame::invalid(format!(
                    "FETCH has {} bytes after its fields",
                    frame.len()
                )));
            }
            Ok(Request::Fetch(Fetch {
                topic,
                partition,
                offset,
                max_bytes,
            }))
        }
        kind => Err(BadFrame::invalid(format!(
            "unknown frame kind {kind} (PRODUCE is {KIND_PRODUCE}, FETCH {KIND_FETCH})"
        ))),
    }
}

fn short(field: &str) -> BadFrame {
    BadFrame::invalid(format!("frame ends before its {field} field"))
}

fn u8_of(b: &mut Bytes, field: &str) -> Result<u8, BadFrame> {
    b.try_get_u8().map_err(|_| short(field))
}

fn u32_of(b: &mut Bytes, field: &str) -> Result<u32, BadFrame> {
    b.try_get_u32().map_err(|_| short(field))
}

fn u64_of(b: &mut Bytes, field: &str) -> Result<u64, BadFrame> {
    b.try_get_u64().map_err(|_| short(field))
}

fn topic_of(b: &mut Bytes) -> Result<String, BadFrame> {
    let len = b.try_get_u16().map_err(|_| short("topic length"))? as usize;
    if b.len() < len {
        return Err(short("topic"));
    }
    let name = b.split_to(len);
    String::from_utf8(name.to_vec()).map_err(|_| BadFrame::invalid("topic is not UTF-8"))
}

/// `message`, cut to [`MAX_MESSAGE_BYTES`] at a character boundary.
fn cut(message: &str) -> &str {
    let mut end = message.len().min(MAX_MESSAGE_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Writes a message (already [`cut`]) with its `u16` length.
fn put_message(out: &mut BytesMut, message: &str) {
    out.put_u16(message.len() as u16);
    out.put_slice(message.as_bytes());
}

/// Starts an answer frame: its length prefix (counting the head, `fixed` bytes of
/// fields, the message and `tail` bytes sent after this buffer), kind and correlation id.
fn start(kind: u8, correlation_id: u64, fixed: usize, message: &str, tail: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(LENGTH_BYTES + HEAD_BYTES + fixed + 2 + message.len());
    let length = HEAD_BYTES + fixed + 2 + message.len() + tail;
    out.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
    out.put_u8(kind);
    out.put_u64(correlation_id);
    out
}

/// A PRODUCE_RESPONSE frame.
pub fn produce_response(correlation_id: u64, code: u32, base_offset: i64, message: &str) -> Bytes {
    let message = cut(message);
    let mut out = start(KIND_PRODUCE_RESPONSE, correlation_id, 4 + 8, message, 0);
    out.put_u32(code);
    out.put_i64(base_offset);
    put_message(&mut out, message);
    out.freeze()
}

/// The head of a FETCH_RESPONSE frame whose `batches_len` batch bytes follow it.
pub fn fetch_response_head(
    correlation_id: u64,
    code: u32,
    high_watermark: i64,
    next_offset: i64,
    message: &str,
    batches_len: usize,
) -> Bytes {
    let message = cut(message);
    let mut out = start(
        KIND_FETCH_RESPONSE,
        correlation_id,
        4 + 8 + 8,
        message,
        batches_len,
    );
    out.put_u32(code);
    out.put_i64(high_watermark);
    out.put_i64(next_offset);
    put_message(&mut out, message);
    out.freeze()
}

/// An ERROR frame.
pub fn error(correlation_id: u64, bad: &BadFrame) -> Bytes {
    let message = cut(&bad.message);
    let mut out = start(KIND_ERROR, correlation_id, 4, message, 0);
    out.put_u32(bad.code as u32);
    put_message(&mut out, message);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, id: u64, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32((HEAD_BYTES + body.len()) as u32);
        b.put_u8(kind);
        b.put_u64(id);
        b.put_slice(body);
        b
    }

    fn parse(buf: BytesMut) -> Result<Request, BadFrame> {
        let head = head(&buf, 1 << 20).expect("whole head").expect("length ok");
        let mut buf = buf;
        buf.advance(LENGTH_BYTES);
        request(head, buf.freeze())
    }

    #[test]
    fn produce_and_fetch_parse() {
        let mut body = BytesMut::new();
        body.put_u8(1);
        body.put_u32(500);
        body.put_u16(3);
        body.put_slice(b"abc");
        body.put_u32(7);
        body.put_slice(b"BATCH");
        let Request::Produce(p) = parse(frame(KIND_PRODUCE, 9, &body)).unwrap() else {
            panic!("not a produce");
        };
        assert_eq!(
            (p.acks, p.timeout_ms, p.topic.as_str(), p.partition),
            (WireAcks::Leader, 500, "abc", 7)
        );
        assert_eq!(&p.batches[..], b"BATCH");

        let mut body = BytesMut::new();
        body.put_u16(1);
        body.put_slice(b"t");
        body.put_u32(0);
        body.put_i64(42);
        body.put_u32(1024);
        let Request::Fetch(f) = parse(frame(KIND_FETCH, 1, &body)).unwrap() else {
            panic!("not a fetch");
        };
        assert_eq!((f.offset, f.max_bytes), (42, 1024));
    }

    #[test]
    fn bad_frames_are_refused() {
        // Over the limit: refused from the head alone, before the body is there.
        let mut b = BytesMut::new();
        b.put_u32(1 << 21);
        b.put_u8(KIND_PRODUCE);
        b.put_u64(5);
        let (h, bad) = head(&b, 1 << 20).unwrap().unwrap_err();
        assert_eq!((h.correlation_id, bad.code), (5, Code::ResourceExhausted));
        // Shorter than a head.
        let mut b = BytesMut::new();
        b.put_u32(3);
        b.put_slice(&[0; 9]);
        assert_eq!(
            head(&b, 1 << 20).unwrap().unwrap_err().1.code,
            Code::InvalidArgument
        );
        // A topic length past the end, an unknown kind, no batches.
        let mut body = BytesMut::new();
        body.put_u16(50);
        body.put_slice(b"t");
        assert!(parse(frame(KIND_FETCH, 1, &body)).is_err());
        assert!(parse(frame(9, 1, &[])).is_err());
        let mut body = BytesMut::new();
        body.put_u8(1);
        body.put_u32(0);
        body.put_u16(1);
        body.put_slice(b"t");
        body.put_u32(0);
        assert!(parse(frame(KIND_PRODUCE, 1, &body)).is_err());
    }

    /// A PRODUCE frame as a client writes it.
    fn produce_frame(
        id: u64,
        acks: u8,
        timeout_ms: u32,
        topic: &str,
        partition: u32,
        batches: &[u8],
    ) -> BytesMut {
        let mut body = BytesMut::new();
        body.put_u8(acks);
        body.put_u32(timeout_ms);
        body.put_u16(topic.len() as u16);
        body.put_slice(topic.as_bytes());
        body.put_u32(partition);
        body.put_slice(batches);
        frame(KIND_PRODUCE, id, &body)
    }

    proptest::proptest! {
        /// The batch bytes the broker hands to the log are the bytes the client sent, as
        /// a slice of the frame it read (no copy), and every field comes back as sent.
        #[test]
        fn produce_frames_give_back_what_was_sent(
            id in proptest::prelude::any::<u64>(),
            acks in 0u8..3,
            timeout_ms in proptest::prelude::any::<u32>(),
            topic in "[a-zA-Z0-9._-]{1,249}",
            partition in proptest::prelude::any::<u32>(),
            batches in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..4096),
        ) {
            let buf = produce_frame(id, acks, timeout_ms, &topic, partition, &batches).freeze();
            let h = head(&buf, 1 << 20).expect("whole head").expect("length ok");
            proptest::prop_assert_eq!((h.length, h.correlation_id), (buf.len() - LENGTH_BYTES, id));
            let frame = buf.slice(LENGTH_BYTES..);
            let Ok(Request::Produce(p)) = request(h, frame.clone()) else {
                return Err(proptest::test_runner::TestCaseError::fail("not a produce"));
            };
            proptest::prop_assert_eq!(p.acks as u8, acks);
            proptest::prop_assert_eq!((p.timeout_ms, p.topic.as_str(), p.partition), (timeout_ms, topic.as_str(), partition));
            proptest::prop_assert_eq!(&p.batches[..], &batches[..]);
            let start = frame.as_ptr() as usize;
            let at = p.batches.as_ptr() as usize;
            proptest::prop_assert!(at >= start && at + p.batches.len() <= start + frame.len());
        }

        /// Any bytes at all are a whole request, a refusal or "not all here yet": never
        /// a panic. Half the cases are arbitrary bytes (mostly a head announcing more than
        /// is there); the other half a frame of the right length around an arbitrary body
        /// of either kind, so the body parsers meet every way a field can be cut short.
        #[test]
        fn any_bytes_are_read_or_refused(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            framed in proptest::prelude::any::<bool>(),
            kind in proptest::prelude::prop_oneof![
                proptest::prelude::Just(KIND_PRODUCE),
                proptest::prelude::Just(KIND_FETCH),
                proptest::prelude::any::<u8>(),
            ],
        ) {
            let bytes = if framed { frame(kind, 7, &raw).to_vec() } else { raw };
            if let Some(Ok(h)) = head(&bytes, 1 << 20)
                && bytes.len() >= LENGTH_BYTES + h.length
            {
                let frame = Bytes::copy_from_slice(&bytes[LENGTH_BYTES..LENGTH_BYTES + h.length]);
                if let Ok(Request::Produce(p)) = request(h, frame) {
                    proptest::prop_assert!(!p.batches.is_empty() && p.batches.len() < h.length);
                }
            }
        }

        /// A FETCH_RESPONSE head's length counts the batch bytes sent after it, so a
        /// client reading `length` bytes gets exactly the head's fields and the batches.
        #[test]
        fn fetch_answer_lengths_cover_the_batches(
            id in proptest::prelude::any::<u64>(),
            message in ".{0,64}",
            batches_len in 0usize..(16 << 20),
        ) {
            let h = fetch_response_head(id, 0, 10, 5, &message, batches_len);
            let mut b = &h[..];
            let length = b.get_u32() as usize;
            proptest::prop_assert_eq!(length, h.len() - LENGTH_BYTES + batches_len);
            proptest::prop_assert_eq!((b.get_u8(), b.get_u64()), (KIND_FETCH_RESPONSE, id));
            b.advance(4 + 8 + 8);
            let n = b.get_u16() as usize;
            proptest::prop_assert_eq!(n, b.len());
            proptest::prop_assert_eq!(std::str::from_utf8(b).ok(), Some(message.as_str()));
        }
    }

    #[test]
    fn long_messages_are_cut_at_a_character() {
        let message = "é".repeat(MAX_MESSAGE_BYTES);
        let f = produce_response(1, 3, -1, &message);
        let mut b = &f[..];
        let length = b.get_u32() as usize;
        assert_eq!(length, f.len() - LENGTH_BYTES);
        b.advance(HEAD_BYTES + 4 + 8);
        let n = b.get_u16() as usize;
        assert!(n <= MAX_MESSAGE_BYTES);
        assert!(std::str::from_utf8(&b[..n]).is_ok());
        assert_eq!(b.len(), n);
    }
}
