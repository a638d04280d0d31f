//! `Controller.Call` and `Controller.FetchMetadata`: brokers' requests to the active
//! controller and the metadata stream observers follow (`docs/replication.md` § 1).
//! The server side, [`ControllerService`], answers through a [`ControllerHandler`] (the
//! broker's controller driver, over its quorum); the client side is
//! [`GrpcControllerClient`]. Requests, replies and records travel as serde JSON of the
//! controller's types, stamped with [`CONTROLLER_WIRE_VERSION`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Code, Request, Response, Status};
use weir_cluster::BrokerId;
use weir_cluster::controller::{ControllerReply, ControllerRequest, MetadataOffset, json};
use weir_cluster::quorum::MetadataDelta;
use weir_cluster::replication::BoxFuture;
use weir_proto::internal::v1 as wire;
use weir_security::dial::TlsDialer;
use wire::controller_client::ControllerClient;
use wire::controller_server::Controller;
use wire::{controller_call_reply, fetch_metadata_reply};

use super::peers::PeerChannels;
use super::{
    MAX_CONTROLLER_REPLY_BYTES, MAX_CONTROLLER_REQUEST_BYTES, convert, handler_status, malformed,
    wire_version_mismatch,
};

/// The version of the serde forms this build sends and reads. Both ends run the same
/// build; a message of another version is refused, never guessed at.
pub const CONTROLLER_WIRE_VERSION: u32 = 1;
/// Most records one metadata fetch returns (a request for 0 or more gets this many).
pub const MAX_METADATA_RECORDS_PER_FETCH: usize = 4096;
/// How long a [`GrpcControllerClient`] waits for an answer by default: connecting, and
/// the controller committing what the request wrote.
pub const DEFAULT_CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a [`ControllerHandler`] did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerHandlerError {
    /// This broker is not the active controller: an answer, not a failure. The caller
    /// retries at `leader` (node id and internal address), or after a back-off when no
    /// controller is known.
    #[error("this broker is not the active controller ({})", describe_leader(.leader))]
    NotController { leader: Option<(BrokerId, String)> },
    /// The controller cannot answer now (its quorum stopped, lost its leadership
    /// mid-request, a commit timed out): retriable.
    #[error("the controller cannot answer now: {reason}")]
    Unavailable { reason: String },
    /// The request cannot be served as asked (e.g. a metadata offset ahead of the log).
    #[error("{reason}")]
    InvalidArgument { reason: String },
}

fn describe_leader(leader: &Option<(BrokerId, String)>) -> String {
    match leader {
        Some((id, address)) => format!("the active controller is node {id} at {address}"),
        None => "no active controller is known; an election may be under way".to_string(),
    }
}

/// What the broker's controller side does for the [`ControllerService`]: object-safe,
/// so the service holds an `Arc<dyn ControllerHandler>`.
pub trait ControllerHandler: Send + Sync + 'static {
    /// Handles one request on the active controller; the reply (a refusal included) is
    /// sent once the records it wrote are committed.
    fn call(
        &self,
        request: ControllerRequest,
    ) -> BoxFuture<'_, Result<ControllerReply, ControllerHandlerError>>;

    /// Up to `max_records` committed records from `from_offset` on, or the whole image
    /// when `from_offset` is older than the records kept (`Quorum::records_since`); with
    /// nothing new, it may hold the fetch up to `wait` for a record.
    /// `from_offset` is not negative and `max_records` is within
    /// 1..=[`MAX_METADATA_RECORDS_PER_FETCH`].
    fn fetch_metadata(
        &self,
        from_offset: MetadataOffset,
        max_records: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<MetadataDelta, ControllerHandlerError>>;
}

/// The server side of the `Controller` service.
#[derive(Clone)]
pub struct ControllerService {
    handler: Arc<dyn ControllerHandler>,
}

impl fmt::Debug for ControllerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllerService").finish_non_exhaustive()
    }
}

impl ControllerService {
    pub fn new(handler: Arc<dyn ControllerHandler>) -> Self {
        ControllerService { handler }
    }
}

/// The records a metadata fetch asking for `max_records` gets at most.
fn records_limit(max_records: u32) -> usize {
    match max_records as usize {
        0 => MAX_METADATA_RECORDS_PER_FETCH,
        n => n.min(MAX_METADATA_RECORDS_PER_FETCH),
    }
}

fn check_wire_version(given: u32) -> Result<(), Status> {
    if given == CONTROLLER_WIRE_VERSION {
        Ok(())
    } else {
        Err(wire_version_mismatch(given))
    }
}

fn not_controller(leader: Option<(BrokerId, String)>) -> wire::NotController {
    match leader {
        Some((id, address)) => wire::NotController {
            controller_id: Some(id),
            controller_address: address,
        },
        None => wire::NotController::default(),
    }
}

