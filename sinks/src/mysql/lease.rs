//! One writer per database: a lease row per job (epoch, the run's random id, its host, pid and
//! pid namespace, the MySQL connection its transactions run on, the commit sequence number)
//! and a heartbeat row beside it.
//!
//! A run takes the lease at start: it refuses while another live run holds it, unless told to
//! take over, which bumps the epoch. Every transaction locks the lease row, checks the epoch and
//! the commit sequence number it last wrote, and bumps the number. A holder that hangs with a
//! transaction open (a stopped process, a partitioned host) keeps the row locked: the lease is
//! taken with short lock waits, and a run entitled to it (a takeover, or a stale holder) ends
//! the holder's MySQL connection, which rolls the holder's transaction back. The holder, if it
//! wakes, finds another epoch and writes nothing more. The heartbeat is refreshed from a thread
//! on a row no commit locks, so a long commit never makes a live run look stale.
//!
//! The first job that takes a lease on a database owns it (`database_owner`): the tables hold
//! one job's rows and state, and other job names are refused.

use crate::{Error, Result};
use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A lease whose heartbeat is older than this is stale.
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the holder refreshes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long taking the lease waits for its row lock before asking who holds it.
pub const LOCK_WAIT_SECS: u32 = 2;
/// How long taking the lease keeps trying (a holder's connection ended, a commit finishing).
const ACQUIRE_FOR: Duration = Duration::from_secs(30);

/// Who holds (or asks for) a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// The boot id and pid namespace: two processes with the same host name see each other's
    /// pids only when these match (containers share host names and pid 1).
    pub pid_ns: String,
    /// Random per run: the lease's identity.
    pub run_id: String,
}

fn first_line(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Holder {
    /// This process, with a new run id.
    pub fn this_process() -> Self {
        let host = first_line("/proc/sys/kernel/hostname")
            .or_else(|| first_line("/etc/hostname"))
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown-host".into());
        let boot = first_line("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let ns = std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Holder {
            host,
            pid: std::process::id(),
            pid_ns: format!("{boot}/{ns}"),
            run_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Whether this process can tell if `other`'s pid is alive.
    fn shares_pids_with(&self, other: &Holder) -> bool {
        self.host == other.host && !self.pid_ns.is_empty() && self.pid_ns == other.pid_ns
    }
}

/// A lease row as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub epoch: i64,
    pub holder: Holder,
    pub started_at: String,
    pub heartbeat_age: Duration,
    /// When the last heartbeat was, on the server's clock (µs since 2000-01-01): compared
    /// across reads, it tells a beat from the time a read took.
    pub heartbeat_at_us: i64,
    /// The MySQL connection the holder's transactions run on (0: not known).
    pub conn_id: u64,
    /// The holder's last commit.
    pub commit_seq: i64,
}

impl LeaseRow {
    pub fn released(&self) -> bool {
        self.holder.pid == 0
    }

    pub fn describe(&self) -> String {
        if self.released() {
            return format!(
                "epoch {}, released by host {} (started {})",
                self.epoch, self.holder.host, self.started_at
            );
        }
        format!(
            "epoch {} on host {} (pid {}, run {}), started {}, last heartbeat {:.1} s ago",
            self.epoch,
            self.holder.host,
            self.holder.pid,
            short(&self.holder.run_id),
            self.started_at,
            self.heartbeat_age.as_secs_f64()
        )
    }
}

fn short(run_id: &str) -> &str {
    run_id.get(..8).unwrap_or(run_id)
}

/// Whether a process of this host is alive (Linux: /proc/PID exists).
fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// Whether the lease still protects a live run other than `me`: not released, a fresh
/// heartbeat, and (when `me` can see the holder's pids) a holder process that exists.
pub fn is_live(row: &LeaseRow, me: &Holder) -> bool {
    if row.released() || row.heartbeat_age >= LEASE_TIMEOUT {
        return false;
    }
    if row.holder.run_id == me.run_id {
        return false;
    }
    if me.shares_pids_with(&row.holder) && row.holder.pid != me.pid {
        return pid_alive(row.holder.pid);
    }
    true
}

const SELECT: &str = "SELECT l.epoch, l.host, l.pid, l.pid_ns, l.run_id, l.conn_id, l.commit_seq, \
     CAST(l.started_at AS CHAR), \
     GREATEST(TIMESTAMPDIFF(MICROSECOND, COALESCE(h.heartbeat_at, l.heartbeat_at), NOW(6)), 0), \
     TIMESTAMPDIFF(MICROSECOND, '2000-01-01', COALESCE(h.heartbeat_at, l.heartbeat_at)) \
     FROM job_leases l LEFT JOIN job_heartbeats h ON h.job = l.job WHERE l.job = ?";

type Raw = (i64, String, i64, String, String, u64, i64, String, i64, i64);

fn row(
    (epoch, host, pid, pid_ns, run_id, conn_id, commit_seq, started_at, age_us, beat_us): Raw,
) -> LeaseRow {
    LeaseRow {
        epoch,
        holder: Holder {
            host,
            pid: u32::try_from(pid).unwrap_or(0),
            pid_ns,
            run_id,
        },
        started_at,
        heartbeat_age: Duration::from_micros(u64::try_from(age_us).unwrap_or(0)),
        heartbeat_at_us: beat_us,
        conn_id,
        commit_seq,
    }
}

/// The job's lease, if one was ever taken (a plain read: never waits for a lock).
pub fn read<Q: Queryable>(conn: &mut Q, job: &str) -> Result<Option<LeaseRow>> {
    Ok(conn.exec_first::<Raw, _, _>(SELECT, (job,))?.map(row))
}

/// What taking the lease gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    pub epoch: i64,
    /// The commit sequence number the database holds.
    pub commit_seq: i64,
    /// Set when a `db rebuild` started and did not finish (its start time).
    pub rebuild_started: Option<String>,
}

fn is_lock_wait_timeout(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::MySqlError(me) if me.code == 1205)
}

