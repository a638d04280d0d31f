//! Test helpers shared by the crate's unit tests.

use bytes::Bytes;
use weir_broker::fetch::FileSlice;

/// A log in `dir` holding `batches` batches of 100 records of 1 KiB, and the checked slice
/// a fetch of all of it from offset 0 leaves in its segment file. The log keeps the file.
/// It writes through the page cache whatever the default: a direct-written segment's
/// reads never stay in the file.
pub(crate) fn file_slice(dir: &std::path::Path, batches: usize) -> (weir_log::Log, FileSlice) {
    let config = weir_log::LogConfig {
        direct_writes: false,
        ..weir_log::LogConfig::default()
    };
    let log = weir_log::Log::open(dir, config).unwrap();
    for _ in 0..batches {
        let mut batch = weir_log::RecordBatchBuilder::new(weir_log::Compression::None);
        for i in 0..100u8 {
            batch.push(&weir_log::Record {
                key: None,
                value: Some(Bytes::from(vec![i; 1024])),
                headers: Vec::new(),
                timestamp: 0,
            });
        }
        log.append(&mut batch.build().unwrap(), -1).unwrap();
    }
    let slice = log
        .read_in_file(0, usize::MAX, None)
        .unwrap()
        .in_file
        .expect("a long read stays in the file");
    (log, slice)
}
