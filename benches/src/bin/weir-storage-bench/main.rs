//! `weir-storage-bench`: the storage benchmark of `weir-log`, run side by side with plain
//! file I/O of the same bytes in the same run.
//!
//! - `throughput` (the default): append throughput against `write` + `fdatasync` at the
//!   same cadence, validating inline and validated ahead on a request thread, then read
//!   throughput against `pread`, from the page cache.
//! - `open-time`: how long `Log::open` takes on a large log after a clean shutdown and
//!   after a SIGKILL with unflushed data, and that it does not grow with the log.
//!
//! Results go to stdout (a table, or one JSON object with `--format json`); progress goes
//! to stderr.

mod affinity;
mod crash_child;
mod open_time;
mod output;
mod run_dir;
mod throughput;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

const EXAMPLES: &str = "\
Examples:
  # Append and read throughput, weir-log against plain file I/O (1 GiB per cell):
  weir-storage-bench
  # A quick check with less data, as JSON:
  weir-storage-bench throughput --total-bytes 64MiB --format json
  # Only 1 KiB records, fdatasync every 4 MiB:
  weir-storage-bench throughput --record-bytes 1KiB --modes group-commit --sync-every-bytes 4MiB
  # Open time of a 2 GiB log of 1000 segments, clean and after a SIGKILL:
  weir-storage-bench open-time
  # The same on a smaller log, on another disk:
  weir-storage-bench open-time --dir /mnt/nvme/bench --log-bytes 512MiB --segments 250
  # A terabyte: 1000 segments whose closed files are grown (sparse) to 1 GiB each:
  weir-storage-bench open-time --log-bytes 1GiB --segments 1000 --small-log-bytes 0 \
      --sparse-segment-bytes 1GiB";

#[derive(Debug, Parser)]
#[command(
    name = "weir-storage-bench",
    version,
    about = "Storage benchmark of weir-log, measured side by side with plain file I/O",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Options of `throughput`, which runs when no command is given.
    #[command(flatten)]
    throughput: throughput::ThroughputArgs,
}

/// Options every measuring command takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Directory the bench writes under; each run uses a fresh temporary directory
    /// inside it and removes it at the end.
    #[arg(long, env = "WEIR_BENCH_DIR", default_value = "./weir-bench-data")]
    pub dir: PathBuf,

    /// Output format of the results (progress always goes to stderr).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append throughput (raw write+fdatasync vs weir-log, validating inline and validated
    /// ahead) and read throughput (default).
    Throughput(throughput::ThroughputArgs),
    /// Log::open time after a clean close and after a SIGKILL with unflushed data.
    OpenTime(open_time::OpenTimeArgs),
    /// Internal: the process `open-time` kills. Appends without syncing, says "ready",
    /// and waits to be killed.
    #[command(hide = true)]
    CrashChild(crash_child::CrashChildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => throughput::run(cli.throughput),
        Some(Command::Throughput(args)) => throughput::run(args),
        Some(Command::OpenTime(args)) => open_time::run(args),
        Some(Command::CrashChild(args)) => crash_child::run(args),
    };
    output::exit_code(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn throughput_is_the_default_command() {
        let cli = Cli::try_parse_from(["weir-storage-bench", "--total-bytes", "64MiB"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.throughput.total_bytes.bytes(), 64 << 20);
        let cli =
            Cli::try_parse_from(["weir-storage-bench", "open-time", "--format", "json"]).unwrap();
        let Some(Command::OpenTime(args)) = cli.command else {
            unreachable!()
        };
        assert_eq!(args.common.format, Format::Json);
        let cli = Cli::try_parse_from(["weir-storage-bench", "--dir", "/tmp/x"]).unwrap();
        assert_eq!(cli.throughput.common.dir, PathBuf::from("/tmp/x"));
    }
}
