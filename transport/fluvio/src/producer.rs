//! The Fluvio producer: one `TopicProducer` per topic, fed in call order by a task of its own.
//!
//! - Records are handed to Fluvio in the order `send` was *called*: `send` queues the record at
//!   once, and one task per topic pushes the queue into Fluvio's producer one record at a time.
//!   Awaiting Fluvio's `send` from the callers' futures directly lets a later record overtake
//!   an earlier one whenever a future waits (the topic's producer being made, a full batch
//!   queue): 40,000 records sent 4,096 at a time came back with record 1,288 at offset 0.
//! - A keyed record goes to the partition its key hashes to (Fluvio's SipHash partitioner), so
//!   one key's records stay in one partition, in the order sent.
//! - A send resolves when the leader SPU has acknowledged the record at read-committed
//!   isolation (what a reader is handed), with its partition and offset.
//! - Delivery is at least once: Fluvio has no idempotent producer, so a retry after a lost
//!   acknowledgement can write a record twice (docs/backends.md says what that means for the
//!   job).
//! - A record the cluster refused for a passing reason (its SPU restarting: "not the leader for
//!   the partition", a broken connection) is sent again, with backoff, for up to
//!   [`RETRY_FOR`] (Kafka's producer retries for `message.timeout.ms`, 300 s here too); only
//!   then does its send fail. Fluvio's own retries cover a failed request, not an error code in
//!   its answer, and its producer does not reconnect after its SPU restarted: the record goes
//!   again through a producer made again on a new client. A record sent again lands after
//!   records sent after it that went through; so that a key's records keep their order (a
//!   holdings change sent during an SPU outage must not land after a later correction of the
//!   same holding and win), a later record of that key that landed before it is sent again
//!   too, after it ([`KeyOrder`]).

use crate::{block_on, map_error, Connection};
use fluvio::{
    DeliverySemantic, Isolation, ProduceOutput, RetryPolicy, TopicProducerConfigBuilder,
    TopicProducerPool,
};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use stockflow_transport::{Error, ErrorKind, LogProducer, Position, Result, SendFuture};

/// How long the producer may keep records to batch them.
const LINGER: Duration = Duration::from_millis(5);
/// How long a produce request may wait for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a record refused for a passing reason is sent again before its send fails.
pub const RETRY_FOR: Duration = Duration::from_secs(300);
/// The longest wait between two sends of a refused record.
const RETRY_MAX_DELAY: Duration = Duration::from_secs(2);

/// What a topic's task is asked to do, in order.
enum Job {
    Record {
        key: Vec<u8>,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<Position>>,
    },
    /// Flush everything queued before this.
    Flush(oneshot::Sender<Result<()>>),
}

pub struct FluvioProducer {
    conn: Arc<Connection>,
    /// Each topic's queue, drained by its task.
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>,
}

impl FluvioProducer {
    pub(crate) fn new(conn: Arc<Connection>) -> Self {
        FluvioProducer {
            conn,
            queues: Default::default(),
        }
    }

