//! The `weir` command (`src/main.rs` calls [`run`]). One subcommand per file; this file
//! holds only the command line, the dispatch and the mapping of failures to exit codes.
//! Data goes to stdout, diagnostics (logs, progress, errors) to stderr.
//!
//! Exit codes: 0 success (also when stdout is closed early, as in `weir consume t | head`),
//! 1 the command failed, 2 a usage error (bad flags or values, found before any work),
//! 3 `weir serve` stopped because its data directory went offline (a failing disk).

mod acl;
mod bench;
mod brokers;
mod cluster;
mod consume;
mod dev;
mod group;
mod healthcheck;
mod memory;
mod output;
mod partition;
mod plan;
mod produce;
mod queue;
mod quota;
mod serve;
mod signals;
mod token;
mod topic;
mod user;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a command that failed after it started.
const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage error (what clap uses too).
const EXIT_USAGE: u8 = 2;
/// Exit code of `weir serve` when its data directory went offline (a disk that keeps
/// failing: docs/operations.md § A failing disk): restart it once the disk is healthy.
const EXIT_DATA_DIR_OFFLINE: u8 = 3;

const EXAMPLES: &str = "\
Examples:
  weir serve --data-dir /tmp/weir
  weir dev cluster --nodes 3          # a local 3-broker cluster in the foreground
  weir topic create events --partitions 3 --replication-factor 3
  weir cluster describe
  printf 'user-1:hello\\nuser-2:world\\n' | weir produce events --key-separator :
  weir consume events --from beginning --format json
  weir consume events --group billing --follow
  weir group describe billing
  weir queue consume jobs --group workers --exec ./process-job.sh   # a work-queue worker
  weir user create alice              # asks for her password
  weir acl add --principal User:alice --operation read,describe --topic orders
  weir token create ci --expires 30d          # prints an API token once (use: WEIR_TOKEN)
  weir bench produce --record-size 100 --count 1000000
  weir topic list --tls-ca certs/ca.pem   # brokers serving TLS (weir serve --tls-cert ...)

Client commands reach the cluster through --brokers (or WEIR_BROKERS), 127.0.0.1:9292 by
default: a comma-separated list, of which the first broker that answers is used; records
then go to and come from each partition's leader. A broker that does not answer fails the
command, naming it, after --connect-timeout (3s) when connecting or --timeout (30s) for a
request. With --tls-ca (WEIR_TLS_CA) every connection speaks TLS, trusting that CA;
--tls-cert and --tls-key (WEIR_TLS_CERT, WEIR_TLS_KEY) add a client certificate.";

/// Weir: a Kafka-like partitioned log service.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Boxed: it holds every flag of the broker, far more than any other command.
    Serve(Box<serve::ServeArgs>),
    Topic(topic::TopicArgs),
    Cluster(cluster::ClusterArgs),
    Partition(partition::PartitionArgs),
    Produce(produce::ProduceArgs),
    Consume(consume::ConsumeArgs),
    Group(group::GroupArgs),
    Queue(queue::QueueArgs),
    User(user::UserArgs),
    Acl(acl::AclArgs),
    Token(token::TokenArgs),
    /// Client quotas: bytes per second a user or client id may produce and fetch, and
    /// the share of a thread its requests may take.
    Quota(quota::QuotaArgs),
    Bench(bench::BenchArgs),
    Dev(dev::DevArgs),
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// A usage error found after clap parsed the flags (a combination clap cannot check):
/// reported like clap's own, with exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Runs the command line of this process and returns its exit code.
pub fn run() -> ExitCode {
    memory::keep_freed_memory();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        client_logging();
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Topic(args) => client_runtime().and_then(|rt| rt.block_on(topic::run(args))),
        Command::Cluster(args) => client_runtime().and_then(|rt| rt.block_on(cluster::run(args))),
        Command::Partition(args) => {
            client_runtime().and_then(|rt| rt.block_on(partition::run(args)))
        }
        Command::Produce(args) => args
            .into_config()
            .and_then(|config| client_runtime()?.block_on(produce::run(config))),
        Command::Consume(args) => args
            .into_config()
            .and_then(|config| client_runtime()?.block_on(consume::run(config))),
        Command::Group(args) => client_runtime().and_then(|rt| rt.block_on(group::run(args))),
        Command::Queue(args) => client_runtime().and_then(|rt| rt.block_on(queue::run(args))),
        Command::User(args) => client_runtime().and_then(|rt| rt.block_on(user::run(args))),
        Command::Acl(args) => client_runtime().and_then(|rt| rt.block_on(acl::run(args))),
        Command::Token(args) => client_runtime().and_then(|rt| rt.block_on(token::run(args))),
        Command::Quota(args) => client_runtime().and_then(|rt| rt.block_on(quota::run(args))),
        Command::Bench(args) => args
            .into_config()
            .and_then(|config| client_runtime()?.block_on(bench::run(config))),
        Command::Dev(args) => dev::run(args),
        Command::Healthcheck(args) => {
            client_runtime().and_then(|rt| rt.block_on(healthcheck::run(args)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e:#}\n\nFor more information, try '--help'.");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) if e.downcast_ref::<weir_server::DataDirOffline>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_DATA_DIR_OFFLINE)
        }
        Err(e) => {
            eprintln!("error: {}", brokers::explain(&e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Client commands print the client library's warnings (a bootstrap broker that did not
/// answer, a leader lost and retried elsewhere) to stderr; `RUST_LOG` chooses otherwise.
/// `weir serve` sets up its own logging.
fn client_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}

/// The runtime client commands run on. Multi-threaded: the producer's sender and the
/// consumer's fetchers run beside the command's own loop.
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
