//! `weir-peer-bench`: Weir's peers measured side by side — NATS JetStream, Redis Streams
//! and RabbitMQ streams — with the same record sizes, durability, windows and workloads,
//! each through its official Rust client, on loopback.
//!
//! - `produce`: records acknowledged per second, with a fixed window of batches in flight.
//! - `consume`: records read back per second from the start of a stream.
//! - `latency`: end-to-end latency percentiles at a fixed rate, measured from each
//!   record's intended send time (no coordinated omission).
//! - `report`: merges result lines — from this bench, or any program writing the same
//!   schema, such as `weir bench --format json` — into one table.
//!
//! Every load is bounded: a record count, and a deadline (`--timeout-secs`) past which
//! the run fails instead of hanging. Only loopback addresses are accepted. Results go to
//! stdout (text, or one JSON line with `--format json`); progress goes to stderr.
//! `benches/run-peers.sh` installs and starts the servers, runs every workload on each,
//! stops them and prints the table.
//!
//! Architecture invariant: this crate knows nothing of Weir's own crates; Weir joins the
//! table through the result schema ([`result`]), not through code.

mod consume;
mod latency;
mod output;
mod payload;
mod peer;
mod produce;
mod queue;
mod report;
mod result;
mod shared_args;

use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Parser, Subcommand};

use crate::peer::PeerKind;
use crate::shared_args::ConnectArgs;

const EXAMPLES: &str = "\
Examples:
  # Everything, on every peer, with servers installed and started for you:
  benches/run-peers.sh
  # 2 M records of 100 B into a running Redis on 127.0.0.1:17479, acks after write:
  weir-peer-bench produce --peer redis --records 2000000 --record-bytes 100
  # 500 k records of 1 KiB into NATS JetStream, acks asked to be durable, as JSON:
  weir-peer-bench produce --peer nats --records 500000 --record-bytes 1KiB \\
      --durability durable --format json >> results.jsonl
  # Read them back:
  weir-peer-bench consume --peer nats --records 500000 --record-bytes 1KiB
  # End-to-end latency at 20,000 records/s of 1 KiB, for 20 s (+2 s warm-up):
  weir-peer-bench latency --peer nats --record-bytes 1KiB --durability durable \\
      --rate 20000 --duration-secs 20
  # At half the rate `produce` measured above instead, on another port:
  weir-peer-bench latency --peer redis --port 6390 --rate-from results.jsonl --rate-fraction 0.5
  # RabbitMQ classic queue: 1 M persistent messages of 100 B, then 4 and 16 consumers
  # with prefetch 100 and one basic.ack each (AMQP port 17472; `rabbitmq-amqp` feature):
  weir-peer-bench queue --records 1000000 --record-bytes 100 --consumers 4,16
  # One table from all the results, Weir's included:
  weir bench ... --format json >> results.jsonl
  weir-peer-bench report results.jsonl";

#[derive(Debug, Parser)]
#[command(
    name = "weir-peer-bench",
    version,
    about = "NATS JetStream, Redis Streams and RabbitMQ streams measured side by side, \
             with the same records, acks and workloads",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce records as fast as acks come back, with a fixed window in flight:
    /// records/s and MB/s.
    Produce(produce::ProduceArgs),
    /// Read a stream back from its first record: MB/s.
    Consume(consume::ConsumeArgs),
    /// End-to-end latency at a fixed rate: p50, p99, p99.9 and max.
    Latency(latency::LatencyArgs),
    /// A work queue with one acknowledgement per record: RabbitMQ classic queue, persistent
    /// messages with publisher confirms, N consumers with prefetch and manual basic.ack
    /// (AMQP 0-9-1 through lapin; the `rabbitmq-amqp` feature).
    Queue(queue::QueueArgs),
    /// Merge result lines (this bench's `--format json`, or `weir bench`'s) into one table.
    Report(report::ReportArgs),
}

