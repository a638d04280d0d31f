//! The partition's side of replication between brokers: answering a follower's fetch
//! (holding it while there is nothing to send), taking the leader's answer as a
//! follower, metadata and ISR answers, timers, and the links through which its state
//! machine's fetches and ISR proposals leave this broker.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use weir_log::storage::{FileStorage, Storage};

use super::Partition;
use crate::controller::records::{BrokerEpoch, PartitionRegistration};
use crate::partition::BrokerId;
use crate::replication::{
    AlterIsrAnswer, AlterIsrRequest, Event, FetchAnswer, FetchError, FetchRequest, Role,
};

/// Where a partition's replication traffic leaves this broker: the replica manager
/// batches fetches into one session per leader and sends ISR proposals to the
/// controller. Called from inside the state machine's driver: must not block.
pub trait ReplicationLinks: Send + Sync + std::fmt::Debug + 'static {
    fn send_fetch(&self, topic_id: &str, partition: u32, leader: BrokerId, request: FetchRequest);
    fn propose_isr(&self, topic_id: &str, partition: u32, request: AlterIsrRequest);
    /// Asks the controller for a new leader epoch: this replica, whose log failed and
    /// lost its unsynced tail, must not append at `leader_epoch` again.
    fn resign_leadership(&self, topic_id: &str, partition: u32, leader_epoch: i32);
}

/// The broker a replica runs on, and how it reaches the others.
#[derive(Debug, Clone)]
pub struct ReplicaHost {
    pub node: BrokerId,
    /// The broker's registration epoch (0 before it has one).
    pub broker_epoch: BrokerEpoch,
    /// `None` on a broker with no other brokers.
    pub links: Option<Arc<dyn ReplicationLinks>>,
    /// What the partition's log reads and writes its files through.
    pub storage: LogStorage,
    /// The broker's data directory's status, which a disk that keeps failing takes
    /// offline (shared by every partition of the broker).
    pub data_dir: super::DataDirStatus,
}

impl From<BrokerId> for ReplicaHost {
    /// A broker on its own, on the file system.
    fn from(node: BrokerId) -> ReplicaHost {
        ReplicaHost {
            node,
            broker_epoch: 0,
            links: None,
            storage: LogStorage::default(),
            data_dir: super::DataDirStatus::default(),
        }
    }
}

/// The storage every partition log of a broker goes through: the file system
/// ([`weir_log::storage::FileStorage`]) unless a test puts a
/// [`weir_log::storage::FaultyStorage`] under a whole broker to drop what was not
/// fsynced. Equal when it is the same storage.
#[derive(Debug, Clone)]
pub struct LogStorage(pub Arc<dyn Storage>);

impl Default for LogStorage {
    /// The file system: one shared instance, so every default compares equal.
    fn default() -> LogStorage {
        static FILES: std::sync::LazyLock<Arc<dyn Storage>> =
            std::sync::LazyLock::new(|| Arc::new(FileStorage));
        LogStorage(FILES.clone())
    }
}

impl PartialEq for LogStorage {
    fn eq(&self, other: &LogStorage) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LogStorage {}

impl Partition {
    pub fn topic_id(&self) -> &str {
        &self.shared.topic_id
    }

    /// Leader, epochs, replicas and ISR as this replica last applied them.
    pub fn registration(&self) -> PartitionRegistration {
        let replica = self.shared.replica();
        replica
            .registration()
            .cloned()
            .unwrap_or(PartitionRegistration {
                replicas: Vec::new(),
                isr: Vec::new(),
                leader: crate::controller::records::NO_LEADER,
                leader_epoch: -1,
                partition_epoch: -1,
                reassignment: None,
            })
    }

    /// This broker's registration epoch, stamped on its fetches (a restarted broker has
    /// a new one).
    pub fn set_broker_epoch(&self, broker_epoch: BrokerEpoch) {
        let mut replica = self.shared.replica();
        if replica.config().broker_epoch != broker_epoch {
            let mut config = replica.config().clone();
            config.broker_epoch = broker_epoch;
            replica.reconfigure(config);
        }
    }

