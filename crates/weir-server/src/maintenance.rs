//! Background upkeep of every partition: retention by age and size, and the periodic
//! sync of `flush.policy=interval:<ms>` topics (so an idle partition's last appends
//! are synced within the interval, not only when the next append arrives).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::Broker;
use crate::convert::now_ms;

/// How often interval flush policies are checked; bounds how late an interval sync can
/// be.
pub const FLUSH_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Runs until `shutdown` turns true.
pub(crate) async fn run(
    broker: Arc<Broker>,
    retention_every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut retention = tokio::time::interval(retention_every);
    let mut flush = tokio::time::interval(FLUSH_CHECK_INTERVAL);
    retention.set_missed_tick_behavior(MissedTickBehavior::Delay);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = crate::until_stopping(&mut shutdown) => return,
            _ = retention.tick() => {
                let now = now_ms();
                for topic in broker.registry.topics() {
                    for p in topic.partitions() {
                        match p.apply_retention(now).await {
                            Ok(outcome) if outcome.segments_deleted > 0 => tracing::info!(
                                topic = topic.name,
                                partition = p.index(),
                                segments = outcome.segments_deleted,
                                "retention deleted segments"
                            ),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(topic = topic.name, partition = p.index(), error = %e, "retention failed"),
                        }
                    }
                }
            }
            _ = flush.tick() => {
                for topic in broker.registry.topics() {
                    for p in topic.partitions() {
                        if let Err(e) = p.flush_if_due().await {
                            tracing::warn!(topic = topic.name, partition = p.index(), error = %e, "interval flush failed");
                        }
                    }
                }
            }
        }
    }
}
