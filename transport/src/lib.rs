//! The log interface of stockflow.
//!
//! A log is a set of topics, each split into partitions, each an ordered sequence of records
//! addressed by offset: Kafka, Fluvio and Redpanda all have this shape. Everything above this
//! crate speaks only these terms, through object-safe traits ([`Log`], [`LogSource`],
//! [`LogProducer`]) and a backend-neutral [`Error`]. Backends live beside it: Kafka in
//! `transport/kafka` (crate `stockflow-kafka`), and an in-process [`memory::MemoryLog`] here,
//! for tests of the job's logic without a broker. `docs/backends.md` says how to add one.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub mod memory;
pub mod merge;
pub mod reader;

pub use stockflow_core::{Position, RecordMark};

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

    /// What identifies this record in its partition (`RecordMark`): offset, log timestamp and
    /// the xxh3 hash of its key and payload (each length-prefixed, absent ≠ empty).
    pub fn mark(&self) -> RecordMark {
        RecordMark {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            hash: content_hash(self.key, self.payload),
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

impl Record {
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            topic: &self.position.topic,
            partition: self.position.partition,
            offset: self.position.offset,
            key: self.key.as_deref(),
            payload: self.payload.as_deref(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// xxh3-64 of a record's key and payload, each prefixed by its length (u64::MAX when absent),
/// so that (key "ab", payload "c") and (key "a", payload "bc") differ. Stable across builds and
/// platforms: stored in databases.
pub fn content_hash(key: Option<&[u8]>, payload: Option<&[u8]>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [key, payload] {
        match part {
            Some(bytes) => {
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
            None => h.update(&u64::MAX.to_le_bytes()),
        }
    }
    h.digest()
}

/// What a reader did with a record a source handed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Applied; hand over the next one.
    Next,
    /// Applied; end this batch after it.
    Last,
    /// Not applied: the source keeps it (it is handed over first again, and the partition's
    /// resume offset stays at or below it); end this batch.
    Refuse,
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

/// Reads records from assigned partitions. Records of one partition come in offset order unless
/// `order_by` asks for a merge with a lookahead; either way `resume_offset` says where a reader
/// may resume so that it misses nothing. A position the log no longer has (below its start or
/// beyond its end) is an error of kind `OffsetOutOfRange`, never a silent jump.
/// `reader::MergedSource` implements all of it over a backend's per-partition fetches.
pub trait LogSource: Send {
    /// Hands up to `max` records to `on_record`, waiting up to `wait` for the first one. The
    /// callback says whether it applied the record and whether to go on ([`Take`]). Returns
    /// how many records were applied.
    fn poll_batch(
        &mut self,
        max: usize,
        wait: Duration,
        on_record: &mut dyn FnMut(RecordRef<'_>) -> Take,
    ) -> Result<usize>;

    /// Merge the partitions by this key (smallest first; None first of all) instead of the
    /// records' log time. While a partition has a backlog the source reads it `lookahead` keys
    /// past a record before handing the record over, since one partition's records may be out
    /// of key order too (several producers); the lookahead grows with the disorder it meets
    /// (`merge` explains it all). The job orders by trading day.
    fn order_by(&mut self, key: OrderKey, lookahead: Lookahead);

    /// The order key of the next record this source would hand over, as far as it knows: a
    /// lower bound while a partition with a backlog is not read far enough; None when it has
    /// nothing pending. Lets several sources (the job's workers) read in step.
    fn next_key(&self) -> Option<i64>;

    /// Hand over no record whose order key is after `key` (None: no limit) until told
    /// otherwise.
    fn hold_after(&mut self, key: Option<i64>);

    /// Where a reader of this partition may resume so that it misses nothing: the lowest offset
    /// not handed over (and applied) yet, past records the log holds but never hands over
    /// (transaction markers) once the partition's end is reached. None for a partition this
    /// source does not read.
    fn resume_offset(&self, topic: &str, partition: i32) -> Option<i64>;
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

    /// The first record a reader is handed at or after each position (None when the
    /// partition holds none there now; a position below the log's start reads from the start),
    /// read within `timeout`. What the job's check of its log reads at start (`RecordMark`).
    fn first_records(&self, at: &[Position], timeout: Duration) -> Result<Vec<Option<Record>>> {
        first_records(self, at, timeout)
    }

    /// A producer (idempotent where the backend can: no duplicates on retry).
    fn producer(&self) -> Result<Box<dyn LogProducer>>;
}

/// The last `per_partition` records of every partition of `topic` (fewer where a partition
/// holds fewer), read within `timeout`, ordered by partition and offset: what `stockflow
/// topics tail` prints. A partition counts as read once the source's resume offset reaches the
/// end it had when the call began (records it never hands over, such as Kafka's transaction
/// markers, are passed by the backend).
pub fn read_tail(
    log: &dyn Log,
    topic: &str,
    per_partition: usize,
    timeout: Duration,
) -> Result<Vec<Record>> {
    let n = i64::try_from(per_partition).unwrap_or(i64::MAX);
    let marks: Vec<Watermarks> = log
        .watermarks(topic)?
        .into_iter()
        .filter(|w| !w.is_empty() && n > 0)
        .collect();
    let mut out = Vec::new();
    if marks.is_empty() {
        return Ok(out);
    }
    let start: Vec<Position> = marks
        .iter()
        .map(|w| Position {
            topic: topic.to_string(),
            partition: w.partition,
            offset: w.high.saturating_sub(n).max(w.low),
        })
        .collect();
    let mut source = log.open_source(&start)?;
    let end = |p: i32| {
        marks
            .iter()
            .find(|w| w.partition == p)
            .map_or(0, |w| w.high)
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let missing: Vec<i32> = marks
            .iter()
            .filter(|w| source.resume_offset(topic, w.partition).unwrap_or(0) < w.high)
            .map(|w| w.partition)
            .collect();
        if missing.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("reading the end of {topic}"),
                format!("partitions {missing:?} not read to their end within {timeout:?}"),
            ));
        }
        source.poll_batch(10_000, Duration::from_millis(100), &mut |r| {
            if r.offset < end(r.partition) {
                out.push(r.to_record());
            }
            Take::Next
        })?;
    }
    out.sort_by(|a, b| a.position.cmp(&b.position));
    out.dedup_by(|a, b| a.position == b.position);
    Ok(out)
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
            Take::Next
        })?;
    }
    out.sort_by(|a, b| a.position.cmp(&b.position));
    Ok(out)
}

