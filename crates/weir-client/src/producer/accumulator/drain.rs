//! The sender's side of the accumulator: [`drain`](Accumulator::drain) takes the
//! batches that may be sent now, [`complete`](Accumulator::complete) takes each one's
//! outcome (acknowledged, retried, failed) and gives its memory back.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{Accumulator, BatchAck, Drained, MAX_SPARE_BUFFERS, Numbering, Payload, ProducerBatch};
use crate::error::ClientError;
use crate::routing::BrokerId;

impl Accumulator {
    /// Closes batches whose linger ran out (all open batches when flushing or closing) and
    /// takes up to `budget` batches that may be sent now: the oldest ready batches of each
    /// partition that has fewer than `max_in_flight` in flight, is not backing off, is
    /// not waiting to retry earlier batches, and whose leader (`route`) is known and the
    /// broker its in-flight batches went to, if any. Taken batches count as in flight
    /// until [`complete`](Self::complete) is called for them.
    pub(crate) fn drain(
        &self,
        now: Instant,
        budget: usize,
        route: &dyn Fn(&str, u32) -> Option<BrokerId>,
    ) -> Drained {
        let mut guard = self.lock();
        let state = &mut *guard;
        let send_all = state.flushing > 0 || state.closing;
        let mut drained = Drained::default();
        let mut expired: Vec<(ProducerBatch, ClientError)> = Vec::new();
        let mut budget = budget;
        // The identity to number new batches under, if they are numbered and one is known.
        let numbering = match (self.config.idempotence, state.identity) {
            (false, _) => Numbering::Off,
            (true, Some(identity)) if !state.identity_wanted => Numbering::Under(identity),
            (true, _) => Numbering::Waiting,
        };
        let wake = |at: Instant, next: &mut Option<Instant>| {
            *next = Some(next.map_or(at, |n| n.min(at)));
        };
        for (topic_name, topic) in state.topics.iter_mut() {
            let count = topic.partitions.len() as u32;
            for (index, part) in topic.partitions.iter_mut().enumerate() {
                if let Some(open) = &part.open {
                    let deadline = open.created + self.config.linger;
                    let idle = self.config.send_when_idle
                        && part.in_flight == 0
                        && part.ready.is_empty()
                        && part.failed.is_empty()
                        && part.retry_at.is_none();
                    if send_all || idle || deadline <= now {
                        let open = part.open.take().expect("checked");
                        part.ready.push_back(open.batch);
                        part.filled = false;
                        topic.sticky.batch_closed(index as u32, count);
                    } else {
                        wake(deadline, &mut drained.next_wake);
                    }
                }
                if part.ready.is_empty() || !part.failed.is_empty() {
                    continue;
                }
                // A transactional producer's partition waits until it is in the
                // transaction (`txn.rs`).
                if let Some(gate) = state.txn.as_mut()
                    && !gate.may_send(part.in_transaction, topic_name, index as u32)
                {
                    continue;
                }
                if let Some(at) = part.retry_at {
                    // The backoff is for the broker that failed. Once the metadata names
                    // another leader, the retry goes at once (Kafka's KIP-951); until
                    // then the metadata is refreshed while waiting, so a new leader is
                    // seen within a refresh interval of its election, not a backoff.
                    let moved = match (route(topic_name, index as u32), part.failed_on) {
                        (Some(now_leader), Some(failed)) => now_leader != failed,
                        _ => false,
                    };
                    if at > now && !moved {
                        drained.waiting_on_failed.push(topic_name.clone());
                        wake(at, &mut drained.next_wake);
                        continue;
                    }
                    part.retry_at = None;
                    part.failed_on = None;
                }
                let Some(broker) = route(topic_name, index as u32) else {
                    let since = *part.unrouted_since.get_or_insert(now);
                    let give_up = since + self.config.request_timeout;
                    if give_up <= now {
                        let error = ClientError::Unavailable(format!(
                            "no leader of {topic_name}/{index} was known for {:?} (request_timeout)",
                            self.config.request_timeout
                        ));
                        expired.extend(part.ready.drain(..).map(|b| (b, error.clone())));
                        part.unrouted_since = None;
                    } else {
                        drained.unrouted.push((topic_name.clone(), index as u32));
                        wake(give_up, &mut drained.next_wake);
                    }
                    continue;
                };
                part.unrouted_since = None;
                if part.in_flight > 0 && part.in_flight_broker != Some(broker) {
                    // The leader moved: what went to the old one answers first.
                    continue;
                }
                let mut round = 0;
                while budget > 0 && part.in_flight < self.config.max_in_flight {
                    let Some(mut batch) = part.ready.pop_front() else {
                        break;
                    };
                    if batch.stamp.is_none() {
                        match numbering {
                            Numbering::Off => {}
                            Numbering::Waiting => {
                                part.ready.push_front(batch);
                                break;
                            }
                            Numbering::Under(identity) => {
                                part.stamp(&mut batch, identity, state.txn.is_some())
                            }
                        }
                    }
                    part.in_flight_broker = Some(broker);
                    batch.broker = broker;
                    part.in_flight += 1;
                    budget -= 1;
                    if drained.rounds.len() == round {
                        drained.rounds.push(Vec::new());
                    }
                    drained.rounds[round].push(batch);
                    round += 1;
                }
            }
        }
        if !expired.is_empty() {
            let mut released = 0;
            for (batch, _) in &expired {
                state.incomplete.remove(&batch.id);
                released += batch.reserved_bytes;
            }
            drop(guard);
            for (batch, error) in expired {
                tracing::debug!(topic = %batch.topic, partition = batch.partition, %error, "produce failed");
                batch.completion.complete(Err(error));
            }
            self.memory.add_permits(released);
        }
        drained
    }

