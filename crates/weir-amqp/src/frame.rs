//! AMQP frames on the wire: the protocol header, reading one frame with its length
//! checked against the negotiated `frame_max` before anything is allocated, and writing
//! frames. The bytes inside a frame are decoded and encoded by `amq-protocol`; this
//! module only finds where a frame ends and sorts what cannot be decoded into the reply
//! codes the spec gives it, and writes a body frame around a record's bytes
//! ([`encode_body`]).

use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::{AMQPClass, constants};
use amq_protocol::types::{AMQPValue, FieldTable};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::errors::{FRAME_ERROR, NOT_IMPLEMENTED, Reply, SYNTAX_ERROR};

/// The protocol header of AMQP 0-9-1, which a client sends first and the broker answers
/// with when it is sent another.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// The largest frame the broker offers and accepts, header and end octet included
/// (RabbitMQ's default): what `connection.tune` offers, and the bound before tuning.
pub const MAX_FRAME_BYTES: u32 = 131_072;

/// The smallest `frame_max` a client may ask for (the spec's `frame-min-size`, which
/// every peer must accept; RabbitMQ refuses less too).
pub const MIN_FRAME_BYTES: u32 = 4_096;

/// Type octet, channel and payload length.
const FRAME_HEADER_BYTES: usize = 7;
/// The frame-end octet every frame closes with.
const FRAME_END: u8 = 0xCE;

/// What reading a frame came to, other than a frame.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection, or the socket failed: nothing to answer.
    Gone(std::io::Error),
    /// A frame the broker cannot take: the connection is closed with this reply.
    Refused(Reply),
}

impl From<std::io::Error> for ReadError {
    fn from(err: std::io::Error) -> ReadError {
        ReadError::Gone(err)
    }
}

/// Reads one frame, refusing one longer than `frame_max` (counting its 8 octets of
/// framing) before its payload is read or allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_max: u32,
) -> Result<AMQPFrame, ReadError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    reader.read_exact(&mut header).await?;
    let frame_type = header[0];
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    if !matches!(frame_type, 1 | 2 | 3 | 8) {
        return Err(ReadError::Refused(Reply::connection(
            FRAME_ERROR,
            format!("unknown frame type {frame_type}"),
        )));
    }
    let total = u64::from(size) + FRAME_HEADER_BYTES as u64 + 1;
    if total > u64::from(frame_max) {
        return Err(ReadError::Refused(Reply::connection(
            FRAME_ERROR,
            format!("a frame of {total} bytes is over frame_max {frame_max}"),
        )));
    }
    // Checked against frame_max just above: at most MAX_FRAME_BYTES.
    let total = total as usize;
    let mut buf = Vec::with_capacity(total);
    buf.extend_from_slice(&header);
    buf.resize(total, 0);
    reader.read_exact(&mut buf[FRAME_HEADER_BYTES..]).await?;
    if buf[total - 1] != FRAME_END {
        return Err(ReadError::Refused(Reply::connection(
            FRAME_ERROR,
            format!(
                "the frame does not end with the frame-end octet (found {:#04x})",
                buf[total - 1]
            ),
        )));
    }
    match decode(frame_type, buf).await {
        Ok(frame) => Ok(frame),
        Err((buf, err)) => Err(ReadError::Refused(undecodable(
            frame_type,
            // Empty when the decoding thread failed, not the decoder.
            buf.get(FRAME_HEADER_BYTES..total - 1).unwrap_or_default(),
            &err,
        ))),
    }
}

/// Most field-table and array type octets (`F`, `A`) a method or content header may hold
/// to be decoded on the connection's own task. amq-protocol decodes (and Rust drops)
/// nested tables by recursion without a depth limit: a 128 KiB `start-ok` of tables
/// nested 18,000 deep overflowed a runtime thread's stack and aborted the broker, before
/// authentication. Nesting cannot be deeper than the number of these octets, so a frame
/// with few is safe anywhere; one with more is decoded, measured and, if nested deeper
/// than [`MAX_FIELD_NESTING`], refused and dropped on a thread with
/// [`DEEP_DECODE_STACK_BYTES`].
const SHALLOW_NESTING_OCTETS: usize = 64;

