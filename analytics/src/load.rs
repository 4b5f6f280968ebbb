//! InvestorsDB → Polars, one query per table.

use crate::{Error, Result};
use chrono::{Datelike, NaiveDate};
use mysql::prelude::Queryable;
use polars::prelude::*;

/// The reference data the report needs.
#[derive(Debug, Clone)]
pub struct Reference {
    /// (id, name, city)
    pub investors: Vec<(String, String, String)>,
    /// (investor, portfolio)
    pub links: Vec<(String, String)>,
}

/// Days since 1970-01-01, Polars' physical representation of a Date.
pub fn epoch_days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163
}

pub fn from_epoch_days(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(days + 719_163).unwrap_or_default()
}

/// Reads the reference tables and every evaluation (of `investor`, or all) into a DataFrame
/// with columns investor, portfolio, as_of (Date), nav, change, change_pct (f64; NULL change on
/// a first day).
pub fn load(url: &str, investor: Option<&str>) -> Result<(Reference, DataFrame)> {
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
    let sql = "SELECT investor, portfolio, CAST(as_of AS CHAR), CAST(nav AS DOUBLE), \
               CAST(nav_change AS DOUBLE), CAST(nav_change_pct AS DOUBLE) FROM evaluations";
    type Row = (String, String, String, f64, Option<f64>, Option<f64>);
    let rows: Vec<Row> = match investor {
        Some(inv) => conn.exec(
            format!("{sql} WHERE investor = ? ORDER BY portfolio, as_of"),
            (inv,),
        )?,
        None => conn.query(format!("{sql} ORDER BY portfolio, as_of"))?,
    };
    let n = rows.len();
    let (mut inv, mut pf, mut day, mut nav, mut ch, mut pct) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (i, p, d, v, c, cp) in rows {
        inv.push(i);
        pf.push(p);
        day.push(epoch_days(
            NaiveDate::parse_from_str(&d, "%Y-%m-%d").unwrap_or_default(),
        ));
        nav.push(v);
        ch.push(c);
        pct.push(cp);
    }
    let df = DataFrame::new_infer_height(vec![
        Column::new("investor".into(), inv),
        Column::new("portfolio".into(), pf),
        Column::new("as_of".into(), day).cast(&DataType::Date)?,
        Column::new("nav".into(), nav),
        Column::new("change".into(), ch),
        Column::new("change_pct".into(), pct),
    ])?;
    Ok((Reference { investors, links }, df))
}
