//! The wire forms of the cluster's types on the internal API: fetch session messages
//! (protobuf, batches as `Bytes` untouched), and the controller's replies as serde JSON
//! (its requests, records and images are `weir_cluster::controller::json`'s).
//!
//! `ControllerRequest` derives serde in `weir-cluster`. Its reply cannot yet: a refusal
//! holds error types of `weir-cluster`'s `error` module (`ConfigError`,
//! `TopicNameError`) and `&'static str` reasons. So the reply's serde form is declared
//! here with serde's remote derive ([`ReplyDef`]), which the compiler checks against the
//! real types: a variant or field added there and not here does not compile. Static
//! reasons come back through a small interner ([`intern`]).

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Deserializer, Serialize};
use weir_cluster::controller::{
    BrokerEpoch, ControllerError, ControllerReply, Ineligible, PartitionRegistration,
};
use weir_cluster::replication::{
    FetchAnswer, FetchError, FetchRequest, MAX_FETCHES_PER_MESSAGE, PartitionAnswer, PartitionFetch,
};
use weir_cluster::{BrokerId, ConfigError, TopicNameError};
use weir_proto::internal::v1 as wire;
use wire::partition_answer::Answer;

use super::fetch_session::MAX_PARTITION_FETCH_BYTES;

// --- fetch sessions ---

/// The fetches of one session message, checked against [`MAX_FETCHES_PER_MESSAGE`]
/// before anything is converted; `max_bytes` is capped at
/// [`MAX_PARTITION_FETCH_BYTES`].
pub(super) fn fetches(message: wire::FetchSessionRequest) -> Result<Vec<PartitionFetch>, usize> {
    if message.fetches.len() > MAX_FETCHES_PER_MESSAGE {
        return Err(message.fetches.len());
    }
    Ok(message.fetches.into_iter().map(fetch).collect())
}

fn fetch(f: wire::PartitionFetch) -> PartitionFetch {
    PartitionFetch {
        topic_id: f.topic_id,
        partition: f.partition,
        request: FetchRequest {
            fetch_id: f.fetch_id,
            replica: f.replica,
            broker_epoch: f.broker_epoch,
            leader_epoch: f.leader_epoch,
            fetch_offset: f.fetch_offset,
            flushed_offset: f.flushed_offset.unwrap_or(f.fetch_offset),
            last_fetched_epoch: f.last_fetched_epoch,
        },
        max_bytes: f.max_bytes.min(MAX_PARTITION_FETCH_BYTES),
    }
}

/// A follower's fetches as session messages of at most [`MAX_FETCHES_PER_MESSAGE`]
/// each (the caller may hand over more at once).
pub(super) fn fetch_requests(fetches: Vec<PartitionFetch>) -> Vec<wire::FetchSessionRequest> {
    let mut messages = Vec::with_capacity(fetches.len().div_ceil(MAX_FETCHES_PER_MESSAGE));
    let mut fetches = fetches.into_iter().peekable();
    while fetches.peek().is_some() {
        let chunk = fetches
            .by_ref()
            .take(MAX_FETCHES_PER_MESSAGE)
            .map(|f| wire::PartitionFetch {
                topic_id: f.topic_id,
                partition: f.partition,
                fetch_id: f.request.fetch_id,
                replica: f.request.replica,
                broker_epoch: f.request.broker_epoch,
                leader_epoch: f.request.leader_epoch,
                fetch_offset: f.request.fetch_offset,
                flushed_offset: Some(f.request.flushed_offset),
                last_fetched_epoch: f.request.last_fetched_epoch,
                max_bytes: f.max_bytes,
            })
            .collect();
        messages.push(wire::FetchSessionRequest { fetches: chunk });
    }
    messages
}

/// Answers as one session message; the batches move, they are not copied.
pub(super) fn answers_message(answers: Vec<PartitionAnswer>) -> wire::FetchSessionResponse {
    wire::FetchSessionResponse {
        answers: answers.into_iter().map(answer).collect(),
    }
}

