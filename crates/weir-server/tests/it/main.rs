//! weir-server's integration tests, one binary: real brokers on 127.0.0.1 (in this
//! process) spoken to over gRPC, Kafka and HTTP as clients speak: the API (`broker`,
//! `groups`, `queues`, `idempotence`, `identity`), clusters in one process (`cluster`),
//! the internal services, the Kafka listeners, the console (and in Chromium), durability
//! on faulty storage, untrusted batches, Python's grpcio (`python`), transactions over gRPC (`transactions`), and that every
//! status is built in `status.rs` (`status_sites`); `common` is the broker harness they
//! share.

mod broker;
mod cluster;
mod common;
mod console;
mod console_browser;
mod durability;
mod groups;
mod idempotence;
mod identity;
mod internal;
mod kafka;
mod python;
mod queues;
mod status_sites;
mod transactions;
mod untrusted;
