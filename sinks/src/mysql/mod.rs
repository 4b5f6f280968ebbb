//! InvestorsDB on MySQL/MariaDB: migrations, reference data, and the exactly-once sink.
//!
//! Every completed timestamp commits in one transaction: the lease check, the evaluation rows,
//! the issues, the job's input state (latest closes and holding records with their versions),
//! the dead letters and the next offset of every partition. So the database always holds the
//! job's output *and* its state for exactly the log prefix its offsets name, and a restart
//! loads the state instead of re-reading the log (`docs/sink.md`).

pub mod bulk;
mod checked;
pub mod lease;
pub mod outbox;
pub mod rebuild;
pub mod state;
pub mod statements;

pub use lease::Acquired;

use crate::{Error, Result};
use lease::{Heartbeat, Holder};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, TxOpts};
use statements::{BatchPlan, Statement};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stockflow_core::{Batch, Sink, StoredState};
use stockflow_market::Universe;

mod embedded {
    refinery::embed_migrations!("migrations");
}

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

/// Every session: strict SQL (a value that does not fit is an error, never silently cut) and
/// UTC.
const SESSION: [&str; 2] = [
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'",
    "SET SESSION time_zone = '+00:00'",
];

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

    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn builder(&self, db: Option<String>) -> OptsBuilder {
        OptsBuilder::from_opts(self.opts.clone())
            .db_name(db)
            .tcp_connect_timeout(Some(Duration::from_secs(5)))
            .read_timeout(Some(Duration::from_secs(120)))
            .write_timeout(Some(Duration::from_secs(120)))
            .init(SESSION.iter().map(|s| s.to_string()).collect())
    }

    /// A connection to the server, no database selected.
    pub fn connect_server(&self) -> Result<Conn> {
        Ok(Conn::new(self.builder(None))?)
    }

    /// A connection to the database.
    pub fn connect(&self) -> Result<Conn> {
        Ok(Conn::new(self.builder(Some(self.database.clone())))?)
    }

    /// A connection to the database whose every wait ends within `timeout` (the lease's
    /// heartbeat must not hang on a server that stopped answering).
    pub fn connect_with_timeout(&self, timeout: Duration) -> Result<Conn> {
        let opts = self
            .builder(Some(self.database.clone()))
            .tcp_connect_timeout(Some(timeout))
            .read_timeout(Some(timeout))
            .write_timeout(Some(timeout));
        Ok(Conn::new(opts)?)
    }
}

/// Creates the database if needed and applies the migrations not applied yet (refinery keeps
/// their checksums in `refinery_schema_history`). Idempotent. With `reset`, drops the
/// database first (the caller has asked for confirmation). Returns the versions applied now.
///
/// Migrations run under a named lock of the database (two runs starting together migrate one
/// after the other), and never under a live run of a job: a run holding a fresh lease makes
/// pending migrations refused, unless `fence_live_run` (a `--takeover`, whose run fences that
/// one right after; migrations only add).
pub fn init(
    cfg: &MySqlConfig,
    universe: &Universe,
    reset: bool,
    fence_live_run: bool,
) -> Result<Vec<i32>> {
    init_as(
        cfg,
        universe,
        reset,
        fence_live_run,
        &Holder::this_process(),
    )
}

/// [`init`] by the run `me` (which may hold the job's lease already: it is not another live
/// run).
fn init_as(
    cfg: &MySqlConfig,
    universe: &Universe,
    reset: bool,
    fence_live_run: bool,
    me: &Holder,
) -> Result<Vec<i32>> {
    let db = cfg.database();
    if reset {
        cfg.connect_server()?
            .query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))?;
        tracing::warn!(database = db, "dropped");
    }
    create_database(cfg)?;
    let mut conn = cfg.connect()?;
    let locked: Option<Option<i64>> =
        conn.query_first(format!("SELECT GET_LOCK({SCHEMA_LOCK}, 60)"))?;
    if locked != Some(Some(1)) {
        return Err(Error::LeaseBusy {
            job: "(schema)".into(),
            holder: "another stockflow was migrating this database".into(),
            secs: 60,
        });
    }
    let migrated = migrate(&mut conn, db, fence_live_run, me);
    let released = conn.query_drop(format!("DO RELEASE_LOCK({SCHEMA_LOCK})"));
    let report = migrated?;
    released?;
    let applied: Vec<i32> = report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "migration applied");
    }
    load_reference(&mut conn, universe)?;
    Ok(applied)
}

/// The name of the database's schema lock (a server-wide user lock): hashed, since a lock's
/// name takes at most 64 characters and a database's name may take 64 by itself.
const SCHEMA_LOCK: &str = "CONCAT('stockflow.schema.', LEFT(SHA2(DATABASE(), 256), 40))";

/// Creates the database when it does not exist.
fn create_database(cfg: &MySqlConfig) -> Result<()> {
    cfg.connect_server()?.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        cfg.database()
    ))?;
    Ok(())
}

/// The migration that made the lease's tables what this build reads and writes.
const LEASE_SCHEMA: i32 = 6;

/// The highest migration applied to the database (None: none, or no history table yet).
fn applied_version(conn: &mut Conn) -> Result<Option<i32>> {
    match conn.query_first::<Option<i32>, _>("SELECT MAX(version) FROM refinery_schema_history") {
        Err(mysql::Error::MySqlError(e)) if e.code == 1146 => Ok(None),
        other => Ok(other?.flatten()),
    }
}

