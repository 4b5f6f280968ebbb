//! Publishes recorded prices from a JSON Lines file (one tick a line).

use crate::{Error, Result};
use futures::stream::{self, StreamExt};
use std::io::BufRead;
use std::time::Duration;
use stockflow_market::TickDecoder;
use stockflow_transport::LogProducer;

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
/// ticker. Bad lines (not UTF-8, not a valid tick) are returned with their number and reason;
/// they never stop the rest.
pub async fn publish_lines<R: BufRead, S: LogProducer + ?Sized>(
    mut reader: R,
    source_name: &str,
    decoder: &mut TickDecoder,
    sink: &S,
    topic: &str,
) -> Result<PublishReport> {
    let mut report = PublishReport::default();
    let mut good = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut i = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| Error::Io {
                path: source_name.to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
        i += 1;
        let line: &[u8] = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            report.blank += 1;
            continue;
        }
        match decoder.decode(line) {
            Ok(t) => good.push(t),
            Err(e) => report.bad.push(BadLine {
                line: i,
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
