//! The `Consume` stream's messages, written without copying their batch bytes.
//!
//! tonic encodes every message into a buffer of its own through prost, so each consumed
//! byte would be copied once more on the broker (up to a megabyte a message) before h2
//! writes it. [`ConsumerRoutes`] serves `weir.v1.Consumer/Consume` itself and writes each
//! message as two chunks: a small head (the gRPC length prefix, the message's other
//! fields encoded by prost, and the `batches` field's tag and length), then the batch
//! bytes as the log read them. h2 hands a chunk that large to the socket with vectored
//! I/O, uncopied. The bytes on the wire are a valid encoding of the same message (fields
//! in a different order than prost writes them, which protobuf allows), so every gRPC
//! client reads them as before. Every other method of the service, and a request this
//! path cannot serve, goes to the generated server.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, Limited, StreamBody};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::{Code, Status};
use weir_proto::v1::consumer_server::{Consumer, ConsumerServer};
use weir_proto::v1::{ConsumeRequest, ConsumeResponse};

use crate::consume::ConsumerService;
use crate::status::wire;

/// The path of the method served here.
const CONSUME_PATH: &str = "/weir.v1.Consumer/Consume";
/// Largest `ConsumeRequest` accepted: a topic name (at most 249 bytes) and four numbers.
const MAX_CONSUME_REQUEST_BYTES: usize = 4 * 1024;
/// gRPC's message prefix: a compression flag and a 4-byte length.
const PREFIX_BYTES: usize = 5;
/// The `batches` field of `ConsumeResponse`.
const BATCHES_FIELD: u32 = 2;

/// The Consumer service: `Consume` served here, the rest by the generated server.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerRoutes {
    service: ConsumerService,
    generated: ConsumerServer<ConsumerService>,
}

impl ConsumerRoutes {
    pub(crate) fn new(
        service: ConsumerService,
        generated: ConsumerServer<ConsumerService>,
    ) -> ConsumerRoutes {
        ConsumerRoutes { service, generated }
    }
}

impl NamedService for ConsumerRoutes {
    const NAME: &'static str = <ConsumerServer<ConsumerService> as NamedService>::NAME;
}

type BoxedResponse =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static>>;

impl tower::Service<http::Request<Body>> for ConsumerRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxedResponse;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<http::Request<Body>>::poll_ready(&mut self.generated, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> BoxedResponse {
        if request.uri().path() != CONSUME_PATH {
            return Box::pin(self.generated.call(request));
        }
        let service = self.service.clone();
        Box::pin(async move {
            Ok(match open(service, request).await {
                Ok(stream) => respond(stream),
                Err(status) => status.into_http(),
            })
        })
    }
}

/// Reads the request and opens the stream, as the generated server would.
async fn open(
    service: ConsumerService,
    request: http::Request<Body>,
) -> Result<<ConsumerService as Consumer>::ConsumeStream, Status> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, PREFIX_BYTES + MAX_CONSUME_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| {
            wire(
                Code::ResourceExhausted,
                format!(
                    "reading the Consume request: {e} (at most {MAX_CONSUME_REQUEST_BYTES} bytes)"
                ),
            )
        })?
        .to_bytes();
    let message = unframe(body)?;
    let message = ConsumeRequest::decode(message)
        .map_err(|e| wire(Code::Internal, format!("decoding the Consume request: {e}")))?;
    let request = tonic::Request::from_parts(
        MetadataMap::from_headers(parts.headers),
        parts.extensions,
        message,
    );
    Ok(service.consume(request).await?.into_inner())
}

/// The one message of a unary request body.
fn unframe(mut body: Bytes) -> Result<Bytes, Status> {
    if body.len() < PREFIX_BYTES {
        return Err(wire(Code::Internal, "the Consume request holds no message"));
    }
    let compressed = body.get_u8();
    let len = body.get_u32() as usize;
    if compressed != 0 {
        return Err(wire(
            Code::Unimplemented,
            "Consume takes uncompressed requests only",
        ));
    }
    if body.len() != len {
        return Err(wire(
            Code::Internal,
            format!(
                "the Consume request's message is {} bytes where its prefix says {len}",
                body.len()
            ),
        ));
    }
    Ok(body)
}

