//! The cluster controller as a pure state machine (`docs/replication.md` § 1): the
//! metadata records, the image they build, and the active controller's decisions. No
//! I/O, no tokio, no clock, no randomness: time is passed in and topic ids come from an
//! injected source, so the quorum driver, tests and the simulation run the same code.
//!
//! - `records`: [`MetadataRecord`], every change to cluster metadata.
//! - `image`: [`MetadataImage`], the committed metadata, its queries, snapshots and
//!   the migration of a single-node `metadata.weir`; `apply`: how a record changes it
//!   and which records it refuses ([`ImageError`]).
//! - `active`: [`Controller`], one request at a time against the committed image, and
//!   the driver's contract; `requests`: what it is asked and answers.
//! - `brokers`: registration, heartbeats, fencing and controlled shutdown;
//!   `topics`: topic administration; `alter_partition`: leaders' ISR changes;
//!   `election`: who leads and who stays in the ISR when brokers come and go;
//!   [`reassign`]: moving replicas; `preferred`: leaderships back to preferred replicas;
//!   [`elect_leaders`]: elections on request (Kafka's ElectLeaders);
//!   [`producer_ids`]: ids for idempotent producers; `security`: users' SCRAM
//!   credentials and ACL bindings; `exchanges`: exchanges and bindings (AMQP's
//!   routing metadata); [`group_configs`]: consumer group configs;
//!   [`placement`]: where new replicas go.

mod active;
mod alter_partition;
mod apply;
mod brokers;
pub mod elect_leaders;
mod election;
mod exchange_bindings;
mod exchanges;
pub mod group_configs;
mod image;
pub mod json;
pub mod placement;
mod preferred;
pub mod producer_ids;
pub mod reassign;
pub mod records;
mod requests;
mod resign;
mod security;
#[cfg(test)]
mod test_support;
mod tokens;
mod topics;

pub use active::{
    Controller, ControllerConfig, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_PREFERRED_LEADER_CHECK_MS,
    DEFAULT_REPLICATION_FACTOR, DEFAULT_SESSION_TIMEOUT_MS, MAX_TOPIC_ID_DRAWS, RandomTopicIds,
    TopicIdSource,
};
pub use apply::ImageError;
pub use image::{
    BrokerRegistration, ExchangesImage, MetadataImage, PartitionRef, ProducerIds, SecurityImage,
    TopicImage,
};
pub use reassign::{MAX_MOVES_PER_REQUEST, PartitionMove};
pub use records::{
    BrokerEpoch, Endpoints, MetadataOffset, MetadataRecord, NO_LEADER, PartitionRegistration,
    Reassignment,
};
pub use requests::{
    ControllerError, ControllerReply, ControllerRequest, Ineligible, MAX_CLUSTER_ID_CHARS,
    MAX_ENDPOINT_CHARS, MAX_INCARNATION_CHARS, MAX_NAMED_PRODUCERS, MAX_PRODUCER_NAME_CHARS,
    MAX_RACK_CHARS,
};
