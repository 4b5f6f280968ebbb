//! The trading calendar: weekdays from 2000-01-01 on, less the Greek national holidays
//! (the rules of the `holidays` package for country GR, as the spec lists them).

use chrono::{Datelike, Days, NaiveDate, Weekday};

/// The first calendar day of the market; the first trading day is 2000-01-03.
pub const MARKET_EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => panic!("valid constant date"),
};

fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

fn shift(d: NaiveDate, days: i64) -> NaiveDate {
    if days >= 0 {
        d.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        d.checked_sub_days(Days::new(days.unsigned_abs()))
    }
    .unwrap_or(d)
}

/// Orthodox Easter Sunday (Gregorian date) of `year`: Meeus' Julian algorithm plus the
/// Julian-to-Gregorian offset of that century.
pub fn orthodox_easter(year: i32) -> NaiveDate {
    let a = year.rem_euclid(4);
    let b = year.rem_euclid(7);
    let c = year.rem_euclid(19);
    let d = (19 * c + 15) % 30;
    let e = (2 * a + 4 * b - d + 34) % 7;
    let month = (d + e + 114) / 31;
    let day = (d + e + 114) % 31 + 1;
    let julian_offset = i64::from(year / 100 - year / 400 - 2);
    let julian = ymd(year, month as u32, day as u32).unwrap_or(MARKET_EPOCH);
    shift(julian, julian_offset)
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The holidays of `year` other than Labour Day (which moves relative to them).
fn fixed_and_movable(year: i32) -> Vec<NaiveDate> {
    let easter = orthodox_easter(year);
    let mut v: Vec<NaiveDate> = [
        (1, 1),
        (1, 6),
        (3, 25),
        (8, 15),
        (10, 28),
        (12, 25),
        (12, 26),
    ]
    .iter()
    .filter_map(|&(m, d)| ymd(year, m, d))
    .collect();
    v.push(shift(easter, -48)); // Clean Monday
    v.push(shift(easter, -2)); // Good Friday
    v.push(easter);
    v.push(shift(easter, 1)); // Easter Monday
    v.push(shift(easter, 50)); // Whit Monday
    v
}

/// Labour Day of `year` with its moves: to the Tuesday after when 1 May is Easter Monday;
/// from 2017 to the next working day when on a weekend; 7 May in 2024 by decree.
pub fn labour_day(year: i32) -> NaiveDate {
    let may1 = ymd(year, 5, 1).unwrap_or(MARKET_EPOCH);
    if year == 2024 {
        return ymd(2024, 5, 7).unwrap_or(may1);
    }
    let others = fixed_and_movable(year);
    let easter_monday = shift(orthodox_easter(year), 1);
    if may1 == easter_monday {
        return shift(may1, 1);
    }
    if year >= 2017 && is_weekend(may1) {
        let mut d = shift(may1, 1);
        while is_weekend(d) || others.contains(&d) {
            d = shift(d, 1);
        }
        return d;
    }
    may1
}

/// All Greek national holidays of `year`, sorted.
pub fn holidays(year: i32) -> Vec<NaiveDate> {
    let mut v = fixed_and_movable(year);
    v.push(labour_day(year));
    v.sort();
    v.dedup();
    v
}

/// A trading calendar with a precomputed holiday table for the years it has seen.
#[derive(Debug, Default, Clone)]
pub struct Calendar {
    cache: std::collections::HashMap<i32, Vec<NaiveDate>>,
}

impl Calendar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the exchanges trade on `d`.
    pub fn is_trading_day(&mut self, d: NaiveDate) -> bool {
        if d < MARKET_EPOCH || is_weekend(d) {
            return false;
        }
        !self
            .cache
            .entry(d.year())
            .or_insert_with(|| holidays(d.year()))
            .contains(&d)
    }

    /// The trading days in `from..=to`, in order.
    pub fn trading_days(&mut self, from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
        let mut out = Vec::new();
        let mut d = from.max(MARKET_EPOCH);
        while d <= to {
            if self.is_trading_day(d) {
                out.push(d);
            }
            match d.succ_opt() {
                Some(n) => d = n,
                None => break,
            }
        }
        out
    }

    /// The first trading day on or after `d`.
    pub fn next_trading_day_from(&mut self, d: NaiveDate) -> NaiveDate {
        let mut d = d.max(MARKET_EPOCH);
        while !self.is_trading_day(d) {
            match d.succ_opt() {
                Some(n) => d = n,
                None => break,
            }
        }
        d
    }
}

/// The first trading day of the market (2000-01-03).
pub fn first_trading_day() -> NaiveDate {
    Calendar::new().next_trading_day_from(MARKET_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthodox_easter_known_dates() {
        // Published dates of Orthodox Easter.
        for (y, m, d) in [
            (2000, 4, 30),
            (2001, 4, 15),
            (2005, 5, 1),
            (2010, 4, 4),
            (2016, 5, 1),
            (2021, 5, 2),
            (2023, 4, 16),
            (2024, 5, 5),
            (2025, 4, 20),
            (2026, 4, 12),
        ] {
            assert_eq!(Some(orthodox_easter(y)), ymd(y, m, d), "{y}");
        }
    }

    #[test]
    fn labour_day_moves() {
        assert_eq!(Some(labour_day(2000)), ymd(2000, 5, 2)); // 1 May = Easter Monday
        assert_eq!(Some(labour_day(2024)), ymd(2024, 5, 7)); // decree
        assert_eq!(Some(labour_day(2022)), ymd(2022, 5, 2)); // Sunday, from 2017 on
        assert_eq!(Some(labour_day(2011)), ymd(2011, 5, 1)); // Sunday before 2017: stays
        assert_eq!(Some(labour_day(2021)), ymd(2021, 5, 4)); // Sat; Mon 3 is Easter Monday
    }
}
