//! weir-client's integration tests, one binary: the client against real brokers in this
//! process (`broker`, `cluster`, `groups`, `leader`, `share`, `transactions`) and consumer groups with the
//! real Kafka clients beside this crate's (`kafka_groups`).

mod broker;
mod cluster;
mod groups;
mod kafka_groups;
mod leader;
// Shared with weir-tests' failover test, which cannot depend on this crate's tests.
#[path = "../../../../tests/kafka/members.rs"]
mod members;
mod share;
mod transactions;
