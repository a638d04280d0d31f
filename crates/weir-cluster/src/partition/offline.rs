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
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::TopicConfig;
    use crate::error::ClusterError;
    use crate::partition::tests::{
        append_until_failure, batch_of, eventually, open_on, single_replica, values,
    };
    use crate::partition::{Durability, Partition};

    /// Waits (a few seconds at most) until `status` says the data directory is offline;
    /// returns why.
    async fn offline(status: &DataDirStatus) -> String {
        let mut seen = status.subscribe();
        let reason = tokio::time::timeout(Duration::from_secs(10), seen.wait_for(Option::is_some))
            .await
            .expect("the data directory goes offline")
            .unwrap()
            .clone();
        reason.unwrap()
    }

    /// The values of the log in `dir`, opened again on the plain file system (what a
    /// restarted broker finds).
    async fn values_on_disk(dir: &Path) -> Vec<String> {
        let config = TopicConfig::new(BTreeMap::new())
            .unwrap()
            .effective()
            .unwrap();
        let p = Partition::open("t", "t-id", 0, dir, config, 0, single_replica())
            .await
            .unwrap();
        let values = values(&p).await;
        p.close().await.unwrap();
        values
    }

    /// A disk whose fsyncs keep failing: the failed log cannot be cut durably to its
    /// durable point, so the data directory goes offline; the partition serves nothing
    /// (no acknowledgement after the failure) and the disk keeps every acknowledged
    /// record, in order.
    #[tokio::test]
    async fn a_log_that_cannot_be_reopened_takes_the_data_dir_offline() {
        let dir = tempfile::tempdir().unwrap();
        let storage = weir_log::storage::FaultyStorage::new(Default::default());
        let status = DataDirStatus::default();
        let p = open_on(dir.path(), storage.clone(), status.clone()).await;
        let mut acked = Vec::new();
        for i in 0..20 {
            let value = format!("record-{i}");
            p.append(batch_of(&value), Durability::Durable)
                .await
                .unwrap();
            acked.push(value);
        }
        storage.fail_syncs(true);
        let (more, _) = append_until_failure(&p).await;
        assert!(
            more.is_empty(),
            "acknowledged after every fsync failed: {more:?}"
        );
        let reason = offline(&status).await;
        assert!(
            reason.contains("reopening the failed log of t-0 failed"),
            "{reason}"
        );
        // It stays down: nothing is acknowledged, nothing read, with the retriable error.
        for _ in 0..3 {
            let err = p
                .append(batch_of("late"), Durability::Durable)
                .await
                .unwrap_err();
            assert!(matches!(err, ClusterError::LogRecovering { .. }), "{err}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        p.close().await.unwrap();
        storage.fail_syncs(false);
        let values = values_on_disk(dir.path()).await;
        assert_eq!(
            &values[..acked.len()],
            &acked[..],
            "acknowledged records kept"
        );
        assert!(!values.iter().any(|v| v == "late"), "{values:?}");
    }

    /// A log reopened after one failed fsync that fails again within the window takes
    /// the data directory offline at once (it is not reopened again); one failure alone
    /// (the test above it) does not.
    #[tokio::test]
    async fn a_log_that_fails_again_soon_after_reopening_takes_the_data_dir_offline() {
        let dir = tempfile::tempdir().unwrap();
        let storage = weir_log::storage::FaultyStorage::new(weir_log::storage::FaultPlan {
            fail_sync_number: Some(8),
            ..Default::default()
        });
        let status = DataDirStatus::default();
        let p = open_on(dir.path(), storage.clone(), status.clone()).await;
        let (acked, _) = append_until_failure(&p).await;
        eventually("append after the first failure", async || {
            p.append(batch_of("after"), Durability::Durable).await
        })
        .await;
        assert_eq!(status.offline(), None, "one failure is recovered in place");
        storage.fail_syncs(true);
        let (more, _) = append_until_failure(&p).await;
        assert!(more.is_empty(), "{more:?}");
        let reason = offline(&status).await;
        assert!(reason.contains("failed again"), "{reason}");
        p.close().await.unwrap();
        storage.fail_syncs(false);
        let values = values_on_disk(dir.path()).await;
        assert_eq!(&values[..acked.len()], &acked[..]);
        assert_eq!(values[acked.len()], "after");
    }

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
