//! InvestorsDB on MySQL/MariaDB: migrations, reference data, and the exactly-once sink.

pub mod statements;

use crate::{Error, Result};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, TxOpts};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockflow_dataflow::{Batch, DiffSink};
use stockflow_market::Universe;
use stockflow_transport::Position;

/// The numbered migrations, applied in order, each once (recorded in `schema_migrations`).
pub const MIGRATIONS: [(u32, &str, &str); 3] = [
    (
        1,
        "reference",
        include_str!("../../migrations/0001_reference.sql"),
    ),
    (
        2,
        "evaluations",
        include_str!("../../migrations/0002_evaluations.sql"),
    ),
    (
        3,
        "stream_state",
        include_str!("../../migrations/0003_stream_state.sql"),
    ),
];

/// A MySQL URL with its password hidden, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Connection settings parsed from a `mysql://user:password@host:port/database` URL.
#[derive(Clone)]
pub struct MySqlConfig {
    opts: Opts,
    database: String,
    shown: String,
}

impl std::fmt::Debug for MySqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl MySqlConfig {
    pub fn from_url(url: &str) -> Result<Self> {
        let opts = Opts::from_url(url).map_err(|e| Error::Url(format!("{}: {e}", redact(url))))?;
        let database = opts
            .get_db_name()
            .map(str::to_string)
            .unwrap_or_else(|| "InvestorsDB".to_string());
        if !database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::Url(format!(
                "database name {database:?} must be [A-Za-z0-9_]"
            )));
        }
        Ok(MySqlConfig {
            opts,
            database,
            shown: redact(url),
        })
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    fn server_opts(&self) -> Opts {
        OptsBuilder::from_opts(self.opts.clone())
            .db_name(None::<String>)
            .tcp_connect_timeout(Some(Duration::from_secs(5)))
            .into()
    }

    fn db_opts(&self) -> Opts {
        OptsBuilder::from_opts(self.opts.clone())
            .db_name(Some(self.database.clone()))
            .tcp_connect_timeout(Some(Duration::from_secs(5)))
            .into()
    }

    /// A connection to the database.
    pub fn connect(&self) -> Result<Conn> {
        Ok(Conn::new(self.db_opts())?)
    }
}

/// Creates the database if needed and applies the migrations not applied yet. Idempotent.
/// With `reset`, drops the database first (the caller has asked for confirmation).
pub fn init(cfg: &MySqlConfig, universe: &Universe, reset: bool) -> Result<Vec<u32>> {
    let mut server = Conn::new(cfg.server_opts())?;
    let db = cfg.database();
    if reset {
        server.query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))?;
        tracing::warn!(database = db, "dropped");
    }
    server.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    ))?;
    let mut conn = cfg.connect()?;
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INT NOT NULL PRIMARY KEY, \
         name VARCHAR(100) NOT NULL, applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
    )?;
    let done: Vec<u32> = conn.query("SELECT version FROM schema_migrations")?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(&version) {
            continue;
        }
        for stmt in sql
            .split(';')
            .map(str::trim)
            .filter(|s| !strip_comments(s).is_empty())
        {
            conn.query_drop(stmt).map_err(|source| Error::Migration {
                version,
                name,
                source,
            })?;
        }
        conn.exec_drop(
            "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
            (version, name),
        )?;
        tracing::info!(version, name, "migration applied");
        applied.push(version);
    }
    load_reference(&mut conn, universe)?;
    Ok(applied)
}

fn strip_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// Fills Investors, Portfolios and Investors_Portfolios (upserts: running twice is harmless).
fn load_reference(conn: &mut Conn, u: &Universe) -> Result<()> {
    let mut tx = conn.start_transaction(TxOpts::default())?;
    tx.exec_batch(
        "INSERT INTO Investors (Id, Name, City) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE Name = VALUES(Name), City = VALUES(City)",
        u.investors.iter().map(|i| (&i.id, &i.name, &i.city)),
    )?;
    tx.exec_batch(
        "INSERT INTO Portfolios (Id, Name, Cumulative) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE Name = VALUES(Name), Cumulative = VALUES(Cumulative)",
        u.portfolios
            .iter()
            .map(|p| (&p.id, format!("Portfolio {}", p.id), p.cumulative)),
    )?;
    tx.exec_batch(
        "INSERT IGNORE INTO Investors_Portfolios (iid, pid) VALUES (?, ?)",
        u.portfolios.iter().map(|p| (&p.investor, &p.id)),
    )?;
    tx.commit()?;
    Ok(())
}

