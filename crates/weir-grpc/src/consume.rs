//! The Consumer service: long-poll `Fetch`, streaming `Consume` and `ListOffsets`.
//!
//! Readers see records only below the high watermark, and at read committed only below
//! the last stable offset, without aborted transactions' records (dropped here, by the
//! core's `fetch::visible_bytes`: a gRPC reader needs no transaction logic). Transaction
//! markers are never decoded records. Waiting is event driven: a
//! reader subscribes to its partitions' high-watermark channels before it reads, so an
//! append between the read and the wait still wakes it. `Consume` sends through a
//! channel of [`CONSUME_CHANNEL_CAPACITY`] messages, so a slow client slows the broker's
//! reads instead of growing a buffer.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use weir_broker::BrokerError;
use weir_broker::fetch::{self, Isolation, PartitionFetch, Reader, TopicFetch};
use weir_broker::offsets::{self, OffsetSpec};
use weir_cluster::storage::{AbortedTxn, FetchData};
use weir_proto::v1::{
    self, ConsumeRequest, ConsumeResponse, FetchRequest, FetchResponse, IsolationLevel,
    ListOffsetsRequest, ListOffsetsResponse, OffsetPosition, PartitionFetchResult,
    PartitionOffsetResult, RecordFormat, consumer_server::Consumer, offset_spec::Spec,
};

use crate::Broker;
use crate::convert;
use crate::status;

/// Messages buffered on one Consume stream; the reader waits when the client lags.
pub const CONSUME_CHANNEL_CAPACITY: usize = 4;
/// A partition's share of a fetch when the request says 0 (as the proto says).
pub use weir_broker::limits::DEFAULT_PARTITION_FETCH_BYTES;
/// A fetch's total when the request says 0 (as the proto says): an answer that fits the
/// 4 MiB receive limit of grpc-python and grpc-go clients with their defaults, with room
/// for the per-partition fields. Decoded records are counted at their encoded size.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 4 * 1024 * 1024 - 128 * 1024;
/// Longest long-poll wait a fetch may ask for.
pub use weir_broker::limits::MAX_FETCH_WAIT;

/// The Consumer gRPC service.
#[derive(Debug, Clone)]
pub struct ConsumerService {
    broker: Arc<Broker>,
}

impl ConsumerService {
    pub(crate) fn new(broker: Arc<Broker>) -> ConsumerService {
        ConsumerService { broker }
    }
}

fn record_format(value: i32) -> Result<bool, Status> {
    match RecordFormat::try_from(value) {
        Ok(RecordFormat::Unspecified | RecordFormat::Records) => Ok(true),
        Ok(RecordFormat::Batches) => Ok(false),
        Err(_) => Err(crate::status::invalid(format!(
            "unknown record format {value}"
        ))),
    }
}

fn isolation(value: i32) -> Result<Isolation, Status> {
    match IsolationLevel::try_from(value) {
        Ok(IsolationLevel::Unspecified | IsolationLevel::ReadUncommitted) => {
            Ok(Isolation::ReadUncommitted)
        }
        Ok(IsolationLevel::ReadCommitted) => Ok(Isolation::ReadCommitted),
        Err(_) => Err(crate::status::invalid(format!(
            "unknown isolation level {value}: use ISOLATION_LEVEL_READ_UNCOMMITTED (1) or \
             ISOLATION_LEVEL_READ_COMMITTED (2)"
        ))),
    }
}

/// What the client asked for: decoded records or raw batches, at which isolation.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    decoded: bool,
    isolation: Isolation,
}

impl Wanted {
    fn of(format: i32, level: i32) -> Result<Wanted, Status> {
        Ok(Wanted {
            decoded: record_format(format)?,
            isolation: isolation(level)?,
        })
    }
}

