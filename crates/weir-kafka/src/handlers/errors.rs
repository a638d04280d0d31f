//! The one place the Kafka adapter turns the core's reasons into Kafka error codes:
//! [`code`], the table, and the few answers where Kafka's code depends on the api (or
//! its version) as well as the reason ([`commit_code`], [`consumer_heartbeat_code`],
//! [`reassignment_code`]). No handler matches a reason to a code itself (a test below
//! reads the sources to keep it so).

use kafka_protocol::error::ResponseError as E;
use weir_broker::security::ResourceType;
use weir_broker::topics::ElectionRefusal;
use weir_broker::transactions::TxnError;
use weir_broker::{BrokerError, Reason};

/// The Kafka error code for `err`.
pub fn error_code(err: &BrokerError) -> i16 {
    code(&err.reason)
}

/// The Kafka error code for a partition's election that was not made (ElectLeaders).
pub fn election_code(refusal: &ElectionRefusal) -> i16 {
    match refusal {
        ElectionRefusal::NotNeeded { .. } => E::ElectionNotNeeded,
        ElectionRefusal::PreferredNotAvailable { .. } => E::PreferredLeaderNotAvailable,
        ElectionRefusal::NoEligibleReplica { .. } => E::EligibleLeadersNotAvailable,
        ElectionRefusal::UnknownTopic(_) | ElectionRefusal::UnknownPartition { .. } => {
            E::UnknownTopicOrPartition
        }
    }
    .code()
}

/// The Kafka code of an OffsetCommit's group-wide refusal at `version`, where Kafka's
/// answer depends on the api rather than the reason.
pub fn commit_code(err: &BrokerError, version: i16) -> i16 {
    match err.reason {
        // A commit from outside a group that has members: Kafka's "offset commits
        // without a member id are only accepted when the group is empty".
        Reason::GroupNotEmpty => E::UnknownMemberId.code(),
        // Before KIP-848's commits, a stale member is told its generation is wrong.
        Reason::StaleMemberEpoch | Reason::UnknownGroup
            if version < super::groups::FIRST_KIP848_OFFSET_COMMIT =>
        {
            E::IllegalGeneration.code()
        }
        _ => error_code(err),
    }
}

/// A coordinator's write to its internal topic that failed, as Kafka's coordinators
/// answer it (its `CoordinatorRuntime` and, before it, `GroupMetadataManager` normalize
/// the append's error so): a full or failed disk and a lost leadership as
/// NOT_COORDINATOR, too few in-sync replicas as COORDINATOR_NOT_AVAILABLE. The client
/// finds the coordinator again and retries, where the partition's own code reads as
/// final: librdkafka aborts a transaction on a TxnOffsetCommit answered
/// KAFKA_STORAGE_ERROR (the hour's soak: all 13 of the copier's aborts, on full
/// disks of the group coordinator). Any other code is kept.
pub fn coordinator_write_code(code: i16) -> i16 {
    match code {
        c if c == E::KafkaStorageError.code() || c == E::NotLeaderOrFollower.code() => {
            E::NotCoordinator.code()
        }
        c if c == E::NotEnoughReplicas.code() || c == E::NotEnoughReplicasAfterAppend.code() => {
            E::CoordinatorNotAvailable.code()
        }
        c => c,
    }
}

/// The Kafka code of a refused ConsumerGroupHeartbeat.
pub fn consumer_heartbeat_code(err: &BrokerError) -> i16 {
    match err.reason {
        // As Kafka's coordinator answers a consumer joining a classic group (without
        // online migration): "Group ... is not a consumer group".
        Reason::InconsistentGroupProtocol => E::GroupIdNotFound.code(),
        _ => error_code(err),
    }
}

/// A reassignment's refusal as Kafka codes it: the controller refuses a move it cannot
/// start as an invalid request, which Kafka answers NO_REASSIGNMENT_IN_PROGRESS for a
/// cancel (nothing to cancel) and INVALID_REPLICA_ASSIGNMENT for a target (a broker
/// that is not registered, a replica listed twice, an empty list).
pub fn reassignment_code(err: &BrokerError, cancel: bool) -> i16 {
    match err.reason {
        Reason::InvalidRequest if cancel => E::NoReassignmentInProgress.code(),
        Reason::InvalidRequest => E::InvalidReplicaAssignment.code(),
        _ => error_code(err),
    }
}

