//! `Replication.FetchSession`: one follower's bidirectional stream to one leader
//! (`docs/replication.md` § 2). The leader side, [`FetchSessionService`], runs every
//! partition fetch a session brings concurrently on the broker's [`FetchServer`] and
//! streams answers back as they complete, packing the ones ready together into one
//! message; the follower side, [`GrpcFetchSessions`], is the cluster's [`FetchSessions`]
//! over it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;
use weir_cluster::BrokerId;
use weir_cluster::replication::{
    BoxFuture, FetchServer, FetchSessions, MAX_FETCHES_PER_MESSAGE, PartitionAnswer,
    PartitionFetch, SESSION_QUEUE_DEPTH, Session, SessionError,
};
use weir_proto::internal::v1::replication_client::ReplicationClient;
use weir_proto::internal::v1::replication_server::Replication;
use weir_proto::internal::v1::{FetchSessionRequest, FetchSessionResponse};
use weir_security::dial::TlsDialer;

use super::peers::PeerChannels;
use super::{
    MAX_SESSION_REQUEST_BYTES, MAX_SESSION_RESPONSE_BYTES, convert, oversized, shutting_down,
    too_many_fetches,
};

/// Partition fetches one session works on at once. A follower has at most one fetch
/// outstanding per partition, so this is the partitions one follower may replicate from
/// one leader without waiting; past it the leader stops reading the session's stream
/// until answers go out, and HTTP/2 flow control holds the follower back.
pub const MAX_OUTSTANDING_FETCHES_PER_SESSION: usize = 2 * MAX_FETCHES_PER_MESSAGE;
/// Most batch bytes one partition's answer may carry (a follower asking for more gets
/// this): one busy partition cannot fill a message. An answer exceeds it by at most one
/// batch.
pub const MAX_PARTITION_FETCH_BYTES: u32 = 16 * 1024 * 1024;
/// Answers ready together share a message until their batches reach this many bytes;
/// the rest go in the next message.
pub const SESSION_MESSAGE_TARGET_BYTES: usize = 16 * 1024 * 1024;
/// How long opening a session may take: connecting (resolving the leader's name again)
/// and the leader accepting the stream.
pub const SESSION_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The leader side of fetch sessions, over the broker's [`FetchServer`].
#[derive(Clone)]
pub struct FetchSessionService {
    server: Arc<dyn FetchServer>,
    stopping: watch::Receiver<bool>,
}

impl fmt::Debug for FetchSessionService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchSessionService")
            .finish_non_exhaustive()
    }
}

impl FetchSessionService {
    /// Sessions answer from `server`; they end (UNAVAILABLE, so followers re-open
    /// elsewhere or later) when `stopping` turns true, so a graceful shutdown of the
    /// server does not wait on them.
    pub fn new(server: Arc<dyn FetchServer>, stopping: watch::Receiver<bool>) -> Self {
        FetchSessionService { server, stopping }
    }
}

type Outbound = mpsc::Sender<Result<FetchSessionResponse, Status>>;

#[tonic::async_trait]
impl Replication for FetchSessionService {
    type FetchSessionStream = ReceiverStream<Result<FetchSessionResponse, Status>>;

    async fn fetch_session(
        &self,
        request: Request<Streaming<FetchSessionRequest>>,
    ) -> Result<Response<Self::FetchSessionStream>, Status> {
        if *self.stopping.borrow() {
            return Err(shutting_down());
        }
        let remote = request.remote_addr();
        let (out, answers) = mpsc::channel(SESSION_QUEUE_DEPTH);
        let session = run_session(
            Arc::clone(&self.server),
            request.into_inner(),
            out,
            self.stopping.clone(),
        );
        tokio::spawn(session.instrument(tracing::debug_span!("fetch_session", ?remote)));
        Ok(Response::new(ReceiverStream::new(answers)))
    }
}

