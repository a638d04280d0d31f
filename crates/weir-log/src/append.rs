//! Checking an append request before it reaches the log: [`check_request`] and
//! [`ValidatedBatches`].

use bytes::BytesMut;

use crate::batch::{BatchError, BatchHeader, framed_len, validate};
use crate::error::AppendError;

/// Checks an append request: one or more concatenated batches, each valid
/// ([`validate`]) and at most `max_batch_bytes`. Returns their headers; the error names
/// the first bad batch by index and byte position.
pub fn check_request(
    bytes: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<BatchHeader>, AppendError> {
    if bytes.is_empty() {
        return Err(AppendError::Empty);
    }
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let invalid = |source| AppendError::InvalidBatch {
            index: headers.len(),
            position: pos,
            source,
        };
        let len = framed_len(rest).map_err(invalid)?;
        if len > max_batch_bytes {
            return Err(AppendError::MessageTooLarge {
                bytes: len,
                max: max_batch_bytes,
            });
        }
        if rest.len() < len {
            return Err(invalid(BatchError::Truncated {
                needed: len,
                available: rest.len(),
            }));
        }
        let header = validate(&rest[..len]).map_err(invalid)?;
        // Only compaction leaves batches without records; a producer never sends one.
        if header.record_count == 0 {
            return Err(invalid(BatchError::Empty));
        }
        headers.push(header);
        pos += len;
    }
    Ok(headers)
}

/// Batches that passed [`check_request`], with their headers: what
/// [`Log::append_validated`](crate::Log::append_validated) takes. Build it where untrusted
/// bytes arrive (a request handler), so the CRC and framing checks run there, in parallel
/// with other requests, rather than under the partition's lock.
#[derive(Debug)]
pub struct ValidatedBatches {
    pub(crate) bytes: BytesMut,
    pub(crate) headers: Vec<BatchHeader>,
}

impl ValidatedBatches {
    /// Validates `bytes` (see [`check_request`]).
    pub fn new(bytes: BytesMut, max_batch_bytes: usize) -> Result<ValidatedBatches, AppendError> {
        let headers = check_request(&bytes, max_batch_bytes)?;
        Ok(ValidatedBatches { bytes, headers })
    }

    /// The batch bytes; after an append they carry the assigned offsets.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn headers(&self) -> &[BatchHeader] {
        &self.headers
    }

    pub fn into_bytes(self) -> BytesMut {
        self.bytes
    }
}
