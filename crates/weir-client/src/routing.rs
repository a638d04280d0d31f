//! [`RoutingTable`]: the client's picture of the cluster, the brokers with the addresses
//! they advertise (`DescribeCluster`) and each partition's leader (`DescribeTopic`), and
//! the rule that turns it into the broker a partition's requests go to.
//!
//! It is plain data with no I/O; [`crate::cluster`] fills it and keeps the connections.
//!
//! Two rules keep a stale answer from sending requests backwards: a partition's leader is
//! replaced only by an answer with a leader epoch at least the one known (brokers may
//! answer from metadata of different ages), unless the topic was recreated (a new topic
//! id resets its epochs). And a cluster of one broker routes everything to it, leader or
//! not, so a single node behaves exactly as it did before there was routing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A broker id as the API gives it (`-1` means none).
pub(crate) type BrokerId = i32;

/// The id the API uses for "no broker".
pub(crate) const NO_BROKER: BrokerId = -1;

/// One partition's leadership, as `DescribeTopic` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionLeader {
    /// The leader's broker id; [`NO_BROKER`] if there is none (or it is known to be
    /// stale and a refresh is due).
    pub leader: BrokerId,
    /// The leader epoch the leader was reported at.
    pub leader_epoch: i32,
}

#[derive(Debug, Clone)]
struct TopicRoutes {
    topic_id: String,
    partitions: Vec<PartitionLeader>,
}

/// Why a partition cannot be routed from what is known: each means "refresh metadata".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unroutable {
    /// No broker list yet.
    NoBrokers,
    /// The topic's leaders are not known.
    UnknownTopic,
    /// The partition is past the topic's known partition count (it has `count`).
    UnknownPartition { count: u32 },
    /// The partition has no leader now (an election is under way, or the known leader
    /// failed).
    NoLeader,
    /// The leader is a broker missing from the broker list.
    UnknownBroker(BrokerId),
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoutingTable {
    /// Broker id to `host:port`.
    brokers: BTreeMap<BrokerId, String>,
    /// Whether `brokers` came from the cluster (an empty list may be an answer too).
    brokers_known: bool,
    topics: HashMap<Arc<str>, TopicRoutes>,
}

impl RoutingTable {
    /// Replaces the broker list with `DescribeCluster`'s.
    pub(crate) fn set_brokers(&mut self, brokers: impl IntoIterator<Item = (BrokerId, String)>) {
        self.brokers = brokers.into_iter().collect();
        self.brokers_known = true;
    }

    /// Records a topic's leaders from `DescribeTopic` (partitions in index order).
    pub(crate) fn set_topic(
        &mut self,
        topic: &str,
        topic_id: &str,
        partitions: impl IntoIterator<Item = PartitionLeader>,
    ) {
        let partitions: Vec<PartitionLeader> = partitions.into_iter().collect();
        match self.topics.get_mut(topic) {
            Some(known) if known.topic_id == topic_id => {
                for (index, new) in partitions.iter().enumerate() {
                    match known.partitions.get_mut(index) {
                        // An older epoch is a stale answer: keep what is known.
                        Some(old) if new.leader_epoch < old.leader_epoch => {}
                        Some(old) => *old = *new,
                        None => known.partitions.push(*new),
                    }
                }
            }
            _ => {
                self.topics.insert(
                    Arc::from(topic),
                    TopicRoutes {
                        topic_id: topic_id.to_owned(),
                        partitions,
                    },
                );
            }
        }
    }

    /// Forgets a topic (it was deleted).
    pub(crate) fn forget_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// A request to `broker` for the partition failed because it does not lead it (or
    /// could not be reached). With `hint` (the leader the refusing broker named), the
    /// partition moves there at once if that broker is known; otherwise it has no leader
    /// until the next refresh. The epoch stays, so a refresh at the same epoch (the
    /// leader did not move: it was only unreachable) still applies.
    pub(crate) fn leader_failed(
        &mut self,
        topic: &str,
        partition: u32,
        broker: BrokerId,
        hint: Option<BrokerId>,
    ) {
        let Some(route) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
        else {
            return;
        };
        if route.leader != broker {
            // Already moved by a newer answer.
            return;
        }
        route.leader = match hint {
            Some(hint) if hint != broker && self.brokers.contains_key(&hint) => hint,
            _ => NO_BROKER,
        };
    }

