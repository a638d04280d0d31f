//! weir-cli's integration tests, one binary (`amqp` and `amqp_more`: RabbitMQ's clients): the real `weir` binary
//! (`env!("CARGO_BIN_EXE_weir")`) against brokers in this process or `weir serve`
//! processes: commands and their errors (`cli`, `connection`, `topic_create`,
//! `group_drain`, `queue`, `users_acls`), the examples every `--help` prints
//! (`help_examples`), `weir dev cluster`, TLS, authentication, client quotas, the console
//! in a browser as an ordinary user (`console_browser`), and the Kafka clients users run
//! (`kafka_clients`, `kafka_answers`, `kafka_transactions`), a full disk under both (`disk_full`), and a data
//! directory an older `weir` wrote (`upgrade`); `common` holds the broker harness and
//! `common::secure` the secured `weir serve` process.

mod amqp;
mod amqp_more;
mod authentication;
mod cli;
mod client_quotas;
mod common;
mod connection;
mod console_browser;
mod dev_cluster;
mod disk_full;
mod group_drain;
mod help_examples;
mod kafka_answers;
mod kafka_clients;
mod kafka_transactions;
mod queue;
mod tls;
mod topic_create;
mod upgrade;
mod users_acls;
