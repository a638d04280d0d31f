//! Control batches: the transaction markers a partition leader writes when a
//! transaction ends (Kafka's `EndTransactionMarker` in a control batch).
//!
//! A marker is a batch with the transactional (0x10) and control (0x20) attribute bits,
//! the producer id and epoch of the transaction it ends, no sequence (-1), and one
//! record:
//!
//! ```text
//! key:   version i16 (0) | type i16 (0 abort, 1 commit)
//! value: version i16 (0) | coordinator epoch i32
//! ```
//!
//! The batch itself is built by [`RecordBatchBuilder`], the encoder every other batch
//! goes through; this module only adds the record's layout.

use bytes::Bytes;

use crate::error::BatchError;
use crate::records::{Record, RecordBatchBuilder, decode_records};
use crate::{BatchHeader, Compression};

/// The only control record version (key and value) Kafka defines.
pub const CONTROL_RECORD_VERSION: i16 = 0;

/// Key bytes of a control record: version and type.
const KEY_BYTES: usize = 4;
/// Value bytes of a transaction marker: version and coordinator epoch.
const MARKER_VALUE_BYTES: usize = 6;

/// What a control record says (Kafka's `ControlRecordType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    /// The transaction's records are dropped by `read_committed` readers.
    Abort,
    /// The transaction's records become visible to `read_committed` readers.
    Commit,
}

impl ControlType {
    /// The type's code in the record key.
    pub fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }

    pub fn from_code(code: i16) -> Option<ControlType> {
        match code {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// One transaction marker, as decoded from (or to be encoded into) a control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub control: ControlType,
    /// The epoch of the transaction coordinator that wrote it.
    pub coordinator_epoch: i32,
}

impl TxnMarker {
    /// The marker as one control batch (offsets left for the log to assign), with
    /// `timestamp_ms` as its record's time.
    pub fn encode(&self, timestamp_ms: i64) -> Result<bytes::BytesMut, BatchError> {
        let mut key = Vec::with_capacity(KEY_BYTES);
        key.extend_from_slice(&CONTROL_RECORD_VERSION.to_be_bytes());
        key.extend_from_slice(&self.control.code().to_be_bytes());
        let mut value = Vec::with_capacity(MARKER_VALUE_BYTES);
        value.extend_from_slice(&CONTROL_RECORD_VERSION.to_be_bytes());
        value.extend_from_slice(&self.coordinator_epoch.to_be_bytes());
        let mut builder = RecordBatchBuilder::with_capacity(Compression::None, 128)
            .producer_id(self.producer_id)
            .producer_epoch(self.producer_epoch)
            .transactional()
            .control();
        builder.try_push(&Record {
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(value)),
            headers: Vec::new(),
            timestamp: timestamp_ms,
        })?;
        builder.build()
    }

    /// Reads the marker of one complete control batch (its framed bytes).
    pub fn decode(batch: &[u8]) -> Result<TxnMarker, BatchError> {
        let header = crate::check_stored(batch)?;
        let bad = |reason: &str| BatchError::BadControlRecord {
            reason: reason.to_string(),
        };
        if !header.is_control() {
            return Err(bad("not a control batch"));
        }
        let control = control_type(batch, &header)?;
        let records = decode_records(&Bytes::copy_from_slice(batch))?;
        let value = records[0]
            .value
            .as_deref()
            .ok_or_else(|| bad("a transaction marker without a value"))?;
        let value: [u8; MARKER_VALUE_BYTES] = value
            .get(..MARKER_VALUE_BYTES)
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("a transaction marker's value is shorter than 6 bytes"))?;
        Ok(TxnMarker {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            control,
            coordinator_epoch: i32::from_be_bytes(value[2..6].try_into().expect("4 bytes")),
        })
    }
}

/// The type of the control record of a complete control batch (`header` is its parsed
/// header): the first record's key. Kafka's control batches hold one record; a key of
/// another version or an unknown type is refused, as Kafka refuses it.
pub fn control_type(batch: &[u8], header: &BatchHeader) -> Result<ControlType, BatchError> {
    let bad = |reason: String| BatchError::BadControlRecord { reason };
    if header.record_count != 1 {
        return Err(bad(format!(
            "a control batch holds {} records, not 1",
            header.record_count
        )));
    }
    // Markers are written uncompressed; a compressed control batch is read all the same.
    let decompressed;
    let records: &[u8] = match header.compression()? {
        Compression::None => &batch[crate::HEADER_BYTES..],
        _ => {
            decompressed = crate::records::records_section(&Bytes::copy_from_slice(batch), header)?;
            &decompressed
        }
    };
    let mut key = None;
    crate::records::walk_records(records, header, |raw| key = raw.key)?;
    let key = key.ok_or_else(|| bad("a control record without a key".into()))?;
    let key: [u8; KEY_BYTES] = key
        .get(..KEY_BYTES)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| bad("a control record key is shorter than 4 bytes".into()))?;
    let version = i16::from_be_bytes([key[0], key[1]]);
    if version != CONTROL_RECORD_VERSION {
        return Err(bad(format!("control record key version {version}")));
    }
    let code = i16::from_be_bytes([key[2], key[3]]);
    ControlType::from_code(code).ok_or_else(|| bad(format!("unknown control record type {code}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_round_trips_in_kafkas_layout() {
        for control in [ControlType::Abort, ControlType::Commit] {
            let marker = TxnMarker {
                producer_id: 4000,
                producer_epoch: 7,
                control,
                coordinator_epoch: 12,
            };
            let batch = marker.encode(1_700_000_000_000).unwrap();
            let header = crate::validate(&batch).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(header.record_count, 1);
            assert_eq!(header.base_sequence, -1);
            assert_eq!(TxnMarker::decode(&batch).unwrap(), marker);
            let records = decode_records(&Bytes::copy_from_slice(&batch)).unwrap();
            let key = records[0].key.as_deref().unwrap();
            assert_eq!(key, [0, 0, 0, control.code() as u8]);
            assert_eq!(records[0].value.as_deref().unwrap(), [0, 0, 0, 0, 0, 12]);
        }
    }

    #[test]
    fn a_data_batch_or_an_unknown_type_is_not_a_marker() {
        let mut builder = RecordBatchBuilder::new(Compression::None).transactional();
        builder.push(&Record {
            key: Some(Bytes::from_static(&[0, 0, 0, 1])),
            value: None,
            headers: Vec::new(),
            timestamp: 0,
        });
        let data = builder.build().unwrap();
        assert!(TxnMarker::decode(&data).is_err());

        let mut builder = RecordBatchBuilder::new(Compression::None).control();
        builder.push(&Record {
            key: Some(Bytes::from_static(&[0, 0, 0, 9])),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
            headers: Vec::new(),
            timestamp: 0,
        });
        let unknown = builder.build().unwrap();
        let err = TxnMarker::decode(&unknown).unwrap_err();
        assert!(
            err.to_string().contains("unknown control record type 9"),
            "{err}"
        );
    }
}
