//! Commits on their own thread: worker 0 hands completed batches to a bounded queue, and one
//! thread applies them to the sink in order. A full queue holds the job back (backpressure);
//! the dataflow's workers never block on the database.

use super::counters::JobCounters;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use stockflow_core::limits::MAX_DEAD_LETTER_BYTES_PER_ROUND;
use stockflow_core::{Batch, Sink};

/// How often an idle commit thread asks the sink whether it may go on.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// The commit thread's side that the workers see.
#[derive(Debug, Default)]
pub struct CommitState {
    failed: AtomicBool,
    /// The thread has stopped: the queue closed and every batch in it was applied, or the
    /// sink failed.
    finished: AtomicBool,
    error: Mutex<Option<stockflow_core::Error>>,
}

impl CommitState {
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// The error that stopped the commits, if any (taken once).
    pub fn take_error(&self) -> Option<stockflow_core::Error> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    /// The error's text and whose fault it is, for the other workers' stop.
    pub fn describe(&self) -> Option<(String, stockflow_core::Fault)> {
        self.error
            .lock()
            .ok()
            .and_then(|e| e.as_ref().map(|e| (e.to_string(), e.fault)))
    }
}

/// The workers' handle: a bounded queue to the commit thread.
pub struct Outlet {
    tx: SyncSender<Batch>,
    pub state: Arc<CommitState>,
}

impl Outlet {
    /// Offers a batch; gives it back when the queue is full (or the thread has stopped).
    pub fn offer(&self, batch: Batch) -> Option<Batch> {
        match self.tx.try_send(batch) {
            Ok(()) => None,
            Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => Some(b),
        }
    }
}

/// A catch-up's transaction gathers batches until it has this many rows (by default:
/// `--commit-rows`) …
pub const COALESCE_ROWS: usize = 100_000;
/// … or no batch came for this long (the catch-up paused or ended) …
const GATHER_GAP: Duration = Duration::from_millis(500);
/// … or it has gathered for this long (a slow catch-up still commits now and then).
const GATHER_MAX: Duration = Duration::from_secs(30);

/// What the gathering thread hands the commit thread: batches to commit as one transaction.
type Gathered = Vec<Batch>;

/// The rows and dead-letter bytes of what is gathered.
fn size(batches: &[Batch]) -> (usize, usize) {
    batches.iter().fold((0, 0), |(rows, bytes), b| {
        let dead: usize = b
            .dead_letters
            .iter()
            .map(|d| d.payload.len() + d.reason.len())
            .sum();
        (rows + b.rows(), bytes + dead)
    })
}

/// Whether a transaction may take more batches.
fn room(batches: &[Batch], rows_max: usize) -> bool {
    let (rows, dead) = size(batches);
    rows < rows_max && dead < MAX_DEAD_LETTER_BYTES_PER_ROUND
}

/// The next transaction's batches, starting with `first`: the same cadence from any start.
///
/// - A batch read live (every partition at or past its end at the job's start) commits at
///   once, with the batches already waiting behind it: a sink that keeps up commits every day
///   alone (the lowest latency), one that is behind fewer, larger transactions.
/// - During a catch-up the transaction gathers batches as they come until it has
///   `rows_max` rows (or none came for `GATHER_GAP`, or `GATHER_MAX` passed), while the
///   previous transaction commits: whatever the job's start (an empty database, a restart
///   after a crash, a takeover, a replay), a catch-up of N rows commits about N ÷
///   `rows_max` times.
fn gather(first: Batch, rx: &Receiver<Batch>, rows_max: usize) -> Gathered {
    let started = Instant::now();
    let mut batches = vec![first];
    loop {
        if !room(&batches, rows_max) {
            break;
        }
        let catching_up = batches.last().is_some_and(|b| b.catching_up);
        let next = if catching_up && started.elapsed() < GATHER_MAX {
            rx.recv_timeout(GATHER_GAP).ok()
        } else {
            rx.try_recv().ok()
        };
        match next {
            Some(b) => batches.push(b),
            None => break,
        }
    }
    batches
}

