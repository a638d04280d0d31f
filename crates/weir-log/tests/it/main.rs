//! weir-log's integration tests, one binary: a `Log` as its users see it (`log`), against
//! a model (`model`), compaction, idempotent producers, replication from the log's side,
//! stamped appends, transactions (`transactions`), direct writes past the page cache (`direct`), parking idle logs (`park`), storage faults, and SIGKILL of a child process mid-append (`crash`,
//! which runs this binary again as the child); `common` builds batches and reads logs
//! back for all of them.

mod common;
mod compaction;
mod crash;
mod direct;
mod faults;
mod log;
mod model;
mod park;
mod producers;
mod replication;
mod stamped;
mod transactions;
