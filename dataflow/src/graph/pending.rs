//! Updates held per timestamp until every input's frontier has passed it, then handed out in
//! time order with a capability to emit at that time: what lets the operators below apply
//! each timestamp's changes at once, like differential's operators do.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use timely::dataflow::operators::Capability;
use timely::progress::frontier::MutableAntichain;

/// One timestamp's capability and the updates of the first and second input.
pub type Slot<A, B> = (Capability<u64>, Vec<A>, Vec<B>);

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
            .or_insert_with(|| (cap.delayed(&t), Vec::new(), Vec::new()))
    }

    /// Records of the first input, each with its own time.
    pub fn first(&mut self, cap: &Capability<u64>, data: impl IntoIterator<Item = (A, u64)>) {
        for (a, t) in data {
            self.slot(cap, t).1.push(a);
        }
    }

    /// Records of the second input, each with its own time.
    pub fn second(&mut self, cap: &Capability<u64>, data: impl IntoIterator<Item = (B, u64)>) {
        for (b, t) in data {
            self.slot(cap, t).2.push(b);
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
            out.push(entry.remove());
        }
        out
    }
}

/// A fast, stable hash for exchanging records between workers (FNV-1a over the key's Hash).
pub fn route<K: Hash>(key: &K) -> u64 {
    struct Fnv(u64);
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
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    key.hash(&mut h);
    h.finish()
}
