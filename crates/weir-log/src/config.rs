//! Log configuration: segment sizes, index spacing, durability and retention.

use std::time::Duration;

/// When appended bytes are forced to disk, and so what an acknowledgement means.
///
/// Whatever the policy, data reaches the OS page cache on append and survives a process
/// crash; the policy only decides what survives a machine crash or power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// `append` returns after its own bytes are on disk (one `fdatasync` per append;
    /// concurrent appenders still share one).
    EveryAppend,
    /// `append` returns at once; `Log::wait_durable(offset)` blocks until one
    /// `fdatasync` has covered that offset. One sync covers every append that arrived while
    /// the previous sync ran, so many waiters share few syncs.
    GroupCommit,
    /// Sync when an append finds the last sync older than the interval (or when the owner
    /// calls `Log::flush_if_due`). Up to one interval of acknowledged data can be lost in
    /// a machine crash.
    Interval(Duration),
    /// Never sync on the append path; data is made durable only by segment roll, close,
    /// or replication to other brokers.
    None,
}

impl FlushPolicy {
    /// Parses `every-append`, `group-commit`, `none` or `interval:<ms>`.
    pub fn parse(s: &str) -> Option<FlushPolicy> {
        match s {
            "every-append" => Some(FlushPolicy::EveryAppend),
            "group-commit" => Some(FlushPolicy::GroupCommit),
            "none" => Some(FlushPolicy::None),
            _ => {
                let ms = s.strip_prefix("interval:")?.parse().ok()?;
                Some(FlushPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

/// Smallest segment the log will roll to; smaller values make segment counts explode.
pub const MIN_SEGMENT_BYTES: u64 = 1024;
/// Segment files are addressed with 32-bit positions in the offset index.
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
/// Smallest index spacing accepted.
pub const MIN_INDEX_INTERVAL_BYTES: u32 = 64;

/// Default [`LogConfig::producer_id_expiration`]: one day, as Kafka.
pub const DEFAULT_PRODUCER_ID_EXPIRATION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll to a new segment once the active one holds this many bytes.
    pub segment_bytes: u64,
    /// Roll once the active segment's first append is this old.
    pub segment_age: Option<Duration>,
    /// Add an offset-index entry every this many bytes of log (Kafka's
    /// `index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// Size each segment's index files are preallocated to; a segment rolls when its
    /// index is full.
    pub index_max_bytes: u32,
    /// Largest batch accepted on append (`max.message.bytes`).
    pub max_message_bytes: usize,
    pub flush: FlushPolicy,
    /// Delete closed segments whose newest record is older than this.
    pub retention_age: Option<Duration>,
    /// Delete the oldest closed segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// After a flush, persist the recovery checkpoint if the last one is older than this.
    /// Bounds how much a crash makes recovery scan (besides the active segment's unflushed
    /// tail).
    pub recovery_checkpoint_interval: Duration,
    /// Forget an idempotent producer whose newest batch is older than this (Kafka's
    /// `producer.id.expiration.ms`); a forgotten producer may start at any sequence.
    pub producer_id_expiration: Duration,
    /// Write the active segment past the page cache (`O_DIRECT`, `storage/direct.rs`)
    /// when the flush policy syncs on the append path (every-append, group-commit) and
    /// the file system allows it. Such a log syncs continuously anyway, and through the
    /// page cache it pays for every byte twice. Readers get what the process's ring of
    /// recent writes still holds (the newest 3-4 MiB written by all such logs) from
    /// memory and the rest from the disk, past the page cache (where the
    /// page cache might still have held them). Off by default (a topic's `write.direct`).
    pub direct_writes: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_age: Some(Duration::from_secs(7 * 24 * 3600)),
            index_interval_bytes: 4096,
            index_max_bytes: 10 * 1024 * 1024,
            max_message_bytes: 1024 * 1024 + 12 * 1024,
            flush: FlushPolicy::GroupCommit,
            retention_age: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_bytes: None,
            recovery_checkpoint_interval: Duration::from_secs(1),
            producer_id_expiration: DEFAULT_PRODUCER_ID_EXPIRATION,
            direct_writes: false,
        }
    }
}

impl LogConfig {
    /// Whether the active segment is opened for direct writes ([`LogConfig::direct_writes`]).
    pub(crate) fn writes_direct(&self) -> bool {
        self.direct_writes
            && matches!(
                self.flush,
                FlushPolicy::EveryAppend | FlushPolicy::GroupCommit
            )
    }

    /// Checks the values against their limits; a bad configuration is refused at open.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(format!(
                "segment_bytes {} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                self.segment_bytes
            ));
        }
        if self.index_interval_bytes < MIN_INDEX_INTERVAL_BYTES {
            return Err(format!(
                "index_interval_bytes {} is below {MIN_INDEX_INTERVAL_BYTES}",
                self.index_interval_bytes
            ));
        }
        if self.index_max_bytes < 1024 {
            return Err(format!(
                "index_max_bytes {} is below 1024",
                self.index_max_bytes
            ));
        }
        if self.max_message_bytes > crate::batch::MAX_BATCH_BYTES {
            return Err(format!(
                "max_message_bytes {} is above the hard limit {}",
                self.max_message_bytes,
                crate::batch::MAX_BATCH_BYTES
            ));
        }
        Ok(())
    }
}