fn leader_of(n: wire::NotController) -> Option<(BrokerId, String)> {
    n.controller_id.map(|id| (id, n.controller_address))
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn call(
        &self,
        request: Request<wire::ControllerCall>,
    ) -> Result<Response<wire::ControllerCallReply>, Status> {
        let call = request.into_inner();
        check_wire_version(call.wire_version)?;
        let request =
            json::decode_request(&call.request).map_err(|e| malformed("controller request", e))?;
        let outcome = match self.handler.call(request).await {
            Ok(reply) => {
                controller_call_reply::Outcome::Reply(convert::encode_reply(&reply).into())
            }
            Err(ControllerHandlerError::NotController { leader }) => {
                controller_call_reply::Outcome::NotController(not_controller(leader))
            }
            Err(e) => return Err(handler_status(e)),
        };
        Ok(Response::new(wire::ControllerCallReply {
            wire_version: CONTROLLER_WIRE_VERSION,
            outcome: Some(outcome),
        }))
    }

    async fn fetch_metadata(
        &self,
        request: Request<wire::FetchMetadataRequest>,
    ) -> Result<Response<wire::FetchMetadataReply>, Status> {
        let request = request.into_inner();
        check_wire_version(request.wire_version)?;
        if request.from_offset < 0 {
            return Err(crate::status::invalid(format!(
                "metadata offset {} is negative; an empty image asks from 0",
                request.from_offset
            )));
        }
        let max_records = records_limit(request.max_records);
        let wait = Duration::from_millis(u64::from(request.max_wait_ms));
        let delta = self
            .handler
            .fetch_metadata(request.from_offset, max_records, wait)
            .await;
        let outcome = match delta {
            Ok(MetadataDelta::Records {
                first_offset,
                mut records,
            }) => {
                records.truncate(max_records);
                fetch_metadata_reply::Outcome::Records(wire::MetadataRecords {
                    first_offset,
                    records: json::encode_records(&records).into(),
                })
            }
            Ok(MetadataDelta::Image(image)) => {
                // A whole image may be large: encode it off the async threads.
                let encoded = tokio::task::spawn_blocking(move || json::encode_image(&image))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                fetch_metadata_reply::Outcome::Image(encoded.into())
            }
            Err(ControllerHandlerError::NotController { leader }) => {
                fetch_metadata_reply::Outcome::NotController(not_controller(leader))
            }
            Err(e) => return Err(handler_status(e)),
        };
        Ok(Response::new(wire::FetchMetadataReply {
            wire_version: CONTROLLER_WIRE_VERSION,
            outcome: Some(outcome),
        }))
    }
}

/// Why a call to a controller brought back no reply.
#[derive(Debug, thiserror::Error)]
pub enum ControllerClientError {
    /// The broker asked is not the active controller; retry at `leader` if known, else
    /// after a back-off.
    #[error("the broker at {address} is not the active controller ({})", describe_leader(.leader))]
    NotController {
        address: String,
        leader: Option<(BrokerId, String)>,
    },
    /// Not reachable, or it cannot answer now (UNAVAILABLE): retriable.
    #[error("the controller at {address} is unavailable: {}", .status.message())]
    Unavailable {
        address: String,
        #[source]
        status: Status,
    },
    /// No answer in time; the request may or may not have been carried out (requests
    /// are safe to repeat).
    #[error("the controller at {address} did not answer within {} ms", .timeout.as_millis())]
    TimedOut { address: String, timeout: Duration },
    /// The controller refused the call itself (another wire version, a malformed or
    /// invalid request): retrying the same call will not help.
    #[error("the controller at {address} refused the call ({:?}): {}", .status.code(), .status.message())]
    Refused {
        address: String,
        #[source]
        status: Status,
    },
    /// The reply does not decode, or is of another wire version.
    #[error("the controller at {address} sent a reply this broker cannot read: {reason}")]
    BadReply { address: String, reason: String },
    #[error("invalid controller address {address:?}: {source}")]
    InvalidAddress {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl ControllerClientError {
    /// Whether the same call may succeed later or at another broker.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ControllerClientError::NotController { .. }
                | ControllerClientError::Unavailable { .. }
                | ControllerClientError::TimedOut { .. }
        )
    }

    fn from_status(address: &str, status: Status) -> Self {
        let address = address.to_string();
        match status.code() {
            Code::Unavailable => ControllerClientError::Unavailable { address, status },
            _ => ControllerClientError::Refused { address, status },
        }
    }
}

/// Calls the active controller over gRPC, one lazily connected channel per address.
#[derive(Debug)]
pub struct GrpcControllerClient {
    peers: PeerChannels,
    timeout: Duration,
}

impl Default for GrpcControllerClient {
    fn default() -> Self {
        GrpcControllerClient::new(DEFAULT_CONTROLLER_CALL_TIMEOUT)
    }
}

impl GrpcControllerClient {
    /// A client whose calls give up after `timeout` (connecting included).
    pub fn new(timeout: Duration) -> Self {
        GrpcControllerClient {
            peers: PeerChannels::default(),
            timeout,
        }
    }