    /// Queues `job` for `topic`, starting the topic's task if it has none (or its last one
    /// ended after an error).
    fn enqueue(&self, topic: &str, job: Job) {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let job = match queues.get(topic) {
            Some(q) => match q.unbounded_send(job) {
                Ok(()) => return,
                Err(e) => e.into_inner(),
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded();
        // A fresh channel with its receiver alive: this send succeeds.
        let _ = tx.unbounded_send(job);
        queues.insert(topic.to_string(), tx);
        fluvio_future::task::spawn(push(Arc::clone(&self.conn), topic.to_string(), rx));
    }
}

/// A topic's producer as stockflow configures it.
async fn topic_producer(conn: &Connection, topic: &str) -> Result<TopicProducerPool> {
    let context = format!("making a producer for {topic}");
    let config = TopicProducerConfigBuilder::default()
        .linger(LINGER)
        .timeout(ACK_TIMEOUT)
        .isolation(Isolation::ReadCommitted)
        .delivery_semantic(DeliverySemantic::AtLeastOnce(RetryPolicy::default()))
        .build()
        .map_err(|e| Error::new(ErrorKind::Config, context.clone(), e.to_string()))?;
    let client = conn.client()?;
    let made = client
        .fluvio
        .topic_producer_with_config(crate::fluvio_topic(topic)?, config)
        .await
        .map_err(|e| map_error(context, &e));
    if let Err(e) = &made {
        conn.forget_if_gone(e);
    }
    made
}

fn copy(e: &Error) -> Error {
    Error::new(e.kind, e.context.clone(), e.detail.clone())
}

/// A topic's producer, made again (on a new client) when its connection broke: Fluvio's
/// producer does not reconnect after its SPU restarted ("broken pipe" on every send).
struct Current {
    generation: u64,
    producer: Arc<TopicProducerPool>,
}

struct Shared {
    conn: Arc<Connection>,
    topic: String,
    current: Mutex<Current>,
}

impl Shared {
    fn get(&self) -> (u64, Arc<TopicProducerPool>) {
        let c = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        (c.generation, Arc::clone(&c.producer))
    }

    /// A new producer on a new client, unless one newer than `seen` was made already.
    async fn renew(&self, seen: u64) -> Result<(u64, Arc<TopicProducerPool>)> {
        let (generation, producer) = self.get();
        if generation != seen {
            return Ok((generation, producer));
        }
        self.conn.forget();
        let fresh = Arc::new(topic_producer(&self.conn, &self.topic).await?);
        let mut c = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if c.generation == seen {
            c.generation += 1;
            c.producer = fresh;
        }
        Ok((c.generation, Arc::clone(&c.producer)))
    }
}

/// A topic's task: makes its producer, then pushes the queued records into it one at a time,
/// in queue order; their acknowledgements are awaited (in the same order) by a second task,
/// which sends a refused record again.
async fn push(conn: Arc<Connection>, topic: String, mut queue: mpsc::UnboundedReceiver<Job>) {
    let producer = match topic_producer(&conn, &topic).await {
        Ok(p) => p,
        Err(e) => {
            // Everything queued so far fails with the reason; the next send starts again.
            queue.close();
            while let Ok(job) = queue.try_recv() {
                match job {
                    Job::Record { reply, .. } => {
                        let _ = reply.send(Err(copy(&e)));
                    }
                    Job::Flush(reply) => {
                        let _ = reply.send(Err(copy(&e)));
                    }
                }
            }
            return;
        }
    };
    let shared = Arc::new(Shared {
        conn,
        topic: topic.clone(),
        current: Mutex::new(Current {
            generation: 0,
            producer: Arc::new(producer),
        }),
    });
    let (acks, mut pending) = mpsc::unbounded::<Ack>();
    let ack_shared = Arc::clone(&shared);
    fluvio_future::task::spawn(async move {
        let mut order = KeyOrder::default();
        while let Some(ack) = pending.next().await {
            match ack {
                Ack::Record(sent) => {
                    let Sent {
                        first,
                        key,
                        payload,
                        reply,
                    } = sent;
                    let mut r = acknowledged(&ack_shared, first, &key, &payload).await;
                    // Landed before an earlier record of its key that was sent again: sent
                    // again itself, so that it lands after that one.
                    while let Ok((at, resent)) = &r {
                        if !order.landed(&key, at, *resent) {
                            break;
                        }
                        tracing::warn!(
                            topic = %ack_shared.topic,
                            offset = at.offset,
                            "a record landed before an earlier record of its key that was sent \
                             again: sending it again after it"
                        );
                        let (generation, producer) = ack_shared.get();
                        let again =
                            producer
                                .send(key.clone(), payload.clone())
                                .await
                                .map_err(|e| {
                                    map_error(
                                        format!("delivering a record to {}", ack_shared.topic),
                                        &e,
                                    )
                                });
                        r = acknowledged(&ack_shared, (generation, again), &key, &payload)
                            .await
                            .map(|(at, _)| (at, true));
                    }
                    let _ = reply.send(r.map(|(at, _)| at));
                }
                // Answered once every record before it is acknowledged (or failed for good),
                // records sent again included.
                Ack::Flush(reply, flushed) => {
                    let _ = reply.send(flushed);
                }
            }
        }
    });
    while let Some(job) = queue.next().await {
        match job {
            Job::Record {
                key,
                payload,
                reply,
            } => {
                let (generation, producer) = shared.get();
                let first = match producer.send(key.clone(), payload.clone()).await {
                    Ok(output) => Ok(output),
                    Err(e) => Err(map_error(format!("delivering a record to {topic}"), &e)),
                };
                let sent = Sent {
                    first: (generation, first),
                    key,
                    payload,
                    reply,
                };
                if let Err(e) = acks.unbounded_send(Ack::Record(sent)) {
                    if let Ack::Record(sent) = e.into_inner() {
                        let _ = sent.reply.send(Err(Error::new(
                            ErrorKind::Other,
                            format!("delivering a record to {topic}"),
                            "the acknowledgements' task ended",
                        )));
                    }
                }
            }
            Job::Flush(reply) => {
                let (_, producer) = shared.get();
                let r = producer
                    .flush()
                    .await
                    .map_err(|e| map_error(format!("flushing the producer of {topic}"), &e));
                if let Err(e) = acks.unbounded_send(Ack::Flush(reply, r)) {
                    if let Ack::Flush(reply, _) = e.into_inner() {
                        let _ = reply.send(Err(Error::new(
                            ErrorKind::Other,
                            format!("flushing the producer of {topic}"),
                            "the acknowledgements' task ended",
                        )));
                    }
                }
            }
        }
    }
}

/// What the acknowledgements' task answers, in order.
enum Ack {
    Record(Sent),
    Flush(oneshot::Sender<Result<()>>, Result<()>),
}

/// A record handed to Fluvio (by the producer of that generation), waiting for its
/// acknowledgement.
struct Sent {
    first: (u64, Result<ProduceOutput>),
    key: Vec<u8>,
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<Position>>,
}

/// Where the records of keys that were sent again landed, so that a key's later records land
/// after them. Acknowledgements are taken in the order the records were sent; a key's entry
/// goes once a later record of it lands after it (the map holds only keys caught in a re-send).
#[derive(Debug, Default)]
pub(crate) struct KeyOrder {
    last: HashMap<Vec<u8>, (i32, i64)>,
}

impl KeyOrder {
    /// A record of `key` landed at `at` (`resent`: after being sent again). True when it must
    /// be sent again: an earlier record of its key, sent again, landed after it.
    pub(crate) fn landed(&mut self, key: &[u8], at: &Position, resent: bool) -> bool {
        if let Some(&(partition, offset)) = self.last.get(key) {
            if partition == at.partition && at.offset < offset {
                return true;
            }
        }
        if resent {
            self.last.insert(key.to_vec(), (at.partition, at.offset));
        } else {
            self.last.remove(key);
        }
        false
    }
}

/// The record's position once acknowledged, and whether it was sent again. A record refused
/// for a passing reason is sent again (backoff up to [`RETRY_MAX_DELAY`]) for up to
/// [`RETRY_FOR`], by a producer made again on a new client if the one that sent it is still
/// the current one.
async fn acknowledged(
    shared: &Shared,
    first: (u64, Result<ProduceOutput>),
    key: &[u8],
    payload: &[u8],
) -> Result<(Position, bool)> {
    let topic = shared.topic.as_str();
    let context = format!("delivering a record to {topic}");
    let deadline = std::time::Instant::now() + RETRY_FOR;
    let mut delay = Duration::from_millis(50);
    let (mut generation, mut sent) = first;
    let mut resent = false;
    loop {
        let err = match sent {
            Ok(output) => match output.wait().await {
                Ok(meta) => {
                    return i32::try_from(meta.partition_id())
                        .map(|partition| {
                            (
                                Position {
                                    topic: topic.to_string(),
                                    partition,
                                    offset: meta.offset(),
                                },
                                resent,
                            )
                        })
                        .map_err(|_| {
                            Error::new(ErrorKind::Other, context, "a partition id past i32")
                        })
                }
                Err(e) => map_error(context.clone(), &anyhow::Error::from(e)),
            },
            Err(e) => e,
        };
        if !err.is_retryable() || std::time::Instant::now() >= deadline {
            return Err(err);
        }
        tracing::warn!(
            topic,
            "a record was refused ({err}); sending it again in {delay:?}"
        );
        fluvio_future::timer::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX_DELAY);
        resent = true;
        sent = match shared.renew(generation).await {
            Ok((g, producer)) => {
                generation = g;
                producer
                    .send(key.to_vec(), payload.to_vec())
                    .await
                    .map_err(|e| map_error(context.clone(), &e))
            }
            Err(e) => Err(e),
        };
    }
}

impl LogProducer for FluvioProducer {
    fn send<'a>(&'a self, topic: &'a str, key: &'a [u8], payload: &'a [u8]) -> SendFuture<'a> {
        // Queued now, at the call: the order of calls is the order in the log.
        let (reply, answer) = oneshot::channel();
        self.enqueue(
            topic,
            Job::Record {
                key: key.to_vec(),
                payload: payload.to_vec(),
                reply,
            },
        );
        Box::pin(async move {
            answer.await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Other,
                    format!("delivering a record to {topic}"),
                    "the producer stopped before the record was acknowledged",
                ))
            })
        })
    }

    fn flush(&self, timeout: Duration) -> Result<()> {
        let topics: Vec<String> = self
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        let answers: Vec<(String, oneshot::Receiver<Result<()>>)> = topics
            .into_iter()
            .map(|t| {
                let (reply, answer) = oneshot::channel();
                self.enqueue(&t, Job::Flush(reply));
                (t, answer)
            })
            .collect();
        block_on("flushing the Fluvio producer", timeout, async {
            for (topic, answer) in answers {
                answer.await.unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Other,
                        format!("flushing the producer of {topic}"),
                        "the producer stopped",
                    ))
                })?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Position {
        Position {
            topic: "t".into(),
            partition: 0,
            offset,
        }
    }

    #[test]
    fn a_later_record_of_a_key_that_landed_before_a_resent_one_goes_again() {
        let mut order = KeyOrder::default();
        // A (key k) refused, sent again: lands at 7. B (key k, sent after A) had gone through
        // at 5, before A's re-send: it goes again, and lands at 8.
        assert!(!order.landed(b"k", &at(7), true));
        assert!(order.landed(b"k", &at(5), false));
        assert!(!order.landed(b"k", &at(8), true));
        // C (key k) lands after B: in order, and the key is forgotten.
        assert!(!order.landed(b"k", &at(9), false));
        assert!(order.last.is_empty());
        // Other keys are not held: j landed before k's re-send, in order for j.
        assert!(!order.landed(b"k", &at(20), true));
        assert!(!order.landed(b"j", &at(15), false));
        // Another partition is another log.
        let elsewhere = Position {
            partition: 1,
            ..at(3)
        };
        assert!(!order.landed(b"k", &elsewhere, false));
    }
}
