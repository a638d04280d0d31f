//! A bad producer must never make a partition unreadable: compressed batches whose
//! compressed bytes are damaged under a recomputed CRC, decompression bombs and
//! mislabelled batches are refused on produce with nothing appended; and a batch that
//! is stored but cannot be decoded (written into a stopped broker's segment file, as a
//! broker without these checks could have stored it) is reported, and readers get the
//! records before it and an error that says where to continue past it. Real brokers on
//! 127.0.0.1:0 and the generated tonic clients.

use crate::common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;
use tracing_subscriber::util::SubscriberInitExt;
use weir_proto::v1::*;

const CODECS: [(Compression, weir_log::Compression); 4] = [
    (Compression::Gzip, weir_log::Compression::Gzip),
    (Compression::Snappy, weir_log::Compression::Snappy),
    (Compression::Lz4, weir_log::Compression::Lz4),
    (Compression::Zstd, weir_log::Compression::Zstd),
];

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// `batch` (one whole batch) with bytes in the middle of its records section inverted
/// and its CRC recomputed over the damage: intact as far as length and CRC go.
fn damage(batch: &mut [u8]) {
    let header = weir_log::batch::HEADER_BYTES;
    let middle = header + (batch.len() - header) / 2;
    for byte in &mut batch[middle..middle + 16] {
        *byte = !*byte;
    }
    let count = weir_log::BatchHeader::parse(batch).record_count;
    weir_log::batch::reseal(batch, count);
}

fn damaged(batch: Bytes) -> Bytes {
    let mut bytes = batch.to_vec();
    damage(&mut bytes);
    weir_log::batch::validate(&bytes).expect("intact up to its CRC");
    Bytes::from(bytes)
}

/// Damages the stored batch that starts at `base_offset` in the partition directory
/// `dir` of a stopped broker, in place (see [`damage`]).
fn damage_stored_batch(dir: &Path, base_offset: i64) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let mut at = 0;
        while let Ok(len) = weir_log::batch::framed_len(&bytes[at..]) {
            let header = weir_log::BatchHeader::parse(&bytes[at..at + len]);
            if header.base_offset == base_offset {
                damage(&mut bytes[at..at + len]);
                std::fs::write(&path, &bytes).unwrap();
                return;
            }
            at += len;
        }
    }
    panic!(
        "no stored batch starts at offset {base_offset} in {}",
        dir.display()
    );
}

/// What the broker logs, captured: the tests run on one thread (tokio's current-thread
/// runtime), so a thread-local subscriber sees the broker's request handlers.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn string_values(records: &[ConsumedRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

fn labelled(partition: u32, batches: Bytes, compression: Compression) -> PartitionRecords {
    PartitionRecords {
        compression: compression as i32,
        ..packed(partition, batches)
    }
}

