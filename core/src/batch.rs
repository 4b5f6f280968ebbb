//! What a sink receives for one completed timestamp, and what a stateful sink stores.

use crate::money::Money;
use crate::types::{
    DeadLetter, Evaluation, HoldingInput, Issue, Last, PortfolioId, PriceInput, Progress,
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
    /// Evaluation rows, +1 insert, −1 retract: in the parts the workers handed over, each
    /// sorted by row (a portfolio's rows are all in one part).
    pub evaluations: Rows<(Evaluation, isize)>,
    /// Portfolio-days that could not be evaluated (incomplete, overflow): +1 / −1.
    pub issues: Vec<(Issue, isize)>,
    /// Changes of the job's input state: the latest close of each (stock, day) …
    pub prices: Vec<(PriceInput, isize)>,
    /// … and the latest holding record of each (portfolio, stock, from).
    pub holdings: Vec<(HoldingInput, isize)>,
    pub dead_letters: Vec<DeadLetter>,
    /// The next offset of every partition any source has read so far (not only this batch's),
    /// with the mark of the last record applied there.
    pub offsets: Vec<Progress>,
    /// The newest log timestamp (ms since the epoch) among the records of this timestamp: for
    /// end-to-end latency (publish → commit).
    pub newest_record_ms: Option<i64>,
    /// Read while a partition was still below its end at the job's start (a catch-up): a
    /// sink may gather such batches into large transactions; one read live is committed at
    /// once.
    pub catching_up: bool,
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

    /// Rows a sink writes for this batch (evaluations, issues, state, dead letters).
    pub fn rows(&self) -> usize {
        self.evaluations.len()
            + self.issues.len()
            + self.prices.len()
            + self.holdings.len()
            + self.dead_letters.len()
    }

    /// Appends the next batch (`later`, of a later timestamp): the result is what the two
    /// together change, consolidated (a row inserted by one and retracted by the other is
    /// gone), with the later offsets.
    pub fn absorb(&mut self, later: Batch) {
        let first = std::mem::take(self);
        *self = Batch::merged(vec![first, later]);
    }

    /// Consecutive batches (in timestamp order) as one: what they change together,
    /// consolidated once (a row one timestamp wrote and a later one corrected is never
    /// written), every partition's latest offset. A sink that is behind, as during a catch-up,
    /// commits fewer, larger transactions this way.
    pub fn merged(batches: Vec<Batch>) -> Batch {
        if batches.len() == 1 {
            return batches.into_iter().next().unwrap_or_default();
        }
        let mut out = Batch::default();
        let mut evaluations = Vec::new();
        let mut offsets: BTreeMap<(String, i32), Progress> = BTreeMap::new();
        for b in batches {
            out.time = out.time.max(b.time);
            evaluations.extend(b.evaluations);
            out.issues.extend(b.issues);
            out.prices.extend(b.prices);
            out.holdings.extend(b.holdings);
            out.dead_letters.extend(b.dead_letters);
            for p in b.offsets {
                offsets.insert((p.position.topic.clone(), p.position.partition), p);
            }
            out.newest_record_ms = out.newest_record_ms.max(b.newest_record_ms);
            out.catching_up = b.catching_up;
        }
        consolidate(&mut evaluations);
        out.evaluations = Rows::from(evaluations);
        consolidate(&mut out.issues);
        consolidate(&mut out.prices);
        consolidate(&mut out.holdings);
        out.offsets = offsets.into_values().collect();
        out
    }
}

/// A batch's rows of one kind as the workers handed them over: one vector per worker's part,
/// not joined into one on worker 0 (that copied every row once more, on the one worker that
/// joined, while the others waited for it; a sink that gathers batches, as `Batch::merged`
/// does, makes one part of them). Equal to another when the rows are, in order, however
/// they are split into parts.
#[derive(Debug, Clone)]
pub struct Rows<T> {
    parts: Vec<Vec<T>>,
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Rows { parts: Vec::new() }
    }
}

impl<T> Rows<T> {
    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Vec::is_empty)
    }

    /// Every row, part after part.
    pub fn iter(&self) -> std::iter::Flatten<std::slice::Iter<'_, Vec<T>>> {
        self.parts.iter().flatten()
    }

    /// Adds a part after the others (an empty one is not kept).
    pub fn push_part(&mut self, part: Vec<T>) {
        if !part.is_empty() {
            self.parts.push(part);
        }
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Vec<T>] {
        &self.parts
    }

    /// Every row in one vector (no copy when there is one part).
    pub fn into_vec(mut self) -> Vec<T> {
        if self.parts.len() <= 1 {
            return self.parts.pop().unwrap_or_default();
        }
        let mut out = Vec::with_capacity(self.len());
        for part in self.parts {
            out.extend(part);
        }
        out
    }
}