    /// This client, dialling with `tls` (see `peers`), or in plaintext.
    pub fn with_tls(self, tls: Option<TlsDialer>) -> Self {
        GrpcControllerClient {
            peers: PeerChannels::new(tls),
            ..self
        }
    }

    fn client(
        &self,
        address: &str,
    ) -> Result<ControllerClient<tonic::transport::Channel>, ControllerClientError> {
        let channel = self.peers.channel(address).map_err(|source| {
            ControllerClientError::InvalidAddress {
                address: address.to_string(),
                source,
            }
        })?;
        Ok(ControllerClient::new(channel)
            .max_encoding_message_size(MAX_CONTROLLER_REQUEST_BYTES)
            .max_decoding_message_size(MAX_CONTROLLER_REPLY_BYTES))
    }

    async fn within<T>(
        &self,
        address: &str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, ControllerClientError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(ControllerClientError::TimedOut {
                address: address.to_string(),
                timeout: self.timeout,
            }),
            Ok(Err(status)) => Err(ControllerClientError::from_status(address, status)),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    /// Sends `request` to the broker at `address` (`host:port` of its internal
    /// listener); the reply is the active controller's, a refusal included. Not the
    /// controller: [`ControllerClientError::NotController`] names the one to retry at.
    pub async fn call(
        &self,
        address: &str,
        request: &ControllerRequest,
    ) -> Result<ControllerReply, ControllerClientError> {
        let mut client = self.client(address)?;
        let call = wire::ControllerCall {
            wire_version: CONTROLLER_WIRE_VERSION,
            request: json::encode_request(request).into(),
        };
        let reply = self.within(address, client.call(call)).await?;
        let bad = |reason: String| ControllerClientError::BadReply {
            address: address.to_string(),
            reason,
        };
        check_reply_version(reply.wire_version).map_err(bad)?;
        match reply.outcome {
            Some(controller_call_reply::Outcome::Reply(bytes)) => convert::decode_reply(&bytes)
                .map_err(|e| bad(format!("the reply does not decode: {e}"))),
            Some(controller_call_reply::Outcome::NotController(n)) => {
                Err(ControllerClientError::NotController {
                    address: address.to_string(),
                    leader: leader_of(n),
                })
            }
            None => Err(bad("the reply is empty".to_string())),
        }
    }

    /// Up to `max_records` committed records from `from_offset` (0: the controller's
    /// maximum), or the whole image when `from_offset` is older than the records the
    /// controller keeps. With nothing new the controller may hold the fetch up to
    /// `wait` (this client's timeout must be longer).
    pub async fn fetch_metadata(
        &self,
        address: &str,
        from_offset: MetadataOffset,
        max_records: u32,
        wait: Duration,
    ) -> Result<MetadataDelta, ControllerClientError> {
        let mut client = self.client(address)?;
        let request = wire::FetchMetadataRequest {
            wire_version: CONTROLLER_WIRE_VERSION,
            from_offset,
            max_records,
            max_wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        };
        let reply = self.within(address, client.fetch_metadata(request)).await?;
        let bad = |reason: String| ControllerClientError::BadReply {
            address: address.to_string(),
            reason,
        };
        check_reply_version(reply.wire_version).map_err(bad)?;
        match reply.outcome {
            Some(fetch_metadata_reply::Outcome::Records(r)) => {
                let records = json::decode_records(&r.records)
                    .map_err(|e| bad(format!("the records do not decode: {e}")))?;
                let asked = records_limit(max_records);
                if records.len() > asked {
                    return Err(bad(format!(
                        "{} records, but {asked} were asked for",
                        records.len()
                    )));
                }
                if r.first_offset != from_offset {
                    return Err(bad(format!(
                        "records from offset {}, but offset {from_offset} was asked for",
                        r.first_offset
                    )));
                }
                Ok(MetadataDelta::Records {
                    first_offset: r.first_offset,
                    records,
                })
            }
            Some(fetch_metadata_reply::Outcome::Image(bytes)) => {
                let image = tokio::task::spawn_blocking(move || json::decode_image(&bytes))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
                    .map_err(|e| bad(format!("the image does not decode: {e}")))?;
                Ok(MetadataDelta::Image(Arc::new(image)))
            }
            Some(fetch_metadata_reply::Outcome::NotController(n)) => {
                Err(ControllerClientError::NotController {
                    address: address.to_string(),
                    leader: leader_of(n),
                })
            }
            None => Err(bad("the reply is empty".to_string())),
        }
    }
}

fn check_reply_version(given: u32) -> Result<(), String> {
    if given == CONTROLLER_WIRE_VERSION {
        Ok(())
    } else {
        Err(format!(
            "wire version {given}, but this broker speaks version {CONTROLLER_WIRE_VERSION}: every broker of a cluster must run the same build"
        ))
    }
}
