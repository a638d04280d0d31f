//! Publishes: content assembled from header and body frames within `MAX_BODY_BYTES`, each
//! publish routed by its exchange (`weir_broker::exchanges::route`) and handed to the
//! core as one produce per routed queue, in order, and a task per channel answering them
//! in order (confirms once every queue's produce is acknowledged; returns of a mandatory
//! publish routed nowhere).

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::{AMQPClass, basic};
use bytes::Bytes;
use tokio::sync::mpsc;
use weir_batch::{Compression, Record};
use weir_broker::Reason;
use weir_broker::exchanges;
use weir_broker::produce::{self, Acks, PartitionProduce, ProduceData, ProduceRequest};
use weir_broker::security::Operation;

use crate::errors::{
    CONTENT_TOO_LARGE, FRAME_ERROR, NO_ROUTE, PRECONDITION_FAILED, Reply, UNEXPECTED_FRAME,
    from_broker,
};

use super::{BASIC_CLASS, Conn, Event, MAX_BODY_BYTES, MAX_PENDING_PUBLISHES, Pending, Publishing};

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
        // Not reserved from the header's size: the body grows with the bytes that arrive,
        // so announcing large bodies on many channels costs the client the bytes.
        if header.body_size == 0 {
            self.publish(id).await?;
        }
        Ok(())
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
        let exchange = crate::exchanges::canonical(publish.exchange.as_str()).to_owned();
        let routing_key = publish.routing_key.as_str().to_owned();
        let now = weir_broker::now_ms();
        // A per-message TTL is checked before anything is routed: a bad one appends
        // nothing (406, as RabbitMQ).
        let expire_at = crate::properties::expire_at(&properties, now.max(0) as u64)
            .map_err(|why| on(Reply::channel(PRECONDITION_FAILED, why)))?;
        let headers = crate::properties::header_texts(&properties);
        let queues = exchanges::route(&self.shared.broker, &exchange, &routing_key, &headers)
            .map_err(|e| match e.reason {
                Reason::NotFound => on(crate::exchanges::not_found(&exchange)),
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
                exchange,
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
        let mut produces = Vec::with_capacity(queues.len());
        let mut admitted = Vec::new();
        for queue in queues {
            // A full queue with `x-overflow` `reject-publish` refuses it: the publish is
            // nacked (the other queues still take it, as RabbitMQ does).
            match crate::overflow::admit_publish(&self.shared, &self.ctx, &queue).await {
                Ok(None) => {}
                Ok(Some(counted)) => admitted.push(counted),
                Err(refused) => {
                    produces.push(Err(refused));
                    continue;
                }
            }
            let record = Record {
                key: None,
                value: Some(value.clone()),
                headers: record_headers.clone(),
                timestamp: now,
            };
            let request = ProduceRequest {
                topic: queue,
                acks: if seq.is_some() {
                    Acks::All
                } else {
                    Acks::Leader
                },
                timeout: None,
                partitions: vec![PartitionProduce {
                    partition: 0,
                    data: Ok(ProduceData::Records {
                        records: vec![record],
                        compression: Compression::None,
                        producer: None,
                    }),
                }],
            };
            produces.push(produce::submit(&self.shared.broker, &self.ctx, request).await);
        }
        let events = self.events.clone();
        let Some(channel) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        let publisher = channel.publisher.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(MAX_PENDING_PUBLISHES);
            tokio::spawn(answer_publishes(id, rx, events));
            tx
        });
        let _ = publisher
            .send(Pending {
                seq,
                produces,
                admitted,
            })
            .await;
        Ok(())
    }
}

/// Waits for each publish's produce in the order they were made, and reports the
/// outcome of those in confirm mode to the connection.
pub(super) async fn answer_publishes(
    channel: u16,
    mut pending: mpsc::Receiver<Pending>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Some(Pending {
        seq,
        produces,
        admitted,
    }) = pending.recv().await
    {
        // Confirmed once every routed queue's produce is acknowledged; a nack if any
        // failed (the others stay stored, as with RabbitMQ).
        let mut outcome = Ok(());
        for produce in produces {
            let result = match produce {
                Ok(pending) => match pending.finish().await.into_iter().next() {
                    Some(result) => result.outcome.map(|_| ()).map_err(|e| e.to_string()),
                    None => Err("the produce was not answered".to_owned()),
                },
                Err(err) => Err(err.to_string()),
            };
            if outcome.is_ok() {
                outcome = result;
            }
        }
        // Answered: no longer in flight into the queues it was counted in.
        drop(admitted);
        if let Err(err) = &outcome {
            tracing::info!(channel, error = %err, "an AMQP publish was not stored");
        }
        if let Some(seq) = seq
            && events
                .send(Event::Confirmed {
                    channel,
                    seq,
                    outcome,
                })
                .is_err()
        {
            return;
        }
    }
}
