//! Overload of one real `weir serve` process: many producers sending requests near
//! `max_request_bytes`, consume streams that read, and slow consumers that open a
//! Consume stream and never read it, all at once. Checks what a user would: the broker's
//! resident memory stays under the bound its named limits give (docs/ARCHITECTURE.md,
//! "Memory under overload"), it answers gRPC health checks within a second throughout,
//! producers see slower acks or RESOURCE_EXHAUSTED (never a hang or a broken
//! connection), and every acknowledged record is readable afterwards, in order, once.
//! A request over the transport limit is refused with RESOURCE_EXHAUSTED.
//!
//! `cargo test -p weir-tests --test it -- --nocapture overload::` prints the figures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use weir_tests::process::{connect, rss_kib};

use anyhow::{Context, bail, ensure};
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::consumer_client::ConsumerClient;
use weir_proto::v1::producer_client::ProducerClient;
use weir_tests::cluster::{Cluster, ClusterConfig};
use weir_tests::wait::{bounded, wait_for};

const TOPIC: &str = "overload";
const PARTITIONS: u32 = 4;
/// The broker's `max_request_bytes` in this test (a config file sets it): small enough
/// that two cores move many requests of about this size within the run.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Records per produce request, and their value size: one request is just under the
/// limit (one batch, so the topic's max.message.bytes is the same 4 MiB).
const RECORDS_PER_REQUEST: usize = 30;
const VALUE_BYTES: usize = 128 * 1024;
/// Producers, each on its own connection, each sending its next request as soon as the
/// last is answered.
const PRODUCERS: usize = 24;
/// Consume streams that read everything, and streams that are opened and never read.
const READING_STREAMS: usize = 8;
const SLOW_STREAMS: usize = 32;
/// Slow streams per connection (an unread stream holds its connection's window too).
const SLOW_STREAMS_PER_CONNECTION: usize = 8;
/// How long the producers push.
const LOAD: Duration = Duration::from_secs(10);
/// A single producer alone, first, to measure what the broker absorbs.
const CALIBRATION: Duration = Duration::from_secs(2);
/// Longest a health check may take, and a produce may wait, before it counts as a hang.
const HEALTH_LIMIT: Duration = Duration::from_secs(1);
const HEALTH_INTERVAL: Duration = Duration::from_millis(50);
const PRODUCE_HANG: Duration = Duration::from_secs(40);
/// The broker's timeout for acks (the request's `timeout_ms`): its default, 30 s, what a
/// client that sets none gets. It was 10 s, and a fresh-clone CI run on this VM once saw
/// one of 600 requests answered DEADLINE_EXCEEDED at 10.07 s (ack p99 1.0 s): under 24x
/// overload with acks=all, after the Docker and fault tests had written to the same
/// virtual disk, which is most likely a partition's fdatasync held past 10 s (the
/// broker logged nothing else). That is the disk, and a slower ack is what this test
/// allows; it still fails a request the broker never answers.
const PRODUCE_TIMEOUT_MS: u32 = 30_000;
const RSS_INTERVAL: Duration = Duration::from_millis(20);
const TEST_LIMIT: Duration = Duration::from_secs(120);

async fn start_broker() -> anyhow::Result<(Cluster, tempfile::TempDir)> {
    let config_dir = tempfile::tempdir()?;
    let config = config_dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!("max_request_bytes = {MAX_REQUEST_BYTES}\n"),
    )?;
    let cluster = Cluster::start(ClusterConfig {
        nodes: 1,
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..ClusterConfig::default()
    })
    .await?;
    Ok((cluster, config_dir))
}

async fn create_topic(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut admin = AdminClient::new(connect(addr).await?);
    admin
        .create_topic(pb::CreateTopicRequest {
            name: TOPIC.to_owned(),
            partitions: PARTITIONS,
            replication_factor: 1,
            configs: [(
                "max.message.bytes".to_owned(),
                MAX_REQUEST_BYTES.to_string(),
            )]
            .into(),
        })
        .await?;
    Ok(())
}

