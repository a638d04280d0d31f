//! The broker's configuration: where data lives, where it listens, its node id, the
//! controller voters, the address it advertises, its rack and its limits. Defaults need nothing
//! set; the `weir serve` command layers a TOML file, environment variables and flags over
//! them, and [`ServerConfig::validate`] checks the result before anything is started.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;
use weir_broker::Listener;
use weir_cluster::LogStorage;
use weir_cluster::share::{ShareConfig, ShareGroupConfig};
use weir_security::tls::TlsFiles;

mod listeners;
#[cfg(test)]
mod tests;
mod voters;

pub use listeners::{Advertised, AdvertisedAddress, ListenerSpec, parse_host_port};
use listeners::{advertised_address, authentication_of, validate_listeners};
pub use voters::Voter;
use voters::validate_voters;

/// Default gRPC listen address: loopback only, so a first `weir serve` is not exposed
/// to the network; set `listen = "0.0.0.0:9292"` to serve other hosts.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9292);
/// Default admin HTTP (`/metrics`, `/health`) address.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9293);
/// Default Kafka protocol listen address: Kafka's port, loopback only (and `::1` too, so
/// `localhost` works whichever address it resolves to first).
pub const DEFAULT_KAFKA_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9092);
/// The AMQP 0-9-1 listener's address under `weir serve` (RabbitMQ's port, loopback
/// only; docs/amqp.md). Not [`ServerConfig::default`]'s: a program that embeds brokers
/// (the tests start dozens in one process) would have them all contend for one port.
pub const DEFAULT_AMQP_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 5672);
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "weir-data";
/// Largest gRPC request accepted (a produce carries up to this many bytes of batches).
/// Requests over it are refused by tonic as their length prefix arrives, before the
/// body is buffered.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
/// How often retention runs over every partition.
pub const DEFAULT_RETENTION_CHECK_INTERVAL_MS: u64 = 30_000;

/// Default number of partitions of `__consumer_offsets`, fixed when it is created on
/// the first start (Kafka uses 50; a small node needs fewer logs).
pub const DEFAULT_OFFSETS_PARTITIONS: u32 = 16;
/// Default session timeout of a group member: removed after this long without a
/// heartbeat (Kafka: 45 s).
pub const DEFAULT_GROUP_SESSION_TIMEOUT_MS: u64 = 45_000;
/// Default interval between a member's heartbeats (Kafka's KIP-848 default is 5 s; a
/// shorter one lets a group settle faster after a member joins, for one small request
/// per member per interval).
pub const DEFAULT_GROUP_HEARTBEAT_INTERVAL_MS: u64 = 3_000;
/// Default offsets retention of empty groups, in minutes: 7 days (Kafka's
/// `offsets.retention.minutes`).
pub const DEFAULT_OFFSETS_RETENTION_MINUTES: u64 = 10_080;
/// Default wait of an empty classic group's first join phase for more members, in
/// milliseconds (Kafka's `group.initial.rebalance.delay.ms`).
pub const DEFAULT_GROUP_INITIAL_REBALANCE_DELAY_MS: u64 = 3_000;
/// Most controller voters accepted. Every metadata change waits for a majority of them,
/// so more voters buy fault tolerance with latency; 3 or 5 is usual (Kafka advises the
/// same for KRaft).
pub const MAX_CONTROLLER_VOTERS: usize = 9;
/// Longest rack name, in bytes (Kubernetes zone labels are far shorter).
pub const MAX_RACK_BYTES: usize = 255;
/// Longest host name accepted in `host:port` values (DNS's limit).
pub const MAX_HOST_CHARS: usize = 253;

