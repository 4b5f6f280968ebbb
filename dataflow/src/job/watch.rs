//! A cluster's watchdogs: a cluster that does not form, a process that is not heard from.
//!
//! Each runs on a thread of its own. When it fires, it stops the job through the job's own
//! path ([`JobCounters::abort`]: the workers stop reading, the commit thread commits the
//! complete batches it holds and releases the lease), waits for the release (at most
//! [`RELEASE_GRACE`]), then hands its message to `on_stuck`, which ends the process: a job
//! whose cluster has a process that hangs cannot end through timely (its workers wait for
//! that process's progress).

use super::counters::JobCounters;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a watchdog's stop waits for the commit thread to release the lease.
pub const RELEASE_GRACE: Duration = Duration::from_secs(30);

/// How often the peer watchdog looks at the beats.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Stops the job for `message` and waits (bounded) until the commit thread has released the
/// lease; then `on_stuck(message)`.
fn stop_for(counters: &JobCounters, message: String, on_stuck: impl FnOnce(String)) {
    tracing::error!("{message}");
    counters.abort(message.clone());
    let deadline = Instant::now() + RELEASE_GRACE;
    while counters.commit_thread.load(SeqCst) && !counters.released.load(SeqCst) {
        if Instant::now() > deadline {
            tracing::warn!(
                "the commit thread did not release the lease within {} s: it goes stale on its \
                 own",
                RELEASE_GRACE.as_secs()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    on_stuck(message);
}

/// Timely waits for every process of the hostfile to connect: one that never comes must not
/// leave this one waiting for good. Fires when the workers have not started after `limit`.
pub fn watch_formation(
    counters: Arc<JobCounters>,
    processes: usize,
    limit: Duration,
    on_stuck: impl FnOnce(String) + Send + 'static,
) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        if !counters.started.load(SeqCst) {
            let message = format!(
                "the cluster did not form within {} s: not all {processes} processes of the \
                 hostfile connected (is each one started with its --process index?)",
                limit.as_secs()
            );
            stop_for(&counters, message, on_stuck);
        }
    });
}

/// Every process beats in every wait while it runs; a process silent for longer than `limit`
/// (stopped, its host frozen, its network cut) would hold every other process still while
/// their leases stay fresh. Fires naming that process; what was committed stays, and the
/// cluster restarts together. Ends quietly once `done` is set.
pub fn watch_peers(
    counters: Arc<JobCounters>,
    done: Arc<AtomicBool>,
    (processes, me): (usize, usize),
    limit: Duration,
    on_stuck: impl FnOnce(String) + Send + 'static,
) {
    std::thread::spawn(move || {
        while !counters.started.load(SeqCst) {
            if done.load(SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let since = Instant::now();
        loop {
            std::thread::sleep(LOOK_EVERY);
            if done.load(SeqCst) {
                return;
            }
            let beats = counters
                .peer_beats
                .lock()
                .map(|b| b.clone())
                .unwrap_or_default();
            let silent = (0..processes)
                .filter(|p| *p != me)
                .map(|p| (p, beats.get(&p).copied().unwrap_or(since)))
                .find(|(_, last)| last.elapsed() > limit);
            if let Some((p, last)) = silent {
                let message = format!(
                    "process {p} of the cluster has not been heard from for {} s (stopped, its \
                     host frozen or its network cut): the cluster cannot go on without it. What \
                     was committed stays; stop every process and start the cluster again (each \
                     with `stockflow run … --process N`)",
                    last.elapsed().as_secs()
                );
                stop_for(&counters, message, on_stuck);
                return;
            }
        }
    });
}
