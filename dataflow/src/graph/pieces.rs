//! Sorting a timestamp's records when they came from several workers, each worker's in order:
//! the records are then a few sorted sequences cut into pieces (one a message) and interleaved
//! as the messages arrived. One worker's input is already sorted, which the standard sort
//! notices in one pass; two workers' inputs were sorted for real (a day's closes come sorted
//! by stock from each worker, and the latest operator sorted each day's interleaved halves).
//! Here the pieces are chained back into their sequences and the sequences merged: linear time
//! for a few of them. Under callgrind, 250 days of the 2,000 × 20,000 bench with two workers:
//! 183 M fewer instructions (0.75 % of the run); with one, 13 M more (0.05 %: one pass that
//! finds the input sorted, or too disordered, before the sort).

use std::cmp::Ordering;

/// More sequences than this and the records are sorted instead (a merge compares every head
/// per record).
const MAX_CHAINS: usize = 8;

/// Pieces shorter than this on average and the records are sorted instead: they are not a
/// few sequences cut into messages.
const MIN_PIECE: usize = 16;

/// `v` sorted by `cmp`, which must be a total order (no two records equal unless they are
/// the same): then the result is `v.sort_unstable_by(cmp)`'s, whatever the input's order.
pub fn sort_pieces<T: Clone>(mut v: Vec<T>, cmp: impl Fn(&T, &T) -> Ordering) -> Vec<T> {
    // The ascending pieces: [start, end) ranges.
    let mut pieces: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for (i, pair) in v.windows(2).enumerate() {
        if cmp(&pair[0], &pair[1]) == Ordering::Greater {
            pieces.push((start, i + 1));
            start = i + 1;
        }
    }
    if pieces.is_empty() {
        return v;
    }
    pieces.push((start, v.len()));
    if pieces.len().saturating_mul(MIN_PIECE) > v.len() {
        v.sort_unstable_by(cmp);
        return v;
    }
    // Each piece after the chain that ends latest not after the piece's first record: a
    // piece continues its own worker's sequence.
    let mut chains: Vec<Vec<(usize, usize)>> = Vec::new();
    for &(s, e) in &pieces {
        let first = &v[s];
        let best = chains
            .iter()
            .enumerate()
            .filter_map(|(c, chain)| {
                let last = chain.last().map(|&(_, end)| &v[end - 1])?;
                (cmp(last, first) != Ordering::Greater).then_some((c, last))
            })
            .max_by(|(_, a), (_, b)| cmp(a, b))
            .map(|(c, _)| c);
        match best {
            Some(c) => chains[c].push((s, e)),
            None => {
                if chains.len() == MAX_CHAINS {
                    v.sort_unstable_by(cmp);
                    return v;
                }
                chains.push(vec![(s, e)]);
            }
        }
    }
    merge(&v, &chains, &cmp)
}

/// The chains' records merged in `cmp` order (each chain sorted).
fn merge<T: Clone>(
    v: &[T],
    chains: &[Vec<(usize, usize)>],
    cmp: &impl Fn(&T, &T) -> Ordering,
) -> Vec<T> {
    // Per chain: its records in order, as an iterator over its pieces.
    let mut heads: Vec<_> = chains
        .iter()
        .map(|chain| chain.iter().flat_map(|&(s, e)| v[s..e].iter()).peekable())
        .collect();
    let mut out = Vec::with_capacity(v.len());
    loop {
        let mut least: Option<(usize, &T)> = None;
        for (c, head) in heads.iter_mut().enumerate() {
            if let Some(&x) = head.peek() {
                if least.is_none_or(|(_, l)| cmp(x, l) == Ordering::Less) {
                    least = Some((c, x));
                }
            }
        }
        let Some((c, _)) = least else {
            break;
        };
        if let Some(x) = heads[c].next() {
            out.push(x.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted(mut v: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
        v.sort_unstable();
        v
    }

    /// `workers` sorted sequences of distinct records, cut into messages of `size` and
    /// interleaved in a random order that keeps each sequence's own order.
    /// A small deterministic generator (xorshift): the seed is in every failure's message.
    struct Gen(u64);
    impl Gen {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// `workers` sorted sequences of distinct records, cut into messages of `size` and
    /// interleaved in a random order that keeps each sequence's own order.
    fn interleaved(workers: usize, per: usize, size: usize, seed: u64) -> Vec<(u32, u32)> {
        let mut g = Gen(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut seqs: Vec<Vec<(u32, u32)>> = (0..workers)
            .map(|w| {
                let mut s: Vec<(u32, u32)> = (0..per)
                    .map(|i| (g.below(1_000_000) as u32, (i * workers + w) as u32))
                    .collect();
                s.sort_unstable();
                s
            })
            .collect();
        let mut out = Vec::new();
        while seqs.iter().any(|s| !s.is_empty()) {
            let w = g.below(workers);
            let n = size.min(seqs[w].len());
            out.extend(seqs[w].drain(..n));
        }
        out
    }

    #[test]
    fn interleaved_sequences_come_out_sorted() {
        for (workers, size) in [(1, 100), (2, 170), (3, 64), (4, 16), (8, 50), (9, 50)] {
            for seed in 0..5 {
                let v = interleaved(workers, 2_000, size, seed);
                let want = sorted(v.clone());
                assert_eq!(
                    sort_pieces(v, |a, b| a.cmp(b)),
                    want,
                    "{workers} workers, messages of {size}, seed {seed}"
                );
            }
        }
    }

    proptest! {
        // Any input, however ordered: the sort's result (pieces of every length, many chains,
        // the fallbacks).
        #[test]
        fn any_records_come_out_as_the_sort_puts_them(
            v in proptest::collection::vec((0u32..50, 0u32..50), 0..600),
            cut in 1usize..40,
        ) {
            // Make the records distinct (a total order), then cut sorted runs into the input
            // now and then, as messages would.
            let mut v: Vec<(u32, u32)> = v.into_iter().enumerate().map(|(i, (a, _))| (a, i as u32)).collect();
            for chunk in v.chunks_mut(cut.max(1) * 7) {
                let n = chunk.len().min(cut);
                chunk[..n].sort_unstable();
            }
            let want = sorted(v.clone());
            prop_assert_eq!(sort_pieces(v, |a, b| a.cmp(b)), want);
        }

        // A few workers' sequences, cut into messages of any size and interleaved.
        #[test]
        fn any_interleaving_of_sorted_sequences_comes_out_sorted(
            workers in 1usize..12,
            per in 0usize..400,
            size in 1usize..200,
            seed in any::<u64>(),
        ) {
            let v = interleaved(workers, per, size, seed);
            let want = sorted(v.clone());
            prop_assert_eq!(sort_pieces(v, |a, b| a.cmp(b)), want);
        }
    }
}
