//! Errors of the metadata quorum. Four kinds stay apart: bad input (the caller's fault:
//! a voter set, a proposal, an RPC), availability (not the leader, no leader, stopped:
//! retriable elsewhere or later), storage I/O and corruption (names the file and
//! position), and bugs (those panic, or stop the quorum when a committed record does not
//! apply, and are not here).

use std::io;
use std::path::PathBuf;

use crate::controller::{ImageError, MetadataOffset};
use crate::error::MetadataError;
use crate::partition::BrokerId;

use super::handle::QuorumStatus;
use super::types::NodeId;

/// Why a quorum file (log segment, vote, purge point, snapshot) could not be read or
/// written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is corrupt at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
}

impl QuorumError {
    pub(crate) fn stopped(fatal: openraft::error::Fatal<NodeId>) -> QuorumError {
        QuorumError::Stopped(Box::new(fatal))
    }
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> StoreError {
        StoreError::Corrupt {
            path: path.into(),
            position,
            reason: reason.into(),
        }
    }
}

/// Why a quorum operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    // --- bad input ---
    #[error("invalid voter set: {0}")]
    InvalidVoters(String),
    #[error(
        "node {node} is not a voter (voters: {voters:?}); only voters run the metadata quorum, other brokers observe it"
    )]
    NotAVoter {
        node: BrokerId,
        voters: Vec<BrokerId>,
    },
    #[error(
        "the quorum in {dir} was formed with voters {stored:?}, not the configured {configured:?}: the voter set is static"
    )]
    VotersChanged {
        dir: PathBuf,
        stored: Vec<BrokerId>,
        configured: Vec<BrokerId>,
    },
    #[error("invalid quorum config: {0}")]
    InvalidConfig(String),
    #[error("a proposal must carry at least one record")]
    EmptyProposal,
    #[error("a proposal of {bytes} bytes exceeds the {max}-byte limit of a metadata log entry")]
    ProposalTooLarge { bytes: usize, max: usize },
    #[error("metadata offset {0} is negative")]
    NegativeOffset(MetadataOffset),
    #[error("malformed quorum RPC: {0}")]
    BadRpc(String),

    // --- availability: retriable on the leader, or later ---
    #[error("this node is not the active controller (leader: {leader:?})")]
    NotLeader { leader: Option<BrokerId> },
    #[error("no leader was elected within {waited_ms} ms")]
    NoLeader { waited_ms: u64 },
    #[error("waited {waited_ms} ms for the quorum; it stands at {status:?}")]
    TimedOut {
        waited_ms: u64,
        status: Box<QuorumStatus>,
    },
    #[error(
        "metadata offset {offset} is ahead of this node's applied metadata (next offset {next_offset})"
    )]
    OffsetAhead {
        offset: MetadataOffset,
        next_offset: MetadataOffset,
    },
    /// Raft stopped: shut down, or a storage error or a record that did not apply
    /// stopped it (see the log).
    #[error("the metadata quorum has stopped: {0}")]
    Stopped(#[source] Box<openraft::error::Fatal<NodeId>>),
    #[error("the quorum task failed while shutting down: {0}")]
    Shutdown(#[source] tokio::task::JoinError),

    // --- storage ---
    #[error(transparent)]
    Store(#[from] StoreError),

    // --- migration of a data directory from before replication ---
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("{path} cannot be migrated: {source}")]
    LegacyInvalid {
        path: PathBuf,
        #[source]
        source: ImageError,
    },
    #[error(
        "{path} exists but the quorum has {voters} voters: migrate a data directory from before replication on a single node first"
    )]
    LegacyNeedsSingleVoter { path: PathBuf, voters: usize },
    #[error(
        "{path} exists but the metadata quorum already holds metadata that did not come from it; move the file away if the quorum's metadata is the one to keep"
    )]
    LegacyConflict { path: PathBuf },
}