/// Read data in the shape the client asked for.
struct Shaped {
    records: Vec<v1::ConsumedRecord>,
    batches: bytes::Bytes,
    /// Where the next read starts.
    next_offset: i64,
    /// Bytes of the answer: the batches, or the decoded records' encoded size.
    bytes: usize,
    /// A stored batch that could not be decoded: `records` are those before it, and
    /// `next_offset` is at it.
    undecodable: Option<convert::UndecodableBatch>,
}

/// `data` (read from `partition` of `topic` at `from`, with the aborted transactions of a
/// read committed read) as decoded records (at most `budget` bytes of them, encoded) or
/// as the raw batches, with what the reader does not see left out. A batch that cannot
/// be decoded ends the records; it is reported here (log line, metric).
fn shape(
    broker: &Broker,
    (topic, partition): (&str, u32),
    (data, aborted): (&FetchData, &[AbortedTxn]),
    from: i64,
    wanted: Wanted,
    budget: usize,
) -> Shaped {
    if wanted.decoded {
        let d = convert::decode_from(data.batches(), from, budget, aborted);
        let mut next_offset = d.stopped_at.unwrap_or(data.next_offset);
        if let Some(bad) = &d.undecodable {
            report_undecodable(broker, topic, partition, data, bad);
            next_offset = bad.base_offset.max(from);
        }
        Shaped {
            records: d.records,
            batches: bytes::Bytes::new(),
            next_offset,
            bytes: d.bytes,
            undecodable: d.undecodable,
        }
    } else {
        // Read uncommitted raw batches are the stored ones, markers included (a batch
        // reader knows control batches); read committed ones are what the reader sees.
        let batches = match wanted.isolation {
            Isolation::ReadUncommitted => data.records.clone(),
            Isolation::ReadCommitted => fetch::visible_bytes(data, aborted),
        };
        Shaped {
            records: Vec::new(),
            bytes: batches.len(),
            batches,
            next_offset: data.next_offset,
            undecodable: None,
        }
    }
}

/// Logs and counts a stored batch a decoded read could not decode. Its bytes passed the
/// log's checks (length, CRC, offsets) when read, so they are what was appended: a
/// producer's batch accepted before produce decompressed and walked every compressed
/// batch, or damage that kept the CRC. Readers of records must skip it (the error they
/// get says where to continue); raw-batch readers meet it when they decode.
fn report_undecodable(
    broker: &Broker,
    topic: &str,
    partition: u32,
    data: &FetchData,
    bad: &convert::UndecodableBatch,
) {
    broker.metrics().undecodable_batch(topic);
    match &data.stored_at {
        Some(at) => tracing::warn!(
            topic,
            partition,
            offset = bad.base_offset,
            next_offset = bad.next_offset,
            segment = %at.path.display(),
            position = at.position + bad.position as u64,
            error = %bad.error,
            "a stored batch cannot be decoded; readers of records must skip it"
        ),
        None => tracing::warn!(
            topic,
            partition,
            offset = bad.base_offset,
            next_offset = bad.next_offset,
            error = %bad.error,
            "a stored batch cannot be decoded; readers of records must skip it"
        ),
    }
}

/// The error a reader gets for `bad`.
fn undecodable<'a>(
    topic: &'a str,
    partition: u32,
    bad: &'a convert::UndecodableBatch,
) -> status::Undecodable<'a> {
    status::Undecodable {
        topic,
        partition,
        offset: bad.base_offset,
        next_offset: bad.next_offset,
        error: &bad.error,
    }
}

