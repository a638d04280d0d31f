//! Where results go (text or one JSON line on stdout; progress and diagnostics on stderr),
//! a progress reporter that speaks at most every few seconds, and number formatting.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::Serialize;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines and tables for people.
    Text,
    /// One JSON object per line, for scripts and for `report`.
    Json,
}

/// Prints `text` as it is, or `json` as one line.
pub fn emit(format: Format, text: &str, json: &impl Serialize) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match format {
        Format::Text => out.write_all(text.as_bytes())?,
        Format::Json => {
            serde_json::to_writer(&mut out, json)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

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

/// A count with thousands separators (`1,234,567`).
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
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

/// A table with the first `left_columns` columns left-aligned and the rest (numbers)
/// right-aligned.
#[derive(Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
    left_columns: usize,
}

/// Spaces between columns.
const COLUMN_GAP: usize = 2;

impl Table {
    pub fn new(headers: Vec<String>, left_columns: usize) -> Table {
        Table {
            rows: vec![headers],
            left_columns,
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.rows[0].len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str(&" ".repeat(COLUMN_GAP));
                }
                let pad = " ".repeat(widths[c] - cell.chars().count());
                if c < self.left_columns {
                    line.push_str(cell);
                    line.push_str(&pad);
                } else {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(millis(0.4123), "0.412");
        assert_eq!(millis(3.081), "3.08");
        assert_eq!(millis(12.54), "12.5");
        assert_eq!(millis(1204.4), "1,204");
        assert_eq!(record_size(100), "100 B");
        assert_eq!(record_size(1024), "1 KiB");
        assert_eq!(record_size(1536), "1.5 KiB");
        assert_eq!(record_size(1 << 20), "1 MiB");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(vec!["name".into(), "value".into()], 1);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "1000".into()]);
        assert_eq!(t.render(), "name    value\na           1\nlonger   1000\n");
    }
}
