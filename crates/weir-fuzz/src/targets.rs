//! One function per fuzz target, and [`TARGETS`], the table the replay test and
//! `fuzz/run.sh` go through.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use weir_batch::{
    BatchHeader, Compression, RecordBatchBuilder, check_stored, decode_records, decompressed_limit,
    framed_len, validate, validate_all, validate_untrusted,
};
use weir_cluster::{ClusterMetadata, IDENTITY_FILE, NodeIdentity};
use weir_log::checkpoint::{self, Kind};
use weir_log::producers::ProducerStates;
use weir_log::storage::FileStorage;
use weir_log::{FlushPolicy, Log, LogConfig, Record, ValidatedBatches, check_request};
use weir_proto::v1::{self, ProduceRequest, partition_records::Data};
use weir_security::sasl::{SaslError, parse_basic_auth, parse_plain, plain_message};
use weir_security::scram::{
    MIN_ITERATIONS, ScramClient, ScramCredential, ScramMechanism, ScramServer, salted_password,
};

/// A fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` file and the
/// `fuzz/corpus/<name>/` directory) and its body.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `fuzz/run.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "batch",
        run: batch,
    },
    Target {
        name: "produce",
        run: produce,
    },
    Target {
        name: "offsets_records",
        run: offsets_records,
    },
    Target {
        name: "log_files",
        run: log_files,
    },
    Target {
        name: "cluster_files",
        run: cluster_files,
    },
    Target {
        name: "segment_recovery",
        run: segment_recovery,
    },
    Target {
        name: "kafka_frame",
        run: kafka_frame,
    },
    Target {
        name: "kafka_request",
        run: kafka_request,
    },
    Target {
        name: "sasl_scram",
        run: sasl_scram,
    },
    Target {
        name: "sasl_credentials",
        run: sasl_credentials,
    },
];

/// `max.message.bytes` the targets use: the broker's default.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024 + 12 * 1024;

/// Offsets-record inputs hold at most this many records (the replay reads in chunks; a
/// longer input only repeats work).
const MAX_FUZZ_RECORDS: usize = 256;

/// RecordBatch v2 bytes from a producer or a broker, through every check the broker and
/// the client make: framing, `validate`, `check_stored`, `validate_untrusted` (every
/// codec, decompression capped), `check_request`, and `decode_records`. Property: a
/// batch `validate_untrusted` accepts decodes (issue 11 §1: an accepted batch never
/// makes a partition unreadable).
pub fn batch(data: &[u8]) {
    let _ = framed_len(data);
    let _ = validate(data);
    let _ = check_stored(data);
    let _ = validate_all(data);
    let _ = check_request(data, MAX_MESSAGE_BYTES);
    let untrusted = validate_untrusted(data, decompressed_limit(MAX_MESSAGE_BYTES));
    let decoded = decode_records(&Bytes::copy_from_slice(data));
    if let Ok(header) = untrusted {
        match decoded {
            Ok(records) => assert_eq!(
                records.len(),
                header.record_count as usize,
                "an accepted batch decodes to as many records as its header counts"
            ),
            Err(e) => panic!("validate_untrusted accepted a batch decode_records refuses: {e}"),
        }
    }
}

/// A `ProduceRequest` as the broker receives it (protobuf bytes), checked and packed as
/// `weir-grpc`'s `produce::prepare` does (which is private to the broker and needs a
/// running `Broker`; this mirrors it over the public APIs), then appended to a
/// single-partition log in a temporary directory and read back.
pub fn produce(data: &[u8]) {
    let Ok(req) = ProduceRequest::decode(data) else {
        return;
    };
    let dir = tempdir();
    let log = Log::open(dir.path(), log_config()).expect("an empty log opens");
    for pr in req.partitions {
        let Ok(mut batches) = pack(pr) else {
            continue;
        };
        let before = log.offsets().log_end_offset;
        match log.append_validated(&mut batches, 0) {
            Ok(_) => {
                // What was accepted must be readable and decodable.
                let mut offset = before;
                let end = log.offsets().log_end_offset;
                while offset < end {
                    let fetch = log
                        .read(offset, MAX_MESSAGE_BYTES * 2, None)
                        .expect("appended records can be read");
                    assert!(fetch.next_offset > offset, "a read makes progress");
                    let records = decode_records(&fetch.records).expect("appended records decode");
                    assert!(!records.is_empty());
                    offset = fetch.next_offset;
                }
            }
            Err(e) => {
                let _ = e.to_string();
                assert_eq!(
                    log.offsets().log_end_offset,
                    before,
                    "a refused append appends nothing"
                );
            }
        }
    }
    log.close().expect("the log closes");
}

