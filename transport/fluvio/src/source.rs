//! The job's Fluvio source: one consumer stream per assigned partition (Fluvio streams a
//! partition from an absolute offset, pushed by its leader SPU), read through the shared merged
//! reader (`stockflow_transport::reader`), as the Kafka backend's partition queues are.
//!
//! Fluvio reports no partition end on a stream: a lane is at its end when it has handed over
//! everything up to the log end seen when the source opened and nothing more has arrived
//! (Kafka's end is as old as the fetch that saw it, too). Fluvio has no transaction markers:
//! offsets are dense, so the next offset is always the last one read plus one.
//!
//! **Records Fluvio's consumer skips.** An SPU answers a stream with a slice of its log file cut
//! at the fetch size (about 1 MB), often in the middle of a batch. The `fluvio` 0.50.1 client
//! decodes such a cut batch as far as it goes, drops the rest of its records silently, and
//! tells the SPU it has read the whole batch, so the stream goes on after it: a catch-up of
//! 162,240 records lost 1,542 of them (0.95 %) this way. Since offsets are dense, a lane sees it:
//! - a record past the next offset means records were skipped: the lane opens its stream again
//!   at the first missing offset (the record comes again, in order);
//! - a cut batch at the end of what the log holds leaves no later record to show the gap, so a
//!   lane that has had nothing for [`IDLE_CHECK`] asks the SPU for the partition's end, and
//!   opens its stream again if the log holds records it was not handed.
//!
//! Records before the start offset (the head of the first batch) are never handed over.

use crate::errors::code_error;
use crate::{fluvio_partition, map_error, Connection, FluvioLog, REQUEST_TIMEOUT};
use fluvio::consumer::{ConsumerConfigExt, Record as FluvioRecord, RetryMode};
use fluvio::Offset;
use fluvio_protocol::link::ErrorCode;
use futures::future::{select, Either};
use futures::{FutureExt, Stream, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// When the lane last had a record (or opened its stream).
    active_at: Instant,
    /// How many times the stream was opened again after records it skipped.
    reopened: u64,
    /// The most a fetch of this lane's stream brings.
    max_bytes: i32,
    /// Gaps met in a row at the same next offset.
    gaps_here: u32,
    /// The stream failed (its SPU restarted, the connection broke): the next fetch opens it
    /// again, on a new client, where the lane stands. The job polls a failed source again
    /// after a backoff, as librdkafka reconnects by itself.
    broken: bool,
}

/// How long a lane may have had nothing, below the log's end, before it asks the SPU whether
/// the log holds records it skipped.
pub const IDLE_CHECK: Duration = Duration::from_millis(500);

/// The most one fetch brings, at first (the fluvio client's default, about 1 MB).
const FETCH_BYTES: i32 = 1_048_588 + 4096;
/// The most one fetch brings after a batch was cut again at the same offset.
const MAX_FETCH_BYTES: i32 = 64 << 20;

/// What a lane does with a record at `offset` when its next offset is `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next record: hand it over.
    Take,
    /// Before the next offset (the head of the first batch): already handed over or never
    /// asked for.
    Skip,
    /// Past the next offset: the stream skipped records; read again from `next`.
    Gap,
}

pub fn arrival(next: i64, offset: i64) -> Arrival {
    match offset.cmp(&next) {
        std::cmp::Ordering::Equal => Arrival::Take,
        std::cmp::Ordering::Less => Arrival::Skip,
        std::cmp::Ordering::Greater => Arrival::Gap,
    }
}

/// The assigned partitions of one source.
pub struct FluvioLanes {
    lanes: Vec<Lane>,
    /// The cluster (its client and SPU connections stay alive while the streams are read).
    log: FluvioLog,
    /// When the lanes last asked the SPUs for the partitions' ends.
    checked_at: HashMap<String, Instant>,
}

impl FluvioLanes {
    /// Opens `lane`'s stream again at its next offset.
    fn reopen(&mut self, lane: usize, why: &str) -> Result<()> {
        let conn = Arc::clone(self.log.connection());
        let Some(l) = self.lanes.get_mut(lane) else {
            return Ok(());
        };
        l.reopened += 1;
        tracing::debug!(
            topic = l.topic,
            partition = l.partition,
            offset = l.next,
            reopened = l.reopened,
            "{why}: reading the partition again from the first record not handed over"
        );
        l.stream = open_stream(&conn, &l.topic, l.partition, l.next, l.max_bytes)?;
        l.broken = false;
        l.active_at = Instant::now();
        Ok(())
    }

