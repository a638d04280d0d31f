//! Transactions on a partition (KIP-98, issue 44): transaction markers appended through
//! the same ordered queue as every append and replicated like one (an `acks=all` marker
//! is answered once the high watermark passes it), the last stable offset, and reads
//! under an isolation level. Followers need nothing of their own: the producers' state,
//! ongoing transactions and the aborted-transaction index are rebuilt by their log from
//! the batches they copy (`Log::append_replicated`), so a new leader knows them.

use weir_log::batch::control::TxnMarker;
use weir_log::{AbortedTxn, FetchData, Log, OngoingTxn, ReadTo, ValidatedBatches, Verification};

use super::{AppendOutcome, AppendWork, Durability, Partition};
use crate::error::ClusterError;

/// Which records a read may return (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Everything below the high watermark, ongoing and aborted transactions included.
    #[default]
    ReadUncommitted,
    /// Only below the last stable offset, with the aborted transactions of the range
    /// read, whose records the reader drops.
    ReadCommitted,
}

/// A read under an [`Isolation`].
#[derive(Debug, Clone)]
pub struct IsolatedRead {
    pub data: FetchData,
    /// The high watermark the read was bounded by (or, for `ReadCommitted`, above).
    pub high_watermark: i64,
    /// The smaller of the first unstable offset and the high watermark.
    pub last_stable_offset: i64,
    /// For `ReadCommitted`: the aborted transactions with records in the range read, in
    /// marker order. Empty otherwise.
    pub aborted: Vec<AbortedTxn>,
}

/// A partition's last stable offset: below it every transaction has ended (committed or
/// aborted), and every record is replicated. Never moves back: a transaction that starts
/// later starts at or past the log end, so above the high watermark.
pub(super) fn last_stable_offset(log: &Log, high_watermark: i64) -> i64 {
    log.first_unstable_offset()
        .map_or(high_watermark, |first| first.min(high_watermark))
}

impl From<ValidatedBatches> for AppendWork {
    fn from(batches: ValidatedBatches) -> AppendWork {
        AppendWork::Batches(batches)
    }
}

impl From<TxnMarker> for AppendWork {
    fn from(marker: TxnMarker) -> AppendWork {
        AppendWork::Marker(marker)
    }
}

impl Partition {
    /// Appends a transaction marker as the leader (Kafka's WriteTxnMarkers on one
    /// partition): queued behind the appends before it, written under the leader epoch
    /// it was accepted at, answered as `durability` says (`Durable`: once the high
    /// watermark passes it, so every ISR member has it). A marker of an epoch older than
    /// the producer's is refused with nothing written.
    pub async fn append_marker(
        &self,
        marker: TxnMarker,
        durability: Durability,
    ) -> Result<AppendOutcome, ClusterError> {
        let pending = self.submit_inner(marker, durability, None).await?;
        pending.await.map_err(|_| self.shared.closed())?
    }

    /// The last stable offset (only on the leader): the smaller of the first unstable
    /// offset and the high watermark. `read_committed` readers see only what is below it.
    pub async fn last_stable_offset(&self) -> Result<i64, ClusterError> {
        self.shared.check_leader()?;
        let hw = self.high_watermark();
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        Ok(last_stable_offset(log, hw))
    }

    /// KIP-890, before this leader asks a transactional producer's coordinator whether
    /// the partition is in its transaction: the guard its batches go with
    /// (`ValidatedBatches::verified`), which a marker for the producer revokes, and
    /// whether the coordinator must be asked (weir-log's `producers`).
    pub async fn begin_verification(
        &self,
        producer_id: i64,
        epoch: i16,
    ) -> Result<Verification, ClusterError> {
        self.shared.check_leader()?;
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        Ok(log.begin_verification(producer_id, epoch))
    }

    /// The transactions under way on this replica, oldest first (only on the leader).
    pub async fn ongoing_transactions(&self) -> Result<Vec<OngoingTxn>, ClusterError> {
        self.shared.check_leader()?;
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        Ok(log.ongoing_transactions())
    }

