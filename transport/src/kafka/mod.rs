//! The Kafka backend (librdkafka through `rdkafka`, bundled and built with cmake).

use crate::{
    Error, LogAdmin, LogSink, LogSource, PartitionPlan, Position, Record, RecordRef, Result,
    StartAt, TopicState, Watermarks,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

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

fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let context = context.into();
    move |source| Error::Kafka { context, source }
}

/// An idempotent producer: acks from all in-sync replicas, no duplicates on retry, keys
/// partitioned with murmur2 as Java clients do.
pub struct KafkaSink {
    producer: FutureProducer,
}

impl KafkaSink {
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let mut c = config.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("message.timeout.ms", "300000");
        // librdkafka sets acks=all itself with idempotence; user properties still win.
        for (k, v) in &config.properties {
            c.set(k, v);
        }
        let producer = c.create().map_err(kafka("creating the Kafka producer"))?;
        Ok(KafkaSink { producer })
    }
}

impl LogSink for KafkaSink {
    async fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<Position> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        match self.producer.send(record, Timeout::Never).await {
            Ok(delivery) => Ok(Position {
                topic: topic.to_string(),
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((e, _)) => Err(kafka(format!("delivering a record to {topic}"))(e)),
        }
    }

    fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer
            .flush(Timeout::After(timeout))
            .map_err(kafka("flushing the producer"))
    }
}

/// Topic administration and metadata.
pub struct KafkaAdmin {
    admin: AdminClient<DefaultClientContext>,
    consumer: BaseConsumer,
}

impl KafkaAdmin {
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let admin = config
            .client_config()
            .create()
            .map_err(kafka("creating the Kafka admin client"))?;
        let consumer = config
            .client_config()
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka("creating the Kafka metadata client"))?;
        Ok(KafkaAdmin { admin, consumer })
    }

    /// Waits until the broker answers a metadata request, up to `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .consumer
                .fetch_metadata(None, Timeout::After(Duration::from_secs(2)))
            {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(kafka("reaching the broker")(e));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The partition ids of `topic`, sorted.
    pub fn partitions(&self, topic: &str, timeout: Duration) -> Result<Vec<i32>> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), Timeout::After(timeout))
            .map_err(kafka(format!("reading metadata of {topic}")))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        if t.error().is_some() || t.partitions().is_empty() {
            return Err(Error::UnknownTopic(topic.to_string()));
        }
        let mut p: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        p.sort_unstable();
        Ok(p)
    }
}

impl LogAdmin for KafkaAdmin {
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<TopicState> {
        if partitions < 1 {
            return Err(Error::Config(format!(
                "topic {topic} needs at least one partition"
            )));
        }
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = self
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(kafka(format!("creating topic {topic}")))?;
        match results.into_iter().next() {
            Some(Ok(_)) => {
                tracing::info!(topic, partitions, "created topic");
                Ok(TopicState::Created)
            }
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(TopicState::Existed),
            Some(Err((name, code))) => Err(Error::Kafka {
                context: format!("creating topic {name}"),
                source: KafkaError::AdminOp(code),
            }),
        }
    }

    fn watermarks(&self, topic: &str, timeout: Duration) -> Result<Vec<Watermarks>> {
        self.partitions(topic, timeout)?
            .into_iter()
            .map(|p| {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(topic, p, Timeout::After(timeout))
                    .map_err(kafka(format!("reading watermarks of {topic}/{p}")))?;
                Ok(Watermarks {
                    partition: p,
                    low,
                    high,
                })
            })
            .collect()
    }
}

