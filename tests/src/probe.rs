//! The harness's questions to a cluster, asked straight at each node's client port (never
//! through the fault proxy or a client's routing, so a node cut off from its peers can
//! still be asked what it thinks): DescribeCluster and DescribeTopic per node, the active
//! controller by the nodes' vote, a partition's leader, topic creation, waits until the
//! cluster is whole or its replicas have converged, and a full read of a topic from each
//! partition's leader. Shared by the process cluster ([`crate::cluster`]) and the compose
//! cluster ([`crate::compose`]): each says which nodes should answer, and where. A
//! secured cluster is asked over TLS, as its admin ([`Probe::with_tls`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use weir_client::ClientTls;
use weir_client::connection::{BrokerChannel, ConnectOptions, Timeouts};
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::consumer_client::ConsumerClient;

use crate::checker::Record;
use crate::wait::wait_for;

/// Longest an admin call to one node may take (a paused node never answers).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// A cluster's nodes as the harness can ask them: how many the cluster has, and the id
/// and client address of each that should answer now (running, not paused, not cut off
/// from the harness).
#[derive(Debug, Clone)]
pub struct Probe {
    nodes: usize,
    answering: Vec<(i32, SocketAddr)>,
    /// TLS and credentials to the nodes; `None`: plaintext.
    tls: Option<ClientTls>,
}

impl Probe {
    /// A cluster of `nodes` nodes, of which `answering` (id, client address) should
    /// answer.
    pub fn new(nodes: usize, answering: Vec<(i32, SocketAddr)>) -> Probe {
        Probe {
            nodes,
            answering,
            tls: None,
        }
    }

    /// Asks over TLS, with `tls`'s credentials (a secured cluster's admin).
    pub fn with_tls(mut self, tls: ClientTls) -> Probe {
        self.tls = Some(tls);
        self
    }

