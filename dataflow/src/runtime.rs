//! One worker's dataflow: inputs, the evaluation graph, and the operator on worker 0 that turns
//! each completed timestamp into a [`Batch`] (consolidated rows, state changes, dead letters and
//! offsets). Batches wait in an outbox that the driver (the job or the memory runner) empties;
//! nothing here does I/O.

use crate::graph::{evaluate, Horizon, Row};
use crate::job::machine::StopReason;
use chrono::NaiveDate;
use differential_dataflow::consolidation::consolidate;
use differential_dataflow::input::{Input, InputSession};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Instant;
use stockflow_core::{
    Batch, DeadLetter, Evaluation, HoldingInput, Issue, Money, PortfolioId, PriceInput, Progress,
};
use timely::communication::Allocate;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::{
    Broadcast, Concat, Input as TimelyInput, Inspect, Map, Operator, Probe,
};
use timely::dataflow::InputHandle;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

/// What the sources tell the sink besides the data: how far they read, and what they rejected.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Control {
    /// After this timestamp the partition's next offset to read is `progress.position.offset`
    /// (with the mark of the last record applied below it); the newest record timestamp (ms)
    /// read into it, if any; whether the partition is still below its end at start (a
    /// catch-up: the commit thread gathers such timestamps into large transactions).
    Offset {
        progress: Progress,
        newest_ms: Option<i64>,
        backlog: bool,
    },
    DeadLetter(DeadLetter),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum SinkItem {
    Price(PriceInput, isize),
    Holding(HoldingInput, isize),
    Control(Control),
}

pub struct WorkerInputs {
    pub prices: InputSession<u64, PriceInput, isize>,
    pub holdings: InputSession<u64, HoldingInput, isize>,
    /// Each portfolio's last value before a restore window.
    pub seeds: InputSession<u64, (PortfolioId, NaiveDate, Money), isize>,
    pub control: InputHandle<u64, (Control, u64)>,
}

impl WorkerInputs {
    pub fn advance_to(&mut self, t: u64) {
        self.prices.advance_to(t);
        self.holdings.advance_to(t);
        self.seeds.advance_to(t);
        self.control.advance_to(t);
        self.prices.flush();
        self.holdings.flush();
        self.seeds.flush();
    }

    pub fn time(&self) -> u64 {
        *self.control.time()
    }
}

/// Completed batches waiting for the driver (worker 0 only; empty elsewhere).
pub type Outbox = Rc<RefCell<VecDeque<Batch>>>;

/// What workers tell each other outside the data: a stop (with its reason), and the time a
/// worker has reached (so that a worker with nothing to read never holds the others back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Notice {
    Stop(StopReason),
    Time(u64),
    /// A process is alive (sent every second by each of its workers, in every wait).
    Beat(usize),
    /// A worker (its index in the cluster) has done everything it had to do; it only waits
    /// for the others, and closes its side once every worker has said so.
    Finished(usize),
}

/// The cluster's control plane: any worker raises a stop with a reason, or publishes its time;
/// every worker of every process sees them at its next steps.
pub struct ControlPlane {
    input: Option<InputHandle<u64, Notice>>,
    /// The strongest reason this worker sent.
    sent: Option<StopReason>,
    received: Rc<RefCell<Option<StopReason>>>,
    peer_time: Rc<Cell<u64>>,
    sent_time: u64,
    /// When each process's last beat arrived here.
    beats: Rc<RefCell<BTreeMap<usize, Instant>>>,
    last_beat: Option<Instant>,
    /// The workers that said they finished.
    finished: Rc<RefCell<std::collections::BTreeSet<usize>>>,
}

impl ControlPlane {
    /// Tells every worker to stop, with a reason (again only with a stronger one: a failure
    /// found after a signal is still sent).
    pub fn raise(&mut self, reason: StopReason) {
        if self
            .sent
            .as_ref()
            .is_some_and(|s| s.rank() >= reason.rank())
        {
            return;
        }
        self.sent = Some(reason.clone());
        if let Some(input) = self.input.as_mut() {
            input.send(Notice::Stop(reason));
            input.flush();
        }
    }

