//! The network seam of the quorum: [`QuorumTransport`] carries openraft's RPCs as
//! opaque bytes to a voter and brings back the reply bytes, so the broker can carry them
//! over its internal gRPC service unchanged (one bytes-in, bytes-out method), and tests
//! over channels. [`Quorum::handle_rpc`](super::Quorum::handle_rpc) is the receiving
//! end.
//!
//! Wire format, request: `magic "WQRQ" | version u8 | kind u8 | header_len u32 | header
//! (JSON) | data`; reply: `magic "WQRS" | version u8 | kind u8 | body (JSON)`. The header
//! is the openraft request (for a snapshot: the vote and the snapshot's meta), and data
//! is the snapshot's framed bytes (versioned and CRC'd, see `state_file`), sent whole in
//! one RPC rather than in openraft's deprecated chunks. The reply body is the openraft
//! result, error included. Every length is checked against [`MAX_RPC_BYTES`].

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::future::Future;
use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RPCTypes, Raft};
use serde::{Deserialize, Serialize};

use crate::partition::BrokerId;
use crate::peer_log::PeerLog;

use super::elections::{Heard, SharedBallots, note_heard};
use super::error::QuorumError;
use super::state_file::MAX_SNAPSHOT_BYTES;
use super::types::{NodeId, Snapshot, SnapshotMeta, TypeConfig, Vote, broker_id};

/// The largest RPC, request or reply: a whole snapshot plus its header.
pub const MAX_RPC_BYTES: usize = MAX_SNAPSHOT_BYTES + (1 << 20);
const REQUEST_MAGIC: &[u8; 4] = b"WQRQ";
const REPLY_MAGIC: &[u8; 4] = b"WQRS";
const WIRE_VERSION: u8 = 1;
const REQUEST_HEADER_BYTES: usize = 4 + 1 + 1 + 4;
const REPLY_HEADER_BYTES: usize = 4 + 1 + 1;

/// Which openraft RPC a message carries (in the bytes too; given separately so a
/// transport can route or time them apart, e.g. snapshots on their own stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RpcKind {
    AppendEntries = 1,
    Vote = 2,
    Snapshot = 3,
}

impl RpcKind {
    fn from_u8(byte: u8) -> Option<RpcKind> {
        match byte {
            1 => Some(RpcKind::AppendEntries),
            2 => Some(RpcKind::Vote),
            3 => Some(RpcKind::Snapshot),
            _ => None,
        }
    }
}

/// Why a transport could not bring back a reply.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The voter could not be reached (refused, timed out, cut off): openraft backs off
    /// before trying it again.
    #[error("voter {target} at {address} is unreachable: {source}")]
    Unreachable {
        target: BrokerId,
        address: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request may or may not have arrived (a connection broke mid-call): retried at
    /// once.
    #[error("RPC to voter {target} at {address} failed: {source}")]
    Failed {
        target: BrokerId,
        address: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The future a transport returns.
pub type RpcFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, TransportError>> + Send + 'a>>;

/// Carries quorum RPCs between voters.
pub trait QuorumTransport: Send + Sync + 'static {
    /// Sends `request` to voter `target` at `address` (`host:port` from the voter set)
    /// and returns the reply bytes that voter's
    /// [`Quorum::handle_rpc`](super::Quorum::handle_rpc) produced.
    fn send<'a>(
        &'a self,
        target: BrokerId,
        address: &'a str,
        kind: RpcKind,
        request: Vec<u8>,
    ) -> RpcFuture<'a>;
}

/// An incoming request, decoded.
enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        data: Vec<u8>,
    },
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    vote: Vote,
    meta: SnapshotMeta,
}

fn encode_request(kind: RpcKind, header: &impl Serialize, data: &[u8]) -> Vec<u8> {
    let header = serde_json::to_vec(header).expect("openraft requests serialise");
    let mut buf = Vec::with_capacity(REQUEST_HEADER_BYTES + header.len() + data.len());
    buf.extend_from_slice(REQUEST_MAGIC);
    buf.push(WIRE_VERSION);
    buf.push(kind as u8);
    buf.extend_from_slice(&(header.len() as u32).to_be_bytes());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(data);
    buf
}

