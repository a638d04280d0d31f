//! Taking the data directory offline (`docs/replication.md` § A replica's log fails,
//! `docs/operations.md` § A failing disk). One failed write or fsync is recovered in
//! place: the partition reopens its log from its durable point. A disk that keeps
//! failing is another matter: a reopened log that fails again within
//! [`REPEATED_FAILURE_WINDOW`], or a failed log that cannot be reopened, says the disk
//! under the data directory is failing, and a leader there would otherwise go on
//! looping (reopen, fail the next sync, reopen...) while holding its leaderships and
//! acknowledging nothing. As Kafka takes such a log directory offline, and halts a
//! broker whose last log directory went offline, the partition marks the broker's
//! [`DataDirStatus`] offline; the broker process (weir-server) then stops acting as a
//! replica (controlled shutdown: its leaderships and ISR memberships move to healthy
//! replicas) and exits with a status of its own, so its supervisor restarts it and
//! recovery runs from what the disk holds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// A log that fails again within this long of being reopened after a failure takes its
/// data directory offline (a disk that fails now and then is recovered in place; one
/// that keeps failing is not).
pub const REPEATED_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Whether the broker's data directory has been taken offline, and why: shared by every
/// partition of a broker ([`crate::ReplicaHost::data_dir`]) and watched by the broker
/// process ([`crate::TopicRegistry::data_dir_status`]).
#[derive(Debug, Clone)]
pub struct DataDirStatus(Arc<watch::Sender<Option<String>>>);

impl Default for DataDirStatus {
    /// Online.
    fn default() -> DataDirStatus {
        DataDirStatus(Arc::new(watch::channel(None).0))
    }
}

impl DataDirStatus {
    /// Takes the data directory offline for `reason`; returns whether it was online until
    /// now (only the first reason is kept).
    pub fn take_offline(&self, reason: String) -> bool {
        self.0.send_if_modified(|state| match state {
            Some(_) => false,
            None => {
                *state = Some(reason);
                true
            }
        })
    }

    /// Why the data directory is offline; `None` while it is online.
    pub fn offline(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Follows the status: the value turns `Some(reason)` once, when it goes offline.
    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_is_kept_and_subscribers_see_it() {
        let status = DataDirStatus::default();
        let mut seen = status.subscribe();
        assert_eq!(status.offline(), None);
        assert!(status.take_offline("first".into()));
        assert!(!status.take_offline("second".into()));
        assert!(seen.has_changed().unwrap());
        assert_eq!(seen.borrow_and_update().as_deref(), Some("first"));
        assert_eq!(status.clone().offline().as_deref(), Some("first"));
    }
}
