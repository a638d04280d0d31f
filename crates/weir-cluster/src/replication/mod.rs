//! The replication state machine of one partition replica (see `docs/replication.md`
//! § 2): a leader tracking its followers' positions, the high watermark and the ISR; a
//! follower fetching, appending, flushing and truncating what diverged.
//!
//! Architecture invariant: nothing here does I/O, reads a clock or draws a random
//! number. [`Replica::handle`] takes an [`Event`] (a fetch arrived, an answer came back,
//! the local log moved, metadata changed, a timer fired) with the current time and a
//! read-only view of the local log ([`LocalLog`]: in-memory offsets and the epoch
//! history, no disk access), and returns [`Command`]s for its driver to carry out: send
//! this fetch, answer that one with the batches from this offset, append, flush,
//! truncate, propose an ISR change, publish a high watermark. The broker drives it with
//! real logs and gRPC; the deterministic simulation drives the same code with simulated
//! networks and crashes.

mod follower;
mod leader;
mod local_log;
mod messages;
mod recovery;
mod replica;
mod session;

pub use follower::PIPELINE_MIN_BYTES;
pub use messages::{
    AlterIsrAnswer, AlterIsrRequest, FetchAnswer, FetchError, FetchRequest, ProduceRefusal,
};
pub use replica::{Command, Event, LocalLog, Replica, ReplicaConfig, Role};
pub use session::{
    BoxFuture, FetchServer, FetchSessions, MAX_FETCHES_PER_MESSAGE, PartitionAnswer,
    PartitionFetch, SESSION_QUEUE_DEPTH, Session, SessionError,
};

/// Default time a follower may go without catching up before it leaves the ISR
/// (`replica.lag.time.max.ms`; Kafka's is 30 s, shorter here so a slow follower stops
/// delaying `acks=all` sooner).
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: u64 = 10_000;
/// Default wait before a follower re-sends a fetch that got no answer, and before it
/// retries after a retriable error.
pub const DEFAULT_FETCH_TIMEOUT_MS: u64 = 2_000;
/// Default back-off after a retriable fetch error.
pub const DEFAULT_FETCH_BACKOFF_MS: u64 = 100;
/// Default time an unanswered ISR proposal is given before the leader may propose again.
pub const DEFAULT_ALTER_ISR_TIMEOUT_MS: u64 = 5_000;

#[cfg(test)]
mod tests;
