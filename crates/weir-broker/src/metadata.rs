//! Metadata: what the cluster looks like to a client (brokers and their endpoints, the
//! active controller, topics with their partitions' leaders, replicas and ISR), read from
//! this broker's copy of the metadata image. Each adapter picks the endpoint its clients
//! use by the name of the listener they came in on ([`advertised`]).

use std::sync::Arc;
use weir_cluster::security::{Operation, ResourceType};

pub use weir_cluster::controller::records::{Endpoints, listener_names};
use weir_cluster::is_internal;

use crate::{Broker, BrokerError, Listener, Reason, RequestContext, topics};

/// One broker as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerView {
    pub node_id: i32,
    pub endpoints: Endpoints,
    pub rack: Option<String>,
    /// Fenced (not heartbeating) or shutting down: leads nothing.
    pub fenced: bool,
    /// One of the controller quorum's voters.
    pub voter: bool,
}

/// One partition as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub partition: u32,
    /// -1: no leader right now.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas on brokers that are fenced or not registered.
    pub offline: Vec<i32>,
}

/// One topic as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub name: String,
    /// A UUID in text form.
    pub topic_id: String,
    pub internal: bool,
    pub partitions: Vec<PartitionView>,
}

/// A topic a metadata request named, or why it cannot be shown.
#[derive(Debug, Clone)]
pub struct TopicLookup {
    pub name: String,
    pub outcome: Result<TopicView, BrokerError>,
}

/// The cluster as clients see it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub cluster_id: String,
    /// The active controller's node id; -1 when none is known.
    pub controller_id: i32,
    pub brokers: Vec<BrokerView>,
}

/// Of a broker's endpoints, the address clients of `listener` are told: the broker's
/// address for that listener's name, else for its protocol's default listener (an
/// external listener's clients are told a broker's ordinary address of the same protocol
/// where it has no external one; Kafka's named listeners, reduced to what a container
/// deployment needs). `None`: the broker does not serve that protocol.
pub fn advertised(endpoints: &Endpoints, listener: Listener) -> Option<&str> {
    endpoints
        .get(listener.name)
        .or_else(|| endpoints.get(listener.protocol.default_listener))
}

/// `host:port` taken apart for an answer: the host (a bracketed IPv6 host without its
/// brackets) and the port; `None` if it is not one. Advertised addresses were checked
/// when the broker was configured; every adapter that hands one out splits it here.
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port.parse().ok()?))
}

/// The brokers and the controller. A broker not yet registered sees itself only, with
/// `this_broker` as its endpoints.
pub fn cluster(broker: &Broker, _ctx: &RequestContext, this_broker: &Endpoints) -> ClusterView {
    let cluster = broker.registry().cluster();
    let image = cluster.image();
    let voters: Vec<i32> = cluster
        .settings()
        .voters
        .iter()
        .map(|(id, _)| *id)
        .collect();
    let mut brokers: Vec<BrokerView> = image
        .brokers()
        .map(|b| BrokerView {
            node_id: b.node,
            endpoints: b.endpoints.clone(),
            rack: b.rack.clone(),
            fenced: b.fenced || b.shutting_down,
            voter: voters.contains(&b.node),
        })
        .collect();
    if brokers.is_empty() {
        brokers.push(BrokerView {
            node_id: broker.node_id(),
            endpoints: this_broker.clone(),
            rack: None,
            fenced: true,
            voter: cluster.is_voter(),
        });
    }
    ClusterView {
        cluster_id: broker.registry().cluster_id(),
        controller_id: cluster.controller().unwrap_or(-1),
        brokers,
    }
}

/// Refuses a metadata request (CONTROLLER_UNAVAILABLE, retriable) while this broker's
/// controller session has lapsed: cut off from the controller quorum, its metadata may be
/// stale and name it the leader of partitions that have moved, and its own leaders have
/// stepped aside (weir-cluster's lifecycle.rs). A client that asks it is sent to another
/// broker at once instead of coming back here for as long as the cut lasts.
pub fn check_current(broker: &Broker) -> Result<(), BrokerError> {
    if broker.is_cut_off() {
        return Err(BrokerError::new(
            Reason::ControllerUnavailable,
            format!(
                "broker {} cannot reach the controller quorum, so its metadata may be stale: \
                 ask another broker",
                broker.node_id()
            ),
        ));
    }
    Ok(())
}