    /// Applies the metadata's registration of this partition (leader, epochs, ISR). Like
    /// the other events below it is posted, not awaited: a partition whose log is busy
    /// takes it up once the log is free (`inbox.rs`).
    pub fn apply_registration(&self, registration: PartitionRegistration) {
        self.shared.post(Event::Registration(registration));
    }

    /// [`Self::apply_registration`], waiting for the log to be free to act on it: for a
    /// replica about to be closed (reassigned away), whose leadership must end, answering
    /// the appends that wait on it NOT_LEADER with the new leader, before the close takes
    /// the log. The close waits for the log anyway.
    pub async fn apply_registration_before_close(&self, registration: PartitionRegistration) {
        self.shared.handle_waiting(registration).await;
    }

    /// The controller's answer to this replica's ISR proposal.
    pub fn alter_isr_answered(&self, answer: AlterIsrAnswer) {
        self.shared.post(Event::AlterIsrAnswered(answer));
    }

    /// Time passed: fetch retries, ISR lag, unanswered proposals. Skipped while the
    /// replica is at rest (nothing a tick could change; every change to it comes with an
    /// event, which ends the rest).
    pub fn tick(&self) {
        if self
            .shared
            .at_rest
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        self.shared.post(Event::Tick);
    }

    /// The leader's answer to this follower's fetch, with the batches it carried.
    pub fn fetch_answered(&self, answer: FetchAnswer, batches: Bytes) {
        self.shared.post(Event::FetchAnswered { answer, batches });
    }

    /// The leader's side of a follower's fetch: the state machine's answer and, for
    /// data, the stored batches from the fetch offset (up to `max_bytes`, at least one
    /// batch). With nothing to send yet it waits up to `wait` for the log to grow, unless
    /// the state machine says the follower's flush is pending. A
    /// held answer goes out only while this replica still leads at the answer's epoch
    /// (`docs/replication.md` § The fetch).
    pub async fn answer_fetch(
        &self,
        request: FetchRequest,
        max_bytes: usize,
        wait: Duration,
    ) -> (FetchAnswer, Bytes) {
        let fetch_id = request.fetch_id;
        let refused = |error| (FetchAnswer::Error { fetch_id, error }, Bytes::new());
        let (answer, may_wait) = {
            let guard = self.shared.read_guard().await;
            let Some(log) = guard.as_ref() else {
                return refused(FetchError::NotLeader);
            };
            let answers = self.shared.drive(log, Event::Fetch(request));
            match answers.into_iter().next() {
                Some((_, answer, may_wait)) => (answer, may_wait),
                // Dropped as a stale incarnation's: it gets nothing useful either way.
                None => return refused(FetchError::NotLeader),
            }
        };
        let FetchAnswer::Data {
            leader_epoch,
            from_offset,
            ..
        } = answer
        else {
            return (answer, Bytes::new());
        };
        let mut log_end = self.shared.log_end.subscribe();
        let wait = if may_wait { wait } else { Duration::ZERO };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if *log_end.borrow_and_update() > from_offset {
                break;
            }
            match tokio::time::timeout_at(deadline, log_end.changed()).await {
                Ok(Ok(())) => continue,
                _ => break, // waited long enough (or closing): answer what there is
            }
        }
        if self.shared.replica().role() != (Role::Leader { leader_epoch }) {
            return refused(FetchError::NotLeader);
        }
        let read = self
            .shared
            .with_log(move |log| {
                if from_offset >= log.offsets().log_end_offset {
                    return Ok(Bytes::new());
                }
                log.read(from_offset, max_bytes, None)
                    .map(|data| data.records)
                    .map_err(|e| crate::error::ClusterError::TaskFailed(e.to_string()))
            })
            .await;
        match read {
            Ok(batches) => (answer, batches),
            Err(e) => {
                tracing::warn!(topic = self.shared.topic, partition = self.shared.index, error = %e, "reading for a follower failed");
                refused(FetchError::NotLeader)
            }
        }
    }
}
