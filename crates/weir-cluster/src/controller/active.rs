//! The active controller ([`Controller`]): the only writer of metadata. It decides, for
//! one request at a time, which records to write and what to answer, reading the
//! committed image; its only state of its own is each broker's last heartbeat time (in
//! memory: a new active controller starts the sessions from what its voter last heard,
//! see [`Controller::activate`]).
//!
//! The driver's contract: take one request (or a tick), call [`Controller::handle`] (or
//! [`Controller::tick`]) with the image of everything committed so far, append the
//! returned records to the quorum, apply them to the image once committed, and only then
//! send the reply and take the next request. Records name offsets from
//! `image.next_offset()` on, so a request handled against an image that misses earlier
//! records would write records that do not apply. A refused request writes nothing and
//! is answered at once. If the records never commit (this node lost the quorum's
//! leadership), the driver answers NOT_CONTROLLER and drops this controller.

use std::collections::BTreeMap;
use std::fmt;

use super::image::MetadataImage;
use super::records::MetadataRecord;
use super::requests::{ControllerError, ControllerReply, ControllerRequest, Outcome};
use super::{
    alter_partition, brokers, elect_leaders, exchange_bindings, exchanges, group_configs,
    preferred, producer_ids, reassign, resign, security, tokens, topics,
};
use crate::partition::BrokerId;

/// `broker.session.timeout.ms`: a broker silent this long is fenced.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 2_000;
/// `broker.heartbeat.interval.ms`: how often brokers heartbeat. A broker's lease runs
/// a session timeout from the last heartbeat the controller answered; when the active
/// controller dies, the next answer comes from its successor, up to an interval plus a
/// failover (1.2-1.6 s: `quorum::config`) later. At 500 ms that outlasted the 2 s lease
/// about one controller death in twenty and healthy brokers stepped aside for a moment.
/// At 100 ms 300 ms are left (150 ms at 250 ms), and a voter's lease is renewed by the
/// election as well (`quorum/elections.rs`). (Two later step-asides in the controller
/// test, first put down to a late election, were a node that had itself been cut off
/// just before and had no heartbeat answered since: its lease still counted from
/// before its cut, as it must.) A heartbeat
/// is one small RPC that the controller answers from memory: ten a second per broker
/// cost it nothing measurable.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 100;
/// Copies of each partition when CreateTopic asks for the default (Kafka's
/// `default.replication.factor`).
pub const DEFAULT_REPLICATION_FACTOR: u32 = 1;
/// How often the active controller moves leaderships back to preferred replicas
/// (Kafka's `leader.imbalance.check.interval.seconds`, there 300 s).
pub const DEFAULT_PREFERRED_LEADER_CHECK_MS: u64 = 30_000;
/// Ids drawn from the [`TopicIdSource`] before giving up on one that is not in use.
pub const MAX_TOPIC_ID_DRAWS: usize = 16;

/// The controller's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// A broker whose last heartbeat is older than this is fenced.
    pub session_timeout_ms: u64,
    /// How often brokers heartbeat (brokers read it; the controller only checks that
    /// several heartbeats fit in a session).
    pub heartbeat_interval_ms: u64,
    /// Replication factor of a CreateTopic that asks for 0.
    pub default_replication_factor: u32,
    /// How often leaderships move back to their preferred replicas (`preferred.rs`);
    /// 0 turns that off.
    pub preferred_leader_check_ms: u64,
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig {
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            default_replication_factor: DEFAULT_REPLICATION_FACTOR,
            preferred_leader_check_ms: DEFAULT_PREFERRED_LEADER_CHECK_MS,
        }
    }
}

impl ControllerConfig {
    /// Refuses settings under which live brokers would be fenced: a heartbeat interval
    /// of 0 or not below the session timeout, and a default replication factor of 0.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.session_timeout_ms
        {
            return Err(format!(
                "broker.heartbeat.interval.ms ({}) must be above 0 and below broker.session.timeout.ms ({})",
                self.heartbeat_interval_ms, self.session_timeout_ms
            ));
        }
        if self.default_replication_factor == 0 {
            return Err("default replication factor must be at least 1".into());
        }
        Ok(())
    }
}

