//! What the console reads from InvestorsDB: every read is bounded (LIMIT, or one portfolio's
//! history) and goes through a primary key or an index; nothing scans a table per event.
//! Decimals are read as text and stay exact until they are shown.

use crate::view::{figure, like_pattern, preview, visible};
use crate::{Error, Result};
use mysql::prelude::Queryable;
use mysql::PooledConn;

use serde::Serialize;

/// One row of the portfolio list.
#[derive(Debug, Clone, Serialize)]
pub struct PortfolioRow {
    pub investor: String,
    pub investor_name: String,
    pub portfolio: String,
    pub name: String,
    pub latest: Option<Latest>,
    /// SVG of the latest values (oldest first).
    pub sparkline: Option<String>,
}

/// A portfolio's latest evaluation: exact text, and as shown.
#[derive(Debug, Clone, Serialize)]
pub struct Latest {
    pub day: String,
    pub value: String,
    pub change: Option<String>,
    pub change_pct: Option<String>,
    pub value_shown: String,
    pub change_shown: Option<String>,
    pub change_pct_shown: Option<String>,
}

impl Latest {
    fn new(day: String, value: String, change: Option<String>, change_pct: Option<String>) -> Self {
        Latest {
            value_shown: figure(Some(&value)).unwrap_or_default(),
            change_shown: figure(change.as_deref()),
            change_pct_shown: figure(change_pct.as_deref()),
            day,
            value,
            change,
            change_pct,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub total: u64,
    pub page: u64,
    pub size: u64,
    pub rows: Vec<T>,
}

/// Sparkline length (trading days).
pub const SPARK_DAYS: usize = 60;

/// The `page` (0-based) of portfolios matching `q` (id, name, investor id or name), by id.
pub fn portfolios(
    conn: &mut PooledConn,
    q: &str,
    page: u64,
    size: u64,
) -> Result<Page<PortfolioRow>> {
    let pattern = like_pattern(q.trim());
    let filter = "FROM Portfolios p JOIN Investors_Portfolios ip ON ip.pid = p.Id \
                  JOIN Investors i ON i.Id = ip.iid \
                  WHERE (p.Id LIKE ? OR p.Name LIKE ? OR i.Id LIKE ? OR i.Name LIKE ?)";
    let params = vec![pattern.clone(), pattern.clone(), pattern.clone(), pattern];
    let total: Option<u64> =
        conn.exec_first(format!("SELECT COUNT(*) {filter}"), params.clone())?;
    let offset = page.saturating_mul(size);
    let rows: Vec<(String, String, String, String)> = conn.exec(
        format!("SELECT ip.iid, i.Name, p.Id, p.Name {filter} ORDER BY p.Id LIMIT {size} OFFSET {offset}"),
        params,
    )?;
    let ids: Vec<String> = rows.iter().map(|r| r.2.clone()).collect();
    let latest = latest_of(conn, &ids)?;
    let sparks = recent_values(conn, &ids, SPARK_DAYS)?;
    let rows = rows
        .into_iter()
        .map(|(investor, investor_name, portfolio, name)| {
            let sparkline = sparks
                .get(&portfolio)
                .and_then(|v| crate::charts::sparkline(v, (120, 28)).ok());
            PortfolioRow {
                latest: latest.get(&portfolio).cloned(),
                investor,
                investor_name,
                portfolio,
                name,
                sparkline,
            }
        })
        .collect();
    Ok(Page {
        total: total.unwrap_or(0),
        page,
        size,
        rows,
    })
}

/// `(SELECT … WHERE portfolio = ? ORDER BY as_of DESC LIMIT n) UNION ALL …`: one backward
/// range of the primary key per portfolio, in one round trip.
fn per_portfolio(select: &str, n: usize, ids: &[String]) -> String {
    ids.iter()
        .map(|_| {
            format!("({select} FROM evaluations WHERE portfolio = ? ORDER BY as_of DESC LIMIT {n})")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

type EvalText = (String, String, String, Option<String>, Option<String>);

/// The latest evaluation of each of `ids`.
pub fn latest_of<Q: Queryable>(
    conn: &mut Q,
    ids: &[String],
) -> Result<std::collections::HashMap<String, Latest>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let sql = per_portfolio(
        "SELECT portfolio, CAST(as_of AS CHAR), CAST(nav AS CHAR), CAST(nav_change AS CHAR), \
         CAST(nav_change_pct AS CHAR)",
        1,
        ids,
    );
    let rows: Vec<EvalText> = conn.exec(sql, ids.to_vec())?;
    Ok(rows
        .into_iter()
        .map(|(p, d, v, c, pct)| (p, Latest::new(d, v, c, pct)))
        .collect())
}

/// The latest `n` values of each of `ids`, oldest first (approximate: for sparklines).
pub fn recent_values(
    conn: &mut PooledConn,
    ids: &[String],
    n: usize,
) -> Result<std::collections::HashMap<String, Vec<f64>>> {
    let mut out: std::collections::HashMap<String, Vec<f64>> = Default::default();
    if ids.is_empty() {
        return Ok(out);
    }
    let sql = per_portfolio(
        "SELECT portfolio, CAST(as_of AS CHAR), CAST(nav AS DOUBLE)",
        n,
        ids,
    );
    let rows: Vec<(String, String, f64)> = conn.exec(sql, ids.to_vec())?;
    for (p, _, v) in rows {
        out.entry(p).or_default().push(v);
    }
    for v in out.values_mut() {
        v.reverse();
    }
    Ok(out)
}

/// A portfolio's reference data: (investor, investor name, city, portfolio name).
pub fn portfolio_info(conn: &mut PooledConn, id: &str) -> Result<(String, String, String, String)> {
    conn.exec_first(
        "SELECT ip.iid, i.Name, i.City, p.Name FROM Portfolios p \
         JOIN Investors_Portfolios ip ON ip.pid = p.Id JOIN Investors i ON i.Id = ip.iid \
         WHERE p.Id = ?",
        (id,),
    )?
    .ok_or_else(|| Error::NotFound(format!("no portfolio {id:?} in InvestorsDB")))
}

/// A portfolio's whole history, exact, by day (one range of the primary key).
pub fn history(
    conn: &mut PooledConn,
    investor: &str,
    id: &str,
) -> Result<Vec<stockflow_analytics::load::EvalRow>> {
    let rows: Vec<(String, String, Option<String>, Option<String>)> = conn.exec(
        "SELECT CAST(as_of AS CHAR), CAST(nav AS CHAR), CAST(nav_change AS CHAR), \
         CAST(nav_change_pct AS CHAR) FROM evaluations WHERE portfolio = ? ORDER BY as_of",
        (id,),
    )?;
    let money = |s: &str| {
        stockflow_core::Money::parse(s)
            .map_err(|e| Error::Internal(format!("a stored figure {s:?} is unreadable: {e}")))
    };
    rows.into_iter()
        .map(|(d, v, c, pct)| {
            Ok(stockflow_analytics::load::EvalRow {
                investor: investor.to_string(),
                portfolio: id.to_string(),
                day: d
                    .parse()
                    .map_err(|e| Error::Internal(format!("a stored day {d:?}: {e}")))?,
                value: money(&v)?,
                change: c.as_deref().map(money).transpose()?,
                change_pct: pct
                    .as_deref()
                    .map(|p| {
                        stockflow_core::Percent::parse(p).map_err(|e| {
                            Error::Internal(format!("a stored figure {p:?} is unreadable: {e}"))
                        })
                    })
                    .transpose()?,
            })
        })
        .collect()
}

/// One evaluation diff of the change stream.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub commit: i64,
    pub n: i64,
    pub investor: String,
    pub portfolio: String,
    pub day: String,
    /// +1 inserted, −1 retracted.
    pub diff: i8,
    /// The day had an evaluation before this commit: history restated.
    pub restated: bool,
    pub value: String,
    pub change: Option<String>,
    pub change_pct: Option<String>,
}

/// The latest `limit` diffs of the commits after `after` up to `upto`: the newest commits
/// first, and within a commit its latest days first (the order it kept them in).
pub fn changes<Q: Queryable>(
    conn: &mut Q,
    job: &str,
    (after, upto): (i64, i64),
    limit: u64,
) -> Result<Vec<Change>> {
    let rows: Vec<mysql::Row> = conn.exec(
        format!(
            "SELECT commit_seq, n, investor, portfolio, CAST(as_of AS CHAR), diff, restated, \
             CAST(nav AS CHAR), CAST(nav_change AS CHAR), CAST(nav_change_pct AS CHAR) \
             FROM evaluation_changes WHERE job = ? AND commit_seq > ? AND commit_seq <= ? \
             ORDER BY commit_seq DESC, n LIMIT {limit}"
        ),
        (job, after, upto),
    )?;
    let out: Vec<Change> = rows
        .into_iter()
        .map(|mut r| Change {
            commit: r.take(0).unwrap_or_default(),
            n: r.take(1).unwrap_or_default(),
            investor: r.take(2).unwrap_or_default(),
            portfolio: r.take(3).unwrap_or_default(),
            day: r.take(4).unwrap_or_default(),
            diff: r.take(5).unwrap_or_default(),
            restated: r.take::<i8, _>(6).unwrap_or_default() != 0,
            value: figure(r.take::<String, _>(7).as_deref()).unwrap_or_default(),
            change: figure(r.take::<Option<String>, _>(8).flatten().as_deref()),
            change_pct: figure(r.take::<Option<String>, _>(9).flatten().as_deref()),
        })
        .collect();
    Ok(out)
}

/// One committed transaction of the job.
#[derive(Debug, Clone, Serialize)]
pub struct CommitRow {
    pub commit: i64,
    pub epoch: i64,
    pub at_ms: i64,
    pub inserted: i64,
    pub retracted: i64,
    pub restated: i64,
    pub kept: i64,
    pub issues: i64,
    pub state_rows: i64,
    pub dead_letters: i64,
    pub first_day: Option<String>,
    pub last_day: Option<String>,
    pub freshness_ms: Option<i64>,
    pub duration_ms: i64,
}

/// The latest `limit` commits after `after` up to `upto`, oldest first.
pub fn commits<Q: Queryable>(
    conn: &mut Q,
    job: &str,
    (after, upto): (i64, i64),
    limit: u64,
) -> Result<Vec<CommitRow>> {
    let rows: Vec<mysql::Row> = conn.exec(
        format!(
            "SELECT commit_seq, epoch, CAST(UNIX_TIMESTAMP(committed_at) * 1000 AS SIGNED), \
             inserted, retracted, restated, kept, issues, state_rows, dead_letters, \
             CAST(first_day AS CHAR), CAST(last_day AS CHAR), freshness_ms, duration_ms \
             FROM job_commits WHERE job = ? AND commit_seq > ? AND commit_seq <= ? \
             ORDER BY commit_seq DESC LIMIT {limit}"
        ),
        (job, after, upto),
    )?;
    let mut out: Vec<CommitRow> = rows
        .into_iter()
        .map(|mut r| CommitRow {
            commit: r.take(0).unwrap_or_default(),
            epoch: r.take(1).unwrap_or_default(),
            at_ms: r.take(2).unwrap_or_default(),
            inserted: r.take(3).unwrap_or_default(),
            retracted: r.take(4).unwrap_or_default(),
            restated: r.take(5).unwrap_or_default(),
            kept: r.take(6).unwrap_or_default(),
            issues: r.take(7).unwrap_or_default(),
            state_rows: r.take(8).unwrap_or_default(),
            dead_letters: r.take(9).unwrap_or_default(),
            first_day: r.take::<Option<String>, _>(10).flatten(),
            last_day: r.take::<Option<String>, _>(11).flatten(),
            freshness_ms: r.take::<Option<i64>, _>(12).flatten(),
            duration_ms: r.take(13).unwrap_or_default(),
        })
        .collect();
    out.reverse();
    Ok(out)
}

/// The job's last commit number (0 before any).
pub fn last_commit<Q: Queryable>(conn: &mut Q, job: &str) -> Result<i64> {
    let v: Option<Option<i64>> = conn.exec_first(
        "SELECT MAX(commit_seq) FROM job_commits WHERE job = ?",
        (job,),
    )?;
    Ok(v.flatten().unwrap_or(0))
}

/// (commit time ms, freshness ms) of the latest `limit` commits with a freshness.
pub fn freshness(conn: &mut PooledConn, job: &str, limit: u64) -> Result<Vec<(i64, i64)>> {
    Ok(conn.exec(
        format!(
            "SELECT CAST(UNIX_TIMESTAMP(committed_at) * 1000 AS SIGNED), freshness_ms FROM job_commits \
             WHERE job = ? AND freshness_ms IS NOT NULL ORDER BY commit_seq DESC LIMIT {limit}"
        ),
        (job,),
    )?)
}

/// The lease of the job, as `stockflow status` reads it.
#[derive(Debug, Clone, Serialize)]
pub struct Lease {
    pub epoch: i64,
    pub host: String,
    pub pid: u32,
    pub run_id: String,
    pub started_at: String,
    /// Released by its last run (no run holds it).
    pub released: bool,
    /// A live run holds it (fresh heartbeat; on this host, its process exists).
    pub live: bool,
    pub heartbeat_age_s: f64,
    pub commit_seq: i64,
    /// `status`'s words for it.
    pub describe: String,
}

pub fn lease(conn: &mut PooledConn, job: &str) -> Result<Option<Lease>> {
    use stockflow_sinks::mysql::lease;
    let me = lease::Holder::this_process();
    Ok(lease::read(conn, job).map_err(sink)?.map(|l| Lease {
        live: lease::is_live(&l, &me),
        released: l.released(),
        describe: l.describe(),
        epoch: l.epoch,
        host: l.holder.host,
        pid: l.holder.pid,
        run_id: l.holder.run_id,
        started_at: l.started_at,
        heartbeat_age_s: l.heartbeat_age.as_secs_f64(),
        commit_seq: l.commit_seq,
    }))
}

fn sink(e: stockflow_sinks::Error) -> Error {
    match e {
        stockflow_sinks::Error::MySql(e) => Error::from(e),
        other => Error::Internal(other.to_string()),
    }
}

/// The committed next offset of each (topic, partition) of the job.
pub fn progress(conn: &mut PooledConn, job: &str) -> Result<Vec<(String, i32, i64)>> {
    Ok(conn.exec(
        "SELECT topic, kafka_partition, next_offset FROM stream_progress WHERE job = ? \
         ORDER BY topic, kafka_partition",
        (job,),
    )?)
}

/// A dead letter, its payload previewed as text.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub code: String,
    pub reason: String,
    pub preview: String,
    pub preview_truncated: bool,
    pub payload_len: i64,
    pub received_at: String,
}

/// Bytes of a payload read for its preview.
const PREVIEW_BYTES: usize = 1024;

/// Dead letters before id `before` (newest first), `size` of them; the total count.
pub fn dead_letters(
    conn: &mut PooledConn,
    before: Option<i64>,
    size: u64,
) -> Result<(u64, Vec<DeadLetter>)> {
    let total: Option<u64> = conn.query_first("SELECT COUNT(*) FROM dead_letters")?;
    let rows: Vec<mysql::Row> = conn.exec(
        format!(
            "SELECT id, topic, kafka_partition, kafka_offset, code, reason, \
             LEFT(payload, {PREVIEW_BYTES}), GREATEST(payload_len, LENGTH(payload)), \
             CAST(received_at AS CHAR) FROM dead_letters WHERE id < ? ORDER BY id DESC LIMIT {size}"
        ),
        (before.unwrap_or(i64::MAX),),
    )?;
    let letters = rows
        .into_iter()
        .map(|mut r| {
            let payload: Vec<u8> = r.take(6).unwrap_or_default();
            let (preview, truncated) = preview(&payload, 200);
            let payload_len: i64 = r.take(7).unwrap_or_default();
            DeadLetter {
                id: r.take(0).unwrap_or_default(),
                topic: r.take(1).unwrap_or_default(),
                partition: r.take(2).unwrap_or_default(),
                offset: r.take(3).unwrap_or_default(),
                code: r.take(4).unwrap_or_default(),
                reason: visible(&r.take::<String, _>(5).unwrap_or_default()),
                preview_truncated: truncated || payload_len > payload.len() as i64,
                preview,
                payload_len,
                received_at: r.take(8).unwrap_or_default(),
            }
        })
        .collect();
    Ok((total.unwrap_or(0), letters))
}

/// A portfolio-day a held stock has no close for, and which stocks.
#[derive(Debug, Clone, Serialize)]
pub struct Incomplete {
    pub portfolio: String,
    pub day: String,
    pub held: i64,
    pub priced: i64,
    pub missing: Vec<String>,
}

/// The latest `limit` incomplete portfolio-days (the index on kind and day), with the held
/// stocks that have no close that day (the holding records and prices of that portfolio-day).
pub fn incomplete(conn: &mut PooledConn, limit: u64) -> Result<(u64, Vec<Incomplete>)> {
    let total: Option<u64> =
        conn.query_first("SELECT COUNT(*) FROM evaluation_issues WHERE kind = 'incomplete'")?;
    let rows: Vec<(String, String, i64, i64)> = conn.query(format!(
        "SELECT portfolio, CAST(as_of AS CHAR), held, priced FROM evaluation_issues WHERE kind = 'incomplete' \
         ORDER BY as_of DESC, portfolio LIMIT {limit}"
    ))?;
    let mut out = Vec::with_capacity(rows.len());
    for (portfolio, day, held, priced) in rows {
        let missing =
            stockflow_sinks::mysql::state::missing_stocks(conn, &portfolio, &day).map_err(sink)?;
        out.push(Incomplete {
            portfolio,
            day,
            held,
            priced,
            missing,
        });
    }
    Ok((total.unwrap_or(0), out))
}
