//! [`Cluster`]: one client's connections to a cluster's brokers and the metadata that
//! sends each partition's requests to its leader.
//!
//! A client starts from the bootstrap list (the first address that answers) and learns
//! the rest from the cluster: `DescribeCluster` gives the brokers with the addresses
//! they advertise, `DescribeTopic` each partition's leader (the [`RoutingTable`]). It
//! keeps one connection per broker, made on first use; the bootstrap connection serves
//! the broker it reached (recognised by its address, or because the cluster has one
//! broker) and carries admin and metadata requests.
//!
//! Long-lived streams (`Consume`) take a [`StreamLease`] on a connection from
//! [`Cluster::stream_channel`]: the broker's usual connection first, then further
//! connections to the same broker, each carrying at most
//! [`connection::MAX_STREAMS_PER_CONNECTION`] streams, so that following more
//! partitions than one HTTP/2 connection allows never leaves a stream waiting.
//!
//! Metadata is fetched when a route is missing (a new topic, no leader known) and when
//! a request fails in a way [`crate::retry`] says calls for it (the leader moved or is
//! unreachable). Refreshes run one at a time; a caller that waited for another's refresh
//! uses its answer, and rounds of metadata requests are at least
//! [`MIN_REFRESH_INTERVAL`] apart. A refresh asks the broker that answered the last
//! question any broker could answer (at first the bootstrap broker), then the other known
//! brokers, then the rest of the bootstrap list, hedged as [`crate::any_broker`] says: a
//! broker that does not answer within [`HEDGE_DELAY`](crate::any_broker::HEDGE_DELAY)
//! has the next one asked beside it, so a frozen bootstrap broker neither blinds the
//! client nor slows its refreshes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::connection::BrokerChannel as Channel;
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::consumer_client::ConsumerClient;

use crate::admin::{ListedOffset, OffsetQuery, list_offsets};
use crate::any_broker;
use crate::connection::{self, ConnectOptions, MAX_MESSAGE_BYTES};
use crate::consumer::IsolationLevel;
use crate::consumer::reconnect_backoff;
use crate::error::ClientError;
use crate::retry::{self, MAX_ROUTED_ATTEMPTS, ROUTED_RETRY_BACKOFF, RetryDecision};
use crate::routing::{BrokerId, PartitionLeader, RoutingTable, Unroutable, host_port};

/// Shortest time between two rounds of metadata requests.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// How long one metadata request may take before the next broker is asked.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// See the module docs. Cheap to clone: clones share the connections and metadata.
#[derive(Clone)]
pub(crate) struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    /// The bootstrap list as given (split at commas).
    bootstrap_addresses: Vec<String>,
    /// For every connection this client makes.
    options: ConnectOptions,
    /// The bootstrap address that answered; `None` for a client made from a channel.
    bootstrap_address: Option<String>,
    bootstrap: Channel,
    /// The source (as [`Cluster::any_broker_sources`] names it) that answered the last
    /// question any broker could answer: asked first next time.
    answered_last: Mutex<Option<String>>,
    state: Mutex<State>,
    /// Held while a refresh runs; the time the last round of requests started.
    refresh: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    /// Metadata requests ask the broker to create a topic that does not exist (a
    /// producer's, as Kafka's producers do).
    auto_create: std::sync::atomic::AtomicBool,
}

struct State {
    /// Replaced, never changed in place, so a snapshot is an `Arc` clone.
    table: Arc<RoutingTable>,
    /// Connections made to brokers from their advertised addresses, with that address.
    channels: HashMap<BrokerId, (String, Channel)>,
    /// Bumped by every refresh that got an answer.
    refreshes: u64,
    /// Connections that carry long-lived streams, per broker.
    stream_pools: HashMap<BrokerId, StreamPool>,
}

/// The connections to one broker that carry long-lived streams: `connections[0]` is
/// the broker's usual connection, the rest were opened when the ones before were full.
struct StreamPool {
    /// The address further connections go to; the pool is dropped when it changes.
    address: String,
    connections: Vec<PooledConnection>,
}

struct PooledConnection {
    channel: Channel,
    /// Streams open on it: leases handed out and not dropped yet.
    streams: Arc<AtomicUsize>,
}

/// A connection for one long-lived stream, counted against the connection's
/// [`connection::MAX_STREAMS_PER_CONNECTION`] until dropped: keep it for as long as
/// the stream is open.
pub(crate) struct StreamLease {
    channel: Channel,
    streams: Arc<AtomicUsize>,
}

