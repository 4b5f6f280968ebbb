//! The five items of the course's report. The money figures (item 1 and 2: the extremes of the
//! daily change and change %) are exact, from the stored decimals; the means, standard
//! deviations and monthly averages (items 3–5) are computed with Polars as floats.

use crate::load::{approx, EvalRow, Evaluations, Reference};
use crate::{Period, Result};
use chrono::{Datelike, NaiveDate};
use polars::prelude::*;
use serde::{Serialize, Serializer};
use std::collections::HashMap;
use stockflow_core::Money;

/// An exact amount, serialized as its decimal text (`"21.00"`, `"-33.333333"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Exact(pub Money);

impl Serialize for Exact {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

/// Max and min of the daily change and change %, with the first day each happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Extremes {
    pub max_change: Option<(Exact, NaiveDate)>,
    pub min_change: Option<(Exact, NaiveDate)>,
    pub max_change_pct: Option<(Exact, NaiveDate)>,
    pub min_change_pct: Option<(Exact, NaiveDate)>,
}

impl Extremes {
    /// The extremes over `rows` (in day order); the first day wins a tie. A first day's absent
    /// change is not a change.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a EvalRow>) -> Self {
        fn keep(
            slot: &mut Option<(Exact, NaiveDate)>,
            v: Option<Money>,
            day: NaiveDate,
            better: fn(Money, Money) -> bool,
        ) {
            if let Some(v) = v {
                if slot.is_none_or(|(cur, _)| better(v, cur.0)) {
                    *slot = Some((Exact(v), day));
                }
            }
        }
        let mut e = Extremes::default();
        for r in rows {
            keep(&mut e.max_change, r.change, r.day, |a, b| a > b);
            keep(&mut e.min_change, r.change, r.day, |a, b| a < b);
            keep(&mut e.max_change_pct, r.change_pct, r.day, |a, b| a > b);
            keep(&mut e.min_change_pct, r.change_pct, r.day, |a, b| a < b);
        }
        e
    }
}

