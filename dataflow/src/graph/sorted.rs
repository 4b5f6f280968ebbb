//! A group's entries sorted by key (a portfolio's holding records, a day's closes): a vector
//! while the group is small, which stores the entries alone (no key beside them, no tree nodes,
//! no hash buckets), and a B-tree once it passes [`LARGE`] entries, so that an insert never
//! shifts a long vector (a fund's records over years: each insert in the middle of a vector
//! moves everything after it).
//!
//! The key of an entry is computed from it (`key`), so the vector holds no copy of it.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Past this many entries a group moves from a vector to a B-tree: an insert in a vector of
/// this size moves at most a few tens of kilobytes.
pub const LARGE: usize = 512;

/// The entries of one group, sorted by key.
#[derive(Debug)]
pub enum Sorted<K, T> {
    Small(Vec<T>),
    Large(BTreeMap<K, T>),
}

impl<K, T> Default for Sorted<K, T> {
    fn default() -> Self {
        Sorted::Small(Vec::new())
    }
}

impl<K: Ord + Clone, T> Sorted<K, T> {
    pub fn is_empty(&self) -> bool {
        match self {
            Sorted::Small(v) => v.is_empty(),
            Sorted::Large(m) => m.is_empty(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        match self {
            Sorted::Small(v) => v.len(),
            Sorted::Large(m) => m.len(),
        }
    }

    /// The entry with key `k`.
    pub fn get_mut(&mut self, k: &K, key: impl Fn(&T) -> K) -> Option<&mut T> {
        match self {
            Sorted::Small(v) => match v.binary_search_by(|x| key(x).cmp(k)) {
                Ok(i) => v.get_mut(i),
                Err(_) => None,
            },
            Sorted::Large(m) => m.get_mut(k),
        }
    }

    /// Puts `t` under key `k` (which must be `key(&t)`), replacing an entry with that key.
    pub fn insert(&mut self, k: K, t: T, key: impl Fn(&T) -> K) {
        match self {
            Sorted::Small(v) => {
                match v.binary_search_by(|x| key(x).cmp(&k)) {
                    Ok(i) => v[i] = t,
                    Err(i) => v.insert(i, t),
                }
                if v.len() > LARGE {
                    let m = std::mem::take(v)
                        .into_iter()
                        .map(|t| (key(&t), t))
                        .collect();
                    *self = Sorted::Large(m);
                }
            }
            Sorted::Large(m) => {
                m.insert(k, t);
            }
        }
    }

    /// Removes the entry with key `k`.
    pub fn remove(&mut self, k: &K, key: impl Fn(&T) -> K) -> Option<T> {
        match self {
            Sorted::Small(v) => match v.binary_search_by(|x| key(x).cmp(k)) {
                Ok(i) => Some(v.remove(i)),
                Err(_) => None,
            },
            Sorted::Large(m) => m.remove(k),
        }
    }

    /// Keeps the entries `f` accepts.
    pub fn retain(&mut self, mut f: impl FnMut(&T) -> bool) {
        match self {
            Sorted::Small(v) => v.retain(|t| f(t)),
            Sorted::Large(m) => m.retain(|_, t| f(t)),
        }
    }

    /// The entries with keys from `lo` to `hi`, both included, in key order.
    pub fn range<'a>(
        &'a self,
        lo: &K,
        hi: &K,
        key: impl Fn(&T) -> K,
    ) -> Box<dyn Iterator<Item = &'a T> + 'a> {
        match self {
            Sorted::Small(v) => {
                let start = v.partition_point(|x| key(x) < *lo);
                let end = start + v[start..].partition_point(|x| key(x) <= *hi);
                Box::new(v[start..end].iter())
            }
            Sorted::Large(m) => {
                if lo > hi {
                    return Box::new(std::iter::empty());
                }
                Box::new(
                    m.range((Bound::Included(lo.clone()), Bound::Included(hi.clone())))
                        .map(|(_, t)| t),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn key(t: &(u32, i64)) -> u32 {
        t.0
    }

    /// Operations on a group: insert (key, value), remove key, keep values above a bound, and
    /// a range query; compared with a B-tree holding the same entries.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, i64),
        Remove(u32),
        Retain(i64),
        Range(u32, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Mostly inserts, and a retain drops at most an eighth: groups grow past LARGE.
        prop_oneof![
            16 => (0u32..2_000, any::<i64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (0u32..2_000).prop_map(Op::Remove),
            1 => (i64::MIN..i64::MIN / 4 * 3).prop_map(Op::Retain),
            3 => (0u32..2_000, 0u32..2_000).prop_map(|(a, b)| Op::Range(a, b)),
        ]
    }

    proptest! {
        // Up to 3,000 operations: groups pass LARGE (512) and move to the B-tree midway.
        #[test]
        fn a_group_behaves_as_a_map_by_key_small_or_large(
            ops in proptest::collection::vec(op(), 0..3_000)
        ) {
            let mut got: Sorted<u32, (u32, i64)> = Sorted::default();
            let mut want: BTreeMap<u32, i64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        got.insert(k, (k, v), key);
                        want.insert(k, v);
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(got.remove(&k, key).map(|t| t.1), want.remove(&k));
                    }
                    Op::Retain(bound) => {
                        got.retain(|t| t.1 > bound);
                        want.retain(|_, v| *v > bound);
                    }
                    Op::Range(a, b) => {
                        let g: Vec<(u32, i64)> = got.range(&a, &b, key).copied().collect();
                        let w: Vec<(u32, i64)> = if a <= b {
                            want.range(a..=b).map(|(k, v)| (*k, *v)).collect()
                        } else {
                            Vec::new()
                        };
                        prop_assert_eq!(g, w);
                    }
                }
                prop_assert_eq!(got.len(), want.len());
                prop_assert_eq!(got.is_empty(), want.is_empty());
                if let Some((k, v)) = want.iter().next() {
                    prop_assert_eq!(got.get_mut(k, key).map(|t| t.1), Some(*v));
                }
            }
        }
    }

    #[test]
    fn a_group_past_large_is_a_b_tree_with_the_same_entries() {
        let mut g: Sorted<u32, (u32, i64)> = Sorted::default();
        for k in (0..=LARGE as u32).rev() {
            g.insert(k, (k, i64::from(k)), key);
        }
        assert!(
            matches!(g, Sorted::Large(_)),
            "{} entries stay a vector",
            g.len()
        );
        let all: Vec<u32> = g.range(&0, &u32::MAX, key).map(|t| t.0).collect();
        assert_eq!(all, (0..=LARGE as u32).collect::<Vec<_>>());
        assert_eq!(g.get_mut(&7, key).map(|t| t.1), Some(7));
    }
}
