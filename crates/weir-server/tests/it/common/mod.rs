//! Test harness of this binary: a real broker on 127.0.0.1:0 and the generated tonic
//! clients.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::consumer_client::ConsumerClient;
use weir_proto::v1::producer_client::ProducerClient;
use weir_proto::v1::*;
use weir_server::{RunningServer, ServerConfig};

/// Every test body runs under this bound, so a hang fails instead of stalling CI.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}

pub fn config(dir: &Path) -> ServerConfig {
    ServerConfig {
        kafka_listen: None,
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerConfig::default()
    }
}

pub async fn start(dir: &Path) -> RunningServer {
    weir_server::start(config(dir))
        .await
        .expect("server starts")
}

/// An offset lookup by position (earliest or latest).
pub fn position(position: OffsetPosition) -> offset_spec::Spec {
    offset_spec::Spec::Position(position.into())
}

#[derive(Clone)]
pub struct Clients {
    pub admin: AdminClient<Channel>,
    pub producer: ProducerClient<Channel>,
    pub consumer: ConsumerClient<Channel>,
    pub channel: Channel,
}

pub async fn connect(addr: SocketAddr) -> Clients {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connects");
    let limit = 128 * 1024 * 1024;
    Clients {
        admin: AdminClient::new(channel.clone()),
        producer: ProducerClient::new(channel.clone())
            .max_encoding_message_size(limit)
            .max_decoding_message_size(limit),
        consumer: ConsumerClient::new(channel.clone()).max_decoding_message_size(limit),
        channel,
    }
}

impl Clients {
    pub async fn create(&mut self, name: &str, partitions: u32, configs: &[(&str, &str)]) {
        self.admin
            .create_topic(CreateTopicRequest {
                name: name.into(),
                partitions,
                replication_factor: 0,
                configs: configs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .await
            .expect("topic created");
    }

    pub async fn produce(&mut self, req: ProduceRequest) -> ProduceResponse {
        self.producer
            .produce(req)
            .await
            .expect("produce")
            .into_inner()
    }

    /// Fetches decoded records without waiting.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> PartitionFetchResult {
        let mut resp = self
            .consumer
            .fetch(FetchRequest {
                topic: topic.into(),
                partitions: vec![PartitionFetch {
                    partition,
                    offset,
                    max_bytes: 0,
                }],
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 0,
                format: RecordFormat::Records as i32,
                isolation: 0,
            })
            .await
            .expect("fetch")
            .into_inner();
        resp.results.remove(0)
    }

    /// Every visible record of a partition from `offset`, fetching until the end.
    pub async fn fetch_all(
        &mut self,
        topic: &str,
        partition: u32,
        mut offset: i64,
    ) -> Vec<ConsumedRecord> {
        let mut out = Vec::new();
        loop {
            let r = self.fetch(topic, partition, offset).await;
            assert_eq!(r.error, None);
            if r.records.is_empty() {
                return out;
            }
            offset = r.next_offset;
            out.extend(r.records);
        }
    }

    pub async fn latest(&mut self, topic: &str, partition: u32) -> i64 {
        self.list_offset(topic, partition, position(OffsetPosition::Latest))
            .await
            .offset
    }

    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: u32,
        spec: offset_spec::Spec,
    ) -> PartitionOffsetResult {
        self.consumer
            .list_offsets(ListOffsetsRequest {
                topic: topic.into(),
                partitions: vec![PartitionOffsetQuery {
                    partition,
                    spec: Some(OffsetSpec { spec: Some(spec) }),
                }],
                isolation: 0,
            })
            .await
            .expect("list offsets")
            .into_inner()
            .results
            .remove(0)
    }
}

pub fn value(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

pub fn plain(partition: u32, values: &[String], compression: Compression) -> PartitionRecords {
    PartitionRecords {
        partition,
        data: Some(partition_records::Data::Records(RecordList {
            records: values
                .iter()
                .map(|v| Record {
                    key: value(&format!("k-{v}")),
                    value: value(v),
                    headers: vec![RecordHeader {
                        key: "h".into(),
                        value: value("hv"),
                    }],
                    timestamp_ms: None,
                })
                .collect(),
        })),
        compression: compression as i32,
        ..Default::default()
    }
}

pub fn packed(partition: u32, batches: Bytes) -> PartitionRecords {
    PartitionRecords {
        partition,
        data: Some(partition_records::Data::Batches(batches)),
        ..Default::default()
    }
}

/// One RecordBatch v2 of `values`, as a fast client packs it.
pub fn batch(values: &[String], codec: weir_log::Compression, timestamp: i64) -> Bytes {
    let mut b = weir_log::RecordBatchBuilder::new(codec);
    for v in values {
        b.push(&weir_log::Record {
            key: value(&format!("k-{v}")),
            value: value(v),
            headers: vec![],
            timestamp,
        });
    }
    b.build().unwrap().freeze()
}

pub fn request(topic: &str, partitions: Vec<PartitionRecords>, acks: Acks) -> ProduceRequest {
    ProduceRequest {
        topic: topic.into(),
        partitions,
        acks: acks as i32,
        timeout_ms: 0,
        transactional_id: String::new(),
    }
}

/// A raw HTTP/1.1 GET; returns (status line, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Waits until `f` is true, checking every few milliseconds, or panics at the deadline.
pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