    /// [`read_to`](Self::read_to) under `isolation`: `ReadCommitted` stops at the last
    /// stable offset and names the aborted transactions in the range read.
    pub async fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        to: ReadTo,
        isolation: Isolation,
    ) -> Result<IsolatedRead, ClusterError> {
        self.shared.check_leader()?;
        self.read_replicated(offset, max_bytes, to, isolation).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weir_log::batch::control::ControlType;
    use weir_log::{Compression, Record, RecordBatchBuilder, decode_records};

    use super::*;
    use crate::partition::tests::open_default;

    fn txn_batch(pid: i64, seq: i32, value: &str) -> ValidatedBatches {
        let mut b = RecordBatchBuilder::new(Compression::None)
            .producer_id(pid)
            .producer_epoch(0)
            .base_sequence(seq)
            .transactional();
        b.push(&Record {
            value: Some(bytes::Bytes::from(value.to_string())),
            timestamp: 1_000,
            ..Record::default()
        });
        ValidatedBatches::new(b.build().unwrap(), 1 << 20).unwrap()
    }

    fn marker(pid: i64, control: ControlType) -> TxnMarker {
        TxnMarker {
            producer_id: pid,
            producer_epoch: 0,
            control,
            coordinator_epoch: 0,
        }
    }

    async fn read_all(p: &Partition, isolation: Isolation) -> (Vec<i64>, IsolatedRead) {
        let read = p
            .read_isolated(0, 1 << 20, ReadTo::Memory, isolation)
            .await
            .unwrap();
        let offsets = read
            .data
            .batches()
            .flat_map(|b| decode_records(&b).unwrap())
            .map(|r| r.offset)
            .collect();
        (offsets, read)
    }

    /// Until the high watermark reaches `end` (acks=all appends wait for it anyway).
    async fn replicated(p: &Partition, end: i64) {
        let mut hw = p.subscribe();
        tokio::time::timeout(Duration::from_secs(5), hw.wait_for(|hw| *hw >= end))
            .await
            .expect("the high watermark reaches the log end")
            .unwrap();
    }

    #[tokio::test]
    async fn read_committed_stops_at_the_last_stable_offset_and_names_the_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_default(dir.path()).await;
        let durable = Durability::Durable;
        p.append(txn_batch(1, 0, "a0"), durable).await.unwrap(); // 0
        p.append(txn_batch(2, 0, "b0"), durable).await.unwrap(); // 1
        p.append(txn_batch(1, 1, "a1"), durable).await.unwrap(); // 2
        replicated(&p, 3).await;
        assert_eq!(p.last_stable_offset().await.unwrap(), 0);
        let (seen, got) = read_all(&p, Isolation::ReadCommitted).await;
        assert!(seen.is_empty(), "nothing is stable yet: {seen:?}");
        assert_eq!((got.last_stable_offset, got.high_watermark), (0, 3));
        let (seen, _) = read_all(&p, Isolation::ReadUncommitted).await;
        assert_eq!(seen, [0, 1, 2]);

        // The abort of producer 1: still bounded by producer 2's open transaction.
        let abort = p
            .append_marker(marker(1, ControlType::Abort), durable)
            .await
            .unwrap();
        assert_eq!(abort.base_offset, 3);
        assert!(p.high_watermark() >= 4, "acks=all answered once replicated");
        assert_eq!(p.last_stable_offset().await.unwrap(), 1);
        let (seen, got) = read_all(&p, Isolation::ReadCommitted).await;
        assert_eq!(seen, [0]);
        assert_eq!(got.aborted.len(), 1);
        assert_eq!(got.aborted[0].producer_id, 1);
        assert_eq!(
            (got.aborted[0].first_offset, got.aborted[0].last_offset),
            (0, 3)
        );

        p.append_marker(marker(2, ControlType::Commit), durable)
            .await
            .unwrap(); // 4
        assert_eq!(p.last_stable_offset().await.unwrap(), 5);
        let (seen, got) = read_all(&p, Isolation::ReadCommitted).await;
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        assert_eq!(got.last_stable_offset, 5);
        assert_eq!(got.aborted.len(), 1);
        assert!(p.ongoing_transactions().await.unwrap().is_empty());

        // A marker of an older epoch is fenced, nothing written.
        p.append(txn_batch(1, 2, "a2"), durable).await.unwrap(); // 5
        let stale = TxnMarker {
            producer_epoch: -1,
            ..marker(1, ControlType::Commit)
        };
        assert!(p.append_marker(stale, durable).await.is_err());
        assert_eq!(p.offsets().await.unwrap().log_end_offset, 6);
        assert_eq!(p.last_stable_offset().await.unwrap(), 5);

        // A reopened partition knows the ongoing transaction and the abort.
        p.close().await.unwrap();
        drop(p);
        let p = open_default(dir.path()).await;
        replicated(&p, 6).await;
        assert_eq!(p.last_stable_offset().await.unwrap(), 5);
        let (seen, got) = read_all(&p, Isolation::ReadCommitted).await;
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        assert_eq!(got.aborted.len(), 1);
    }

    /// KIP-890's guard: the coordinator aborts a transaction (its timeout) after the
    /// leader verified the producer's next batch and before the batch is appended; the
    /// batch must not open a transaction no coordinator knows of.
    #[tokio::test]
    async fn a_batch_verified_before_a_marker_is_refused_and_opens_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_default(dir.path()).await;
        let durable = Durability::Durable;
        let first = p.begin_verification(1, 0).await.unwrap();
        assert!(first.ask);
        p.append(txn_batch(1, 0, "t1").verified(first.guard), durable)
            .await
            .unwrap(); // 0
        let going = p.begin_verification(1, 0).await.unwrap();
        assert!(!going.ask, "its transaction is going here: nothing to ask");
        p.append(txn_batch(1, 1, "t1b").verified(going.guard), durable)
            .await
            .unwrap(); // 1
        p.append_marker(marker(1, ControlType::Abort), durable)
            .await
            .unwrap(); // 2
        let late = p.begin_verification(1, 0).await.unwrap();
        assert!(late.ask);
        p.append_marker(marker(1, ControlType::Abort), durable)
            .await
            .unwrap(); // 3: the coordinator's abort of the next transaction, early
        let refused = p
            .append(txn_batch(1, 2, "t2").verified(late.guard), durable)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("not verified"), "{refused}");
        assert_eq!(p.offsets().await.unwrap().log_end_offset, 4);
        assert_eq!(p.last_stable_offset().await.unwrap(), 4, "nothing hangs");
    }

    /// A coordinator that lost the transactional id (a failover) may still send a marker
    /// it had queued; under transaction version 1 the producer's next transaction has
    /// the same epoch, so only the coordinator epoch tells the late marker apart.
    #[tokio::test]
    async fn a_marker_from_an_older_coordinator_is_refused_and_ends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_default(dir.path()).await;
        let durable = Durability::Durable;
        let from = |coordinator_epoch, control| TxnMarker {
            coordinator_epoch,
            ..marker(1, control)
        };
        p.append(txn_batch(1, 0, "t1"), durable).await.unwrap(); // 0
        p.append_marker(from(3, ControlType::Commit), durable)
            .await
            .unwrap(); // 1
        p.append(txn_batch(1, 1, "t2"), durable).await.unwrap(); // 2
        let late = p
            .append_marker(from(2, ControlType::Abort), durable)
            .await
            .unwrap_err();
        assert!(late.to_string().contains("coordinator epoch 2"), "{late}");
        assert_eq!(p.offsets().await.unwrap().log_end_offset, 3);
        assert_eq!(p.last_stable_offset().await.unwrap(), 2, "t2 still ongoing");
        // Reopened (the state rebuilt from the snapshot and the log), the same holds,
        // and the current coordinator's marker ends t2.
        p.close().await.unwrap();
        drop(p);
        let p = open_default(dir.path()).await;
        replicated(&p, 3).await;
        assert!(
            p.append_marker(from(2, ControlType::Abort), durable)
                .await
                .is_err()
        );
        p.append_marker(from(3, ControlType::Commit), durable)
            .await
            .unwrap(); // 3
        assert_eq!(p.last_stable_offset().await.unwrap(), 4);
        let (seen, _) = read_all(&p, Isolation::ReadCommitted).await;
        assert_eq!(seen, [0, 1, 2, 3]);
    }
}
