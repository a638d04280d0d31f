//! The Kafka adapter over the broker core: [`KafkaBroker`] implements [`Handler`] by
//! decoding each request with kafka-protocol, calling `weir-broker`, and encoding the
//! answer. One file per api family; errors become Kafka codes in `errors.rs` only.
//!
//! - `metadata.rs`: Metadata (brokers, leaders, ISR, offline replicas, topic ids),
//!   DescribeCluster, DescribeLogDirs, AlterReplicaLogDirs, DescribeQuorum and
//!   DescribeTopicPartitions (KIP-966, paged).
//! - `produce.rs`: Produce (batches stored as sent), InitProducerId and
//!   DescribeProducers.
//! - `fetch.rs`: Fetch (stored bytes, long polling; fetch sessions declined) and
//!   ListOffsets.
//! - `epochs.rs`: OffsetForLeaderEpoch (truncation detection after a leader change).
//! - `records.rs`: DeleteRecords.
//! - `topics.rs`: CreateTopics, DeleteTopics, CreatePartitions (both with manual replica
//!   assignments), the partition reassignment apis (AlterPartitionReassignments,
//!   ListPartitionReassignments) and ElectLeaders.
//! - `configs.rs`: DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.
//! - `groups/`: FindCoordinator (`mod.rs`), the classic group protocol (`classic.rs`:
//!   JoinGroup, SyncGroup, Heartbeat, LeaveGroup), KIP-848's ConsumerGroupHeartbeat
//!   (`consumer.rs`), OffsetCommit, OffsetFetch, OffsetDelete (`offsets.rs`), ListGroups,
//!   DescribeGroups, ConsumerGroupDescribe, DeleteGroups (`describe.rs`).
//! - `shares.rs`: share groups (KIP-932 queues): ShareGroupHeartbeat, ShareFetch and
//!   ShareAcknowledge.
//! - `share_admin.rs`: the share-group admin APIs: ShareGroupDescribe,
//!   DescribeShareGroupOffsets, AlterShareGroupOffsets, DeleteShareGroupOffsets (share
//!   groups in ListGroups and DeleteGroups go through `groups/describe.rs`).
//! - `security.rs`: ACLs and SCRAM credentials; `quotas.rs`: AlterClientQuotas and
//!   DescribeClientQuotas.
//! - `transactions.rs`: AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn,
//!   DescribeTransactions and ListTransactions (InitProducerId
//!   with a transactional id is in `produce.rs`, FindCoordinator's transaction key type
//!   in `groups/mod.rs`).
//! - `throttle.rs`: `throttle_time_ms` in every answer that has it.
//!
//! Every request the handler answers runs under the request-time quota (the core's
//! `Broker::admit_request`, `quotas::Measured`, `Broker::account_request`): it is held
//! back in [`Handler::start`], the connection's in-order phase, so a throttled
//! connection reads nothing meanwhile (Kafka mutes its channel), and its answer tells the
//! client how long in `throttle_time_ms`. ApiVersions and SASL, which the connection
//! answers itself, are exempt.

mod configs;
mod epochs;
pub(crate) mod errors;
mod fetch;
mod groups;
mod metadata;
mod produce;
mod quotas;
mod records;
mod security;
mod share_admin;
mod shares;
mod throttle;
mod topics;
mod transactions;

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;
use weir_broker::metadata::Endpoints;
use weir_broker::quotas::Measured;
use weir_broker::{Listener, Principal, RequestContext};

use crate::frame::Request;
use crate::handler::{ConnectionInfo, Handler, HandlerError, Pending, Response};
use crate::sasl::SaslAuthority;
use crate::share_sessions::ShareSessions;

pub use errors::error_code;

/// The apis and versions the adapter serves (what ApiVersions advertises). Each range is
/// one kafka-protocol decodes and answers, down to the oldest version the clients Weir is
/// tested with send (`docs/kafka-compatibility.md`).
pub const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::DescribeShareGroupOffsets, 0, 0),
    (ApiKey::AlterShareGroupOffsets, 0, 0),
    (ApiKey::DeleteShareGroupOffsets, 0, 0),
    // Last: the fuzz seeds name an api by its index here.
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::AlterPartitionReassignments, 0, 0),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterReplicaLogDirs, 1, 2),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (
        ApiKey::AddPartitionsToTxn,
        0,
        transactions::LAST_CLIENT_ADD_PARTITIONS,
    ),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (
        ApiKey::TxnOffsetCommit,
        0,
        transactions::LAST_TXN_OFFSET_COMMIT,
    ),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
];

