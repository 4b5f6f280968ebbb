//! Pure evaluation math, apart from the dataflow so it tests alone.

use crate::types::Evaluation;
use chrono::{Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use stockflow_market::PortfolioId;

/// Decimal places kept in change %, rounded half away from zero.
pub const PCT_SCALE: u32 = 6;

/// An evaluation from a day's value and the previous evaluated day's value.
pub fn evaluation(
    portfolio: PortfolioId,
    date: NaiveDate,
    value: Decimal,
    previous: Option<Decimal>,
) -> Evaluation {
    let change = previous.map(|p| value - p);
    let change_pct = match (change, previous) {
        (Some(c), Some(p)) if !p.is_zero() => c
            .checked_div(p)
            .and_then(|r| r.checked_mul(Decimal::ONE_HUNDRED))
            .map(|r| r.round_dp_with_strategy(PCT_SCALE, RoundingStrategy::MidpointAwayFromZero)),
        _ => None,
    };
    Evaluation {
        portfolio,
        date,
        value,
        change,
        change_pct,
    }
}

/// A month index (year × 12 + month − 1): the buckets that bound the work of a new day.
pub fn month_of(d: NaiveDate) -> i32 {
    d.year() * 12 + d.month0() as i32
}

pub fn year_of_month(m: i32) -> i32 {
    m.div_euclid(12)
}

/// The quantity intervals of one (portfolio, stock) from its holding records, sorted by
/// `from`: each record holds until the next one; quantity 0 closes the position.
pub fn intervals(records: &[(NaiveDate, i64)]) -> Vec<(NaiveDate, Option<NaiveDate>, i64)> {
    records
        .iter()
        .enumerate()
        .filter(|(_, (_, q))| *q != 0)
        .map(|(i, (from, q))| (*from, records.get(i + 1).map(|r| r.0), *q))
        .collect()
}

pub fn covers(from: NaiveDate, to: Option<NaiveDate>, d: NaiveDate) -> bool {
    from <= d && to.is_none_or(|t| d < t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
    }

    #[test]
    fn first_day_has_no_change() {
        let e = evaluation(0, d(2000, 1, 3), Decimal::new(100, 0), None);
        assert_eq!((e.change, e.change_pct), (None, None));
    }

    #[test]
    fn change_and_percent() {
        let e = evaluation(
            0,
            d(2000, 1, 4),
            Decimal::new(10150, 2),
            Some(Decimal::new(100, 0)),
        );
        assert_eq!(e.change, Some(Decimal::new(150, 2)));
        assert_eq!(e.change_pct, Some(Decimal::new(1_500_000, 6)));
        let e = evaluation(
            0,
            d(2000, 1, 4),
            Decimal::new(2, 0),
            Some(Decimal::new(3, 0)),
        );
        assert_eq!(
            e.change_pct.map(|p| p.to_string()),
            Some("-33.333333".into())
        );
    }

    #[test]
    fn intervals_follow_records() {
        let recs = [(d(2000, 1, 3), 10), (d(2000, 2, 1), 0), (d(2000, 3, 1), 5)];
        let iv = intervals(&recs);
        assert_eq!(
            iv,
            vec![
                (d(2000, 1, 3), Some(d(2000, 2, 1)), 10),
                (d(2000, 3, 1), None, 5)
            ]
        );
        assert!(covers(iv[0].0, iv[0].1, d(2000, 1, 31)));
        assert!(!covers(iv[0].0, iv[0].1, d(2000, 2, 1)));
    }

    #[test]
    fn months() {
        assert_eq!(month_of(d(2000, 1, 3)), 24000);
        assert_eq!(year_of_month(month_of(d(2024, 12, 31))), 2024);
    }
}
