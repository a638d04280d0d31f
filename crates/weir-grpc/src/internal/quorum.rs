//! `Quorum.Raft`: openraft's RPCs between the voters of the metadata quorum, carried as
//! the opaque bytes `weir_cluster::quorum` encodes (framed and versioned there). The
//! server side, [`QuorumService`], hands them to [`Quorum::handle_rpc`]; the client
//! side, [`GrpcQuorumTransport`], is the quorum's [`QuorumTransport`].

use tonic::{Request, Response, Status};
use weir_cluster::BrokerId;
use weir_cluster::quorum::{Quorum, QuorumTransport, RpcFuture, RpcKind, TransportError};
use weir_proto::internal::v1::RaftMessage;
use weir_proto::internal::v1::quorum_client::QuorumClient;
use weir_proto::internal::v1::quorum_server;
use weir_security::dial::TlsDialer;

use super::peers::PeerChannels;
use super::{MAX_RAFT_MESSAGE_BYTES, peer_unreachable, quorum_status, wrong_voter};

/// The server side of the `Quorum` service: this voter's end of the quorum's network.
#[derive(Debug, Clone)]
pub struct QuorumService {
    quorum: Quorum,
}

impl QuorumService {
    pub fn new(quorum: Quorum) -> Self {
        QuorumService { quorum }
    }
}

#[tonic::async_trait]
impl quorum_server::Quorum for QuorumService {
    async fn raft(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let me = self.quorum.node();
        if message.target != me {
            return Err(wrong_voter(me, message.target));
        }
        let reply = self
            .quorum
            .handle_rpc(&message.payload)
            .await
            .map_err(quorum_status)?;
        Ok(Response::new(RaftMessage {
            target: 0,
            payload: reply.into(),
        }))
    }
}

/// Carries the quorum's RPCs to other voters over gRPC, one lazily connected channel
/// per voter address (the name resolved again at every reconnect). A voter that cannot
/// be reached, or that cannot serve this build's RPC, is
/// [`TransportError::Unreachable`], so openraft backs off before trying it again; a call
/// that broke midway is [`TransportError::Failed`]. openraft times each RPC itself.
#[derive(Debug, Default)]
pub struct GrpcQuorumTransport {
    peers: PeerChannels,
}

impl GrpcQuorumTransport {
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport that dials voters with `tls` (see `peers`), or in plaintext.
    pub fn with_tls(tls: Option<TlsDialer>) -> Self {
        GrpcQuorumTransport {
            peers: PeerChannels::new(tls),
        }
    }
}

impl QuorumTransport for GrpcQuorumTransport {
    fn send<'a>(
        &'a self,
        target: BrokerId,
        address: &'a str,
        kind: RpcKind,
        request: Vec<u8>,
    ) -> RpcFuture<'a> {
        Box::pin(async move {
            let channel = self
                .peers
                .channel(address)
                .map_err(|e| TransportError::Unreachable {
                    target,
                    address: address.to_string(),
                    source: Box::new(e),
                })?;
            let mut client = QuorumClient::new(channel)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES);
            let message = RaftMessage {
                target,
                payload: request.into(),
            };
            match client.raft(message).await {
                Ok(reply) => Ok(reply.into_inner().payload.into()),
                Err(status) => {
                    tracing::debug!(target, address, ?kind, code = ?status.code(), error = status.message(), "quorum RPC failed");
                    let address = address.to_string();
                    let source = Box::new(status);
                    Err(if peer_unreachable(&source) {
                        TransportError::Unreachable {
                            target,
                            address,
                            source,
                        }
                    } else {
                        TransportError::Failed {
                            target,
                            address,
                            source,
                        }
                    })
                }
            }
        })
    }
}
