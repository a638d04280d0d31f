//! weir-kafka's integration tests, one binary as in every crate of the workspace: the
//! listener over real TCP, spoken to as a Kafka client speaks (`listener`).

mod listener;
