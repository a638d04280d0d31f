//! [`ByteSize`]: a byte count written with IEC units (`100`, `64KiB`, `1 GiB`), parsed from
//! the command line and printed in the same units.

use std::fmt;
use std::str::FromStr;

/// The units a size may carry, largest first, with their multipliers.
const UNITS: [(&str, u64); 5] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

/// Sizes print exactly only below this many units; longer figures are hard to read.
const EXACT_DIGITS_LIMIT: u64 = 10_000;

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn kib(n: u64) -> ByteSize {
        ByteSize(n << 10)
    }

    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n << 20)
    }

    pub const fn gib(n: u64) -> ByteSize {
        ByteSize(n << 30)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The size as a `usize`, for sizes that were checked to fit memory.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).expect("byte size fits usize on a 64-bit target")
    }
}

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseByteSizeError(String);

impl fmt::Display for ParseByteSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseByteSizeError {}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    /// Parses a whole number with an optional unit: `B`, `KiB`, `MiB`, `GiB` or `TiB`
    /// (case-insensitive, space allowed). Decimal units (`KB`, `MB`) are refused rather
    /// than guessed at.
    fn from_str(s: &str) -> Result<ByteSize, ParseByteSizeError> {
        let s = s.trim();
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(digits_end);
        let bad = || {
            ParseByteSizeError(format!(
                "`{s}` is not a size: expected a whole number with an optional unit \
                 B, KiB, MiB, GiB or TiB (e.g. 64KiB)"
            ))
        };
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit = unit.trim();
        let multiplier = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
                .ok_or_else(bad)?
                .1
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| ParseByteSizeError(format!("`{s}` does not fit 64 bits")))
    }
}

impl fmt::Display for ByteSize {
    /// Exactly, in the largest unit that divides the size with fewer than five digits
    /// (`64 KiB`, `1536 KiB`), or else to one decimal in the largest unit not above it
    /// (`1.4 MiB`, `1.9 GiB`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n < 1024 {
            return write!(f, "{n} B");
        }
        let mut fitting = UNITS.iter().filter(|(_, unit)| *unit >= 1024 && n >= *unit);
        let exact = fitting
            .clone()
            .find(|(_, unit)| n.checked_rem(*unit) == Some(0) && n / unit < EXACT_DIGITS_LIMIT);
        if let Some((name, unit)) = exact {
            return write!(f, "{} {name}", n / unit);
        }
        let (name, unit) = fitting.next().expect("a size of 1024 or more fits KiB");
        write!(f, "{:.1} {name}", n as f64 / *unit as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_iec_units() {
        assert_eq!("100".parse(), Ok(ByteSize(100)));
        assert_eq!("64KiB".parse(), Ok(ByteSize::kib(64)));
        assert_eq!("1 gib".parse(), Ok(ByteSize::gib(1)));
        assert_eq!("2MiB".parse(), Ok(ByteSize::mib(2)));
        assert_eq!("7B".parse(), Ok(ByteSize(7)));
    }

    #[test]
    fn refuses_decimal_units_and_garbage() {
        assert!("1MB".parse::<ByteSize>().is_err());
        assert!("KiB".parse::<ByteSize>().is_err());
        assert!("1.5MiB".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn prints_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(100).to_string(), "100 B");
        assert_eq!(ByteSize::kib(1).to_string(), "1 KiB");
        assert_eq!(ByteSize::gib(2).to_string(), "2 GiB");
        assert_eq!(ByteSize::kib(1536).to_string(), "1536 KiB");
        assert_eq!(ByteSize(1_500_000).to_string(), "1.4 MiB");
        assert_eq!(ByteSize(0).to_string(), "0 B");
        assert_eq!(ByteSize(1023).to_string(), "1023 B");
        assert_eq!(ByteSize(1025).to_string(), "1.0 KiB");
        assert_eq!(ByteSize(2_035_625 * 1024).to_string(), "1.9 GiB");
    }
}