/// The streaming answer: each message as its head and its batch bytes, then the status
/// as trailers.
fn respond(stream: <ConsumerService as Consumer>::ConsumeStream) -> http::Response<Body> {
    let frames = futures_util::stream::unfold(Some((stream, None)), |state| async move {
        let (mut stream, pending): (_, Option<Bytes>) = state?;
        if let Some(batches) = pending {
            return Some((Ok(Frame::data(batches)), Some((stream, None))));
        }
        let frame = match stream.next().await {
            Some(Ok(message)) => match encode(message) {
                Ok((head, batches)) => {
                    let pending = (!batches.is_empty()).then_some(batches);
                    return Some((Ok(Frame::data(head)), Some((stream, pending))));
                }
                Err(status) => trailers(&status),
            },
            Some(Err(status)) => trailers(&status),
            None => trailers(&wire(Code::Ok, "")),
        };
        // The stream ends after its trailers.
        Some((Ok::<_, Status>(frame), None))
    });
    let mut response = http::Response::new(Body::new(StreamBody::new(Box::pin(frames))));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

fn trailers(status: &Status) -> Frame<Bytes> {
    let mut headers = http::HeaderMap::new();
    if let Err(unwritable) = status.add_header(&mut headers) {
        headers.clear();
        let _ = wire(Code::Internal, unwritable.message()).add_header(&mut headers);
    }
    Frame::trailers(headers)
}

/// `message` as gRPC puts it on the wire, in two pieces: the prefix and every field but
/// `batches` (with that field's tag and length), and the batch bytes themselves. The
/// concatenation decodes to `message`.
pub(crate) fn encode(mut message: ConsumeResponse) -> Result<(Bytes, Bytes), Status> {
    let batches = std::mem::take(&mut message.batches);
    let fields = message.encoded_len();
    let batches_field = if batches.is_empty() {
        0
    } else {
        encoded_len_varint(u64::from(BATCHES_FIELD << 3))
            + encoded_len_varint(batches.len() as u64)
            + batches.len()
    };
    let len = u32::try_from(fields + batches_field)
        .map_err(|_| wire(Code::Internal, "a Consume message over 4 GiB"))?;
    let mut head = BytesMut::with_capacity(PREFIX_BYTES + fields + 2 * 10);
    head.put_u8(0);
    head.put_u32(len);
    message
        .encode(&mut head)
        .expect("the buffer holds the message");
    if !batches.is_empty() {
        encode_key(BATCHES_FIELD, WireType::LengthDelimited, &mut head);
        encode_varint(batches.len() as u64, &mut head);
    }
    Ok((head.freeze(), batches))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use weir_proto::v1::ConsumedRecord;

    use super::*;

    fn message() -> impl Strategy<Value = ConsumeResponse> {
        (
            prop::collection::vec(any::<u8>(), 0..3000),
            prop::collection::vec(
                (any::<i64>(), prop::collection::vec(any::<u8>(), 0..20)),
                0..3,
            ),
            any::<i64>(),
            any::<i64>(),
        )
            .prop_map(
                |(batches, records, next_offset, high_watermark)| ConsumeResponse {
                    records: records
                        .into_iter()
                        .map(|(offset, value)| ConsumedRecord {
                            offset,
                            value: Some(value.into()),
                            ..ConsumedRecord::default()
                        })
                        .collect(),
                    batches: batches.into(),
                    next_offset,
                    high_watermark,
                },
            )
    }

    proptest! {
        /// What a client decodes from the two pieces is the message: the batch bytes it
        /// gets are the bytes the log read, and the prefix is gRPC's.
        #[test]
        fn the_pieces_decode_to_the_message(message in message()) {
            let (head, batches) = encode(message.clone()).unwrap();
            prop_assert_eq!(&batches, &message.batches);
            let mut wire = BytesMut::new();
            wire.extend_from_slice(&head);
            wire.extend_from_slice(&batches);
            let mut wire = wire.freeze();
            prop_assert_eq!(wire.get_u8(), 0);
            prop_assert_eq!(wire.get_u32() as usize, wire.len());
            prop_assert_eq!(ConsumeResponse::decode(wire).unwrap(), message);
        }
    }

    #[test]
    fn a_request_is_unframed_or_refused() {
        let request = ConsumeRequest {
            topic: "t".into(),
            ..ConsumeRequest::default()
        };
        let mut framed = BytesMut::new();
        framed.put_u8(0);
        framed.put_u32(request.encoded_len() as u32);
        request.encode(&mut framed).unwrap();
        let framed = framed.freeze();
        let message = unframe(framed.clone()).unwrap();
        assert_eq!(ConsumeRequest::decode(message).unwrap(), request);

        let mut compressed = framed.to_vec();
        compressed[0] = 1;
        assert_eq!(
            unframe(compressed.into()).unwrap_err().code(),
            Code::Unimplemented
        );
        let short = framed.slice(..framed.len() - 1);
        assert_eq!(unframe(short).unwrap_err().code(), Code::Internal);
        assert_eq!(unframe(Bytes::new()).unwrap_err().code(), Code::Internal);
    }
}
