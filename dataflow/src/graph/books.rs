//! The portfolios' books: every portfolio-day's value, and its evaluation (value, change
//! against the previous valued day) or the issue that keeps it from one.
//!
//! Closes are few (a few thousand a day) and every portfolio needs them, so **every worker
//! keeps every close** (broadcast), in dense arrays by stock index, one per trading day. Each
//! worker keeps the **books of its own portfolios** (positions and seeds exchanged by
//! portfolio) and evaluates them from the closes it holds: a portfolio-day costs a pass over
//! the portfolio's positions with array lookups, no hashing, nothing crossing between workers
//! but the closes and the output rows.
//!
//! What a timestamp changes, and what it costs:
//! - **new trading days** (closes of days the store did not hold): every portfolio holding
//!   something that day evaluates them, in date order, appending to its book;
//! - a **restated close** (a day the store held): the portfolios holding that stock that day
//!   (a stock-to-portfolio index) evaluate that day again, and their next valued day, whose
//!   change depends on it;
//! - a **changed position** (a holding record): the portfolio evaluates again every day the
//!   position covers that has a close of the stock or an entry in its book;
//! - a **seed** (the value before a restore window): the first day after it.
//!
//! A day is evaluated from scratch (checked arithmetic over the positions covering it), so
//! what a book stores per day is small: its sum, its counts, and what it showed.

use super::pending::Pending;
use super::positions::Position;
use super::Horizon;
use crate::eval::{evaluation, valid_value};
use chrono::NaiveDate;
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, VecDeque};
use stockflow_core::{Evaluation, Issue, IssueKind, Money, PriceInput};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Exchange, Map, Operator};
use timely::dataflow::{Scope, Stream};

/// What a portfolio's book receives besides closes.
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

/// What the books emit: an evaluation row or an issue, each as a collection change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Row {
    Evaluation(Evaluation),
    Issue(Issue),
}

/// A close the store holds, in millionths: every price of the contract fits (below 10^15).
const NONE: i64 = i64::MIN;
/// A close outside an i64 (outside the contract): the days it prices overflow.
const HUGE: i64 = i64::MAX;

/// One trading day's closes, by stock index.
#[derive(Debug, Default)]
struct DayCloses {
    prices: Vec<i64>,
    count: u32,
}

impl DayCloses {
    fn get(&self, stock: u32) -> Option<i64> {
        self.prices
            .get(stock as usize)
            .copied()
            .filter(|&p| p != NONE)
    }
}

fn units(price: Money) -> i64 {
    i64::try_from(price.units()).unwrap_or(HUGE)
}

/// Every close, by day (each worker holds all of them).
#[derive(Debug, Default)]
struct Closes {
    days: BTreeMap<NaiveDate, DayCloses>,
}

impl Closes {
    /// Sets closes of one day; whether the day is new to the store (one lookup of the day
    /// for all of them: every worker sets every close, 2,000 a day in the bench).
    fn set_day<'a>(
        &mut self,
        date: NaiveDate,
        closes: impl IntoIterator<Item = &'a PriceInput>,
    ) -> bool {
        let mut new = false;
        let day = self.days.entry(date).or_insert_with(|| {
            new = true;
            DayCloses::default()
        });
        for c in closes {
            let i = c.stock as usize;
            if day.prices.len() <= i {
                day.prices.resize(i + 1, NONE);
            }
            if day.prices[i] == NONE {
                day.count += 1;
            }
            day.prices[i] = units(c.price);
        }
        new
    }

    /// Forgets every day before `h`.
    fn evict(&mut self, h: NaiveDate) {
        self.days = self.days.split_off(&h);
    }

    /// Removes a close if the store holds that one.
    fn unset(&mut self, stock: u32, date: NaiveDate, price: Money) {
        let Some(day) = self.days.get_mut(&date) else {
            return;
        };
        if day.get(stock) == Some(units(price)) {
            day.prices[stock as usize] = NONE;
            day.count = day.count.saturating_sub(1);
            if day.count == 0 {
                self.days.remove(&date);
            }
        }
    }
}

/// What a day showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Out {
    #[default]
    Nothing,
    /// An evaluation against the value of this previous day (a day or a seed).
    Evaluated(Option<NaiveDate>),
    /// An issue with these held and priced counts (≤ 10^4 stocks: u16).
    Issue(IssueKind, u16, u16),
}

/// A portfolio-day with at least one close of a stock held that day.
#[derive(Debug, Clone, Copy)]
struct Day {
    /// Σ quantity × close over the positions priced that day.
    sum: Money,
    date: NaiveDate,
    out: Out,
    /// Every held stock priced, and the sum a value the contract allows.
    valued: bool,
}