/// Everything the broker needs to start. Unknown keys in a config file are refused.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where topics, logs and metadata live.
    pub data_dir: PathBuf,
    /// gRPC address; port 0 picks a free port (see `RunningServer::addr`).
    pub listen: SocketAddr,
    /// Admin HTTP address (`/metrics`, `/health`); `None` turns it off.
    pub admin_listen: Option<SocketAddr>,
    /// This node's id in the cluster (0 or more), stamped in the data directory at the
    /// first start. `broker_id`, its old name, is accepted in files.
    #[serde(alias = "broker_id")]
    pub node_id: i32,
    /// The static set of controller voters, the nodes that run the metadata quorum. Empty
    /// means a single node: this node is its own only voter. A node not in a non-empty
    /// list is an observer broker: it hosts partitions and serves clients, and follows the
    /// voters' metadata without voting.
    pub controller_voters: Vec<Voter>,
    /// Address for traffic between nodes (replication, the controller quorum); `None`:
    /// the gRPC listen address.
    pub internal_listen: Option<SocketAddr>,
    /// `host:port` clients are told to reach this node at (DescribeCluster). `None`: the
    /// listen address, or this machine's host name with the listen port when listening
    /// on all interfaces (0.0.0.0 or ::).
    pub advertise: Option<String>,
    /// A second client listener, for clients on another network (Kafka's EXTERNAL
    /// listener: a container cluster's host, say). Clients that connect to it are told
    /// every broker's `external_advertise` address; those that connect to `listen`, every
    /// broker's `advertise` address. `None`: one client listener.
    pub external_listen: Option<SocketAddr>,
    /// `host:port` clients of the external listener are told to reach this node at.
    /// `None`: derived from `external_listen` as `advertise` is from `listen`.
    pub external_advertise: Option<String>,
    /// The Kafka protocol listener's address, for Kafka clients (kafka-python,
    /// confluent-kafka, kcat, ...). `None`: off. On an IPv4 loopback address the broker
    /// listens on the same port of `::1` too, where the machine has IPv6.
    pub kafka_listen: Option<SocketAddr>,
    /// `host:port` Kafka clients are told to connect to (Metadata, FindCoordinator):
    /// Kafka's `advertised.listeners`. By default derived from `kafka_listen` as
    /// `advertise` is from `listen`.
    pub kafka_advertise: Option<String>,
    /// A second Kafka listener, for Kafka clients on another network (a container
    /// cluster's host, say), as `external_listen` is for gRPC clients: Kafka clients that
    /// connect to it are told every broker's `kafka_external_advertise` address (its
    /// `kafka_advertise` one if it has no external listener). `None`: one Kafka listener.
    pub kafka_external_listen: Option<SocketAddr>,
    /// `host:port` Kafka clients of the external Kafka listener are told to reach this
    /// node at. `None`: derived from `kafka_external_listen` as `advertise` is from
    /// `listen`.
    pub kafka_external_advertise: Option<String>,
    /// The AMQP 0-9-1 listener's address, for RabbitMQ's clients (pika, lapin, ...);
    /// `None` (or `"none"` in a file): off. Off in [`ServerConfig::default`]; `weir
    /// serve` sets [`DEFAULT_AMQP_LISTEN`] unless a file or flag says otherwise.
    #[serde(deserialize_with = "listen_or_none")]
    pub amqp_listen: Option<SocketAddr>,
    /// The AMQP listener over TLS (RabbitMQ's `amqps`, port 5671 by convention), with the
    /// broker's TLS files (`tls_cert`, `tls_key`, `tls_client_ca` for client
    /// certificates); `None`: off (the default). Needs `tls_cert`.
    #[serde(default, deserialize_with = "listen_or_none")]
    pub amqps_listen: Option<SocketAddr>,
    /// TLS on the Kafka listeners, with this certificate chain (PEM); `None`: plaintext.
    /// Reloaded when the file changes or on SIGHUP.
    pub kafka_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `kafka_tls_cert`; required with it.
    pub kafka_tls_key: Option<PathBuf>,
    /// CAs (PEM) whose client certificates the Kafka listeners verify when a client
    /// presents one (mutual TLS); the certificate's subject names the principal. Needs
    /// `kafka_tls_cert`.
    pub kafka_tls_client_ca: Option<PathBuf>,
    /// TLS on every listener (gRPC client, external and internal; admin HTTP; Kafka), with
    /// this certificate chain (PEM); `None`: plaintext. `kafka_tls_*` and `admin_tls_*`
    /// override it for their listeners. Reloaded when the file changes or on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`; required with it.
    pub tls_key: Option<PathBuf>,
    /// CAs (PEM) whose client certificates the gRPC and Kafka listeners verify when a
    /// client presents one (mutual TLS); the certificate's subject names the principal.
    /// Needs `tls_cert`.
    pub tls_client_ca: Option<PathBuf>,
    /// The CA (PEM) that signed the brokers' certificates, which a broker trusts when it
    /// dials another (replication, the controller quorum) or its own client listener.
    /// `None`: `tls_client_ca`. Needs `tls_cert`.
    pub tls_ca: Option<PathBuf>,
    /// The admin HTTP listener's own certificate chain (PEM), instead of `tls_cert`.
    pub admin_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `admin_tls_cert`; required with it.
    pub admin_tls_key: Option<PathBuf>,
    /// This broker's rack (or availability zone), registered with the controller:
    /// placement spreads a partition's replicas over racks. `None`: no rack.
    pub rack: Option<String>,
    /// Largest gRPC request accepted, in bytes.
    pub max_request_bytes: usize,
    /// Broker-wide memory budget (weir-broker's `budget`; docs/ARCHITECTURE.md § Memory
    /// under overload). Client connections over every client listener together (gRPC
    /// client and external, Kafka and external Kafka; not the internal listener): at
    /// the cap a new connection is closed at once.
    pub max_connections: usize,
    /// Bytes of client requests read and not yet answered, over every connection and
    /// both protocols: past it, connections stop being read until answers free room.
    pub max_in_flight_request_bytes: usize,
    /// Open gRPC Consume streams: at the cap a new one is refused (RESOURCE_EXHAUSTED).
    pub max_consume_streams: usize,
    /// How often retention and compaction run, in milliseconds.
    pub retention_check_interval_ms: u64,
    /// Partitions of `__consumer_offsets` when it is first created (later changes are
    /// ignored: the partition count picks each group's coordinator).
    pub offsets_partitions: u32,
    /// Session timeout of group members that do not ask for one, in milliseconds.
    pub group_session_timeout_ms: u64,
    /// Interval between a group member's heartbeats, in milliseconds.
    pub group_heartbeat_interval_ms: u64,
    /// Minutes a consumer group may stay without members (and commits) before its
    /// committed offsets and the group are deleted (Kafka's `offsets.retention.minutes`).
    pub offsets_retention_minutes: u64,
    /// How long the first join phase of an empty classic group (Kafka's JoinGroup
    /// protocol) waits for more members before it assigns, in milliseconds (Kafka's
    /// `group.initial.rebalance.delay.ms`); 0 assigns at once.
    pub group_initial_rebalance_delay_ms: u64,
    /// How long a share group's member holds a record it acquired before the record goes
    /// to another member, in milliseconds (Kafka's `share.record.lock.duration.ms`).
    pub share_record_lock_duration_ms: u64,
    /// Deliveries of a record after which a share group archives it instead of delivering
    /// it again (Kafka's `share.delivery.count.limit`).
    pub share_delivery_count_limit: u16,
    /// Create a topic that a client produces to, or asks metadata of, when it does not
    /// exist (Kafka's `auto.create.topics.enable`; on by default, as in Kafka, for the
    /// one-command start; the cluster manifests turn it off).
    pub auto_create_topics: bool,
    /// Partitions of a topic created on first use or without a count (Kafka's
    /// `num.partitions`).
    pub num_partitions: u32,
    /// Replicas of a topic created on first use or without a replication factor
    /// (Kafka's `default.replication.factor`).
    pub default_replication_factor: u32,
    /// Clients must authenticate (SASL on the Kafka listeners, a user and password on
    /// gRPC and the admin listener, or a client certificate) before anything else:
    /// `required`. `optional` (the default): a client that does not is anonymous.
    pub authentication: Authentication,
    /// Check every request against the cluster's ACLs, denying what none allows
    /// (`docs/security.md`). Off by default for the one-command start.
    pub authorization: bool,
    /// Principals allowed everything when authorization is on (`User:NAME`; Kafka's
    /// `super.users`). The bootstrap admin is one without being listed.
    pub super_users: Vec<String>,
    /// A user created (or given this password) when the broker starts, and made a super
    /// user: the first operator's way in. Both or neither.
    pub admin_user: Option<String>,
    /// The bootstrap admin's password (`WEIR_ADMIN_PASSWORD`). Never logged.
    pub admin_password: Option<Secret>,
    /// The length of one window of a client quota's rate, in milliseconds (Kafka's
    /// `quota.window.size.seconds`).
    pub quota_window_ms: u64,
    /// How many windows a client quota's rate is measured over, 2 or more (Kafka's
    /// `quota.window.num`).
    pub quota_windows: usize,
    /// What partition logs read and write their files through: the file system. Not a
    /// setting (no file key, flag or variable): tests put a
    /// `weir_log::storage::FaultyStorage` under a whole broker with it.
    #[serde(skip)]
    pub log_storage: LogStorage,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN,
            admin_listen: Some(DEFAULT_ADMIN_LISTEN),
            node_id: 0,
            controller_voters: Vec::new(),
            internal_listen: None,
            advertise: None,
            external_listen: None,
            external_advertise: None,
            kafka_listen: Some(DEFAULT_KAFKA_LISTEN),
            kafka_advertise: None,
            kafka_external_listen: None,
            kafka_external_advertise: None,
            amqp_listen: None,
            amqps_listen: None,
            kafka_tls_cert: None,
            kafka_tls_key: None,
            kafka_tls_client_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_ca: None,
            admin_tls_cert: None,
            admin_tls_key: None,
            rack: None,
            max_request_bytes: MAX_REQUEST_BYTES,
            max_connections: weir_broker::budget::DEFAULT_MAX_CONNECTIONS,
            max_in_flight_request_bytes: weir_broker::budget::DEFAULT_MAX_IN_FLIGHT_REQUEST_BYTES,
            max_consume_streams: weir_broker::budget::DEFAULT_MAX_CONSUME_STREAMS,
            retention_check_interval_ms: DEFAULT_RETENTION_CHECK_INTERVAL_MS,
            offsets_partitions: DEFAULT_OFFSETS_PARTITIONS,
            group_session_timeout_ms: DEFAULT_GROUP_SESSION_TIMEOUT_MS,
            group_heartbeat_interval_ms: DEFAULT_GROUP_HEARTBEAT_INTERVAL_MS,
            offsets_retention_minutes: DEFAULT_OFFSETS_RETENTION_MINUTES,
            group_initial_rebalance_delay_ms: DEFAULT_GROUP_INITIAL_REBALANCE_DELAY_MS,
            share_record_lock_duration_ms: ShareConfig::default().lock_duration_ms,
            share_delivery_count_limit: ShareConfig::default().delivery_count_limit,
            auto_create_topics: true,
            authentication: Authentication::Optional,
            authorization: false,
            super_users: Vec::new(),
            admin_user: None,
            admin_password: None,
            quota_window_ms: weir_broker::quotas::QUOTA_WINDOW.as_millis() as u64,
            quota_windows: weir_broker::quotas::QUOTA_WINDOWS,
            num_partitions: 1,
            default_replication_factor: 1,
            log_storage: LogStorage::default(),
        }
    }
}

