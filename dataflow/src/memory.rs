//! Runs the job over in-memory batches: batch i enters at timestamp i. For tests (against a
//! reference evaluator) and for the benchmark of the dataflow core without a broker.

use crate::runtime::{build, Batch};
use crate::sink::DiffSink;
use crate::types::{HoldingInput, PriceInput};
use crate::{Error, Result};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A universe's initial holdings as dataflow input, all from `from` (version 0).
pub fn initial_holdings(
    universe: &stockflow_market::Universe,
    from: chrono::NaiveDate,
) -> Vec<HoldingInput> {
    universe
        .portfolios
        .iter()
        .enumerate()
        .flat_map(|(p, def)| {
            def.holdings.iter().map(move |(s, q)| HoldingInput {
                portfolio: p as u32,
                stock: *s,
                from,
                quantity: *q,
                version: (0, 0, 0),
            })
        })
        .collect()
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
    /// Wall time of each batch, from its input to its completion (when `wait_each` is set).
    pub per_batch: Vec<Duration>,
}

/// A sink that hands batches to a shared closure, for collecting from worker 0.
struct SharedSink(Arc<Mutex<dyn DiffSink + Send>>);

impl DiffSink for SharedSink {
    fn apply(&mut self, batch: &Batch) -> Result<()> {
        self.0
            .lock()
            .map_err(|_| Error::Sink("sink lock poisoned".into()))?
            .apply(batch)
    }
}

/// Runs `batches` on `workers` threads; every worker feeds a round-robin share of each batch.
/// With `wait_each` every batch is completed before the next enters (per-batch timings).
pub fn run<S: DiffSink + Send + 'static>(
    workers: usize,
    batches: Arc<Vec<InputBatch>>,
    sink: Arc<Mutex<S>>,
    wait_each: bool,
) -> Result<RunStats> {
    let config = timely::Config::process(workers.max(1));
    let stats = Arc::new(Mutex::new(RunStats::default()));
    let stats_w = Arc::clone(&stats);
    let sink_dyn: Arc<Mutex<dyn DiffSink + Send>> = sink;
    let guards = timely::execute(config, move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let own_sink: Option<Box<dyn DiffSink>> =
            (index == 0).then(|| Box::new(SharedSink(Arc::clone(&sink_dyn))) as Box<dyn DiffSink>);
        let (mut inputs, probe, status) = build(worker, own_sink);
        let started = Instant::now();
        let mut per_batch = Vec::new();
        for (t, batch) in batches.iter().enumerate() {
            let batch_started = Instant::now();
            let t = t as u64;
            for p in batch.prices.iter().skip(index).step_by(peers) {
                inputs.prices.insert(p.clone());
            }
            for h in batch.holdings.iter().skip(index).step_by(peers) {
                inputs.holdings.insert(h.clone());
            }
            inputs.advance_to(t + 1);
            if wait_each {
                worker.step_while(|| probe.less_than(&(t + 1)));
                per_batch.push(batch_started.elapsed());
            } else {
                worker.step();
            }
        }
        drop(inputs);
        while worker.step_or_park(None) {}
        let error = status.borrow_mut().error.take();
        if index == 0 {
            if let Ok(mut s) = stats_w.lock() {
                s.elapsed = started.elapsed();
                s.per_batch = per_batch;
            }
        }
        error.map_or(Ok(()), Err)
    })
    .map_err(Error::Dataflow)?;
    for r in guards.join() {
        r.map_err(Error::Dataflow)??;
    }
    let stats = stats
        .lock()
        .map_err(|_| Error::Dataflow("stats lock poisoned".into()))?
        .clone();
    Ok(stats)
}
