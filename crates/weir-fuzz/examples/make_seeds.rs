//! Writes the committed seed corpora under `fuzz/seeds/<target>/`: valid inputs of every
//! target, so fuzzing starts from inputs that reach deep into each parser. Rerun after a
//! format change: `cargo run -p weir-fuzz --example make_seeds`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use weir_cluster::{ClusterMetadata, NodeIdentity};
use weir_log::checkpoint::{self, Kind};
use weir_log::storage::FileStorage;
use weir_log::{Compression, Header, Log, LogConfig, Record, RecordBatchBuilder};
use weir_proto::v1;

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let put = |target: &str, name: &str, bytes: &[u8]| -> Result<()> {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        Ok(())
    };

    // batch: one valid batch per codec, one idempotent, one with headers and no key.
    for codec in CODECS {
        put("batch", &format!("{codec}"), &batch(codec, 3, false)?)?;
    }
    put(
        "batch",
        "idempotent-zstd",
        &batch(Compression::Zstd, 2, true)?,
    )?;

    // produce: packed batches of each codec, and plain records.
    for codec in CODECS {
        let req = v1::ProduceRequest {
            topic: "t".into(),
            partitions: vec![v1::PartitionRecords {
                partition: 0,
                data: Some(v1::partition_records::Data::Batches(
                    batch(codec, 2, false)?.to_vec().into(),
                )),
                ..Default::default()
            }],
            ..Default::default()
        };
        put("produce", &format!("batches-{codec}"), &req.encode_to_vec())?;
    }
    let req = v1::ProduceRequest {
        topic: "t".into(),
        partitions: vec![v1::PartitionRecords {
            partition: 0,
            compression: v1::Compression::Lz4 as i32,
            producer_id: Some(7),
            producer_epoch: 1,
            base_sequence: 0,
            data: Some(v1::partition_records::Data::Records(v1::RecordList {
                records: vec![v1::Record {
                    key: Some(Bytes::from_static(b"k")),
                    value: Some(Bytes::from_static(b"v")),
                    headers: vec![v1::RecordHeader {
                        key: "h".into(),
                        value: Some(Bytes::from_static(b"x")),
                    }],
                    timestamp_ms: Some(1_700_000_000_000),
                }],
            })),
        }],
        ..Default::default()
    };
    put("produce", "records-lz4-idempotent", &req.encode_to_vec())?;

    // offsets_records: an offset commit, a group record, a member tombstone.
    let mut r = BytesMut::new();
    let mut record = |key: &[u8], value: Option<&[u8]>| {
        r.put_u16(key.len() as u16);
        r.put_slice(key);
        r.put_u8(value.is_some() as u8);
        if let Some(v) = value {
            r.put_u16(v.len() as u16);
            r.put_slice(v);
        }
    };
    let mut key = BytesMut::new();
    key.put_u16(1); // offset key
    put_str(&mut key, "g");
    put_str(&mut key, "t");
    key.put_u32(0);
    let mut value = BytesMut::new();
    value.put_u16(2); // version
    value.put_i64(42);
    value.put_i64(1_700_000_000_000);
    put_str(&mut value, "meta");
    put_str(&mut value, "");
    record(&key, Some(&value));
    let mut key = BytesMut::new();
    key.put_u16(2); // group key
    put_str(&mut key, "g");
    let mut value = BytesMut::new();
    value.put_u16(1); // version
    value.put_i32(3);
    put_str(&mut value, "uniform");
    record(&key, Some(&value));
    let mut key = BytesMut::new();
    key.put_u16(3); // member key
    put_str(&mut key, "g");
    put_str(&mut key, "m");
    record(&key, None);
    put("offsets_records", "commit-group-member", &r)?;

    // log_files: every checkpoint kind, as the log writes it (first byte: the kind).
    let dir = tempfile::tempdir()?;
    let mut epochs = Vec::new();
    epochs.extend_from_slice(&1u32.to_be_bytes());
    epochs.extend_from_slice(&0i32.to_be_bytes());
    epochs.extend_from_slice(&0i64.to_be_bytes());
    let kinds: [(u8, Kind, Vec<u8>); 4] = [
        (0, Kind::RecoveryPoint, 5i64.to_be_bytes().to_vec()),
        (1, Kind::LogStartOffset, 0i64.to_be_bytes().to_vec()),
        (2, Kind::LeaderEpochs, epochs),
        (3, Kind::HighWatermark, 3i64.to_be_bytes().to_vec()),
    ];
    for (which, kind, payload) in kinds {
        checkpoint::write(&FileStorage, dir.path(), kind, &payload)?;
        let mut file = vec![which];
        file.extend(std::fs::read(dir.path().join(kind.file_name()))?);
        put("log_files", kind.file_name(), &file)?;
    }
    // The producer-state snapshot, as a log with an idempotent producer writes it.
    let log_dir = tempfile::tempdir()?;
    let log = Log::open(log_dir.path(), LogConfig::default())?;
    log.append(&mut batch(Compression::None, 2, true)?, 0)?;
    log.close()?;
    if let Ok(file) = std::fs::read(log_dir.path().join(Kind::ProducerState.file_name())) {
        let mut seed = vec![4];
        seed.extend(file);
        put("log_files", Kind::ProducerState.file_name(), &seed)?;
    }

    // cluster_files: metadata (first byte 0) and a node identity (first byte 1).
    let dir = tempfile::tempdir()?;
    let metadata = ClusterMetadata {
        cluster_id: "seed-cluster".into(),
        topics: Default::default(),
    };
    metadata.store(dir.path())?;
    put(
        "cluster_files",
        "metadata",
        &prefixed(0, &dir.path().join(weir_cluster::metadata::METADATA_FILE))?,
    )?;
    NodeIdentity::load_or_create(dir.path(), 1)?;
    put(
        "cluster_files",
        "identity",
        &prefixed(1, &dir.path().join(weir_cluster::IDENTITY_FILE))?,
    )?;

    // segment_recovery: a small segment of several codecs, with and without its index.
    let dir = tempfile::tempdir()?;
    let log = Log::open(
        dir.path(),
        LogConfig {
            index_interval_bytes: 64,
            ..LogConfig::default()
        },
    )?;
    for codec in CODECS {
        log.append(&mut batch(codec, 2, false)?, 0)?;
    }
    log.close()?;
    let base = format!("{:020}", 0);
    let segment = std::fs::read(dir.path().join(format!("{base}.log")))?;
    let index = std::fs::read(dir.path().join(format!("{base}.index")))?;
    let mut seed = 0u16.to_be_bytes().to_vec();
    seed.extend_from_slice(&segment);
    put("segment_recovery", "segment", &seed)?;
    let index = &index[..index.len().min(256)];
    let mut seed = (index.len() as u16).to_be_bytes().to_vec();
    seed.extend_from_slice(index);
    seed.extend_from_slice(&segment);
    put("segment_recovery", "segment-and-index", &seed)?;

    kafka_seeds(&put)?;
    sasl_seeds(&put)?;
    Ok(())
}

