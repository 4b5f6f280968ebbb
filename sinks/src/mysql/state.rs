//! The job's stored state: loading it at start, and what `stockflow status` reads.

use crate::{Error, Result};
use chrono::NaiveDate;
use mysql::prelude::Queryable;
use mysql::Conn;
use std::collections::{BTreeMap, BTreeSet};
use stockflow_core::{
    HoldingInput, Last, Money, PriceInput, RecordMark, Restore, Seed, StoredState,
};
use stockflow_market::Universe;

fn date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| Error::State(format!("stored date {s:?} unreadable: {e}")))
}

fn money(s: &str) -> Result<Money> {
    Money::parse(s).map_err(|e| Error::State(format!("stored amount {s:?} unreadable: {e}")))
}

/// A job's stored offsets: per (topic, partition) the next offset, and what the job knows of
/// the records below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offsets {
    pub next: BTreeMap<(String, i32), i64>,
    pub marks: BTreeMap<(String, i32), Last>,
}

/// The next offsets a job has committed, per (topic, partition), with the marks.
pub fn offsets<Q: Queryable>(conn: &mut Q, job: &str) -> Result<Offsets> {
    type Row = (String, i32, i64, Option<i64>, Option<i64>, Option<u64>);
    let rows: Vec<Row> = conn.exec(
        "SELECT topic, kafka_partition, next_offset, last_offset, last_timestamp_ms, last_hash \
         FROM stream_progress WHERE job = ?",
        (job,),
    )?;
    let mut out = Offsets::default();
    for (topic, partition, next, last_offset, timestamp_ms, hash) in rows {
        let key = (topic, partition);
        let last = match (last_offset, hash) {
            (Some(-1), _) => Last::Nothing,
            (Some(offset), Some(hash)) => Last::Record(RecordMark {
                offset,
                timestamp_ms,
                hash,
            }),
            _ => Last::Unknown,
        };
        if last != Last::Unknown {
            out.marks.insert(key.clone(), last);
        }
        out.next.insert(key, next);
    }
    Ok(out)
}

/// Loads the job's stored state (all of it, or a window as `restore` asks), in one consistent
/// snapshot. Refuses a database whose state names stocks or portfolios this market does not
/// have (another `--market`), and one written by a stockflow that did not store its state.
pub fn load(
    conn: &mut Conn,
    universe: &Universe,
    job: &str,
    restore: Restore,
) -> Result<StoredState> {
    let opts = mysql::TxOpts::default()
        .set_with_consistent_snapshot(true)
        .set_access_mode(Some(mysql::AccessMode::ReadOnly));
    let mut tx = conn.start_transaction(opts)?;
    let state = load_in(&mut tx, universe, job, restore)?;
    tx.commit()?;
    Ok(state)
}