/// How long a migration's statement waits for a lock (a table's metadata lock held by an
/// open transaction, a row lock) before it gives up and names who holds it. MariaDB's
/// default for metadata locks is a year.
const MIGRATION_LOCK_WAIT_SECS: u32 = 20;

/// Applies the pending migrations (the caller holds the schema lock).
fn migrate(
    conn: &mut Conn,
    db: &str,
    fence_live_run: bool,
    me: &Holder,
) -> Result<refinery::Report> {
    let applied = applied_version(conn)?;
    let carried = migrations().last().map(|(v, _)| *v);
    if applied >= carried {
        return embedded::migrations::runner()
            .run(&mut checked::Checked(conn))
            .map_err(|e| Error::Migration(e.to_string()));
    }
    if !fence_live_run {
        // A holder that stopped beating (a crash) goes stale within the lease timeout: wait
        // for it rather than refuse (this may be the caller's own previous run).
        let started = Instant::now();
        while let Some(holder) = lease::any_live(conn, me)? {
            if !lease::is_fading(&holder) || started.elapsed() > lease::LEASE_TIMEOUT * 2 {
                return Err(Error::SchemaInUse {
                    database: db.to_string(),
                    holder: holder.describe(),
                });
            }
            std::thread::sleep(lease::HEARTBEAT);
        }
    }
    conn.query_drop(format!(
        "SET SESSION lock_wait_timeout = {MIGRATION_LOCK_WAIT_SECS}, \
         innodb_lock_wait_timeout = {MIGRATION_LOCK_WAIT_SECS}"
    ))?;
    undo_unrecorded_columns(conn, applied)?;
    let report = embedded::migrations::runner().run(&mut checked::Checked(conn));
    // (A connection that broke during the migration fails here too: the migration's own error
    // is the one to say.)
    let _ = conn
        .query_drop("SET SESSION lock_wait_timeout = DEFAULT, innodb_lock_wait_timeout = DEFAULT");
    report.map_err(|e| {
        let text = e.to_string();
        if !text.contains("Lock wait timeout") {
            return Error::Migration(text);
        }
        Error::Migration(format!(
            "{text}: a migration waited {MIGRATION_LOCK_WAIT_SECS} s for a lock held by {}. End \
             that transaction (or its connection: KILL CONNECTION <id> as an administrator), or \
             start the job with --takeover if it is the job's own hung run, then run again",
            blockers(conn)
        ))
    })
}

/// Migrations that begin with an `ALTER TABLE … ADD COLUMN` (MySQL 8 has no `ADD COLUMN IF
/// NOT EXISTS`; MariaDB has): the table and the columns each adds.
/// With the condition under which a row holds something in them (not their defaults).
const ADDS_COLUMNS: &[(i32, &str, &[&str], &str)] = &[
    (
        5,
        "stream_progress",
        &["last_offset", "last_timestamp_ms", "last_hash"],
        "last_offset IS NOT NULL OR last_timestamp_ms IS NOT NULL OR last_hash IS NOT NULL",
    ),
    (
        6,
        "job_leases",
        &["run_id", "pid_ns", "conn_id", "commit_seq"],
        "run_id <> '' OR pid_ns <> '' OR conn_id <> 0 OR commit_seq <> 0",
    ),
];

/// A crash after such a migration's `ALTER TABLE` (one atomic statement) and before refinery
/// recorded the migration leaves columns that make it fail when applied again ("Duplicate
/// column name"). Those columns are dropped, and the migration then runs again whole (its
/// other statements create what is missing only). Nothing wrote them: a run waits for every
/// migration before it writes. Columns that do hold something (the migration history lost
/// rows, as a partial restore can) are not dropped: the migration is refused, saying so.
fn undo_unrecorded_columns(conn: &mut Conn, applied: Option<i32>) -> Result<()> {
    for (version, table, columns, holding) in ADDS_COLUMNS {
        if applied >= Some(*version) {
            continue;
        }
        let present: Vec<String> = conn.exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_NAME = ?",
            (table,),
        )?;
        let added: Vec<&str> = columns
            .iter()
            .copied()
            .filter(|c| present.iter().any(|p| p.eq_ignore_ascii_case(c)))
            .collect();
        if added.is_empty() {
            continue;
        }
        let used: Option<u64> = if added.len() == columns.len() {
            conn.query_first(format!("SELECT COUNT(*) FROM `{table}` WHERE {holding}"))?
        } else {
            Some(0)
        };
        if used.unwrap_or(0) > 0 {
            return Err(Error::Migration(format!(
                "migration {version} is not recorded in refinery_schema_history, but the columns \
                 it adds to {table} exist and hold data: the history lost rows (a partial \
                 restore?). Restore refinery_schema_history, or record the migration by hand; \
                 stockflow does not drop columns that hold data"
            )));
        }
        tracing::warn!(
            version,
            table,
            columns = ?added,
            "migration {version} was interrupted after it added its columns (a crash before it \
             was recorded): dropping them to apply it again whole"
        );
        let drops: Vec<String> = added.iter().map(|c| format!("DROP COLUMN `{c}`")).collect();
        conn.query_drop(format!("ALTER TABLE `{table}` {}", drops.join(", ")))?;
    }
    Ok(())
}