/// One portfolio's book.
#[derive(Debug, Default)]
struct Book {
    positions: Vec<(Position, isize)>,
    /// Sorted by date; a deque, so that forgetting the oldest days moves none of the others.
    days: VecDeque<Day>,
    /// Values before a restore window, sorted by date.
    seeds: Vec<(NaiveDate, Money)>,
    /// Its open positions in [`Books::flat`], for the days they alone cover (None: never
    /// flattened, a position with a count other than 1, an open quantity beyond an i32, or
    /// more than a u32 indexes; then every day takes the full pass over `positions`).
    flat: Option<FlatRange>,
}

/// An open position (no end date) of count 1, as a new day's pass reads it: 8 bytes (a
/// quantity of the contract, at most 10^9, fits an i32; a book with a larger one is not
/// flattened). Every day's pass reads the whole array, 600,000 of them in the bench: at 16
/// bytes they were the most of a day's memory traffic.
#[derive(Debug, Clone, Copy)]
struct FlatPosition {
    quantity: i32,
    stock: u32,
}

/// Where a book's open positions are in [`Books::flat`], and from which day they are exactly
/// the positions covering a day: every open one has begun and every closed one has ended.
#[derive(Debug, Clone, Copy)]
struct FlatRange {
    at: u32,
    len: u32,
    from: NaiveDate,
}

impl FlatRange {
    fn slice<'a>(&self, flat: &'a [FlatPosition]) -> Option<&'a [FlatPosition]> {
        let at = self.at as usize;
        flat.get(at..at + self.len as usize)
    }
}

/// Appends a book's open positions to `flat`: None (and `flat` as it was) when a count is
/// not 1 (a record present twice: the full pass counts it), a quantity does not fit an i32
/// (outside the contract), or there are more than a u32 holds.
fn flatten(positions: &[(Position, isize)], flat: &mut Vec<FlatPosition>) -> Option<FlatRange> {
    let at = flat.len();
    let mut from = NaiveDate::MIN;
    for (pos, count) in positions {
        if *count <= 0 {
            continue;
        }
        if *count != 1 {
            flat.truncate(at);
            return None;
        }
        match pos.to {
            Some(to) => from = from.max(to),
            None => {
                let Ok(quantity) = i32::try_from(pos.quantity) else {
                    flat.truncate(at);
                    return None;
                };
                from = from.max(pos.from);
                flat.push(FlatPosition {
                    quantity,
                    stock: pos.stock,
                });
            }
        }
    }
    let range = u32::try_from(at)
        .ok()
        .zip(u32::try_from(flat.len() - at).ok())
        .map(|(at, len)| FlatRange { at, len, from });
    if range.is_none() {
        flat.truncate(at);
    }
    range
}

/// [`tally`] of a day on which `positions` (a [`flatten`]ed book's) are exactly the ones
/// covering it: one pass over contiguous memory. A close is below 2^63 and a flat quantity
/// below 2^31, so a product is below 2^94 and only the sum can overflow (checked, as in
/// `tally`).
fn tally_flat(positions: &[FlatPosition], closes: Option<&DayCloses>) -> (i64, i64, Option<Money>) {
    let held = positions.len() as i64;
    let Some(day) = closes else {
        return (held, 0, Some(Money::ZERO));
    };
    let mut priced = 0i64;
    let mut sum = Some(0i128);
    for pos in positions {
        let Some(&price) = day.prices.get(pos.stock as usize) else {
            continue;
        };
        if price == NONE {
            continue;
        }
        priced += 1;
        sum = sum.and_then(|acc| {
            if price == HUGE {
                return None;
            }
            acc.checked_add(i128::from(price).wrapping_mul(i128::from(pos.quantity)))
        });
    }
    (held, priced, sum.map(Money::from_units))
}

/// A day computed from the closes: (held, priced, Σ quantity × close; None if it overflows).
fn tally(
    positions: &[(Position, isize)],
    closes: Option<&DayCloses>,
    d: NaiveDate,
) -> (i64, i64, Option<Money>) {
    let (mut held, mut priced) = (0i64, 0i64);
    let mut sum = Some(Money::ZERO);
    for (pos, count) in positions {
        if *count <= 0 || !pos.covers(d) {
            continue;
        }
        let c = *count as i64;
        held += c;
        let Some(price) = closes.and_then(|day| day.get(pos.stock)) else {
            continue;
        };
        priced += c;
        sum = sum.and_then(|acc| {
            if price == HUGE {
                return None;
            }
            let v = Money::from_units(i128::from(price)).checked_mul_int(pos.quantity)?;
            let v = if c == 1 { v } else { v.checked_mul_int(c)? };
            acc.checked_add(v)
        });
    }
    (held, priced, sum)
}

