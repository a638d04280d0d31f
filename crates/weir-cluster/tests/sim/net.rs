//! The simulated network: messages between brokers, the controller and clients, with
//! random delay (so reordering), loss, duplication and cut links.

use std::collections::BTreeSet;

use bytes::Bytes;
use weir_cluster::controller::records::MetadataRecord;
use weir_cluster::replication::{AlterIsrAnswer, AlterIsrRequest, FetchAnswer, FetchRequest};

use crate::rng::Rng;

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
    },
    Registered {
        broker_epoch: i64,
    },
    Heartbeat {
        broker_epoch: i64,
        metadata_offset: i64,
    },
    HeartbeatReply {
        /// Committed records from the heartbeat's `metadata_offset` on.
        from_offset: i64,
        records: Vec<MetadataRecord>,
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
    /// Cut links, as (lower, higher) pairs.
    cut: BTreeSet<(Addr, Addr)>,
}

impl Network {
    pub fn new(faults: Faults) -> Network {
        Network {
            faults,
            cut: BTreeSet::new(),
        }
    }

    fn key(a: Addr, b: Addr) -> (Addr, Addr) {
        (a.min(b), a.max(b))
    }

    pub fn cut(&mut self, a: Addr, b: Addr) {
        self.cut.insert(Network::key(a, b));
    }

    pub fn heal(&mut self, a: Addr, b: Addr) {
        self.cut.remove(&Network::key(a, b));
    }

    pub fn heal_all(&mut self) {
        self.cut.clear();
    }

    pub fn is_cut(&self, a: Addr, b: Addr) -> bool {
        self.cut.contains(&Network::key(a, b))
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
