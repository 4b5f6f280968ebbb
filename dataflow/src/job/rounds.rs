//! One worker's loop: the reading machine (`machine`, no I/O) driven by three small parts:
//!
//! - [`Reader`]: the worker's source, its partitions, the decoder and the retry of source
//!   errors; it hands records to the machine and what the machine accepts to the dataflow;
//! - [`Forwarder`]: worker 0 of process 0 hands completed batches to the commit thread;
//! - [`Pulse`]: a cluster's beats, in every wait;
//! - [`run_worker`] and [`WorkerJob`]: timely's shape: set up, the stored state at timestamp 0,
//!   rounds (advance the inputs, read, step while the probe is behind), shut down.

use super::align::Align;
use super::committer::Outlet;
use super::counters::JobCounters;
use super::decode::{Decoded, Decoder};
use super::machine::{
    day_key, Input, LaneSpec, Machine, MachineConfig, OffsetReport, StopReason, Verdict,
};
use super::retry::{Retry, SourceRetry};
use super::start::PartitionStart;
use super::JobConfig;
use crate::runtime::{build, Control, ControlPlane, Outbox, WorkerInputs};
use crate::{Error, Result};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockflow_core::limits::MAX_DEAD_LETTER_BYTES_PER_ROUND;
use stockflow_core::{Fault, Position, Progress, StoredState};
use stockflow_transport::{Log, LogSource, RecordRef, Take};
use timely::communication::Allocate;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

/// Completed batches worker 0 may hold when the commit queue is full before it stops reading.
const MAX_HELD_BATCHES: usize = 2;
/// How long a round waits for input when the dataflow is idle.
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// Trading days whose records share one catch-up timestamp.
pub const DAYS_PER_TIME: i64 = 7;
/// Records dated more than this many days after today never move time (`MachineConfig`).
const FUTURE_DAYS: i64 = 30;

/// What one worker needs beyond its dataflow.
pub(super) struct WorkerSetup<'a> {
    pub config: &'a JobConfig,
    pub log: &'a dyn Log,
    pub partitions: &'a [PartitionStart],
    pub counters: &'a JobCounters,
    pub stop: &'a AtomicBool,
    /// Worker 0 of process 0: the commit queue, and the stored state to load at timestamp 0.
    pub outlet: Option<Outlet>,
    pub state: Option<Arc<StoredState>>,
    /// The process's workers read in step by trading day, and share their times.
    pub align: &'a Align,
    /// Whether the cluster has other processes (times then travel through the dataflow).
    pub remote_peers: bool,
}

/// One partition this worker reads.
struct Lane {
    topic: String,
    partition: i32,
    input: Input,
    /// Offsets an earlier pass of this run applied already (not counted again).
    read_before: std::collections::BTreeSet<i64>,
    /// The offset of a record an earlier pass refused, until this pass reads past it.
    refused: Option<i64>,
}

/// The worker's source and what it takes to turn records into inputs.
struct Reader {
    lanes: Vec<Lane>,
    /// lane index by (is prices, partition).
    by_partition: [Vec<Option<usize>>; 2],
    source: Option<Box<dyn LogSource>>,
    decoder: Decoder,
    retry: SourceRetry,
    rejected_logged: u64,
}

/// What one poll did.
#[derive(Default)]
struct Polled {
    ticks: u64,
    holdings: u64,
    dead: u64,
    /// Records an earlier pass of this run had read already.
    again: u64,
    /// Source errors retried.
    errors: u64,
}