/// The job that owns the database, claiming it for `job` when nobody does. Refuses another
/// job's database. Runs inside the lease's transaction.
fn claim_database(tx: &mut mysql::Transaction<'_>, job: &str) -> Result<Option<String>> {
    let owner: Option<(String, Option<String>)> = tx.query_first(
        "SELECT job, CAST(rebuild_started_at AS CHAR) FROM database_owner WHERE id = 1 FOR UPDATE",
    )?;
    let database: Option<String> = tx.query_first("SELECT DATABASE()")?;
    let database = database.unwrap_or_default();
    match owner {
        Some((owner, _)) if owner != job => Err(Error::OtherJob {
            database,
            owner,
            job: job.to_string(),
        }),
        Some((_, rebuild)) => Ok(rebuild),
        None => {
            // A database written before owners were kept: its owner is the job it has
            // progress or a lease for.
            let other: Option<String> = tx.exec_first(
                "SELECT job FROM (SELECT job FROM stream_progress UNION SELECT job FROM job_leases) j \
                 WHERE job <> ? LIMIT 1",
                (job,),
            )?;
            if let Some(owner) = other {
                return Err(Error::OtherJob {
                    database,
                    owner,
                    job: job.to_string(),
                });
            }
            tx.exec_drop("INSERT INTO database_owner (id, job) VALUES (1, ?)", (job,))?;
            Ok(None)
        }
    }
}

/// Takes the job's lease: refuses while a live run holds it, unless `takeover`, and refuses
/// a database another job owns. A holder whose transaction keeps the lease row locked is cut
/// off (its MySQL connection ended) when this run is entitled to the lease.
pub fn acquire(conn: &mut Conn, job: &str, me: &Holder, takeover: bool) -> Result<Acquired> {
    conn.query_drop(format!(
        "SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECS}"
    ))?;
    let out = acquire_with_short_waits(conn, job, me, takeover);
    let restored = conn.query_drop("SET SESSION innodb_lock_wait_timeout = DEFAULT");
    let out = out?;
    restored?;
    Ok(out)
}

