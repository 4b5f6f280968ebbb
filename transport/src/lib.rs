//! The log transport: where stockflow reads and writes its streams.
//!
//! A log is a set of topics, each split into partitions, each an ordered sequence of records
//! addressed by offset. Everything above this crate speaks only these terms, so that a second
//! backend (Fluvio: topics, partitions and offsets too) can sit beside Kafka later. Kafka,
//! through `rdkafka`, is the first backend (`kafka` module).

use std::future::Future;
use std::time::Duration;

pub mod kafka;

/// Where a record sits in the log.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

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
}

/// Where a source starts reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    Offset(i64),
    /// The first record with a timestamp at or after this (ms since the Unix epoch).
    Time(i64),
}

/// A partition a source reads: from `start` (resolved to an offset), and the end it had when
/// the source opened (the high watermark then), for replays that stop once caught up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlan {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end_at_open: i64,
}

/// Reads records from assigned partitions, each in offset order.
pub trait LogSource {
    /// Hands up to `max` records to `on_record`, waiting up to `wait` for the first one.
    /// Returns how many records were handed over.
    fn poll_batch(
        &mut self,
        max: usize,
        wait: std::time::Duration,
        on_record: &mut dyn FnMut(RecordRef<'_>),
    ) -> Result<usize>;
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

/// Writes records to the log. Sends are pipelined: many `send` futures may be in flight at
/// once; each resolves when the log has durably acknowledged its record.
pub trait LogSink: Send + Sync {
    fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> impl Future<Output = Result<Position>> + Send;

    /// Waits until every record sent so far is acknowledged.
    fn flush(&self, timeout: Duration) -> Result<()>;
}

/// Administers topics and reads their extent.
pub trait LogAdmin: Send + Sync {
    /// Creates the topic with `partitions` partitions unless it exists (then nothing changes).
    fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
    ) -> impl Future<Output = Result<TopicState>> + Send;

    /// The offsets each partition of `topic` holds.
    fn watermarks(&self, topic: &str, timeout: Duration) -> Result<Vec<Watermarks>>;
}

/// What `ensure_topic` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicState {
    Created,
    Existed,
}

/// Whose fault an error is, so that callers know whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller asked for something that cannot work (bad config, bad topic name).
    User,
    /// The log service failed or is unreachable; retrying later may succeed.
    External,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad transport configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("timed out after {0:?} waiting for the broker")]
    Timeout(Duration),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("{topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
}

impl Error {
    pub fn fault(&self) -> Fault {
        match self {
            Error::Config(_) | Error::UnknownPartition { .. } => Fault::User,
            Error::Kafka { .. } | Error::Timeout(_) | Error::UnknownTopic(_) => Fault::External,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.fault() == Fault::External
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