impl Reader {
    /// The reader of `mine`, with what an earlier pass of this run read of them beyond their
    /// committed offsets.
    fn new(config: &JobConfig, mine: &[&PartitionStart], counters: &JobCounters) -> Self {
        /// What an earlier pass left for this partition in one of the counters' maps.
        fn take<V>(
            map: &std::sync::Mutex<std::collections::BTreeMap<(String, i32), V>>,
            p: &PartitionStart,
        ) -> Option<V> {
            map.lock()
                .ok()
                .and_then(|mut m| m.remove(&(p.topic.clone(), p.partition)))
        }
        let mut reader = Reader {
            lanes: mine
                .iter()
                .map(|p| Lane {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    input: if p.topic == config.topics.prices {
                        Input::Prices
                    } else {
                        Input::Holdings
                    },
                    read_before: take(&counters.read_ahead, p).unwrap_or_default(),
                    refused: take(&counters.refused, p).and_then(|o| {
                        if o >= p.start {
                            Some(o)
                        } else {
                            // This pass starts past it (nothing to wait for).
                            let _ = counters
                                .refused_left
                                .fetch_update(Relaxed, Relaxed, |v| v.checked_sub(1));
                            None
                        }
                    }),
                })
                .collect(),
            by_partition: [Vec::new(), Vec::new()],
            source: None,
            decoder: Decoder::new(Arc::clone(&config.universe)),
            retry: SourceRetry::new(config.source_give_up),
            rejected_logged: 0,
        };
        for (i, l) in reader.lanes.iter().enumerate() {
            let slot = &mut reader.by_partition[usize::from(l.input == Input::Prices)];
            let p = usize::try_from(l.partition).unwrap_or(0);
            if slot.len() <= p {
                slot.resize(p + 1, None);
            }
            slot[p] = Some(i);
        }
        reader
    }

    /// Opens the source at `start`, handing records over in trading-day order.
    fn open(
        &mut self,
        log: &dyn Log,
        start: &[Position],
        config: &JobConfig,
    ) -> std::result::Result<(), stockflow_transport::Error> {
        let mut s = log.open_source(start)?;
        s.order_by(
            super::decode::trading_day_order(&config.topics.prices),
            super::decode::DAY_LOOKAHEAD,
        );
        self.source = Some(s);
        Ok(())
    }

