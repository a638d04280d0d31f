//! The contract between the listener and the broker core: the [`Handler`] trait, what it
//! is given ([`ConnectionInfo`], [`Request`]) and what it answers ([`Response`],
//! [`HandlerError`]).

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use weir_broker::fetch::FileSlice;

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

    /// Whether a request of `api_key` may run while others of its connection are in
    /// flight. `false`: as Kafka handles every request, it starts once every earlier
    /// request of the connection is answered, and the connection reads nothing more until
    /// it is answered, so it sees what the requests before it did and the requests after
    /// it see what it did. By default every request may.
    fn pipelined(&self, api_key: ApiKey) -> bool {
        let _ = api_key;
        true
    }

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
    /// The response body (what follows the response header), as chunks written in order:
    /// a fetch answer passes the log's record bytes as chunks of their own, never copied,
    /// and record bytes left in their segment file as [`Chunk::File`].
    Body(Vec<Chunk>),
    /// No answer at all: a produce request with acks=0.
    Silent,
}

/// A piece of an answer's body.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Bytes in memory, written with the others around them in one vectored write.
    Bytes(Bytes),
    /// Record batches left in their segment file: sent with `sendfile` on a plain socket
    /// (from the page cache to the socket, never through the broker's memory), read and
    /// written on a TLS one.
    File(FileSlice),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Bytes(bytes) => bytes.len(),
            Chunk::File(slice) => slice.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A byte string a message holds that an encoding passes on as a chunk of its own
/// ([`Response::encode_sharing`]): `held` is the string as the message holds it, found by
/// its address and length when the encoder writes it; `chunk` is what goes in its place.
#[derive(Debug, Clone)]
pub struct Shared {
    pub held: Bytes,
    pub chunk: Chunk,
}

impl Shared {
    /// Bytes passed on as themselves.
    pub fn bytes(bytes: Bytes) -> Shared {
        Shared {
            held: bytes.clone(),
            chunk: Chunk::Bytes(bytes),
        }
    }

    /// Record batches left in their file: the message holds a [`stand_in`] of their
    /// length, which the encoding replaces with the file chunk. `None` if there is no
    /// stand-in that long (the caller reads the slice into memory instead).
    pub fn file(slice: FileSlice) -> Option<Shared> {
        Some(Shared {
            held: stand_in(slice.len())?,
            chunk: Chunk::File(slice),
        })
    }
}

/// The longest [`stand_in`]: a fetch answer's own limit, which no partition's records pass.
pub const MAX_STAND_IN_BYTES: usize = weir_broker::limits::MAX_RESPONSE_BYTES;

