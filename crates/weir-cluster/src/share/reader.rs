//! Reading a data partition for a share group: taking the log's next records into a
//! window, and reading back the records a fetch acquired.
//!
//! The coordinator reads the partition's local replica, leader or follower, below the
//! high watermark it knows ([`Partition::read_replica`]): only committed records are
//! ever handed out. A coordinator that hosts no replica of a partition reads it at its
//! leader through the server's [`RemoteLog`] (`remote`), below the leader's high
//! watermark: [`DataSource`] is either.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_log::{DecodedRecord, decode_records};

use super::filter::HeaderFilter;
use super::partition::{MAX_DELIVERY_DELAY_MS, SharePartition};
use super::remote::{RemoteLog, RemotePartition, RemoteReadError};
use super::{
    DELIVER_AT_HEADER, EXPIRE_AT_HEADER, NEVER_EXPIRES, SHARE_CACHE_BYTES, SHARE_FILTER_SCAN_BYTES,
    SHARE_READ_BYTES, ShareError,
};
use crate::error::ClusterError;
use crate::partition::{Partition, PartitionOffsets};
use crate::registry::TopicRegistry;
use crate::storage::FetchData;

/// Where a share group reads a data partition.
#[derive(Debug, Clone)]
pub(super) enum DataSource {
    /// This broker's replica of it, leader or follower.
    Local(Arc<Partition>),
    /// Its leader on another broker (this one hosts no replica).
    Remote(RemotePartition),
}

/// The data partition `topic`/`partition`, for reading: this broker's replica, or,
/// where it hosts none, the partition at its leader through `remote`
/// ([`ShareError::NotHosted`] without one).
pub(super) fn data_partition(
    registry: &TopicRegistry,
    remote: Option<&Arc<dyn RemoteLog>>,
    topic: &str,
    partition: u32,
) -> Result<DataSource, ShareError> {
    let t = registry.topic(topic)?;
    match t.partition(partition) {
        Ok(local) => Ok(DataSource::Local(local)),
        Err(ClusterError::NotLeader { .. }) => match remote {
            Some(log) => Ok(DataSource::Remote(RemotePartition {
                log: log.clone(),
                topic: Arc::from(topic),
                partition,
            })),
            None => Err(ShareError::NotHosted {
                topic: topic.to_string(),
                partition,
                coordinator: registry.broker_id(),
            }),
        },
        Err(e) => Err(e.into()),
    }
}

impl DataSource {
    fn topic(&self) -> &str {
        match self {
            DataSource::Local(p) => p.topic(),
            DataSource::Remote(r) => &r.topic,
        }
    }

    fn index(&self) -> u32 {
        match self {
            DataSource::Local(p) => p.index(),
            DataSource::Remote(r) => r.partition,
        }
    }

    /// This broker's replica, whose high watermark a waiting fetch can watch; `None` for
    /// a partition read at its leader elsewhere (a waiting fetch looks again instead).
    pub(super) fn local(&self) -> Option<&Arc<Partition>> {
        match self {
            DataSource::Local(p) => Some(p),
            DataSource::Remote(_) => None,
        }
    }

    /// The log start offset and the high watermark (as this replica knows it, or as the
    /// leader answers).
    pub(super) async fn offsets(&self) -> Result<PartitionOffsets, ShareError> {
        match self {
            DataSource::Local(p) => Ok(p.offsets().await?),
            DataSource::Remote(r) => r
                .log
                .offsets(&r.topic, r.partition)
                .await
                .map_err(|e| self.unreachable(e)),
        }
    }