fn acquire_with_short_waits(
    conn: &mut Conn,
    job: &str,
    me: &Holder,
    takeover: bool,
) -> Result<Acquired> {
    let started = Instant::now();
    let own_conn: Option<u64> = conn.query_first("SELECT CONNECTION_ID()")?;
    let own_conn = own_conn.unwrap_or(0);
    let mut last = String::from("another run");
    let mut watch = HeartbeatWatch::default();
    let mut told = false;
    while started.elapsed() < ACQUIRE_FOR {
        match try_acquire(conn, job, me, takeover, own_conn) {
            Ok(Attempt::Taken(acquired)) => return Ok(acquired),
            Ok(Attempt::Held(row)) => match watch.judge(&row, me) {
                Judged::Running(why) => {
                    return Err(Error::LeaseHeld {
                        job: job.to_string(),
                        holder: format!("{}: {why}", row.describe()),
                    })
                }
                Judged::Wait(why) => {
                    if !told {
                        told = true;
                        tracing::warn!(job, "waiting for the lease of {}: {why}", row.describe());
                    }
                    last = format!("{} ({why})", row.describe());
                    std::thread::sleep(HEARTBEAT / 4);
                }
            },
            Err(Error::MySql(e)) if is_lock_wait_timeout(&e) => {
                last = "the lease row stayed locked by an open transaction".into();
                cut_off_blocking_holder(conn, job, me, takeover, own_conn)?
            }
            // Another run inserted the first lease row at the same time: look again.
            Err(Error::MySql(mysql::Error::MySqlError(e))) if e.code == 1062 => {}
            Err(e) => return Err(e),
        }
    }
    Err(Error::LeaseBusy {
        job: job.to_string(),
        holder: last,
        secs: ACQUIRE_FOR.as_secs(),
    })
}

/// Said of a live holder whose heartbeat is older than a few beats.
const STOPPED_BEATING: &str = "its heartbeat has stopped";

/// What one try at the lease found.
enum Attempt {
    Taken(Acquired),
    /// A live run other than this one holds it (and this is no takeover).
    Held(LeaseRow),
}

/// What a run that finds the lease held makes of its holder.
#[derive(Debug, PartialEq, Eq)]
enum Judged {
    /// The holder runs: refuse, saying how this is known.
    Running(String),
    /// The holder may be dead: wait (its lease goes stale within `LEASE_TIMEOUT`).
    Wait(String),
}

/// Watches a live lease's heartbeat across tries. A holder in this pid namespace is judged by
/// its process; one in another namespace or on another host (a container or pod restarted,
/// the job moved) cannot be, so it runs only if its heartbeat moves on while this run watches
/// (it beats every `HEARTBEAT`), and is otherwise waited for until its lease is stale. A
/// restart of a dead job then never refuses; a second job beside a running one does, within
/// about one beat.
#[derive(Debug, Default)]
struct HeartbeatWatch {
    /// The holder watched (epoch, run id) and its heartbeat's time on the server's clock (only
    /// a new beat changes it: the time reads take plays no part).
    first: Option<(i64, String, i64)>,
}

impl HeartbeatWatch {
    fn judge(&mut self, row: &LeaseRow, me: &Holder) -> Judged {
        if me.shares_pids_with(&row.holder) {
            // is_live found its process alive.
            return if stopped_beating(row) {
                Judged::Wait(format!(
                    "{STOPPED_BEATING}: its process {} hangs; its lease goes stale {:.0} s after \
                     its last heartbeat",
                    row.holder.pid,
                    LEASE_TIMEOUT.as_secs_f64()
                ))
            } else {
                Judged::Running(format!(
                    "its process {} is alive on this host",
                    row.holder.pid
                ))
            };
        }
        match &self.first {
            Some((epoch, run, first)) if *epoch == row.epoch && *run == row.holder.run_id => {
                if row.heartbeat_at_us > *first {
                    return Judged::Running(format!(
                        "its heartbeat moved on while this run watched it (by {:.1} s, now \
                         {:.1} s ago): it runs elsewhere",
                        (row.heartbeat_at_us - first) as f64 / 1e6,
                        row.heartbeat_age.as_secs_f64()
                    ));
                }
            }
            _ => self.first = Some((row.epoch, row.holder.run_id.clone(), row.heartbeat_at_us)),
        }
        Judged::Wait(format!(
            "its holder runs in another pid namespace or on another host, where this run cannot \
             check its process; its heartbeat ({:.1} s old) has not moved since, so it is taken \
             when {:.0} s old, unless it beats again",
            row.heartbeat_age.as_secs_f64(),
            LEASE_TIMEOUT.as_secs_f64()
        ))
    }
}

