//! Per portfolio: every day with a contribution, its priced stocks and sum; the days with a
//! value; and the evaluation of each (value, change against the previous valued day) or the
//! issue that keeps it from having one. Keyed by portfolio: a new day costs a few map
//! operations whatever the length of the history, and a restated day re-emits itself and the
//! next valued day (whose change depends on it).

use super::contribute::Contribution;
use super::pending::{route, Pending};
use super::positions::Position;
use crate::eval::{evaluation, valid_value};
use chrono::NaiveDate;
use rustc_hash::FxHashMap as HashMap;
use stockflow_core::{Evaluation, Issue, IssueKind, Money};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::{Scope, Stream};

/// What a portfolio's book receives besides contributions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum BookInput {
    Position(Position, isize),
    /// A value before the restore window (the previous day of the window's first day).
    Seed(u32, NaiveDate, Money, isize),
}

impl BookInput {
    fn portfolio(&self) -> u32 {
        match self {
            BookInput::Position(p, _) => p.portfolio,
            BookInput::Seed(p, ..) => *p,
        }
    }
}

/// What the book emits: an evaluation row or an issue, each as a collection change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Row {
    Evaluation(Evaluation),
    Issue(Issue),
}

/// What a day last emitted (kept small: a day is 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Out {
    #[default]
    Nothing,
    /// An evaluation against the value of this previous day (a day or a seed).
    Evaluated(Option<NaiveDate>),
    /// An issue with these held and priced counts (≤ 10^4 stocks: u16).
    Issue(IssueKind, u16, u16),
}

#[derive(Debug, Clone, Copy)]
struct Day {
    sum: Money,
    date: NaiveDate,
    have: i32,
    out: Out,
}

/// Days per chunk: appending never copies more than one chunk, and no day's arrival makes
/// every portfolio's history move at once.
const CHUNK: usize = 256;

/// A portfolio's days, sorted by date, in chunks of at most `CHUNK` (all but the last full
/// or split; none empty). Days mostly arrive in order: appends to the last chunk.
#[derive(Debug, Default)]
struct Days {
    chunks: Vec<Vec<Day>>,
}

impl Days {
    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// (chunk, position) of `d`, or where it would go.
    fn find(&self, d: NaiveDate) -> Result<(usize, usize), (usize, usize)> {
        let Some(last) = self.chunks.last() else {
            return Err((0, 0));
        };
        let lc = self.chunks.len() - 1;
        let n = last.len();
        // New days arrive last; the previous valued day is usually the one before.
        match last.last() {
            Some(l) if l.date == d => return Ok((lc, n - 1)),
            Some(l) if l.date < d => return Err((lc, n)),
            _ => {}
        }
        match last.get(n.wrapping_sub(2)) {
            Some(x) if x.date == d => return Ok((lc, n - 2)),
            Some(x) if x.date < d => return Err((lc, n - 1)),
            _ => {}
        }
        // The first chunk whose last day is ≥ d.
        let c = self
            .chunks
            .partition_point(|ch| ch.last().is_some_and(|l| l.date < d))
            .min(lc);
        match self.chunks[c].binary_search_by_key(&d, |x| x.date) {
            Ok(i) => Ok((c, i)),
            Err(i) => Err((c, i)),
        }
    }

    fn get(&self, d: NaiveDate) -> Option<&Day> {
        self.find(d).ok().map(|(c, i)| &self.chunks[c][i])
    }

    fn get_mut(&mut self, d: NaiveDate) -> Option<&mut Day> {
        self.find(d).ok().map(|(c, i)| &mut self.chunks[c][i])
    }

    /// The day of `d`, created empty if new.
    fn entry(&mut self, d: NaiveDate) -> &mut Day {
        let (c, i) = match self.find(d) {
            Ok(at) => at,
            Err((c, i)) => {
                let day = Day {
                    sum: Money::ZERO,
                    date: d,
                    have: 0,
                    out: Out::Nothing,
                };
                if self.chunks.is_empty() {
                    self.chunks.push(Vec::with_capacity(4));
                }
                if self.chunks[c].len() < CHUNK {
                    self.chunks[c].insert(i, day);
                    (c, i)
                } else if i == CHUNK && c + 1 == self.chunks.len() {
                    let mut fresh = Vec::with_capacity(CHUNK);
                    fresh.push(day);
                    self.chunks.push(fresh);
                    (c + 1, 0)
                } else {
                    // A full chunk in the middle: split it.
                    let tail = self.chunks[c].split_off(CHUNK / 2);
                    self.chunks.insert(c + 1, tail);
                    let (c, i) = if i <= CHUNK / 2 {
                        (c, i)
                    } else {
                        (c + 1, i - CHUNK / 2)
                    };
                    self.chunks[c].insert(i, day);
                    (c, i)
                }
            }
        };
        &mut self.chunks[c][i]
    }