/// The topics named (`None`: every topic the principal may describe, internal ones
/// included only if asked), each created on first use if the broker does that and
/// `allow_create` (Kafka's Metadata request says whether it may). A named topic the
/// principal may not describe is TOPIC_AUTHORIZATION_FAILED, whether it exists or not.
pub async fn topics(
    broker: &Broker,
    ctx: &RequestContext,
    names: Option<&[String]>,
    allow_create: bool,
    include_internal: bool,
) -> Vec<TopicLookup> {
    let Some(names) = names else {
        let image = broker.registry().cluster().image();
        let mut all: Vec<TopicLookup> = image
            .topics()
            .filter(|t| include_internal || !is_internal(&t.name))
            .filter(|t| broker.may(ctx, Operation::Describe, ResourceType::Topic, &t.name))
            .map(|t| TopicLookup {
                name: t.name.clone(),
                outcome: Ok(view(broker, &t.name).expect("the topic is in the image")),
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        return all;
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let outcome = match broker.authorize_topic(ctx, Operation::Describe, name) {
            Err(e) => Err(e),
            Ok(()) if allow_create => topics::topic_or_create(broker, ctx, name).await.map(|_| ()),
            Ok(()) => broker.topic(ctx, name).map(|_| ()),
        };
        out.push(TopicLookup {
            name: name.clone(),
            outcome: outcome.and_then(|()| {
                view(broker, name).ok_or_else(|| {
                    BrokerError::from(weir_cluster::ClusterError::UnknownTopic(name.clone()))
                })
            }),
        });
    }
    out
}

/// `name` as the metadata image has it.
fn view(broker: &Broker, name: &str) -> Option<TopicView> {
    let cluster = broker.registry().cluster();
    let image: Arc<_> = cluster.image();
    let topic = image.topic(name)?;
    let live = |node: i32| image.broker(node).is_some_and(|b| !b.fenced);
    // A broker whose controller session lapsed has stepped aside from its leaderships
    // (weir-cluster's lifecycle.rs): it names no leader for them, so a client asks again
    // (elsewhere) rather than come back to it.
    let me = broker.node_id();
    let stepped_aside = broker.is_cut_off();
    let leader = |leader: i32| match stepped_aside && leader == me {
        true => -1,
        false => leader,
    };
    // A single node that has not registered yet has no brokers in its image: its own
    // replicas are not offline.
    let registered = image.brokers().next().is_some();
    Some(TopicView {
        name: topic.name.clone(),
        topic_id: topic.topic_id.clone(),
        internal: is_internal(&topic.name),
        partitions: topic
            .partitions
            .iter()
            .enumerate()
            .map(|(index, p)| PartitionView {
                partition: index as u32,
                leader: leader(p.leader),
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                offline: p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|&r| registered && !live(r))
                    .collect(),
            })
            .collect(),
    })
}

/// The name of the topic with id `topic_id` (a UUID in text form), if there is one.
pub fn topic_name(broker: &Broker, topic_id: &str) -> Option<String> {
    broker
        .registry()
        .cluster()
        .image()
        .topic_by_id(topic_id)
        .map(|t| t.name.clone())
}

/// The id (a UUID in text form) of the topic named `name`, if there is one.
pub fn topic_id(broker: &Broker, name: &str) -> Option<String> {
    broker
        .registry()
        .cluster()
        .image()
        .topic(name)
        .map(|t| t.topic_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_listeners_name_external_addresses_where_brokers_have_them() {
        let mut endpoints =
            Endpoints::new("weir-1:9292", "weir-1:9293").with("kafka", "weir-1:9092");
        assert_eq!(advertised(&endpoints, Listener::GRPC), Some("weir-1:9292"));
        assert_eq!(
            advertised(&endpoints, Listener::GRPC_EXTERNAL),
            Some("weir-1:9292")
        );
        assert_eq!(advertised(&endpoints, Listener::KAFKA), Some("weir-1:9092"));
        assert_eq!(
            advertised(&endpoints, Listener::KAFKA_EXTERNAL),
            Some("weir-1:9092")
        );
        assert_eq!(advertised(&endpoints, Listener::HTTP), Some("weir-1:9292"));
        assert_eq!(
            advertised(&endpoints, Listener::INTERNAL),
            Some("weir-1:9292")
        );
        endpoints.insert("external", "127.0.0.1:19292");
        endpoints.insert("kafka_external", "127.0.0.1:19092");
        assert_eq!(
            advertised(&endpoints, Listener::GRPC_EXTERNAL),
            Some("127.0.0.1:19292")
        );
        assert_eq!(advertised(&endpoints, Listener::KAFKA), Some("weir-1:9092"));
        assert_eq!(
            advertised(&endpoints, Listener::KAFKA_EXTERNAL),
            Some("127.0.0.1:19092")
        );
        endpoints.remove("kafka");
        endpoints.remove("kafka_external");
        assert_eq!(advertised(&endpoints, Listener::KAFKA), None);
        assert_eq!(advertised(&endpoints, Listener::KAFKA_EXTERNAL), None);

        // A protocol the core has never heard of is picked by its listener's name alike.
        let amqp = Listener {
            name: "amqp",
            protocol: crate::Protocol {
                name: "amqp",
                default_listener: "amqp",
            },
        };
        assert_eq!(advertised(&endpoints, amqp), None);
        endpoints.insert("amqp", "weir-1:5672");
        assert_eq!(advertised(&endpoints, amqp), Some("weir-1:5672"));
    }
}

/// One voter of the metadata quorum as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterView {
    pub node_id: i32,
    /// Where the quorum reaches it (its internal address, `--controller-voters`).
    pub address: String,
    /// The Raft index after the last entry the leader knows it holds (0: none yet).
    pub log_end_offset: i64,
    /// When it last accepted the leader's leadership, in milliseconds since the Unix
    /// epoch (the leader itself: now); `None` if it has not since this leader started.
    pub last_ack_ms: Option<i64>,
}

/// The metadata quorum (Weir's Raft voters, Kafka's `__cluster_metadata` quorum) as its
/// leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumView {
    pub leader: i32,
    /// The Raft term (Kafka's leader epoch of the quorum).
    pub term: u64,
    /// The Raft index after the last entry applied here.
    pub high_watermark: i64,
    pub voters: Vec<VoterView>,
}

