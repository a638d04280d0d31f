//! One simulated broker process: its logs (real weir-log logs on a `FaultyStorage`), its
//! metadata image, its replicas' state machines, and what it is waiting on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weir_cluster::controller::MetadataImage;
use weir_cluster::replication::{FetchAnswer, Replica};
use weir_log::storage::{FaultPlan, FaultyStorage};
use weir_log::{Log, LogConfig, decode_records};

use super::net::Addr;

/// An `acks=all` produce waiting for the high watermark.
#[derive(Debug, Clone)]
pub struct Waiter {
    pub leader_epoch: i32,
    pub offset: i64,
    pub client: Addr,
    pub request_id: u64,
}

/// A follower's fetch with nothing to send yet (the leader's long poll).
#[derive(Debug, Clone)]
pub struct Parked {
    pub to: Addr,
    pub answer: FetchAnswer,
    pub until_ms: u64,
}

#[derive(Debug)]
pub struct Node {
    pub id: Addr,
    dir: PathBuf,
    /// Running (not crashed). A crashed node's logs stay open, recovered: they are what
    /// its disk holds, and the checker reads them.
    pub up: bool,
    /// SIGSTOPped: delivers nothing and fires no timers until resumed.
    pub paused: bool,
    /// Bumped by every restart.
    pub incarnation: u64,
    storage: FaultyStorage,
    pub logs: BTreeMap<u32, Log>,
    pub broker_epoch: Option<i64>,
    pub image: MetadataImage,
    pub replicas: BTreeMap<u32, Replica>,
    pub parked: BTreeMap<u32, Vec<Parked>>,
    pub waiters: BTreeMap<u32, Vec<Waiter>>,
    pub flush_scheduled: BTreeMap<u32, bool>,
    pub last_heartbeat_ms: u64,
    /// The broker's side of its controller session (`node/lifecycle.rs` `watch_lease`):
    /// when the last heartbeat or registration the controller answered was sent (at
    /// first, when the process started).
    pub lease_from: u64,
    /// Its replicas were told `LeaseLapsed` (and not `LeaseRenewed` since).
    pub lease_lapsed: bool,
    /// The lease ran out while the broker was alone in its image: it stays leading until
    /// the next renewal, as `watch_lease` does (nobody could take over).
    pub lease_waived: bool,
}

pub fn log_config() -> LogConfig {
    LogConfig {
        // Small segments and indexes, so rolls and index lookups happen in every run.
        segment_bytes: 4096,
        index_interval_bytes: 256,
        index_max_bytes: 4096,
        recovery_checkpoint_interval: Duration::ZERO,
        ..LogConfig::default()
    }
}

impl Node {
    pub fn new(id: Addr, dir: &Path, partitions: u32) -> Node {
        let storage = FaultyStorage::new(FaultPlan::default());
        let mut node = Node {
            id,
            dir: dir.join(format!("node-{id}")),
            up: true,
            paused: false,
            incarnation: 1,
            storage,
            logs: BTreeMap::new(),
            broker_epoch: None,
            image: MetadataImage::default(),
            replicas: BTreeMap::new(),
            parked: BTreeMap::new(),
            waiters: BTreeMap::new(),
            flush_scheduled: BTreeMap::new(),
            last_heartbeat_ms: 0,
            lease_from: 0,
            lease_lapsed: false,
            lease_waived: false,
        };
        node.open_logs(partitions);
        node
    }

    fn open_logs(&mut self, partitions: u32) {
        for p in 0..partitions {
            let dir = self.dir.join(format!("p{p}"));
            let log = Log::open_with_storage(&dir, log_config(), Arc::new(self.storage.clone()))
                .unwrap_or_else(|e| panic!("node {} partition {p}: open: {e}", self.id));
            self.logs.insert(p, log);
        }
    }

    /// The machine dies: unsynced bytes are lost (some may have reached the disk,
    /// `keep` picks how many per file), volatile state is gone. The disk is recovered at
    /// once (the logs reopened) so the checker can read what survived.
    pub fn crash(&mut self, partitions: u32, mut keep: impl FnMut(u64) -> u64) {
        self.storage
            .crash(|_, unsynced| keep(unsynced))
            .expect("crash the storage");
        self.logs.clear(); // dropped on a crashed storage: nothing more reaches the disk
        self.storage = FaultyStorage::new(FaultPlan::default());
        self.open_logs(partitions);
        self.up = false;
        self.paused = false;
        self.broker_epoch = None;
        self.image = MetadataImage::default();
        self.replicas.clear();
        self.parked.clear();
        self.waiters.clear();
        self.flush_scheduled.clear();
        self.lease_lapsed = false;
        self.lease_waived = false;
    }

    /// A new process on the same disk, started at `now`: its lease counts from there
    /// until the controller answers it.
    pub fn restart(&mut self, now: u64) {
        self.up = true;
        self.incarnation += 1;
        self.lease_from = now;
    }

    /// Whether this process's lease has run out by `now` (`lease_ms` after the last
    /// answered heartbeat was sent): from then on it must neither append nor answer as
    /// a leader. A crashed process holds nothing.
    pub fn lease_expired(&self, now: u64, lease_ms: u64) -> bool {
        self.up && now > self.lease_from + lease_ms
    }

    /// Every record of `partition`'s log: `(offset, value, durable)`.
    pub fn records(&self, partition: u32) -> Vec<(i64, String, bool)> {
        let log = &self.logs[&partition];
        let offsets = log.offsets();
        let mut out = Vec::new();
        let mut offset = offsets.log_start_offset;
        while offset < offsets.log_end_offset {
            let data = log
                .read(offset, 1 << 20, None)
                .unwrap_or_else(|e| panic!("node {} partition {partition}: read: {e}", self.id));
            if data.records.is_empty() {
                break;
            }
            for batch in data.batches() {
                for r in decode_records(&batch).expect("decode a stored batch") {
                    let value =
                        String::from_utf8(r.value.expect("a value").to_vec()).expect("utf-8");
                    out.push((r.offset, value, r.offset < offsets.flushed_offset));
                }
            }
            offset = data.next_offset;
        }
        out
    }
}
