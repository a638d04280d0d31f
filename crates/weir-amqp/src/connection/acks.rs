//! Deliveries settled: `basic.ack`/`nack`/`reject` (and `basic.recover`, a release of
//! everything a channel holds) become ACCEPT/RELEASE/REJECT ranges in the core, applied
//! in batches.
//!
//! An acknowledgement answers once the share coordinator has written it durably, and a
//! consumer sends one `basic.ack` per message: applied one at a time, each would wait for
//! its own write (about 2,800 messages a second for 4 consumers, where the share group
//! serves 370,000). So the acks a connection receives while a batch is being applied wait
//! in `pending` and go together as the next batch, one request per (queue, member): the
//! coordinator writes them once. A consumer's prefetch room for an ACCEPT comes back at
//! once, as RabbitMQ frees a prefetch slot when the ack arrives: an accepted message never
//! comes back, so a fetch that starts before the ACCEPT is written cannot pass it by, and
//! the two writes (the fetch's and the batch's) are synced together rather than one
//! after the other (4 lapin consumers: 105,000 messages a second with the room given
//! back after the write, 133,000 with it given back at once). The room for a RELEASE or
//! REJECT comes back once its batch is applied, not before: a fetch started earlier
//! could otherwise pass a released message by.
//!
//! AMQP handles a channel's methods in order, and a client may rely on it: a synchronous
//! method sent after acks (`basic.qos`, `queue.declare`, `basic.get`, `channel.close`, ...)
//! is answered after those acks are applied. So every frame but an ack, a publish and its
//! content waits for the acks before it ([`Conn::drain_acks`]), as does giving back what a
//! channel or connection held (a member that leaves with an ack still pending would see
//! the acknowledged message released).

use std::collections::BTreeMap;
use std::sync::Arc;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, basic};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use weir_broker::RequestContext;
use weir_broker::shares::{self, AckKind, AckRange};

use crate::Shared;
use crate::errors::Reply;

use super::consumers::unknown_tag;
use super::{ACK_ENTRIES_PER_REQUEST, Channel, Conn, Unacked};

/// A consumer's prefetch room, and how much of it to give back.
type Room = (Arc<Semaphore>, usize);

/// Prefetch room to give back once a batch is applied.
type Rooms = Vec<Room>;

/// One delivery settled: its (partition, offset) and how.
type Settle = ((u32, i64), AckKind);

/// The connection's acknowledgements not yet applied.
#[derive(Debug, Default)]
pub(super) struct Acks {
    /// Settled since the batch in flight was sent, by (queue, member), in the order they
    /// came; made ranges when sent.
    pending: BTreeMap<(Arc<str>, Arc<str>), Vec<Settle>>,
    /// The room the pending acks give back.
    rooms: Rooms,
    /// The batch being applied; its rooms when it is.
    in_flight: Option<JoinHandle<Rooms>>,
}

impl Acks {
    /// Adds the delivery at `at` of `queue`, settled as `kind` by `member`, to the next
    /// batch. An acknowledgement the core refuses (the lock expired, the coordinator
    /// moved) leaves the message to be delivered again, which is what AMQP promises for it
    /// anyway.
    pub(super) fn add(
        &mut self,
        queue: &Arc<str>,
        member: &Arc<str>,
        at: (u32, i64),
        kind: AckKind,
    ) {
        self.pending
            .entry((queue.clone(), member.clone()))
            .or_default()
            .push((at, kind));
    }

    /// Gives `permits` of a consumer's prefetch `room` back for deliveries settled as
    /// `kind`: now for an ACCEPT, once their batch is applied otherwise (see the module's
    /// note).
    fn give_back(&mut self, room: &Arc<Semaphore>, permits: usize, kind: AckKind) {
        if kind == AckKind::Accept {
            room.add_permits(permits);
        } else {
            self.rooms.push((room.clone(), permits));
        }
    }