impl Book {
    fn find(&self, d: NaiveDate) -> Result<usize, usize> {
        match self.days.back() {
            Some(l) if l.date < d => Err(self.days.len()),
            Some(l) if l.date == d => Ok(self.days.len() - 1),
            _ => self.days.binary_search_by_key(&d, |x| x.date),
        }
    }

    fn day(&self, d: NaiveDate) -> Option<&Day> {
        self.find(d).ok().map(|i| &self.days[i])
    }

    /// The value of `d` now: a valued day's sum, or a seed.
    fn value(&self, d: NaiveDate) -> Option<Money> {
        if let Some(day) = self.day(d) {
            if day.valued {
                return Some(day.sum);
            }
        }
        self.seeds
            .binary_search_by_key(&d, |x| x.0)
            .ok()
            .map(|i| self.seeds[i].1)
    }

    /// The last valued day or seed before `d`.
    fn previous(&self, d: NaiveDate) -> Option<NaiveDate> {
        let end = match self.find(d) {
            Ok(i) | Err(i) => i,
        };
        let day = self
            .days
            .range(..end)
            .rev()
            .find(|x| x.valued)
            .map(|x| x.date);
        if self.seeds.is_empty() {
            return day;
        }
        let j = self.seeds.partition_point(|x| x.0 < d);
        let seed = j.checked_sub(1).map(|j| self.seeds[j].0);
        day.max(seed)
    }

    /// The first valued day after `d`.
    fn next_valued(&self, d: NaiveDate) -> Option<NaiveDate> {
        let start = match self.find(d) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        self.days.range(start..).find(|x| x.valued).map(|x| x.date)
    }

    /// The first day in the book after `d`.
    fn first_after(&self, d: NaiveDate) -> Option<NaiveDate> {
        let start = match self.find(d) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        self.days.get(start).map(|x| x.date)
    }

    fn is_empty(&self) -> bool {
        self.days.is_empty() && self.positions.is_empty() && self.seeds.is_empty()
    }

    /// Forgets the days before `h`, keeping the last valued one as a seed (what the first
    /// day from `h` on compares with), and the seeds it supersedes. Nothing before `h` can
    /// change any more (the reading loop refuses records about those days), and nothing from
    /// `h` on reads them but through `previous` and `value`, which the seed answers.
    fn evict(&mut self, h: NaiveDate) {
        let k = self.days.partition_point(|x| x.date < h);
        let last = self
            .days
            .range(..k)
            .rev()
            .find(|x| x.valued)
            .map(|x| (x.date, x.sum));
        self.days.drain(..k);
        let j = self.seeds.partition_point(|x| x.0 < h);
        // The latest of the last seed before `h` and the last valued day before `h`.
        let keep = match (j.checked_sub(1).map(|i| self.seeds[i]), last) {
            (Some(seed), Some(day)) if seed.0 > day.0 => Some(seed),
            (_, Some(day)) => Some(day),
            (seed, None) => seed,
        };
        self.seeds.drain(..j);
        if let Some(seed) = keep {
            self.seeds.insert(0, seed);
        }
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
    /// The days to evaluate again, ascending.
    work: Vec<NaiveDate>,
}

impl Scratch {
    fn remember(&mut self, d: NaiveDate, value: Option<Money>) {
        if !self.before.iter().any(|(x, _)| *x == d) {
            self.before.push((d, value));
        }
    }

    fn was(&self, book: &Book, d: NaiveDate) -> Option<Money> {
        self.before
            .iter()
            .find(|(x, _)| *x == d)
            .map_or_else(|| book.value(d), |(_, v)| *v)
    }

