//! The broker-wide budget of one real `weir serve` process (`--max-connections`,
//! `--max-in-flight-request-bytes`, `--max-consume-streams`; docs/ARCHITECTURE.md §
//! Memory under overload), under about ten times what its caps admit, all at once:
//! producers offering four times the in-flight byte budget (acks=all), twice as many
//! Consume streams as the cap, and a flood of connection attempts on the Kafka and gRPC
//! listeners ten times the connection cap. Checks what an operator would: the broker's
//! resident memory (sampled every 100 ms) stays under the bound its caps give,
//! connections and streams past the caps are refused (counted), every acknowledged
//! record reads back, and a normal client is served afterwards.
//!
//! `cargo test -p weir-tests --test it -- --nocapture budget::` prints the figures. It runs
//! in about 6 s once the binary is built (the load is bounded by count: 12 requests per
//! producer, and by [`LOAD`]), so it stays in the default run with no opt-in flag.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use weir_tests::process::{connect, rss_kib};

use anyhow::{Context, bail, ensure};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::consumer_client::ConsumerClient;
use weir_proto::v1::producer_client::ProducerClient;
use weir_tests::cluster::{Cluster, ClusterConfig};
use weir_tests::wait::bounded;

const TOPIC: &str = "budget";
const PARTITIONS: u32 = 4;
const MIB: usize = 1024 * 1024;
/// The caps under test.
const MAX_CONNECTIONS: usize = 50;
const MAX_IN_FLIGHT_REQUEST_BYTES: usize = 8 * MIB;
const MAX_CONSUME_STREAMS: usize = 20;
/// The transport limit on one request, and the requests: one batch of about 1 MiB.
const MAX_REQUEST_BYTES: usize = 4 * MIB;
const RECORDS_PER_REQUEST: usize = 64;
const VALUE_BYTES: usize = 16 * 1024;
/// Producers, over a few connections (HTTP/2 streams), each sending its next request as
/// soon as the last is answered: together 32 MiB offered against the 8 MiB budget.
const PRODUCERS: usize = 32;
const PRODUCER_CONNECTIONS: usize = 8;
/// Most requests one producer sends (the load is bounded in count as well as time).
const MAX_REQUESTS_PER_PRODUCER: u64 = 12;
/// Consume streams asked for (twice the cap), over a few connections.
const STREAMS: usize = 2 * MAX_CONSUME_STREAMS;
const STREAM_CONNECTIONS: usize = 4;
/// Connection attempts of the flood, half on the Kafka listener, half on gRPC.
const FLOOD: usize = 10 * MAX_CONNECTIONS;
/// How long an attempt is watched before it counts as accepted (a refused one is closed
/// at once).
const ACCEPT_WATCH: Duration = Duration::from_secs(2);
const RSS_INTERVAL: Duration = Duration::from_millis(100);
const PRODUCE_TIMEOUT_MS: u32 = 30_000;
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Longest the producers push.
const LOAD: Duration = Duration::from_secs(10);

/// The broker's memory bound under this load, from its caps (docs/ARCHITECTURE.md §
/// Memory under overload).
fn memory_bound_bytes(baseline: u64) -> u64 {
    // Request bytes in flight, each held as tonic's buffer, the decoded request and the
    // packed batch; plus what HTTP/2 lets each waiting producer send ahead (its whole
    // request here: a request is under the stream window).
    let requests = 3 * MAX_IN_FLIGHT_REQUEST_BYTES + PRODUCERS * RECORDS_PER_REQUEST * VALUE_BYTES;
    // An open Consume stream: its channel's messages, one waiting, one being written,
    // each at most max_bytes (1 MiB) or one batch (1 MiB), as the read and the answer.
    let per_stream = (weir_server::CONSUME_CHANNEL_CAPACITY + 2)
        * 2
        * weir_server::DEFAULT_PARTITION_FETCH_BYTES;
    // Runtime, allocator arenas, the partitions' buffers, connections' own buffers.
    let slack = 64 * MIB;
    baseline + (requests + MAX_CONSUME_STREAMS * per_stream + slack) as u64
}

