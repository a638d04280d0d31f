//! Where results go: a text table or one JSON object on stdout (progress and diagnostics
//! go to stderr), and the small formatting helpers the reports share.

use std::io::{self, Write};
use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned tables for people.
    Text,
    /// One JSON object on the last line of stdout, for scripts.
    Json,
}

/// Prints a report: `text` as it is, or `json` as one line.
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

/// A progress line on stderr.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[weir-storage-bench] {}", format_args!($($arg)*))
    };
}
pub(crate) use progress;

/// A table whose first `left_columns` columns are left-aligned and the rest right-aligned
/// (numbers).
#[derive(Debug)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    left_columns: usize,
}

/// Spaces between columns.
const COLUMN_GAP: usize = 2;

impl Table {
    pub fn new(headers: &[&str], left_columns: usize) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            left_columns,
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                let cells = self.rows.iter().map(|r| r[c].chars().count());
                cells
                    .chain([self.headers[c].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
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

/// Milliseconds with a precision that suits the magnitude.
pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// The median of some durations (the lower middle one for an even count).
pub fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

/// The `q` quantile (0..=1) of some durations, by nearest rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A count with thousands separators (`1,234,567`).
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    // Digits left before the next separator; the first group may be shorter.
    let mut until_separator = (digits.len() + 2) % 3 + 1;
    for d in digits.chars() {
        if until_separator == 0 {
            out.push(',');
            until_separator = 3;
        }
        out.push(d);
        until_separator -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["name", "value"], 1);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "1000".into()]);
        assert_eq!(t.render(), "name    value\na           1\nlonger   1000\n");
    }

    #[test]
    fn statistics() {
        let ms = |n| Duration::from_millis(n);
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(median(&[ms(4), ms(1), ms(2), ms(3)]), ms(2));
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(quantile(&sorted, 0.5), ms(50));
        assert_eq!(quantile(&sorted, 0.99), ms(99));
        assert_eq!(quantile(&sorted, 1.0), ms(100));
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(12), "12");
        assert_eq!(grouped(123_456), "123,456");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(0), "0");
    }
}
