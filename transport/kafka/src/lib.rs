//! The Kafka backend of the log interface: librdkafka through `rdkafka`. Any Kafka-protocol
//! broker works (Apache Kafka, tansu, Redpanda). Errors are mapped to the interface's kinds
//! here, so nothing above this crate sees an rdkafka type.

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod source;
pub use source::{KafkaRecord, KafkaSource, LOCAL_RECORDS};
use stockflow_transport::{
    Error, ErrorKind, Log, LogProducer, LogSource, Position, Result, Retention, SendFuture,
    TopicRetention, TopicSpec, TopicState, Watermarks,
};

/// How long a metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the brokers.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub brokers: String,
    /// Extra librdkafka properties (`key=value`), applied last.
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            properties: Vec::new(),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("socket.keepalive.enable", "true")
            .set("log_level", "3");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// Maps an rdkafka error to the interface's kinds.
pub fn map_error(context: impl Into<String>, e: &KafkaError) -> Error {
    use RDKafkaErrorCode as C;
    let kind = match e.rdkafka_error_code() {
        Some(C::OffsetOutOfRange | C::AutoOffsetReset) => ErrorKind::OffsetOutOfRange,
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownTopicId) => {
            ErrorKind::UnknownTopic
        }
        Some(C::UnknownPartition) => ErrorKind::UnknownPartition,
        Some(
            C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::NetworkException
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::BrokerNotAvailable
            | C::PreferredLeaderNotAvailable,
        ) => ErrorKind::Unreachable,
        Some(C::RequestTimedOut | C::OperationTimedOut | C::TimedOutQueue) => ErrorKind::Timeout,
        Some(
            C::Authentication
            | C::SaslAuthenticationFailed
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::Fatal
            | C::MessageSizeTooLarge
            | C::PolicyViolation,
        ) => ErrorKind::Refused,
        Some(C::InvalidConfig) => ErrorKind::Config,
        _ => match e {
            KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => ErrorKind::Config,
            KafkaError::MessageConsumptionFatal(_) => ErrorKind::Refused,
            _ => ErrorKind::Other,
        },
    };
    Error::new(kind, context, e.to_string())
}

fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let context = context.into();
    move |e| map_error(context, &e)
}

/// A Kafka cluster as a [`Log`].
pub struct KafkaLog {
    config: KafkaConfig,
    admin: AdminClient<DefaultClientContext>,
    metadata: BaseConsumer,
}