/// The connections that may hold the lock a migration waited for, as far as this account may
/// see them: the open transactions (with the PROCESS privilege), else this account's other
/// connections to this database, longest in their state first.
fn blockers(conn: &mut Conn) -> String {
    /// (connection, started, user, command, seconds in it)
    type Open = (u64, String, String, String, u64);
    let transactions: std::result::Result<Vec<Open>, _> = conn.query(
        "SELECT t.trx_mysql_thread_id, CAST(t.trx_started AS CHAR), COALESCE(p.USER, '?'), \
             COALESCE(p.COMMAND, '?'), COALESCE(p.TIME, 0) \
             FROM information_schema.INNODB_TRX t \
             LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
             WHERE t.trx_mysql_thread_id <> CONNECTION_ID() ORDER BY t.trx_started LIMIT 5",
    );
    if let Some(rows) = transactions.ok().filter(|r| !r.is_empty()) {
        return rows
            .iter()
            .map(|(id, started, user, command, secs)| {
                format!(
                    "MySQL connection {id} (user {user}, a transaction open since {started}, \
                     {command} for {secs} s)"
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
    }
    let connections: std::result::Result<Vec<(u64, String, String, u64)>, _> = conn.query(
        "SELECT ID, USER, COMMAND, TIME FROM information_schema.PROCESSLIST \
         WHERE DB = DATABASE() AND ID <> CONNECTION_ID() ORDER BY TIME DESC LIMIT 5",
    );
    match connections {
        Ok(rows) if !rows.is_empty() => format!(
            "one of these connections to the database: {}",
            rows.iter()
                .map(|(id, user, command, secs)| format!(
                    "MySQL connection {id} (user {user}, {command} for {secs} s)"
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "a transaction this account cannot see (SHOW PROCESSLIST as an administrator \
              lists it)"
            .into(),
    }
}

/// Whether the database exists with every migration this build carries: a follower of a
/// cluster waits for it (process 0 creates the schema; reading a half-migrated one fails).
pub fn schema_ready(cfg: &MySqlConfig) -> Result<bool> {
    let missing = |e: &mysql::Error| matches!(e, mysql::Error::MySqlError(me) if me.code == 1049 || me.code == 1146);
    let mut conn = match cfg.connect() {
        Err(Error::MySql(e)) if missing(&e) => return Ok(false),
        other => other?,
    };
    let applied: Option<Option<i32>> =
        match conn.query_first("SELECT MAX(version) FROM refinery_schema_history") {
            Err(e) if missing(&e) => return Ok(false),
            other => other?,
        };
    let carried = migrations().last().map(|(v, _)| *v);
    Ok(applied.flatten() >= carried)
}

/// The migrations this build carries: (version, name).
pub fn migrations() -> Vec<(i32, String)> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (m.version(), m.name().to_string()))
        .collect()
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

/// The next offsets a job has committed, per (topic, partition), and the marks of the last
/// records it applied (what a follower process of a cluster starts from).
pub fn stored_offsets(cfg: &MySqlConfig, job: &str) -> Result<state::Offsets> {
    let mut conn = cfg.connect()?;
    state::offsets(&mut conn, job)
}

/// Counters of the sink, shared with whoever reports them (the run summary). The metrics
/// endpoint gets the same figures, and real histograms, through the `metrics` facade.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub transactions: AtomicU64,
    pub rows_upserted: AtomicU64,
    pub rows_deleted: AtomicU64,
    pub rows_refused: AtomicU64,
    pub state_rows: AtomicU64,
    pub dead_letters: AtomicU64,
    pub retries: AtomicU64,
    pub commit_micros: AtomicU64,
    /// The latest publish-to-commit latencies (ms), at most `LATENCY_WINDOW`, for the run
    /// summary's percentiles.
    latencies_ms: Mutex<VecDeque<i64>>,
}

const LATENCY_WINDOW: usize = 4096;

impl SinkMetrics {
    fn record_latency(&self, ms: i64) {
        metrics::histogram!("stockflow_publish_to_commit_seconds").record(ms as f64 / 1e3);
        if let Ok(mut l) = self.latencies_ms.lock() {
            if l.len() == LATENCY_WINDOW {
                l.pop_front();
            }
            l.push_back(ms);
        }
    }

    /// The p-th percentile (0..=100) of the latest latencies.
    pub fn latency_percentile(&self, p: f64) -> Option<i64> {
        let mut v: Vec<i64> = self.latencies_ms.lock().ok()?.iter().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v.get(idx.min(v.len() - 1)).copied()
    }
}

/// What a committed batch wrote.
#[derive(Debug, Default, Clone, Copy)]
struct Applied {
    upserted: u64,
    deleted: u64,
    refused: u64,
}

/// The commit a transaction's body writes: its sequence number, and whether it writes again
/// what a commit whose answer was lost had written.
#[derive(Debug, Clone, Copy)]
pub struct Commit {
    pub seq: i64,
    pub replay: bool,
}

/// What a run opens the sink for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The job: refuses a database whose last `db rebuild` did not finish.
    Run,
    /// `db rebuild`: marks the database while it works.
    Rebuild,
}

/// The exactly-once sink (`docs/sink.md`).
pub struct MySqlSink {
    cfg: MySqlConfig,
    conn: Option<Conn>,
    job: String,
    universe: Arc<Universe>,
    epoch: i64,
    /// This run's id in the lease (with the epoch, what every commit checks).
    run_id: String,
    /// The commit sequence number of this run's last commit (the database must hold it).
    seq: i64,
    /// A COMMIT was sent and its answer lost: the next check may find it landed.
    commit_unknown: bool,
    /// What that COMMIT wrote (see [`MySqlSink::transaction`]).
    unknown_work: Option<u64>,
    /// The work of a commit that landed though its answer was lost, until the body that
    /// writes it again commits: every attempt at it (a retry after another failure included)
    /// knows it is a replay.
    landed_work: Option<u64>,
    /// Parameter bytes a statement may take on this server.
    budget: usize,
    /// The commit at which this run last pruned the console's journal (None: not yet).
    journal_pruned: Option<i64>,
    /// The server's `max_allowed_packet`.
    packet_limit: usize,
    heartbeat: Option<Heartbeat>,
    last_offsets: Vec<stockflow_core::Progress>,
    /// 'refused' issue rows the table holds: only then do writes clear them.
    refused_known: u64,
    retry_for: Duration,
    /// Set by a signal: retries stop waiting.
    cancel: Arc<AtomicBool>,
    /// `--publish-portfolios`: the topic and the log's producer (through the outbox).
    publish: Option<(String, Box<dyn outbox::Publisher>)>,
    pub metrics: Arc<SinkMetrics>,
}

/// The job's lease, taken: the connection that took it and its heartbeat.
struct Leased {
    conn: Conn,
    acquired: Acquired,
    heartbeat: Heartbeat,
}

impl Leased {
    fn take(
        cfg: &MySqlConfig,
        job: &str,
        me: &Holder,
        takeover: bool,
        retry_for: Duration,
    ) -> Result<Self> {
        let (conn, acquired) = retrying(retry_for, "taking the job's lease", || {
            let mut conn = cfg.connect()?;
            let acquired = lease::acquire(&mut conn, job, me, takeover)?;
            Ok((conn, acquired))
        })?;
        let heartbeat = Heartbeat::start(cfg.clone(), job.to_string(), acquired.epoch)
            .map_err(|e| Error::State(format!("starting the lease heartbeat: {e}")))?;
        Ok(Leased {
            conn,
            acquired,
            heartbeat,
        })
    }
}

impl MySqlSink {
    /// Connects, takes the job's lease (refusing while another live run holds it, unless
    /// `takeover`, and refusing a database another job owns) and starts its heartbeat. MySQL
    /// errors that may pass are retried for up to `retry_for`, here and for every batch.
    pub fn open(
        cfg: MySqlConfig,
        job: String,
        universe: Arc<Universe>,
        takeover: bool,
        retry_for: Duration,
        purpose: Purpose,
    ) -> Result<Self> {
        let me = Holder::this_process();
        let leased = Leased::take(&cfg, &job, &me, takeover, retry_for)?;
        Self::opened(cfg, job, universe, retry_for, purpose, me, leased)
    }

    /// [`MySqlSink::open`] on a database that may not exist yet or may need migrations: the
    /// database is created, the lease taken first where the database has the lease's tables
    /// (a `--takeover` then ends a hung holder's connection, and with it the locks of its
    /// open transaction, which a migration's DDL would wait for behind everything else), then
    /// the migrations run (their lock waits bounded), the reference tables are loaded, and the
    /// sink opens.
    pub fn open_migrated(
        cfg: MySqlConfig,
        job: String,
        universe: Arc<Universe>,
        takeover: bool,
        retry_for: Duration,
        purpose: Purpose,
    ) -> Result<Self> {
        let me = Holder::this_process();
        let leasable = retrying(retry_for, "opening the database", || {
            create_database(&cfg)?;
            Ok(applied_version(&mut cfg.connect()?)? >= Some(LEASE_SCHEMA))
        })?;
        let early = if leasable {
            Some(Leased::take(&cfg, &job, &me, takeover, retry_for)?)
        } else {
            None
        };
        let migrated = retrying(retry_for, "initialising the database", || {
            init_as(&cfg, &universe, false, takeover, &me)
        });
        let leased = match (migrated, early) {
            (Ok(_), Some(leased)) => leased,
            (Ok(_), None) => Leased::take(&cfg, &job, &me, takeover, retry_for)?,
            (Err(e), early) => {
                if let Some(mut l) = early {
                    let _ = lease::release(&mut l.conn, &job, l.acquired.epoch);
                }
                return Err(e);
            }
        };
        Self::opened(cfg, job, universe, retry_for, purpose, me, leased)
    }

    /// The rest of opening, under the lease.
    fn opened(
        cfg: MySqlConfig,
        job: String,
        universe: Arc<Universe>,
        retry_for: Duration,
        purpose: Purpose,
        me: Holder,
        leased: Leased,
    ) -> Result<Self> {
        let Leased {
            mut conn,
            acquired,
            heartbeat,
        } = leased;
        if let (Purpose::Run, Some(since)) = (purpose, &acquired.rebuild_started) {
            let _ = lease::release(&mut conn, &job, acquired.epoch);
            return Err(Error::RebuildPending {
                database: cfg.database().to_string(),
                since: since.clone(),
            });
        }
        let refused_known: Option<u64> =
            conn.query_first("SELECT COUNT(*) FROM evaluation_issues WHERE kind = 'refused'")?;
        let packet_limit = max_allowed_packet(&mut conn)?;
        let local_infile: Option<i64> = conn.query_first("SELECT @@GLOBAL.local_infile")?;
        if local_infile == Some(0) {
            let _ = lease::release(&mut conn, &job, acquired.epoch);
            return Err(Error::LocalInfileOff {
                server: cfg.shown().to_string(),
            });
        }
        tracing::info!(
            job,
            epoch = acquired.epoch,
            host = me.host,
            pid = me.pid,
            run = me.run_id,
            commit_seq = acquired.commit_seq,
            "took the job's lease"
        );
        Ok(MySqlSink {
            cfg,
            conn: Some(conn),
            job,
            universe,
            epoch: acquired.epoch,
            run_id: me.run_id.clone(),
            seq: acquired.commit_seq,
            commit_unknown: false,
            unknown_work: None,
            landed_work: None,
            budget: statement_budget(packet_limit),
            journal_pruned: None,
            packet_limit,
            heartbeat: Some(heartbeat),
            last_offsets: Vec::new(),
            refused_known: refused_known.unwrap_or(0),
            retry_for,
            cancel: Arc::new(AtomicBool::new(false)),
            publish: None,
            metrics: Arc::new(SinkMetrics::default()),
        })
    }

    /// Publishes every batch's evaluation changes to `topic` after its commit, through the
    /// outbox: first what a previous run committed and may not have published.
    pub fn set_publisher(
        &mut self,
        topic: String,
        publisher: Box<dyn outbox::Publisher>,
    ) -> Result<()> {
        self.publish = Some((topic, publisher));
        self.drain_with_retries()
    }

    /// Publishes the outbox in transactions that hold the lease, and empties it (the rows of
    /// any topic: a previous run may have published to another one). A fenced run fails the
    /// lease check before it sends anything.
    fn drain(&mut self) -> Result<usize> {
        let Some((topic, mut publisher)) = self.publish.take() else {
            return Ok(0);
        };
        let mut sent = 0usize;
        let out = loop {
            let waiting = self.conn().and_then(|c| {
                Ok(c.query_first::<i64, _>("SELECT id FROM publish_outbox LIMIT 1")?)
            });
            match waiting {
                Ok(None) => break Ok(sent),
                Ok(Some(_)) => {}
                Err(e) => break Err(e),
            }
            let publisher_ref = &mut publisher;
            let round = self.transaction(None, |tx, _, _| {
                type Row = (i64, String, Vec<u8>, Vec<u8>);
                let rows: Vec<Row> = tx.query(
                    "SELECT id, topic, msg_key, payload FROM publish_outbox ORDER BY id LIMIT 10000",
                )?;
                let Some(last) = rows.last().map(|r| r.0) else {
                    return Ok(0);
                };
                let count = rows.len();
                // In order, a run of messages per topic.
                let mut pending: Vec<outbox::Message> = Vec::new();
                let mut current: Option<String> = None;
                for (_, row_topic, key, payload) in rows {
                    if current.as_deref() != Some(row_topic.as_str()) {
                        if let Some(t) = current.take() {
                            publisher_ref.publish(&t, &pending).map_err(Error::Publish)?;
                            pending.clear();
                        }
                        current = Some(row_topic);
                    }
                    pending.push(outbox::Message { key, payload });
                }
                if let Some(t) = current {
                    publisher_ref.publish(&t, &pending).map_err(Error::Publish)?;
                }
                tx.exec_drop("DELETE FROM publish_outbox WHERE id <= ?", (last,))?;
                Ok(count)
            });
            match round {
                Ok(n) => sent += n,
                Err(e) => break Err(e),
            }
        };
        self.publish = Some((topic, publisher));
        out
    }

    /// [`drain`](Self::drain), retrying errors that may pass for up to `retry_for`.
    fn drain_with_retries(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut delays = policy();
        loop {
            match self.drain() {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(messages = n, "published the outbox");
                    }
                    return Ok(());
                }
                Err(e) if e.is_retryable() && self.cancel.load(Ordering::SeqCst) => {
                    return Err(Error::Interrupted(e.to_string()));
                }
                Err(e) if e.is_retryable() && started.elapsed() < self.retry_for => {
                    self.conn = None;
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(
                        retry_in_ms = delay.as_millis() as u64,
                        "publishing the committed portfolio changes, retrying: {e}"
                    );
                    self.sleep(delay);
                }
                Err(e) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The commit sequence number of this run's last commit.
    pub fn commit_seq(&self) -> i64 {
        self.seq
    }

    pub fn universe(&self) -> &Universe {
        &self.universe
    }

    /// A flag that, once set (a signal), ends the sink's retries at once.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    /// The connection, opened again after an error; a new one is recorded with the lease (a
    /// replacement ends it if this run hangs).
    fn conn(&mut self) -> Result<&mut Conn> {
        if self.conn.is_none() {
            let mut conn = self.cfg.connect()?;
            lease::record_connection(&mut conn, &self.job, self.epoch)?;
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Error::State("no MySQL connection".into()))
    }

    /// Refuses a statement the server would refuse for its size (a row larger than the
    /// server's `max_allowed_packet`): an error with a hint, never a retry.
    fn fits(&self, what: &str, stmts: &[Statement]) -> Result<()> {
        match stmts.iter().map(Statement::bytes).max() {
            Some(bytes) if bytes + 1024 > self.packet_limit => Err(Error::PacketTooLarge {
                what: what.to_string(),
                bytes,
                limit: self.packet_limit,
            }),
            _ => Ok(()),
        }
    }

    /// One transaction with the lease and the commit sequence checked first; `body` runs
    /// inside it. `work` names what the body writes (a batch's timestamp; None for outbox
    /// rounds and rebuild chunks), so that a body whose lost COMMIT had landed knows it is
    /// writing the same thing again.
    fn transaction<T>(
        &mut self,
        work: Option<u64>,
        body: impl FnOnce(&mut mysql::Transaction<'_>, &Universe, Commit) -> Result<T>,
    ) -> Result<T> {
        let (job, epoch, seq) = (self.job.clone(), self.epoch, self.seq);
        let run_id = self.run_id.clone();
        let universe = Arc::clone(&self.universe);
        self.conn()?;
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::State("no MySQL connection".into()))?;
        let mut tx = conn.start_transaction(TxOpts::default())?;
        let next = match lease::check(&mut tx, &job, epoch, &run_id, seq) {
            // This run's last COMMIT landed though its answer was lost (the database is one
            // commit ahead under this run's epoch, which only this run writes). The body runs
            // again: every write of a batch, an outbox round or a rebuild chunk is idempotent
            // (upserts, deletes by key, INSERT IGNORE; outbox messages may go out twice).
            Err(Error::Diverged { found, .. }) if self.commit_unknown && found == seq + 1 => {
                tracing::info!(
                    commit = found,
                    "the last commit had landed before the connection was lost"
                );
                self.seq = found;
                self.commit_unknown = false;
                self.landed_work = self.unknown_work;
                lease::check(&mut tx, &job, epoch, &run_id, found)?
            }
            other => other?,
        };
        let replay = work.is_some() && self.landed_work == work;
        let out = body(&mut tx, &universe, Commit { seq: next, replay })?;
        self.commit_unknown = true;
        self.unknown_work = work;
        tx.commit()?;
        self.commit_unknown = false;
        self.landed_work = None;
        self.seq = next;
        Ok(out)
    }

    /// Sleeps `delay`, or less once cancelled.
    fn sleep(&self, delay: Duration) {
        let until = Instant::now() + delay;
        while Instant::now() < until && !self.cancel.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
    }

    fn try_apply(
        &mut self,
        plan: &BatchPlan<'_>,
        batch: &Batch,
        row_by_row: bool,
        started: Instant,
    ) -> Result<Applied> {
        let clear = (self.refused_known > 0).then(|| plan.touched());
        let (epoch, budget) = (self.epoch, self.budget);
        let topic = self.publish.as_ref().map(|(t, _)| t.clone());
        let job = self.job.clone();
        let journal = &plan.journal;
        let pruned = self.journal_pruned;
        let out = self.transaction(Some(batch.time), |tx, u, commit| {
            let mut applied = Applied::default();
            run(
                tx,
                &statements::evaluation_deletes(u, &plan.evaluation_deletes),
            )?;
            applied.deleted = plan.evaluation_deletes.len() as u64;
            if let Some(keys) = &clear {
                run(tx, &statements::clear_refused(u, keys))?;
            }
            if row_by_row {
                for e in &plan.evaluation_rows {
                    tx.query_drop("SAVEPOINT row_write")?;
                    let s = statements::evaluation_upsert(u, e);
                    match tx.exec_drop(&s.sql, s.params) {
                        Ok(()) => applied.upserted += 1,
                        Err(err) => {
                            let err = Error::from(err);
                            if !err.is_data_error() {
                                return Err(err);
                            }
                            tx.query_drop("ROLLBACK TO SAVEPOINT row_write")?;
                            tracing::warn!(
                                portfolio = e.portfolio,
                                date = %e.date,
                                "the table refused a row, recorded in evaluation_issues: {err}"
                            );
                            run(tx, &statements::refused_row(u, e, &err.to_string()))?;
                            applied.refused += 1;
                        }
                    }
                }
            } else {
                bulk::load(tx, &bulk::EVALUATIONS, &plan.evaluations)?;
                applied.upserted = plan.evaluation_rows.len() as u64;
            }
            for table in &plan.tables {
                run(tx, &table.deletes)?;
                bulk::load(tx, &table.target, &table.rows)?;
            }
            run(tx, &plan.others)?;
            // The console's journal of this commit (docs/console.md); a replay of a batch
            // whose commit had landed was journalled then.
            let prune = pruned.is_none_or(|p| commit.seq - p >= statements::JOURNAL_PRUNE_EVERY);
            if !commit.replay {
                let entry = statements::JournalEntry {
                    job: &job,
                    epoch,
                    commit_seq: commit.seq,
                    freshness_ms: batch.newest_record_ms.map(|newest| unix_ms() - newest),
                    duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
                    prune,
                };
                let (stmts, diffs) = statements::journal(u, &entry, journal, batch);
                run(tx, &stmts)?;
                bulk::load(tx, &bulk::JOURNAL, &diffs)?;
            }
            // A replay of a batch whose commit had landed: its messages are in the outbox.
            if let (Some(topic), false) = (&topic, commit.replay) {
                let messages = outbox::messages(u, batch, epoch, commit.seq);
                run(tx, &statements::outbox(topic, &messages, budget))?;
            }
            Ok((applied, (prune && !commit.replay).then_some(commit.seq)))
        })?;
        if let Some(seq) = out.1 {
            self.journal_pruned = Some(seq);
        }
        Ok(out.0)
    }
}

/// Milliseconds since the Unix epoch (0 on a clock before it).
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The server's `max_allowed_packet`.
fn max_allowed_packet(conn: &mut Conn) -> Result<usize> {
    let v: Option<u64> = conn.query_first("SELECT @@max_allowed_packet")?;
    Ok(v.and_then(|v| usize::try_from(v).ok()).unwrap_or(16 << 20))
}

/// The parameter bytes a statement may take: `STATEMENT_BYTES`, or a quarter of a smaller
/// server's packet.
fn statement_budget(packet_limit: usize) -> usize {
    statements::STATEMENT_BYTES.min(packet_limit / 4).max(1024)
}

fn run(tx: &mut mysql::Transaction<'_>, stmts: &[Statement]) -> Result<()> {
    for s in stmts {
        tx.exec_drop(&s.sql, s.params.clone())?;
    }
    Ok(())
}

/// The backoff of every MySQL retry (stockflow's one policy).
fn policy() -> backon::ExponentialBackoff {
    stockflow_core::backoff()
}

/// Runs `f` until it succeeds, retrying errors that may pass for up to `give_up`.
pub fn retrying<T>(give_up: Duration, what: &str, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let mut delays = policy();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && started.elapsed() < give_up => {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(
                    retry_in_ms = delay.as_millis() as u64,
                    "{what}: MySQL unavailable, retrying: {e}"
                );
                std::thread::sleep(delay);
            }
            Err(e) if e.is_retryable() => {
                return Err(Error::Unavailable(format!(
                    "{what}: MySQL has been unavailable for {:.0} s, giving up: {e}",
                    started.elapsed().as_secs_f64()
                )))
            }
            Err(e) => return Err(e),
        }
    }
}

impl Sink for MySqlSink {
    fn load(&mut self, restore: stockflow_core::Restore) -> stockflow_core::Result<StoredState> {
        let (job, universe) = (self.job.clone(), Arc::clone(&self.universe));
        let started = Instant::now();
        let cfg = self.cfg.clone();
        let state = retrying(self.retry_for, "loading the job's state", || {
            let mut conn = cfg.connect()?;
            state::load(&mut conn, &universe, &job, restore)
        })?;
        tracing::info!(
            prices = state.prices.len(),
            holdings = state.holdings.len(),
            seeds = state.seeds.len(),
            window = ?state.window,
            partitions = state.offsets.len(),
            seconds = started.elapsed().as_secs_f64(),
            "loaded the job's stored state"
        );
        Ok(state)
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn apply(&mut self, batch: &Batch) -> stockflow_core::Result<()> {
        if batch.is_empty() && batch.offsets == self.last_offsets {
            return Ok(());
        }
        let job = self.job.clone();
        let universe = Arc::clone(&self.universe);
        let plan = BatchPlan::new(&universe, &job, batch, self.budget);
        self.fits("a dead letter (its payload and reason)", &plan.others)?;
        let started = Instant::now();
        let mut delays = policy();
        let mut row_by_row = false;
        let applied = loop {
            let t0 = Instant::now();
            match self.try_apply(&plan, batch, row_by_row, started) {
                Ok(a) => {
                    metrics::histogram!("stockflow_sink_commit_seconds")
                        .record(t0.elapsed().as_secs_f64());
                    break a;
                }
                Err(e) if e.is_data_error() && !row_by_row => {
                    // A row the table refuses: write row by row, recording the refused ones.
                    self.conn = None;
                    tracing::warn!(
                        time = batch.time,
                        "a row of the batch was refused ({e}); writing it row by row"
                    );
                    row_by_row = true;
                }
                Err(e) if e.is_retryable() && self.cancel.load(Ordering::SeqCst) => {
                    self.conn = None;
                    return Err(Error::Interrupted(e.to_string()).into());
                }
                Err(e) if e.is_retryable() && started.elapsed() < self.retry_for => {
                    self.conn = None;
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("stockflow_sink_retries_total").increment(1);
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(
                        time = batch.time,
                        retry_in_ms = delay.as_millis() as u64,
                        "MySQL unavailable, retrying the batch: {e}"
                    );
                    self.sleep(delay);
                }
                Err(e) if e.is_retryable() => {
                    return Err(stockflow_core::Error::external(format!(
                        "MySQL has been unavailable for {:.0} s, giving up (start the job again once it is back; nothing is lost): {e}",
                        started.elapsed().as_secs_f64()
                    )));
                }
                Err(e) => {
                    self.conn = None;
                    return Err(e.into());
                }
            }
        };
        let m = &self.metrics;
        let state_rows = (batch.prices.len() + batch.holdings.len()) as u64;
        m.transactions.fetch_add(1, Ordering::Relaxed);
        m.rows_upserted
            .fetch_add(applied.upserted, Ordering::Relaxed);
        m.rows_deleted.fetch_add(applied.deleted, Ordering::Relaxed);
        m.rows_refused.fetch_add(applied.refused, Ordering::Relaxed);
        m.state_rows.fetch_add(state_rows, Ordering::Relaxed);
        m.dead_letters
            .fetch_add(batch.dead_letters.len() as u64, Ordering::Relaxed);
        m.commit_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        metrics::counter!("stockflow_sink_transactions_total").increment(1);
        metrics::counter!("stockflow_sink_rows_upserted_total").increment(applied.upserted);
        metrics::counter!("stockflow_sink_rows_deleted_total").increment(applied.deleted);
        metrics::counter!("stockflow_sink_rows_refused_total").increment(applied.refused);
        metrics::counter!("stockflow_sink_state_rows_total").increment(state_rows);
        self.refused_known += applied.refused;
        self.last_offsets.clone_from(&batch.offsets);
        if let (Some(newest), true) = (
            batch.newest_record_ms,
            applied.upserted + applied.deleted > 0,
        ) {
            m.record_latency(unix_ms() - newest);
        }
        if self.publish.is_some() && !batch.evaluations.is_empty() {
            self.drain_with_retries()?;
        }
        Ok(())
    }

    fn check(&mut self) -> stockflow_core::Result<()> {
        let lost = self
            .heartbeat
            .as_ref()
            .is_some_and(|h| h.lost.load(Ordering::SeqCst));
        if !lost {
            return Ok(());
        }
        let (job, epoch) = (self.job.clone(), self.epoch);
        let holder = self
            .conn()
            .and_then(|c| lease::read(c, &job))
            .ok()
            .flatten()
            .filter(|l| l.epoch != epoch)
            .map_or_else(|| "another run".to_string(), |l| l.describe());
        Err(Error::LeaseLost { job, holder }.into())
    }

    fn finish(&mut self) -> stockflow_core::Result<()> {
        self.heartbeat = None;
        let (job, epoch) = (self.job.clone(), self.epoch);
        if let Ok(conn) = self.conn() {
            if let Err(e) = lease::release(conn, &job, epoch) {
                tracing::warn!("releasing the job's lease: {e}");
            }
        }
        Ok(())
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
                    format!("{}.{:02}0000", 1_000_000 + i, i % 100),
                    format!("{}.500000", i % 1000),
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

/// The server's raw bulk-load rates (rows/s), each the best of two runs, alternated.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadRates {
    /// `LOAD DATA LOCAL INFILE` into a copy of `evaluations` as it was before V9 (with the
    /// index by investor).
    pub with_investor_index: f64,
    /// The same into a copy of `evaluations` as it is now (primary key only).
    pub primary_key_only: f64,
}

/// The server's own bulk-load rate into a table shaped like `evaluations`: `rows` rows,
/// encoded before the clock starts, loaded 100,000 a transaction (a catch-up's commit) with
/// plain `LOAD DATA LOCAL INFILE` into empty scratch tables (dropped afterwards). What the
/// sink's commit path is measured against.
pub fn raw_load_rates(cfg: &MySqlConfig, rows: usize) -> Result<LoadRates> {
    const PER_COMMIT: usize = 100_000;
    let mut conn = cfg.connect()?;
    let day0 = chrono::NaiveDate::from_ymd_opt(2000, 1, 3).unwrap_or_default();
    let mut chunks = Vec::new();
    let mut done = 0usize;
    while done < rows {
        let n = (rows - done).min(PER_COMMIT);
        let mut r = bulk::Rows::with_capacity(n * 64);
        for i in done..done + n {
            let day = day0 + chrono::Duration::days((i / 20_000) as i64);
            let units = i128::try_from(i).unwrap_or(0);
            r.text(&format!("I{:03}", i % 100))
                .text(&format!("Q{:05}", i % 20_000))
                .date(day)
                .money(stockflow_core::Money::from_units(
                    1_000_000_000_000 + units * 10_000,
                ))
                .money(stockflow_core::Money::from_units(units % 1000 * 500_000))
                .money(stockflow_core::Money::from_units(123_456));
            r.end();
        }
        chunks.push(r.finish());
        done += n;
    }
    let once = |conn: &mut Conn, with_index: bool| -> Result<f64> {
        conn.query_drop("DROP TABLE IF EXISTS bench_raw_load")?;
        conn.query_drop("CREATE TABLE bench_raw_load LIKE evaluations")?;
        if with_index {
            conn.query_drop(
                "ALTER TABLE bench_raw_load ADD KEY evaluations_by_investor (investor, portfolio, as_of)",
            )?;
        }
        let target = bulk::Target {
            table: "bench_raw_load",
            columns: bulk::EVALUATIONS.columns,
            replace: false,
        };
        let started = Instant::now();
        for chunk in &chunks {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            bulk::load(&mut tx, &target, chunk)?;
            tx.commit()?;
        }
        let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
        conn.query_drop("DROP TABLE IF EXISTS bench_raw_load")?;
        Ok(rate)
    };
    let mut rates = LoadRates::default();
    for _ in 0..2 {
        rates.with_investor_index = rates.with_investor_index.max(once(&mut conn, true)?);
        rates.primary_key_only = rates.primary_key_only.max(once(&mut conn, false)?);
    }
    Ok(rates)
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
        let m = migrations();
        assert!(m.len() >= 4);
        for (i, (v, _)) in m.iter().enumerate() {
            assert_eq!(*v as usize, i + 1);
        }
    }
}