    /// The active controller, as most running nodes that answer say (a node cut off
    /// from the others may still believe it is).
    pub async fn controller(&self) -> Option<i32> {
        let mut votes: BTreeMap<i32, usize> = BTreeMap::new();
        for id in self.running() {
            if let Ok(c) = self.describe_cluster_on(id).await
                && c.controller_id > 0
            {
                *votes.entry(c.controller_id).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|&(id, n)| (n, std::cmp::Reverse(id)))
            .map(|(id, _)| id)
    }

    /// DescribeCluster on node `id` (straight to its port, not through the proxy).
    pub async fn describe_cluster_on(
        &self,
        id: i32,
    ) -> anyhow::Result<pb::DescribeClusterResponse> {
        let mut admin = AdminClient::new(self.channel(id)?);
        let response = tokio::time::timeout(
            RPC_TIMEOUT,
            admin.describe_cluster(pb::DescribeClusterRequest {}),
        )
        .await
        .with_context(|| format!("node {id} did not answer DescribeCluster"))??;
        Ok(response.into_inner())
    }

    /// DescribeTopic on node `id`: its own view of the metadata.
    pub async fn describe_on(&self, id: i32, topic: &str) -> anyhow::Result<pb::TopicDescription> {
        let mut admin = AdminClient::new(self.channel(id)?);
        let request = pb::DescribeTopicRequest {
            name: topic.to_owned(),
            allow_auto_create: false,
        };
        let response = tokio::time::timeout(RPC_TIMEOUT, admin.describe_topic(request))
            .await
            .with_context(|| format!("node {id} did not answer DescribeTopic"))??;
        response
            .into_inner()
            .topic
            .with_context(|| format!("node {id} described no topic {topic}"))
    }

    /// DescribeTopic on the active controller (whose metadata is the newest), else on
    /// any running node that answers.
    pub async fn describe(&self, topic: &str) -> anyhow::Result<pb::TopicDescription> {
        let controller = self.controller().await;
        let mut order: Vec<i32> = controller.into_iter().collect();
        order.extend(
            self.running()
                .into_iter()
                .filter(|&id| Some(id) != controller),
        );
        let mut last = None;
        for id in order {
            match self.describe_on(id, topic).await {
                Ok(t) => return Ok(t),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no node is running")))
    }

    /// The leader of `topic`/`partition` (-1: none), per [`Probe::describe`].
    pub async fn leader(&self, topic: &str, partition: u32) -> anyhow::Result<i32> {
        let t = self.describe(topic).await?;
        t.partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader)
            .with_context(|| format!("{topic} has no partition {partition}"))
    }

    /// Creates a topic (on the active controller's node, retrying while the quorum is
    /// busy) and waits until every partition has a leader and a full ISR on every node.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        min_insync_replicas: u32,
    ) -> anyhow::Result<()> {
        let min_isr = min_insync_replicas.to_string();
        let configs = [("min.insync.replicas", min_isr.as_str())];
        self.create_topic_with(name, partitions, replication_factor, &configs)
            .await
    }

    /// [`Probe::create_topic`] with the topic configs given.
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let request = pb::CreateTopicRequest {
            name: name.to_owned(),
            partitions,
            replication_factor,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        wait_for(
            Duration::from_secs(20),
            &format!("topic {name} created"),
            || async {
                let id = self.controller().await?;
                let mut admin = AdminClient::new(self.channel(id).ok()?);
                match tokio::time::timeout(RPC_TIMEOUT, admin.create_topic(request.clone())).await {
                    Ok(Ok(_)) => Some(()),
                    Ok(Err(status)) if status.code() == tonic::Code::AlreadyExists => Some(()),
                    _ => None,
                }
            },
        )
        .await?;
        self.wait_healthy(name, Duration::from_secs(20)).await
    }

    /// Waits until every node that should answer lists `topic` to the probe's principal
    /// (ListTopics leaves out the topics it may not describe): its user and ACLs, made
    /// on the controller, have reached every node.
    pub async fn wait_listed(&self, topic: &str, limit: Duration) -> anyhow::Result<()> {
        wait_for(limit, &format!("every node to list {topic}"), || async {
            for id in self.running() {
                let mut admin = AdminClient::new(self.channel(id).ok()?);
                let request = pb::ListTopicsRequest {
                    page_size: 1000,
                    ..pb::ListTopicsRequest::default()
                };
                let listed = tokio::time::timeout(RPC_TIMEOUT, admin.list_topics(request))
                    .await
                    .ok()?
                    .ok()?
                    .into_inner();
                if !listed.topics.iter().any(|t| t.name == topic) {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    /// Waits until every running node is registered and unfenced in every running node's
    /// view, and every node is running.
    pub async fn wait_brokers_unfenced(&self, limit: Duration) -> anyhow::Result<()> {
        let n = self.nodes;
        wait_for(
            limit,
            &format!("{n} registered, unfenced brokers"),
            || async {
                if self.running().len() != n {
                    return None;
                }
                for id in self.running() {
                    let c = self.describe_cluster_on(id).await.ok()?;
                    if c.brokers.len() != n || c.brokers.iter().any(|b| b.fenced) {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await
    }

    /// Waits until the cluster is whole for `topic`: every node running and unfenced,
    /// and every running node agreeing that every partition has a leader, the same
    /// leader epoch, and every replica in its ISR.
    pub async fn wait_healthy(&self, topic: &str, limit: Duration) -> anyhow::Result<()> {
        let last_views = Mutex::new(String::new());
        let what = format!("{topic} to have every partition led with a full ISR on every node");
        let result = wait_for(limit, &what, || {
            let views = &last_views;
            async move {
                if self.running().len() != self.nodes {
                    *lock(views) = "not every node is running".to_owned();
                    return None;
                }
                let mut seen: Option<Vec<(i32, i32)>> = None;
                let mut text = String::new();
                let mut healthy = true;
                for id in self.running() {
                    let t = match self.describe_on(id, topic).await {
                        Ok(t) => t,
                        Err(e) => {
                            text.push_str(&format!("node {id}: {e:#}\n"));
                            healthy = false;
                            continue;
                        }
                    };
                    text.push_str(&format!("node {id}: {}\n", partitions_line(&t)));
                    let leaders: Vec<(i32, i32)> = t
                        .partitions
                        .iter()
                        .map(|p| (p.leader, p.leader_epoch))
                        .collect();
                    let whole = t
                        .partitions
                        .iter()
                        .all(|p| p.leader > 0 && p.isr.len() == p.replicas.len());
                    healthy &= whole && seen.as_ref().is_none_or(|s| *s == leaders);
                    seen = Some(leaders);
                }
                *lock(views) = text;
                healthy.then_some(())
            }
        })
        .await;
        result.map_err(|e| e.context(format!("last views:\n{}", lock(&last_views))))
    }

    /// Waits until the replicas of every partition of `topic` have converged: every
    /// running node reports the same log end offset, and each partition's leader its
    /// high watermark there.
    pub async fn wait_quiet(&self, topic: &str, limit: Duration) -> anyhow::Result<()> {
        let last_views = Mutex::new(String::new());
        let result = wait_for(
            limit,
            &format!("the replicas of {topic} to converge"),
            || {
                let views = &last_views;
                async move {
                    // Per partition, the log end of the first replica seen; a node that
                    // does not host a partition (replication factor below the node
                    // count) has no log end for it.
                    let mut ends: BTreeMap<u32, i64> = BTreeMap::new();
                    let mut text = String::new();
                    let mut quiet = true;
                    for id in self.running() {
                        let t = match self.describe_on(id, topic).await {
                            Ok(t) => t,
                            Err(e) => {
                                text.push_str(&format!("node {id}: {e:#}\n"));
                                quiet = false;
                                continue;
                            }
                        };
                        text.push_str(&format!("node {id}: {}\n", partitions_line(&t)));
                        // Only a leader publishes a high watermark (a follower reports 0).
                        quiet &= t
                            .partitions
                            .iter()
                            .filter(|p| p.leader == id)
                            .all(|p| p.high_watermark == p.log_end_offset);
                        for p in t.partitions.iter().filter(|p| p.replicas.contains(&id)) {
                            quiet &= *ends.entry(p.partition).or_insert(p.log_end_offset)
                                == p.log_end_offset;
                        }
                    }
                    *lock(views) = text;
                    (quiet && !ends.is_empty()).then_some(())
                }
            },
        )
        .await;
        result.map_err(|e| e.context(format!("last views:\n{}", lock(&last_views))))
    }

    /// Every record of every partition of `topic`, read from offset 0 up to the high
    /// watermark on the partition's current leader (straight to its port).
    pub async fn read_all(&self, topic: &str) -> anyhow::Result<Vec<Record>> {
        let partitions = self.describe(topic).await?.partitions.len() as u32;
        let mut out = Vec::new();
        for partition in 0..partitions {
            let last_error = Mutex::new(String::new());
            let records = wait_for(
                Duration::from_secs(30),
                &format!("a full read of {topic}/{partition} from its leader"),
                || {
                    let last_error = &last_error;
                    async move {
                        match self.read_partition(topic, partition).await {
                            Ok(records) => Some(records),
                            Err(e) => {
                                *lock(last_error) = format!("{e:#}");
                                None
                            }
                        }
                    }
                },
            )
            .await
            .map_err(|e| e.context(format!("last error: {}", lock(&last_error))))?;
            out.extend(records);
        }
        Ok(out)
    }

    async fn read_partition(&self, topic: &str, partition: u32) -> anyhow::Result<Vec<Record>> {
        let leader = self.leader(topic, partition).await?;
        if leader <= 0 {
            bail!("{topic}/{partition} has no leader");
        }
        let mut consumer =
            ConsumerClient::new(self.channel(leader)?).max_decoding_message_size(64 * 1024 * 1024);
        let mut records = Vec::new();
        let mut offset = 0;
        loop {
            let request = pb::FetchRequest {
                topic: topic.to_owned(),
                partitions: vec![pb::PartitionFetch {
                    partition,
                    offset,
                    max_bytes: 0,
                }],
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 0,
                format: pb::RecordFormat::Records as i32,
                isolation: 0,
            };
            let mut response = tokio::time::timeout(RPC_TIMEOUT, consumer.fetch(request))
                .await
                .with_context(|| format!("node {leader} did not answer Fetch"))??
                .into_inner();
            let result = response
                .results
                .pop()
                .with_context(|| format!("node {leader} answered Fetch with no result"))?;
            if let Some(error) = result.error {
                bail!("node {leader} refused to read {topic}/{partition}@{offset}: {error:?}");
            }
            if result.records.is_empty() {
                if offset < result.high_watermark {
                    bail!(
                        "node {leader} returned nothing at {topic}/{partition}@{offset}, below its high watermark {}",
                        result.high_watermark
                    );
                }
                return Ok(records);
            }
            for r in result.records {
                let value = r
                    .value
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                records.push(Record::new(partition, r.offset, value));
            }
            offset = result.next_offset;
        }
    }

    fn running(&self) -> Vec<i32> {
        self.answering.iter().map(|&(id, _)| id).collect()
    }

    /// A channel to node `id`, connecting on its first call: each call is bounded by
    /// [`RPC_TIMEOUT`], connecting (and a TLS handshake) included.
    fn channel(&self, id: i32) -> anyhow::Result<BrokerChannel> {
        let addr = self
            .answering
            .iter()
            .find(|&&(n, _)| n == id)
            .map(|&(_, addr)| addr)
            .with_context(|| format!("node {id} is not expected to answer"))?;
        let options = ConnectOptions {
            timeouts: Timeouts {
                connect: RPC_TIMEOUT,
                request: RPC_TIMEOUT,
            },
            tls: self.tls.clone(),
        };
        weir_client::connection::lazy(&addr.to_string(), &options)
            .with_context(|| format!("a channel to node {id} at {addr}"))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn partitions_line(t: &pb::TopicDescription) -> String {
    let parts: BTreeMap<u32, String> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition,
                format!(
                    "p{} leader {} epoch {} isr {:?} hw {} leo {}",
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    p.isr,
                    p.high_watermark,
                    p.log_end_offset
                ),
            )
        })
        .collect();
    parts.into_values().collect::<Vec<_>>().join("; ")
}
