//! [`ShareConsumer`]: a member of a share group, a queue on the log (Kafka's
//! `KafkaShareConsumer`, KIP-932; the model is `docs/queues.md`, the API
//! `proto/weir/v1/queues.proto`).
//!
//! Any number of members read the same partitions together. Each record
//! [`poll`](ShareConsumer::poll) returns is **acquired** by this member under a lock
//! (until [`ShareRecord::lock_deadline_ms`]) and is then acknowledged on its own with an
//! [`AckKind`]: accept (done), release (deliver again, optionally after a delay), reject
//! (never again: archived, dead-lettered if the group names a topic) or renew (hold it
//! longer). A record whose lock expires goes to another member; one delivered
//! `share.delivery.count.limit` times is archived instead of delivered again. There is no
//! join and no assignment: the member is the member id it sends, and partitions are not
//! owned. Records of one partition may be processed by several members at once, so there
//! is no ordering across members.
//!
//! # Acknowledgement modes
//!
//! - [`AckMode::Implicit`] (the default): every record a poll returned that the
//!   application did not acknowledge itself is accepted by the next `poll`, or by
//!   [`commit`](ShareConsumer::commit) or [`close`](ShareConsumer::close). Calling `poll`
//!   again says "done with the previous records", as with a consumer group.
//! - [`AckMode::Explicit`]: the application acknowledges every record with
//!   [`acknowledge`](ShareConsumer::acknowledge). Polling while a record of the previous
//!   poll has no final acknowledgement (renew is not final) fails with
//!   [`ClientError::Unacknowledged`], sending nothing, as Kafka's consumer does. `close`
//!   releases records left unacknowledged, so other members get them at once instead of
//!   when their locks expire.
//!
//! # Where acknowledgements go, and what came of them
//!
//! Acknowledgements are kept until the next `poll`, which sends them on its `ShareFetch`
//! before acquiring more (the broker applies them first, durably), or until `commit`,
//! which sends them at once with `ShareAcknowledge`. Offsets of one partition
//! acknowledged alike are sent as one range. Each range gets an [`AckOutcome`]:
//! applied (except offsets listed as `not_held`: the member did not hold them under a
//! valid lock, so they are unchanged and may come again), refused as a whole, or unknown
//! (the call carrying it failed for good). `commit` returns its outcomes; outcomes of
//! acknowledgements sent by `poll` are kept (at most [`MAX_KEPT_ACK_OUTCOMES`] ranges,
//! the oldest dropped beyond, with a warning) until
//! [`take_ack_outcomes`](ShareConsumer::take_ack_outcomes). An acknowledgement is lost
//! to the application only when its call failed: then `poll` or `commit` returns the
//! error and its ranges are reported [`AckStatus::Unknown`]; records not applied come
//! again after their locks expire. Delivery is therefore at least once.
//!
//! # Following the coordinator
//!
//! Every call goes to the group's share coordinator, found with `FindCoordinator`
//! (`COORDINATOR_TYPE_SHARE`). A call refused with `NOT_COORDINATOR` or
//! `COORDINATOR_LOADING`, or that failed in transport or timed out, finds the coordinator
//! again and is retried after a doubling backoff (from
//! [`ShareConsumerConfig::retry_backoff`], at most 250 ms, as a consumer group's
//! heartbeats and commits), for at most the request timeout ([`Timeouts::request`]; for `poll`, beyond its own wait);
//! then it fails with the last error. A retried call sends its acknowledgements again:
//! harmless, since the broker applies an acknowledgement only to a record the member
//! holds, but one applied by the lost attempt is reported `not_held` by the retry, so
//! such outcomes say so ([`AckStatus::Applied::retried`]). A
//! `ShareFetch` whose answer was lost has acquired records the member never sees: they
//! come again, with their delivery count raised, when their locks expire.
//!
//! # Cancelling
//!
//! Acknowledgements are cancel-safe: a `poll` or `commit` dropped mid-call keeps them
//! pending, and the next call sends them again. Records a dropped `poll` had acquired are
//! lost to this member until their locks expire. Dropping the consumer without `close`
//! sends nothing: its records come again when their locks expire.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use weir_client::{AckKind, AckMode, ShareConsumer, ShareConsumerConfig};
//!
//! # async fn example() -> Result<(), weir_client::ClientError> {
//! let mut consumer = ShareConsumer::connect(ShareConsumerConfig {
//!     ack_mode: AckMode::Explicit,
//!     ..ShareConsumerConfig::new("emails", ["email-jobs"])
//! })
//! .await?;
//! loop {
//!     for record in consumer.poll(Duration::from_secs(5)).await? {
//!         let sent = record.value.is_some(); // ... do the work ...
//!         let ack = if sent {
//!             AckKind::Accept
//!         } else {
//!             // Try again later, backing off by delivery.
//!             AckKind::ReleaseAfter(Duration::from_secs(1 << record.delivery_count.min(10)))
//!         };
//!         consumer.acknowledge(&record, ack)?;
//!     }
//!     for outcome in consumer.take_ack_outcomes() {
//!         if !outcome.is_applied() {
//!             eprintln!("{outcome:?}");
//!         }
//!     }
//! #   break;
//! }
//! consumer.close().await?;
//! # Ok(())
//! # }
//! ```

