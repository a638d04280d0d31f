//! The table of the apis and versions the listener serves ([`SUPPORTED`]), the versions
//! kafka-protocol can carry for each api ([`codec_versions`]), and the ApiVersions answer
//! built from the table, as Kafka builds it.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

use crate::frame::Request;
use crate::handler::{HandlerError, Response};

/// The apis and versions the broker serves: `(api key, min version, max version)`. An
/// entry is added with the handler that serves it; a version is listed only if
/// kafka-protocol decodes that request version and encodes that response version
/// ([`codec_versions`]).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[(ApiKey::ApiVersions, 0, 4)];

/// Kafka's UNSUPPORTED_VERSION error code.
pub const UNSUPPORTED_VERSION: i16 = 35;
/// Kafka's INVALID_REQUEST error code.
pub const INVALID_REQUEST: i16 = 42;

/// The versions of `api_key` kafka-protocol can serve: those it decodes as requests and
/// encodes as responses. The two ranges differ for some apis (OffsetCommit's request
/// stops at 9 and its response at 10), and `ApiKey::valid_versions` gives one of them,
/// so both are read from the message types.
pub fn codec_versions(api_key: ApiKey) -> VersionRange {
    macro_rules! both {
        ($($key:ident => $request:ident, $response:ident;)*) => {
            match api_key {
                $(ApiKey::$key => $request::VERSIONS.intersect(&$response::VERSIONS),)*
            }
        };
    }
    both! {
        Produce => ProduceRequest, ProduceResponse;
        Fetch => FetchRequest, FetchResponse;
        ListOffsets => ListOffsetsRequest, ListOffsetsResponse;
        Metadata => MetadataRequest, MetadataResponse;
        OffsetCommit => OffsetCommitRequest, OffsetCommitResponse;
        OffsetFetch => OffsetFetchRequest, OffsetFetchResponse;
        FindCoordinator => FindCoordinatorRequest, FindCoordinatorResponse;
        JoinGroup => JoinGroupRequest, JoinGroupResponse;
        Heartbeat => HeartbeatRequest, HeartbeatResponse;
        LeaveGroup => LeaveGroupRequest, LeaveGroupResponse;
        SyncGroup => SyncGroupRequest, SyncGroupResponse;
        DescribeGroups => DescribeGroupsRequest, DescribeGroupsResponse;
        ListGroups => ListGroupsRequest, ListGroupsResponse;
        SaslHandshake => SaslHandshakeRequest, SaslHandshakeResponse;
        ApiVersions => ApiVersionsRequest, ApiVersionsResponse;
        CreateTopics => CreateTopicsRequest, CreateTopicsResponse;
        DeleteTopics => DeleteTopicsRequest, DeleteTopicsResponse;
        DeleteRecords => DeleteRecordsRequest, DeleteRecordsResponse;
        InitProducerId => InitProducerIdRequest, InitProducerIdResponse;
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse;
        AddPartitionsToTxn => AddPartitionsToTxnRequest, AddPartitionsToTxnResponse;
        AddOffsetsToTxn => AddOffsetsToTxnRequest, AddOffsetsToTxnResponse;
        EndTxn => EndTxnRequest, EndTxnResponse;
        WriteTxnMarkers => WriteTxnMarkersRequest, WriteTxnMarkersResponse;
        TxnOffsetCommit => TxnOffsetCommitRequest, TxnOffsetCommitResponse;
        DescribeAcls => DescribeAclsRequest, DescribeAclsResponse;
        CreateAcls => CreateAclsRequest, CreateAclsResponse;
        DeleteAcls => DeleteAclsRequest, DeleteAclsResponse;
        DescribeConfigs => DescribeConfigsRequest, DescribeConfigsResponse;
        AlterConfigs => AlterConfigsRequest, AlterConfigsResponse;
        AlterReplicaLogDirs => AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse;
        DescribeLogDirs => DescribeLogDirsRequest, DescribeLogDirsResponse;
        SaslAuthenticate => SaslAuthenticateRequest, SaslAuthenticateResponse;
        CreatePartitions => CreatePartitionsRequest, CreatePartitionsResponse;
        CreateDelegationToken => CreateDelegationTokenRequest, CreateDelegationTokenResponse;
        RenewDelegationToken => RenewDelegationTokenRequest, RenewDelegationTokenResponse;
        ExpireDelegationToken => ExpireDelegationTokenRequest, ExpireDelegationTokenResponse;
        DescribeDelegationToken => DescribeDelegationTokenRequest, DescribeDelegationTokenResponse;
        DeleteGroups => DeleteGroupsRequest, DeleteGroupsResponse;
        ElectLeaders => ElectLeadersRequest, ElectLeadersResponse;
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse;
        AlterPartitionReassignments => AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse;
        ListPartitionReassignments => ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse;
        OffsetDelete => OffsetDeleteRequest, OffsetDeleteResponse;
        DescribeClientQuotas => DescribeClientQuotasRequest, DescribeClientQuotasResponse;
        AlterClientQuotas => AlterClientQuotasRequest, AlterClientQuotasResponse;
        DescribeUserScramCredentials => DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse;
        AlterUserScramCredentials => AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse;
        Vote => VoteRequest, VoteResponse;
        BeginQuorumEpoch => BeginQuorumEpochRequest, BeginQuorumEpochResponse;
        EndQuorumEpoch => EndQuorumEpochRequest, EndQuorumEpochResponse;
        DescribeQuorum => DescribeQuorumRequest, DescribeQuorumResponse;
        AlterPartition => AlterPartitionRequest, AlterPartitionResponse;
        UpdateFeatures => UpdateFeaturesRequest, UpdateFeaturesResponse;
        Envelope => EnvelopeRequest, EnvelopeResponse;
        FetchSnapshot => FetchSnapshotRequest, FetchSnapshotResponse;
        DescribeCluster => DescribeClusterRequest, DescribeClusterResponse;
        DescribeProducers => DescribeProducersRequest, DescribeProducersResponse;
        BrokerRegistration => BrokerRegistrationRequest, BrokerRegistrationResponse;
        BrokerHeartbeat => BrokerHeartbeatRequest, BrokerHeartbeatResponse;
        UnregisterBroker => UnregisterBrokerRequest, UnregisterBrokerResponse;
        DescribeTransactions => DescribeTransactionsRequest, DescribeTransactionsResponse;
        ListTransactions => ListTransactionsRequest, ListTransactionsResponse;
        AllocateProducerIds => AllocateProducerIdsRequest, AllocateProducerIdsResponse;
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse;
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse;
        ControllerRegistration => ControllerRegistrationRequest, ControllerRegistrationResponse;
        GetTelemetrySubscriptions => GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse;
        PushTelemetry => PushTelemetryRequest, PushTelemetryResponse;
        AssignReplicasToDirs => AssignReplicasToDirsRequest, AssignReplicasToDirsResponse;
        ListConfigResources => ListConfigResourcesRequest, ListConfigResourcesResponse;
        DescribeTopicPartitions => DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse;
        ShareGroupHeartbeat => ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse;
        ShareGroupDescribe => ShareGroupDescribeRequest, ShareGroupDescribeResponse;
        ShareFetch => ShareFetchRequest, ShareFetchResponse;
        ShareAcknowledge => ShareAcknowledgeRequest, ShareAcknowledgeResponse;
        AddRaftVoter => AddRaftVoterRequest, AddRaftVoterResponse;
        RemoveRaftVoter => RemoveRaftVoterRequest, RemoveRaftVoterResponse;
        UpdateRaftVoter => UpdateRaftVoterRequest, UpdateRaftVoterResponse;
        InitializeShareGroupState => InitializeShareGroupStateRequest, InitializeShareGroupStateResponse;
        ReadShareGroupState => ReadShareGroupStateRequest, ReadShareGroupStateResponse;
        WriteShareGroupState => WriteShareGroupStateRequest, WriteShareGroupStateResponse;
        DeleteShareGroupState => DeleteShareGroupStateRequest, DeleteShareGroupStateResponse;
        ReadShareGroupStateSummary => ReadShareGroupStateSummaryRequest, ReadShareGroupStateSummaryResponse;
        DescribeShareGroupOffsets => DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse;
        AlterShareGroupOffsets => AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse;
        DeleteShareGroupOffsets => DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse;
    }
}

