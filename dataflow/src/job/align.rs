//! The workers of one process read in step by trading day: before each read a worker publishes
//! the order key (`decode::trading_day_order`) of the next record its source would hand over,
//! and reads nothing later than the earliest of all. Without it, workers that read partitions of different sizes or speeds
//! drift apart during a catch-up, and days are evaluated while another worker has not read
//! their closes yet (correct in the end, but every such day is written twice).
//!
//! The worker with the earliest next record can always read it, so the workers never wait on
//! each other for good. Workers of other processes are not aligned by key; they learn each
//! other's times through the control plane (`runtime::ControlPlane`).
//!
//! Each worker also publishes the time it has reached here: a worker with nothing to read takes
//! the latest, so that it never holds the others' timestamps back (the machine's rule).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::thread::Thread;

/// Per worker of the process: its next record's order key (`i64::MAX` when it has nothing to
/// read: caught up or finished) and its time.
pub(super) struct Align {
    next: Vec<AtomicI64>,
    time: AtomicU64,
    /// The workers' threads: a worker held back parks, and is woken as soon as the earliest
    /// key moves (not after its park's timeout: that latency, paid once per catch-up
    /// timestamp, made -w 2 slower than -w 1).
    threads: Mutex<Vec<Option<Thread>>>,
}

impl Align {
    pub fn new(workers: usize) -> Self {
        Align {
            next: (0..workers).map(|_| AtomicI64::new(i64::MAX)).collect(),
            time: AtomicU64::new(0),
            threads: Mutex::new(vec![None; workers]),
        }
    }

    /// Worker `index` runs on the calling thread.
    pub fn register(&self, index: usize) {
        if let Ok(mut t) = self.threads.lock() {
            if let Some(slot) = t.get_mut(index) {
                *slot = Some(std::thread::current());
            }
        }
    }

    fn earliest(&self) -> i64 {
        self.next
            .iter()
            .map(|a| a.load(Relaxed))
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Wakes every other worker (the earliest key moved: one of them may read now).
    fn wake_others(&self, index: usize) {
        if let Ok(t) = self.threads.lock() {
            for (i, th) in t.iter().enumerate() {
                if i != index {
                    if let Some(th) = th {
                        th.unpark();
                    }
                }
            }
        }
    }

    /// A worker reached `time`.
    pub fn publish_time(&self, time: u64) {
        self.time.fetch_max(time, Relaxed);
    }

    /// The latest time any worker of the process reached.
    pub fn latest_time(&self) -> u64 {
        self.time.load(Relaxed)
    }

    /// Publishes worker `index`'s next record key and returns the latest key it may read.
    pub fn step(&self, index: usize, next: Option<i64>) -> Option<i64> {
        let before = self.earliest();
        if let Some(slot) = self.next.get(index) {
            slot.store(next.unwrap_or(i64::MAX), Relaxed);
        }
        let now = self.earliest();
        if now > before {
            self.wake_others(index);
        }
        (now != i64::MAX).then_some(now)
    }

    /// Worker `index` reads nothing more.
    pub fn done(&self, index: usize) {
        if let Some(slot) = self.next.get(index) {
            slot.store(i64::MAX, Relaxed);
        }
        self.wake_others(index);
    }
}

#[cfg(test)]
mod tests {
    use super::Align;

    #[test]
    fn the_earliest_worker_sets_the_limit() {
        let a = Align::new(3);
        assert_eq!(a.step(0, Some(50)), Some(50));
        assert_eq!(a.step(1, Some(20)), Some(20));
        // Worker 2 has nothing to read: it holds nobody back.
        assert_eq!(a.step(2, None), Some(20));
        // The earliest worker may always read its own next record.
        assert_eq!(a.step(1, Some(20)), Some(20));
        a.done(1);
        assert_eq!(a.step(0, Some(60)), Some(60));
        a.done(0);
        assert_eq!(a.step(2, None), None);
    }
}
