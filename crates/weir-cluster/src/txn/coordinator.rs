//! The transaction coordinator: the async API the broker calls for transactions, over
//! shards (`shard.rs`) that hold the transactional ids of each `__transaction_state`
//! partition this broker leads.
//!
//! Transactional id `t` lives in the `__transaction_state` partition `t` hashes to
//! (Kafka's rule) and is served by that partition's leader. It follows leadership as the
//! group coordinator does: a request for an id whose shard is elsewhere gets
//! NOT_COORDINATOR, one that arrives while the shard loads COORDINATOR_LOAD_IN_PROGRESS,
//! and a shard whose leadership ends stops and answers NOT_COORDINATOR to every request
//! still waiting.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use weir_coordinator::txn::Reply;

use super::shard::{Request, TxnShard};
use super::{
    AddPartitions, DEFAULT_TXN_STATE_PARTITIONS, EndTxn, InitProducerId, ListFilter, MarkerWriter,
    PartitionVerdicts, ProducerIdAndEpoch, TXN_LEADERSHIP_CHECK_INTERVAL, TXN_OPEN_LOAD_WAIT,
    TXN_REQUEST_WAIT, TXN_STATE_REPLICATION_FACTOR, TXN_STATE_SEGMENT_BYTES, TXN_STATE_TOPIC,
    TransactionError, TxnConfig, TxnDescription, TxnError, TxnListing, check_transactional_id,
    find_coordinator,
};
use crate::group::{OFFSETS_TOPIC, partition_for_group};
use crate::internal_topic::{self, InternalTopic, LeaderSlots};
use crate::registry::TopicRegistry;
use crate::replication::BoxFuture;

/// How the coordinator runs.
#[derive(Debug, Clone)]
pub struct TransactionConfig {
    /// Partitions of `__transaction_state` when this broker creates it (an existing topic
    /// keeps its count).
    pub state_partitions: u32,
    /// The machine's settings (timeouts, limits, transaction version).
    pub machine: TxnConfig,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            state_partitions: DEFAULT_TXN_STATE_PARTITIONS,
            machine: TxnConfig::default(),
        }
    }
}

/// The transaction coordinator. Cheap to share: use it as `Arc<TransactionCoordinator>`.
#[derive(Debug)]
pub struct TransactionCoordinator {
    registry: Arc<TopicRegistry>,
    config: TransactionConfig,
    slots: LeaderSlots<TxnShard>,
    writer: Option<Arc<dyn MarkerWriter>>,
}