/// One partition of a produce request checked and packed as the broker does.
fn pack(pr: v1::PartitionRecords) -> Result<ValidatedBatches, String> {
    let bytes = match pr.data {
        None => return Err("no records".into()),
        Some(Data::Records(list)) => {
            if list.records.is_empty() {
                return Err("no records".into());
            }
            let codec = compression(pr.compression).ok_or("unknown compression")?;
            let mut builder = RecordBatchBuilder::new(codec);
            if let Some(producer_id) = pr.producer_id {
                let epoch = i16::try_from(pr.producer_epoch).map_err(|e| e.to_string())?;
                if producer_id < 0 || epoch < 0 || pr.base_sequence < 0 {
                    return Err("negative producer fields".into());
                }
                builder = builder
                    .producer_id(producer_id)
                    .producer_epoch(epoch)
                    .base_sequence(pr.base_sequence);
            }
            for r in list.records {
                let record = Record {
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|h| weir_log::Header {
                            key: h.key,
                            value: h.value,
                        })
                        .collect(),
                    timestamp: r.timestamp_ms.unwrap_or(0),
                };
                builder.try_push(&record).map_err(|e| e.to_string())?;
            }
            builder.build().map_err(|e| e.to_string())?
        }
        Some(Data::Batches(bytes)) => BytesMut::from(&bytes[..]),
    };
    ValidatedBatches::new(bytes, MAX_MESSAGE_BYTES).map_err(|e| e.to_string())
}

fn compression(value: i32) -> Option<Compression> {
    Some(match v1::Compression::try_from(value).ok()? {
        v1::Compression::Unspecified | v1::Compression::None => Compression::None,
        v1::Compression::Gzip => Compression::Gzip,
        v1::Compression::Snappy => Compression::Snappy,
        v1::Compression::Lz4 => Compression::Lz4,
        v1::Compression::Zstd => Compression::Zstd,
    })
}

/// The group protocol's stored side: keys and values of `__consumer_offsets` records
/// (group, member and offset records), replayed into a shard as a coordinator's load
/// does, plus the group id check every group request starts with. Input: records of
/// `u16 key length, key, u8 has value, u16 value length, value`, all big-endian.
pub fn offsets_records(data: &[u8]) {
    let mut records = Vec::new();
    let mut r = data;
    while records.len() < MAX_FUZZ_RECORDS {
        let Some(key) = take_prefixed(&mut r) else {
            break;
        };
        let Some((&has_value, rest)) = r.split_first() else {
            break;
        };
        r = rest;
        let value = if has_value & 1 == 1 {
            match take_prefixed(&mut r) {
                Some(v) => Some(v),
                None => break,
            }
        } else {
            None
        };
        let _ = weir_cluster::group::validate_group_id(&String::from_utf8_lossy(key));
        records.push((key, value, records.len() as i64));
    }
    let _ = weir_cluster::group::replay_records_for_fuzzing(&records);
}

fn take_prefixed<'a>(r: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u16::from_be_bytes(r.get(..2)?.try_into().ok()?) as usize;
    let bytes = r.get(2..2 + len)?;
    *r = &r[2 + len..];
    Some(bytes)
}

