//! The experimental binary TCP data path (`wire_listen`), end to end over a real socket:
//! pipelined PRODUCEs read back with FETCH (in order, none lost, none doubled), and the
//! error codes of bad requests and bad frames. The frames are written here by hand, from
//! the protocol's description, not with the server's own codec.

mod common;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{bounded, config, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use weir_log::{Compression, Record, RecordBatchBuilder, decode_records};
use weir_server::{RunningServer, WIRE_FRAME_HEAD_ALLOWANCE};

const PRODUCE: u8 = 1;
const FETCH: u8 = 2;
const PRODUCE_RESPONSE: u8 = 0x81;
const FETCH_RESPONSE: u8 = 0x82;
const ERROR: u8 = 0xFF;
/// Small, so a frame over the limit is cheap to announce.
const MAX_REQUEST_BYTES: usize = 256 * 1024;

async fn start(dir: &std::path::Path) -> RunningServer {
    weir_server::start(weir_server::ServerConfig {
        kafka_listen: None,
        wire_listen: Some("127.0.0.1:0".parse().unwrap()),
        max_request_bytes: MAX_REQUEST_BYTES,
        // An unknown topic stays unknown: the test sees its error code.
        auto_create_topics: false,
        ..config(dir)
    })
    .await
    .expect("server starts")
}

fn frame(kind: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(13 + body.len());
    b.put_u32((9 + body.len()) as u32);
    b.put_u8(kind);
    b.put_u64(id);
    b.put_slice(body);
    b
}

fn produce(id: u64, acks: u8, topic: &str, partition: u32, batches: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.put_u8(acks);
    body.put_u32(10_000);
    body.put_u16(topic.len() as u16);
    body.put_slice(topic.as_bytes());
    body.put_u32(partition);
    body.put_slice(batches);
    frame(PRODUCE, id, &body)
}

fn fetch(id: u64, topic: &str, partition: u32, offset: i64, max_bytes: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.put_u16(topic.len() as u16);
    body.put_slice(topic.as_bytes());
    body.put_u32(partition);
    body.put_i64(offset);
    body.put_u32(max_bytes);
    frame(FETCH, id, &body)
}

/// One answer frame: kind, correlation id, body.
async fn read_frame(s: &mut TcpStream) -> Option<(u8, u64, Bytes)> {
    let mut len = [0; 4];
    if s.read_exact(&mut len).await.is_err() {
        return None;
    }
    let mut rest = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut rest).await.expect("whole frame");
    let mut rest = Bytes::from(rest);
    let kind = rest.get_u8();
    let id = rest.get_u64();
    Some((kind, id, rest))
}

fn message(b: &mut Bytes) -> String {
    let n = b.get_u16() as usize;
    String::from_utf8(b.split_to(n).to_vec()).expect("UTF-8 message")
}

/// `(code, base_offset, message)` of a PRODUCE_RESPONSE to `id`.
async fn produce_answer(s: &mut TcpStream, id: u64) -> (u32, i64, String) {
    let (kind, got, mut b) = read_frame(s).await.expect("an answer");
    assert_eq!((kind, got), (PRODUCE_RESPONSE, id));
    let code = b.get_u32();
    let base = b.get_i64();
    (code, base, message(&mut b))
}

struct Fetched {
    code: u32,
    high_watermark: i64,
    next_offset: i64,
    message: String,
    batches: Bytes,
}

async fn fetch_answer(s: &mut TcpStream, id: u64) -> Fetched {
    let (kind, got, mut b) = read_frame(s).await.expect("an answer");
    assert_eq!((kind, got), (FETCH_RESPONSE, id));
    let code = b.get_u32();
    let high_watermark = b.get_i64();
    let next_offset = b.get_i64();
    let message = message(&mut b);
    Fetched {
        code,
        high_watermark,
        next_offset,
        message,
        batches: b,
    }
}

fn batch(first: usize, count: usize) -> Bytes {
    let mut builder = RecordBatchBuilder::new(Compression::None);
    for i in first..first + count {
        builder
            .try_push(&Record {
                value: Some(Bytes::from(format!("record-{i}"))),
                timestamp: 1_700_000_000_000 + i as i64,
                ..Record::default()
            })
            .unwrap();
    }
    builder.build().unwrap().freeze()
}

/// Every batch in `bytes` (a fetch's answer), decoded (CRC checked).
fn values(mut bytes: Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = 12 + u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
        for r in decode_records(&bytes.split_to(len)).expect("a valid batch") {
            let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            out.push((r.offset, value));
        }
    }
    out
}