/// The broker core as Kafka clients of one listener see it.
#[derive(Debug)]
pub struct KafkaBroker {
    core: Arc<weir_broker::Broker>,
    /// `host:port` Kafka clients are told for this broker before it is registered (a
    /// registered broker's comes from the metadata image, as every other broker's).
    advertised: String,
    /// The listener this adapter serves (`kafka`, `kafka_external`, ...): by its name
    /// it picks which of each broker's addresses clients are told.
    listener: Listener,
    /// The share sessions of this listener's share consumers.
    share_sessions: ShareSessions,
}

impl KafkaBroker {
    /// An adapter over `core` for the Kafka listener `listener` (such as
    /// [`Listener::KAFKA`], or [`Listener::KAFKA_EXTERNAL`], whose clients are told every
    /// broker's external Kafka address, its Kafka address if it has no external one),
    /// advertising `advertised` (`host:port`) for this broker.
    pub fn new(
        core: Arc<weir_broker::Broker>,
        listener: Listener,
        advertised: String,
    ) -> KafkaBroker {
        KafkaBroker {
            core,
            advertised,
            listener,
            share_sessions: ShareSessions::default(),
        }
    }

    /// The `host:port` this listener's clients are told for a broker with `endpoints`
    /// (Metadata, DescribeCluster, FindCoordinator); `None` if it serves no Kafka clients.
    fn address_of<'a>(&self, endpoints: &'a Endpoints) -> Option<&'a str> {
        weir_broker::metadata::advertised(endpoints, self.listener)
    }

    /// This broker's endpoints for a view of a cluster it has not registered with yet.
    fn this_broker(&self) -> Endpoints {
        Endpoints::default().with(self.listener.name, self.advertised.clone())
    }

    fn context(&self, connection: &ConnectionInfo, request: &Request) -> RequestContext {
        let mut ctx = RequestContext::anonymous(self.listener, Some(connection.peer))
            .with_client_id(request.client_id.as_ref().map(|c| c.to_string()));
        if let Some(name) = connection.principal() {
            ctx.principal = Principal::User(name.to_owned());
        }
        ctx
    }
}

/// SASL against the users in the cluster's metadata: the core's authentication.
impl SaslAuthority for KafkaBroker {
    fn required(&self) -> bool {
        self.core.authentication().required(self.listener)
    }

    fn start(
        &self,
        info: &ConnectionInfo,
        mechanism: &str,
    ) -> Result<weir_broker::authn::Exchange, weir_broker::BrokerError> {
        let ctx = RequestContext::anonymous(self.listener, Some(info.peer));
        self.core.authentication().start(&ctx, mechanism, info.tls)
    }

    fn step<'a>(
        &'a self,
        info: &'a ConnectionInfo,
        exchange: &'a mut weir_broker::authn::Exchange,
        message: &'a [u8],
    ) -> crate::sasl::StepFuture<'a> {
        let ctx = RequestContext::anonymous(self.listener, Some(info.peer));
        Box::pin(async move {
            self.core
                .authentication()
                .step(&ctx, exchange, message)
                .await
        })
    }

    fn certificate<'a>(
        &'a self,
        ctx: &'a RequestContext,
        principal: String,
    ) -> crate::sasl::CertificateFuture<'a> {
        Box::pin(weir_broker::listener_kit::authenticate_certificate(
            &self.core, ctx, principal,
        ))
    }
}

/// An assignment by topic name as Kafka's heartbeats answer it: by topic id (a topic
/// deleted meanwhile is left out), partitions as `i32`.
fn assignment_by_id(
    broker: &KafkaBroker,
    topics: std::collections::BTreeMap<String, Vec<u32>>,
) -> Vec<(uuid::Uuid, Vec<i32>)> {
    topics
        .into_iter()
        .filter_map(|(topic, parts)| {
            let id = weir_broker::metadata::topic_id(&broker.core, &topic)?
                .parse()
                .ok()?;
            Some((id, parts.into_iter().map(|p| p as i32).collect()))
        })
        .collect()
}

/// `host:port` split as Kafka's answers carry it (`weir_broker::metadata::split_host_port`).
fn host_port(address: &str) -> Option<(&str, i32)> {
    weir_broker::metadata::split_host_port(address).map(|(host, port)| (host, port.into()))
}

impl Handler for KafkaBroker {
    fn supported_apis(&self) -> &[(ApiKey, i16, i16)] {
        SERVED
    }

