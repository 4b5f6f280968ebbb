//! The latest version of every record wins: per key, the record with the highest (version,
//! value) among those present. Emits the winner's changes (−old, +new) as a collection.
//!
//! The inputs only grow (records read from an append-only log, and the stored state at time
//! 0; a replay inserts the same records again), so each key keeps its winner alone: a flood of
//! versions of one key costs constant memory and time per record, not a list searched per
//! record.
//!
//! The winners are kept by group (a holding record's portfolio, a close's day), each group's
//! sorted by key (`sorted.rs`: a vector while small, where the record itself is the entry, no
//! key stored beside it and no hash table of every key with its empty buckets; a B-tree once
//! the group is large): about half the memory of a map by key for 600,000 holding records.

use super::pending::{by_portfolio, route, Pending};
use super::pieces::sort_pieces;
use super::sorted::Sorted;
use super::Horizon;
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
    /// The records kept together, sorted by key (`sorted.rs`).
    type Group: Hash + Eq + Ord + Copy + 'static;
    fn key(&self) -> Self::Key;
    fn group(&self) -> Self::Group;
    fn rank(&self) -> (Version, i128);
    /// The worker a record goes to (`route`): by its key unless the records of a group
    /// belong together downstream.
    fn shard(&self) -> u64 {
        route(&self.key())
    }
    /// The day a record is about, if it may leave memory once the horizon passes it (closes;
    /// holding records stay: every book needs them).
    fn evictable_day(&self) -> Option<chrono::NaiveDate> {
        None
    }
}

impl Versioned for PriceInput {
    type Key = (u32, chrono::NaiveDate);
    type Group = chrono::NaiveDate;
    fn key(&self) -> Self::Key {
        (self.stock, self.date)
    }
    fn group(&self) -> Self::Group {
        self.date
    }
    fn rank(&self) -> (Version, i128) {
        (self.version, self.price.units())
    }
    fn evictable_day(&self) -> Option<chrono::NaiveDate> {
        Some(self.date)
    }
}

impl Versioned for HoldingInput {
    type Key = (u32, u32, chrono::NaiveDate);
    type Group = u32;
    fn key(&self) -> Self::Key {
        (self.portfolio, self.stock, self.from)
    }
    fn group(&self) -> Self::Group {
        self.portfolio
    }
    fn rank(&self) -> (Version, i128) {
        (self.version, i128::from(self.quantity))
    }
    /// By portfolio (`by_portfolio`): a holding record stays on this worker from here to its
    /// book (the positions and the books take their inputs pipelined), so with several
    /// workers the records cross between workers once, and the later operators get them in
    /// this operator's (sorted) order.
    fn shard(&self) -> u64 {
        by_portfolio(self.portfolio)
    }
}

/// Whether `a` beats `b`: the higher rank, then the greater record (a total order, so the
/// winner does not depend on arrival order).
fn beats<R: Versioned>(a: &R, b: &R) -> bool {
    (a.rank(), a) > (b.rank(), b)
}

/// Days the horizon moves between two evictions (each costs a pass over the state): as the
/// books' (`books.rs`).
const EVICT_STEP_DAYS: i64 = 30;

/// The latest record of every key, as a collection of changes. With a `horizon`, the records
/// about days before a completed timestamp's horizon leave memory (no record about them can
/// enter any more).
pub fn latest<G, R>(
    records: &Stream<G, (R, u64, isize)>,
    name: &str,
    horizon: Option<Horizon>,
) -> Stream<G, (R, u64, isize)>
where
    G: Scope<Timestamp = u64>,
    R: Versioned,
{
    let name_string = name.to_string();
    records.unary_frontier::<CapacityContainerBuilder<Vec<(R, u64, isize)>>, _, _, _>(
        Exchange::new(|(r, _, _): &(R, u64, isize)| r.shard()),
        name,
        |_, _| {
            let name_owned = name_string;
            let mut pending: Pending<(R, isize), ()> = Pending::default();
            let mut state: HashMap<R::Group, Sorted<R::Key, R>> = HashMap::default();
            let mut evicted: Option<chrono::NaiveDate> = None;
            move |input, output| {
                input.for_each(|cap, data| {
                    let cap = cap.retain();
                    pending.first(&cap, data.drain(..).map(|(r, t, d)| ((r, d), t)));
                });
                for (cap, updates, _) in pending.ready(&[input.frontier()]) {
                    let t = *cap.time();
                    let mut session = output.session(&cap);
                    // Per key, the winner of this timestamp's records (sorted by group and
                    // key, the winner first: no second map of the timestamp's keys), then
                    // against the kept one. The order is total (the records themselves break
                    // ties), as `sort_pieces` needs: from several workers the records come
                    // as each one's sorted pieces, merged in linear time.
                    let updates: Vec<R> = updates
                        .into_iter()
                        .filter_map(|(r, d)| {
                            if d <= 0 {
                                tracing::error!(
                                    operator = name_owned.as_str(),
                                    "internal: a retraction reached an insert-only input; ignored"
                                );
                                return None;
                            }
                            Some(r)
                        })
                        .collect();
                    let mut updates = sort_pieces(updates, |a, b| {
                        (a.group(), a.key())
                            .cmp(&(b.group(), b.key()))
                            .then_with(|| (b.rank(), b).cmp(&(a.rank(), a)))
                    });
                    updates.dedup_by(|later, first| later.key() == first.key());
                    let mut rest = updates.into_iter().peekable();
                    while let Some(first) = rest.next() {
                        let group = first.group();
                        let kept = state.entry(group).or_default();
                        let mut next = Some(first);
                        while let Some(r) =
                            next.take().or_else(|| rest.next_if(|x| x.group() == group))
                        {
                            let k = r.key();
                            match kept.get_mut(&k, R::key) {
                                Some(x) => {
                                    if beats(&r, x) {
                                        let old = std::mem::replace(x, r.clone());
                                        session.give((old, t, -1));
                                        session.give((r, t, 1));
                                    }
                                }
                                None => {
                                    kept.insert(k, r.clone(), R::key);
                                    session.give((r, t, 1));
                                }
                            }
                        }
                    }
                    let h = horizon.as_ref().and_then(|h| h(t));
                    if let Some(h) = h.filter(|&h| {
                        evicted.is_none_or(|e| {
                            e.checked_add_signed(chrono::Duration::days(EVICT_STEP_DAYS))
                                .is_some_and(|next| h >= next)
                        })
                    }) {
                        evicted = Some(h);
                        state.retain(|_, kept| {
                            kept.retain(|r| r.evictable_day().is_none_or(|d| d >= h));
                            !kept.is_empty()
                        });
                    }
                }
            }
        },
    )
}