/// How a session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The follower closed its side and every fetch was answered.
    Closed,
    /// The follower went away (stopped reading, reset the stream, or the connection
    /// dropped).
    Gone(Option<Status>),
    /// The broker is shutting down.
    Stopping,
    /// The follower broke the protocol; it was told why.
    Refused(Status),
}

/// Runs one session: reads the follower's messages while fewer than
/// [`MAX_OUTSTANDING_FETCHES_PER_SESSION`] fetches are outstanding, runs each fetch on
/// `server` concurrently, and sends answers as they complete.
async fn run_session(
    server: Arc<dyn FetchServer>,
    mut inbound: Streaming<FetchSessionRequest>,
    out: Outbound,
    mut stopping: watch::Receiver<bool>,
) {
    let server = &*server;
    let mut outstanding = FuturesUnordered::new();
    // A message read but not yet admitted: it waits for room among the outstanding.
    let mut waiting: Option<Vec<PartitionFetch>> = None;
    let mut inbound_open = true;
    let mut follower: Option<BrokerId> = None;
    let (mut fetches, mut messages) = (0u64, 0u64);
    let end = loop {
        if let Some(admitted) =
            waiting.take_if(|w| outstanding.len() + w.len() <= MAX_OUTSTANDING_FETCHES_PER_SESSION)
        {
            fetches += admitted.len() as u64;
            for fetch in admitted {
                let from = fetch.request.replica;
                follower.get_or_insert(from);
                outstanding.push(server.fetch(from, fetch));
            }
        }
        if !inbound_open && waiting.is_none() && outstanding.is_empty() {
            break SessionEnd::Closed;
        }
        tokio::select! {
            biased;
            () = crate::until_stopping(&mut stopping) => break SessionEnd::Stopping,
            () = out.closed() => break SessionEnd::Gone(None),
            Some(first) = outstanding.next(), if !outstanding.is_empty() => {
                let ready = ready_answers(first, &mut outstanding);
                messages += 1;
                let message = convert::answers_message(ready);
                tokio::select! {
                    sent = out.send(Ok(message)) => if sent.is_err() {
                        break SessionEnd::Gone(None);
                    },
                    () = crate::until_stopping(&mut stopping) => break SessionEnd::Stopping,
                }
            }
            message = inbound.message(), if inbound_open && waiting.is_none() => match message {
                Ok(Some(message)) => match convert::fetches(message) {
                    Ok(admitted) if admitted.is_empty() => {}
                    Ok(admitted) => waiting = Some(admitted),
                    Err(count) => break SessionEnd::Refused(too_many_fetches(count)),
                },
                Ok(None) => inbound_open = false,
                Err(status) => break SessionEnd::Gone(Some(status)),
            },
        }
    };
    match &end {
        SessionEnd::Closed => {}
        // Whatever was outstanding is dropped: fetches are idempotent, and the follower
        // sends them again on its next session.
        SessionEnd::Stopping => {
            let _ = out.try_send(Err(shutting_down()));
        }
        SessionEnd::Refused(status) => {
            tracing::warn!(follower, error = %status.message(), "refused a fetch session message");
            let _ = out.try_send(Err(status.clone()));
        }
        SessionEnd::Gone(Some(status)) if status.code() == tonic::Code::OutOfRange => {
            // The decoder refused an oversized message: tell the follower.
            let _ = out.try_send(Err(oversized("fetch session message", status.message())));
        }
        SessionEnd::Gone(_) => {}
    }
    tracing::debug!(follower, fetches, messages, ?end, "fetch session ended");
}

/// `first` and every other answer ready now, up to one message's worth
/// ([`SESSION_MESSAGE_TARGET_BYTES`] of batches, [`MAX_FETCHES_PER_MESSAGE`] answers).
/// What is not ready stays outstanding; nothing waits here.
fn ready_answers<'a>(
    first: PartitionAnswer,
    outstanding: &mut FuturesUnordered<BoxFuture<'a, PartitionAnswer>>,
) -> Vec<PartitionAnswer> {
    let mut bytes = first.batches.len();
    let mut ready = vec![first];
    while ready.len() < MAX_FETCHES_PER_MESSAGE && bytes < SESSION_MESSAGE_TARGET_BYTES {
        match outstanding.next().now_or_never() {
            Some(Some(answer)) => {
                bytes += answer.batches.len();
                ready.push(answer);
            }
            // Nothing else is ready (or nothing is outstanding).
            _ => break,
        }
    }
    ready
}

