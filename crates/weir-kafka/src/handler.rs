//! The contract between the listener and the broker core: the [`Handler`] trait, what it
//! is given ([`ConnectionInfo`], [`Request`]) and what it answers ([`Response`],
//! [`HandlerError`]).

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use crate::apis;
use crate::frame::Request;

/// The connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Numbers the listener's connections from 0, for logs.
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// The broker core as the listener sees it: it answers every request of a served api
/// except ApiVersions, which the listener answers from [`Handler::supported_apis`].
///
/// The listener calls `handle` on the connection's task in request order, and the work a
/// handler does before returning its future happens in that order too (a produce
/// handler that must append pipelined requests in order enqueues them there). The
/// futures then run concurrently, up to
/// [`MAX_IN_FLIGHT_PER_CONNECTION`](crate::MAX_IN_FLIGHT_PER_CONNECTION) per connection,
/// and their answers are written in request order whatever order they finish in.
pub trait Handler: Send + Sync + 'static {
    /// The apis and versions served, as `(api key, min version, max version)`: what
    /// ApiVersions advertises. A request outside them closes the connection, as Kafka
    /// does. Every range must be one kafka-protocol can decode and answer
    /// ([`apis::codec_versions`]); `serve` checks.
    fn supported_apis(&self) -> &[(ApiKey, i16, i16)] {
        apis::SUPPORTED
    }

    /// Answers one request. An error closes the connection after the answers before it
    /// are written (Kafka closes it when a request cannot be parsed); a handler turns the
    /// broker's own refusals into the error codes of its response instead.
    fn handle(
        &self,
        connection: &ConnectionInfo,
        request: Request,
    ) -> impl Future<Output = Result<Response, HandlerError>> + Send;

    /// Starts one request: what must happen in request order runs in the future this
    /// returns, which the connection awaits before it reads the next request; the
    /// request then completes in the future that one yields, concurrently with others.
    /// A produce queues its appends here, so pipelined produces to one partition are
    /// appended in the order they were sent (an idempotent producer's sequences depend
    /// on it); while a partition's queue is full, the connection stops reading, and TCP
    /// slows the client. By default nothing is ordered: the request is [`Self::handle`]d
    /// in flight.
    fn start<'a>(
        &'a self,
        connection: &'a ConnectionInfo,
        request: Request,
    ) -> impl Future<Output = Pending<'a>> + Send + 'a {
        // The point of `start`: its output is the request's own future, awaited later.
        #[allow(clippy::async_yields_async)]
        async move {
            Box::pin(self.handle(connection, request)) as Pending<'a>
        }
    }
}

/// A started request, completing in flight (see [`Handler::start`]).
pub type Pending<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<Response, HandlerError>> + Send + 'a>>;

/// A handler's answer to one request.
#[derive(Debug, Clone)]
pub enum Response {
    /// The response body (what follows the response header), as chunks written with one
    /// vectored write: a fetch answer passes the log's record bytes as chunks of their own,
    /// never copied.
    Body(Vec<Bytes>),
    /// No answer at all: a produce request with acks=0.
    Silent,
}

impl Response {
    /// The body of `message` encoded at `version`, in one chunk.
    pub fn encode<M: Encodable>(message: &M, version: i16) -> Result<Response, HandlerError> {
        let encode_error =
            |source: Box<dyn StdError + Send + Sync>| HandlerError::Encode { version, source };
        let size = message
            .compute_size(version)
            .map_err(|e| encode_error(e.into()))?;
        let mut body = BytesMut::with_capacity(size);
        message
            .encode(&mut body, version)
            .map_err(|e| encode_error(e.into()))?;
        Ok(Response::Body(vec![body.freeze()]))
    }

    /// The body's length in bytes (0 for [`Response::Silent`]).
    pub fn len(&self) -> usize {
        match self {
            Response::Body(chunks) => chunks.iter().map(Bytes::len).sum(),
            Response::Silent => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a handler could not answer a request; the listener closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The body does not decode at the request's version (Kafka's `InvalidRequestException`
    /// from `RequestContext.parseRequest`).
    #[error("malformed {api_key:?} v{api_version} request body: {source}")]
    MalformedBody {
        api_key: ApiKey,
        api_version: i16,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The response does not encode at the request's version: a bug in the handler (a
    /// field the version cannot carry).
    #[error("encoding a v{version} response: {source}")]
    Encode {
        version: i16,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The broker core failed without an answer the protocol can carry.
    #[error("the broker could not answer: {source}")]
    Broker {
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}