fn request(producer: usize, first_seq: u64) -> pb::ProduceRequest {
    let records = (0..RECORDS_PER_REQUEST as u64)
        .map(|i| {
            let mut value = format!("{producer}:{}:", first_seq + i).into_bytes();
            value.resize(VALUE_BYTES, b'x');
            pb::Record {
                key: None,
                value: Some(value.into()),
                headers: Vec::new(),
                timestamp_ms: None,
            }
        })
        .collect();
    pb::ProduceRequest {
        topic: TOPIC.to_owned(),
        partitions: vec![pb::PartitionRecords {
            partition: (producer as u32) % PARTITIONS,
            data: Some(pb::partition_records::Data::Records(pb::RecordList {
                records,
            })),
            ..Default::default()
        }],
        acks: pb::Acks::All as i32,
        timeout_ms: PRODUCE_TIMEOUT_MS,
        transactional_id: String::new(),
    }
}

/// What one producer saw.
#[derive(Debug, Default)]
struct Produced {
    /// First sequence number of every acknowledged request.
    acked: Vec<u64>,
    bytes_acked: u64,
    errors: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
    hangs: u64,
}

/// Sends requests one after another until `stop`.
async fn produce(
    addr: std::net::SocketAddr,
    producer: usize,
    until: Instant,
) -> anyhow::Result<Produced> {
    let mut client =
        ProducerClient::new(connect(addr).await?).max_encoding_message_size(2 * MAX_REQUEST_BYTES);
    let mut seen = Produced::default();
    let mut seq = 0u64;
    while Instant::now() < until {
        let req = request(producer, seq);
        let started = Instant::now();
        match tokio::time::timeout(PRODUCE_HANG, client.produce(req)).await {
            Err(_) => seen.hangs += 1,
            Ok(Ok(response)) => {
                seen.latencies.push(started.elapsed());
                let result = response.into_inner().results.pop().context("no result")?;
                match result.error {
                    None => {
                        seen.acked.push(seq);
                        seen.bytes_acked += (RECORDS_PER_REQUEST * VALUE_BYTES) as u64;
                    }
                    Some(e) => {
                        *seen
                            .errors
                            .entry(format!("partition code {}", e.code))
                            .or_default() += 1
                    }
                }
            }
            Ok(Err(status)) => {
                seen.latencies.push(started.elapsed());
                *seen
                    .errors
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
                // What a client does with a retriable refusal: back off, then retry.
                if matches!(status.code(), Code::ResourceExhausted | Code::Unavailable) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        seq += RECORDS_PER_REQUEST as u64;
    }
    Ok(seen)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The broker's memory bound under this load, from its named limits (see
/// docs/ARCHITECTURE.md, "Memory under overload").
fn memory_bound_bytes(baseline: u64, producers: usize, streams: usize) -> u64 {
    let mib = 1024 * 1024;
    // A produce in flight: tonic's buffer of the encoded request, the decoded request,
    // the packed batch; plus what HTTP/2 holds of the stream before tonic reads it.
    let per_produce = 3 * MAX_REQUEST_BYTES + weir_server::STREAM_WINDOW_BYTES as usize;
    // A Consume stream: its channel's messages, one more in the task waiting to send,
    // one being written; each at most max_bytes (1 MiB here) or one batch over it
    // (max.message.bytes), and decoded once as the raw read and once as the answer.
    let message = weir_server::DEFAULT_PARTITION_FETCH_BYTES.max(MAX_REQUEST_BYTES);
    let per_stream = (weir_server::CONSUME_CHANNEL_CAPACITY + 2) * message * 2;
    // Runtime, allocator arenas and the partitions' index and buffers.
    let slack = 64 * mib;
    baseline + (producers * per_produce + streams * per_stream + slack) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_under_ten_times_its_load_stays_bounded_healthy_and_loses_nothing() {
    let _one = weir_tests::exclusive().await;
    bounded(TEST_LIMIT, async {
        let (cluster, _config) = start_broker().await?;
        let addr = cluster.listen(1);
        let pid = cluster.pid(1).context("the broker is not running")?;
        create_topic(addr).await?;
        let baseline = rss_kib(pid, "VmRSS:")? * 1024;

        // What one producer alone gets through.
        let alone = produce(addr, PRODUCERS, Instant::now() + CALIBRATION).await?;
        let absorbed = alone.bytes_acked as f64 / CALIBRATION.as_secs_f64();

        let stop = Arc::new(AtomicBool::new(false));
        // Resident memory, sampled.
        let rss = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut peak = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(rss_kib(pid, "VmRSS:").unwrap_or(0) * 1024);
                    tokio::time::sleep(RSS_INTERVAL).await;
                }
                peak
            }
        });
        // Health checks on their own connection, one after another.
        let health = tokio::spawn({
            let stop = stop.clone();
            let channel = connect(addr).await?;
            async move {
                let mut client = HealthClient::new(channel);
                let mut latencies = Vec::new();
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let check = client.check(HealthCheckRequest {
                        service: String::new(),
                    });
                    match tokio::time::timeout(HEALTH_LIMIT, check).await {
                        Ok(Ok(r)) if r.get_ref().status == 1 => latencies.push(started.elapsed()),
                        Ok(Ok(r)) => failures.push(format!("status {}", r.get_ref().status)),
                        Ok(Err(s)) => failures.push(s.to_string()),
                        Err(_) => failures.push(format!("no answer within {HEALTH_LIMIT:?}")),
                    }
                    tokio::time::sleep(HEALTH_INTERVAL).await;
                }
                (latencies, failures)
            }
        });
        // Slow consumers: open a stream, never read it, hold it to the end.
        let mut slow = Vec::new();
        for c in 0..SLOW_STREAMS / SLOW_STREAMS_PER_CONNECTION {
            let channel = connect(addr).await?;
            for s in 0..SLOW_STREAMS_PER_CONNECTION {
                let mut client = ConsumerClient::new(channel.clone());
                let stream = client
                    .consume(pb::ConsumeRequest {
                        topic: TOPIC.to_owned(),
                        partition: ((c * SLOW_STREAMS_PER_CONNECTION + s) as u32) % PARTITIONS,
                        offset: 0,
                        format: pb::RecordFormat::Records as i32,
                        isolation: 0,
                        max_bytes: 0,
                    })
                    .await?
                    .into_inner();
                slow.push(stream);
            }
        }
        // Consumers that read as fast as they can.
        let mut readers = Vec::new();
        for r in 0..READING_STREAMS {
            let channel = connect(addr).await?;
            let stop = stop.clone();
            readers.push(tokio::spawn(async move {
                let mut client = ConsumerClient::new(channel)
                    .max_decoding_message_size(weir_server::MAX_RESPONSE_BYTES);
                let mut stream = client
                    .consume(pb::ConsumeRequest {
                        topic: TOPIC.to_owned(),
                        partition: r as u32 % PARTITIONS,
                        offset: 0,
                        format: pb::RecordFormat::Records as i32,
                        isolation: 0,
                        max_bytes: 0,
                    })
                    .await?
                    .into_inner();
                let mut records = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
                        Ok(Ok(Some(m))) => records += m.records.len() as u64,
                        Ok(Ok(None)) => bail!("a consume stream ended"),
                        Ok(Err(s)) => bail!("a consume stream failed: {s}"),
                        Err(_) => {}
                    }
                }
                anyhow::Ok(records)
            }));
        }
        // The producers.
        let load_started = Instant::now();
        let until = load_started + LOAD;
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| tokio::spawn(produce(addr, p, until)))
            .collect();
        let mut produced = Vec::new();
        for p in producers {
            produced.push(p.await??);
        }
        let load_secs = load_started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let peak_sampled = rss.await?;
        let peak_hwm = rss_kib(pid, "VmHWM:")? * 1024;
        let (mut health_latencies, health_failures) = health.await?;
        let mut consumed = 0;
        for r in readers {
            consumed += r.await??;
        }
        drop(slow);

        // Figures.
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let acked_bytes: u64 = produced.iter().map(|p| p.bytes_acked).sum();
        let mut latencies: Vec<Duration> = produced.iter().flat_map(|p| p.latencies.clone()).collect();
        latencies.sort();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for p in &produced {
            for (k, v) in &p.errors {
                *errors.entry(k.clone()).or_default() += v;
            }
        }
        let hangs: u64 = produced.iter().map(|p| p.hangs).sum();
        let requests = latencies.len() as u64 + hangs;
        let acked_requests: usize = produced.iter().map(|p| p.acked.len()).sum();
        health_latencies.sort();
        let bound = memory_bound_bytes(baseline, PRODUCERS, SLOW_STREAMS + READING_STREAMS);
        let alone_p50 = {
            let mut l = alone.latencies.clone();
            l.sort();
            percentile(&l, 0.5)
        };
        eprintln!(
            "overload: one producer alone {:.1} MiB/s (ack p50 {alone_p50:?}); {PRODUCERS} producers offered {:.1}x that: \
             acked {:.1} MiB/s, {acked_requests} of {requests} requests acked, errors {errors:?}, hangs {hangs}; \
             ack latency p50 {:?} p99 {:?} max {:?}; {consumed} records read by {READING_STREAMS} streams, {SLOW_STREAMS} slow streams never read",
            absorbed / 1048576.0,
            PRODUCERS as f64,
            mib(acked_bytes) / load_secs,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or_default(),
        );
        eprintln!(
            "overload: broker RSS baseline {:.0} MiB, peak {:.0} MiB sampled, {:.0} MiB VmHWM, bound {:.0} MiB; \
             {} health checks, p50 {:?} p99 {:?} max {:?}, {} failed",
            mib(baseline),
            mib(peak_sampled),
            mib(peak_hwm),
            mib(bound),
            health_latencies.len(),
            percentile(&health_latencies, 0.5),
            percentile(&health_latencies, 0.99),
            health_latencies.last().copied().unwrap_or_default(),
            health_failures.len(),
        );

        // What a user checks.
        ensure!(peak_hwm <= bound, "broker peak RSS {} MiB over the bound {} MiB", mib(peak_hwm), mib(bound));
        ensure!(health_failures.is_empty(), "health checks failed: {health_failures:?}");
        ensure!(!health_latencies.is_empty(), "no health check answered");
        ensure!(hangs == 0, "{hangs} produce requests got no answer within {PRODUCE_HANG:?}");
        for code in errors.keys() {
            ensure!(code == "ResourceExhausted", "producers saw {code}: {errors:?}");
        }
        ensure!(acked_requests > 0, "nothing was acknowledged");
        ensure!(cluster.state(1) == weir_tests::cluster::NodeState::Running);

        // Everything acknowledged is readable, in order, once.
        let read = read_prefixes(addr).await?;
        let mut seen = HashSet::new();
        let mut last: HashMap<(u32, usize), u64> = HashMap::new();
        for (partition, producer, seq) in &read {
            ensure!(seen.insert((*producer, *seq)), "record {producer}:{seq} read twice");
            if let Some(prev) = last.insert((*partition, *producer), *seq) {
                ensure!(*seq > prev, "producer {producer}'s record {seq} after {prev} in partition {partition}");
            }
        }
        for (producer, p) in produced.iter().enumerate() {
            for first in &p.acked {
                for seq in *first..*first + RECORDS_PER_REQUEST as u64 {
                    ensure!(seen.contains(&(producer, seq)), "acknowledged record {producer}:{seq} is missing");
                }
            }
        }
        eprintln!("overload: read back {} records, every acknowledged one once and in order", read.len());
        cluster.finish();
        anyhow::Ok(())
    })
    .await
    .unwrap();
}