    /// Committed batches from `offset` on; `None` when `offset` is out of the log's range
    /// (retention moved its start, or it is past the high watermark).
    async fn read(&self, offset: i64) -> Result<Option<FetchData>, ShareError> {
        match self {
            DataSource::Local(p) => match p.read_replica(offset, SHARE_READ_BYTES).await {
                Ok(data) => Ok(Some(data)),
                Err(ClusterError::OffsetOutOfRange { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            },
            DataSource::Remote(r) => {
                match r
                    .log
                    .read(&r.topic, r.partition, offset, SHARE_READ_BYTES)
                    .await
                {
                    Ok(read) => Ok(Some(FetchData {
                        records: read.records,
                        in_file: None,
                        next_offset: read.next_offset,
                        // Not used by the share reader, which asks `offsets` for them.
                        log_start_offset: -1,
                        log_end_offset: -1,
                        stored_at: None,
                    })),
                    Err(RemoteReadError::OutOfRange) => Ok(None),
                    Err(e) => Err(self.unreachable(e)),
                }
            }
        }
    }

    fn unreachable(&self, e: RemoteReadError) -> ShareError {
        ShareError::RemoteRead {
            topic: self.topic().to_string(),
            partition: self.index(),
            reason: e.to_string(),
        }
    }
}

/// When a record may first be delivered: its `weir-deliver-at` header (epoch ms), if it
/// has a valid one, capped at [`MAX_DELIVERY_DELAY_MS`] after `now_ms` (the producer's
/// clock is not the broker's, and no record may hold the window longer); else 0.
pub(super) fn not_before_ms(record: &DecodedRecord, now_ms: u64) -> u64 {
    record
        .headers
        .iter()
        .rev()
        .find(|h| h.key == DELIVER_AT_HEADER)
        .and_then(|h| h.value.as_ref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |at| at.min(now_ms.saturating_add(MAX_DELIVERY_DELAY_MS)))
}

/// When `record` expires: `ttl_ms` after its timestamp, or at its `weir-expire-at` header
/// (epoch milliseconds), whichever is first; [`NEVER_EXPIRES`] without either.
pub(super) fn expires_at_ms(record: &DecodedRecord, ttl_ms: Option<u64>) -> u64 {
    let by_header = record
        .headers
        .iter()
        .rev()
        .find(|h| h.key == EXPIRE_AT_HEADER)
        .and_then(|h| h.value.as_ref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(NEVER_EXPIRES);
    let by_ttl = ttl_ms.map_or(NEVER_EXPIRES, |ttl| {
        (record.timestamp.max(0) as u64).saturating_add(ttl)
    });
    by_header.min(by_ttl)
}

/// Records taken into a window and not handed out yet, decoded, so a fetch need not
/// read them again: bounded by [`SHARE_CACHE_BYTES`] of keys, values and headers (records
/// beyond it, and redeliveries, are read from the log when acquired).
///
/// It also keeps the rest of the last batch read when the window filled part way through
/// it (`ahead`, bounded alike), so the next extension starts there instead of
/// decoding that batch again.
#[derive(Debug, Default)]
pub(super) struct RecordCache {
    records: BTreeMap<i64, DecodedRecord>,
    bytes: usize,
    ahead: Vec<DecodedRecord>,
    ahead_bytes: usize,
}

fn record_bytes(r: &DecodedRecord) -> usize {
    let header_bytes: usize = r
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()) + header_bytes
}

impl RecordCache {
    fn insert(&mut self, record: DecodedRecord) {
        let size = record_bytes(&record);
        if self.bytes + size <= SHARE_CACHE_BYTES {
            self.bytes += size;
            self.records.insert(record.offset, record);
        }
    }

    /// The record at `offset`, left in the cache.
    pub(super) fn get(&self, offset: i64) -> Option<&DecodedRecord> {
        self.records.get(&offset)
    }

    /// The record at `offset`, taken out of the cache.
    pub(super) fn take(&mut self, offset: i64) -> Option<DecodedRecord> {
        let record = self.records.remove(&offset)?;
        self.bytes -= record_bytes(&record);
        Some(record)
    }

    /// Keeps `rest`, the records of a batch after those the window took, for the next
    /// extension, if they fit the bound; else they are read again then.
    fn keep_ahead(&mut self, rest: Vec<DecodedRecord>) {
        let size: usize = rest.iter().map(record_bytes).sum();
        if self.bytes + size <= SHARE_CACHE_BYTES {
            self.ahead = rest;
            self.ahead_bytes = size;
        }
    }

    /// The records kept ahead from `end` on (the window's end: what it reads next).
    fn take_ahead(&mut self, end: i64) -> Vec<DecodedRecord> {
        self.ahead_bytes = 0;
        let mut ahead = std::mem::take(&mut self.ahead);
        ahead.retain(|r| r.offset >= end);
        ahead
    }

    /// Forgets the records below `offset` (finished without being handed out).
    pub(super) fn drop_below(&mut self, offset: i64) {
        while let Some(entry) = self.records.first_entry() {
            if *entry.key() >= offset {
                return;
            }
            let record = entry.remove();
            self.bytes -= record_bytes(&record);
        }
    }
}

/// Takes the partition's next committed records into `window` while it has room and
/// holds fewer than `wanted` records due now ([`SharePartition::has_due`], which counts
/// neither delayed nor expired records; the sweep passes `usize::MAX`, so it reads on
/// until the window holds as many due records as its locks allow, and an expired record
/// never stops it from finding the next),
/// keeping them decoded in `cache`; records `filter` does not match are skipped
/// ([`SharePartition::extend_filtered`]). First skips what retention removed below the
/// window. Reads once, or, while everything read was skipped, again, up to
/// [`SHARE_FILTER_SCAN_BYTES`]: returns `true` when it stopped there with more to read, so
/// the caller looks again at once rather than wait for new records. Each record expires
/// `ttl_ms` after its timestamp, or when its `weir-expire-at` header says, whichever is
/// first ([`expires_at_ms`]).
///
/// A fetch reads only when the window runs short (`wanted`: what it asks for): a window
/// read ahead to its record bound holds more than `cache` does at 1 KiB a record, and
/// every record past the cache was read from the log a second time when handed out
/// (BENCHMARKS.md § RabbitMQ's clients on Weir, run 4).
pub(super) async fn extend(
    partition: &DataSource,
    window: &mut SharePartition,
    cache: &mut RecordCache,
    filter: &HeaderFilter,
    ttl_ms: Option<u64>,
    now_ms: u64,
    wanted: usize,
) -> Result<bool, ShareError> {
    let offsets = partition.offsets().await?;
    let dropped = window.log_start_moved(offsets.log_start_offset);
    if dropped > 0 {
        tracing::info!(
            topic = partition.topic(),
            partition = partition.index(),
            dropped,
            log_start = offsets.log_start_offset,
            "share group window: records removed by retention before they were finished"
        );
    }
    cache.drop_below(window.start());
    // What the last extension decoded and had no room for comes first.
    let ahead = cache.take_ahead(window.end());
    let mut taken = take_in(window, cache, filter, ttl_ms, now_ms, ahead);
    let mut scanned = 0;
    loop {
        if !window.has_room()
            || window.end() >= offsets.high_watermark
            || window.has_due(now_ms, wanted)
        {
            return Ok(false);
        }
        let from = window.end();
        // Out of range: retention moved the start between the two calls; next time.
        let Some(data) = partition.read(from).await? else {
            return Ok(false);
        };
        // Batch by batch, only while the window has room: a read brings up to
        // SHARE_READ_BYTES, and a window with room for a few hundred records must not
        // decode (and check) a whole read of them to keep those.
        for batch in data.batches() {
            if !window.has_room() {
                break;
            }
            scanned += batch.len();
            let decoded = decode_records(&batch).map_err(|e| ShareError::CorruptData {
                topic: partition.topic().to_string(),
                partition: partition.index(),
                offset: from,
                reason: e.to_string(),
            })?;
            taken += take_in(window, cache, filter, ttl_ms, now_ms, decoded);
        }
        let end = window.end();
        if taken > 0 || end <= from {
            return Ok(false);
        }
        if scanned >= SHARE_FILTER_SCAN_BYTES {
            return Ok(end < offsets.high_watermark);
        }
    }
}

/// Takes `records` (the next of the log, in order; those below the window's end are
/// ignored) into `window` while it has room, keeping those taken in `cache` and the
/// rest for the next extension. Returns how many it took.
fn take_in(
    window: &mut SharePartition,
    cache: &mut RecordCache,
    filter: &HeaderFilter,
    ttl_ms: Option<u64>,
    now_ms: u64,
    records: Vec<DecodedRecord>,
) -> usize {
    if records.is_empty() {
        return 0;
    }
    let from = window.end();
    // Each record's delivery time, or None where the filter skips it (or it is below
    // the window's end), worked out once.
    let due: Vec<Option<(u64, u64)>> = records
        .iter()
        .map(|r| {
            (r.offset >= from && filter.matches(&r.headers))
                .then(|| (not_before_ms(r, now_ms), expires_at_ms(r, ttl_ms)))
        })
        .collect();
    let taken = window.extend_timed(records.iter().zip(&due).map(|(r, d)| (r.offset, *d)));
    let end = window.end();
    let mut rest = Vec::new();
    for (r, due) in records.into_iter().zip(due) {
        if r.offset < from {
            continue;
        }
        if r.offset >= end {
            rest.push(r);
        } else if due.is_some() {
            // Taken into the window (a skipped record never is).
            cache.insert(r);
        }
    }
    if !rest.is_empty() {
        cache.keep_ahead(rest);
    }
    taken
}

/// The records at `offsets` (ascending), read from the log. A record the log no longer
/// has (retention, compaction) is left out.
pub(super) async fn records_at(
    partition: &DataSource,
    offsets: &[i64],
) -> Result<Vec<DecodedRecord>, ShareError> {
    let mut read: BTreeMap<i64, DecodedRecord> = BTreeMap::new();
    let mut out = Vec::with_capacity(offsets.len());
    let mut position = None::<i64>;
    for &offset in offsets {
        // Read forward from here until the log passes `offset`.
        while position.is_none_or(|p| p <= offset) {
            let from = position.unwrap_or(offset).max(offset);
            let Some(data) = partition.read(from).await? else {
                break;
            };
            for batch in data.batches() {
                let decoded = decode_records(&batch).map_err(|e| ShareError::CorruptData {
                    topic: partition.topic().to_string(),
                    partition: partition.index(),
                    offset: from,
                    reason: e.to_string(),
                })?;
                // Only what is asked for is kept.
                read.extend(
                    decoded
                        .into_iter()
                        .filter(|r| offsets.binary_search(&r.offset).is_ok())
                        .map(|r| (r.offset, r)),
                );
            }
            if data.next_offset <= from {
                break;
            }
            position = Some(data.next_offset);
        }
        if let Some(r) = read.remove(&offset) {
            out.push(r);
        }
    }
    Ok(out)
}