    /// Whether a batch is being applied (the connection's loop waits for it then).
    pub(super) fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The rooms of the batch in flight, once it is applied (pending forever if none: the
    /// loop polls this only while [`Acks::busy`]). Cancelling this leaves the batch in
    /// flight, polled again next time.
    pub(super) async fn applied(&mut self) -> Rooms {
        let Some(batch) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        // A batch that panicked gives nothing back: its consumers' room stays taken.
        let rooms = batch.await.unwrap_or_default();
        self.in_flight = None;
        rooms
    }
}

/// Whether `frame` may pass acks still being applied: another ack, or a publish and its
/// content (neither is answered in a way that shows the acks' effect).
pub(super) fn passes_acks(frame: &AMQPFrame) -> bool {
    match frame {
        AMQPFrame::Method(_, AMQPClass::Basic(m)) => matches!(
            m,
            basic::AMQPMethod::Ack(_)
                | basic::AMQPMethod::Nack(_)
                | basic::AMQPMethod::Reject(_)
                | basic::AMQPMethod::Publish(_)
        ),
        AMQPFrame::Method(..) => false,
        _ => true,
    }
}

impl Conn {
    /// `basic.ack` / `nack` / `reject`: the deliveries named (all up to `tag` with
    /// `multiple`; every one for tag 0 with `multiple`) are acknowledged to the core
    /// (with the next batch, sent at once if none is in flight) and their consumers' room
    /// given back. An unknown tag closes the channel (406).
    pub(super) fn settle(
        &mut self,
        id: u16,
        tag: u64,
        multiple: bool,
        kind: AckKind,
    ) -> Result<(), Reply> {
        let Some(channel) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        // The consumer a delivery took room from, if it still has it.
        let room_of = |channel: &Channel, unacked: &Unacked| {
            let consumer = channel.consumers.get(unacked.consumer.as_deref()?)?;
            (consumer.member == unacked.member).then(|| consumer.room.clone())
        };
        if !multiple {
            // One `basic.ack` a message is what most consumers send: no collection.
            let unacked = channel
                .unacked
                .remove(&tag)
                .ok_or_else(|| unknown_tag(tag))?;
            if let Some(room) = room_of(channel, &unacked) {
                self.acks.give_back(&room, 1, kind);
            }
            let at = (unacked.partition, unacked.offset);
            self.acks.add(&unacked.queue, &unacked.member, at, kind);
            self.send_acks();
            return Ok(());
        }
        let upto = if tag == 0 { u64::MAX } else { tag };
        let keys: Vec<u64> = channel.unacked.range(..=upto).map(|(k, _)| *k).collect();
        if keys.is_empty() && tag != 0 {
            return Err(unknown_tag(tag));
        }
        // Room given back once per consumer (a channel has few).
        let mut rooms: Rooms = Vec::new();
        for key in keys {
            let Some(unacked) = channel.unacked.remove(&key) else {
                continue;
            };
            if let Some(room) = room_of(channel, &unacked) {
                match rooms.iter_mut().find(|(r, _)| Arc::ptr_eq(r, &room)) {
                    Some((_, n)) => *n += 1,
                    None => rooms.push((room, 1)),
                }
            }
            let at = (unacked.partition, unacked.offset);
            self.acks.add(&unacked.queue, &unacked.member, at, kind);
        }
        for (room, permits) in rooms {
            self.acks.give_back(&room, permits, kind);
        }
        self.send_acks();
        Ok(())
    }

    /// Sends the pending acks as one batch, if there are some and none is in flight.
    pub(super) fn send_acks(&mut self) {
        if self.acks.in_flight.is_some() || self.acks.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.acks.pending);
        let rooms = std::mem::take(&mut self.acks.rooms);
        let (shared, ctx) = (self.shared.clone(), self.ctx.clone());
        self.acks.in_flight = Some(tokio::spawn(async move {
            for ((queue, member), settled) in batch {
                apply(&shared, &ctx, &queue, &member, ranges(&queue, settled)).await;
            }
            rooms
        }));
    }

