//! Deterministic simulation of replication (`docs/replication.md` § 5).
//!
//! Three brokers' replication state machines (`weir_cluster::replication::Replica`) and
//! the controller's (`weir_cluster::controller`) run in one thread over real weir-log
//! logs on `FaultyStorage`, driven by one seed: message delay, loss, duplication and
//! reordering, link cuts, network partitions (the brokers and the controller split into
//! two random groups, every link between them cut both ways or only one way, healed
//! after 0.2-6 s), crashes that drop unflushed bytes, restarts, pauses and controller
//! failovers, with producers (`acks=all`) and a consumer. Each broker keeps its
//! controller-session lease as `node/lifecycle.rs` `watch_lease` does (counted from the
//! send time of the last answered heartbeat; `LeaseLapsed` / `LeaseRenewed` to its
//! replicas). The checker asserts the invariants after every step, and the lease
//! argument: one node acknowledges per (partition, leader epoch); no broker appends,
//! answers an `acks=all` produce or serves a read once its lease ran out; and the
//! controller fences a broker for session expiry only once that broker's lease has
//! lapsed (a new controller's early fences excepted: they cost availability only). A
//! failure names the seed and prints the trace that led to it.
//!
//! - `cargo test -p weir-cluster --test it -- sim::`: `SEEDS_IN_CI` seeds.
//! - `WEIR_SIM_SEEDS=100000 cargo test --release -p weir-cluster --test it -- sim::`: many
//!   more.
//! - `WEIR_SIM_SEED=1234 cargo test -p weir-cluster --test it -- sim::`: replay one seed.

mod broker;
mod checker;
mod clients;
mod controller;
mod faults;
mod net;
mod node;
mod rng;
mod world;

use world::{SimConfig, World};

/// Seeds the default test run covers: about 0.45 s each in a debug build on 2 cores, so
/// 150 (a minute) keep the whole default run, which the security tests grew, under its
/// 35-minute budget; the release runs in docs/replication.md § 5 cover thousands more.
const SEEDS_IN_CI: u64 = 150;

fn seeds() -> std::ops::Range<u64> {
    if let Ok(seed) = std::env::var("WEIR_SIM_SEED") {
        let seed: u64 = seed.parse().expect("WEIR_SIM_SEED is a number");
        return seed..seed + 1;
    }
    let count = std::env::var("WEIR_SIM_SEEDS")
        .ok()
        .map(|s| s.parse().expect("WEIR_SIM_SEEDS is a number"))
        .unwrap_or(SEEDS_IN_CI);
    0..count
}

#[test]
fn replication_keeps_every_acknowledged_record_under_faults() {
    let root = tempfile::Builder::new()
        .prefix("weir-sim")
        .tempdir_in(scratch_dir())
        .expect("temp dir");
    let mut acked = 0u64;
    for seed in seeds() {
        let dir = root.path().join(format!("seed-{seed}"));
        let mut world = World::new(seed, SimConfig::default(), &dir);
        let outcome = world.run();
        if std::env::var_os("WEIR_SIM_VERBOSE").is_some() {
            eprintln!(
                "seed {seed}: {} faults, {} elections, {} truncations, {} lease lapses, {} acknowledged",
                outcome.faults,
                outcome.elections,
                outcome.truncations,
                outcome.lapses,
                outcome.acked
            );
        }
        acked += outcome.acked;
        std::fs::remove_dir_all(&dir).ok();
    }
    assert!(
        acked > 0,
        "the producers got nothing acknowledged in any seed"
    );
}

/// tmpfs when there is one: the simulation fsyncs constantly and only its own crash
/// model decides what survives.
fn scratch_dir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
