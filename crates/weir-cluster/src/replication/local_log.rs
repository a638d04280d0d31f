//! [`LocalLog`] for weir-log's [`Log`]: every answer comes from the log's in-memory
//! state (offsets, epoch history) under its mutex, never from disk.

use weir_log::Log;

use super::replica::LocalLog;

impl LocalLog for Log {
    fn log_start_offset(&self) -> i64 {
        self.offsets().log_start_offset
    }

    fn log_end_offset(&self) -> i64 {
        self.offsets().log_end_offset
    }

    fn flushed_offset(&self) -> i64 {
        self.offsets().flushed_offset
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        Log::end_offset_for_epoch(self, epoch)
    }

    fn last_epoch(&self) -> Option<i32> {
        let offsets = self.offsets();
        if offsets.log_end_offset <= offsets.log_start_offset {
            return None;
        }
        // Truncation drops the epochs that start at or after the new end, so the newest
        // entry is the epoch of the last batch.
        self.leader_epochs().last().map(|e| e.epoch)
    }
}