async fn start_broker() -> anyhow::Result<(Cluster, tempfile::TempDir)> {
    let config_dir = tempfile::tempdir()?;
    let config = config_dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!("max_request_bytes = {MAX_REQUEST_BYTES}\n"),
    )?;
    let cluster = Cluster::start(ClusterConfig {
        nodes: 1,
        extra_args: vec![
            "--config".into(),
            config.display().to_string(),
            "--max-connections".into(),
            MAX_CONNECTIONS.to_string(),
            "--max-in-flight-request-bytes".into(),
            MAX_IN_FLIGHT_REQUEST_BYTES.to_string(),
            "--max-consume-streams".into(),
            MAX_CONSUME_STREAMS.to_string(),
        ],
        ..ClusterConfig::default()
    })
    .await?;
    Ok((cluster, config_dir))
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

/// Sends requests one after another until `until` or its count; the first sequence
/// number of each acknowledged request, and the errors seen.
async fn produce(
    channel: Channel,
    producer: usize,
    until: Instant,
) -> anyhow::Result<(Vec<u64>, Vec<String>)> {
    let mut client = ProducerClient::new(channel);
    let (mut acked, mut errors) = (Vec::new(), Vec::new());
    let mut seq = 0u64;
    while Instant::now() < until && seq / (RECORDS_PER_REQUEST as u64) < MAX_REQUESTS_PER_PRODUCER {
        match client.produce(request(producer, seq)).await {
            Ok(response) => match response.into_inner().results.pop() {
                Some(r) if r.error.is_none() => acked.push(seq),
                other => errors.push(format!("{other:?}")),
            },
            Err(status) => errors.push(format!("{:?}: {}", status.code(), status.message())),
        }
        seq += RECORDS_PER_REQUEST as u64;
    }
    Ok((acked, errors))
}

/// One connection attempt on the Kafka listener: `Some(stream)` if it is still open
/// after [`ACCEPT_WATCH`] (accepted), `None` if the broker closed it.
async fn kafka_attempt(addr: SocketAddr) -> anyhow::Result<Option<tokio::net::TcpStream>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(ACCEPT_WATCH, stream.read(&mut byte)).await {
        Err(_) => Ok(Some(stream)),
        Ok(Ok(0)) | Ok(Err(_)) => Ok(None),
        Ok(Ok(_)) => bail!("the Kafka listener sent bytes unasked"),
    }
}

