//! The Producer service: unary `Produce` and the pipelined `ProduceStream`.
//!
//! A produce is handled in two steps. [`submit`] checks and packs every partition's
//! records on the request's task (validation, CRC and compression run here, outside
//! any partition lock and in parallel with other requests) and queues them on their
//! partitions, in request order; [`PendingProduce::finish`] waits for the answers as
//! `acks` asks. The stream submits request after request while earlier ones are still
//! being written (pipelining) and answers in request order, so answers for one
//! partition arrive in the order its records were appended. At most
//! [`MAX_IN_FLIGHT_PER_STREAM`] requests are in flight per stream; beyond that the
//! broker stops reading the stream and HTTP/2 flow control slows the client.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};
use weir_cluster::{ClusterError, Durability, PendingAppend, TimestampType, Topic};
use weir_log::{Compression, RecordBatchBuilder, ValidatedBatches};
use weir_proto::v1::{
    self, Acks, PartitionProduceResult, PartitionRecords, ProduceRequest, ProduceResponse,
    ProduceStreamRequest, ProduceStreamResponse, partition_records::Data,
    producer_server::Producer,
};

use crate::Broker;
use crate::convert;
use crate::status::{self, invalid_argument, partition_error_code};

/// Requests of one ProduceStream being written or awaiting their acks at once.
pub const MAX_IN_FLIGHT_PER_STREAM: usize = 64;
/// Answers buffered for a ProduceStream client that reads them slowly.
pub const PRODUCE_STREAM_RESPONSE_BUFFER: usize = 16;
/// How long `acks=all` waits when the request gives no timeout (as the proto says).
pub const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// The Producer gRPC service.
#[derive(Debug, Clone)]
pub struct ProducerService {
    broker: Arc<Broker>,
}

impl ProducerService {
    pub(crate) fn new(broker: Arc<Broker>) -> ProducerService {
        ProducerService { broker }
    }
}

enum Waiting {
    /// Queued; the log's answer comes here.
    Appending {
        pending: PendingAppend,
        records: u64,
        log_append_time_ms: i64,
    },
    /// Refused before reaching the log; nothing was appended.
    Refused(v1::PartitionError),
}

/// A produce queued on its partitions, waiting for their answers.
pub(crate) struct PendingProduce {
    broker: Arc<Broker>,
    topic: Arc<Topic>,
    acks: Acks,
    deadline: Instant,
    partitions: Vec<(u32, Waiting)>,
}

/// Checks, packs and queues every partition of `req`; whole-request problems (unknown
/// topic, bad acks) are a status.
pub(crate) async fn submit(
    broker: &Arc<Broker>,
    req: ProduceRequest,
) -> Result<PendingProduce, Status> {
    let acks = match Acks::try_from(req.acks) {
        // acks=all is the default, as in Kafka 3.0+.
        Ok(Acks::Unspecified) => Acks::All,
        Ok(acks) => acks,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown acks value {}",
                req.acks
            )));
        }
    };
    let topic = broker.registry.topic(&req.topic).map_err(status::status)?;
    if topic.is_internal() {
        return Err(Status::invalid_argument(format!(
            "topic {} is internal: only the broker writes to it",
            req.topic
        )));
    }
    let timeout = match req.timeout_ms {
        0 => DEFAULT_PRODUCE_TIMEOUT,
        ms => Duration::from_millis(ms.into()),
    };
    let durability = match acks {
        Acks::All => Durability::Durable,
        _ => Durability::Written,
    };
    let now_ms = convert::now_ms();
    let mut seen = HashSet::new();
    let mut partitions = Vec::with_capacity(req.partitions.len());
    for pr in req.partitions {
        let index = pr.partition;
        let waiting = if !seen.insert(index) {
            Waiting::Refused(invalid_argument(format!(
                "partition {index} appears more than once in the request"
            )))
        } else {
            match prepare(&topic, pr, now_ms) {
                Err(e) => Waiting::Refused(e),
                Ok((batches, log_append_time_ms)) => {
                    let records = batches
                        .headers()
                        .iter()
                        .map(|h| h.record_count as u64)
                        .sum();
                    let partition = topic.partition(index).expect("checked in prepare");
                    match partition.submit(batches, durability).await {
                        Ok(pending) => Waiting::Appending {
                            pending,
                            records,
                            log_append_time_ms,
                        },
                        Err(e) => Waiting::Refused(status::partition_error(&e)),
                    }
                }
            }
        };
        partitions.push((index, waiting));
    }
    Ok(PendingProduce {
        broker: broker.clone(),
        topic,
        acks,
        deadline: Instant::now() + timeout,
        partitions,
    })
}

