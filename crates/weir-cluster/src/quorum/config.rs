//! Timeouts and storage policy of the metadata quorum, with defaults that replace a lost
//! leader 1.2-1.6 s after its last heartbeat.

use super::error::QuorumError;

/// A follower that hears nothing from the leader for a random time between this and
/// [`DEFAULT_ELECTION_TIMEOUT_MAX_MS`], after the leader's lease (openraft makes it the
/// maximum), starts an election: a lost leader is replaced 1.2-1.6 s after its last
/// heartbeat. With 500-1000 ms it was 1.5-2.0 s, most of the failover of a partition
/// whose leader was also the active controller (`docs/replication.md` § Found 7).
pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 400;
pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 800;
/// How often the leader heartbeats; also the timeout of one AppendEntries RPC.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 100;
/// A snapshot of the image is taken every this many log entries, so a restart replays
/// at most this many entries after loading the snapshot.
pub const DEFAULT_SNAPSHOT_EVERY_ENTRIES: u64 = 1024;
/// Entries kept in the log behind a snapshot, so a follower a little behind gets
/// entries instead of a whole snapshot.
pub const DEFAULT_ENTRIES_KEPT_AFTER_SNAPSHOT: u64 = 256;
/// A log segment this large is closed and a new one started; purging deletes whole
/// segments.
pub const DEFAULT_LOG_SEGMENT_BYTES_MAX: u64 = 8 << 20;
/// Time to send a snapshot to a follower and have it installed.
pub const DEFAULT_SNAPSHOT_SEND_TIMEOUT_MS: u64 = 10_000;
/// Entries in one AppendEntries RPC (fewer when they would exceed
/// [`MAX_RPC_BYTES`](super::MAX_RPC_BYTES)).
pub const DEFAULT_MAX_ENTRIES_PER_RPC: u64 = 256;

/// How the quorum times elections, heartbeats and snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub snapshot_every_entries: u64,
    pub entries_kept_after_snapshot: u64,
    pub log_segment_bytes_max: u64,
    pub snapshot_send_timeout_ms: u64,
    pub max_entries_per_rpc: u64,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        QuorumConfig {
            election_timeout_min_ms: DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            snapshot_every_entries: DEFAULT_SNAPSHOT_EVERY_ENTRIES,
            entries_kept_after_snapshot: DEFAULT_ENTRIES_KEPT_AFTER_SNAPSHOT,
            log_segment_bytes_max: DEFAULT_LOG_SEGMENT_BYTES_MAX,
            snapshot_send_timeout_ms: DEFAULT_SNAPSHOT_SEND_TIMEOUT_MS,
            max_entries_per_rpc: DEFAULT_MAX_ENTRIES_PER_RPC,
        }
    }
}

impl QuorumConfig {
    /// The openraft configuration, validated.
    pub(crate) fn to_raft(&self) -> Result<openraft::Config, QuorumError> {
        if self.snapshot_every_entries == 0 {
            return Err(QuorumError::InvalidConfig(
                "snapshot_every_entries must be at least 1".into(),
            ));
        }
        if self.log_segment_bytes_max == 0 {
            return Err(QuorumError::InvalidConfig(
                "log_segment_bytes_max must be at least 1".into(),
            ));
        }
        let config = openraft::Config {
            cluster_name: "weir-metadata".into(),
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            heartbeat_interval: self.heartbeat_interval_ms,
            install_snapshot_timeout: self.snapshot_send_timeout_ms,
            max_payload_entries: self.max_entries_per_rpc,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.entries_kept_after_snapshot,
            ..openraft::Config::default()
        };
        config
            .validate()
            .map_err(|e| QuorumError::InvalidConfig(e.to_string()))
    }
}
