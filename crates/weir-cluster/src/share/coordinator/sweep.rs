//! What a share coordinator does besides answering members: copying archived records to
//! the group's dead-letter topic or exchange once their archiving is durable, and the
//! sweep that expires and dead-letters records of groups nobody is reading (an AMQP queue
//! with a TTL), with the windows it makes for them ([`ShareCoordinator::attach`]).

use super::*;
use crate::share::shard::Window;

impl ShareCoordinator {
    /// After a write that archived records waiting for their dead-letter copy is
    /// durable: copies them (and writes that they are copied) at once, rather than at the
    /// group's next request or sweep. The request that made the write has its answer
    /// already; a failure here leaves the copies to a later pass.
    pub(super) async fn copy_durable_dead_letters(
        &self,
        shard: &ShareShard,
        group: &ShareGroup,
        group_id: &str,
    ) {
        let mut windows = group.windows.lock().await;
        if windows.deleted || shard.check_serving().is_err() {
            return;
        }
        self.copy_dead_letters(group_id, group, &mut windows).await;
        let Ok(pending) = shard.queue_snapshots(&mut windows).await else {
            return;
        };
        drop(windows);
        if let Some(pending) = pending {
            // A failure fails the shard (logged there); the copies are made again.
            let _ = shard.durable(group, pending).await;
        }
    }

    /// Copies the group's archived records waiting for it to its dead-letter topic or
    /// exchange (under its windows lock), and marks them finished once the copy is
    /// durable. Only records whose archiving is durable are copied: a copy of a record
    /// whose REJECT is then lost would be a dead letter of a record delivered again and
    /// perhaps accepted. After a copy failed, the group's requests do not try again for
    /// [`DEAD_LETTER_RETRY`]; the records wait.
    pub(super) async fn copy_dead_letters(
        &self,
        group_id: &str,
        group: &ShareGroup,
        windows: &mut Windows,
    ) {
        let Some(sink) = &self.sink else {
            return;
        };
        let exchange = windows.settings.dead_letter_exchange.clone();
        let routing_key = windows.settings.dead_letter_routing_key.clone();
        let dlq = windows.settings.dead_letter_topic.clone();
        if exchange.is_none() && dlq.is_none() {
            return;
        }
        // The machine's clock values are std's (tokio's time pauses only in tests).
        let now = Instant::now().into_std();
        if windows.dead_letters_retry_at.is_some_and(|at| now < at) {
            return;
        }
        let dlq_partitions = match (&exchange, &dlq) {
            (Some(_), _) => Ok(1),
            (None, Some(dlq)) => self.registry.topic(dlq).map(|t| t.partition_count()),
            (None, None) => return,
        };
        let Ok(dlq_partitions) = dlq_partitions else {
            tracing::warn!(
                group = group_id,
                topic = dlq,
                "the share group's dead-letter topic does not exist; archived records wait"
            );
            windows.dead_letters_retry_at = Some(now + DEAD_LETTER_RETRY);
            return;
        };
        let durable = group.writes_durable.load(Ordering::Acquire);
        let mut retry = false;
        for ((topic, partition), w) in &mut windows.partitions {
            let pending = w.copyable_dead_letters(MAX_DEAD_LETTERS_PER_PASS, durable);
            if pending.is_empty() {
                continue;
            }
            // The error is only logged (the copy is tried again): the source's or the
            // sink's own words, not dressed as a client's invalid request.
            let copied = async {
                let data = self.source(topic, *partition).map_err(|e| e.to_string())?;
                let offsets: Vec<i64> = pending.iter().map(|a| a.offset).collect();
                let found = reader::records_at(&data, &offsets)
                    .await
                    .map_err(|e| e.to_string())?;
                let by_offset: HashMap<i64, &crate::share::partition::Archived> =
                    pending.iter().map(|a| (a.offset, a)).collect();
                let copies = found
                    .into_iter()
                    .filter_map(|r| {
                        let archived = by_offset.get(&r.offset)?;
                        Some(dead_letter_copy(
                            group_id,
                            topic,
                            *partition,
                            r,
                            archived,
                            wall_clock_ms(),
                        ))
                    })
                    .collect();
                let target = match (&exchange, &dlq) {
                    (Some(exchange), _) => DeadLetterTarget::Exchange {
                        exchange: exchange.clone(),
                        routing_key: routing_key.clone(),
                    },
                    (None, dlq) => DeadLetterTarget::Topic {
                        topic: dlq.clone().unwrap_or_default(),
                        partition: *partition % dlq_partitions.max(1),
                    },
                };
                sink.send(&target, copies).await
            };
            match copied.await {
                // A record the log no longer has is finished too: there is nothing to copy.
                Ok(()) => {
                    for a in &pending {
                        w.dead_lettered(a.offset);
                    }
                    w.dirty = true;
                }
                Err(e) => {
                    tracing::warn!(
                        group = group_id,
                        topic = %topic,
                        partition,
                        error = %e,
                        "copying archived records to the dead-letter topic failed; retrying in {DEAD_LETTER_RETRY:?}"
                    );
                    retry = true;
                    break;
                }
            }
        }
        windows.dead_letters_retry_at = retry.then_some(now + DEAD_LETTER_RETRY);
    }

