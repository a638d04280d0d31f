//! `throttle_time_ms` in every answer that has the field: how long quotas held the
//! request back (the request-time hold before it ran, or a byte-rate hold, whichever
//! was longer), from the request's context. A field a version does not have is left at
//! 0, which kafka-protocol requires to encode it.

use kafka_protocol::messages::*;

/// A response message with Kafka's `throttle_time_ms`.
pub(super) trait Throttled {
    /// Sets `throttle_time_ms` where `version` has the field.
    fn throttle(&mut self, version: i16, throttle_time_ms: i32);
}

/// Each response type, and the first version with `throttle_time_ms`.
macro_rules! throttled {
    ($($response:ty => $since:literal),* $(,)?) => {$(
        impl Throttled for $response {
            fn throttle(&mut self, version: i16, throttle_time_ms: i32) {
                if version >= $since {
                    self.throttle_time_ms = throttle_time_ms;
                }
            }
        }
    )*};
}

throttled! {
    ProduceResponse => 1,
    FetchResponse => 1,
    ListOffsetsResponse => 2,
    MetadataResponse => 3,
    CreateTopicsResponse => 2,
    DeleteTopicsResponse => 1,
    InitProducerIdResponse => 0,
    FindCoordinatorResponse => 1,
    JoinGroupResponse => 2,
    SyncGroupResponse => 1,
    HeartbeatResponse => 1,
    LeaveGroupResponse => 1,
    OffsetCommitResponse => 3,
    OffsetFetchResponse => 3,
    ListGroupsResponse => 1,
    DescribeGroupsResponse => 1,
    DeleteGroupsResponse => 0,
    ConsumerGroupHeartbeatResponse => 0,
    OffsetForLeaderEpochResponse => 2,
    DeleteRecordsResponse => 0,
    DescribeConfigsResponse => 0,
    AlterConfigsResponse => 0,
    CreatePartitionsResponse => 0,
    IncrementalAlterConfigsResponse => 0,
    DescribeClusterResponse => 0,
    DescribeProducersResponse => 0,
    CreateAclsResponse => 0,
    DescribeAclsResponse => 0,
    DeleteAclsResponse => 0,
    DescribeUserScramCredentialsResponse => 0,
    AlterUserScramCredentialsResponse => 0,
    DescribeClientQuotasResponse => 0,
    AlterClientQuotasResponse => 0,
    OffsetDeleteResponse => 0,
    DescribeLogDirsResponse => 0,
    ConsumerGroupDescribeResponse => 0,
    AlterPartitionReassignmentsResponse => 0,
    ListPartitionReassignmentsResponse => 0,
    ElectLeadersResponse => 0,
    AlterReplicaLogDirsResponse => 0,
    DescribeTopicPartitionsResponse => 0,
    ShareGroupHeartbeatResponse => 1,
    ShareFetchResponse => 1,
    ShareAcknowledgeResponse => 1,
    ShareGroupDescribeResponse => 1,
    DescribeShareGroupOffsetsResponse => 0,
    AlterShareGroupOffsetsResponse => 0,
    DeleteShareGroupOffsetsResponse => 0,
    AddPartitionsToTxnResponse => 0,
    AddOffsetsToTxnResponse => 0,
    TxnOffsetCommitResponse => 0,
    EndTxnResponse => 0,
    DescribeTransactionsResponse => 0,
    ListTransactionsResponse => 0,
}

/// DescribeQuorum's answer has no `throttle_time_ms` (Kafka's controllers answer it
/// without one): nothing to set.
impl Throttled for DescribeQuorumResponse {
    fn throttle(&mut self, _version: i16, _throttle_time_ms: i32) {}
}
