//! Background upkeep of every partition: retention by age and size (`cleanup.policy`
//! with `delete`) on the retention tick, compaction (with `compact`) on a tick of the
//! same interval, and the periodic sync of `flush.policy=interval:<ms>` topics (so an
//! idle partition's last appends are synced within the interval, not only when the next
//! append arrives), which also syncs segments rolled since the last sync under every
//! policy (a roll leaves that fsync to a background flush, off the append path).
//!
//! Compaction runs in its own loop, beside the other two in the same task: a pass can
//! take long on a big log, and must not hold up interval flushes or retention.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use weir_cluster::Partition;

use crate::Broker;
use weir_broker::now_ms;

/// How often partitions of `flush.policy=interval:<ms>` topics are checked; bounds how
/// late an interval sync can be.
pub const FLUSH_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Every this many flush checks, every other partition is looked at too, for segments
/// rolled since the last sync (a roll is rare; a broker with 10,000 partitions would
/// otherwise touch each of them ten times a second for nothing).
const ROLLED_CHECK_EVERY: u64 = 10;

/// Runs until `shutdown` turns true.
pub(crate) async fn run(
    broker: Arc<Broker>,
    retention_every: Duration,
    shutdown: watch::Receiver<bool>,
) {
    tokio::join!(
        upkeep(broker.clone(), retention_every, shutdown.clone()),
        compaction(broker, retention_every, shutdown),
    );
}

/// Retention and interval flushes, until `shutdown` turns true.
async fn upkeep(
    broker: Arc<Broker>,
    retention_every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut retention = tokio::time::interval(retention_every);
    let mut flush = tokio::time::interval(FLUSH_CHECK_INTERVAL);
    retention.set_missed_tick_behavior(MissedTickBehavior::Delay);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut flush_ticks = 0u64;
    loop {
        tokio::select! {
            () = crate::until_stopping(&mut shutdown) => return,
            _ = retention.tick() => {
                let now = now_ms();
                for topic in broker.registry().topics() {
                    for p in topic.partitions() {
                        if p.config().cleanup.delete {
                            retain(&topic.name, &p, now).await;
                        }
                    }
                }
            }
            _ = flush.tick() => {
                flush_ticks += 1;
                let rolled_check = flush_ticks.is_multiple_of(ROLLED_CHECK_EVERY);
                for topic in broker.registry().topics() {
                    let partitions = topic.partitions();
                    // One config for the whole topic: its partitions share it.
                    let interval = partitions.first().is_some_and(|p| {
                        matches!(p.config().log.flush, weir_cluster::storage::FlushPolicy::Interval(_))
                    });
                    if !interval && !rolled_check {
                        continue;
                    }
                    for p in partitions {
                        let flushed = match interval {
                            true => p.flush_if_due().await,
                            false => p.flush_rolled().await,
                        };
                        if let Err(e) = flushed {
                            tracing::warn!(topic = topic.name, partition = p.index(), error = %e, "interval flush failed");
                        }
                    }
                }
            }
        }
    }
}

/// Compaction of `cleanup.policy=compact` topics every `every`, until `shutdown` turns
/// true (checked between partitions; a pass under way finishes first).
async fn compaction(broker: Arc<Broker>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = crate::until_stopping(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        for topic in broker.registry().topics() {
            for p in topic.partitions() {
                if *shutdown.borrow() {
                    return;
                }
                let config = p.config();
                if config.cleanup.compact {
                    compact(&topic.name, &p, now_ms(), config.delete_retention).await;
                }
            }
        }
    }
}

/// Retention by age and size (`cleanup.policy` with `delete`).
async fn retain(topic: &str, p: &Partition, now: i64) {
    match p.apply_retention(now).await {
        Ok(outcome) if outcome.segments_deleted > 0 => tracing::info!(
            topic,
            partition = p.index(),
            segments = outcome.segments_deleted,
            "retention deleted segments"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(topic, partition = p.index(), error = %e, "retention failed")
        }
    }
}

/// Compaction (`cleanup.policy` with `compact`), when the partition says a pass is due.
async fn compact(topic: &str, p: &Partition, now: i64, delete_retention: Duration) {
    match p.compact(now, delete_retention).await {
        Ok(outcome) if outcome.records_removed > 0 || outcome.segments_rewritten > 0 => {
            tracing::info!(
                topic,
                partition = p.index(),
                records_removed = outcome.records_removed,
                tombstones_removed = outcome.tombstones_removed,
                segments_rewritten = outcome.segments_rewritten,
                bytes_before = outcome.bytes_before,
                bytes_after = outcome.bytes_after,
                "compaction removed records"
            )
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(topic, partition = p.index(), error = %e, "compaction failed")
        }
    }
}