    /// Produces and fetches pipeline, as librdkafka sends them (a produce's appends are
    /// queued in order by `start`; a long-polling fetch does not hold up the produces
    /// behind it); every other request runs alone, as Kafka runs each, so a commit is
    /// seen by the OffsetFetch after it and a topic created is there for the next
    /// request.
    fn pipelined(&self, api_key: ApiKey) -> bool {
        matches!(api_key, ApiKey::Produce | ApiKey::Fetch)
    }

    fn is_cut_off(&self) -> bool {
        self.core.is_cut_off()
    }

    fn sasl(&self) -> Option<&dyn SaslAuthority> {
        Some(self)
    }

    async fn until_cut_off(&self) {
        self.core.until_cut_off().await
    }

    async fn handle(
        &self,
        connection: &ConnectionInfo,
        request: Request,
    ) -> Result<Response, HandlerError> {
        let ctx = self.context(connection, &request);
        let timer = self.core.metrics().rpc_timer(rpc_name(request.api_key));
        let response = self
            .core
            .run_request(&ctx, self.dispatch(connection, &ctx, &request))
            .await;
        drop(timer);
        response
    }

    async fn start<'a>(&'a self, connection: &'a ConnectionInfo, request: Request) -> Pending<'a> {
        let ctx = self.context(connection, &request);
        let timer = self.core.metrics().rpc_timer(rpc_name(request.api_key));
        // In request order: while the client is over its request-time quota, the
        // connection reads nothing more.
        self.core.admit_request(&ctx).await;
        if request.api_key != ApiKey::Produce {
            return Box::pin(async move {
                let answer = Measured::new(&ctx, self.dispatch(connection, &ctx, &request)).await;
                self.core.account_request(&ctx);
                drop(timer);
                answer
            });
        }
        // A produce is queued on its partitions here, in request order; its answer
        // completes in flight.
        match Measured::new(&ctx, produce::start(self, &ctx, &request)).await {
            Ok(pending) => Box::pin(async move {
                let answer = Measured::new(&ctx, pending).await;
                self.core.account_request(&ctx);
                drop(timer);
                answer
            }),
            Err(e) => {
                self.core.account_request(&ctx);
                Box::pin(std::future::ready(Err(e)))
            }
        }
    }
}