impl ServerConfig {
    /// Checks what serde and clap cannot: the node id, the voter list as a whole, the
    /// advertised address, and that the internal listener has its own address.
    /// The share coordinator's settings.
    pub fn share_groups(&self) -> ShareGroupConfig {
        let defaults = ShareGroupConfig::default();
        ShareGroupConfig {
            partition: ShareConfig {
                lock_duration_ms: self.share_record_lock_duration_ms,
                delivery_count_limit: self.share_delivery_count_limit,
                ..defaults.partition
            },
            ..defaults
        }
    }

    /// The broker-wide budget's caps.
    pub fn budget(&self) -> weir_broker::budget::BudgetLimits {
        weir_broker::budget::BudgetLimits {
            max_connections: self.max_connections,
            max_in_flight_request_bytes: self.max_in_flight_request_bytes,
            max_consume_streams: self.max_consume_streams,
        }
    }

    pub fn validate(&self) -> Result<(), ServerConfigError> {
        self.budget()
            .validate()
            .map_err(ServerConfigError::Budget)?;
        if self.num_partitions == 0 || self.num_partitions > weir_cluster::MAX_PARTITIONS_PER_TOPIC
        {
            return Err(ServerConfigError::TopicDefault(format!(
                "num_partitions is {}; it must be in 1..={}",
                self.num_partitions,
                weir_cluster::MAX_PARTITIONS_PER_TOPIC
            )));
        }
        if self.default_replication_factor == 0 {
            return Err(ServerConfigError::TopicDefault(
                "default_replication_factor must be at least 1".into(),
            ));
        }
        if self.node_id < 0 {
            return Err(ServerConfigError::NegativeNodeId(self.node_id));
        }
        self.share_groups()
            .validate()
            .map_err(|e| ServerConfigError::ShareGroups(e.to_string()))?;
        validate_voters(&self.controller_voters)?;
        if let Some(rack) = &self.rack
            && (rack.is_empty()
                || rack.len() > MAX_RACK_BYTES
                || rack.chars().any(char::is_control))
        {
            return Err(ServerConfigError::BadRack(rack.clone()));
        }
        validate_listeners(&self.listeners()?)?;
        self.kafka_tls()?;
        self.admin_tls()?;
        self.peer_tls()?;
        if self.quota_window_ms == 0 || self.quota_windows < 2 {
            return Err(ServerConfigError::BadQuotaWindows);
        }
        let secured = self.authentication == Authentication::Required || self.authorization;
        if secured && self.tls()?.is_none_or(|files| files.client_ca.is_none()) {
            return Err(ServerConfigError::SecuredWithoutBrokerIdentity);
        }
        if self.admin_user.is_some() != self.admin_password.is_some() {
            return Err(ServerConfigError::AdminIncomplete);
        }
        if let Some(user) = &self.admin_user {
            weir_cluster::security::validate_user_name(user).map_err(|reason| {
                ServerConfigError::BadSuperUser {
                    value: user.clone(),
                    reason,
                }
            })?;
        }
        for principal in &self.super_users {
            let name = principal
                .strip_prefix(weir_cluster::security::USER_PRINCIPAL_PREFIX)
                .ok_or_else(|| ServerConfigError::BadSuperUser {
                    value: principal.clone(),
                    reason: "a super user is named User:NAME".into(),
                })?;
            weir_cluster::security::validate_user_name(name).map_err(|reason| {
                ServerConfigError::BadSuperUser {
                    value: principal.clone(),
                    reason,
                }
            })?;
        }
        Ok(())
    }

