//! The sender task: drains the accumulator into requests on one `ProduceStream`, matches
//! responses to batches, and reports outcomes back to the accumulator.
//!
//! One task per producer owns the stream. Each request carries one batch per partition of
//! one topic; a partition may have up to `max_in_flight` requests outstanding (the
//! accumulator enforces it) and the broker answers each partition's requests in order.
//! A broken stream (an error, its end, or a request past `request_timeout`) fails every
//! outstanding request with a retriable error, in send order, and is reopened on the next
//! send: those batches may or may not have been appended, so a retry can duplicate them
//! (at-least-once, as Kafka without idempotence), but never reorders them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;
use weir_proto::v1 as pb;
use weir_proto::v1::producer_client::ProducerClient;

use super::accumulator::{Accumulator, BatchAck, ProducerBatch};
use super::config::{Acks, MAX_REQUESTS_IN_FLIGHT};
use crate::error::ClientError;

/// One request on the stream, waiting for its response.
struct InFlightRequest {
    batches: Vec<ProducerBatch>,
    deadline: Instant,
}

struct OpenStream {
    requests: mpsc::Sender<pb::ProduceStreamRequest>,
    responses: Streaming<pb::ProduceStreamResponse>,
}

/// See the module docs.
pub(crate) struct Sender {
    accumulator: Arc<Accumulator>,
    client: ProducerClient<Channel>,
    stream: Option<OpenStream>,
    /// By sequence, which is send order.
    in_flight: BTreeMap<u64, InFlightRequest>,
    next_sequence: u64,
}

impl Sender {
    pub(crate) fn new(accumulator: Arc<Accumulator>, client: ProducerClient<Channel>) -> Sender {
        Sender {
            accumulator,
            client,
            stream: None,
            in_flight: BTreeMap::new(),
            next_sequence: 0,
        }
    }

    /// Runs until the producer is closed and every batch has completed.
    pub(crate) async fn run(mut self) {
        loop {
            let now = Instant::now();
            if self
                .in_flight
                .values()
                .next()
                .is_some_and(|oldest| oldest.deadline <= now)
            {
                self.fail_stream(ClientError::DeadlineExceeded(
                    "the broker did not answer a produce request within request_timeout".to_owned(),
                ));
            }
            let budget = MAX_REQUESTS_IN_FLIGHT.saturating_sub(self.in_flight.len());
            let drained = self.accumulator.drain(now, budget);
            let mut rounds = drained.rounds.into_iter();
            while let Some(round) = rounds.next() {
                if let Err(error) = self.send_round(round).await {
                    // The stream broke: fail what was to follow too, so each partition's
                    // batches fail (and are retried) in order rather than later ones
                    // overtaking on a new stream.
                    for batch in rounds.by_ref().flatten() {
                        self.accumulator.complete(batch, Err(error.clone()), now);
                    }
                }
            }
            if self.accumulator.is_finished() {
                break;
            }
            // Requests are sent in sequence order with one timeout, so the first is the
            // oldest.
            let request_deadline = self.in_flight.values().next().map(|r| r.deadline);
            let wake_at = match (drained.next_wake, request_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                response = next_response(&mut self.stream) => self.on_response(response),
                () = self.accumulator.wake_sender.notified() => {}
                () = sleep_until(wake_at) => {}
            }
        }
        tracing::debug!("producer sender finished");
    }