/// kafka_frame: whole request frames as clients send them (length, header, body);
/// kafka_request: `[index into the served table, version offset, body]` for every served
/// api at its lowest and highest version, and a produce carrying a real batch.
/// Writes one seed file: target, file name, bytes.
type Put<'a> = &'a dyn Fn(&str, &str, &[u8]) -> Result<()>;

fn kafka_seeds(put: Put<'_>) -> Result<()> {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encode<M: Encodable>(message: &M, version: i16) -> Result<Vec<u8>> {
        let mut body = BytesMut::new();
        message.encode(&mut body, version)?;
        Ok(body.to_vec())
    }
    fn frame<M: Encodable>(key: ApiKey, version: i16, message: &M) -> Result<Vec<u8>> {
        let mut payload = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("seed")))
            .encode(&mut payload, key.request_header_version(version))?;
        message.encode(&mut payload, version)?;
        let mut out = (payload.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&payload);
        Ok(out)
    }
    let topic = TopicName(StrBytes::from_static_str("orders"));
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(topic.clone())
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(Compression::None, 3, true)?.freeze())),
                ]),
        ]);
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic.clone())),
        ]))
        .with_allow_auto_topic_creation(true);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(topic.clone())
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let versions = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("seed"))
        .with_client_software_version(StrBytes::from_static_str("1.0"));
    put(
        "kafka_frame",
        "api-versions-v3",
        &frame(ApiKey::ApiVersions, 3, &versions)?,
    )?;
    put(
        "kafka_frame",
        "metadata-v12",
        &frame(ApiKey::Metadata, 12, &metadata)?,
    )?;
    put(
        "kafka_frame",
        "produce-v9",
        &frame(ApiKey::Produce, 9, &produce)?,
    )?;
    put(
        "kafka_frame",
        "fetch-v12",
        &frame(ApiKey::Fetch, 12, &fetch)?,
    )?;
    let mut two = frame(ApiKey::Metadata, 4, &metadata)?;
    two.extend(frame(ApiKey::Fetch, 11, &fetch)?);
    put("kafka_frame", "two-frames", &two)?;

    // One entity's quota: set, and described by an exact match.
    let alter_quotas = AlterClientQuotasRequest::default().with_entries(vec![
        alter_client_quotas_request::EntryData::default()
            .with_entity(vec![
                alter_client_quotas_request::EntityData::default()
                    .with_entity_type(StrBytes::from_static_str("user"))
                    .with_entity_name(Some(StrBytes::from_static_str("alice"))),
            ])
            .with_ops(vec![
                alter_client_quotas_request::OpData::default()
                    .with_key(StrBytes::from_static_str("request_percentage"))
                    .with_value(50.0),
            ]),
    ]);
    let describe_quotas = DescribeClientQuotasRequest::default()
        .with_components(vec![
            describe_client_quotas_request::ComponentData::default()
                .with_entity_type(StrBytes::from_static_str("user"))
                .with_match_type(0)
                .with_match(Some(StrBytes::from_static_str("alice"))),
        ])
        .with_strict(true);
    for (index, &(key, min, max)) in weir_kafka::handlers::SERVED.iter().enumerate() {
        for version in [min, max] {
            let body = match key {
                ApiKey::Produce => encode(&produce, version)?,
                ApiKey::Metadata => encode(&metadata, version)?,
                ApiKey::Fetch => encode(&fetch, version)?,
                ApiKey::DescribeClientQuotas => encode(&describe_quotas, version)?,
                ApiKey::AlterClientQuotas => encode(&alter_quotas, version)?,
                // The others start from their default message (empty lists, defaults).
                _ => Vec::new(),
            };
            let mut seed = vec![index as u8, (version - min) as u8];
            seed.extend_from_slice(&body);
            put("kafka_request", &format!("{key:?}-v{version}"), &seed)?;
        }
    }
    Ok(())
}