    /// Every listener this broker serves, as data, from the `*_listen`, `*_advertise` and
    /// `*tls_*` settings: the gRPC client listener, the internal one if it has its own
    /// address, the external gRPC one, the admin HTTP one, the Kafka one and the external
    /// Kafka one, each where configured. An error for an advertised address given without
    /// its listener, or TLS files given without the others they need.
    pub fn listeners(&self) -> Result<Vec<ListenerSpec>, ServerConfigError> {
        if self.external_advertise.is_some() && self.external_listen.is_none() {
            return Err(ServerConfigError::ExternalAdvertiseAlone);
        }
        if self.kafka_external_advertise.is_some() && self.kafka_external_listen.is_none() {
            return Err(ServerConfigError::KafkaExternalAdvertiseAlone);
        }
        let grpc_tls = self.tls()?;
        let kafka_tls = self.kafka_tls()?;
        let admin_tls = self.admin_tls()?;
        let spec = |listener, bind, advertised, tls: &Option<TlsFiles>, setting| ListenerSpec {
            listener,
            bind,
            advertised,
            authentication: authentication_of(listener, tls.as_ref()),
            tls: tls.clone(),
            // Kafka clients dial `localhost:9092` by default.
            also_ipv6_loopback: listener == Listener::KAFKA,
            setting,
        };
        let mut listeners = vec![spec(
            Listener::GRPC,
            self.listen,
            Advertised::Given(self.advertise.clone()),
            &grpc_tls,
            "the gRPC listen address",
        )];
        listeners.extend(self.internal_listen.map(|bind| {
            spec(
                Listener::GRPC_INTERNAL,
                bind,
                Advertised::BoundOrClient,
                &grpc_tls,
                "the internal listen address",
            )
        }));
        listeners.extend(self.external_listen.map(|bind| {
            spec(
                Listener::GRPC_EXTERNAL,
                bind,
                Advertised::Given(self.external_advertise.clone()),
                &grpc_tls,
                "the external listen address",
            )
        }));
        listeners.extend(self.admin_listen.map(|bind| {
            spec(
                Listener::HTTP,
                bind,
                Advertised::Not,
                &admin_tls,
                "the admin HTTP listen address",
            )
        }));
        listeners.extend(self.kafka_listen.map(|bind| {
            spec(
                Listener::KAFKA,
                bind,
                Advertised::Given(self.kafka_advertise.clone()),
                &kafka_tls,
                "the Kafka listen address",
            )
        }));
        listeners.extend(self.kafka_external_listen.map(|bind| {
            spec(
                Listener::KAFKA_EXTERNAL,
                bind,
                Advertised::Given(self.kafka_external_advertise.clone()),
                &kafka_tls,
                "the external Kafka listen address",
            )
        }));
        // Plaintext (RabbitMQ's 5672); its TLS twin is the amqps listener below.
        // Advertised under their names like any listener.
        listeners.extend(self.amqp_listen.map(|bind| {
            spec(
                weir_amqp::LISTENER,
                bind,
                Advertised::Given(None),
                &None,
                "the AMQP listen address",
            )
        }));
        if let Some(bind) = self.amqps_listen {
            if grpc_tls.is_none() {
                return Err(ServerConfigError::AmqpsWithoutTls);
            }
            listeners.push(spec(
                weir_amqp::TLS_LISTENER,
                bind,
                Advertised::Given(None),
                &grpc_tls,
                "the AMQPS listen address",
            ));
        }
        Ok(listeners)
    }