/// The next offsets a job has committed, per (topic, partition).
pub fn stored_offsets(cfg: &MySqlConfig, job: &str) -> Result<BTreeMap<(String, i32), i64>> {
    let mut conn = cfg.connect()?;
    let rows: Vec<(String, i32, i64)> = conn.exec(
        "SELECT topic, kafka_partition, next_offset FROM stream_progress WHERE job = ?",
        (job,),
    )?;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// Counters of the sink, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub transactions: AtomicU64,
    pub rows_upserted: AtomicU64,
    pub rows_deleted: AtomicU64,
    pub dead_letters: AtomicU64,
    pub retries: AtomicU64,
    pub commit_micros: AtomicU64,
    /// Publish-to-commit latencies (ms) of the batches that changed rows, newest last.
    pub latencies_ms: std::sync::Mutex<Vec<i64>>,
}

impl SinkMetrics {
    /// The p-th percentile (0..=100) of the recorded latencies.
    pub fn latency_percentile(&self, p: f64) -> Option<i64> {
        let mut v = self.latencies_ms.lock().ok()?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v.get(idx.min(v.len() - 1)).copied()
    }
}

/// Applies each completed timestamp in one transaction: deletes, upserts, dead letters and the
/// next offsets of every partition. On a failure it retries the whole batch with backoff (the
/// transaction rolled back, nothing half-applied) until it commits.
pub struct MySqlSink {
    cfg: MySqlConfig,
    conn: Option<Conn>,
    job: String,
    universe: Arc<Universe>,
    /// Timestamp 0 holds the records below the stored offsets, replayed to rebuild the state:
    /// their rows are in the database already.
    skip_rebuild: bool,
    last_offsets: Vec<Position>,
    pub metrics: Arc<SinkMetrics>,
}

impl MySqlSink {
    pub fn new(cfg: MySqlConfig, job: String, universe: Arc<Universe>, skip_rebuild: bool) -> Self {
        MySqlSink {
            cfg,
            conn: None,
            job,
            universe,
            skip_rebuild,
            last_offsets: Vec::new(),
            metrics: Arc::new(SinkMetrics::default()),
        }
    }

