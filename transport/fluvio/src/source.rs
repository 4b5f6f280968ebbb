//! The job's Fluvio source: one consumer stream per assigned partition (Fluvio streams a
//! partition from an absolute offset, pushed by its leader SPU), read through the shared merged
//! reader (`stockflow_transport::reader`), as the Kafka backend's partition queues are.
//!
//! Fluvio reports no partition end on a stream: a lane is at its end when it has handed over
//! everything up to the log end seen when the source opened and nothing more has arrived
//! (Kafka's end is as old as the fetch that saw it, too). Fluvio has no transaction markers:
//! offsets are dense, so the next offset is always the last one read plus one.

use crate::errors::code_error;
use crate::{block_on, fluvio_partition, map_error, Connection, FluvioLog, REQUEST_TIMEOUT};
use fluvio::consumer::{ConsumerConfigExt, Record as FluvioRecord, RetryMode};
use fluvio::Offset;
use fluvio_protocol::link::ErrorCode;
use futures::future::{select, Either};
use futures::{FutureExt, Stream, StreamExt};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use stockflow_transport::reader::{Fetched, Lanes, MergedSource};
use stockflow_transport::{Error, ErrorKind, Log, Position, RecordRef, Result, Watermarks};

type RecordStream = Pin<Box<dyn Stream<Item = Result<FluvioRecord, ErrorCode>> + Send>>;

/// One assigned partition.
struct Lane {
    topic: String,
    partition: i32,
    /// The log end when the source was opened: below it the partition has a backlog.
    backlog_end: i64,
    /// The offset of the next record this lane will be handed.
    next: i64,
    stream: RecordStream,
}

/// The assigned partitions of one source.
pub struct FluvioLanes {
    lanes: Vec<Lane>,
    /// Keeps the client (and its SPU connections) alive while the streams are read.
    _conn: Arc<Connection>,
}

/// The job's Fluvio source.
pub type FluvioSource = MergedSource<FluvioLanes>;

/// The next item of a stream within `wait`: None when nothing came.
fn next_within(
    stream: &mut RecordStream,
    wait: Duration,
) -> Option<Option<Result<FluvioRecord, ErrorCode>>> {
    if wait.is_zero() {
        return stream.next().now_or_never();
    }
    futures::executor::block_on(async {
        let timer = std::pin::pin!(fluvio_future::timer::sleep(wait));
        match select(stream.next(), timer).await {
            Either::Left((item, _)) => Some(item),
            Either::Right(((), _)) => None,
        }
    })
}

impl Lanes for FluvioLanes {
    type Msg = FluvioRecord;

    fn count(&self) -> usize {
        self.lanes.len()
    }

    fn name(&self, lane: usize) -> (&str, i32) {
        self.lanes
            .get(lane)
            .map_or(("", -1), |l| (l.topic.as_str(), l.partition))
    }

    fn backlog_end(&self, lane: usize) -> i64 {
        self.lanes.get(lane).map_or(0, |l| l.backlog_end)
    }

    fn view<'a>(&'a self, lane: usize, m: &'a FluvioRecord) -> RecordRef<'a> {
        let (topic, partition) = self.name(lane);
        let ts = m.timestamp();
        RecordRef {
            topic,
            partition,
            offset: m.offset(),
            key: m.key(),
            payload: Some(m.value()),
            timestamp_ms: (ts > 0).then_some(ts),
        }
    }

    fn fetch(&mut self, lane: usize, wait: Duration) -> Result<Fetched<FluvioRecord>> {
        let Some(l) = self.lanes.get_mut(lane) else {
            return Ok(Fetched::Nothing);
        };
        match next_within(&mut l.stream, wait) {
            Some(Some(Ok(r))) => {
                l.next = r.offset().saturating_add(1).max(l.next);
                Ok(Fetched::Record(r))
            }
            Some(Some(Err(code))) => Err(code_error(
                format!("reading {}/{} at offset {}", l.topic, l.partition, l.next),
                &code,
            )),
            Some(None) => Err(Error::new(
                ErrorKind::Unreachable,
                format!("reading {}/{} at offset {}", l.topic, l.partition, l.next),
                "the SPU ended the stream (it restarted, or the connection broke)",
            )),
            None if l.next >= l.backlog_end => Ok(Fetched::End { next: l.next }),
            None => Ok(Fetched::Nothing),
        }
    }
}

/// Checks `start` against each partition's range: a position the log no longer has (below its
/// start) or never had (past its end) is `OffsetOutOfRange`, never a silent jump.
pub(crate) fn check_positions(start: &[Position], ranges: &BTreeMap<String, Vec<Watermarks>>) -> Result<Vec<i64>> {
    start
        .iter()
        .map(|p| {
            let w = ranges
                .get(&p.topic)
                .and_then(|ws| ws.iter().find(|w| w.partition == p.partition))
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::UnknownPartition,
                        format!("{}/{}", p.topic, p.partition),
                        "the topic has no such partition",
                    )
                })?;
            if p.offset < w.low || p.offset > w.high {
                return Err(Error::new(
                    ErrorKind::OffsetOutOfRange,
                    format!("reading {}/{} from offset {}", p.topic, p.partition, p.offset),
                    format!(
                        "the partition holds offsets {}..{} now",
                        w.low, w.high
                    ),
                ));
            }
            Ok(w.high)
        })
        .collect()
}

