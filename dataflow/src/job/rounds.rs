//! One worker's loop: the reading machine (`machine`, no I/O) driven by three small parts:
//!
//! - [`Reader`]: the worker's source, its partitions, the decoder and the retry of source
//!   errors; it hands records to the machine and what the machine accepts to the dataflow;
//! - [`Forwarder`]: worker 0 of process 0 hands completed batches to the commit thread;
//! - [`run_worker`]: the rounds: ask the machine for the round's time and hold, read, report
//!   offsets, step the dataflow, wait for rounds in flight, stop when the machine says so.

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
use crate::runtime::{build, Built, Control, ControlPlane, Outbox, WorkerInputs};
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockflow_core::limits::MAX_DEAD_LETTER_BYTES_PER_ROUND;
use stockflow_core::{Fault, Position, Progress, StoredState};
use stockflow_transport::{Log, LogSource, RecordRef, Take};
use timely::communication::Allocate;
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

/// Runs one worker until the job stops. Returns this worker's own error, if it had one.
pub(super) fn run_worker<A: Allocate>(
    worker: &mut Worker<A>,
    setup: WorkerSetup<'_>,
) -> Result<()> {
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
    let index = worker.index();
    let peers = worker.peers();
    align.register(index);
    let pulse = Pulse {
        process: config.cluster.process,
        remote: remote_peers,
        counters,
    };
    let Built {
        mut inputs,
        probe,
        outbox,
        stop: mut plane,
        finished,
    } = build(worker, config.keep_state, config.window);
    let mut error: Option<Error> = None;

    // This worker's share of the partitions; each partition is read by exactly one worker.
    let mine: Vec<&PartitionStart> = partitions
        .iter()
        .enumerate()
        .filter(|(i, _)| i % peers == index)
        .map(|(_, p)| p)
        .collect();
    // What an earlier pass read of this worker's partitions beyond their committed offsets.
    let read_before = |topic: &str, partition: i32| {
        counters
            .read_ahead
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&(topic.to_string(), partition)))
            .unwrap_or_default()
    };
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
                read_before: read_before(&p.topic, p.partition),
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
    let mut machine = Machine::new(
        MachineConfig {
            window: config.window,
            until_caught_up: config.until_caught_up,
            day_cap: day_cap(),
            days_per_time: config.days_per_time,
        },
        mine.iter()
            .zip(&reader.lanes)
            .map(|(p, l)| LaneSpec {
                input: l.input,
                start: p.start,
                end: p.end,
                last: p.last,
            })
            .collect(),
    );
    if !mine.is_empty() {
        let start: Vec<Position> = mine.iter().map(|p| p.position()).collect();
        match log.open_source(&start) {
            Ok(mut s) => {
                s.order_by(
                    super::decode::trading_day_order(&config.topics.prices),
                    super::decode::DAY_LOOKAHEAD,
                );
                reader.source = Some(s);
            }
            Err(e) => {
                let failed = StopReason::Failed(source_failure(&e), e.fault());
                plane.raise(failed.clone());
                machine.stop(failed);
                error = Some(e.into());
            }
        }
    }
    tracing::debug!(worker = index, partitions = ?mine.iter().map(|p| (&p.topic, p.partition, p.start)).collect::<Vec<_>>(), "assigned");

    // Timestamp 0: the stored state, and every partition's start position.
    let strip_first = state.as_ref().is_some_and(|s| !s.is_empty());
    if let Some(state) = &state {
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
    for r in machine.initial_reports() {
        if let Some(p) = reader.progress(&r) {
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
    let mut forwarder = Forwarder {
        outlet,
        outbox,
        strip_first,
        forwarded_first: false,
    };

    let mut rounds_since_cap = 0u32;
    loop {
        // Reasons to stop from outside the machine: a signal, the sink, another worker.
        if stop.load(Relaxed) {
            machine.stop(StopReason::Signal);
        }
        if let Some(why) = counters.aborted() {
            machine.stop(StopReason::Failed(why, Fault::External));
        }
        if let Some(failed) = forwarder.failure() {
            machine.stop(failed);
        }
        if let Some(reason) = plane.received() {
            machine.stop(reason);
        }
        if let Some(reason) = machine.stopped() {
            tracing::debug!(
                worker = index,
                ?reason,
                time = machine.time(),
                "the worker stops reading"
            );
            if *reason != StopReason::CaughtUp {
                plane.raise(reason.clone());
            }
            break;
        }
        pulse.beat(&mut plane);
        forwarder.forward();
        if forwarder.held() > MAX_HELD_BATCHES {
            // The commit queue is full: read nothing more until it drains.
            worker.step_or_park(Some(Duration::from_millis(5)));
            continue;
        }
        let next_key = reader.source.as_ref().and_then(|s| s.next_key());
        let hold = align.step(index, next_key);
        let peer_time = align.latest_time().max(plane.peer_time());
        let before = machine.time();
        if rounds_since_cap >= 10_000 {
            // The clock moves on: a live job running for months keeps today's cap.
            machine.set_day_cap(day_cap());
            rounds_since_cap = 0;
        }
        rounds_since_cap += 1;
        let round = machine.begin_round(hold, next_key, peer_time);
        if round.time != before {
            inputs.advance_to(round.time);
        }
        align.publish_time(round.time);
        if remote_peers {
            plane.publish_time(round.time);
        }
        if let Some(src) = reader.source.as_mut() {
            src.hold_after(round.hold_after);
        }
        // No wait for input while the dataflow has work, nor when there is nothing left to
        // wait for (`--until-caught-up` with every partition read to its end at start).
        let wait =
            if probe.less_than(&round.time) || (config.until_caught_up && machine.caught_up()) {
                Duration::ZERO
            } else {
                IDLE_WAIT
            };
        let mut read = 0u64;
        if reader.source.is_some() {
            match reader.poll(&mut machine, &mut inputs, config, wait) {
                Ok(p) => {
                    read = p.ticks + p.holdings + p.dead + p.again;
                    counters.ticks.fetch_add(p.ticks, Relaxed);
                    counters.source_errors.fetch_add(p.errors, Relaxed);
                    counters.holdings.fetch_add(p.holdings, Relaxed);
                    counters.dead_letters.fetch_add(p.dead, Relaxed);
                }
                Err(msg) => {
                    counters.source_errors.fetch_add(1, Relaxed);
                    machine.stop(StopReason::Failed(msg.clone(), Fault::External));
                    error = Some(Error::Source(msg));
                }
            }
        } else {
            worker.step_or_park(Some(wait));
        }
        let end = machine.end_round(|i| reader.resume(i));
        for r in &end.reports {
            if let Some(p) = reader.progress(r) {
                inputs.control.send((
                    Control::Offset {
                        progress: p,
                        newest_ms: r.newest_ms,
                        backlog: r.backlog,
                    },
                    r.at,
                ));
            }
        }
        if let Some(StopReason::Rewind(day)) = machine.stopped() {
            if let Ok(mut r) = counters.rewind_to.lock() {
                *r = Some(r.map_or(*day, |r| r.min(*day)));
            }
        }
        if end.time != round.time {
            inputs.advance_to(end.time);
        }
        if read == 0 {
            // Nothing read (held back by the other workers, or nothing there): park until
            // the dataflow has work or a moment has passed, rather than spin against the
            // broker, the database and the other workers for the machine's cores.
            worker.step_or_park(Some(Duration::from_millis(1)));
        } else {
            worker.step();
        }
        while probe.less_than(&end.wait_for) {
            forwarder.forward();
            if plane.received().is_some() {
                break;
            }
            pulse.step(worker, &mut plane);
        }
    }
    // Close the inputs and let everything read so far reach the sink.
    align.done(index);
    if let Ok(mut ahead) = counters.read_ahead.lock() {
        for (i, l) in reader.lanes.iter().enumerate() {
            let offsets = machine.applied_ahead(i);
            if !offsets.is_empty() {
                ahead.insert(
                    (l.topic.clone(), l.partition),
                    offsets.into_iter().collect(),
                );
            }
        }
    }
    drop(inputs);
    drop(reader);
    // Everything read so far reaches the sink. After a watchdog's stop, only what is
    // complete: the dataflow cannot finish without the peer that hangs.
    let aborted = || counters.aborted().is_some();
    while !finished.get() && !aborted() {
        pulse.step(worker, &mut plane);
        forwarder.forward();
    }
    forwarder.drain(|| pulse.step(worker, &mut plane));
    // Worker 0 of process 0 says it finished only once the last commit is done, so that a
    // failed commit stops every process of the cluster with an error; every worker keeps its
    // side of the control plane open (beating) until all have finished.
    if let Some(why) = forwarder.finish(|| pulse.step(worker, &mut plane)) {
        plane.raise(why);
    }
    plane.finish(index);
    while !plane.all_finished(peers) && !aborted() {
        pulse.step(worker, &mut plane);
    }
    if let Some(why) = counters.aborted() {
        // Not waiting for the cluster to end: the watchdog ends the process.
        return Err(Error::Stopped(why, Fault::External));
    }
    plane.close();
    while worker.step_or_park(Some(Duration::from_millis(1))) {}
    if let Some(StopReason::Failed(msg, fault)) = plane.received() {
        if error.is_none() {
            return Err(Error::Stopped(msg, fault));
        }
    }
    error.map_or(Ok(()), Err)
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