mod acks;
pub mod filter;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use weir_batch::Header;
use weir_proto::v1 as pb;
use weir_proto::v1::queues_client::QueuesClient;

pub use self::acks::{
    AckKind, AckOutcome, AckStatus, MAX_ACKS_PER_REQUEST, MAX_OFFSETS_PER_ACK, MAX_RELEASE_DELAY,
};
use self::acks::{AckRange, Ledger, Moment, RecordId};
use crate::connection::{
    BrokerChannel as Channel, ClientTls, ConnectOptions, DEFAULT_BROKER, MAX_MESSAGE_BYTES,
    Timeouts, human_duration,
};
use crate::consumer::{ConsumerRecord, DEFAULT_RECONNECT_BACKOFF, reconnect_backoff};
use crate::error::ClientError;
use crate::group::{CoordinatorLink, MAX_COORDINATOR_RETRY_BACKOFF, TopicPartition};

/// Default most records one poll acquires (the broker's own default).
pub const DEFAULT_MAX_RECORDS: u32 = 500;
/// What every header a dead-letter copy gets starts with (`weir-dlq-source-topic`,
/// `-source-partition`, `-source-offset`, `weir-dlq-group`, `-delivery-count`, `-reason`).
pub const DLQ_HEADER_PREFIX: &str = "weir-dlq-";
/// Most records one poll may ask for (the broker's limit).
pub const MAX_RECORDS_PER_POLL: u32 = 10_000;
/// Most topics a share consumer may read (the broker's limit per `ShareFetch`).
pub const MAX_TOPICS: usize = 100;
/// Longest member id the broker accepts, in characters.
pub const MAX_MEMBER_ID_LEN: usize = 128;
/// Longest one `ShareFetch` waits for records (the broker's limit); a longer poll sends
/// several. A fetch also waits at most half the request timeout, so that its wait and the
/// broker's answer fit in one request timeout.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Most outcomes of acknowledgements sent by `poll` kept for
/// [`ShareConsumer::take_ack_outcomes`] (ranges, not records); beyond it the oldest are
/// dropped, with a warning.
pub const MAX_KEPT_ACK_OUTCOMES: usize = 10_000;

/// Where a share group starts reading a partition it has no state for yet (Kafka's
/// `share.auto.offset.reset`). Only the first member's fetch decides; later ones do not
/// move it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShareStart {
    /// The log end: only records produced from now on (Kafka's default).
    #[default]
    Latest,
    /// The log start.
    Earliest,
}

impl ShareStart {
    pub(crate) fn to_proto(self) -> pb::ShareStart {
        match self {
            ShareStart::Latest => pb::ShareStart::Latest,
            ShareStart::Earliest => pb::ShareStart::Earliest,
        }
    }

    pub(crate) fn from_proto(start: i32) -> Option<ShareStart> {
        match pb::ShareStart::try_from(start).ok()? {
            pb::ShareStart::Latest => Some(ShareStart::Latest),
            pb::ShareStart::Earliest => Some(ShareStart::Earliest),
        }
    }
}