#[tokio::test]
async fn a_damaged_compressed_batch_is_refused_for_every_codec_with_nothing_of_its_request_appended()
 {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("t", 1, &[]).await;
        let before = vec!["before".to_owned()];
        let r = &c
            .produce(request(
                "t",
                vec![plain(0, &before, Compression::None)],
                Acks::All,
            ))
            .await
            .results[0];
        assert_eq!(r.error, None);
        for (_, codec) in CODECS {
            // A good batch, then the damaged one, in one partition's data.
            let good = batch(&values(&format!("good-{codec}"), 3), codec, 1_000);
            let bad = damaged(batch(&values(&format!("bad-{codec}"), 200), codec, 1_000));
            let mut data = good.to_vec();
            data.extend_from_slice(&bad);
            let r = &c
                .produce(request("t", vec![packed(0, data.into())], Acks::All))
                .await
                .results[0];
            let error = r
                .error
                .as_ref()
                .unwrap_or_else(|| panic!("{codec} accepted"));
            assert_eq!(
                error.code,
                Code::InvalidArgument as i32,
                "{codec}: {error:?}"
            );
            assert_eq!(error.reason, "CORRUPT_BATCH", "{codec}: {error:?}");
            let batch_named = format!("batch 1 (at byte {} of the request) is invalid", good.len());
            assert!(
                error.message.contains(&batch_named),
                "{codec}: {}",
                error.message
            );
            assert_eq!((r.base_offset, r.last_offset), (-1, -1));
        }
        let after = vec!["after".to_owned()];
        let r = &c
            .produce(request(
                "t",
                vec![plain(0, &after, Compression::Zstd)],
                Acks::All,
            ))
            .await
            .results[0];
        assert_eq!((r.error.as_ref(), r.base_offset), (None, 1));
        // Nothing of a refused request, good batch included, was appended, and every
        // record is readable.
        let records = c.fetch_all("t", 0, 0).await;
        assert_eq!(string_values(&records), ["before", "after"]);
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_batch_whose_records_do_not_decode_is_refused_compressed_or_not() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("t", 1, &[]).await;
        // A header key that is not UTF-8 (CRC recomputed): its framing is fine, so the
        // record walk used to pass it, uncompressed or inside a compressed batch, and
        // every decoded read failed on it afterwards.
        for (_, codec) in [(Compression::None, weir_log::Compression::None)]
            .into_iter()
            .chain(CODECS)
        {
            let mut builder = weir_log::RecordBatchBuilder::new(weir_log::Compression::None);
            builder.push(&weir_log::Record {
                key: None,
                value: value("v"),
                headers: vec![weir_log::Header {
                    key: "cl\u{e9}".into(),
                    value: None,
                }],
                timestamp: 1,
            });
            let mut bytes = builder.build().unwrap().to_vec();
            let at = bytes.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
            bytes[at] = 0xff;
            // Recompress the damaged records section with the codec under test.
            let mut section = Vec::new();
            codec
                .compress(&bytes[weir_log::batch::HEADER_BYTES..], &mut section)
                .unwrap();
            bytes.truncate(weir_log::batch::HEADER_BYTES);
            bytes.extend_from_slice(&section);
            weir_log::batch::set_compression(&mut bytes, codec);
            weir_log::batch::reseal(&mut bytes, 1);
            let r = &c
                .produce(request("t", vec![packed(0, bytes.into())], Acks::All))
                .await
                .results[0];
            let error = r
                .error
                .as_ref()
                .unwrap_or_else(|| panic!("{codec} accepted"));
            assert_eq!(error.reason, "CORRUPT_BATCH", "{codec}: {error:?}");
            assert!(
                error.message.contains("header key is not valid UTF-8"),
                "{codec}: {}",
                error.message
            );
        }
        assert_eq!(c.latest("t", 0).await, 0, "nothing appended");
        server.shutdown().await.unwrap();
    })
    .await;
}

/// Kafka's zigzag varint.
fn put_varint(out: &mut Vec<u8>, value: i32) {
    let mut u = ((value << 1) ^ (value >> 31)) as u32;
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    weir_log::Compression::Zstd
        .compress(bytes, &mut out)
        .unwrap();
    out
}

