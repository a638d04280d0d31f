//! The Consumer service: long-poll `Fetch`, streaming `Consume` and `ListOffsets`.
//!
//! Readers see records only below the high watermark. Waiting is event driven: a
//! reader subscribes to its partitions' high-watermark channels before it reads, so an
//! append between the read and the wait still wakes it. `Consume` sends through a
//! channel of [`CONSUME_CHANNEL_CAPACITY`] messages, so a slow client slows the broker's
//! reads instead of growing a buffer.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::select_all;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use weir_cluster::{ClusterError, Partition, Topic};
use weir_log::FetchData;
use weir_proto::v1::{
    self, ConsumeRequest, ConsumeResponse, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, OffsetPosition, PartitionFetchResult, PartitionOffsetResult, RecordFormat,
    consumer_server::Consumer, offset_spec::Spec,
};

use crate::Broker;
use crate::convert;
use crate::status::{self, invalid_argument};

/// Messages buffered on one Consume stream; the reader waits when the client lags.
pub const CONSUME_CHANNEL_CAPACITY: usize = 4;
/// A partition's share of a fetch when the request says 0 (as the proto says).
pub const DEFAULT_PARTITION_FETCH_BYTES: usize = 1024 * 1024;
/// A fetch's total when the request says 0 (as the proto says): an answer that fits the
/// 4 MiB receive limit of grpc-python and grpc-go clients with their defaults, with room
/// for the per-partition fields. Decoded records are counted at their encoded size.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 4 * 1024 * 1024 - 128 * 1024;
/// Longest long-poll wait a fetch may ask for.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(60);

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
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown record format {value}"
        ))),
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
    /// Records in the answer.
    count: u64,
    /// A stored batch that could not be decoded: `records` are those before it, and
    /// `next_offset` is at it.
    undecodable: Option<convert::UndecodableBatch>,
}