    /// Adds a day to evaluate after the current position `at` (kept sorted).
    fn push_work(&mut self, at: usize, d: NaiveDate) {
        let rest = &self.work[at..];
        if let Err(i) = rest.binary_search(&d) {
            self.work.insert(at + i, d);
        }
    }
}

/// Evaluates again the days in `scratch.work` (sorted, deduplicated) of portfolio `p`, and
/// the next valued day after each whose value changed; pushes the rows that change.
fn evaluate_days(
    p: u32,
    book: &mut Book,
    flat: &[FlatPosition],
    closes: &Closes,
    window: Option<NaiveDate>,
    scratch: &mut Scratch,
    out: &mut Vec<(Row, isize)>,
) {
    let mut at = 0;
    while let Some(&d) = scratch.work.get(at) {
        at += 1;
        let fast = book
            .flat
            .filter(|f| d >= f.from)
            .and_then(|f| f.slice(flat));
        let (held, priced, sum) = match fast {
            Some(positions) => tally_flat(positions, closes.days.get(&d)),
            None => tally(&book.positions, closes.days.get(&d), d),
        };
        let old = book.day(d).copied();
        let old_value = old.and_then(|x| x.valued.then_some(x.sum));
        let old_row = old.and_then(|x| {
            let prev = match x.out {
                Out::Evaluated(Some(prev)) => scratch.was(book, prev),
                _ => None,
            };
            shown(p, d, x.out, old_value, prev)
        });
        let valid_sum = sum.filter(|s| valid_value(*s));
        let valued = held > 0 && priced == held && valid_sum.is_some();
        let new_value = if valued { valid_sum } else { None };
        let inside = window.is_none_or(|w| d >= w);
        // What the day shows now (computed once: a change % is a division).
        let (new_out, new_row) = if !inside || priced == 0 || held == 0 {
            (Out::Nothing, None)
        } else if priced != held {
            let out = Out::Issue(IssueKind::Incomplete, count(held), count(priced));
            (out, shown(p, d, out, None, None))
        } else if valid_sum.is_none() {
            let out = Out::Issue(IssueKind::Overflow, count(held), count(priced));
            (out, shown(p, d, out, None, None))
        } else {
            let prev_day = book.previous(d);
            let prev = prev_day.and_then(|x| book.value(x));
            match new_value.map(|v| evaluation(p, d, v, prev)) {
                Some(Ok(e)) => (Out::Evaluated(prev_day), Some(Row::Evaluation(e))),
                Some(Err(kind)) => {
                    let out = Out::Issue(kind, 0, 0);
                    (out, shown(p, d, out, None, None))
                }
                None => (Out::Nothing, None),
            }
        };
        if old_value != new_value {
            scratch.remember(d, old_value);
        }
        match (book.find(d), priced > 0) {
            (Ok(i), true) => {
                book.days[i] = Day {
                    sum: sum.unwrap_or(Money::ZERO),
                    date: d,
                    out: new_out,
                    valued,
                }
            }
            (Ok(i), false) => {
                book.days.remove(i);
            }
            (Err(i), true) => insert_day(
                &mut book.days,
                i,
                Day {
                    sum: sum.unwrap_or(Money::ZERO),
                    date: d,
                    out: new_out,
                    valued,
                },
            ),
            (Err(_), false) => {}
        }
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
                scratch.push_work(at, next);
            }
        }
    }
}

/// Inserts a day, growing the deque by a quarter when full (not doubling it): a book holds
/// the days in memory and a few weeks more, and doubling left a third of 20,000 books' days
/// unused (80 MB in the 2,000 × 20,000 bench).
fn insert_day(days: &mut VecDeque<Day>, i: usize, day: Day) {
    if days.len() == days.capacity() {
        days.reserve_exact((days.len() / 4).max(8));
    }
    days.insert(i, day);
}

/// Applies a portfolio's position and seed changes; adds the days they touch to
/// `scratch.work` (not the store's days `new_days` holds, which every book evaluates anyway).
fn apply_inputs(
    book: &mut Book,
    inputs: &[BookInput],
    closes: &Closes,
    new_days: &[NaiveDate],
    scratch: &mut Scratch,
) {
    for input in inputs {
        match input {
            BookInput::Position(pos, diff) => {
                let upto = pos.to.unwrap_or(NaiveDate::MAX);
                let lo = book.days.partition_point(|x| x.date < pos.from);
                scratch.work.extend(
                    book.days
                        .range(lo..)
                        .take_while(|x| x.date < upto)
                        .map(|x| x.date),
                );
                scratch.work.extend(
                    closes
                        .days
                        .range(pos.from..upto)
                        .filter(|(d, day)| {
                            day.get(pos.stock).is_some() && new_days.binary_search(d).is_err()
                        })
                        .map(|(d, _)| *d),
                );
                match book.positions.iter_mut().find(|(q, _)| q == pos) {
                    Some(e) => e.1 += diff,
                    None => book.positions.push((*pos, *diff)),
                }
                book.positions.retain(|(_, c)| *c != 0);
            }
            BookInput::Seed(_, d, v, diff) => {
                scratch.remember(*d, book.value(*d));
                if let Some(next) = book.first_after(*d) {
                    scratch.work.push(next);
                }
                let i = book.seeds.partition_point(|x| x.0 < *d);
                let present = book.seeds.get(i).is_some_and(|x| x.0 == *d);
                if *diff > 0 && !present {
                    book.seeds.insert(i, (*d, *v));
                } else if *diff > 0 {
                    book.seeds[i].1 = *v;
                } else if present && book.seeds[i].1 == *v {
                    book.seeds.remove(i);
                }
            }
        }
    }
}

