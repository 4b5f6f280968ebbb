//! The same figures for machines, as one tidy (long) table: one row per figure, columns
//! investor, portfolio, item (1–5), scope (`all`, a year, the period, a month), metric, value
//! (f64, every figure), exact (the money figures' exact decimal text), day (when the figure
//! happened). Written as CSV and Parquet; JSON on request.

use crate::stats::{Extremes, Stats};
use crate::{Error, Result};
use polars::prelude::*;
use std::path::Path;

#[derive(Default)]
struct Rows {
    investor: Vec<String>,
    portfolio: Vec<String>,
    item: Vec<i32>,
    scope: Vec<String>,
    metric: Vec<String>,
    value: Vec<Option<f64>>,
    exact: Vec<Option<String>>,
    day: Vec<Option<String>>,
}

impl Rows {
    fn push(
        &mut self,
        key: (&str, &str, i32),
        scope: String,
        metric: &str,
        value: (Option<f64>, Option<String>),
        day: Option<String>,
    ) {
        let (inv, pf, item) = key;
        self.investor.push(inv.into());
        self.portfolio.push(pf.into());
        self.item.push(item);
        self.scope.push(scope);
        self.metric.push(metric.into());
        self.value.push(value.0);
        self.exact.push(value.1);
        self.day.push(day);
    }

    fn extremes(&mut self, inv: &str, pf: &str, item: i32, scope: String, e: &Extremes) {
        for (metric, v) in [
            ("max_change", e.max_change),
            ("min_change", e.min_change),
            ("max_change_pct", e.max_change_pct),
            ("min_change_pct", e.min_change_pct),
        ] {
            self.push(
                (inv, pf, item),
                scope.clone(),
                metric,
                (
                    v.map(|x| crate::load::approx(x.0 .0)),
                    v.map(|x| x.0 .0.to_string()),
                ),
                v.map(|x| x.1.to_string()),
            );
        }
    }
}

/// The tidy table of every figure.
pub fn tidy(stats: &Stats) -> Result<DataFrame> {
    let mut r = Rows::default();
    let period = format!("{}..{}", stats.period.0, stats.period.1);
    for p in &stats.portfolios {
        let (inv, pf) = (p.investor.as_str(), p.portfolio.as_str());
        r.extremes(inv, pf, 1, "all".into(), &p.overall);
        for (y, e) in &p.yearly {
            r.extremes(inv, pf, 2, y.to_string(), e);
        }
        r.push(
            (inv, pf, 3),
            "all".into(),
            "mean",
            (Some(p.evaluation.mean), None),
            None,
        );
        r.push(
            (inv, pf, 3),
            "all".into(),
            "std",
            (p.evaluation.std, None),
            None,
        );
        if let Some(s) = &p.period {
            r.push(
                (inv, pf, 4),
                period.clone(),
                "mean",
                (Some(s.mean), None),
                None,
            );
            r.push((inv, pf, 4), period.clone(), "std", (s.std, None), None);
        }
        for ((y, m), v) in &p.monthly {
            r.push(
                (inv, pf, 5),
                format!("{y}-{m:02}"),
                "mean",
                (Some(*v), None),
                None,
            );
        }
    }
    Ok(DataFrame::new_infer_height(vec![
        Column::new("investor".into(), r.investor),
        Column::new("portfolio".into(), r.portfolio),
        Column::new("item".into(), r.item),
        Column::new("scope".into(), r.scope),
        Column::new("metric".into(), r.metric),
        Column::new("value".into(), r.value),
        Column::new("exact".into(), r.exact),
        Column::new("day".into(), r.day),
    ])?)
}

fn create(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

pub fn write_csv(df: &mut DataFrame, path: &Path) -> Result<()> {
    let mut f = create(path)?;
    CsvWriter::new(&mut f).finish(df)?;
    Ok(())
}

pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    let f = create(path)?;
    ParquetWriter::new(f).finish(df)?;
    Ok(())
}

/// One portfolio's history as a table (the console's download): investor, portfolio, as_of
/// (Date), value, change and change_pct as their exact decimal text, and value_f64 for tools
/// that want a number.
pub fn history(rows: &[crate::load::EvalRow]) -> Result<DataFrame> {
    let text = |f: &dyn Fn(&crate::load::EvalRow) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(f).collect()
    };
    Ok(DataFrame::new_infer_height(vec![
        Column::new(
            "investor".into(),
            rows.iter().map(|r| r.investor.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "portfolio".into(),
            rows.iter()
                .map(|r| r.portfolio.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "as_of".into(),
            rows.iter()
                .map(|r| crate::load::epoch_days(r.day))
                .collect::<Vec<_>>(),
        )
        .cast(&DataType::Date)?,
        Column::new("value".into(), text(&|r| Some(r.value.to_string()))),
        Column::new("change".into(), text(&|r| r.change.map(|c| c.to_string()))),
        Column::new(
            "change_pct".into(),
            text(&|r| r.change_pct.map(|c| c.to_string())),
        ),
        Column::new(
            "value_f64".into(),
            rows.iter()
                .map(|r| crate::load::approx(r.value))
                .collect::<Vec<_>>(),
        ),
    ])?)
}

/// `df` as CSV bytes.
pub fn csv_bytes(df: &mut DataFrame) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    CsvWriter::new(&mut out).finish(df)?;
    Ok(out)
}

/// `df` as Parquet bytes.
pub fn parquet_bytes(df: &mut DataFrame) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ParquetWriter::new(&mut out).finish(df)?;
    Ok(out)
}
