//! Publishes recorded prices from a JSON Lines file (one tick a line).

use crate::{Error, Result};
use futures::stream::{self, StreamExt};
use std::io::BufRead;
use std::time::Duration;
use stockflow_market::TickDecoder;
use stockflow_transport::LogSink;

/// A line that was not published, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    pub published: usize,
    pub blank: usize,
    pub bad: Vec<BadLine>,
}

/// Validates every line and publishes the good ones in their canonical form, keyed by
/// ticker. Bad lines are returned with their number and reason; they never stop the rest.
pub async fn publish_lines<R: BufRead, S: LogSink>(
    reader: R,
    source_name: &str,
    decoder: &TickDecoder,
    sink: &S,
    topic: &str,
) -> Result<PublishReport> {
    let mut report = PublishReport::default();
    let mut good = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| Error::Io {
            path: source_name.to_string(),
            source,
        })?;
        if line.trim().is_empty() {
            report.blank += 1;
            continue;
        }
        match decoder.decode(line.as_bytes()) {
            Ok(t) => good.push(t),
            Err(e) => report.bad.push(BadLine {
                line: i + 1,
                reason: e.to_string(),
            }),
        }
    }
    let results: Vec<_> = stream::iter(good.iter())
        .map(|t| {
            let payload = t.to_json();
            async move { sink.send(topic, t.ticker.as_bytes(), &payload).await }
        })
        .buffered(4096)
        .collect()
        .await;
    for r in results {
        r?;
        report.published += 1;
    }
    sink.flush(Duration::from_secs(60))?;
    Ok(report)
}
