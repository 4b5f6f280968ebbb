//! One worker's dataflow: inputs, the evaluation graph, and the sink operator that hands each
//! completed timestamp to a `DiffSink` on worker 0.

use crate::graph::evaluate;
use crate::sink::DiffSink;
use crate::types::{Evaluation, HoldingInput, PriceInput};
use crate::Error;
use differential_dataflow::input::{Input, InputSession};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use stockflow_transport::Position;
use timely::communication::Allocate;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Concat, Input as TimelyInput, Map, Operator, Probe};
use timely::dataflow::InputHandle;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

/// A record the sources could not use, with where it sits in the log and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeadLetter {
    pub position: Position,
    pub payload: Vec<u8>,
    pub code: String,
    pub reason: String,
}

/// What the sources tell the sink besides the data: how far they read, and what they rejected.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Control {
    /// After this timestamp the partition's next offset to read is `position.offset`; the
    /// newest record timestamp (ms) read into it, if any.
    Offset(Position, Option<i64>),
    DeadLetter(DeadLetter),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum SinkItem {
    Diff(Evaluation, isize),
    Control(Control),
}

/// Everything the sink received for one completed timestamp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub time: u64,
    /// Consolidated diffs sorted by row: +1 insert, −1 retract.
    pub diffs: Vec<(Evaluation, isize)>,
    pub dead_letters: Vec<DeadLetter>,
    /// The next offset of every partition any source has read so far (not only this batch's).
    pub offsets: Vec<Position>,
    /// The newest log timestamp (ms since the epoch) among the records of this timestamp:
    /// for end-to-end latency (publish → commit).
    pub newest_record_ms: Option<i64>,
}

/// What the sink operator reports back to its worker.
#[derive(Debug, Default)]
pub struct SinkStatus {
    pub error: Option<Error>,
    pub batches: u64,
    pub inserted: u64,
    pub retracted: u64,
    pub dead_letters: u64,
    /// The last timestamp handed to the sink.
    pub last_time: Option<u64>,
    /// The offsets of the last batch.
    pub offsets: Vec<Position>,
}

pub struct WorkerInputs {
    pub prices: InputSession<u64, PriceInput, isize>,
    pub holdings: InputSession<u64, HoldingInput, isize>,
    pub control: InputHandle<u64, (Control, u64)>,
}

impl WorkerInputs {
    pub fn advance_to(&mut self, t: u64) {
        self.prices.advance_to(t);
        self.holdings.advance_to(t);
        self.control.advance_to(t);
        self.prices.flush();
        self.holdings.flush();
    }

    pub fn time(&self) -> u64 {
        *self.control.time()
    }
}

/// Builds the job's dataflow on this worker. Worker 0 owns `sink` (others pass None).
pub fn build<A: Allocate>(
    worker: &mut Worker<A>,
    sink: Option<Box<dyn DiffSink>>,
) -> (WorkerInputs, ProbeHandle<u64>, Rc<RefCell<SinkStatus>>) {
    let status = Rc::new(RefCell::new(SinkStatus::default()));
    let status_op = Rc::clone(&status);
    let probe = ProbeHandle::new();
    let inputs = worker.dataflow::<u64, _, _>(|scope| {
        let (prices_in, prices) = scope.new_collection();
        let (holdings_in, holdings) = scope.new_collection();
        let (control_in, control) = scope.new_input::<(Control, u64)>();
        let evaluations = evaluate(&prices, &holdings);
        let items = evaluations
            .inner
            .map(|(e, t, d)| (SinkItem::Diff(e, d), t))
            .concat(&control.map(|(c, t)| (SinkItem::Control(c), t)));
        let mut sink = sink;
        let mut pending: BTreeMap<u64, Vec<SinkItem>> = BTreeMap::new();
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        items.sink(
            Exchange::new(|_: &(SinkItem, u64)| 0u64),
            "DiffSink",
            move |input| {
                input.for_each(|_cap, data| {
                    for (item, t) in data.drain(..) {
                        pending.entry(t).or_default().push(item);
                    }
                });
                let frontier = input.frontier().frontier();
                let mut status = status_op.borrow_mut();
                while let Some(entry) = pending.first_entry() {
                    let t = *entry.key();
                    if frontier.less_equal(&t) || status.error.is_some() {
                        break;
                    }
                    let items = entry.remove();
                    let mut batch = Batch {
                        time: t,
                        ..Batch::default()
                    };
                    for item in items {
                        match item {
                            SinkItem::Diff(e, d) => batch.diffs.push((e, d)),
                            SinkItem::Control(Control::Offset(p, ts)) => {
                                batch.newest_record_ms = batch.newest_record_ms.max(ts);
                                let next =
                                    offsets.entry((p.topic, p.partition)).or_insert(p.offset);
                                *next = (*next).max(p.offset);
                            }
                            SinkItem::Control(Control::DeadLetter(dl)) => {
                                batch.dead_letters.push(dl)
                            }
                        }
                    }
                    differential_dataflow::consolidation::consolidate(&mut batch.diffs);
                    batch.dead_letters.sort();
                    batch.offsets = offsets
                        .iter()
                        .map(|((topic, partition), offset)| Position {
                            topic: topic.clone(),
                            partition: *partition,
                            offset: *offset,
                        })
                        .collect();
                    status.batches += 1;
                    status.offsets.clone_from(&batch.offsets);
                    status.last_time = Some(t);
                    status.dead_letters += batch.dead_letters.len() as u64;
                    for (_, d) in &batch.diffs {
                        if *d > 0 {
                            status.inserted += *d as u64;
                        } else {
                            status.retracted += d.unsigned_abs() as u64;
                        }
                    }
                    if let Some(s) = sink.as_mut() {
                        if let Err(e) = s.apply(&batch) {
                            status.error = Some(e);
                        }
                    }
                }
            },
        );
        evaluations.inner.probe_with(&probe);
        control.probe_with(&probe);
        WorkerInputs {
            prices: prices_in,
            holdings: holdings_in,
            control: control_in,
        }
    });
    (inputs, probe, status)
}
