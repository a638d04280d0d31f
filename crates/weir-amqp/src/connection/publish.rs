//! Publishes: content assembled from header and body frames within `MAX_BODY_BYTES`, each
//! publish routed by its exchange (`weir_broker::exchanges::route`) and handed to the
//! core as one produce per routed queue, in order, and a task per channel answering them
//! in order (confirms once every queue's produce is acknowledged; returns of a mandatory
//! publish routed nowhere).
//!
//! Consecutive publishes of a channel routed to one queue each (the common case: the
//! default exchange, or a direct binding) are staged and handed to the core as one
//! produce, as a Kafka producer batches: one append and one replication round for many
//! (one produce per message held 4,000 unconfirmed publishes to about 15,000 a second).
//! The stage goes when a frame other than a publish's arrives (so every other method
//! sees the publishes before it), when the frames of what was read from the socket are
//! handled and no produce of the connection is waiting for its answer, when a publish
//! waits for room in the budget, or when it is full; its confirms come together, as one
//! `basic.ack` with `multiple` (or one `basic.nack`). Waiting for the produce before is
//! group commit: a publisher a little slower than the broker reads its publishes a few
//! at a time (one produce each held 4 lapin publishers to 55,000 messages a second, 3.6
//! per produce), so they gather while the one before is appended, replicated and synced;
//! a lone publish finds nothing in flight and goes at once.
//!
//! What a connection published is there for its next look at a queue, as RabbitMQ's
//! queues see a channel's commands in order: `basic.get` and the queue methods that
//! count or remove messages first wait until the connection's publishes in flight are
//! readable ([`Conn::publishes_readable`]; py-amqp's own tests publish and then get at
//! once, without confirms).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{AMQPClass, basic, connection};
use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use weir_batch::{Compression, Record};
use weir_broker::Reason;
use weir_broker::budget::RequestBytesPermit;
use weir_broker::exchanges;
use weir_broker::produce::{self, Acks, PartitionProduce, ProduceData, ProduceRequest};
use weir_broker::security::Operation;
use weir_broker::{Broker, RequestContext};

use crate::errors::{
    CONTENT_TOO_LARGE, FRAME_ERROR, NO_ROUTE, PRECONDITION_FAILED, Reply, UNEXPECTED_FRAME,
    from_broker,
};

use super::{
    BASIC_CLASS, Conn, Event, MAX_BODY_BYTES, MAX_PENDING_PUBLISHES, MAX_STAGED_BYTES,
    MAX_STAGED_RECORDS, PUBLISHES_READABLE_TIMEOUT, Pending, Publishing, Staged, ToPublisher,
};

/// A connection's produces handed to the core and not yet answered.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    count: AtomicUsize,
    answered: Notify,
}

impl InFlight {
    /// Whether none is waiting for its answer.
    pub(super) fn idle(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }

    /// Once one is answered (or was, since the last call).
    pub(super) async fn answered(&self) {
        self.answered.notified().await;
    }
}

/// One produce counted in its connection's [`InFlight`] until it is dropped: answered,
/// or given up with its channel.
#[derive(Debug)]
pub(super) struct Handed(Arc<InFlight>);

impl Handed {
    fn new(in_flight: &Arc<InFlight>) -> Handed {
        in_flight.count.fetch_add(1, Ordering::AcqRel);
        Handed(in_flight.clone())
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.answered.notify_one();
    }
}

/// Why a connection is blocked, in `connection.blocked` (RabbitMQ says "low on memory").
const BLOCKED_REASON: &str = "low on memory: the broker's budget of requests in flight is full (max_in_flight_request_bytes)";

