//! The `ProduceStream` call, its requests written without copying their batch bytes.
//!
//! tonic's generated client encodes every message through prost into a buffer of its
//! own, so each produced byte was copied once more in the client (up to
//! [`MAX_MESSAGE_BYTES`] a request) before h2 wrote it. The sender opens the stream here
//! instead and writes each request as a few chunks: a small head (the gRPC length
//! prefix, the request's other fields by prost, each partition's fields and its
//! `batches` tag and length) and the batch bytes as the accumulator closed them, which
//! h2 hands to the socket with vectored I/O, uncopied. The bytes on the wire are a valid
//! encoding of the same message (fields in another order than prost writes them, which
//! protobuf allows), so the broker decodes them as before. The responses are read by
//! tonic's own decoder. The broker's `Consume` answers are written the same way
//! (weir-grpc's `consume_body.rs`).

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::StreamBody;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::codec::{Codec, Streaming};
use tonic::codegen::{Service, http};
use tonic::{Code, Status};
use weir_proto::v1 as pb;

use crate::connection::{BrokerChannel, MAX_MESSAGE_BYTES};

/// The method's path.
const PRODUCE_STREAM_PATH: &str = "/weir.v1.Producer/ProduceStream";
/// gRPC's message prefix: a compression flag and a 4-byte length.
const PREFIX_BYTES: usize = 5;
/// `ProduceStreamRequest.request`.
const REQUEST_FIELD: u32 = 2;
/// `ProduceRequest.partitions`.
const PARTITIONS_FIELD: u32 = 2;
/// `PartitionRecords.batches`.
const BATCHES_FIELD: u32 = 3;
/// Batches smaller than this go into the head with the fields around them: h2 would
/// copy them into its buffer anyway (it chains only larger chunks), and a chunk of their
/// own would cost a DATA frame each.
const INLINE_BATCH_BYTES: usize = 4 * 1024;

/// One request as the chunks of its gRPC message: their concatenation is the message's
/// length prefix and an encoding of `message`.
pub(crate) fn encode(mut message: pb::ProduceStreamRequest) -> Vec<Bytes> {
    let Some(mut request) = message.request.take() else {
        // Nothing to keep apart: prost writes it whole.
        return vec![whole(&message)];
    };
    // Each partition's fields but its batches, then the batches' tag and length; the
    // batch bytes apart.
    let partitions: Vec<(Vec<u8>, Option<Bytes>)> = std::mem::take(&mut request.partitions)
        .into_iter()
        .map(|mut partition| match partition.data.take() {
            Some(pb::partition_records::Data::Batches(batches)) => {
                let mut head = partition.encode_to_vec();
                encode_key(BATCHES_FIELD, WireType::LengthDelimited, &mut head);
                encode_varint(batches.len() as u64, &mut head);
                (head, Some(batches))
            }
            data => {
                partition.data = data;
                (partition.encode_to_vec(), None)
            }
        })
        .collect();
    let partition_len = |(head, batches): &(Vec<u8>, Option<Bytes>)| {
        head.len() + batches.as_ref().map_or(0, Bytes::len)
    };
    let request_len = request.encoded_len()
        + partitions
            .iter()
            .map(|p| delimited_len(PARTITIONS_FIELD, partition_len(p)))
            .sum::<usize>();
    let message_len = message.encoded_len() + delimited_len(REQUEST_FIELD, request_len);

    let mut chunks = Vec::with_capacity(2 * partitions.len() + 1);
    let mut head = BytesMut::with_capacity(PREFIX_BYTES + message_len - request_len + 64);
    put_prefix(&mut head, message_len);
    message
        .encode(&mut head)
        .expect("a BytesMut grows as needed");
    encode_key(REQUEST_FIELD, WireType::LengthDelimited, &mut head);
    encode_varint(request_len as u64, &mut head);
    request
        .encode(&mut head)
        .expect("a BytesMut grows as needed");
    for partition in &partitions {
        encode_key(PARTITIONS_FIELD, WireType::LengthDelimited, &mut head);
        encode_varint(partition_len(partition) as u64, &mut head);
        head.put_slice(&partition.0);
        match &partition.1 {
            Some(batches) if batches.len() >= INLINE_BATCH_BYTES => {
                chunks.push(head.split().freeze());
                chunks.push(batches.clone());
            }
            Some(batches) => head.put_slice(batches),
            None => {}
        }
    }
    if !head.is_empty() {
        chunks.push(head.freeze());
    }
    chunks
}

/// `message` whole, behind its prefix.
fn whole(message: &pb::ProduceStreamRequest) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX_BYTES + len);
    put_prefix(&mut buf, len);
    message
        .encode(&mut buf)
        .expect("a BytesMut grows as needed");
    buf.freeze()
}

/// gRPC's prefix of an uncompressed message of `len` bytes. A request is at most
/// [`MAX_MESSAGE_BYTES`] (the accumulator closes batches below it), far below 4 GiB.
fn put_prefix(buf: &mut BytesMut, len: usize) {
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).expect("a produce request is far below 4 GiB"));
}

/// Bytes of a length-delimited field `field` whose contents are `len` bytes.
fn delimited_len(field: u32, len: usize) -> usize {
    encoded_len_varint(u64::from(field << 3)) + encoded_len_varint(len as u64) + len
}

