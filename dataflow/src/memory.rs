//! Runs the evaluation over in-memory batches: batch i enters at timestamp i. For tests
//! (against a reference evaluator), the core benchmark, and `stockflow db rebuild` (the stored
//! state as one batch).

use crate::graph::Horizon;
use crate::runtime::{build, Outbox};
use crate::{Error, Result};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stockflow_core::{HoldingInput, PriceInput, Sink};
use timely::dataflow::ProbeHandle;

/// A universe's initial holdings as dataflow input, all from `from` (version 0).
pub fn initial_holdings(
    universe: &stockflow_market::Universe,
    from: chrono::NaiveDate,
) -> Vec<HoldingInput> {
    holdings_of(universe, from).collect()
}

/// [`initial_holdings`] one at a time (a worker that feeds every n-th one makes only those).
pub fn holdings_of(
    universe: &stockflow_market::Universe,
    from: chrono::NaiveDate,
) -> impl Iterator<Item = HoldingInput> + '_ {
    universe
        .portfolios
        .iter()
        .enumerate()
        .flat_map(move |(p, def)| {
            def.holdings.iter().map(move |(s, q)| HoldingInput {
                portfolio: p as u32,
                stock: *s,
                from,
                quantity: *q,
                version: (0, 0, 0),
            })
        })
}

/// The input of one timestamp.
#[derive(Debug, Clone, Default)]
pub struct InputBatch {
    pub prices: Vec<PriceInput>,
    pub holdings: Vec<HoldingInput>,
}

/// Timings of an in-memory run.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Wall time from the first batch to the last timestamp's completion.
    pub elapsed: Duration,
    /// What each batch cost (when paced by a [`Pace::Window`]): the wall time from its input,
    /// or from the previous batch's completion if that came later, to its own completion.
    /// With one timestamp in flight that is its latency; with more, its share of the run.
    pub per_batch: Vec<Duration>,
}

/// How the in-memory runner feeds its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Every batch enters without waiting for the dataflow (no per-batch timings).
    Free,
    /// At most `in_flight` timestamps unfinished at a time, as the job runs (its
    /// [`MAX_ROUNDS_IN_FLIGHT`](crate::job::machine::MAX_ROUNDS_IN_FLIGHT)), and the batches
    /// from index `alone_from` on each alone, into an idle dataflow (their latency).
    Window { in_flight: usize, alone_from: usize },
}

impl Pace {
    /// One batch at a time, each completed before the next enters.
    pub const ONE_AT_A_TIME: Pace = Pace::Window {
        in_flight: 1,
        alone_from: 0,
    };

    /// The timestamps before which every one must be complete before batch `t` enters.
    fn complete_before(self, t: u64) -> Option<u64> {
        match self {
            Pace::Free => None,
            Pace::Window {
                in_flight,
                alone_from,
            } => {
                let alone = usize::try_from(t).map_or(true, |t| t >= alone_from);
                let ahead = if alone { 1 } else { in_flight.max(1) as u64 };
                Some((t + 1).saturating_sub(ahead))
            }
        }
    }
}

/// When each batch entered and when the probe showed it complete.
#[derive(Default)]
struct Timings {
    fed: Vec<Instant>,
    per_batch: Vec<Duration>,
    last_done: Option<Instant>,
}

impl Timings {
    /// Records the batches the probe now shows complete (called after every step).
    fn observe(&mut self, probe: &ProbeHandle<u64>) {
        while let Some(&fed) = self.fed.get(self.per_batch.len()) {
            let t = self.per_batch.len() as u64;
            if probe.less_than(&(t + 1)) {
                return;
            }
            let now = Instant::now();
            let from = self.last_done.map_or(fed, |l| l.max(fed));
            self.per_batch.push(now.saturating_duration_since(from));
            self.last_done = Some(now);
        }
    }
}

fn drain<S: Sink + ?Sized>(outbox: &Outbox, sink: &Mutex<S>) -> Result<()> {
    loop {
        let Some(batch) = outbox.borrow_mut().pop_front() else {
            return Ok(());
        };
        sink.lock()
            .map_err(|_| Error::Internal("sink lock poisoned".into()))?
            .apply(&batch)?;
    }
}

/// Steps the worker while `waiting` says so, parking it (up to a millisecond) whenever it has
/// nothing to do, as the job's loop does: a worker that spun while it waited for the others
/// held its core, and any other thread (the kernel's among them) then took one from a worker
/// that had work, which all the others then waited for.
fn wait_for<A: timely::communication::Allocate>(
    worker: &mut timely::worker::Worker<A>,
    mut waiting: impl FnMut() -> bool,
) {
    while waiting() {
        worker.step_or_park(Some(Duration::from_millis(1)));
    }
}

/// Where an in-memory run's batches come from: every worker makes its own pass over them and
/// feeds its round-robin share of every batch (`share`), so a source that generates its
/// batches holds no more than one at a time per worker, and one that holds them clones only
/// each worker's share.
pub trait BatchSource: Send + Sync {
    /// Every batch, in order, whole.
    fn batches(&self) -> Box<dyn Iterator<Item = InputBatch> + '_>;

    /// Worker `index` of `peers`' share of every batch, in order.
    fn share(&self, index: usize, peers: usize) -> Box<dyn Iterator<Item = InputBatch> + '_> {
        Box::new(self.batches().map(move |b| InputBatch {
            prices: every(b.prices.into_iter(), index, peers),
            holdings: every(b.holdings.into_iter(), index, peers),
        }))
    }
}

/// Every `peers`-th item from `index` on (a worker's round-robin share).
fn every<T>(items: impl Iterator<Item = T>, index: usize, peers: usize) -> Vec<T> {
    items.skip(index).step_by(peers.max(1)).collect()
}