fn answer(a: PartitionAnswer) -> wire::PartitionAnswer {
    let answer = match a.answer {
        FetchAnswer::Data {
            fetch_id,
            leader_epoch,
            from_offset,
            high_watermark,
            log_start_offset,
        } => Answer::Data(wire::FetchedData {
            fetch_id,
            leader_epoch,
            from_offset,
            high_watermark,
            log_start_offset,
            batches: a.batches,
        }),
        FetchAnswer::Diverging {
            fetch_id,
            leader_epoch,
            epoch,
            end_offset,
        } => Answer::Diverging(wire::DivergingEpoch {
            fetch_id,
            leader_epoch,
            epoch,
            end_offset,
        }),
        FetchAnswer::OffsetOutOfRange {
            fetch_id,
            leader_epoch,
            log_start_offset,
        } => Answer::OffsetOutOfRange(wire::OffsetOutOfRange {
            fetch_id,
            leader_epoch,
            log_start_offset,
        }),
        FetchAnswer::Error { fetch_id, error } => Answer::Error(wire::FetchRefused {
            fetch_id,
            code: match error {
                FetchError::NotLeader => wire::FetchErrorCode::NotLeader,
                FetchError::FencedLeaderEpoch => wire::FetchErrorCode::FencedLeaderEpoch,
                FetchError::UnknownLeaderEpoch => wire::FetchErrorCode::UnknownLeaderEpoch,
            } as i32,
        }),
    };
    wire::PartitionAnswer {
        topic_id: a.topic_id,
        partition: a.partition,
        answer: Some(answer),
    }
}

/// Why a leader's session message cannot be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum AnswerError {
    #[error("a message carries {0} answers; the limit is {MAX_FETCHES_PER_MESSAGE}")]
    TooMany(usize),
    #[error("the answer for partition {partition} of topic {topic_id} is empty")]
    Empty { topic_id: String, partition: u32 },
    #[error(
        "the answer for partition {partition} of topic {topic_id} has unknown error code {code}"
    )]
    UnknownCode {
        topic_id: String,
        partition: u32,
        code: i32,
    },
}

/// A leader's session message as answers; the batches move, they are not copied.
pub(super) fn answers(
    message: wire::FetchSessionResponse,
) -> Result<Vec<PartitionAnswer>, AnswerError> {
    if message.answers.len() > MAX_FETCHES_PER_MESSAGE {
        return Err(AnswerError::TooMany(message.answers.len()));
    }
    message.answers.into_iter().map(partition_answer).collect()
}

fn partition_answer(a: wire::PartitionAnswer) -> Result<PartitionAnswer, AnswerError> {
    let (answer, batches) = match a.answer {
        None => {
            return Err(AnswerError::Empty {
                topic_id: a.topic_id,
                partition: a.partition,
            });
        }
        Some(Answer::Data(d)) => (
            FetchAnswer::Data {
                fetch_id: d.fetch_id,
                leader_epoch: d.leader_epoch,
                from_offset: d.from_offset,
                high_watermark: d.high_watermark,
                log_start_offset: d.log_start_offset,
            },
            d.batches,
        ),
        Some(Answer::Diverging(d)) => (
            FetchAnswer::Diverging {
                fetch_id: d.fetch_id,
                leader_epoch: d.leader_epoch,
                epoch: d.epoch,
                end_offset: d.end_offset,
            },
            Default::default(),
        ),
        Some(Answer::OffsetOutOfRange(o)) => (
            FetchAnswer::OffsetOutOfRange {
                fetch_id: o.fetch_id,
                leader_epoch: o.leader_epoch,
                log_start_offset: o.log_start_offset,
            },
            Default::default(),
        ),
        Some(Answer::Error(e)) => {
            let error = match wire::FetchErrorCode::try_from(e.code) {
                Ok(wire::FetchErrorCode::NotLeader) => FetchError::NotLeader,
                Ok(wire::FetchErrorCode::FencedLeaderEpoch) => FetchError::FencedLeaderEpoch,
                Ok(wire::FetchErrorCode::UnknownLeaderEpoch) => FetchError::UnknownLeaderEpoch,
                Ok(wire::FetchErrorCode::Unspecified) | Err(_) => {
                    return Err(AnswerError::UnknownCode {
                        topic_id: a.topic_id,
                        partition: a.partition,
                        code: e.code,
                    });
                }
            };
            (
                FetchAnswer::Error {
                    fetch_id: e.fetch_id,
                    error,
                },
                Default::default(),
            )
        }
    };
    Ok(PartitionAnswer {
        topic_id: a.topic_id,
        partition: a.partition,
        answer,
        batches,
    })
}