/// Packs or validates one partition's records; returns the batches and the append
/// time stamped on them (-1 for CreateTime topics).
fn prepare(
    topic: &Topic,
    pr: PartitionRecords,
    now_ms: i64,
) -> Result<(ValidatedBatches, i64), v1::PartitionError> {
    let index = pr.partition;
    let partition = topic
        .partition(index)
        .map_err(|e| status::partition_error(&e))?;
    let config = partition.config();
    let max = config.log.max_message_bytes;
    let log_append_time = config.timestamp_type == TimestampType::LogAppendTime;
    let bad = |what: String| invalid_argument(format!("partition {index}: {what}"));
    // The codec a request says its packed batches use, if it says.
    let mut labelled = None;
    let bytes = match pr.data {
        None => return Err(bad("no records".into())),
        Some(Data::Records(list)) => {
            if list.records.is_empty() {
                return Err(bad("no records".into()));
            }
            let codec = convert::compression(pr.compression)
                .ok_or_else(|| bad(format!("unknown compression {}", pr.compression)))?;
            let mut builder = RecordBatchBuilder::new(codec);
            if let Some(producer_id) = pr.producer_id {
                let epoch = i16::try_from(pr.producer_epoch).map_err(|_| {
                    bad(format!(
                        "producer_epoch {} does not fit an int16",
                        pr.producer_epoch
                    ))
                })?;
                if producer_id < 0 || epoch < 0 || pr.base_sequence < 0 {
                    return Err(bad(format!(
                        "producer_id {producer_id}, producer_epoch {epoch} and base_sequence {} must not be negative",
                        pr.base_sequence
                    )));
                }
                builder = builder
                    .producer_id(producer_id)
                    .producer_epoch(epoch)
                    .base_sequence(pr.base_sequence);
            }
            if log_append_time {
                builder = builder.log_append_time(now_ms);
            }
            for r in list.records {
                builder
                    .try_push(&convert::record(r, now_ms))
                    .map_err(|e| bad(e.to_string()))?;
            }
            builder.build().map_err(|e| bad(e.to_string()))?.freeze()
        }
        Some(Data::Batches(bytes)) => {
            if log_append_time {
                // Stamping the append time into a packed batch changes bytes under its
                // CRC, so it would mean re-encoding every batch on the hot path.
                return Err(bad(
                    "the topic uses message.timestamp.type=LogAppendTime, which accepts plain records only; send `records` instead of packed `batches`".into(),
                ));
            }
            labelled = match v1::Compression::try_from(pr.compression) {
                Ok(v1::Compression::Unspecified) => None,
                Ok(_) => convert::compression(pr.compression),
                Err(_) => return Err(bad(format!("unknown compression {}", pr.compression))),
            };
            // Kept as received (a slice of the request's buffer): the log writes the
            // assigned offsets from patched copies of the headers, not into these bytes.
            bytes
        }
    };
    // Every batch is checked here, compressed ones decompressed and walked (see
    // `weir_log::check_request`): a batch that cannot be decoded refuses the partition's
    // whole data, as CORRUPT_BATCH naming the batch.
    let batches = ValidatedBatches::new(bytes, max).map_err(|source| {
        status::partition_error(&ClusterError::Append {
            topic: topic.name.clone(),
            partition: index,
            source,
        })
    })?;
    if let Some(codec) = labelled {
        check_labels(&topic.name, index, &batches, codec)?;
    }
    Ok((batches, if log_append_time { now_ms } else { -1 }))
}

/// Checks that every packed batch is compressed with `codec`, the request's
/// `compression` (see the proto: UNSPECIFIED skips this).
fn check_labels(
    topic: &str,
    partition: u32,
    batches: &ValidatedBatches,
    codec: Compression,
) -> Result<(), v1::PartitionError> {
    let mut position = 0;
    for (i, header) in batches.headers().iter().enumerate() {
        // Validated, so the codec is a known one.
        let actual = header.compression().unwrap_or(codec);
        if actual != codec {
            return Err(status::invalid_request(
                topic,
                partition,
                format!(
                    "partition {topic}/{partition}: batch {i} (at byte {position} of the \
                     request) is compressed with {actual}, but the request's compression \
                     says {codec}; nothing was appended. Send COMPRESSION_UNSPECIFIED to \
                     take each batch's codec from its attributes"
                ),
            ));
        }
        position += header.total_bytes();
    }
    Ok(())
}