/// A holder whose heartbeat is older than three beats has stopped (or hangs).
fn stopped_beating(row: &LeaseRow) -> bool {
    row.heartbeat_age > HEARTBEAT * 3
}

/// The lease row is locked by a transaction that does not end. If this run may take the
/// lease (a takeover, or the holder is gone), ends the holder's connection.
fn cut_off_blocking_holder(
    conn: &mut Conn,
    job: &str,
    me: &Holder,
    takeover: bool,
    own_conn: u64,
) -> Result<()> {
    let Some(cur) = read(conn, job)? else {
        return Ok(());
    };
    if is_live(&cur, me) && !takeover {
        if stopped_beating(&cur) || !me.shares_pids_with(&cur.holder) {
            // Wait for it to go stale (the caller retries): a holder that hangs, or one whose
            // process cannot be checked from here (a restarted container), which the lease's
            // heartbeat judges.
            return Ok(());
        }
        return Err(Error::LeaseHeld {
            job: job.to_string(),
            holder: format!("{} (committing now)", cur.describe()),
        });
    }
    if cur.conn_id == 0 || cur.conn_id == own_conn {
        return Ok(());
    }
    // A connection of this MySQL user (a user sees its own threads without any privilege) is
    // ended only when it has stayed in the same state for the whole lock wait: idle inside
    // its transaction (a hung holder), or inside a statement that does not end (a holder
    // stopped in the middle of streaming a bulk load keeps the server waiting for the rest
    // of its rows). One that moved more recently is left alone and the lease asked for again.
    // One not listed is gone, or another user's: KILL then answers "unknown thread" or "not
    // owner" (below). This run is entitled to the lease (a takeover, or the holder is gone),
    // so ending a commit the holder is still making only fences it a moment earlier.
    let listed: Option<(String, u64)> = conn.exec_first(
        "SELECT COMMAND, TIME FROM information_schema.PROCESSLIST WHERE ID = ?",
        (cur.conn_id,),
    )?;
    if let Some((_, secs)) = listed {
        if secs < u64::from(LOCK_WAIT_SECS) {
            return Ok(());
        }
    }
    tracing::warn!(
        job,
        connection = cur.conn_id,
        "the lease's holder ({}) keeps a transaction open on the lease: ending its MySQL \
         connection {} (its open transaction rolls back; if it wakes it finds the lease taken \
         and writes nothing more)",
        cur.describe(),
        cur.conn_id
    );
    match conn.query_drop(format!("KILL CONNECTION {}", cur.conn_id)) {
        Ok(()) => Ok(()),
        // Already gone.
        Err(mysql::Error::MySqlError(e)) if e.code == 1094 => Ok(()),
        Err(mysql::Error::MySqlError(e)) if e.code == 1095 => Err(Error::State(format!(
            "the lease of job {job} is locked by MySQL connection {} ({}), which belongs to \
             another MySQL user: end it as an administrator (KILL CONNECTION {}) and start \
             this run again",
            cur.conn_id,
            cur.describe(),
            cur.conn_id
        ))),
        Err(e) => Err(e.into()),
    }
}

fn try_acquire(
    conn: &mut Conn,
    job: &str,
    me: &Holder,
    takeover: bool,
    own_conn: u64,
) -> Result<Attempt> {
    let mut tx = conn.start_transaction(TxOpts::default())?;
    // The lock first (a plain read could see a row a hung holder is about to change).
    let locked: Option<i64> = tx.exec_first(
        "SELECT epoch FROM job_leases WHERE job = ? FOR UPDATE",
        (job,),
    )?;
    let current = match locked {
        Some(_) => read(&mut tx, job)?,
        None => None,
    };
    let rebuild_started = claim_database(&mut tx, job)?;
    let (epoch, commit_seq) = match current {
        // The transaction rolls back as it drops.
        Some(cur) if is_live(&cur, me) && !takeover => return Ok(Attempt::Held(cur)),
        Some(cur) => {
            if is_live(&cur, me) {
                tracing::warn!(job, "taking over the lease from {}", cur.describe());
            } else {
                tracing::info!(
                    job,
                    "taking the lease (previous holder gone: {})",
                    cur.describe()
                );
            }
            let epoch = cur.epoch + 1;
            tx.exec_drop(
                "UPDATE job_leases SET epoch = ?, host = ?, pid = ?, pid_ns = ?, run_id = ?, \
                 conn_id = ?, started_at = NOW(6), heartbeat_at = NOW(6) WHERE job = ?",
                (
                    epoch, &me.host, me.pid, &me.pid_ns, &me.run_id, own_conn, job,
                ),
            )?;
            (epoch, cur.commit_seq)
        }
        None => {
            tx.exec_drop(
                "INSERT INTO job_leases (job, epoch, host, pid, pid_ns, run_id, conn_id) \
                 VALUES (?, 1, ?, ?, ?, ?, ?)",
                (job, &me.host, me.pid, &me.pid_ns, &me.run_id, own_conn),
            )?;
            (1, 0)
        }
    };
    tx.exec_drop(
        "INSERT INTO job_heartbeats (job, epoch, heartbeat_at) VALUES (?, ?, NOW(6)) \
         ON DUPLICATE KEY UPDATE epoch = VALUES(epoch), heartbeat_at = VALUES(heartbeat_at)",
        (job, epoch),
    )?;
    tx.commit()?;
    Ok(Attempt::Taken(Acquired {
        epoch,
        commit_seq,
        rebuild_started,
    }))
}