    /// One pass over the groups this broker coordinates that can expire or dead-letter
    /// records ([`GroupSettings::sweeps`]), whether or not a member asks: each of their
    /// windows takes in the log's new records, archives up to [`MAX_EXPIRED_PER_PASS`]
    /// expired ones, and copies what waits for its dead-letter copy (each copy durable
    /// before its record counts as finished, as for a member's reject). So a queue with a
    /// TTL and nobody reading it moves its messages to its dead-letter exchange on time.
    pub async fn sweep(&self) {
        for shard in self.loaded_shards() {
            for group_id in shard.group_ids() {
                let Some(group) = shard.group(&group_id) else {
                    continue;
                };
                if !group.sweeps.load(Ordering::Relaxed) {
                    continue;
                }
                if let Err(e) = self.sweep_group(&shard, &group_id, &group).await {
                    tracing::debug!(group = group_id, error = %e, "share group sweep failed");
                }
            }
        }
    }

    async fn sweep_group(
        &self,
        shard: &ShareShard,
        group_id: &str,
        group: &ShareGroup,
    ) -> Result<(), ShareError> {
        let mut windows = group.windows.lock().await;
        if windows.deleted || !windows.settings.sweeps() {
            return Ok(());
        }
        shard.check_serving()?;
        self.rebuild_stored(group_id, &mut windows)?;
        let now = wall_clock_ms().max(0) as u64;
        let filter = windows.settings.filter.clone();
        let ttl_ms = windows.settings.message_ttl_ms;
        let max_length = windows.settings.max_length;
        for ((topic, partition), w) in &mut windows.partitions {
            let data = match self.source(topic, *partition) {
                Ok(data) => data,
                Err(_) => continue,
            };
            let start = w.window.start();
            reader::extend(
                &data,
                &mut w.window,
                &mut w.cache,
                &filter,
                ttl_ms,
                now,
                usize::MAX,
            )
            .await?;
            w.dirty |= w.window.start() != start;
            if let Some(max_ready) = max_length {
                drop_over_length(group_id, &data, w, max_ready, MAX_EXPIRED_PER_PASS).await?;
            }
            let expired = w.window.expire_records(now, MAX_EXPIRED_PER_PASS);
            if !expired.is_empty() {
                for a in &expired {
                    w.cache.take(a.offset);
                }
                w.dirty = true;
                tracing::debug!(
                    group = group_id,
                    topic = %topic,
                    partition,
                    expired = expired.len(),
                    "share group records expired"
                );
            }
        }
        self.copy_dead_letters(group_id, group, &mut windows).await;
        let pending = shard.queue_snapshots(&mut windows).await?;
        drop(windows);
        if let Some(pending) = pending
            && shard.durable(group, pending).await?
        {
            self.copy_durable_dead_letters(shard, group, group_id).await;
        }
        Ok(())
    }

    /// Makes the group read every partition of `topic` from now on, before any member
    /// fetches (from its log start, or where the group's settings say): its windows are
    /// made and written, so the coordinator's sweep expires and dead-letters the topic's
    /// records while nobody reads them (an AMQP queue declared with a TTL). A window the
    /// group has already is kept. Answers once the windows are durable.
    pub async fn attach(&self, group_id: &str, topic_name: &str) -> Result<(), ShareError> {
        let topic = self.registry.topic(topic_name)?;
        let shard = self.shard(group_id)?;
        let group = shard.group_or_new(group_id)?;
        let mut windows = group.windows.lock().await;
        if windows.deleted {
            return Err(ShareError::UnknownGroup(group_id.to_string()));
        }
        self.rebuild_stored(group_id, &mut windows)?;
        let config = windows.settings.apply(self.config.partition);
        let start_at = windows.settings.start.unwrap_or(ShareStart::Earliest);
        for p in 0..topic.partition_count() {
            let known = windows
                .partitions
                .contains_key(&(topic_name.to_string(), p));
            if known {
                continue;
            }
            let data = self.source(topic_name, p)?;
            let offsets = data.offsets().await?;
            let start = match start_at {
                ShareStart::Earliest => offsets.log_start_offset,
                ShareStart::Latest => offsets.high_watermark,
            };
            let w = windows.window(group_id, topic_name, &topic.topic_id, p, config, start)?;
            w.dirty = true;
        }
        let pending = shard.queue_snapshots(&mut windows).await?;
        drop(windows);
        if let Some(pending) = pending {
            shard.durable(&group, pending).await?;
        }
        Ok(())
    }
}

/// Archives, with reason `maxlen`, the oldest ready records of `w` past the group's
/// maximum length `max_ready` (at most `max`; an AMQP queue's `x-max-length` with
/// `drop-head`), counting the records the log holds past the window as ready too. Run
/// after the window took in the log's new records: by the sweep, and by a fetch before
/// it acquires, so a consumer is never handed a record the bound has dropped.
pub(super) async fn drop_over_length(
    group_id: &str,
    data: &DataSource,
    w: &mut Window,
    max_ready: u64,
    max: usize,
) -> Result<usize, ShareError> {
    let high_watermark = data.offsets().await?.high_watermark;
    let unread = u64::try_from(high_watermark - w.window.end()).unwrap_or(0);
    let dropped = w.window.drop_head(max_ready, unread, max);
    if !dropped.is_empty() {
        for a in &dropped {
            w.cache.take(a.offset);
        }
        w.dirty = true;
        tracing::debug!(
            group = group_id,
            dropped = dropped.len(),
            "share group records dropped past the maximum length"
        );
    }
    Ok(dropped.len())
}

/// Runs [`ShareCoordinator::sweep`] every [`SHARE_SWEEP_INTERVAL`] until `shutdown` or
/// until the coordinator is dropped.
pub(super) async fn sweep_loop(
    coordinator: std::sync::Weak<ShareCoordinator>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SHARE_SWEEP_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let Some(this) = coordinator.upgrade() else {
            return;
        };
        this.sweep().await;
    }
}
