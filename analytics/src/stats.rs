//! The five items of the course's report, computed with Polars.

use crate::load::{from_epoch_days, Reference};
use crate::{Error, Period, Result};
use chrono::NaiveDate;
use polars::prelude::*;
use serde::Serialize;

/// Max and min of the daily change and change %, with the day each happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Extremes {
    pub max_change: Option<(f64, NaiveDate)>,
    pub min_change: Option<(f64, NaiveDate)>,
    pub max_change_pct: Option<(f64, NaiveDate)>,
    pub min_change_pct: Option<(f64, NaiveDate)>,
}

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
    /// 1. over the whole history
    pub overall: Extremes,
    /// 2. per year, oldest first
    pub yearly: Vec<(i32, Extremes)>,
    /// 3. evaluation over the whole history
    pub evaluation: MeanStd,
    /// 4. evaluation over the period (None when the period has no day)
    pub period: Option<MeanStd>,
    /// 5. average evaluation per month, most recent first: ((year, month), average)
    pub monthly: Vec<((i32, u32), f64)>,
    /// The whole series, for charts: (day, value).
    #[serde(skip)]
    pub series: Vec<(NaiveDate, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub period: (i32, i32),
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

/// The extremes of one group and the first day each was reached.
fn extremes_exprs() -> Vec<Expr> {
    let at = |value: &str, of: Expr| {
        col("as_of")
            .filter(col(value).eq(of))
            .first()
            .cast(DataType::Int32)
    };
    vec![
        col("change").max().alias("max_change"),
        at("change", col("change").max()).alias("max_change_day"),
        col("change").min().alias("min_change"),
        at("change", col("change").min()).alias("min_change_day"),
        col("change_pct").max().alias("max_pct"),
        at("change_pct", col("change_pct").max()).alias("max_pct_day"),
        col("change_pct").min().alias("min_pct"),
        at("change_pct", col("change_pct").min()).alias("min_pct_day"),
    ]
}

/// The extremes columns of an aggregate, read out of Polars once.
struct ExtremesColumns(Vec<ValueDayColumns>);

/// A figure's values and the days they happened, one entry per aggregate row.
type ValueDayColumns = (Vec<Option<f64>>, Vec<Option<i32>>);

impl ExtremesColumns {
    fn read(df: &DataFrame) -> Result<Self> {
        let pairs = [
            ("max_change", "max_change_day"),
            ("min_change", "min_change_day"),
            ("max_pct", "max_pct_day"),
            ("min_pct", "min_pct_day"),
        ];
        let mut cols = Vec::with_capacity(4);
        for (v, d) in pairs {
            cols.push((f64s(df, v)?, i32s(df, d)?));
        }
        Ok(ExtremesColumns(cols))
    }

    fn row(&self, row: usize) -> Extremes {
        let pair = |i: usize| -> Option<(f64, NaiveDate)> {
            let (values, days) = self.0.get(i)?;
            let value = values.get(row).copied().flatten();
            let day = days.get(row).copied().flatten();
            value.zip(day.map(from_epoch_days))
        };
        Extremes {
            max_change: pair(0),
            min_change: pair(1),
            max_change_pct: pair(2),
            min_change_pct: pair(3),
        }
    }
}

/// Computes the report of every portfolio in `df` (as loaded by `load::load`).
pub fn compute(reference: &Reference, df: &DataFrame, period: Period) -> Result<Stats> {
    let keys = [col("investor"), col("portfolio")];
    let by_portfolio = || SortMultipleOptions::default();
    let with_year = df.clone().lazy().with_columns([
        col("as_of").dt().year().cast(DataType::Int32).alias("year"),
        col("as_of")
            .dt()
            .month()
            .cast(DataType::Int32)
            .alias("month"),
    ]);

    let mut overall_aggs = extremes_exprs();
    overall_aggs.extend([
        col("nav").mean().alias("mean"),
        col("nav").std(1).alias("std"),
        col("nav").count().cast(DataType::Int32).alias("days"),
        col("as_of").min().cast(DataType::Int32).alias("first"),
        col("as_of").max().cast(DataType::Int32).alias("last"),
    ]);
    let overall = with_year
        .clone()
        .group_by(keys.clone())
        .agg(overall_aggs)
        .sort(["investor", "portfolio"], by_portfolio())
        .collect()?;
    let yearly = with_year
        .clone()
        .group_by([col("investor"), col("portfolio"), col("year")])
        .agg(extremes_exprs())
        .sort(["investor", "portfolio", "year"], by_portfolio())
        .collect()?;
    let in_period = with_year
        .clone()
        .filter(
            col("year")
                .gt_eq(lit(period.from))
                .and(col("year").lt_eq(lit(period.to))),
        )
        .group_by(keys.clone())
        .agg([
            col("nav").mean().alias("mean"),
            col("nav").std(1).alias("std"),
            col("nav").count().cast(DataType::Int32).alias("days"),
        ])
        .collect()?;
    let monthly = with_year
        .group_by([col("investor"), col("portfolio"), col("year"), col("month")])
        .agg([col("nav").mean().alias("mean")])
        .sort(
            ["investor", "portfolio", "year", "month"],
            SortMultipleOptions::default().with_order_descending_multi([false, false, true, true]),
        )
        .collect()?;

    let (o_inv, o_pf) = (strs(&overall, "investor")?, strs(&overall, "portfolio")?);
    let (o_mean, o_std, o_days) = (
        f64s(&overall, "mean")?,
        f64s(&overall, "std")?,
        i32s(&overall, "days")?,
    );
    let (o_first, o_last) = (i32s(&overall, "first")?, i32s(&overall, "last")?);
    let (y_inv, y_pf, y_year) = (
        strs(&yearly, "investor")?,
        strs(&yearly, "portfolio")?,
        i32s(&yearly, "year")?,
    );
    let (p_inv, p_pf) = (
        strs(&in_period, "investor")?,
        strs(&in_period, "portfolio")?,
    );
    let (p_mean, p_std, p_days) = (
        f64s(&in_period, "mean")?,
        f64s(&in_period, "std")?,
        i32s(&in_period, "days")?,
    );
    let (m_pf, m_year, m_month, m_mean) = (
        strs(&monthly, "portfolio")?,
        i32s(&monthly, "year")?,
        i32s(&monthly, "month")?,
        f64s(&monthly, "mean")?,
    );
    let (overall_x, yearly_x) = (
        ExtremesColumns::read(&overall)?,
        ExtremesColumns::read(&yearly)?,
    );
    let all_pf = strs(df, "portfolio")?;
    let all_day = i32s(df, "as_of")?;
    let all_nav = f64s(df, "nav")?;
    // Row indices of each portfolio in each result, built once (portfolio ids are unique
    // across investors).
    fn index(names: &[String]) -> std::collections::HashMap<&str, Vec<usize>> {
        let mut m: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
        for (i, n) in names.iter().enumerate() {
            m.entry(n.as_str()).or_default().push(i);
        }
        m
    }
    let (y_ix, p_ix, m_ix, all_ix) = (index(&y_pf), index(&p_pf), index(&m_pf), index(&all_pf));
    let rows_of = |m: &std::collections::HashMap<&str, Vec<usize>>, pf: &str| -> Vec<usize> {
        m.get(pf).cloned().unwrap_or_default()
    };

    let mut portfolios = Vec::with_capacity(o_pf.len());
    for i in 0..o_pf.len() {
        let (inv, pf) = (&o_inv[i], &o_pf[i]);
        let (name, city) = reference
            .investors
            .iter()
            .find(|(id, _, _)| id == inv)
            .map_or((String::new(), String::new()), |(_, n, c)| {
                (n.clone(), c.clone())
            });
        let mut yearly_stats = Vec::new();
        for r in rows_of(&y_ix, pf) {
            if &y_inv[r] == inv {
                if let Some(y) = y_year[r] {
                    yearly_stats.push((y, yearly_x.row(r)));
                }
            }
        }
        let period_stats = rows_of(&p_ix, pf)
            .into_iter()
            .find(|&r| &p_inv[r] == inv)
            .map(|r| MeanStd {
                mean: p_mean[r].unwrap_or(0.0),
                std: p_std[r],
                days: p_days[r].unwrap_or(0) as usize,
            });
        let months = rows_of(&m_ix, pf)
            .into_iter()
            .filter_map(|r| Some(((m_year[r]?, u32::try_from(m_month[r]?).ok()?), m_mean[r]?)))
            .collect();
        let series = rows_of(&all_ix, pf)
            .into_iter()
            .filter_map(|r| Some((from_epoch_days(all_day[r]?), all_nav[r]?)))
            .collect();
        portfolios.push(PortfolioStats {
            investor: inv.clone(),
            investor_name: name,
            city,
            portfolio: pf.clone(),
            first_day: from_epoch_days(o_first[i].unwrap_or(0)),
            last_day: from_epoch_days(o_last[i].unwrap_or(0)),
            overall: overall_x.row(i),
            yearly: yearly_stats,
            evaluation: MeanStd {
                mean: o_mean[i].unwrap_or(0.0),
                std: o_std[i],
                days: o_days[i].unwrap_or(0) as usize,
            },
            period: period_stats,
            monthly: months,
            series,
        });
    }
    if portfolios.iter().all(|p| p.period.is_none()) && !portfolios.is_empty() {
        return Err(Error::EmptyPeriod(period.from, period.to));
    }
    Ok(Stats {
        period: (period.from, period.to),
        portfolios,
    })
}
