//! The dataflow core alone, fed from memory: no broker, no sink I/O.

use crate::graph::Horizon;
use crate::memory::{holdings_of, run_source, BatchSource, InputBatch, Pace};
use crate::Result;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockflow_core::{Batch, PriceInput, Sink};
use stockflow_market::{first_trading_day, Calendar, PriceModel, Universe};

#[derive(Debug, Clone)]
pub struct CoreBenchConfig {
    pub days: usize,
    pub workers: usize,
    pub seed: u64,
    /// Calendar days kept in memory behind the newest day (None: every day), as the job's
    /// `--memory-days`.
    pub memory_days: Option<i64>,
    /// Trading days unfinished at a time, as the job's rounds in flight
    /// ([`MAX_ROUNDS_IN_FLIGHT`](crate::job::machine::MAX_ROUNDS_IN_FLIGHT)); 1: each day
    /// completes before the next enters (every worker waits for the slowest each day).
    pub in_flight: usize,
}

#[derive(Debug, Clone, Default)]
pub struct CoreBenchReport {
    pub ticks: usize,
    pub evaluations: u64,
    pub elapsed: Duration,
    /// Mean cost of a trading day among the first [`EDGE_DAYS`] after those that entered
    /// while the holdings were in flight (which complete in a burst right after them): its
    /// wall time from its input, or from the previous day's completion when days are in
    /// flight at once, to its completion. With days in flight, completions come in a cycle
    /// of about that many days (a long interval, then short ones), so a window of 20 days
    /// (a multiple of 1, 2, 4 and 5) spans whole cycles.
    pub early_day: Duration,
    /// Mean cost of a trading day among the last [`EDGE_DAYS`].
    pub late_day: Duration,
    /// One close restated in the middle of history, [`RESTATEMENTS`] times in a row (each at
    /// its own timestamp): the median wall time, the fastest and the slowest.
    pub restatement: Duration,
    pub restatement_min: Duration,
    pub restatement_max: Duration,
    /// Rows retracted and inserted by each restatement: (the fewest, the most) over all of
    /// them (the same close restated again moves the same rows).
    pub restatement_retracted: (u64, u64),
    pub restatement_inserted: (u64, u64),
    /// Mean wall time of a trading day in each tenth of the history, first to last.
    pub day_cost_by_decile: Vec<Duration>,
    /// The same days evaluated by a plain, non-incremental loop (values, completeness,
    /// previous-day change): the floor of the work itself.
    pub baseline_elapsed: Duration,
    pub baseline_evaluations: u64,
    /// Σ of every evaluation's value and change in millionths (wrapping), from the dataflow
    /// (before the restatement) and from the loop: equal when both computed the same rows.
    pub checksum: u64,
    pub baseline_checksum: u64,
}

/// Days averaged at each end of the history for the early and late day costs.
pub const EDGE_DAYS: usize = 20;

/// How many times the bench restates its close, each at its own timestamp: one sample of a
/// millisecond is at the mercy of the machine; the median of many is not.
pub const RESTATEMENTS: usize = 21;

/// Counts rows, separately for the timestamps of the restatements (from `restate_time` on).
struct CountingSink {
    restate_time: u64,
    evaluations: u64,
    /// Per restatement timestamp: (inserted, retracted).
    restated: std::collections::BTreeMap<u64, (u64, u64)>,
    checksum: u64,
}

fn row_sum(e: &stockflow_core::Evaluation) -> u64 {
    let change = e.change.map_or(0, |c| c.units());
    (e.value.units().wrapping_add(change)) as u64
}

impl Sink for CountingSink {
    fn apply(&mut self, batch: &Batch) -> stockflow_core::Result<()> {
        let restating = batch.time >= self.restate_time;
        for (e, d) in &batch.evaluations {
            if !restating {
                let v = row_sum(e).wrapping_mul(*d as u64);
                self.checksum = self.checksum.wrapping_add(v);
            }
            let (ins, ret) = if *d > 0 {
                (*d as u64, 0)
            } else {
                (0, d.unsigned_abs() as u64)
            };
            if restating {
                let counts = self.restated.entry(batch.time).or_default();
                counts.0 += ins;
                counts.1 += ret;
            } else {
                self.evaluations += ins;
                self.evaluations -= ret.min(self.evaluations);
            }
        }
        Ok(())
    }
}

