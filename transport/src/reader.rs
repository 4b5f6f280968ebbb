//! One reading algorithm for every backend: a backend says how to fetch the next record of one
//! partition ([`Lanes`]); [`MergedSource`] merges the partitions by an order key with
//! [`crate::merge::Merge`], hands records over, takes back the ones its reader refuses, and
//! knows where each partition may resume. The Kafka backend and the memory log both read
//! through it, so the job's tests over the memory log exercise the same ordering, hold and
//! resume code as a run against a broker.

use crate::merge::{Merge, Step};
use crate::{LogSource, Lookahead, OrderKey, RecordRef, Result, Take};
use std::time::{Duration, Instant};

/// What one fetch from a partition gave.
#[derive(Debug)]
pub enum Fetched<M> {
    Record(M),
    /// The partition holds nothing more now; `next` is the offset the next record will have
    /// (past records it holds but never hands over, such as transaction markers).
    End {
        next: i64,
    },
    /// Nothing within the wait.
    Nothing,
}

/// A backend's partitions, each fetched on its own.
pub trait Lanes: Send {
    /// A fetched record, owned.
    type Msg: Send;

    fn count(&self) -> usize;

    /// The topic and partition of a lane, for messages.
    fn name(&self, lane: usize) -> (&str, i32);

    /// The log end of each lane when reading started: below it the lane has a backlog.
    fn backlog_end(&self, lane: usize) -> i64;

    /// A record lent as a [`RecordRef`].
    fn view<'a>(&'a self, lane: usize, msg: &'a Self::Msg) -> RecordRef<'a>;

    /// The lane's next record, waiting up to `wait`.
    fn fetch(&mut self, lane: usize, wait: Duration) -> Result<Fetched<Self::Msg>>;

    /// Records (or errors) that arrived outside the lanes' own queues, with their lane.
    fn shared(&mut self, _found: &mut dyn FnMut(usize, Self::Msg)) -> Result<()> {
        Ok(())
    }

    /// Takes in what the client has already fetched for every lane, as far as the backend
    /// keeps it better than its client does (the Kafka backend: compact records instead of
    /// librdkafka's queued ops). Called at every poll, every `FILL_EVERY` records and before
    /// each wait on a lane; an error it meets comes out of `fetch` after the lane's records.
    fn fill(&mut self) {}
}

/// How many records a poll hands over between two `Lanes::fill`.
const FILL_EVERY: usize = 1024;

/// How long the merge waits for a partition with a backlog that is not read far enough and
/// delivers nothing while other records wait, before it reads the others ahead of it (with a
/// warning); it waits `merge::EMPTY_PATIENCE` times this for one that stays short whatever it
/// delivers: alignment must never stall the job.
pub const PATIENCE: Duration = Duration::from_secs(5);
/// The longest one call waits for such a partition before it returns what it has.
const CALL_WAIT: Duration = Duration::from_millis(50);
/// One wait on an empty partition.
const STEP: Duration = Duration::from_millis(5);

/// A [`LogSource`] over any [`Lanes`].
pub struct MergedSource<L: Lanes> {
    lanes: L,
    merge: Merge<L::Msg>,
    /// The merge order (`LogSource::order_by`); the log time without one.
    order: Option<OrderKey>,
}

impl<L: Lanes> MergedSource<L> {
    /// Reads `lanes`, lane i from offset `start[i]`.
    pub fn new(lanes: L, start: &[i64]) -> Self {
        Self::with_patience(lanes, start, PATIENCE)
    }

    pub fn with_patience(lanes: L, start: &[i64], patience: Duration) -> Self {
        let ends: Vec<(i64, i64)> = (0..lanes.count())
            .map(|i| (start.get(i).copied().unwrap_or(0), lanes.backlog_end(i)))
            .collect();
        MergedSource {
            merge: Merge::new(&ends, 0, patience),
            lanes,
            order: None,
        }
    }

    fn lane_of(&self, topic: &str, partition: i32) -> Option<usize> {
        (0..self.lanes.count()).find(|&i| self.lanes.name(i) == (topic, partition))
    }

    /// A fetched record into the merge, under its order key (`order`, or the log time).
    fn admit(&mut self, lane: usize, m: L::Msg) {
        let r = self.lanes.view(lane, &m);
        let key = match self.order.as_mut() {
            Some(f) => f(&r),
            None => r.timestamp_ms,
        };
        let offset = r.offset;
        self.merge.insert(lane, key, offset, m);
    }

