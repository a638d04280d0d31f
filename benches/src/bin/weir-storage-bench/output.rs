//! Where results go: a text table or one JSON object on stdout (progress and diagnostics
//! go to stderr), and the small formatting helpers the reports share.

use std::time::Duration;

pub use weir_bench_report::{Format, Table, emit, exit_code, grouped};

/// A progress line on stderr.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[weir-storage-bench] {}", format_args!($($arg)*))
    };
}
pub(crate) use progress;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let ms = |n| Duration::from_millis(n);
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(median(&[ms(4), ms(1), ms(2), ms(3)]), ms(2));
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(quantile(&sorted, 0.5), ms(50));
        assert_eq!(quantile(&sorted, 0.99), ms(99));
        assert_eq!(quantile(&sorted, 1.0), ms(100));
    }
}
