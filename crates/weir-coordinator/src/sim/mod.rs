//! One seeded simulation of the coordinators: each machine driven through member
//! crashes, lost answers and coordinator failovers (a new coordinator rebuilt from the
//! records written so far), with no I/O and one seed deciding everything.

mod group;
#[allow(dead_code)]
mod rng;
mod share;
