//! InvestorsDB → memory, one query per table: every evaluation with its exact amounts, and a
//! Polars frame of it for the aggregates.

use crate::{Error, Result};
use chrono::{Datelike, NaiveDate};
use mysql::prelude::Queryable;
use polars::prelude::*;
use stockflow_core::{Money, Percent};

/// The reference data the report needs.
#[derive(Debug, Clone)]
pub struct Reference {
    /// (id, name, city)
    pub investors: Vec<(String, String, String)>,
    /// (investor, portfolio)
    pub links: Vec<(String, String)>,
}

/// One evaluated portfolio-day, exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalRow {
    pub investor: String,
    pub portfolio: String,
    pub day: NaiveDate,
    pub value: Money,
    pub change: Option<Money>,
    pub change_pct: Option<Percent>,
}

/// Every evaluation read, sorted by portfolio and day.
#[derive(Debug, Clone, Default)]
pub struct Evaluations {
    pub rows: Vec<EvalRow>,
}

/// Days since 1970-01-01, Polars' physical representation of a Date.
pub fn epoch_days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163
}

pub fn from_epoch_days(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(days + 719_163).unwrap_or_default()
}

/// A money amount as f64, for means, deviations and charts (never for the money figures).
pub fn approx(m: Money) -> f64 {
    m.units() as f64 / stockflow_core::money::UNIT as f64
}

impl Evaluations {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A frame with columns investor, portfolio, as_of (Date), year, month (i32) and value
    /// (f64): what the means, deviations and monthly averages are computed from.
    pub fn frame(&self) -> Result<DataFrame> {
        let r = &self.rows;
        Ok(DataFrame::new_infer_height(vec![
            Column::new(
                "investor".into(),
                r.iter().map(|e| e.investor.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "portfolio".into(),
                r.iter().map(|e| e.portfolio.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "as_of".into(),
                r.iter().map(|e| epoch_days(e.day)).collect::<Vec<_>>(),
            )
            .cast(&DataType::Date)?,
            Column::new(
                "year".into(),
                r.iter().map(|e| e.day.year()).collect::<Vec<_>>(),
            ),
            Column::new(
                "month".into(),
                r.iter().map(|e| e.day.month() as i32).collect::<Vec<_>>(),
            ),
            Column::new(
                "value".into(),
                r.iter().map(|e| approx(e.value)).collect::<Vec<_>>(),
            ),
        ])?)
    }
}

fn exact(s: &str, what: &str) -> Result<Money> {
    Money::parse(s).map_err(|e| Error::Corrupt(format!("{what} {s:?}: {e}")))
}

/// Reads the reference tables and every evaluation (of `investor`, or all).
pub fn load(url: &str, investor: Option<&str>) -> Result<(Reference, Evaluations)> {
    let opts = mysql::Opts::from_url(url).map_err(|e| Error::Url(e.to_string()))?;
    let mut conn = mysql::Conn::new(opts)?;
    let investors: Vec<(String, String, String)> =
        conn.query("SELECT Id, Name, City FROM Investors ORDER BY Id")?;
    let links: Vec<(String, String)> =
        conn.query("SELECT iid, pid FROM Investors_Portfolios ORDER BY iid, pid")?;
    if let Some(inv) = investor {
        if !investors.iter().any(|(id, _, _)| id == inv) {
            let known: Vec<&str> = investors.iter().map(|(id, _, _)| id.as_str()).collect();
            return Err(Error::UnknownInvestor(inv.to_string(), known.join(", ")));
        }
    }
    // DECIMAL as text: exact, parsed into fixed-point money.
    let sql = "SELECT investor, portfolio, CAST(as_of AS CHAR), CAST(nav AS CHAR), \
               CAST(nav_change AS CHAR), CAST(nav_change_pct AS CHAR) FROM evaluations";
    type Row = (
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    );
    let raw: Vec<Row> = match investor {
        // By the investor's portfolios: the primary key (portfolio, as_of) serves it.
        Some(inv) => conn.exec(
            format!(
                "{sql} WHERE portfolio IN (SELECT pid FROM Investors_Portfolios WHERE iid = ?) \
                 AND investor = ? ORDER BY portfolio, as_of"
            ),
            (inv, inv),
        )?,
        None => conn.query(format!("{sql} ORDER BY portfolio, as_of"))?,
    };
    let mut rows = Vec::with_capacity(raw.len());
    for (investor, portfolio, d, v, c, p) in raw {
        rows.push(EvalRow {
            day: NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                .map_err(|e| Error::Corrupt(format!("date {d:?}: {e}")))?,
            value: exact(&v, "value")?,
            change: c.as_deref().map(|c| exact(c, "change")).transpose()?,
            change_pct: p.as_deref().map(|p| exact(p, "change %")).transpose()?,
            investor,
            portfolio,
        });
    }
    Ok((Reference { investors, links }, Evaluations { rows }))
}
