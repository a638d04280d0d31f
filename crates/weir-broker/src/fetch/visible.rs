//! What a reader without transaction logic of its own sees of a read: the batches left
//! once the transaction markers (control batches) and, under read committed, the batches
//! of aborted transactions are dropped.
//!
//! Kafka leaves this to its clients: a read_committed fetch names the aborted
//! transactions in the range read and the consumer drops their records and the markers.
//! Weir's Kafka listener does the same (it sends the stored batches and the list); its
//! gRPC readers and its own client get the dropping done here instead, so a reader in
//! any language needs none of it. The bytes of every batch kept are the stored ones.

use bytes::{Bytes, BytesMut};
use weir_cluster::storage::{AbortedTxn, BATCH_HEADER_BYTES, BatchHeader, FetchData};

/// Whether a reader sees the batch `header` heads: not a control batch (a transaction
/// marker is not a record), and not a transactional batch of a producer whose
/// transaction `aborted` names as aborted around its offset (from the transaction's
/// first offset to its abort marker). `aborted` is a read's list (bounded by the
/// transactions that ended inside the bytes read); empty, only markers are dropped.
pub fn is_visible(header: &BatchHeader, aborted: &[AbortedTxn]) -> bool {
    if header.is_control() {
        return false;
    }
    !header.is_transactional()
        || !aborted.iter().any(|txn| {
            txn.producer_id == header.producer_id
                && txn.first_offset <= header.base_offset
                && header.base_offset < txn.last_offset
        })
}

/// The read's batches that [`is_visible`] keeps, as one buffer: the stored bytes
/// themselves when it keeps them all, else the kept batches copied together (offsets
/// then skip, as after compaction; the read's `next_offset` still says where to go on).
/// A trailing fragment shorter than a batch header is kept for the reader to report.
pub fn visible_bytes(data: &FetchData, aborted: &[AbortedTxn]) -> Bytes {
    let keep = |batch: &Bytes| {
        batch.len() < BATCH_HEADER_BYTES || is_visible(&BatchHeader::parse(batch), aborted)
    };
    if data.batches().all(|batch| keep(&batch)) {
        return data.records.clone();
    }
    let mut out = BytesMut::with_capacity(data.records.len());
    for batch in data.batches().filter(keep) {
        out.extend_from_slice(&batch);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_cluster::storage::{
        Compression, ControlType, Record, RecordBatchBuilder, TxnMarker, decode_records,
    };

    /// One batch at `base_offset`: transactional if `producer` is set.
    fn batch(base_offset: i64, producer: Option<i64>, value: &str) -> BytesMut {
        let mut b = RecordBatchBuilder::new(Compression::None);
        if let Some(id) = producer {
            b = b
                .producer_id(id)
                .producer_epoch(0)
                .base_sequence(0)
                .transactional();
        }
        b.push(&Record {
            value: Some(Bytes::from(value.to_string())),
            timestamp: 1,
            ..Record::default()
        });
        let mut bytes = b.build().expect("a valid batch");
        bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
        bytes
    }

    fn marker(base_offset: i64, producer_id: i64, control: ControlType) -> BytesMut {
        let mut bytes = TxnMarker {
            producer_id,
            producer_epoch: 0,
            control,
            coordinator_epoch: 0,
        }
        .encode(1)
        .expect("a marker");
        bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
        bytes
    }

    fn read(batches: &[BytesMut]) -> FetchData {
        let mut records = BytesMut::new();
        for b in batches {
            records.extend_from_slice(b);
        }
        FetchData {
            records: records.freeze(),
            in_file: None,
            next_offset: batches.len() as i64,
            log_start_offset: 0,
            log_end_offset: batches.len() as i64,
            stored_at: None,
        }
    }

    fn values(bytes: Bytes) -> Vec<String> {
        let data = FetchData {
            records: bytes,
            ..read(&[])
        };
        data.batches()
            .flat_map(|b| decode_records(&b).expect("decodes"))
            .map(|r| String::from_utf8(r.value.expect("a value").to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn markers_and_aborted_transactions_are_dropped_and_the_rest_kept_in_order() {
        // Producer 7 aborts (offsets 1 and 4, marker at 5), producer 8 commits (2, marker
        // at 6), producer 7 starts again after its abort (7), plain records around them.
        let data = read(&[
            batch(0, None, "plain-0"),
            batch(1, Some(7), "aborted-1"),
            batch(2, Some(8), "committed-2"),
            batch(3, None, "plain-3"),
            batch(4, Some(7), "aborted-4"),
            marker(5, 7, ControlType::Abort),
            marker(6, 8, ControlType::Commit),
            batch(7, Some(7), "later-7"),
        ]);
        let aborted = [AbortedTxn {
            producer_id: 7,
            first_offset: 1,
            last_offset: 5,
            last_stable_offset: 2,
        }];
        assert_eq!(
            values(visible_bytes(&data, &aborted)),
            ["plain-0", "committed-2", "plain-3", "later-7"]
        );
        // Read uncommitted: only the markers go.
        assert_eq!(
            values(visible_bytes(&data, &[])),
            [
                "plain-0",
                "aborted-1",
                "committed-2",
                "plain-3",
                "aborted-4",
                "later-7"
            ]
        );
    }

    #[test]
    fn a_read_with_nothing_to_drop_is_returned_without_a_copy() {
        let data = read(&[batch(0, None, "a"), batch(1, Some(3), "b")]);
        let kept = visible_bytes(&data, &[]);
        assert_eq!(kept.as_ptr(), data.records.as_ptr());
        assert_eq!(kept.len(), data.records.len());
    }
}
