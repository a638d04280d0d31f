//! Channels: `channel.open`/`close`/`flow`, the methods a running channel takes and
//! where each class goes, `queue.*` (bindings through `crate::exchanges`), `exchange.*`
//! and `confirm.select`, and what a closed
//! channel gives back (its deliveries released to the share group).

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, access, channel, confirm, exchange, queue};
use weir_broker::shares;

use crate::errors::{
    CHANNEL_ERROR, COMMAND_INVALID, FRAME_ERROR, NOT_FOUND, NOT_IMPLEMENTED, Reply,
    UNEXPECTED_FRAME,
};
use crate::exchanges::BindingChange;
use crate::queues;

use super::{Channel, Conn};

impl Conn {
    /// Closes `channel` with `reply`: what it held is given back first, and frames on it
    /// are dropped until the client's `close-ok`.
    pub(super) async fn close_channel(&mut self, id: u16, reply: Reply) {
        tracing::debug!(
            channel = id,
            code = reply.code,
            text = reply.text,
            "closing an AMQP channel"
        );
        // The acks the client sent before the error count: applied before it leaves.
        self.drain_acks().await;
        if let Some(mut channel) = self.channels.remove(&id) {
            self.release(&mut channel).await;
            channel.closing = true;
            self.channels.insert(id, channel);
        }
        let text = reply.short_text();
        self.send_method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: reply.code,
                reply_text: text.into(),
                class_id: reply.class_id,
                method_id: reply.method_id,
            })),
        );
    }

    pub(super) async fn on_channel_frame(
        &mut self,
        id: u16,
        frame: AMQPFrame,
    ) -> Result<(), Reply> {
        if id > self.channel_max {
            return Err(Reply::connection(
                CHANNEL_ERROR,
                format!("channel {id} is above channel_max {}", self.channel_max),
            ));
        }
        let Some(channel) = self.channels.get(&id) else {
            return match frame {
                AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Open(_))) => {
                    self.channels.insert(id, Channel::new());
                    self.send_method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
                    );
                    Ok(())
                }
                _ => Err(Reply::connection(
                    CHANNEL_ERROR,
                    format!("channel {id} is not open"),
                )),
            };
        };
        if channel.closing {
            match frame {
                AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) => {
                    self.channels.remove(&id);
                }
                AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(_))) => {
                    self.send_method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    );
                    self.channels.remove(&id);
                }
                _ => {}
            }
            return Ok(());
        }
        let expecting_content = channel.publishing.is_some();
        match frame {
            AMQPFrame::Header(_, header) => self.on_content_header(id, header).await,
            AMQPFrame::Body(_, body) => self.on_content_body(id, body).await,
            AMQPFrame::Method(_, class) if expecting_content => Err(Reply::connection(
                UNEXPECTED_FRAME,
                format!(
                    "expected the content of basic.publish on channel {id}, got {}.{}",
                    class.get_amqp_class_id(),
                    class.get_amqp_method_id()
                ),
            )),
            AMQPFrame::Method(_, class) => {
                let (class_id, method_id) = (class.get_amqp_class_id(), class.get_amqp_method_id());
                self.on_method(id, class)
                    .await
                    .map_err(|reply| reply.on(class_id, method_id))
            }
            _ => Err(Reply::connection(
                FRAME_ERROR,
                format!("a heartbeat frame on channel {id}: heartbeats go on channel 0"),
            )),
        }
    }

    pub(super) async fn on_method(&mut self, id: u16, class: AMQPClass) -> Result<(), Reply> {
        let not_served = |what: &str| {
            Reply::connection(
                NOT_IMPLEMENTED,
                format!("{what} is not served by Weir yet (docs/amqp.md § Not served yet)"),
            )
        };
        match class {
            AMQPClass::Channel(m) => match m {
                channel::AMQPMethod::Open(_) => Err(Reply::connection(
                    CHANNEL_ERROR,
                    format!("channel {id} is open already"),
                )),
                channel::AMQPMethod::Close(_) => {
                    if let Some(mut channel) = self.channels.remove(&id) {
                        self.release(&mut channel).await;
                    }
                    self.send_method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    );
                    Ok(())
                }
                channel::AMQPMethod::CloseOk(_) => Ok(()),
                channel::AMQPMethod::Flow(flow) if flow.active => {
                    self.send_method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                            active: true,
                        })),
                    );
                    Ok(())
                }
                channel::AMQPMethod::Flow(_) => Err(not_served("channel.flow active=false")),
                other => Err(Reply::connection(
                    COMMAND_INVALID,
                    format!("{other:?} is sent by the broker, not a client"),
                )),
            },
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                self.send_method(
                    id,
                    AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(declare)) => {
                crate::exchanges::declare(&self.shared, &self.ctx, &self.vhost, &declare).await?;
                if !declare.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(
                            exchange::DeclareOk {},
                        )),
                    );
                }
                Ok(())
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Delete(delete)) => {
                crate::exchanges::delete(&self.shared, &self.ctx, &self.vhost, &delete).await?;
                if !delete.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Exchange(
                method @ (exchange::AMQPMethod::Bind(_) | exchange::AMQPMethod::Unbind(_)),
            ) => {
                // exchange.bind and exchange.unbind carry the same fields.
                let (change, destination, source, routing_key, arguments, nowait, ok) =
                    match &method {
                        exchange::AMQPMethod::Bind(b) => (
                            BindingChange::Bind,
                            &b.destination,
                            &b.source,
                            &b.routing_key,
                            &b.arguments,
                            b.nowait,
                            exchange::AMQPMethod::BindOk(exchange::BindOk {}),
                        ),
                        exchange::AMQPMethod::Unbind(u) => (
                            BindingChange::Unbind,
                            &u.destination,
                            &u.source,
                            &u.routing_key,
                            &u.arguments,
                            u.nowait,
                            exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}),
                        ),
                        _ => unreachable!("matched as exchange.bind or exchange.unbind"),
                    };
                crate::exchanges::change_exchange_binding(
                    &self.shared,
                    &self.ctx,
                    &self.vhost,
                    change,
                    destination.as_str(),
                    source.as_str(),
                    routing_key.as_str(),
                    arguments,
                )
                .await?;
                if !nowait {
                    self.send_method(id, AMQPClass::Exchange(ok));
                }
                Ok(())
            }
            AMQPClass::Exchange(other) => Err(Reply::connection(
                COMMAND_INVALID,
                format!("{other:?} is sent by the broker, not a client"),
            )),
            AMQPClass::Queue(m) => self.on_queue(id, m).await,
            AMQPClass::Basic(m) => self.on_basic(id, m).await,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(select)) => {
                if let Some(channel) = self.channels.get_mut(&id) {
                    channel.confirm = true;
                }
                if !select.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Tx(_) => Err(not_served("transactions (tx.*)")),
            other => Err(Reply::connection(
                COMMAND_INVALID,
                format!("{other:?} is not valid from a client on channel {id}"),
            )),
        }
    }

    pub(super) async fn on_queue(&mut self, id: u16, m: queue::AMQPMethod) -> Result<(), Reply> {
        match m {
            queue::AMQPMethod::Declare(declare) => {
                // Its message count includes what this connection published before.
                self.publishes_readable().await;
                let ok = queues::declare(&self.shared, &self.ctx, &self.vhost, &self.id, &declare)
                    .await?;
                if (declare.exclusive || declare.auto_delete)
                    && !declare.passive
                    && !self.owned_queues.contains(&ok.queue)
                {
                    self.owned_queues.push(ok.queue.clone());
                }
                if let Some(channel) = self.channels.get_mut(&id) {
                    channel.last_queue = Some(ok.queue.clone());
                }
                if !declare.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                            queue: ok.queue.into(),
                            message_count: ok.message_count,
                            consumer_count: ok.consumer_count,
                        })),
                    );
                }
                Ok(())
            }
            queue::AMQPMethod::Delete(mut delete) => {
                if delete.queue.as_str().is_empty() {
                    delete.queue = self.last_queue(id)?.into();
                }
                self.publishes_readable().await;
                let message_count =
                    queues::delete(&self.shared, &self.ctx, &self.vhost, &delete).await?;
                self.owned_queues.retain(|q| q != delete.queue.as_str());
                if !delete.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                            message_count,
                        })),
                    );
                }
                Ok(())
            }
            queue::AMQPMethod::Purge(mut purge) => {
                if purge.queue.as_str().is_empty() {
                    purge.queue = self.last_queue(id)?.into();
                }
                self.publishes_readable().await;
                let message_count =
                    queues::purge(&self.shared, &self.ctx, &self.vhost, &purge).await?;
                if !purge.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                            message_count,
                        })),
                    );
                }
                Ok(())
            }
            queue::AMQPMethod::Bind(bind) => {
                let queue = self.queue_or_last(id, bind.queue.as_str())?;
                crate::exchanges::change_binding(
                    &self.shared,
                    &self.ctx,
                    &self.vhost,
                    BindingChange::Bind,
                    &queue,
                    bind.exchange.as_str(),
                    bind.routing_key.as_str(),
                    &bind.arguments,
                )
                .await?;
                if !bind.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
                    );
                }
                Ok(())
            }
            queue::AMQPMethod::Unbind(unbind) => {
                let queue = self.queue_or_last(id, unbind.queue.as_str())?;
                crate::exchanges::change_binding(
                    &self.shared,
                    &self.ctx,
                    &self.vhost,
                    BindingChange::Unbind,
                    &queue,
                    unbind.exchange.as_str(),
                    unbind.routing_key.as_str(),
                    &unbind.arguments,
                )
                .await?;
                self.send_method(
                    id,
                    AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})),
                );
                Ok(())
            }
            other => Err(Reply::connection(
                COMMAND_INVALID,
                format!("{other:?} is sent by the broker, not a client"),
            )),
        }
    }

    /// `queue`, or the channel's last declared queue when it is empty.
    fn queue_or_last(&self, id: u16, queue: &str) -> Result<String, Reply> {
        match queue {
            "" => self.last_queue(id),
            name => Ok(name.to_owned()),
        }
    }

    pub(super) fn last_queue(&self, id: u16) -> Result<String, Reply> {
        self.channels
            .get(&id)
            .and_then(|c| c.last_queue.clone())
            .ok_or_else(|| {
                Reply::channel(
                    NOT_FOUND,
                    "no queue named, and none declared on this channel before",
                )
            })
    }

    /// Gives back everything a channel held: its consumers stop, and each share-group
    /// member it fetched as leaves (its unacknowledged records become available again).
    pub(super) async fn release(&self, channel: &mut Channel) {
        for (_, consumer) in channel.consumers.drain() {
            self.stop_consumer(consumer);
        }
        channel.unacked.clear();
        channel.publishing = None;
        for (queue, member) in channel.members.drain() {
            if let Err(err) = shares::acknowledge_anywhere(
                &self.shared.broker,
                &self.ctx,
                &queue,
                &member,
                Vec::new(),
                true,
            )
            .await
            {
                tracing::debug!(queue, error = %err, "releasing an AMQP channel's records");
            }
        }
    }
}