/// The follower side: opens fetch sessions to leaders over gRPC, one HTTP/2 connection
/// per leader address shared by its sessions (connected lazily, the name resolved again
/// at every reconnect).
#[derive(Debug, Default)]
pub struct GrpcFetchSessions {
    peers: PeerChannels,
}

impl GrpcFetchSessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sessions that dial leaders with `tls` (see `peers`), or in plaintext.
    pub fn with_tls(tls: Option<TlsDialer>) -> Self {
        GrpcFetchSessions {
            peers: PeerChannels::new(tls),
        }
    }
}

impl FetchSessions for GrpcFetchSessions {
    /// Connects (within [`SESSION_OPEN_TIMEOUT`]) and opens the stream. The session's
    /// `answers` end when the stream breaks or the leader ends it; the caller opens a
    /// new one. Dropping `answers` cancels the stream; dropping only `fetches` closes the
    /// follower's side, and the answers end once the outstanding fetches are answered.
    fn open(
        &self,
        leader: BrokerId,
        address: String,
    ) -> BoxFuture<'_, Result<Session, SessionError>> {
        Box::pin(async move {
            let failed = |reason: String| SessionError {
                leader,
                address: address.clone(),
                reason,
            };
            let channel = self
                .peers
                .channel(&address)
                .map_err(|e| failed(format!("invalid address: {e}")))?;
            let mut client = ReplicationClient::new(channel)
                .max_encoding_message_size(MAX_SESSION_REQUEST_BYTES)
                .max_decoding_message_size(MAX_SESSION_RESPONSE_BYTES);
            let (fetches, to_send) = mpsc::channel::<Vec<PartitionFetch>>(SESSION_QUEUE_DEPTH);
            let outbound = ReceiverStream::new(to_send)
                .flat_map(|batch| futures_util::stream::iter(convert::fetch_requests(batch)));
            let inbound =
                match tokio::time::timeout(SESSION_OPEN_TIMEOUT, client.fetch_session(outbound))
                    .await
                {
                    Err(_) => {
                        return Err(failed(format!(
                            "the leader did not accept the stream within {} ms",
                            SESSION_OPEN_TIMEOUT.as_millis()
                        )));
                    }
                    Ok(Err(status)) => {
                        return Err(failed(format!("{:?}: {}", status.code(), status.message())));
                    }
                    Ok(Ok(response)) => response.into_inner(),
                };
            let (answers_in, answers) = mpsc::channel(SESSION_QUEUE_DEPTH);
            let span = tracing::debug_span!("fetch_session_to", leader, %address);
            tokio::spawn(pump_answers(inbound, answers_in).instrument(span));
            Ok(Session { fetches, answers })
        })
    }
}

/// Moves the leader's answers to the session's `answers` until either end stops; then
/// drops both, which ends the follower's receiver and cancels the stream.
async fn pump_answers(
    mut inbound: Streaming<FetchSessionResponse>,
    answers: mpsc::Sender<Vec<PartitionAnswer>>,
) {
    loop {
        let message = tokio::select! {
            message = inbound.message() => message,
            () = answers.closed() => return,
        };
        match message {
            Ok(Some(message)) => match convert::answers(message) {
                Ok(batch) if batch.is_empty() => {}
                Ok(batch) => {
                    if answers.send(batch).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the leader sent an answer this broker cannot read; closing the session");
                    return;
                }
            },
            Ok(None) => {
                tracing::debug!("the leader ended the session");
                return;
            }
            Err(status) => {
                tracing::info!(code = ?status.code(), error = status.message(), "fetch session broke");
                return;
            }
        }
    }
}