/// This worker's books, the closes, and which of its portfolios hold each stock.
#[derive(Default)]
struct Books {
    closes: Closes,
    /// This worker's books, one after the other, in the order they first came (`slots` says
    /// whose; a load of the holdings, the bench's among them, comes in id order, the order of
    /// the visits). Indexed by portfolio id instead, a worker's share of the hashed ids left
    /// a gap at every other book, and a day's sweep read the gaps too.
    books: Vec<Book>,
    /// By portfolio id: its book's index in `books`, plus one (0: none yet).
    slots: Vec<usize>,
    /// The ids of this worker's books that hold something, ascending.
    owned: Vec<u32>,
    /// Stock → the portfolios (of this worker) that had a position in it at some time.
    holders: HashMap<u32, Vec<u32>>,
    scratch: Scratch,
    /// The horizon of the last eviction: days before it have left memory.
    evicted: Option<NaiveDate>,
    /// Every book's open positions, one book after the other (`Book::flat`): a new day reads
    /// them in one sweep, where each book's own vector was a cache miss.
    flat: Vec<FlatPosition>,
    /// Entries of `flat` no book points at any more (a book whose positions changed moved
    /// its own to the end); compacted once they are half.
    flat_garbage: usize,
}

/// Books whose last days [`touch`] reads at once.
const TOUCH_AHEAD: usize = 16;

/// Reads the last day of each of these portfolios' books, together: each is at an unrelated
/// address, a cache miss (about 180 ns on the machine measured), which a book's pass waited
/// for on its own; read together, the misses overlap, and the passes find them in cache.
fn touch(portfolios: &[u32], slots: &[usize], books: &[Book]) {
    let mut seen = 0i32;
    for &p in portfolios {
        let book = index_of(slots, p).and_then(|s| books.get(s));
        if let Some(day) = book.and_then(|b| b.days.back()) {
            seen ^= i32::from(day.valued);
        }
    }
    std::hint::black_box(seen);
}

/// The index in `books` of portfolio `p`'s book, given one at the end if it has none yet.
fn slot(slots: &mut Vec<usize>, books: &mut Vec<Book>, p: u32) -> usize {
    let i = p as usize;
    if slots.len() <= i {
        slots.resize(i + 1, 0);
    }
    if let Some(s) = index_of(slots, p) {
        return s;
    }
    books.push(Book::default());
    slots[i] = books.len();
    books.len() - 1
}

/// Where portfolio `p`'s book is in `books`, if it has one.
fn index_of(slots: &[usize], p: u32) -> Option<usize> {
    slots.get(p as usize)?.checked_sub(1)
}

/// Portfolio `p`'s book, if it has one.
fn book_of<'a>(slots: &[usize], books: &'a mut [Book], p: u32) -> Option<&'a mut Book> {
    books.get_mut(index_of(slots, p)?)
}

/// Days the horizon moves between two evictions: each costs a pass over every book (a binary
/// search and the days it forgets, from the front of the deque), so memory holds up to
/// `--memory-days` + 30 days.
const EVICT_STEP_DAYS: i64 = 30;