/// The first record at or after each position, through a source opened there: the default
/// of [`Log::first_records`].
pub fn first_records<L: Log + ?Sized>(
    log: &L,
    at: &[Position],
    timeout: Duration,
) -> Result<Vec<Option<Record>>> {
    let mut out: Vec<Option<Record>> = vec![None; at.len()];
    // Where each position reads from, and the partition's end now (nothing at or past it).
    let mut ranges: std::collections::BTreeMap<String, Vec<Watermarks>> = Default::default();
    let mut wanted: Vec<(usize, Position, i64)> = Vec::new();
    for (i, p) in at.iter().enumerate() {
        if !ranges.contains_key(&p.topic) {
            ranges.insert(p.topic.clone(), log.watermarks(&p.topic)?);
        }
        let w = ranges
            .get(&p.topic)
            .and_then(|marks| marks.iter().find(|w| w.partition == p.partition).copied());
        if let Some(w) = w {
            let from = p.offset.max(w.low);
            if from < w.high {
                let start = Position {
                    offset: from,
                    ..p.clone()
                };
                wanted.push((i, start, w.high));
            }
        }
    }
    if wanted.is_empty() {
        return Ok(out);
    }
    let start: Vec<Position> = wanted.iter().map(|(_, p, _)| p.clone()).collect();
    let mut source = log.open_source(&start)?;
    let deadline = std::time::Instant::now() + timeout;
    while !wanted.is_empty() {
        if std::time::Instant::now() >= deadline {
            let (_, p, end) = &wanted[0];
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "reading {}/{} from offset {}",
                    p.topic, p.partition, p.offset
                ),
                format!(
                    "no record within {timeout:?}, though the partition ends at {end}: the \
                     broker is failing, or an open transaction holds those records back. Check \
                     the broker (`stockflow status`, `compose/stack logs broker`) and start again"
                ),
            ));
        }
        source.poll_batch(1_000, Duration::from_millis(100), &mut |r| {
            if let Some(k) = wanted
                .iter()
                .position(|(_, p, _)| p.topic == r.topic && p.partition == r.partition)
            {
                let (i, _, _) = wanted.swap_remove(k);
                out[i] = Some(r.to_record());
            }
            Take::Next
        })?;
        // A partition read to its end without a record holds none.
        wanted.retain(|(_, p, end)| {
            source
                .resume_offset(&p.topic, p.partition)
                .is_none_or(|r| r < *end)
        });
    }
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
