//! The passing of time, given as a value: transaction timeouts, transactional-id expiry,
//! markers sent again, completions appended again.

use super::super::api::*;
use super::super::state::TxnState;
use super::{Status, Then, TxnCoordinator};

impl TxnCoordinator {
    /// The passing of time: abort transactions past their timeout (fencing the producer),
    /// expire idle ids (tombstones), re-send unanswered markers, retry completions.
    pub fn tick(&mut self, now: i64) -> Vec<Command> {
        let mut out = Vec::new();
        if self.status != Status::Active {
            return out;
        }
        let ids: Vec<String> = self.entries.keys().cloned().collect();
        for id in ids {
            self.tick_waiting(&id, now, &mut out);
            let entry = &self.entries[&id];
            if entry.pending.is_some() {
                continue;
            }
            let meta = &entry.meta;
            if entry.retry_complete {
                self.entries.get_mut(&id).expect("listed").retry_complete = false;
                self.append_completion(&id, now, &mut out);
            } else if let Some(round) = &entry.markers {
                if now - round.sent_ms >= self.config.marker_retry_ms {
                    let (rid, partitions) = (round.id, round.outstanding.iter().cloned().collect());
                    out.push(self.marker_command(&id, rid, partitions));
                    if let Some(r) = self.entries.get_mut(&id).and_then(|e| e.markers.as_mut()) {
                        r.sent_ms = now;
                    }
                }
            } else if meta.state == TxnState::Ongoing
                && meta.start_ms + i64::from(meta.timeout_ms) < now
            {
                let target = meta.prepare_fence_abort(self.config.server_version, now);
                let then = Then::Ended {
                    end_txn: None,
                    fencing_init: None,
                };
                self.append(&id, target, then, &mut out);
            } else if meta.state.expiration_allowed()
                && meta.last_update_ms <= now - self.config.expiration_ms
            {
                let target = meta.prepare_dead();
                self.append(&id, target, Then::Expired, &mut out);
            }
        }
        out
    }
}