impl Conn {
    pub(super) async fn on_content_header(
        &mut self,
        id: u16,
        header: AMQPContentHeader,
    ) -> Result<(), Reply> {
        let Some(publishing) = self
            .channels
            .get_mut(&id)
            .and_then(|c| c.publishing.as_mut())
            .filter(|p| p.properties.is_none())
        else {
            return Err(Reply::connection(
                UNEXPECTED_FRAME,
                format!("a content header on channel {id} without a basic.publish before it"),
            ));
        };
        if header.class_id != BASIC_CLASS {
            return Err(Reply::connection(
                FRAME_ERROR,
                format!(
                    "a content header of class {}: only basic has content",
                    header.class_id
                ),
            ));
        }
        if header.body_size > MAX_BODY_BYTES {
            return Err(Reply::channel(
                CONTENT_TOO_LARGE,
                format!(
                    "message body of {} bytes is over the broker's limit of {MAX_BODY_BYTES}",
                    header.body_size
                ),
            )
            .on(60, 40));
        }
        publishing.properties = Some(header.properties);
        publishing.size = header.body_size;
        // The body's room in the broker-wide budget of requests in flight, as every
        // protocol's requests take it. Without room now, nothing more is read from this
        // connection until there is (the main loop waits: `awaiting_room`), and a client
        // that asked to know is told (RabbitMQ's `connection.blocked`). The body buffer
        // itself grows with the bytes that arrive.
        let bytes = usize::try_from(header.body_size).unwrap_or(usize::MAX);
        match self.shared.budget.try_request_bytes(bytes) {
            Some(room) => publishing.room = Some(room),
            None => {
                self.awaiting_room = Some((id, bytes));
                if self.blocked_notify {
                    self.send_method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::Blocked(
                            connection::Blocked {
                                reason: BLOCKED_REASON.into(),
                            },
                        )),
                    );
                }
            }
        }
        if header.body_size == 0 && self.awaiting_room.is_none() {
            self.publish(id).await?;
        }
        Ok(())
    }

    /// The room a publish waited for: it is read on, and a client told it was blocked
    /// is told it is not.
    pub(super) fn on_room(&mut self, room: RequestBytesPermit) {
        let Some((id, _)) = self.awaiting_room.take() else {
            return;
        };
        if let Some(publishing) = self
            .channels
            .get_mut(&id)
            .and_then(|c| c.publishing.as_mut())
        {
            publishing.room = Some(room);
        }
        if self.blocked_notify {
            self.send_method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Unblocked(connection::Unblocked {})),
            );
        }
    }

    pub(super) async fn on_content_body(&mut self, id: u16, body: Vec<u8>) -> Result<(), Reply> {
        let Some(publishing) = self
            .channels
            .get_mut(&id)
            .and_then(|c| c.publishing.as_mut())
            .filter(|p| p.properties.is_some())
        else {
            return Err(Reply::connection(
                UNEXPECTED_FRAME,
                format!("a content body on channel {id} without its header"),
            ));
        };
        let have = publishing.body.len() as u64 + body.len() as u64;
        if have > publishing.size {
            return Err(Reply::connection(
                FRAME_ERROR,
                format!(
                    "content bodies of {have} bytes for a message of {} bytes",
                    publishing.size
                ),
            ));
        }
        publishing.body.extend_from_slice(&body);
        if have == publishing.size {
            self.publish(id).await?;
        }
        Ok(())
    }

    /// Routes a complete message: a produce to the topic of every queue its exchange
    /// routes it to (each authorised before any is made), or, routed nowhere, a return
    /// when it is mandatory; its confirm follows every produce's answer, in order.
    pub(super) async fn publish(&mut self, id: u16) -> Result<(), Reply> {
        let Some(channel) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        let Some(Publishing {
            method: publish,
            properties,
            body,
            room,
            ..
        }) = channel.publishing.take()
        else {
            return Ok(());
        };
        let properties = properties.unwrap_or_default();
        let seq = channel.confirm.then(|| {
            channel.published += 1;
            channel.published
        });
        let on = |reply: Reply| reply.on(60, 40);
        // The core's name for it (a vhost's own, its default exchange included).
        let exchange = self.vhost.exchange(publish.exchange.as_str());
        let routing_key = publish.routing_key.as_str().to_owned();
        let now = weir_broker::now_ms();
        // A per-message TTL is checked before anything is routed: a bad one appends
        // nothing (406, as RabbitMQ).
        let expire_at = crate::properties::expire_at(&properties, now.max(0) as u64)
            .map_err(|why| on(Reply::channel(PRECONDITION_FAILED, why)))?;
        let headers = crate::properties::header_texts(&properties);
        let queues = exchanges::route(&self.shared.broker, &exchange, &routing_key, &headers)
            .map_err(|e| match e.reason {
                Reason::NotFound => on(crate::exchanges::not_found(
                    &self.vhost,
                    publish.exchange.as_str(),
                )),
                _ => on(from_broker(&e)),
            })?;
        for queue in &queues {
            self.shared
                .broker
                .authorize_topic(&self.ctx, Operation::Write, queue)
                .map_err(|e| on(from_broker(&e)))?;
        }
        if queues.is_empty() {
            tracing::debug!(
                channel = id,
                exchange = &*exchange,
                routing_key,
                mandatory = publish.mandatory,
                "unroutable publish"
            );
            if publish.mandatory {
                // Before the confirm, as RabbitMQ orders them.
                self.send_method(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                        reply_code: NO_ROUTE,
                        reply_text: "NO_ROUTE".into(),
                        exchange: publish.exchange.clone(),
                        routing_key: publish.routing_key.clone(),
                    })),
                );
                self.send_content(id, properties.clone(), &body);
            }
        }
        let value = Bytes::from(body);
        let mut record_headers =
            crate::properties::to_headers(&properties, &exchange, &routing_key);
        record_headers.extend(expire_at);
        let record = Record {
            key: None,
            value: Some(value),
            headers: record_headers,
            timestamp: now,
        };
        let mut admitted = Vec::new();
        let mut routed = Vec::with_capacity(queues.len());
        let mut refused = Vec::new();
        for queue in queues {
            // A full queue with `x-overflow` `reject-publish` refuses it: the publish is
            // nacked (the other queues still take it, as RabbitMQ does).
            match crate::overflow::admit_publish(&self.shared, &self.ctx, &queue).await {
                Ok(None) => routed.push(queue),
                Ok(Some(counted)) => {
                    admitted.push(counted);
                    routed.push(queue);
                }
                Err(refusal) => refused.push(Err(refusal)),
            }
        }
        let rooms: Vec<RequestBytesPermit> = room.into_iter().collect();
        if let ([queue], true) = (routed.as_slice(), refused.is_empty()) {
            let queue = queue.clone();
            self.stage(id, queue, seq, record, admitted, rooms).await;
            return Ok(());
        }
        // Routed to several queues, or refused by some: alone, after what is staged.
        self.send_staged().await;
        let mut produces = refused;
        for queue in routed {
            let request = produce_request(queue, seq.is_some(), vec![record.clone()]);
            // To the queue's leader, here or on another broker.
            produces.push(produce::submit_anywhere(&self.shared.broker, &self.ctx, request).await);
        }
        self.hand_over(
            id,
            Pending {
                confirms: seq.map(|s| (s, s)),
                produces,
                admitted,
                rooms,
            },
        )
        .await;
        Ok(())
    }

    /// Adds a publish routed to `queue` alone to the stage, sending the stage first if it
    /// holds another channel's or queue's publishes, and after if it is full.
    async fn stage(
        &mut self,
        id: u16,
        queue: String,
        seq: Option<u64>,
        record: Record,
        admitted: Vec<crate::overflow::InFlight>,
        rooms: Vec<RequestBytesPermit>,
    ) {
        let confirm = seq.is_some();
        if self.staged.as_ref().is_some_and(|s| {
            s.channel != id || s.queue != queue || s.first_seq.is_some() != confirm
        }) {
            self.send_staged().await;
        }
        let staged = self.staged.get_or_insert_with(|| Staged {
            channel: id,
            queue,
            records: Vec::new(),
            bytes: 0,
            first_seq: seq,
            last_seq: seq,
            admitted: Vec::new(),
            rooms: Vec::new(),
        });
        staged.bytes += record.value.as_ref().map_or(0, Bytes::len);
        staged.records.push(record);
        staged.last_seq = seq;
        staged.admitted.extend(admitted);
        staged.rooms.extend(rooms);
        if staged.records.len() >= MAX_STAGED_RECORDS || staged.bytes >= MAX_STAGED_BYTES {
            self.send_staged().await;
        }
    }

    /// Hands the staged publishes to the core as one produce, if there are any.
    pub(super) async fn send_staged(&mut self) {
        let Some(staged) = self.staged.take() else {
            return;
        };
        let confirm = staged.first_seq.is_some();
        let request = produce_request(staged.queue, confirm, staged.records);
        // To the queue's leader, here or on another broker.
        let produce = produce::submit_anywhere(&self.shared.broker, &self.ctx, request).await;
        self.hand_over(
            staged.channel,
            Pending {
                confirms: staged.first_seq.zip(staged.last_seq),
                produces: vec![produce],
                admitted: staged.admitted,
                rooms: staged.rooms,
            },
        )
        .await;
    }

    /// Gives `pending` to the channel's answering task (started on its first publish).
    async fn hand_over(&mut self, id: u16, pending: Pending) {
        let handed = Handed::new(&self.produces);
        let events = self.events.clone();
        let reader = (self.shared.broker.clone(), self.ctx.clone());
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        let publisher = channel.publisher.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(MAX_PENDING_PUBLISHES);
            tokio::spawn(answer_publishes(id, rx, events, reader));
            tx
        });
        let _ = publisher.send(ToPublisher::Publish(pending, handed)).await;
    }

    /// Waits until every publish this connection made so far is readable in the queues
    /// it went to (or failed), at most [`PUBLISHES_READABLE_TIMEOUT`]: a message
    /// published without confirms is appended after its `basic.publish` was read, and
    /// becomes readable once replicated, so a `basic.get` right behind it would otherwise
    /// find the queue empty. Every channel's, not only the asking one's: RabbitMQ orders
    /// only a channel's, but a client that publishes on one channel and reads on another
    /// of the same connection expects the same.
    pub(super) async fn publishes_readable(&mut self) {
        let publishers: Vec<_> = self
            .channels
            .values()
            .filter_map(|c| c.publisher.clone())
            .collect();
        // Bounded as a whole: a barrier may wait for room behind a full channel too.
        let all = async {
            let mut waits = Vec::with_capacity(publishers.len());
            for publisher in publishers {
                let (done, wait) = oneshot::channel();
                if publisher.send(ToPublisher::Barrier(done)).await.is_ok() {
                    waits.push(wait);
                }
            }
            for wait in waits {
                let _ = wait.await;
            }
        };
        if tokio::time::timeout(PUBLISHES_READABLE_TIMEOUT, all)
            .await
            .is_err()
        {
            tracing::debug!(
                connection = self.id,
                "publishes still not readable; the method goes on without them"
            );
        }
    }
}

