//! The simulated network: messages between brokers, the controller and clients, with
//! random delay (so reordering), loss, duplication and cut links, one-way or two-way.

use std::collections::BTreeMap;

use bytes::Bytes;
use weir_cluster::controller::records::MetadataRecord;
use weir_cluster::replication::{AlterIsrAnswer, AlterIsrRequest, FetchAnswer, FetchRequest};

use super::rng::Rng;

/// An endpoint: brokers are 1..=N, the controller quorum is 0, clients are 100+.
pub type Addr = i32;
pub const CONTROLLER: Addr = 0;

#[derive(Debug, Clone)]
pub enum Msg {
    Fetch {
        partition: u32,
        request: FetchRequest,
    },
    FetchAnswer {
        partition: u32,
        answer: FetchAnswer,
        batches: Bytes,
    },
    Register {
        incarnation: u64,
        /// When the broker sent it (sim time): the lease an answer renews counts from it.
        sent_ms: u64,
    },
    Registered {
        broker_epoch: i64,
        /// The registration's `sent_ms`, echoed.
        sent_ms: u64,
    },
    Heartbeat {
        incarnation: u64,
        broker_epoch: i64,
        metadata_offset: i64,
        /// When the broker sent it (sim time).
        sent_ms: u64,
    },
    HeartbeatReply {
        /// Committed records from the heartbeat's `metadata_offset` on.
        from_offset: i64,
        records: Vec<MetadataRecord>,
        /// The heartbeat's `sent_ms` if the controller accepted it (the broker's lease
        /// counts from there); `Err(broker_epoch)` if it refused it as stale.
        accepted: Result<u64, i64>,
    },
    AlterIsr {
        topic_id: String,
        partition: u32,
        broker_epoch: i64,
        request: AlterIsrRequest,
    },
    AlterIsrAnswer {
        partition: u32,
        answer: AlterIsrAnswer,
    },
    Produce {
        partition: u32,
        request_id: u64,
        value: String,
    },
    ProduceAnswer {
        partition: u32,
        request_id: u64,
        /// The offset the record got, or why not.
        result: Result<i64, String>,
    },
    Read {
        partition: u32,
        offset: i64,
        request_id: u64,
    },
    ReadAnswer {
        partition: u32,
        request_id: u64,
        leader_epoch: i32,
        /// `(offset, value)` from the read's offset, all below the published HW.
        records: Vec<(i64, String)>,
        high_watermark: i64,
    },
    ReadRefused {
        partition: u32,
        request_id: u64,
    },
}

/// A message on its way. `to_incarnation` drops answers meant for a process that has
/// since restarted (a new process has new connections).
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: Addr,
    pub to: Addr,
    pub to_incarnation: Option<u64>,
    pub msg: Msg,
}

#[derive(Debug, Default)]
pub struct Faults {
    pub loss: f64,
    pub duplication: f64,
    pub max_delay_ms: u64,
}

#[derive(Debug, Default)]
pub struct Network {
    pub faults: Faults,
    /// Cut directions `(from, to)`, each with the number of faults cutting it (faults
    /// overlap: a direction is open again once every fault that cut it has healed).
    cut: BTreeMap<(Addr, Addr), u32>,
}

impl Network {
    pub fn new(faults: Faults) -> Network {
        Network {
            faults,
            cut: BTreeMap::new(),
        }
    }

    /// Drops every message from `from` to `to` (not the other way) until healed.
    pub fn cut_one_way(&mut self, from: Addr, to: Addr) {
        *self.cut.entry((from, to)).or_default() += 1;
    }

    pub fn heal_one_way(&mut self, from: Addr, to: Addr) {
        if let Some(n) = self.cut.get_mut(&(from, to)) {
            *n -= 1;
            if *n == 0 {
                self.cut.remove(&(from, to));
            }
        }
    }

    pub fn heal_all(&mut self) {
        self.cut.clear();
    }

    pub fn is_cut(&self, from: Addr, to: Addr) -> bool {
        self.cut.contains_key(&(from, to))
    }

    /// The delays (from now) at which copies of a message sent now arrive: none if lost
    /// or the link is cut, two if duplicated.
    pub fn deliveries(&self, rng: &mut Rng, from: Addr, to: Addr) -> Vec<u64> {
        if from == to {
            return vec![0];
        }
        if self.is_cut(from, to) || rng.chance(self.faults.loss) {
            return Vec::new();
        }
        let mut out = vec![rng.range(1, self.faults.max_delay_ms.max(1))];
        if rng.chance(self.faults.duplication) {
            out.push(rng.range(1, self.faults.max_delay_ms.max(1) * 3));
        }
        out
    }
}