impl KafkaLog {
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let admin = config
            .client_config()
            .create()
            .map_err(kafka("creating the Kafka admin client"))?;
        let metadata = config
            .client_config()
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka("creating the Kafka metadata client"))?;
        Ok(KafkaLog {
            config: config.clone(),
            admin,
            metadata,
        })
    }

    /// Sets infinite retention on an existing topic that does not have it (a topic created
    /// before stockflow set retention on purpose); a broker that refuses gets a warning.
    fn keep_forever(&self, topic: &str) {
        let current = self.retention(topic);
        if matches!(&current, Ok(r) if r.ms == Some(-1) && r.bytes.is_none_or(|b| b == -1)) {
            return;
        }
        let alter = AlterConfig::new(ResourceSpecifier::Topic(topic))
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1");
        let opts = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
        match futures::executor::block_on(self.admin.alter_configs([&alter], &opts)) {
            Ok(results) if results.iter().all(Result::is_ok) => {
                tracing::info!(topic, "set infinite retention on the existing topic");
            }
            Ok(results) => {
                tracing::warn!(
                topic,
                "the broker refused to set infinite retention ({:?}); check the topic's retention",
                results.into_iter().filter_map(Result::err).collect::<Vec<_>>()
            )
            }
            Err(e) => tracing::warn!(topic, "could not set infinite retention: {e}"),
        }
    }

    fn topic_partitions(&self, topic: &str) -> Result<Vec<i32>> {
        let md = self
            .metadata
            .fetch_metadata(Some(topic), Timeout::After(REQUEST_TIMEOUT))
            .map_err(kafka(format!("reading metadata of {topic}")))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| {
                Error::new(ErrorKind::UnknownTopic, topic, "the topic does not exist")
            })?;
        let mut p: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        p.sort_unstable();
        Ok(p)
    }

    /// The first (`Offset::Beginning`) or next (`Offset::End`) offset of every partition
    /// given, in one ListOffsets request per broker (librdkafka's watermark query asks two
    /// requests per partition, one after the other: 0.6 s of the job's start on 8 partitions).
    fn list_offsets(&self, parts: &[(&str, i32)], at: Offset) -> Result<Vec<i64>> {
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = TopicPartitionList::new();
        for (topic, p) in parts {
            q.add_partition_offset(topic, *p, at)
                .map_err(kafka("building an offsets query"))?;
        }
        let found = self
            .metadata
            .offsets_for_times(q, Timeout::After(REQUEST_TIMEOUT))
            .map_err(kafka("reading the partitions' offsets"))?;
        parts
            .iter()
            .map(|(topic, p)| {
                let e = found.find_partition(topic, *p).ok_or_else(|| {
                    Error::new(
                        ErrorKind::UnknownPartition,
                        format!("{topic}/{p}"),
                        "the broker did not answer for this partition",
                    )
                })?;
                if let Err(err) = e.error() {
                    return Err(map_error(
                        format!("reading the offsets of {topic}/{p}"),
                        &err,
                    ));
                }
                match e.offset() {
                    Offset::Offset(o) if o >= 0 => Ok(o),
                    other => Err(Error::new(
                        ErrorKind::Other,
                        format!("{topic}/{p}"),
                        format!("the broker answered {other:?} for the partition's offset"),
                    )),
                }
            })
            .collect()
    }
}