    /// Sends one round (at most one batch per partition) as one request per topic. If the
    /// stream breaks, fails the round's unsent batches too and returns the error.
    async fn send_round(&mut self, round: Vec<ProducerBatch>) -> Result<(), ClientError> {
        let mut by_topic: HashMap<Arc<str>, Vec<ProducerBatch>> = HashMap::new();
        for batch in round {
            by_topic.entry(batch.topic.clone()).or_default().push(batch);
        }
        let mut topics = by_topic.into_iter();
        while let Some((topic, batches)) = topics.next() {
            let sequence = self.next_sequence;
            self.next_sequence += 1;
            let mut partitions = Vec::with_capacity(batches.len());
            let mut sent = Vec::with_capacity(batches.len());
            for mut batch in batches {
                match batch.encode() {
                    Ok(bytes) => {
                        partitions.push(pb::PartitionRecords {
                            partition: batch.partition,
                            compression: pb::Compression::Unspecified as i32,
                            data: Some(pb::partition_records::Data::Batches(bytes)),
                        });
                        batch.send_seq = sequence;
                        sent.push(batch);
                    }
                    Err(error) => self.accumulator.complete(batch, Err(error), Instant::now()),
                }
            }
            if sent.is_empty() {
                continue;
            }
            let config = self.accumulator.config();
            let request = pb::ProduceStreamRequest {
                sequence,
                request: Some(pb::ProduceRequest {
                    topic: topic.to_string(),
                    partitions,
                    acks: match config.acks {
                        Acks::None => pb::Acks::None,
                        Acks::Leader => pb::Acks::Leader,
                        Acks::All => pb::Acks::All,
                    } as i32,
                    timeout_ms: u32::try_from(config.request_timeout.as_millis())
                        .unwrap_or(u32::MAX),
                }),
            };
            let deadline = Instant::now() + config.request_timeout;
            self.in_flight.insert(
                sequence,
                InFlightRequest {
                    batches: sent,
                    deadline,
                },
            );
            if let Err(error) = self.transmit(request).await {
                self.fail_stream(error.clone());
                let now = Instant::now();
                for batch in topics.by_ref().flat_map(|(_, batches)| batches) {
                    self.accumulator.complete(batch, Err(error.clone()), now);
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// Puts a request on the stream, opening the stream first if there is none.
    async fn transmit(&mut self, request: pb::ProduceStreamRequest) -> Result<(), ClientError> {
        if let Some(stream) = &self.stream {
            // The channel holds MAX_REQUESTS_IN_FLIGHT and no more are outstanding, so
            // it is never full; a closed channel means the stream is gone.
            return stream.requests.try_send(request).map_err(|_| {
                ClientError::Unavailable("the produce stream to the broker closed".to_owned())
            });
        }
        let (requests, receiver) = mpsc::channel(MAX_REQUESTS_IN_FLIGHT);
        // Queue the first request before opening, so the broker has it as soon as the
        // stream exists whatever order it answers headers and reads in.
        requests.try_send(request).expect("a new channel has room");
        let responses = self
            .client
            .produce_stream(ReceiverStream::new(receiver))
            .await?
            .into_inner();
        self.stream = Some(OpenStream {
            requests,
            responses,
        });
        Ok(())
    }

    fn on_response(&mut self, response: Option<Result<pb::ProduceStreamResponse, tonic::Status>>) {
        let response = match response {
            Some(Ok(response)) => response,
            Some(Err(status)) => return self.fail_stream(status.into()),
            None => {
                return self.fail_stream(ClientError::Unavailable(
                    "the broker ended the produce stream".to_owned(),
                ));
            }
        };
        let Some(request) = self.in_flight.remove(&response.sequence) else {
            tracing::warn!(
                sequence = response.sequence,
                "response to no outstanding request"
            );
            return;
        };
        let results = response.response.map(|r| r.results).unwrap_or_default();
        let now = Instant::now();
        for (index, batch) in request.batches.into_iter().enumerate() {
            // Results come in request order; search only if the broker reordered them.
            let result = results
                .get(index)
                .filter(|r| r.partition == batch.partition)
                .or_else(|| results.iter().find(|r| r.partition == batch.partition));
            let outcome = match result {
                None => Err(ClientError::Rpc {
                    code: tonic::Code::Internal,
                    message: format!(
                        "the broker's answer has no result for partition {}",
                        batch.partition
                    ),
                }),
                Some(r) => match &r.error {
                    Some(error) => Err(ClientError::from_partition_error(error)),
                    None => Ok(BatchAck {
                        base_offset: r.base_offset,
                        log_append_time_ms: r.log_append_time_ms,
                    }),
                },
            };
            if let Err(ClientError::NotFound(_)) = &outcome {
                self.accumulator.invalidate(&batch.topic);
            }
            self.accumulator.complete(batch, outcome, now);
        }
    }

    /// Drops the stream and fails every outstanding request with `error`, in send order.
    fn fail_stream(&mut self, error: ClientError) {
        if !self.in_flight.is_empty() {
            tracing::warn!(requests = self.in_flight.len(), error = %error, "produce stream failed");
        }
        self.stream = None;
        let now = Instant::now();
        for (_, request) in std::mem::take(&mut self.in_flight) {
            for batch in request.batches {
                self.accumulator.complete(batch, Err(error.clone()), now);
            }
        }
    }
}

/// The next response on the stream; pending forever when there is no stream.
async fn next_response(
    stream: &mut Option<OpenStream>,
) -> Option<Result<pb::ProduceStreamResponse, tonic::Status>> {
    match stream {
        // `StreamExt::next` is cancel-safe: a response is never lost to `select!`.
        Some(stream) => stream.responses.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
