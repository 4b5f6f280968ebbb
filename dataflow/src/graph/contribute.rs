//! Every close × every position that holds its stock that day: per (portfolio, day) the change
//! of "stocks with a close" and of Σ quantity × close. Keyed by stock; each timestamp's changes
//! are summed per (portfolio, day) before they leave, so one record per portfolio-day (not per
//! held stock) crosses to the portfolio's worker.

use super::pending::{route, Pending};
use super::positions::Position;
use chrono::NaiveDate;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;
use stockflow_core::{Money, PriceInput};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::{Scope, Stream};

/// A change of one portfolio-day's priced stocks (`have`) and sum.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Contribution {
    pub portfolio: u32,
    pub date: NaiveDate,
    pub have: i64,
    pub sum: Money,
}

#[derive(Default)]
struct Stock {
    closes: BTreeMap<NaiveDate, Money>,
    positions: Vec<(Position, isize)>,
}

type Acc = HashMap<(u32, NaiveDate), (i64, Money)>;

fn add(acc: &mut Acc, p: u32, d: NaiveDate, diff: isize, quantity: i64, price: Money) {
    let k = diff as i64;
    let e = acc.entry((p, d)).or_insert((0, Money::ZERO));
    e.0 = e.0.wrapping_add(k);
    e.1 =
        e.1.wrapping_add(price.wrapping_mul_int(quantity).wrapping_mul_int(k));
}

/// Closes ⋈ positions by stock, as per-portfolio-day changes.
pub fn contribute<G>(
    closes: &Stream<G, (PriceInput, u64, isize)>,
    positions: &Stream<G, (Position, u64, isize)>,
) -> Stream<G, (Contribution, u64)>
where
    G: Scope<Timestamp = u64>,
{
    closes.binary_frontier::<_, CapacityContainerBuilder<Vec<(Contribution, u64)>>, _, _, _, _>(
        positions,
        Exchange::new(|(c, _, _): &(PriceInput, u64, isize)| route(&c.stock)),
        Exchange::new(|(p, _, _): &(Position, u64, isize)| route(&p.stock)),
        "Contribute",
        |_, _| {
            let mut pending: Pending<(PriceInput, isize), (Position, isize)> = Pending::default();
            let mut stocks: HashMap<u32, Stock> = HashMap::default();
            move |closes_in, positions_in, output| {
                closes_in.for_each(|cap, data| {
                    let cap = cap.retain();
                    pending.first(&cap, data.drain(..).map(|(c, t, d)| ((c, d), t)));
                });
                positions_in.for_each(|cap, data| {
                    let cap = cap.retain();
                    pending.second(&cap, data.drain(..).map(|(p, t, d)| ((p, d), t)));
                });
                let ready = pending.ready(&[closes_in.frontier(), positions_in.frontier()]);
                for (cap, mut close_changes, position_changes) in ready {
                    let t = *cap.time();
                    let mut acc: Acc = HashMap::default();
                    // Old closes × position changes, then the positions change.
                    for (pos, diff) in position_changes {
                        let stock = stocks.entry(pos.stock).or_default();
                        let range = match pos.to {
                            Some(to) => stock.closes.range(pos.from..to),
                            None => stock.closes.range(pos.from..),
                        };
                        for (d, price) in range {
                            add(&mut acc, pos.portfolio, *d, diff, pos.quantity, *price);
                        }
                        match stock.positions.iter_mut().find(|(p, _)| *p == pos) {
                            Some(e) => e.1 += diff,
                            None => stock.positions.push((pos, diff)),
                        }
                        stock.positions.retain(|(_, c)| *c != 0);
                    }
                    // Close changes × the new positions, then the closes change
                    // (retractions first: a replaced close is −old, +new at the same time).
                    close_changes.sort_by_key(|(_, d)| *d);
                    for (close, diff) in close_changes {
                        let stock = stocks.entry(close.stock).or_default();
                        for (pos, count) in &stock.positions {
                            if pos.covers(close.date) {
                                add(
                                    &mut acc,
                                    pos.portfolio,
                                    close.date,
                                    diff * count,
                                    pos.quantity,
                                    close.price,
                                );
                            }
                        }
                        if diff < 0 {
                            if stock.closes.get(&close.date) == Some(&close.price) {
                                stock.closes.remove(&close.date);
                            }
                        } else {
                            stock.closes.insert(close.date, close.price);
                        }
                    }
                    let mut session = output.session(&cap);
                    for ((portfolio, date), (have, sum)) in acc {
                        if have != 0 || !sum.is_zero() {
                            session.give((
                                Contribution {
                                    portfolio,
                                    date,
                                    have,
                                    sum,
                                },
                                t,
                            ));
                        }
                    }
                }
            }
        },
    )
}
