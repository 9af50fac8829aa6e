//! The C library functions distcc's host parser is written with (`isspace` in the C
//! locale, `strcspn`, `strtol`), reproduced so that the Rust parser reads every byte
//! as distcc does.

/// C's `isspace` in the C locale.
pub(super) fn c_isspace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C's `strcspn`.
pub(super) fn span(bytes: &[u8], stop: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| stop.contains(b))
        .unwrap_or(bytes.len())
}

/// C's `strtol(s, &end, 10)` with a 64-bit long: the clamped value and how many bytes it
/// used (0 when there are no digits, as `end` is then `s`).
pub(super) fn strtol(bytes: &[u8]) -> (i64, usize) {
    let mut i = bytes.iter().take_while(|&&b| c_isspace(b)).count();
    let negative = match bytes.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = i;
    let mut value: i64 = 0;
    while let Some(&b) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
        let digit = i64::from(b - b'0');
        value = value.saturating_mul(10);
        value = if negative {
            value.saturating_sub(digit)
        } else {
            value.saturating_add(digit)
        };
        i += 1;
    }
    if i == digits { (0, 0) } else { (value, i) }
}
