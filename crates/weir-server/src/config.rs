//! The broker's configuration: where data lives, where it listens, its id and its
//! limits. Defaults need nothing set; the `weir serve` command layers a TOML file,
//! environment variables and flags over them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

/// Default gRPC listen address: loopback only, so a first `weir serve` is not exposed
/// to the network; set `listen = "0.0.0.0:9292"` to serve other hosts.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9292);
/// Default admin HTTP (`/metrics`, `/health`) address.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9293);
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
    /// This broker's id in the cluster.
    pub broker_id: i32,
    /// Largest gRPC request accepted, in bytes.
    pub max_request_bytes: usize,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN,
            admin_listen: Some(DEFAULT_ADMIN_LISTEN),
            broker_id: 0,
            max_request_bytes: MAX_REQUEST_BYTES,
            retention_check_interval_ms: DEFAULT_RETENTION_CHECK_INTERVAL_MS,
            offsets_partitions: DEFAULT_OFFSETS_PARTITIONS,
            group_session_timeout_ms: DEFAULT_GROUP_SESSION_TIMEOUT_MS,
            group_heartbeat_interval_ms: DEFAULT_GROUP_HEARTBEAT_INTERVAL_MS,
            offsets_retention_minutes: DEFAULT_OFFSETS_RETENTION_MINUTES,
        }
    }
}