/// ((year, month), average evaluation).
pub type MonthAverage = ((i32, u32), f64);

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MeanStd {
    pub mean: f64,
    /// Sample standard deviation (n − 1); None with one day.
    pub std: Option<f64>,
    pub days: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortfolioStats {
    pub investor: String,
    pub investor_name: String,
    pub city: String,
    pub portfolio: String,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// The last evaluation, exact.
    pub last_value: Exact,
    /// 1. over the whole history
    pub overall: Extremes,
    /// 2. per year, oldest first
    pub yearly: Vec<(i32, Extremes)>,
    /// 3. evaluation over the whole history
    pub evaluation: MeanStd,
    /// 4. evaluation over the period (None when the period has no day)
    pub period: Option<MeanStd>,
    /// 5. average evaluation per month, most recent first: ((year, month), average)
    pub monthly: Vec<MonthAverage>,
    /// The whole series, for charts: (day, value).
    #[serde(skip)]
    pub series: Vec<(NaiveDate, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub period: (i32, i32),
    /// True when no portfolio has an evaluation in the period (item 4 is then empty).
    pub period_empty: bool,
    pub portfolios: Vec<PortfolioStats>,
}

fn f64s(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    Ok(df
        .column(name)?
        .as_materialized_series()
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .collect())
}

fn i32s(df: &DataFrame, name: &str) -> Result<Vec<Option<i32>>> {
    Ok(df
        .column(name)?
        .as_materialized_series()
        .cast(&DataType::Int32)?
        .i32()?
        .iter()
        .collect())
}

fn strs(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    Ok(df
        .column(name)?
        .as_materialized_series()
        .str()?
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect())
}

/// Mean, sample std and count of `value` per portfolio, with Polars' eager group-by. (Its
/// aggregations are marked deprecated in favour of the lazy engine, which would add
/// polars-stream, object_store, reqwest and hyper to the build: minutes on 2 cores, for
/// nothing these reports use.)
#[allow(deprecated)]
fn mean_std(df: &DataFrame) -> Result<HashMap<String, MeanStd>> {
    let mean = df.group_by(["portfolio"])?.select(["value"]).mean()?;
    let std = df.group_by(["portfolio"])?.select(["value"]).std(1)?;
    let count = df.group_by(["portfolio"])?.select(["value"]).count()?;
    let key = |d: &DataFrame| strs(d, "portfolio");
    let means: HashMap<String, Option<f64>> = key(&mean)?
        .into_iter()
        .zip(f64s(&mean, "value_mean")?)
        .collect();
    let stds: HashMap<String, Option<f64>> = key(&std)?
        .into_iter()
        .zip(f64s(&std, "value_agg_std")?)
        .collect();
    let mut out = HashMap::new();
    for (pf, n) in key(&count)?.into_iter().zip(i32s(&count, "value_count")?) {
        let days = n.unwrap_or(0).max(0) as usize;
        out.insert(
            pf.clone(),
            MeanStd {
                mean: means.get(&pf).copied().flatten().unwrap_or(0.0),
                std: stds.get(&pf).copied().flatten().filter(|_| days > 1),
                days,
            },
        );
    }
    Ok(out)
}

/// Computes the report of every portfolio in `evals` (as loaded by `load::load`).
#[allow(deprecated)] // the eager group-by: see `mean_std`
pub fn compute(reference: &Reference, evals: &Evaluations, period: Period) -> Result<Stats> {
    let df = evals.frame()?;
    let overall = mean_std(&df)?;
    let years = df.column("year")?.as_materialized_series().i32()?.clone();
    let mask = years.gt_eq(period.from) & years.lt_eq(period.to);
    let in_period = mean_std(&df.filter(&mask)?)?;
    let monthly = df
        .group_by(["portfolio", "year", "month"])?
        .select(["value"])
        .mean()?;
    let mut months: HashMap<String, Vec<MonthAverage>> = HashMap::new();
    for (((pf, y), m), v) in strs(&monthly, "portfolio")?
        .into_iter()
        .zip(i32s(&monthly, "year")?)
        .zip(i32s(&monthly, "month")?)
        .zip(f64s(&monthly, "value_mean")?)
    {
        if let (Some(y), Some(m), Some(v)) = (y, m.and_then(|m| u32::try_from(m).ok()), v) {
            months.entry(pf).or_default().push(((y, m), v));
        }
    }

    let mut portfolios = Vec::new();
    let mut start = 0;
    while start < evals.rows.len() {
        let first = &evals.rows[start];
        let end = evals.rows[start..]
            .iter()
            .position(|r| r.portfolio != first.portfolio)
            .map_or(evals.rows.len(), |n| start + n);
        let rows = &evals.rows[start..end];
        start = end;
        let Some(last) = rows.last() else { continue };
        let (name, city) = reference
            .investors
            .iter()
            .find(|(id, _, _)| *id == first.investor)
            .map_or((String::new(), String::new()), |(_, n, c)| {
                (n.clone(), c.clone())
            });
        let mut yearly = Vec::new();
        let mut y0 = 0;
        while y0 < rows.len() {
            let year = rows[y0].day.year();
            let y1 = rows[y0..]
                .iter()
                .position(|r| r.day.year() != year)
                .map_or(rows.len(), |n| y0 + n);
            yearly.push((year, Extremes::of(&rows[y0..y1])));
            y0 = y1;
        }
        let mut monthly = months.remove(&first.portfolio).unwrap_or_default();
        monthly.sort_by_key(|m| std::cmp::Reverse(m.0));
        portfolios.push(PortfolioStats {
            investor: first.investor.clone(),
            investor_name: name,
            city,
            portfolio: first.portfolio.clone(),
            first_day: first.day,
            last_day: last.day,
            last_value: Exact(last.value),
            overall: Extremes::of(rows),
            yearly,
            evaluation: overall.get(&first.portfolio).cloned().unwrap_or_default(),
            period: in_period.get(&first.portfolio).cloned(),
            monthly,
            series: rows.iter().map(|r| (r.day, approx(r.value))).collect(),
        });
    }
    portfolios.sort_by(|a, b| (&a.investor, &a.portfolio).cmp(&(&b.investor, &b.portfolio)));
    Ok(Stats {
        period: (period.from, period.to),
        period_empty: portfolios.iter().all(|p| p.period.is_none()),
        portfolios,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: u32, change: Option<&str>) -> EvalRow {
        EvalRow {
            investor: "Inv1".into(),
            portfolio: "P11".into(),
            day: NaiveDate::from_ymd_opt(2024, 1, day).unwrap_or_default(),
            value: Money::from_int(100),
            change: change.and_then(|c| Money::parse(c).ok()),
            change_pct: change.and_then(|c| Money::parse(c).ok()),
        }
    }

    #[test]
    fn extremes_are_exact_and_the_first_day_wins_a_tie() {
        // Two changes that differ only in the sixth decimal: floats of this size lose it.
        let rows = [
            row(2, None),
            row(3, Some("123456789012345.000001")),
            row(4, Some("123456789012345.000002")),
            row(5, Some("-5.5")),
            row(8, Some("123456789012345.000002")),
        ];
        let e = Extremes::of(&rows);
        assert_eq!(
            e.max_change.map(|(v, d)| (v.0.to_string(), d.day())),
            Some(("123456789012345.000002".into(), 4))
        );
        assert_eq!(
            e.min_change.map(|(v, _)| v.0.to_string()),
            Some("-5.50".into())
        );
        assert_eq!(
            serde_json::to_string(&e.min_change).unwrap_or_default(),
            r#"["-5.50","2024-01-05"]"#
        );
    }
}