fn load_in(
    conn: &mut mysql::Transaction<'_>,
    universe: &Universe,
    job: &str,
    restore: Restore,
) -> Result<StoredState> {
    let Offsets {
        next: offsets,
        marks,
    } = offsets(conn, job)?;
    let span: Option<(Option<String>, Option<String>)> =
        conn.query_first("SELECT CAST(MIN(as_of) AS CHAR), CAST(MAX(as_of) AS CHAR) FROM prices")?;
    let window = match span {
        Some((Some(first), Some(last))) => restore.window(date(&first)?, date(&last)?),
        _ => None,
    };
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    let mut prices = Vec::new();
    let since = window.map_or_else(|| "0001-01-01".to_string(), |w| w.to_string());
    let rows = conn.exec_iter(
        "SELECT ticker, CAST(as_of AS CHAR), CAST(price AS CHAR), version_ts, \
         version_partition, version_offset FROM prices WHERE as_of >= ?",
        (&since,),
    )?;
    for row in rows {
        let (ticker, as_of, price, ts, part, off): (String, String, String, i64, i32, i64) =
            mysql::from_row_opt(row?)
                .map_err(|e| Error::State(format!("a stored price is unreadable: {e}")))?;
        match universe.stock_id(&ticker) {
            Some(stock) => prices.push(PriceInput {
                stock,
                date: date(&as_of)?,
                price: money(&price)?,
                version: (ts, part, off),
            }),
            None => {
                unknown.insert(ticker);
            }
        }
    }
    let mut seeds = Vec::new();
    if let Some(w) = window {
        // Each portfolio's last evaluation before the window (the primary key serves it).
        let rows: Vec<(String, String, String)> = conn.exec(
            "SELECT e.portfolio, CAST(e.as_of AS CHAR), CAST(e.nav AS CHAR) FROM evaluations e \
             JOIN (SELECT portfolio, MAX(as_of) AS last_day FROM evaluations WHERE as_of < ? \
             GROUP BY portfolio) m ON m.portfolio = e.portfolio AND m.last_day = e.as_of",
            (w.to_string(),),
        )?;
        for (portfolio, day, value) in rows {
            match universe.portfolio_id(&portfolio) {
                Some(p) => seeds.push(Seed {
                    portfolio: p,
                    date: date(&day)?,
                    value: money(&value)?,
                }),
                None => {
                    unknown.insert(portfolio);
                }
            }
        }
    }
    let mut holdings = Vec::new();
    let rows = conn.query_iter(
        "SELECT portfolio, ticker, CAST(from_day AS CHAR), quantity, version_ts, \
         version_partition, version_offset FROM holding_records",
    )?;
    for row in rows {
        let (portfolio, ticker, from, quantity, ts, part, off): (
            String,
            String,
            String,
            i64,
            i64,
            i32,
            i64,
        ) = mysql::from_row_opt(row?)
            .map_err(|e| Error::State(format!("a stored holding is unreadable: {e}")))?;
        match (
            universe.portfolio_id(&portfolio),
            universe.stock_id(&ticker),
        ) {
            (Some(p), Some(s)) => holdings.push(HoldingInput {
                portfolio: p,
                stock: s,
                from: date(&from)?,
                quantity,
                version: (ts, part, off),
            }),
            _ => {
                unknown.insert(format!("{portfolio}/{ticker}"));
            }
        }
    }
    if !unknown.is_empty() {
        let some: Vec<&String> = unknown.iter().take(5).collect();
        return Err(Error::State(format!(
            "the database holds the state of another market: {} stored names are not in this \
             one (e.g. {some:?}). Run with the --market the database was built with, or use \
             another database",
            unknown.len()
        )));
    }
    if !offsets.is_empty() && prices.is_empty() && holdings.is_empty() {
        let evaluations: Option<i64> = conn.query_first("SELECT COUNT(*) FROM evaluations")?;
        if evaluations.unwrap_or(0) > 0 {
            return Err(Error::State(
                "this database was written by an older stockflow that did not store the job's \
                 state: run `stockflow run --from earliest` once to store it (the log must still \
                 hold every record)"
                    .into(),
            ));
        }
    }
    Ok(StoredState {
        prices,
        holdings,
        offsets,
        marks,
        window,
        seeds,
    })
}

/// A portfolio-day without an evaluation, as `status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRow {
    pub portfolio: String,
    pub date: String,
    pub kind: String,
    pub held: i64,
    pub priced: i64,
    pub detail: Option<String>,
    /// For incomplete days: the held stocks without a close that day.
    pub missing: Vec<String>,
}

/// What the database says about a job.
#[derive(Debug, Clone, Default)]
pub struct DbStatus {
    /// (topic, partition, next offset)
    pub offsets: Vec<(String, i32, i64)>,
    /// (investor, portfolio, last evaluated day, its value, evaluated days)
    pub portfolios: Vec<(String, String, String, String, i64)>,
    pub evaluations: i64,
    pub dead_letters: i64,
    pub prices: i64,
    pub holding_records: i64,
    pub lease: Option<super::lease::LeaseRow>,
    /// Issues by kind.
    pub issue_counts: Vec<(String, i64)>,
    /// The latest issues (at most `limit`).
    pub issues: Vec<IssueRow>,
}

/// The stocks a portfolio holds on `day`, from its holding records (ticker, from, quantity):
/// for each ticker the latest record on or before the day, if its quantity is not zero.
pub fn held_on(records: &[(String, NaiveDate, i64)], day: NaiveDate) -> BTreeSet<String> {
    let mut latest: BTreeMap<&str, (NaiveDate, i64)> = BTreeMap::new();
    for (t, from, q) in records {
        if *from <= day {
            let e = latest.entry(t.as_str()).or_insert((*from, *q));
            if *from >= e.0 {
                *e = (*from, *q);
            }
        }
    }
    latest
        .into_iter()
        .filter(|(_, (_, q))| *q != 0)
        .map(|(t, _)| t.to_string())
        .collect()
}

