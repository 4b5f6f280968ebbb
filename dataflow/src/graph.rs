//! The evaluation dataflow: prices ⋈ holdings → evaluation diffs.
//!
//! Every step is keyed so that the work for a new trading day is bounded by that day's data:
//! prices join the holdings arranged by stock; values are summed per (portfolio, day); the
//! previous evaluated day is found within the day's month, else from the month summaries of
//! its year, else from the year summaries of the portfolio (a three-level hierarchy instead of
//! one reduce over a portfolio's whole history).

use crate::eval::{covers, evaluation, intervals, month_of, valid_value, year_of_month};
use chrono::NaiveDate;
use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::arrange::ArrangeByKey;
use differential_dataflow::operators::{Count, Join, Reduce, Threshold};
use differential_dataflow::Collection;
use serde::{Deserialize, Serialize};
use stockflow_core::{Evaluation, HoldingInput, Issue, IssueKind, Money, PortfolioId, PriceInput};
use timely::dataflow::Scope;

type Dated = (NaiveDate, Money);

/// The running sum behind a portfolio-day's value, kept as a differential *difference*: the
/// contributions are summed by the arrangement itself, so the state per (portfolio, day) is one
/// record, not one per held stock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct ValueAcc {
    /// Held stocks with a close that day.
    have: i64,
    /// Stocks held that day.
    need: i64,
    /// Σ quantity × close over the stocks with a close. Summed with wrapping arithmetic: a
    /// group, so intermediate sums may wrap but the consolidated sum is exact.
    sum: Money,
}

impl IsZero for ValueAcc {
    fn is_zero(&self) -> bool {
        self.have == 0 && self.need == 0 && self.sum.is_zero()
    }
}

impl Semigroup for ValueAcc {
    fn plus_equals(&mut self, rhs: &Self) {
        self.have = self.have.wrapping_add(rhs.have);
        self.need = self.need.wrapping_add(rhs.need);
        self.sum = self.sum.wrapping_add(rhs.sum);
    }
}

impl Monoid for ValueAcc {
    fn zero() -> Self {
        ValueAcc {
            have: 0,
            need: 0,
            sum: Money::ZERO,
        }
    }
}

impl Abelian for ValueAcc {
    fn negate(&mut self) {
        self.have = self.have.wrapping_neg();
        self.need = self.need.wrapping_neg();
        self.sum = self.sum.wrapping_neg();
    }
}

