//! The job's consumer: assigned partitions, each on its own librdkafka queue, merged by an order
//! key (the job's: trading day) while they catch up.
//!
//! Why: with one shared queue librdkafka hands over whatever the broker's fetch responses hold,
//! and a broker may fill them partition by partition (tansu did: a 500,000-record backlog came
//! as all of partition 0, then 1, then 2, with partition 3 at offset 503). The job would then
//! evaluate ten years of days with a quarter of the closes missing and correct every one of them
//! later: millions of transient rows written and deleted. Within a partition, records of
//! several producers are only roughly in order too; `stockflow_transport::merge` keeps a small
//! sorted window per partition and reads a partition with a backlog a few keys ahead before
//! handing its earliest record over.
//!
//! The merge waits for a partition that is not read far enough only while it still has a
//! backlog (its offset is below the log end seen at open), and at most `PATIENCE` in a row:
//! then it warns once and reads the others ahead of it. Alignment saves work; it never stalls
//! the job.

use crate::map_error;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, DefaultConsumerContext};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockflow_transport::merge::{Merge, Step};
use stockflow_transport::{LogSource, Lookahead, OrderKey, RecordRef, Result};

/// How long the merge waits, in a row, for a partition with a backlog that is not read far
/// enough before it reads the others ahead of it (with a warning): alignment must never stall
/// the job.
const PATIENCE: Duration = Duration::from_secs(5);
/// The longest one call waits for such a partition before it returns what it has.
const CALL_WAIT: Duration = Duration::from_millis(50);
/// One wait on an empty queue.
const STEP: Duration = Duration::from_millis(5);

/// One assigned partition.
pub(crate) struct Lane {
    pub topic: String,
    pub partition: i32,
    /// The log end when the source was opened: below it the partition has a backlog.
    pub backlog_end: i64,
    pub queue: PartitionQueue<DefaultConsumerContext>,
}

fn record_of<M: Message>(m: &M) -> RecordRef<'_> {
    RecordRef {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key(),
        payload: m.payload(),
        timestamp_ms: m.timestamp().to_millis(),
    }
}

impl Lane {
    /// The partition's next fetched record, waiting up to `timeout`.
    fn pop(&self, timeout: Duration) -> Result<Option<BorrowedMessage<'_>>> {
        self.queue
            .poll(timeout)
            .transpose()
            .map_err(|e| map_error(format!("reading {}/{}", self.topic, self.partition), &e))
    }
}

pub struct KafkaSource {
    consumer: Arc<BaseConsumer>,
    lanes: Vec<Lane>,
    merge: Merge<OwnedMessage>,
    /// The merge order (`LogSource::order_by`); the log time without one.
    order: Option<OrderKey>,
}

impl KafkaSource {
    pub(crate) fn new(consumer: Arc<BaseConsumer>, lanes: Vec<Lane>, start: Vec<i64>) -> Self {
        let ends: Vec<(i64, i64)> = lanes
            .iter()
            .zip(&start)
            .map(|(l, &s)| (s, l.backlog_end))
            .collect();
        KafkaSource {
            consumer,
            merge: Merge::new(&ends, 0, PATIENCE),
            lanes,
            order: None,
        }
    }
}

/// A fetched record into the merge, under its order key (`order`, or the log time).
fn admit(
    merge: &mut Merge<OwnedMessage>,
    order: &mut Option<OrderKey>,
    lane: usize,
    m: OwnedMessage,
) {
    let r = record_of(&m);
    let key = match order.as_mut() {
        Some(f) => f(&r),
        None => r.timestamp_ms,
    };
    let offset = r.offset;
    merge.insert(lane, key, offset, m);
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        for (lane, disorder) in self.lanes.iter().zip(self.merge.disorder()) {
            tracing::debug!(
                topic = lane.topic,
                partition = lane.partition,
                disorder,
                lookahead = self.merge.lookahead(),
                "the most a record of this partition came behind the largest key read before it"
            );
        }
    }
}

impl LogSource for KafkaSource {
    fn poll_batch(
        &mut self,
        max: usize,
        wait: Duration,
        on_record: &mut dyn FnMut(RecordRef<'_>) -> ControlFlow<()>,
    ) -> Result<usize> {
        let KafkaSource {
            consumer,
            lanes,
            merge,
            order,
        } = self;
        // Serve the consumer's events (errors that concern no partition come out here). Every
        // assigned partition has its own queue; records fetched before a queue was split off
        // arrive here and join the merge too, never dropped.
        while let Some(polled) = consumer.poll(Duration::ZERO) {
            let m = polled.map_err(|e| map_error("reading from the broker", &e))?;
            let lane = lanes
                .iter()
                .position(|l| l.partition == m.partition() && l.topic == m.topic());
            match lane {
                Some(i) => admit(merge, order, i, m.detach()),
                None => tracing::warn!(
                    topic = m.topic(),
                    partition = m.partition(),
                    "a record of a partition this source does not read; ignored"
                ),
            }
        }
        let mut n = 0;
        let mut waited = Duration::ZERO;
        let mut idle = 0usize;
        while n < max {
            // Fetch from every lane that is not read far enough, without waiting.
            for (i, lane) in lanes.iter().enumerate() {
                while merge.wants(i) {
                    match lane.pop(Duration::ZERO)? {
                        Some(m) => admit(merge, order, i, m.detach()),
                        None => break,
                    }
                }
            }
            let step = merge.next(Instant::now());
            if let Some(lookahead) = merge.take_growth() {
                tracing::info!(
                    lookahead,
                    "the log is more out of order than the merge read ahead; reading this many \
                     keys ahead of every partition with a backlog from now on"
                );
            }
            for i in merge.take_warnings() {
                if let Some(lane) = lanes.get(i) {
                    tracing::warn!(
                        topic = lane.topic,
                        partition = lane.partition,
                        "the broker sent too little of this partition for {PATIENCE:?} though it \
                         has a backlog; reading the others ahead of it (days may be evaluated \
                         incomplete first and corrected when its records come)"
                    );
                }
            }
            let wait_on = match step {
                Step::Take(i) => {
                    let Some((_, m)) = merge.pop(i) else { break };
                    n += 1;
                    if on_record(record_of(&m)).is_break() {
                        break;
                    }
                    continue;
                }
                Step::Held => {
                    if n == 0 {
                        std::thread::sleep(wait.min(Duration::from_millis(1)));
                    }
                    break;
                }
                Step::Wait(i) if waited < CALL_WAIT.max(wait) => i,
                Step::Wait(_) => break,
                Step::Empty if n == 0 && waited < wait && !lanes.is_empty() => {
                    idle += 1;
                    idle % lanes.len()
                }
                Step::Empty => break,
            };
            let Some(lane) = lanes.get(wait_on) else {
                break;
            };
            let t0 = Instant::now();
            if let Some(m) = lane.pop(STEP)? {
                admit(merge, order, wait_on, m.detach());
            }
            waited += t0.elapsed();
        }
        Ok(n)
    }

    fn order_by(&mut self, key: OrderKey, lookahead: Lookahead) {
        self.order = Some(key);
        self.merge.set_lookahead(lookahead.initial, lookahead.max);
    }

    fn next_key(&self) -> Option<i64> {
        self.merge.next_key(Instant::now())
    }

    fn hold_after(&mut self, key: Option<i64>) {
        self.merge.hold_after(key);
    }

    fn resume_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let i = self
            .lanes
            .iter()
            .position(|l| l.partition == partition && l.topic == topic)?;
        self.merge.resume(i)
    }
}