impl Books {
    /// One timestamp: close changes (every worker gets all of them) and this worker's
    /// portfolios' inputs. Pushes the rows that change.
    fn apply(
        &mut self,
        mut close_changes: Vec<(PriceInput, isize)>,
        mut inputs: Vec<BookInput>,
        window: Option<NaiveDate>,
        out: &mut Vec<(Row, isize)>,
    ) {
        let Books {
            closes,
            books,
            slots,
            owned,
            holders,
            scratch,
            evicted: _,
            flat,
            flat_garbage,
        } = self;
        // 1. The closes: retractions first (a replaced close is −old, +new at one time), then
        //    the insertions a day at a time. A close of a day the store held before this
        //    timestamp is a restatement (or a late close): the days it touches are evaluated
        //    again.
        close_changes.sort_by_key(|(_, d)| *d);
        let mut new_days: Vec<NaiveDate> = Vec::new();
        let mut restated: Vec<(u32, NaiveDate)> = Vec::new();
        let inserts = close_changes.partition_point(|(_, d)| *d < 0);
        for (c, _) in &close_changes[..inserts] {
            closes.unset(c.stock, c.date, c.price);
            restated.push((c.stock, c.date));
        }
        for run in close_changes[inserts..].chunk_by(|a, b| a.0.date == b.0.date) {
            let date = run[0].0.date;
            let known = new_days.binary_search(&date).is_err();
            if closes.set_day(date, run.iter().map(|(c, _)| c)) {
                if let Err(i) = new_days.binary_search(&date) {
                    new_days.insert(i, date);
                }
            } else if known {
                restated.extend(run.iter().map(|(c, _)| (c.stock, date)));
            }
        }
        // 2. Inputs grouped by portfolio (portfolio order).
        inputs.sort_by_key(BookInput::portfolio);
        let groups: Vec<&[BookInput]> = inputs
            .chunk_by(|a, b| a.portfolio() == b.portfolio())
            .collect();
        // 3. Restated closes: the portfolios holding the stock (that day: checked below).
        let mut extra: HashMap<u32, Vec<NaiveDate>> = HashMap::default();
        for &(s, d) in &restated {
            for &p in holders.get(&s).map(Vec::as_slice).unwrap_or_default() {
                extra.entry(p).or_default().push(d);
            }
        }
        let inputs_of = |p: u32| -> &[BookInput] {
            groups
                .binary_search_by_key(&p, |g| g[0].portfolio())
                .ok()
                .map(|i| groups[i])
                .unwrap_or_default()
        };
        let mut visit_one = |p: u32, book: &mut Book| {
            let own = inputs_of(p);
            scratch.before.clear();
            scratch.work.clear();
            apply_inputs(book, own, closes, &new_days, scratch);
            if own.iter().any(|i| matches!(i, BookInput::Position(..))) {
                if let Some(old) = book.flat.take() {
                    *flat_garbage += old.len as usize;
                }
                book.flat = flatten(&book.positions, flat);
            }
            for input in own {
                if let BookInput::Position(pos, diff) = input {
                    // Sorted: a binary search finds it.
                    let list = holders.entry(pos.stock).or_default();
                    if *diff > 0 {
                        if let Err(i) = list.binary_search(&p) {
                            list.insert(i, p);
                        }
                    }
                }
            }
            if let Some(days) = extra.get(&p) {
                scratch.work.extend(days.iter().copied().filter(|&d| {
                    book.day(d).is_some()
                        || book.positions.iter().any(|(x, c)| *c > 0 && x.covers(d))
                }));
            }
            if scratch.work.is_empty() {
                scratch.work.extend_from_slice(&new_days);
            } else {
                scratch.work.extend_from_slice(&new_days);
                scratch.work.sort_unstable();
                scratch.work.dedup();
            }
            evaluate_days(p, book, flat, closes, window, scratch, out);
        };
        // 4. Each portfolio, in id order: its inputs, then every day to evaluate again, in
        //    date order. With new days every book; else only those with inputs or a
        //    restated close.
        let mut visit: Vec<u32> = groups.iter().map(|g| g[0].portfolio()).collect();
        visit.extend(extra.keys().copied());
        if !new_days.is_empty() {
            visit.extend_from_slice(owned);
        }
        visit.sort_unstable();
        visit.dedup();
        // The books that hold something after this timestamp: the visited ones that do, and
        // the others as they were, merged in id order (both lists are sorted: a binary search
        // of `owned` for every visited book was 15 % of this function's time).
        let mut still: Vec<u32> = Vec::with_capacity(owned.len() + visit.len());
        let mut others = owned.iter().copied().peekable();
        let mut touched = 0;
        for (j, &p) in visit.iter().enumerate() {
            if j >= touched {
                touched = j + TOUCH_AHEAD;
                touch(&visit[j..touched.min(visit.len())], slots, books);
            }
            while let Some(o) = others.next_if(|&o| o < p) {
                still.push(o);
            }
            others.next_if_eq(&p);
            let i = slot(slots, books, p);
            visit_one(p, &mut books[i]);
            if !books[i].is_empty() {
                still.push(p);
            }
        }
        still.extend(others);
        *owned = still;
        if *flat_garbage > 0 && *flat_garbage * 2 >= flat.len() {
            self.compact_flat();
        } else if flat.capacity() > flat.len() + flat.len() / 4 + 4096 {
            // Grown by doubling (all the holdings at once): the slack back.
            flat.shrink_to(flat.len() + flat.len() / 8);
        }
    }

    /// Rewrites `flat` without its garbage, the books in id order (the order a day visits
    /// them).
    fn compact_flat(&mut self) {
        let mut fresh = Vec::with_capacity(self.flat.len().saturating_sub(self.flat_garbage));
        for &p in &self.owned {
            let Some(book) = book_of(&self.slots, &mut self.books, p) else {
                continue;
            };
            // Within u32: `fresh` is no longer than `flat`, whose offsets were (else the
            // book falls back to its full pass).
            book.flat = book.flat.and_then(|f| {
                let at = u32::try_from(fresh.len()).ok()?;
                fresh.extend_from_slice(f.slice(&self.flat)?);
                Some(FlatRange { at, ..f })
            });
        }
        self.flat = fresh;
        self.flat_garbage = 0;
    }
}

impl Books {
    /// Days before `h` leave memory (once the horizon has moved `EVICT_STEP_DAYS` since the
    /// last time): the closes, and every book's days but its last valued one, kept as a seed.
    fn evict(&mut self, h: NaiveDate) {
        if self
            .evicted
            .and_then(|e| e.checked_add_signed(chrono::Duration::days(EVICT_STEP_DAYS)))
            .is_some_and(|next| h < next)
        {
            return;
        }
        self.evicted = Some(h);
        self.closes.evict(h);
        for &p in &self.owned {
            if let Some(book) = book_of(&self.slots, &mut self.books, p) {
                book.evict(h);
            }
        }
    }
}