    /// A batch was applied: its consumers' room is given back, and the next one sent.
    pub(super) fn on_acks_applied(&mut self, rooms: Rooms) {
        for (room, permits) in rooms {
            room.add_permits(permits);
        }
        self.send_acks();
    }

    /// Waits until every ack received so far is applied.
    pub(super) async fn drain_acks(&mut self) {
        while self.acks.busy() || !self.acks.pending.is_empty() {
            self.send_acks();
            let rooms = self.acks.applied().await;
            self.on_acks_applied(rooms);
        }
    }
}

/// Deliveries of `queue` settled as ranges: runs of consecutive offsets of a partition
/// settled alike are one range (a consumer acknowledges what one fetch handed it, one
/// `basic.ack` each: one range in the core, not one per message).
fn ranges(queue: &str, mut settled: Vec<Settle>) -> Vec<AckRange> {
    // Stable: an offset settled twice in one batch keeps its order.
    settled.sort_by_key(|&(at, _)| at);
    let mut ranges: Vec<AckRange> = Vec::new();
    for ((partition, offset), kind) in settled {
        match ranges.last_mut() {
            Some(last)
                if last.partition == partition && last.last + 1 == offset && last.kind == kind =>
            {
                last.last = offset;
            }
            _ => ranges.push(AckRange {
                topic: queue.to_owned(),
                partition,
                first: offset,
                last: offset,
                kind,
            }),
        }
    }
    ranges
}

/// Acknowledges `ranges` of `queue` as `member` in the core, at most
/// [`ACK_ENTRIES_PER_REQUEST`] a request; refusals are logged (the message comes again).
async fn apply(
    shared: &Shared,
    ctx: &RequestContext,
    queue: &str,
    member: &str,
    ranges: Vec<AckRange>,
) {
    for chunk in ranges.chunks(ACK_ENTRIES_PER_REQUEST) {
        match shares::acknowledge_anywhere(
            &shared.broker,
            ctx,
            queue,
            member,
            chunk.to_vec(),
            false,
        )
        .await
        {
            Ok(results) => {
                for result in results {
                    match result.outcome {
                        Ok(not_held) if not_held.is_empty() => {}
                        Ok(not_held) => tracing::debug!(
                            queue,
                            ?not_held,
                            "AMQP acknowledgement of records no longer held"
                        ),
                        Err(err) => {
                            tracing::debug!(queue, error = %err, "AMQP acknowledgement refused")
                        }
                    }
                }
            }
            // Debug, as a refusal above: while a coordinator loads, every ack of every
            // consumer fails this way (one line per ack, hundreds a second, in the soak),
            // and each message comes again, which is what AMQP promises.
            Err(err) => tracing::debug!(queue, error = %err, "AMQP acknowledgement failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_offsets_of_a_partition_are_one_range() {
        let accept = AckKind::Accept;
        let reject = AckKind::Reject;
        let found = ranges(
            "q",
            vec![
                ((0, 7), accept),
                ((0, 5), accept),
                ((0, 6), accept),
                ((1, 8), accept),
                ((0, 9), accept),
                ((0, 10), reject),
                ((0, 11), reject),
            ],
        );
        let spans: Vec<(u32, i64, i64, AckKind)> = found
            .iter()
            .map(|r| (r.partition, r.first, r.last, r.kind))
            .collect();
        assert_eq!(
            spans,
            [
                (0, 5, 7, accept),
                (0, 9, 9, accept),
                (0, 10, 11, reject),
                (1, 8, 8, accept)
            ]
        );
        assert!(found.iter().all(|r| r.topic == "q"));
    }

    #[test]
    fn only_acks_and_publishes_pass_acks_being_applied() {
        let ack = AMQPFrame::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: 1,
                multiple: false,
            })),
        );
        let qos = AMQPFrame::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count: 1,
                global: false,
            })),
        );
        assert!(passes_acks(&ack));
        assert!(!passes_acks(&qos));
        assert!(passes_acks(&AMQPFrame::Heartbeat));
    }
}