    /// The strongest reason any worker gave (an error over a rewind over a signal), once it
    /// has arrived here.
    pub fn received(&self) -> Option<StopReason> {
        self.received.borrow().clone()
    }

    /// Publishes this worker's time to every worker (when it moved).
    pub fn publish_time(&mut self, time: u64) {
        if time <= self.sent_time {
            return;
        }
        self.sent_time = time;
        if let Some(input) = self.input.as_mut() {
            input.send(Notice::Time(time));
            input.flush();
        }
    }

    /// The latest time any worker published, as far as it has arrived here.
    pub fn peer_time(&self) -> u64 {
        self.peer_time.get()
    }

    /// Tells every worker that `process` is alive, at most once a second; true when it did.
    pub fn beat(&mut self, process: usize) -> bool {
        if self
            .last_beat
            .is_some_and(|b| b.elapsed() < std::time::Duration::from_secs(1))
        {
            return false;
        }
        self.last_beat = Some(Instant::now());
        if let Some(input) = self.input.as_mut() {
            input.send(Notice::Beat(process));
            input.flush();
        }
        true
    }

    /// When each process's last beat arrived here.
    pub fn beats(&self) -> BTreeMap<usize, Instant> {
        self.beats.borrow().clone()
    }

    /// Tells every worker that this one (`index` in the cluster) has done its part.
    pub fn finish(&mut self, index: usize) {
        if let Some(input) = self.input.as_mut() {
            input.send(Notice::Finished(index));
            input.flush();
        }
    }

    /// Whether all `peers` workers of the cluster said they finished.
    pub fn all_finished(&self, peers: usize) -> bool {
        self.finished.borrow().len() >= peers
    }

    /// Closes this worker's side (at the end of the run).
    pub fn close(&mut self) {
        self.input = None;
    }
}

/// What `build` gives the driver.
pub struct Built {
    pub inputs: WorkerInputs,
    pub probe: ProbeHandle<u64>,
    pub outbox: Outbox,
    pub stop: ControlPlane,
    /// Set once every input is closed and the last batch is in the outbox.
    pub finished: Rc<Cell<bool>>,
}

