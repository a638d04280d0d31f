//! `weir serve`: run a broker. Settings come from defaults, then a TOML file
//! (`--config` / `WEIR_CONFIG`), then environment variables, then flags: each layer
//! overrides the one before it. The result is validated before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use weir_server::{ServerConfig, Voter};

use crate::UsageError;
use crate::signals::StopSignals;

const EXAMPLES: &str = "\
Examples:
  weir serve
      Broker on 127.0.0.1:9292 (gRPC), 127.0.0.1:9092 (Kafka clients), 127.0.0.1:5672
      (AMQP clients: pika, lapin) and 127.0.0.1:9293 (HTTP /metrics, /health, the web
      console), data in ./weir-data.
  weir serve --kafka-listen 0.0.0.0:9092 --kafka-advertise broker1.example.com:9092
      Kafka clients on other hosts, told to connect to broker1.example.com:9092.
  weir serve --data-dir /var/lib/weir --listen 0.0.0.0:9292
      Serve other hosts too.
  WEIR_LISTEN=127.0.0.1:0 weir serve --admin-listen off
      Any free port, no HTTP endpoint.
  weir serve --node-id 1 --data-dir D1 --listen 127.0.0.1:9292 --admin-listen 127.0.0.1:9293 \\
      --kafka-listen 127.0.0.1:9294 --amqp-listen 127.0.0.1:9295 \\
      --controller-voters 1@127.0.0.1:9292,2@127.0.0.1:9392,3@127.0.0.1:9492
  weir serve --node-id 2 --data-dir D2 --listen 127.0.0.1:9392 --admin-listen 127.0.0.1:9393 \\
      --kafka-listen 127.0.0.1:9394 --amqp-listen 127.0.0.1:9395 \\
      --controller-voters 1@127.0.0.1:9292,2@127.0.0.1:9392,3@127.0.0.1:9492
  weir serve --node-id 3 --data-dir D3 --listen 127.0.0.1:9492 --admin-listen 127.0.0.1:9493 \\
      --kafka-listen 127.0.0.1:9494 --amqp-listen 127.0.0.1:9495 \\
      --controller-voters 1@127.0.0.1:9292,2@127.0.0.1:9392,3@127.0.0.1:9492
      A 3-node cluster on one machine: each node its own id, data directory and ports
      (gRPC, HTTP, Kafka, AMQP), and the same voter list (`weir dev cluster` does this for you,
      with these ports).
  weir serve --node-id 4 --data-dir D4 --listen 127.0.0.1:9592 --admin-listen 127.0.0.1:9593 \\
      --kafka-listen 127.0.0.1:9594 --amqp-listen 127.0.0.1:9595 \\
      --controller-voters 1@127.0.0.1:9292,2@127.0.0.1:9392,3@127.0.0.1:9492 --rack r2
      A fourth broker: not in the voter list, so an observer (hosts and leads
      partitions, does not vote), in rack r2 (replicas of a partition are spread
      over racks).
  weir serve --listen 0.0.0.0:9292 --advertise broker1.example.com:9292
      Listen on every interface; tell clients to connect to broker1.example.com.
  weir serve --node-id 1 --listen 0.0.0.0:9292 --advertise weir-1:9292 \\
      --external-listen 0.0.0.0:19292 --external-advertise 127.0.0.1:19292 \\
      --controller-voters 1@weir-1:9292,2@weir-2:9292,3@weir-3:9292
      In a container network (deploy/compose): peers and containers use weir-1:9292,
      the host connects to 127.0.0.1:19292 and is told 127.0.0.1:N9292 for each broker.
  weir serve --kafka-listen 0.0.0.0:9092 --kafka-advertise weir-1:9092 \\
      --kafka-external-listen 0.0.0.0:19092 --kafka-external-advertise 127.0.0.1:19092
      The same for Kafka clients: containers bootstrap from weir-1:9092, the host from
      127.0.0.1:19092, and each is told addresses it can reach.
  weir dev certs --out certs && weir serve --tls-cert certs/node.pem \\
      --tls-key certs/node-key.pem --tls-client-ca certs/ca.pem
      TLS on every listener (gRPC, internal, admin HTTP, Kafka), brokers dialling each
      other over TLS; a client certificate (certs/client.pem) names the client's
      principal. Then: weir topic list --tls-ca certs/ca.pem --tls-cert
      certs/client.pem --tls-key certs/client-key.pem; curl --cacert certs/ca.pem
      https://localhost:9293/health; Kafka clients with security.protocol=SSL.
  weir serve --kafka-tls-cert certs/node.pem --kafka-tls-key certs/node-key.pem
      TLS on the Kafka listeners only (the --kafka-tls-* flags override --tls-* there).
  weir serve --max-connections 200 --max-in-flight-request-bytes 67108864 \\
      --max-consume-streams 50
      A small node: at most 200 client connections, 64 MiB of requests in flight and
      50 Consume streams over all clients (docs/ARCHITECTURE.md § Memory under
      overload has the arithmetic).
  weir serve --config weir.toml
      Settings from a file, e.g.:
        data_dir = \"/var/lib/weir\"
        listen = \"0.0.0.0:9292\"
        admin_listen = \"0.0.0.0:9293\"
        node_id = 1                        # broker_id, its old name, works too
        controller_voters = [\"1@10.0.0.1:9292\", \"2@10.0.0.2:9292\", \"3@10.0.0.3:9292\"]
        # internal_listen = \"10.0.0.1:9294\"
        # advertise = \"broker1.example.com:9292\"
        # rack = \"eu-west-1a\"
        # tls_cert = \"/etc/weir/node.pem\"   # with tls_key, tls_ca, tls_client_ca
        # consumer groups (defaults shown)
        offsets_partitions = 16            # fixed once __consumer_offsets exists
        group_session_timeout_ms = 45000   # a silent member is removed after this
        group_heartbeat_interval_ms = 3000
        offsets_retention_minutes = 10080  # offsets of a group empty this long are deleted
        group_initial_rebalance_delay_ms = 3000  # a new classic group waits this long for more members

Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=weir=debug) to change the level.
SIGTERM or Ctrl-C stops the broker gracefully (exit status 0). A disk under the data
directory that keeps failing writes or fsyncs takes the directory offline: the broker logs
a FATAL line, moves its leaderships away and exits with status 3; restart it once the disk
is healthy and it recovers from what the disk holds.";

