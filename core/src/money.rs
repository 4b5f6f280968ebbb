//! Exact fixed-point amounts with 6 decimals, as `i128` millionths.
//!
//! Prices, values, changes and change percentages are all `Fixed6`: exact (no binary floating
//! point anywhere), cheap to add and compare (one integer), and wide enough for every amount
//! the input contract allows (`docs/input.md`: values stay below 10^22, change % below 10^31,
//! so the largest intermediate, a change × 10^8, stays below 10^36 < i128::MAX ≈ 1.7 × 10^38).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Decimal places of every amount.
pub const SCALE: u32 = 6;
/// 10^SCALE: the number of units in 1.
pub const UNIT: i128 = 1_000_000;

/// An exact amount with 6 decimals (millionths). Money and percentages alike.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fixed6(i128);

/// A money amount (USD).
pub type Money = Fixed6;
/// A percentage (33.333333 means 33.333333 %).
pub type Percent = Fixed6;

/// Why a decimal text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a plain decimal number")]
    Syntax,
    #[error("more than 6 decimals")]
    TooPrecise,
    #[error("out of range")]
    OutOfRange,
}

impl Fixed6 {
    pub const ZERO: Fixed6 = Fixed6(0);

    pub const fn from_units(units: i128) -> Self {
        Fixed6(units)
    }

    /// The amount in millionths.
    pub const fn units(self) -> i128 {
        self.0
    }

