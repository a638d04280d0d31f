//! Request frames off the wire: the 4-byte big-endian length, its limit, and the request
//! header that starts every frame.
//!
//! A frame is `length: i32` followed by `length` bytes: the request header (api key, api
//! version, correlation id, client id, and from header v2 on tagged fields), then the
//! request body. The header's version follows from the api key and the api version,
//! which is why those two come first in every header version.

use std::error::Error as StdError;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::handler::HandlerError;

/// The largest request frame the listener accepts, after the length prefix: Kafka's
/// default `socket.request.max.bytes` (100 MiB). A produce request carries whole batches,
/// so this is the bound on one request's records too.
pub const MAX_REQUEST_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// The length prefix of a frame.
const LENGTH_PREFIX_BYTES: usize = 4;

/// What a read asks the socket for at least, so that small pipelined requests arrive
/// several to one read.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The fixed start of every request header: api key (2), api version (2), correlation
/// id (4).
const HEADER_FIXED_BYTES: usize = 8;

/// A request whose header is decoded; its body is still bytes, decoded by the handler at
/// `api_version` ([`Request::decode_body`]).
#[derive(Debug, Clone)]
pub struct Request {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    /// As the client sent it: Kafka's header makes it nullable.
    pub client_id: Option<StrBytes>,
    /// The rest of the frame after the header: a slice of the frame, not a copy.
    pub body: Bytes,
}

impl Request {
    /// Decodes the body as `M` at the request's version.
    ///
    /// Not yet safe on untrusted bytes: kafka-protocol 0.18 sizes every array with
    /// `Vec::with_capacity(count)` from the count on the wire, before it checks that
    /// the elements are there, so a 12-byte ProduceRequest v3 body declaring
    /// `i32::MAX` topics asks for 206 GB and aborts the process (not a panic).
    /// Upstream has open fixes (kafka-protocol-rs pull requests 152, 161, 200: bound
    /// the count by the bytes remaining); until one is released, or patched in, a
    /// broker serving requests with arrays is open to that.
    pub fn decode_body<M: Decodable>(&self) -> Result<M, HandlerError> {
        let mut body = self.body.clone();
        M::decode(&mut body, self.api_version).map_err(|source| HandlerError::MalformedBody {
            api_key: self.api_key,
            api_version: self.api_version,
            source: source.into(),
        })
    }
}

/// Why a request frame could not be read. Every one ends the connection: the stream's
/// framing is lost or the peer is gone.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("reading a request frame: {0}")]
    Io(#[from] io::Error),
    #[error("the connection closed {received} bytes into a {expected}-byte request frame")]
    Truncated { received: usize, expected: usize },
    #[error("request frame length {length} is negative")]
    NegativeLength { length: i32 },
    #[error("request frame of {length} bytes is over the limit of {max} bytes")]
    Oversize { length: usize, max: usize },
}

/// Why a frame's request header could not be decoded. Kafka closes the connection on each
/// (`SocketServer` catches the `InvalidRequestException` of `RequestHeader.parse`); so
/// does the listener, after answering the requests before it.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("request frame of {length} bytes is too short for a request header")]
    Short { length: usize },
    #[error("unknown api key {api_key} (version {api_version}, correlation id {correlation_id})")]
    UnknownApiKey {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
    },
    #[error("malformed request header v{header_version} of {api_key:?} v{api_version}: {source}")]
    Malformed {
        api_key: ApiKey,
        api_version: i16,
        header_version: i16,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

/// Splits the next whole frame off the front of `buf`, without its length prefix, or
/// returns `None` while the frame is incomplete. A negative length or one over
/// `max_frame_bytes` is refused as soon as the prefix is in, before anything is sized by
/// it. Bytes after the frame stay in `buf`.
pub fn split_frame(
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    let Some(length) = frame_length(buf, max_frame_bytes)? else {
        return Ok(None);
    };
    if buf.len() < LENGTH_PREFIX_BYTES + length {
        return Ok(None);
    }
    buf.advance(LENGTH_PREFIX_BYTES);
    Ok(Some(buf.split_to(length).freeze()))
}

/// The checked length of the frame at the front of `buf`, once its prefix is in.
fn frame_length(buf: &[u8], max_frame_bytes: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Ok(None);
    };
    let length = i32::from_be_bytes(*prefix);
    let length = usize::try_from(length).map_err(|_| FrameError::NegativeLength { length })?;
    if length > max_frame_bytes {
        return Err(FrameError::Oversize {
            length,
            max: max_frame_bytes,
        });
    }
    Ok(Some(length))
}

