//! [`ClientError`]: what every client operation can fail with, keeping the broker's gRPC
//! code and message so a caller (the CLI) can print something actionable and pick an exit
//! status, and saying whether retrying can help.

use std::sync::Arc;

use tonic::Code;
use weir_batch::BatchError;

/// Why a client operation failed.
///
/// Broker answers keep their gRPC code as the variant and the broker's message as the
/// text. The type is `Clone` because one produce outcome is delivered to every record of
/// a batch; causes that are not `Clone` are shared behind an [`Arc`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No such topic or partition (gRPC `NOT_FOUND`).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request was refused as malformed: a bad name, count, offset or record
    /// (gRPC `INVALID_ARGUMENT`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An offset outside the partition's valid range (gRPC `OUT_OF_RANGE`).
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// The topic already exists (gRPC `ALREADY_EXISTS`).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The broker cannot serve the request in its current state, for example too few
    /// in-sync replicas (gRPC `FAILED_PRECONDITION`).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The broker is not reachable or not ready (gRPC `UNAVAILABLE`); retriable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The broker is overloaded (gRPC `RESOURCE_EXHAUSTED`); retriable.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// No answer in time (gRPC `DEADLINE_EXCEEDED`, or the client's request timeout);
    /// retriable.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// Any other gRPC status.
    #[error("{code:?}: {message}")]
    Rpc {
        /// The gRPC code.
        code: Code,
        /// The broker's message.
        message: String,
    },
    /// No broker in the list could be connected to.
    #[error("cannot connect to broker {address}")]
    Connect {
        /// The last address tried.
        address: String,
        /// Why.
        #[source]
        source: Arc<tonic::transport::Error>,
    },
    /// A client setting or argument is wrong (found before anything was sent).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Records could not be encoded, or a batch from the broker could not be decoded.
    #[error("record batch error")]
    Batch(#[source] Arc<BatchError>),
    /// The producer or consumer was closed.
    #[error("the client is closed")]
    Closed,
}

impl ClientError {
    /// The gRPC code this error corresponds to (`Unknown` for client-side errors that
    /// have none, `Unavailable` for connection failures).
    pub fn code(&self) -> Code {
        match self {
            ClientError::NotFound(_) => Code::NotFound,
            ClientError::InvalidArgument(_) | ClientError::Config(_) => Code::InvalidArgument,
            ClientError::OutOfRange(_) => Code::OutOfRange,
            ClientError::AlreadyExists(_) => Code::AlreadyExists,
            ClientError::FailedPrecondition(_) => Code::FailedPrecondition,
            ClientError::Unavailable(_) | ClientError::Connect { .. } => Code::Unavailable,
            ClientError::ResourceExhausted(_) => Code::ResourceExhausted,
            ClientError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            ClientError::Rpc { code, .. } => *code,
            ClientError::Batch(_) => Code::DataLoss,
            ClientError::Closed => Code::Cancelled,
        }
    }

    /// Whether sending the same request again may succeed: the broker was unreachable,
    /// overloaded or slow. Bad input, missing topics and data errors are never retried.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.code(),
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Aborted
        )
    }

    /// The error for a gRPC code and message, from a `Status` or a per-partition error.
    pub fn from_code(code: Code, message: impl Into<String>) -> ClientError {
        let message = message.into();
        match code {
            Code::NotFound => ClientError::NotFound(message),
            Code::InvalidArgument => ClientError::InvalidArgument(message),
            Code::OutOfRange => ClientError::OutOfRange(message),
            Code::AlreadyExists => ClientError::AlreadyExists(message),
            Code::FailedPrecondition => ClientError::FailedPrecondition(message),
            Code::Unavailable => ClientError::Unavailable(message),
            Code::ResourceExhausted => ClientError::ResourceExhausted(message),
            Code::DeadlineExceeded => ClientError::DeadlineExceeded(message),
            code => ClientError::Rpc { code, message },
        }
    }

    /// The error a per-partition result carries.
    pub(crate) fn from_partition_error(error: &weir_proto::v1::PartitionError) -> ClientError {
        ClientError::from_code(Code::from_i32(error.code), error.message.clone())
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> ClientError {
        ClientError::from_code(status.code(), status.message())
    }
}

impl From<BatchError> for ClientError {
    fn from(error: BatchError) -> ClientError {
        ClientError::Batch(Arc::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_code_and_message() {
        let error = ClientError::from(tonic::Status::not_found("topic t does not exist"));
        assert!(matches!(&error, ClientError::NotFound(m) if m == "topic t does not exist"));
        assert_eq!(error.code(), Code::NotFound);
        let other = ClientError::from(tonic::Status::permission_denied("no"));
        assert_eq!(other.code(), Code::PermissionDenied);
        assert_eq!(other.to_string(), "PermissionDenied: no");
    }

    #[test]
    fn only_availability_errors_are_retriable() {
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
        ] {
            assert!(ClientError::from_code(code, "x").is_retriable(), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::OutOfRange,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::Internal,
        ] {
            assert!(
                !ClientError::from_code(code, "x").is_retriable(),
                "{code:?}"
            );
        }
    }
}