    fn remove(&mut self, d: NaiveDate) {
        if let Ok((c, i)) = self.find(d) {
            self.chunks[c].remove(i);
            if self.chunks[c].is_empty() {
                self.chunks.remove(c);
            }
        }
    }

    /// The dates in [from, to).
    fn dates_in(&self, from: NaiveDate, to: NaiveDate, out: &mut Vec<NaiveDate>) {
        let start = match self.find(from) {
            Ok(at) | Err(at) => at,
        };
        for (c, chunk) in self.chunks.iter().enumerate().skip(start.0) {
            let skip = if c == start.0 { start.1 } else { 0 };
            for day in chunk.iter().skip(skip) {
                if day.date >= to {
                    return;
                }
                out.push(day.date);
            }
        }
    }

    /// The first day after `d`.
    fn first_after(&self, d: NaiveDate) -> Option<NaiveDate> {
        let mut v = Vec::new();
        let next = d.succ_opt()?;
        self.dates_in(next, NaiveDate::MAX, &mut v);
        v.first().copied()
    }
}

/// One portfolio's book.
#[derive(Debug, Default)]
struct Book {
    positions: Vec<(Position, isize)>,
    days: Days,
    /// The dates of the days that have a value.
    valued: Vec<NaiveDate>,
    /// Values before a restore window.
    seeds: Vec<(NaiveDate, Money)>,
}

fn insert_sorted(v: &mut Vec<NaiveDate>, d: NaiveDate) {
    if v.last().is_none_or(|l| *l < d) {
        v.push(d);
    } else if let Err(i) = v.binary_search(&d) {
        v.insert(i, d);
    }
}

fn remove_sorted(v: &mut Vec<NaiveDate>, d: NaiveDate) {
    if let Ok(i) = v.binary_search(&d) {
        v.remove(i);
    }
}

impl Book {
    fn need(&self, d: NaiveDate) -> i64 {
        self.positions
            .iter()
            .filter(|(p, c)| *c > 0 && p.covers(d))
            .map(|(_, c)| *c as i64)
            .sum()
    }

    fn day(&self, d: NaiveDate) -> Option<&Day> {
        self.days.get(d)
    }

    /// The value of `d` now: a valued day's sum, or a seed.
    fn value(&self, d: NaiveDate) -> Option<Money> {
        let valued = match self.valued.last() {
            Some(l) if *l < d => false,
            Some(l) if *l == d => true,
            None => false,
            _ => self.valued.binary_search(&d).is_ok(),
        };
        if valued {
            return self.day(d).map(|x| x.sum);
        }
        if self.seeds.is_empty() {
            return None;
        }
        self.seeds
            .binary_search_by_key(&d, |x| x.0)
            .ok()
            .map(|i| self.seeds[i].1)
    }

    /// Whether `d` would have a value, and which, from its own state.
    fn own_value(&self, d: NaiveDate) -> Option<Money> {
        let day = self.day(d)?;
        let need = self.need(d);
        (need > 0 && i64::from(day.have) == need && valid_value(day.sum)).then_some(day.sum)
    }

    /// The last day or seed before `d` with a value.
    fn previous(&self, d: NaiveDate) -> Option<NaiveDate> {
        let day = match self.valued.last() {
            Some(l) if *l < d => Some(*l),
            _ => {
                let i = self.valued.partition_point(|x| *x < d);
                i.checked_sub(1).map(|i| self.valued[i])
            }
        };
        if self.seeds.is_empty() {
            return day;
        }
        let j = self.seeds.partition_point(|x| x.0 < d);
        let seed = j.checked_sub(1).map(|j| self.seeds[j].0);
        day.max(seed)
    }

    /// The first valued day after `d`.
    fn next_valued(&self, d: NaiveDate) -> Option<NaiveDate> {
        if self.valued.last().is_none_or(|l| *l <= d) {
            return None;
        }
        let i = self.valued.partition_point(|x| *x <= d);
        self.valued.get(i).copied()
    }

    fn day_mut(&mut self, d: NaiveDate) -> &mut Day {
        self.days.entry(d)
    }
}

/// The row a day shows for an output state, its value and the value it was compared with.
fn shown(p: u32, d: NaiveDate, out: Out, value: Option<Money>, prev: Option<Money>) -> Option<Row> {
    match out {
        Out::Nothing => None,
        Out::Issue(kind, held, priced) => Some(Row::Issue(Issue {
            portfolio: p,
            date: d,
            kind,
            held: i64::from(held),
            priced: i64::from(priced),
        })),
        Out::Evaluated(_) => value
            .and_then(|v| evaluation(p, d, v, prev).ok())
            .map(Row::Evaluation),
    }
}

