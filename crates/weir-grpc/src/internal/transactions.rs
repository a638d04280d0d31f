//! Transactions across brokers (`weir.internal.v1.Transactions`, issue 44): markers
//! written by the leaders of a transaction's partitions, and produce-time checks made
//! by the coordinator.
//!
//! A transaction coordinator ends a transaction by having the leader of each of its
//! partitions write a marker (Kafka's WriteTxnMarkers). [`GrpcMarkerWriter`] is the
//! coordinator's [`MarkerWriter`]: it groups a request's partitions by their leader in
//! this broker's metadata, writes the ones this broker leads in-process
//! ([`write_markers_here`]) and sends the others to their leaders' internal listeners,
//! all at once, each call bounded by [`MARKER_CALL_TIMEOUT`]. A partition whose leader
//! is unknown, unreachable or too slow is Retriable: the coordinator sends its marker
//! again after a back-off (`weir_cluster::txn::MARKER_RETRY_BACKOFF`).
//!
//! [`TransactionsService`] is the leader's side: it writes the markers sent to it with
//! [`write_markers_here`], the same function as the local path, as the internal
//! principal.
//!
//! A partition leader checks a transactional produce with the coordinator of the
//! producer's transactional id (KIP-890's verify-only AddPartitionsToTxn): where that is
//! another broker, [`GrpcTxnVerifier`] (the core's [`TxnVerifier`]) asks it with
//! `Transactions.VerifyPartitions`, bounded by [`VERIFY_CALL_TIMEOUT`]; the coordinator
//! answers with [`verify_here`]. A coordinator that cannot be reached is
//! COORDINATOR_NOT_AVAILABLE, which the core turns into a retriable refusal of the
//! produce. Only brokers reach it: on a secured cluster the internal services answer
//! only callers whose certificate names a super user (`authn.rs`), and brokers dial
//! each other with theirs ([`PeerChannels`] with the peer TLS dialer).

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use tonic::{Request, Response, Status};
use weir_broker::groups::Coordinator;
use weir_broker::limits::MAX_PARTITIONS_PER_REQUEST;
use weir_broker::transactions::{TxnVerifier, VerifyFuture, verify_here, write_markers_here};
use weir_broker::{Broker, BrokerError, Reason};
use weir_cluster::peer_log::PeerLog;
use weir_cluster::txn::{
    AddPartitions, MarkerFuture, MarkerOutcome, MarkerRequest, MarkerWriter, PartitionVerdicts,
    TopicPartition, TransactionError, TxnError, TxnResult, TxnVersion,
};
use weir_proto::internal::v1::transactions_client::TransactionsClient;
use weir_proto::internal::v1::transactions_server::Transactions;
use weir_proto::internal::v1::{self as pb};
use weir_security::dial::TlsDialer;

use super::peers::PeerChannels;
use crate::status::internal::{malformed, too_many_markers};

/// Longest one WriteTxnMarkers call to another broker may take, connecting included.
/// Above the leader's own wait for its markers to replicate
/// ([`DEFAULT_PRODUCE_TIMEOUT`](weir_broker::limits::DEFAULT_PRODUCE_TIMEOUT)), so a
/// leader that answers is heard; a leader that does not is retried after that.
pub const MARKER_CALL_TIMEOUT: Duration = Duration::from_secs(35);

/// The coordinator's marker writer: local partitions in-process, the others at their
/// leaders over the internal `Transactions` service (module docs).
#[derive(Debug)]
pub struct GrpcMarkerWriter {
    broker: Weak<Broker>,
    channels: PeerChannels,
    failures: PeerLog,
}

impl GrpcMarkerWriter {
    /// A writer for the coordinator of `broker` that dials other brokers with `tls`, or
    /// in plaintext.
    pub fn new(broker: Weak<Broker>, tls: Option<TlsDialer>) -> GrpcMarkerWriter {
        GrpcMarkerWriter {
            broker,
            channels: PeerChannels::new(tls),
            failures: PeerLog::new("transaction markers"),
        }
    }