/// sasl_scram: `[mechanism, u16 client-first length, client-first, client-final]`, whole
/// exchanges recorded against the target's server (its nonce and its one user): a
/// success per mechanism; failures at the proof (a wrong password, an unknown user with
/// an escaped name, extensions the client's proof does not cover) and at the channel
/// binding (an authzid the client's `c=` does not carry). sasl_credentials: `[pick,
/// input]` for each of its parsers.
fn sasl_seeds(put: Put<'_>) -> Result<()> {
    use weir_fuzz::{SCRAM_PASSWORD, SCRAM_SERVER_NONCE, SCRAM_USER, scram_lookup};
    use weir_security::sasl::plain_message;
    use weir_security::scram::{ScramClient, ScramMechanism, ScramServer};

    // (file name, mechanism, user, password, what replaces the gs2 header and what is
    // appended to the client-first message).
    let (sha256, sha512) = (ScramMechanism::Sha256, ScramMechanism::Sha512);
    let (user, password) = (SCRAM_USER, SCRAM_PASSWORD);
    let exchanges = [
        ("sha256", sha256, user, password, None, ""),
        ("sha512", sha512, user, password, None, ""),
        ("wrong-password", sha256, user, "pen", None, ""),
        ("unknown-escaped-name", sha512, "o=u,dc", password, None, ""),
        (
            "extensions",
            sha256,
            user,
            password,
            None,
            ",tokenauth=false,x=1",
        ),
        ("authzid", sha512, user, password, Some("n,a=alice,"), ""),
    ];
    for (name, mechanism, user, password, gs2, extensions) in exchanges {
        let mut client = ScramClient::with_nonce_for_tests(mechanism, user, password, "seed-nonce");
        let mut first = String::from_utf8(client.client_first())?;
        if let Some(header) = gs2 {
            first = first.replacen("n,,", header, 1);
        }
        first.push_str(extensions);
        let mut server = ScramServer::with_nonce_for_tests(mechanism, SCRAM_SERVER_NONCE);
        // Every user gets the known user's credential here, so the seed is the same on
        // every run (an unknown user's fake salt is random per process); replayed, an
        // unknown user's proof fails whatever salt it was made with.
        let server_first =
            server.client_first(first.as_bytes(), |_| scram_lookup(mechanism)(SCRAM_USER))?;
        let client_final = client.client_final(&server_first)?;
        if user == SCRAM_USER {
            // The target's server (same nonce, same credential) will agree.
            assert_eq!(
                server.client_final(&client_final).is_ok(),
                name.starts_with("sha"),
                "{name}: only the sha256 and sha512 seeds authenticate"
            );
        }
        let mut seed = vec![u8::from(mechanism == ScramMechanism::Sha512)];
        seed.extend_from_slice(&(first.len() as u16).to_be_bytes());
        seed.extend_from_slice(first.as_bytes());
        seed.extend_from_slice(&client_final);
        put("sasl_scram", name, &seed)?;
    }

    let seed = |pick: u8, input: &[u8]| {
        let mut seed = vec![pick];
        seed.extend_from_slice(input);
        seed
    };
    put(
        "sasl_credentials",
        "plain",
        &seed(0, &plain_message(SCRAM_USER, SCRAM_PASSWORD)),
    )?;
    put(
        "sasl_credentials",
        "plain-authzid",
        &seed(0, b"alice\0alice\0pencil"),
    )?;
    put(
        "sasl_credentials",
        "basic",
        &seed(1, b"Basic YWxpY2U6cGVuOmNpbA=="),
    )?;
    put(
        "sasl_credentials",
        "mechanism-name",
        &seed(2, b"SCRAM-SHA-512"),
    )?;
    put(
        "sasl_credentials",
        "server-first-sha256",
        &seed(3, b"r=seed-nonceserver,s=d2VpciBmdXp6IHNhbHQ=,i=4096"),
    )?;
    put(
        "sasl_credentials",
        "server-first-sha512-extension",
        &seed(7, b"r=seed-nonceserver,s=d2VpciBmdXp6IHNhbHQ=,i=8192,x=1"),
    )?;
    Ok(())
}

fn batch(codec: Compression, records: usize, idempotent: bool) -> Result<BytesMut> {
    let mut b = RecordBatchBuilder::new(codec);
    if idempotent {
        b = b.producer_id(9).producer_epoch(0).base_sequence(0);
    }
    for i in 0..records {
        b.try_push(&Record {
            key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value {i} value {i} value {i}"))),
            headers: vec![Header {
                key: "h".into(),
                value: Some(Bytes::from_static(b"1")),
            }],
            timestamp: 1_700_000_000_000 + i as i64,
        })?;
    }
    Ok(b.build()?)
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

fn prefixed(first: u8, path: &Path) -> Result<Vec<u8>> {
    let mut v = vec![first];
    v.extend(std::fs::read(path)?);
    Ok(v)
}