/// Why a table of served versions cannot be served.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TableError {
    #[error("{api_key:?} is listed twice")]
    Duplicate { api_key: ApiKey },
    #[error("{api_key:?} v{min}..=v{max} is not a range of versions")]
    Empty { api_key: ApiKey, min: i16, max: i16 },
    #[error(
        "{api_key:?} v{min}..=v{max} is outside the versions kafka-protocol can serve ({codec})"
    )]
    BeyondCodec {
        api_key: ApiKey,
        min: i16,
        max: i16,
        codec: VersionRange,
    },
    #[error("ApiVersions is not served: no client could learn what is")]
    NoApiVersions,
}

/// Checks a table of served versions: each api once, each range non-empty and within
/// [`codec_versions`], and ApiVersions served (clients send it first).
pub fn check_table(table: &[(ApiKey, i16, i16)]) -> Result<(), TableError> {
    for (i, &(api_key, min, max)) in table.iter().enumerate() {
        if table[..i].iter().any(|&(key, ..)| key == api_key) {
            return Err(TableError::Duplicate { api_key });
        }
        if min > max || min < 0 {
            return Err(TableError::Empty { api_key, min, max });
        }
        let codec = codec_versions(api_key);
        if min < codec.min || max > codec.max {
            return Err(TableError::BeyondCodec {
                api_key,
                min,
                max,
                codec,
            });
        }
    }
    if served_versions(table, ApiKey::ApiVersions).is_none() {
        return Err(TableError::NoApiVersions);
    }
    Ok(())
}

