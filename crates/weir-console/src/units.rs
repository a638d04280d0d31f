//! Numbers as people read them: bytes, rates, durations and timestamps.

/// `bytes` in B, KiB, MiB, GiB or TiB, one decimal past B.
pub(crate) fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A per-second rate, with a unit (`B/s` for bytes, `rec/s` for records).
pub(crate) fn rate(per_second: f64, unit: &str) -> String {
    if unit == "B/s" {
        return format!("{}/s", bytes(per_second.round().max(0.0) as u64));
    }
    if per_second >= 100.0 || per_second == 0.0 {
        format!("{per_second:.0} {unit}")
    } else {
        format!("{per_second:.1} {unit}")
    }
}

/// A count with thousands grouped by commas (`1,234,567`).
pub(crate) fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Milliseconds since the Unix epoch as UTC `YYYY-MM-DD HH:MM:SS.mmm`; negative: "none".
pub(crate) fn timestamp(ms: i64) -> String {
    if ms < 0 {
        return "none".into();
    }
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02}.{milli:03}")
}

/// Parses `YYYY-MM-DDTHH:MM[:SS]` (an HTML datetime-local, read as UTC) or milliseconds
/// since the Unix epoch.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let (date, time) = text.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.trim_end_matches('Z').split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let min: i64 = t.next()?.parse().ok()?;
    // Seconds with up to three decimals, in whole milliseconds (no float rounding).
    let (s, milli) = match t.next() {
        None => (0, 0),
        Some(sec) => {
            let (whole, fraction) = sec.split_once('.').unwrap_or((sec, ""));
            if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let milli = format!("{fraction:0<3}").parse::<i64>().ok()?;
            (whole.parse::<i64>().ok()?, milli)
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, m, day);
    Some(days * 86_400_000 + h * 3_600_000 + min * 60_000 + s * 1000 + milli)
}

// Howard Hinnant's days/civil conversions (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(count(12), "12");
        assert_eq!(rate(2048.0, "B/s"), "2.0 KiB/s");
        assert_eq!(rate(3.24, "rec/s"), "3.2 rec/s");
    }

    #[test]
    fn timestamps_round_trip_through_text() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(timestamp(1_764_028_800_123), "2025-11-25 00:00:00.123");
        assert_eq!(timestamp(-1), "none");
        assert_eq!(parse_timestamp("2025-11-25T00:00"), Some(1_764_028_800_000));
        assert_eq!(
            parse_timestamp("2025-11-25T00:00:01.5"),
            Some(1_764_028_801_500)
        );
        assert_eq!(parse_timestamp("1764028800000"), Some(1_764_028_800_000));
        assert_eq!(parse_timestamp("2025-13-01T00:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(
            parse_timestamp("2025-11-25T00:00:08.008"),
            Some(1_764_028_808_008)
        );
        assert_eq!(parse_timestamp("2025-11-25T00:00:01.5000"), None);
        for ms in [0, 951_782_400_000, 4_102_444_799_999] {
            let text = timestamp(ms).replace(' ', "T");
            assert_eq!(parse_timestamp(&text), Some(ms), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_time_until_year_9999_reads_back_as_it_was_written(ms in 0i64..253_402_300_800_000) {
            let text = timestamp(ms).replace(' ', "T");
            proptest::prop_assert_eq!(parse_timestamp(&text), Some(ms));
        }
    }
}
