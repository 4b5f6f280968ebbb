//! Sinks without state: JSON Lines (one diff a line) and null (benchmarks).

use std::io::Write;
use std::sync::Arc;
use stockflow_core::{Batch, Error, Result, Sink};
use stockflow_market::Universe;

#[derive(serde::Serialize)]
struct Line<'a> {
    time: u64,
    diff: isize,
    investor: &'a str,
    portfolio: &'a str,
    date: String,
    value: String,
    change: Option<String>,
    change_pct: Option<String>,
}

/// Writes one JSON object per evaluation diff and line, retractions before insertions of the
/// same row.
pub struct JsonLinesSink<W: Write + Send> {
    out: W,
    universe: Arc<Universe>,
}

impl<W: Write + Send> JsonLinesSink<W> {
    pub fn new(out: W, universe: Arc<Universe>) -> Self {
        JsonLinesSink { out, universe }
    }
}

fn io(e: impl std::fmt::Display) -> Error {
    Error::external(format!("writing JSON Lines: {e}"))
}

impl<W: Write + Send> Sink for JsonLinesSink<W> {
    fn apply(&mut self, batch: &Batch) -> Result<()> {
        let time = batch.time;
        let mut diffs: Vec<_> = batch.evaluations.iter().collect();
        diffs.sort_by_key(|(e, d)| (e.portfolio, e.date, *d));
        for (e, diff) in diffs {
            let (portfolio, investor) = self
                .universe
                .portfolio(e.portfolio)
                .map_or(("?", "?"), |p| (p.id.as_str(), p.investor.as_str()));
            let line = Line {
                time,
                diff: *diff,
                investor,
                portfolio,
                date: e.date.to_string(),
                value: e.value.to_string(),
                change: e.change.map(|c| c.to_string()),
                change_pct: e.change_pct.map(|c| c.to_string()),
            };
            serde_json::to_writer(&mut self.out, &line).map_err(io)?;
            self.out.write_all(b"\n").map_err(io)?;
        }
        self.out.flush().map_err(io)
    }
}

/// Drops everything (benchmarks): the job's counters still count what it produced.
#[derive(Debug, Default)]
pub struct NullSink;

impl Sink for NullSink {
    /// Nothing to gather for: a catch-up's batches are not held and merged.
    fn gathers(&self) -> bool {
        false
    }

    fn apply(&mut self, _batch: &Batch) -> Result<()> {
        Ok(())
    }
}

/// What a [`MemoryStore`] holds: the same tables as the MySQL sink, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreTables {
    pub evaluations: std::collections::BTreeSet<stockflow_core::Evaluation>,
    pub issues: std::collections::BTreeSet<stockflow_core::Issue>,
    pub prices: std::collections::BTreeMap<(u32, chrono::NaiveDate), stockflow_core::PriceInput>,
    pub holdings:
        std::collections::BTreeMap<(u32, u32, chrono::NaiveDate), stockflow_core::HoldingInput>,
    pub dead_letters: std::collections::BTreeSet<stockflow_core::Position>,
    pub offsets: std::collections::BTreeMap<(String, i32), i64>,
    pub marks: std::collections::BTreeMap<(String, i32), stockflow_core::Last>,
    /// Batches applied, rows retracted over all batches.
    pub batches: u64,
    pub retracted: u64,
    /// Tests: the apply that would make `batches` reach this fails instead, and so does every
    /// later one until it is cleared (a job that dies between two commits).
    pub fail_at_batch: Option<u64>,
    /// Applies refused because of `fail_at_batch`.
    pub failures: u64,
}

/// A stateful sink in memory, with the MySQL sink's semantics (one atomic apply per batch,
/// state and offsets stored with the rows): the reference for job tests over a memory log.
/// Clones share the same tables, so a test can restart a job on them.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    pub tables: Arc<std::sync::Mutex<StoreTables>>,
}

impl MemoryStore {
    pub fn snapshot(&self) -> StoreTables {
        self.tables.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

impl Sink for MemoryStore {
    fn load(&mut self, restore: stockflow_core::Restore) -> Result<stockflow_core::StoredState> {
        let t = self
            .tables
            .lock()
            .map_err(|_| Error::internal("store lock poisoned"))?;
        let first = t.prices.keys().map(|k| k.1).min();
        let last = t.prices.keys().map(|k| k.1).max();
        let window = first.zip(last).and_then(|(f, l)| restore.window(f, l));
        let inside = |d: &chrono::NaiveDate| window.is_none_or(|w| *d >= w);
        let mut seeds: std::collections::BTreeMap<u32, stockflow_core::Seed> = Default::default();
        if let Some(w) = window {
            for e in t.evaluations.iter().filter(|e| e.date < w) {
                seeds.insert(
                    e.portfolio,
                    stockflow_core::Seed {
                        portfolio: e.portfolio,
                        date: e.date,
                        value: e.value,
                    },
                );
            }
        }
        Ok(stockflow_core::StoredState {
            prices: t
                .prices
                .values()
                .filter(|p| inside(&p.date))
                .cloned()
                .collect(),
            holdings: t.holdings.values().cloned().collect(),
            offsets: t.offsets.clone(),
            marks: t.marks.clone(),
            window,
            seeds: seeds.into_values().collect(),
        })
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn apply(&mut self, batch: &Batch) -> Result<()> {
        let mut t = self
            .tables
            .lock()
            .map_err(|_| Error::internal("store lock poisoned"))?;
        if t.fail_at_batch.is_some_and(|n| t.batches + 1 >= n) {
            t.failures += 1;
            return Err(Error::internal("the store failed (a test asked it to)"));
        }
        t.batches += 1;
        t.retracted += batch.retracted();
        for (e, d) in &batch.evaluations {
            if *d < 0 {
                t.evaluations.remove(e);
            }
        }
        for (e, d) in &batch.evaluations {
            if *d > 0 {
                t.evaluations.insert(e.clone());
            }
        }
        for (i, d) in &batch.issues {
            if *d < 0 {
                t.issues.remove(i);
            }
        }
        for (i, d) in &batch.issues {
            if *d > 0 {
                t.issues.insert(i.clone());
            }
        }
        for (p, d) in &batch.prices {
            if *d > 0 {
                t.prices.insert((p.stock, p.date), p.clone());
            }
        }
        for (h, d) in &batch.holdings {
            if *d > 0 {
                t.holdings.insert((h.portfolio, h.stock, h.from), h.clone());
            }
        }
        for dl in &batch.dead_letters {
            t.dead_letters.insert(dl.position.clone());
        }
        for p in &batch.offsets {
            let key = (p.position.topic.clone(), p.position.partition);
            t.offsets.insert(key.clone(), p.position.offset);
            match p.last {
                stockflow_core::Last::Unknown => t.marks.remove(&key),
                known => t.marks.insert(key, known),
            };
        }
        Ok(())
    }
}