    /// The Kafka listeners' TLS files, if TLS is on: `kafka_tls_*`, else `tls_*`; an
    /// error if a file is named without the others it needs.
    pub fn kafka_tls(&self) -> Result<Option<TlsFiles>, ServerConfigError> {
        match (&self.kafka_tls_cert, &self.kafka_tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.kafka_tls_client_ca.clone(),
            })),
            (None, None) if self.kafka_tls_client_ca.is_none() => self.tls(),
            _ => Err(ServerConfigError::KafkaTlsIncomplete),
        }
    }

    /// The gRPC listeners' TLS files (`tls_*`), if TLS is on; an error if a file is named
    /// without the others it needs.
    pub fn tls(&self) -> Result<Option<TlsFiles>, ServerConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            })),
            (None, None) if self.tls_client_ca.is_none() && self.tls_ca.is_none() => Ok(None),
            _ => Err(ServerConfigError::TlsIncomplete),
        }
    }

    /// The admin HTTP listener's TLS files, if TLS is on: `admin_tls_*`, else `tls_*`.
    /// It asks for no client certificate: nothing on it reads a principal.
    pub fn admin_tls(&self) -> Result<Option<TlsFiles>, ServerConfigError> {
        let files = match (&self.admin_tls_cert, &self.admin_tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: None,
            }),
            (None, None) => self.tls()?,
            _ => return Err(ServerConfigError::AdminTlsIncomplete),
        };
        Ok(files.map(|files| TlsFiles {
            client_ca: None,
            ..files
        }))
    }

    /// How this broker dials other brokers and its own client listener, if TLS is on:
    /// trusting `tls_ca` (else `tls_client_ca`) and presenting its own certificate.
    pub fn peer_tls(&self) -> Result<Option<PeerTlsFiles>, ServerConfigError> {
        let Some(files) = self.tls()? else {
            return Ok(None);
        };
        let ca = self
            .tls_ca
            .clone()
            .or(files.client_ca)
            .ok_or(ServerConfigError::TlsCaMissing)?;
        Ok(Some(PeerTlsFiles {
            ca,
            cert: files.cert,
            key: files.key,
        }))
    }

    /// Whether this node runs in the controller quorum: it is listed, or the list is
    /// empty (a single node is its own only voter).
    pub fn is_controller_voter(&self) -> bool {
        self.controller_voters.is_empty()
            || self.controller_voters.iter().any(|v| v.id == self.node_id)
    }

    /// The `host:port` clients are told to use, given the bound gRPC address: the
    /// `advertise` setting; else the bound address if its IP is specified; else (bound
    /// to 0.0.0.0 or ::, which no client can dial) this machine's host name with the
    /// bound port, as Kafka defaults `advertised.listeners`.
    pub fn advertised_address(&self, bound: SocketAddr) -> AdvertisedAddress {
        advertised_address(self.advertise.as_deref(), bound)
    }
}