impl<T> From<Vec<T>> for Rows<T> {
    fn from(part: Vec<T>) -> Self {
        let mut rows = Rows::default();
        rows.push_part(part);
        rows
    }
}

impl<T> FromIterator<T> for Rows<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Rows::from(iter.into_iter().collect::<Vec<T>>())
    }
}

impl<T: PartialEq> PartialEq for Rows<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: Eq> Eq for Rows<T> {}

impl<'a, T> IntoIterator for &'a Rows<T> {
    type Item = &'a T;
    type IntoIter = std::iter::Flatten<std::slice::Iter<'a, Vec<T>>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T> IntoIterator for Rows<T> {
    type Item = T;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<T>>>;
    fn into_iter(self) -> Self::IntoIter {
        self.parts.into_iter().flatten()
    }
}

/// Diffs summed per row, sorted by row, zero sums dropped.
fn consolidate<T: Ord>(diffs: &mut Vec<(T, isize)>) {
    if diffs.is_empty() {
        return;
    }
    diffs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(T, isize)> = Vec::with_capacity(diffs.len());
    for (row, d) in diffs.drain(..) {
        match out.last_mut() {
            Some((last, sum)) if *last == row => *sum += d,
            _ => out.push((row, d)),
        }
    }
    out.retain(|(_, d)| *d != 0);
    *diffs = out;
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
    /// (topic, partition) → what the job knows of the records below the offset (the last one
    /// it applied): checked against the log at start (a replaced log is refused).
    pub marks: BTreeMap<(String, i32), Last>,
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

    fn issue(portfolio: u32, day: u32, priced: i64) -> Issue {
        Issue {
            portfolio,
            date: NaiveDate::from_ymd_opt(2001, 1, day).unwrap_or_default(),
            kind: crate::types::IssueKind::Incomplete,
            held: 5,
            priced,
        }
    }

    fn at(partition: i32, offset: i64) -> Progress {
        Progress {
            position: crate::Position {
                topic: "p".into(),
                partition,
                offset,
            },
            last: Last::Unknown,
        }
    }

    #[test]
    fn absorbing_a_later_batch_keeps_what_both_change() {
        let mut first = Batch {
            time: 3,
            issues: vec![(issue(1, 2, 2), 1), (issue(2, 2, 4), 1)],
            offsets: vec![at(0, 10), at(1, 7)],
            newest_record_ms: Some(50),
            ..Batch::default()
        };
        let later = Batch {
            time: 4,
            // Portfolio 1's day is complete now; portfolio 2's has one more close.
            issues: vec![
                (issue(1, 2, 2), -1),
                (issue(2, 2, 4), -1),
                (issue(2, 2, 3), 1),
            ],
            offsets: vec![at(1, 9)],
            newest_record_ms: Some(40),
            ..Batch::default()
        };
        first.absorb(later);
        assert_eq!(first.time, 4);
        assert_eq!(first.issues, vec![(issue(2, 2, 3), 1)]);
        assert_eq!(first.offsets, vec![at(0, 10), at(1, 9)]);
        assert_eq!(first.newest_record_ms, Some(50));
        assert_eq!(first.rows(), 1);
        first.absorb(Batch::default());
        assert_eq!(first.issues, vec![(issue(2, 2, 3), 1)]);
    }

    #[test]
    fn rows_are_their_parts_in_order_however_split() {
        let mut split: Rows<(u32, isize)> = Rows::default();
        split.push_part(vec![(1, 1), (2, -1)]);
        split.push_part(Vec::new());
        split.push_part(vec![(3, 1)]);
        // The empty part is not kept.
        assert_eq!(split.parts().len(), 2);
        assert_eq!(split.len(), 3);
        assert!(!split.is_empty());
        let whole = Rows::from(vec![(1, 1), (2, -1), (3, 1)]);
        assert_eq!(split, whole);
        assert_ne!(split, Rows::from(vec![(1, 1), (3, 1), (2, -1)]));
        assert_ne!(split, Rows::from(vec![(1, 1), (2, -1)]));
        assert_eq!(split.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(split.clone().into_vec(), vec![(1, 1), (2, -1), (3, 1)]);
        assert_eq!(split.into_iter().count(), 3);
        let none: Rows<(u32, isize)> = Rows::from(Vec::new());
        assert!(none.is_empty());
        assert_eq!(none.len(), 0);
        assert!(none.into_vec().is_empty());
    }

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
