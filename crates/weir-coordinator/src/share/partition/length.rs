//! A share-partition's maximum length (an AMQP queue's `x-max-length` with `drop-head`,
//! docs/amqp.md § Queue length limits): past it, the oldest ready records are archived.

use super::*;

impl SharePartition {
    /// Archives the oldest available records (delayed ones included) while the ready
    /// records number more than `max_ready`, at most `max` of them, with reason
    /// [`ArchiveReason::MaxLength`] (to be dead-lettered where the group has a target).
    /// Ready records are the window's available ones and the `unread` records the log
    /// holds past the window's end; records members hold are neither counted nor dropped,
    /// as RabbitMQ counts only ready messages. When the unread records alone are over the
    /// bound, the window's are all dropped and the rest wait for a later pass, once the
    /// window has read them.
    pub fn drop_head(&mut self, max_ready: u64, unread: u64, max: usize) -> Vec<Archived> {
        let available = self
            .records
            .values()
            .filter(|e| e.state == RecordState::Available)
            .count();
        let excess = (available as u64)
            .saturating_add(unread)
            .saturating_sub(max_ready);
        let wanted = usize::try_from(excess)
            .unwrap_or(usize::MAX)
            .min(available)
            .min(max);
        if wanted == 0 {
            return Vec::new();
        }
        let copied = !self.config.dead_letter;
        let reason = ArchiveReason::MaxLength;
        let mut archived = Vec::with_capacity(wanted);
        for (&offset, entry) in self.records.iter_mut() {
            if archived.len() >= wanted {
                break;
            }
            if entry.state != RecordState::Available {
                continue;
            }
            entry.state = RecordState::Archived { reason, copied };
            // Written in the next snapshot, so a new coordinator does not read it as
            // never delivered.
            self.touched_end = self.touched_end.max(offset + 1);
            archived.push(Archived {
                offset,
                delivery_count: entry.delivery_count,
                reason,
            });
        }
        if !copied {
            self.pending_copies += archived.len();
        }
        self.advance_start();
        archived
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(dead_letter: bool) -> SharePartition {
        SharePartition::new(
            ShareConfig {
                dead_letter,
                ..ShareConfig::default()
            },
            0,
        )
    }

    #[test]
    fn the_oldest_ready_records_are_dropped_down_to_the_bound() {
        let mut sp = window(false);
        assert_eq!(sp.extend((0..5).map(|o| (o, 0))), 5);
        let dropped = sp.drop_head(2, 0, usize::MAX);
        assert_eq!(
            dropped.iter().map(|a| a.offset).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(dropped.iter().all(|a| a.reason == ArchiveReason::MaxLength));
        // Without a dead-letter target they are finished at once.
        assert_eq!(sp.start(), 3);
        assert!(sp.drop_head(2, 0, usize::MAX).is_empty());
        let got = sp.acquire("a", 0, 10);
        assert_eq!(got.iter().map(|a| a.offset).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn held_records_do_not_count_and_are_not_dropped() {
        let mut sp = window(false);
        sp.extend((0..4).map(|o| (o, 0)));
        assert_eq!(sp.acquire("a", 0, 2).len(), 2);
        // 2 held, 2 ready: a bound of 2 drops nothing, of 1 the oldest ready (2).
        assert!(sp.drop_head(2, 0, usize::MAX).is_empty());
        let dropped = sp.drop_head(1, 0, usize::MAX);
        assert_eq!(dropped.iter().map(|a| a.offset).collect::<Vec<_>>(), [2]);
        assert_eq!(sp.start(), 0);
    }

    #[test]
    fn unread_records_count_and_the_pass_is_bounded() {
        let mut sp = window(true);
        sp.extend((0..4).map(|o| (o, 0)));
        // 4 in the window and 3 unread, bound 5: the 2 oldest go.
        let dropped = sp.drop_head(5, 3, usize::MAX);
        assert_eq!(dropped.iter().map(|a| a.offset).collect::<Vec<_>>(), [0, 1]);
        // Waiting for their dead-letter copies, they hold the start.
        assert_eq!(sp.start(), 0);
        assert_eq!(sp.counts(0).archived_pending, 2);
        // Unread alone over the bound: every ready record of the window, at most `max`.
        assert_eq!(sp.drop_head(1, 10, 1).len(), 1);
        assert_eq!(sp.drop_head(1, 10, usize::MAX).len(), 1);
        assert_eq!(sp.counts(0).available, 0);
    }
}