/// A setting that cannot be used; the message names the value and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerConfigError {
    #[error("{0}")]
    Budget(String),
    #[error("{0}")]
    TopicDefault(String),
    #[error("{0}")]
    ShareGroups(String),
    #[error("node id {0} is negative; node ids are 0 or more")]
    NegativeNodeId(i32),
    #[error("rack {0:?} is empty, longer than {MAX_RACK_BYTES} bytes, or has control characters")]
    BadRack(String),
    #[error("controller voter {spec:?} is not ID@HOST:PORT (e.g. 1@10.0.0.1:9292): {reason}")]
    BadVoter { spec: String, reason: String },
    #[error("controller voter id {id} is listed twice ({first} and {second})")]
    DuplicateVoterId {
        id: i32,
        first: String,
        second: String,
    },
    #[error("controller voters {first} and {second} have the same address")]
    DuplicateVoterAddr { first: String, second: String },
    #[error("{count} controller voters given; at most {max} are supported (3 or 5 is usual)")]
    TooManyVoters { count: usize, max: usize },
    #[error(
        "advertised address {value:?} is not HOST:PORT (e.g. broker1.example.com:9292): {reason}"
    )]
    BadAdvertise { value: String, reason: String },
    #[error("{addr} is both {first} and {second}; give each listener its own port")]
    ListenClash {
        addr: SocketAddr,
        first: &'static str,
        second: &'static str,
    },
    #[error(
        "an external advertised address needs an external listener: set external_listen \
         (--external-listen) too"
    )]
    ExternalAdvertiseAlone,
    #[error(
        "the AMQPS listener (amqps_listen, --amqps-listen) serves TLS with the broker's \
         certificate: set tls_cert (--tls-cert) and tls_key (--tls-key) too"
    )]
    AmqpsWithoutTls,
    #[error(
        "an external Kafka advertised address needs an external Kafka listener: set \
         kafka_external_listen (--kafka-external-listen) too"
    )]
    KafkaExternalAdvertiseAlone,
    #[error(
        "TLS on the Kafka listeners needs both kafka_tls_cert (--kafka-tls-cert) and \
         kafka_tls_key (--kafka-tls-key); kafka_tls_client_ca (--kafka-tls-client-ca) needs \
         them too"
    )]
    KafkaTlsIncomplete,
    #[error(
        "TLS needs both tls_cert (--tls-cert) and tls_key (--tls-key); tls_client_ca \
         (--tls-client-ca) and tls_ca (--tls-ca) need them too"
    )]
    TlsIncomplete,
    #[error(
        "TLS on the admin HTTP listener needs both admin_tls_cert (--admin-tls-cert) and \
         admin_tls_key (--admin-tls-key)"
    )]
    AdminTlsIncomplete,
    #[error(
        "with TLS on, a broker dials other brokers (and its own client listener) over TLS and \
         must trust the CA that signed their certificates: set tls_ca (--tls-ca), or \
         tls_client_ca (--tls-client-ca) if that CA signs the clients' too"
    )]
    TlsCaMissing,
    #[error(
        "a bootstrap admin needs both admin_user (WEIR_ADMIN_USER) and admin_password \
         (WEIR_ADMIN_PASSWORD)"
    )]
    AdminIncomplete,
    #[error(
        "with authentication required or authorization on, brokers prove who they are to \
         each other with their certificates: set tls_cert, tls_key and tls_client_ca \
         (--tls-cert, --tls-key, --tls-client-ca; `weir dev certs` makes them)"
    )]
    SecuredWithoutBrokerIdentity,
    #[error("client quotas need quota_window_ms of 1 or more and quota_windows of 2 or more")]
    BadQuotaWindows,
    #[error("super user {value:?}: {reason}")]
    BadSuperUser { value: String, reason: String },
}