/// A zstd batch of one well-formed record whose value is `value_mib` MiB of zeros: a
/// few dozen bytes per MiB (zstd frames concatenate; each holds 1 MiB of zeros).
fn zstd_bomb(value_mib: usize) -> Bytes {
    let value_len = value_mib << 20;
    let mut fields = vec![0u8, 0, 0]; // attributes, timestamp delta, offset delta
    put_varint(&mut fields, -1); // null key
    put_varint(&mut fields, value_len as i32);
    let mut prefix = Vec::new();
    put_varint(&mut prefix, (fields.len() + value_len + 1) as i32);
    prefix.extend_from_slice(&fields);
    let zeros = zstd(&vec![0; 1 << 20]);
    let mut bomb = batch(&values("x", 1), weir_log::Compression::Zstd, 1).to_vec();
    bomb.truncate(weir_log::batch::HEADER_BYTES);
    bomb.extend_from_slice(&zstd(&prefix));
    for _ in 0..value_mib {
        bomb.extend_from_slice(&zeros);
    }
    bomb.extend_from_slice(&zstd(&[0])); // no headers
    weir_log::batch::reseal(&mut bomb, 1);
    Bytes::from(bomb)
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_at_a_limit_that_follows_max_message_bytes() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("t", 1, &[]).await;
        // 1 GiB of zeros in about 40 KiB: far past 64 x max.message.bytes (1 MiB + 12 KiB).
        let bomb = zstd_bomb(1024);
        assert!(bomb.len() < 100 * 1024, "{} bytes", bomb.len());
        let r = &c
            .produce(request("t", vec![packed(0, bomb)], Acks::All))
            .await
            .results[0];
        let error = r.error.as_ref().expect("the bomb is refused");
        assert_eq!(error.code, Code::InvalidArgument as i32, "{error:?}");
        assert_eq!(error.reason, "CORRUPT_BATCH");
        let limit = weir_log::batch::decompressed_limit(1024 * 1024 + 12 * 1024);
        assert!(
            error.message.contains(&format!(
                "decompressed records exceed the limit of {limit} bytes"
            )),
            "{}",
            error.message
        );
        assert_eq!(c.latest("t", 0).await, 0, "nothing appended");

        // The limit is the topic's: 16 KiB batches may decompress to 1 MiB, so 2 MiB of
        // zeros is refused there and accepted on the default topic.
        c.create("small", 1, &[("max.message.bytes", "16384")])
            .await;
        let r = &c
            .produce(request("small", vec![packed(0, zstd_bomb(2))], Acks::All))
            .await
            .results[0];
        let error = r.error.as_ref().expect("refused under a 1 MiB limit");
        assert_eq!(error.reason, "CORRUPT_BATCH", "{error:?}");
        assert!(error.message.contains("1048576 bytes"), "{}", error.message);
        let r = &c
            .produce(request("t", vec![packed(0, zstd_bomb(2))], Acks::All))
            .await
            .results[0];
        assert_eq!(r.error, None);
        let records = c.fetch_all("t", 0, 0).await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].value.as_ref().map(Bytes::len), Some(2 << 20));
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_compression_a_request_names_for_packed_batches_is_checked_against_them() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("t", 1, &[]).await;
        let zstd_batch = batch(&values("z", 2), weir_log::Compression::Zstd, 1);
        let lz4_batch = batch(&values("l", 2), weir_log::Compression::Lz4, 1);
        for (label, data, refused_batch) in [
            (Compression::Gzip, zstd_batch.clone(), Some(0)),
            (Compression::None, zstd_batch.clone(), Some(0)),
            (
                Compression::Zstd,
                [zstd_batch.clone(), lz4_batch.clone()].concat().into(),
                Some(1),
            ),
            (Compression::Zstd, zstd_batch.clone(), None),
            (
                Compression::Unspecified,
                [zstd_batch.clone(), lz4_batch.clone()].concat().into(),
                None,
            ),
        ] {
            let r = &c
                .produce(request("t", vec![labelled(0, data, label)], Acks::All))
                .await
                .results[0];
            match refused_batch {
                Some(index) => {
                    let error = r.error.as_ref().unwrap_or_else(|| panic!("{label:?}"));
                    assert_eq!(error.code, Code::InvalidArgument as i32);
                    assert_eq!(error.reason, "INVALID_REQUEST");
                    assert!(
                        error.message.contains(&format!("batch {index} "))
                            && error.message.contains("COMPRESSION_UNSPECIFIED"),
                        "{}",
                        error.message
                    );
                }
                None => assert_eq!(r.error, None, "{label:?}"),
            }
        }
        // The two accepted requests: 2 + 4 records.
        assert_eq!(c.latest("t", 0).await, 6);
        server.shutdown().await.unwrap();
    })
    .await;
}

async fn consume_from(
    c: &mut Clients,
    topic: &str,
    offset: i64,
) -> tonic::Streaming<ConsumeResponse> {
    c.consumer
        .consume(ConsumeRequest {
            topic: topic.into(),
            partition: 0,
            offset,
            format: RecordFormat::Records as i32,
            isolation: 0,
            max_bytes: 0,
        })
        .await
        .expect("consume")
        .into_inner()
}