/// The metadata quorum's state, from its leader (only it knows each voter's progress):
/// NOT_LEADER naming the leader on any other broker. DESCRIBE on the cluster, as Kafka
/// asks.
pub fn quorum(broker: &Broker, ctx: &RequestContext) -> Result<QuorumView, BrokerError> {
    broker.authorize_cluster(ctx, Operation::Describe)?;
    let cluster = broker.registry().cluster();
    let not_leader = |leader: Option<i32>| {
        let leader = leader.unwrap_or(-1);
        BrokerError::new(
            Reason::NotLeader { leader },
            format!(
                "broker {} does not lead the metadata quorum (broker {leader} does; -1: none \
                 now): ask it",
                broker.node_id()
            ),
        )
    };
    let Some(quorum) = cluster.quorum() else {
        return Err(not_leader(cluster.controller()));
    };
    let status = quorum.status();
    let Some(progress) = quorum.voter_progress() else {
        return Err(not_leader(status.leader));
    };
    let now = std::time::Instant::now();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let after = |index: Option<u64>| {
        index.map_or(0, |i| {
            i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1)
        })
    };
    Ok(QuorumView {
        leader: status.node,
        term: status.term,
        high_watermark: after(status.applied_index),
        voters: progress
            .into_iter()
            .map(|v| VoterView {
                node_id: v.node,
                address: quorum.voters().get(&v.node).cloned().unwrap_or_default(),
                log_end_offset: after(v.last_log_index),
                last_ack_ms: v.last_ack.map(|at| {
                    let ago = i64::try_from(now.saturating_duration_since(at).as_millis())
                        .unwrap_or(i64::MAX);
                    now_ms.saturating_sub(ago)
                }),
            })
            .collect(),
    })
}