impl Log for KafkaLog {
    fn describe(&self) -> String {
        format!("kafka at {}", self.config.brokers)
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .metadata
                .fetch_metadata(None, Timeout::After(Duration::from_secs(2)))
            {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(map_error(
                        format!("no Kafka broker answers at {}", self.config.brokers),
                        &e,
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        self.topic_partitions(topic)
    }

    fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>> {
        let partitions = self.topic_partitions(topic)?;
        let parts: Vec<(&str, i32)> = partitions.iter().map(|&p| (topic, p)).collect();
        let lows = self.list_offsets(&parts, Offset::Beginning)?;
        let highs = self.list_offsets(&parts, Offset::End)?;
        Ok(partitions
            .into_iter()
            .zip(lows.into_iter().zip(highs))
            .map(|(partition, (low, high))| Watermarks {
                partition,
                low,
                high,
            })
            .collect())
    }

    fn offset_for_time(&self, topic: &str, partition: i32, ms: i64) -> Result<Option<i64>> {
        let mut q = TopicPartitionList::new();
        q.add_partition_offset(topic, partition, Offset::Offset(ms))
            .map_err(kafka("building a time query"))?;
        let found = self
            .metadata
            .offsets_for_times(q, Timeout::After(REQUEST_TIMEOUT))
            .map_err(kafka(format!("looking up {topic}/{partition} by time")))?;
        Ok(
            match found.find_partition(topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => Some(o),
                _ => None, // no record at or after that time
            },
        )
    }

    fn ensure_topic(&self, spec: &TopicSpec) -> Result<TopicState> {
        if spec.partitions < 1 {
            return Err(Error::new(
                ErrorKind::Config,
                &spec.name,
                "a topic needs at least one partition",
            ));
        }
        let (ms, bytes) = match spec.retention {
            Retention::Infinite => (Some("-1".to_string()), Some("-1")),
            Retention::Ms(ms) => (Some(ms.to_string()), None),
            Retention::BrokerDefault => (None, None),
        };
        let mut new = NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(1));
        if let Some(ms) = ms.as_deref() {
            new = new.set("retention.ms", ms);
        }
        if let Some(bytes) = bytes {
            new = new.set("retention.bytes", bytes);
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = futures::executor::block_on(self.admin.create_topics([&new], &opts))
            .map_err(kafka(format!("creating topic {}", spec.name)))?;
        match results.into_iter().next() {
            Some(Ok(_)) => {
                tracing::info!(topic = spec.name, partitions = spec.partitions, retention = ?spec.retention, "created topic");
                Ok(TopicState::Created)
            }
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => {
                if spec.retention == Retention::Infinite {
                    self.keep_forever(&spec.name);
                }
                Ok(TopicState::Existed)
            }
            Some(Err((name, code))) => Err(map_error(
                format!("creating topic {name}"),
                &KafkaError::AdminOp(code),
            )),
        }
    }

    fn retention(&self, topic: &str) -> Result<TopicRetention> {
        let opts = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
        let results = futures::executor::block_on(
            self.admin
                .describe_configs([&ResourceSpecifier::Topic(topic)], &opts),
        )
        .map_err(kafka(format!("describing the configuration of {topic}")))?;
        let Some(Ok(resource)) = results.into_iter().next() else {
            return Ok(TopicRetention {
                ms: None,
                bytes: None,
            });
        };
        let value = |name: &str| {
            resource
                .get(name)
                .and_then(|e| e.value.as_deref())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        Ok(TopicRetention {
            ms: value("retention.ms"),
            bytes: value("retention.bytes"),
        })
    }

    fn open_source(&self, start: &[Position]) -> Result<Box<dyn LogSource>> {
        let mut c = self.config.client_config();
        // Tuning, which --kafka-property may change.
        c.set("fetch.wait.max.ms", FETCH_WAIT_MS)
            // Fair fetches during a catch-up: tansu 0.6.0 fills a fetch response from the first
            // partitions of the request (whole stored batches, whatever
            // `max.partition.fetch.bytes` says), so with librdkafka's defaults (50 MiB) a
            // 4-partition backlog came partition by partition and the merge waited 5 s for the
            // last ones. 1 MiB responses let the others in.
            //
            // librdkafka keeps a queued record as an op of about 430 bytes, and each response's
            // buffer until the last record of it is freed. So the source takes records out of
            // its queues as they come (up to `source::LOCAL_RECORDS` a partition, compact), and
            // librdkafka leaves a partition out of the fetch while 1,000 of its records wait:
            // it holds at most those and one response a partition. 2 MiB responses carried up
            // to 27,333 records of one partition (about 12 MB of ops); with 512 KiB ones tansu
            // spent 6-18 % more CPU on a catch-up. At 1 record (a partition left out of the
            // fetch as soon as anything waits) the next fetch skipped a partition that had
            // just received records, and the live publish-to-commit p99 went from 66 to
            // 93-122 ms (docs/benchmarks.md).
            //
            // A partition whose queue drained comes back into the fetch after
            // `fetch.queue.backoff.ms`, 1 s by librdkafka's default: 5 ms here (at 1 s, a raw
            // consume of a 500,000-record topic with 10,000 records queued a partition read
            // 40.8k rec/s against 48.1k with 200,000). Apache Kafka fills responses fairly;
            // there smaller responses only cost more requests.
            .set("queued.min.messages", "1000")
            .set("fetch.queue.backoff.ms", "5")
            .set("fetch.max.bytes", "1048576");
        for (k, v) in &self.config.properties {
            c.set(k, v);
        }
        // What exactly-once rests on, whatever the properties say.
        c.set("group.id", "stockflow-job")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A partition's end is reported, with the position past any transaction markers there.
            .set("enable.partition.eof", "true")
            // A position the log no longer has is an error, never a silent jump.
            .set("auto.offset.reset", "error");
        let consumer: BaseConsumer<SourceContext> = c
            .create_with_context(SourceContext)
            .map_err(kafka("creating the Kafka consumer"))?;
        let mut tpl = TopicPartitionList::new();
        for p in start {
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.offset))
                .map_err(kafka("assigning partitions"))?;
        }
        consumer
            .assign(&tpl)
            .map_err(kafka("assigning partitions"))?;
        // One queue per partition, split right after the assignment (records fetched before a
        // split arrive on the main queue: the source hands those over too); then where each
        // partition's log ends now: below it the source merges by its order key.
        let consumer = Arc::new(consumer);
        let mut queues = Vec::with_capacity(start.len());
        for p in start {
            let queue = consumer
                .split_partition_queue(&p.topic, p.partition)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Other,
                        format!("reading {}/{}", p.topic, p.partition),
                        "librdkafka gave no queue for an assigned partition",
                    )
                })?;
            queues.push(queue);
        }
        let parts: Vec<(&str, i32)> = start
            .iter()
            .map(|p| (p.topic.as_str(), p.partition))
            .collect();
        let highs = self.list_offsets(&parts, Offset::End)?;
        let mut lanes = Vec::with_capacity(start.len());
        for ((p, queue), high) in start.iter().zip(queues).zip(highs) {
            lanes.push(source::Lane {
                topic: p.topic.clone(),
                partition: p.partition,
                backlog_end: high,
                queue,
            });
        }
        let next: Vec<i64> = start.iter().map(|p| p.offset).collect();
        Ok(Box::new(source::source(consumer, lanes, &next)))
    }

    fn producer(&self) -> Result<Box<dyn LogProducer>> {
        Ok(Box::new(KafkaProducer::new(&self.config)?))
    }
}

