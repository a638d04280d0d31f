//! The types of [`Producer::send_all`](super::Producer::send_all): [`RecordRef`], a
//! record given by borrowed parts; [`BatchDelivery`], the one handle for every record of
//! a call; and what it resolves to, [`DeliveredRecords`] and its [`OffsetRange`]s.

use std::future::{Future, IntoFuture};
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use weir_batch::Header;

use super::accumulator::Segment;
use crate::error::ClientError;

/// One record of a [`Producer::send_all`](super::Producer::send_all) call, by borrowed
/// parts: its key and value are copied straight into the batch being filled, so nothing
/// is allocated, reference-counted or cloned per record.
///
/// Build one with [`RecordRef::new`] and the setters, or convert from a value: `&[u8]`,
/// `&Bytes`, `&Vec<u8>`, `&str` and `&String` become an unkeyed record with that value;
/// a pair `(key, value)` of `&[u8]` becomes a keyed one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Record key; `None` is a null key (unkeyed: the sticky partitioner places it).
    pub key: Option<&'a [u8]>,
    /// Record value; `None` is a null value (a tombstone on compacted topics).
    pub value: Option<&'a [u8]>,
    /// Headers, in order.
    pub headers: &'a [Header],
    /// Creation time, ms since the Unix epoch; `None` takes the producer's clock (read
    /// once per call, not per record).
    pub timestamp: Option<i64>,
}