    async fn write_markers(&self, request: MarkerRequest) -> Vec<(TopicPartition, MarkerOutcome)> {
        let Some(broker) = self.broker.upgrade() else {
            return retriable(request.partitions);
        };
        let (local, remote, mut outcomes) = by_leader(&broker, request.partitions.clone());
        let here = async {
            if local.is_empty() {
                return Vec::new();
            }
            let local = MarkerRequest {
                partitions: local,
                ..request.clone()
            };
            write_markers_here(&broker, local).await
        };
        let sent = remote.into_iter().map(|(leader, partitions)| {
            let request = MarkerRequest {
                partitions,
                ..request.clone()
            };
            self.send(&broker, leader, request)
        });
        let (here, sent) = futures_util::future::join(here, join_all(sent)).await;
        outcomes.extend(here);
        outcomes.extend(sent.into_iter().flatten());
        outcomes
    }

    /// `request`'s markers written by broker `leader`; every partition Retriable if the
    /// call fails, and any partition it does not answer.
    async fn send(
        &self,
        broker: &Broker,
        leader: i32,
        request: MarkerRequest,
    ) -> Vec<(TopicPartition, MarkerOutcome)> {
        let address = broker
            .registry()
            .cluster()
            .image()
            .broker(leader)
            .map(|b| b.endpoints.internal().to_owned())
            .filter(|a| !a.is_empty());
        let Some(address) = address else {
            self.failures
                .failed(leader, &"the metadata has no internal address for it");
            return retriable(request.partitions);
        };
        let channel = match self.channels.channel(&address) {
            Ok(c) => c,
            Err(e) => {
                self.failures.failed(leader, &format!("{address:?}: {e}"));
                return retriable(request.partitions);
            }
        };
        let mut call = Request::new(pb::WriteTxnMarkersRequest {
            markers: vec![entry(&request)],
        });
        call.set_timeout(MARKER_CALL_TIMEOUT);
        let answer = tokio::time::timeout(
            MARKER_CALL_TIMEOUT,
            TransactionsClient::new(channel).write_txn_markers(call),
        )
        .await;
        let reply = match answer {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => {
                self.failures.failed(leader, &status);
                return retriable(request.partitions);
            }
            Err(_) => {
                self.failures.failed(
                    leader,
                    &format!("no answer within {} s", MARKER_CALL_TIMEOUT.as_secs()),
                );
                return retriable(request.partitions);
            }
        };
        self.failures.answered(leader);
        let mut answered: BTreeMap<(String, i32), MarkerOutcome> = reply
            .results
            .into_iter()
            .flat_map(|r| r.partitions)
            .filter_map(|p| {
                let partition = i32::try_from(p.partition).ok()?;
                Some(((p.topic, partition), outcome_of(p.outcome)))
            })
            .collect();
        request
            .partitions
            .into_iter()
            .map(|tp| {
                let outcome = answered
                    .remove(&(tp.topic.clone(), tp.partition))
                    .unwrap_or(MarkerOutcome::Retriable);
                (tp, outcome)
            })
            .collect()
    }
}

impl MarkerWriter for GrpcMarkerWriter {
    fn write(&self, request: MarkerRequest) -> MarkerFuture<'_> {
        Box::pin(self.write_markers(request))
    }
}

/// Partitions this broker leads (and those it cannot place: an unknown topic or
/// partition, which the local path answers UnknownPartition), partitions grouped by the
/// other broker that leads them, and the outcomes already known: Retriable for a
/// partition without a leader now.
#[allow(clippy::type_complexity)]
fn by_leader(
    broker: &Broker,
    partitions: Vec<TopicPartition>,
) -> (
    Vec<TopicPartition>,
    BTreeMap<i32, Vec<TopicPartition>>,
    Vec<(TopicPartition, MarkerOutcome)>,
) {
    let me = broker.node_id();
    let registry = broker.registry();
    let (mut local, mut remote, mut known) = (Vec::new(), BTreeMap::new(), Vec::new());
    for tp in partitions {
        let leader = usize::try_from(tp.partition).ok().and_then(|index| {
            let topic = registry.topic(&tp.topic).ok()?;
            topic.registrations().get(index).map(|r| r.leader)
        });
        match leader {
            None => local.push(tp),
            Some(l) if l == me => local.push(tp),
            Some(l) if l < 0 => known.push((tp, MarkerOutcome::Retriable)),
            Some(l) => remote.entry(l).or_insert_with(Vec::new).push(tp),
        }
    }
    (local, remote, known)
}

fn retriable(partitions: Vec<TopicPartition>) -> Vec<(TopicPartition, MarkerOutcome)> {
    partitions
        .into_iter()
        .map(|tp| (tp, MarkerOutcome::Retriable))
        .collect()
}

