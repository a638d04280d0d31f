//! weir-tests' integration tests, one binary: real `weir serve` processes under faults
//! (`faults`, `failover`, `failing_disk`, `group_failover`, `kafka_failover`,
//! `amqp_failover`, `coordinator_kills`, `queue_checker`), Kafka transactions across
//! brokers and exactly once through faults (`kafka_transactions`), through a rolling
//! upgrade from an older binary (`rolling_upgrade`, opt-in), an hour of faults on every protocol (`soak`,
//! `#[ignore]`d), under overload and at their budget, the compose cluster on Docker
//! (`docker_cluster`, `docker_secure`), the deployment files checked offline (`deploy`),
//! and the code map (`code_map`). The tests that start a cluster take
//! `weir_tests::exclusive()`, so one cluster runs at a time in this process.

mod amqp_failover;
mod budget;
mod code_map;
mod coordinator_kills;
mod deploy;
mod docker_cluster;
mod docker_secure;
mod failing_disk;
mod failover;
mod faults;
mod group_failover;
mod kafka_failover;
mod kafka_transactions;
// Shared with weir-client's Kafka group tests, which this crate cannot depend on.
#[path = "../../kafka/members.rs"]
mod members;
mod overload;
mod queue_checker;
mod rolling_upgrade;
mod soak;