    /// Reads one batch into the dataflow as the machine says. Errors that may pass are
    /// retried here; the rest are returned.
    fn poll(
        &mut self,
        machine: &mut Machine,
        inputs: &mut WorkerInputs,
        config: &JobConfig,
        wait: Duration,
    ) -> std::result::Result<Polled, String> {
        let mut polled = Polled::default();
        let Reader {
            lanes,
            by_partition,
            source,
            decoder,
            retry,
            rejected_logged,
        } = self;
        let Some(src) = source.as_mut() else {
            return Ok(polled);
        };
        if retry.waiting(Instant::now()) {
            std::thread::sleep(wait.min(Duration::from_millis(5)));
            return Ok(polled);
        }
        let prices_topic = config.topics.prices.as_str();
        let mut dead_bytes = 0usize;
        let mut on_record = |r: RecordRef<'_>| {
            let is_prices = r.topic == prices_topic;
            let Some(lane) = usize::try_from(r.partition).ok().and_then(|i| {
                by_partition[usize::from(is_prices)]
                    .get(i)
                    .copied()
                    .flatten()
            }) else {
                tracing::warn!(
                    topic = r.topic,
                    partition = r.partition,
                    "a record of a partition this worker does not read; ignored"
                );
                return Take::Next;
            };
            let decoded = if is_prices {
                decoder.price(&r)
            } else {
                decoder.holding(&r)
            };
            let day = match &decoded {
                Decoded::Price(p) => Some(p.date),
                Decoded::Holding(h) => Some(h.from),
                Decoded::Rejected(_) => None,
            };
            let at = match machine.record(lane, r.offset, day, r.mark()) {
                Verdict::Apply { at } => at,
                Verdict::Refuse => return Take::Refuse,
            };
            let first_read =
                lanes[lane].read_before.is_empty() || !lanes[lane].read_before.remove(&r.offset);
            polled.again += u64::from(!first_read);
            match decoded {
                Decoded::Price(p) => {
                    polled.ticks += u64::from(first_read);
                    inputs.prices.update_at(p, at, 1);
                }
                Decoded::Holding(h) => {
                    polled.holdings += u64::from(first_read);
                    inputs.holdings.update_at(h, at, 1);
                }
                Decoded::Rejected(dl) => {
                    polled.dead += u64::from(first_read);
                    dead_bytes += dl.payload.len() + dl.reason.len();
                    *rejected_logged += 1;
                    if *rejected_logged <= 100 || rejected_logged.is_multiple_of(1000) {
                        tracing::warn!(
                            topic = r.topic,
                            partition = r.partition,
                            offset = r.offset,
                            code = dl.code,
                            rejected = *rejected_logged,
                            "dead letter: {}",
                            dl.reason
                        );
                    }
                    inputs.control.send((Control::DeadLetter(dl), at));
                }
            }
            if dead_bytes >= MAX_DEAD_LETTER_BYTES_PER_ROUND {
                Take::Last
            } else {
                Take::Next
            }
        };
        match src.poll_batch(config.max_batch, wait, &mut on_record) {
            Ok(n) => {
                if n > 0 {
                    retry.delivered();
                }
                Ok(polled)
            }
            Err(e) if e.is_retryable() => match retry.failed(Instant::now()) {
                Retry::After(delay) => {
                    polled.errors += 1;
                    tracing::warn!(
                        retry_in_ms = delay.as_millis() as u64,
                        "source error (retrying with backoff): {e}"
                    );
                    Ok(polled)
                }
                Retry::GiveUp(failing) => Err(format!(
                    "the log has failed for {} s in a row, giving up: {e}",
                    failing.as_secs()
                )),
            },
            Err(e) => Err(source_failure(&e)),
        }
    }

    /// A record an earlier pass refused is read once its partition's reported offset passes
    /// it; the records left to read (`JobCounters::refused_left`) count down.
    fn passed(&mut self, end: &super::machine::RoundEnd, counters: &JobCounters) {
        for r in &end.reports {
            if let Some(l) = self.lanes.get_mut(r.lane) {
                if l.refused.is_some_and(|o| r.next > o) {
                    l.refused = None;
                    let _ = counters
                        .refused_left
                        .fetch_update(Relaxed, Relaxed, |v| v.checked_sub(1));
                }
            }
        }
    }

    /// The source's resume offset of each lane.
    fn resume(&self, lane: usize) -> Option<i64> {
        let l = self.lanes.get(lane)?;
        self.source.as_ref()?.resume_offset(&l.topic, l.partition)
    }

    fn progress(&self, r: &OffsetReport) -> Option<Progress> {
        let l = self.lanes.get(r.lane)?;
        Some(Progress {
            position: Position {
                topic: l.topic.clone(),
                partition: l.partition,
                offset: r.next,
            },
            last: r.last,
        })
    }
}

/// Worker 0 of process 0: completed batches to the commit thread.
struct Forwarder {
    outlet: Option<Outlet>,
    outbox: Outbox,
    /// The stored state's own output (timestamp 0) is what the database holds: only its
    /// offsets (where this pass starts) are committed.
    strip_first: bool,
    forwarded_first: bool,
}

impl Forwarder {
    fn forward(&mut self) {
        let Some(outlet) = &self.outlet else {
            self.outbox.borrow_mut().clear();
            return;
        };
        loop {
            let Some(mut batch) = self.outbox.borrow_mut().pop_front() else {
                return;
            };
            if !self.forwarded_first {
                self.forwarded_first = true;
                if self.strip_first && batch.time == 0 {
                    batch = stockflow_core::Batch {
                        time: 0,
                        offsets: batch.offsets,
                        dead_letters: batch.dead_letters,
                        catching_up: batch.catching_up,
                        ..Default::default()
                    };
                }
            }
            if outlet.state.failed() {
                continue;
            }
            if let Some(batch) = outlet.offer(batch) {
                self.outbox.borrow_mut().push_front(batch);
                return;
            }
        }
    }

    fn held(&self) -> usize {
        self.outbox.borrow().len()
    }

    fn failure(&self) -> Option<StopReason> {
        let o = self.outlet.as_ref().filter(|o| o.state.failed())?;
        Some(sink_failure(&o.state))
    }