impl<'a> RecordRef<'a> {
    /// An unkeyed record with `value`.
    pub fn new(value: &'a [u8]) -> RecordRef<'a> {
        RecordRef {
            value: Some(value),
            ..RecordRef::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: &'a [u8]) -> RecordRef<'a> {
        self.key = Some(key);
        self
    }

    /// Sets the headers.
    pub fn headers(mut self, headers: &'a [Header]) -> RecordRef<'a> {
        self.headers = headers;
        self
    }

    /// Sets the timestamp (ms since the Unix epoch).
    pub fn timestamp(mut self, timestamp_ms: i64) -> RecordRef<'a> {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

impl<'a> From<&'a [u8]> for RecordRef<'a> {
    fn from(value: &'a [u8]) -> RecordRef<'a> {
        RecordRef::new(value)
    }
}

impl<'a> From<&'a Bytes> for RecordRef<'a> {
    fn from(value: &'a Bytes) -> RecordRef<'a> {
        RecordRef::new(value)
    }
}

impl<'a> From<&'a Vec<u8>> for RecordRef<'a> {
    fn from(value: &'a Vec<u8>) -> RecordRef<'a> {
        RecordRef::new(value)
    }
}

impl<'a> From<&'a str> for RecordRef<'a> {
    fn from(value: &'a str) -> RecordRef<'a> {
        RecordRef::new(value.as_bytes())
    }
}

impl<'a> From<&'a String> for RecordRef<'a> {
    fn from(value: &'a String) -> RecordRef<'a> {
        RecordRef::new(value.as_bytes())
    }
}

impl<'a> From<(&'a [u8], &'a [u8])> for RecordRef<'a> {
    /// A keyed record: `(key, value)`.
    fn from((key, value): (&'a [u8], &'a [u8])) -> RecordRef<'a> {
        RecordRef::new(value).key(key)
    }
}

/// The outcome of one [`Producer::send_all`](super::Producer::send_all) call: one handle
/// for all its records, however many batches they went into. Await it (it is
/// [`IntoFuture`]) or poll it with [`try_result`](Self::try_result); dropping it does not
/// cancel the send.
///
/// It resolves once every batch holding the call's records has its outcome: to the
/// [`DeliveredRecords`] (the offsets, one range per batch), or to the first error in call
/// order if any batch failed or the call stopped at a refused record (see
/// [`rejected`](Self::rejected)). Records of the batches that did succeed are written even
/// then, as with per-record sends whose batch succeeded.
#[derive(Debug)]
pub struct BatchDelivery {
    topic: Arc<str>,
    segments: Vec<Segment>,
    records: u64,
    rejected: Option<ClientError>,
}

impl BatchDelivery {
    pub(super) fn new(
        topic: Arc<str>,
        segments: Vec<Segment>,
        records: u64,
        rejected: Option<ClientError>,
    ) -> BatchDelivery {
        BatchDelivery {
            topic,
            segments,
            records,
            rejected,
        }
    }

    /// Records the call accepted (all it was given unless [`rejected`](Self::rejected)).
    pub fn record_count(&self) -> u64 {
        self.records
    }

    /// Why the call stopped before its last record, if it did: a record that can never be
    /// sent (larger than `buffer_memory` or than any batch), or the producer closed or
    /// fenced meanwhile. The records before it are sent; it and those after it are not.
    pub fn rejected(&self) -> Option<&ClientError> {
        self.rejected.as_ref()
    }

    /// Whether every batch holding the call's records has its outcome.
    pub fn is_complete(&self) -> bool {
        self.segments
            .iter()
            .all(|s| s.completion.result().is_some())
    }

    /// The outcome if it is known, without waiting.
    pub fn try_result(&self) -> Option<Result<DeliveredRecords, ClientError>> {
        self.is_complete().then(|| self.outcome())
    }

    /// Waits for the outcome.
    pub async fn wait(self) -> Result<DeliveredRecords, ClientError> {
        for segment in &self.segments {
            segment.completion.wait().await;
        }
        self.outcome()
    }

    /// The outcome, once every segment has completed.
    fn outcome(&self) -> Result<DeliveredRecords, ClientError> {
        let mut ranges = Vec::with_capacity(self.segments.len());
        for segment in &self.segments {
            let result = segment
                .completion
                .result()
                .expect("called once every batch completed");
            let ack = result.as_ref().map_err(Clone::clone)?;
            ranges.push(OffsetRange {
                partition: segment.partition,
                first_offset: if ack.base_offset < 0 {
                    -1
                } else {
                    ack.base_offset + i64::from(segment.first_index)
                },
                record_count: segment.count,
                log_append_time: (ack.log_append_time_ms >= 0).then_some(ack.log_append_time_ms),
            });
        }
        if let Some(error) = &self.rejected {
            return Err(error.clone());
        }
        Ok(DeliveredRecords {
            topic: self.topic.clone(),
            ranges,
        })
    }
}

impl IntoFuture for BatchDelivery {
    type Output = Result<DeliveredRecords, ClientError>;
    // Boxed because the future type of an `async fn` cannot be named: one box per call.
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

/// Where the records of one [`Producer::send_all`](super::Producer::send_all) call were
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredRecords {
    /// Topic name.
    pub topic: Arc<str>,
    /// One range per batch the call's records went into, in the order of each range's
    /// first record in the call. A partition's ranges follow the call's order of its
    /// records, with increasing offsets; with one partition (an explicit one, or unkeyed
    /// records that stayed on the sticky one) record `i` of the call is the `i`-th offset
    /// of the ranges taken in order.
    pub ranges: Vec<OffsetRange>,
}

impl DeliveredRecords {
    /// Records written, over all ranges.
    pub fn record_count(&self) -> u64 {
        self.ranges.iter().map(|r| u64::from(r.record_count)).sum()
    }

    /// The offset of the call's first record (-1 with [`Acks::None`](super::Acks::None)
    /// or for an empty call).
    pub fn first_offset(&self) -> i64 {
        self.ranges.first().map_or(-1, |r| r.first_offset)
    }

    /// The offset of the call's last record in its partition (-1 with
    /// [`Acks::None`](super::Acks::None) or for an empty call).
    pub fn last_offset(&self) -> i64 {
        self.ranges.last().map_or(-1, OffsetRange::last_offset)
    }
}

/// Consecutive offsets of one partition holding consecutive records of a call (the
/// call's share of one batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    /// Partition index.
    pub partition: u32,
    /// Offset of the range's first record; -1 with [`Acks::None`](super::Acks::None).
    pub first_offset: i64,
    /// Records in the range (at least 1).
    pub record_count: u32,
    /// The broker's append time, on topics with `message.timestamp.type=LogAppendTime`
    /// (the records then carry it instead of their own timestamps).
    pub log_append_time: Option<i64>,
}

impl OffsetRange {
    /// Offset of the range's last record (-1 with [`Acks::None`](super::Acks::None)).
    pub fn last_offset(&self) -> i64 {
        if self.first_offset < 0 {
            -1
        } else {
            self.first_offset + i64::from(self.record_count) - 1
        }
    }

    /// The range's offsets (empty with [`Acks::None`](super::Acks::None)).
    pub fn offsets(&self) -> Range<i64> {
        if self.first_offset < 0 {
            0..0
        } else {
            self.first_offset..self.first_offset + i64::from(self.record_count)
        }
    }
}