/// Run a broker.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ServeArgs {
    /// TOML file with server settings (keys as in weir_server::ServerConfig).
    #[arg(long, env = "WEIR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for topics, logs and metadata [default: ./weir-data].
    #[arg(long, env = "WEIR_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:9292, loopback only].
    #[arg(long, env = "WEIR_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Admin HTTP listen address for /metrics, /health and the web console (/console; no
    /// authentication yet: keep it on loopback), or "off" [default: 127.0.0.1:9293].
    #[arg(long, env = "WEIR_ADMIN_LISTEN", value_name = "ADDR|off")]
    admin_listen: Option<String>,
    /// This node's id in the cluster, 0 or more [default: 0]. Stamped in the data
    /// directory at the first start: a later start with another id is refused.
    #[arg(
        long,
        env = "WEIR_NODE_ID",
        value_name = "ID",
        allow_negative_numbers = true
    )]
    node_id: Option<i32>,
    /// Old name of --node-id (and WEIR_BROKER_ID of WEIR_NODE_ID).
    #[arg(
        long,
        env = "WEIR_BROKER_ID",
        value_name = "ID",
        allow_negative_numbers = true,
        hide = true,
        hide_env = true
    )]
    broker_id: Option<i32>,
    /// The nodes that run the metadata quorum, as ID@HOST:PORT,... with each one's
    /// --internal-listen (else --listen) address; the same list on every node, at most 9
    /// (3 or 5 is usual). A node not listed is an observer broker: it hosts partitions
    /// and serves clients but does not vote [default: none: a single node, its own only
    /// voter].
    #[arg(
        long,
        env = "WEIR_CONTROLLER_VOTERS",
        value_name = "ID@HOST:PORT,...",
        value_delimiter = ','
    )]
    controller_voters: Option<Vec<Voter>>,
    /// Listen address for traffic between nodes (replication, the controller quorum)
    /// [default: share the --listen address].
    #[arg(long, env = "WEIR_INTERNAL_LISTEN", value_name = "ADDR")]
    internal_listen: Option<SocketAddr>,
    /// HOST:PORT clients are told to connect to (DescribeCluster) [default: the --listen
    /// address; when it is 0.0.0.0 or ::, this machine's host name and the listen port].
    #[arg(long, env = "WEIR_ADVERTISE", value_name = "HOST:PORT", value_parser = host_port)]
    advertise: Option<String>,
    /// A second client listener, for clients on another network (e.g. the host of a
    /// container cluster): clients connecting here are told every broker's
    /// --external-advertise address instead of its --advertise one [default: none].
    #[arg(long, env = "WEIR_EXTERNAL_LISTEN", value_name = "ADDR")]
    external_listen: Option<SocketAddr>,
    /// HOST:PORT clients of --external-listen are told to connect to [default: derived
    /// from --external-listen as --advertise is from --listen].
    #[arg(long, env = "WEIR_EXTERNAL_ADVERTISE", value_name = "HOST:PORT", value_parser = host_port)]
    external_advertise: Option<String>,
    /// This broker's rack (or zone): placement puts a partition's replicas in different
    /// racks where it can [default: none].
    #[arg(long, env = "WEIR_RACK", value_name = "RACK")]
    rack: Option<String>,
    /// Kafka protocol listen address, for Kafka clients (kafka-python, confluent-kafka,
    /// kcat, ...), or "none" [default: 127.0.0.1:9092, and [::1]:9092 where the machine
    /// has IPv6].
    #[arg(long, env = "WEIR_KAFKA_LISTEN", value_name = "ADDR|none")]
    kafka_listen: Option<String>,
    /// AMQP 0-9-1 listen address, for RabbitMQ's clients (pika, lapin, ...; docs/amqp.md),
    /// or "none" [default: 127.0.0.1:5672].
    #[arg(long, env = "WEIR_AMQP_LISTEN", value_name = "ADDR|none")]
    amqp_listen: Option<String>,
    /// AMQP over TLS listen address (RabbitMQ's amqps, 5671 by convention), with the
    /// broker's --tls-cert and --tls-key (and --tls-client-ca for client certificates)
    /// [default: none].
    #[arg(long, env = "WEIR_AMQPS_LISTEN", value_name = "ADDR|none")]
    amqps_listen: Option<String>,
    /// HOST:PORT Kafka clients are told to connect to (Kafka's advertised.listeners)
    /// [default: derived from --kafka-listen as --advertise is from --listen].
    #[arg(long, env = "WEIR_KAFKA_ADVERTISE", value_name = "HOST:PORT", value_parser = host_port)]
    kafka_advertise: Option<String>,
    /// A second Kafka listener, for Kafka clients on another network (e.g. the host of a
    /// container cluster): clients connecting here are told every broker's
    /// --kafka-external-advertise address instead of its --kafka-advertise one [default:
    /// none].
    #[arg(long, env = "WEIR_KAFKA_EXTERNAL_LISTEN", value_name = "ADDR")]
    kafka_external_listen: Option<SocketAddr>,
    /// HOST:PORT Kafka clients of --kafka-external-listen are told to connect to
    /// [default: derived from --kafka-external-listen as --advertise is from --listen].
    #[arg(long, env = "WEIR_KAFKA_EXTERNAL_ADVERTISE", value_name = "HOST:PORT", value_parser = host_port)]
    kafka_external_advertise: Option<String>,
    /// TLS on the Kafka listeners with this certificate chain (PEM), instead of
    /// --tls-cert's; reloaded when the file changes or on SIGHUP [default: --tls-cert,
    /// else plaintext].
    #[arg(long, env = "WEIR_KAFKA_TLS_CERT", value_name = "FILE")]
    kafka_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --kafka-tls-cert.
    #[arg(long, env = "WEIR_KAFKA_TLS_KEY", value_name = "FILE")]
    kafka_tls_key: Option<PathBuf>,
    /// CAs (PEM) whose client certificates the Kafka listeners verify when a client
    /// presents one (mutual TLS); the certificate's common name is the principal.
    #[arg(long, env = "WEIR_KAFKA_TLS_CLIENT_CA", value_name = "FILE")]
    kafka_tls_client_ca: Option<PathBuf>,
    /// TLS on every listener (gRPC client, external and internal; admin HTTP; Kafka) with
    /// this certificate chain (PEM; `weir dev certs` makes one for local use); reloaded
    /// when the file changes or on SIGHUP. Brokers then dial each other over TLS too,
    /// presenting it [default: none, plaintext].
    #[arg(long, env = "WEIR_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "WEIR_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// CAs (PEM) whose client certificates the gRPC and Kafka listeners verify when a
    /// client presents one (mutual TLS); the certificate's common name is the principal.
    #[arg(long, env = "WEIR_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// The CA (PEM) that signed the brokers' certificates, trusted when this broker dials
    /// another (or itself) [default: --tls-client-ca].
    #[arg(long, env = "WEIR_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// The admin HTTP listener's own certificate chain (PEM), instead of --tls-cert.
    #[arg(long, env = "WEIR_ADMIN_TLS_CERT", value_name = "FILE")]
    admin_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --admin-tls-cert.
    #[arg(long, env = "WEIR_ADMIN_TLS_KEY", value_name = "FILE")]
    admin_tls_key: Option<PathBuf>,
    /// Create a topic a client produces to or asks metadata of when it does not exist
    /// (Kafka's auto.create.topics.enable) [default: true].
    #[arg(long, env = "WEIR_AUTO_CREATE_TOPICS", value_name = "BOOL")]
    auto_create_topics: Option<bool>,
    /// Partitions of a topic created on first use or without a count (Kafka's
    /// num.partitions) [default: 1].
    #[arg(long, env = "WEIR_NUM_PARTITIONS", value_name = "N")]
    num_partitions: Option<u32>,
    /// Replicas of a topic created on first use or without a replication factor
    /// (Kafka's default.replication.factor) [default: 1].
    #[arg(long, env = "WEIR_DEFAULT_REPLICATION_FACTOR", value_name = "N")]
    default_replication_factor: Option<u32>,
    /// `required`: clients must authenticate (SASL on the Kafka listeners, --user on
    /// gRPC, or a client certificate) before anything else; `optional`: one that does
    /// not is User:ANONYMOUS [default: optional].
    #[arg(long, env = "WEIR_AUTHENTICATION", value_name = "MODE")]
    authentication: Option<weir_server::Authentication>,
    /// `on`: check every request against the cluster's ACLs (`weir acl`), denying what
    /// none allows [default: off].
    #[arg(long, env = "WEIR_AUTHORIZATION", value_name = "on|off", value_parser = on_off)]
    authorization: Option<bool>,
    /// Principals allowed everything when authorization is on, comma-separated
    /// (`User:ops,User:deploy`; Kafka's super.users).
    #[arg(
        long,
        env = "WEIR_SUPER_USERS",
        value_name = "PRINCIPALS",
        value_delimiter = ','
    )]
    super_users: Vec<String>,
    /// A user given WEIR_ADMIN_PASSWORD as its password when the broker starts, and
    /// allowed everything: the first operator's way into a secured cluster.
    #[arg(long, env = "WEIR_ADMIN_USER", value_name = "NAME")]
    admin_user: Option<String>,
    /// The bootstrap admin's password: from the environment only, so it stays out of
    /// process listings.
    #[arg(skip = std::env::var("WEIR_ADMIN_PASSWORD").ok())]
    admin_password: Option<String>,
    /// The length of one window of a client quota's rate, in milliseconds (Kafka's
    /// quota.window.size.seconds) [default: 1000].
    #[arg(long, env = "WEIR_QUOTA_WINDOW_MS", value_name = "MS")]
    quota_window_ms: Option<u64>,
    /// How many windows a client quota's rate is measured over (Kafka's
    /// quota.window.num) [default: 11].
    #[arg(long, env = "WEIR_QUOTA_WINDOWS", value_name = "N")]
    quota_windows: Option<usize>,
    /// Most client connections, over every client listener together (gRPC, external,
    /// Kafka, external Kafka; not --internal-listen): past it a new connection is closed
    /// at once, existing ones are served [default: 512].
    #[arg(long, env = "WEIR_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Most bytes of client requests read and not yet answered, over every connection of
    /// both protocols: past it the broker stops reading requests until answers free room
    /// (clients wait) [default: 134217728, 128 MiB].
    #[arg(long, env = "WEIR_MAX_IN_FLIGHT_REQUEST_BYTES", value_name = "BYTES")]
    max_in_flight_request_bytes: Option<usize>,
    /// Most open gRPC Consume streams: past it a new one is refused with
    /// RESOURCE_EXHAUSTED (retriable) [default: 1024].
    #[arg(long, env = "WEIR_MAX_CONSUME_STREAMS", value_name = "N")]
    max_consume_streams: Option<usize>,
}