impl KafkaBroker {
    /// Answers one request with the handler of its api.
    async fn dispatch(
        &self,
        connection: &ConnectionInfo,
        ctx: &RequestContext,
        request: &Request,
    ) -> Result<Response, HandlerError> {
        match request.api_key {
            ApiKey::Metadata => metadata::metadata(self, ctx, request).await,
            ApiKey::Fetch => fetch::fetch(self, ctx, request, connection.tls).await,
            ApiKey::ListOffsets => fetch::list_offsets(self, ctx, request).await,
            ApiKey::InitProducerId => produce::init_producer_id(self, ctx, request).await,
            ApiKey::CreateTopics => topics::create_topics(self, ctx, request).await,
            ApiKey::DeleteTopics => topics::delete_topics(self, ctx, request).await,
            ApiKey::FindCoordinator => groups::find_coordinator(self, ctx, request).await,
            ApiKey::JoinGroup => groups::join_group(self, ctx, request).await,
            ApiKey::SyncGroup => groups::sync_group(self, ctx, request).await,
            ApiKey::Heartbeat => groups::heartbeat(self, ctx, request).await,
            ApiKey::LeaveGroup => groups::leave_group(self, ctx, request).await,
            ApiKey::OffsetCommit => groups::offset_commit(self, ctx, request).await,
            ApiKey::OffsetFetch => groups::offset_fetch(self, ctx, request).await,
            ApiKey::OffsetDelete => groups::offset_delete(self, ctx, request).await,
            ApiKey::DescribeLogDirs => metadata::describe_log_dirs(self, ctx, request).await,
            ApiKey::DescribeQuorum => metadata::describe_quorum(self, ctx, request).await,
            ApiKey::AlterReplicaLogDirs => {
                metadata::alter_replica_log_dirs(self, ctx, request).await
            }
            ApiKey::DescribeTopicPartitions => {
                metadata::describe_topic_partitions(self, ctx, request).await
            }
            ApiKey::ElectLeaders => topics::elect_leaders(self, ctx, request).await,
            ApiKey::ConsumerGroupDescribe => {
                groups::consumer_group_describe(self, ctx, request).await
            }
            ApiKey::AlterPartitionReassignments => {
                topics::alter_partition_reassignments(self, ctx, request).await
            }
            ApiKey::ListPartitionReassignments => {
                topics::list_partition_reassignments(self, ctx, request).await
            }
            ApiKey::ListGroups => groups::list_groups(self, ctx, request).await,
            ApiKey::DescribeGroups => groups::describe_groups(self, ctx, request).await,
            ApiKey::DeleteGroups => groups::delete_groups(self, ctx, request).await,
            ApiKey::ConsumerGroupHeartbeat => {
                groups::consumer_group_heartbeat(self, ctx, request).await
            }
            ApiKey::CreatePartitions => topics::create_partitions(self, ctx, request).await,
            ApiKey::DeleteRecords => records::delete_records(self, ctx, request).await,
            ApiKey::OffsetForLeaderEpoch => {
                epochs::offset_for_leader_epoch(self, ctx, request).await
            }
            ApiKey::DescribeConfigs => configs::describe_configs(self, ctx, request).await,
            ApiKey::AlterConfigs => configs::alter_configs(self, ctx, request).await,
            ApiKey::IncrementalAlterConfigs => {
                configs::incremental_alter_configs(self, ctx, request).await
            }
            ApiKey::DescribeCluster => metadata::describe_cluster(self, ctx, request).await,
            ApiKey::DescribeProducers => produce::describe_producers(self, ctx, request).await,
            ApiKey::ShareGroupHeartbeat => shares::share_group_heartbeat(self, ctx, request).await,
            ApiKey::ShareFetch => shares::share_fetch(self, ctx, request).await,
            ApiKey::ShareAcknowledge => shares::share_acknowledge(self, ctx, request).await,
            ApiKey::ShareGroupDescribe => {
                share_admin::share_group_describe(self, ctx, request).await
            }
            ApiKey::DescribeShareGroupOffsets => {
                share_admin::describe_share_group_offsets(self, ctx, request).await
            }
            ApiKey::AlterShareGroupOffsets => {
                share_admin::alter_share_group_offsets(self, ctx, request).await
            }
            ApiKey::DeleteShareGroupOffsets => {
                share_admin::delete_share_group_offsets(self, ctx, request).await
            }
            ApiKey::CreateAcls => security::create_acls(self, ctx, request).await,
            ApiKey::DescribeAcls => security::describe_acls(self, ctx, request).await,
            ApiKey::DeleteAcls => security::delete_acls(self, ctx, request).await,
            ApiKey::AlterUserScramCredentials => {
                security::alter_user_scram_credentials(self, ctx, request).await
            }
            ApiKey::DescribeUserScramCredentials => {
                security::describe_user_scram_credentials(self, ctx, request).await
            }
            ApiKey::DescribeClientQuotas => {
                quotas::describe_client_quotas(self, ctx, request).await
            }
            ApiKey::AlterClientQuotas => quotas::alter_client_quotas(self, ctx, request).await,
            ApiKey::AddPartitionsToTxn => {
                transactions::add_partitions_to_txn(self, ctx, request).await
            }
            ApiKey::AddOffsetsToTxn => transactions::add_offsets_to_txn(self, ctx, request).await,
            ApiKey::TxnOffsetCommit => transactions::txn_offset_commit(self, ctx, request).await,
            ApiKey::EndTxn => transactions::end_txn(self, ctx, request).await,
            ApiKey::DescribeTransactions => {
                transactions::describe_transactions(self, ctx, request).await
            }
            ApiKey::ListTransactions => transactions::list_transactions(self, ctx, request).await,
            ApiKey::Produce => match produce::start(self, ctx, request).await {
                Ok(pending) => pending.await,
                Err(e) => Err(e),
            },
            other => Err(HandlerError::Broker {
                source: format!("{other:?} is in the served table but has no handler").into(),
            }),
        }
    }
}

