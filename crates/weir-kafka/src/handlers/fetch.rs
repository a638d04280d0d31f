//! Fetch and ListOffsets. A fetch answers with the stored RecordBatch v2 bytes as the
//! core read them (never re-encoded), long polling with `max_wait_ms` / `min_bytes`.
//! Fetch sessions (KIP-227) are declined: every answer is a full one with session id 0,
//! which clients accept and keep sending full fetches. `isolation_level` 1
//! (read_committed) stops at each partition's last stable offset and names the aborted
//! transactions in what was read; ListOffsets honours its isolation level too.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProducerId, TopicName,
    fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData},
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::fetch::{self, FileSlice, Isolation, PartitionFetch, TopicFetch};
use weir_broker::limits::DEFAULT_PARTITION_FETCH_BYTES;
use weir_broker::metadata;
use weir_broker::offsets::{self, OffsetSpec};
use weir_broker::{BrokerError, RequestContext};

use super::{KafkaBroker, answer, error_code};
use crate::frame::Request;
use crate::handler::{HandlerError, Response, Shared};

/// Record bytes below this are copied into the answer's body rather than written as a
/// chunk of their own: one more `iovec` costs more than copying a few KiB.
const MIN_SHARED_RECORD_BYTES: usize = 4096;

/// Fetch v13+ names topics by id.
const FIRST_TOPIC_ID_FETCH: i16 = 13;

/// Kafka's `isolation_level` (Fetch v4+, ListOffsets v2+): 0 read_uncommitted, 1
/// read_committed; any other value reads as read_uncommitted, as Kafka reads it.
fn isolation(level: i8) -> Isolation {
    match level {
        1 => Isolation::ReadCommitted,
        _ => Isolation::ReadUncommitted,
    }
}

/// Answers a Fetch. Over plain TCP (`tls` false) the record bytes stay in their segment
/// files and the connection sends them with `sendfile`; over TLS, where they must be
/// encrypted here, they are read.
pub(super) async fn fetch(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
    tls: bool,
) -> Result<Response, HandlerError> {
    let req: FetchRequest = request.decode_body()?;
    let by_id = request.api_version >= FIRST_TOPIC_ID_FETCH;
    if req.session_id != 0 {
        // Sessions are never created here, so there is none to continue.
        return answer(
            ctx,
            request,
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code()),
        );
    }
    // Topic names (v13+: from their ids; an unknown id keeps an empty name and answers
    // UNKNOWN_TOPIC_ID).
    let names: Vec<Option<String>> = req
        .topics
        .iter()
        .map(|t| match by_id {
            true => metadata::topic_name(&broker.core, &t.topic_id.to_string()),
            false => Some(t.topic.to_string()),
        })
        .collect();
    let fetch_request = fetch::FetchRequest {
        max_wait: Duration::from_millis(req.max_wait_ms.max(0) as u64),
        min_bytes: req.min_bytes.max(1) as usize,
        max_bytes: match req.max_bytes {
            n if n > 0 => n as usize,
            _ => usize::MAX,
        },
        topics: req
            .topics
            .iter()
            .zip(&names)
            .filter_map(|(t, name)| {
                Some(TopicFetch {
                    topic: name.clone()?,
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| PartitionFetch {
                            partition: u32::try_from(p.partition).unwrap_or(u32::MAX),
                            offset: p.fetch_offset,
                            // -1 (and versions before 9): the client names none.
                            current_leader_epoch: (p.current_leader_epoch >= 0)
                                .then_some(p.current_leader_epoch),
                            max_bytes: match p.partition_max_bytes {
                                n if n > 0 => n as usize,
                                _ => DEFAULT_PARTITION_FETCH_BYTES,
                            },
                        })
                        .collect(),
                })
            })
            .collect(),
        read_to: match tls {
            true => fetch::ReadTo::Memory,
            false => fetch::ReadTo::File,
        },
        isolation: isolation(req.isolation_level),
    };
    let mut results = match fetch::fetch(&broker.core, ctx, &fetch_request).await {
        Ok(results) => results.into_iter(),
        Err(e) => {
            return answer(
                ctx,
                request,
                FetchResponse::default().with_error_code(error_code(&e)),
            );
        }
    };
    let mut responses = Vec::with_capacity(req.topics.len());
    // The record bytes to pass on as chunks of their own, in the order they are encoded.
    let mut shared = Vec::new();
    for (t, name) in req.topics.iter().zip(names) {
        let partitions = match name {
            None => t
                .partitions
                .iter()
                .map(|p| failed(p.partition, ResponseError::UnknownTopicId.code()))
                .collect(),
            Some(_) => {
                let result = results.next().expect("one answer per topic asked");
                match result.outcome {
                    Err(e) => t
                        .partitions
                        .iter()
                        .map(|p| failed(p.partition, error_code(&e)))
                        .collect(),
                    Ok(partitions) => partitions
                        .into_iter()
                        .map(|p| partition_data(p, &mut shared))
                        .collect(),
                }
            }
        };
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(partitions),
        );
    }
    let response = FetchResponse::default()
        .with_responses(responses)
        .with_throttle_time_ms(ctx.throttle_ms());
    // The record batches go to the socket as the log read them, or straight from their
    // files, each a chunk of its own instead of copied into the encoded body.
    Response::encode_sharing(&response, request.api_version, shared)
}

