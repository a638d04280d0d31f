//! The metadata quorum (`docs/replication.md` § 1): the voters' replicated log of
//! metadata records, run by openraft 0.9 over a static voter set, applied in order to a
//! [`MetadataImage`](crate::controller::MetadataImage).
//!
//! - `types`: the openraft type configuration; one log entry is one proposal's
//!   records ([`MetadataEntry`]), which commit and apply atomically.
//! - `log_store`: the Raft log, vote and committed id on disk (segment files of CRC'd
//!   entries; why not weir-log's `Log` is said there).
//! - `state_machine`: applies entries to the image, publishes it, writes and installs
//!   snapshots; a record that does not apply stops the quorum, loudly.
//! - `network`: the seam to the broker's transport, [`QuorumTransport`], with RPCs as
//!   bytes.
//! - `handle`: [`Quorum`], what the broker holds: start, propose, image, subscribe.
//! - `legacy`: turning a pre-replication `metadata.weir` into the first entry.
//! - `state_file`: the framed, atomically replaced files (vote, committed, purged,
//!   snapshot), in weir-log's `framed_file` frame with the quorum's magic and kinds.
//!
//! On disk, under the directory given to [`Quorum::start`] (the broker's
//! `<data_dir>/metadata/`): `vote`, `committed`, `purged` and `snapshot` (state files),
//! and `log/<first index>.log` (segments); byte by byte in `docs/storage-format.md`.
//! The metadata offset of a record is its
//! position among applied records (the image's `next_offset`), not a Raft index:
//! blank and membership entries carry no records.
//!
//! Architecture invariant: no gRPC here; the broker's transport carries the bytes.
//! Storage I/O runs on blocking threads.

mod config;
mod elections;
mod error;
mod handle;
mod legacy;
mod log_store;
mod network;
mod state_file;
mod state_machine;
#[cfg(test)]
mod store_suite;
mod types;

pub use config::{
    DEFAULT_ELECTION_TIMEOUT_MAX_MS, DEFAULT_ELECTION_TIMEOUT_MIN_MS,
    DEFAULT_ENTRIES_KEPT_AFTER_SNAPSHOT, DEFAULT_HEARTBEAT_INTERVAL_MS,
    DEFAULT_LOG_SEGMENT_BYTES_MAX, DEFAULT_MAX_ENTRIES_PER_RPC, DEFAULT_SNAPSHOT_EVERY_ENTRIES,
    DEFAULT_SNAPSHOT_SEND_TIMEOUT_MS, QuorumConfig,
};
pub use error::{QuorumError, StoreError};
pub use handle::{MAX_PROPOSAL_BYTES, Quorum, QuorumStatus, VoterProgress};
pub use legacy::LegacyMigration;
pub use log_store::MAX_ENTRY_BYTES;
pub use network::{MAX_RPC_BYTES, QuorumTransport, RpcFuture, RpcKind, TransportError};
pub use state_file::{MAX_SNAPSHOT_BYTES, MAX_STATE_PAYLOAD_BYTES};
pub use state_machine::{MAX_TAIL_RECORDS, MetadataDelta};
pub use types::{AppliedEntry, MetadataEntry, TypeConfig};