impl PendingProduce {
    /// Waits for every partition's answer (not at all with `acks=none`).
    pub(crate) async fn finish(self) -> ProduceResponse {
        let mut results = Vec::with_capacity(self.partitions.len());
        for (partition, waiting) in self.partitions {
            let mut result = PartitionProduceResult {
                partition,
                base_offset: -1,
                last_offset: -1,
                log_append_time_ms: -1,
                error: None,
            };
            match waiting {
                Waiting::Refused(e) => result.error = Some(e),
                // Fire and forget: the append goes on; its errors are not reported.
                Waiting::Appending { .. } if self.acks == Acks::None => {}
                Waiting::Appending {
                    pending,
                    records,
                    log_append_time_ms,
                } => match tokio::time::timeout_at(self.deadline, pending).await {
                    Ok(Ok(Ok(outcome))) => {
                        result.base_offset = outcome.base_offset;
                        result.last_offset = outcome.last_offset;
                        result.log_append_time_ms = log_append_time_ms;
                        if !outcome.duplicate {
                            self.broker
                                .metrics
                                .produced(&self.topic.name, records, outcome.bytes);
                        }
                    }
                    Ok(Ok(Err(e))) => result.error = Some(status::partition_error(&e)),
                    Ok(Err(_)) => {
                        result.error = Some(partition_error_code(
                            Code::Unavailable,
                            format!("partition {partition} closed before answering"),
                        ))
                    }
                    Err(_) => {
                        result.error = Some(partition_error_code(
                            Code::DeadlineExceeded,
                            format!(
                                "partition {partition}: timed out waiting for the append; the records may still be appended"
                            ),
                        ))
                    }
                },
            }
            results.push(result);
        }
        ProduceResponse { results }
    }
}

type ResponseStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<ProduceStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Producer for ProducerService {
    async fn produce(
        &self,
        request: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        let _timer = self.broker.metrics.rpc_timer("Produce");
        let pending = submit(&self.broker, request.into_inner()).await?;
        Ok(Response::new(pending.finish().await))
    }

    async fn init_producer_id(
        &self,
        request: Request<v1::InitProducerIdRequest>,
    ) -> Result<Response<v1::InitProducerIdResponse>, Status> {
        let _timer = self.broker.metrics.rpc_timer("InitProducerId");
        let name = request.into_inner().producer_name;
        let name = (!name.is_empty()).then_some(name);
        let (producer_id, producer_epoch) = self
            .broker
            .registry
            .cluster()
            .init_producer_id(name)
            .await
            .map_err(status::status)?;
        Ok(Response::new(v1::InitProducerIdResponse {
            producer_id,
            producer_epoch: producer_epoch.into(),
        }))
    }

    type ProduceStreamStream = ResponseStream;

    async fn produce_stream(
        &self,
        request: Request<Streaming<ProduceStreamRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(PRODUCE_STREAM_RESPONSE_BUFFER);
        tokio::spawn(run_stream(self.broker.clone(), inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type StreamItem = Result<ProduceStreamResponse, Status>;

/// Reads a ProduceStream, keeping up to [`MAX_IN_FLIGHT_PER_STREAM`] requests in flight
/// and answering in request order. Stops reading at shutdown or on the first
/// whole-request error (answered in order, then the stream ends).
async fn run_stream(
    broker: Arc<Broker>,
    mut inbound: Streaming<ProduceStreamRequest>,
    tx: mpsc::Sender<StreamItem>,
) {
    let mut in_flight: FuturesOrdered<Pin<Box<dyn Future<Output = StreamItem> + Send>>> =
        FuturesOrdered::new();
    let mut shutdown = broker.shutdown.clone();
    let mut reading = true;
    loop {
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                let failed = done.is_err();
                if tx.send(done).await.is_err() || failed {
                    return;
                }
            }
            () = crate::until_stopping(&mut shutdown), if reading => reading = false,
            message = inbound.message(), if reading && in_flight.len() < MAX_IN_FLIGHT_PER_STREAM => {
                match message {
                    Ok(Some(m)) => {
                        // Latency of one pipelined request, from read to answer.
                        let timer = broker.metrics.rpc_timer("ProduceStream");
                        let sequence = m.sequence;
                        let item: Pin<Box<dyn Future<Output = StreamItem> + Send>> = match m.request {
                            None => {
                                reading = false;
                                Box::pin(std::future::ready(Err(Status::invalid_argument(format!(
                                    "stream request {sequence} has no `request`"
                                )))))
                            }
                            Some(req) => match submit(&broker, req).await {
                                Ok(pending) => Box::pin(async move {
                                    let response = pending.finish().await;
                                    drop(timer);
                                    Ok(ProduceStreamResponse {
                                        sequence,
                                        response: Some(response),
                                    })
                                }),
                                Err(status) => {
                                    reading = false;
                                    Box::pin(std::future::ready(Err(status)))
                                }
                            },
                        };
                        in_flight.push_back(item);
                    }
                    Ok(None) => reading = false,
                    Err(status) => {
                        reading = false;
                        // A request over the limit is answered, in order, as
                        // RESOURCE_EXHAUSTED; otherwise the client's side broke: answer
                        // what is in flight, then end.
                        match crate::oversize::request_too_large(&status, broker.max_request_bytes) {
                            Some(refused) => in_flight.push_back(Box::pin(std::future::ready(Err(refused)))),
                            None => tracing::debug!(error = %status, "produce stream read failed"),
                        }
                    }
                }
            }
            else => return,
        }
    }
}