// --- controller: serde JSON ---

/// `reply` as the bytes of a `ControllerCallReply`.
pub(super) fn encode_reply(reply: &ControllerReply) -> Vec<u8> {
    let mut out = Vec::new();
    ReplyDef::serialize(reply, &mut serde_json::Serializer::new(&mut out))
        .expect("controller replies serialise");
    out
}

pub(super) fn decode_reply(bytes: &[u8]) -> Result<ControllerReply, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let reply = ReplyDef::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(reply)
}

/// [`ControllerReply`]'s serde form.
#[derive(Serialize, Deserialize)]
#[serde(remote = "ControllerReply")]
enum ReplyDef {
    Refused(#[serde(with = "ErrorDef")] ControllerError),
    ClusterCreated,
    Registered {
        broker_epoch: BrokerEpoch,
    },
    Heartbeat {
        fenced: bool,
        should_shutdown: bool,
        // Absent from a controller of an earlier release.
        #[serde(default)]
        through: weir_cluster::controller::MetadataOffset,
    },
    TopicCreated {
        topic_id: String,
    },
    PartitionsCreated,
    TopicDeleted {
        topic_id: String,
    },
    TopicConfigAltered,
    PartitionAltered(PartitionRegistration),
    PartitionsReassigned(Vec<(u32, PartitionRegistration)>),
    LeadersElected(Vec<weir_cluster::controller::elect_leaders::ElectionResult>),
    ProducerIds {
        first: i64,
        count: u32,
    },
    ProducerInitialized {
        producer_id: i64,
        producer_epoch: i16,
    },
    CredentialUpserted,
    CredentialsDeleted(Vec<String>),
    AclsCreated,
    AclsDeleted(Vec<Vec<weir_cluster::security::AclBinding>>),
    ClientQuotasAltered,
    BrokerConfigsAltered,
    GroupConfigsAltered,
    TokenCreated,
    TokenRevoked(weir_cluster::tokens::StoredToken),
    ExchangesChanged {
        through: weir_cluster::controller::MetadataOffset,
    },
}

/// [`ControllerError`]'s serde form.
#[derive(Serialize, Deserialize)]
#[serde(remote = "ControllerError")]
enum ErrorDef {
    ClusterNotCreated,
    MetadataLevelTooLow {
        needed: u16,
        behind: Vec<BrokerId>,
    },
    InvalidClusterId(String),
    InconsistentClusterId {
        given: String,
        expected: String,
    },
    StaleBrokerEpoch {
        node: BrokerId,
        given: BrokerEpoch,
        current: Option<BrokerEpoch>,
    },
    FencedLeaderEpoch {
        topic_id: String,
        partition: u32,
        given: i32,
        current: i32,
    },
    NotLeader {
        topic_id: String,
        partition: u32,
        node: BrokerId,
        leader: BrokerId,
    },
    InvalidUpdateVersion {
        topic_id: String,
        partition: u32,
        given: i32,
        current: i32,
    },
    IneligibleReplica {
        topic_id: String,
        partition: u32,
        replica: BrokerId,
        reason: Ineligible,
    },
    InvalidIsr {
        topic_id: String,
        partition: u32,
        isr: Vec<BrokerId>,
        replicas: Vec<BrokerId>,
        #[serde(deserialize_with = "static_str")]
        reason: StaticStr,
    },
    InvalidReassignment {
        topic: String,
        partition: u32,
        reason: String,
    },
    InvalidReplicaAssignment {
        topic: String,
        partition: u32,
        reason: String,
    },
    TooManyElections {
        requested: usize,
        max: usize,
    },
    TopicExists(String),
    UnknownTopic(String),
    UnknownTopicId(String),
    UnknownPartition {
        topic_id: String,
        partition: u32,
        count: u32,
    },
    InvalidReplicationFactor {
        replication_factor: u32,
        brokers: usize,
    },
    InvalidPartitionCount {
        count: u32,
        max: u32,
    },
    PartitionCountNotIncreased {
        topic: String,
        current: u32,
        requested: u32,
    },
    InvalidTopicName(#[serde(with = "TopicNameErrorDef")] TopicNameError),
    InvalidConfig(#[serde(with = "ConfigErrorDef")] ConfigError),
    InvalidRegistration {
        node: BrokerId,
        reason: String,
    },
    InvalidProducerName(String),
    TooManyNamedProducers,
    InvalidCredential {
        user: String,
        reason: String,
    },
    UnknownCredential {
        user: String,
        what: String,
    },
    TooManyUsers,
    InvalidAcl {
        acl: String,
        reason: String,
    },
    TooManyAcls {
        requested: usize,
    },
    TooManyAclsInRequest {
        given: usize,
    },
    InvalidQuota {
        entity: String,
        reason: String,
    },
    InvalidToken(String),
    UnknownToken {
        id: String,
    },
    TooManyTokens {
        what: String,
        max: usize,
    },
    Exchange(weir_cluster::exchanges::ExchangeError),
    TopicIdsExhausted {
        draws: usize,
        last: String,
    },
}

/// [`TopicNameError`]'s serde form.
#[derive(Serialize, Deserialize)]
#[serde(remote = "TopicNameError")]
enum TopicNameErrorDef {
    Empty,
    TooLong { len: usize, max: usize },
    Dots,
    BadCharacter { name: String, ch: char },
}

/// [`ConfigError`]'s serde form.
#[derive(Serialize, Deserialize)]
#[serde(remote = "ConfigError")]
enum ConfigErrorDef {
    UnknownKey(String),
    BadValue {
        key: String,
        value: String,
        #[serde(deserialize_with = "static_str")]
        expected: StaticStr,
    },
    Invalid(String),
    Group(String),
}

/// A `&'static str` field, named so that serde's derive does not take it for a string
/// borrowed from the input (which would tie the deserializer to `'static` input).
type StaticStr = &'static str;

fn static_str<'de, D: Deserializer<'de>>(deserializer: D) -> Result<&'static str, D::Error> {
    String::deserialize(deserializer).map(intern)
}

/// Distinct static strings [`intern`] keeps. The strings are the controller's fixed
/// reasons (a few dozen literals in the sender, which runs this same build), so this
/// is never reached in practice; it bounds what a misbehaving peer can make us keep.
const MAX_INTERNED_STRINGS: usize = 256;
/// Longest string [`intern`] keeps.
const MAX_INTERNED_CHARS: usize = 256;

/// `s` as a `&'static str`: each distinct string is leaked once and reused after, so the
/// memory kept is bounded by [`MAX_INTERNED_STRINGS`] × [`MAX_INTERNED_CHARS`] bytes.
fn intern(s: String) -> &'static str {
    static INTERNED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut interned = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = interned.get(s.as_str()) {
        return known;
    }
    if interned.len() >= MAX_INTERNED_STRINGS || s.len() > MAX_INTERNED_CHARS {
        return "(the reason was not kept: too many distinct reasons, or too long)";
    }
    let leaked: &'static str = Box::leak(s.into_boxed_str());
    interned.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn refusals_round_trip_with_their_static_reasons() {
        let refusals = [
            ControllerError::InvalidIsr {
                topic_id: "t".into(),
                partition: 3,
                isr: vec![1, 1],
                replicas: vec![1, 2],
                reason: "a member is listed twice",
            },
            ControllerError::InvalidConfig(ConfigError::BadValue {
                key: "retention.ms".into(),
                value: "x".into(),
                expected: "an integer, or -1 for no limit",
            }),
            ControllerError::InvalidTopicName(TopicNameError::BadCharacter {
                name: "a/b".into(),
                ch: '/',
            }),
            ControllerError::IneligibleReplica {
                topic_id: "t".into(),
                partition: 0,
                replica: 2,
                reason: Ineligible::StaleBrokerEpoch {
                    given: 4,
                    current: 9,
                },
            },
            ControllerError::StaleBrokerEpoch {
                node: 1,
                given: 3,
                current: None,
            },
            ControllerError::Exchange(weir_cluster::exchanges::ExchangeError::InUse {
                name: "logs".into(),
                bindings: 2,
            }),
        ];
        let changed = ControllerReply::ExchangesChanged { through: 42 };
        assert_eq!(decode_reply(&encode_reply(&changed)).unwrap(), changed);
        for refusal in refusals {
            let reply = ControllerReply::Refused(refusal);
            let back = decode_reply(&encode_reply(&reply)).unwrap();
            assert_eq!(back, reply);
            assert_eq!(back.clone(), decode_reply(&encode_reply(&back)).unwrap());
        }
        // Interning hands out one string per distinct reason.
        let a = intern("same".to_string());
        let b = intern("same".to_string());
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn a_reply_with_trailing_bytes_is_refused() {
        let mut bytes = encode_reply(&ControllerReply::ClusterCreated);
        bytes.extend_from_slice(b" {}");
        assert!(decode_reply(&bytes).is_err());
    }

    #[test]
    fn session_messages_round_trip_and_are_split_at_the_limit() {
        let fetch = |partition| PartitionFetch {
            topic_id: "topic-id".into(),
            partition,
            request: FetchRequest {
                fetch_id: 7,
                replica: 2,
                broker_epoch: 11,
                leader_epoch: 3,
                fetch_offset: 100,
                flushed_offset: 90,
                last_fetched_epoch: 2,
            },
            max_bytes: 1 << 20,
        };
        let all: Vec<PartitionFetch> = (0..MAX_FETCHES_PER_MESSAGE as u32 + 1).map(fetch).collect();
        let messages = fetch_requests(all.clone());
        assert_eq!(
            messages.iter().map(|m| m.fetches.len()).collect::<Vec<_>>(),
            [MAX_FETCHES_PER_MESSAGE, 1]
        );
        let back: Vec<PartitionFetch> = messages
            .into_iter()
            .flat_map(|m| fetches(m).unwrap())
            .collect();
        assert_eq!(back, all);
        assert!(fetch_requests(Vec::new()).is_empty());

        // A follower from before pipelining sends no flushed offset: its fetch offset
        // is its position.
        let mut old = fetch_requests(vec![fetch(0)]).pop().unwrap();
        old.fetches[0].flushed_offset = None;
        assert_eq!(fetches(old).unwrap()[0].request.flushed_offset, 100);

        let mut huge = fetch(0);
        huge.max_bytes = u32::MAX;
        let message = fetch_requests(vec![huge]).pop().unwrap();
        assert_eq!(
            fetches(message).unwrap()[0].max_bytes,
            MAX_PARTITION_FETCH_BYTES
        );

        let answers_sent = vec![
            PartitionAnswer {
                topic_id: "t".into(),
                partition: 0,
                answer: FetchAnswer::Data {
                    fetch_id: 1,
                    leader_epoch: 4,
                    from_offset: 10,
                    high_watermark: None,
                    log_start_offset: 0,
                },
                batches: Bytes::from_static(b"batches as stored"),
            },
            PartitionAnswer {
                topic_id: "t".into(),
                partition: 1,
                answer: FetchAnswer::Error {
                    fetch_id: 2,
                    error: FetchError::UnknownLeaderEpoch,
                },
                batches: Bytes::new(),
            },
        ];
        let back = answers(answers_message(answers_sent.clone())).unwrap();
        assert_eq!(back, answers_sent);

        let mut bad = answers_message(answers_sent);
        bad.answers[1].answer = Some(Answer::Error(wire::FetchRefused {
            fetch_id: 2,
            code: 42,
        }));
        assert!(matches!(
            answers(bad),
            Err(AnswerError::UnknownCode { code: 42, .. })
        ));
    }
}
