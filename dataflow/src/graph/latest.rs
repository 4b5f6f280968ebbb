//! The latest version of every record wins: per key, the record with the highest (version,
//! value) among those present. Emits the winner's changes (−old, +new) as a collection.

use super::pending::{route, Pending};
use std::collections::HashMap;
use std::hash::Hash;
use stockflow_core::{HoldingInput, PriceInput, Version};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::{Scope, Stream};
use timely::ExchangeData;

/// A record with a key and a rank: the highest rank of a key wins.
pub trait Versioned: ExchangeData + Ord {
    type Key: Hash + Eq + Clone + 'static;
    fn key(&self) -> Self::Key;
    fn rank(&self) -> (Version, i128);
}

impl Versioned for PriceInput {
    type Key = (u32, chrono::NaiveDate);
    fn key(&self) -> Self::Key {
        (self.stock, self.date)
    }
    fn rank(&self) -> (Version, i128) {
        (self.version, self.price.units())
    }
}

impl Versioned for HoldingInput {
    type Key = (u32, u32, chrono::NaiveDate);
    fn key(&self) -> Self::Key {
        (self.portfolio, self.stock, self.from)
    }
    fn rank(&self) -> (Version, i128) {
        (self.version, i128::from(self.quantity))
    }
}

fn best<R: Versioned>(present: &[(R, isize)]) -> Option<&R> {
    present
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|(r, _)| r)
        .max_by_key(|r| r.rank())
}

/// The latest record of every key, as a collection of changes.
pub fn latest<G, R>(records: &Stream<G, (R, u64, isize)>, name: &str) -> Stream<G, (R, u64, isize)>
where
    G: Scope<Timestamp = u64>,
    R: Versioned,
{
    records.unary_frontier::<CapacityContainerBuilder<Vec<(R, u64, isize)>>, _, _, _>(
        Exchange::new(|(r, _, _): &(R, u64, isize)| route(&r.key())),
        name,
        |_, _| {
            let mut pending: Pending<(R, isize), ()> = Pending::default();
            let mut state: HashMap<R::Key, Vec<(R, isize)>> = HashMap::new();
            move |input, output| {
                input.for_each(|cap, data| {
                    let cap = cap.retain();
                    pending.first(&cap, data.drain(..).map(|(r, t, d)| ((r, d), t)));
                });
                for (cap, updates, _) in pending.ready(&[input.frontier()]) {
                    let t = *cap.time();
                    let mut by_key: HashMap<R::Key, Vec<(R, isize)>> = HashMap::new();
                    for (r, d) in updates {
                        by_key.entry(r.key()).or_default().push((r, d));
                    }
                    let mut session = output.session(&cap);
                    for (key, changes) in by_key {
                        let present = state.entry(key.clone()).or_default();
                        let old = best(present).cloned();
                        for (r, d) in changes {
                            match present.iter_mut().find(|(p, _)| *p == r) {
                                Some(entry) => entry.1 += d,
                                None => present.push((r, d)),
                            }
                        }
                        present.retain(|(_, c)| *c != 0);
                        let new = best(present).cloned();
                        if present.is_empty() {
                            state.remove(&key);
                        }
                        if old != new {
                            if let Some(o) = old {
                                session.give((o, t, -1));
                            }
                            if let Some(n) = new {
                                session.give((n, t, 1));
                            }
                        }
                    }
                }
            }
        },
    )
}
