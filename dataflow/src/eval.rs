//! Pure evaluation math, apart from the dataflow so it tests alone. Every operation on money is
//! checked: what would leave the contract's bounds becomes an `Overflow` issue, never a panic.

use chrono::{Datelike, NaiveDate};
use stockflow_core::limits::VALUE_CEILING;
use stockflow_core::{Evaluation, IssueKind, Money, PortfolioId};

/// Decimal places kept in change %, rounded half away from zero.
pub const PCT_SCALE: u32 = stockflow_core::money::SCALE;

/// Whether a portfolio-day's summed value is one the contract allows (0 < value < 10^22).
pub fn valid_value(value: Money) -> bool {
    value.is_positive() && value < VALUE_CEILING
}

/// An evaluation from a day's value and the previous evaluated day's value.
pub fn evaluation(
    portfolio: PortfolioId,
    date: NaiveDate,
    value: Money,
    previous: Option<Money>,
) -> Result<Evaluation, IssueKind> {
    if !valid_value(value) {
        return Err(IssueKind::Overflow);
    }
    let (change, change_pct) = match previous {
        None => (None, None),
        Some(prev) => {
            let change = value.checked_sub(prev).ok_or(IssueKind::Overflow)?;
            let pct = Money::percent_of(change, prev).ok_or(IssueKind::Overflow)?;
            (Some(change), Some(pct))
        }
    };
    Ok(Evaluation {
        portfolio,
        date,
        value,
        change,
        change_pct,
    })
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

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap_or_default()
    }

    #[test]
    fn first_day_has_no_change() {
        let e = evaluation(0, d(2000, 1, 3), m("100"), None);
        assert_eq!(e.map(|e| (e.change, e.change_pct)), Ok((None, None)));
    }

    #[test]
    fn change_and_percent() {
        let e = evaluation(0, d(2000, 1, 4), m("101.50"), Some(m("100"))).ok();
        assert_eq!(e.as_ref().and_then(|e| e.change), Some(m("1.50")));
        assert_eq!(e.and_then(|e| e.change_pct), Some(m("1.5")));
        let e = evaluation(0, d(2000, 1, 4), m("2"), Some(m("3"))).ok();
        assert_eq!(
            e.and_then(|e| e.change_pct).map(|p| p.to_string()),
            Some("-33.333333".into())
        );
    }

    #[test]
    fn out_of_bounds_values_are_issues_not_panics() {
        assert_eq!(
            evaluation(0, d(2000, 1, 4), VALUE_CEILING, None),
            Err(IssueKind::Overflow)
        );
        assert_eq!(
            evaluation(0, d(2000, 1, 4), Money::ZERO, None),
            Err(IssueKind::Overflow)
        );
        let huge = Money::from_units(VALUE_CEILING.units() - 1);
        let tiny = Money::from_units(1);
        let e = evaluation(0, d(2000, 1, 4), huge, Some(tiny));
        assert!(e.is_ok(), "the contract's extremes fit: {e:?}");
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
