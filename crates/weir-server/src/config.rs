//! The broker's configuration: where data lives, where it listens, its node id, the
//! controller voters, the address it advertises, its rack and its limits. Defaults need nothing
//! set; the `weir serve` command layers a TOML file, environment variables and flags over
//! them, and [`ServerConfig::validate`] checks the result before anything is started.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;
use weir_broker::{Listener, Protocol};
use weir_cluster::LogStorage;
use weir_cluster::share::{ShareConfig, ShareGroupConfig};
use weir_security::tls::TlsFiles;

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
        // Plaintext for now (docs/amqp.md); advertised under its name like any listener.
        listeners.extend(self.amqp_listen.map(|bind| {
            spec(
                weir_amqp::LISTENER,
                bind,
                Advertised::Given(None),
                &None,
                "the AMQP listen address",
            )
        }));
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

/// One listener the broker serves, as data: what [`ServerConfig::listeners`] makes of
/// the settings, and what `weir_server::start` binds and serves through its protocol's
/// registration (`docs/ARCHITECTURE.md` § How to add a listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Its name (the key of its address in the broker's advertised endpoints) and
    /// protocol.
    pub listener: Listener,
    /// The address it binds; port 0 picks a free port.
    pub bind: SocketAddr,
    /// What clients are told to reach it at.
    pub advertised: Advertised,
    /// TLS on its connections; `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// On an IPv4 loopback address, listen on the same port of `::1` too, so
    /// `localhost` reaches it whichever address it resolves to first.
    pub also_ipv6_loopback: bool,
    /// The ways its clients may prove who they are (SASL mechanism names and the
    /// like; `mTLS` where TLS verifies client certificates).
    pub authentication: Vec<&'static str>,
    /// What it is called in messages ("the Kafka listen address").
    pub setting: &'static str,
}

impl ListenerSpec {
    /// The `host:port` its clients are told, given the address it bound and the client
    /// listener's advertised address; `None` for a listener not advertised.
    pub fn advertised_address(&self, bound: SocketAddr, client: &str) -> Option<String> {
        match &self.advertised {
            Advertised::Not => None,
            Advertised::Given(setting) => {
                Some(advertised_address(setting.as_deref(), bound).to_string())
            }
            Advertised::BoundOrClient if bound.ip().is_unspecified() => Some(client.to_owned()),
            Advertised::BoundOrClient => Some(bound.to_string()),
        }
    }
}

/// What a listener's clients are told to reach it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advertised {
    /// Nothing: it is not in the broker's advertised endpoints (the admin HTTP
    /// listener).
    Not,
    /// This `host:port` (an `*_advertise` setting), or `None`: derived from the bound
    /// address (see [`ServerConfig::advertised_address`]).
    Given(Option<String>),
    /// Its bound address, or, bound to all interfaces, the client listener's advertised
    /// address (the internal listener, which other brokers dial).
    BoundOrClient,
}

/// The ways clients of `listener` authenticate: its protocol's, and a client
/// certificate where its TLS verifies them.
fn authentication_of(listener: Listener, tls: Option<&TlsFiles>) -> Vec<&'static str> {
    let mut mechanisms: Vec<&'static str> = match listener {
        Listener::GRPC_INTERNAL => Vec::new(),
        Listener { protocol, .. } if protocol == Protocol::KAFKA => {
            vec!["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
        }
        Listener { protocol, .. } if protocol == weir_amqp::PROTOCOL => vec!["PLAIN", "AMQPLAIN"],
        // A user's password (HTTP basic) or an API token (bearer).
        _ => vec!["basic", "bearer"],
    };
    if tls.is_some_and(|files| files.client_ca.is_some()) {
        mechanisms.push("mTLS");
    }
    mechanisms
}

/// The checks that concern listeners together: every advertised address is `host:port`,
/// and no two listeners bind the same fixed address.
fn validate_listeners(listeners: &[ListenerSpec]) -> Result<(), ServerConfigError> {
    for spec in listeners {
        if let Advertised::Given(Some(advertise)) = &spec.advertised {
            parse_host_port(advertise).map_err(|reason| ServerConfigError::BadAdvertise {
                value: advertise.clone(),
                reason,
            })?;
        }
    }
    // Port 0 picks a free port per listener, so only fixed ports can clash.
    let fixed: Vec<&ListenerSpec> = listeners.iter().filter(|s| s.bind.port() != 0).collect();
    for (i, first) in fixed.iter().enumerate() {
        if let Some(second) = fixed[i + 1..].iter().find(|other| other.bind == first.bind) {
            return Err(ServerConfigError::ListenClash {
                addr: first.bind,
                first: first.setting,
                second: second.setting,
            });
        }
    }
    Ok(())
}

