//! One writer per job: a lease row per job (epoch, host, pid, started, heartbeat). A run takes
//! the lease at start (refusing while another live run holds it, unless told to take over,
//! which bumps the epoch), refreshes the heartbeat from a thread, and every batch's
//! transaction checks that its epoch still holds it. A run killed without a word leaves a
//! stale lease: on the same host its pid is gone, elsewhere its heartbeat stops.

use crate::{Error, Result};
use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A lease whose heartbeat is older than this is stale.
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the holder refreshes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// Who holds (or asks for) a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
}

impl Holder {
    /// This process.
    pub fn this_process() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown-host".into());
        Holder {
            host,
            pid: std::process::id(),
        }
    }
}

/// A lease row as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub epoch: i64,
    pub holder: Holder,
    pub started_at: String,
    pub heartbeat_age: Duration,
}

impl LeaseRow {
    pub fn describe(&self) -> String {
        if self.holder.pid == 0 {
            return format!(
                "epoch {}, released by host {} (started {})",
                self.epoch, self.holder.host, self.started_at
            );
        }
        format!(
            "epoch {} on host {} (pid {}), started {}, last heartbeat {:.1} s ago",
            self.epoch,
            self.holder.host,
            self.holder.pid,
            self.started_at,
            self.heartbeat_age.as_secs_f64()
        )
    }
}

/// Whether a process of this host is alive (Linux: /proc/PID exists).
fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// Whether the lease still protects a live run.
pub fn is_live(row: &LeaseRow, me: &Holder) -> bool {
    if row.holder.pid == 0 || row.heartbeat_age >= LEASE_TIMEOUT {
        return false;
    }
    if row.holder.host == me.host {
        return row.holder.pid != me.pid && pid_alive(row.holder.pid);
    }
    true
}

const SELECT: &str = "SELECT epoch, host, pid, CAST(started_at AS CHAR), \
     GREATEST(TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6)), 0) FROM job_leases WHERE job = ?";

type Raw = (i64, String, i64, String, i64);

fn row((epoch, host, pid, started_at, age_us): Raw) -> LeaseRow {
    LeaseRow {
        epoch,
        holder: Holder {
            host,
            pid: u32::try_from(pid).unwrap_or(0),
        },
        started_at,
        heartbeat_age: Duration::from_micros(u64::try_from(age_us).unwrap_or(0)),
    }
}

/// The job's lease, if one was ever taken.
pub fn read(conn: &mut Conn, job: &str) -> Result<Option<LeaseRow>> {
    Ok(conn.exec_first::<Raw, _, _>(SELECT, (job,))?.map(row))
}

/// Takes the job's lease: refuses while a live run holds it, unless `takeover`. Returns the
/// new epoch.
pub fn acquire(conn: &mut Conn, job: &str, me: &Holder, takeover: bool) -> Result<i64> {
    for _ in 0..3 {
        let mut tx = conn.start_transaction(TxOpts::default())?;
        let current = tx
            .exec_first::<Raw, _, _>(format!("{SELECT} FOR UPDATE"), (job,))?
            .map(row);
        let epoch = match current {
            Some(cur) if is_live(&cur, me) && !takeover => {
                return Err(Error::LeaseHeld {
                    job: job.to_string(),
                    holder: cur.describe(),
                });
            }
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
                    "UPDATE job_leases SET epoch = ?, host = ?, pid = ?, started_at = NOW(6), \
                     heartbeat_at = NOW(6) WHERE job = ?",
                    (epoch, &me.host, me.pid, job),
                )?;
                epoch
            }
            None => {
                let inserted = tx.exec_drop(
                    "INSERT INTO job_leases (job, epoch, host, pid) VALUES (?, 1, ?, ?)",
                    (job, &me.host, me.pid),
                );
                match inserted {
                    Ok(()) => 1,
                    // Another run inserted it first: look again.
                    Err(mysql::Error::MySqlError(e)) if e.code == 1062 => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        tx.commit()?;
        return Ok(epoch);
    }
    Err(Error::LeaseHeld {
        job: job.to_string(),
        holder: "another run (the lease changed hands while this one started)".into(),
    })
}

/// Checks, inside a batch's transaction, that `epoch` still holds the lease (and locks the row
/// until the transaction ends, so a takeover waits for the commit).
pub fn check(tx: &mut mysql::Transaction<'_>, job: &str, epoch: i64) -> Result<()> {
    let current = tx
        .exec_first::<Raw, _, _>(format!("{SELECT} FOR UPDATE"), (job,))?
        .map(row);
    match current {
        Some(cur) if cur.epoch == epoch => Ok(()),
        Some(cur) => Err(Error::LeaseLost {
            job: job.to_string(),
            holder: cur.describe(),
        }),
        None => Err(Error::LeaseLost {
            job: job.to_string(),
            holder: "nobody (the lease row was deleted)".into(),
        }),
    }
}

/// Gives the lease up (a clean stop): the next run takes it at once.
pub fn release(conn: &mut Conn, job: &str, epoch: i64) -> Result<()> {
    conn.exec_drop(
        "UPDATE job_leases SET pid = 0, heartbeat_at = TIMESTAMP('1970-01-02') \
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
                        conn = cfg.connect().ok();
                    }
                    if let Some(c) = conn.as_mut() {
                        let beat = c
                            .exec_drop(
                                "UPDATE job_leases SET heartbeat_at = NOW(6) WHERE job = ? AND epoch = ?",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(host: &str, pid: u32, age_s: u64) -> LeaseRow {
        LeaseRow {
            epoch: 3,
            holder: Holder {
                host: host.into(),
                pid,
            },
            started_at: "2026-01-01 00:00:00".into(),
            heartbeat_age: Duration::from_secs(age_s),
        }
    }

    #[test]
    fn liveness() {
        let me = Holder::this_process();
        // Another host with a fresh heartbeat: live; with an old one: stale.
        assert!(is_live(&lease("elsewhere", 1, 1), &me));
        assert!(!is_live(&lease("elsewhere", 1, 60), &me));
        // This host: live while the pid exists (our parent's does), not our own pid.
        assert!(!is_live(&lease(&me.host, me.pid, 1), &me));
        assert!(!is_live(&lease(&me.host, u32::MAX - 7, 1), &me));
        // Released.
        assert!(!is_live(&lease("elsewhere", 0, 1), &me));
    }
}
