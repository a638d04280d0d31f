//! A consumer (`basic.consume`): a member of the queue's share group that fetches as many
//! records as its prefetch leaves room for, long polling, and hands them to its
//! connection to deliver. The room is a semaphore: one permit per delivery it may have
//! unacknowledged, taken before a fetch and given back by the connection when a
//! delivery is acknowledged, rejected or released.
//!
//! A busy consumer's room comes back a few deliveries at a time (as their acks arrive),
//! and every share fetch is a durable write at the share coordinator, whose latency (a
//! sync of `__share_group_state`) is the same for 1 record or 100: a consumer takes about
//! one fetch's records per write latency. So a consumer waits up to [`GATHER_WAIT`] for
//! its whole prefetch to be free before it fetches, rather than fetching what came back
//! so far. Measured (BENCHMARKS.md § RabbitMQ's clients on Weir, run 4; 4 lapin consumers,
//! prefetch 100, fresh broker each, alternating): 203,000-204,000 messages of 100 B a
//! second where waiting for half the prefetch took 149,000-179,000; 172,000-173,000 of
//! 1 KiB where it took 133,000-155,000.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use weir_broker::shares::{self, MAX_SHARE_FETCH_RECORDS, ShareFetch, ShareRecord, ShareStart};
use weir_broker::{Broker, RequestContext};

use crate::errors::retriable;

/// How long one share fetch waits for records before it is sent again.
const FETCH_WAIT: Duration = Duration::from_secs(5);

/// Longest a consumer with less room than its prefetch waits for more before it fetches
/// what it has room for.
const GATHER_WAIT: Duration = Duration::from_millis(2);

/// How long a consumer waits before fetching again after a failed fetch.
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// What a consumer hands its connection.
#[derive(Debug)]
pub enum Fetched {
    /// Records acquired for consumer `tag` of `channel`, as member `member` of the share
    /// group `queue` (so they can be given back if the consumer is gone by then).
    Records {
        channel: u16,
        tag: Arc<str>,
        queue: Arc<str>,
        member: Arc<str>,
        records: Vec<ShareRecord>,
    },
    /// The consumer stopped: its queue is gone or the core refused it for good.
    Stopped {
        channel: u16,
        tag: Arc<str>,
        reason: String,
    },
}

/// One consumer's fetch loop; ends when the connection drops its receiver, closes the
/// semaphore, or the queue cannot be read any more. `gather`: the room it waits (at most
/// [`GATHER_WAIT`]) to have before a fetch.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    broker: Arc<Broker>,
    ctx: RequestContext,
    queue: Arc<str>,
    member_id: Arc<str>,
    channel: u16,
    tag: Arc<str>,
    room: Arc<Semaphore>,
    gather: usize,
    deliveries: mpsc::UnboundedSender<crate::connection::Event>,
) {
    let gather = gather.clamp(1, MAX_SHARE_FETCH_RECORDS);
    loop {
        let Ok(first) = room.acquire().await else {
            return;
        };
        first.forget();
        let mut wanted = 1usize;
        let deadline = tokio::time::Instant::now() + GATHER_WAIT;
        while wanted < MAX_SHARE_FETCH_RECORDS {
            // What is there now, at once.
            let there = room
                .available_permits()
                .min(MAX_SHARE_FETCH_RECORDS - wanted);
            if there > 0
                && let Ok(more) = room.try_acquire_many(u32::try_from(there).unwrap_or(u32::MAX))
            {
                more.forget();
                wanted += there;
                continue;
            }
            if wanted >= gather {
                break;
            }
            match tokio::time::timeout_at(deadline, room.acquire()).await {
                Ok(Ok(more)) => {
                    more.forget();
                    wanted += 1;
                }
                // The wait is over, or the consumer stopped: fetch what there is room for
                // (a stopped consumer's fetch fails or its records are handed back).
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let fetch = ShareFetch {
            group_id: queue.to_string(),
            member_id: member_id.to_string(),
            topics: vec![queue.to_string()],
            partitions: None,
            max_records: wanted,
            max_wait: FETCH_WAIT,
            // A queue holds what was published to it before its first consumer.
            start: ShareStart::Earliest,
            acks: Vec::new(),
        };
        match shares::fetch_anywhere(&broker, &ctx, fetch).await {
            Ok(answer) => {
                let got = answer.records.len().min(wanted);
                room.add_permits(wanted - got);
                if got == 0 {
                    continue;
                }
                let event = crate::connection::Event::Fetched(Fetched::Records {
                    channel,
                    tag: tag.clone(),
                    queue: queue.clone(),
                    member: member_id.clone(),
                    records: answer.records,
                });
                if deliveries.send(event).is_err() {
                    return;
                }
            }
            Err(err) if retriable(&err) => {
                room.add_permits(wanted);
                tracing::debug!(%queue, error = %err, "share fetch for an AMQP consumer; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
            }
            Err(err) => {
                tracing::info!(%queue, error = %err, "an AMQP consumer stopped");
                let _ = deliveries.send(crate::connection::Event::Fetched(Fetched::Stopped {
                    channel,
                    tag,
                    reason: format!("{}: {}", err.reason.name(), err.message),
                }));
                return;
            }
        }
    }
}
