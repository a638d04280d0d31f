//! Weir's coordinators as pure state machines: what a coordinator decides, apart from how
//! it is driven.
//!
//! Each coordinator here takes events (a request, a loaded record, the passing of time
//! given as a value) and answers with commands (records to append to its internal
//! partition, answers to send, markers to write). None of them reads a clock, spawns a
//! task, touches a file or a socket: the shells in weir-cluster drive them on the leader
//! of their internal partition (`__consumer_offsets`, `__share_group_state`,
//! `__transaction_state`), append what they ask for and answer only once it is
//! replicated. That keeps every rule testable without a runtime and lets one seeded
//! simulation drive them all through crashes, failovers and partitions.
//!
//! Must never know: tokio, the network, the log's files, any protocol's wire format
//! beyond the internal topics' record layouts.
//!
//! - [`group`]: consumer groups, KIP-848 and classic, and `__consumer_offsets`.
//! - [`share`]: share groups (queues) and `__share_group_state`.
//! - [`txn`]: the transaction coordinator and `__transaction_state`.
//! - `sim` (tests only): one seeded simulation of the group and share machines, one
//!   generator (the transactions' is `txn/sim/`, on the same generator).

pub mod group;
pub mod share;
#[cfg(test)]
mod sim;
pub mod txn;

/// Names starting with this are the broker's own topics (`__consumer_offsets`, …): a
/// regex subscription never matches one.
pub const INTERNAL_TOPIC_PREFIX: &str = "__";

/// True for the broker's own topics.
pub fn is_internal(name: &str) -> bool {
    name.starts_with(INTERNAL_TOPIC_PREFIX)
}

/// The bytes a hex string spells (whitespace ignored): the golden record layouts of the
/// tests, written as they are documented.
#[cfg(test)]
pub(crate) fn golden_hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex"))
        .collect()
}