/// How records are acknowledged; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// Records the application did not acknowledge are accepted by the next `poll`,
    /// `commit` or `close`.
    #[default]
    Implicit,
    /// The application acknowledges every record before polling again.
    Explicit,
}

/// Share consumer settings. [`ShareConsumerConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct ShareConsumerConfig {
    /// Bootstrap broker addresses, `host:port` or `http://host:port` (an entry may be a
    /// comma-separated list); the first reachable is asked for the group's coordinator.
    pub brokers: Vec<String>,
    /// The share group: any non-empty string of at most 249 bytes.
    pub group_id: String,
    /// Topics to read (all their partitions): 1 to [`MAX_TOPICS`].
    pub topics: Vec<String>,
    /// The member id: 1 to [`MAX_MEMBER_ID_LEN`] characters. `None` (the default): a new
    /// random UUID for each consumer. Locks belong to the member id, so two consumers
    /// given the same id can acknowledge each other's records.
    pub member_id: Option<String>,
    /// Where the group starts on a partition it has no state for.
    pub start: ShareStart,
    /// Most records one poll acquires: 1 to [`MAX_RECORDS_PER_POLL`]. Each is locked
    /// from the moment it is acquired, so take no more than can be processed within the
    /// group's lock duration.
    pub max_records: u32,
    /// Implicit (the default) or explicit acknowledgement.
    pub ack_mode: AckMode,
    /// First wait before a call that failed retriably is tried again; doubles per
    /// failure, up to 250 ms.
    pub retry_backoff: Duration,
    /// How long connecting to a broker and each request may take; a call is retried for
    /// at most the request timeout.
    pub timeouts: Timeouts,
    /// TLS to the brokers (`None`: plaintext); see [`crate::connection`].
    pub tls: Option<ClientTls>,
}

impl Default for ShareConsumerConfig {
    fn default() -> ShareConsumerConfig {
        ShareConsumerConfig {
            brokers: vec![DEFAULT_BROKER.to_owned()],
            group_id: String::new(),
            topics: Vec::new(),
            member_id: None,
            start: ShareStart::default(),
            max_records: DEFAULT_MAX_RECORDS,
            ack_mode: AckMode::default(),
            retry_backoff: DEFAULT_RECONNECT_BACKOFF,
            timeouts: Timeouts::default(),
            tls: None,
        }
    }
}

impl ShareConsumerConfig {
    /// Defaults for reading `topics` as a member of share group `group_id`.
    pub fn new<I, S>(group_id: impl Into<String>, topics: I) -> ShareConsumerConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ShareConsumerConfig {
            group_id: group_id.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            ..ShareConsumerConfig::default()
        }
    }

    /// Refuses settings the broker would refuse, before anything is sent. Sorts and
    /// dedups the topics.
    fn check(&mut self) -> Result<(), ClientError> {
        crate::group::check_group_id(&self.group_id)?;
        self.topics.sort();
        self.topics.dedup();
        if self.topics.is_empty() || self.topics.len() > MAX_TOPICS {
            return Err(ClientError::Config(format!(
                "a share consumer reads 1 to {MAX_TOPICS} topics, not {}",
                self.topics.len()
            )));
        }
        if self.topics.iter().any(String::is_empty) {
            return Err(ClientError::Config("a topic name is empty".to_owned()));
        }
        if let Some(member_id) = &self.member_id {
            let len = member_id.chars().count();
            if len == 0 || len > MAX_MEMBER_ID_LEN {
                return Err(ClientError::Config(format!(
                    "a member id has 1 to {MAX_MEMBER_ID_LEN} characters, not {len}"
                )));
            }
        }
        check_max_records(self.max_records)?;
        self.timeouts.check()
    }
}

fn check_max_records(max_records: u32) -> Result<(), ClientError> {
    if max_records == 0 || max_records > MAX_RECORDS_PER_POLL {
        return Err(ClientError::Config(format!(
            "max_records is 1 to {MAX_RECORDS_PER_POLL}, not {max_records}"
        )));
    }
    Ok(())
}