/// Starts the commit thread with a queue of `depth` batches. A gathering thread in front of
/// it builds the next transaction (of up to `rows_max` rows, for a sink that
/// [gathers](Sink::gathers)) while the current one commits. The thread gives the sink
/// back when the queue closes (or the sink fails).
pub fn start(
    sink: Box<dyn Sink>,
    depth: usize,
    rows_max: usize,
    counters: Arc<JobCounters>,
) -> std::io::Result<(Outlet, JoinHandle<Box<dyn Sink>>)> {
    // A sink that gathers nothing (`--sink null`) gets each batch alone: a catch-up's
    // transaction of `rows_max` rows is neither held nor merged for it.
    let rows_max = if sink.gathers() { rows_max } else { 0 };
    let (tx, rx): (SyncSender<Batch>, Receiver<Batch>) = sync_channel(depth.max(1));
    // One transaction waits while the previous one commits.
    let (gathered_tx, gathered_rx) = sync_channel::<Gathered>(1);
    let state = Arc::new(CommitState::default());
    let state_t = Arc::clone(&state);
    let state_g = Arc::clone(&state);
    std::thread::Builder::new()
        .name("stockflow-gather".into())
        .spawn(move || {
            // Ends when the queue closes (the job stopped) or the commit thread stopped.
            while let Ok(first) = rx.recv() {
                let batches = gather(first, &rx, rows_max);
                if state_g.failed() || gathered_tx.send(batches).is_err() {
                    break;
                }
            }
        })?;
    counters.commit_thread.store(true, Ordering::SeqCst);
    let handle = std::thread::Builder::new()
        .name("stockflow-commit".into())
        .spawn(move || {
            let mut sink = commit_loop(sink, &gathered_rx, &state_t, &counters);
            if counters.aborted().is_some() {
                // A watchdog ends the process: release the lease now (the job cannot end
                // through timely with a peer that hangs).
                if let Err(e) = sink.finish() {
                    tracing::warn!("releasing the sink after a stop: {e}");
                }
                counters.released.store(true, Ordering::SeqCst);
            }
            state_t.finished.store(true, Ordering::SeqCst);
            sink
        })?;
    Ok((Outlet { tx, state }, handle))
}