fn failed(partition: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}

/// One partition's answer; its record bytes, if they are to be a chunk of their own, are
/// added to `shared`.
fn partition_data(r: fetch::PartitionFetchResult, shared: &mut Vec<Shared>) -> PartitionData {
    let (code, records) = match r.data {
        Ok(Some(data)) => match data.in_file {
            Some(slice) => records_in_file(slice, r.partition, shared),
            None => {
                if data.records.len() >= MIN_SHARED_RECORD_BYTES {
                    shared.push(Shared::bytes(data.records.clone()));
                }
                (0, data.records)
            }
        },
        Ok(None) => (0, Bytes::new()),
        Err(e) => (error_code(&e), Bytes::new()),
    };
    let aborted = r
        .aborted
        .iter()
        .map(|a| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(a.producer_id))
                .with_first_offset(a.first_offset)
        })
        .collect();
    PartitionData::default()
        .with_partition_index(r.partition as i32)
        .with_error_code(code)
        .with_high_watermark(r.high_watermark)
        .with_last_stable_offset(r.last_stable_offset)
        .with_log_start_offset(r.log_start_offset)
        .with_aborted_transactions(Some(aborted))
        .with_records(Some(records))
}

/// The error code and records field for batches left in their file: a stand-in of their
/// length, with the file chunk added to `shared`; with no stand-in that long, the bytes
/// read into memory.
fn records_in_file(slice: FileSlice, partition: u32, shared: &mut Vec<Shared>) -> (i16, Bytes) {
    if let Some(file) = Shared::file(slice.clone()) {
        let stand_in = file.held.clone();
        shared.push(file);
        return (0, stand_in);
    }
    match slice.read() {
        Ok(records) => {
            shared.push(Shared::bytes(records.clone()));
            (0, records)
        }
        Err(err) => {
            tracing::warn!(partition, error = %err, "reading fetched batches from their segment failed");
            (ResponseError::KafkaStorageError.code(), Bytes::new())
        }
    }
}

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// v7+ (KIP-734).
const MAX_TIMESTAMP: i64 = -3;
/// v8+ (KIP-405's earliest offset on local disk).
const EARLIEST_LOCAL: i64 = -4;
/// v9+ (KIP-1005's highest offset in tiered storage).
const LATEST_TIERED: i64 = -5;
/// ListOffsets v4+ answers carry the leader epoch.
const FIRST_EPOCH_LIST_OFFSETS: i16 = 4;

pub(super) async fn list_offsets(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ListOffsetsRequest = request.decode_body()?;
    let with_epoch = request.api_version >= FIRST_EPOCH_LIST_OFFSETS;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.to_string();
        let specs: Vec<Result<OffsetSpec, BrokerError>> = t
            .partitions
            .iter()
            .map(|p| match p.timestamp {
                // LATEST_TIERED is answered below: the partition is looked up (its errors
                // are Kafka's), and, as there is no tiered storage, nothing is there.
                LATEST | LATEST_TIERED => Ok(OffsetSpec::Latest),
                // No tiered storage: the earliest local offset is the earliest.
                EARLIEST | EARLIEST_LOCAL => Ok(OffsetSpec::Earliest),
                MAX_TIMESTAMP => Ok(OffsetSpec::MaxTimestamp),
                ts if ts >= 0 => Ok(OffsetSpec::Timestamp(ts)),
                ts => Err(BrokerError::invalid(format!("unknown offset spec {ts}"))),
            })
            .collect();
        let queries: Vec<(u32, OffsetSpec)> = t
            .partitions
            .iter()
            .zip(&specs)
            .filter_map(|(p, s)| Some((u32::try_from(p.partition_index).ok()?, *s.as_ref().ok()?)))
            .collect();
        let level = isolation(req.isolation_level);
        let found = offsets::list_offsets_isolated(&broker.core, ctx, &name, &queries, level).await;
        let mut found = match found {
            Ok(found) => Ok(found.into_iter()),
            Err(e) => Err(e),
        };
        let partitions = t
            .partitions
            .iter()
            .zip(specs)
            .map(|(p, spec)| {
                let base = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1);
                let outcome = spec.and_then(|_| match &mut found {
                    Ok(found) if p.partition_index >= 0 => {
                        found.next().expect("one answer per query")
                    }
                    Ok(_) => Err(BrokerError::invalid("a negative partition index")),
                    Err(e) => Err(e.clone()),
                });
                match outcome {
                    // As Kafka: no record at or after the timestamp (or none at all for
                    // MAX_TIMESTAMP) is offset and timestamp -1, and without tiered
                    // storage LATEST_TIERED is -1 with leader epoch -1.
                    Ok(f) if !f.matched || p.timestamp == LATEST_TIERED => {
                        base.with_leader_epoch(-1)
                    }
                    Ok(f) => {
                        let base = base.with_timestamp(f.timestamp_ms).with_offset(f.offset);
                        if with_epoch {
                            base.with_leader_epoch(f.leader_epoch)
                        } else {
                            base
                        }
                    }
                    Err(e) => base.with_error_code(error_code(&e)),
                }
            })
            .collect();
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions),
        );
    }
    answer(
        ctx,
        request,
        ListOffsetsResponse::default().with_topics(topics),
    )
}