/// How long the broker may hold a fetch that finds nothing new (librdkafka's
/// `fetch.wait.max.ms`, 500 by default; `--kafka-property fetch.wait.max.ms=…` changes it).
/// tansu 0.6.0 answers every fetch only after this wait, records or not (its fetch loop sleeps
/// out the rest of the wait before it replies), so it bounds the latency of a live record, and
/// an idle job's fetches cost the broker CPU in proportion. Measured on tansu (live spec market,
/// 400 days at 0.05 s; idle job): at 100 ms publish-to-commit p50/p99 134/165 ms and the idle
/// broker at 9 % of a core; 50 ms 65/103 ms, 15 %; 25 ms 39/64 ms, 28 %; 10 ms 25/41 ms, 49 %.
/// Apache Kafka answers as soon as records arrive: a short wait costs it only empty fetches.
pub const FETCH_WAIT_MS: &str = "25";

/// An idempotent producer: acks from all in-sync replicas, no duplicates on retry, keys
/// partitioned with murmur2 as Java clients do.
pub struct KafkaProducer {
    producer: FutureProducer,
}

impl KafkaProducer {
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let mut c = config.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("message.timeout.ms", "300000");
        // User properties still win.
        for (k, v) in &config.properties {
            c.set(k, v);
        }
        let producer = c.create().map_err(kafka("creating the Kafka producer"))?;
        Ok(KafkaProducer { producer })
    }
}

impl LogProducer for KafkaProducer {
    fn send<'a>(&'a self, topic: &'a str, key: &'a [u8], payload: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            let record = FutureRecord::to(topic).key(key).payload(payload);
            match self.producer.send(record, Timeout::Never).await {
                Ok(delivery) => Ok(Position {
                    topic: topic.to_string(),
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Err((e, _)) => Err(map_error(format!("delivering a record to {topic}"), &e)),
            }
        })
    }

    fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer
            .flush(Timeout::After(timeout))
            .map_err(kafka("flushing the producer"))
    }
}

/// The sources' client context: librdkafka reports every partition end it reaches
/// (`enable.partition.eof`, the signal the source reads) as a "global error" too, which the
/// default context logs at ERROR on every catch-up; those are logged at TRACE here, every
/// other client error as before.
pub struct SourceContext;

impl rdkafka::ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::trace!("librdkafka: {reason}");
        } else {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for SourceContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let oor = map_error(
            "x",
            &KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange),
        );
        assert_eq!(oor.kind, ErrorKind::OffsetOutOfRange);
        assert!(!oor.is_retryable());
        let down = map_error(
            "x",
            &KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown),
        );
        assert!(down.is_retryable());
        let auth = map_error(
            "x",
            &KafkaError::MessageConsumption(RDKafkaErrorCode::SaslAuthenticationFailed),
        );
        assert_eq!(auth.kind, ErrorKind::Refused);
    }
}