fn mean(ds: &[Duration]) -> Duration {
    if ds.is_empty() {
        return Duration::ZERO;
    }
    ds.iter().sum::<Duration>() / ds.len() as u32
}

/// The benchmark's input, generated as it is read (each worker makes its own pass, one day
/// at a time): holdings at timestamp 0, then one trading day per timestamp, then the close of
/// stock 0 on one day restated [`RESTATEMENTS`] times, each at its own timestamp.
struct BenchInput {
    /// The holdings are made from it at timestamp 0 (each worker its own, then dropped).
    universe: Arc<Universe>,
    start: chrono::NaiveDate,
    paths: Vec<stockflow_market::PricePath>,
    days: Vec<chrono::NaiveDate>,
    /// The index of the day whose close of stock 0 is restated.
    restated: usize,
}

impl BenchInput {
    /// Every (day, prices) in order, then the restated closes (one more unit each time,
    /// versions after every tick): of worker `index` of `peers`, the `peers`-th prices from
    /// its index on (the restatements, of stock 0, all worker 0's; the others get empty
    /// batches at their timestamps). Each worker advances only its own stocks' price paths.
    fn days(&self, index: usize, peers: usize) -> impl Iterator<Item = InputBatch> + '_ {
        let peers = peers.max(1);
        let mut paths: Vec<(usize, stockflow_market::PricePath)> = self
            .paths
            .iter()
            .enumerate()
            .skip(index)
            .step_by(peers)
            .map(|(s, path)| (s, path.clone()))
            .collect();
        let mut original: Option<PriceInput> = None;
        let n = self.paths.len();
        let ticks = (self.days.len() * n) as i64;
        self.days
            .iter()
            .enumerate()
            .map(move |(i, d)| {
                let prices: Vec<PriceInput> = paths
                    .iter_mut()
                    .map(|(s, path)| {
                        // The tick's place in the whole input, as when one worker fed it all.
                        let seq = (i * n + *s + 1) as i64;
                        PriceInput {
                            stock: *s as u32,
                            date: *d,
                            price: path.next_close(),
                            version: (seq, 0, seq),
                        }
                    })
                    .collect();
                if i == self.restated && index == 0 {
                    original = prices.first().cloned();
                }
                // After the last day, one batch per restatement (empty on other workers).
                let restatements: Vec<Vec<PriceInput>> = if i + 1 == self.days.len() {
                    let orig = original.take();
                    (1..=RESTATEMENTS as i64)
                        .map(|k| {
                            orig.iter()
                                .map(|orig| PriceInput {
                                    price: orig
                                        .price
                                        .checked_add(stockflow_core::Money::from_int(k))
                                        .unwrap_or(orig.price),
                                    version: (ticks + k, 0, ticks + k),
                                    ..orig.clone()
                                })
                                .collect()
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                (prices, restatements)
            })
            .flat_map(|(prices, restatements)| {
                std::iter::once(InputBatch {
                    prices,
                    holdings: Vec::new(),
                })
                .chain(restatements.into_iter().map(|prices| InputBatch {
                    prices,
                    holdings: Vec::new(),
                }))
            })
    }
}

impl BatchSource for BenchInput {
    fn batches(&self) -> Box<dyn Iterator<Item = InputBatch> + '_> {
        self.share(0, 1)
    }

    /// Each worker makes only its own share of the closes (its stocks' price paths alone
    /// advance) and keeps only its own holdings (each made, a plain struct, but only its own
    /// collected): made whole and then split, every worker made and held all of them, the
    /// same work on each.
    fn share(&self, index: usize, peers: usize) -> Box<dyn Iterator<Item = InputBatch> + '_> {
        let holdings = holdings_of(&self.universe, self.start)
            .skip(index)
            .step_by(peers.max(1))
            .collect();
        Box::new(
            std::iter::once(InputBatch {
                prices: Vec::new(),
                holdings,
            })
            .chain(self.days(index, peers)),
        )
    }
}

