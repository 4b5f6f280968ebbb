//! The Fluvio producer: one `TopicProducer` per topic, made on the first send to it.
//!
//! - A keyed record goes to the partition its key hashes to (Fluvio's SipHash partitioner), so
//!   one key's records stay in one partition, in the order they were sent.
//! - A send resolves when the leader SPU has acknowledged the record at read-committed
//!   isolation (written to its replicas: what a reader is handed), with its partition and
//!   offset.
//! - Delivery is at-least-once: Fluvio has no idempotent producer, so a retry after a lost
//!   acknowledgement can write a record twice. The job takes a repeated record as the same
//!   version (latest close or holding wins), so a duplicate changes no table.

use crate::{block_on, map_error, Connection, PerTopic};
use fluvio::{DeliverySemantic, Isolation, RetryPolicy, TopicProducerConfigBuilder, TopicProducerPool};
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use stockflow_transport::{Error, ErrorKind, LogProducer, Position, Result, SendFuture};

/// How long the producer may keep records to batch them.
const LINGER: Duration = Duration::from_millis(5);
/// How long a produce request may wait for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

pub struct FluvioProducer {
    conn: Arc<Connection>,
    topics: PerTopic<TopicProducerPool>,
}

impl FluvioProducer {
    pub(crate) fn new(conn: Arc<Connection>) -> Self {
        FluvioProducer {
            conn,
            topics: Default::default(),
        }
    }

    async fn topic(&self, topic: &str) -> Result<Arc<TopicProducerPool>> {
        if let Some(p) = self
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
        {
            return Ok(Arc::clone(p));
        }
        let context = format!("making a producer for {topic}");
        let config = TopicProducerConfigBuilder::default()
            .linger(LINGER)
            .timeout(ACK_TIMEOUT)
            .isolation(Isolation::ReadCommitted)
            .delivery_semantic(DeliverySemantic::AtLeastOnce(RetryPolicy::default()))
            .build()
            .map_err(|e| Error::new(ErrorKind::Config, context.clone(), e.to_string()))?;
        let client = self.conn.client()?;
        let made = client
            .fluvio
            .topic_producer_with_config(topic.to_string(), config)
            .await
            .map_err(|e| map_error(context, &e));
        let made = match made {
            Ok(p) => Arc::new(p),
            Err(e) => {
                self.conn.forget_if_gone(&e);
                return Err(e);
            }
        };
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Arc::clone(
            topics.entry(topic.to_string()).or_insert(made),
        ))
    }
}

impl LogProducer for FluvioProducer {
    fn send<'a>(&'a self, topic: &'a str, key: &'a [u8], payload: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            let producer = self.topic(topic).await?;
            let context = format!("delivering a record to {topic}");
            let output = producer
                .send(key.to_vec(), payload.to_vec())
                .await
                .map_err(|e| map_error(context.clone(), &e))?;
            let meta = output
                .wait()
                .await
                .map_err(|e| map_error(context.clone(), &anyhow::Error::from(e)))?;
            Ok(Position {
                topic: topic.to_string(),
                partition: i32::try_from(meta.partition_id()).map_err(|_| {
                    Error::new(ErrorKind::Other, context, "a partition id past i32")
                })?,
                offset: meta.offset(),
            })
        })
    }

    fn flush(&self, timeout: Duration) -> Result<()> {
        let producers: Vec<(String, Arc<TopicProducerPool>)> = self
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(t, p)| (t.clone(), Arc::clone(p)))
            .collect();
        block_on("flushing the Fluvio producer", timeout, async {
            for (topic, p) in producers {
                p.flush()
                    .await
                    .map_err(|e| map_error(format!("flushing the producer of {topic}"), &e))?;
            }
            Ok(())
        })
    }
}