/// A run other than `me` holding a live lease on this database (any job, any schema version
/// since the lease table exists), for refusing migrations under it.
pub fn any_live(conn: &mut Conn, me: &Holder) -> Result<Option<LeaseRow>> {
    let missing = |e: &mysql::Error| matches!(e, mysql::Error::MySqlError(me) if me.code == 1146 || me.code == 1054);
    let all = SELECT.replace(" WHERE l.job = ?", "");
    // Before V6 the lease had no run id, connection or sequence, and its own heartbeat.
    let before_v6 = "SELECT epoch, host, pid, '', '', 0, 0, CAST(started_at AS CHAR), \
         GREATEST(TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6)), 0), \
         TIMESTAMPDIFF(MICROSECOND, '2000-01-01', heartbeat_at) FROM job_leases";
    let rows: Vec<Raw> = match conn.query(all) {
        Err(e) if missing(&e) => match conn.query(before_v6) {
            Err(e) if missing(&e) => return Ok(None),
            other => other?,
        },
        other => other?,
    };
    Ok(rows.into_iter().map(row).find(|r| is_live(r, me)))
}

/// Whether a live holder has stopped beating (it goes stale within `LEASE_TIMEOUT`: wait).
pub fn is_fading(row: &LeaseRow) -> bool {
    stopped_beating(row)
}

/// Records the connection the holder's transactions now run on (after a reconnect), so that a
/// replacement can end it. Outside any transaction: a replacement must see it.
pub fn record_connection(conn: &mut Conn, job: &str, epoch: i64) -> Result<u64> {
    let id: Option<u64> = conn.query_first("SELECT CONNECTION_ID()")?;
    let id = id.unwrap_or(0);
    conn.exec_drop(
        "UPDATE job_leases SET conn_id = ? WHERE job = ? AND epoch = ?",
        (id, job, epoch),
    )?;
    Ok(id)
}

/// Checks, inside a transaction, that this run (`epoch` and `run_id`) still holds the lease
/// and that the database holds its last commit (`seq`), and bumps the commit number: one
/// conditional `UPDATE` whose answer says it all (one row changed). The row stays locked until
/// the transaction ends, so a takeover waits for the commit (or ends it). Only when no row
/// changed does a plain read tell why (taken over, rolled back, deleted).
pub fn check(
    tx: &mut mysql::Transaction<'_>,
    job: &str,
    epoch: i64,
    run_id: &str,
    seq: i64,
) -> Result<i64> {
    tx.exec_drop(
        "UPDATE job_leases SET commit_seq = commit_seq + 1 \
         WHERE job = ? AND epoch = ? AND run_id = ? AND commit_seq = ?",
        (job, epoch, run_id, seq),
    )?;
    if tx.affected_rows() == 1 {
        return Ok(seq + 1);
    }
    match read(tx, job)? {
        Some(cur) if cur.epoch == epoch && cur.holder.run_id == run_id => Err(Error::Diverged {
            job: job.to_string(),
            expected: seq,
            found: cur.commit_seq,
        }),
        Some(cur) => Err(Error::LeaseLost {
            job: job.to_string(),
            holder: cur.describe(),
        }),
        None => Err(Error::LeaseLost {
            job: job.to_string(),
            holder: "nobody (the lease row was deleted: the database was restored or reset)".into(),
        }),
    }
}