/// `setting` if given, else what a client can dial of `bound` (see
/// [`ServerConfig::advertised_address`]).
fn advertised_address(setting: Option<&str>, bound: SocketAddr) -> AdvertisedAddress {
    if let Some((host, port)) = setting.and_then(|a| parse_host_port(a).ok()) {
        return AdvertisedAddress {
            host: host.to_owned(),
            port,
        };
    }
    let host = if bound.ip().is_unspecified() {
        match hostname() {
            Ok(name) => name,
            Err(error) => {
                tracing::warn!(%error, "cannot read this machine's host name; advertising localhost (set --advertise)");
                "localhost".to_owned()
            }
        }
    } else {
        bound.ip().to_string()
    };
    AdvertisedAddress {
        host,
        port: bound.port(),
    }
}

/// Where clients are told to reach this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedAddress {
    /// A host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for AdvertisedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One controller voter: `id@host:port`, the address its internal listener is reached at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Voter {
    /// The voter's node id (0 or more).
    pub id: i32,
    /// `host:port`; IPv6 addresses in brackets.
    pub addr: String,
}

impl FromStr for Voter {
    type Err = ServerConfigError;

    fn from_str(spec: &str) -> Result<Voter, ServerConfigError> {
        let bad = |reason: String| ServerConfigError::BadVoter {
            spec: spec.to_owned(),
            reason,
        };
        let spec = spec.trim();
        let Some((id, addr)) = spec.split_once('@') else {
            return Err(bad("no '@' between the id and the address".into()));
        };
        let id: i32 = id
            .parse()
            .map_err(|_| bad(format!("the id {id:?} is not a number")))?;
        if id < 0 {
            return Err(bad(format!(
                "the id {id} is negative; node ids are 0 or more"
            )));
        }
        parse_host_port(addr).map_err(bad)?;
        Ok(Voter {
            id,
            addr: addr.to_owned(),
        })
    }
}

impl TryFrom<String> for Voter {
    type Error = ServerConfigError;

    fn try_from(spec: String) -> Result<Voter, ServerConfigError> {
        spec.parse()
    }
}

impl fmt::Display for Voter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr)
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

/// Unique ids, unique addresses, at most [`MAX_CONTROLLER_VOTERS`], each well formed
/// (a `Voter` built in code has not been through `FromStr`).
fn validate_voters(voters: &[Voter]) -> Result<(), ServerConfigError> {
    if voters.len() > MAX_CONTROLLER_VOTERS {
        return Err(ServerConfigError::TooManyVoters {
            count: voters.len(),
            max: MAX_CONTROLLER_VOTERS,
        });
    }
    let mut ids = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for voter in voters {
        let checked: Voter = voter.to_string().parse()?;
        if let Some(first) = ids.insert(voter.id, voter) {
            return Err(ServerConfigError::DuplicateVoterId {
                id: voter.id,
                first: first.to_string(),
                second: voter.to_string(),
            });
        }
        // Host names compare case-insensitively.
        if let Some(first) = addrs.insert(checked.addr.to_ascii_lowercase(), voter) {
            return Err(ServerConfigError::DuplicateVoterAddr {
                first: first.to_string(),
                second: voter.to_string(),
            });
        }
    }
    Ok(())
}

