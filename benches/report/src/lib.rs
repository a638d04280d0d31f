//! What Weir's benchmark programs (`weir-storage-bench`, `weir-peer-bench`) share: where
//! results go (a report as text or one JSON line on stdout; progress and diagnostics go
//! to stderr), aligned tables, thousands separators, and the exit status.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::ValueEnum;
use serde::Serialize;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned tables for people.
    Text,
    /// One JSON object per line, for scripts.
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

/// The exit status of a run: success, also when stdout was closed early (results piped
/// into `head` are not a failure of the bench); otherwise the error on stderr and failure.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A table whose first `left_columns` columns are left-aligned and the rest (numbers)
/// right-aligned.
#[derive(Debug)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    left_columns: usize,
}

/// Spaces between columns.
const COLUMN_GAP: usize = 2;

impl Table {
    pub fn new(headers: impl IntoIterator<Item = impl ToString>, left_columns: usize) -> Table {
        Table {
            headers: headers.into_iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            left_columns,
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let all = || std::iter::once(&self.headers).chain(&self.rows);
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| all().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in all() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let mut t = Table::new(["name", "value"], 1);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "1000".into()]);
        assert_eq!(t.render(), "name    value\na           1\nlonger   1000\n");
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        for (n, text) in [
            (0, "0"),
            (12, "12"),
            (999, "999"),
            (1000, "1,000"),
            (123_456, "123,456"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(grouped(n), text);
        }
    }
}