/// Every record of `stream` to every worker, a message at a time: each worker gets a copy of
/// each message whole (its own one moved), where timely's `broadcast` cloned and exchanged
/// every record on its own (a tuple with the worker's index each, hashed and pushed one by
/// one: about a million records a 250-day run of the 2,000-stock bench with two workers).
fn broadcast_messages<G, D>(stream: &Stream<G, D>) -> Stream<G, D>
where
    G: Scope,
    D: timely::ExchangeData,
{
    let peers = stream.scope().peers();
    stream
        .unary::<CapacityContainerBuilder<Vec<(u64, Vec<D>)>>, _, _, _>(
            Pipeline,
            "BroadcastMessages",
            move |_, _| {
                move |input, output| {
                    input.for_each(|cap, data| {
                        let mut session = output.session(&cap);
                        for worker in 1..peers {
                            session.give((worker as u64, data.clone()));
                        }
                        session.give((0, std::mem::take(data)));
                    });
                }
            },
        )
        .exchange(|(worker, _)| *worker)
        .flat_map(|(_, records)| records)
}

/// The books of all portfolios: evaluation and issue changes. `closes` are the latest closes'
/// changes (broadcast to every worker here); `inputs` the positions and seeds, each on its
/// portfolio's worker (`by_portfolio`). With a `horizon`, the days before a completed
/// timestamp's horizon leave memory.
pub fn books<G>(
    closes: &Stream<G, (PriceInput, u64, isize)>,
    inputs: &Stream<G, (BookInput, u64)>,
    window: Option<NaiveDate>,
    horizon: Option<Horizon>,
) -> Stream<G, (Row, u64, isize)>
where
    G: Scope<Timestamp = u64>,
{
    broadcast_messages(closes)
        .binary_frontier::<_, CapacityContainerBuilder<Vec<(Row, u64, isize)>>, _, _, _, _>(
            inputs,
            Pipeline,
            // Each input is on its portfolio's worker already (`by_portfolio`).
            Pipeline,
            "Books",
            |_, _| {
                let mut pending: Pending<(PriceInput, isize), BookInput> = Pending::default();
                let mut state = Books::default();
                // Reused from one timestamp to the next: a day's rows are megabytes, and a
                // fresh buffer each day cost page faults (the kernel zeroing new pages).
                let mut rows: Vec<(Row, isize)> = Vec::new();
                move |closes_in, inputs_in, output| {
                    closes_in.for_each(|cap, data| {
                        let cap = cap.retain();
                        pending.first(&cap, data.drain(..).map(|(c, t, d)| ((c, d), t)));
                    });
                    inputs_in.for_each(|cap, data| {
                        let cap = cap.retain();
                        pending.second(&cap, data.drain(..));
                    });
                    let ready = pending.ready(&[closes_in.frontier(), inputs_in.frontier()]);
                    for (cap, close_changes, inputs) in ready {
                        let t = *cap.time();
                        rows.clear();
                        state.apply(close_changes, inputs, window, &mut rows);
                        let mut session = output.session(&cap);
                        for (r, d) in rows.drain(..) {
                            session.give((r, t, d));
                        }
                        if let Some(h) = horizon.as_ref().and_then(|h| h(t)) {
                            state.evict(h);
                        }
                    }
                }
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(n: u8) -> NaiveDate {
        NaiveDate::from_ymd_opt(2001, 1, 1).expect("a valid date")
            + chrono::Duration::days(i64::from(n))
    }

    /// A position: stock, from, length in days (None: open), quantity, count.
    fn position() -> impl Strategy<Value = (Position, isize)> {
        (
            0u32..6,
            0u8..20,
            proptest::option::weighted(0.3, 1u8..20),
            prop_oneof![
                8 => -1_000_000i64..1_000_000,
                1 => Just(i64::MAX),
                1 => Just(i64::MIN + 1),
                // An i32's edges, in and out (a flat quantity is an i32).
                1 => Just(i64::from(i32::MAX)),
                1 => Just(i64::from(i32::MAX) + 1),
                1 => Just(i64::from(i32::MIN)),
                1 => Just(i64::from(i32::MIN) - 1),
            ],
            prop_oneof![8 => Just(1isize), 1 => Just(0isize), 1 => Just(2isize), 1 => Just(-1isize)],
        )
            .prop_map(|(stock, from, len, quantity, count)| {
                let pos = Position {
                    portfolio: 7,
                    stock,
                    from: day(from),
                    to: len.map(|l| day(from.saturating_add(l))),
                    quantity,
                };
                (pos, count)
            })
    }

    /// A day's closes by stock (fewer stocks than positions use: some unpriced).
    fn closes() -> impl Strategy<Value = Option<DayCloses>> {
        proptest::option::weighted(
            0.9,
            proptest::collection::vec(
                prop_oneof![
                    6 => 1i64..1_000_000_000_000_000,
                    1 => Just(NONE),
                    1 => Just(HUGE),
                    1 => Just(i64::MAX - 1),
                ],
                0..6,
            ),
        )
        .prop_map(|prices| {
            prices.map(|prices| DayCloses {
                count: prices.iter().filter(|&&p| p != NONE).count() as u32,
                prices,
            })
        })
    }

    proptest! {
        /// On every day from its range's start, the flat pass over a book's open positions
        /// gives what the full pass over all of them gives (held, priced, the checked sum),
        /// and a book it cannot take (a count not 1, a quantity beyond an i32) is refused with
        /// `flat` untouched.
        #[test]
        fn the_flat_pass_equals_the_full_pass(
            positions in proptest::collection::vec(position(), 0..12),
            closes in closes(),
            offset in 0u8..30,
        ) {
            let mut flat = vec![FlatPosition { quantity: 3, stock: 9 }];
            let range = flatten(&positions, &mut flat);
            // A count not 1, or an open position's quantity outside an i32 (the contract's
            // are within 10^9).
            let refused = positions.iter().any(|(p, c)| {
                *c > 0 && (*c != 1 || (p.to.is_none() && i32::try_from(p.quantity).is_err()))
            });
            prop_assert_eq!(range.is_none(), refused);
            let Some(range) = range else {
                prop_assert_eq!(flat.len(), 1, "a refused book leaves nothing behind");
                return Ok(());
            };
            prop_assert_eq!(range.at, 1);
            let d = if range.from == NaiveDate::MIN { day(offset) } else {
                range.from + chrono::Duration::days(i64::from(offset))
            };
            let slice = range.slice(&flat).expect("the range is inside flat");
            prop_assert_eq!(
                tally_flat(slice, closes.as_ref()),
                tally(&positions, closes.as_ref(), d),
                "day {}", d
            );
        }
    }

    #[test]
    fn compacting_keeps_every_books_positions() {
        let open = |stock, quantity| {
            (
                Position {
                    portfolio: 0,
                    stock,
                    from: day(0),
                    to: None,
                    quantity,
                },
                1isize,
            )
        };
        // The books come out of id order (their slots are not their ids), and every one is
        // found through its slot.
        let mut books = Books::default();
        for p in [2u32, 0, 3, 1] {
            let mut book = Book {
                positions: vec![open(p, i64::from(p) + 1), open(p + 10, 5)],
                ..Book::default()
            };
            book.flat = flatten(&book.positions, &mut books.flat);
            let s = slot(&mut books.slots, &mut books.books, p);
            books.books[s] = book;
            books.owned.push(p);
        }
        books.owned.sort_unstable();
        // Book 1's positions change twice: its old entries become garbage.
        for q in [7, 8] {
            let book = book_of(&books.slots, &mut books.books, 1).expect("book 1 has a slot");
            books.flat_garbage += book.flat.take().map_or(0, |f| f.len as usize);
            book.positions.push(open(20, q));
            book.flat = flatten(&book.positions, &mut books.flat);
        }
        let positions_of = |books: &mut Books, p: u32| -> Vec<(u32, i64)> {
            let flat = std::mem::take(&mut books.flat);
            let book = book_of(&books.slots, &mut books.books, p).expect("a slot");
            let f = book
                .flat
                .expect("flattened")
                .slice(&flat)
                .expect("in range");
            let got = f.iter().map(|x| (x.stock, i64::from(x.quantity))).collect();
            books.flat = flat;
            got
        };
        let before: Vec<Vec<(u32, i64)>> = (0..4).map(|p| positions_of(&mut books, p)).collect();
        assert_eq!(books.flat.len(), 8 + 3 + 4);
        books.compact_flat();
        assert_eq!(books.flat.len(), 2 + 4 + 2 + 2, "the garbage is gone");
        assert_eq!(books.flat_garbage, 0);
        for (p, want) in (0..4).zip(&before) {
            assert_eq!(&positions_of(&mut books, p), want, "book {p}");
            assert_eq!(want[0], (p, i64::from(p) + 1), "book {p}'s own positions");
        }
        assert_eq!(before[1], vec![(1, 2), (11, 5), (20, 7), (20, 8)]);
        // In the compacted array the books follow in id order, the order of a day's visits.
        assert_eq!(
            books.flat.iter().map(|x| x.stock).collect::<Vec<_>>(),
            vec![0, 10, 1, 11, 20, 20, 2, 12, 3, 13]
        );
    }
}