/// Applies gathered batches, each gathering as one transaction, until the queue closes or
/// the sink fails; gives the sink back.
fn commit_loop(
    mut sink: Box<dyn Sink>,
    rx: &Receiver<Gathered>,
    state_t: &CommitState,
    counters: &JobCounters,
) -> Box<dyn Sink> {
    let fail = |e: stockflow_core::Error| {
        if let Ok(mut slot) = state_t.error.lock() {
            slot.get_or_insert(e);
        }
        state_t.failed.store(true, Ordering::SeqCst);
    };
    loop {
        match rx.recv_timeout(IDLE_CHECK).map(Batch::merged) {
            Ok(batch) => match sink.apply(&batch) {
                Ok(()) => counters.committed(&batch),
                Err(e) => {
                    fail(e);
                    return sink;
                }
            },
            Err(RecvTimeoutError::Timeout) => {
                if counters.aborted().is_some() {
                    return sink;
                }
                if let Err(e) = sink.check() {
                    fail(e);
                    return sink;
                }
            }
            // The queue closed: the job stopped.
            Err(RecvTimeoutError::Disconnected) => return sink,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockflow_core::{Position, Progress};

    fn batch(time: u64, rows: usize, catching_up: bool) -> Batch {
        Batch {
            time,
            dead_letters: (0..rows)
                .map(|i| {
                    stockflow_core::DeadLetter::new(
                        Position {
                            topic: "t".into(),
                            partition: 0,
                            offset: (time * 1_000_000) as i64 + i as i64,
                        },
                        b"x",
                        "bad_json",
                        "r",
                    )
                })
                .collect(),
            offsets: vec![Progress {
                position: Position {
                    topic: "t".into(),
                    partition: 0,
                    offset: time as i64,
                },
                last: stockflow_core::Last::Unknown,
            }],
            catching_up,
            ..Batch::default()
        }
    }

    /// Records the timestamps of each apply.
    struct Applies {
        gathers: bool,
        seen: Arc<Mutex<Vec<Vec<u64>>>>,
    }

    impl Sink for Applies {
        fn gathers(&self) -> bool {
            self.gathers
        }
        fn apply(&mut self, batch: &Batch) -> stockflow_core::Result<()> {
            let mut times: Vec<u64> = batch
                .dead_letters
                .iter()
                .map(|d| d.position.offset as u64 / 1_000_000)
                .collect();
            times.dedup();
            self.seen.lock().expect("not poisoned").push(times);
            Ok(())
        }
    }

    /// The timestamps of each apply when eight catch-up batches of 10 rows each are offered
    /// at once (the queue holds them all before the threads see the first).
    fn applies(gathers: bool) -> Vec<Vec<u64>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Applies {
            gathers,
            seen: Arc::clone(&seen),
        };
        let (outlet, handle) = start(Box::new(sink), 16, 1_000, Arc::default()).expect("threads");
        for t in 1..=8 {
            assert!(outlet.offer(batch(t, 10, true)).is_none(), "queued");
        }
        drop(outlet);
        handle.join().expect("the commit thread ran");
        let seen = seen.lock().expect("not poisoned").clone();
        seen
    }

    #[test]
    fn a_sink_that_gathers_gets_a_catch_up_merged_and_one_that_does_not_gets_each_batch() {
        let merged = applies(true);
        assert_eq!(
            merged.concat(),
            (1..=8).collect::<Vec<u64>>(),
            "every batch applied once, in order"
        );
        assert!(merged.len() < 8, "gathered: {merged:?}");
        let alone = applies(false);
        assert_eq!(
            alone,
            (1..=8).map(|t| vec![t]).collect::<Vec<_>>(),
            "each batch alone"
        );
    }

    #[test]
    fn a_catch_up_gathers_until_it_is_large_and_a_live_batch_goes_at_once() {
        let (tx, rx) = sync_channel::<Batch>(64);
        // Live: the batch goes with what is already waiting, and no more.
        tx.send(batch(2, 1, false)).expect("queued");
        let live = gather(batch(1, 1, false), &rx, COALESCE_ROWS);
        assert_eq!(live.len(), 2);
        // A catch-up waits for batches still to come, up to COALESCE_ROWS rows.
        let per = COALESCE_ROWS / 4;
        let sender = std::thread::spawn(move || {
            for t in 0..8 {
                tx.send(batch(10 + t, per, true)).expect("queued");
                std::thread::sleep(Duration::from_millis(5));
            }
            tx
        });
        let first = gather(batch(9, per, true), &rx, COALESCE_ROWS);
        assert_eq!(first.len(), 4, "stops once it holds COALESCE_ROWS rows");
        let tx = sender.join().expect("the sender ran");
        // The catch-up ends (a live batch): committed without waiting for more.
        tx.send(batch(30, 1, false)).expect("queued");
        let times = |g: &Gathered| g.iter().map(|b| b.time).collect::<Vec<_>>();
        let second = gather(rx.recv().expect("a batch"), &rx, COALESCE_ROWS);
        assert_eq!(times(&second), [13, 14, 15, 16]);
        let rest = gather(rx.recv().expect("a batch"), &rx, COALESCE_ROWS);
        assert_eq!(times(&rest), [17, 30]);
        let merged = Batch::merged(rest);
        assert_eq!(merged.time, 30);
        assert!(!merged.catching_up);
        assert_eq!(merged.offsets.len(), 1);
        assert_eq!(merged.offsets[0].position.offset, 30);
        // A paused catch-up commits after GATHER_GAP.
        let t0 = Instant::now();
        let paused = gather(batch(40, 1, true), &rx, COALESCE_ROWS);
        assert_eq!(paused.len(), 1);
        assert!(t0.elapsed() >= GATHER_GAP);
    }
}
