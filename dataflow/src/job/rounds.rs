//! One worker's loop: read its partitions in rounds, each round entering the dataflow at its
//! own timestamp, with the offsets reached. Timestamp 0 holds the stored state (loaded by the
//! sink, not read from the log), 1 the holdings present at start (read to their end before any
//! price, so that no portfolio is evaluated on a partial view of its positions), 2… live rounds.

use super::align::Align;
use super::committer::Outlet;
use super::counters::JobCounters;
use super::decode::{Decoded, Decoder};
use super::start::PartitionStart;
use super::JobConfig;
use crate::runtime::{build, Built, Control};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockflow_core::limits::MAX_DEAD_LETTER_BYTES_PER_ROUND;
use stockflow_core::{Position, StoredState};
use stockflow_transport::{Log, LogSource, RecordRef};
use timely::communication::Allocate;
use timely::worker::Worker;

/// Rounds a worker may run ahead of the dataflow's completed timestamps.
const MAX_ROUNDS_IN_FLIGHT: usize = 4;
/// Completed batches worker 0 may hold when the commit queue is full before it stops reading.
const MAX_HELD_BATCHES: usize = 2;
/// Stop messages: an error makes every process exit with an error; a signal is a clean stop.
pub(super) const STOP_ERROR: &str = "error: ";
const STOP_SIGNAL: &str = "signal: ";
/// A record touched a day before the restored window: stop cleanly, re-run wider.
const STOP_REWIND: &str = "rewind: ";

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
    /// The process's workers read in step by log time.
    pub align: &'a Align,
}

/// A partition this worker reads: where it stands and where it ended when the job started.
struct Slot {
    topic: String,
    partition: i32,
    is_prices: bool,
    next: i64,
    end: i64,
}

impl Slot {
    fn position(&self, offset: i64) -> Position {
        Position {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
        }
    }
}

/// Backoff for source errors that may pass (broker unreachable): exponential with jitter,
/// giving up after `give_up` of failures in a row.
struct SourceRetry {
    delays: backon::ExponentialBackoff,
    until: Option<Instant>,
    failing_since: Option<Instant>,
}

impl SourceRetry {
    fn new() -> Self {
        SourceRetry {
            delays: Self::policy(),
            until: None,
            failing_since: None,
        }
    }

    fn policy() -> backon::ExponentialBackoff {
        stockflow_core::backoff()
    }

    fn waiting(&self) -> bool {
        self.until.is_some_and(|u| Instant::now() < u)
    }

    fn succeeded(&mut self) {
        if self.failing_since.take().is_some() {
            self.delays = Self::policy();
            self.until = None;
        }
    }

