//! Share groups (queues on the log; docs/queues.md) as pure state machines.
//!
//! - [`partition`]: [`SharePartition`], the in-flight window of one partition for one
//!   share group: which records are available, acquired by a member under a lock,
//!   acknowledged or archived, with their delivery counts and not-before times. The clock
//!   is an argument (`now_ms`), the log's records come in through
//!   [`SharePartition::extend`].
//! - [`state_records`]: [`StateKey`] and [`StateValue`], its records in
//!   `__share_group_state`, and [`StateLock`], the locks a snapshot carries beside its
//!   value.
//! - [`settings`]: [`GroupSettings`], what a group sets for itself (lock duration,
//!   delivery limit, dead-letter topic, header filter: [`filter`], [`HeaderFilter`]), and
//!   its record in `__share_group_state`.
//! - [`windows`]: a group's windows as a coordinator holds them, the snapshots a request
//!   writes and the replay a new coordinator runs.
//!
//! weir-cluster's `share` module drives them: it reads the data partitions, holds each
//! group's windows under a lock, writes their snapshots and answers once durable.

pub mod filter;
pub mod partition;
pub mod settings;
pub mod state_records;
pub mod windows;

pub use filter::{
    FilterError, HeaderCondition, HeaderFilter, HeaderMatch, MAX_FILTER_CONDITIONS,
    MAX_FILTER_KEY_BYTES, MAX_FILTER_VALUE_BYTES, MAX_FILTER_VALUES,
};
pub use partition::{
    AckError, AckKind, Acquired, ArchiveReason, Archived, MAX_DELIVERY_DELAY_MS, NEVER_EXPIRES,
    RecordState, ShareConfig, SharePartition, WindowCounts,
};
pub use settings::{
    GroupSettings, MAX_DELIVERY_COUNT_LIMIT, MAX_LENGTH, MAX_MESSAGE_TTL_MS, ShareStart,
};
pub use state_records::{
    LOCKS_HEADER, MAX_GROUP_ID_BYTES, MAX_STATE_RANGES, PersistedState, STATE_RECORD_VERSION,
    StateKey, StateKind, StateLock, StateRange, StateRecordError, StateValue,
};