/// A byte string of `len` bytes that stands in a message for record bytes that are sent
/// from their file: the message's encoder must be given a string of the records' length
/// to write its length prefix, and [`Response::encode_sharing`] puts the file chunk where
/// the encoder writes the string, so its bytes are never read. Every stand-in is a slice
/// of one read-only anonymous mapping of [`MAX_STAND_IN_BYTES`], made once: address
/// space, not memory (the pages are never touched). `None` above that length, or if the
/// mapping could not be made.
pub fn stand_in(len: usize) -> Option<Bytes> {
    static STAND_INS: LazyLock<Option<memmap2::Mmap>> = LazyLock::new(|| {
        let mapping = memmap2::MmapOptions::new()
            .len(MAX_STAND_IN_BYTES)
            .map_anon()
            .and_then(memmap2::MmapMut::make_read_only);
        match mapping {
            Ok(mapping) => Some(mapping),
            Err(err) => {
                tracing::warn!(error = %err, "no address space for fetch stand-ins: record bytes are read into memory to be sent");
                None
            }
        }
    });
    let mapping: &'static memmap2::Mmap = STAND_INS.as_ref()?;
    (len <= mapping.len()).then(|| Bytes::from_static(&mapping[..len]))
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
        Ok(Response::Body(vec![Chunk::Bytes(body.freeze())]))
    }

    /// The body of `message` encoded at `version`, with each of `shared` (byte strings the
    /// message holds, in the order it encodes them: a fetch answer's record batches as the
    /// log read them, or stand-ins for those left in their file) replaced by its chunk
    /// instead of copied into the body. A field that is not one of them, or one out of
    /// order, is copied as by [`Response::encode`]: the answer is the same bytes either
    /// way (a stand-in's place holds the file's bytes).
    pub fn encode_sharing<M: Encodable>(
        message: &M,
        version: i16,
        shared: Vec<Shared>,
    ) -> Result<Response, HandlerError> {
        let encode_error =
            |source: Box<dyn StdError + Send + Sync>| HandlerError::Encode { version, source };
        let size = message
            .compute_size(version)
            .map_err(|e| encode_error(e.into()))?;
        let shared_bytes: usize = shared.iter().map(|s| s.held.len()).sum();
        let mut body = SharingBuf::new(size.saturating_sub(shared_bytes), shared);
        message
            .encode(&mut body, version)
            .map_err(|e| encode_error(e.into()))?;
        Ok(Response::Body(body.finish()))
    }

    /// The body's length in bytes (0 for [`Response::Silent`]).
    pub fn len(&self) -> usize {
        match self {
            Response::Body(chunks) => chunks.iter().map(Chunk::len).sum(),
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
    chunks: Vec<Chunk>,
    /// Bytes in `chunks`.
    finished: usize,
    /// The byte strings to share, in the order they are expected; `next` is the first not
    /// yet seen.
    shared: Vec<Shared>,
    next: usize,
}

impl SharingBuf {
    fn new(copied_capacity: usize, shared: Vec<Shared>) -> SharingBuf {
        SharingBuf {
            current: BytesMut::with_capacity(copied_capacity),
            chunks: Vec::with_capacity(2 * shared.len() + 1),
            finished: 0,
            shared,
            next: 0,
        }
    }

    fn finish(mut self) -> Vec<Chunk> {
        if !self.current.is_empty() || self.chunks.is_empty() {
            self.chunks.push(Chunk::Bytes(self.current.freeze()));
        }
        self.chunks
    }

    /// The chunk for the next byte string to share, if `src` is that string.
    fn shared_match(&self, src: &[u8]) -> Option<&Chunk> {
        let candidate = self.shared.get(self.next)?;
        let same = !src.is_empty()
            && std::ptr::eq(src.as_ptr(), candidate.held.as_ptr())
            && src.len() == candidate.held.len();
        same.then_some(&candidate.chunk)
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
                self.chunks.push(Chunk::Bytes(copied));
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
            Response::Body(chunks) => chunks
                .into_iter()
                .map(|chunk| match chunk {
                    Chunk::Bytes(bytes) => bytes,
                    Chunk::File(_) => panic!("no file chunks here"),
                })
                .collect(),
            Response::Silent => panic!("an answer was expected"),
        }
    }

    fn shared(records: &[Bytes]) -> Vec<Shared> {
        records.iter().cloned().map(Shared::bytes).collect()
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
                body(Response::encode_sharing(&message, version, shared(&records)).unwrap());
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
    fn a_stand_in_is_replaced_by_its_file_chunk_and_the_answer_is_the_records_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, slice) = crate::testing::file_slice(dir.path(), 2);
        let records = slice.read().unwrap();
        let small = Bytes::from(vec![9; 5000]);
        let with_records = fetch_answer(&[records.clone(), small.clone()]);
        let file = Shared::file(slice.clone()).expect("a stand-in this long");
        let with_stand_in = fetch_answer(&[file.held.clone(), small.clone()]);
        for version in [4, 12, 16] {
            let expected = body(Response::encode(&with_records, version).unwrap()).concat();
            let shared = vec![file.clone(), Shared::bytes(small.clone())];
            let Response::Body(chunks) =
                Response::encode_sharing(&with_stand_in, version, shared).unwrap()
            else {
                panic!("an answer was expected");
            };
            let files = chunks
                .iter()
                .filter(|c| matches!(c, Chunk::File(f) if f.position() == slice.position()))
                .count();
            assert_eq!(
                files, 1,
                "v{version}: the file chunk is where the stand-in was"
            );
            let sent: Vec<u8> = chunks
                .iter()
                .flat_map(|chunk| match chunk {
                    Chunk::Bytes(bytes) => bytes.to_vec(),
                    Chunk::File(slice) => slice.read().unwrap().to_vec(),
                })
                .collect();
            assert!(sent == expected, "v{version}: the answer's bytes differ");
        }
        assert!(stand_in(MAX_STAND_IN_BYTES).is_some());
        assert!(stand_in(MAX_STAND_IN_BYTES + 1).is_none());
    }

    #[test]
    fn bytes_not_shared_or_out_of_order_are_copied_and_still_answer_the_same() {
        let records: Vec<Bytes> = (0..2u8).map(|i| Bytes::from(vec![i; 5000])).collect();
        let message = fetch_answer(&records);
        let copied = body(Response::encode(&message, 12).unwrap()).concat();
        // Equal contents at another address, and the right strings in the wrong order.
        let lookalike = vec![Bytes::from(records[0].to_vec())];
        let reversed = vec![records[1].clone(), records[0].clone()];
        for strings in [lookalike, reversed, Vec::new()] {
            let chunks = body(Response::encode_sharing(&message, 12, shared(&strings)).unwrap());
            assert_eq!(chunks.concat(), copied);
        }
    }
}