/// Reads the next frame from `reader` through `buf` (see [`split_frame`]); `None` when the
/// peer closed the connection between frames.
///
/// Cancel safe: all progress is kept in `buf`, so a call dropped at an `.await` (in a
/// `select!`) loses nothing and the next call goes on from where it stopped. The buffer
/// grows to one frame at most: to the declared length once the prefix is in and checked.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    loop {
        if let Some(frame) = split_frame(buf, max_frame_bytes)? {
            return Ok(Some(frame));
        }
        let missing = match frame_length(buf, max_frame_bytes)? {
            Some(length) => LENGTH_PREFIX_BYTES + length - buf.len(),
            None => LENGTH_PREFIX_BYTES - buf.len(),
        };
        buf.reserve(missing.max(READ_CHUNK_BYTES));
        if reader.read_buf(buf).await? == 0 {
            return match frame_length(buf, max_frame_bytes)? {
                _ if buf.is_empty() => Ok(None),
                Some(length) => Err(FrameError::Truncated {
                    received: buf.len(),
                    expected: LENGTH_PREFIX_BYTES + length,
                }),
                None => Err(FrameError::Truncated {
                    received: buf.len(),
                    expected: LENGTH_PREFIX_BYTES,
                }),
            };
        }
    }
}

/// Reads from `reader` through `buf` until the next frame's length prefix is in, and
/// returns that length, checked as [`split_frame`] checks it; `None` when the peer closed
/// the connection between frames. The listener reserves room for the frame with it before
/// reading the body. Cancel safe, as [`read_frame`].
pub async fn read_frame_length<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<usize>, FrameError> {
    loop {
        if let Some(length) = frame_length(buf, max_frame_bytes)? {
            return Ok(Some(length));
        }
        buf.reserve(READ_CHUNK_BYTES);
        if reader.read_buf(buf).await? == 0 {
            return match buf.is_empty() {
                true => Ok(None),
                false => Err(FrameError::Truncated {
                    received: buf.len(),
                    expected: LENGTH_PREFIX_BYTES,
                }),
            };
        }
    }
}

