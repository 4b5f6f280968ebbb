//! Updates held per timestamp until every input's frontier has passed it, then handed out in
//! time order with a capability to emit at that time: what lets the operators below apply
//! each timestamp's changes at once, like differential's operators do.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use timely::dataflow::operators::Capability;
use timely::progress::frontier::MutableAntichain;

/// One timestamp's capability and the updates of the first and second input.
pub type Slot<A, B> = (Capability<u64>, Chunks<A>, Chunks<B>);

/// Records per chunk of a timestamp's updates.
const CHUNK: usize = 4096;

/// A timestamp's updates as they come, in chunks of [`CHUNK`]: a vector grown by doubling to
/// 600,000 holding records (the 2,000 × 20,000 bench's first timestamp) held up to 2.6 times
/// their size while it moved and 1.75 times after; the chunks hold them once, then one
/// vector of exactly their number.
pub struct Chunks<T> {
    full: Vec<Vec<T>>,
    last: Vec<T>,
}

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Chunks {
            full: Vec::new(),
            last: Vec::new(),
        }
    }
}

impl<T> Chunks<T> {
    fn push(&mut self, x: T) {
        if self.last.len() >= CHUNK {
            let full = std::mem::replace(&mut self.last, Vec::with_capacity(CHUNK));
            self.full.push(full);
        }
        self.last.push(x);
    }

    fn len(&self) -> usize {
        self.full.iter().map(Vec::len).sum::<usize>() + self.last.len()
    }

    /// Every update, in the order they came.
    fn into_vec(self) -> Vec<T> {
        if self.full.is_empty() {
            return self.last;
        }
        let mut all = Vec::with_capacity(self.len());
        for chunk in self.full {
            all.extend(chunk);
        }
        all.extend(self.last);
        all
    }
}

/// Per timestamp: a capability and the updates of the first and second input.
pub struct Pending<A, B> {
    by_time: BTreeMap<u64, Slot<A, B>>,
}

impl<A, B> Default for Pending<A, B> {
    fn default() -> Self {
        Pending {
            by_time: BTreeMap::new(),
        }
    }
}

impl<A, B> Pending<A, B> {
    /// The slot of time `t`, with a capability for `t` delayed from `cap` (a differential
    /// record's time may be later than its message's).
    fn slot(&mut self, cap: &Capability<u64>, t: u64) -> &mut Slot<A, B> {
        self.by_time
            .entry(t)
            .or_insert_with(|| (cap.delayed(&t), Chunks::default(), Chunks::default()))
    }

    /// Records of the first input, each with its own time.
    pub fn first(&mut self, cap: &Capability<u64>, data: impl IntoIterator<Item = (A, u64)>) {
        self.push(cap, data, |slot| &mut slot.1);
    }

    /// Records of the second input, each with its own time.
    pub fn second(&mut self, cap: &Capability<u64>, data: impl IntoIterator<Item = (B, u64)>) {
        self.push(cap, data, |slot| &mut slot.2);
    }

    /// Records into the chunks `input` picks of their time's slot: one slot lookup per run
    /// of records of one time, not per record (a message's records nearly always share it).
    fn push<T>(
        &mut self,
        cap: &Capability<u64>,
        data: impl IntoIterator<Item = (T, u64)>,
        input: impl Fn(&mut Slot<A, B>) -> &mut Chunks<T>,
    ) {
        let mut data = data.into_iter().peekable();
        while let Some((x, t)) = data.next() {
            let chunks = input(self.slot(cap, t));
            chunks.push(x);
            while let Some((x, _)) = data.next_if(|(_, u)| *u == t) {
                chunks.push(x);
            }
        }
    }