/// A listen address from a file: an address, or `"none"`/`"off"` for no listener.
fn listen_or_none<'de, D>(deserializer: D) -> Result<Option<SocketAddr>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    match text.as_str() {
        "none" | "off" | "" => Ok(None),
        addr => addr.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("{addr:?} is not an address or \"none\""))
        }),
    }
}

/// Whether clients must authenticate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Authentication {
    /// A client that does not authenticate is anonymous (`User:ANONYMOUS`).
    #[default]
    Optional,
    /// Nothing but ApiVersions and the authentication itself before a client has.
    Required,
}

impl std::str::FromStr for Authentication {
    type Err = String;

    fn from_str(value: &str) -> Result<Authentication, String> {
        match value {
            "optional" => Ok(Authentication::Optional),
            "required" => Ok(Authentication::Required),
            other => Err(format!("{other:?} is not optional or required")),
        }
    }
}

/// A secret from configuration: usable, never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl ServerConfig {
    /// The core's security settings: the bootstrap admin is a super user, and so is the
    /// principal of this broker's own certificate (`node_principal`), which every broker
    /// of the cluster presents when it calls another (replication, the controller, share
    /// group forwards, dead-letter copies).
    pub fn security(&self, node_principal: Option<&str>) -> weir_broker::SecurityConfig {
        let mut super_users = self.super_users.clone();
        if let Some(admin) = &self.admin_user {
            super_users.push(format!("User:{admin}"));
        }
        if let Some(node) = node_principal {
            super_users.push(format!("User:{node}"));
        }
        weir_broker::SecurityConfig {
            require_authentication: self.authentication == Authentication::Required,
            authorization: self.authorization,
            super_users,
            quota_windows: weir_broker::quotas::QuotaWindows {
                length: std::time::Duration::from_millis(self.quota_window_ms),
                count: self.quota_windows,
            },
        }
    }
}

/// What a broker dials other brokers with when TLS is on (see
/// [`ServerConfig::peer_tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTlsFiles {
    /// The CAs (PEM) peers' certificates must chain to.
    pub ca: PathBuf,
    /// This broker's certificate chain, presented to peers that ask for one.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}