/// `code` as a client speaking `version` of a request knows it: PRODUCER_FENCED (KIP-588)
/// only from the version `since` that added it (InitProducerId 4, AddPartitionsToTxn,
/// AddOffsetsToTxn and EndTxn 2, as their schemas say), INVALID_PRODUCER_EPOCH before, as
/// Kafka answers older clients (aiokafka speaks AddPartitionsToTxn v0 and takes an
/// unknown code for a fatal UnknownError, where INVALID_PRODUCER_EPOCH is "fenced").
pub fn fenced_as_known(code: i16, version: i16, since: i16) -> i16 {
    if code == E::ProducerFenced.code() && version < since {
        E::InvalidProducerEpoch.code()
    } else {
        code
    }
}

/// `code` as a client speaking `version` of a request knows it: TRANSACTION_ABORTABLE
/// (KIP-890) only from the version `since` that added it (Produce 12, TxnOffsetCommit
/// 5), INVALID_TXN_STATE before, as Kafka answers older clients.
pub fn abortable_as_known(code: i16, version: i16, since: i16) -> i16 {
    if code == E::TransactionAbortable.code() && version < since {
        E::InvalidTxnState.code()
    } else {
        code
    }
}

/// The Kafka error of a transaction coordinator's refusal (Weir's two limits have no
/// code of their own in Kafka: a transaction over the partition limit is an
/// INVALID_REQUEST, a full coordinator partition a COORDINATOR_NOT_AVAILABLE).
fn txn_error(e: TxnError) -> E {
    match e {
        TxnError::NotCoordinator => E::NotCoordinator,
        TxnError::CoordinatorLoadInProgress => E::CoordinatorLoadInProgress,
        TxnError::CoordinatorNotAvailable => E::CoordinatorNotAvailable,
        TxnError::ConcurrentTransactions => E::ConcurrentTransactions,
        TxnError::InvalidProducerEpoch => E::InvalidProducerEpoch,
        TxnError::ProducerFenced => E::ProducerFenced,
        TxnError::InvalidTxnState => E::InvalidTxnState,
        TxnError::InvalidProducerIdMapping => E::InvalidProducerIdMapping,
        TxnError::InvalidTransactionTimeout => E::InvalidTransactionTimeout,
        TxnError::TransactionalIdNotFound => E::TransactionalIdNotFound,
        TxnError::TransactionAbortable => E::TransactionAbortable,
        TxnError::InvalidRequest | TxnError::TooManyPartitions => E::InvalidRequest,
        TxnError::TooManyTransactionalIds => E::CoordinatorNotAvailable,
        TxnError::UnknownServerError => E::UnknownServerError,
    }
}