/// Deepest nesting of field tables and arrays accepted in a frame (RabbitMQ's own
/// headers, `x-death` among them, nest three levels).
pub const MAX_FIELD_NESTING: usize = 32;

/// The stack of the thread that decodes a frame which might nest deeply: room for
/// nesting as deep as a `MAX_FRAME_BYTES` frame can hold (a level takes at least 6 bytes
/// of it). Reserved, not touched, until used.
const DEEP_DECODE_STACK_BYTES: usize = 512 * 1024 * 1024;

/// Decodes a complete frame (checked against frame_max); on failure hands the bytes back
/// with the decoder's message.
async fn decode(frame_type: u8, buf: Vec<u8>) -> Result<AMQPFrame, (Vec<u8>, String)> {
    let nesting = buf[FRAME_HEADER_BYTES..]
        .iter()
        .filter(|&&b| b == b'F' || b == b'A')
        .count();
    // Bodies and heartbeats hold no field tables.
    if !matches!(frame_type, 1 | 2) || nesting <= SHALLOW_NESTING_OCTETS {
        return parse(buf);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("amqp-deep-decode".into())
        .stack_size(DEEP_DECODE_STACK_BYTES)
        .spawn(move || {
            let checked = match parse_frame(&buf[..]) {
                Ok((_, frame)) => match nesting_of(&frame) {
                    deep if deep > MAX_FIELD_NESTING => {
                        // Dropped here, on this thread's stack.
                        drop(frame);
                        Err((
                            buf,
                            format!("field tables nested {deep} deep; at most {MAX_FIELD_NESTING}"),
                        ))
                    }
                    _ => Ok(frame),
                },
                Err(err) => Err((buf, err.to_string())),
            };
            let _ = tx.send(checked);
        });
    match spawned {
        Ok(_) => rx.await.unwrap_or_else(|_| {
            Err((
                Vec::new(),
                "the decoding thread ended without an answer".into(),
            ))
        }),
        Err(err) => Err((
            Vec::new(),
            format!("no thread to decode the frame on: {err}"),
        )),
    }
}

/// How deep the field tables of a decoded frame nest (recursive: called on the deep
/// decoding thread only).
fn nesting_of(frame: &AMQPFrame) -> usize {
    use amq_protocol::protocol::{basic, connection, exchange, queue};
    fn table(t: &FieldTable) -> usize {
        1 + t.inner().values().map(value).max().unwrap_or(0)
    }
    fn value(v: &AMQPValue) -> usize {
        match v {
            AMQPValue::FieldTable(t) => table(t),
            AMQPValue::FieldArray(a) => 1 + a.as_slice().iter().map(value).max().unwrap_or(0),
            _ => 0,
        }
    }
    match frame {
        AMQPFrame::Header(_, header) => header.properties.headers().as_ref().map_or(0, table),
        AMQPFrame::Method(_, class) => match class {
            AMQPClass::Connection(connection::AMQPMethod::StartOk(m)) => {
                table(&m.client_properties)
            }
            AMQPClass::Connection(connection::AMQPMethod::Start(m)) => table(&m.server_properties),
            AMQPClass::Queue(queue::AMQPMethod::Declare(m)) => table(&m.arguments),
            AMQPClass::Queue(queue::AMQPMethod::Bind(m)) => table(&m.arguments),
            AMQPClass::Queue(queue::AMQPMethod::Unbind(m)) => table(&m.arguments),
            AMQPClass::Basic(basic::AMQPMethod::Consume(m)) => table(&m.arguments),
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(m)) => table(&m.arguments),
            AMQPClass::Exchange(exchange::AMQPMethod::Bind(m)) => table(&m.arguments),
            AMQPClass::Exchange(exchange::AMQPMethod::Unbind(m)) => table(&m.arguments),
            _ => 0,
        },
        _ => 0,
    }
}

