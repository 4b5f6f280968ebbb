//! The evaluation dataflow: prices ⋈ holdings → evaluation diffs.
//!
//! Every step is keyed so that the work for a new trading day is bounded by that day's data:
//! prices join the holdings arranged by stock; values are summed per (portfolio, day); the
//! previous evaluated day is found within the day's month, else from the month summaries of
//! its year, else from the year summaries of the portfolio (a three-level hierarchy instead of
//! one reduce over a portfolio's whole history).

use crate::eval::{covers, evaluation, intervals, month_of, year_of_month};
use crate::types::{Evaluation, HoldingInput, PriceInput};
use chrono::NaiveDate;
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::arrange::ArrangeByKey;
use differential_dataflow::operators::{Join, Reduce, Threshold};
use differential_dataflow::Collection;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use timely::dataflow::Scope;

type Dated = (NaiveDate, Decimal);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Part {
    /// A held stock's close × quantity.
    Have(Decimal),
    /// A stock the portfolio holds that day.
    Need,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum BucketOut<I> {
    /// A member of the bucket with the last evaluation before it inside the bucket.
    Item(I, Option<Dated>),
    /// The bucket's last evaluation.
    Last(Dated),
}

/// Builds the evaluation of every portfolio-day from the raw price and holding inputs.
pub fn evaluate<G>(
    prices: &Collection<G, PriceInput>,
    holdings: &Collection<G, HoldingInput>,
) -> Collection<G, Evaluation>
where
    G: Scope<Timestamp: Lattice + Ord>,
{
    // The latest version of each close and of each holding record wins.
    let closes = prices
        .map(|p| ((p.stock, p.date), (p.version, p.price)))
        .reduce_named("LatestClose", |_key, versions, out| {
            if let Some((v, _)) = versions.iter().rev().find(|(_, c)| *c > 0) {
                out.push((v.1, 1));
            }
        });
    let records = holdings
        .map(|h| ((h.portfolio, h.stock, h.from), (h.version, h.quantity)))
        .reduce_named("LatestHolding", |_key, versions, out| {
            if let Some((v, _)) = versions.iter().rev().find(|(_, c)| *c > 0) {
                out.push((v.1, 1));
            }
        });
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

    // Each close × every position that holds the stock that day.
    let contributions = closes
        .map(|((s, d), price)| (s, (d, price)))
        .arrange_by_key_named("ClosesByStock")
        .join_core(&by_stock, |_s, (d, price), (p, from, to, q)| {
            covers(*from, *to, *d).then(|| ((*p, *d), *price * Decimal::from(*q)))
        });
    // The stocks each candidate (portfolio, day) must have a close for.
    let needed = contributions
        .map(|((p, d), _)| (p, d))
        .distinct()
        .arrange_by_key_named("CandidateDays")
        .join_core(&by_portfolio, |p, d, (s, from, to)| {
            covers(*from, *to, *d).then_some(((*p, *d), *s))
        });
    // value(p, d), defined only when every held stock has its close.
    let values = contributions
        .map(|(k, amount)| (k, Part::Have(amount)))
        .concat(&needed.map(|(k, _)| (k, Part::Need)))
        .reduce_named("Value", |_key, parts, out| {
            let (mut have, mut need, mut sum) = (0isize, 0isize, Decimal::ZERO);
            for (part, c) in parts {
                match part {
                    Part::Have(a) => {
                        have += c;
                        sum += *a * Decimal::from(*c as i64);
                    }
                    Part::Need => need += c,
                }
            }
            if need > 0 && have == need {
                out.push((sum, 1));
            }
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
    days.join_map(&month_prev, |(p, _m), (d, v, in_month), before_month| {
        let previous = in_month.or(*before_month).map(|(_, v)| v);
        evaluation(*p, *d, *v, previous)
    })
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