/// Partitions on the wire, grouped by topic in the order met.
fn wire_topics(partitions: &[TopicPartition]) -> Vec<pb::MarkerTopic> {
    let mut topics: Vec<pb::MarkerTopic> = Vec::new();
    for tp in partitions {
        // Negative partitions never reach here: `by_leader` keeps them local, and a
        // produce's partitions are indexes.
        let partition = u32::try_from(tp.partition).unwrap_or(u32::MAX);
        match topics.iter_mut().find(|t| t.topic == tp.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(pb::MarkerTopic {
                topic: tp.topic.clone(),
                partitions: vec![partition],
            }),
        }
    }
    topics
}

/// Wire partitions as the coordinator's, or why they are malformed (`what`: the message
/// they came in, for the error).
fn partitions_of(what: &str, topics: Vec<pb::MarkerTopic>) -> Result<Vec<TopicPartition>, Status> {
    let mut partitions = Vec::new();
    for t in topics {
        for p in t.partitions {
            let partition = i32::try_from(p).map_err(|_| {
                malformed(
                    what,
                    format!("partition {p} of {} is not an int32", t.topic),
                )
            })?;
            partitions.push(TopicPartition::new(t.topic.clone(), partition));
        }
    }
    Ok(partitions)
}

/// A marker request on the wire.
fn entry(request: &MarkerRequest) -> pb::TxnMarkerEntry {
    pb::TxnMarkerEntry {
        producer_id: request.producer_id,
        producer_epoch: i32::from(request.producer_epoch),
        coordinator_epoch: request.coordinator_epoch,
        commit: request.result == TxnResult::Commit,
        transaction_version: u32::try_from(request.transaction_version.0).unwrap_or(0),
        topics: wire_topics(&request.partitions),
    }
}

