//! `crash-child` (hidden): the process `open-time` kills. It opens the log without syncing
//! on append and with a recovery checkpoint interval far longer than its life, makes
//! everything already in the log durable, appends `--append-bytes` more without syncing,
//! prints one [`ReadyLine`] and waits to be killed. So when the parent SIGKILLs it, the
//! recovery checkpoint sits at the old log end and recovery must scan exactly the
//! appended tail.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use weir_benches::byte_size::ByteSize;
use weir_benches::workload::{BatchPool, BatchShape};
use weir_log::{Compression, FlushPolicy, Log, LogConfig};

/// Longer than the child lives: no recovery checkpoint is written after the open.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Bytes of distinct batches the child cycles through.
const POOL_BYTES: usize = 8 << 20;
/// Seed of the child's payloads; different from the log builder's so the tail differs.
const CHILD_SEED: u64 = 0x00c0_ffee;
/// The log is not replicated.
const NO_LEADER_EPOCH: i32 = -1;
/// First word of the line the child prints once its unflushed tail is written.
const READY: &str = "ready";

#[derive(Debug, Clone, Args)]
pub struct CrashChildArgs {
    /// The log directory.
    #[arg(long)]
    pub log_dir: PathBuf,
    /// Bytes to append without syncing before saying ready.
    #[arg(long)]
    pub append_bytes: ByteSize,
    #[arg(long)]
    pub record_bytes: ByteSize,
    #[arg(long)]
    pub batch_bytes: ByteSize,
    /// Segment size; big enough that the appended tail stays in the active segment (a
    /// roll would sync it and move the checkpoint).
    #[arg(long)]
    pub segment_bytes: ByteSize,
}

/// What the child says once it is ready to be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyLine {
    /// Log end offset when the unsynced appends began (where the checkpoint is).
    pub durable_end_offset: i64,
    /// Log end offset after them.
    pub end_offset: i64,
    /// Bytes appended without a sync.
    pub unflushed_bytes: u64,
}

impl fmt::Display for ReadyLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{READY} {} {} {}",
            self.durable_end_offset, self.end_offset, self.unflushed_bytes
        )
    }
}

impl FromStr for ReadyLine {
    type Err = anyhow::Error;

    fn from_str(line: &str) -> anyhow::Result<ReadyLine> {
        let mut words = line.split_whitespace();
        anyhow::ensure!(
            words.next() == Some(READY),
            "expected `{READY} ...`, got {line:?}"
        );
        let mut number = |what| -> anyhow::Result<i64> {
            words
                .next()
                .with_context(|| format!("no {what} in {line:?}"))?
                .parse()
                .with_context(|| format!("bad {what} in {line:?}"))
        };
        Ok(ReadyLine {
            durable_end_offset: number("durable end offset")?,
            end_offset: number("end offset")?,
            unflushed_bytes: u64::try_from(number("unflushed bytes")?)
                .context("negative byte count")?,
        })
    }
}

/// The configuration the child runs with and the parent recovers with.
pub fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        flush: FlushPolicy::None,
        recovery_checkpoint_interval: CHECKPOINT_INTERVAL,
        ..LogConfig::default()
    }
}

pub fn run(args: CrashChildArgs) -> anyhow::Result<()> {
    let log = Log::open(&args.log_dir, config(args.segment_bytes.bytes()))
        .with_context(|| format!("open the log in {}", args.log_dir.display()))?;
    // Opening wrote the recovery checkpoint at the log end; this flush makes sure every
    // byte before that end is on disk too (it is a no-op after a clean open).
    log.flush().context("flush the log")?;
    let durable_end_offset = log.offsets().log_end_offset;

    let shape = BatchShape {
        value_bytes: args.record_bytes.as_usize(),
        batch_bytes: args.batch_bytes.as_usize(),
        compression: Compression::None,
    };
    let mut pool = BatchPool::build(shape, POOL_BYTES, CHILD_SEED).context("build batches")?;
    let mut unflushed_bytes = 0u64;
    while unflushed_bytes < args.append_bytes.bytes() {
        let info = log
            .append(&mut pool.next_batch().bytes, NO_LEADER_EPOCH)
            .context("Log::append")?;
        unflushed_bytes += info.bytes as u64;
    }
    let ready = ReadyLine {
        durable_end_offset,
        end_offset: log.offsets().log_end_offset,
        unflushed_bytes,
    };
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{ready}")
        .and_then(|()| stdout.flush())
        .context("tell the parent we are ready")?;

    // Wait to be killed. If the parent goes away instead, its end of our stdin closes:
    // leave without closing the log (as a crash would), so nothing lingers.
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    std::mem::forget(log);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_round_trips() {
        let line = ReadyLine {
            durable_end_offset: 10,
            end_offset: 74,
            unflushed_bytes: 65536,
        };
        assert_eq!(line.to_string().parse::<ReadyLine>().unwrap(), line);
        assert!("steady 1 2 3".parse::<ReadyLine>().is_err());
        assert!("ready 1 2".parse::<ReadyLine>().is_err());
    }
}