/// Connects to the peer `$connect` names and evaluates `$body` with it bound to `$peer`,
/// whatever its type: the workloads are generic over the peer.
macro_rules! with_peer {
    ($connect:expr, |$peer:ident| $body:expr) => {{
        let endpoint = $connect.endpoint();
        if !$connect.topic_configs.is_empty() && $connect.peer != PeerKind::Kafka {
            return Err(anyhow!("--topic-config is for --peer kafka only"));
        }
        match $connect.peer {
            PeerKind::Nats => {
                let $peer = peer::jetstream::JetStream::connect(endpoint).await?;
                $body.await
            }
            PeerKind::Redis => {
                let $peer = peer::redis_streams::RedisStreams::connect(endpoint).await?;
                $body.await
            }
            #[cfg(feature = "rabbitmq")]
            PeerKind::Rabbitmq => {
                let $peer = peer::rabbitmq_stream::RabbitStream::connect(endpoint).await?;
                $body.await
            }
            #[cfg(not(feature = "rabbitmq"))]
            PeerKind::Rabbitmq => Err(anyhow!(
                "this weir-peer-bench was built without RabbitMQ: build it with \
                 `cargo build --release -p weir-peer-bench --features rabbitmq`"
            )),
            #[cfg(feature = "kafka")]
            PeerKind::Kafka => {
                let $peer =
                    peer::kafka_wire::KafkaWire::connect(endpoint, $connect.broker_facts()).await?;
                $body.await
            }
            #[cfg(not(feature = "kafka"))]
            PeerKind::Kafka => Err(anyhow!(
                "this weir-peer-bench was built without Kafka: build it with \
                 `cargo build --release -p weir-peer-bench --features kafka` (librdkafka is \
                 built from source: cmake and a C compiler are needed)"
            )),
        }
    }};
}

/// Runs a workload against a peer, failing if it takes longer than `--timeout-secs`.
async fn bounded(
    connect: &ConnectArgs,
    work: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::time::timeout(connect.timeout(), work)
        .await
        .map_err(|_| {
            anyhow!(
                "{} did not finish within --timeout-secs {}",
                connect.peer.name(),
                connect.timeout_secs
            )
        })?
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Produce(args) => {
            let connect = args.connect.clone();
            bounded(&connect, async {
                with_peer!(connect, |p| produce::run(p, args))
            })
            .await
        }
        Command::Consume(args) => {
            let connect = args.connect.clone();
            bounded(&connect, async {
                with_peer!(connect, |p| consume::run(p, args))
            })
            .await
        }
        Command::Latency(args) => {
            let connect = args.connect.clone();
            bounded(&connect, async {
                with_peer!(connect, |p| latency::run(p, args))
            })
            .await
        }
        Command::Queue(args) => {
            let (timeout, timeout_secs) = (args.timeout(), args.timeout_secs);
            tokio::time::timeout(timeout, queue::run(args))
                .await
                .map_err(|_| anyhow!("queue did not finish within --timeout-secs {timeout_secs}"))?
        }
        Command::Report(args) => report::run(args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    // Clients keep background tasks (heartbeats, readers); do not wait for them.
    runtime.shutdown_background();
    output::exit_code(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_issue_workloads() {
        let cli = Cli::try_parse_from(["weir-peer-bench", "produce", "--peer", "nats"]).unwrap();
        let Command::Produce(p) = cli.command else {
            unreachable!()
        };
        assert_eq!((p.records, p.record_bytes), (2_000_000, 100));
        assert_eq!(p.connect.endpoint().addr.to_string(), "127.0.0.1:17422");

        let cli = Cli::try_parse_from(["weir-peer-bench", "consume", "--peer", "redis"]).unwrap();
        let Command::Consume(c) = cli.command else {
            unreachable!()
        };
        assert_eq!((c.records, c.record_bytes), (500_000, 1024));

        let cli = Cli::try_parse_from([
            "weir-peer-bench",
            "latency",
            "--peer",
            "rabbitmq",
            "--rate",
            "100",
        ])
        .unwrap();
        let Command::Latency(l) = cli.command else {
            unreachable!()
        };
        assert_eq!((l.duration_secs, l.record_bytes), (20, 1024));
    }

    #[test]
    fn refuses_hosts_off_this_machine() {
        let parsed = Cli::try_parse_from([
            "weir-peer-bench",
            "produce",
            "--peer",
            "redis",
            "--host",
            "10.1.2.3",
        ]);
        assert!(parsed.is_err());
        let parsed = Cli::try_parse_from([
            "weir-peer-bench",
            "produce",
            "--peer",
            "redis",
            "--host",
            "::1",
        ]);
        assert!(parsed.is_ok());
    }
}