    /// At the very end: closes the queue and waits (stepping) until the commit thread has
    /// applied everything; the failure that stopped it, if any.
    fn finish(&mut self, mut step: impl FnMut()) -> Option<StopReason> {
        let outlet = self.outlet.take()?;
        let state = Arc::clone(&outlet.state);
        drop(outlet);
        while !state.finished() {
            step();
        }
        state.failed().then(|| sink_failure(&state))
    }

    /// At the end: waits (stepping) until the queue takes what is left, unless the commits
    /// stopped.
    fn drain(&mut self, mut step: impl FnMut()) {
        self.forward();
        while self.held() > 0 {
            match &self.outlet {
                Some(o) if !o.state.failed() => {
                    self.forward();
                    step();
                }
                _ => break,
            }
        }
    }
}

/// A cluster's processes hear from each other in every wait of every worker: while reading,
/// while the dataflow works, while the sink is slow or down, and after a process's own part
/// is done until the whole cluster is. A silent process is then one that is stopped, frozen
/// or cut off, never one that waits.
struct Pulse<'a> {
    process: usize,
    remote: bool,
    counters: &'a JobCounters,
}

impl Pulse<'_> {
    fn beat(&self, plane: &mut ControlPlane) {
        if self.remote && plane.beat(self.process) {
            self.counters.saw_beats(&plane.beats());
        }
    }

    /// One step of the worker (parked at most 1 ms), with a beat.
    fn step<A: Allocate>(&self, worker: &mut Worker<A>, plane: &mut ControlPlane) {
        self.beat(plane);
        worker.step_or_park(Some(Duration::from_millis(1)));
    }
}

/// The last day whose records may move time: today plus a margin.
fn day_cap() -> i64 {
    day_key(chrono::Utc::now().date_naive()) + FUTURE_DAYS
}

/// Runs one worker until the job stops, in timely's own shape: set up (the dataflow, this
/// worker's partitions, its source), the stored state at timestamp 0, then rounds (advance the
/// inputs to the round's time, read, step the dataflow while its probe is behind the round)
/// until a reason to stop, then shut down (the last batches to the sink, the cluster left
/// together). Returns this worker's own error, if it had one.
pub(super) fn run_worker<A: Allocate>(
    worker: &mut Worker<A>,
    setup: WorkerSetup<'_>,
) -> Result<()> {
    let state = setup.state.clone();
    let mut job = WorkerJob::set_up(worker, setup);
    job.inject(state.as_deref());
    while job.keep_reading() {
        job.round(worker);
    }
    job.shut_down(worker)
}

/// The reading machine of this worker's partitions.
fn reading_machine(config: &JobConfig, mine: &[&PartitionStart], lanes: &[Lane]) -> Machine {
    Machine::new(
        MachineConfig {
            window: config.window,
            until_caught_up: config.until_caught_up,
            day_cap: day_cap(),
            days_per_time: config.days_per_time,
            memory_days: config.kept_days(),
        },
        mine.iter()
            .zip(lanes)
            .map(|(p, l)| LaneSpec {
                input: l.input,
                start: p.start,
                end: p.end,
                last: p.last,
            })
            .collect(),
    )
}

/// One worker's job: its dataflow's inputs and probe, the control plane, the reading machine
/// and its reader, and (worker 0 of process 0) the forwarder to the commit thread.
struct WorkerJob<'a> {
    config: &'a JobConfig,
    counters: &'a JobCounters,
    stop: &'a AtomicBool,
    align: &'a Align,
    remote_peers: bool,
    index: usize,
    peers: usize,
    inputs: WorkerInputs,
    probe: ProbeHandle<u64>,
    plane: ControlPlane,
    /// Every input closed and the last batch in the outbox.
    finished: Rc<Cell<bool>>,
    machine: Machine,
    reader: Reader,
    forwarder: Forwarder,
    pulse: Pulse<'a>,
    error: Option<Error>,
    rounds_since_cap: u32,
}