impl StreamLease {
    /// The connection to open the stream on.
    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.inner.bootstrap_address)
            .field("table", &self.inner.lock().table)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing here panics while the lock is held; a poisoned lock still holds a
        // consistent table.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Cluster {
    /// Connects to the first broker of `brokers` that answers (see
    /// [`connection::connect_first`]).
    pub(crate) async fn connect(
        brokers: &[String],
        options: ConnectOptions,
    ) -> Result<Cluster, ClientError> {
        let (address, channel) = connection::connect_first(brokers, &options).await?;
        Ok(Cluster::new(
            connection::bootstrap_addresses(brokers),
            options,
            Some(address),
            channel,
        ))
    }

    /// Metadata requests from now on ask the broker to create topics that do not exist
    /// (where the broker does that): for producers.
    pub(crate) fn create_topics_on_first_use(&self) {
        self.inner
            .auto_create
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// A cluster reached through `channel` only (its address unknown).
    pub(crate) fn from_channel(channel: Channel) -> Cluster {
        Cluster::new(Vec::new(), ConnectOptions::default(), None, channel)
    }

    fn new(
        bootstrap_addresses: Vec<String>,
        options: ConnectOptions,
        bootstrap_address: Option<String>,
        bootstrap: Channel,
    ) -> Cluster {
        Cluster {
            inner: Arc::new(Inner {
                bootstrap_addresses,
                options,
                bootstrap_address,
                bootstrap,
                answered_last: Mutex::new(None),
                auto_create: std::sync::atomic::AtomicBool::new(false),
                state: Mutex::new(State {
                    table: Arc::new(RoutingTable::default()),
                    channels: HashMap::new(),
                    refreshes: 0,
                    stream_pools: HashMap::new(),
                }),
                refresh: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The bootstrap connection: admin and metadata requests go there.
    pub(crate) fn bootstrap(&self) -> Channel {
        self.inner.bootstrap.clone()
    }

    /// The routing table as it is now.
    pub(crate) fn table(&self) -> Arc<RoutingTable> {
        self.inner.lock().table.clone()
    }

    /// The connection to `broker`, made now (lazily) if there is none to its current
    /// address.
    pub(crate) fn channel(&self, broker: BrokerId) -> Result<Channel, ClientError> {
        let mut state = self.inner.lock();
        Ok(self.channel_locked(&mut state, broker)?.1)
    }

    /// [`Cluster::channel`] under the state lock, with the address further connections
    /// to the same broker should use: the bootstrap address that answered when the
    /// connection is the bootstrap one (else the advertised address); `None` for a
    /// client made from a channel to a broker whose address it does not know.
    fn channel_locked(
        &self,
        state: &mut State,
        broker: BrokerId,
    ) -> Result<(Option<String>, Channel), ClientError> {
        let table = state.table.clone();
        let address = table.address(broker);
        let bootstrap_address = self.inner.bootstrap_address.as_deref();
        let is_bootstrap = table.single_broker() == Some(broker)
            || bootstrap_address.is_some_and(|a| table.broker_at(a) == Some(broker));
        if is_bootstrap {
            let address = bootstrap_address.or(address).map(str::to_owned);
            return Ok((address, self.inner.bootstrap.clone()));
        }
        let address = address.ok_or_else(|| {
            ClientError::Unavailable(format!(
                "broker {broker} is not in the cluster's broker list"
            ))
        })?;
        if let Some((known, channel)) = state.channels.get(&broker)
            && known == address
        {
            return Ok((Some(address.to_owned()), channel.clone()));
        }
        let channel = connection::lazy(address, &self.inner.options)?;
        tracing::debug!(broker, address, "connection to broker made");
        state
            .channels
            .insert(broker, (address.to_owned(), channel.clone()));
        Ok((Some(address.to_owned()), channel))
    }

    /// A connection to `broker` for one long-lived stream (see the module docs): the
    /// first of the broker's stream connections with fewer than
    /// [`connection::MAX_STREAMS_PER_CONNECTION`] streams, or a new one. Extra
    /// connections left with no stream are closed here. A client made from a channel,
    /// to a broker whose address it does not know, has only that channel.
    pub(crate) fn stream_channel(&self, broker: BrokerId) -> Result<StreamLease, ClientError> {
        let mut state = self.inner.lock();
        let (address, usual) = self.channel_locked(&mut state, broker)?;
        let Some(address) = address else {
            return Ok(StreamLease {
                channel: usual,
                streams: Arc::new(AtomicUsize::new(1)),
            });
        };
        let pool = state
            .stream_pools
            .entry(broker)
            .or_insert_with(|| StreamPool {
                address: address.clone(),
                connections: Vec::new(),
            });
        if pool.address != address || pool.connections.is_empty() {
            // New, or the broker moved: start over from its usual connection (streams
            // on the old connections keep their leases and end with them).
            *pool = StreamPool {
                address: address.clone(),
                connections: vec![PooledConnection {
                    channel: usual,
                    streams: Arc::new(AtomicUsize::new(0)),
                }],
            };
        }
        let mut index = 0;
        pool.connections.retain(|c| {
            index += 1;
            index == 1 || c.streams.load(Ordering::Acquire) > 0
        });
        let free = pool
            .connections
            .iter()
            .find(|c| c.streams.load(Ordering::Acquire) < connection::MAX_STREAMS_PER_CONNECTION);
        let connection = match free {
            Some(connection) => connection,
            None => {
                let channel = connection::lazy(&address, &self.inner.options)?;
                pool.connections.push(PooledConnection {
                    channel,
                    streams: Arc::new(AtomicUsize::new(0)),
                });
                tracing::debug!(
                    broker,
                    address,
                    connections = pool.connections.len(),
                    "every stream connection to the broker is full; another one made"
                );
                pool.connections.last().expect("just pushed")
            }
        };
        connection.streams.fetch_add(1, Ordering::AcqRel);
        Ok(StreamLease {
            channel: connection.channel.clone(),
            streams: connection.streams.clone(),
        })
    }

    /// The leader of `topic`/`partition` and the connection to it, refreshing metadata
    /// if the route is not known. Fails with [`ClientError::NotFound`] for an unknown
    /// topic or partition, [`ClientError::Unavailable`] (retriable) while the partition
    /// has no leader.
    pub(crate) async fn leader(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(BrokerId, Channel), ClientError> {
        // At most: the broker list, then the topic, then one more try for a leader
        // that moved in between.
        let mut last = Unroutable::NoBrokers;
        for _ in 0..3 {
            match self.table().route(topic, partition) {
                Ok(broker) => return Ok((broker, self.channel(broker)?)),
                Err(Unroutable::NoBrokers) => {
                    last = Unroutable::NoBrokers;
                    self.refresh(&[]).await?;
                }
                Err(why) => {
                    last = why;
                    self.refresh(&[topic]).await?;
                }
            }
        }
        Err(unroutable(topic, partition, last))
    }

    /// A request for `topic`/`partition` to `broker` failed with `error`, which
    /// [`retry::decide`] says calls for new metadata: forget (or move, if the broker
    /// named the leader) the partition's leader so the next request waits for a refresh.
    pub(crate) fn leader_failed(
        &self,
        topic: &str,
        partition: u32,
        broker: BrokerId,
        error: &ClientError,
    ) {
        let mut state = self.inner.lock();
        Arc::make_mut(&mut state.table).leader_failed(
            topic,
            partition,
            broker,
            error.leader_hint(),
        );
        tracing::debug!(topic, partition, broker, %error, "leader failed; metadata refresh due");
    }

    /// Fetches the broker list and the leaders of `topics`. Returns at once if a refresh
    /// that started after this call did (it waited for it) and knows every topic asked
    /// for. A topic the cluster does not have is forgotten and its
    /// [`ClientError::NotFound`] returned, after the other topics are recorded.
    pub(crate) async fn refresh(&self, topics: &[&str]) -> Result<(), ClientError> {
        let seen = self.inner.lock().refreshes;
        let mut last_round = self.inner.refresh.lock().await;
        {
            let state = self.inner.lock();
            if state.refreshes != seen
                && topics
                    .iter()
                    .all(|t| state.table.partition_count(t).is_some())
            {
                return Ok(());
            }
        }
        if let Some(last) = *last_round {
            tokio::time::sleep_until(last + MIN_REFRESH_INTERVAL).await;
        }
        *last_round = Some(tokio::time::Instant::now());
        let answer = self.fetch_metadata(topics).await?;
        let mut not_found = None;
        let mut state = self.inner.lock();
        let table = Arc::make_mut(&mut state.table);
        table.set_brokers(answer.brokers.iter().cloned());
        for (topic, description) in answer.topics {
            match description {
                Ok(d) => table.set_topic(
                    &topic,
                    &d.topic_id,
                    d.partitions.iter().map(|p| PartitionLeader {
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                    }),
                ),
                Err(error) => {
                    table.forget_topic(&topic);
                    not_found.get_or_insert(error);
                }
            }
        }
        // Connections to brokers that left or moved are closed when their last user
        // drops them.
        let brokers: BTreeMap<BrokerId, String> = answer.brokers.into_iter().collect();
        state
            .channels
            .retain(|id, (address, _)| brokers.get(id) == Some(address));
        state.stream_pools.retain(|id, _| brokers.contains_key(id));
        state.refreshes += 1;
        drop(state);
        tracing::debug!(brokers = brokers.len(), ?topics, "metadata refreshed");
        match not_found {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// One round of metadata requests: the first broker that answers, in the order of
    /// the module docs.
    async fn fetch_metadata(&self, topics: &[&str]) -> Result<MetadataAnswer, ClientError> {
        let auto_create = self
            .inner
            .auto_create
            .load(std::sync::atomic::Ordering::Relaxed);
        self.ask_any_broker("metadata", |channel| {
            fetch_from(channel, topics, auto_create)
        })
        .await
    }

    /// Asks any broker (`what` names the question in logs), as
    /// [`crate::any_broker`] says, starting with the one that answered last.
    pub(crate) async fn ask_any_broker<T, F, Fut>(
        &self,
        what: &str,
        ask: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let (source, answer) =
            any_broker::first_answer(self.any_broker_sources(), what, ask).await?;
        *self
            .inner
            .answered_last
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(source);
        Ok(answer)
    }

    /// Who may be asked a question any broker can answer: the one that answered last,
    /// then the bootstrap connection, the other known brokers, the rest of the bootstrap
    /// list.
    fn any_broker_sources(&self) -> Vec<(String, Channel)> {
        let bootstrap = self.inner.bootstrap_address.clone();
        let mut sources = vec![(
            bootstrap.clone().unwrap_or_else(|| "bootstrap".to_owned()),
            self.inner.bootstrap.clone(),
        )];
        let table = self.table();
        let bootstrap_broker = bootstrap.as_deref().and_then(|a| table.broker_at(a));
        for (id, address) in table.brokers() {
            if Some(id) == bootstrap_broker || table.single_broker().is_some() {
                continue;
            }
            if let Ok(channel) = self.channel(id) {
                sources.push((address.to_owned(), channel));
            }
        }
        for address in &self.inner.bootstrap_addresses {
            if Some(address) == bootstrap.as_ref()
                || sources.iter().any(|(known, _)| known == address)
            {
                continue;
            }
            if let Ok(channel) = connection::lazy(address, &self.inner.options) {
                sources.push((address.clone(), channel));
            }
        }
        let answered_last = self
            .inner
            .answered_last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(at) = answered_last.and_then(|a| sources.iter().position(|(s, _)| *s == a)) {
            sources[..=at].rotate_right(1);
        }
        sources
    }

    /// `ListOffsets` for `topic`, each partition asked of its leader (the high watermark
    /// is the leader's), retried per [`retry::decide`] up to [`MAX_ROUTED_ATTEMPTS`].
    /// Results in request order; the first error that is not retried fails the call.
    /// Under read committed, latest is the last stable offset.
    pub(crate) async fn list_offsets(
        &self,
        topic: &str,
        queries: &[(u32, OffsetQuery)],
        isolation: IsolationLevel,
    ) -> Result<Vec<ListedOffset>, ClientError> {
        let mut found: Vec<Option<ListedOffset>> = vec![None; queries.len()];
        let mut attempts = 0;
        loop {
            match self
                .list_offsets_once(topic, queries, isolation, &mut found)
                .await
            {
                Ok(()) => {
                    return Ok(found
                        .into_iter()
                        .map(|f| f.expect("every query answered"))
                        .collect());
                }
                Err(error) => {
                    attempts += 1;
                    if retry::decide(&error) == RetryDecision::Fail
                        || attempts >= MAX_ROUTED_ATTEMPTS
                    {
                        return Err(error);
                    }
                    let wait = reconnect_backoff(ROUTED_RETRY_BACKOFF, attempts);
                    tracing::debug!(topic, %error, ?wait, "offset lookup failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Asks each leader for the queries not answered yet.
    async fn list_offsets_once(
        &self,
        topic: &str,
        queries: &[(u32, OffsetQuery)],
        isolation: IsolationLevel,
        found: &mut [Option<ListedOffset>],
    ) -> Result<(), ClientError> {
        let mut by_leader: BTreeMap<BrokerId, (Channel, Vec<usize>)> = BTreeMap::new();
        for (index, (partition, _)) in queries.iter().enumerate() {
            if found[index].is_some() {
                continue;
            }
            let (broker, channel) = self.leader(topic, *partition).await?;
            by_leader
                .entry(broker)
                .or_insert_with(|| (channel, Vec::new()))
                .1
                .push(index);
        }
        for (broker, (channel, indexes)) in by_leader {
            let mut client = ConsumerClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let asked: Vec<(u32, OffsetQuery)> = indexes.iter().map(|&i| queries[i]).collect();
            match list_offsets(&mut client, topic, &asked, isolation).await {
                Ok(answers) if answers.len() == indexes.len() => {
                    for (index, answer) in indexes.into_iter().zip(answers) {
                        found[index] = Some(answer);
                    }
                }
                Ok(answers) => {
                    return Err(ClientError::Rpc {
                        code: tonic::Code::Internal,
                        message: format!(
                            "broker {broker} answered {} offset(s) of {topic} for {} asked",
                            answers.len(),
                            indexes.len()
                        ),
                    });
                }
                Err(error) => {
                    if retry::decide(&error) == RetryDecision::RefreshMetadata {
                        for (partition, _) in &asked {
                            self.leader_failed(topic, *partition, broker, &error);
                        }
                    }
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

/// What one round of metadata requests learnt.
struct MetadataAnswer {
    brokers: Vec<(BrokerId, String)>,
    /// Per topic asked: its description, or the non-retriable error (NotFound) the
    /// broker gave.
    topics: Vec<(String, Result<pb::TopicDescription, ClientError>)>,
}

/// `DescribeCluster` and a `DescribeTopic` per topic, from one broker.
async fn fetch_from(
    channel: Channel,
    topics: &[&str],
    auto_create: bool,
) -> Result<MetadataAnswer, ClientError> {
    let mut admin = AdminClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut request = tonic::Request::new(pb::DescribeClusterRequest {});
    request.set_timeout(METADATA_TIMEOUT);
    let cluster = timed(admin.describe_cluster(request)).await?;
    let brokers = cluster
        .brokers
        .into_iter()
        .map(|b| (b.broker_id, host_port(&b.host, b.port)))
        .collect();
    let mut described = Vec::with_capacity(topics.len());
    for topic in topics {
        let mut request = tonic::Request::new(pb::DescribeTopicRequest {
            name: (*topic).to_owned(),
            allow_auto_create: auto_create,
        });
        request.set_timeout(METADATA_TIMEOUT);
        match timed(admin.describe_topic(request)).await {
            Ok(response) => match response.topic {
                Some(description) => described.push(((*topic).to_owned(), Ok(description))),
                None => {
                    return Err(ClientError::Rpc {
                        code: tonic::Code::Internal,
                        message: "the broker's answer has no topic description".to_owned(),
                    });
                }
            },
            Err(error) if error.is_retriable() => return Err(error),
            Err(error) => described.push(((*topic).to_owned(), Err(error))),
        }
    }
    Ok(MetadataAnswer {
        brokers,
        topics: described,
    })
}

/// A unary call bounded by [`METADATA_TIMEOUT`] on the client side too (a connection
/// that is still being made does not see the request's own timeout).
async fn timed<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(METADATA_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(status.into()),
        Err(_) => Err(ClientError::DeadlineExceeded(format!(
            "no metadata answer within {METADATA_TIMEOUT:?}"
        ))),
    }
}

/// The error for a partition that still cannot be routed after a refresh.
fn unroutable(topic: &str, partition: u32, why: Unroutable) -> ClientError {
    match why {
        Unroutable::UnknownPartition { count } => ClientError::NotFound(format!(
            "topic {topic} has no partition {partition} (it has {count})"
        )),
        Unroutable::NoLeader => ClientError::Unavailable(format!(
            "{topic}/{partition} has no leader right now (an election may be under way)"
        )),
        Unroutable::UnknownBroker(broker) => ClientError::Unavailable(format!(
            "the leader of {topic}/{partition}, broker {broker}, is not in the cluster's broker list"
        )),
        Unroutable::NoBrokers => {
            ClientError::Unavailable("the cluster lists no brokers".to_owned())
        }
        Unroutable::UnknownTopic => {
            ClientError::Unavailable(format!("no broker described topic {topic}"))
        }
    }
}