/// Holdings at timestamp 0, then one trading day per timestamp, then one close restated
/// [`RESTATEMENTS`] times: of the middle day when every day stays in memory, else of a day
/// inside the days kept.
pub fn run_core_bench(universe: &Arc<Universe>, cfg: &CoreBenchConfig) -> Result<CoreBenchReport> {
    let start = first_trading_day();
    let days = Calendar::new().trading_days(
        start,
        start + chrono::Duration::days(cfg.days as i64 * 2 + 30),
    );
    let days: Vec<_> = days.into_iter().take(cfg.days).collect();
    let n_days = days.len();
    let restated = match cfg.memory_days {
        // Kept days are calendar days: a trading day 20 back is about 28 calendar days back.
        Some(m) if m > 0 => n_days.saturating_sub(1 + (n_days / 2).min(20).min(m as usize / 2)),
        _ => n_days / 2,
    };
    let input = Arc::new(BenchInput {
        universe: Arc::clone(universe),
        start,
        paths: (0..universe.stocks.len() as u32)
            .filter_map(|s| universe.price_path(PriceModel::RandomWalk, cfg.seed, s))
            .collect(),
        days: days.clone(),
        restated,
    });
    let ticks = n_days * universe.stocks.len();
    let restate_time = n_days as u64 + 1;
    let sink = Arc::new(Mutex::new(CountingSink {
        restate_time,
        evaluations: 0,
        restated: std::collections::BTreeMap::new(),
        checksum: 0,
    }));
    let (baseline_elapsed, baseline_evaluations, baseline_checksum) =
        plain_loop(universe, input.batches().take(n_days + 1));
    // Batch t ≥ 1 is day t − 1 (the restatements: the last day's horizon).
    let horizon: Option<Horizon> = cfg.memory_days.filter(|&m| m > 0).map(|m| {
        let days = Arc::new(days);
        Arc::new(move |t: u64| {
            let i = usize::try_from(t)
                .ok()?
                .checked_sub(1)?
                .min(days.len().checked_sub(1)?);
            Some(days[i] - chrono::Duration::days(m))
        }) as Horizon
    });
    // The days as the job runs them (up to `in_flight` at once); each restatement alone, into
    // an idle dataflow: its latency.
    let pace = Pace::Window {
        in_flight: cfg.in_flight,
        alone_from: n_days + 1,
    };
    let stats = run_source(cfg.workers, input, Arc::clone(&sink), pace, false, horizon)?;
    let sink = sink
        .lock()
        .map_err(|_| crate::Error::Internal("sink lock poisoned".into()))?;
    // Batch 0 (the holdings), the days, then the restatements.
    let n = (n_days + 1).min(stats.per_batch.len());
    let (per_day, restating) = stats.per_batch.split_at(n);
    // Days 1 to `in_flight` − 1 enter with the holdings in flight and complete in a burst
    // after them, and day `in_flight` waits for them: the early days start one after it
    // (day 2 one at a time, as before days were in flight).
    let first = 1 + cfg.in_flight.max(1);
    let early = per_day
        .get(first..(first + EDGE_DAYS).min(n))
        .unwrap_or(&[]);
    let late = per_day.get(n.saturating_sub(EDGE_DAYS)..).unwrap_or(&[]);
    let mut restating = restating.to_vec();
    restating.sort_unstable();
    // (fewest, most) over every restatement: one that moved nothing counts as 0.
    let counts = |f: fn(&(u64, u64)) -> u64| {
        let all = (restate_time..restate_time + RESTATEMENTS as u64)
            .map(|t| sink.restated.get(&t).map_or(0, f));
        (all.clone().min().unwrap_or(0), all.max().unwrap_or(0))
    };
    Ok(CoreBenchReport {
        ticks,
        evaluations: sink.evaluations,
        elapsed: stats.elapsed,
        early_day: mean(early),
        late_day: mean(late),
        restatement: restating
            .get(restating.len() / 2)
            .copied()
            .unwrap_or_default(),
        restatement_min: restating.first().copied().unwrap_or_default(),
        restatement_max: restating.last().copied().unwrap_or_default(),
        day_cost_by_decile: {
            let days_only = per_day.get(1..).unwrap_or(&[]);
            let k = days_only.len().div_ceil(10).max(1);
            days_only.chunks(k).map(mean).collect()
        },
        restatement_retracted: counts(|c| c.1),
        restatement_inserted: counts(|c| c.0),
        baseline_elapsed,
        baseline_evaluations,
        checksum: sink.checksum,
        baseline_checksum,
    })
}

