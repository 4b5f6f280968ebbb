//! Commits on their own thread: worker 0 hands completed batches to a bounded queue, and one
//! thread applies them to the sink in order. A full queue holds the job back (backpressure);
//! the dataflow's workers never block on the database.

use super::counters::JobCounters;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use stockflow_core::limits::MAX_DEAD_LETTER_BYTES_PER_ROUND;
use stockflow_core::{Batch, Sink};

/// How often an idle commit thread asks the sink whether it may go on.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

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

    /// The error's text, for the other workers' stop message.
    pub fn describe(&self) -> Option<String> {
        self.error
            .lock()
            .ok()
            .and_then(|e| e.as_ref().map(ToString::to_string))
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

/// A transaction takes further waiting batches while it has fewer rows than this.
const COALESCE_ROWS: usize = 100_000;

/// `batch` and the batches waiting behind it, as one (`Batch::absorb`), up to `COALESCE_ROWS`
/// rows and a round's worth of dead letters. A sink that keeps up commits every batch alone
/// (lowest latency); one that is behind, as during a catch-up, commits larger transactions
/// and never writes the rows one timestamp wrote and the next corrected.
fn coalesce(mut batch: Batch, rx: &Receiver<Batch>) -> Batch {
    let dead_bytes = |b: &Batch| -> usize {
        b.dead_letters
            .iter()
            .map(|d| d.payload.len() + d.reason.len())
            .sum()
    };
    while batch.rows() < COALESCE_ROWS && dead_bytes(&batch) < MAX_DEAD_LETTER_BYTES_PER_ROUND {
        match rx.try_recv() {
            Ok(next) => batch.absorb(next),
            Err(_) => break,
        }
    }
    batch
}

/// Starts the commit thread with a queue of `depth` batches. The thread gives the sink back
/// when the queue closes (or the sink fails).
pub fn start(
    sink: Box<dyn Sink>,
    depth: usize,
    counters: Arc<JobCounters>,
) -> std::io::Result<(Outlet, JoinHandle<Box<dyn Sink>>)> {
    let (tx, rx): (SyncSender<Batch>, Receiver<Batch>) = sync_channel(depth.max(1));
    let state = Arc::new(CommitState::default());
    let state_t = Arc::clone(&state);
    let handle = std::thread::Builder::new()
        .name("stockflow-commit".into())
        .spawn(move || {
            let sink = commit_loop(sink, &rx, &state_t, &counters);
            state_t.finished.store(true, Ordering::SeqCst);
            sink
        })?;
    Ok((Outlet { tx, state }, handle))
}

/// Applies batches until the queue closes or the sink fails; gives the sink back.
fn commit_loop(
    mut sink: Box<dyn Sink>,
    rx: &Receiver<Batch>,
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
        match rx.recv_timeout(IDLE_CHECK).map(|b| coalesce(b, rx)) {
            Ok(batch) => match sink.apply(&batch) {
                Ok(()) => counters.committed(&batch),
                Err(e) => {
                    fail(e);
                    return sink;
                }
            },
            Err(RecvTimeoutError::Timeout) => {
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