#[tokio::test]
async fn pipelined_produces_come_back_in_order_none_lost_none_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    bounded(async {
        let mut clients = connect(server.addr).await;
        clients.create("w", 1, &[]).await;
        let mut s = TcpStream::connect(server.wire_addr.expect("wire listener"))
            .await
            .unwrap();
        const BATCHES: usize = 40;
        const PER_BATCH: usize = 25;
        // All frames in one write: the broker pipelines them.
        let mut out = Vec::new();
        for k in 0..BATCHES {
            let acks = [1, 2][k % 2];
            out.extend(produce(
                100 + k as u64,
                acks,
                "w",
                0,
                &batch(k * PER_BATCH, PER_BATCH),
            ));
        }
        s.write_all(&out).await.unwrap();
        for k in 0..BATCHES {
            let (code, base, msg) = produce_answer(&mut s, 100 + k as u64).await;
            assert_eq!(code, 0, "{msg}");
            assert_eq!(base, (k * PER_BATCH) as i64);
        }
        // Read back in small fetches, one at a time.
        let total = (BATCHES * PER_BATCH) as i64;
        let mut got = Vec::new();
        let mut offset = 0;
        let mut id = 1000;
        while offset < total {
            s.write_all(&fetch(id, "w", 0, offset, 700)).await.unwrap();
            let f = fetch_answer(&mut s, id).await;
            assert_eq!(f.code, 0, "{}", f.message);
            assert_eq!(f.high_watermark, total);
            assert!(
                f.next_offset > offset,
                "a fetch below the watermark moves on"
            );
            got.extend(values(f.batches));
            offset = f.next_offset;
            id += 1;
        }
        let want: Vec<(i64, String)> = (0..total).map(|i| (i, format!("record-{i}"))).collect();
        assert_eq!(got, want);
        // At the high watermark: nothing, at once (no long-poll).
        s.write_all(&fetch(1, "w", 0, total, 0)).await.unwrap();
        let f = fetch_answer(&mut s, 1).await;
        assert_eq!((f.code, f.next_offset, f.batches.len()), (0, total, 0));
    })
    .await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_grpc_codes_and_bad_frames_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let wire = server.wire_addr.expect("wire listener");
    bounded(async {
        let mut clients = connect(server.addr).await;
        clients.create("w", 1, &[]).await;
        let mut s = TcpStream::connect(wire).await.unwrap();
        // Request errors are answered; the connection stays open.
        s.write_all(&produce(1, 1, "nope", 0, &batch(0, 1)))
            .await
            .unwrap();
        let (code, base, msg) = produce_answer(&mut s, 1).await;
        assert_eq!((code, base), (Code::NotFound as u32, -1), "{msg}");
        s.write_all(&produce(2, 1, "w", 7, &batch(0, 1)))
            .await
            .unwrap();
        let (code, _, msg) = produce_answer(&mut s, 2).await;
        assert_eq!(code, Code::InvalidArgument as u32, "{msg}");
        s.write_all(&produce(3, 1, "w", 0, b"not a record batch"))
            .await
            .unwrap();
        let (code, _, msg) = produce_answer(&mut s, 3).await;
        assert_ne!(code, 0, "garbage is refused: {msg}");
        s.write_all(&fetch(4, "nope", 0, 0, 0)).await.unwrap();
        assert_eq!(fetch_answer(&mut s, 4).await.code, Code::NotFound as u32);
        s.write_all(&fetch(5, "w", 9, 0, 0)).await.unwrap();
        assert_eq!(
            fetch_answer(&mut s, 5).await.code,
            Code::InvalidArgument as u32
        );
        s.write_all(&fetch(6, "w", 0, 50, 0)).await.unwrap();
        assert_eq!(fetch_answer(&mut s, 6).await.code, Code::OutOfRange as u32);
        s.write_all(&produce(7, 1, "w", 0, &batch(0, 3)))
            .await
            .unwrap();
        assert_eq!(produce_answer(&mut s, 7).await.0, 0);

        // A frame over the limit: refused from its length alone, then closed.
        let over = MAX_REQUEST_BYTES + WIRE_FRAME_HEAD_ALLOWANCE + 1;
        let mut head = BytesMut::new();
        head.put_u32(over as u32);
        head.put_u8(PRODUCE);
        head.put_u64(8);
        s.write_all(&head).await.unwrap();
        let (kind, id, mut b) = read_frame(&mut s).await.expect("an error frame");
        assert_eq!((kind, id), (ERROR, 8));
        assert_eq!(b.get_u32(), Code::ResourceExhausted as u32);
        assert!(message(&mut b).contains("over the limit"));
        assert!(read_frame(&mut s).await.is_none(), "closed after the error");

        // An unknown kind, on a new connection.
        let mut s = TcpStream::connect(wire).await.unwrap();
        s.write_all(&frame(42, 9, b"")).await.unwrap();
        let (kind, id, mut b) = read_frame(&mut s).await.expect("an error frame");
        assert_eq!(
            (kind, id, b.get_u32()),
            (ERROR, 9, Code::InvalidArgument as u32)
        );
        assert!(read_frame(&mut s).await.is_none(), "closed after the error");
    })
    .await;
    server.shutdown().await.unwrap();
}