/// `on` or `off` (also `true`/`false`).
fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        other => Err(format!("{other:?} is not on or off")),
    }
}

/// Checks a `host:port` flag value, so a bad one is reported against its flag.
fn host_port(value: &str) -> Result<String, String> {
    weir_server::parse_host_port(value)?;
    Ok(value.to_owned())
}

impl ServeArgs {
    /// The typed configuration: file, then env and flags (clap already prefers a flag
    /// to its environment variable).
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        // Whether the file names the AMQP listener: `weir serve` turns it on by default,
        // the library's ServerConfig does not (DEFAULT_AMQP_LISTEN says why).
        let mut file_sets_amqp = false;
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                file_sets_amqp = text
                    .parse::<toml::Table>()
                    .is_ok_and(|t| t.contains_key("amqp_listen"));
                toml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => ServerConfig::default(),
        };
        match self.amqp_listen.as_deref() {
            Some("off" | "none" | "") => config.amqp_listen = None,
            Some(addr) => {
                config.amqp_listen = Some(addr.parse().with_context(|| {
                    format!("--amqp-listen {addr:?} is not an address or \"none\"")
                })?)
            }
            None if !file_sets_amqp => config.amqp_listen = Some(weir_server::DEFAULT_AMQP_LISTEN),
            None => {}
        }
        match self.amqps_listen.as_deref() {
            Some("off" | "none" | "") => config.amqps_listen = None,
            Some(addr) => {
                config.amqps_listen = Some(addr.parse().with_context(|| {
                    format!("--amqps-listen {addr:?} is not an address or \"none\"")
                })?)
            }
            None => {}
        }
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(admin) = self.admin_listen {
            config.admin_listen = match admin.as_str() {
                "off" | "none" | "" => None,
                addr => Some(addr.parse().with_context(|| {
                    format!("--admin-listen {addr:?} is not an address or \"off\"")
                })?),
            };
        }
        match (self.node_id, self.broker_id) {
            (Some(node), Some(broker)) if node != broker => {
                return Err(UsageError(format!(
                    "--node-id {node} and --broker-id (or WEIR_BROKER_ID) {broker} disagree; \
                     --broker-id is the old name of --node-id: give one"
                ))
                .into());
            }
            (Some(id), _) | (None, Some(id)) => config.node_id = id,
            (None, None) => {}
        }
        if let Some(voters) = self.controller_voters {
            config.controller_voters = voters;
        }
        if let Some(internal) = self.internal_listen {
            config.internal_listen = Some(internal);
        }
        if let Some(advertise) = self.advertise {
            config.advertise = Some(advertise);
        }
        if let Some(external) = self.external_listen {
            config.external_listen = Some(external);
        }
        if let Some(external) = self.external_advertise {
            config.external_advertise = Some(external);
        }
        if let Some(rack) = self.rack {
            config.rack = Some(rack);
        }
        if let Some(kafka) = self.kafka_listen {
            config.kafka_listen = match kafka.as_str() {
                "off" | "none" | "" => None,
                addr => Some(addr.parse().with_context(|| {
                    format!("--kafka-listen {addr:?} is not an address or \"none\"")
                })?),
            };
        }
        if let Some(advertise) = self.kafka_advertise {
            config.kafka_advertise = Some(advertise);
        }
        if let Some(external) = self.kafka_external_listen {
            config.kafka_external_listen = Some(external);
        }
        if let Some(external) = self.kafka_external_advertise {
            config.kafka_external_advertise = Some(external);
        }
        if let Some(cert) = self.kafka_tls_cert {
            config.kafka_tls_cert = Some(cert);
        }
        if let Some(key) = self.kafka_tls_key {
            config.kafka_tls_key = Some(key);
        }
        if let Some(ca) = self.kafka_tls_client_ca {
            config.kafka_tls_client_ca = Some(ca);
        }
        for (flag, setting) in [
            (self.tls_cert, &mut config.tls_cert),
            (self.tls_key, &mut config.tls_key),
            (self.tls_client_ca, &mut config.tls_client_ca),
            (self.tls_ca, &mut config.tls_ca),
            (self.admin_tls_cert, &mut config.admin_tls_cert),
            (self.admin_tls_key, &mut config.admin_tls_key),
        ] {
            if flag.is_some() {
                *setting = flag;
            }
        }
        if let Some(on) = self.auto_create_topics {
            config.auto_create_topics = on;
        }
        if let Some(n) = self.num_partitions {
            config.num_partitions = n;
        }
        if let Some(n) = self.default_replication_factor {
            config.default_replication_factor = n;
        }
        if let Some(mode) = self.authentication {
            config.authentication = mode;
        }
        if let Some(on) = self.authorization {
            config.authorization = on;
        }
        if !self.super_users.is_empty() {
            config.super_users = self.super_users;
        }
        if let Some(user) = self.admin_user {
            config.admin_user = Some(user);
        }
        if let Some(password) = self.admin_password {
            config.admin_password = Some(weir_server::Secret(password));
        }
        if let Some(ms) = self.quota_window_ms {
            config.quota_window_ms = ms;
        }
        if let Some(n) = self.quota_windows {
            config.quota_windows = n;
        }
        for (flag, setting) in [
            (self.max_connections, &mut config.max_connections),
            (
                self.max_in_flight_request_bytes,
                &mut config.max_in_flight_request_bytes,
            ),
            (self.max_consume_streams, &mut config.max_consume_streams),
        ] {
            if let Some(value) = flag {
                *setting = value;
            }
        }
        config.validate().map_err(|e| UsageError(e.to_string()))?;
        Ok(config)
    }
}