impl TransactionCoordinator {
    /// Opens the coordinator: creates `__transaction_state` if missing and loads the
    /// shards of the partitions this broker leads (waiting at most
    /// [`TXN_OPEN_LOAD_WAIT`]), then keeps following leadership until `shutdown`.
    /// Markers are written through `writer` (without one they are retried forever).
    ///
    /// Boxed, as the other entry points the broker process awaits once: the tasks it
    /// spawns are compiled in this crate rather than in each crate that awaits it
    /// (docs/ARCHITECTURE.md § Build time).
    pub fn open(
        registry: Arc<TopicRegistry>,
        config: TransactionConfig,
        writer: Option<Arc<dyn MarkerWriter>>,
        shutdown: watch::Receiver<bool>,
    ) -> BoxFuture<'static, Result<Arc<TransactionCoordinator>, TransactionError>> {
        Box::pin(Self::open_shards(registry, config, writer, shutdown))
    }

    async fn open_shards(
        registry: Arc<TopicRegistry>,
        config: TransactionConfig,
        writer: Option<Arc<dyn MarkerWriter>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<TransactionCoordinator>, TransactionError> {
        if config.state_partitions == 0
            || config.state_partitions > crate::registry::MAX_PARTITIONS_PER_TOPIC
        {
            return Err(crate::error::ClusterError::InvalidRequest(format!(
                "{TXN_STATE_TOPIC} needs 1 to {} partitions, not {}",
                crate::registry::MAX_PARTITIONS_PER_TOPIC,
                config.state_partitions
            ))
            .into());
        }
        let spec = InternalTopic {
            name: TXN_STATE_TOPIC,
            partitions: config.state_partitions,
            replication_factor: TXN_STATE_REPLICATION_FACTOR,
            segment_bytes: TXN_STATE_SEGMENT_BYTES,
        };
        let topic = internal_topic::ensure(&registry, spec, TXN_OPEN_LOAD_WAIT).await?;
        let coordinator = Arc::new(TransactionCoordinator {
            registry: registry.clone(),
            config,
            slots: LeaderSlots::new(TXN_STATE_TOPIC, topic.partition_count()),
            writer,
        });
        let deadline = Instant::now() + TXN_OPEN_LOAD_WAIT;
        while coordinator.follow_leadership().await? > 0 && Instant::now() < deadline {
            tokio::time::sleep(TXN_LEADERSHIP_CHECK_INTERVAL / 10).await;
        }
        let this = coordinator.clone();
        internal_topic::spawn_following(
            registry,
            shutdown,
            TXN_LEADERSHIP_CHECK_INTERVAL,
            TXN_STATE_TOPIC,
            move || {
                let this = this.clone();
                async move { this.follow_leadership().await.map(|_| ()) }
            },
        );
        tracing::info!(
            shards = coordinator.slots.loaded().len(),
            partitions = coordinator.slots.len(),
            "transaction coordinator open"
        );
        Ok(coordinator)
    }

    /// Loads the shards of the partitions this broker now leads and drops the others;
    /// returns how many it leads but could not load yet.
    pub async fn follow_leadership(&self) -> Result<usize, TransactionError> {
        let topic = self.registry.topic(TXN_STATE_TOPIC)?;
        let registry = &self.registry;
        let (machine, writer) = (&self.config.machine, &self.writer);
        Ok(self
            .slots
            .follow(&topic, registry.broker_id(), |index, partition, epoch| {
                TxnShard::load(
                    index,
                    partition,
                    epoch,
                    registry.clone(),
                    machine.clone(),
                    writer.clone(),
                )
            })
            .await)
    }

    /// The shard of `transactional_id`, if this broker coordinates it now.
    fn shard(&self, transactional_id: &str) -> Result<Arc<TxnShard>, TransactionError> {
        check_transactional_id(transactional_id)?;
        let partition = partition_for_group(transactional_id, self.slots.len());
        if let Some(shard) = self.slots.get(partition) {
            return Ok(shard);
        }
        let (_, coordinator) = find_coordinator(&self.registry, transactional_id)?;
        if coordinator == self.registry.broker_id() {
            Err(TransactionError::Loading { partition })
        } else {
            Err(TransactionError::NotCoordinator {
                partition,
                coordinator,
            })
        }
    }

    /// Whether this broker coordinates `transactional_id` now (its shard is loaded here).
    pub fn coordinates(&self, transactional_id: &str) -> bool {
        self.shard(transactional_id).is_ok()
    }

    async fn request(
        &self,
        transactional_id: &str,
        request: Request,
    ) -> Result<Reply, TransactionError> {
        let shard = self.shard(transactional_id)?;
        match tokio::time::timeout(TXN_REQUEST_WAIT, shard.request(request)).await {
            Ok(reply) => reply,
            Err(_) => Err(TxnError::CoordinatorNotAvailable.into()),
        }
    }

    /// InitProducerId with a transactional id: a producer id and epoch, fencing every
    /// older instance of the id.
    pub async fn init_producer_id(
        &self,
        init: InitProducerId,
    ) -> Result<ProducerIdAndEpoch, TransactionError> {
        let id = init.transactional_id.clone();
        match self.request(&id, Request::Init(init)).await? {
            Reply::InitProducerId(r) => Ok(r?),
            other => unreachable!("InitProducerId answered with {other:?}"),
        }
    }

    /// AddPartitionsToTxn for one transaction.
    pub async fn add_partitions(&self, add: AddPartitions) -> Result<(), TransactionError> {
        let id = add.transactional_id.clone();
        let verify = add.verify_only;
        match self.request(&id, Request::Add(add)).await? {
            Reply::AddPartitions(r) if !verify => Ok(r?),
            Reply::VerifyPartitions(r) if verify => r.map(|_| ()).map_err(Into::into),
            other => unreachable!("AddPartitionsToTxn answered with {other:?}"),
        }
    }

    /// KIP-890's produce-time check: per partition, whether it is in the transaction.
    pub async fn verify_partitions(
        &self,
        mut add: AddPartitions,
    ) -> Result<PartitionVerdicts, TransactionError> {
        add.verify_only = true;
        let id = add.transactional_id.clone();
        match self.request(&id, Request::Add(add)).await? {
            Reply::VerifyPartitions(r) => Ok(r?),
            other => unreachable!("a verify-only AddPartitionsToTxn answered with {other:?}"),
        }
    }

    /// AddOffsetsToTxn: adds the `__consumer_offsets` partition of `group_id`.
    pub async fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group_id: &str,
    ) -> Result<(), TransactionError> {
        let offsets = self.registry.topic(OFFSETS_TOPIC)?.partition_count();
        let group_partition = partition_for_group(group_id, offsets) as i32;
        let request = Request::AddOffsets {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch,
            group_partition,
        };
        match self.request(transactional_id, request).await? {
            Reply::AddOffsets(r) => Ok(r?),
            other => unreachable!("AddOffsetsToTxn answered with {other:?}"),
        }
    }

    /// EndTxn: commit or abort; answers once the prepared state is replicated (the
    /// markers follow). The producer id and epoch to use next.
    pub async fn end_txn(&self, end: EndTxn) -> Result<ProducerIdAndEpoch, TransactionError> {
        let id = end.transactional_id.clone();
        match self.request(&id, Request::End(end)).await? {
            Reply::EndTxn(r) => Ok(r?),
            other => unreachable!("EndTxn answered with {other:?}"),
        }
    }

    /// DescribeTransactions for one id.
    pub async fn describe(
        &self,
        transactional_id: &str,
    ) -> Result<TxnDescription, TransactionError> {
        let shard = self.shard(transactional_id)?;
        shard.describe(transactional_id.to_string()).await
    }

    /// ListTransactions over every shard this broker serves: the matching ids, and the
    /// state names in the filter that are not states.
    pub async fn list(
        &self,
        filter: &ListFilter,
    ) -> Result<(Vec<TxnListing>, Vec<String>), TransactionError> {
        let mut all = Vec::new();
        let mut unknown = Vec::new();
        for shard in self.slots.loaded() {
            let (rows, bad) = shard.list(filter.clone()).await?;
            all.extend(rows);
            unknown = bad;
        }
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok((all, unknown))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::partition::{Durability, PartitionState};
    use crate::storage::{ControlType, TxnMarker};
    use crate::txn::{
        MarkerFuture, MarkerOutcome, MarkerRequest, TopicPartition, TxnResult, TxnState,
    };

    /// Writes markers on this registry's own partitions (the broker's core does the same
    /// through `write_txn_markers`).
    #[derive(Debug)]
    struct LocalMarkers(Arc<TopicRegistry>);

    impl MarkerWriter for LocalMarkers {
        fn write(&self, request: MarkerRequest) -> MarkerFuture<'_> {
            Box::pin(async move {
                let marker = TxnMarker {
                    producer_id: request.producer_id,
                    producer_epoch: request.producer_epoch,
                    control: match request.result {
                        TxnResult::Commit => ControlType::Commit,
                        TxnResult::Abort => ControlType::Abort,
                    },
                    coordinator_epoch: request.coordinator_epoch,
                };
                let mut outcomes = Vec::new();
                for tp in request.partitions {
                    let written = async {
                        self.0
                            .topic(&tp.topic)?
                            .partition(tp.partition as u32)?
                            .append_marker(marker, Durability::Durable)
                            .await
                    }
                    .await;
                    let outcome = match written {
                        Ok(_) => MarkerOutcome::Written,
                        Err(_) => MarkerOutcome::Retriable,
                    };
                    outcomes.push((tp, outcome));
                }
                outcomes
            })
        }
    }

    fn config() -> TransactionConfig {
        TransactionConfig {
            state_partitions: 2,
            ..TransactionConfig::default()
        }
    }

    async fn open(registry: &Arc<TopicRegistry>) -> Arc<TransactionCoordinator> {
        let (_stop, stopping) = watch::channel(false);
        let writer = Arc::new(LocalMarkers(registry.clone()));
        TransactionCoordinator::open(registry.clone(), config(), Some(writer), stopping)
            .await
            .unwrap()
    }

    /// Drops the coordinator and closes the registry once its tasks (the shards', the
    /// leadership follower's) have let go of it, so the directory can be opened again.
    async fn close(registry: Arc<TopicRegistry>, c: Arc<TransactionCoordinator>) {
        drop(c);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&registry) > 1 {
            assert!(
                Instant::now() < deadline,
                "someone still holds the registry"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        registry.close().await.unwrap();
    }

    /// Waits (at most 10 s) until `id` is in `state`.
    async fn wait_state(c: &TransactionCoordinator, id: &str, state: TxnState) -> TxnDescription {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = c.describe(id).await.unwrap();
            if d.state == state {
                return d;
            }
            assert!(Instant::now() < deadline, "{id} stuck in {:?}", d.state);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A transaction commits through the shell (its state durable in
    /// `__transaction_state`, its marker in the data partition), and a coordinator that
    /// loads the partition again after a restart knows the id, and fences its producer.
    #[tokio::test]
    async fn a_committed_transaction_survives_a_restart_and_the_next_init_fences() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TopicRegistry::open(dir.path(), 0).await.unwrap();
        registry
            .create_topic("orders", 1, 1, BTreeMap::new())
            .await
            .unwrap();
        let c = open(&registry).await;
        let init = |timeout_ms| InitProducerId {
            transactional_id: "tx".into(),
            timeout_ms,
            expected: None,
        };
        let first = c.init_producer_id(init(60_000)).await.unwrap();
        assert_eq!(first.epoch, 0);
        let tp = TopicPartition::new("orders", 0);
        c.add_partitions(AddPartitions {
            transactional_id: "tx".into(),
            producer_id: first.producer_id,
            producer_epoch: first.epoch,
            partitions: vec![tp.clone()],
            verify_only: false,
        })
        .await
        .unwrap();
        let verdicts = c
            .verify_partitions(AddPartitions {
                transactional_id: "tx".into(),
                producer_id: first.producer_id,
                producer_epoch: first.epoch,
                partitions: vec![tp.clone(), TopicPartition::new("orders", 7)],
                verify_only: true,
            })
            .await
            .unwrap();
        assert_eq!(
            verdicts,
            vec![
                (tp.clone(), Ok(())),
                (
                    TopicPartition::new("orders", 7),
                    Err(TxnError::TransactionAbortable)
                )
            ]
        );
        let ongoing = c.describe("tx").await.unwrap();
        assert_eq!(ongoing.state, TxnState::Ongoing);
        assert_eq!(ongoing.partitions, vec![tp.clone()]);
        c.end_txn(EndTxn {
            transactional_id: "tx".into(),
            producer_id: first.producer_id,
            producer_epoch: first.epoch,
            result: TxnResult::Commit,
            version: crate::txn::TxnVersion::TV0,
        })
        .await
        .unwrap();
        wait_state(&c, "tx", TxnState::CompleteCommit).await;
        let data = registry.topic("orders").unwrap().partition(0).unwrap();
        assert_eq!(
            data.offsets().await.unwrap().log_end_offset,
            1,
            "the commit marker is in the partition"
        );
        let (listed, _) = c.list(&ListFilter::default()).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].transactional_id, "tx");

        close(registry, c).await;
        let registry = TopicRegistry::open(dir.path(), 0).await.unwrap();
        let c = open(&registry).await;
        let loaded = c.describe("tx").await.unwrap();
        assert_eq!(loaded.state, TxnState::CompleteCommit);
        assert_eq!(loaded.producer_id, first.producer_id);
        let second = c.init_producer_id(init(60_000)).await.unwrap();
        assert_eq!(second.producer_id, first.producer_id);
        assert_eq!(second.epoch, 1, "the next instance fences the first");
        let zombie = c
            .add_partitions(AddPartitions {
                transactional_id: "tx".into(),
                producer_id: first.producer_id,
                producer_epoch: first.epoch,
                partitions: vec![tp],
                verify_only: false,
            })
            .await;
        assert!(
            matches!(
                zombie,
                Err(TransactionError::Refused(TxnError::ProducerFenced))
            ),
            "{zombie:?}"
        );
        close(registry, c).await;
    }

    /// A coordinator whose `__transaction_state` partition moves to another broker
    /// answers NOT_COORDINATOR naming it.
    #[tokio::test]
    async fn a_coordinator_that_loses_its_partition_answers_not_coordinator() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TopicRegistry::open(dir.path(), 0).await.unwrap();
        let c = open(&registry).await;
        let index = partition_for_group("tx", c.slots.len());
        let state = registry
            .topic(TXN_STATE_TOPIC)
            .unwrap()
            .partition(index)
            .unwrap();
        state
            .apply_state(&PartitionState {
                leader: 1,
                leader_epoch: state.state().leader_epoch + 1,
                replicas: vec![0, 1],
                isr: vec![1],
            })
            .await;
        c.follow_leadership().await.unwrap();
        let answer = c
            .init_producer_id(InitProducerId {
                transactional_id: "tx".into(),
                timeout_ms: 60_000,
                expected: None,
            })
            .await;
        assert!(
            matches!(
                answer,
                Err(TransactionError::NotCoordinator { coordinator: 1, .. })
            ),
            "{answer:?}"
        );
        close(registry, c).await;
    }
}
