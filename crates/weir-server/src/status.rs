//! The one place internal errors become gRPC statuses: [`status`] for whole-call
//! failures and [`partition_error`] for the per-partition errors results carry. Each
//! error kind gets the code a client can act on, and its message says what to fix.

use tonic::{Code, Status};
use weir_cluster::ClusterError;
use weir_cluster::group::{GroupError, GroupErrorCode};
use weir_log::{AppendError, MaintenanceError, ReadError};
use weir_proto::v1::PartitionError;

/// The status code for `err`.
pub fn code(err: &ClusterError) -> Code {
    match err {
        ClusterError::UnknownTopic(_) => Code::NotFound,
        ClusterError::TopicExists(_) => Code::AlreadyExists,
        ClusterError::UnknownPartition { .. }
        | ClusterError::TopicName(_)
        | ClusterError::Config(_)
        | ClusterError::InvalidRequest(_) => Code::InvalidArgument,
        ClusterError::OffsetOutOfRange { .. } => Code::OutOfRange,
        // The topic was deleted under the request, or the broker is stopping: retry
        // (against the new topic, or another broker).
        ClusterError::PartitionClosed { .. } => Code::Unavailable,
        ClusterError::Append { source, .. } => match source {
            AppendError::InvalidBatch { .. }
            | AppendError::MessageTooLarge { .. }
            | AppendError::Empty => Code::InvalidArgument,
            AppendError::StaleLeaderEpoch { .. } | AppendError::OffsetMismatch { .. } => {
                Code::FailedPrecondition
            }
            AppendError::Io { .. } | AppendError::Failed { .. } => Code::Unavailable,
        },
        ClusterError::Read { source, .. } => match source {
            ReadError::OffsetOutOfRange { .. } => Code::OutOfRange,
            // Corruption is not the caller's fault and retrying will not help.
            ReadError::Corrupt { .. } => Code::DataLoss,
            ReadError::Io { .. } => Code::Unavailable,
        },
        ClusterError::Maintenance { source, .. } => match source {
            MaintenanceError::OffsetOutOfRange { .. } => Code::OutOfRange,
            _ => Code::Unavailable,
        },
        // Go to the leader the message names (or refresh metadata and retry).
        ClusterError::NotLeader { .. } | ClusterError::FencedLeaderEpoch { .. } => {
            Code::FailedPrecondition
        }
        // Retriable: the ISR grows back as followers catch up.
        ClusterError::NotEnoughReplicas { .. } => Code::Unavailable,
        ClusterError::Open { .. }
        | ClusterError::Metadata(_)
        | ClusterError::Io { .. }
        | ClusterError::TaskFailed(_) => Code::Internal,
    }
}

/// `err` as a whole-call status.
pub fn status(err: ClusterError) -> Status {
    let code = code(&err);
    if matches!(code, Code::Internal | Code::Unavailable | Code::DataLoss) {
        tracing::warn!(error = %err, "request failed");
    }
    Status::new(code, err.to_string())
}

/// A group operation's failure as a whole-call status.
pub fn group_status(err: GroupError) -> Status {
    let code = match err.code() {
        GroupErrorCode::InvalidArgument => Code::InvalidArgument,
        GroupErrorCode::NotFound => Code::NotFound,
        GroupErrorCode::FailedPrecondition => Code::FailedPrecondition,
        GroupErrorCode::ResourceExhausted => Code::ResourceExhausted,
        GroupErrorCode::Internal => Code::Internal,
        GroupErrorCode::Cluster => match err {
            GroupError::Cluster(inner) => return status(inner),
            _ => Code::Internal,
        },
    };
    if code == Code::Internal {
        tracing::warn!(error = %err, "group request failed");
    }
    Status::new(code, err.to_string())
}

/// `err` as a per-partition error in a result.
pub fn partition_error(err: &ClusterError) -> PartitionError {
    PartitionError {
        code: code(err) as i32,
        message: err.to_string(),
    }
}

/// A per-partition error for bad input found at the edge (before the cluster layer).
pub fn invalid_argument(message: impl Into<String>) -> PartitionError {
    PartitionError {
        code: Code::InvalidArgument as i32,
        message: message.into(),
    }
}

/// A per-partition error with an explicit code.
pub fn partition_error_code(code: Code, message: impl Into<String>) -> PartitionError {
    PartitionError {
        code: code as i32,
        message: message.into(),
    }
}