impl<'a> WorkerJob<'a> {
    /// The dataflow, this worker's share of the partitions (each read by exactly one worker),
    /// its reading machine, and its source opened at their start positions.
    fn set_up<A: Allocate>(worker: &mut Worker<A>, setup: WorkerSetup<'a>) -> Self {
        let WorkerSetup {
            config,
            log,
            partitions,
            counters,
            stop,
            outlet,
            state,
            align,
            remote_peers,
        } = setup;
        let (index, peers) = (worker.index(), worker.peers());
        align.register(index);
        let built = build(worker, config.keep_state, config.window, config.horizon());
        let mine: Vec<&PartitionStart> = partitions
            .iter()
            .enumerate()
            .filter(|(i, _)| i % peers == index)
            .map(|(_, p)| p)
            .collect();
        tracing::debug!(worker = index, partitions = ?mine.iter().map(|p| (&p.topic, p.partition, p.start)).collect::<Vec<_>>(), "assigned");
        let reader = Reader::new(config, &mine, counters);
        let machine = reading_machine(config, &mine, &reader.lanes);
        let mut job = WorkerJob {
            config,
            counters,
            stop,
            align,
            remote_peers,
            index,
            peers,
            inputs: built.inputs,
            probe: built.probe,
            plane: built.stop,
            finished: built.finished,
            machine,
            reader,
            forwarder: Forwarder {
                outlet,
                outbox: built.outbox,
                // The stored state's own output (timestamp 0) is what the database holds.
                strip_first: state.as_ref().is_some_and(|s| !s.is_empty()),
                forwarded_first: false,
            },
            pulse: Pulse {
                process: config.cluster.process,
                remote: remote_peers,
                counters,
            },
            error: None,
            rounds_since_cap: 0,
        };
        if !mine.is_empty() {
            let start: Vec<Position> = mine.iter().map(|p| p.position()).collect();
            if let Err(e) = job.reader.open(log, &start, config) {
                let failed = StopReason::Failed(source_failure(&e), e.fault());
                job.plane.raise(failed.clone());
                job.machine.stop(failed);
                job.error = Some(e.into());
            }
        }
        job
    }

    /// Timestamp 0: the stored state (worker 0 of process 0), and every partition's start
    /// position.
    fn inject(&mut self, state: Option<&StoredState>) {
        let inputs = &mut self.inputs;
        if let Some(state) = state {
            for p in &state.prices {
                inputs.prices.update_at(p.clone(), 0, 1);
            }
            for h in &state.holdings {
                inputs.holdings.update_at(h.clone(), 0, 1);
            }
            for seed in &state.seeds {
                inputs
                    .seeds
                    .update_at((seed.portfolio, seed.date, seed.value), 0, 1);
            }
        }
        for r in self.machine.initial_reports() {
            if let Some(p) = self.reader.progress(&r) {
                inputs.control.send((
                    Control::Offset {
                        progress: p,
                        newest_ms: None,
                        backlog: r.backlog,
                    },
                    0,
                ));
            }
        }
    }

    /// The control plane: takes in the reasons to stop from outside the machine (a signal, a
    /// watchdog, the sink, another worker); false once the machine has stopped, after telling
    /// every worker why (all but a caught-up worker's own end).
    fn keep_reading(&mut self) -> bool {
        if self.stop.load(Relaxed) {
            self.machine.stop(StopReason::Signal);
        }
        if let Some(why) = self.counters.aborted() {
            self.machine.stop(StopReason::Failed(why, Fault::External));
        }
        if let Some(failed) = self.forwarder.failure() {
            self.machine.stop(failed);
        }
        if let Some(reason) = self.plane.received() {
            self.machine.stop(reason);
        }
        if self.counters.until_refused_read.load(Relaxed)
            && self.counters.refused_left.load(Relaxed) == 0
        {
            self.machine.stop(StopReason::RefusedRead);
        }
        let Some(reason) = self.machine.stopped() else {
            return true;
        };
        tracing::debug!(
            worker = self.index,
            ?reason,
            time = self.machine.time(),
            "the worker stops reading"
        );
        if *reason == StopReason::RefusedRead {
            self.counters.stopped_refused_read.store(true, Relaxed);
        }
        if *reason != StopReason::CaughtUp {
            self.plane.raise(reason.clone());
        }
        false
    }