    /// A stream failed: its SPU restarted or the connection broke, and every stream of this
    /// client shares that connection. Each lane opens its stream again at its next fetch, on a
    /// new client, so that the source heals in one poll rather than one failed lane per retry.
    fn broke(&mut self) {
        self.log.connection().forget();
        for l in &mut self.lanes {
            l.broken = true;
        }
    }

    /// A lane idle for [`IDLE_CHECK`]: at most once per [`IDLE_CHECK`] and topic, the ends of its topic's
    /// partitions, and a new stream for every idle lane of the topic below its end.
    fn check_idle(&mut self, lane: usize) -> Result<()> {
        let now = Instant::now();
        let Some(l) = self.lanes.get(lane) else {
            return Ok(());
        };
        if now.duration_since(l.active_at) < IDLE_CHECK
            || self
                .checked_at
                .get(&l.topic)
                .is_some_and(|t| now.duration_since(*t) < IDLE_CHECK)
        {
            return Ok(());
        }
        let topic = l.topic.clone();
        self.checked_at.insert(topic.clone(), now);
        // Best effort: the streams themselves may be fine while the SC is slow or away; a
        // failed check is tried again at the next one.
        let ends = match self.log.watermarks(&topic) {
            Ok(ends) => ends,
            Err(e) => {
                tracing::debug!(topic, "checking the partitions' ends: {e}");
                return Ok(());
            }
        };
        let behind: Vec<usize> = self
            .lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.topic == topic && now.duration_since(l.active_at) >= IDLE_CHECK)
            .filter(|(_, l)| {
                ends.iter()
                    .any(|w| w.partition == l.partition && w.high > l.next)
            })
            .map(|(i, _)| i)
            .collect();
        for i in behind {
            self.reopen(i, "the log holds records the stream did not hand over")?;
        }
        Ok(())
    }
}

impl Drop for FluvioLanes {
    fn drop(&mut self) {
        for l in self.lanes.iter().filter(|l| l.reopened > 0) {
            tracing::debug!(
                topic = l.topic,
                partition = l.partition,
                reopened = l.reopened,
                "streams opened again after Fluvio skipped records"
            );
        }
    }
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
        if self.lanes.get(lane).is_some_and(|l| l.broken) {
            self.reopen(lane, "the stream broke")?;
        }
        let Some(l) = self.lanes.get_mut(lane) else {
            return Ok(Fetched::Nothing);
        };
        match next_within(&mut l.stream, wait) {
            Some(Some(Ok(r))) => match arrival(l.next, r.offset()) {
                Arrival::Take => {
                    l.next = l.next.saturating_add(1);
                    l.gaps_here = 0;
                    l.active_at = Instant::now();
                    Ok(Fetched::Record(r))
                }
                Arrival::Skip => Ok(Fetched::Nothing),
                Arrival::Gap => {
                    // The same gap again: the batch there is larger than a fetch (an SPU takes
                    // batches up to 2 MiB), so it is cut every time; fetch more at once.
                    l.gaps_here += 1;
                    if l.gaps_here > 1 {
                        l.max_bytes = l.max_bytes.saturating_mul(2).min(MAX_FETCH_BYTES);
                    }
                    self.reopen(
                        lane,
                        "Fluvio skipped records (a batch cut by the fetch size)",
                    )?;
                    Ok(Fetched::Nothing)
                }
            },
            Some(Some(Err(code))) => {
                let e = code_error(
                    format!("reading {}/{} at offset {}", l.topic, l.partition, l.next),
                    &code,
                );
                // A broken stream: the next source gets a new client, not the broken SPU
                // connection of this one.
                if e.kind != ErrorKind::OffsetOutOfRange {
                    self.broke();
                }
                Err(e)
            }
            Some(None) => {
                let e = Error::new(
                    ErrorKind::Unreachable,
                    format!("reading {}/{} at offset {}", l.topic, l.partition, l.next),
                    "the SPU ended the stream (it restarted, or the connection broke)",
                );
                self.broke();
                Err(e)
            }
            None => {
                let at_end = l.next >= l.backlog_end;
                let next = l.next;
                self.check_idle(lane)?;
                Ok(if at_end {
                    Fetched::End { next }
                } else {
                    Fetched::Nothing
                })
            }
        }
    }
}

