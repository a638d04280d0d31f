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
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The principal the client's verified TLS certificate names (mutual TLS), if it
    /// presented one.
    pub certificate_principal: Option<String>,
    /// The user the connection authenticated as with SASL, once it has (set once:
    /// re-authentication is not offered).
    pub sasl_principal: std::sync::OnceLock<String>,
}

impl ConnectionInfo {
    /// Who the connection is: its SASL user, else its certificate's principal.
    pub fn principal(&self) -> Option<&str> {
        self.sasl_principal
            .get()
            .or(self.certificate_principal.as_ref())
            .map(String::as_str)
    }
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

    /// Whether this broker can serve no client for now (cut off from its cluster): the
    /// listener turns new connections away (accepts and closes them) meanwhile. A Kafka
    /// client keeps asking the broker it last used for metadata (librdkafka prefers the
    /// least idle connection), so a broker that stays reachable but answers "no leader"
    /// would hold it there for as long as the cut lasts; a closed connection sends it to
    /// the other brokers at once. By default, never.
    fn is_cut_off(&self) -> bool {
        false
    }

    /// The SASL rules and users' credentials of this listener; `None`: SASL is off
    /// (a SaslHandshake is answered with no mechanism).
    fn sasl(&self) -> Option<&dyn crate::sasl::SaslAuthority> {
        None
    }

    /// Resolves once [`Self::is_cut_off`] turns true (at once if it is): each connection
    /// then stops reading requests, answers those in flight and closes. By default, never.
    fn until_cut_off(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

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

    /// The body of `message` encoded at `version`, with each of `shared` (byte strings the
    /// message holds, in the order it encodes them: a fetch answer's record batches as the
    /// log read them) passed on as a chunk of its own instead of copied into the body. A
    /// field that is not one of them, or one out of order, is copied as by
    /// [`Response::encode`]: the answer is the same bytes either way.
    pub fn encode_sharing<M: Encodable>(
        message: &M,
        version: i16,
        shared: Vec<Bytes>,
    ) -> Result<Response, HandlerError> {
        let encode_error =
            |source: Box<dyn StdError + Send + Sync>| HandlerError::Encode { version, source };
        let size = message
            .compute_size(version)
            .map_err(|e| encode_error(e.into()))?;
        let shared_bytes: usize = shared.iter().map(Bytes::len).sum();
        let mut body = SharingBuf::new(size.saturating_sub(shared_bytes), shared);
        message
            .encode(&mut body, version)
            .map_err(|e| encode_error(e.into()))?;
        Ok(Response::Body(body.finish()))
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

/// An encoding buffer that copies everything into its own chunks except the byte strings
/// it was given, which it recognises by address and length when the encoder puts them and
/// keeps as chunks of their own (reference-counted, not copied).
///
/// kafka-protocol's message encoders write a bytes field with one `put_slice` of the
/// field's whole value, and use gaps (`seek`, `range`) only inside record batches, which a
/// response carries as opaque bytes; `range` is served within the current chunk, which is
/// where any gap would be.
struct SharingBuf {
    /// The copied bytes since the last shared chunk.
    current: BytesMut,
    /// Finished chunks, in order.
    chunks: Vec<Bytes>,
    /// Bytes in `chunks`.
    finished: usize,
    /// The byte strings to share, in the order they are expected; `next` is the first not
    /// yet seen.
    shared: Vec<Bytes>,
    next: usize,
}

impl SharingBuf {
    fn new(copied_capacity: usize, shared: Vec<Bytes>) -> SharingBuf {
        SharingBuf {
            current: BytesMut::with_capacity(copied_capacity),
            chunks: Vec::with_capacity(2 * shared.len() + 1),
            finished: 0,
            shared,
            next: 0,
        }
    }

    fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() || self.chunks.is_empty() {
            self.chunks.push(self.current.freeze());
        }
        self.chunks
    }

    /// The next byte string to share, if `src` is it.
    fn shared_match(&self, src: &[u8]) -> Option<&Bytes> {
        let candidate = self.shared.get(self.next)?;
        let same = !src.is_empty()
            && std::ptr::eq(src.as_ptr(), candidate.as_ptr())
            && src.len() == candidate.len();
        same.then_some(candidate)
    }
}

// SAFETY: every method delegates to `current` (a `BytesMut`, whose own implementation
// upholds `BufMut`'s contract); `put_slice` either does the same or appends a whole chunk
// after `current`, which `advance_mut` and `chunk_mut` never see.
unsafe impl bytes::BufMut for SharingBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise about `cnt` is about `current`'s `chunk_mut`.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if let Some(chunk) = self.shared_match(src).cloned() {
            let copied = self.current.split().freeze();
            if !copied.is_empty() {
                self.finished += copied.len();
                self.chunks.push(copied);
            }
            self.finished += chunk.len();
            self.chunks.push(chunk);
            self.next += 1;
        } else {
            self.current.put_slice(src);
        }
    }
}

impl kafka_protocol::protocol::buf::ByteBufMut for SharingBuf {
    fn offset(&self) -> usize {
        self.finished + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        let within = offset.checked_sub(self.finished).expect(
            "a seek back into a finished chunk: kafka-protocol's message encoders never do",
        );
        self.current.resize(within, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        let start = r
            .start
            .checked_sub(self.finished)
            .expect("a range in a finished chunk: kafka-protocol's message encoders never ask");
        &mut self.current[start..r.end - self.finished]
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

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};

    use super::*;

    fn body(response: Response) -> Vec<Bytes> {
        match response {
            Response::Body(chunks) => chunks,
            Response::Silent => panic!("an answer was expected"),
        }
    }

    fn fetch_answer(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(7)
                    .with_records(Some(r.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default().with_partitions(partitions),
        ])
    }

    #[test]
    fn shared_record_bytes_are_chunks_of_their_own_and_the_answer_is_the_same_bytes() {
        let records: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![i; 5000])).collect();
        let message = fetch_answer(&records);
        for version in [4, 11, 12, 16] {
            let copied = body(Response::encode(&message, version).unwrap()).concat();
            let chunks =
                body(Response::encode_sharing(&message, version, records.clone()).unwrap());
            assert_eq!(chunks.concat(), copied, "v{version}");
            // Each record string is one chunk, at the address the log's read gave it.
            for r in &records {
                assert!(
                    chunks
                        .iter()
                        .any(|c| c.as_ptr() == r.as_ptr() && c.len() == r.len()),
                    "v{version}: a record string was copied"
                );
            }
            // Header bytes before each, and tagged fields after the last from v12 on.
            let expected = 2 * records.len() + usize::from(version >= 12);
            assert_eq!(chunks.len(), expected, "v{version}");
        }
    }

    #[test]
    fn bytes_not_shared_or_out_of_order_are_copied_and_still_answer_the_same() {
        let records: Vec<Bytes> = (0..2u8).map(|i| Bytes::from(vec![i; 5000])).collect();
        let message = fetch_answer(&records);
        let copied = body(Response::encode(&message, 12).unwrap()).concat();
        // Equal contents at another address, and the right strings in the wrong order.
        let lookalike = vec![Bytes::from(records[0].to_vec())];
        let reversed = vec![records[1].clone(), records[0].clone()];
        for shared in [lookalike, reversed, Vec::new()] {
            let chunks = body(Response::encode_sharing(&message, 12, shared).unwrap());
            assert_eq!(chunks.concat(), copied);
        }
    }
}
