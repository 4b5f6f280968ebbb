//! The job's consumer: assigned partitions, each on its own librdkafka queue, merged in log-time
//! order while they catch up.
//!
//! Why: with one shared queue librdkafka hands over whatever the broker's fetch responses hold,
//! and a broker may fill them partition by partition (tansu did: a 500,000-record backlog came
//! as all of partition 0, then 1, then 2, with partition 3 at offset 503). The job would then
//! evaluate ten years of days with a quarter of the closes missing and correct every one of them
//! later: millions of transient rows written and deleted. Reading the partitions merged by
//! record timestamp replays the log in the order it was written, so a catch-up or a replay sees
//! what a live run saw.
//!
//! The merge waits for a partition that has no record queued only while it still has a backlog
//! (its offset is below the log end seen at open), and at most `PATIENCE` in a row: then it
//! warns and reads the others ahead of it. Alignment saves work; it never stalls the job.

use crate::map_error;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, DefaultConsumerContext};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockflow_transport::{LogSource, OrderKey, RecordRef, Result};

/// How long the merge waits, in a row, for a partition with a backlog and nothing queued before
/// it reads the others ahead of it (with a warning): alignment must never stall the job.
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

/// A record at the head of a lane: still in librdkafka's buffer, or copied out.
enum Head<'q> {
    Borrowed(BorrowedMessage<'q>),
    Owned(OwnedMessage),
}

impl Head<'_> {
    fn record(&self) -> RecordRef<'_> {
        fn of<M: Message>(m: &M) -> RecordRef<'_> {
            RecordRef {
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key(),
                payload: m.payload(),
                timestamp_ms: m.timestamp().to_millis(),
            }
        }
        match self {
            Head::Borrowed(m) => of(m),
            Head::Owned(m) => of(m),
        }
    }

    fn into_owned(self) -> OwnedMessage {
        match self {
            Head::Borrowed(m) => m.detach(),
            Head::Owned(m) => m,
        }
    }
}

/// Which head goes first: the smallest order key, then the lower lane. Pure, so it is tested
/// without a broker.
pub(crate) fn earliest(heads: impl IntoIterator<Item = (usize, i64)>) -> Option<usize> {
    heads
        .into_iter()
        .min_by_key(|&(lane, key)| (key, lane))
        .map(|(lane, _)| lane)
}

pub struct KafkaSource {
    pub(crate) consumer: Arc<BaseConsumer>,
    pub(crate) lanes: Vec<Lane>,
    /// Per lane: the next offset to hand over.
    pub(crate) next: Vec<i64>,
    /// Per lane: a record taken from the queue but not handed over when the last call ended,
    /// with its order key.
    pub(crate) kept: Vec<Option<(OwnedMessage, i64)>>,
    /// Per lane: since when it has had a backlog and nothing queued.
    pub(crate) blocked: Vec<Option<Instant>>,
    /// Per lane: the order key of the last record handed over.
    pub(crate) last_key: Vec<Option<i64>>,
    /// No record whose key is after this is handed over (`LogSource::hold_after`).
    pub(crate) hold: Option<i64>,
    /// The merge order (`LogSource::order_by`); the log time without one.
    pub(crate) order: Option<OrderKey>,
    /// Per lane: records librdkafka delivered on the consumer's main queue (fetched before the
    /// partition's queue was split off); handed over first, never dropped.
    pub(crate) stray: Vec<VecDeque<OwnedMessage>>,
}

impl KafkaSource {
    pub(crate) fn new(consumer: Arc<BaseConsumer>, lanes: Vec<Lane>, start: Vec<i64>) -> Self {
        KafkaSource {
            consumer,
            kept: lanes.iter().map(|_| None).collect(),
            blocked: lanes.iter().map(|_| None).collect(),
            last_key: lanes.iter().map(|_| None).collect(),
            hold: None,
            order: None,
            stray: lanes.iter().map(|_| VecDeque::new()).collect(),
            lanes,
            next: start,
        }
    }
}