/// Splits `host:port` (`[v6]:port` for IPv6) and checks both parts: a host name of
/// letters, digits, '-', '.' and '_', or an IP address; a port from 1 to 65535 (port 0
/// cannot be dialled).
pub fn parse_host_port(value: &str) -> Result<(&str, u16), String> {
    if value.contains("://") {
        return Err("give HOST:PORT without a scheme such as http://".into());
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((host, port)) = rest.split_once("]:") else {
            return Err("an IPv6 address in brackets must be followed by :PORT".into());
        };
        let ip = host
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        if ip.is_unspecified() {
            return Err("[::] cannot be dialled; give an address peers can reach".into());
        }
        (host, port)
    } else {
        let Some((host, port)) = value.rsplit_once(':') else {
            return Err("no port".into());
        };
        if host.contains(':') {
            return Err("an IPv6 address needs brackets, as in [::1]:9292".into());
        }
        if host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_unspecified())
        {
            return Err("0.0.0.0 cannot be dialled; give an address peers can reach".into());
        }
        if host.is_empty() {
            return Err("no host".into());
        }
        if host.len() > MAX_HOST_CHARS {
            return Err(format!(
                "the host is {} characters; the limit is {MAX_HOST_CHARS}",
                host.len()
            ));
        }
        if let Some(ch) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(format!("the host {host:?} has the character {ch:?}"));
        }
        (host, port)
    };
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be dialled; give the port peers connect to".into()),
        Ok(port) => Ok((host, port)),
        Err(_) => Err(format!("the port {port:?} is not a number from 1 to 65535")),
    }
}

/// This machine's host name (`gethostname`).
#[cfg(unix)]
fn hostname() -> std::io::Result<String> {
    // POSIX caps host names at 255 bytes; one more for the terminator.
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, the length passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A name that fills the buffer may come back without its terminator.
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok("") => Err(std::io::Error::other("the host name is empty")),
        Ok(name) => Ok(name.to_owned()),
        Err(_) => Err(std::io::Error::other("the host name is not UTF-8")),
    }
}