/// A record acquired by this member: the record, how often it was delivered, and until
/// when the member holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: u32,
    /// The record's offset.
    pub offset: i64,
    /// Create time or log-append time, ms since the Unix epoch.
    pub timestamp: i64,
    /// Record key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Record value; `None` is a null value.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// How many times the record has been delivered, this time included (1 the first
    /// time).
    pub delivery_count: u32,
    /// When the lock ends, ms since the Unix epoch by the coordinator's clock: after
    /// it, an acknowledgement is `not_held` and the record goes to another member.
    pub lock_deadline_ms: i64,
}

impl ShareRecord {
    /// The record's topic and partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }

    fn id(&self) -> RecordId {
        RecordId {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

impl From<ShareRecord> for ConsumerRecord {
    /// The record without its delivery state.
    fn from(record: ShareRecord) -> ConsumerRecord {
        ConsumerRecord {
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: record.key,
            value: record.value,
            headers: record.headers,
        }
    }
}

/// A member of a share group. See the [module docs](self).
#[derive(Debug)]
pub struct ShareConsumer {
    config: ShareConsumerConfig,
    member_id: String,
    coordinator: CoordinatorLink,
    ledger: Ledger,
    /// Outcomes of acknowledgements sent by `poll` (or by a failed `commit`), not taken.
    outcomes: VecDeque<AckOutcome>,
    /// A fetch was sent: the broker may hold records for this member (`close` then says
    /// it leaves).
    fetched: bool,
}

impl ShareConsumer {
    /// Checks `config` and finds the group's share coordinator. Fails at once if no
    /// bootstrap broker answers or the group id is refused; a coordinator that is not
    /// available yet (a cluster still forming, an election) is looked up again by the
    /// first call.
    pub async fn connect(mut config: ShareConsumerConfig) -> Result<ShareConsumer, ClientError> {
        config.check()?;
        let member_id = config
            .member_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let coordinator = CoordinatorLink::new(
            &config.group_id,
            pb::CoordinatorType::Share,
            &config.brokers,
            ConnectOptions {
                timeouts: config.timeouts,
                tls: config.tls.clone(),
            },
        );
        match coordinator.channel().await {
            Err(error @ ClientError::Connect { .. }) => return Err(error),
            Err(error) if !error.is_retriable() => return Err(error),
            Err(error) => {
                tracing::debug!(group = %config.group_id, %error, "share coordinator not available yet; the first call looks again");
            }
            Ok(_) => {}
        }
        Ok(ShareConsumer {
            config,
            member_id,
            coordinator,
            ledger: Ledger::default(),
            outcomes: VecDeque::new(),
            fetched: false,
        })
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// The member id this consumer sends (chosen at `connect` unless configured).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The topics it reads, sorted.
    pub fn topics(&self) -> &[String] {
        &self.config.topics
    }

    /// Its acknowledgement mode.
    pub fn ack_mode(&self) -> AckMode {
        self.config.ack_mode
    }

    /// Changes how many records the next polls acquire at most (1 to
    /// [`MAX_RECORDS_PER_POLL`]).
    pub fn set_max_records(&mut self, max_records: u32) -> Result<(), ClientError> {
        check_max_records(max_records)?;
        self.config.max_records = max_records;
        Ok(())
    }

    /// Records polls returned that have no final acknowledgement yet (in implicit mode,
    /// the next poll accepts them).
    pub fn unacknowledged(&self) -> usize {
        self.ledger.awaiting()
    }

    /// Acknowledgements made and not sent yet (the next `poll` or `commit` sends them).
    pub fn pending_acknowledgements(&self) -> usize {
        self.ledger.pending()
    }

    /// Sends the pending acknowledgements (in implicit mode, first accepting every
    /// record of the previous poll the application did not acknowledge), then acquires up
    /// to `max_records` records, waiting up to `timeout` for the first; an empty vector
    /// means none came in time. Records come by topic, partition and offset.
    ///
    /// Fails with [`ClientError::Unacknowledged`] in explicit mode while a record of the
    /// previous poll has no final acknowledgement (nothing is sent); with the broker's
    /// error if it refused the request (an unknown topic: [`ClientError::NotFound`]);
    /// with the last error once the coordinator could not be reached for the request
    /// timeout beyond `timeout` (the acknowledgements the call carried are then reported
    /// [`AckStatus::Unknown`] by [`take_ack_outcomes`](Self::take_ack_outcomes)).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ShareRecord>, ClientError> {
        let ranges = self.ledger.prepare(self.config.ack_mode, Moment::Poll)?;
        let poll_deadline = Instant::now() + timeout;
        let give_up = poll_deadline + self.config.timeouts.request;
        // The fetch carries one request's worth; any more go ahead of it.
        let split = ranges.len().saturating_sub(MAX_ACKS_PER_REQUEST);
        let (ahead, carried) = ranges.split_at(split);
        if !ahead.is_empty() {
            let (outcomes, error) = self.send_acknowledgements(ahead, give_up, false).await;
            self.keep_outcomes(outcomes);
            if let Some(error) = error {
                return Err(error);
            }
        }
        let mut carried: &[AckRange] = carried;
        loop {
            let wait = poll_deadline
                .saturating_duration_since(Instant::now())
                .min(self.fetch_wait_cap());
            let request = pb::ShareFetchRequest {
                group_id: self.config.group_id.clone(),
                member_id: self.member_id.clone(),
                topics: self.config.topics.clone(),
                max_records: self.config.max_records,
                // At most MAX_FETCH_WAIT: fits.
                max_wait_ms: wait.as_millis() as u32,
                start: self.config.start.to_proto().into(),
                acknowledgements: carried.iter().map(AckRange::to_proto).collect(),
                // Every partition of the topics.
                partitions: Vec::new(),
            };
            self.fetched = true;
            let answer = self
                .call("fetching records", give_up, |mut queues| {
                    let request = request.clone();
                    async move { queues.share_fetch(request).await }
                })
                .await;
            self.ledger.forget(carried);
            let (response, retried) = match answer {
                Ok(answered) => answered,
                Err(error) => {
                    self.keep_outcomes(acks::unknown(carried, &error));
                    return Err(error);
                }
            };
            self.keep_outcomes(acks::outcomes(carried, response.ack_results, retried));
            carried = &[];
            let records = self.take_delivered(response.records);
            if !records.is_empty() || Instant::now() >= poll_deadline {
                return Ok(records);
            }
        }
    }

    /// Acknowledges a record a poll returned; sent by the next `poll` or `commit`. A
    /// final acknowledgement (all but [`AckKind::Renew`]) finishes the record: it cannot
    /// be acknowledged again. A renew is sent like the others and the record still needs
    /// a final acknowledgement; in explicit mode send it with `commit` while working on
    /// the record, since `poll` refuses to run until the record is finished.
    ///
    /// Fails with [`ClientError::InvalidArgument`] for a record that does not wait for an
    /// acknowledgement (finished already, or not returned by this consumer) and for a
    /// release delay over [`MAX_RELEASE_DELAY`].
    pub fn acknowledge(&mut self, record: &ShareRecord, kind: AckKind) -> Result<(), ClientError> {
        self.ledger.acknowledge(record.id(), kind)
    }

    /// Sends the pending acknowledgements now (in implicit mode, first accepting every
    /// record of the previous poll the application did not acknowledge) and returns
    /// their outcomes, one per range, once the broker has made them durable.
    ///
    /// If a call fails for good (after retrying for the request timeout), returns its
    /// error; the outcomes of this commit (those answered, and the failed call's ranges
    /// as [`AckStatus::Unknown`]) are then kept for
    /// [`take_ack_outcomes`](Self::take_ack_outcomes), and ranges not sent yet stay
    /// pending.
    pub async fn commit(&mut self) -> Result<Vec<AckOutcome>, ClientError> {
        self.finish(Moment::Commit).await
    }

    /// The outcomes of acknowledgements sent by polls (and by commits that failed) since
    /// the last call, oldest first. See the [module docs](self).
    pub fn take_ack_outcomes(&mut self) -> Vec<AckOutcome> {
        self.outcomes.drain(..).collect()
    }

    /// Commits, then stops. In implicit mode records of the last poll not acknowledged
    /// are accepted; in explicit mode they are released (at once to other members). The
    /// last call also tells the broker the member leaves, so it releases whatever else it
    /// holds for this member id at once, counts kept (records of a fetch whose answer
    /// never arrived), as Kafka does when a share session closes. The outcomes are this
    /// last commit's; take earlier ones with [`take_ack_outcomes`](Self::take_ack_outcomes)
    /// first.
    pub async fn close(mut self) -> Result<Vec<AckOutcome>, ClientError> {
        self.finish(Moment::Close).await
    }

    /// `commit` and `close`.
    async fn finish(&mut self, moment: Moment) -> Result<Vec<AckOutcome>, ClientError> {
        let ranges = self.ledger.prepare(self.config.ack_mode, moment)?;
        let leaving = moment == Moment::Close && self.fetched;
        if ranges.is_empty() && !leaving {
            return Ok(Vec::new());
        }
        let give_up = Instant::now() + self.config.timeouts.request;
        match self.send_acknowledgements(&ranges, give_up, leaving).await {
            (outcomes, None) => Ok(outcomes),
            (outcomes, Some(error)) => {
                self.keep_outcomes(outcomes);
                Err(error)
            }
        }
    }

    /// Sends `ranges` with `ShareAcknowledge`, a request's worth at a time; with
    /// `leaving`, the last call (one with no ranges if there are none) says the member
    /// leaves. Stops at the first call that fails for good, returning the outcomes so far
    /// (that call's ranges unknown) and its error; the ranges after it stay pending.
    async fn send_acknowledgements(
        &mut self,
        ranges: &[AckRange],
        give_up: Instant,
        leaving: bool,
    ) -> (Vec<AckOutcome>, Option<ClientError>) {
        let mut outcomes = Vec::with_capacity(ranges.len());
        let mut chunks: Vec<&[AckRange]> = ranges.chunks(MAX_ACKS_PER_REQUEST).collect();
        if chunks.is_empty() && leaving {
            chunks.push(&[]);
        }
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let request = pb::ShareAcknowledgeRequest {
                group_id: self.config.group_id.clone(),
                member_id: self.member_id.clone(),
                acknowledgements: chunk.iter().map(AckRange::to_proto).collect(),
                leaving: leaving && i == last,
            };
            let answer = self
                .call("acknowledging records", give_up, |mut queues| {
                    let request = request.clone();
                    async move { queues.share_acknowledge(request).await }
                })
                .await;
            self.ledger.forget(chunk);
            match answer {
                Ok((response, retried)) => {
                    outcomes.extend(acks::outcomes(chunk, response.results, retried));
                }
                Err(error) => {
                    outcomes.extend(acks::unknown(chunk, &error));
                    return (outcomes, Some(error));
                }
            }
        }
        (outcomes, None)
    }

    /// Runs `call` on the coordinator, finding it again and retrying after retriable
    /// failures until `give_up` (see the module docs). Answers with whether a try before
    /// the answered one failed once it may have reached the broker (a lost answer, a
    /// coordinator that moved after it wrote): what that try carried may have been
    /// applied.
    async fn call<T, F, Fut>(
        &self,
        doing: &str,
        give_up: Instant,
        mut call: F,
    ) -> Result<(T, bool), ClientError>
    where
        F: FnMut(QueuesClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut failures: u32 = 0;
        let mut last: Option<ClientError> = None;
        let mut sent_before = false;
        loop {
            let remaining = give_up.saturating_duration_since(Instant::now());
            let mut sent = false;
            let attempt = async {
                let channel = self.coordinator.channel().await?;
                sent = true;
                call(queues_client(channel))
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(ClientError::from)
            };
            let outcome = tokio::time::timeout(remaining, attempt).await;
            let error = match outcome {
                Ok(Ok(answer)) => return Ok((answer, sent_before)),
                Ok(Err(error)) => error,
                // Cut short by the deadline: the failure before says more, if any.
                Err(_) => last.take().unwrap_or_else(|| {
                    ClientError::DeadlineExceeded(format!(
                        "the coordinator of share group {} did not answer in time",
                        self.config.group_id
                    ))
                }),
            };
            sent_before |= sent;
            self.coordinator.failed(&error);
            if !error.is_retriable() {
                return Err(error);
            }
            let now = Instant::now();
            if now >= give_up {
                return Err(self.gave_up(doing, failures, error));
            }
            failures = failures.saturating_add(1);
            let wait = reconnect_backoff(self.config.retry_backoff, failures)
                .min(MAX_COORDINATOR_RETRY_BACKOFF)
                .min(give_up - now);
            tracing::debug!(group = %self.config.group_id, %error, ?wait, doing, "share group call failed; finding the coordinator again");
            last = Some(error);
            tokio::time::sleep(wait).await;
        }
    }

    /// The error a call that was retried until the request timeout ends with: a failed
    /// connect as it is (it names every broker tried), anything else as a deadline
    /// naming the group and the last error.
    fn gave_up(&self, doing: &str, retries: u32, last: ClientError) -> ClientError {
        if matches!(last, ClientError::Connect { .. }) {
            return last;
        }
        ClientError::DeadlineExceeded(format!(
            "{doing} for share group {}: its coordinator did not answer within {} ({retries} \
             retries); the last error: {last}",
            self.config.group_id,
            human_duration(self.config.timeouts.request)
        ))
    }

    /// The longest one fetch waits: see [`MAX_FETCH_WAIT`].
    fn fetch_wait_cap(&self) -> Duration {
        MAX_FETCH_WAIT.min(self.config.timeouts.request / 2)
    }

    /// The records of a fetch answer, now waiting for acknowledgements.
    fn take_delivered(&mut self, records: Vec<pb::SharedRecord>) -> Vec<ShareRecord> {
        let mut out = Vec::with_capacity(records.len());
        // Records come by topic: one name per run, not per record.
        let mut topic: Option<Arc<str>> = None;
        for shared in records {
            let Some(record) = shared.record else {
                // A broker bug; the record comes again when its lock expires.
                tracing::warn!(group = %self.config.group_id, topic = %shared.topic, partition = shared.partition, "the broker sent an acquired record without its contents; skipped");
                continue;
            };
            let name = match &topic {
                Some(name) if **name == *shared.topic => name.clone(),
                _ => {
                    let name: Arc<str> = Arc::from(shared.topic);
                    topic = Some(name.clone());
                    name
                }
            };
            let record = ShareRecord {
                topic: name,
                partition: shared.partition,
                offset: record.offset,
                timestamp: record.timestamp_ms,
                key: record.key,
                value: record.value,
                headers: record
                    .headers
                    .into_iter()
                    .map(|h| Header {
                        key: h.key,
                        value: h.value,
                    })
                    .collect(),
                delivery_count: shared.delivery_count,
                lock_deadline_ms: shared.lock_deadline_ms,
            };
            self.ledger.delivered(record.id());
            out.push(record);
        }
        out
    }

    /// Keeps outcomes for `take_ack_outcomes`, within [`MAX_KEPT_ACK_OUTCOMES`].
    fn keep_outcomes(&mut self, outcomes: Vec<AckOutcome>) {
        if outcomes.is_empty() {
            return;
        }
        if let Some(AckStatus::Unknown(error)) = outcomes.first().map(|o| &o.status) {
            tracing::warn!(group = %self.config.group_id, ranges = outcomes.len(), %error, "acknowledgements may not have been applied: their call failed");
        }
        self.outcomes.extend(outcomes);
        let excess = self.outcomes.len().saturating_sub(MAX_KEPT_ACK_OUTCOMES);
        if excess > 0 {
            self.outcomes.drain(..excess);
            tracing::warn!(group = %self.config.group_id, dropped = excess, "acknowledgement outcomes were not taken (take_ack_outcomes); dropped the oldest");
        }
    }
}

/// A Queues client on `channel` with the client's message size limits.
fn queues_client(channel: Channel) -> QueuesClient<Channel> {
    QueuesClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests;