fn parse(buf: Vec<u8>) -> Result<AMQPFrame, (Vec<u8>, String)> {
    let parsed = parse_frame(&buf[..])
        .map(|(_, frame)| frame)
        .map_err(|e| e.to_string());
    parsed.map_err(|err| (buf, err))
}

/// Why a complete frame did not decode: an unknown class or method is NOT_IMPLEMENTED, a
/// known method with bad arguments SYNTAX_ERROR, anything else FRAME_ERROR.
fn undecodable(frame_type: u8, payload: &[u8], err: &str) -> Reply {
    if frame_type == 1 && payload.len() >= 4 {
        let class_id = u16::from_be_bytes([payload[0], payload[1]]);
        let method_id = u16::from_be_bytes([payload[2], payload[3]]);
        if !is_known_method(class_id, method_id) {
            return Reply::connection(
                NOT_IMPLEMENTED,
                format!("unknown method {class_id}.{method_id}"),
            )
            .on(class_id, method_id);
        }
        return Reply::connection(
            SYNTAX_ERROR,
            format!("the arguments of method {class_id}.{method_id} do not decode: {err}"),
        )
        .on(class_id, method_id);
    }
    Reply::connection(
        FRAME_ERROR,
        format!("a frame of type {frame_type} does not decode: {err}"),
    )
}

/// Whether AMQP 0-9-1 (with RabbitMQ's extensions, as amq-protocol decodes them) has
/// method `method_id` in class `class_id`.
fn is_known_method(class_id: u16, method_id: u16) -> bool {
    let methods: &[u16] = match class_id {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        20 => &[10, 11, 20, 21, 40, 41],
        30 => &[10, 11],
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        60 => &[
            10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120,
        ],
        85 => &[10, 11],
        90 => &[10, 11, 20, 21, 30, 31],
        _ => &[],
    };
    methods.contains(&method_id)
}

/// Appends a content body frame carrying `body` to `out`, from the borrowed bytes:
/// `AMQPFrame::Body` owns its payload, and copying each delivery's body into one only
/// to copy it again into `out` cost a delivery an allocation and a copy. The framing
/// is the spec's (type 3, channel, size, payload, frame end), what `amq-protocol`
/// writes for a body frame (a test compares the two). `body` fits one frame: the
/// caller splits at `frame_max` (at most [`MAX_FRAME_BYTES`]).
pub fn encode_body(channel: u16, body: &[u8], out: &mut Vec<u8>) {
    debug_assert!(body.len() < MAX_FRAME_BYTES as usize);
    // At most MAX_FRAME_BYTES (above): fits.
    let size = body.len() as u32;
    out.reserve(FRAME_HEADER_BYTES + body.len() + 1);
    out.push(constants::FRAME_BODY);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(body);
    out.push(FRAME_END);
}

