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
//! broker stops reading the stream and HTTP/2 flow control slows the client; the same
//! happens while the broker-wide request budget has no room for the next request.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use weir_broker::budget::RequestBytesPermit;
use weir_broker::produce::{self, ProduceData, ProducerIdentity};
use weir_broker::{BrokerError, RequestContext};
use weir_proto::v1::{
    self, Acks, PartitionProduceResult, PartitionRecords, ProduceRequest, ProduceResponse,
    ProduceStreamRequest, ProduceStreamResponse, partition_records::Data,
    producer_server::Producer,
};

use crate::status;
use crate::{Broker, convert};

/// Requests of one ProduceStream being written or awaiting their acks at once.
pub const MAX_IN_FLIGHT_PER_STREAM: usize = 64;
/// Answers buffered for a ProduceStream client that reads them slowly.
pub const PRODUCE_STREAM_RESPONSE_BUFFER: usize = 16;
/// How long `acks=all` waits when the request gives no timeout (as the proto says).
pub use weir_broker::limits::DEFAULT_PRODUCE_TIMEOUT;

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

/// A produce queued on its partitions by the core.
pub(crate) struct PendingProduce(produce::PendingProduce);

/// Decodes `req` and hands it to the core, a transactional producer's verified first
/// (KIP-890); whole-request problems (unknown topic, bad acks, no Write on the
/// transactional id) are a status.
pub(crate) async fn submit(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ProduceRequest,
) -> Result<PendingProduce, Status> {
    let acks = match Acks::try_from(req.acks) {
        // acks=all is the default, as in Kafka 3.0+.
        Ok(Acks::Unspecified | Acks::All) => produce::Acks::All,
        Ok(Acks::Leader) => produce::Acks::Leader,
        Ok(Acks::None) => produce::Acks::None,
        Err(_) => {
            return Err(crate::status::invalid(format!(
                "unknown acks value {}",
                req.acks
            )));
        }
    };
    let now_ms = weir_broker::now_ms();
    let transactional_id = req.transactional_id;
    let mut request = produce::ProduceRequest {
        topic: req.topic,
        acks,
        timeout: (req.timeout_ms > 0).then(|| Duration::from_millis(req.timeout_ms.into())),
        partitions: req
            .partitions
            .into_iter()
            .map(|pr| produce::PartitionProduce {
                partition: pr.partition,
                data: decode_partition(pr, now_ms),
            })
            .collect(),
    };
    if !transactional_id.is_empty() {
        weir_broker::transactions::verify_produce(
            &broker.core,
            ctx,
            &transactional_id,
            &mut request,
        )
        .await
        .map_err(status::broker_status)?;
    }
    produce::submit(&broker.core, ctx, request)
        .await
        .map(PendingProduce)
        .map_err(status::broker_status)
}

/// One partition's records or batches as the core takes them.
fn decode_partition(pr: PartitionRecords, now_ms: i64) -> Result<ProduceData, BrokerError> {
    let index = pr.partition;
    let bad = |what: String| BrokerError::invalid(format!("partition {index}: {what}"));
    match pr.data {
        None => Err(bad("no records".into())),
        Some(Data::Records(list)) => {
            let compression = convert::compression(pr.compression)
                .ok_or_else(|| bad(format!("unknown compression {}", pr.compression)))?;
            let producer = match pr.producer_id {
                None => None,
                Some(producer_id) => Some(ProducerIdentity {
                    producer_id,
                    producer_epoch: i16::try_from(pr.producer_epoch).map_err(|_| {
                        bad(format!(
                            "producer_epoch {} does not fit an int16",
                            pr.producer_epoch
                        ))
                    })?,
                    base_sequence: pr.base_sequence,
                }),
            };
            Ok(ProduceData::Records {
                records: list
                    .records
                    .into_iter()
                    .map(|r| convert::record(r, now_ms))
                    .collect(),
                compression,
                producer,
                // Set by the transactional check, for a transactional producer's.
                verification: None,
            })
        }
        Some(Data::Batches(bytes)) => {
            let compression = match v1::Compression::try_from(pr.compression) {
                Ok(v1::Compression::Unspecified) => None,
                Ok(_) => convert::compression(pr.compression),
                Err(_) => return Err(bad(format!("unknown compression {}", pr.compression))),
            };
            // Kept as received (a slice of the request's buffer): the log writes the
            // assigned offsets from patched copies of the headers, not into these bytes.
            Ok(ProduceData::Batches {
                bytes,
                compression,
                verification: None,
            })
        }
    }
}

