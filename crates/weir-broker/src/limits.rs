//! The broker's limits on what one request may ask, in one place for every protocol.
//! Adapters may be stricter where their transport is (gRPC's 4 MiB default answer for
//! Python and Go clients), never looser.

use std::time::Duration;

/// Largest answer the broker builds; fetches are capped below it (a fetch may exceed its
/// byte budget by one batch, at most `max.message.bytes`).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// How long `acks=all` waits when the request gives no timeout.
pub const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a produce may ask to wait for its acknowledgements.
pub const MAX_PRODUCE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest long-poll wait a fetch may ask for.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(60);
/// A partition's share of a fetch when the request does not say.
pub const DEFAULT_PARTITION_FETCH_BYTES: usize = 1024 * 1024;
/// Most partitions one produce, fetch, list-offsets, commit or offset-fetch request may
/// name (over every topic in it). The coordinator's own cap on a commit is the same
/// number (`weir_cluster::group::MAX_OFFSETS_PER_COMMIT`).
pub const MAX_PARTITIONS_PER_REQUEST: usize = weir_cluster::group::MAX_OFFSETS_PER_COMMIT;
/// Most groups one request may name (Kafka's batched FindCoordinator, OffsetFetch,
/// DescribeGroups and DeleteGroups), and most members one LeaveGroup may name.
pub const MAX_GROUPS_PER_REQUEST: usize = 10_000;
/// Most refused records one partition's answer names (Kafka names every one; a batch of
/// a hundred thousand keyless records would make an answer of megabytes). The message
/// gives the full count.
pub const MAX_RECORD_ERRORS: usize = 1_000;