    /// One round: the machine's time and hold for it, the inputs advanced to it, what the
    /// source has read into them, the offsets reported, then steps while the dataflow is
    /// behind the round.
    fn round<A: Allocate>(&mut self, worker: &mut Worker<A>) {
        self.pulse.beat(&mut self.plane);
        self.forwarder.forward();
        if self.forwarder.held() > MAX_HELD_BATCHES {
            // The commit queue is full: read nothing more until it drains.
            worker.step_or_park(Some(Duration::from_millis(5)));
            return;
        }
        let next_key = self.reader.source.as_ref().and_then(|s| s.next_key());
        let hold = self.align.step(self.index, next_key);
        let peer_time = self.align.latest_time().max(self.plane.peer_time());
        let before = self.machine.time();
        if self.rounds_since_cap >= 10_000 {
            // The clock moves on: a live job running for months keeps today's cap.
            self.machine.set_day_cap(day_cap());
            self.rounds_since_cap = 0;
        }
        self.rounds_since_cap += 1;
        let round = self.machine.begin_round(hold, next_key, peer_time);
        if round.time != before {
            self.inputs.advance_to(round.time);
        }
        self.align.publish_time(round.time);
        if self.remote_peers {
            self.plane.publish_time(round.time);
        }
        if let Some(src) = self.reader.source.as_mut() {
            src.hold_after(round.hold_after);
        }
        let read = self.read(worker, round.time);
        let end = self.machine.end_round(|i| self.reader.resume(i));
        self.reader.passed(&end, self.counters);
        self.report(&end);
        if end.time != round.time {
            self.inputs.advance_to(end.time);
        }
        if read == 0 {
            // Nothing read (held back by the other workers, or nothing there): park until
            // the dataflow has work or a moment has passed, rather than spin against the
            // broker, the database and the other workers for the machine's cores.
            worker.step_or_park(Some(Duration::from_millis(1)));
        } else {
            worker.step();
        }
        while self.probe.less_than(&end.wait_for) {
            self.forwarder.forward();
            if self.plane.received().is_some() {
                break;
            }
            self.pulse.step(worker, &mut self.plane);
        }
    }

    /// Reads what the source has (waiting for input only when the dataflow is idle and there
    /// is something left to wait for); the records read.
    fn read<A: Allocate>(&mut self, worker: &mut Worker<A>, time: u64) -> u64 {
        // No wait while the dataflow has work, nor with nothing left to wait for
        // (`--until-caught-up` with every partition read to its end at start).
        let idle = !(self.probe.less_than(&time)
            || (self.config.until_caught_up && self.machine.caught_up()));
        let wait = if idle { IDLE_WAIT } else { Duration::ZERO };
        if self.reader.source.is_none() {
            worker.step_or_park(Some(wait));
            return 0;
        }
        let counters = self.counters;
        match self
            .reader
            .poll(&mut self.machine, &mut self.inputs, self.config, wait)
        {
            Ok(p) => {
                counters.ticks.fetch_add(p.ticks, Relaxed);
                counters.source_errors.fetch_add(p.errors, Relaxed);
                counters.holdings.fetch_add(p.holdings, Relaxed);
                counters.dead_letters.fetch_add(p.dead, Relaxed);
                p.ticks + p.holdings + p.dead + p.again
            }
            Err(msg) => {
                counters.source_errors.fetch_add(1, Relaxed);
                self.machine
                    .stop(StopReason::Failed(msg.clone(), Fault::External));
                self.error = Some(Error::Source(msg));
                0
            }
        }
    }

    /// The round's offset reports into the dataflow (each at its timestamp), and a rewind's
    /// day for the job's next pass.
    fn report(&mut self, end: &super::machine::RoundEnd) {
        for r in &end.reports {
            if let Some(p) = self.reader.progress(r) {
                self.inputs.control.send((
                    Control::Offset {
                        progress: p,
                        newest_ms: r.newest_ms,
                        backlog: r.backlog,
                    },
                    r.at,
                ));
            }
        }
        if let Some(StopReason::Rewind(day)) = self.machine.stopped() {
            if let Ok(mut r) = self.counters.rewind_to.lock() {
                *r = Some(r.map_or(*day, |r| r.min(*day)));
            }
        }
    }