/// Appends `frame`'s bytes to `out`. Fails only for a frame the broker built wrongly (a
/// short string over 255 bytes): a bug, reported rather than sent.
pub fn encode(frame: &AMQPFrame, out: &mut Vec<u8>) -> Result<(), String> {
    let buffer = std::mem::take(out);
    match gen_frame(frame)(WriteContext::from(buffer)) {
        Ok(ctx) => {
            *out = ctx.into_inner().0;
            Ok(())
        }
        // The generator consumed the buffer: what was queued before is lost with it, and
        // the caller drops the connection.
        Err(err) => Err(format!("encoding {frame}: {err:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::channel;

    async fn read(bytes: &[u8], frame_max: u32) -> Result<AMQPFrame, ReadError> {
        let mut reader = bytes;
        read_frame(&mut reader, frame_max).await
    }

    fn code(result: Result<AMQPFrame, ReadError>) -> u16 {
        match result {
            Err(ReadError::Refused(reply)) => reply.code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_body_frame_is_framed_as_amq_protocol_frames_it() {
        for body in [&b""[..], b"x", &[7u8; 5000][..]] {
            let mut ours = b"before".to_vec();
            encode_body(513, body, &mut ours);
            let mut theirs = b"before".to_vec();
            encode(&AMQPFrame::Body(513, body.to_vec()), &mut theirs).unwrap();
            assert_eq!(ours, theirs);
        }
    }

    #[tokio::test]
    async fn a_method_frame_round_trips() {
        let frame = AMQPFrame::Method(
            3,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        );
        let mut bytes = Vec::new();
        encode(&frame, &mut bytes).unwrap();
        assert_eq!(read(&bytes, MAX_FRAME_BYTES).await.unwrap(), frame);
    }

    #[tokio::test]
    async fn an_oversize_frame_is_refused_from_its_header_alone() {
        // Only the 7-byte header: the length is refused before the payload is read.
        let mut header = vec![1u8, 0, 1];
        header.extend_from_slice(&(MAX_FRAME_BYTES - 7).to_be_bytes());
        assert_eq!(code(read(&header, MAX_FRAME_BYTES).await), FRAME_ERROR);
        let mut header = vec![3u8, 0, 1];
        header.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(code(read(&header, MAX_FRAME_BYTES).await), FRAME_ERROR);
    }

    #[tokio::test]
    async fn deeply_nested_tables_are_refused_without_overflowing_the_stack() {
        // connection.start-ok whose client properties nest tables 18,000 deep, within
        // MAX_FRAME_BYTES (as deep as aborted the broker on a runtime thread): decoded,
        // measured and dropped on a thread whose stack holds it, and refused.
        let mut table = 0u32.to_be_bytes().to_vec();
        for _ in 0..18_000 {
            let mut entry = vec![1, b'k', b'F'];
            entry.extend_from_slice(&table);
            table = (entry.len() as u32).to_be_bytes().to_vec();
            table.extend_from_slice(&entry);
        }
        let mut payload = vec![0, 10, 0, 11];
        payload.extend_from_slice(&table);
        payload.extend_from_slice(b"\x05PLAIN\x00\x00\x00\x0c\x00guest\x00guest\x05en_US");
        let mut frame = vec![1, 0, 0];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame.push(0xCE);
        assert!(frame.len() as u32 <= MAX_FRAME_BYTES);
        assert_eq!(code(read(&frame, MAX_FRAME_BYTES).await), SYNTAX_ERROR);
        // Many tables side by side, none nested: decoded.
        let mut table = Vec::new();
        for i in 0..100u8 {
            table.extend_from_slice(&[2, b'k', i, b'F', 0, 0, 0, 0]);
        }
        let mut payload = vec![0, 10, 0, 11];
        payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
        payload.extend_from_slice(&table);
        payload.extend_from_slice(b"\x05PLAIN\x00\x00\x00\x0c\x00guest\x00guest\x05en_US");
        let mut frame = vec![1, 0, 0];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame.push(0xCE);
        let decoded = read(&frame, MAX_FRAME_BYTES).await.expect("decodes");
        assert!(matches!(
            decoded,
            AMQPFrame::Method(0, AMQPClass::Connection(_))
        ));
    }

    #[tokio::test]
    async fn bad_frames_get_the_spec_codes() {
        // Unknown frame type.
        assert_eq!(
            code(read(&[9, 0, 0, 0, 0, 0, 0, 0xCE], 4096).await),
            FRAME_ERROR
        );
        // No frame-end octet.
        assert_eq!(
            code(read(&[8, 0, 0, 0, 0, 0, 0, 0x00], 4096).await),
            FRAME_ERROR
        );
        // Unknown class 99, method 10.
        let unknown = [1, 0, 1, 0, 0, 0, 4, 0, 99, 0, 10, 0xCE];
        assert_eq!(code(read(&unknown, 4096).await), NOT_IMPLEMENTED);
        // queue.declare (50.10) cut short: a known method whose arguments do not decode.
        let short = [1, 0, 1, 0, 0, 0, 5, 0, 50, 0, 10, 0, 0xCE];
        assert_eq!(code(read(&short, 4096).await), SYNTAX_ERROR);
    }
}