    /// The timestamps no input can receive updates for any more, oldest first.
    pub fn ready(
        &mut self,
        frontiers: &[&MutableAntichain<u64>],
    ) -> Vec<(Capability<u64>, Vec<A>, Vec<B>)> {
        let mut out = Vec::new();
        while let Some(entry) = self.by_time.first_entry() {
            let t = *entry.key();
            if frontiers.iter().any(|f| f.less_equal(&t)) {
                break;
            }
            let (cap, a, b) = entry.remove();
            out.push((cap, a.into_vec(), b.into_vec()));
        }
        out
    }
}

/// The worker of everything about portfolio `p` (its holding records from the latest
/// operator on, its positions, its seeds, its book): exchanged once, by this, and pipelined
/// after.
pub fn by_portfolio(p: u32) -> u64 {
    route(&p)
}

/// A fast, stable hash for exchanging records between workers (FNV-1a over the key's Hash,
/// a whole integer per step: the keys are a few integers and dates, two steps for a close's
/// key where bytes took eight; timely hashes only with more than one worker).
pub fn route<K: Hash>(key: &K) -> u64 {
    struct Fnv(u64);
    impl Fnv {
        fn step(&mut self, x: u64) {
            self.0 ^= x;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            // Spread the low bits, which pick the worker.
            let mut x = self.0;
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            x ^ (x >> 33)
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.step(u64::from(*b));
            }
        }
        fn write_u32(&mut self, x: u32) {
            self.step(u64::from(x));
        }
        fn write_i32(&mut self, x: i32) {
            // The bits, not the value: -1 and u32::MAX step alike, as their bytes did.
            self.step(u64::from(x as u32));
        }
        fn write_u64(&mut self, x: u64) {
            self.step(x);
        }
        fn write_i64(&mut self, x: i64) {
            self.step(x as u64);
        }
        fn write_usize(&mut self, x: usize) {
            self.step(x as u64);
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    key.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_spread_keys_evenly_over_workers() {
        // A portfolio's id and a close's (stock, date), as the operators route them, and a
        // pair of integers: each of 2, 3 and 4 workers gets its share within 5 %.
        let day = |i: i64| {
            chrono::NaiveDate::from_ymd_opt(2001, 1, 1).expect("a date") + chrono::Duration::days(i)
        };
        let keys: [Vec<u64>; 3] = [
            (0..20_000u32).map(|p| route(&p)).collect(),
            (0..20_000u32).map(|i| route(&(i / 50, i % 50))).collect(),
            (0..20_000u32)
                .map(|i| route(&(i % 2_000, day(i64::from(i / 2_000)))))
                .collect(),
        ];
        for hashes in &keys {
            for peers in 2..=4u64 {
                let mut counts = vec![0usize; peers as usize];
                for h in hashes {
                    counts[(h % peers) as usize] += 1;
                }
                let fair = hashes.len() / peers as usize;
                for c in &counts {
                    assert!(
                        c.abs_diff(fair) * 20 <= fair,
                        "{peers} workers: {counts:?}, each should be near {fair}"
                    );
                }
            }
        }
        // Stable: the same key, the same route (every process of a cluster agrees).
        // Pinned (FNV-1a by 64-bit steps, then the mix; computed apart): a change of the hash
        // shows here, and a cluster's processes run one binary (`job::agree`).
        assert_eq!(route(&7u32), 3_740_308_175_466_531_163);
        assert_eq!(route(&(7u32, 9u32)), 12_450_554_860_780_317_553);
        assert_ne!(route(&(7u32, 9u32)), route(&(9u32, 7u32)));
    }

    #[test]
    fn chunks_give_back_every_update_in_order_in_one_exact_vector() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let mut chunks = Chunks::default();
            for i in 0..n {
                chunks.push(i);
            }
            assert_eq!(chunks.len(), n);
            assert!(chunks.full.iter().all(|c| c.len() == CHUNK), "n = {n}");
            let all = chunks.into_vec();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "n = {n}");
            if n > CHUNK {
                // Doubling would have reached 16,384 for 12,305.
                assert!(all.capacity() <= n + n / 8, "n = {n}: sized to its updates");
            }
        }
    }
}
