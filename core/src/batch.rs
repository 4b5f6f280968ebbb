//! What a sink receives for one completed timestamp, and what a stateful sink stores.

use crate::types::{DeadLetter, Evaluation, HoldingInput, Issue, Position, PriceInput};
use std::collections::BTreeMap;

/// Everything the job produced for one completed timestamp, consolidated: a row retracted and
/// inserted again in the same timestamp does not appear. A transactional sink stores it
/// atomically, so that its tables always equal the job's output for exactly the log prefix
/// its offsets name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub time: u64,
    /// Evaluation rows sorted by row: +1 insert, −1 retract.
    pub evaluations: Vec<(Evaluation, isize)>,
    /// Portfolio-days that could not be evaluated (incomplete, overflow): +1 / −1.
    pub issues: Vec<(Issue, isize)>,
    /// Changes of the job's input state: the latest close of each (stock, day) …
    pub prices: Vec<(PriceInput, isize)>,
    /// … and the latest holding record of each (portfolio, stock, from).
    pub holdings: Vec<(HoldingInput, isize)>,
    pub dead_letters: Vec<DeadLetter>,
    /// The next offset of every partition any source has read so far (not only this batch's).
    pub offsets: Vec<Position>,
    /// The newest log timestamp (ms since the epoch) among the records of this timestamp: for
    /// end-to-end latency (publish → commit).
    pub newest_record_ms: Option<i64>,
}

impl Batch {
    /// Nothing but offsets.
    pub fn is_empty(&self) -> bool {
        self.evaluations.is_empty()
            && self.issues.is_empty()
            && self.prices.is_empty()
            && self.holdings.is_empty()
            && self.dead_letters.is_empty()
    }

    pub fn inserted(&self) -> u64 {
        self.evaluations
            .iter()
            .filter(|(_, d)| *d > 0)
            .map(|(_, d)| d.unsigned_abs() as u64)
            .sum()
    }

    pub fn retracted(&self) -> u64 {
        self.evaluations
            .iter()
            .filter(|(_, d)| *d < 0)
            .map(|(_, d)| d.unsigned_abs() as u64)
            .sum()
    }
}

/// The job's input state as a stateful sink stored it: the latest close of every (stock, day)
/// and the latest record of every (portfolio, stock, from), with their versions, and the next
/// offset of every source partition, all as of one committed batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    pub prices: Vec<PriceInput>,
    pub holdings: Vec<HoldingInput>,
    /// (topic, partition) → next offset.
    pub offsets: BTreeMap<(String, i32), i64>,
}

impl StoredState {
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty() && self.holdings.is_empty() && self.offsets.is_empty()
    }
}