    /// A whole number.
    pub const fn from_int(n: i64) -> Self {
        Fixed6(n as i128 * UNIT)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn checked_add(self, rhs: Self) -> Option<Self> {
        self.0.checked_add(rhs.0).map(Fixed6)
    }

    pub fn checked_sub(self, rhs: Self) -> Option<Self> {
        self.0.checked_sub(rhs.0).map(Fixed6)
    }

    /// self × an integer count (a quantity of shares).
    pub fn checked_mul_int(self, n: i64) -> Option<Self> {
        self.0.checked_mul(i128::from(n)).map(Fixed6)
    }

    /// Wrapping addition: amounts summed as a group (differential's difference types), where
    /// intermediate sums may wrap but the final, consolidated sum is exact.
    pub fn wrapping_add(self, rhs: Self) -> Self {
        Fixed6(self.0.wrapping_add(rhs.0))
    }

    pub fn wrapping_neg(self) -> Self {
        Fixed6(self.0.wrapping_neg())
    }

    pub fn wrapping_mul_int(self, n: i64) -> Self {
        Fixed6(self.0.wrapping_mul(i128::from(n)))
    }

    /// `change / previous × 100`, rounded half away from zero to 6 decimals; None when
    /// `previous` is zero or the result does not fit.
    pub fn percent_of(change: Self, previous: Self) -> Option<Percent> {
        if previous.0 == 0 {
            return None;
        }
        // units(pct) = change × 100 × UNIT / previous = change × 10^8 / previous (both in units).
        let num = change.0.checked_mul(100 * UNIT)?;
        let den = previous.0;
        let q = num / den;
        let r = num % den;
        // Round half away from zero: |2r| ≥ |den| moves q one step away from zero.
        let twice = r.unsigned_abs().checked_mul(2)?;
        let q = if twice >= den.unsigned_abs() {
            if (num < 0) != (den < 0) {
                q.checked_sub(1)?
            } else {
                q.checked_add(1)?
            }
        } else {
            q
        };
        Some(Fixed6(q))
    }

    /// Parses a plain decimal exactly: `[-]DIGITS[.DIGITS][(e|E)[+|-]DIGITS]`, as JSON writes
    /// numbers. No underscores, no spaces, no `+` sign, no hex, no NaN or infinity. Up to 6
    /// decimals (zeros past the sixth are accepted: `1.0000000` is 1); at most 60 characters.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let b = text.as_bytes();
        if b.is_empty() || b.len() > 60 {
            return Err(if b.is_empty() {
                ParseError::Syntax
            } else {
                ParseError::OutOfRange
            });
        }
        let mut i = 0;
        let negative = b[0] == b'-';
        if negative {
            i += 1;
        }
        // Integer and fraction digits, without the point.
        let mut digits: Vec<u8> = Vec::with_capacity(b.len());
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            digits.push(b[i] - b'0');
            i += 1;
        }
        let int_len = i - int_start;
        let mut frac_len = 0usize;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                digits.push(b[i] - b'0');
                i += 1;
            }
            frac_len = i - start;
            if frac_len == 0 {
                return Err(ParseError::Syntax);
            }
        }
        if int_len == 0 {
            return Err(ParseError::Syntax);
        }
        let mut exponent: i64 = 0;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let exp_negative = match b.get(i) {
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
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                exponent = exponent
                    .saturating_mul(10)
                    .saturating_add(i64::from(b[i] - b'0'));
                i += 1;
            }
            if i == start {
                return Err(ParseError::Syntax);
            }
            if exp_negative {
                exponent = -exponent;
            }
        }
        if i != b.len() {
            return Err(ParseError::Syntax);
        }
        // value = digits × 10^(exponent − frac_len); in units: × 10^(exponent − frac_len + 6).
        let shift = exponent
            .checked_sub(frac_len as i64)
            .and_then(|s| s.checked_add(i64::from(SCALE)))
            .ok_or(ParseError::OutOfRange)?;
        let mut keep = digits.len();
        if shift < 0 {
            // The last |shift| digits are below one unit: they must all be zero.
            let drop = usize::try_from(shift.unsigned_abs()).map_err(|_| ParseError::OutOfRange)?;
            let cut = digits.len().saturating_sub(drop);
            if digits[cut..].iter().any(|d| *d != 0) {
                return Err(ParseError::TooPrecise);
            }
            keep = cut;
        }
        let mut units: i128 = 0;
        for d in &digits[..keep] {
            units = units
                .checked_mul(10)
                .and_then(|u| u.checked_add(i128::from(*d)))
                .ok_or(ParseError::OutOfRange)?;
        }
        if shift > 0 {
            for _ in 0..shift {
                if units == 0 {
                    break;
                }
                units = units.checked_mul(10).ok_or(ParseError::OutOfRange)?;
            }
        }
        Ok(Fixed6(if negative { -units } else { units }))
    }

    /// All six decimals (`1234.500000`): for SQL `DECIMAL(…, 6)` columns.
    pub fn to_fixed_string(self) -> String {
        let mut s = String::with_capacity(24);
        self.write(&mut s, SCALE);
        s
    }

    /// Appends all six decimals (`1234.500000`, as [`to_fixed_string`](Self::to_fixed_string))
    /// to a byte buffer: what a bulk load streams to the database, without a `String` per
    /// value.
    pub fn write_fixed(self, out: &mut Vec<u8>) {
        let abs = self.0.unsigned_abs();
        let unit = UNIT.unsigned_abs();
        let int = abs / unit;
        // Below 10^6: fits a u32.
        let frac = (abs % unit) as u32;
        if self.0 < 0 {
            out.push(b'-');
        }
        push_digits(out, int);
        out.push(b'.');
        let mut digits = [b'0'; SCALE as usize];
        let mut rest = frac;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&digits);
    }

    fn write(self, out: &mut String, min_decimals: u32) {
        use fmt::Write;
        let neg = self.0 < 0;
        let abs = self.0.unsigned_abs();
        let unit = UNIT.unsigned_abs();
        let int = abs / unit;
        let mut frac = abs % unit;
        let mut decimals = SCALE;
        while decimals > min_decimals && frac.is_multiple_of(10) {
            frac /= 10;
            decimals -= 1;
        }
        if neg {
            out.push('-');
        }
        let _ = write!(out, "{int}");
        if decimals > 0 {
            let _ = write!(out, ".{frac:0width$}", width = decimals as usize);
        }
    }
}

