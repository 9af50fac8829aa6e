//! Byte sizes as people write them: `--cache-size 10G`, `SSHCC_CACHE_SIZE=512M`.
//!
//! Suffixes follow `du`, `sort -S` and Docker rather than SI: `K`, `M`, `G`, `T` (and
//! `Ki`, `KiB`, …) are powers of 1024, because that is what a box owner reading `du -sh`
//! compares the bound with. Decimal units are there for whoever means them, spelt with
//! an explicit `B`: `KB`, `MB`, `GB`, `TB`. Case does not matter; a bare number is
//! bytes; a fraction (`1.5G`) is allowed and rounded down to whole bytes.

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSizeError {
    #[error("empty size")]
    Empty,
    #[error("size {0:?} does not start with a number")]
    BadNumber(String),
    #[error("size {0:?} has an unknown unit (use K, M, G, T, or KB, MB, GB, TB)")]
    BadUnit(String),
    #[error("size {0:?} does not fit in 64 bits")]
    TooLarge(String),
}

/// Parses `10G`, `512M`, `1.5GiB`, `2GB`, `4096`, … into bytes.
pub fn parse_size(text: &str) -> Result<u64, ParseSizeError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ParseSizeError::Empty);
    }
    let number_len = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_len);
    let bad_number = || ParseSizeError::BadNumber(text.to_owned());
    if number.is_empty() {
        return Err(bad_number());
    }
    let unit = unit.trim_start();
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(ParseSizeError::BadUnit(text.to_owned())),
    };
    let too_large = || ParseSizeError::TooLarge(text.to_owned());
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(bad_number());
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    // Exact integer arithmetic: 0.1G must not become 107374182.39999 and round oddly.
    // Digits past the 18th cannot change a u64 result after the division.
    let fraction = &fraction[..fraction.len().min(18)];
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad_number())?
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let bytes = whole
        .checked_mul(multiplier)
        .and_then(|bytes| bytes.checked_add(fraction_value * multiplier / scale))
        .ok_or_else(too_large)?;
    u64::try_from(bytes).map_err(|_| too_large())
}

/// A size for people: `512 B`, `3.4 KiB`, `10.0 GiB` (binary units, one decimal).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_people_write() {
        for (text, bytes) in [
            ("0", 0),
            ("4096", 4096),
            ("12b", 12),
            ("1K", 1024),
            ("1k", 1024),
            ("512M", 512 << 20),
            ("10G", 10 << 30),
            ("10g", 10 << 30),
            ("10GiB", 10 << 30),
            ("10Gi", 10 << 30),
            ("2T", 2 << 40),
            ("1.5G", 3 << 29),
            (".5K", 512),
            ("1.", 1),
            ("0.1G", 107_374_182),
            (" 10 G ", 10 << 30),
            ("2GB", 2_000_000_000),
            ("3kb", 3000),
            ("1MB", 1_000_000),
            ("1TB", 1_000_000_000_000),
            (
                "16777215.999999999999999999999T",
                18_446_744_073_709_551_615,
            ),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
        }
    }

    #[test]
    fn nonsense_is_refused_with_the_reason() {
        assert_eq!(parse_size(""), Err(ParseSizeError::Empty));
        assert_eq!(parse_size("  "), Err(ParseSizeError::Empty));
        for text in ["G", ".", "..5G", "1.2.3G", "-1G", "+1G"] {
            assert!(
                matches!(parse_size(text), Err(ParseSizeError::BadNumber(_))),
                "{text:?}: {:?}",
                parse_size(text)
            );
        }
        for text in ["10X", "10 GBs", "10P", "1e9", "10 G B"] {
            assert!(
                matches!(parse_size(text), Err(ParseSizeError::BadUnit(_))),
                "{text:?}: {:?}",
                parse_size(text)
            );
        }
        for text in ["16777216T", "99999999999999999999999999999999999999999999"] {
            assert!(
                matches!(parse_size(text), Err(ParseSizeError::TooLarge(_))),
                "{text:?}: {:?}",
                parse_size(text)
            );
        }
    }

    #[test]
    fn formatted_sizes() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(10 << 30), "10.0 GiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
        assert_eq!(parse_size(&format_size(10 << 30)), Ok(10 << 30));
    }
}