impl PendingProduce {
    /// Waits for every partition's answer (not at all with `acks=none`).
    pub(crate) async fn finish(self) -> ProduceResponse {
        let results = self
            .0
            .finish()
            .await
            .into_iter()
            .map(|r| match r.outcome {
                Ok(a) => PartitionProduceResult {
                    partition: r.partition,
                    base_offset: a.base_offset,
                    last_offset: a.last_offset,
                    log_append_time_ms: a.log_append_time_ms,
                    error: None,
                },
                Err(e) => PartitionProduceResult {
                    partition: r.partition,
                    base_offset: -1,
                    last_offset: -1,
                    log_append_time_ms: -1,
                    error: Some(status::broker_partition_error(&e)),
                },
            })
            .collect();
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
        let _timer = self.broker.metrics().rpc_timer("Produce");
        let ctx = crate::grpc_context(&request);
        let pending = submit(&self.broker, &ctx, request.into_inner()).await?;
        Ok(Response::new(pending.finish().await))
    }

    async fn init_producer_id(
        &self,
        request: Request<v1::InitProducerIdRequest>,
    ) -> Result<Response<v1::InitProducerIdResponse>, Status> {
        let _timer = self.broker.metrics().rpc_timer("InitProducerId");
        let ctx = crate::grpc_context(&request);
        let name = request.into_inner().producer_name;
        let name = (!name.is_empty()).then_some(name);
        let (producer_id, producer_epoch) =
            weir_broker::producers::init_producer_id(&self.broker.core, &ctx, name)
                .await
                .map_err(status::broker_status)?;
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
        let ctx = crate::grpc_context(&request);
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(PRODUCE_STREAM_RESPONSE_BUFFER);
        tokio::spawn(run_stream(self.broker.clone(), ctx, inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type StreamItem = Result<ProduceStreamResponse, Status>;
type InFlight = Pin<Box<dyn Future<Output = StreamItem> + Send>>;

/// Reads a ProduceStream, keeping up to [`MAX_IN_FLIGHT_PER_STREAM`] requests in flight
/// and answering in request order. Stops reading at shutdown or on the first
/// whole-request error (answered in order, then the stream ends).
///
/// Each request holds its size in the broker-wide request budget
/// (`max_in_flight_request_bytes`) until it is answered. A request that finds no room
/// waits, with the stream's earlier requests still being answered (so a stream never
/// waits on room it holds itself), and nothing more is read meanwhile: HTTP/2 flow
/// control makes the client wait.
async fn run_stream(
    broker: Arc<Broker>,
    ctx: RequestContext,
    mut inbound: Streaming<ProduceStreamRequest>,
    tx: mpsc::Sender<StreamItem>,
) {
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    let mut shutdown = broker.core.shutdown_signal();
    let mut reading = true;
    type Waiting = Pin<Box<dyn Future<Output = (ProduceStreamRequest, RequestBytesPermit)> + Send>>;
    let mut waiting: Option<Waiting> = None;
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
            (m, room) = async { waiting.as_mut().expect("guarded").await }, if waiting.is_some() => {
                waiting = None;
                let (item, go_on) = start_one(&broker, &ctx, m, room).await;
                reading &= go_on;
                in_flight.push_back(item);
            }
            message = inbound.message(),
                if reading && waiting.is_none() && in_flight.len() < MAX_IN_FLIGHT_PER_STREAM =>
            {
                match message {
                    Ok(Some(m)) => {
                        let bytes = m.encoded_len();
                        match broker.budget.try_request_bytes(bytes) {
                            Some(room) => {
                                let (item, go_on) = start_one(&broker, &ctx, m, room).await;
                                reading &= go_on;
                                in_flight.push_back(item);
                            }
                            None => {
                                let budget = broker.budget.clone();
                                waiting = Some(Box::pin(async move {
                                    let room = budget.request_bytes(bytes).await;
                                    (m, room)
                                }));
                            }
                        }
                    }
                    Ok(None) => reading = false,
                    Err(status) => {
                        reading = false;
                        // A request over the limit is answered, in order, as
                        // RESOURCE_EXHAUSTED; otherwise the client's side broke: answer
                        // what is in flight, then end.
                        match crate::oversize::request_too_large(&status, broker.core.max_request_bytes()) {
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

/// Submits one stream request; its answer (holding `room` until then), and whether the
/// stream goes on being read (not after a whole-request error).
async fn start_one(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    m: ProduceStreamRequest,
    room: RequestBytesPermit,
) -> (InFlight, bool) {
    // Latency of one pipelined request, from read to answer.
    let timer = broker.metrics().rpc_timer("ProduceStream");
    let sequence = m.sequence;
    match m.request {
        None => (
            Box::pin(std::future::ready(Err(crate::status::invalid(format!(
                "stream request {sequence} has no `request`"
            ))))),
            false,
        ),
        Some(req) => match submit(broker, ctx, req).await {
            Ok(pending) => (
                Box::pin(async move {
                    let response = pending.finish().await;
                    drop((timer, room));
                    Ok(ProduceStreamResponse {
                        sequence,
                        response: Some(response),
                    })
                }),
                true,
            ),
            Err(status) => (Box::pin(std::future::ready(Err(status))), false),
        },
    }
}
