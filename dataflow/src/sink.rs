//! Where evaluation diffs go: a small sink interface, and the JSON Lines sink.

use crate::runtime::Batch;
use crate::types::Evaluation;
use crate::{Error, Result};
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use stockflow_market::Universe;

/// Receives the job's output one completed timestamp at a time, consolidated: a row retracted
/// and inserted again in the same timestamp does not appear. A batch also carries the records
/// the sources rejected and how far they had read, so a transactional sink can store all three
/// atomically.
pub trait DiffSink {
    fn apply(&mut self, batch: &Batch) -> Result<()>;

    /// Called once when the job stops cleanly.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

#[derive(Serialize)]
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

/// Writes one JSON object per diff and line.
pub struct JsonLinesSink<W: Write> {
    out: W,
    universe: Arc<Universe>,
}

impl<W: Write> JsonLinesSink<W> {
    pub fn new(out: W, universe: Arc<Universe>) -> Self {
        JsonLinesSink { out, universe }
    }
}

impl<W: Write> DiffSink for JsonLinesSink<W> {
    fn apply(&mut self, batch: &Batch) -> Result<()> {
        let time = batch.time;
        for (e, diff) in &batch.diffs {
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
            serde_json::to_writer(&mut self.out, &line).map_err(|e| Error::Sink(e.to_string()))?;
            self.out
                .write_all(b"\n")
                .map_err(|e| Error::Sink(e.to_string()))?;
        }
        self.out.flush().map_err(|e| Error::Sink(e.to_string()))
    }
}

/// Keeps the current state (the sum of all diffs): for tests and summaries.
#[derive(Debug, Default)]
pub struct CollectSink {
    pub state: std::collections::BTreeMap<Evaluation, isize>,
    pub timestamps: usize,
    pub inserted: usize,
    pub retracted: usize,
}

impl DiffSink for CollectSink {
    fn apply(&mut self, batch: &Batch) -> Result<()> {
        self.timestamps += 1;
        for (e, d) in &batch.diffs {
            if *d > 0 {
                self.inserted += *d as usize;
            } else {
                self.retracted += d.unsigned_abs();
            }
            let entry = self.state.entry(e.clone()).or_insert(0);
            *entry += d;
            if *entry == 0 {
                self.state.remove(e);
            }
        }
        Ok(())
    }
}