/// The decimal digits of `n`, most significant first (u64 arithmetic below 2^64, which is every
/// amount of the contract's columns but the widest change %).
fn push_digits(out: &mut Vec<u8>, n: u128) {
    let mut buf = [0u8; 39];
    let mut i = buf.len();
    let mut rest = n;
    while rest > u128::from(u64::MAX) {
        i -= 1;
        buf[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let mut small = rest as u64;
    loop {
        i -= 1;
        buf[i] = b'0' + (small % 10) as u8;
        small /= 10;
        if small == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

impl fmt::Display for Fixed6 {
    /// At least two decimals, at most six, no trailing zeros past the second:
    /// `256.90`, `3218476.00`, `-33.333333`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(24);
        self.write(&mut s, 2);
        f.pad(&s)
    }
}

impl fmt::Debug for Fixed6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Fixed6 {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Fixed6::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Fixed6, ParseError> {
        Fixed6::parse(s)
    }

    #[test]
    fn parses_exactly() {
        assert_eq!(p("256.90"), Ok(Fixed6(256_900_000)));
        assert_eq!(p("256.9"), Ok(Fixed6(256_900_000)));
        assert_eq!(p("2.569e2"), Ok(Fixed6(256_900_000)));
        assert_eq!(p("25690E-2"), Ok(Fixed6(256_900_000)));
        assert_eq!(p("0.000001"), Ok(Fixed6(1)));
        assert_eq!(p("1.0000000"), Ok(Fixed6(UNIT)));
        assert_eq!(p("-3.10"), Ok(Fixed6(-3_100_000)));
        assert_eq!(p("0"), Ok(Fixed6(0)));
        assert_eq!(p("1e30"), Ok(Fixed6(10i128.pow(36))));
    }

    #[test]
    fn refuses_what_is_not_plain() {
        for s in [
            "", "9_7.63", " 1.0", "1.0 ", "+1", "1.", ".5", "0x10", "NaN", "inf", "1e", "1e+",
            "--1", "1.2.3", "١٢",
        ] {
            assert_eq!(p(s), Err(ParseError::Syntax), "{s:?}");
        }
        assert_eq!(p("1.0000001"), Err(ParseError::TooPrecise));
        assert_eq!(
            p("123456789.123456789012345678"),
            Err(ParseError::TooPrecise)
        );
        assert_eq!(p("1e-7"), Err(ParseError::TooPrecise));
        assert_eq!(
            p("100000000000000000000000000000000000"),
            Err(ParseError::OutOfRange)
        );
        assert_eq!(p("1e400"), Err(ParseError::OutOfRange));
        assert_eq!(p("1e99999999999999999999"), Err(ParseError::OutOfRange));
        assert_eq!(p(&"1".repeat(61)), Err(ParseError::OutOfRange));
    }

    #[test]
    fn formats_with_two_to_six_decimals() {
        assert_eq!(Fixed6(256_900_000).to_string(), "256.90");
        assert_eq!(Fixed6::from_int(3_218_476).to_string(), "3218476.00");
        assert_eq!(Fixed6(-33_333_333).to_string(), "-33.333333");
        assert_eq!(Fixed6(1).to_string(), "0.000001");
        assert_eq!(Fixed6(-1).to_string(), "-0.000001");
        assert_eq!(Fixed6(1_500_000).to_fixed_string(), "1.500000");
        assert_eq!(format!("{:>8}", Fixed6(UNIT)), "    1.00");
    }

    #[test]
    fn percent_rounds_half_away_from_zero() {
        let pct = |c: i128, prev: i128| Fixed6::percent_of(Fixed6(c), Fixed6(prev));
        // 1.50 / 100 × 100 = 1.5 %
        assert_eq!(pct(1_500_000, 100 * UNIT), Some(Fixed6(1_500_000)));
        // −1 / 3 × 100 = −33.3333333… → −33.333333
        assert_eq!(pct(-UNIT, 3 * UNIT), Some(Fixed6(-33_333_333)));
        // 2 / 3 × 100 = 66.6666666… → 66.666667
        assert_eq!(pct(2 * UNIT, 3 * UNIT), Some(Fixed6(66_666_667)));
        // exactly half: 0.0000005 % → 0.000001 %, and −0.000001 % for the negative
        assert_eq!(pct(1, 200_000_000), Some(Fixed6(1)));
        assert_eq!(pct(-1, 200_000_000), Some(Fixed6(-1)));
        assert_eq!(pct(5, 0), None);
        // the contract's extremes: change < 10^22, previous ≥ 10^-6
        let big = 10i128.pow(28) - 1;
        assert!(pct(big, 1).is_some());
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(Fixed6(i128::MAX).checked_add(Fixed6(1)), None);
        assert_eq!(Fixed6(i128::MAX / 2).checked_mul_int(3), None);
        assert_eq!(
            Fixed6(i128::MAX)
                .wrapping_add(Fixed6(1))
                .wrapping_add(Fixed6(-1)),
            Fixed6(i128::MAX)
        );
    }

    #[test]
    fn bytes_are_the_fixed_string() {
        let mut cases = vec![0, 1, -1, 999_999, -999_999, UNIT, 256_900_000, -3_100_000];
        cases.extend([i128::MAX, i128::MIN, i128::MAX - 1, i128::MIN + 1]);
        cases.extend([u64::MAX as i128 * UNIT, (u64::MAX as i128 + 1) * UNIT + 7]);
        cases.extend([-(u64::MAX as i128) * UNIT - 1, 10i128.pow(28) - 1]);
        // A fixed seed, printed on failure through the case's value.
        let mut x: u128 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            cases.push((x as i128) >> (x % 100));
        }
        for units in cases {
            let mut out = Vec::new();
            Fixed6(units).write_fixed(&mut out);
            assert_eq!(
                String::from_utf8(out).expect("ascii"),
                Fixed6(units).to_fixed_string(),
                "units {units}"
            );
        }
    }
}