/// Builds the job's dataflow on this worker. With `keep_state`, batches also carry the changes
/// of the input state (latest closes and holding records) for a stateful sink; with a restore
/// `window`, only days from it on are output; with a `horizon`, state about earlier days
/// leaves memory as time moves on (`graph::Horizon`).
pub fn build<A: Allocate>(
    worker: &mut Worker<A>,
    keep_state: bool,
    window: Option<NaiveDate>,
    horizon: Option<Horizon>,
) -> Built {
    let outbox: Outbox = Rc::default();
    let outbox_op = Rc::clone(&outbox);
    let finished: Rc<Cell<bool>> = Rc::default();
    let finished_op = Rc::clone(&finished);
    let probe = ProbeHandle::new();
    let inputs = worker.dataflow::<u64, _, _>(|scope| {
        let (prices_in, prices) = scope.new_collection();
        let (holdings_in, holdings) = scope.new_collection();
        let (seeds_in, seeds) = scope.new_collection();
        let (control_in, control) = scope.new_input::<(Control, u64)>();
        let out = evaluate(&prices, &holdings, &seeds, window, horizon);
        // Rows go to the parts as they come (no copy into another enum on the way); the
        // offsets, dead letters and state changes beside them.
        let mut others = control.map(|(c, t)| (SinkItem::Control(c), t));
        if keep_state {
            others = others
                .concat(&out.closes.inner.map(|(p, t, d)| (SinkItem::Price(p, d), t)))
                .concat(
                    &out.records
                        .inner
                        .map(|(h, t, d)| (SinkItem::Holding(h, d), t)),
                );
        }
        // Each worker assembles its own part of every completed timestamp (its rows sorted
        // and consolidated, on its own thread); worker 0 only gathers the parts.
        let mut pending: BTreeMap<u64, (Capability<u64>, Part)> = BTreeMap::new();
        // The last part's sizes: the next one's vectors start at them (a day's rows are
        // megabytes; grown by doubling they were copied and faulted in several times).
        let mut sizes = PartSizes::default();
        let parts = out
            .rows
            .binary_frontier::<_, CapacityContainerBuilder<Vec<(Part, u64)>>, _, _, _, _>(
                &others,
                Pipeline,
                Pipeline,
                "BatchParts",
                |_, _| {
                    move |rows_in, others_in, output| {
                        rows_in.for_each(|cap, data| {
                            for (row, t, d) in data.drain(..) {
                                let (_, part) = pending
                                    .entry(t)
                                    .or_insert_with(|| (cap.delayed(&t), Part::default()));
                                match row {
                                    Row::Evaluation(e) => {
                                        push_sized(&mut part.evaluations, (e, d), sizes.evaluations)
                                    }
                                    Row::Issue(i) => {
                                        push_sized(&mut part.issues, (i, d), sizes.issues)
                                    }
                                }
                            }
                        });
                        others_in.for_each(|cap, data| {
                            for (item, t) in data.drain(..) {
                                pending
                                    .entry(t)
                                    .or_insert_with(|| (cap.delayed(&t), Part::default()))
                                    .1
                                    .push(item, &sizes);
                            }
                        });
                        let (rows_f, others_f) = (rows_in.frontier(), others_in.frontier());
                        while let Some(entry) = pending.first_entry() {
                            let t = *entry.key();
                            if rows_f.less_equal(&t) || others_f.less_equal(&t) {
                                break;
                            }
                            let (cap, mut part) = entry.remove();
                            // As many as came (a day of retractions consolidates to fewer).
                            sizes = part.sizes();
                            part.consolidate();
                            output.session(&cap).give((part, t));
                        }
                    }
                },
            );
        // The probe passes a time once every worker has handed over its part of it (its
        // rows sorted and consolidated): a timestamp's cost includes its own parts, not the
        // previous timestamp's (worker 0 gathers the parts after the exchange, beyond it).
        let parts = parts.probe_with(&probe);
        let mut joining: BTreeMap<u64, Vec<Part>> = BTreeMap::new();
        let mut offsets: BTreeMap<(String, i32), Progress> = BTreeMap::new();
        parts.sink(
            Exchange::new(|_: &(Part, u64)| 0u64),
            "Batches",
            move |input| {
                input.for_each(|_cap, data| {
                    for (part, t) in data.drain(..) {
                        joining.entry(t).or_default().push(part);
                    }
                });
                let frontier = input.frontier().frontier();
                while let Some(entry) = joining.first_entry() {
                    let t = *entry.key();
                    if frontier.less_equal(&t) {
                        break;
                    }
                    let batch = assemble(t, entry.remove(), &mut offsets);
                    outbox_op.borrow_mut().push_back(batch);
                }
                if frontier.is_empty() && joining.is_empty() {
                    finished_op.set(true);
                }
            },
        );
        WorkerInputs {
            prices: prices_in,
            holdings: holdings_in,
            seeds: seeds_in,
            control: control_in,
        }
    });
    let received: Rc<RefCell<Option<StopReason>>> = Rc::default();
    let peer_time: Rc<Cell<u64>> = Rc::default();
    let beats: Rc<RefCell<BTreeMap<usize, Instant>>> = Rc::default();
    let finished_workers: Rc<RefCell<std::collections::BTreeSet<usize>>> = Rc::default();
    let (received_op, peer_time_op, beats_op, finished_workers_op) = (
        Rc::clone(&received),
        Rc::clone(&peer_time),
        Rc::clone(&beats),
        Rc::clone(&finished_workers),
    );
    let stop_input = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<Notice>();
        stream.broadcast().inspect(move |notice| match notice {
            Notice::Stop(reason) => {
                let mut slot = received_op.borrow_mut();
                if slot.as_ref().is_none_or(|s| reason.rank() > s.rank()) {
                    *slot = Some(reason.clone());
                }
            }
            Notice::Time(t) => peer_time_op.set(peer_time_op.get().max(*t)),
            Notice::Beat(p) => {
                beats_op.borrow_mut().insert(*p, Instant::now());
            }
            Notice::Finished(w) => {
                finished_workers_op.borrow_mut().insert(*w);
            }
        });
        input
    });
    Built {
        inputs,
        probe,
        outbox,
        finished,
        stop: ControlPlane {
            input: Some(stop_input),
            sent: None,
            received,
            peer_time,
            sent_time: 0,
            beats,
            last_beat: None,
            finished: finished_workers,
        },
    }
}