/// Decodes the request header at the front of `frame`: its version follows from the api
/// key and the api version (`ApiKey::request_header_version`). An unknown api key is
/// refused with the correlation id, which sits at the same place in every header
/// version.
pub fn decode_request(frame: Bytes) -> Result<Request, HeaderError> {
    let Some(fixed) = frame.first_chunk::<HEADER_FIXED_BYTES>() else {
        return Err(HeaderError::Short {
            length: frame.len(),
        });
    };
    let raw_api_key = i16::from_be_bytes([fixed[0], fixed[1]]);
    let api_version = i16::from_be_bytes([fixed[2], fixed[3]]);
    let correlation_id = i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let api_key = ApiKey::try_from(raw_api_key).map_err(|()| HeaderError::UnknownApiKey {
        api_key: raw_api_key,
        api_version,
        correlation_id,
    })?;
    let header_version = api_key.request_header_version(api_version);
    let mut rest = frame;
    let header = RequestHeader::decode(&mut rest, header_version).map_err(|source| {
        HeaderError::Malformed {
            api_key,
            api_version,
            header_version,
            source: source.into(),
        }
    })?;
    debug_assert_eq!(header.correlation_id, correlation_id);
    Ok(Request {
        api_key,
        api_version,
        correlation_id,
        client_id: header.client_id,
        body: rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::protocol::Encodable;
    use proptest::prelude::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn encoded_header(header: &RequestHeader) -> Vec<u8> {
        let api_key = ApiKey::try_from(header.request_api_key).unwrap();
        let mut out = BytesMut::new();
        header
            .encode(
                &mut out,
                api_key.request_header_version(header.request_api_version),
            )
            .unwrap();
        out.to_vec()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn split_frame_waits_for_the_whole_frame_and_leaves_the_next() {
        let mut wire = framed(b"abc");
        wire.extend_from_slice(&framed(b"de"));
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.put_u8(*byte);
            let frame = split_frame(&mut buf, 16).unwrap();
            match i {
                6 => assert_eq!(frame.as_deref(), Some(&b"abc"[..])),
                12 => assert_eq!(frame.as_deref(), Some(&b"de"[..])),
                _ => assert_eq!(frame, None, "after byte {i}"),
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn split_frame_refuses_negative_and_oversize_lengths_from_the_prefix_alone() {
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert!(matches!(
            split_frame(&mut buf, 16),
            Err(FrameError::NegativeLength { length: -1 })
        ));
        let mut buf = BytesMut::from(&17i32.to_be_bytes()[..]);
        assert!(matches!(
            split_frame(&mut buf, 16),
            Err(FrameError::Oversize {
                length: 17,
                max: 16
            })
        ));
        // The limit itself is allowed.
        let mut buf = BytesMut::from(&framed(&[7; 16])[..]);
        assert_eq!(split_frame(&mut buf, 16).unwrap().unwrap().len(), 16);
    }

    #[test]
    fn read_frame_reserves_no_more_than_the_declared_length_and_refuses_the_rest() {
        runtime().block_on(async {
            let wire = i32::MAX.to_be_bytes();
            let mut buf = BytesMut::new();
            let err = read_frame(&mut &wire[..], &mut buf, MAX_REQUEST_FRAME_BYTES)
                .await
                .unwrap_err();
            assert!(matches!(err, FrameError::Oversize { .. }), "{err}");
            assert!(buf.capacity() <= READ_CHUNK_BYTES, "{}", buf.capacity());
        });
    }

    #[test]
    fn read_frame_tells_a_clean_end_from_a_truncated_frame() {
        runtime().block_on(async {
            let mut buf = BytesMut::new();
            assert!(
                read_frame(&mut &b""[..], &mut buf, 16)
                    .await
                    .unwrap()
                    .is_none()
            );
            let err = read_frame(&mut &[0u8, 0][..], &mut buf, 16)
                .await
                .unwrap_err();
            assert!(matches!(
                err,
                FrameError::Truncated {
                    received: 2,
                    expected: 4
                }
            ));
            let mut buf = BytesMut::new();
            let wire = [0, 0, 0, 5, 1, 2];
            let err = read_frame(&mut &wire[..], &mut buf, 16).await.unwrap_err();
            assert!(matches!(
                err,
                FrameError::Truncated {
                    received: 6,
                    expected: 9
                }
            ));
        });
    }

    #[test]
    fn an_unknown_api_key_is_refused_with_its_correlation_id() {
        let frame = Bytes::from_static(&[0x03, 0xe8, 0, 1, 0, 0, 0, 42, 0xff, 0xff]);
        match decode_request(frame) {
            Err(HeaderError::UnknownApiKey {
                api_key: 1000,
                api_version: 1,
                correlation_id: 42,
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_header_version_follows_the_api_version() {
        // ApiVersions v3 is flexible: header v2 with a tagged-field section after the
        // client id; v2 is not: header v1 without one.
        for (api_version, header_version) in [(2, 1), (3, 2)] {
            let header = RequestHeader::default()
                .with_request_api_key(ApiKey::ApiVersions as i16)
                .with_request_api_version(api_version)
                .with_correlation_id(7)
                .with_client_id(Some(StrBytes::from_static_str("weir-test")));
            let mut payload = encoded_header(&header);
            assert_eq!(
                ApiKey::ApiVersions.request_header_version(api_version),
                header_version
            );
            let header_bytes = payload.len();
            payload.extend_from_slice(b"body");
            let request = decode_request(Bytes::from(payload)).unwrap();
            assert_eq!(request.api_version, api_version);
            assert_eq!(request.correlation_id, 7);
            assert_eq!(request.client_id.as_deref(), Some("weir-test"));
            assert_eq!(&request.body[..], b"body", "header of {header_bytes} bytes");
        }
    }

    fn any_header() -> impl Strategy<Value = RequestHeader> {
        let keys: Vec<ApiKey> = ApiKey::iter().collect();
        (
            proptest::sample::select(keys),
            any::<i16>(),
            any::<i32>(),
            proptest::option::of("[a-zA-Z0-9._-]{0,40}"),
        )
            .prop_map(|(api_key, api_version, correlation_id, client_id)| {
                RequestHeader::default()
                    .with_request_api_key(api_key as i16)
                    .with_request_api_version(api_version)
                    .with_correlation_id(correlation_id)
                    .with_client_id(client_id.map(StrBytes::from_string))
            })
    }

    proptest! {
        /// Any bytes are decoded or refused: no panic, no frame longer than its prefix
        /// says, nothing of the next frame taken, and a body that is the frame's tail.
        /// Half the payloads are a real header with a byte changed and the tail cut
        /// anywhere, and the prefix is often near the payload's length, so that headers
        /// are decoded and nearly decoded, not only refused.
        #[test]
        fn any_bytes_are_decoded_or_refused_within_the_frame(
            payload in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..96),
                (
                    any_header(),
                    proptest::collection::vec(any::<u8>(), 0..24),
                    proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
                    any::<prop::sample::Index>(),
                ).prop_map(|(header, body, flip, cut)| {
                    let mut payload = encoded_header(&header);
                    payload.extend_from_slice(&body);
                    if let Some((at, byte)) = flip {
                        let at = at.index(payload.len());
                        payload[at] = byte;
                    }
                    let keep = payload.len() - cut.index(5).min(payload.len());
                    payload.truncate(keep);
                    payload
                }),
            ],
            length in prop_oneof![
                2 => Just(Some(0)),
                2 => (-6i32..6).prop_map(Some),
                1 => any::<i32>().prop_map(Some),
                1 => Just(None),
            ],
            max_frame_bytes in prop_oneof![1 => 0usize..16, 3 => Just(MAX_REQUEST_FRAME_BYTES)],
        ) {
            let wire = match length {
                // A small length is an offset from the payload's own length.
                Some(delta) if (-6..6).contains(&delta) => {
                    let mut wire = (payload.len() as i32 + delta).to_be_bytes().to_vec();
                    wire.extend_from_slice(&payload);
                    wire
                }
                Some(length) => {
                    let mut wire = length.to_be_bytes().to_vec();
                    wire.extend_from_slice(&payload);
                    wire
                }
                None => payload,
            };
            let mut buf = BytesMut::from(&wire[..]);
            match split_frame(&mut buf, max_frame_bytes) {
                Ok(Some(frame)) => {
                    let length = i32::from_be_bytes(wire[..4].try_into().unwrap()) as usize;
                    prop_assert!(length <= max_frame_bytes);
                    prop_assert_eq!(&frame[..], &wire[4..4 + length]);
                    prop_assert_eq!(&buf[..], &wire[4 + length..]);
                    if let Ok(request) = decode_request(frame.clone()) {
                        prop_assert!(frame.ends_with(&request.body));
                        prop_assert_eq!(request.api_key as i16,
                            i16::from_be_bytes([frame[0], frame[1]]));
                        prop_assert_eq!(request.correlation_id,
                            i32::from_be_bytes(frame[4..8].try_into().unwrap()));
                    }
                }
                Ok(None) => prop_assert_eq!(&buf[..], &wire[..]),
                Err(_) => {}
            }
            // The same bytes through the async reader agree with split_frame.
            let read = runtime().block_on(async {
                let mut buf = BytesMut::new();
                read_frame(&mut &wire[..], &mut buf, max_frame_bytes).await.map(|f| (f, buf))
            });
            let mut again = BytesMut::from(&wire[..]);
            match (read, split_frame(&mut again, max_frame_bytes)) {
                (Ok((Some(frame), _)), Ok(Some(split))) => prop_assert_eq!(frame, split),
                (Ok((None, _)), Ok(None)) => prop_assert!(wire.is_empty()),
                (Err(FrameError::Truncated { .. }), Ok(None)) => prop_assert!(!wire.is_empty()),
                (Err(_), Err(_)) => {}
                (read, split) => prop_assert!(false, "read {:?} split {:?}", read, split),
            }
        }

        /// Every header kafka-protocol's client side encodes, for every api key and any
        /// version, decodes to the same fields and leaves the body whole.
        #[test]
        fn encoded_headers_decode_to_the_same_fields(
            header in any_header(),
            body in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut payload = encoded_header(&header);
            payload.extend_from_slice(&body);
            let request = decode_request(Bytes::from(payload)).unwrap();
            prop_assert_eq!(request.api_key as i16, header.request_api_key);
            prop_assert_eq!(request.api_version, header.request_api_version);
            prop_assert_eq!(request.correlation_id, header.correlation_id);
            prop_assert_eq!(request.client_id, header.client_id);
            prop_assert_eq!(&request.body[..], &body[..]);
        }
    }
}