/// The name the broker's latency metrics give a Kafka api.
fn rpc_name(api_key: ApiKey) -> &'static str {
    match api_key {
        ApiKey::Produce => "kafka.Produce",
        ApiKey::Fetch => "kafka.Fetch",
        ApiKey::ListOffsets => "kafka.ListOffsets",
        ApiKey::Metadata => "kafka.Metadata",
        ApiKey::InitProducerId => "kafka.InitProducerId",
        ApiKey::CreateTopics => "kafka.CreateTopics",
        ApiKey::DeleteTopics => "kafka.DeleteTopics",
        ApiKey::FindCoordinator => "kafka.FindCoordinator",
        ApiKey::JoinGroup => "kafka.JoinGroup",
        ApiKey::SyncGroup => "kafka.SyncGroup",
        ApiKey::Heartbeat => "kafka.Heartbeat",
        ApiKey::LeaveGroup => "kafka.LeaveGroup",
        ApiKey::OffsetCommit => "kafka.OffsetCommit",
        ApiKey::OffsetFetch => "kafka.OffsetFetch",
        ApiKey::ListGroups => "kafka.ListGroups",
        ApiKey::DescribeGroups => "kafka.DescribeGroups",
        ApiKey::DeleteGroups => "kafka.DeleteGroups",
        ApiKey::ConsumerGroupHeartbeat => "kafka.ConsumerGroupHeartbeat",
        ApiKey::CreatePartitions => "kafka.CreatePartitions",
        ApiKey::DeleteRecords => "kafka.DeleteRecords",
        ApiKey::OffsetForLeaderEpoch => "kafka.OffsetForLeaderEpoch",
        ApiKey::DescribeConfigs => "kafka.DescribeConfigs",
        ApiKey::AlterConfigs => "kafka.AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "kafka.IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "kafka.DescribeCluster",
        ApiKey::DescribeProducers => "kafka.DescribeProducers",
        ApiKey::ShareGroupHeartbeat => "kafka.ShareGroupHeartbeat",
        ApiKey::ShareFetch => "kafka.ShareFetch",
        ApiKey::ShareAcknowledge => "kafka.ShareAcknowledge",
        ApiKey::ShareGroupDescribe => "kafka.ShareGroupDescribe",
        ApiKey::DescribeShareGroupOffsets => "kafka.DescribeShareGroupOffsets",
        ApiKey::AlterShareGroupOffsets => "kafka.AlterShareGroupOffsets",
        ApiKey::DeleteShareGroupOffsets => "kafka.DeleteShareGroupOffsets",
        ApiKey::DescribeClientQuotas => "kafka.DescribeClientQuotas",
        ApiKey::AlterClientQuotas => "kafka.AlterClientQuotas",
        ApiKey::OffsetDelete => "kafka.OffsetDelete",
        ApiKey::DescribeLogDirs => "kafka.DescribeLogDirs",
        ApiKey::DescribeQuorum => "kafka.DescribeQuorum",
        ApiKey::AlterReplicaLogDirs => "kafka.AlterReplicaLogDirs",
        ApiKey::DescribeTopicPartitions => "kafka.DescribeTopicPartitions",
        ApiKey::AddPartitionsToTxn => "kafka.AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "kafka.AddOffsetsToTxn",
        ApiKey::TxnOffsetCommit => "kafka.TxnOffsetCommit",
        ApiKey::EndTxn => "kafka.EndTxn",
        ApiKey::DescribeTransactions => "kafka.DescribeTransactions",
        ApiKey::ListTransactions => "kafka.ListTransactions",
        ApiKey::ElectLeaders => "kafka.ElectLeaders",
        ApiKey::ConsumerGroupDescribe => "kafka.ConsumerGroupDescribe",
        ApiKey::AlterPartitionReassignments => "kafka.AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "kafka.ListPartitionReassignments",
        _ => "kafka.Other",
    }
}

/// The core's per-partition answers laid back onto a request's partition indexes, in
/// request order. The core was asked for the non-negative indexes only (a negative one
/// cannot name a partition: it is answered here, as INVALID_REQUEST); a whole-request
/// error answers every partition.
fn per_partition<T>(
    indexes: impl IntoIterator<Item = i32>,
    answers: Result<Vec<Result<T, weir_broker::BrokerError>>, weir_broker::BrokerError>,
) -> Vec<(i32, Result<T, weir_broker::BrokerError>)> {
    let mut answers = answers.map(Vec::into_iter);
    indexes
        .into_iter()
        .map(|index| {
            let outcome = match &mut answers {
                Ok(_) if index < 0 => Err(weir_broker::BrokerError::invalid(
                    "a negative partition index",
                )),
                Ok(answers) => answers.next().expect("one answer per partition asked"),
                Err(e) => Err(e.clone()),
            };
            (index, outcome)
        })
        .collect()
}

/// `message` encoded at the request's version, with the time quotas held the request
/// back in its `throttle_time_ms`.
fn answer<M: kafka_protocol::protocol::Encodable + throttle::Throttled>(
    ctx: &RequestContext,
    request: &Request,
    mut message: M,
) -> Result<Response, HandlerError> {
    message.throttle(request.api_version, ctx.throttle_ms());
    Response::encode(&message, request.api_version)
}