    /// Schedules the next try; false once the failures have lasted `give_up`.
    fn failed(&mut self, give_up: Duration) -> bool {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= give_up {
            return false;
        }
        let delay = self.delays.next().unwrap_or(Duration::from_secs(5));
        self.until = Some(Instant::now() + delay);
        true
    }
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
    } = setup;
    let index = worker.index();
    let peers = worker.peers();
    let Built {
        mut inputs,
        probe,
        outbox,
        stop: mut cluster_stop,
    } = build(worker, config.keep_state, config.window);
    let skip_first = state.as_ref().is_some_and(|s| !s.is_empty());
    let mut error: Option<Error> = None;

    // This worker's share of the partitions; each partition is read by exactly one worker.
    let mut slots: Vec<Slot> = partitions
        .iter()
        .enumerate()
        .filter(|(i, _)| i % peers == index)
        .map(|(_, p)| Slot {
            topic: p.topic.clone(),
            partition: p.partition,
            is_prices: p.topic == config.topics.prices,
            next: p.start,
            end: p.end,
        })
        .collect();
    let slot_of: HashMap<(bool, i32), usize> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.is_prices, s.partition), i))
        .collect();
    let mut source: Option<Box<dyn LogSource>> = None;
    if !slots.is_empty() {
        let start: Vec<Position> = slots.iter().map(|s| s.position(s.next)).collect();
        match log.open_source(&start) {
            Ok(mut s) => {
                s.order_by(
                    super::decode::trading_day_order(&config.universe, &config.topics.prices),
                    super::decode::DAY_LOOKAHEAD,
                );
                source = Some(s);
            }
            Err(e) => {
                cluster_stop.raise(&format!("{STOP_ERROR}{e}"));
                error = Some(e.into());
            }
        }
    }
    tracing::debug!(worker = index, partitions = ?slots.iter().map(|s| (&s.topic, s.partition, s.next)).collect::<Vec<_>>(), "assigned");

    // Timestamp 0: the stored state, and every partition's start position.
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
    for s in &slots {
        inputs
            .control
            .send((Control::Offset(s.position(s.next), None), 0));
    }

    let mut decoder = Decoder::new(Arc::clone(&config.universe));
    let mut rewind_to: Option<chrono::NaiveDate> = None;
    let mut retry = SourceRetry::new();
    let mut forwarded_first = false;
    let mut rejected_logged = 0u64;
    // Forwards completed batches to the commit thread (worker 0 of process 0 only).
    let mut forward = |outlet: &Option<Outlet>| {
        let Some(outlet) = outlet else {
            outbox.borrow_mut().clear();
            return;
        };
        loop {
            let Some(batch) = outbox.borrow_mut().pop_front() else {
                return;
            };
            if !forwarded_first {
                forwarded_first = true;
                if skip_first && batch.time == 0 {
                    // The stored state's own output: the database has it already.
                    continue;
                }
            }
            if outlet.state.failed() {
                continue;
            }
            if let Some(batch) = outlet.offer(batch) {
                outbox.borrow_mut().push_front(batch);
                return;
            }
        }
    };

    let mut t = 0u64;
    // The timestamps of the last rounds, for the rounds-in-flight limit.
    let mut recent: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    loop {
        if stop.load(Relaxed) {
            cluster_stop.raise(&format!("{STOP_SIGNAL}stopped by a signal"));
        }
        if let Some(o) = outlet.as_ref().filter(|o| o.state.failed()) {
            let why = o
                .state
                .describe()
                .unwrap_or_else(|| "the sink failed".into());
            cluster_stop.raise(&format!("{STOP_ERROR}{why}"));
        }
        if cluster_stop.received().is_some() {
            break;
        }
        if config.until_caught_up && slots.iter().all(|s| s.next >= s.end) {
            break;
        }
        forward(&outlet);
        if outbox.borrow().len() > MAX_HELD_BATCHES {
            // The commit queue is full: read nothing more until it drains.
            worker.step_or_park(Some(Duration::from_millis(5)));
            continue;
        }
        // Per slot read this round: (next offset, timestamp, newest record time).
        let mut advanced: BTreeMap<usize, (i64, u64, Option<i64>)> = BTreeMap::new();
        let mut keyed = false;
        match source.as_mut() {
            Some(src) if !retry.waiting() => {
                let hold = align.step(index, src.next_key());
                src.hold_after(hold);
                // During a catch-up the records of trading day D go to timestamp `day_time(D)`
                // in every worker, so a day read by several workers is evaluated once, complete
                // (each worker's own round counter would split it). Other rounds count on from
                // there.
                if t >= 2 {
                    let day_t = hold.and_then(day_time);
                    if let Some(day_t) = day_t.filter(|&d| d >= t) {
                        keyed = true;
                        if day_t > t {
                            t = day_t;
                            inputs.advance_to(t);
                            recent.push_back(t);
                        }
                    }
                }
                let wait = if probe.less_than(&t) {
                    Duration::ZERO
                } else {
                    Duration::from_millis(20)
                };
                let (mut ticks, mut holdings, mut dead, mut dead_bytes) =
                    (0u64, 0u64, 0u64, 0usize);
                let prices_in = &mut inputs.prices;
                let holdings_in = &mut inputs.holdings;
                let control = &mut inputs.control;
                let slots_ref = &slots;
                let mut on_record = |r: RecordRef<'_>| {
                    let is_prices = r.topic == config.topics.prices;
                    let decoded = if is_prices {
                        decoder.price(&r)
                    } else {
                        decoder.holding(&r)
                    };
                    // A record about a day before the restored window: stop before it; the
                    // job re-runs with a window that covers it.
                    let day = match &decoded {
                        Decoded::Price(p) => Some(p.date),
                        Decoded::Holding(h) => Some(h.from),
                        Decoded::Rejected(_) => None,
                    };
                    if let (Some(w), Some(d)) = (config.window, day) {
                        if d < w {
                            rewind_to = Some(rewind_to.map_or(d, |r: chrono::NaiveDate| r.min(d)));
                            return ControlFlow::Break(());
                        }
                    }
                    let slot = slot_of.get(&(is_prices, r.partition)).copied();
                    let at = match slot.map(|i| &slots_ref[i]) {
                        Some(s) if !is_prices && r.offset < s.end => t.max(1),
                        _ => t.max(2),
                    };
                    if let Some(i) = slot {
                        let entry = advanced.entry(i).or_insert((0, at, None));
                        *entry = (r.offset + 1, entry.1.max(at), entry.2.max(r.timestamp_ms));
                    }
                    match decoded {
                        Decoded::Price(p) => {
                            ticks += 1;
                            prices_in.update_at(p, at, 1);
                        }
                        Decoded::Holding(h) => {
                            holdings += 1;
                            holdings_in.update_at(h, at, 1);
                        }
                        Decoded::Rejected(dl) => {
                            dead += 1;
                            dead_bytes += dl.payload.len() + dl.reason.len();
                            rejected_logged += 1;
                            if rejected_logged <= 100 || rejected_logged.is_multiple_of(1000) {
                                tracing::warn!(
                                    topic = r.topic,
                                    partition = r.partition,
                                    offset = r.offset,
                                    code = dl.code,
                                    rejected = rejected_logged,
                                    "dead letter: {}",
                                    dl.reason
                                );
                            }
                            control.send((Control::DeadLetter(dl), at));
                        }
                    }
                    if dead_bytes >= MAX_DEAD_LETTER_BYTES_PER_ROUND {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                };
                match src.poll_batch(config.max_batch, wait, &mut on_record) {
                    Ok(_) => retry.succeeded(),
                    Err(e) if e.is_retryable() => {
                        counters.source_errors.fetch_add(1, Relaxed);
                        if retry.failed(config.source_give_up) {
                            tracing::warn!(
                                worker = index,
                                "source error (retrying with backoff): {e}"
                            );
                        } else {
                            let msg = format!(
                                "the log has failed for {:?} in a row, giving up: {e}",
                                config.source_give_up
                            );
                            cluster_stop.raise(&format!("{STOP_ERROR}{msg}"));
                            error = Some(Error::Source(msg));
                        }
                    }
                    Err(e) => {
                        let msg = source_failure(&e);
                        cluster_stop.raise(&format!("{STOP_ERROR}{msg}"));
                        error = Some(Error::Source(msg));
                    }
                }
                counters.ticks.fetch_add(ticks, Relaxed);
                counters.holdings.fetch_add(holdings, Relaxed);
                counters.dead_letters.fetch_add(dead, Relaxed);
                if let Some(day) = rewind_to.take() {
                    if let Ok(mut r) = counters.rewind_to.lock() {
                        *r = Some(r.map_or(day, |r| r.min(day)));
                    }
                    cluster_stop.raise(&format!("{STOP_REWIND}{day}"));
                }
            }
            _ => {
                worker.step_or_park(Some(Duration::from_millis(20)));
            }
        }
        for (i, (offset, at, newest)) in advanced {
            let s = &mut slots[i];
            // A merging source hands records over out of offset order: resume from the lowest
            // one it still holds (records after it already handed over are read again after a
            // restart, and ignored: same version).
            let offset = source
                .as_ref()
                .and_then(|src| src.resume_offset(&s.topic, s.partition))
                .unwrap_or(offset);
            s.next = s.next.max(offset);
            inputs
                .control
                .send((Control::Offset(s.position(offset), newest), at));
        }
        if cluster_stop.raised() {
            // This worker stops reading now (a record it must not pass, or an error).
            break;
        }
        // The next round gets a new timestamp, unless the next day's records will move it
        // (keyed rounds).
        let phase_done = match t {
            0 => true,
            1 => slots.iter().all(|s| s.is_prices || s.next >= s.end),
            _ => !keyed,
        };
        if phase_done {
            t += 1;
            inputs.advance_to(t);
            recent.push_back(t);
        }
        while recent.len() > MAX_ROUNDS_IN_FLIGHT {
            recent.pop_front();
        }
        // The timestamp of the round MAX_ROUNDS_IN_FLIGHT rounds back.
        let floor = match recent.len() {
            MAX_ROUNDS_IN_FLIGHT => recent.front().copied().unwrap_or(0),
            _ => 0,
        };
        worker.step();
        while probe.less_than(&floor) {
            forward(&outlet);
            if cluster_stop.received().is_some() {
                break;
            }
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    }
    // Close the inputs and let everything read so far reach the sink.
    align.done(index);
    drop(inputs);
    cluster_stop.close();
    while worker.step_or_park(Some(Duration::from_millis(1))) {
        forward(&outlet);
    }
    forward(&outlet);
    // Whatever the queue still refuses is lost to this run (the sink failed, or the queue is
    // full): wait for room, unless the commits have stopped.
    while !outbox.borrow().is_empty() {
        match &outlet {
            Some(o) if !o.state.failed() => {
                forward(&outlet);
                std::thread::sleep(Duration::from_millis(1));
            }
            _ => break,
        }
    }
    if let Some(reason) = cluster_stop.received() {
        if let Some(msg) = reason.strip_prefix(STOP_ERROR) {
            if error.is_none() {
                return Err(Error::Stopped(msg.to_string()));
            }
        }
    }
    error.map_or(Ok(()), Err)
}

/// What a source error that will not pass means, and what to do.
/// The timestamp of trading day `key` (days from CE) during a catch-up: far apart (2^32 per
/// day), so that the rounds counted between two days' records never reach the next day's.
fn day_time(key: i64) -> Option<u64> {
    u64::try_from(key)
        .ok()?
        .checked_mul(1 << 32)?
        .checked_add(2)
}

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