    /// The broker requests for `topic`/`partition` go to.
    pub(crate) fn route(&self, topic: &str, partition: u32) -> Result<BrokerId, Unroutable> {
        if !self.brokers_known {
            return Err(Unroutable::NoBrokers);
        }
        if let Some(only) = self.single_broker() {
            return Ok(only);
        }
        let routes = self.topics.get(topic).ok_or(Unroutable::UnknownTopic)?;
        let leader = routes
            .partitions
            .get(partition as usize)
            .ok_or(Unroutable::UnknownPartition {
                count: routes.partitions.len() as u32,
            })?
            .leader;
        if leader < 0 {
            return Err(Unroutable::NoLeader);
        }
        if !self.brokers.contains_key(&leader) {
            return Err(Unroutable::UnknownBroker(leader));
        }
        Ok(leader)
    }

    /// The topic's partition count, if its leaders are known.
    pub(crate) fn partition_count(&self, topic: &str) -> Option<u32> {
        self.topics.get(topic).map(|t| t.partitions.len() as u32)
    }

    /// The one broker of a one-broker cluster.
    pub(crate) fn single_broker(&self) -> Option<BrokerId> {
        match (self.brokers.len(), self.brokers.keys().next()) {
            (1, Some(&id)) => Some(id),
            _ => None,
        }
    }

    /// The advertised `host:port` of a broker.
    pub(crate) fn address(&self, broker: BrokerId) -> Option<&str> {
        self.brokers.get(&broker).map(String::as_str)
    }

    /// Every known broker id with its address, by id.
    pub(crate) fn brokers(&self) -> impl Iterator<Item = (BrokerId, &str)> {
        self.brokers.iter().map(|(id, a)| (*id, a.as_str()))
    }

    /// The broker whose advertised address is `address` (`host:port`, any scheme
    /// dropped), if one is.
    pub(crate) fn broker_at(&self, address: &str) -> Option<BrokerId> {
        let address = strip_scheme(address);
        self.brokers
            .iter()
            .find(|(_, a)| a.as_str() == address)
            .map(|(id, _)| *id)
    }
}