/// The Kafka error code for `reason`.
pub fn code(reason: &Reason) -> i16 {
    let error = match reason {
        Reason::NotLeader { .. } => E::NotLeaderOrFollower,
        Reason::NotEnoughReplicas { .. } => E::NotEnoughReplicas,
        Reason::FencedLeaderEpoch { .. } => E::FencedLeaderEpoch,
        Reason::UnknownLeaderEpoch => E::UnknownLeaderEpoch,
        Reason::OffsetNotAvailable => E::OffsetNotAvailable,
        Reason::OutOfOrderSequence { .. } => E::OutOfOrderSequenceNumber,
        // An idempotent producer whose epoch a newer instance bumped: Kafka answers
        // INVALID_PRODUCER_EPOCH (PRODUCER_FENCED is for transactional producers).
        Reason::ProducerFenced { .. } => E::InvalidProducerEpoch,
        Reason::CoordinatorFenced { .. } => E::TransactionCoordinatorFenced,
        Reason::UnknownTopic | Reason::UnknownPartition => E::UnknownTopicOrPartition,
        Reason::TopicAlreadyExists => E::TopicAlreadyExists,
        Reason::InvalidTopicName => E::InvalidTopicException,
        Reason::InvalidConfig => E::InvalidConfig,
        Reason::InvalidReplicationFactor => E::InvalidReplicationFactor,
        Reason::InvalidReplicaAssignment => E::InvalidReplicaAssignment,
        Reason::InvalidPartitions => E::InvalidPartitions,
        Reason::InvalidRequest | Reason::StateConflict => E::InvalidRequest,
        Reason::OffsetOutOfRange { .. } => E::OffsetOutOfRange,
        // Deleted or moving under the request, or the broker stopping: the client
        // refreshes its metadata and retries where the partition is now.
        Reason::PartitionClosed | Reason::ShuttingDown => E::NotLeaderOrFollower,
        // Kafka answers a full log directory as a failed one: retriable.
        Reason::LogFailed | Reason::StorageFull => E::KafkaStorageError,
        Reason::RecordTooLarge => E::MessageTooLarge,
        Reason::RequestTooLarge { .. } => E::RecordListTooLarge,
        Reason::CorruptBatch | Reason::CorruptData { .. } => E::CorruptMessage,
        Reason::InvalidRecord => E::InvalidRecord,
        Reason::ControllerUnavailable => E::NotController,
        Reason::Timeout => E::RequestTimedOut,
        Reason::CreateFailed { .. } | Reason::Internal => E::UnknownServerError,
        Reason::UnknownGroup => E::GroupIdNotFound,
        Reason::UnknownMember => E::UnknownMemberId,
        Reason::FencedMember => E::FencedMemberEpoch,
        Reason::StaleMemberEpoch => E::StaleMemberEpoch,
        Reason::GroupNotEmpty => E::NonEmptyGroup,
        Reason::GroupSubscribedToTopic => E::GroupSubscribedToTopic,
        Reason::InvalidGroupId => E::InvalidGroupId,
        Reason::TooMany => E::GroupMaxSizeReached,
        Reason::NotCoordinator { .. } => E::NotCoordinator,
        Reason::CoordinatorLoading => E::CoordinatorLoadInProgress,
        Reason::CoordinatorNotAvailable => E::CoordinatorNotAvailable,
        Reason::MetadataTooLarge => E::OffsetMetadataTooLarge,
        Reason::RebalanceInProgress => E::RebalanceInProgress,
        Reason::IllegalGeneration => E::IllegalGeneration,
        Reason::FencedInstanceId => E::FencedInstanceId,
        Reason::InconsistentGroupProtocol => E::InconsistentGroupProtocol,
        Reason::InvalidSessionTimeout => E::InvalidSessionTimeout,
        Reason::NotAuthorized { resource_type } => match resource_type {
            ResourceType::Topic => E::TopicAuthorizationFailed,
            ResourceType::Group => E::GroupAuthorizationFailed,
            ResourceType::Cluster => E::ClusterAuthorizationFailed,
            ResourceType::TransactionalId => E::TransactionalIdAuthorizationFailed,
        },
        Reason::AuthenticationFailed => E::SaslAuthenticationFailed,
        Reason::UnsupportedMechanism => E::UnsupportedSaslMechanism,
        Reason::IllegalAuthenticationState => E::IllegalSaslState,
        // Retriable: Java's client treats it as a `RetriableException` and reconnects
        // rather than failing the application; librdkafka reconnects after any SASL
        // error.
        Reason::Busy => E::RequestTimedOut,
        Reason::NotFound => E::ResourceNotFound,
        Reason::Transaction(e) => txn_error(*e),
    };
    error.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_fenced_is_invalid_producer_epoch_for_versions_before_it() {
        let fenced = E::ProducerFenced.code();
        let epoch = E::InvalidProducerEpoch.code();
        assert_eq!(fenced_as_known(fenced, 0, 2), epoch);
        assert_eq!(fenced_as_known(fenced, 1, 2), epoch);
        assert_eq!(fenced_as_known(fenced, 2, 2), fenced);
        assert_eq!(fenced_as_known(fenced, 3, 4), epoch);
        // Any other code goes as it is.
        let other = E::ConcurrentTransactions.code();
        assert_eq!(fenced_as_known(other, 0, 2), other);
        assert_eq!(fenced_as_known(0, 0, 2), 0);
        let abortable = E::TransactionAbortable.code();
        let invalid = E::InvalidTxnState.code();
        assert_eq!(abortable_as_known(abortable, 11, 12), invalid);
        assert_eq!(abortable_as_known(abortable, 12, 12), abortable);
        assert_eq!(abortable_as_known(fenced, 4, 5), fenced);
    }

    #[test]
    fn the_codes_clients_retry_on_are_the_retriable_ones() {
        // librdkafka and kafka-python retry (after a metadata refresh) exactly the
        // codes Kafka marks retriable: a failover must land on one of them.
        for reason in [
            Reason::NotLeader { leader: 2 },
            Reason::NotEnoughReplicas {
                isr: 1,
                min_insync: 2,
            },
            Reason::OffsetNotAvailable,
            Reason::UnknownLeaderEpoch,
            Reason::FencedLeaderEpoch { epoch: Some(3) },
            Reason::PartitionClosed,
            Reason::LogFailed,
            Reason::StorageFull,
            Reason::Timeout,
            Reason::NotCoordinator { coordinator: 1 },
            Reason::CoordinatorLoading,
            Reason::CoordinatorNotAvailable,
        ] {
            let code = code(&reason);
            let error =
                kafka_protocol::error::ParseResponseErrorCode::err(code).expect("an error code");
            assert!(error.is_retriable(), "{reason:?} -> {error:?}");
        }
        assert_eq!(code(&Reason::NotLeader { leader: 1 }), 6);
        assert_eq!(code(&Reason::InvalidReplicationFactor), 38);
        assert_eq!(code(&Reason::InvalidReplicaAssignment), 39);
        assert_eq!(code(&Reason::InvalidPartitions), 37);
        assert_eq!(code(&Reason::UnknownLeaderEpoch), 75);
        assert_eq!(code(&Reason::FencedLeaderEpoch { epoch: None }), 74);
    }

    #[test]
    fn a_commit_from_outside_a_group_with_members_is_unknown_member_id() {
        let not_empty = BrokerError::new(Reason::GroupNotEmpty, "members");
        assert_eq!(commit_code(&not_empty, 8), E::UnknownMemberId.code());
        let stale = BrokerError::new(Reason::StaleMemberEpoch, "stale");
        assert_eq!(commit_code(&stale, 8), E::IllegalGeneration.code());
        assert_eq!(commit_code(&stale, 9), E::StaleMemberEpoch.code());
        for (written, answered) in [
            (E::KafkaStorageError, E::NotCoordinator),
            (E::NotLeaderOrFollower, E::NotCoordinator),
            (E::NotEnoughReplicas, E::CoordinatorNotAvailable),
            (E::InvalidCommitOffsetSize, E::InvalidCommitOffsetSize),
        ] {
            assert_eq!(coordinator_write_code(written.code()), answered.code());
        }
    }

    #[test]
    fn api_specific_codes_fall_back_to_the_table() {
        let cut = BrokerError::new(Reason::NotCoordinator { coordinator: 2 }, "elsewhere");
        assert_eq!(consumer_heartbeat_code(&cut), E::NotCoordinator.code());
        let classic = BrokerError::new(Reason::InconsistentGroupProtocol, "classic");
        assert_eq!(consumer_heartbeat_code(&classic), E::GroupIdNotFound.code());
        let invalid = BrokerError::new(Reason::InvalidRequest, "no such broker");
        assert_eq!(
            reassignment_code(&invalid, true),
            E::NoReassignmentInProgress.code()
        );
        assert_eq!(
            reassignment_code(&invalid, false),
            E::InvalidReplicaAssignment.code()
        );
        let timeout = BrokerError::new(Reason::Timeout, "slow");
        assert_eq!(reassignment_code(&timeout, true), E::RequestTimedOut.code());
    }

    /// Every `.rs` file under `dir`, recursively.
    fn sources(dir: &std::path::Path, into: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push(path);
            }
        }
    }

    /// The guard of this file's job: outside it, no match arm on a `Reason` picks a
    /// Kafka code (on its line or the next), so a reason's code is decided here only.
    #[test]
    fn no_other_file_turns_a_reason_into_a_kafka_code() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut sites = Vec::new();
        for file in files.iter().filter(|f| !f.ends_with("handlers/errors.rs")) {
            let text = std::fs::read_to_string(file).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let arm = line.contains("Reason::") && line.contains("=>");
                let picks_code = |l: &str| l.contains(".code()") || l.contains("ResponseError::");
                if arm && (picks_code(line) || lines.get(i + 1).is_some_and(|l| picks_code(l))) {
                    sites.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
                }
            }
        }
        assert!(
            sites.is_empty(),
            "reasons turned into Kafka codes outside handlers/errors.rs (add a function \
             there instead):\n{}",
            sites.join("\n")
        );
    }
}