fn decode_request(bytes: &[u8]) -> Result<Request, String> {
    if bytes.len() > MAX_RPC_BYTES {
        return Err(format!(
            "{} bytes is over the {MAX_RPC_BYTES}-byte limit",
            bytes.len()
        ));
    }
    if bytes.len() < REQUEST_HEADER_BYTES || &bytes[..4] != REQUEST_MAGIC {
        return Err("not a quorum request (bad magic)".into());
    }
    if bytes[4] != WIRE_VERSION {
        return Err(format!(
            "wire version {} (this node speaks {WIRE_VERSION})",
            bytes[4]
        ));
    }
    let kind =
        RpcKind::from_u8(bytes[5]).ok_or_else(|| format!("unknown RPC kind {}", bytes[5]))?;
    let header_len = u32::from_be_bytes(bytes[6..10].try_into().expect("4 bytes")) as usize;
    let rest = &bytes[REQUEST_HEADER_BYTES..];
    if header_len > rest.len() {
        return Err(format!(
            "header of {header_len} bytes is longer than the {}-byte body",
            rest.len()
        ));
    }
    let (header, data) = rest.split_at(header_len);
    let bad = |e: serde_json::Error| format!("{kind:?} request does not decode: {e}");
    match kind {
        RpcKind::AppendEntries | RpcKind::Vote if !data.is_empty() => Err(format!(
            "{kind:?} request has {} trailing bytes",
            data.len()
        )),
        RpcKind::AppendEntries => serde_json::from_slice(header)
            .map(Request::AppendEntries)
            .map_err(bad),
        RpcKind::Vote => serde_json::from_slice(header)
            .map(Request::Vote)
            .map_err(bad),
        RpcKind::Snapshot => {
            let SnapshotHeader { vote, meta } = serde_json::from_slice(header).map_err(bad)?;
            Ok(Request::Snapshot {
                vote,
                meta,
                data: data.to_vec(),
            })
        }
    }
}

fn encode_reply(kind: RpcKind, body: &impl Serialize) -> Vec<u8> {
    let body = serde_json::to_vec(body).expect("openraft replies serialise");
    let mut buf = Vec::with_capacity(REPLY_HEADER_BYTES + body.len());
    buf.extend_from_slice(REPLY_MAGIC);
    buf.push(WIRE_VERSION);
    buf.push(kind as u8);
    buf.extend_from_slice(&body);
    buf
}

fn decode_reply<T: serde::de::DeserializeOwned>(kind: RpcKind, bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > MAX_RPC_BYTES {
        return Err(format!("reply of {} bytes is over the limit", bytes.len()));
    }
    if bytes.len() < REPLY_HEADER_BYTES || &bytes[..4] != REPLY_MAGIC {
        return Err("not a quorum reply (bad magic)".into());
    }
    if bytes[4] != WIRE_VERSION || bytes[5] != kind as u8 {
        return Err(format!(
            "reply of version {} kind {} to a {kind:?} request",
            bytes[4], bytes[5]
        ));
    }
    serde_json::from_slice(&bytes[REPLY_HEADER_BYTES..])
        .map_err(|e| format!("{kind:?} reply does not decode: {e}"))
}

/// What serving one incoming RPC gave.
pub(crate) struct Served {
    /// The voter that sent the request (the leader, or the candidate, its vote names).
    pub(crate) sender: Option<NodeId>,
    /// The bytes to answer with.
    pub(crate) reply: Vec<u8>,
    /// For a vote request this voter granted: the term it voted in.
    pub(crate) granted_term: Option<u64>,
}

/// Serves one incoming RPC on `raft`: the receiving end of a [`QuorumTransport`].
pub(crate) async fn serve(raft: &Raft<TypeConfig>, request: &[u8]) -> Result<Served, QuorumError> {
    let served = |sender, reply| Served {
        sender,
        reply,
        granted_term: None,
    };
    match decode_request(request).map_err(QuorumError::BadRpc)? {
        Request::AppendEntries(rpc) => {
            let sender = rpc.vote.leader_id().voted_for();
            let reply = encode_reply(RpcKind::AppendEntries, &raft.append_entries(rpc).await);
            Ok(served(sender, reply))
        }
        Request::Vote(rpc) => {
            let sender = rpc.vote.leader_id().voted_for();
            let term = rpc.vote.leader_id().get_term();
            let answer = raft.vote(rpc).await;
            let granted = answer.as_ref().is_ok_and(|v| v.vote_granted);
            Ok(Served {
                sender,
                reply: encode_reply(RpcKind::Vote, &answer),
                granted_term: granted.then_some(term),
            })
        }
        Request::Snapshot { vote, meta, data } => {
            let sender = vote.leader_id().voted_for();
            let snapshot = Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            };
            let reply = encode_reply(
                RpcKind::Snapshot,
                &raft.install_full_snapshot(vote, snapshot).await,
            );
            Ok(served(sender, reply))
        }
    }
}

