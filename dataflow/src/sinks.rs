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

/// Counts and drops everything (benchmarks).
#[derive(Debug, Default)]
pub struct NullSink;

impl Sink for NullSink {
    fn apply(&mut self, _batch: &Batch) -> Result<()> {
        Ok(())
    }
}