/// Where new topic ids come from: random UUIDs in a broker ([`RandomTopicIds`]), a
/// counter in tests and in the simulation, so the controller itself stays deterministic.
/// A closure returning `String` is one.
pub trait TopicIdSource: Send {
    fn next_topic_id(&mut self) -> String;
}

impl<F: FnMut() -> String + Send> TopicIdSource for F {
    fn next_topic_id(&mut self) -> String {
        self()
    }
}

/// Random (v4) UUIDs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomTopicIds;

impl TopicIdSource for RandomTopicIds {
    fn next_topic_id(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// The active controller's logic: pure (no I/O, clock or randomness of its own; time is
/// passed in, topic ids come from the injected source).
pub struct Controller {
    pub(super) config: ControllerConfig,
    /// Last heartbeat (or registration) time of each broker, in the caller's clock.
    pub(super) sessions: BTreeMap<BrokerId, u64>,
    pub(super) topic_ids: Box<dyn TopicIdSource>,
    /// When the last preferred-leader check ran (`None`: not since activation).
    preferred_checked_ms: Option<u64>,
    /// The metadata level each broker said its release reads, in its registration or
    /// heartbeats since this controller became active (`gate`).
    pub(super) levels: BTreeMap<BrokerId, u16>,
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("config", &self.config)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller with no sessions; call [`activate`](Self::activate) when it becomes
    /// the active one.
    pub fn new(config: ControllerConfig, topic_ids: impl TopicIdSource + 'static) -> Controller {
        Controller {
            config,
            sessions: BTreeMap::new(),
            topic_ids: Box::new(topic_ids),
            preferred_checked_ms: None,
            levels: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// This node became the active controller. It cannot know the heartbeats its
    /// predecessor received, so each unfenced broker's session counts from
    /// `last_heard[node]`, the last time this voter heard from that node over the quorum
    /// (a Raft request it sent as the previous leader or a candidate), or from `now_ms`
    /// for a node not heard from; and every broker gets at least one heartbeat interval
    /// from now to reach this controller. So the node of a controller that died is
    /// fenced one session after its last Raft request, not one session after the
    /// election (`docs/replication.md` § Session expiry).
    pub fn activate(
        &mut self,
        image: &MetadataImage,
        now_ms: u64,
        last_heard: &BTreeMap<BrokerId, u64>,
    ) {
        // The earliest start that leaves a whole heartbeat interval before expiry.
        let floor = (now_ms + self.config.heartbeat_interval_ms)
            .saturating_sub(self.config.session_timeout_ms);
        self.preferred_checked_ms = None;
        self.levels.clear();
        self.sessions = image
            .brokers()
            .filter(|b| !b.fenced)
            .map(|b| {
                let start = match last_heard.get(&b.node) {
                    Some(&heard) => heard.max(floor).min(now_ms),
                    None => now_ms,
                };
                (b.node, start)
            })
            .collect();
    }

    /// Decides one request against the committed `image` (see the module docs for the
    /// contract): the records to commit, in order, and the reply to send once they are.
    /// A refused request ([`ControllerReply::Refused`]) comes with no records.
    pub fn handle(
        &mut self,
        image: &MetadataImage,
        now_ms: u64,
        request: ControllerRequest,
    ) -> (Vec<MetadataRecord>, ControllerReply) {
        match self
            .decide(image, now_ms, request)
            .and_then(|outcome| self.gate(image, outcome))
        {
            Ok(Outcome { records, reply }) => (records, reply),
            Err(e) => (Vec::new(), ControllerReply::Refused(e)),
        }
    }

    /// Refuses an outcome whose records need a metadata level above what every unfenced
    /// broker has said it reads (`MetadataRecord::level`): during a rolling upgrade a
    /// broker of the older release, a voter above all, would fail on a record type it
    /// does not know, and a voter that cannot apply a committed record stops. A broker
    /// not heard from since this controller became active counts as level 0; every live
    /// one heartbeats within an interval.
    fn gate(&self, image: &MetadataImage, outcome: Outcome) -> Result<Outcome, ControllerError> {
        let Some(needed) = outcome.records.iter().map(MetadataRecord::level).max() else {
            return Ok(outcome);
        };
        if needed == 0 {
            return Ok(outcome);
        }
        let behind: Vec<BrokerId> = image
            .brokers()
            .filter(|b| !b.fenced)
            .filter(|b| self.levels.get(&b.node).copied().unwrap_or(0) < needed)
            .map(|b| b.node)
            .collect();
        if behind.is_empty() {
            return Ok(outcome);
        }
        Err(ControllerError::MetadataLevelTooLow { needed, behind })
    }

    fn decide(
        &mut self,
        image: &MetadataImage,
        now_ms: u64,
        request: ControllerRequest,
    ) -> Result<Outcome, ControllerError> {
        let expected = match (image.cluster_id(), &request) {
            (_, ControllerRequest::CreateCluster { cluster_id }) => {
                return brokers::create_cluster(image, cluster_id);
            }
            (None, _) => return Err(ControllerError::ClusterNotCreated),
            (Some(id), _) => id,
        };
        match request {
            ControllerRequest::CreateCluster { .. } => unreachable!("answered above"),
            ControllerRequest::RegisterBroker {
                node,
                incarnation,
                endpoints,
                rack,
                cluster_id,
                metadata_level,
            } => {
                self.levels.insert(node, metadata_level);
                if cluster_id != expected {
                    return Err(ControllerError::InconsistentClusterId {
                        given: cluster_id,
                        expected: expected.to_string(),
                    });
                }
                self.register(image, now_ms, node, incarnation, endpoints, rack)
            }
            ControllerRequest::BrokerHeartbeat {
                node,
                broker_epoch,
                metadata_offset,
                want_shutdown,
                metadata_level,
            } => {
                self.levels.insert(node, metadata_level);
                self.heartbeat(
                    image,
                    now_ms,
                    (node, broker_epoch),
                    metadata_offset,
                    want_shutdown,
                )
            }
            ControllerRequest::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => self.create_topic(image, name, partitions, replication_factor, configs),
            ControllerRequest::CreatePartitions { topic, total } => {
                topics::create_partitions(image, &topic, total)
            }
            ControllerRequest::CreateTopicAssigned {
                name,
                assignments,
                configs,
            } => self.create_topic_assigned(image, name, assignments, configs),
            ControllerRequest::CreatePartitionsAssigned { topic, assignments } => {
                topics::create_partitions_assigned(image, &topic, &assignments)
            }
            ControllerRequest::DeleteTopic { name } => topics::delete_topic(image, &name),
            ControllerRequest::AlterTopicConfig { topic, key, value } => {
                topics::alter_topic_config(image, &topic, key, value)
            }
            ControllerRequest::AlterPartition {
                node,
                broker_epoch,
                topic_id,
                partition,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => alter_partition::alter_partition(
                image,
                (node, broker_epoch),
                &topic_id,
                partition,
                (leader_epoch, partition_epoch),
                &new_isr,
            ),
            ControllerRequest::ResignLeadership {
                node,
                broker_epoch,
                topic_id,
                partition,
                leader_epoch,
            } => resign::resign_leadership(
                image,
                (node, broker_epoch),
                &topic_id,
                partition,
                leader_epoch,
            ),
            ControllerRequest::ReassignPartitions {
                topic,
                moves,
                throttle_bytes_per_sec,
            } => reassign::reassign_partitions(image, &topic, &moves, throttle_bytes_per_sec),
            ControllerRequest::ElectLeaders { kind, partitions } => {
                elect_leaders::elect_leaders(image, kind, partitions.as_deref())
            }
            ControllerRequest::AllocateProducerIds { node, broker_epoch } => {
                producer_ids::allocate_block(image, node, broker_epoch)
            }
            ControllerRequest::InitProducer { name } => producer_ids::init_named(image, name),
            ControllerRequest::UpsertScramCredential { user, credential } => {
                security::upsert_credential(image, user, credential)
            }
            ControllerRequest::DeleteScramCredential { user, mechanism } => {
                security::delete_credential(image, user.clone(), mechanism)
                    .map(|outcome| tokens::revoked_with_user(image, &user, outcome))
            }
            ControllerRequest::CreateToken { token } => tokens::create_token(image, token),
            ControllerRequest::RevokeToken { id } => tokens::revoke_token(image, id),
            ControllerRequest::CreateAcls { acls } => security::create_acls(image, acls),
            ControllerRequest::DeleteAcls { filters } => security::delete_acls(image, filters),
            ControllerRequest::AlterClientQuotas { alterations } => {
                security::alter_quotas(image, alterations)
            }
            ControllerRequest::AlterBrokerConfigs {
                broker,
                changes,
                replace,
            } => security::alter_broker_configs(image, broker, changes, replace),
            ControllerRequest::AlterGroupConfigs {
                group,
                changes,
                replace,
                bounds,
            } => group_configs::alter_group_configs(image, group, changes, replace, &bounds),
            ControllerRequest::DeclareExchange { exchange } => {
                exchanges::declare_exchange(image, exchange)
            }
            ControllerRequest::DeleteExchange { name, if_unused } => {
                exchanges::delete_exchange(image, &name, if_unused)
            }
            ControllerRequest::Bind { binding } => exchanges::bind(image, binding),
            ControllerRequest::Unbind { binding } => exchanges::unbind(image, binding),
            ControllerRequest::DeclareQueue { queue } => exchanges::declare_queue(image, queue),
            ControllerRequest::BindExchange { binding } => {
                exchange_bindings::bind_exchange(image, binding)
            }
            ControllerRequest::UnbindExchange { binding } => {
                exchange_bindings::unbind_exchange(image, binding)
            }
        }
    }

    /// Renews the session of the broker on `node`, the node this controller runs on: it
    /// is alive for as long as it runs the controller, whether or not its own heartbeat
    /// gets here. Called at every tick. Without it a voter that became the active
    /// controller while its broker's heartbeat was still held up in a call to the
    /// previous controller (killed: the call waits for its connection to time out)
    /// fenced itself after one session, moving its leaderships away for nothing
    /// (`docs/replication.md` § Found, 13).
    pub fn renew_own_session(&mut self, node: BrokerId, now_ms: u64) {
        let session = self.sessions.entry(node).or_insert(now_ms);
        *session = (*session).max(now_ms);
    }

    /// Fences every unfenced broker silent for more than the session timeout, removing
    /// it from ISRs and electing new leaders where it led. Handled like a request: its
    /// records are committed and applied before the next request or tick.
    ///
    /// Every `preferred_leader_check_ms` (counted from activation) a tick that fences
    /// nobody moves leaderships back to preferred replicas instead.
    pub fn tick(&mut self, image: &MetadataImage, now_ms: u64) -> Vec<MetadataRecord> {
        let fenced = self.expire_sessions(image, now_ms);
        let interval = self.config.preferred_leader_check_ms;
        if !fenced.is_empty() || interval == 0 {
            return fenced;
        }
        let last = *self.preferred_checked_ms.get_or_insert(now_ms);
        if now_ms.saturating_sub(last) < interval {
            return fenced;
        }
        self.preferred_checked_ms = Some(now_ms);
        preferred::elect_preferred(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_hold_and_settings_that_would_fence_live_brokers_are_refused() {
        let config = ControllerConfig::default();
        assert_eq!(
            (config.session_timeout_ms, config.heartbeat_interval_ms),
            (2_000, 100)
        );
        assert_eq!(config.validate(), Ok(()));
        for (session_timeout_ms, heartbeat_interval_ms) in [(500, 500), (500, 0), (100, 200)] {
            let bad = ControllerConfig {
                session_timeout_ms,
                heartbeat_interval_ms,
                ..ControllerConfig::default()
            };
            let err = bad.validate().unwrap_err();
            assert!(err.contains("broker.session.timeout.ms"), "{err}");
        }
        let bad = ControllerConfig {
            default_replication_factor: 0,
            ..ControllerConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