fn count(n: i64) -> u16 {
    u16::try_from(n.max(0)).unwrap_or(u16::MAX)
}

/// Buffers reused from one portfolio to the next (no allocation per portfolio-day).
#[derive(Default)]
struct Scratch {
    /// Values before this timestamp of every day or seed that changes in it.
    before: Vec<(NaiveDate, Option<Money>)>,
    /// The days to look at again, ascending.
    work: Vec<NaiveDate>,
}

impl Scratch {
    fn remember(&mut self, book: &Book, d: NaiveDate) {
        if !self.before.iter().any(|(x, _)| *x == d) {
            self.before.push((d, book.value(d)));
        }
    }

    fn was(&self, book: &Book, d: NaiveDate) -> Option<Money> {
        self.before
            .iter()
            .find(|(x, _)| *x == d)
            .map_or_else(|| book.value(d), |(_, v)| *v)
    }

    /// Adds a day to look at after the current position `at` (kept sorted).
    fn push_work(&mut self, at: usize, d: NaiveDate) {
        let rest = &self.work[at..];
        if let Err(i) = rest.binary_search(&d) {
            self.work.insert(at + i, d);
        }
    }
}

/// Applies one timestamp's changes to a portfolio's book; pushes the rows that change.
fn apply(
    p: u32,
    book: &mut Book,
    contributions: &[Contribution],
    inputs: &[BookInput],
    window: Option<NaiveDate>,
    scratch: &mut Scratch,
    out: &mut Vec<(Row, isize)>,
) {
    scratch.before.clear();
    scratch.work.clear();
    for input in inputs {
        match input {
            BookInput::Position(pos, _) => {
                let upto = pos.to.unwrap_or(NaiveDate::MAX);
                let mut dates = Vec::new();
                book.days.dates_in(pos.from, upto, &mut dates);
                for d in dates {
                    scratch.remember(book, d);
                    scratch.work.push(d);
                }
            }
            BookInput::Seed(_, d, ..) => {
                scratch.remember(book, *d);
                if let Some(next) = book.days.first_after(*d) {
                    scratch.work.push(next);
                }
            }
        }
    }
    for c in contributions {
        scratch.remember(book, c.date);
        scratch.work.push(c.date);
    }
    scratch.work.sort_unstable();
    scratch.work.dedup();
    for input in inputs.iter().cloned() {
        match input {
            BookInput::Position(pos, diff) => {
                match book.positions.iter_mut().find(|(q, _)| *q == pos) {
                    Some(e) => e.1 += diff,
                    None => book.positions.push((pos, diff)),
                }
                book.positions.retain(|(_, c)| *c != 0);
            }
            BookInput::Seed(_, d, v, diff) => {
                let i = book.seeds.partition_point(|x| x.0 < d);
                let present = book.seeds.get(i).is_some_and(|x| x.0 == d);
                if diff > 0 && !present {
                    book.seeds.insert(i, (d, v));
                } else if diff > 0 {
                    book.seeds[i].1 = v;
                } else if present && book.seeds[i].1 == v {
                    book.seeds.remove(i);
                }
            }
        }
    }
    for c in contributions {
        let day = book.day_mut(c.date);
        day.have = day.have.wrapping_add(i32::try_from(c.have).unwrap_or(0));
        day.sum = day.sum.wrapping_add(c.sum);
    }
    let mut at = 0;
    while let Some(&d) = scratch.work.get(at) {
        at += 1;
        let Some(day) = book.day(d).copied() else {
            continue;
        };
        let need = book.need(d);
        let have = i64::from(day.have);
        let old_value = scratch.was(book, d);
        let new_value = book.own_value(d);
        // Whatever this day showed, computed with the values before this timestamp.
        let old_prev = match day.out {
            Out::Evaluated(Some(prev)) => scratch.was(book, prev),
            _ => None,
        };
        let old_row = shown(p, d, day.out, old_value, old_prev);
        match new_value {
            Some(_) => insert_sorted(&mut book.valued, d),
            None => remove_sorted(&mut book.valued, d),
        }
        let inside = window.is_none_or(|w| d >= w);
        let (new_out, new_prev) = if !inside || have == 0 || need == 0 {
            (Out::Nothing, None)
        } else if have != need {
            (
                Out::Issue(IssueKind::Incomplete, count(need), count(have)),
                None,
            )
        } else if !valid_value(day.sum) {
            (
                Out::Issue(IssueKind::Overflow, count(need), count(have)),
                None,
            )
        } else {
            let prev_day = book.previous(d);
            let prev = prev_day.and_then(|x| book.value(x));
            match evaluation(p, d, day.sum, prev) {
                Ok(_) => (Out::Evaluated(prev_day), prev),
                Err(kind) => (Out::Issue(kind, 0, 0), None),
            }
        };
        let new_row = shown(p, d, new_out, new_value, new_prev);
        if old_row != new_row {
            if let Some(r) = old_row {
                out.push((r, -1));
            }
            if let Some(r) = new_row {
                out.push((r, 1));
            }
        }
        if old_value != new_value {
            // The next valued day compares with this one.
            if let Some(next) = book.next_valued(d) {
                scratch.remember(book, next);
                scratch.push_work(at, next);
            }
        }
        if day.have == 0 && day.sum.is_zero() && new_out == Out::Nothing {
            book.days.remove(d);
        } else if let Some(x) = book.days.get_mut(d) {
            x.out = new_out;
        }
    }
}

