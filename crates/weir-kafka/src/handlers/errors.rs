//! The one place the Kafka adapter turns the core's reasons into Kafka error codes.

use kafka_protocol::error::ResponseError as E;
use weir_broker::security::ResourceType;
use weir_broker::topics::ElectionRefusal;
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
    };
    error.code()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