/// Waits for each publish's produce in the order they were made, and reports the
/// outcome of those in confirm mode to the connection; answers a barrier once the
/// publishes before it are readable (below their queue's high watermark).
pub(super) async fn answer_publishes(
    channel: u16,
    mut pending: mpsc::Receiver<ToPublisher>,
    events: mpsc::UnboundedSender<Event>,
    (broker, ctx): (Arc<Broker>, RequestContext),
) {
    // The last offset appended to each queue since the last barrier.
    let mut written: BTreeMap<String, i64> = BTreeMap::new();
    while let Some(next) = pending.recv().await {
        let (
            Pending {
                confirms,
                produces,
                admitted,
                rooms,
            },
            handed,
        ) = match next {
            ToPublisher::Publish(publish, handed) => (publish, handed),
            ToPublisher::Barrier(done) => {
                for (queue, offset) in std::mem::take(&mut written) {
                    let readable = weir_broker::produce::wait_readable(
                        &broker,
                        &ctx,
                        (&queue, 0),
                        offset,
                        PUBLISHES_READABLE_TIMEOUT,
                    )
                    .await;
                    if !matches!(readable, Ok(true)) {
                        tracing::debug!(
                            channel,
                            queue,
                            offset,
                            ?readable,
                            "a publish is not readable yet"
                        );
                    }
                }
                let _ = done.send(());
                continue;
            }
        };
        // Confirmed once every routed queue's produce is acknowledged; a nack if any
        // failed (the others stay stored, as with RabbitMQ).
        let mut outcome = Ok(());
        for produce in produces {
            let result = match produce {
                Ok(pending) => {
                    let queue = pending.topic().to_owned();
                    match pending.finish().await.into_iter().next() {
                        Some(result) => result
                            .outcome
                            .map(|appended| {
                                if appended.last_offset >= 0 {
                                    written.insert(queue, appended.last_offset);
                                }
                            })
                            .map_err(|e| e.to_string()),
                        None => Err("the produce was not answered".to_owned()),
                    }
                }
                Err(err) => Err(err.to_string()),
            };
            if outcome.is_ok() {
                outcome = result;
            }
        }
        // Answered: no longer in flight into the queues it was counted in, nor in the
        // broker-wide budget.
        drop(admitted);
        drop(rooms);
        // Staged publishes behind it may go.
        drop(handed);
        if let Err(err) = &outcome {
            tracing::info!(channel, error = %err, "an AMQP publish was not stored");
        }
        if let Some((first, last)) = confirms
            && events
                .send(Event::Confirmed {
                    channel,
                    first,
                    last,
                    outcome,
                })
                .is_err()
        {
            return;
        }
    }
}