/// `data` (read from `partition` of `topic` at `from`) as decoded records (at most
/// `budget` bytes of them, encoded) or as the raw batches. A batch that cannot be decoded
/// ends the records; it is reported here (log line, metric).
fn shape(
    broker: &Broker,
    topic: &str,
    partition: u32,
    data: &FetchData,
    from: i64,
    decoded: bool,
    budget: usize,
) -> Shaped {
    if decoded {
        let d = convert::decode_from(data.batches(), from, budget);
        let mut next_offset = d.stopped_at.unwrap_or(data.next_offset);
        if let Some(bad) = &d.undecodable {
            report_undecodable(broker, topic, partition, data, bad);
            next_offset = bad.base_offset.max(from);
        }
        Shaped {
            count: d.records.len() as u64,
            records: d.records,
            batches: bytes::Bytes::new(),
            next_offset,
            bytes: d.bytes,
            undecodable: d.undecodable,
        }
    } else {
        Shaped {
            records: Vec::new(),
            batches: data.records.clone(),
            next_offset: data.next_offset,
            bytes: data.records.len(),
            count: convert::record_count(data.batches()),
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
    broker.metrics.undecodable_batch(topic);
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

/// One partition's part of a fetch; `None` for the partition means it does not exist.
/// The experimental wire path (`wire`) reads raw batches through it too.
pub(crate) async fn fetch_one(
    broker: &Broker,
    topic: &Topic,
    partition: Option<&Partition>,
    offset: i64,
    max_bytes: usize,
    decoded: bool,
    index: u32,
) -> (PartitionFetchResult, usize) {
    let mut result = PartitionFetchResult {
        partition: index,
        error: None,
        high_watermark: -1,
        log_start_offset: -1,
        next_offset: offset,
        records: Vec::new(),
        batches: bytes::Bytes::new(),
    };
    let Some(partition) = partition else {
        result.error = Some(invalid_argument(format!(
            "topic {:?} has no partition {index} (it has {})",
            topic.name,
            topic.partition_count()
        )));
        return (result, 0);
    };
    if let Ok(offsets) = partition.offsets().await {
        result.high_watermark = offsets.high_watermark;
        result.log_start_offset = offsets.log_start_offset;
    }
    if max_bytes == 0 {
        return (result, 0);
    }
    match partition.read(offset, max_bytes).await {
        Ok(data) => {
            let shaped = shape(
                broker,
                &topic.name,
                index,
                &data,
                offset,
                decoded,
                max_bytes,
            );
            broker
                .metrics
                .consumed(&topic.name, shaped.count, shaped.bytes as u64);
            result.error = shaped
                .undecodable
                .as_ref()
                .map(|bad| undecodable(&topic.name, index, bad).partition_error());
            result.records = shaped.records;
            result.batches = shaped.batches;
            result.next_offset = shaped.next_offset;
            (result, shaped.bytes)
        }
        Err(e) => {
            if let ClusterError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            } = &e
            {
                result.log_start_offset = *log_start_offset;
                result.high_watermark = *high_watermark;
            }
            result.error = Some(status::partition_error(&e));
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
        let _timer = self.broker.metrics.rpc_timer("Fetch");
        let req = request.into_inner();
        let topic = self
            .broker
            .registry
            .topic(&req.topic)
            .map_err(status::status)?;
        let decoded = record_format(req.format)?;
        let total_max = match req.max_bytes {
            0 => DEFAULT_FETCH_MAX_BYTES,
            n => n as usize,
        }
        .min(crate::MAX_RESPONSE_BYTES);
        let min_bytes = req.min_bytes.max(1) as usize;
        let deadline =
            Instant::now() + Duration::from_millis(req.max_wait_ms.into()).min(MAX_FETCH_WAIT);
        let partitions: Vec<Option<Arc<Partition>>> = req
            .partitions
            .iter()
            .map(|pf| topic.partition(pf.partition).ok())
            .collect();
        let mut shutdown = self.broker.shutdown.clone();
        loop {
            // Subscribe before reading: an append after the read still wakes the wait.
            let mut watches: Vec<_> = partitions.iter().flatten().map(|p| p.subscribe()).collect();
            let mut results = Vec::with_capacity(req.partitions.len());
            let (mut total, mut failed) = (0, false);
            for (pf, partition) in req.partitions.iter().zip(&partitions) {
                let share = match pf.max_bytes {
                    0 => DEFAULT_PARTITION_FETCH_BYTES,
                    n => n as usize,
                }
                .min(total_max.saturating_sub(total));
                let (result, bytes) = fetch_one(
                    &self.broker,
                    &topic,
                    partition.as_deref(),
                    pf.offset,
                    share,
                    decoded,
                    pf.partition,
                )
                .await;
                failed |= result.error.is_some();
                total += bytes;
                results.push(result);
            }
            let stopping = *shutdown.borrow_and_update();
            if total >= min_bytes
                || failed
                || stopping
                || Instant::now() >= deadline
                || watches.is_empty()
            {
                return Ok(Response::new(FetchResponse { results }));
            }
            let any_append = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                _ = any_append => {}
                _ = tokio::time::sleep_until(deadline) => {}
                // Shutting down: answer with what there is rather than hold shutdown up.
                _ = shutdown.changed() => {}
            }
        }
    }

    type ConsumeStream = ConsumeStream;

    async fn consume(
        &self,
        request: Request<ConsumeRequest>,
    ) -> Result<Response<Self::ConsumeStream>, Status> {
        let req = request.into_inner();
        let topic = self
            .broker
            .registry
            .topic(&req.topic)
            .map_err(status::status)?;
        let partition = topic.partition(req.partition).map_err(status::status)?;
        let decoded = record_format(req.format)?;
        let max_bytes = match req.max_bytes {
            0 => DEFAULT_PARTITION_FETCH_BYTES,
            n => n as usize,
        }
        .min(crate::MAX_RESPONSE_BYTES);
        // Refuse a bad start at once, as a status, instead of as the stream's first item.
        let offsets = partition.offsets().await.map_err(status::status)?;
        // Past the high watermark but inside the log is "nothing yet" (see
        // `Partition::read`), not out of range.
        if req.offset < offsets.log_start_offset || req.offset > offsets.log_end_offset {
            return Err(status::status(ClusterError::OffsetOutOfRange {
                topic: topic.name.clone(),
                partition: req.partition,
                offset: req.offset,
                log_start_offset: offsets.log_start_offset,
                high_watermark: offsets.high_watermark,
            }));
        }
        let (tx, rx) = mpsc::channel(CONSUME_CHANNEL_CAPACITY);
        let broker = self.broker.clone();
        tokio::spawn(async move {
            let mut offset = req.offset;
            let mut shutdown = broker.shutdown.clone();
            loop {
                let mut watch = partition.subscribe();
                let data = match partition.read(offset, max_bytes).await {
                    Ok(data) => data,
                    Err(e) => {
                        let _ = tx.send(Err(status::status(e))).await;
                        return;
                    }
                };
                if !data.records.is_empty() {
                    let _timer = broker.metrics.rpc_timer("Consume");
                    let shaped = shape(
                        &broker,
                        &topic.name,
                        req.partition,
                        &data,
                        offset,
                        decoded,
                        max_bytes,
                    );
                    broker
                        .metrics
                        .consumed(&topic.name, shaped.count, shaped.bytes as u64);
                    offset = shaped.next_offset;
                    // A batch that cannot be decoded ends the stream, after the records
                    // before it; the client opens another past it if it chooses to.
                    let end = shaped
                        .undecodable
                        .as_ref()
                        .map(|bad| undecodable(&topic.name, req.partition, bad).status());
                    if end.is_none() || !shaped.records.is_empty() {
                        let message = ConsumeResponse {
                            records: shaped.records,
                            batches: shaped.batches,
                            next_offset: offset,
                            high_watermark: partition.high_watermark(),
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
                    continue;
                }
                if *shutdown.borrow_and_update() {
                    let _ = tx
                        .send(Err(Status::unavailable("the broker is shutting down")))
                        .await;
                    return;
                }
                tokio::select! {
                    _ = watch.changed() => {}
                    _ = tx.closed() => return,
                    _ = shutdown.changed() => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let _timer = self.broker.metrics.rpc_timer("ListOffsets");
        let req = request.into_inner();
        let topic = self
            .broker
            .registry
            .topic(&req.topic)
            .map_err(status::status)?;
        let mut results = Vec::with_capacity(req.partitions.len());
        for query in req.partitions {
            let mut result = PartitionOffsetResult {
                partition: query.partition,
                offset: -1,
                timestamp_ms: -1,
                error: None,
            };
            match list_one(
                &self.broker,
                &topic,
                query.partition,
                query.spec.and_then(|s| s.spec),
            )
            .await
            {
                Ok((offset, timestamp_ms)) => {
                    result.offset = offset;
                    result.timestamp_ms = timestamp_ms;
                }
                Err(e) => result.error = Some(e),
            }
            results.push(result);
        }
        Ok(Response::new(ListOffsetsResponse { results }))
    }
}

/// One partition's offset lookup: `(offset, timestamp or -1)`.
async fn list_one(
    broker: &Broker,
    topic: &Topic,
    index: u32,
    spec: Option<Spec>,
) -> Result<(i64, i64), v1::PartitionError> {
    let err = |e: ClusterError| status::partition_error(&e);
    let partition = topic.partition(index).map_err(err)?;
    let offsets = partition.leader_offsets().await.map_err(err)?;
    match spec {
        None => Err(invalid_argument(format!(
            "partition {index}: no offset spec (position or timestamp_ms)"
        ))),
        Some(Spec::Position(position)) => match OffsetPosition::try_from(position) {
            Ok(OffsetPosition::Earliest) => Ok((offsets.log_start_offset, -1)),
            Ok(OffsetPosition::Latest) => Ok((offsets.high_watermark, -1)),
            Ok(OffsetPosition::Unspecified) | Err(_) => Err(invalid_argument(format!(
                "partition {index}: position is {position}; it must be \
                 OFFSET_POSITION_EARLIEST (1) or OFFSET_POSITION_LATEST (2), \
                 OFFSET_POSITION_UNSPECIFIED (0) selects nothing"
            ))),
        },
        Some(Spec::TimestampMs(ts)) => {
            let Some(offset) = partition.offset_for_timestamp(ts).await.map_err(err)? else {
                return Ok((offsets.high_watermark, -1));
            };
            // The record's own timestamp, from the batch that holds it.
            let data = partition.read(offset, 1).await.map_err(err)?;
            // A budget of 1 byte: the first record only.
            let decoded = convert::decode_from(data.batches(), offset, 1);
            if let Some(bad) = &decoded.undecodable
                && decoded.records.is_empty()
            {
                report_undecodable(broker, &topic.name, index, &data, bad);
                return Err(undecodable(&topic.name, index, bad).partition_error());
            }
            let records = decoded.records;
            let timestamp = records.first().map_or(-1, |r| r.timestamp_ms);
            Ok((records.first().map_or(offset, |r| r.offset), timestamp))
        }
    }
}
