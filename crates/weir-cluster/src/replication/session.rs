//! Fetch sessions: how followers' fetches and leaders' answers travel between two
//! brokers. All partitions a follower fetches from one leader share one bidirectional
//! stream (`docs/replication.md` § 2): the follower sends [`PartitionFetch`]es as its
//! replicas become ready, the leader sends each [`PartitionAnswer`] when it has one
//! (at once, or after holding a fetch with nothing to send). Partitions never wait for
//! each other.
//!
//! The types here know nothing of gRPC; the broker's internal service converts them at
//! its edge and implements [`FetchSessions`] over it.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::messages::{FetchAnswer, FetchRequest};
use crate::partition::BrokerId;

/// Most partition fetches one session message carries.
pub const MAX_FETCHES_PER_MESSAGE: usize = 10_000;
/// Messages a session buffers in each direction before its sender waits.
pub const SESSION_QUEUE_DEPTH: usize = 64;

/// One partition's fetch inside a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFetch {
    pub topic_id: String,
    pub partition: u32,
    pub request: FetchRequest,
    /// Most batch bytes the answer may carry (at least one batch is sent regardless).
    pub max_bytes: u32,
}

/// One partition's answer inside a session: `batches` are the stored batches from the
/// answer's offset when it is [`FetchAnswer::Data`], empty otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAnswer {
    pub topic_id: String,
    pub partition: u32,
    pub answer: FetchAnswer,
    pub batches: Bytes,
}

/// The follower's end of one open session.
#[derive(Debug)]
pub struct Session {
    /// Fetches to send; dropping it closes the session.
    pub fetches: mpsc::Sender<Vec<PartitionFetch>>,
    /// Answers as they come; ends when the session breaks (the follower re-sends what
    /// was unanswered on a new one: fetches are idempotent).
    pub answers: mpsc::Receiver<Vec<PartitionAnswer>>,
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("fetch session to broker {leader} at {address}: {reason}")]
pub struct SessionError {
    pub leader: BrokerId,
    pub address: String,
    pub reason: String,
}

/// Boxed future, for the object-safe traits below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The follower side: opens a session to a leader (the broker implements it over its
/// internal gRPC stream; tests over channels).
pub trait FetchSessions: Send + Sync + 'static {
    fn open(
        &self,
        leader: BrokerId,
        address: String,
    ) -> BoxFuture<'_, Result<Session, SessionError>>;
}

/// The leader side: answers one partition fetch, holding it (up to the fetch wait) when
/// there is nothing to send yet. The broker's internal service calls it for every
/// partition fetch a session brings and streams the answers back as they complete.
pub trait FetchServer: Send + Sync + 'static {
    fn fetch(&self, from: BrokerId, fetch: PartitionFetch) -> BoxFuture<'_, PartitionAnswer>;
}