/// A produce of `records` to partition 0 of `queue`'s topic: acks=all for publishes in
/// confirm mode (the confirm says every copy holds it), the leader's otherwise.
fn produce_request(queue: String, confirm: bool, records: Vec<Record>) -> ProduceRequest {
    ProduceRequest {
        topic: queue,
        acks: if confirm { Acks::All } else { Acks::Leader },
        timeout: None,
        partitions: vec![PartitionProduce {
            partition: 0,
            data: Ok(ProduceData::Records {
                records,
                compression: Compression::None,
                producer: None,
                verification: None,
            }),
        }],
    }
}

/// Whether `frame` continues a run of publishes (a `basic.publish`, or a content frame):
/// any other frame sends the staged publishes first.
pub(super) fn continues_publishing(frame: &AMQPFrame) -> bool {
    match frame {
        AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Publish(_))) => true,
        AMQPFrame::Method(..) => false,
        AMQPFrame::Header(..) | AMQPFrame::Body(..) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_publish_and_its_content_continue_a_run_of_publishes() {
        let publish = AMQPFrame::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "".into(),
                routing_key: "q".into(),
                mandatory: false,
                immediate: false,
            })),
        );
        let get = AMQPFrame::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
                queue: "q".into(),
                no_ack: false,
            })),
        );
        assert!(continues_publishing(&publish));
        assert!(continues_publishing(&AMQPFrame::Body(1, b"m".to_vec())));
        assert!(!continues_publishing(&get));
        assert!(!continues_publishing(&AMQPFrame::Heartbeat));
    }
}
