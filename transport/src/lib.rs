//! The log interface of stockflow.
//!
//! A log is a set of topics, each split into partitions, each an ordered sequence of records
//! addressed by offset: Kafka, Fluvio and Redpanda all have this shape. Everything above this
//! crate speaks only these terms, through object-safe traits ([`Log`], [`LogSource`],
//! [`LogProducer`]) and a backend-neutral [`Error`]. Backends live beside it: Kafka in
//! `transport/kafka` (crate `stockflow-kafka`), and an in-process [`memory::MemoryLog`] here,
//! for tests of the job's logic without a broker. `docs/backends.md` says how to add one.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::time::Duration;

pub mod memory;
pub mod merge;

pub use stockflow_core::Position;

/// One record read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub position: Position,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The record's timestamp in milliseconds since the Unix epoch, if it has one.
    pub timestamp_ms: Option<i64>,
}

/// A record lent by a source for the time of a callback (no copy of key or payload).
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub timestamp_ms: Option<i64>,
}

impl RecordRef<'_> {
    pub fn position(&self) -> Position {
        Position {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    pub fn to_record(&self) -> Record {
        Record {
            position: self.position(),
            key: self.key.map(<[u8]>::to_vec),
            payload: self.payload.map(<[u8]>::to_vec),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// The range of offsets a partition holds: `low..high` (high is the next offset to be written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

impl Watermarks {
    pub fn len(&self) -> i64 {
        (self.high - self.low).max(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a topic keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Records are never deleted for their age or the topic's size.
    Infinite,
    /// The broker's default (Apache Kafka: 7 days).
    BrokerDefault,
    /// At most this many milliseconds.
    Ms(i64),
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub retention: Retention,
}

impl TopicSpec {
    /// A topic of the pipeline: its records are the job's input history, kept forever.
    pub fn kept(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            retention: Retention::Infinite,
        }
    }
}

/// What `ensure_topic` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicState {
    Created,
    Existed,
}

/// A topic's retention as the log reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRetention {
    /// `retention.ms`: None when the topic does not set it (the broker's default); -1 is
    /// infinite.
    pub ms: Option<i64>,
    /// `retention.bytes`: None when the log does not say; -1 is infinite.
    pub bytes: Option<i64>,
}

impl TopicRetention {
    pub fn describe(&self) -> String {
        let one = |v: Option<i64>, unit: &str| match v {
            None => "broker default".to_string(),
            Some(-1) => "infinite".to_string(),
            Some(n) => format!("{n} {unit}"),
        };
        format!(
            "time {}, size {}",
            one(self.ms, "ms"),
            one(self.bytes, "bytes")
        )
    }
}

/// A boxed future of a producer's acknowledgement.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Position>> + Send + 'a>>;

/// Reads records from assigned partitions, each in offset order unless `order_by` asks for a
/// merge with a lookahead (then `resume_offset` says where to resume). A position the log no longer
/// has (below the log start or beyond the end) is an error of kind `OffsetOutOfRange`, never a
/// silent jump.
pub trait LogSource: Send {
    /// Hands up to `max` records to `on_record`, waiting up to `wait` for the first one; the
    /// callback returns `Break` to end the batch after the current record. Returns how many
    /// records were handed over.
    fn poll_batch(
        &mut self,
        max: usize,
        wait: Duration,
        on_record: &mut dyn FnMut(RecordRef<'_>) -> ControlFlow<()>,
    ) -> Result<usize>;

    /// Merge the partitions by this key (smallest first; None first of all) instead of the
    /// records' log time. While a partition has a backlog the source reads it `lookahead` keys
    /// past a record before handing the record over, since one partition's records may be out
    /// of key order too (several producers); the lookahead grows with the disorder it meets
    /// (`merge` explains it all). The job orders by trading day. Sources that cannot look
    /// ahead ignore it.
    fn order_by(&mut self, _key: OrderKey, _lookahead: Lookahead) {}

    /// The order key of the next record this source would hand over, as far as it knows: a
    /// lower bound while a partition with a backlog is not read far enough; None when it has
    /// nothing pending. Lets several sources (the job's workers) read in step.
    fn next_key(&self) -> Option<i64> {
        None
    }

    /// Hand over no record whose order key is after `key` (None: no limit) until told
    /// otherwise.
    fn hold_after(&mut self, _key: Option<i64>) {}

    /// Where a reader of this partition may resume so that it misses nothing: the lowest offset
    /// not handed over yet. A source that hands records over out of offset order (a merge
    /// with a lookahead) can be ahead of it; None means the offset after the last record handed
    /// over (sources that keep offset order).
    fn resume_offset(&self, _topic: &str, _partition: i32) -> Option<i64> {
        None
    }
}

/// How far past a record a source reads a partition before handing the record over, in order
/// key units: `initial`, growing up to `max` as the partitions show more disorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookahead {
    pub initial: i64,
    pub max: i64,
}

/// The order in which a source merges its partitions (see `LogSource::order_by`).
pub type OrderKey = Box<dyn FnMut(&RecordRef<'_>) -> Option<i64> + Send>;

/// Writes records. Sends are pipelined: many may be in flight; each resolves when the log has
/// durably acknowledged its record.
pub trait LogProducer: Send + Sync {
    fn send<'a>(&'a self, topic: &'a str, key: &'a [u8], payload: &'a [u8]) -> SendFuture<'a>;

    /// Waits until every record sent so far is acknowledged.
    fn flush(&self, timeout: Duration) -> Result<()>;
}

/// A log service: topics, their extent, sources and producers.
pub trait Log: Send + Sync {
    /// The backend and where it is, for messages ("kafka at 127.0.0.1:9092").
    fn describe(&self) -> String;

    /// Waits until the service answers, up to `timeout`.
    fn wait_ready(&self, timeout: Duration) -> Result<()>;

    /// The partition ids of `topic`, sorted; `UnknownTopic` if it does not exist.
    fn partitions(&self, topic: &str) -> Result<Vec<i32>>;

    /// The offsets each partition of `topic` holds, sorted by partition.
    fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>>;

    /// The first offset of a record with a timestamp at or after `ms`, None if there is none.
    fn offset_for_time(&self, topic: &str, partition: i32, ms: i64) -> Result<Option<i64>>;

    /// Creates the topic unless it exists (then nothing changes).
    fn ensure_topic(&self, spec: &TopicSpec) -> Result<TopicState>;

    /// The topic's retention as configured.
    fn retention(&self, topic: &str) -> Result<TopicRetention>;

    /// A source reading each given partition from the given offset.
    fn open_source(&self, start: &[Position]) -> Result<Box<dyn LogSource>>;

    /// A producer (idempotent where the backend can: no duplicates on retry).
    fn producer(&self) -> Result<Box<dyn LogProducer>>;
}

/// Reads every record of `topic` that exists now (up to the end seen at the start), sorted by
/// position. For tests, summaries and batch tools.
pub fn read_to_end(log: &dyn Log, topic: &str, timeout: Duration) -> Result<Vec<Record>> {
    let marks = log.watermarks(topic)?;
    let start: Vec<Position> = marks
        .iter()
        .filter(|w| !w.is_empty())
        .map(|w| Position {
            topic: topic.to_string(),
            partition: w.partition,
            offset: w.low,
        })
        .collect();
    let mut remaining: i64 = marks.iter().map(Watermarks::len).sum();
    let mut out = Vec::with_capacity(usize::try_from(remaining).unwrap_or(0));
    if start.is_empty() {
        return Ok(out);
    }
    let mut source = log.open_source(&start)?;
    let deadline = std::time::Instant::now() + timeout;
    while remaining > 0 {
        if std::time::Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("reading {topic}"),
                format!("{remaining} records still missing after {timeout:?}"),
            ));
        }
        source.poll_batch(10_000, Duration::from_millis(200), &mut |r| {
            let end = marks
                .iter()
                .find(|w| w.partition == r.partition)
                .map_or(0, |w| w.high);
            if r.offset < end {
                remaining -= 1;
                out.push(r.to_record());
            }
            ControlFlow::Continue(())
        })?;
    }
    out.sort_by(|a, b| a.position.cmp(&b.position));
    Ok(out)
}

/// What went wrong, in terms every backend can map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The service cannot be reached or is failing now: retry with backoff.
    Unreachable,
    /// No answer in time: retry.
    Timeout,
    UnknownTopic,
    UnknownPartition,
    /// The position asked for is not in the log (below its start or beyond its end).
    OffsetOutOfRange,
    /// Bad configuration or arguments.
    Config,
    /// The service refused for good (authentication, authorisation, a fatal producer state).
    Refused,
    /// Anything else the backend reported; treated as transient.
    Other,
}

#[derive(Debug, thiserror::Error)]
#[error("{context}: {detail}")]
pub struct Error {
    pub kind: ErrorKind,
    pub context: String,
    pub detail: String,
}

impl Error {
    pub fn new(kind: ErrorKind, context: impl Into<String>, detail: impl Into<String>) -> Self {
        Error {
            kind,
            context: context.into(),
            detail: detail.into(),
        }
    }

    pub fn fault(&self) -> stockflow_core::Fault {
        use stockflow_core::Fault;
        match self.kind {
            ErrorKind::Config | ErrorKind::UnknownPartition => Fault::User,
            ErrorKind::UnknownTopic
            | ErrorKind::OffsetOutOfRange
            | ErrorKind::Refused
            | ErrorKind::Unreachable
            | ErrorKind::Timeout
            | ErrorKind::Other => Fault::External,
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::Other
        )
    }
}

impl From<Error> for stockflow_core::Error {
    fn from(e: Error) -> Self {
        let (fault, retryable) = (e.fault(), e.is_retryable());
        stockflow_core::Error::new(fault, retryable, e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