    fn try_apply(&mut self, batch: &Batch) -> Result<(u64, u64)> {
        if self.conn.is_none() {
            self.conn = Some(self.cfg.connect()?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok((0, 0));
        };
        let (inserts, deletes) = statements::plan_rows(&batch.diffs);
        let mut stmts = statements::deletes(&self.universe, &deletes);
        stmts.extend(statements::upserts(&self.universe, &inserts));
        stmts.extend(statements::dead_letters(&batch.dead_letters));
        stmts.extend(statements::progress(&self.job, &batch.offsets));
        let mut tx = conn.start_transaction(TxOpts::default())?;
        for s in stmts {
            tx.exec_drop(s.sql, s.params)?;
        }
        tx.commit()?;
        Ok((inserts.len() as u64, deletes.len() as u64))
    }
}

impl DiffSink for MySqlSink {
    fn apply(&mut self, batch: &Batch) -> stockflow_dataflow::Result<()> {
        if batch.time == 0 && self.skip_rebuild {
            self.last_offsets.clone_from(&batch.offsets);
            return Ok(());
        }
        if batch.diffs.is_empty()
            && batch.dead_letters.is_empty()
            && batch.offsets == self.last_offsets
        {
            return Ok(());
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match self.try_apply(batch) {
                Ok((upserted, deleted)) => {
                    let m = &self.metrics;
                    m.transactions.fetch_add(1, Ordering::Relaxed);
                    m.rows_upserted.fetch_add(upserted, Ordering::Relaxed);
                    m.rows_deleted.fetch_add(deleted, Ordering::Relaxed);
                    m.dead_letters
                        .fetch_add(batch.dead_letters.len() as u64, Ordering::Relaxed);
                    m.commit_micros
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    self.last_offsets.clone_from(&batch.offsets);
                    if let (Some(newest), true) = (batch.newest_record_ms, upserted + deleted > 0) {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64);
                        if let Ok(mut l) = m.latencies_ms.lock() {
                            if l.len() >= 100_000 {
                                l.remove(0);
                            }
                            l.push(now - newest);
                        }
                    }
                    return Ok(());
                }
                Err(e) if e.is_retryable() => {
                    self.conn = None;
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        time = batch.time,
                        retry_in_ms = backoff.as_millis() as u64,
                        "MySQL unavailable, retrying the batch: {e}"
                    );
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(stockflow_dataflow::Error::Sink(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("mysql://stockflow:secret@127.0.0.1:3306/InvestorsDB"),
            "mysql://stockflow:***@127.0.0.1:3306/InvestorsDB"
        );
        assert_eq!(redact("mysql://127.0.0.1/x"), "mysql://127.0.0.1/x");
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, (v, _, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1);
            assert!(!strip_comments(sql).is_empty());
        }
    }
}

/// The raw multi-row INSERT rate of the server: `rows` rows shaped like `evaluations`, 1,000 a
/// statement, 10 statements a transaction, into a scratch table (dropped afterwards).
pub fn raw_insert_rate(cfg: &MySqlConfig, rows: usize) -> Result<f64> {
    let mut conn = cfg.connect()?;
    conn.query_drop("DROP TABLE IF EXISTS bench_raw_insert")?;
    conn.query_drop("CREATE TABLE bench_raw_insert LIKE evaluations")?;
    let day0 = chrono::NaiveDate::from_ymd_opt(2000, 1, 3).unwrap_or_default();
    let started = Instant::now();
    let mut done = 0usize;
    while done < rows {
        let mut tx = conn.start_transaction(TxOpts::default())?;
        for _ in 0..10 {
            let n = (rows - done).min(statements::CHUNK);
            if n == 0 {
                break;
            }
            let mut params: Vec<mysql::Value> = Vec::with_capacity(n * 6);
            for i in done..done + n {
                let day = day0 + chrono::Duration::days((i / 20_000) as i64);
                for v in [
                    format!("I{:03}", i % 100),
                    format!("Q{:05}", i % 20_000),
                    day.to_string(),
                    format!("{}.{:02}", 1_000_000 + i, i % 100),
                    format!("{}.50", i % 1000),
                    "0.123456".to_string(),
                ] {
                    params.push(mysql::Value::Bytes(v.into_bytes()));
                }
            }
            let sql = format!(
                "INSERT INTO bench_raw_insert (investor, portfolio, as_of, nav, nav_change, nav_change_pct) VALUES {}",
                vec!["(?, ?, ?, ?, ?, ?)"; n].join(", ")
            );
            tx.exec_drop(sql, params)?;
            done += n;
        }
        tx.commit()?;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
    conn.query_drop("DROP TABLE IF EXISTS bench_raw_insert")?;
    Ok(rate)
}

/// What the database says about a job: its committed offsets, the last evaluated day of every
/// portfolio, and the row counts.
#[derive(Debug, Clone, Default)]
pub struct DbStatus {
    /// (topic, partition, next offset)
    pub offsets: Vec<(String, i32, i64)>,
    /// (investor, portfolio, last evaluated day, its value, evaluated days)
    pub portfolios: Vec<(String, String, String, String, i64)>,
    pub evaluations: i64,
    pub dead_letters: i64,
}

pub fn status(cfg: &MySqlConfig, job: &str) -> Result<DbStatus> {
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
    let evaluations: Option<i64> = conn.query_first("SELECT COUNT(*) FROM evaluations")?;
    let dead_letters: Option<i64> = conn.query_first("SELECT COUNT(*) FROM dead_letters")?;
    Ok(DbStatus {
        offsets,
        portfolios,
        evaluations: evaluations.unwrap_or(0),
        dead_letters: dead_letters.unwrap_or(0),
    })
}