    /// Records the outcome of one sent batch (each partition's outcomes in send order).
    ///
    /// The ordering rule: a batch that failed retriably is retried only if no later batch
    /// of its partition was appended meanwhile. So the partition pauses at the first
    /// failure; later in-flight batches answer; a later success means the earlier failures
    /// can no longer be retried without reordering, so they fail with their errors; once
    /// nothing is in flight, the batches still failed go back to the front of the queue,
    /// in order, after a backoff.
    pub(crate) fn complete(
        &self,
        mut batch: ProducerBatch,
        outcome: Result<BatchAck, ClientError>,
        now: Instant,
    ) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut done: Vec<(ProducerBatch, Result<BatchAck, ClientError>)> = Vec::new();
        let part = state
            .topics
            .get_mut(&*batch.topic)
            .and_then(|t| t.partitions.get_mut(batch.partition as usize))
            .expect("a batch's partition stays known");
        part.in_flight -= 1;
        if part.in_flight == 0 {
            part.in_flight_broker = None;
        }
        let poisoned = batch.stamp.is_some() && batch.stamp == part.poisoned;
        let mut fenced = None;
        match outcome {
            Ok(ack) => {
                done.extend(part.failed.drain(..).map(|(b, e)| (b, Err(e))));
                done.push((batch, Ok(ack)));
            }
            Err(error)
                if !poisoned && error.is_retriable() && batch.attempts < self.config.retries =>
            {
                batch.attempts += 1;
                tracing::debug!(
                    topic = %batch.topic, partition = batch.partition, attempt = batch.attempts,
                    error = %error, "produce failed; will retry"
                );
                part.failed.push((batch, error));
            }
            Err(error) => {
                if let Some(identity) = batch.stamp.filter(|_| !poisoned) {
                    // The batches numbered after it cannot be appended now: those not
                    // sent yet fail at once, those in flight when they answer; new
                    // batches are numbered under a new identity.
                    part.poisoned = Some(identity);
                    if state.identity == Some(identity) {
                        state.identity_wanted = true;
                    }
                    let context = format!(
                        "not sent: an earlier batch of {}/{} failed for good ({error}), and this one was numbered after it",
                        batch.topic, batch.partition
                    );
                    let (dead, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut part.ready)
                        .into_iter()
                        .partition(|b| b.stamp == Some(identity));
                    part.ready = kept;
                    done.extend(
                        dead.into_iter()
                            .map(|b| (b, Err(ClientError::FailedPrecondition(context.clone())))),
                    );
                }
                if let Some(gate) = state.txn.as_mut() {
                    gate.batch_failed(&error);
                }
                if matches!(error, ClientError::ProducerFenced(_)) && state.fenced.is_none() {
                    state.fenced = Some(error.clone());
                    fenced = Some(error.clone());
                }
                done.push((batch, Err(error)));
            }
        }
        if part.in_flight == 0 && !part.failed.is_empty() {
            let attempts = part
                .failed
                .iter()
                .map(|(b, _)| b.attempts)
                .max()
                .unwrap_or(1);
            part.failed_on = part.failed.first().map(|(b, _)| b.broker);
            for (batch, _) in part.failed.drain(..).rev() {
                part.ready.push_front(batch);
            }
            part.retry_at = Some(now + self.config.backoff(attempts));
        }
        let mut released = 0;
        for (batch, _) in &mut done {
            state.incomplete.remove(&batch.id);
            released += batch.reserved_bytes;
            self.recycle(&mut state.spare_buffers, &mut batch.payload);
        }
        drop(guard);
        for (batch, result) in done {
            if let Err(error) = &result {
                tracing::debug!(topic = %batch.topic, partition = batch.partition, error = %error, "produce failed");
            }
            batch.completion.complete(result);
        }
        self.memory.add_permits(released);
        if let Some(error) = fenced {
            // A newer instance of this producer took over: nothing more is sent.
            self.fail_unsent(&error);
        }
        // A retry may be due, or an in-flight slot freed.
        self.wake_sender.notify_one();
    }

    /// Keeps the buffer of a completed batch for a new one, if it is the size of a full
    /// batch and nothing else holds it (the request that carried it is long encoded).
    fn recycle(&self, spare: &mut Vec<Vec<u8>>, payload: &mut Payload) {
        if spare.len() >= MAX_SPARE_BUFFERS {
            return;
        }
        let Payload::Built(bytes) = std::mem::replace(payload, Payload::Built(Bytes::new())) else {
            return;
        };
        if let Ok(buf) = bytes.try_into_mut() {
            let buf = Vec::from(buf);
            let batch = self.config.batch_bytes;
            if (batch..=2 * batch).contains(&buf.capacity()) {
                spare.push(buf);
            }
        }
    }
}
