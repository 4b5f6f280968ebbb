//! The latest version of every record wins: per key, the record with the highest (version,
//! value) among those present. Emits the winner's changes (−old, +new) as a collection.

use super::pending::{route, Pending};
use rustc_hash::FxHashMap as HashMap;
use std::hash::Hash;
use stockflow_core::{HoldingInput, PriceInput, Version};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::{Scope, Stream};
use timely::ExchangeData;

/// A record with a key and a rank: the highest rank of a key wins.
pub trait Versioned: ExchangeData + Ord {
    type Key: Hash + Eq + Ord + Clone + 'static;
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

/// The versions present for one key. One live record is the rule, kept inline; other cases
/// (a record twice, a retraction before its insertion) fall back to a list with counts.
enum Versions<R> {
    One(R),
    Many(Vec<(R, isize)>),
}

impl<R: Versioned> Versions<R> {
    fn best(&self) -> Option<&R> {
        match self {
            Versions::One(r) => Some(r),
            Versions::Many(v) => v
                .iter()
                .filter(|(_, c)| *c > 0)
                .map(|(r, _)| r)
                .max_by_key(|r| r.rank()),
        }
    }

    fn add(&mut self, r: R, d: isize) {
        if let Versions::One(x) = self {
            let x = std::mem::replace(x, r.clone());
            *self = Versions::Many(vec![(x, 1)]);
        }
        if let Versions::Many(v) = self {
            match v.iter_mut().find(|(p, _)| *p == r) {
                Some(e) => e.1 += d,
                None => v.push((r, d)),
            }
            v.retain(|(_, c)| *c != 0);
            if v.len() == 1 && v[0].1 == 1 {
                if let Some((only, _)) = v.pop() {
                    *self = Versions::One(only);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Versions::Many(v) if v.is_empty())
    }
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
            let mut state: HashMap<R::Key, Versions<R>> = HashMap::default();
            move |input, output| {
                input.for_each(|cap, data| {
                    let cap = cap.retain();
                    pending.first(&cap, data.drain(..).map(|(r, t, d)| ((r, d), t)));
                });
                for (cap, mut updates, _) in pending.ready(&[input.frontier()]) {
                    let t = *cap.time();
                    updates.sort_by_key(|(r, _)| r.key());
                    let mut session = output.session(&cap);
                    let mut i = 0;
                    while i < updates.len() {
                        let key = updates[i].0.key();
                        let end = i + updates[i..].partition_point(|(r, _)| r.key() == key);
                        let old = state.get(&key).and_then(|v| v.best()).cloned();
                        for (r, d) in updates[i..end].iter().cloned() {
                            match state.get_mut(&key) {
                                Some(v) => v.add(r, d),
                                None => {
                                    let mut v = Versions::Many(Vec::new());
                                    v.add(r, d);
                                    state.insert(key.clone(), v);
                                }
                            }
                        }
                        let new = state.get(&key).and_then(|v| v.best()).cloned();
                        if state.get(&key).is_some_and(Versions::is_empty) {
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
                        i = end;
                    }
                }
            }
        },
    )
}