impl BatchSource for Vec<InputBatch> {
    fn batches(&self) -> Box<dyn Iterator<Item = InputBatch> + '_> {
        Box::new(self.iter().cloned())
    }

    fn share(&self, index: usize, peers: usize) -> Box<dyn Iterator<Item = InputBatch> + '_> {
        Box::new(self.iter().map(move |b| InputBatch {
            prices: every(b.prices.iter().cloned(), index, peers),
            holdings: every(b.holdings.iter().cloned(), index, peers),
        }))
    }
}

/// Runs `batches` on `workers` threads; every worker feeds a round-robin share of each batch;
/// worker 0 hands every completed timestamp to `sink`. With `wait_each` every batch is
/// completed before the next enters (per-batch timings). With `keep_state` the batches carry
/// the input state's changes.
pub fn run<S: Sink + 'static>(
    workers: usize,
    batches: Arc<Vec<InputBatch>>,
    sink: Arc<Mutex<S>>,
    wait_each: bool,
) -> Result<RunStats> {
    run_with(workers, batches, sink, wait_each, false)
}

pub fn run_with<S: Sink + 'static>(
    workers: usize,
    batches: Arc<Vec<InputBatch>>,
    sink: Arc<Mutex<S>>,
    wait_each: bool,
    keep_state: bool,
) -> Result<RunStats> {
    let pace = if wait_each {
        Pace::ONE_AT_A_TIME
    } else {
        Pace::Free
    };
    run_source(workers, batches, sink, pace, keep_state, None)
}

/// [`run_with`] over any [`BatchSource`], with the dataflow's `horizon` (batch `i` enters at
/// timestamp `i`): what is about days before it leaves memory as the batches go by.
pub fn run_source<S: Sink + 'static, B: BatchSource + 'static>(
    workers: usize,
    batches: Arc<B>,
    sink: Arc<Mutex<S>>,
    pace: Pace,
    keep_state: bool,
    horizon: Option<Horizon>,
) -> Result<RunStats> {
    run_objects(workers, batches, sink, pace, keep_state, horizon)
}

/// The run itself, on trait objects: compiled once, in this crate (the timely dataflow it
/// builds is most of a build's time; generic, every caller's crate compiled it again).
fn run_objects(
    workers: usize,
    batches: Arc<dyn BatchSource>,
    sink: Arc<Mutex<dyn Sink>>,
    pace: Pace,
    keep_state: bool,
    horizon: Option<Horizon>,
) -> Result<RunStats> {
    let config = timely::Config::process(workers.max(1));
    let stats = Arc::new(Mutex::new(RunStats::default()));
    let stats_w = Arc::clone(&stats);
    let guards = timely::execute(config, move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let mut built = build(worker, keep_state, None, horizon.clone());
        let started = Instant::now();
        let mut timings = Timings::default();
        let mut result = Ok(());
        let mut fed = 0u64;
        for (t, batch) in batches.share(index, peers).enumerate() {
            let t = t as u64;
            if let Some(before) = pace.complete_before(t) {
                let probe = &built.probe;
                wait_for(worker, || {
                    timings.observe(probe);
                    probe.less_than(&before)
                });
                if result.is_ok() {
                    result = drain(&built.outbox, &sink);
                }
            }
            timings.fed.push(Instant::now());
            for p in batch.prices {
                built.inputs.prices.insert(p);
            }
            for h in batch.holdings {
                built.inputs.holdings.insert(h);
            }
            built.inputs.advance_to(t + 1);
            fed = t + 1;
            // One step after every batch, as the job steps after every round: the dataflow
            // starts on it at once (without it, a window of days waited for the last one and
            // went through the operators together).
            worker.step();
            if pace != Pace::Free {
                timings.observe(&built.probe);
            }
            if result.is_ok() {
                result = drain(&built.outbox, &sink);
            }
        }
        if pace != Pace::Free {
            let probe = &built.probe;
            wait_for(worker, || {
                timings.observe(probe);
                probe.less_than(&fed)
            });
        }
        drop(built.inputs);
        built.stop.close();
        while worker.step_or_park(None) {
            if result.is_ok() {
                result = drain(&built.outbox, &sink);
            }
        }
        if result.is_ok() {
            result = drain(&built.outbox, &sink);
        }
        if index == 0 {
            if let Ok(mut s) = stats_w.lock() {
                s.elapsed = started.elapsed();
                s.per_batch = timings.per_batch;
            }
        }
        result
    })
    .map_err(crate::panics::describe)?;
    for r in guards.join() {
        r.map_err(crate::panics::describe)??;
    }
    let stats = stats
        .lock()
        .map_err(|_| Error::Internal("stats lock poisoned".into()))?
        .clone();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_lets_so_many_timestamps_be_unfinished_and_the_tail_enter_alone() {
        let pace = Pace::Window {
            in_flight: 4,
            alone_from: 10,
        };
        // Batch t enters once every timestamp below the returned one is complete.
        let before: Vec<u64> = (0..13).filter_map(|t| pace.complete_before(t)).collect();
        assert_eq!(before, vec![0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 10, 11, 12]);
        let one = Pace::ONE_AT_A_TIME;
        assert_eq!(one.complete_before(0), Some(0));
        assert_eq!(one.complete_before(7), Some(7));
        assert_eq!(Pace::Free.complete_before(7), None);
        // A window of 0 is taken as 1, never as "wait for the future".
        let zero = Pace::Window {
            in_flight: 0,
            alone_from: usize::MAX,
        };
        assert_eq!(zero.complete_before(3), Some(3));
    }
}