/// The `(min, max)` versions of `api_key` in `table`, if it is served.
pub fn served_versions(table: &[(ApiKey, i16, i16)], api_key: ApiKey) -> Option<(i16, i16)> {
    table
        .iter()
        .find(|&&(key, ..)| key == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// Whether `table` serves `api_key` at `api_version`.
pub fn is_served(table: &[(ApiKey, i16, i16)], api_key: ApiKey, api_version: i16) -> bool {
    served_versions(table, api_key).is_some_and(|(min, max)| (min..=max).contains(&api_version))
}

/// The answer to an ApiVersions request, with the version it is encoded at: what Kafka's
/// `KafkaApis.handleApiVersionsRequest` answers.
///
/// - A version outside the served range is not parsed; the answer is v0 with
///   UNSUPPORTED_VERSION and the ApiVersions row alone, so the client retries at the
///   highest version it finds there (KIP-511, `ApiVersionsRequest.getErrorResponse`,
///   `RequestContext.apiVersion`).
/// - From v3 on, a client software name or version that is not `[a-zA-Z0-9]`, then any of
///   `[a-zA-Z0-9.-]`, ending in `[a-zA-Z0-9]`, is answered with INVALID_REQUEST and no
///   rows (`ApiVersionsRequest.isValid`).
/// - Otherwise every row of the table, no throttle, and from v3 on empty supported and
///   finalized features (finalized epoch -1: none).
///
/// A body that does not decode at a served version is an error: Kafka closes the
/// connection.
pub fn answer_api_versions(
    request: &Request,
    table: &[(ApiKey, i16, i16)],
) -> Result<(i16, Response), HandlerError> {
    debug_assert_eq!(request.api_key, ApiKey::ApiVersions);
    let row = |&(api_key, min, max): &(ApiKey, i16, i16)| {
        ApiVersion::default()
            .with_api_key(api_key as i16)
            .with_min_version(min)
            .with_max_version(max)
    };
    let version = request.api_version;
    if !is_served(table, ApiKey::ApiVersions, version) {
        let own_row = table.iter().filter(|(key, ..)| *key == ApiKey::ApiVersions);
        let answer = ApiVersionsResponse::default()
            .with_error_code(UNSUPPORTED_VERSION)
            .with_api_keys(own_row.map(row).collect());
        return Ok((0, Response::encode(&answer, 0)?));
    }
    let asked: ApiVersionsRequest = request.decode_body()?;
    let answer = if version >= 3
        && !(is_valid_software_field(&asked.client_software_name)
            && is_valid_software_field(&asked.client_software_version))
    {
        ApiVersionsResponse::default().with_error_code(INVALID_REQUEST)
    } else {
        ApiVersionsResponse::default().with_api_keys(table.iter().map(row).collect())
    };
    Ok((version, Response::encode(&answer, version)?))
}

/// Kafka's `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?` for the client software name and
/// version of ApiVersions v3+.
fn is_valid_software_field(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn request(api_version: i16, body: &ApiVersionsRequest) -> Request {
        let mut bytes = BytesMut::new();
        let versions = ApiVersionsRequest::VERSIONS;
        if (versions.min..=versions.max).contains(&api_version) {
            body.encode(&mut bytes, api_version).unwrap();
        }
        Request {
            api_key: ApiKey::ApiVersions,
            api_version,
            correlation_id: 1,
            client_id: None,
            body: bytes.freeze(),
        }
    }

    fn decoded(answer: (i16, Response)) -> (i16, ApiVersionsResponse) {
        let (version, Response::Body(chunks)) = answer else {
            panic!("ApiVersions is always answered");
        };
        let chunks: Vec<Bytes> = chunks
            .into_iter()
            .map(|chunk| match chunk {
                crate::handler::Chunk::Bytes(bytes) => bytes,
                crate::handler::Chunk::File(_) => panic!("ApiVersions has no file chunks"),
            })
            .collect();
        let mut body = Bytes::from(chunks.concat());
        let response = ApiVersionsResponse::decode(&mut body, version).unwrap();
        assert!(body.is_empty(), "{} bytes left over", body.len());
        (version, response)
    }

    fn named(name: &'static str, version: &'static str) -> ApiVersionsRequest {
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(name))
            .with_client_software_version(StrBytes::from_static_str(version))
    }

    #[test]
    fn the_supported_table_is_servable() {
        check_table(SUPPORTED).unwrap();
    }

    #[test]
    fn codec_versions_is_the_intersection_of_request_and_response() {
        // kafka-protocol 0.18's OffsetCommitResponse goes to v10, its request to v9.
        assert_eq!(
            codec_versions(ApiKey::OffsetCommit),
            VersionRange { min: 2, max: 9 }
        );
        assert_eq!(
            codec_versions(ApiKey::ApiVersions),
            VersionRange { min: 0, max: 4 }
        );
        for api_key in ApiKey::iter() {
            let codec = codec_versions(api_key);
            assert!(!codec.is_empty(), "{api_key:?}");
        }
    }

    #[test]
    fn check_table_refuses_what_cannot_be_served() {
        let twice = [(ApiKey::ApiVersions, 0, 4), (ApiKey::ApiVersions, 0, 3)];
        assert!(matches!(
            check_table(&twice),
            Err(TableError::Duplicate { .. })
        ));
        let beyond = [(ApiKey::ApiVersions, 0, 4), (ApiKey::OffsetCommit, 2, 10)];
        assert!(matches!(
            check_table(&beyond),
            Err(TableError::BeyondCodec { .. })
        ));
        let empty = [(ApiKey::ApiVersions, 3, 2)];
        assert!(matches!(check_table(&empty), Err(TableError::Empty { .. })));
        assert_eq!(
            check_table(&[(ApiKey::Metadata, 0, 12)]),
            Err(TableError::NoApiVersions)
        );
    }

    #[test]
    fn every_served_version_is_answered_with_the_whole_table() {
        let table = [(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 1, 12)];
        for version in 0..=4 {
            let (at, response) = decoded(
                answer_api_versions(&request(version, &named("weir", "1.0")), &table).unwrap(),
            );
            assert_eq!(at, version);
            assert_eq!(response.error_code, 0);
            let rows: Vec<_> = response
                .api_keys
                .iter()
                .map(|r| (r.api_key, r.min_version, r.max_version))
                .collect();
            assert_eq!(rows, [(18, 0, 4), (3, 1, 12)]);
            assert!(response.supported_features.is_empty());
            assert!(response.finalized_features.is_empty());
            assert_eq!(response.finalized_features_epoch, -1);
        }
    }

    #[test]
    fn a_version_above_the_table_is_answered_at_v0_with_unsupported_version_and_its_own_row() {
        let table = [(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 1, 12)];
        for version in [5, 127, i16::MAX, -1] {
            let garbage = Request {
                body: Bytes::from_static(b"\xff\xff not a body"),
                ..request(version, &ApiVersionsRequest::default())
            };
            let (at, response) = decoded(answer_api_versions(&garbage, &table).unwrap());
            assert_eq!(at, 0);
            assert_eq!(response.error_code, UNSUPPORTED_VERSION);
            let rows: Vec<_> = response
                .api_keys
                .iter()
                .map(|r| (r.api_key, r.min_version, r.max_version))
                .collect();
            assert_eq!(rows, [(18, 0, 4)]);
        }
    }

    #[test]
    fn v3_software_names_are_checked_as_kafka_checks_them() {
        let table = SUPPORTED;
        for (name, version, valid) in [
            ("librdkafka", "2.16.0", true),
            ("confluent-kafka-python", "2.16.1-rdkafka-2.16.0", true),
            ("a", "1", true),
            ("", "1", false),
            ("kafka python", "3.0", false),
            ("-x", "1", false),
            ("x", "1.", false),
            ("x", "1_0", false),
        ] {
            let (at, response) =
                decoded(answer_api_versions(&request(3, &named(name, version)), table).unwrap());
            assert_eq!(at, 3);
            if valid {
                assert_eq!(response.error_code, 0, "{name:?} {version:?}");
                assert!(!response.api_keys.is_empty());
            } else {
                assert_eq!(response.error_code, INVALID_REQUEST, "{name:?} {version:?}");
                assert!(response.api_keys.is_empty());
            }
        }
        // Before v3 the request has no such fields.
        let (_, response) =
            decoded(answer_api_versions(&request(2, &named("", "")), table).unwrap());
        assert_eq!(response.error_code, 0);
    }

    #[test]
    fn a_served_version_whose_body_does_not_decode_is_an_error() {
        let truncated = Request {
            body: Bytes::from_static(&[5, b'a']),
            ..request(3, &ApiVersionsRequest::default())
        };
        assert!(matches!(
            answer_api_versions(&truncated, SUPPORTED),
            Err(HandlerError::MalformedBody { api_version: 3, .. })
        ));
    }

    proptest::proptest! {
        /// Any body at any version is answered or refused as malformed, never a panic.
        #[test]
        fn any_api_versions_body_is_answered_or_refused(
            api_version in -1i16..8,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let request = Request {
                body: Bytes::from(body),
                ..request(api_version, &ApiVersionsRequest::default())
            };
            match answer_api_versions(&request, SUPPORTED) {
                Ok((at, _)) => proptest::prop_assert!(at == 0 || at == api_version),
                Err(HandlerError::MalformedBody { .. }) => {}
                Err(other) => proptest::prop_assert!(false, "{}", other),
            }
        }
    }
}
