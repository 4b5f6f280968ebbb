//! The dataflow core alone, fed from memory: no broker, no sink I/O.

use crate::memory::{initial_holdings, run, InputBatch};
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
}

#[derive(Debug, Clone, Default)]
pub struct CoreBenchReport {
    pub ticks: usize,
    pub evaluations: u64,
    pub elapsed: Duration,
    /// Mean wall time of a trading day among the first ten (after the first day).
    pub early_day: Duration,
    /// Mean wall time of a trading day among the last ten.
    pub late_day: Duration,
    /// A close restated in the middle of history: wall time and rows retracted/inserted.
    pub restatement: Duration,
    pub restatement_retracted: u64,
    pub restatement_inserted: u64,
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

/// Counts rows, separately for the timestamp of the restatement.
struct CountingSink {
    restate_time: u64,
    evaluations: u64,
    restate_inserted: u64,
    restate_retracted: u64,
    checksum: u64,
}

fn row_sum(e: &stockflow_core::Evaluation) -> u64 {
    let change = e.change.map_or(0, |c| c.units());
    (e.value.units().wrapping_add(change)) as u64
}

impl Sink for CountingSink {
    fn apply(&mut self, batch: &Batch) -> stockflow_core::Result<()> {
        for (e, d) in &batch.evaluations {
            if batch.time != self.restate_time {
                let v = row_sum(e).wrapping_mul(*d as u64);
                self.checksum = self.checksum.wrapping_add(v);
            }
            let (ins, ret) = if *d > 0 {
                (*d as u64, 0)
            } else {
                (0, d.unsigned_abs() as u64)
            };
            if batch.time == self.restate_time {
                self.restate_inserted += ins;
                self.restate_retracted += ret;
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

/// Holdings at timestamp 0, then one trading day per timestamp, then one restated close.
pub fn run_core_bench(universe: &Universe, cfg: &CoreBenchConfig) -> Result<CoreBenchReport> {
    let start = first_trading_day();
    let days = Calendar::new().trading_days(
        start,
        start + chrono::Duration::days(cfg.days as i64 * 2 + 30),
    );
    let days: Vec<_> = days.into_iter().take(cfg.days).collect();
    let mut batches = vec![InputBatch {
        prices: Vec::new(),
        holdings: initial_holdings(universe, start),
    }];
    let mut paths: Vec<_> = (0..universe.stocks.len() as u32)
        .filter_map(|s| universe.price_path(PriceModel::RandomWalk, cfg.seed, s))
        .collect();
    let mut seq = 0i64;
    for d in &days {
        let prices = paths
            .iter_mut()
            .enumerate()
            .map(|(s, path)| {
                seq += 1;
                PriceInput {
                    stock: s as u32,
                    date: *d,
                    price: path.next_close(),
                    version: (seq, 0, seq),
                }
            })
            .collect();
        batches.push(InputBatch {
            prices,
            holdings: Vec::new(),
        });
    }
    let ticks = days.len() * universe.stocks.len();
    // Restate the close of stock 0 on the middle day.
    let mid = days.len() / 2;
    if let Some(orig) = batches.get(mid + 1).and_then(|b| b.prices.first()).cloned() {
        batches.push(InputBatch {
            prices: vec![PriceInput {
                price: orig
                    .price
                    .checked_add(stockflow_core::Money::from_int(1))
                    .unwrap_or(orig.price),
                version: (seq + 1, 0, seq + 1),
                ..orig
            }],
            holdings: Vec::new(),
        });
    }
    let sink = Arc::new(Mutex::new(CountingSink {
        restate_time: (batches.len() - 1) as u64,
        evaluations: 0,
        restate_inserted: 0,
        restate_retracted: 0,
        checksum: 0,
    }));
    let batches = Arc::new(batches);
    let (baseline_elapsed, baseline_evaluations, baseline_checksum) =
        plain_loop(universe, &batches[..batches.len().saturating_sub(1)]);
    let stats = run(cfg.workers, batches, Arc::clone(&sink), true)?;
    let sink = sink
        .lock()
        .map_err(|_| crate::Error::Internal("sink lock poisoned".into()))?;
    let per_day = &stats.per_batch;
    let n = per_day.len();
    let early = per_day.get(2..12.min(n.saturating_sub(1))).unwrap_or(&[]);
    let late = per_day
        .get(n.saturating_sub(11)..n.saturating_sub(1))
        .unwrap_or(&[]);
    Ok(CoreBenchReport {
        ticks,
        evaluations: sink.evaluations,
        elapsed: stats.elapsed,
        early_day: mean(early),
        late_day: mean(late),
        restatement: per_day.last().copied().unwrap_or_default(),
        day_cost_by_decile: {
            let days_only = per_day.get(1..n.saturating_sub(1)).unwrap_or(&[]);
            let k = days_only.len().div_ceil(10).max(1);
            days_only.chunks(k).map(mean).collect()
        },
        restatement_retracted: sink.restate_retracted,
        restatement_inserted: sink.restate_inserted,
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
fn plain_loop(universe: &Universe, batches: &[InputBatch]) -> (Duration, u64, u64) {
    let started = std::time::Instant::now();
    let mut held: Vec<Vec<(u32, i64)>> = vec![Vec::new(); universe.portfolios.len()];
    for b in batches {
        for h in &b.holdings {
            if let Some(p) = held.get_mut(h.portfolio as usize) {
                p.push((h.stock, h.quantity));
            }
        }
    }
    let mut previous: Vec<Option<stockflow_core::Money>> = vec![None; held.len()];
    let mut closes: Vec<Option<stockflow_core::Money>> = vec![None; universe.stocks.len()];
    let (mut evaluations, mut checksum) = (0u64, 0u64);
    for b in batches.iter().filter(|b| !b.prices.is_empty()) {
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