/// The same evaluation without incrementality: day by day, every portfolio from scratch
/// (holdings as of batch 0, which is all the benchmark's holdings). Values, completeness and
/// the previous evaluated day's change, with the job's checked fixed-point arithmetic.
/// Returns (time, evaluations, checksum).
fn plain_loop(
    universe: &Universe,
    batches: impl Iterator<Item = InputBatch>,
) -> (Duration, u64, u64) {
    let started = std::time::Instant::now();
    let mut held: Vec<Vec<(u32, i64)>> = vec![Vec::new(); universe.portfolios.len()];
    let mut previous: Vec<Option<stockflow_core::Money>> = vec![None; held.len()];
    let mut closes: Vec<Option<stockflow_core::Money>> = vec![None; universe.stocks.len()];
    let (mut evaluations, mut checksum) = (0u64, 0u64);
    for b in batches {
        for h in &b.holdings {
            if let Some(p) = held.get_mut(h.portfolio as usize) {
                p.push((h.stock, h.quantity));
            }
        }
        if b.prices.is_empty() {
            continue;
        }
        closes.iter_mut().for_each(|c| *c = None);
        let mut date = None;
        for p in &b.prices {
            if let Some(c) = closes.get_mut(p.stock as usize) {
                *c = Some(p.price);
            }
            date = Some(p.date);
        }
        let Some(date) = date else { continue };
        for (p, positions) in held.iter().enumerate() {
            let mut sum = Some(stockflow_core::Money::ZERO);
            for (s, q) in positions {
                sum = match (sum, closes.get(*s as usize).copied().flatten()) {
                    (Some(acc), Some(price)) => {
                        price.checked_mul_int(*q).and_then(|v| acc.checked_add(v))
                    }
                    _ => None,
                };
            }
            let Some(value) = sum.filter(|_| !positions.is_empty()) else {
                continue;
            };
            if let Ok(e) = crate::eval::evaluation(p as u32, date, value, previous[p]) {
                evaluations += 1;
                checksum = checksum.wrapping_add(row_sum(&e));
                previous[p] = Some(value);
            }
        }
    }
    (started.elapsed(), evaluations, checksum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockflow_market::SyntheticSpec;

    #[test]
    fn each_workers_own_input_is_its_share_of_the_whole() {
        let universe = Arc::new(Universe::synthetic(SyntheticSpec {
            stocks: 7,
            portfolios: 5,
            min_holdings: 1,
            max_holdings: 4,
            seed: 11,
        }));
        let start = first_trading_day();
        let days: Vec<_> = Calendar::new()
            .trading_days(start, start + chrono::Duration::days(20))
            .into_iter()
            .take(6)
            .collect();
        let restated_day = days[2];
        let input = BenchInput {
            universe: Arc::clone(&universe),
            start,
            paths: (0..7)
                .filter_map(|s| universe.price_path(PriceModel::RandomWalk, 3, s))
                .collect(),
            days,
            restated: 2,
        };
        let whole: Vec<InputBatch> = input.batches().collect();
        // The holdings, six days, then the restatements: stock 0 of the third day, one more
        // unit each time, versions after every tick.
        assert_eq!(whole.len(), 1 + 6 + RESTATEMENTS);
        assert_eq!(whole[1].prices.len(), 7);
        assert_eq!(whole[6].prices[6].version, (42, 0, 42));
        let original = whole[3].prices[0].clone();
        for (k, batch) in whole[7..].iter().enumerate() {
            let k = k as i64 + 1;
            assert_eq!(batch.prices.len(), 1, "restatement {k}");
            let r = &batch.prices[0];
            assert_eq!((r.stock, r.date), (0, restated_day));
            assert_eq!(r.version, (42 + k, 0, 42 + k));
            assert_eq!(
                r.price,
                original
                    .price
                    .checked_add(stockflow_core::Money::from_int(k))
                    .expect("a small price plus a few units")
            );
        }
        // Made by each worker alone, its share equals the whole split by position (the
        // default share), batch for batch.
        for peers in 1..=3 {
            for index in 0..peers {
                let own: Vec<InputBatch> = input.share(index, peers).collect();
                let split: Vec<InputBatch> = whole.share(index, peers).collect();
                assert_eq!(own.len(), split.len(), "worker {index} of {peers}");
                for (t, (a, b)) in own.iter().zip(&split).enumerate() {
                    assert_eq!(a.prices, b.prices, "batch {t}, worker {index} of {peers}");
                    assert_eq!(
                        a.holdings, b.holdings,
                        "batch {t}, worker {index} of {peers}"
                    );
                }
            }
        }
    }
}