/// A source reading each given partition from the given offset.
pub(crate) fn open(log: &FluvioLog, start: &[Position]) -> Result<FluvioSource> {
    let mut ranges: BTreeMap<String, Vec<Watermarks>> = BTreeMap::new();
    for p in start {
        if !ranges.contains_key(&p.topic) {
            ranges.insert(p.topic.clone(), log.watermarks(&p.topic)?);
        }
    }
    let ends = check_positions(start, &ranges)?;
    let conn = Arc::clone(log.connection());
    let mut lanes = Vec::with_capacity(start.len());
    for (p, end) in start.iter().zip(ends) {
        let stream = open_stream(&conn, &p.topic, p.partition, p.offset)?;
        lanes.push(Lane {
            topic: p.topic.clone(),
            partition: p.partition,
            backlog_end: end,
            next: p.offset,
            stream,
        });
    }
    let next: Vec<i64> = start.iter().map(|p| p.offset).collect();
    Ok(MergedSource::new(FluvioLanes { lanes, _conn: conn }, &next))
}

/// A stream of one partition from an absolute offset. Fluvio's own retries are off: an error
/// reaches the reader, and the job reopens its sources where it may resume.
fn open_stream(conn: &Connection, topic: &str, partition: i32, offset: i64) -> Result<RecordStream> {
    let context = format!("reading {topic}/{partition} from offset {offset}");
    let fp = fluvio_partition(topic, partition)?;
    let start = Offset::absolute(offset).map_err(|e| {
        Error::new(ErrorKind::OffsetOutOfRange, context.clone(), e.to_string())
    })?;
    let config = ConsumerConfigExt::builder()
        .topic(topic.to_string())
        .partition(fp)
        .offset_start(start)
        .retry_mode(RetryMode::Disabled)
        .build()
        .map_err(|e| map_error(context.clone(), &e))?;
    let what = context.clone();
    conn.with(&what, REQUEST_TIMEOUT, |c| async move {
        let stream = c
            .fluvio
            .consumer_with_config(config)
            .await
            .map_err(|e| map_error(context.clone(), &e))?;
        Ok(Box::pin(stream) as RecordStream)
    })
}

/// The first offset of a record stamped at or after `ms` in partition `w`, by reading it from
/// its start (Fluvio keeps no time index).
pub(crate) fn scan_for_time(
    conn: &Arc<Connection>,
    topic: &str,
    w: Watermarks,
    ms: i64,
) -> Result<Option<i64>> {
    if w.is_empty() {
        return Ok(None);
    }
    let mut stream = open_stream(conn, topic, w.partition, w.low)?;
    let context = format!("looking up {topic}/{} by time", w.partition);
    let started = std::time::Instant::now();
    let mut read = 0u64;
    loop {
        let item = block_on(&context, REQUEST_TIMEOUT, async {
            Ok(stream.next().await)
        })?;
        match item {
            Some(Ok(r)) => {
                read += 1;
                if r.timestamp() >= ms {
                    tracing::debug!(topic, partition = w.partition, read, elapsed = ?started.elapsed(), "found the offset for a time by a scan");
                    return Ok(Some(r.offset()));
                }
                if r.offset().saturating_add(1) >= w.high {
                    return Ok(None);
                }
            }
            Some(Err(code)) => return Err(code_error(context, &code)),
            None => {
                return Err(Error::new(
                    ErrorKind::Unreachable,
                    context,
                    "the SPU ended the stream",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: i64) -> Position {
        Position {
            topic: "t".into(),
            partition,
            offset,
        }
    }

    #[test]
    fn positions_outside_the_log_are_refused() {
        let mut ranges = BTreeMap::new();
        ranges.insert(
            "t".to_string(),
            vec![
                Watermarks {
                    partition: 0,
                    low: 10,
                    high: 20,
                },
                Watermarks {
                    partition: 1,
                    low: 0,
                    high: 0,
                },
            ],
        );
        let ends = check_positions(&[at(0, 10), at(0, 20), at(1, 0)], &ranges)
            .expect("positions within the log");
        assert_eq!(ends, vec![20, 20, 0]);
        for bad in [at(0, 9), at(0, 21), at(1, 1)] {
            let e = check_positions(&[bad.clone()], &ranges).expect_err("outside the log");
            assert_eq!(e.kind, ErrorKind::OffsetOutOfRange, "{bad:?}");
        }
        let e = check_positions(&[at(2, 0)], &ranges).expect_err("no such partition");
        assert_eq!(e.kind, ErrorKind::UnknownPartition);
    }
}