/// Checks `start` against each partition's range: a position the log no longer has (below its
/// start) or never had (past its end) is `OffsetOutOfRange`, never a silent jump.
pub(crate) fn check_positions(
    start: &[Position],
    ranges: &BTreeMap<String, Vec<Watermarks>>,
) -> Result<Vec<i64>> {
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
                    format!(
                        "reading {}/{} from offset {}",
                        p.topic, p.partition, p.offset
                    ),
                    format!("the partition holds offsets {}..{} now", w.low, w.high),
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
    let lanes = open_lanes(log, start, &ends)?;
    let next: Vec<i64> = start.iter().map(|p| p.offset).collect();
    Ok(MergedSource::new(lanes, &next))
}

fn open_lanes(log: &FluvioLog, start: &[Position], ends: &[i64]) -> Result<FluvioLanes> {
    let conn = Arc::clone(log.connection());
    let mut lanes = Vec::with_capacity(start.len());
    for (p, &end) in start.iter().zip(ends) {
        let stream = open_stream(&conn, &p.topic, p.partition, p.offset, FETCH_BYTES)?;
        lanes.push(Lane {
            topic: p.topic.clone(),
            partition: p.partition,
            backlog_end: end,
            next: p.offset,
            stream,
            active_at: Instant::now(),
            reopened: 0,
            broken: false,
            max_bytes: FETCH_BYTES,
            gaps_here: 0,
        });
    }
    Ok(FluvioLanes {
        lanes,
        log: log.clone(),
        checked_at: HashMap::new(),
    })
}

/// A stream of one partition from an absolute offset, of committed records only, fetching up to
/// `max_bytes` at once. Fluvio's own retries are off: an error reaches the lane, which opens
/// the stream again at its next fetch.
fn open_stream(
    conn: &Connection,
    topic: &str,
    partition: i32,
    offset: i64,
    max_bytes: i32,
) -> Result<RecordStream> {
    let context = format!("reading {topic}/{partition} from offset {offset}");
    let fp = fluvio_partition(topic, partition)?;
    let start = Offset::absolute(offset)
        .map_err(|e| Error::new(ErrorKind::OffsetOutOfRange, context.clone(), e.to_string()))?;
    let config = ConsumerConfigExt::builder()
        .topic(crate::fluvio_topic(topic)?)
        .partition(fp)
        .offset_start(start)
        .isolation(fluvio::Isolation::ReadCommitted)
        .max_bytes(max_bytes)
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
/// its start (Fluvio keeps no time index), through a lane (so no record is skipped).
pub(crate) fn scan_for_time(
    log: &FluvioLog,
    topic: &str,
    w: Watermarks,
    ms: i64,
) -> Result<Option<i64>> {
    if w.is_empty() {
        return Ok(None);
    }
    let at = Position {
        topic: topic.to_string(),
        partition: w.partition,
        offset: w.low,
    };
    let mut lanes = open_lanes(log, &[at], &[w.high])?;
    let started = Instant::now();
    let mut waited_since = Instant::now();
    loop {
        match lanes.fetch(0, Duration::from_millis(100))? {
            Fetched::Record(r) => {
                waited_since = Instant::now();
                if r.timestamp() >= ms {
                    tracing::debug!(topic, partition = w.partition, offset = r.offset(), elapsed = ?started.elapsed(), "found the offset for a time by a scan");
                    return Ok(Some(r.offset()));
                }
                if r.offset().saturating_add(1) >= w.high {
                    return Ok(None);
                }
            }
            Fetched::End { .. } => return Ok(None),
            Fetched::Nothing if waited_since.elapsed() > REQUEST_TIMEOUT => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("looking up {topic}/{} by time", w.partition),
                    format!("no record for {REQUEST_TIMEOUT:?} before the partition's end"),
                ))
            }
            Fetched::Nothing => {}
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
    fn records_are_handed_over_dense_or_read_again() {
        assert_eq!(arrival(5, 5), Arrival::Take);
        assert_eq!(arrival(5, 4), Arrival::Skip);
        assert_eq!(arrival(5, 0), Arrival::Skip);
        assert_eq!(arrival(5, 6), Arrival::Gap);
        assert_eq!(arrival(0, 1000), Arrival::Gap);
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
            let e =
                check_positions(std::slice::from_ref(&bad), &ranges).expect_err("outside the log");
            assert_eq!(e.kind, ErrorKind::OffsetOutOfRange, "{bad:?}");
        }
        let e = check_positions(&[at(2, 0)], &ranges).expect_err("no such partition");
        assert_eq!(e.kind, ErrorKind::UnknownPartition);
    }
}
