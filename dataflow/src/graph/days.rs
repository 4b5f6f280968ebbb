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
use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// What a day last emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Out {
    #[default]
    Nothing,
    /// An evaluation of the day's value against this previous value.
    Evaluated(Option<Money>),
    Issue(IssueKind, i64, i64),
}

#[derive(Debug, Default)]
struct Day {
    have: i64,
    sum: Money,
    out: Out,
}

#[derive(Debug, Default)]
struct Book {
    positions: Vec<(Position, isize)>,
    days: BTreeMap<NaiveDate, Day>,
    /// The days with a value, and the seeds: what "the previous valued day" looks up.
    valued: BTreeMap<NaiveDate, Money>,
}

impl Book {
    fn need(&self, d: NaiveDate) -> i64 {
        self.positions
            .iter()
            .filter(|(p, c)| *c > 0 && p.covers(d))
            .map(|(_, c)| *c as i64)
            .sum()
    }
}

/// The row a day shows for an output state and value.
fn shown(p: u32, d: NaiveDate, out: Out, value: Option<Money>) -> Option<Row> {
    match out {
        Out::Nothing => None,
        Out::Issue(kind, held, priced) => Some(Row::Issue(Issue {
            portfolio: p,
            date: d,
            kind,
            held,
            priced,
        })),
        Out::Evaluated(prev) => value
            .and_then(|v| evaluation(p, d, v, prev).ok())
            .map(Row::Evaluation),
    }
}

/// Applies one timestamp's changes to a portfolio's book; pushes the rows that change.
fn apply(
    p: u32,
    book: &mut Book,
    contributions: Vec<Contribution>,
    inputs: Vec<BookInput>,
    window: Option<NaiveDate>,
    out: &mut Vec<(Row, isize)>,
) {
    let mut work: BTreeSet<NaiveDate> = BTreeSet::new();
    for input in inputs {
        match input {
            BookInput::Position(pos, diff) => {
                let upto = pos.to.unwrap_or(NaiveDate::MAX);
                work.extend(book.days.range(pos.from..upto).map(|(d, _)| *d));
                match book.positions.iter_mut().find(|(q, _)| *q == pos) {
                    Some(e) => e.1 += diff,
                    None => book.positions.push((pos, diff)),
                }
                book.positions.retain(|(_, c)| *c != 0);
            }
            BookInput::Seed(_, d, v, diff) => {
                if diff > 0 {
                    book.valued.insert(d, v);
                } else if book.valued.get(&d) == Some(&v) {
                    book.valued.remove(&d);
                }
                if let Some((next, _)) = book.days.range(d.succ_opt().unwrap_or(d)..).next() {
                    work.insert(*next);
                }
            }
        }
    }
    for c in contributions {
        let day = book.days.entry(c.date).or_default();
        day.have = day.have.wrapping_add(c.have);
        day.sum = day.sum.wrapping_add(c.sum);
        work.insert(c.date);
    }
    while let Some(d) = work.pop_first() {
        let need = book.need(d);
        let Some(day) = book.days.get(&d) else {
            continue;
        };
        let (have, sum, old_out) = (day.have, day.sum, day.out);
        let old_value = book.valued.get(&d).copied();
        let new_value = (need > 0 && have == need && valid_value(sum)).then_some(sum);
        match new_value {
            Some(v) => {
                book.valued.insert(d, v);
            }
            None => {
                book.valued.remove(&d);
            }
        }
        let inside = window.is_none_or(|w| d >= w);
        let new_out = if !inside || have == 0 || need == 0 {
            Out::Nothing
        } else if have != need {
            Out::Issue(IssueKind::Incomplete, need, have)
        } else if !valid_value(sum) {
            Out::Issue(IssueKind::Overflow, need, have)
        } else {
            let prev = book.valued.range(..d).next_back().map(|(_, v)| *v);
            match evaluation(p, d, sum, prev) {
                Ok(_) => Out::Evaluated(prev),
                Err(kind) => Out::Issue(kind, 0, 0),
            }
        };
        let (old_row, new_row) = (
            shown(p, d, old_out, old_value),
            shown(p, d, new_out, new_value),
        );
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
            if let Some((next, _)) = book.valued.range(d.succ_opt().unwrap_or(d)..).next() {
                if book.days.contains_key(next) {
                    work.insert(*next);
                }
            }
        }
        if have == 0 && sum.is_zero() && new_out == Out::Nothing {
            book.days.remove(&d);
        } else if let Some(day) = book.days.get_mut(&d) {
            day.out = new_out;
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
                let mut books: HashMap<u32, Book> = HashMap::new();
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
                    for (cap, contributions, inputs) in ready {
                        let t = *cap.time();
                        let mut by_portfolio: HashMap<u32, (Vec<Contribution>, Vec<BookInput>)> =
                            HashMap::new();
                        for c in contributions {
                            by_portfolio.entry(c.portfolio).or_default().0.push(c);
                        }
                        for b in inputs {
                            by_portfolio.entry(b.portfolio()).or_default().1.push(b);
                        }
                        let mut rows = Vec::new();
                        for (p, (cs, bs)) in by_portfolio {
                            let book = books.entry(p).or_default();
                            apply(p, book, cs, bs, window, &mut rows);
                            if book.days.is_empty()
                                && book.positions.is_empty()
                                && book.valued.is_empty()
                            {
                                books.remove(&p);
                            }
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