/// One partition's answer from the core, shaped as the client asked: the
/// `PartitionFetchResult` and the bytes it takes.
fn partition_result(
    broker: &Broker,
    topic: &str,
    r: fetch::PartitionFetchResult,
    offset: i64,
    wanted: Wanted,
    budget: usize,
) -> (PartitionFetchResult, usize) {
    let mut result = PartitionFetchResult {
        partition: r.partition,
        error: None,
        high_watermark: r.high_watermark,
        log_start_offset: r.log_start_offset,
        next_offset: offset,
        records: Vec::new(),
        batches: bytes::Bytes::new(),
        last_stable_offset: r.last_stable_offset,
    };
    match r.data {
        Ok(None) => (result, 0),
        Ok(Some(data)) => {
            let shaped = shape(
                broker,
                (topic, r.partition),
                (&data, &r.aborted),
                offset,
                wanted,
                budget,
            );
            result.error = shaped
                .undecodable
                .as_ref()
                .map(|bad| undecodable(topic, r.partition, bad).partition_error());
            result.records = shaped.records;
            result.batches = shaped.batches;
            result.next_offset = shaped.next_offset;
            (result, shaped.bytes)
        }
        Err(e) => {
            result.error = Some(status::broker_partition_error(&e));
            (result, 0)
        }
    }
}

type ConsumeStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<ConsumeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Consumer for ConsumerService {
    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("Fetch");
        let ctx = crate::grpc_context(&request);
        let req = request.into_inner();
        let wanted = Wanted::of(req.format, req.isolation)?;
        let max_bytes = match req.max_bytes {
            0 => DEFAULT_FETCH_MAX_BYTES,
            n => n as usize,
        };
        let request = fetch::FetchRequest {
            max_wait: Duration::from_millis(req.max_wait_ms.into()),
            min_bytes: req.min_bytes as usize,
            max_bytes,
            topics: vec![TopicFetch {
                topic: req.topic.clone(),
                partitions: req
                    .partitions
                    .iter()
                    .map(|pf| PartitionFetch {
                        partition: pf.partition,
                        offset: pf.offset,
                        current_leader_epoch: None,
                        max_bytes: match pf.max_bytes {
                            0 => DEFAULT_PARTITION_FETCH_BYTES,
                            n => n as usize,
                        },
                    })
                    .collect(),
            }],
            // gRPC frames its messages itself (HTTP/2): the batches must be in memory.
            read_to: fetch::ReadTo::Memory,
            isolation: wanted.isolation,
        };
        let mut topics = fetch::fetch(&self.broker.core, &ctx, &request)
            .await
            .map_err(status::broker_status)?;
        let topic = topics.pop().expect("one topic asked, one answered");
        let partitions = topic.outcome.map_err(status::broker_status)?;
        // Decoded records can take more room than the batches they came from: the
        // answer's budget is spent on what is sent, partition by partition.
        let mut results = Vec::with_capacity(partitions.len());
        let mut total = 0;
        for (mut r, pf) in partitions.into_iter().zip(&request.topics[0].partitions) {
            let budget = pf.max_bytes.min(max_bytes.saturating_sub(total));
            if budget == 0 && r.data.is_ok() {
                r.data = Ok(None);
            }
            let (result, bytes) =
                partition_result(&self.broker, &req.topic, r, pf.offset, wanted, budget);
            total += bytes;
            results.push(result);
        }
        Ok(Response::new(FetchResponse { results }))
    }

    type ConsumeStream = ConsumeStream;

    async fn consume(
        &self,
        request: Request<ConsumeRequest>,
    ) -> Result<Response<Self::ConsumeStream>, Status> {
        // At `max_consume_streams`, refused before anything is read; the slot is held
        // until the stream ends (the client closing it ends it too).
        let slot = self
            .broker
            .budget
            .consume_stream()
            .map_err(status::broker_status)?;
        let ctx = crate::grpc_context(&request);
        let req = request.into_inner();
        let wanted = Wanted::of(req.format, req.isolation)?;
        let max_bytes = match req.max_bytes {
            0 => DEFAULT_PARTITION_FETCH_BYTES,
            n => n as usize,
        }
        .min(crate::MAX_RESPONSE_BYTES);
        // Refuses a bad start at once, as a status, instead of as the stream's first item.
        let mut reader = Reader::open(
            &self.broker.core,
            &ctx,
            &req.topic,
            req.partition,
            req.offset,
            wanted.isolation,
        )
        .await
        .map_err(status::broker_status)?;
        let (tx, rx) = mpsc::channel(CONSUME_CHANNEL_CAPACITY);
        let broker = self.broker.clone();
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                let data = tokio::select! {
                    data = reader.next(max_bytes) => data,
                    _ = tx.closed() => return,
                };
                let (data, aborted) = match data {
                    Ok(read) => read,
                    Err(e) => {
                        let _ = tx.send(Err(status::broker_status(e))).await;
                        return;
                    }
                };
                let _timer = broker.metrics().rpc_timer("Consume");
                let shaped = shape(
                    &broker,
                    (reader.topic(), req.partition),
                    (&data, &aborted),
                    reader.offset(),
                    wanted,
                    max_bytes,
                );
                reader.seek(shaped.next_offset);
                // A batch that cannot be decoded ends the stream, after the records
                // before it; the client opens another past it if it chooses to.
                let end = shaped
                    .undecodable
                    .as_ref()
                    .map(|bad| undecodable(reader.topic(), req.partition, bad).status());
                if end.is_none() || !shaped.records.is_empty() {
                    let message = ConsumeResponse {
                        records: shaped.records,
                        batches: shaped.batches,
                        next_offset: reader.offset(),
                        high_watermark: reader.high_watermark(),
                    };
                    // Waits while the client lags (bounded channel): backpressure.
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
                if let Some(status) = end {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("ListOffsets");
        let ctx = crate::grpc_context(&request);
        let req = request.into_inner();
        let isolation = isolation(req.isolation)?;
        // Specs the core cannot be asked for are answered in place, in order.
        let specs: Vec<Result<OffsetSpec, BrokerError>> = req
            .partitions
            .iter()
            .map(|q| offset_spec(q.partition, q.spec.as_ref().and_then(|s| s.spec)))
            .collect();
        let queries: Vec<(u32, OffsetSpec)> = req
            .partitions
            .iter()
            .zip(&specs)
            .filter_map(|(q, spec)| spec.as_ref().ok().map(|s| (q.partition, *s)))
            .collect();
        let mut found = offsets::list_offsets_isolated(
            &self.broker.core,
            &ctx,
            &req.topic,
            &queries,
            isolation,
        )
        .await
        .map_err(status::broker_status)?
        .into_iter();
        let results = req
            .partitions
            .iter()
            .zip(specs)
            .map(|(q, spec)| {
                let outcome = spec.and_then(|_| found.next().expect("one answer per query"));
                match outcome {
                    Ok(f) => PartitionOffsetResult {
                        partition: q.partition,
                        offset: f.offset,
                        timestamp_ms: f.timestamp_ms,
                        error: None,
                    },
                    Err(e) => PartitionOffsetResult {
                        partition: q.partition,
                        offset: -1,
                        timestamp_ms: -1,
                        error: Some(status::broker_partition_error(&e)),
                    },
                }
            })
            .collect();
        Ok(Response::new(ListOffsetsResponse { results }))
    }
}

/// The core's offset spec for a request's.
fn offset_spec(index: u32, spec: Option<Spec>) -> Result<OffsetSpec, BrokerError> {
    match spec {
        None => Err(BrokerError::invalid(format!(
            "partition {index}: no offset spec (position or timestamp_ms)"
        ))),
        Some(Spec::Position(position)) => match OffsetPosition::try_from(position) {
            Ok(OffsetPosition::Earliest) => Ok(OffsetSpec::Earliest),
            Ok(OffsetPosition::Latest) => Ok(OffsetSpec::Latest),
            Ok(OffsetPosition::Unspecified) | Err(_) => Err(BrokerError::invalid(format!(
                "partition {index}: position is {position}; it must be \
                 OFFSET_POSITION_EARLIEST (1) or OFFSET_POSITION_LATEST (2), \
                 OFFSET_POSITION_UNSPECIFIED (0) selects nothing"
            ))),
        },
        Some(Spec::TimestampMs(ts)) => Ok(OffsetSpec::Timestamp(ts)),
    }
}