impl Multiply<isize> for ValueAcc {
    type Output = ValueAcc;
    fn multiply(self, rhs: &isize) -> ValueAcc {
        let k = *rhs as i64;
        ValueAcc {
            have: self.have.wrapping_mul(k),
            need: self.need.wrapping_mul(k),
            sum: self.sum.wrapping_mul_int(k),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum BucketOut<I> {
    /// A member of the bucket with the last evaluation before it inside the bucket.
    Item(I, Option<Dated>),
    /// The bucket's last evaluation.
    Last(Dated),
}

/// What the evaluation graph produces.
pub struct Outputs<G: Scope> {
    /// The evaluation of every portfolio-day that has one.
    pub evaluations: Collection<G, Evaluation>,
    /// The portfolio-days that have inputs but no evaluation (incomplete, overflow).
    pub issues: Collection<G, Issue>,
    /// The job's input state: the latest version of each close …
    pub closes: Collection<G, PriceInput>,
    /// … and of each holding record.
    pub records: Collection<G, HoldingInput>,
}

/// Builds the evaluation of every portfolio-day from the raw price and holding inputs. With
/// a restore `window`, `seeds` carry each portfolio's last value before it (for the first
/// day's change) and only days from the window on are output.
pub fn evaluate<G>(
    prices: &Collection<G, PriceInput>,
    holdings: &Collection<G, HoldingInput>,
    seeds: &Collection<G, (PortfolioId, NaiveDate, Money)>,
    window: Option<NaiveDate>,
) -> Outputs<G>
where
    G: Scope<Timestamp: Lattice + Ord>,
{
    // The latest version of each close and of each holding record wins.
    let latest_closes = prices
        .map(|p| ((p.stock, p.date), (p.version, p.price)))
        .reduce_named("LatestClose", |_key, versions, out| {
            if let Some((v, _)) = versions.iter().rev().find(|(_, c)| *c > 0) {
                out.push((**v, 1));
            }
        });
    let latest_records = holdings
        .map(|h| ((h.portfolio, h.stock, h.from), (h.version, h.quantity)))
        .reduce_named("LatestHolding", |_key, versions, out| {
            if let Some((v, _)) = versions.iter().rev().find(|(_, c)| *c > 0) {
                out.push((**v, 1));
            }
        });
    let closes = latest_closes.map(|((s, d), (_, price))| ((s, d), price));
    let records = latest_records.map(|(k, (_, q))| (k, q));
    // Each (portfolio, stock)'s records become quantity intervals [from, to).
    let positions = records
        .map(|((p, s, from), q)| ((p, s), (from, q)))
        .reduce_named("Positions", |_key, recs, out| {
            let recs: Vec<(NaiveDate, i64)> = recs
                .iter()
                .filter(|(_, c)| *c > 0)
                .map(|(r, _)| **r)
                .collect();
            for iv in intervals(&recs) {
                out.push((iv, 1));
            }
        });
    let by_stock = positions
        .map(|((p, s), (from, to, q))| (s, (p, from, to, q)))
        .arrange_by_key_named("PositionsByStock");
    let by_portfolio = positions
        .map(|((p, s), (from, to, _))| (p, (s, from, to)))
        .arrange_by_key_named("PositionsByPortfolio");

    // Each close × every position that holds the stock that day. Within the contract's bounds
    // (price < 10^9, quantity ≤ 10^9) the product cannot overflow; wrapping keeps it total.
    let contributions = closes
        .map(|((s, d), price)| (s, (d, price)))
        .arrange_by_key_named("ClosesByStock")
        .join_core(&by_stock, |_s, (d, price), (p, from, to, q)| {
            covers(*from, *to, *d).then(|| ((*p, *d), price.wrapping_mul_int(*q)))
        });
    // The stocks each candidate (portfolio, day) must have a close for.
    let needed = contributions
        .map(|((p, d), _)| (p, d))
        .distinct()
        .arrange_by_key_named("CandidateDays")
        .join_core(&by_portfolio, |p, d, (s, from, to)| {
            covers(*from, *to, *d).then_some(((*p, *d), *s))
        });
    // Per (portfolio, day): the stocks held, those with a close, and the sum.
    let sums = contributions
        .explode(|(k, amount)| {
            Some((
                k,
                ValueAcc {
                    have: 1,
                    need: 0,
                    sum: amount,
                },
            ))
        })
        .concat(&needed.explode(|(k, _)| {
            Some((
                k,
                ValueAcc {
                    have: 0,
                    need: 1,
                    sum: Money::ZERO,
                },
            ))
        }))
        .count();
    // value(p, d), defined only when every held stock has its close; and the seeds.
    let values = sums
        .flat_map(|(k, acc)| {
            (acc.need > 0 && acc.have == acc.need && valid_value(acc.sum)).then_some((k, acc.sum))
        })
        .concat(&seeds.map(|(p, d, v)| ((p, d), v)));
    let unvalued = sums.flat_map(|((p, d), acc)| {
        let kind = if acc.have != acc.need {
            IssueKind::Incomplete
        } else if !valid_value(acc.sum) {
            IssueKind::Overflow
        } else {
            return None;
        };
        (acc.need > 0).then_some(Issue {
            portfolio: p,
            date: d,
            kind,
            held: acc.need,
            priced: acc.have,
        })
    });

    // Previous evaluation within the month.
    let months = values
        .map(|((p, d), v)| ((p, month_of(d)), (d, (d, v))))
        .reduce_named("Month", bucket_logic::<NaiveDate>);
    let days = months.flat_map(|(k, o)| match o {
        BucketOut::Item((d, (_, v)), prev) => Some((k, (d, v, prev))),
        BucketOut::Last(_) => None,
    });
    // Previous evaluation before each month, within its year.
    let years = months
        .flat_map(|((p, m), o)| match o {
            BucketOut::Last(last) => Some(((p, year_of_month(m)), (m, last))),
            BucketOut::Item(..) => None,
        })
        .reduce_named("Year", bucket_logic::<i32>);
    let months_in_year = years.flat_map(|(k, o)| match o {
        BucketOut::Item((m, _), prev) => Some((k, (m, prev))),
        BucketOut::Last(_) => None,
    });
    // Previous evaluation before each year.
    let year_prev = years
        .flat_map(|((p, y), o)| match o {
            BucketOut::Last(last) => Some((p, (y, last))),
            BucketOut::Item(..) => None,
        })
        .reduce_named("Portfolio", bucket_logic::<i32>)
        .flat_map(|(p, o)| match o {
            BucketOut::Item((y, _), prev) => Some(((p, y), prev)),
            BucketOut::Last(_) => None,
        });
    let month_prev = months_in_year.join_map(&year_prev, |(p, _y), (m, in_year), before_year| {
        ((*p, *m), in_year.or(*before_year))
    });
    let evaluated = days.join_map(&month_prev, |(p, _m), (d, v, in_month), before_month| {
        let previous = in_month.or(*before_month).map(|(_, v)| v);
        evaluation(*p, *d, *v, previous).map_err(|kind| Issue {
            portfolio: *p,
            date: *d,
            kind,
            held: 0,
            priced: 0,
        })
    });
    let inside = move |d: &NaiveDate| window.is_none_or(|w| *d >= w);
    let evaluations = evaluated
        .flat_map(Result::ok)
        .filter(move |e| inside(&e.date));
    let issues = unvalued
        .concat(&evaluated.flat_map(Result::err))
        .filter(move |i| inside(&i.date));
    Outputs {
        evaluations,
        issues,
        closes: latest_closes.map(|((stock, date), (version, price))| PriceInput {
            stock,
            date,
            price,
            version,
        }),
        records: latest_records.map(|((portfolio, stock, from), (version, quantity))| {
            HoldingInput {
                portfolio,
                stock,
                from,
                quantity,
                version,
            }
        }),
    }
}

/// For a bucket's members sorted by their first field, each member with the last evaluation
/// before it in the bucket, and the bucket's last evaluation.
fn bucket_logic<I>(
    _key: &impl Sized,
    members: &[(&(I, Dated), isize)],
    out: &mut Vec<(BucketOut<(I, Dated)>, isize)>,
) where
    I: Copy,
{
    let mut prev: Option<Dated> = None;
    for (m, c) in members {
        if *c <= 0 {
            continue;
        }
        let (id, last) = **m;
        out.push((BucketOut::Item((id, last), prev), 1));
        prev = Some(last);
    }
    if let Some(last) = prev {
        out.push((BucketOut::Last(last), 1));
    }
}