#[tokio::test]
async fn a_stored_batch_that_cannot_be_decoded_is_reported_and_readers_get_past_it() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let topic_id = {
            let server = start(dir.path()).await;
            let mut c = connect(server.addr).await;
            c.create("t", 1, &[]).await;
            // "a" at 0, 50 zstd records at 1..=50, "c" at 51.
            for part in [
                plain(0, &["a".to_owned()], Compression::None),
                packed(
                    0,
                    batch(&values("b", 50), weir_log::Compression::Zstd, 1_000),
                ),
                plain(0, &["c".to_owned()], Compression::None),
            ] {
                let r = &c.produce(request("t", vec![part], Acks::All)).await.results[0];
                assert_eq!(r.error, None);
            }
            let id = c
                .admin
                .describe_topic(DescribeTopicRequest {
                    name: "t".into(),
                    allow_auto_create: false,
                })
                .await
                .unwrap()
                .into_inner()
                .topic
                .unwrap()
                .topic_id;
            drop(c);
            server.shutdown().await.unwrap();
            id
        };
        damage_stored_batch(&dir.path().join("topics").join(&topic_id).join("0"), 1);

        let logs = Logs::default();
        let _logging = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_ansi(false)
            .set_default();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        let corrupt = |error: &PartitionError| {
            assert_eq!(error.code, Code::DataLoss as i32, "{error:?}");
            assert_eq!(error.reason, "CORRUPT_BATCH");
            let meta = |k: &str| error.metadata.get(k).map(String::as_str);
            assert_eq!(
                (
                    meta("topic"),
                    meta("partition"),
                    meta("offset"),
                    meta("next_offset")
                ),
                (Some("t"), Some("0"), Some("1"), Some("51")),
                "{error:?}"
            );
            assert!(
                error.message.contains("continue from offset 51"),
                "{}",
                error.message
            );
        };
        // A decoded fetch returns the record before the batch and says where to go on.
        let r = c.fetch("t", 0, 0).await;
        assert_eq!(string_values(&r.records), ["a"]);
        assert_eq!(r.next_offset, 1);
        corrupt(r.error.as_ref().expect("the batch is reported"));
        let r = c.fetch("t", 0, 1).await;
        assert!(r.records.is_empty());
        corrupt(r.error.as_ref().expect("the batch is reported"));
        let r = c.fetch("t", 0, 51).await;
        assert_eq!(
            (string_values(&r.records), r.error),
            (vec!["c".to_owned()], None)
        );

        // A stream of records ends with the same error, after the record before it.
        let mut stream = consume_from(&mut c, "t", 0).await;
        let first = stream.next().await.expect("a message").expect("records");
        assert_eq!(
            (string_values(&first.records), first.next_offset),
            (vec!["a".to_owned()], 1)
        );
        let status = stream.next().await.expect("the end").expect_err("an error");
        assert_eq!(status.code(), Code::DataLoss);
        let info = status.get_details_error_info().expect("an ErrorInfo");
        assert_eq!(info.reason, "CORRUPT_BATCH");
        assert_eq!(
            (
                info.metadata.get("offset"),
                info.metadata.get("next_offset")
            ),
            (Some(&"1".to_owned()), Some(&"51".to_owned()))
        );
        // Past it, the stream goes on.
        let mut stream = consume_from(&mut c, "t", 51).await;
        let next = stream.next().await.expect("a message").expect("records");
        assert_eq!(string_values(&next.records), ["c"]);

        // Raw batches are passed on as stored: a client decoding them meets the batch.
        let raw = c
            .consumer
            .fetch(FetchRequest {
                topic: "t".into(),
                partitions: vec![PartitionFetch {
                    partition: 0,
                    offset: 0,
                    max_bytes: 0,
                }],
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 0,
                format: RecordFormat::Batches as i32,
                isolation: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .results
            .remove(0);
        assert_eq!((raw.error, raw.next_offset), (None, 52));

        // Each decoded read that met it logged it, naming where it lies.
        let logged = logs.text();
        let warning = logged
            .lines()
            .find(|l| l.contains("a stored batch cannot be decoded"))
            .unwrap_or_else(|| panic!("no warning in:\n{logged}"));
        for field in [
            "topic=\"t\"",
            "partition=0",
            "offset=1",
            "next_offset=51",
            "00000000000000000000.log",
            "position=",
        ] {
            assert!(warning.contains(field), "{field} not in {warning}");
        }
        // Each decoded read that met it counted it.
        let (_, metrics) = http_get(server.admin_addr.unwrap(), "/metrics").await;
        let line = "weir_undecodable_batches_total{topic=\"t\"} 3";
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
        drop(stream);
        server.shutdown().await.unwrap();
    })
    .await;
}