/// When each other voter last accepted this voter's leadership: the time the request it
/// accepted was sent (an AppendEntries answered with anything but a higher vote, or a
/// granted vote). The quorum's check-quorum reads it (`Quorum::is_leader`).
pub(crate) type Acknowledged = Arc<Mutex<BTreeMap<BrokerId, Instant>>>;

/// Makes a [`PeerClient`] per voter, addressed from the configured voter set.
pub(crate) struct NetworkFactory {
    pub(crate) transport: Arc<dyn QuorumTransport>,
    pub(crate) addresses: Arc<BTreeMap<NodeId, String>>,
    pub(crate) acknowledged: Acknowledged,
    pub(crate) heard: Heard,
    pub(crate) ballots: SharedBallots,
    /// Failures to reach each voter, logged without repeating every retry.
    pub(crate) failures: Arc<PeerLog>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        // The configured address wins over the one stored in the membership, so a voter
        // that moved host is found without a membership change.
        let address = self
            .addresses
            .get(&target)
            .cloned()
            .unwrap_or_else(|| node.addr.clone());
        PeerClient {
            transport: Arc::clone(&self.transport),
            target,
            address,
            acknowledged: Arc::clone(&self.acknowledged),
            heard: Arc::clone(&self.heard),
            ballots: Arc::clone(&self.ballots),
            failures: Arc::clone(&self.failures),
        }
    }
}

/// Sends RPCs to one voter.
pub(crate) struct PeerClient {
    transport: Arc<dyn QuorumTransport>,
    target: NodeId,
    address: String,
    acknowledged: Acknowledged,
    heard: Heard,
    ballots: SharedBallots,
    failures: Arc<PeerLog>,
}

impl Debug for PeerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerClient")
            .field("target", &self.target)
            .field("address", &self.address)
            .finish()
    }
}

/// How a call failed before a reply was decoded.
enum CallError {
    Unreachable(Unreachable),
    Network(NetworkError),
    Timeout(Duration),
}

impl PeerClient {
    /// The target accepted a request sent at `sent` as coming from its leader.
    fn acknowledged(&self, sent: Instant) {
        let Some(target) = broker_id(self.target) else {
            return;
        };
        let mut acknowledged = self.acknowledged.lock().unwrap_or_else(|p| p.into_inner());
        let last = acknowledged.entry(target).or_insert(sent);
        *last = (*last).max(sent);
    }

    async fn call(
        &self,
        kind: RpcKind,
        request: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let Some(target) = broker_id(self.target) else {
            let err = format!("node id {} is not a broker id", self.target);
            return Err(CallError::Unreachable(Unreachable::new(
                &openraft::AnyError::error(err),
            )));
        };
        let send = self.transport.send(target, &self.address, kind, request);
        match tokio::time::timeout(ttl, send).await {
            Err(_) => {
                let error = format!("no answer within {} ms", ttl.as_millis());
                self.failures.failed(target, &error);
                Err(CallError::Timeout(ttl))
            }
            Ok(Err(e @ TransportError::Unreachable { .. })) => {
                self.failures.failed(target, &e);
                Err(CallError::Unreachable(Unreachable::new(&e)))
            }
            Ok(Err(e @ TransportError::Failed { .. })) => {
                self.failures.failed(target, &e);
                Err(CallError::Network(NetworkError::new(&e)))
            }
            Ok(Ok(reply)) => {
                self.failures.answered(target);
                Ok(reply)
            }
        }
    }

    fn timeout(&self, action: RPCTypes, timeout: Duration) -> Timeout<NodeId> {
        Timeout {
            action,
            // The sender's id is not known here and only shows in messages.
            id: self.target,
            target: self.target,
            timeout,
        }
    }

