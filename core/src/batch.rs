//! What a sink receives for one completed timestamp, and what a stateful sink stores.

use crate::money::Money;
use crate::types::{
    DeadLetter, Evaluation, HoldingInput, Issue, PortfolioId, Position, PriceInput,
};
use chrono::NaiveDate;
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

/// How much of the stored state a job restores into its dataflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// Everything: every stored close.
    All,
    /// The closes of the last `n` calendar days of the stored history (and all holdings).
    RecentDays(u32),
    /// The closes from this day on.
    From(NaiveDate),
}

impl Restore {
    /// The first day to restore, given the stored closes' first and last days; None means
    /// everything (no window, or one that starts at or before the first day).
    pub fn window(self, first: NaiveDate, last: NaiveDate) -> Option<NaiveDate> {
        let start = match self {
            Restore::All => return None,
            Restore::RecentDays(n) => last - chrono::Duration::days(i64::from(n)),
            Restore::From(d) => d,
        };
        (start > first).then_some(start)
    }
}

/// A portfolio's last stored evaluation before a restore window: what the first evaluated
/// day inside the window compares its value with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seed {
    pub portfolio: PortfolioId,
    pub date: NaiveDate,
    pub value: Money,
}

/// The job's input state as a stateful sink stored it, as of one committed batch: the latest
/// close of every (stock, day) and the latest record of every (portfolio, stock, from), with
/// their versions, and the next offset of every source partition.
///
/// A restore may hold only a window of it: the closes from `window` on, every holding
/// record, and per portfolio its last evaluation before the window (`seeds`). The job then
/// emits rows for days from `window` on only, and re-runs with a wider window when a record
/// touches an earlier day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    pub prices: Vec<PriceInput>,
    pub holdings: Vec<HoldingInput>,
    /// (topic, partition) → next offset.
    pub offsets: BTreeMap<(String, i32), i64>,
    /// The first day whose closes are restored; None when the whole state is.
    pub window: Option<NaiveDate>,
    pub seeds: Vec<Seed>,
}

impl StoredState {
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty() && self.holdings.is_empty() && self.offsets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let d = |m: u32, day: u32| NaiveDate::from_ymd_opt(2001, m, day).unwrap_or_default();
        assert_eq!(Restore::All.window(d(1, 2), d(6, 1)), None);
        assert_eq!(
            Restore::RecentDays(31).window(d(1, 2), d(6, 1)),
            Some(d(5, 1))
        );
        assert_eq!(Restore::RecentDays(365).window(d(1, 2), d(6, 1)), None);
        assert_eq!(Restore::From(d(1, 2)).window(d(1, 2), d(6, 1)), None);
        assert_eq!(
            Restore::From(d(3, 1)).window(d(1, 2), d(6, 1)),
            Some(d(3, 1))
        );
    }
}