/// (partition, producer, sequence) of every record of the topic, in offset order per
/// partition; only the values' prefixes are kept.
async fn read_prefixes(addr: std::net::SocketAddr) -> anyhow::Result<Vec<(u32, usize, u64)>> {
    let mut client = ConsumerClient::new(connect(addr).await?)
        .max_decoding_message_size(weir_server::MAX_RESPONSE_BYTES);
    let mut out = Vec::new();
    for partition in 0..PARTITIONS {
        let mut offset = 0;
        loop {
            let mut response = client
                .fetch(pb::FetchRequest {
                    topic: TOPIC.to_owned(),
                    partitions: vec![pb::PartitionFetch {
                        partition,
                        offset,
                        max_bytes: 0,
                    }],
                    max_wait_ms: 0,
                    min_bytes: 0,
                    max_bytes: 0,
                    format: pb::RecordFormat::Records as i32,
                    isolation: 0,
                })
                .await?
                .into_inner();
            let result = response.results.pop().context("no result")?;
            if let Some(e) = result.error {
                bail!("reading {partition}@{offset}: {e:?}");
            }
            if result.records.is_empty() {
                ensure!(
                    offset >= result.high_watermark,
                    "nothing at {partition}@{offset} below the high watermark"
                );
                break;
            }
            for r in result.records {
                let value = r.value.unwrap_or_default();
                let text = String::from_utf8_lossy(&value[..value.len().min(40)]).into_owned();
                let mut parts = text.split(':');
                let producer: usize = parts.next().unwrap_or("").parse().context("producer")?;
                let seq: u64 = parts.next().unwrap_or("").parse().context("sequence")?;
                out.push((partition, producer, seq));
            }
            offset = result.next_offset;
        }
    }
    Ok(out)
}