/// Runs the broker until SIGTERM or Ctrl-C, then shuts down gracefully.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openraft narrates every election and vote at info: its warnings are
                // what an operator needs, but for its replication's, a line per retry
                // (every 100 ms) to an unreachable voter; Weir logs those per peer, rate
                // limited (weir-cluster's peer_log.rs).
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "info,openraft=warn,openraft::replication=error",
                    )
                }),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in log files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        // Listened for before the start, which can take seconds (crate::signals): a
        // signal meanwhile (a supervisor stopping a broker that is still starting) stops
        // the broker cleanly as soon as it has started, instead of killing it half-way,
        // and a second one ends the process at once, for a start that does not finish
        // (the logs then recover as after a crash).
        let mut signals = StopSignals::listen().context("listening for SIGTERM and Ctrl-C")?;
        let mut starting = weir_server::start(config);
        let mut stop_once_started = false;
        let server = loop {
            tokio::select! {
                started = &mut starting => break started?,
                signal = signals.recv() => {
                    if stop_once_started {
                        tracing::warn!("{} received again while starting: exiting now", signal.name());
                        std::process::exit(signal.exit_code());
                    }
                    tracing::info!(
                        "{} received while starting: stopping once started (again to exit now)",
                        signal.name()
                    );
                    stop_once_started = true;
                }
            }
        };
        if stop_once_started {
            return server.shutdown().await;
        }
        server
            .wait(async move {
                let signal = signals.recv().await;
                tracing::info!("{} received", signal.name());
            })
            .await
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `weir serve`'s flags on their own.
    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<ServerConfig> {
        let args = std::iter::once("serve").chain(args.iter().copied());
        Serve::try_parse_from(args)?.args.into_config()
    }

    fn usage_error(args: &[&str]) -> String {
        let err = config(args).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err:#}");
        err.to_string()
    }

    #[test]
    fn no_cluster_flags_is_the_single_node_of_before() {
        let config = config(&[]).unwrap();
        // With the AMQP listener `weir serve` adds to the library's defaults.
        assert_eq!(
            config,
            ServerConfig {
                amqp_listen: Some(weir_server::DEFAULT_AMQP_LISTEN),
                ..ServerConfig::default()
            }
        );
        assert!(config.is_controller_voter());
    }

    #[test]
    fn the_amqp_listener_is_on_by_default_and_off_with_none() {
        assert_eq!(
            config(&["--amqp-listen", "none"]).unwrap().amqp_listen,
            None
        );
        assert_eq!(
            config(&["--amqp-listen", "127.0.0.1:5673"])
                .unwrap()
                .amqp_listen,
            Some("127.0.0.1:5673".parse().unwrap())
        );
        assert!(config(&["--amqp-listen", "nowhere"]).is_err());
    }

    #[test]
    fn cluster_flags_are_parsed_into_the_config() {
        let config = config(&[
            "--node-id",
            "2",
            "--listen",
            "127.0.0.1:9392",
            "--controller-voters",
            "1@127.0.0.1:9292,2@127.0.0.1:9392,3@127.0.0.1:9492",
            "--internal-listen",
            "127.0.0.1:9394",
            "--advertise",
            "broker2.example.com:9392",
            "--rack",
            "r2",
        ])
        .unwrap();
        assert_eq!(config.rack.as_deref(), Some("r2"));
        assert_eq!(config.node_id, 2);
        let voters: Vec<String> = config
            .controller_voters
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            voters,
            ["1@127.0.0.1:9292", "2@127.0.0.1:9392", "3@127.0.0.1:9492"]
        );
        assert_eq!(config.controller_voters[2].id, 3);
        assert_eq!(
            config.internal_listen,
            Some("127.0.0.1:9394".parse().unwrap())
        );
        assert_eq!(
            config.advertise.as_deref(),
            Some("broker2.example.com:9392")
        );
    }

    #[test]
    fn broker_id_still_works_and_must_agree_with_node_id() {
        assert_eq!(config(&["--broker-id", "3"]).unwrap().node_id, 3);
        assert_eq!(
            config(&["--broker-id", "3", "--node-id", "3"])
                .unwrap()
                .node_id,
            3
        );
        let err = usage_error(&["--broker-id", "3", "--node-id", "4"]);
        assert!(err.contains("disagree"), "{err}");
    }

    #[test]
    fn bad_values_name_the_flag_or_the_problem() {
        for (args, expected) in [
            (
                &["--controller-voters", "1@a:1,x@b:2"][..],
                "--controller-voters",
            ),
            (&["--advertise", "nohost"], "--advertise"),
            (&["--internal-listen", "somewhere"], "--internal-listen"),
            (&["--node-id", "one"], "--node-id"),
        ] {
            let err = config(args).unwrap_err();
            let clap = err.downcast_ref::<clap::Error>().expect("a clap error");
            assert_eq!(clap.exit_code(), 2);
            assert!(err.to_string().contains(expected), "{args:?}: {err}");
        }
        let err = usage_error(&["--controller-voters", "1@a:1,1@b:2"]);
        assert!(err.contains("listed twice"), "{err}");
        let err = usage_error(&["--node-id", "-1"]);
        assert!(err.contains("negative"), "{err}");
        let err = usage_error(&["--internal-listen", "127.0.0.1:9292"]);
        assert!(err.contains("own port"), "{err}");
    }

    #[test]
    fn budget_flags_set_the_broker_wide_limits_and_zero_is_refused() {
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.budget(), weir_server::BudgetLimits::default());
        let config = config(&[
            "--max-connections",
            "50",
            "--max-in-flight-request-bytes",
            "8388608",
            "--max-consume-streams",
            "20",
        ])
        .unwrap();
        assert_eq!(config.max_connections, 50);
        assert_eq!(config.max_in_flight_request_bytes, 8 << 20);
        assert_eq!(config.max_consume_streams, 20);
        let err = usage_error(&["--max-consume-streams", "0"]);
        assert!(err.contains("max_consume_streams"), "{err}");
    }

    #[test]
    fn config_files_take_node_id_or_its_old_name_and_flags_override_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        let file = path.to_str().unwrap();

        std::fs::write(
            &path,
            "broker_id = 2\n\
             controller_voters = [\"1@10.0.0.1:9292\", \"2@10.0.0.2:9292\"]\n\
             internal_listen = \"10.0.0.2:9294\"\n\
             advertise = \"broker2:9292\"\n",
        )
        .unwrap();
        let from_file = config(&["--config", file]).unwrap();
        assert_eq!(from_file.node_id, 2);
        assert_eq!(from_file.controller_voters.len(), 2);
        assert_eq!(
            from_file.internal_listen,
            Some("10.0.0.2:9294".parse().unwrap())
        );
        assert_eq!(from_file.advertise.as_deref(), Some("broker2:9292"));

        std::fs::write(&path, "node_id = 1\n").unwrap();
        assert_eq!(config(&["--config", file]).unwrap().node_id, 1);
        assert_eq!(
            config(&["--config", file, "--node-id", "5"])
                .unwrap()
                .node_id,
            5
        );

        std::fs::write(&path, "controller_voters = [\"1@10.0.0.1\"]\n").unwrap();
        let err = config(&["--config", file]).unwrap_err();
        assert!(format!("{err:#}").contains("no port"), "{err:#}");

        std::fs::write(
            &path,
            "controller_voters = [\"1@10.0.0.1:1\", \"1@10.0.0.2:1\"]\n",
        )
        .unwrap();
        let err = config(&["--config", file]).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err:#}");
    }
}