/// The log's checkpoint files (recovery point, log start offset, leader epochs, high
/// watermark, producer state): the first byte picks the kind, the rest is the file. It
/// is read by `checkpoint::read` (and decoded) and then by `Log::open` of a log whose
/// directory holds it, which must open or refuse with an error.
pub fn log_files(data: &[u8]) {
    let Some((&which, contents)) = data.split_first() else {
        return;
    };
    const KINDS: [Kind; 5] = [
        Kind::RecoveryPoint,
        Kind::LogStartOffset,
        Kind::LeaderEpochs,
        Kind::HighWatermark,
        Kind::ProducerState,
    ];
    let kind = KINDS[which as usize % KINDS.len()];
    let dir = tempdir();
    std::fs::write(dir.path().join(kind.file_name()), contents).expect("write checkpoint");
    match checkpoint::read(&FileStorage, dir.path(), kind) {
        Ok(Some(payload)) => {
            if kind == Kind::ProducerState {
                let _ = ProducerStates::decode(&payload);
            }
        }
        Ok(None) => panic!("a checkpoint that exists was not found"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = checkpoint::read_i64(&FileStorage, dir.path(), kind);
    open_and_close(dir.path());
}

/// The broker's own files in its data directory: the first byte's low bit picks the
/// cluster metadata file or the node identity file, the rest is the file.
pub fn cluster_files(data: &[u8]) {
    let Some((&which, contents)) = data.split_first() else {
        return;
    };
    let dir = tempdir();
    if which & 1 == 0 {
        std::fs::write(
            dir.path().join(weir_cluster::metadata::METADATA_FILE),
            contents,
        )
        .expect("write metadata");
        if let Err(e) = ClusterMetadata::load(dir.path()) {
            let _ = e.to_string();
        }
    } else {
        std::fs::write(dir.path().join(IDENTITY_FILE), contents).expect("write identity");
        if let Err(e) = NodeIdentity::load(dir.path()) {
            let _ = e.to_string();
        }
    }
}

/// Recovery over arbitrary segment contents: the input is `u16 index length, index
/// bytes, segment bytes`; they are written as the first segment's `.index` (if not
/// empty) and `.log`, and the log opened (recovery scans the segment, cuts what does not
/// check, rebuilds the index). It must open or fail with an error; once open, every
/// batch it kept reads back, a new append lands after them, and a reopen sees the same
/// log end.
pub fn segment_recovery(data: &[u8]) {
    let mut r = data;
    let Some(index) = take_prefixed(&mut r) else {
        return;
    };
    let segment = r;
    let dir = tempdir();
    let base = format!("{:020}", 0);
    std::fs::write(dir.path().join(format!("{base}.log")), segment).expect("write segment");
    if !index.is_empty() {
        std::fs::write(dir.path().join(format!("{base}.index")), index).expect("write index");
    }
    open_and_close(dir.path());
}

/// Opens the log in `dir`; if it opens, reads every batch it holds, appends one, closes,
/// reopens and checks the log end survived.
fn open_and_close(dir: &Path) {
    let log = match Log::open(dir, log_config()) {
        Ok(log) => log,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let offsets = log.offsets();
    let mut offset = offsets.log_start_offset;
    while offset < offsets.log_end_offset {
        match log.read(offset, MAX_MESSAGE_BYTES * 2, None) {
            Ok(fetch) if fetch.next_offset > offset => {
                let _: Vec<BatchHeader> = validate_all(&fetch.records).unwrap_or_default();
                offset = fetch.next_offset;
            }
            // An empty read (a gap) or an error: recovery kept something it cannot
            // serve, but must not have panicked; stop here.
            Ok(_) => break,
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
    let mut batch = RecordBatchBuilder::new(Compression::None);
    batch
        .try_push(&Record {
            value: Some(Bytes::from_static(b"after recovery")),
            ..Record::default()
        })
        .expect("one record fits");
    let mut batch = batch.build().expect("one record builds");
    let appended = log.append(&mut batch, 0);
    let end = log.offsets().log_end_offset;
    if log.close().is_err() {
        return;
    }
    if appended.is_ok() {
        let log = Log::open(dir, log_config()).expect("a log this process closed reopens");
        assert_eq!(
            log.offsets().log_end_offset,
            end,
            "the log end survives a reopen"
        );
        let _ = log.close();
    }
}

fn log_config() -> LogConfig {
    LogConfig {
        flush: FlushPolicy::None,
        index_max_bytes: 64 * 1024,
        recovery_checkpoint_interval: Duration::from_secs(3600),
        ..LogConfig::default()
    }
}

/// A temporary directory, in `/dev/shm` when there is one (fuzzing writes a directory
/// per input; memory is much faster than disk for that).
fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new().prefix("weir-fuzz").tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("a temporary directory")
}

/// The frame limit the Kafka targets use: small, so an input can reach it.
const KAFKA_FUZZ_FRAME_BYTES: usize = 64 * 1024;

/// Bytes off a Kafka client connection, through the listener's frame reader and request
/// header decoder (`weir_kafka::frame`). Properties: a frame is split only when all of
/// it is there and never past it (what is left is the input after the frames, untouched);
/// a negative or oversize length is refused before anything is sized by it; a header
/// either decodes or is refused, never a panic.
pub fn kafka_frame(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let mut consumed = 0;
    loop {
        let before = buf.len();
        match weir_kafka::frame::split_frame(&mut buf, KAFKA_FUZZ_FRAME_BYTES) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= KAFKA_FUZZ_FRAME_BYTES);
                assert_eq!(
                    before - buf.len(),
                    frame.len() + 4,
                    "one frame and its prefix"
                );
                consumed += frame.len() + 4;
                let _ = weir_kafka::frame::decode_request(frame);
            }
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(&buf[..], &data[consumed..], "the rest is left as it was");
}

/// A request body of any api and version the Kafka listener serves, through
/// kafka-protocol's decoder for it (`Request::decode_body`): the first two bytes pick the
/// api (an index into the served table) and the version (within its range), the rest
/// is the body. One target covers every request parser, so each fuzz run spreads its
/// time over all of them instead of one per target. Property: decoded or refused, no
/// panic, and no allocation sized by a count the body cannot hold (the vendored patch,
/// `vendor/kafka-protocol/WEIR-PATCH.md`).
pub fn kafka_request(data: &[u8]) {
    use kafka_protocol::messages::*;
    let [pick, version, body @ ..] = data else {
        return;
    };
    let served = weir_kafka::handlers::SERVED;
    let (api_key, min, max) = served[*pick as usize % served.len()];
    let span = (max - min + 1) as u16;
    let request = weir_kafka::Request {
        api_key,
        api_version: min + (u16::from(*version) % span) as i16,
        correlation_id: 0,
        client_id: None,
        body: Bytes::copy_from_slice(body),
    };
    macro_rules! decode {
        ($($key:ident => $message:ty,)*) => {
            match api_key {
                $(ApiKey::$key => {
                    let _ = request.decode_body::<$message>();
                })*
                // ApiVersions is decoded by the listener itself (kafka_frame reaches it).
                _ => {}
            }
        };
    }
    decode! {
        Produce => ProduceRequest,
        Fetch => FetchRequest,
        ListOffsets => ListOffsetsRequest,
        Metadata => MetadataRequest,
        ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest,
        DeleteTopics => DeleteTopicsRequest,
        InitProducerId => InitProducerIdRequest,
        FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest,
        SyncGroup => SyncGroupRequest,
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest,
        ListGroups => ListGroupsRequest,
        DescribeGroups => DescribeGroupsRequest,
        DeleteGroups => DeleteGroupsRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        DescribeConfigs => DescribeConfigsRequest,
        AlterConfigs => AlterConfigsRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        CreatePartitions => CreatePartitionsRequest,
        DeleteRecords => DeleteRecordsRequest,
        DescribeCluster => DescribeClusterRequest,
        DescribeProducers => DescribeProducersRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        DescribeClientQuotas => DescribeClientQuotasRequest,
        AlterClientQuotas => AlterClientQuotasRequest,
        OffsetDelete => OffsetDeleteRequest,
        AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
        ListPartitionReassignments => ListPartitionReassignmentsRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
        DescribeLogDirs => DescribeLogDirsRequest,
        DescribeQuorum => DescribeQuorumRequest,
        ElectLeaders => ElectLeadersRequest,
        AlterReplicaLogDirs => AlterReplicaLogDirsRequest,
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        EndTxn => EndTxnRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        ListTransactions => ListTransactionsRequest,
    }
}

/// The one user the `sasl_scram` target's server knows (every other name is unknown), with
/// this password. The seeds hold exchanges of this user, recorded against
/// [`SCRAM_SERVER_NONCE`].
pub const SCRAM_USER: &str = "alice";
pub const SCRAM_PASSWORD: &str = "pencil";
/// The `sasl_scram` server's nonce: fixed, so a recorded client-final message matches it
/// and inputs reach the proof check and success.
pub const SCRAM_SERVER_NONCE: &str = "fuzz-server-nonce";

/// The `sasl_scram` target's credential store: [`SCRAM_USER`] with [`SCRAM_PASSWORD`]
/// for `mechanism`, under a fixed salt (so the seeds' proofs verify on every run), made
/// once per process (a PBKDF2 per input would be most of the target's time); every other
/// user is unknown.
pub fn scram_lookup(mechanism: ScramMechanism) -> impl FnOnce(&str) -> Option<ScramCredential> {
    static CREDENTIALS: OnceLock<Vec<ScramCredential>> = OnceLock::new();
    move |user| {
        if user != SCRAM_USER {
            return None;
        }
        let credentials = CREDENTIALS.get_or_init(|| {
            ScramMechanism::ALL
                .into_iter()
                .map(|m| {
                    let salt = b"weir fuzz salt".to_vec();
                    let salted = salted_password(m, SCRAM_PASSWORD, &salt, MIN_ITERATIONS);
                    ScramCredential::from_salted_password(m, salt, MIN_ITERATIONS, &salted)
                        .expect("a valid credential")
                })
                .collect()
        });
        credentials
            .iter()
            .find(|c| c.mechanism == mechanism)
            .cloned()
    }
}

/// A SCRAM exchange, server side, as the Kafka listener runs it: `[mechanism (low bit),
/// u16 client-first length, client-first, client-final]`. The server knows
/// [`SCRAM_USER`] only. Properties: no panic; the credential is looked up only for a
/// client-first message that parsed, under the name `claimed_user` reports; only the
/// known user authenticates, with a `v=` server-final; once the exchange has succeeded or
/// failed, any further step is out of order.
pub fn sasl_scram(data: &[u8]) {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let mechanism = ScramMechanism::ALL[usize::from(pick & 1)];
    let Some(client_first) = take_prefixed(&mut rest) else {
        return;
    };
    let client_final = rest;
    let mut server = ScramServer::with_nonce_for_tests(mechanism, SCRAM_SERVER_NONCE);
    let mut looked_up = None;
    let first = server.client_first(client_first, |user| {
        looked_up = Some(user.to_owned());
        scram_lookup(mechanism)(user)
    });
    match first {
        Ok(server_first) => {
            assert_eq!(server.claimed_user(), looked_up.as_deref());
            assert!(server_first.starts_with(b"r="), "a server-first message");
            match server.client_final(client_final) {
                Ok((user, server_final)) => {
                    assert_eq!(user, SCRAM_USER, "only the known user authenticates");
                    assert_eq!(server.claimed_user(), Some(SCRAM_USER));
                    assert!(server_final.starts_with(b"v="), "a server signature");
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
        Err(e) => {
            assert!(looked_up.is_none(), "no lookup for a refused message");
            let _ = e.to_string();
        }
    }
    assert_eq!(
        server.client_final(client_final),
        Err(SaslError::OutOfOrder),
        "the exchange is over"
    );
}

/// The other password-carrying inputs from outside, picked by the first byte (low two
/// bits; the next bit picks the SCRAM mechanism): a SASL PLAIN message, an HTTP
/// `authorization` header, a SASL mechanism name, and a server-first message as a SCRAM
/// client receives it. Properties: no panic; what PLAIN and basic parsing accept
/// round-trips through the client's encoding; a mechanism name is found only as spelled.
pub fn sasl_credentials(data: &[u8]) {
    use base64::Engine;
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mechanism = ScramMechanism::ALL[usize::from((pick >> 2) & 1)];
    match pick & 3 {
        0 => {
            if let Ok(c) = parse_plain(rest) {
                assert!(!c.user.is_empty() && !c.password.is_empty());
                assert!(c.authzid.as_ref().is_none_or(|a| *a == c.user));
                let again = parse_plain(&plain_message(&c.user, &c.password))
                    .expect("a client's PLAIN message of accepted credentials parses");
                assert_eq!((again.user, again.password), (c.user, c.password));
            }
        }
        1 => {
            let Ok(header) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok((user, password)) = parse_basic_auth(header) {
                assert!(!user.contains(':') && !user.is_empty() && !password.is_empty());
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                assert_eq!(
                    parse_basic_auth(&format!("Basic {encoded}")),
                    Ok((user, password)),
                    "accepted credentials round-trip"
                );
            }
        }
        2 => {
            let name = String::from_utf8_lossy(rest);
            if let Some(m) = ScramMechanism::from_name(&name) {
                assert_eq!(m.name(), name);
            }
        }
        _ => {
            // A random client nonce: the input cannot extend it, so every input stops
            // after parsing, before the PBKDF2 (which a fixed nonce would let the fuzzer
            // reach, at up to 16384 iterations per input).
            let mut client = ScramClient::new(mechanism, SCRAM_USER, SCRAM_PASSWORD);
            client.client_first();
            if let Err(e) = client.client_final(rest) {
                let _ = e.to_string();
            }
        }
    }
}