/// One worker's part of a completed timestamp: its rows and state changes consolidated, its
/// offset reports and dead letters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Part {
    evaluations: Vec<(Evaluation, isize)>,
    issues: Vec<(Issue, isize)>,
    prices: Vec<(PriceInput, isize)>,
    holdings: Vec<(HoldingInput, isize)>,
    dead_letters: Vec<DeadLetter>,
    /// Offset reports in the order they came (a later one of a partition wins).
    offsets: Vec<Progress>,
    newest_record_ms: Option<i64>,
    catching_up: bool,
}

/// How many rows and state changes a part held (what the next one is sized for).
#[derive(Debug, Clone, Copy, Default)]
struct PartSizes {
    evaluations: usize,
    issues: usize,
    prices: usize,
    holdings: usize,
}

/// Pushes onto `v`, which is first given room for `hint` items (the last part's count of that
/// kind): only the vectors a timestamp uses are sized, once.
fn push_sized<T>(v: &mut Vec<T>, item: T, hint: usize) {
    if v.capacity() == 0 {
        v.reserve(hint);
    }
    v.push(item);
}

impl Part {
    fn sizes(&self) -> PartSizes {
        PartSizes {
            evaluations: self.evaluations.len(),
            issues: self.issues.len(),
            prices: self.prices.len(),
            holdings: self.holdings.len(),
        }
    }

    fn push(&mut self, item: SinkItem, sizes: &PartSizes) {
        match item {
            SinkItem::Price(p, d) => push_sized(&mut self.prices, (p, d), sizes.prices),
            SinkItem::Holding(h, d) => push_sized(&mut self.holdings, (h, d), sizes.holdings),
            SinkItem::Control(Control::Offset {
                progress,
                newest_ms,
                backlog,
            }) => {
                self.newest_record_ms = self.newest_record_ms.max(newest_ms);
                self.catching_up |= backlog;
                self.offsets.push(progress);
            }
            SinkItem::Control(Control::DeadLetter(dl)) => self.dead_letters.push(dl),
        }
    }

    fn consolidate(&mut self) {
        consolidate(&mut self.evaluations);
        consolidate(&mut self.issues);
        consolidate(&mut self.prices);
        consolidate(&mut self.holdings);
    }
}

/// `into` extended with `from`, the larger vector kept (no copy of it).
fn join<T>(into: &mut Vec<T>, mut from: Vec<T>) {
    if from.len() > into.len() {
        std::mem::swap(into, &mut from);
    }
    into.append(&mut from);
}

/// One completed timestamp's parts as a batch; `offsets` keeps every partition's progress.
/// The parts' rows are keyed apart (a portfolio's rows come from its worker, a close's or a
/// holding record's from its key's), so joining them needs no consolidation.
fn assemble(t: u64, parts: Vec<Part>, offsets: &mut BTreeMap<(String, i32), Progress>) -> Batch {
    let mut batch = Batch {
        time: t,
        ..Batch::default()
    };
    for part in parts {
        batch.evaluations.push_part(part.evaluations);
        join(&mut batch.issues, part.issues);
        join(&mut batch.prices, part.prices);
        join(&mut batch.holdings, part.holdings);
        join(&mut batch.dead_letters, part.dead_letters);
        batch.newest_record_ms = batch.newest_record_ms.max(part.newest_record_ms);
        batch.catching_up |= part.catching_up;
        for p in part.offsets {
            let key = (p.position.topic.clone(), p.position.partition);
            match offsets.get_mut(&key) {
                // Reports of one partition only move forward (a worker's resume offset
                // never goes back); of two in one timestamp the later one wins.
                Some(known) if known.position.offset > p.position.offset => {}
                Some(known) => *known = p,
                None => {
                    offsets.insert(key, p);
                }
            }
        }
    }
    batch.dead_letters.sort();
    batch.dead_letters.dedup_by(|a, b| a.position == b.position);
    batch.offsets = offsets.values().cloned().collect();
    batch
}