/// A wire entry as the marker request it carries, or why it is malformed.
fn request_of(entry: pb::TxnMarkerEntry) -> Result<MarkerRequest, Status> {
    let producer_epoch = i16::try_from(entry.producer_epoch).map_err(|_| {
        malformed(
            "transaction marker",
            format!("producer epoch {} is not an int16", entry.producer_epoch),
        )
    })?;
    let version = i16::try_from(entry.transaction_version).map_err(|_| {
        malformed(
            "transaction marker",
            format!(
                "transaction version {} is not an int16",
                entry.transaction_version
            ),
        )
    })?;
    let partitions = partitions_of("transaction marker", entry.topics)?;
    Ok(MarkerRequest {
        producer_id: entry.producer_id,
        producer_epoch,
        coordinator_epoch: entry.coordinator_epoch,
        result: if entry.commit {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
        transaction_version: TxnVersion(version),
        partitions,
    })
}

fn wire_outcome(outcome: MarkerOutcome) -> pb::MarkerOutcome {
    match outcome {
        MarkerOutcome::Written => pb::MarkerOutcome::Written,
        MarkerOutcome::Retriable => pb::MarkerOutcome::Retriable,
        MarkerOutcome::StaleProducerEpoch => pb::MarkerOutcome::StaleProducerEpoch,
        MarkerOutcome::StaleCoordinatorEpoch => pb::MarkerOutcome::StaleCoordinatorEpoch,
        MarkerOutcome::UnknownPartition => pb::MarkerOutcome::UnknownPartition,
    }
}

/// A wire outcome as the coordinator acts on it; an unset or unknown one is Retriable.
fn outcome_of(outcome: i32) -> MarkerOutcome {
    match pb::MarkerOutcome::try_from(outcome) {
        Ok(pb::MarkerOutcome::Written) => MarkerOutcome::Written,
        Ok(pb::MarkerOutcome::StaleProducerEpoch) => MarkerOutcome::StaleProducerEpoch,
        Ok(pb::MarkerOutcome::StaleCoordinatorEpoch) => MarkerOutcome::StaleCoordinatorEpoch,
        Ok(pb::MarkerOutcome::UnknownPartition) => MarkerOutcome::UnknownPartition,
        Ok(pb::MarkerOutcome::Retriable | pb::MarkerOutcome::Unspecified) | Err(_) => {
            MarkerOutcome::Retriable
        }
    }
}

/// The leader's side of `Transactions` over the broker core.
#[derive(Debug)]
pub struct TransactionsService {
    broker: Arc<Broker>,
}

impl TransactionsService {
    pub fn new(broker: Arc<Broker>) -> TransactionsService {
        TransactionsService { broker }
    }
}

#[tonic::async_trait]
impl Transactions for TransactionsService {
    async fn write_txn_markers(
        &self,
        request: Request<pb::WriteTxnMarkersRequest>,
    ) -> Result<Response<pb::WriteTxnMarkersReply>, Status> {
        let request = request.into_inner();
        let count: usize = request
            .markers
            .iter()
            .flat_map(|m| &m.topics)
            .map(|t| t.partitions.len())
            .sum();
        if count > MAX_PARTITIONS_PER_REQUEST {
            return Err(too_many_markers(count, MAX_PARTITIONS_PER_REQUEST));
        }
        let requests = request
            .markers
            .into_iter()
            .map(request_of)
            .collect::<Result<Vec<_>, Status>>()?;
        let written = join_all(
            requests
                .into_iter()
                .map(|r| write_markers_here(&self.broker, r)),
        )
        .await;
        let results = written
            .into_iter()
            .map(|outcomes| pb::TxnMarkerResult {
                partitions: outcomes
                    .into_iter()
                    .map(|(tp, outcome)| pb::MarkerPartitionResult {
                        topic: tp.topic,
                        partition: u32::try_from(tp.partition).unwrap_or(u32::MAX),
                        outcome: wire_outcome(outcome) as i32,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::WriteTxnMarkersReply { results }))
    }

    async fn verify_partitions(
        &self,
        request: Request<pb::VerifyPartitionsRequest>,
    ) -> Result<Response<pb::VerifyPartitionsReply>, Status> {
        let add = add_of(request.into_inner())?;
        let reply = match verify_here(&self.broker, add).await {
            Ok(verdicts) => pb::VerifyPartitionsReply {
                refused: pb::TxnRefusal::None as i32,
                partitions: verdicts
                    .into_iter()
                    .map(|(tp, verdict)| pb::PartitionVerdict {
                        topic: tp.topic,
                        partition: u32::try_from(tp.partition).unwrap_or(u32::MAX),
                        refusal: verdict.err().map_or(pb::TxnRefusal::None, wire_refusal) as i32,
                    })
                    .collect(),
            },
            Err(e) => pb::VerifyPartitionsReply {
                refused: wire_refusal(refusal_of(&e)) as i32,
                partitions: Vec::new(),
            },
        };
        Ok(Response::new(reply))
    }
}

/// A verify request as the coordinator's check, or why it is malformed.
fn add_of(request: pb::VerifyPartitionsRequest) -> Result<AddPartitions, Status> {
    let count: usize = request.topics.iter().map(|t| t.partitions.len()).sum();
    if count > MAX_PARTITIONS_PER_REQUEST {
        return Err(too_many_markers(count, MAX_PARTITIONS_PER_REQUEST));
    }
    let producer_epoch = i16::try_from(request.producer_epoch).map_err(|_| {
        malformed(
            "transaction check",
            format!("producer epoch {} is not an int16", request.producer_epoch),
        )
    })?;
    Ok(AddPartitions {
        transactional_id: request.transactional_id,
        producer_id: request.producer_id,
        producer_epoch,
        partitions: partitions_of("transaction check", request.topics)?,
        verify_only: true,
    })
}

/// The coordinator's refusal as one of Kafka's transaction errors.
fn refusal_of(e: &TransactionError) -> TxnError {
    match e {
        TransactionError::Refused(e) => *e,
        TransactionError::NotCoordinator { .. } => TxnError::NotCoordinator,
        TransactionError::Loading { .. } => TxnError::CoordinatorLoadInProgress,
        TransactionError::CorruptRecord { .. } | TransactionError::Cluster(_) => {
            TxnError::CoordinatorNotAvailable
        }
    }
}

fn wire_refusal(e: TxnError) -> pb::TxnRefusal {
    use pb::TxnRefusal as R;
    match e {
        TxnError::NotCoordinator => R::NotCoordinator,
        TxnError::CoordinatorLoadInProgress => R::CoordinatorLoadInProgress,
        TxnError::CoordinatorNotAvailable => R::CoordinatorNotAvailable,
        TxnError::ConcurrentTransactions => R::ConcurrentTransactions,
        TxnError::InvalidProducerEpoch => R::InvalidProducerEpoch,
        TxnError::ProducerFenced => R::ProducerFenced,
        TxnError::InvalidTxnState => R::InvalidTxnState,
        TxnError::InvalidProducerIdMapping => R::InvalidProducerIdMapping,
        TxnError::InvalidTransactionTimeout => R::InvalidTransactionTimeout,
        TxnError::TransactionalIdNotFound => R::TransactionalIdNotFound,
        TxnError::TransactionAbortable => R::TransactionAbortable,
        TxnError::InvalidRequest => R::InvalidRequest,
        TxnError::TooManyPartitions => R::TooManyPartitions,
        TxnError::TooManyTransactionalIds => R::TooManyTransactionalIds,
        TxnError::UnknownServerError => R::UnknownServerError,
    }
}

/// A wire refusal as Kafka's error; `None` for none. An unknown value is
/// UNKNOWN_SERVER_ERROR.
fn refusal_from_wire(value: i32) -> Option<TxnError> {
    use pb::TxnRefusal as R;
    Some(match R::try_from(value) {
        Ok(R::None) => return None,
        Ok(R::NotCoordinator) => TxnError::NotCoordinator,
        Ok(R::CoordinatorLoadInProgress) => TxnError::CoordinatorLoadInProgress,
        Ok(R::CoordinatorNotAvailable) => TxnError::CoordinatorNotAvailable,
        Ok(R::ConcurrentTransactions) => TxnError::ConcurrentTransactions,
        Ok(R::InvalidProducerEpoch) => TxnError::InvalidProducerEpoch,
        Ok(R::ProducerFenced) => TxnError::ProducerFenced,
        Ok(R::InvalidTxnState) => TxnError::InvalidTxnState,
        Ok(R::InvalidProducerIdMapping) => TxnError::InvalidProducerIdMapping,
        Ok(R::InvalidTransactionTimeout) => TxnError::InvalidTransactionTimeout,
        Ok(R::TransactionalIdNotFound) => TxnError::TransactionalIdNotFound,
        Ok(R::TransactionAbortable) => TxnError::TransactionAbortable,
        Ok(R::InvalidRequest) => TxnError::InvalidRequest,
        Ok(R::TooManyPartitions) => TxnError::TooManyPartitions,
        Ok(R::TooManyTransactionalIds) => TxnError::TooManyTransactionalIds,
        Ok(R::UnknownServerError) | Err(_) => TxnError::UnknownServerError,
    })
}

/// Longest a produce-time check at a coordinator on another broker may take, connecting
/// included: the produce waits for it. Past it the produce is refused with a retriable
/// error.
pub const VERIFY_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Produce-time checks at the transaction coordinator on another broker, over its
/// internal listener (the partition leader's side of `Transactions.VerifyPartitions`).
#[derive(Debug)]
pub struct GrpcTxnVerifier {
    channels: PeerChannels,
}

impl GrpcTxnVerifier {
    /// A verifier that dials coordinators with `tls`, or in plaintext.
    pub fn new(tls: Option<TlsDialer>) -> GrpcTxnVerifier {
        GrpcTxnVerifier {
            channels: PeerChannels::new(tls),
        }
    }

    async fn verify_at(
        &self,
        coordinator: &Coordinator,
        add: AddPartitions,
    ) -> Result<PartitionVerdicts, BrokerError> {
        let unavailable = |why: String| {
            BrokerError::new(
                Reason::CoordinatorNotAvailable,
                format!(
                    "the transaction coordinator, broker {}: {why}",
                    coordinator.node_id
                ),
            )
        };
        let address = coordinator.endpoints.internal();
        if address.is_empty() {
            return Err(unavailable("no internal address is known".into()));
        }
        let channel = self
            .channels
            .channel(address)
            .map_err(|e| unavailable(format!("{address:?}: {e}")))?;
        let mut call = Request::new(pb::VerifyPartitionsRequest {
            transactional_id: add.transactional_id.clone(),
            producer_id: add.producer_id,
            producer_epoch: i32::from(add.producer_epoch),
            topics: wire_topics(&add.partitions),
        });
        call.set_timeout(VERIFY_CALL_TIMEOUT);
        let reply = tokio::time::timeout(
            VERIFY_CALL_TIMEOUT,
            TransactionsClient::new(channel).verify_partitions(call),
        )
        .await
        .map_err(|_| {
            unavailable(format!(
                "no answer within {} s",
                VERIFY_CALL_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|status| unavailable(status.message().to_string()))?
        .into_inner();
        if let Some(e) = refusal_from_wire(reply.refused) {
            return Err(BrokerError::from(TransactionError::Refused(e)));
        }
        let mut verdicts: BTreeMap<(String, i32), Result<(), TxnError>> = reply
            .partitions
            .into_iter()
            .filter_map(|p| {
                let partition = i32::try_from(p.partition).ok()?;
                Some((
                    (p.topic, partition),
                    refusal_from_wire(p.refusal).map_or(Ok(()), Err),
                ))
            })
            .collect();
        Ok(add
            .partitions
            .into_iter()
            .map(|tp| {
                // A partition the answer leaves out is not known to be in the transaction.
                let verdict = verdicts
                    .remove(&(tp.topic.clone(), tp.partition))
                    .unwrap_or(Err(TxnError::TransactionAbortable));
                (tp, verdict)
            })
            .collect())
    }
}

impl TxnVerifier for GrpcTxnVerifier {
    fn verify<'a>(&'a self, coordinator: &'a Coordinator, add: AddPartitions) -> VerifyFuture<'a> {
        Box::pin(self.verify_at(coordinator, add))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> MarkerRequest {
        MarkerRequest {
            producer_id: 7,
            producer_epoch: 3,
            coordinator_epoch: 2,
            result: TxnResult::Abort,
            transaction_version: TxnVersion::TV2,
            partitions: vec![
                TopicPartition::new("a", 0),
                TopicPartition::new("b", 4),
                TopicPartition::new("a", 2),
            ],
        }
    }

    #[test]
    fn a_marker_request_survives_the_wire() {
        let back = request_of(entry(&request())).unwrap();
        let sent = request();
        assert_eq!(back.producer_id, sent.producer_id);
        assert_eq!(back.producer_epoch, sent.producer_epoch);
        assert_eq!(back.coordinator_epoch, sent.coordinator_epoch);
        assert_eq!(back.result, sent.result);
        assert_eq!(back.transaction_version, sent.transaction_version);
        assert_eq!(
            back.partitions,
            [
                TopicPartition::new("a", 0),
                TopicPartition::new("a", 2),
                TopicPartition::new("b", 4),
            ]
        );
    }

    #[test]
    fn a_malformed_entry_is_refused() {
        let mut e = entry(&request());
        e.producer_epoch = 40_000;
        assert_eq!(
            request_of(e).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut e = entry(&request());
        e.topics[0].partitions.push(u32::MAX);
        assert_eq!(
            request_of(e).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn every_outcome_survives_the_wire_and_an_unset_one_is_retriable() {
        for o in [
            MarkerOutcome::Written,
            MarkerOutcome::Retriable,
            MarkerOutcome::StaleProducerEpoch,
            MarkerOutcome::StaleCoordinatorEpoch,
            MarkerOutcome::UnknownPartition,
        ] {
            assert_eq!(outcome_of(wire_outcome(o) as i32), o);
        }
        assert_eq!(outcome_of(0), MarkerOutcome::Retriable);
        assert_eq!(outcome_of(99), MarkerOutcome::Retriable);
    }

    #[test]
    fn every_refusal_survives_the_wire_and_none_is_none() {
        use TxnError as E;
        for e in [
            E::NotCoordinator,
            E::CoordinatorLoadInProgress,
            E::CoordinatorNotAvailable,
            E::ConcurrentTransactions,
            E::InvalidProducerEpoch,
            E::ProducerFenced,
            E::InvalidTxnState,
            E::InvalidProducerIdMapping,
            E::InvalidTransactionTimeout,
            E::TransactionalIdNotFound,
            E::TransactionAbortable,
            E::InvalidRequest,
            E::TooManyPartitions,
            E::TooManyTransactionalIds,
            E::UnknownServerError,
        ] {
            assert_eq!(refusal_from_wire(wire_refusal(e) as i32), Some(e));
        }
        assert_eq!(refusal_from_wire(0), None);
        assert_eq!(refusal_from_wire(999), Some(E::UnknownServerError));
    }

    #[test]
    fn a_verify_request_keeps_its_partitions_and_refuses_a_bad_epoch() {
        let request = pb::VerifyPartitionsRequest {
            transactional_id: "t".into(),
            producer_id: 5,
            producer_epoch: 1,
            topics: wire_topics(&[TopicPartition::new("a", 3), TopicPartition::new("a", 1)]),
        };
        let add = add_of(request.clone()).unwrap();
        assert!(add.verify_only);
        assert_eq!(
            add.partitions,
            [TopicPartition::new("a", 3), TopicPartition::new("a", 1)]
        );
        let bad = pb::VerifyPartitionsRequest {
            producer_epoch: -40_000,
            ..request
        };
        assert_eq!(
            add_of(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