/// One gRPC client: `Some(channel)` if it connects and gets a health answer.
async fn grpc_attempt(addr: SocketAddr) -> Option<Channel> {
    let channel = tokio::time::timeout(ACCEPT_WATCH, connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut health = HealthClient::new(channel.clone());
    let check = health.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(ACCEPT_WATCH, check).await {
        Ok(Ok(_)) => Some(channel),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_times_the_caps_are_refused_or_wait_and_memory_stays_bounded() {
    let _one = weir_tests::exclusive().await;
    // Building the binary (if needed) is not the test's time.
    tokio::task::spawn_blocking(weir_tests::binary::weir_binary)
        .await
        .unwrap()
        .unwrap();
    bounded(TEST_LIMIT, async {
        let started = Instant::now();
        let (cluster, _config) = start_broker().await?;
        let addr = cluster.listen(1);
        let kafka: SocketAddr = cluster.kafka_bootstrap().parse()?;
        let pid = cluster.pid(1).context("the broker is not running")?;
        let admin_channel = connect(addr).await?;
        AdminClient::new(admin_channel.clone())
            .create_topic(pb::CreateTopicRequest {
                name: TOPIC.to_owned(),
                partitions: PARTITIONS,
                replication_factor: 1,
                configs: Default::default(),
            })
            .await?;
        let baseline = rss_kib(pid, "VmRSS:")? * 1024;
        let bound = memory_bound_bytes(baseline);

        let stop = Arc::new(AtomicBool::new(false));
        let rss = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    samples.push(rss_kib(pid, "VmRSS:").unwrap_or(0) * 1024);
                    tokio::time::sleep(RSS_INTERVAL).await;
                }
                samples
            }
        });

        // Consume streams: twice the cap; the ones let in read everything.
        let mut stream_channels = Vec::new();
        for _ in 0..STREAM_CONNECTIONS {
            stream_channels.push(connect(addr).await?);
        }
        let mut readers = Vec::new();
        let mut refused_streams = 0;
        for s in 0..STREAMS {
            let mut client = ConsumerClient::new(stream_channels[s % STREAM_CONNECTIONS].clone())
                .max_decoding_message_size(weir_server::MAX_RESPONSE_BYTES);
            let opened = client
                .consume(pb::ConsumeRequest {
                    topic: TOPIC.to_owned(),
                    partition: s as u32 % PARTITIONS,
                    offset: 0,
                    format: pb::RecordFormat::Records as i32,
                    isolation: 0,
                    max_bytes: 0,
                })
                .await;
            match opened {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    let stop = stop.clone();
                    readers.push(tokio::spawn(async move {
                        let mut records = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let next = tokio::time::timeout(Duration::from_millis(200), stream.message());
                            match next.await {
                                Ok(Ok(Some(m))) => records += m.records.len() as u64,
                                Ok(Ok(None)) => bail!("a consume stream ended"),
                                Ok(Err(s)) => bail!("a consume stream failed: {s}"),
                                Err(_) => {}
                            }
                        }
                        anyhow::Ok(records)
                    }));
                }
                Err(status) => {
                    ensure!(status.code() == Code::ResourceExhausted, "stream refused with {status:?}");
                    ensure!(status.message().contains("max_consume_streams"), "{status:?}");
                    refused_streams += 1;
                }
            }
        }

        // The producers.
        let mut producer_channels = Vec::new();
        for _ in 0..PRODUCER_CONNECTIONS {
            producer_channels.push(connect(addr).await?);
        }
        let until = Instant::now() + LOAD;
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| tokio::spawn(produce(producer_channels[p % PRODUCER_CONNECTIONS].clone(), p, until)))
            .collect();
        let ours = 1 + STREAM_CONNECTIONS + PRODUCER_CONNECTIONS;

        // The flood, while the producers push: ten times the connection cap at once.
        let flood_started = Instant::now();
        let kafka_attempts: Vec<_> = (0..FLOOD / 2).map(|_| tokio::spawn(kafka_attempt(kafka))).collect();
        let grpc_attempts: Vec<_> = (0..FLOOD / 2).map(|_| tokio::spawn(grpc_attempt(addr))).collect();
        let mut held_kafka = Vec::new();
        for a in kafka_attempts {
            if let Some(stream) = a.await?? {
                held_kafka.push(stream);
            }
        }
        let mut held_grpc = Vec::new();
        for a in grpc_attempts {
            if let Some(channel) = a.await? {
                held_grpc.push(channel);
            }
        }
        let flood_secs = flood_started.elapsed().as_secs_f64();
        let accepted = held_kafka.len() + held_grpc.len();
        let refused = FLOOD - accepted;
        drop((held_kafka, held_grpc));

        let mut acked = Vec::new();
        let mut errors = Vec::new();
        for p in producers {
            let (a, e) = p.await??;
            acked.push(a);
            errors.extend(e);
        }
        stop.store(true, Ordering::Relaxed);
        let samples = rss.await?;
        let peak = samples.iter().copied().max().unwrap_or(0);
        let mut consumed = 0;
        for r in readers {
            consumed += r.await??;
        }

        let mib = |b: u64| b as f64 / MIB as f64;
        let acked_requests: usize = acked.iter().map(Vec::len).sum();
        eprintln!(
            "budget: caps {MAX_CONNECTIONS} connections, {} MiB in flight, {MAX_CONSUME_STREAMS} streams; \
             flood of {FLOOD} attempts in {flood_secs:.1} s: {accepted} accepted (with our {ours}), {refused} refused; \
             {refused_streams} of {STREAMS} streams refused; {acked_requests} requests of {} MiB acked by {PRODUCERS} producers, \
             errors {errors:?}; {consumed} records read by the streams",
            MAX_IN_FLIGHT_REQUEST_BYTES / MIB,
            RECORDS_PER_REQUEST * VALUE_BYTES / MIB,
        );
        eprintln!(
            "budget: broker RSS baseline {:.0} MiB, peak {:.0} MiB over {} samples (every {RSS_INTERVAL:?}), VmHWM {:.0} MiB, bound {:.0} MiB",
            mib(baseline),
            mib(peak),
            samples.len(),
            mib(rss_kib(pid, "VmHWM:")? * 1024),
            mib(bound),
        );

        // What an operator checks.
        ensure!(peak <= bound, "broker RSS peaked at {:.0} MiB, over the bound {:.0} MiB", mib(peak), mib(bound));
        ensure!(
            accepted + ours <= MAX_CONNECTIONS,
            "{accepted} flood connections accepted beside our {ours}: over the cap of {MAX_CONNECTIONS}"
        );
        ensure!(refused >= FLOOD - MAX_CONNECTIONS, "only {refused} of {FLOOD} attempts refused");
        ensure!(
            refused_streams == STREAMS - MAX_CONSUME_STREAMS,
            "{refused_streams} streams refused, expected {}",
            STREAMS - MAX_CONSUME_STREAMS
        );
        ensure!(errors.is_empty(), "producers saw errors: {errors:?}");
        ensure!(acked_requests > 0, "nothing was acknowledged");
        ensure!(cluster.state(1) == weir_tests::cluster::NodeState::Running);

        // Every acknowledged record is there.
        let read = read_prefixes(admin_channel.clone()).await?;
        let seen: HashSet<(usize, u64)> = read.iter().copied().collect();
        for (producer, firsts) in acked.iter().enumerate() {
            for first in firsts {
                for seq in *first..*first + RECORDS_PER_REQUEST as u64 {
                    ensure!(seen.contains(&(producer, seq)), "acknowledged record {producer}:{seq} is missing");
                }
            }
        }

        // And a normal client is served: a new connection, a produce, a new stream.
        let channel = connect(addr).await.context("a new client after the flood")?;
        let mut producer = ProducerClient::new(channel.clone());
        let response = producer.produce(request(PRODUCERS, 0)).await?.into_inner();
        ensure!(response.results.iter().all(|r| r.error.is_none()), "{response:?}");
        let mut stream = ConsumerClient::new(channel)
            .max_decoding_message_size(weir_server::MAX_RESPONSE_BYTES)
            .consume(pb::ConsumeRequest {
                topic: TOPIC.to_owned(),
                partition: 0,
                offset: 0,
                format: pb::RecordFormat::Records as i32,
                isolation: 0,
                max_bytes: 0,
            })
            .await
            .context("a consume stream after the flood")?
            .into_inner();
        ensure!(stream.message().await?.is_some_and(|m| !m.records.is_empty()));
        let mut kafka_client = tokio::net::TcpStream::connect(kafka).await?;
        let mut byte = [0u8; 1];
        ensure!(
            tokio::time::timeout(Duration::from_millis(500), kafka_client.read(&mut byte)).await.is_err(),
            "a Kafka connection after the flood was closed"
        );
        eprintln!(
            "budget: read back {} records, every acknowledged one; served a new client after; {:.1} s in all",
            read.len(),
            started.elapsed().as_secs_f64()
        );
        cluster.finish();
        anyhow::Ok(())
    })
    .await
    .unwrap();
}

/// (producer, sequence) of every record of the topic; only the values' prefixes are kept.
async fn read_prefixes(channel: Channel) -> anyhow::Result<Vec<(usize, u64)>> {
    let mut client =
        ConsumerClient::new(channel).max_decoding_message_size(weir_server::MAX_RESPONSE_BYTES);
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
                        max_bytes: 16 * MIB as u32,
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
                out.push((producer, seq));
            }
            offset = result.next_offset;
        }
    }
    Ok(out)
}
