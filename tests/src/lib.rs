//! End-to-end fault tests of a Weir cluster: real `weir serve` processes on 127.0.0.1,
//! faults a user's cluster meets (a process killed, paused, stopped gracefully, cut off
//! from its peers, slowed), and a check of what clients saw against what Weir promises
//! (docs/replication.md § 3: no acknowledged record lost; a record read is never changed
//! or taken back).
//!
//! - [`cluster`]: starts the brokers (building the `weir` binary if it is stale, see
//!   [`binary`]), signals them, restarts them on their data directories, asks them
//!   what they think through [`probe`] (DescribeCluster, DescribeTopic, a topic read
//!   back in full), which asks any cluster's nodes straight at their ports.
//! - [`compose`]: the compose cluster of `deploy/compose` on the Docker engine, from an
//!   image of the binary under test ([`image`]), and the faults Docker applies (kill,
//!   pause, network disconnect, restart) and the scale-out broker.
//! - [`faultfs`]: a broker's data directory on `weir-faultfs`, this crate's FUSE file
//!   system that fails fsyncs or writes with EIO when told to (`src/bin/weir-faultfs/`).
//! - [`proxy`]: a TCP proxy in front of every node that cuts and delays links between
//!   nodes, telling nodes apart by their processes ([`owner`]).
//! - [`workload`]: producers and consumers on the real client, recording a history.
//! - [`availability`]: how long each partition took no writes during a fault, from the
//!   workload's acknowledgement times.
//! - [`checker`]: finds the anomalies in a history (lost, duplicated, changed records,
//!   consumers going backwards or skipping).
//! - [`nemesis`]: a seeded random schedule of faults, for the long run.
//! - [`tmpfs`]: a size-limited tmpfs under each broker's data directory, filled and
//!   freed for the "full disk" fault.
//! - [`wait`]: every wait is on a condition with a deadline.
//!
//! Architecture invariant: this crate knows the `weir` binary's flags, the public gRPC
//! API, the client and the deployment files in `deploy/` (run with the Docker and
//! docker-compose CLIs), never a broker's internals: it checks what a user could.
//! Linux only (`/proc`, `prctl`).

pub mod availability;
pub mod binary;
pub mod checker;
pub mod cluster;
pub mod compose;
pub mod faultfs;
pub mod image;
pub mod nemesis;
pub mod owner;
pub mod probe;
pub mod process;
pub mod proxy;
pub mod tmpfs;
pub mod wait;
pub mod workload;

/// Sends the test process's own logs (the client's: `weir_client` warns when it resets a
/// position or gives up on a stream) to the test's output; `WEIR_TESTS_CLIENT_LOG` sets
/// the filter (default `weir_client=warn`). Brokers log to their own files.
pub fn init_client_logs() {
    let filter =
        std::env::var("WEIR_TESTS_CLIENT_LOG").unwrap_or_else(|_| "weir_client=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

/// Runs the tests that start a cluster one at a time, whichever module of this crate's
/// one test binary they are in: each starts three brokers (or the compose cluster, whose
/// container names are fixed), and two clusters on two cores would make every timing
/// (and the failover figures) meaningless.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}
