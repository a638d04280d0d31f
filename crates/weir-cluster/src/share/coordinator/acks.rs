//! Acknowledgements (ACCEPT, RELEASE, REJECT of offset ranges): each entry checked before
//! it is looked at, then applied to the group's windows in order, under the group's
//! windows lock.

use super::{AckRange, AckResult, ShareCoordinator};
use crate::share::partition::{AckError, AckKind, MAX_DELIVERY_DELAY_MS};
use crate::share::shard::Windows;
use crate::share::{MAX_ACK_ENTRIES, MAX_ACK_RANGE_OFFSETS, ShareError};

/// Why an acknowledgement entry is refused before it is looked at, if it is.
fn check_ack(ack: &AckRange) -> Result<(), ShareError> {
    let bad = |why: String| Err(ShareError::InvalidRequest(why));
    if ack.first < 0 || ack.last < ack.first {
        return bad(format!(
            "offsets {}..={} are not a range",
            ack.first, ack.last
        ));
    }
    if ack.last - ack.first >= MAX_ACK_RANGE_OFFSETS {
        return bad(format!(
            "one acknowledgement covers at most {MAX_ACK_RANGE_OFFSETS} offsets"
        ));
    }
    if let AckKind::Release { delay_ms } = ack.kind
        && delay_ms > MAX_DELIVERY_DELAY_MS
    {
        return bad(AckError::DelayTooLong(delay_ms).to_string());
    }
    Ok(())
}

pub(super) fn too_many_acks(n: usize) -> ShareError {
    ShareError::InvalidRequest(format!(
        "a request carries at most {MAX_ACK_ENTRIES} acknowledgement entries; this one has {n}"
    ))
}

impl ShareCoordinator {
    /// Applies each acknowledgement entry in order (under the group's windows lock).
    pub(super) fn apply_acks(
        &self,
        group_id: &str,
        member_id: &str,
        windows: &mut Windows,
        acks: Vec<AckRange>,
        now_ms: u64,
        released: &mut bool,
    ) -> Vec<AckResult> {
        acks.into_iter()
            .map(|range| {
                let outcome = self.apply_ack(group_id, member_id, windows, &range, now_ms);
                if outcome.is_ok() && matches!(range.kind, AckKind::Release { .. }) {
                    *released = true;
                }
                AckResult { range, outcome }
            })
            .collect()
    }

    fn apply_ack(
        &self,
        group_id: &str,
        member_id: &str,
        windows: &mut Windows,
        ack: &AckRange,
        now_ms: u64,
    ) -> Result<Vec<i64>, ShareError> {
        check_ack(ack)?;
        let topic = self.registry.topic(&ack.topic)?;
        if ack.partition >= topic.partition_count() {
            return Err(ShareError::InvalidRequest(format!(
                "topic {:?} has no partition {} (it has {})",
                ack.topic,
                ack.partition,
                topic.partition_count()
            )));
        }
        let known = windows
            .partitions
            .get(&(ack.topic.clone(), ack.partition))
            .is_some_and(|w| w.topic_id == topic.topic_id)
            || windows
                .stored
                .contains_key(&(topic.topic_id.clone(), ack.partition));
        if !known {
            // The group never read this partition: nothing in it is held.
            return Ok((ack.first..=ack.last).collect());
        }
        let config = windows.settings.apply(self.config.partition);
        let w = windows.window(
            group_id,
            &ack.topic,
            &topic.topic_id,
            ack.partition,
            config,
            0,
        )?;
        let mut not_held = Vec::new();
        for offset in ack.first..=ack.last {
            match w.window.acknowledge(member_id, offset, ack.kind, now_ms) {
                Ok(_) => w.dirty = true,
                Err(AckError::NotHeld(offset)) => not_held.push(offset),
                Err(e @ AckError::DelayTooLong(_)) => {
                    return Err(ShareError::InvalidRequest(e.to_string()));
                }
            }
        }
        Ok(not_held)
    }
}