/// A request over `max_request_bytes` is refused with RESOURCE_EXHAUSTED naming the
/// limit, on the unary call and on a ProduceStream, and the broker goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_over_the_transport_limit_is_resource_exhausted() {
    let _one = weir_tests::exclusive().await;
    bounded(TEST_LIMIT, async {
        let (cluster, _config) = start_broker().await?;
        let addr = cluster.listen(1);
        create_topic(addr).await?;
        let mut client = ProducerClient::new(connect(addr).await?)
            .max_encoding_message_size(4 * MAX_REQUEST_BYTES);
        let mut big = request(0, 0);
        if let Some(pb::partition_records::Data::Records(list)) = &mut big.partitions[0].data {
            let extra = list.records[0].clone();
            list.records
                .extend(std::iter::repeat_n(extra, RECORDS_PER_REQUEST));
        }
        let status = client.produce(big.clone()).await.expect_err("refused");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status
                .message()
                .contains(&format!("{MAX_REQUEST_BYTES} bytes")),
            "{status:?}"
        );

        let outbound = tokio_stream_once(pb::ProduceStreamRequest {
            sequence: 1,
            request: Some(big),
        });
        let mut answers = client.produce_stream(outbound).await?.into_inner();
        let status = answers.message().await.expect_err("refused");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

        // Still serving.
        let ok = wait_for(
            Duration::from_secs(5),
            "a produce after the refusal",
            || {
                let mut client = client.clone();
                async move { client.produce(request(0, 0)).await.ok() }
            },
        )
        .await?;
        ensure!(ok.into_inner().results[0].error.is_none());
        cluster.finish();
        anyhow::Ok(())
    })
    .await
    .unwrap();
}

/// A client stream of one request that stays open (a stream that ended at once would
/// race the broker's answer).
fn tokio_stream_once(
    request: pb::ProduceStreamRequest,
) -> impl futures_util::Stream<Item = pb::ProduceStreamRequest> + Send + 'static {
    use futures_util::StreamExt;
    futures_util::stream::once(async move { request }).chain(futures_util::stream::pending())
}