/// `host:port` for an advertised host and port (IPv6 hosts in brackets).
pub(crate) fn host_port(host: &str, port: u32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `address` without a leading `scheme://` and surrounding blanks.
pub(crate) fn strip_scheme(address: &str) -> &str {
    let address = address.trim();
    address
        .split_once("://")
        .map_or(address, |(_, rest)| rest)
        .trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(leader: BrokerId, leader_epoch: i32) -> PartitionLeader {
        PartitionLeader {
            leader,
            leader_epoch,
        }
    }

    fn three_brokers() -> RoutingTable {
        let mut table = RoutingTable::default();
        table.set_brokers([
            (1, "a:9292".to_owned()),
            (2, "b:9292".to_owned()),
            (3, "c:9292".to_owned()),
        ]);
        table
    }

    #[test]
    fn nothing_routes_before_the_broker_list_is_known() {
        let table = RoutingTable::default();
        assert_eq!(table.route("t", 0), Err(Unroutable::NoBrokers));
    }

    #[test]
    fn one_broker_takes_everything_whatever_the_leaders_say() {
        let mut table = RoutingTable::default();
        table.set_brokers([(0, "127.0.0.1:9292".to_owned())]);
        assert_eq!(table.route("unknown", 7), Ok(0));
        table.set_topic("t", "id", [leader(NO_BROKER, 0)]);
        assert_eq!(table.route("t", 0), Ok(0), "even with no leader reported");
        assert_eq!(table.single_broker(), Some(0));
    }

    #[test]
    fn each_partition_goes_to_its_leader() {
        let mut table = three_brokers();
        assert_eq!(table.route("t", 0), Err(Unroutable::UnknownTopic));
        table.set_topic("t", "id", [leader(1, 0), leader(2, 0), leader(3, 0)]);
        assert_eq!(table.route("t", 0), Ok(1));
        assert_eq!(table.route("t", 1), Ok(2));
        assert_eq!(table.route("t", 2), Ok(3));
        assert_eq!(
            table.route("t", 3),
            Err(Unroutable::UnknownPartition { count: 3 })
        );
        assert_eq!(table.address(2), Some("b:9292"));
    }

    #[test]
    fn a_partition_without_a_leader_or_with_an_unlisted_one_does_not_route() {
        let mut table = three_brokers();
        table.set_topic("t", "id", [leader(NO_BROKER, 4), leader(9, 4)]);
        assert_eq!(table.route("t", 0), Err(Unroutable::NoLeader));
        assert_eq!(table.route("t", 1), Err(Unroutable::UnknownBroker(9)));
    }

    #[test]
    fn a_stale_answer_never_moves_a_leader_back() {
        let mut table = three_brokers();
        table.set_topic("t", "id", [leader(1, 5)]);
        table.set_topic("t", "id", [leader(2, 4)]);
        assert_eq!(table.route("t", 0), Ok(1), "epoch 4 is older than 5");
        table.set_topic("t", "id", [leader(3, 6)]);
        assert_eq!(table.route("t", 0), Ok(3));
    }

    #[test]
    fn a_recreated_topic_starts_over() {
        let mut table = three_brokers();
        table.set_topic("t", "old", [leader(1, 9)]);
        table.set_topic("t", "new", [leader(2, 0)]);
        assert_eq!(table.route("t", 0), Ok(2));
        table.forget_topic("t");
        assert_eq!(table.route("t", 0), Err(Unroutable::UnknownTopic));
    }

    #[test]
    fn a_grown_topic_keeps_its_partitions_and_adds_the_new_ones() {
        let mut table = three_brokers();
        table.set_topic("t", "id", [leader(1, 3)]);
        table.set_topic("t", "id", [leader(1, 3), leader(2, 0)]);
        assert_eq!(table.route("t", 1), Ok(2));
    }

    #[test]
    fn not_leader_follows_the_hint_or_waits_for_a_refresh() {
        let mut table = three_brokers();
        table.set_topic("t", "id", [leader(1, 2), leader(1, 2)]);
        table.leader_failed("t", 0, 1, Some(2));
        assert_eq!(table.route("t", 0), Ok(2), "moved to the named leader");
        table.leader_failed("t", 1, 1, None);
        assert_eq!(table.route("t", 1), Err(Unroutable::NoLeader));
        // The refresh may name the same leader at the same epoch (it was only
        // unreachable): it applies.
        table.set_topic("t", "id", [leader(2, 2), leader(1, 2)]);
        assert_eq!(table.route("t", 1), Ok(1));
    }

    #[test]
    fn a_failure_reported_against_an_old_leader_changes_nothing() {
        let mut table = three_brokers();
        table.set_topic("t", "id", [leader(3, 7)]);
        table.leader_failed("t", 0, 1, None);
        assert_eq!(table.route("t", 0), Ok(3));
        // A hint naming an unknown broker, or the refusing broker itself, is no help.
        table.leader_failed("t", 0, 3, Some(42));
        assert_eq!(table.route("t", 0), Err(Unroutable::NoLeader));
        table.set_topic("t", "id", [leader(3, 7)]);
        table.leader_failed("t", 0, 3, Some(3));
        assert_eq!(table.route("t", 0), Err(Unroutable::NoLeader));
    }

    #[test]
    fn brokers_are_found_by_their_advertised_address() {
        let table = three_brokers();
        assert_eq!(table.broker_at("b:9292"), Some(2));
        assert_eq!(table.broker_at("http://c:9292/"), Some(3));
        assert_eq!(table.broker_at("d:9292"), None);
        assert_eq!(host_port("::1", 9292), "[::1]:9292");
        assert_eq!(host_port("10.0.0.1", 9292), "10.0.0.1:9292");
    }
}