#[cfg(not(unix))]
fn hostname() -> std::io::Result<String> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no gethostname on this platform",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What clients of `listener` are told when it bound `bound`.
    fn advertised_of(config: &ServerConfig, listener: Listener, bound: &str) -> String {
        let specs = config.listeners().unwrap();
        let spec = specs.iter().find(|s| s.listener == listener).unwrap();
        spec.advertised_address(bound.parse().unwrap(), "client:1")
            .unwrap()
    }

    fn voters(specs: &[&str]) -> Vec<Voter> {
        specs.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn defaults_are_a_valid_single_node_voter() {
        let config = ServerConfig::default();
        config.validate().unwrap();
        assert_eq!(config.node_id, 0);
        assert!(config.controller_voters.is_empty());
        assert!(config.is_controller_voter());
    }

    #[test]
    fn voters_parse_and_print_back() {
        for spec in [
            "1@127.0.0.1:9292",
            "2@broker-2.example.com:9392",
            "3@[::1]:9492",
        ] {
            let voter: Voter = spec.parse().unwrap();
            assert_eq!(voter.to_string(), spec);
        }
        let voter: Voter = "0@host_a:1".parse().unwrap();
        assert_eq!((voter.id, voter.addr.as_str()), (0, "host_a:1"));
    }

    #[test]
    fn bad_voters_say_what_is_wrong() {
        for (spec, expected) in [
            ("127.0.0.1:9292", "no '@'"),
            ("x@127.0.0.1:9292", "\"x\" is not a number"),
            ("-1@127.0.0.1:9292", "negative"),
            ("1@127.0.0.1", "no port"),
            ("1@:9292", "no host"),
            ("1@host:0", "port 0"),
            ("1@host:99999", "not a number from 1 to 65535"),
            ("1@::1:9292", "needs brackets"),
            ("1@[zz]:9292", "not an IPv6 address"),
            ("1@ho st:9292", "character ' '"),
            ("1@http://h:9292", "without a scheme"),
            ("1@h/x:9292", "character '/'"),
        ] {
            let err = spec.parse::<Voter>().unwrap_err().to_string();
            assert!(err.contains(spec), "{spec}: {err}");
            assert!(err.contains(expected), "{spec}: {err}");
        }
    }

    #[test]
    fn the_voter_list_is_checked_as_a_whole() {
        let mut config = ServerConfig {
            node_id: 1,
            controller_voters: voters(&["1@a:9292", "2@b:9392", "3@c:9492"]),
            ..ServerConfig::default()
        };
        config.validate().unwrap();
        assert!(config.is_controller_voter());

        config.controller_voters = voters(&["1@a:9292", "1@b:9392"]);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("id 1 is listed twice"), "{err}");

        config.controller_voters = voters(&["1@a:9292", "2@A:9292"]);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("same address"), "{err}");

        config.controller_voters = (0..=MAX_CONTROLLER_VOTERS)
            .map(|i| format!("{i}@h{i}:9292").parse().unwrap())
            .collect();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("at most 9"), "{err}");
        config.controller_voters.pop();
        config.validate().unwrap();

        // Built in code, so never parsed: still checked.
        config.controller_voters = vec![Voter {
            id: -2,
            addr: "a:1".into(),
        }];
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
    }

    #[test]
    fn a_node_outside_a_non_empty_voter_list_is_an_observer() {
        let config = ServerConfig {
            node_id: 4,
            controller_voters: voters(&["1@a:9292", "2@b:9392", "3@c:9492"]),
            ..ServerConfig::default()
        };
        config.validate().unwrap();
        assert!(!config.is_controller_voter());
    }

    #[test]
    fn node_id_advertise_and_internal_listen_are_checked() {
        let config = ServerConfig {
            node_id: -1,
            ..ServerConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("negative")
        );

        for bad in [
            "localhost",
            "host:",
            ":9292",
            "h:0",
            "0.0.0.0:9292",
            "[::]:9292",
        ] {
            let config = ServerConfig {
                advertise: Some(bad.into()),
                ..ServerConfig::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }

        for bad in [String::new(), "a\nb".into(), "r".repeat(MAX_RACK_BYTES + 1)] {
            let config = ServerConfig {
                rack: Some(bad.clone()),
                ..ServerConfig::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with("rack "), "{bad:?}: {err}");
        }
        let config = ServerConfig {
            rack: Some("eu-west-1a".into()),
            ..ServerConfig::default()
        };
        config.validate().expect("a plain rack name");

        let config = ServerConfig {
            internal_listen: Some(DEFAULT_LISTEN),
            ..ServerConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("gRPC listen address"), "{err}");
        let config = ServerConfig {
            internal_listen: Some(DEFAULT_ADMIN_LISTEN),
            ..ServerConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("admin HTTP"), "{err}");
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            internal_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ServerConfig::default()
        };
        config.validate().unwrap();

        let config = ServerConfig {
            external_listen: Some(DEFAULT_LISTEN),
            ..ServerConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "127.0.0.1:9292 is both the gRPC listen address and the external listen address; \
             give each listener its own port"
        );
        let config = ServerConfig {
            external_advertise: Some("127.0.0.1:19292".into()),
            ..ServerConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("--external-listen"), "{err}");
        let config = ServerConfig {
            external_listen: Some("0.0.0.0:19292".parse().unwrap()),
            external_advertise: Some("http://127.0.0.1:19292".into()),
            ..ServerConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("without a scheme"), "{err}");
        let config = ServerConfig {
            external_listen: Some("0.0.0.0:19292".parse().unwrap()),
            external_advertise: Some("127.0.0.1:19292".into()),
            ..ServerConfig::default()
        };
        config.validate().unwrap();
        assert_eq!(
            advertised_of(&config, Listener::GRPC_EXTERNAL, "0.0.0.0:19292"),
            "127.0.0.1:19292"
        );

        let config = ServerConfig {
            kafka_external_advertise: Some("127.0.0.1:19092".into()),
            ..ServerConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("--kafka-external-listen"), "{err}");
        let config = ServerConfig {
            kafka_external_listen: Some(DEFAULT_KAFKA_LISTEN),
            ..ServerConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("external Kafka listen address"), "{err}");
        let config = ServerConfig {
            kafka_external_listen: Some("0.0.0.0:19092".parse().unwrap()),
            kafka_external_advertise: Some("127.0.0.1:19092".into()),
            ..ServerConfig::default()
        };
        config.validate().unwrap();
        assert_eq!(
            advertised_of(&config, Listener::KAFKA_EXTERNAL, "0.0.0.0:19092"),
            "127.0.0.1:19092"
        );
    }

    #[test]
    fn the_advertised_address_prefers_the_setting_then_a_specific_ip_then_the_host_name() {
        let bound: SocketAddr = "0.0.0.0:4242".parse().unwrap();
        let config = ServerConfig {
            advertise: Some("broker-1.example.com:9292".into()),
            ..ServerConfig::default()
        };
        assert_eq!(
            config.advertised_address(bound).to_string(),
            "broker-1.example.com:9292"
        );

        let config = ServerConfig::default();
        let specific: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        assert_eq!(
            config.advertised_address(specific).to_string(),
            "127.0.0.1:4242"
        );
        let v6: SocketAddr = "[::1]:4242".parse().unwrap();
        assert_eq!(config.advertised_address(v6).to_string(), "[::1]:4242");

        for any in [bound, "[::]:4242".parse().unwrap()] {
            let advertised = config.advertised_address(any);
            assert_eq!(advertised.host, hostname().unwrap());
            assert_eq!(advertised.port, 4242);
        }
    }
    #[test]
    fn tls_settings_apply_to_every_listener_and_the_specific_ones_win() {
        let path = |name: &str| Some(PathBuf::from(name));
        let config = ServerConfig {
            tls_cert: path("node.pem"),
            tls_key: path("node-key.pem"),
            tls_client_ca: path("ca.pem"),
            ..ServerConfig::default()
        };
        config.validate().unwrap();
        let grpc = config.tls().unwrap().unwrap();
        assert_eq!(grpc.client_ca, path("ca.pem"));
        assert_eq!(config.kafka_tls().unwrap(), Some(grpc.clone()));
        let admin = config.admin_tls().unwrap().unwrap();
        assert_eq!((admin.cert, admin.client_ca), (grpc.cert.clone(), None));
        assert_eq!(
            config.peer_tls().unwrap().unwrap().ca,
            PathBuf::from("ca.pem")
        );

        let config = ServerConfig {
            kafka_tls_cert: path("kafka.pem"),
            kafka_tls_key: path("kafka-key.pem"),
            admin_tls_cert: path("admin.pem"),
            admin_tls_key: path("admin-key.pem"),
            tls_ca: path("cluster-ca.pem"),
            ..config
        };
        assert_eq!(
            config.kafka_tls().unwrap().unwrap().cert,
            PathBuf::from("kafka.pem")
        );
        assert_eq!(
            config.admin_tls().unwrap().unwrap().cert,
            PathBuf::from("admin.pem")
        );
        assert_eq!(
            config.peer_tls().unwrap().unwrap().ca,
            PathBuf::from("cluster-ca.pem")
        );

        for (config, names) in [
            (
                ServerConfig {
                    tls_cert: path("node.pem"),
                    ..ServerConfig::default()
                },
                ["--tls-cert", "--tls-key"],
            ),
            (
                ServerConfig {
                    tls_ca: path("ca.pem"),
                    ..ServerConfig::default()
                },
                ["--tls-cert", "--tls-ca"],
            ),
            (
                ServerConfig {
                    admin_tls_key: path("admin-key.pem"),
                    ..ServerConfig::default()
                },
                ["--admin-tls-cert", "--admin-tls-key"],
            ),
            (
                ServerConfig {
                    tls_cert: path("node.pem"),
                    tls_key: path("node-key.pem"),
                    ..ServerConfig::default()
                },
                ["--tls-ca", "--tls-client-ca"],
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            for name in names {
                assert!(err.contains(name), "{name}: {err}");
            }
        }
    }

    #[test]
    fn a_secured_broker_needs_certificates_brokers_know_each_other_by() {
        let path = |name: &str| Some(PathBuf::from(name));
        let secured = ServerConfig {
            authorization: true,
            ..ServerConfig::default()
        };
        assert_eq!(
            secured.validate(),
            Err(ServerConfigError::SecuredWithoutBrokerIdentity)
        );
        let without_client_ca = ServerConfig {
            authentication: Authentication::Required,
            tls_cert: path("node.pem"),
            tls_key: path("node-key.pem"),
            tls_ca: path("ca.pem"),
            ..ServerConfig::default()
        };
        let err = without_client_ca.validate().unwrap_err().to_string();
        assert!(err.contains("--tls-client-ca"), "{err}");
        let whole = ServerConfig {
            tls_client_ca: path("ca.pem"),
            admin_user: Some("admin".into()),
            admin_password: Some(Secret("s".into())),
            super_users: vec!["User:ops".into()],
            ..without_client_ca
        };
        whole.validate().unwrap();
        let security = whole.security(Some("weir-node"));
        assert_eq!(
            security.super_users,
            ["User:ops", "User:admin", "User:weir-node"]
        );
        assert!(security.require_authentication && !security.authorization);
        let bad = ServerConfig {
            super_users: vec!["ops".into()],
            ..whole
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("User:NAME")
        );
    }

    #[test]
    fn the_listen_settings_make_one_list_of_listeners() {
        let names = |config: &ServerConfig| -> Vec<(&'static str, &'static str, String)> {
            config
                .listeners()
                .unwrap()
                .into_iter()
                .map(|s| {
                    (
                        s.listener.name,
                        s.listener.protocol.name,
                        s.bind.to_string(),
                    )
                })
                .collect()
        };
        // The defaults: gRPC, admin HTTP and Kafka on loopback.
        let config = ServerConfig::default();
        assert_eq!(
            names(&config),
            [
                ("client", "grpc", "127.0.0.1:9292".to_owned()),
                ("admin", "http", "127.0.0.1:9293".to_owned()),
                ("kafka", "kafka", "127.0.0.1:9092".to_owned()),
            ]
        );
        let kafka = &config.listeners().unwrap()[2];
        assert!(kafka.also_ipv6_loopback);
        assert_eq!(kafka.advertised, Advertised::Given(None));
        assert_eq!(
            kafka.authentication,
            ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
        );
        assert_eq!(config.listeners().unwrap()[1].advertised, Advertised::Not);

        // Every flag, with `none` (None) turning the admin and Kafka ones off.
        let addr = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        let config = ServerConfig {
            listen: "0.0.0.0:9292".parse().unwrap(),
            advertise: Some("weir-1:9292".into()),
            internal_listen: addr("10.0.0.1:9392"),
            external_listen: addr("0.0.0.0:19292"),
            external_advertise: Some("localhost:19292".into()),
            admin_listen: None,
            kafka_listen: None,
            kafka_external_listen: addr("0.0.0.0:19092"),
            kafka_external_advertise: Some("localhost:19092".into()),
            ..ServerConfig::default()
        };
        config.validate().unwrap();
        assert_eq!(
            names(&config),
            [
                ("client", "grpc", "0.0.0.0:9292".to_owned()),
                ("internal", "grpc", "10.0.0.1:9392".to_owned()),
                ("external", "grpc", "0.0.0.0:19292".to_owned()),
                ("kafka_external", "kafka", "0.0.0.0:19092".to_owned()),
            ]
        );
        let specs = config.listeners().unwrap();
        let advertised: Vec<Option<String>> = specs
            .iter()
            .map(|s| s.advertised_address(s.bind, "weir-1:9292"))
            .collect();
        assert_eq!(
            advertised,
            [
                Some("weir-1:9292".to_owned()),
                Some("10.0.0.1:9392".to_owned()),
                Some("localhost:19292".to_owned()),
                Some("localhost:19092".to_owned()),
            ]
        );
        // An internal listener on every interface is reached at the client address.
        let internal = &specs[1];
        assert_eq!(
            internal.advertised_address("0.0.0.0:9392".parse().unwrap(), "weir-1:9292"),
            Some("weir-1:9292".to_owned())
        );
        // Two listeners on one fixed address are refused whichever they are.
        let config = ServerConfig {
            kafka_external_listen: addr("10.0.0.1:9392"),
            ..config
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "10.0.0.1:9392 is both the internal listen address and the external Kafka \
             listen address; give each listener its own port"
        );
    }

    #[test]
    fn each_listener_carries_its_tls_and_the_mechanisms_it_offers() {
        let path = |p: &str| Some(PathBuf::from(p));
        let config = ServerConfig {
            tls_cert: path("node.pem"),
            tls_key: path("node-key.pem"),
            tls_client_ca: path("ca.pem"),
            kafka_tls_cert: path("kafka.pem"),
            kafka_tls_key: path("kafka-key.pem"),
            internal_listen: Some("127.0.0.1:9392".parse().unwrap()),
            ..ServerConfig::default()
        };
        let specs = config.listeners().unwrap();
        let by_name = |name: &str| specs.iter().find(|s| s.listener.name == name).unwrap();
        let client = by_name("client");
        assert_eq!(client.tls, config.tls().unwrap());
        assert_eq!(client.authentication, ["basic", "bearer", "mTLS"]);
        assert_eq!(by_name("internal").authentication, ["mTLS"]);
        let kafka = by_name("kafka");
        assert_eq!(kafka.tls.as_ref().unwrap().cert, PathBuf::from("kafka.pem"));
        // The Kafka listener's own files name no client CA: no client certificates.
        assert!(!kafka.authentication.contains(&"mTLS"));
        let admin = by_name("admin");
        assert_eq!(admin.tls.as_ref().unwrap().cert, PathBuf::from("node.pem"));
        assert_eq!(admin.authentication, ["basic", "bearer"]);
    }
}
