//! Consumers and what they are delivered: `basic.qos`/`consume`/`cancel`/`get`, the
//! deliveries their fetch loops send (`crate::consume`) with their tags, and
//! `basic.ack`/`nack`/`reject` and `basic.recover` (a RELEASE of everything the channel
//! holds) handed to `acks.rs`, which settles them in the core in batches.

use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, basic};
use amq_protocol::types::ShortString;
use tokio::sync::Semaphore;
use weir_broker::shares::{self, AckKind, ShareFetch, ShareRecord, ShareStart};

use crate::consume::{self, Fetched};
use crate::errors::{
    COMMAND_INVALID, NOT_ALLOWED, NOT_IMPLEMENTED, PRECONDITION_FAILED, Reply, from_broker,
};
use crate::queues;

use super::{
    Conn, Consumer, Event, MAX_CONSUMERS_PER_CHANNEL, MAX_UNACKED_PER_CONSUMER, Publishing, Unacked,
};

impl Conn {
    pub(super) async fn on_basic(&mut self, id: u16, m: basic::AMQPMethod) -> Result<(), Reply> {
        match m {
            basic::AMQPMethod::Qos(qos) => {
                if let Some(channel) = self.channels.get_mut(&id) {
                    channel.prefetch = qos.prefetch_count;
                }
                self.send_method(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::Publish(publish) => {
                // RabbitMQ 3 dropped `immediate` and closes the connection with these
                // words (clients and their tests match them).
                if publish.immediate {
                    return Err(Reply::connection(NOT_IMPLEMENTED, "immediate=true"));
                }
                crate::exchanges::check_publish(
                    &self.shared,
                    &self.vhost,
                    publish.exchange.as_str(),
                )?;
                if let Some(channel) = self.channels.get_mut(&id) {
                    channel.publishing = Some(Publishing {
                        method: publish,
                        properties: None,
                        size: 0,
                        body: Vec::new(),
                        room: None,
                    });
                }
                Ok(())
            }
            basic::AMQPMethod::Consume(consume) => self.consume(id, consume),
            basic::AMQPMethod::Cancel(cancel) => {
                let tag = cancel.consumer_tag.as_str().to_owned();
                self.cancel(id, &tag);
                if !cancel.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                            consumer_tag: tag.into(),
                        })),
                    );
                }
                Ok(())
            }
            basic::AMQPMethod::Get(get) => self.get(id, get).await,
            basic::AMQPMethod::Ack(ack) => {
                self.settle(id, ack.delivery_tag, ack.multiple, AckKind::Accept)
            }
            basic::AMQPMethod::Nack(nack) => {
                let kind = if nack.requeue {
                    AckKind::Release { delay_ms: 0 }
                } else {
                    AckKind::Reject
                };
                self.settle(id, nack.delivery_tag, nack.multiple, kind)
            }
            basic::AMQPMethod::Reject(reject) => {
                let kind = if reject.requeue {
                    AckKind::Release { delay_ms: 0 }
                } else {
                    AckKind::Reject
                };
                self.settle(id, reject.delivery_tag, false, kind)
            }
            // The channel's unacknowledged deliveries released, delivered again with
            // `redelivered` set (to this channel's consumers or others). RabbitMQ
            // answers `requeue=false` with 540 and serves the deprecated async form
            // without an answer; so does Weir.
            basic::AMQPMethod::Recover(basic::Recover { requeue: true }) => {
                self.settle(id, 0, true, AckKind::Release { delay_ms: 0 })?;
                // recover-ok once the releases are applied: what the channel held is
                // available again when the client hears of it.
                self.drain_acks().await;
                self.send_method(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::RecoverAsync(basic::RecoverAsync { requeue: true }) => {
                self.settle(id, 0, true, AckKind::Release { delay_ms: 0 })
            }
            basic::AMQPMethod::Recover(_) | basic::AMQPMethod::RecoverAsync(_) => {
                Err(Reply::connection(NOT_IMPLEMENTED, "requeue=false"))
            }
            other => Err(Reply::connection(
                COMMAND_INVALID,
                format!("{other:?} is sent by the broker, not a client"),
            )),
        }
    }

    pub(super) fn consume(&mut self, id: u16, m: basic::Consume) -> Result<(), Reply> {
        let local = match m.queue.as_str() {
            "" => self.last_queue(id)?,
            name => name.to_owned(),
        };
        let queue = self.vhost.queue(&local);
        if !queues::exists(&self.shared, &queue) {
            return Err(queues::not_found(&self.vhost, &local));
        }
        if m.exclusive {
            return Err(Reply::channel(
                PRECONDITION_FAILED,
                "exclusive consumers are not served by Weir yet (docs/amqp.md)",
            ));
        }
        let conn_id = self.id.clone();
        let Some(channel) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        if channel.consumers.len() >= MAX_CONSUMERS_PER_CHANNEL {
            return Err(Reply::channel(
                PRECONDITION_FAILED,
                format!("a channel has at most {MAX_CONSUMERS_PER_CHANNEL} consumers"),
            ));
        }
        let tag = match m.consumer_tag.as_str() {
            "" => format!("amq.ctag-{}", uuid::Uuid::new_v4().simple()),
            tag => tag.to_owned(),
        };
        if channel.consumers.contains_key(&tag) {
            return Err(Reply::connection(
                NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        channel.consumers_started += 1;
        let member = format!("amqp-{conn_id}-{id}-{}", channel.consumers_started);
        let room = match channel.prefetch {
            0 => MAX_UNACKED_PER_CONSUMER,
            _ if m.no_ack => MAX_UNACKED_PER_CONSUMER,
            n => usize::from(n).min(MAX_UNACKED_PER_CONSUMER),
        };
        let prefetch = room;
        let room = Arc::new(Semaphore::new(room));
        channel.members.insert((queue.clone(), member.clone()));
        // consume-ok goes out before the fetcher can hand over its first delivery.
        if !m.nowait {
            self.send_method(
                id,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: tag.clone().into(),
                })),
            );
        }
        let (queue, member) = (Arc::<str>::from(queue), Arc::<str>::from(member));
        let task = tokio::spawn(consume::run(
            self.shared.broker.clone(),
            self.ctx.clone(),
            queue.clone(),
            member.clone(),
            id,
            Arc::from(tag.as_str()),
            room.clone(),
            prefetch,
            self.events.clone(),
        ));
        let attached = self.shared.broker.share_members().attach(&queue);
        if let Some(channel) = self.channels.get_mut(&id) {
            channel.consumers.insert(
                tag,
                Consumer {
                    queue,
                    member,
                    no_ack: m.no_ack,
                    room,
                    task,
                    _attached: attached,
                },
            );
        }
        Ok(())
    }

    /// Stops a consumer. What it delivered stays unacknowledged on the channel (the
    /// client may still acknowledge it), as in RabbitMQ.
    pub(super) fn cancel(&mut self, id: u16, tag: &str) {
        let Some(consumer) = self
            .channels
            .get_mut(&id)
            .and_then(|c| c.consumers.remove(tag))
        else {
            return;
        };
        self.stop_consumer(consumer);
    }

    pub(super) fn stop_consumer(&self, consumer: Consumer) {
        consumer.task.abort();
        consumer.room.close();
        queues::touch(&self.shared, &consumer.queue);
        // Dropped here: no longer counted among the queue's consumers.
        drop(consumer);
    }

    pub(super) async fn get(&mut self, id: u16, get: basic::Get) -> Result<(), Reply> {
        self.publishes_readable().await;
        let local = match get.queue.as_str() {
            "" => self.last_queue(id)?,
            name => name.to_owned(),
        };
        let queue = self.vhost.queue(&local);
        if !queues::exists(&self.shared, &queue) {
            return Err(queues::not_found(&self.vhost, &local));
        }
        queues::touch(&self.shared, &queue);
        let member = format!("amqp-{}-{id}-get", self.id);
        let fetch = ShareFetch {
            group_id: queue.clone(),
            member_id: member.clone(),
            topics: vec![queue.clone()],
            partitions: None,
            max_records: 1,
            max_wait: Duration::ZERO,
            start: ShareStart::Earliest,
            acks: Vec::new(),
        };
        let answer = shares::fetch_anywhere(&self.shared.broker, &self.ctx, fetch)
            .await
            .map_err(|e| from_broker(&e))?;
        if let Some(channel) = self.channels.get_mut(&id) {
            channel.members.insert((queue.clone(), member.clone()));
        }
        let (queue, member) = (Arc::<str>::from(queue), Arc::<str>::from(member));
        let Some(record) = answer.records.into_iter().next() else {
            self.send_method(
                id,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let remaining = queues::message_count(&self.shared, &self.ctx, &queue)
            .await
            .saturating_sub(1);
        let Some(channel) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        channel.last_delivery_tag += 1;
        let tag = channel.last_delivery_tag;
        if !get.no_ack {
            channel.unacked.insert(
                tag,
                Unacked {
                    queue: queue.clone(),
                    member: member.clone(),
                    partition: record.partition,
                    offset: record.record.offset,
                    consumer: None,
                },
            );
        }
        let (properties, published) =
            crate::properties::from_headers(&record.record.headers, &queue, &self.vhost);
        self.send_method(
            id,
            AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                delivery_tag: tag,
                redelivered: record.delivery_count > 1,
                exchange: published.exchange.into(),
                routing_key: published.routing_key.into(),
                message_count: remaining,
            })),
        );
        let body = record.record.value.clone().unwrap_or_default();
        self.send_content(id, properties, &body);
        if get.no_ack {
            self.acks.add(
                &queue,
                &member,
                (record.partition, record.record.offset),
                AckKind::Accept,
            );
            self.send_acks();
        }
        Ok(())
    }

    pub(super) async fn on_event(&mut self, event: Event) {
        match event {
            Event::Confirmed {
                channel,
                first,
                last,
                outcome,
            } => {
                if self.channels.get(&channel).is_none_or(|c| c.closing) {
                    return;
                }
                // Several at once with `multiple`: every publish before `first` is
                // answered already (a channel's are answered in order).
                let multiple = first != last;
                let class = match outcome {
                    Ok(()) => basic::AMQPMethod::Ack(basic::Ack {
                        delivery_tag: last,
                        multiple,
                    }),
                    Err(_) => basic::AMQPMethod::Nack(basic::Nack {
                        delivery_tag: last,
                        multiple,
                        requeue: false,
                    }),
                };
                self.send_method(channel, AMQPClass::Basic(class));
            }
            Event::Fetched(Fetched::Records {
                channel,
                tag,
                queue,
                member,
                records,
            }) => self.deliver(channel, tag, queue, member, records).await,
            Event::Fetched(Fetched::Stopped {
                channel,
                tag,
                reason,
            }) => {
                tracing::info!(channel, %tag, reason, "an AMQP consumer stopped");
                // Only a consumer the client still has is announced: one it cancelled
                // itself, or on a channel being closed, is already gone for it.
                let live = self
                    .channels
                    .get(&channel)
                    .is_some_and(|c| !c.closing && c.consumers.contains_key(&*tag));
                self.cancel(channel, &tag);
                if live && self.cancel_notify {
                    self.send_method(
                        channel,
                        AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                            consumer_tag: ShortString::from(&*tag),
                            nowait: true,
                        })),
                    );
                }
            }
        }
    }

    pub(super) async fn deliver(
        &mut self,
        id: u16,
        tag: Arc<str>,
        queue: Arc<str>,
        member: Arc<str>,
        records: Vec<ShareRecord>,
    ) {
        let live = self
            .channels
            .get(&id)
            .filter(|c| !c.closing)
            .and_then(|c| c.consumers.get(&*tag))
            .filter(|c| c.member == member)
            .map(|c| c.no_ack);
        let Some(no_ack) = live else {
            // Cancelled since the fetch: hand the records back at once.
            for r in &records {
                self.acks.add(
                    &queue,
                    &member,
                    (r.partition, r.record.offset),
                    AckKind::Release { delay_ms: 0 },
                );
            }
            self.send_acks();
            return;
        };
        let mut accepted = 0;
        for record in records {
            let Some(channel) = self.channels.get_mut(&id) else {
                return;
            };
            channel.last_delivery_tag += 1;
            let delivery_tag = channel.last_delivery_tag;
            if no_ack {
                accepted += 1;
                self.acks.add(
                    &queue,
                    &member,
                    (record.partition, record.record.offset),
                    AckKind::Accept,
                );
            } else {
                channel.unacked.insert(
                    delivery_tag,
                    Unacked {
                        queue: queue.clone(),
                        member: member.clone(),
                        partition: record.partition,
                        offset: record.record.offset,
                        consumer: Some(tag.clone()),
                    },
                );
            }
            let (properties, published) =
                crate::properties::from_headers(&record.record.headers, &queue, &self.vhost);
            self.send_method(
                id,
                AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                    consumer_tag: ShortString::from(&*tag),
                    delivery_tag,
                    redelivered: record.delivery_count > 1,
                    exchange: published.exchange.into(),
                    routing_key: published.routing_key.into(),
                })),
            );
            let body = record.record.value.clone().unwrap_or_default();
            self.send_content(id, properties, &body);
        }
        if accepted > 0 {
            // No acks to wait for: the room comes back at once, as for a `basic.ack`.
            if let Some(consumer) = self.channels.get(&id).and_then(|c| c.consumers.get(&*tag)) {
                consumer.room.add_permits(accepted);
            }
            self.send_acks();
        }
    }
}

pub(super) fn unknown_tag(tag: u64) -> Reply {
    Reply::channel(PRECONDITION_FAILED, format!("unknown delivery tag {tag}"))
}