/// The stocks `portfolio` holds on `day` (YYYY-MM-DD) that have no close that day: why an
/// incomplete portfolio-day has no evaluation. Reads the portfolio's holding records up to the
/// day and the day's closes of the held stocks (primary-key ranges and points).
pub fn missing_stocks<Q: Queryable>(
    conn: &mut Q,
    portfolio: &str,
    day: &str,
) -> Result<Vec<String>> {
    let records: Vec<(String, String, i64)> = conn.exec(
        "SELECT ticker, CAST(from_day AS CHAR), quantity FROM holding_records \
         WHERE portfolio = ? AND from_day <= ?",
        (portfolio, day),
    )?;
    let records: Vec<(String, NaiveDate, i64)> = records
        .into_iter()
        .filter_map(|(t, f, q)| date(&f).ok().map(|f| (t, f, q)))
        .collect();
    let mut missing = Vec::new();
    for ticker in held_on(&records, date(day)?) {
        let priced: Option<i64> = conn.exec_first(
            "SELECT 1 FROM prices WHERE ticker = ? AND as_of = ?",
            (&ticker, day),
        )?;
        if priced.is_none() {
            missing.push(ticker);
        }
    }
    Ok(missing)
}

pub fn status(cfg: &super::MySqlConfig, job: &str, limit: usize) -> Result<DbStatus> {
    let mut conn = cfg.connect()?;
    let offsets = conn.exec(
        "SELECT topic, kafka_partition, next_offset FROM stream_progress WHERE job = ? ORDER BY topic, kafka_partition",
        (job,),
    )?;
    let portfolios = conn.query(
        "SELECT e.investor, e.portfolio, CAST(e.as_of AS CHAR), CAST(e.nav AS CHAR), s.days \
         FROM evaluations e JOIN (SELECT portfolio, MAX(as_of) AS last_day, COUNT(*) AS days \
         FROM evaluations GROUP BY portfolio) s ON s.portfolio = e.portfolio AND s.last_day = e.as_of \
         ORDER BY e.investor, e.portfolio",
    )?;
    let count = |conn: &mut Conn, table: &str| -> Result<i64> {
        Ok(conn
            .query_first::<i64, _>(format!("SELECT COUNT(*) FROM {table}"))?
            .unwrap_or(0))
    };
    let evaluations = count(&mut conn, "evaluations")?;
    let dead_letters = count(&mut conn, "dead_letters")?;
    let prices = count(&mut conn, "prices")?;
    let holding_records = count(&mut conn, "holding_records")?;
    let lease = super::lease::read(&mut conn, job)?;
    let issue_counts =
        conn.query("SELECT kind, COUNT(*) FROM evaluation_issues GROUP BY kind ORDER BY kind")?;
    let rows: Vec<(String, String, String, i64, i64, Option<String>)> = conn.exec(
        "SELECT portfolio, CAST(as_of AS CHAR), kind, held, priced, detail FROM evaluation_issues \
         ORDER BY as_of DESC, portfolio, kind LIMIT ?",
        (limit as u64,),
    )?;
    let mut issues = Vec::with_capacity(rows.len());
    for (portfolio, day, kind, held, priced, detail) in rows {
        let missing = if kind == "incomplete" {
            missing_stocks(&mut conn, &portfolio, &day)?
        } else {
            Vec::new()
        };
        issues.push(IssueRow {
            portfolio,
            date: day,
            kind,
            held,
            priced,
            detail,
            missing,
        });
    }
    Ok(DbStatus {
        offsets,
        portfolios,
        evaluations,
        dead_letters,
        prices,
        holding_records,
        lease,
        issue_counts,
        issues,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_stocks_follow_the_latest_record() {
        let d = |m: u32, day: u32| NaiveDate::from_ymd_opt(2001, m, day).unwrap_or_default();
        let recs = vec![
            ("IBM".to_string(), d(1, 2), 10),
            ("IBM".to_string(), d(2, 1), 0),
            ("VZ".to_string(), d(1, 2), 5),
            ("HPQ".to_string(), d(3, 1), 7),
        ];
        let names = |s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>();
        assert_eq!(names(held_on(&recs, d(1, 15))), ["IBM", "VZ"]);
        assert_eq!(names(held_on(&recs, d(2, 15))), ["VZ"]);
        assert_eq!(names(held_on(&recs, d(3, 1))), ["HPQ", "VZ"]);
    }
}