    /// Fetches from `lane` once, waiting up to `wait`; false when it gave no record.
    fn fetch_into(&mut self, lane: usize, wait: Duration) -> Result<bool> {
        match self.lanes.fetch(lane, wait)? {
            Fetched::Record(m) => {
                self.admit(lane, m);
                Ok(true)
            }
            Fetched::End { next } => {
                self.merge.at_end(lane, next);
                Ok(false)
            }
            Fetched::Nothing => Ok(false),
        }
    }

    fn report(&mut self) {
        if let Some(lookahead) = self.merge.take_growth() {
            tracing::info!(
                lookahead,
                "the log is more out of order than the merge read ahead; reading this many \
                 keys ahead of every partition with a backlog from now on"
            );
        }
        for i in self.merge.take_warnings() {
            let (topic, partition) = self.lanes.name(i);
            tracing::warn!(
                topic,
                partition,
                "the log sent too little of this partition though it has a backlog (nothing \
                 for {PATIENCE:?} while other records waited, or not read far enough in {:?}); \
                 reading the others ahead of it (days may be evaluated incomplete first and \
                 corrected when its records come)",
                PATIENCE.saturating_mul(crate::merge::EMPTY_PATIENCE)
            );
        }
    }
}

impl<L: Lanes> Drop for MergedSource<L> {
    fn drop(&mut self) {
        for (i, disorder) in self.merge.disorder().into_iter().enumerate() {
            let (topic, partition) = self.lanes.name(i);
            tracing::debug!(
                topic,
                partition,
                disorder,
                lookahead = self.merge.lookahead(),
                "the most a record of this partition came behind the largest key read before it"
            );
        }
    }
}

impl<L: Lanes> LogSource for MergedSource<L> {
    fn poll_batch(
        &mut self,
        max: usize,
        wait: Duration,
        on_record: &mut dyn FnMut(RecordRef<'_>) -> Take,
    ) -> Result<usize> {
        let mut found: Vec<(usize, L::Msg)> = Vec::new();
        self.lanes.shared(&mut |lane, m| found.push((lane, m)))?;
        for (lane, m) in found {
            self.admit(lane, m);
        }
        self.lanes.fill();
        let n_lanes = self.lanes.count();
        let mut n = 0;
        let mut waited = Duration::ZERO;
        let mut idle = 0usize;
        while n < max {
            // Fetch from every lane that is not read far enough, without waiting.
            for i in 0..n_lanes {
                while self.merge.wants(i) {
                    if !self.fetch_into(i, Duration::ZERO)? {
                        break;
                    }
                }
            }
            let step = self.merge.next(Instant::now());
            self.report();
            let wait_on = match step {
                Step::Take(i) => {
                    let Some((key, m)) = self.merge.pop(i) else {
                        break;
                    };
                    let view = self.lanes.view(i, &m);
                    let offset = view.offset;
                    match on_record(view) {
                        Take::Next => {
                            n += 1;
                            if n % FILL_EVERY == 0 {
                                self.lanes.fill();
                            }
                            continue;
                        }
                        Take::Last => {
                            n += 1;
                            break;
                        }
                        Take::Refuse => {
                            self.merge.unpop(i, key, offset, m);
                            break;
                        }
                    }
                }
                // Held: the caller decides how to wait (the job parks its worker, so that
                // its dataflow work goes on meanwhile).
                Step::Held => break,
                Step::Wait(i) if waited < CALL_WAIT.max(wait) => i,
                Step::Wait(_) => break,
                Step::Empty if n == 0 && waited < wait && n_lanes > 0 => {
                    idle += 1;
                    idle % n_lanes
                }
                Step::Empty => break,
            };
            let t0 = Instant::now();
            self.lanes.fill();
            self.fetch_into(wait_on, STEP.min(wait.max(Duration::from_millis(1))))?;
            waited += t0.elapsed();
        }
        Ok(n)
    }

    fn order_by(&mut self, key: OrderKey, lookahead: Lookahead) {
        self.order = Some(key);
        self.merge.set_lookahead(lookahead.initial, lookahead.max);
    }

    fn next_key(&self) -> Option<i64> {
        self.merge.next_key(Instant::now())
    }

    fn hold_after(&mut self, key: Option<i64>) {
        self.merge.hold_after(key);
    }

    fn resume_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.merge.resume(self.lane_of(topic, partition)?)
    }
}
