//! weir-cluster's integration tests, one binary: the controller against a model
//! (`controller`), the consumer group coordinator on a real registry (`groups`), the
//! metadata quorum over an in-memory transport (`quorum`), and the deterministic
//! simulation of replication under faults (`sim`, its own module tree).

mod controller;
mod groups;
mod quorum;
mod sim;