/// A head with its order key (`order`, or the log time without one; none: first).
fn keyed<'q>(head: Head<'q>, order: &mut Option<OrderKey>) -> (Head<'q>, i64) {
    let r = head.record();
    let key = match order.as_mut() {
        Some(f) => f(&r),
        None => r.timestamp_ms,
    };
    (head, key.unwrap_or(i64::MIN))
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
            next,
            kept,
            blocked,
            last_key,
            hold,
            order,
            stray,
        } = self;
        // Serve the consumer's events (errors that concern no partition come out here; every
        // assigned partition has its own queue, so no record does).
        while let Some(polled) = consumer.poll(Duration::ZERO) {
            let m = polled.map_err(|e| map_error("reading from the broker", &e))?;
            let lane = lanes
                .iter()
                .position(|l| l.partition == m.partition() && l.topic == m.topic());
            match lane {
                Some(i) => stray[i].push_back(m.detach()),
                None => tracing::warn!(
                    topic = m.topic(),
                    partition = m.partition(),
                    "a record of a partition this source does not read; ignored"
                ),
            }
        }
        let lanes: &Vec<Lane> = lanes;
        let mut heads: Vec<Option<(Head<'_>, i64)>> = kept
            .iter_mut()
            .map(|k| k.take().map(|(m, key)| (Head::Owned(m), key)))
            .collect();
        let mut n = 0;
        let mut failed = None;
        let mut waited = Duration::ZERO;
        'batch: while n < max {
            // Fill every empty head from its queue, without waiting.
            let mut blocking = None;
            for (i, lane) in lanes.iter().enumerate() {
                if heads[i].is_none() {
                    if let Some(m) = stray[i].pop_front() {
                        heads[i] = Some(keyed(Head::Owned(m), order));
                        continue;
                    }
                    match lane.pop(Duration::ZERO) {
                        Ok(m) => heads[i] = m.map(|m| keyed(Head::Borrowed(m), order)),
                        Err(e) => {
                            failed = Some(e);
                            break 'batch;
                        }
                    }
                }
                if heads[i].is_some() || next[i] >= lane.backlog_end {
                    blocked[i] = None;
                    continue;
                }
                // A partition with a backlog has nothing queued yet: its records may be
                // older than every head's. Wait for it, up to PATIENCE in a row.
                let since = *blocked[i].get_or_insert_with(Instant::now);
                if since.elapsed() < PATIENCE {
                    blocking = Some(i);
                } else if since.elapsed() < PATIENCE + STEP {
                    tracing::warn!(
                        topic = lane.topic,
                        partition = lane.partition,
                        "the broker sent nothing from this partition for {PATIENCE:?} though it has a \
                         backlog; reading the others ahead of it (days may be evaluated incomplete \
                         first and corrected when its records come)"
                    );
                }
            }
            let any = heads.iter().any(Option::is_some);
            let wait_on = match (blocking, any) {
                (Some(i), _) if waited < CALL_WAIT.max(wait) => Some(i),
                (Some(_), _) => break,
                (None, false) if n == 0 && waited < wait => Some(0),
                (None, false) => break,
                (None, true) => None,
            };
            if let Some(i) = wait_on {
                let Some(lane) = lanes.get(i) else { break };
                let t0 = Instant::now();
                match lane.pop(STEP) {
                    Ok(m) => heads[i] = m.map(|m| keyed(Head::Borrowed(m), order)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                waited += t0.elapsed();
                continue;
            }
            let pick = earliest(
                heads
                    .iter()
                    .enumerate()
                    .filter_map(|(i, h)| h.as_ref().map(|(_, key)| (i, *key))),
            );
            let Some(i) = pick else { break };
            let Some((head, key)) = heads[i].take() else {
                break;
            };
            if hold.is_some_and(|limit| key > limit) {
                // Other sources are behind: this record waits for them.
                heads[i] = Some((head, key));
                if n == 0 {
                    std::thread::sleep(wait.min(Duration::from_millis(1)));
                }
                break;
            }
            let record = head.record();
            next[i] = record.offset + 1;
            last_key[i] = Some(key);
            let flow = on_record(record);
            n += 1;
            if flow.is_break() {
                break;
            }
        }
        // Records taken from a queue and not handed over stay first in line for the next call.
        for (slot, head) in kept.iter_mut().zip(heads) {
            if let Some((h, key)) = head {
                *slot = Some((h.into_owned(), key));
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    fn order_by(&mut self, key: OrderKey) {
        self.order = Some(key);
    }

    fn next_key(&self) -> Option<i64> {
        let waiting = |i: usize| self.blocked[i].is_none_or(|since| since.elapsed() < PATIENCE);
        self.lanes
            .iter()
            .enumerate()
            .filter_map(|(i, lane)| match &self.kept[i] {
                Some((_, key)) => Some(*key),
                None if !self.stray[i].is_empty() => Some(self.last_key[i].unwrap_or(i64::MIN)),
                None if self.next[i] < lane.backlog_end && waiting(i) => {
                    Some(self.last_key[i].unwrap_or(i64::MIN))
                }
                None => None,
            })
            .min()
    }

    fn hold_after(&mut self, key: Option<i64>) {
        self.hold = key;
    }
}

#[cfg(test)]
mod tests {
    use super::earliest;

    #[test]
    fn the_smallest_key_goes_first_then_the_lower_lane() {
        assert_eq!(earliest([]), None);
        assert_eq!(earliest([(0, 30), (1, 10), (2, 20)]), Some(1));
        assert_eq!(earliest([(2, 10), (1, 10)]), Some(1));
        assert_eq!(earliest([(0, 5), (3, i64::MIN)]), Some(3));
    }
}