    /// Closes the inputs and lets everything read so far reach the sink; worker 0 of process
    /// 0 waits for the last commit. Every worker then says it finished and keeps its side of
    /// the control plane open (beating) until all have, so that the cluster ends together.
    /// After a watchdog's stop only what is complete goes, and the process does not wait for
    /// a peer that hangs.
    fn shut_down<A: Allocate>(mut self, worker: &mut Worker<A>) -> Result<()> {
        self.align.done(self.index);
        self.keep_read_ahead();
        let (counters, pulse) = (self.counters, &self.pulse);
        let mut plane = self.plane;
        drop(self.inputs);
        drop(self.reader);
        let aborted = || counters.aborted().is_some();
        while !self.finished.get() && !aborted() {
            pulse.step(worker, &mut plane);
            self.forwarder.forward();
        }
        self.forwarder.drain(|| pulse.step(worker, &mut plane));
        if let Some(failed) = self.forwarder.finish(|| pulse.step(worker, &mut plane)) {
            plane.raise(failed);
        }
        plane.finish(self.index);
        while !plane.all_finished(self.peers) && !aborted() {
            pulse.step(worker, &mut plane);
        }
        if let Some(why) = counters.aborted() {
            // Not waiting for the cluster to end: the watchdog ends the process.
            return Err(Error::Stopped(why, Fault::External));
        }
        plane.close();
        while worker.step_or_park(Some(Duration::from_millis(1))) {}
        match (plane.received(), self.error) {
            (Some(StopReason::Failed(msg, fault)), None) => Err(Error::Stopped(msg, fault)),
            (_, error) => error.map_or(Ok(()), Err),
        }
    }

    /// What this pass applied of its partitions beyond their committed offsets (records are
    /// handed over out of offset order), and what an earlier pass did that this one did not
    /// read again (it ended before them): the next pass reads them again without counting
    /// them twice.
    fn keep_read_ahead(&self) {
        if let Ok(mut ahead) = self.counters.read_ahead.lock() {
            for (i, l) in self.reader.lanes.iter().enumerate() {
                let mut offsets: std::collections::BTreeSet<i64> =
                    self.machine.applied_ahead(i).into_iter().collect();
                offsets.extend(l.read_before.iter().copied());
                if !offsets.is_empty() {
                    ahead.insert((l.topic.clone(), l.partition), offsets);
                }
            }
        }
        if let Ok(mut refused) = self.counters.refused.lock() {
            for (i, l) in self.reader.lanes.iter().enumerate() {
                let this = self.machine.refused(i).map(|(o, _)| o);
                let earliest = match (this, l.refused) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if let Some(r) = earliest {
                    refused.insert((l.topic.clone(), l.partition), r);
                }
            }
        }
    }
}

/// The sink's failure, as every worker of the cluster stops for it.
fn sink_failure(state: &super::committer::CommitState) -> StopReason {
    let (message, fault) = state
        .describe()
        .unwrap_or_else(|| ("the sink failed".into(), Fault::External));
    StopReason::Failed(message, fault)
}

/// What a source error that will not pass means, and what to do.
fn source_failure(e: &stockflow_transport::Error) -> String {
    use stockflow_transport::ErrorKind;
    match e.kind {
        ErrorKind::OffsetOutOfRange => format!(
            "{e}. The log no longer holds the position the job was reading: the topic was \
             truncated, deleted or recreated while the job ran. Everything up to the last \
             committed batch is stored; check `stockflow status`, then start the job again (it \
             resumes, or refuses if the log lost records it had read: then --reset-offsets)"
        ),
        ErrorKind::UnknownTopic | ErrorKind::UnknownPartition => format!(
            "{e}. A topic the job reads disappeared while it ran; recreate it with \
             `stockflow topics create` and start the job again"
        ),
        _ => format!("{e}. The log refused the job's reads; fix the cause and start the job again"),
    }
}