/// Opens the `ProduceStream` call on `channel`, its request body the chunks sent on
/// `requests` (one request's chunks a send); the call's request side ends when the
/// sender is dropped. The answer is what tonic's generated client would return.
pub(crate) async fn open(
    mut channel: BrokerChannel,
    requests: mpsc::Receiver<Vec<Bytes>>,
) -> Result<Streaming<pb::ProduceStreamResponse>, Status> {
    let frames = ReceiverStream::new(requests).flat_map(|chunks| {
        futures_util::stream::iter(chunks.into_iter().map(|c| Ok::<_, Status>(Frame::data(c))))
    });
    let mut request = http::Request::new(Body::new(StreamBody::new(frames)));
    *request.method_mut() = http::Method::POST;
    *request.version_mut() = http::Version::HTTP_2;
    *request.uri_mut() = http::Uri::from_static(PRODUCE_STREAM_PATH);
    let headers = request.headers_mut();
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
    let response = channel.call(request).await?;
    let decoder =
        tonic_prost::ProstCodec::<pb::ProduceStreamRequest, pb::ProduceStreamResponse>::default()
            .decoder();
    // As tonic's client reads an answer: a status among the headers ("trailers only")
    // is the call's whole answer.
    if let Some(status) = Status::from_header_map(response.headers()) {
        if status.code() != Code::Ok {
            return Err(status);
        }
        return Ok(Streaming::new_empty(decoder, response.into_body()));
    }
    let status_code = response.status();
    Ok(Streaming::new_response(
        decoder,
        response.into_body(),
        status_code,
        None,
        Some(MAX_MESSAGE_BYTES),
    ))
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use proptest::prelude::*;

    use super::*;

    fn partition(index: u32, data: Option<pb::partition_records::Data>) -> pb::PartitionRecords {
        pb::PartitionRecords {
            partition: index,
            data,
            ..Default::default()
        }
    }

    fn request(partitions: Vec<pb::PartitionRecords>) -> pb::ProduceStreamRequest {
        pb::ProduceStreamRequest {
            sequence: 7,
            request: Some(pb::ProduceRequest {
                topic: "orders".into(),
                partitions,
                acks: pb::Acks::All as i32,
                timeout_ms: 30_000,
                transactional_id: "copier".into(),
            }),
        }
    }

    /// The chunks joined, checked as gRPC's framing: the message after its prefix.
    fn unframe(chunks: &[Bytes]) -> Bytes {
        let mut joined = BytesMut::new();
        for chunk in chunks {
            joined.put_slice(chunk);
        }
        let mut joined = joined.freeze();
        assert_eq!(joined.get_u8(), 0, "uncompressed");
        let len = joined.get_u32() as usize;
        assert_eq!(joined.len(), len, "the prefix's length is the message's");
        joined
    }

    #[test]
    fn large_batches_go_uncopied_and_small_ones_inline() {
        let large = Bytes::from(vec![7u8; INLINE_BATCH_BYTES]);
        let small = Bytes::from(vec![8u8; 100]);
        let message = request(vec![
            partition(0, Some(pb::partition_records::Data::Batches(large.clone()))),
            partition(1, Some(pb::partition_records::Data::Batches(small))),
            partition(2, None),
        ]);
        let chunks = encode(message.clone());
        assert_eq!(chunks.len(), 3, "head, the large batch, the rest");
        assert_eq!(
            chunks[1].as_ptr(),
            large.as_ptr(),
            "the large batch is the accumulator's bytes, not a copy"
        );
        let decoded = pb::ProduceStreamRequest::decode(unframe(&chunks)).unwrap();
        assert_eq!(decoded, message);
    }

    #[test]
    fn a_request_without_a_body_is_encoded_whole() {
        let message = pb::ProduceStreamRequest {
            sequence: 3,
            request: None,
        };
        let chunks = encode(message.clone());
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            pb::ProduceStreamRequest::decode(unframe(&chunks)).unwrap(),
            message
        );
    }

    fn data() -> impl Strategy<Value = Option<pb::partition_records::Data>> {
        prop_oneof![
            Just(None),
            prop::collection::vec(any::<u8>(), 0..3 * INLINE_BATCH_BYTES)
                .prop_map(|b| Some(pb::partition_records::Data::Batches(Bytes::from(b)))),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4).prop_map(
                |values| Some(pb::partition_records::Data::Records(pb::RecordList {
                    records: values
                        .into_iter()
                        .map(|value| pb::Record {
                            value: Some(value.into()),
                            ..Default::default()
                        })
                        .collect(),
                }))
            ),
        ]
    }

    proptest! {
        /// Whatever the request holds, the chunks decode to it.
        #[test]
        fn the_chunks_decode_to_the_request(
            sequence in any::<u64>(),
            topic in "[a-z.]{0,40}",
            partitions in prop::collection::vec((any::<u32>(), 0..4i32, data()), 0..5),
            acks in 0..3i32,
            timeout_ms in any::<u32>(),
        ) {
            let message = pb::ProduceStreamRequest {
                sequence,
                request: Some(pb::ProduceRequest {
                    topic,
                    partitions: partitions
                        .into_iter()
                        .map(|(index, compression, data)| pb::PartitionRecords {
                            compression,
                            ..partition(index, data)
                        })
                        .collect(),
                    acks,
                    timeout_ms,
                    transactional_id: String::new(),
                }),
            };
            let decoded = pb::ProduceStreamRequest::decode(unframe(&encode(message.clone())));
            prop_assert_eq!(decoded.unwrap(), message);
        }
    }
}