/// Reads every record of `topic` that exists now (up to the high watermarks seen at the
/// start), partition by partition in offset order. For tests, summaries and batch tools.
pub fn read_to_end(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<Vec<Record>> {
    let admin = KafkaAdmin::new(config)?;
    let marks = admin.watermarks(topic, timeout)?;
    let consumer: BaseConsumer = config
        .client_config()
        .set("group.id", "stockflow-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(kafka("creating the Kafka consumer"))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for w in &marks {
        if !w.is_empty() {
            tpl.add_partition_offset(topic, w.partition, Offset::Offset(w.low))
                .map_err(kafka("assigning partitions"))?;
            remaining += w.len();
        }
    }
    consumer
        .assign(&tpl)
        .map_err(kafka("assigning partitions"))?;
    let mut out = Vec::with_capacity(usize::try_from(remaining).unwrap_or(0));
    let deadline = Instant::now() + timeout;
    while remaining > 0 {
        if Instant::now() >= deadline {
            return Err(Error::Timeout(timeout));
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(e)) => return Err(kafka(format!("reading {topic}"))(e)),
            Some(Ok(m)) => {
                let end = marks
                    .iter()
                    .find(|w| w.partition == m.partition())
                    .map_or(0, |w| w.high);
                if m.offset() >= end {
                    continue;
                }
                remaining -= 1;
                out.push(Record {
                    position: Position {
                        topic: topic.to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                    },
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    timestamp_ms: m.timestamp().to_millis(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.position.cmp(&b.position));
    Ok(out)
}

/// A consumer over explicitly assigned partitions (no group rebalancing, no offset commits:
/// stockflow keeps its offsets itself).
pub struct KafkaSource {
    consumer: BaseConsumer,
}

impl KafkaSource {
    /// Resolves where each partition starts and ends now, then assigns them.
    pub fn open(
        config: &KafkaConfig,
        assignments: &[(String, i32, StartAt)],
    ) -> Result<(Self, Vec<PartitionPlan>)> {
        let timeout = Duration::from_secs(30);
        let consumer: BaseConsumer = config
            .client_config()
            .set("group.id", "stockflow-job")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100")
            .set("queued.min.messages", "200000")
            .create()
            .map_err(kafka("creating the Kafka consumer"))?;
        let mut plans = Vec::with_capacity(assignments.len());
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, start) in assignments {
            let (low, high) = consumer
                .fetch_watermarks(topic, *partition, Timeout::After(timeout))
                .map_err(kafka(format!("reading watermarks of {topic}/{partition}")))?;
            let start = match *start {
                StartAt::Earliest => low,
                StartAt::Latest => high,
                StartAt::Offset(o) => o.clamp(low, high),
                StartAt::Time(ms) => {
                    let mut q = TopicPartitionList::new();
                    q.add_partition_offset(topic, *partition, Offset::Offset(ms))
                        .map_err(kafka("building a time query"))?;
                    let found = consumer
                        .offsets_for_times(q, Timeout::After(timeout))
                        .map_err(kafka(format!("looking up {topic}/{partition} by time")))?;
                    match found.find_partition(topic, *partition).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o.clamp(low, high),
                        _ => high, // no record at or after that time
                    }
                }
            };
            tpl.add_partition_offset(topic, *partition, Offset::Offset(start))
                .map_err(kafka("assigning partitions"))?;
            plans.push(PartitionPlan {
                topic: topic.clone(),
                partition: *partition,
                start,
                end_at_open: high,
            });
        }
        consumer
            .assign(&tpl)
            .map_err(kafka("assigning partitions"))?;
        Ok((KafkaSource { consumer }, plans))
    }
}

impl LogSource for KafkaSource {
    fn poll_batch(
        &mut self,
        max: usize,
        wait: Duration,
        on_record: &mut dyn FnMut(RecordRef<'_>),
    ) -> Result<usize> {
        let mut n = 0;
        let mut timeout = wait;
        while n < max {
            match self.consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => return Err(kafka("reading from the broker")(e)),
                Some(Ok(m)) => {
                    on_record(RecordRef {
                        topic: m.topic(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key(),
                        payload: m.payload(),
                        timestamp_ms: m.timestamp().to_millis(),
                    });
                    n += 1;
                    timeout = Duration::ZERO;
                }
            }
        }
        Ok(n)
    }
}