/// Gives the lease up (a clean stop): the next run takes it at once.
pub fn release(conn: &mut Conn, job: &str, epoch: i64) -> Result<()> {
    conn.exec_drop(
        "UPDATE job_leases SET pid = 0, conn_id = 0 WHERE job = ? AND epoch = ?",
        (job, epoch),
    )?;
    conn.exec_drop(
        "UPDATE job_heartbeats SET heartbeat_at = TIMESTAMP('1970-01-02') \
         WHERE job = ? AND epoch = ?",
        (job, epoch),
    )?;
    Ok(())
}

/// Refreshes the heartbeat every `HEARTBEAT` until dropped. A lost lease is noticed by the
/// next batch's check; the heartbeat only keeps a live run from looking stale.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    /// Set once the heartbeat found another epoch holding the lease.
    pub lost: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(cfg: super::MySqlConfig, job: String, epoch: i64) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_t = Arc::clone(&stop);
        let lost = Arc::new(AtomicBool::new(false));
        let lost_t = Arc::clone(&lost);
        let handle = std::thread::Builder::new()
            .name("stockflow-lease".into())
            .spawn(move || {
                let mut conn: Option<Conn> = None;
                while !stop_t.load(Ordering::SeqCst) {
                    if conn.is_none() {
                        conn = cfg.connect_with_timeout(HEARTBEAT * 2).ok();
                    }
                    if let Some(c) = conn.as_mut() {
                        let beat = c
                            .exec_drop(
                                "UPDATE job_heartbeats SET heartbeat_at = NOW(6) \
                                 WHERE job = ? AND epoch = ?",
                                (&job, epoch),
                            )
                            .and_then(|()| {
                                if c.affected_rows() > 0 {
                                    return Ok(None);
                                }
                                c.exec_first::<i64, _, _>(
                                    "SELECT epoch FROM job_leases WHERE job = ?",
                                    (&job,),
                                )
                            });
                        match beat {
                            Ok(Some(current)) if current != epoch => {
                                lost_t.store(true, Ordering::SeqCst);
                                return;
                            }
                            Ok(_) => {}
                            Err(_) => conn = None,
                        }
                    }
                    // Sleep in small steps so that a stop is quick.
                    for _ in 0..(HEARTBEAT.as_millis() / 100) {
                        if stop_t.load(Ordering::SeqCst) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })?;
        Ok(Heartbeat {
            stop,
            lost,
            handle: Some(handle),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Marks a `db rebuild` as started (inside a fenced transaction): `run` refuses to start
/// until [`rebuild_finished`] clears it.
pub fn rebuild_started(tx: &mut mysql::Transaction<'_>) -> Result<()> {
    tx.query_drop("UPDATE database_owner SET rebuild_started_at = NOW(6) WHERE id = 1")?;
    Ok(())
}

pub fn rebuild_finished(tx: &mut mysql::Transaction<'_>) -> Result<()> {
    tx.query_drop("UPDATE database_owner SET rebuild_started_at = NULL WHERE id = 1")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &Holder, age_s: u64) -> LeaseRow {
        LeaseRow {
            epoch: 3,
            holder: holder.clone(),
            started_at: "2026-01-01 00:00:00".into(),
            heartbeat_age: Duration::from_secs(age_s),
            heartbeat_at_us: 0,
            conn_id: 7,
            commit_seq: 11,
        }
    }

    fn other(host: &str, pid: u32, pid_ns: &str) -> Holder {
        Holder {
            host: host.into(),
            pid,
            pid_ns: pid_ns.into(),
            run_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    #[test]
    fn liveness() {
        let me = Holder::this_process();
        // Another host with a fresh heartbeat: live; with an old one: stale.
        assert!(is_live(&lease(&other("elsewhere", 1, "x"), 1), &me));
        assert!(!is_live(&lease(&other("elsewhere", 1, "x"), 60), &me));
        // This host and pid namespace: live while the pid exists (our parent's does).
        let parent = std::os::unix::process::parent_id();
        assert!(is_live(
            &lease(&other(&me.host, parent, &me.pid_ns), 1),
            &me
        ));
        assert!(!is_live(
            &lease(&other(&me.host, u32::MAX - 7, &me.pid_ns), 1),
            &me
        ));
        // Our own run's lease is not another live run.
        assert!(!is_live(&lease(&me, 1), &me));
        // Released.
        assert!(!is_live(&lease(&other("elsewhere", 0, "x"), 1), &me));
    }

    #[test]
    fn same_host_name_and_pid_in_another_namespace_is_not_taken_for_this_run() {
        // Two containers with one host name, both pid 1: the other one's lease stays live
        // while its heartbeat is fresh (a host and a pid no longer identify a run).
        let me = Holder {
            host: "app".into(),
            pid: 1,
            pid_ns: "boot-a/pid:[1]".into(),
            run_id: "a".repeat(32),
        };
        let twin = Holder {
            host: "app".into(),
            pid: 1,
            pid_ns: "boot-a/pid:[2]".into(),
            run_id: "b".repeat(32),
        };
        assert!(is_live(&lease(&twin, 1), &me));
        // Same namespace, same pid, another run: cannot be a live other process of ours,
        // but its heartbeat is the only judge (pid 1 of this namespace is alive).
        let same_ns = Holder {
            pid_ns: me.pid_ns.clone(),
            ..twin
        };
        assert!(is_live(&lease(&same_ns, 1), &me));
        assert!(!is_live(&lease(&same_ns, 20), &me));
    }

    #[test]
    fn a_holder_that_cannot_be_checked_is_waited_for_unless_its_heartbeat_moves() {
        let me = Holder::this_process();
        // The same host name, another pid namespace (a container restarted): its pid means
        // nothing here.
        let elsewhere = other(&me.host, 1, "boot/pid:[4026532999]");
        // Its heartbeat at `beat_s` on the server's clock, read `age_ms` after it.
        let row = |beat_s: i64, age_ms: u64| LeaseRow {
            heartbeat_age: Duration::from_millis(age_ms),
            heartbeat_at_us: beat_s * 1_000_000,
            ..lease(&elsewhere, 0)
        };
        // Killed: its heartbeat stays where it was however slow the reads are, and it is
        // waited for.
        let mut watch = HeartbeatWatch::default();
        for s in 0..10u64 {
            let judged = watch.judge(&row(100, 1_000 + s * 1_700), &me);
            assert!(matches!(judged, Judged::Wait(_)), "{s}: {judged:?}");
        }
        // Alive elsewhere: its next beat moves it on, and the run refuses.
        let mut watch = HeartbeatWatch::default();
        assert!(matches!(
            watch.judge(&row(100, 1_500), &me),
            Judged::Wait(_)
        ));
        assert!(matches!(
            watch.judge(&row(100, 2_500), &me),
            Judged::Wait(_)
        ));
        let judged = watch.judge(&row(102, 100), &me);
        assert!(
            matches!(&judged, Judged::Running(why) if why.contains("moved on")),
            "{judged:?}"
        );
        // Another holder took the lease meanwhile: watched from scratch.
        let mut watch = HeartbeatWatch::default();
        assert!(matches!(
            watch.judge(&row(100, 1_000), &me),
            Judged::Wait(_)
        ));
        let next = LeaseRow {
            epoch: 4,
            ..row(105, 100)
        };
        assert!(matches!(watch.judge(&next, &me), Judged::Wait(_)));
    }

    #[test]
    fn a_holder_in_this_pid_namespace_is_judged_by_its_process() {
        let me = Holder::this_process();
        let parent = other(&me.host, std::os::unix::process::parent_id(), &me.pid_ns);
        let mut watch = HeartbeatWatch::default();
        assert!(matches!(
            watch.judge(&lease(&parent, 1), &me),
            Judged::Running(_)
        ));
        // Alive but silent for more than three beats: it hangs, and goes stale.
        assert!(matches!(
            watch.judge(&lease(&parent, 7), &me),
            Judged::Wait(_)
        ));
    }

    #[test]
    fn each_run_has_its_own_id() {
        let (a, b) = (Holder::this_process(), Holder::this_process());
        assert_ne!(a.run_id, b.run_id);
        assert_eq!(a.run_id.len(), 32);
    }
}
