//! Share groups (queues on the log; docs/queues.md): the share-partition state machine.
//!
//! [`SharePartition`] is the in-flight window of one partition for one share group, as its
//! leader keeps it: which records are available, acquired by a member under a lock,
//! acknowledged or archived, with their delivery counts and not-before times. It is sans-io
//! like the replication machines: the clock is an argument (`now_ms`), the log's records
//! come in through [`SharePartition::extend`], and what must be dead-lettered goes out
//! in the results. [`StateKey`] and [`StateValue`] are its records in
//! `__share_group_state` ([`SharePartition::snapshot`], [`SharePartition::load`]); writing
//! and reading that topic, the fetch and acknowledge operations in the broker core and the
//! protocols are not built yet.

mod partition;
mod state_records;

pub use partition::{
    AckError, AckKind, Acquired, ArchiveReason, Archived, MAX_DELIVERY_DELAY_MS, RecordState,
    ShareConfig, SharePartition, WindowCounts,
};
pub use state_records::{
    MAX_GROUP_ID_BYTES, MAX_STATE_RANGES, PersistedState, STATE_RECORD_VERSION, StateKey,
    StateKind, StateRange, StateRecordError, StateValue,
};
