//! Counters shared by the workers and the commit thread of one process, read by the run
//! summary and the metrics endpoint.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use stockflow_core::Batch;

#[derive(Debug, Default)]
pub struct JobCounters {
    /// Set once this process's workers run (for a cluster: once every process connected).
    pub started: std::sync::atomic::AtomicBool,
    pub ticks: AtomicU64,
    pub holdings: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Source errors retried with backoff.
    pub source_errors: AtomicU64,
    /// Evaluation rows inserted / retracted by committed batches.
    pub inserted: AtomicU64,
    pub retracted: AtomicU64,
    /// Batches (completed timestamps) committed.
    pub batches: AtomicU64,
    /// The last committed timestamp.
    pub frontier: AtomicU64,
    /// Portfolio-days with inputs but no evaluation (incomplete or overflow), as of the last
    /// committed batch.
    pub issues: AtomicU64,
    /// The next offset of every partition as of the last committed batch.
    pub offsets: Mutex<BTreeMap<(String, i32), i64>>,
    /// The earliest day a record touched before the restored window (this run stops and the
    /// job re-runs with a window from there).
    pub rewind_to: Mutex<Option<chrono::NaiveDate>>,
    /// Per partition, the offsets a pass applied beyond the offset it committed last (records
    /// are handed over out of offset order): the next pass reads them again, and does not
    /// count them twice in `ticks`/`holdings`/`dead_letters`.
    pub read_ahead: Mutex<BTreeMap<(String, i32), std::collections::BTreeSet<i64>>>,
    /// Per partition, the lowest offset a pass refused (a record about a day the pass did
    /// not hold): the next pass keeps every day until it has read past it
    /// (`until_refused_read`).
    pub refused: Mutex<BTreeMap<(String, i32), i64>>,
    /// Of those, the ones this pass has not read yet.
    pub refused_left: std::sync::atomic::AtomicUsize,
    /// This pass keeps every day until it has read the records the last one refused, then
    /// stops (`StopReason::RefusedRead`): the next keeps `--memory-days` again.
    pub until_refused_read: std::sync::atomic::AtomicBool,
    /// The pass stopped for that (and not, say, caught up first).
    pub stopped_refused_read: std::sync::atomic::AtomicBool,
    /// A cluster: when each process's last beat arrived at this process (the peer watchdog).
    pub peer_beats: Mutex<BTreeMap<usize, std::time::Instant>>,
    /// Set by a watchdog (a peer hangs, the cluster did not form): why the process stops.
    /// The workers stop reading, the commit thread commits the complete batches it holds and
    /// releases the sink (its lease), then the watchdog ends the process.
    abort: Mutex<Option<String>>,
    /// This process has a commit thread (process 0 with a sink).
    pub commit_thread: std::sync::atomic::AtomicBool,
    /// The commit thread released the sink after an abort.
    pub released: std::sync::atomic::AtomicBool,
}

impl JobCounters {
    /// Tells the workers and the commit thread to stop for `why` (the first reason stays).
    pub fn abort(&self, why: String) {
        if let Ok(mut slot) = self.abort.lock() {
            slot.get_or_insert(why);
        }
    }

    /// Why a watchdog stopped the process, if it did.
    pub fn aborted(&self) -> Option<String> {
        self.abort.lock().ok().and_then(|s| s.clone())
    }

    /// Takes in the beats a worker saw (the latest of each process).
    pub fn saw_beats(&self, beats: &BTreeMap<usize, std::time::Instant>) {
        if let Ok(mut all) = self.peer_beats.lock() {
            for (p, at) in beats {
                let e = all.entry(*p).or_insert(*at);
                if *at > *e {
                    *e = *at;
                }
            }
        }
    }

    /// Counts a committed batch.
    pub fn committed(&self, batch: &Batch) {
        self.inserted.fetch_add(batch.inserted(), Relaxed);
        self.retracted.fetch_add(batch.retracted(), Relaxed);
        self.batches.fetch_add(1, Relaxed);
        self.frontier.store(batch.time, Relaxed);
        let delta: i64 = batch.issues.iter().map(|(_, d)| *d as i64).sum();
        if delta >= 0 {
            self.issues.fetch_add(delta.unsigned_abs(), Relaxed);
        } else {
            let _ = self.issues.fetch_update(Relaxed, Relaxed, |v| {
                Some(v.saturating_sub(delta.unsigned_abs()))
            });
        }
        if let Ok(mut o) = self.offsets.lock() {
            for p in &batch.offsets {
                o.insert(
                    (p.position.topic.clone(), p.position.partition),
                    p.position.offset,
                );
            }
        }
    }
}