    /// A decoded reply to a call whose remote error is `RaftError<E>`.
    async fn rpc<T, E>(
        &self,
        kind: RpcKind,
        action: RPCTypes,
        request: Vec<u8>,
        ttl: Duration,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        T: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let reply = self.call(kind, request, ttl).await.map_err(|e| match e {
            CallError::Unreachable(e) => RPCError::Unreachable(e),
            CallError::Network(e) => RPCError::Network(e),
            CallError::Timeout(ttl) => RPCError::Timeout(self.timeout(action, ttl)),
        })?;
        let result: Result<T, RaftError<NodeId, E>> =
            decode_reply(kind, &reply).map_err(|reason| {
                RPCError::Network(NetworkError::new(&openraft::AnyError::error(reason)))
            })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let entries = rpc.entries.len() as u64;
        let request = encode_request(RpcKind::AppendEntries, &rpc, &[]);
        if request.len() > MAX_RPC_BYTES && entries > 1 {
            // openraft sends fewer entries next time.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries / 2),
            ));
        }
        let sent = Instant::now();
        let answer = self
            .rpc(
                RpcKind::AppendEntries,
                RPCTypes::AppendEntries,
                request,
                option.hard_ttl(),
            )
            .await;
        if matches!(
            answer,
            Ok(AppendEntriesResponse::Success
                | AppendEntriesResponse::PartialSuccess(_)
                | AppendEntriesResponse::Conflict)
        ) {
            self.acknowledged(sent);
        }
        answer
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let request = encode_request(RpcKind::Vote, &rpc, &[]);
        let sent = Instant::now();
        let answer = self
            .rpc(RpcKind::Vote, RPCTypes::Vote, request, option.hard_ttl())
            .await;
        if answer
            .as_ref()
            .is_ok_and(|v: &VoteResponse<NodeId>| v.vote_granted)
        {
            self.acknowledged(sent);
            // The grant was made before it arrived here (module docs of `elections`).
            if let Some(target) = broker_id(self.target) {
                note_heard(&self.heard, target, Instant::now());
            }
            self.ballots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .request_granted(rpc.vote.leader_id().get_term(), sent);
        }
        answer
    }

    /// Never called: openraft 0.9 sends snapshots through [`Self::full_snapshot`], which
    /// this network overrides to send them whole.
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let reason = "snapshots are sent whole (full_snapshot), not in chunks";
        Err(RPCError::Network(NetworkError::new(
            &openraft::AnyError::error(reason),
        )))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let header = SnapshotHeader {
            vote,
            meta: snapshot.meta,
        };
        let request = encode_request(RpcKind::Snapshot, &header, snapshot.snapshot.get_ref());
        let ttl = option.hard_ttl();
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            reply = self.call(RpcKind::Snapshot, request, ttl) => reply,
        };
        let reply = reply.map_err(|e| match e {
            CallError::Unreachable(e) => StreamingError::Unreachable(e),
            CallError::Network(e) => StreamingError::Network(e),
            CallError::Timeout(ttl) => {
                StreamingError::Timeout(self.timeout(RPCTypes::InstallSnapshot, ttl))
            }
        })?;
        let result: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            decode_reply(RpcKind::Snapshot, &reply).map_err(|reason| {
                StreamingError::Network(NetworkError::new(&openraft::AnyError::error(reason)))
            })?;
        result.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;

    #[test]
    fn requests_round_trip_and_damage_is_refused() {
        let vote = VoteRequest::<NodeId>::new(
            Vote::new(3, 1),
            Some(LogId::new(CommittedLeaderId::new(2, 1), 7)),
        );
        let vote_bytes = encode_request(RpcKind::Vote, &vote, &[]);
        match decode_request(&vote_bytes).unwrap() {
            Request::Vote(back) => assert_eq!(back, vote),
            _ => panic!("not a vote"),
        }
        let header = SnapshotHeader {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta::default(),
        };
        let bytes = encode_request(RpcKind::Snapshot, &header, b"snapshot bytes");
        match decode_request(&bytes).unwrap() {
            Request::Snapshot { data, .. } => assert_eq!(data, b"snapshot bytes"),
            _ => panic!("not a snapshot"),
        }
        for (bad, needle) in [
            (b"XXXX".to_vec(), "magic"),
            ([&bytes[..5], &[9], &bytes[6..]].concat(), "kind 9"),
            (
                [&bytes[..6], &u32::MAX.to_be_bytes(), &bytes[10..]].concat(),
                "longer than",
            ),
            (vote_bytes[..vote_bytes.len() - 1].to_vec(), "longer than"),
            ([&vote_bytes[..], b"x"].concat(), "trailing"),
            (
                encode_request(RpcKind::Vote, &"not a vote", &[]),
                "does not decode",
            ),
        ] {
            let err = decode_request(&bad).err().unwrap();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let reply = encode_reply(RpcKind::Vote, &Ok::<u32, String>(5));
        assert_eq!(
            decode_reply::<Result<u32, String>>(RpcKind::Vote, &reply),
            Ok(Ok(5))
        );
        assert!(decode_reply::<Result<u32, String>>(RpcKind::Snapshot, &reply).is_err());
    }
}
