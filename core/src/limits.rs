//! The input contract's bounds (`docs/input.md`), derived from the database schema so that every
//! value, change and change % the job can produce fits its column:
//!
//! - price: 0 < price < 10^9 (at most 6 decimals, so price ≥ 10^-6);
//! - quantity: 0 ≤ quantity ≤ 10^9 shares;
//! - positions per portfolio ≤ stocks in a universe ≤ 10^4.
//!
//! So a value is < 10^9 × 10^9 × 10^4 = 10^22, which `DECIMAL(28,6)` holds (22 integer
//! digits); a change is a difference of two values, |change| < 10^22, same column type; a
//! previous value is ≥ 10^-6 (one share at the smallest price), so |change %| < 10^22 / 10^-6
//! × 100 = 10^30, which `DECIMAL(38,6)` holds (32 integer digits). In millionths the largest
//! intermediate is change × 10^8 < 10^36, inside i128.

use crate::money::{Fixed6, UNIT};
use chrono::NaiveDate;

/// Prices are strictly below this (10^9).
pub const PRICE_CEILING: Fixed6 = Fixed6::from_units(1_000_000_000 * UNIT);
/// Quantities are at most this many shares (10^9).
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// A universe has at most this many stocks, hence a portfolio at most this many positions.
pub const MAX_STOCKS: usize = 10_000;
/// Values and changes are strictly below this in absolute value (10^22): `DECIMAL(28,6)`.
pub const VALUE_CEILING: Fixed6 = Fixed6::from_units(10i128.pow(22) * UNIT);
/// Change percentages are strictly below this in absolute value (10^30): `DECIMAL(38,6)`.
pub const PERCENT_CEILING: Fixed6 = Fixed6::from_units(10i128.pow(30) * UNIT);

/// The first calendar day of the market.
pub const FIRST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => panic!("valid constant date"),
};
/// The last day a MySQL `DATE` can store.
pub const LAST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(d) => d,
    None => panic!("valid constant date"),
};

/// Dead-letter payloads are kept up to this many bytes (the length and SHA-256 of the whole
/// payload are always kept).
pub const MAX_DEAD_LETTER_PAYLOAD: usize = 64 * 1024;
/// Dead-letter reasons are cut to this many bytes.
pub const MAX_REASON: usize = 512;
/// A round stops reading once its dead letters hold this many payload bytes (so a flood of
/// garbage cannot grow one transaction without bound).
pub const MAX_DEAD_LETTER_BYTES_PER_ROUND: usize = 8 * 1024 * 1024;
/// Input text quoted in a reason or a log line is cut to this many characters.
pub const MAX_QUOTED: usize = 64;

/// Quotes untrusted text for a reason or a log line: at most `MAX_QUOTED` characters, control
/// and non-printable characters escaped, in double quotes.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_QUOTED) + 8);
    out.push('"');
    for (count, c) in text.chars().enumerate() {
        if count == MAX_QUOTED {
            out.push('…');
            break;
        }
        if c.is_control() || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arithmetic_of_the_bounds_holds() {
        let max_price = Fixed6::from_units(PRICE_CEILING.units() - 1);
        let max_position = max_price.checked_mul_int(MAX_QUANTITY);
        let max_value = max_position.and_then(|p| p.checked_mul_int(MAX_STOCKS as i64));
        assert!(max_value.is_some_and(|v| v < VALUE_CEILING));
        let min_value = Fixed6::from_units(1);
        let pct = max_value.and_then(|v| Fixed6::percent_of(v, min_value));
        assert!(pct.is_some_and(|p| p < PERCENT_CEILING));
    }

    #[test]
    fn quoting_escapes_and_cuts() {
        assert_eq!(quote("IBM"), "\"IBM\"");
        assert_eq!(quote("a\nb\u{1b}[31m"), "\"a\\nb\\u{1b}[31m\"");
        assert_eq!(quote(&"x".repeat(100)).chars().count(), MAX_QUOTED + 3);
        assert_eq!(cut("héllo", 2), "h");
    }
}
