//! Where results go (text or one JSON line on stdout; progress and diagnostics on stderr),
//! a progress reporter that speaks at most every few seconds, and number formatting.

use std::time::{Duration, Instant};

pub use weir_bench_report::{Format, Table, emit, exit_code, grouped};

/// A line on stderr, tagged with the program's name.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[weir-peer-bench] {}", format_args!($($arg)*))
    };
}
pub(crate) use progress;

/// How often a long loop says how far it got.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// Reports `done / total` on stderr, at most every [`PROGRESS_INTERVAL`].
#[derive(Debug)]
pub struct Progress {
    what: String,
    total: u64,
    next_report: Instant,
}

impl Progress {
    pub fn new(what: String, total: u64) -> Progress {
        Progress {
            what,
            total,
            next_report: Instant::now() + PROGRESS_INTERVAL,
        }
    }

    pub fn update(&mut self, done: u64) {
        let now = Instant::now();
        if now >= self.next_report {
            self.next_report = now + PROGRESS_INTERVAL;
            progress!("{}: {} / {}", self.what, grouped(done), grouped(self.total));
        }
    }
}

/// Milliseconds with three significant digits or so (`0.412`, `3.08`, `12.5`, `1,204`).
pub fn millis(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.3}")
    } else if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        grouped(ms.round() as u64)
    }
}

/// Record sizes the way people write them: `100 B`, `1 KiB`, `1.5 KiB`.
pub fn record_size(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b if b >= KIB => format!("{:.1} KiB", b as f64 / KIB as f64),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(millis(0.4123), "0.412");
        assert_eq!(millis(3.081), "3.08");
        assert_eq!(millis(12.54), "12.5");
        assert_eq!(millis(1204.4), "1,204");
        assert_eq!(record_size(100), "100 B");
        assert_eq!(record_size(1024), "1 KiB");
        assert_eq!(record_size(1536), "1.5 KiB");
        assert_eq!(record_size(1 << 20), "1 MiB");
    }
}