/// The books of all portfolios: evaluation and issue changes.
pub fn days<G>(
    contributions: &Stream<G, (Contribution, u64)>,
    inputs: &Stream<G, (BookInput, u64)>,
    window: Option<NaiveDate>,
) -> Stream<G, (Row, u64, isize)>
where
    G: Scope<Timestamp = u64>,
{
    contributions
        .binary_frontier::<_, CapacityContainerBuilder<Vec<(Row, u64, isize)>>, _, _, _, _>(
            inputs,
            Exchange::new(|(c, _): &(Contribution, u64)| route(&c.portfolio)),
            Exchange::new(|(b, _): &(BookInput, u64)| route(&b.portfolio())),
            "Books",
            |_, _| {
                let mut pending: Pending<Contribution, BookInput> = Pending::default();
                let mut books: HashMap<u32, Book> = HashMap::default();
                let mut scratch = Scratch::default();
                move |contributions_in, inputs_in, output| {
                    contributions_in.for_each(|cap, data| {
                        let cap = cap.retain();
                        pending.first(&cap, data.drain(..));
                    });
                    inputs_in.for_each(|cap, data| {
                        let cap = cap.retain();
                        pending.second(&cap, data.drain(..));
                    });
                    let ready = pending.ready(&[contributions_in.frontier(), inputs_in.frontier()]);
                    for (cap, mut contributions, mut inputs) in ready {
                        let t = *cap.time();
                        // Grouped by portfolio by sorting (days ascending within one).
                        contributions.sort_unstable_by_key(|c| (c.portfolio, c.date));
                        inputs.sort_by_key(BookInput::portfolio);
                        let mut rows = Vec::new();
                        let (mut i, mut j) = (0, 0);
                        loop {
                            let p = match (contributions.get(i), inputs.get(j)) {
                                (Some(c), Some(b)) => c.portfolio.min(b.portfolio()),
                                (Some(c), None) => c.portfolio,
                                (None, Some(b)) => b.portfolio(),
                                (None, None) => break,
                            };
                            let ci = i + contributions[i..].partition_point(|c| c.portfolio == p);
                            let bj = j + inputs[j..].partition_point(|b| b.portfolio() == p);
                            let book = books.entry(p).or_default();
                            apply(
                                p,
                                book,
                                &contributions[i..ci],
                                &inputs[j..bj],
                                window,
                                &mut scratch,
                                &mut rows,
                            );
                            if book.days.is_empty()
                                && book.positions.is_empty()
                                && book.seeds.is_empty()
                            {
                                books.remove(&p);
                            }
                            (i, j) = (ci, bj);
                        }
                        let mut session = output.session(&cap);
                        for (r, d) in rows {
                            session.give((r, t, d));
                        }
                    }
                }
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default() + chrono::Duration::days(n)
    }

    #[test]
    fn chunked_days_stay_sorted_whatever_the_order() {
        let mut days = Days::default();
        // Appends, then inserts in the middle of full chunks, then removals.
        for n in (0..2000).step_by(2) {
            days.entry(day(n)).have = 1;
        }
        for n in (1..2000i64).rev().step_by(2) {
            days.entry(day(n)).have = 1;
        }
        let all: Vec<NaiveDate> = days.chunks.iter().flatten().map(|d| d.date).collect();
        assert_eq!(all.len(), 2000);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert!(days
            .chunks
            .iter()
            .all(|c| !c.is_empty() && c.len() <= CHUNK));
        for n in 0..2000 {
            assert_eq!(days.get(day(n)).map(|d| d.date), Some(day(n)));
        }
        let mut within = Vec::new();
        days.dates_in(day(300), day(310), &mut within);
        assert_eq!(within.len(), 10);
        assert_eq!(days.first_after(day(1998)), Some(day(1999)));
        for n in 0..1990 {
            days.remove(day(n));
        }
        assert_eq!(days.chunks.iter().flatten().count(), 10);
        assert_eq!(days.first_after(day(5)), Some(day(1990)));
    }

    #[test]
    fn a_day_is_small() {
        assert!(
            std::mem::size_of::<Day>() <= 32,
            "{}",
            std::mem::size_of::<Day>()
        );
    }
}
