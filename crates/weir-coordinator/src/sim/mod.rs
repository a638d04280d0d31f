//! One seeded simulation of the coordinators: each machine driven through member crashes,
//! lost answers, network partitions and coordinator failovers (a new coordinator rebuilt
//! from the records written so far), with no I/O and one seed deciding everything.
//!
//! - `group`: one KIP-848 group (state machine, member records, replay).
//! - `classic`: one classic group (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, offset
//!   commits with generations), through the shard's records and replay.
//! - `share`: one share group's window (acquire, acknowledge, locks, delivery counts).
//!
//! Every simulation is a [`Simulation`] run by [`run_seeds`]: the same generator
//! (SplitMix64, `weir-cluster/tests/it/sim/rng.rs`, which weir-cluster's replication
//! simulation and the transaction simulation in `txn/sim/` include too), the same seed
//! counts and the same report of a failing seed with the tail of its trace.
//!
//! `cargo test -p weir-coordinator --lib sim` runs each machine's default count of
//! seeds (a few seconds in all); `WEIR_SIM_SEEDS=N` runs N seeds of each,
//! `WEIR_SIM_SEED=n` replays seed n of each. A machine's own variables
//! (`WEIR_GROUP_SIM_SEEDS`, `WEIR_CLASSIC_SIM_SEED`, `WEIR_SHARE_SIM_SEEDS`, …) take
//! precedence for that machine.

mod classic;
mod group;
// The generator of every Weir simulation (SplitMix64), weir-cluster's replication
// simulation's and the transaction simulation's too, so one seed replays exactly. The
// transaction simulation (`txn/sim/`) includes the same file for itself: one source,
// included twice until it takes this one.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../../weir-cluster/tests/it/sim/rng.rs"]
mod rng;
mod share;

/// One machine's simulation, for one seed.
pub(crate) trait Simulation {
    /// The machine, in messages and variable names (`WEIR_{NAME}_SIM_SEEDS`).
    const NAME: &'static str;
    /// Seeds of the default run.
    const SEEDS: u64;
    /// Trace lines printed when a seed fails.
    const TRACE_TAIL: usize;

    fn new(seed: u64) -> Self;
    /// Runs the seed to its end, panicking at the first broken property.
    fn run(&mut self);
    /// What happened so far, one line per step.
    fn trace(&self) -> &[String];
}

/// The seeds to run for machine `name`: one to replay, or a count from 0.
fn seeds(name: &str, default: u64) -> std::ops::Range<u64> {
    let var = |suffix: &str| {
        let own = format!("WEIR_{}_SIM_{suffix}", name.to_uppercase());
        let all = format!("WEIR_SIM_{suffix}");
        [own, all].into_iter().find_map(|var| {
            std::env::var(&var).ok().map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{var} is a number"))
            })
        })
    };
    match var("SEED") {
        Some(seed) => seed..seed + 1,
        None => 0..var("SEEDS").unwrap_or(default),
    }
}

/// Runs `S` over its seeds; a failing seed prints the tail of its trace and how to
/// replay it, then fails the test.
pub(crate) fn run_seeds<S: Simulation>() {
    for seed in seeds(S::NAME, S::SEEDS) {
        let mut sim = S::new(seed);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()));
        if let Err(panic) = outcome {
            let trace = sim.trace();
            for line in &trace[trace.len().saturating_sub(S::TRACE_TAIL)..] {
                eprintln!("  {line}");
            }
            let var = format!("WEIR_{}_SIM_SEED", S::NAME.to_uppercase());
            eprintln!(
                "{} simulation failed: seed {seed} ({var}={seed} replays it)",
                S::NAME
            );
            std::panic::resume_unwind(panic);
        }
    }
}
