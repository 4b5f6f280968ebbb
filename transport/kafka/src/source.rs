//! The job's consumer: assigned partitions, each on its own librdkafka queue, read through the
//! shared merged reader (`stockflow_transport::reader`), which merges them by an order key (the
//! job's: trading day) while they catch up.
//!
//! Why one queue per partition: with one shared queue librdkafka hands over whatever the
//! broker's fetch responses hold, and a broker may fill them partition by partition (tansu did:
//! a 500,000-record backlog came as all of partition 0, then 1, then 2, with partition 3 at
//! offset 503). The job would then evaluate ten years of days with a quarter of the closes
//! missing and correct every one of them later.
//!
//! A partition's end is reported (`enable.partition.eof`) with the consumer's position there,
//! which is past records the broker holds but never hands over (transaction markers): a
//! partition ending in one is caught up all the same.

use crate::map_error;
use crate::SourceContext;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::Offset;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockflow_transport::reader::{Fetched, Lanes, MergedSource};
use stockflow_transport::RecordRef;
use stockflow_transport::Result;

/// One assigned partition.
pub(crate) struct Lane {
    pub topic: String,
    pub partition: i32,
    /// The log end when the source was opened: below it the partition has a backlog.
    pub backlog_end: i64,
    pub queue: PartitionQueue<SourceContext>,
}

/// The assigned partitions of one consumer.
pub struct KafkaLanes {
    /// Taken only when the lanes are dropped.
    consumer: Option<Arc<BaseConsumer<SourceContext>>>,
    lanes: Vec<Lane>,
    /// Per lane: its end was reported but its position was not known yet (librdkafka reports
    /// an end once): asked again at later fetches that find nothing, at most every
    /// `POSITION_EVERY` (each ask is a round trip through librdkafka's main thread).
    end_pending: Vec<bool>,
    /// Per lane: when its position was last asked for.
    asked: Vec<Option<Instant>>,
    /// Per lane: the offset after the last record handed over, or the start.
    next: Vec<i64>,
}

/// How often a lane whose end was reported asks for its position while librdkafka does not
/// know it. librdkafka knows a partition's position only once a record of it was consumed: a
/// partition read from its end (the holdings after a restart) has none, and asking at every
/// fetch made a restart's catch-up six times slower than a first run's (a round trip to
/// librdkafka's main thread per empty lane per poll).
const POSITION_EVERY: Duration = Duration::from_millis(250);

/// The job's Kafka source.
pub type KafkaSource = MergedSource<KafkaLanes>;

pub(crate) fn source(
    consumer: Arc<BaseConsumer<SourceContext>>,
    lanes: Vec<Lane>,
    start: &[i64],
) -> KafkaSource {
    MergedSource::new(
        KafkaLanes {
            consumer: Some(consumer),
            end_pending: vec![false; lanes.len()],
            asked: vec![None; lanes.len()],
            next: (0..lanes.len())
                .map(|i| start.get(i).copied().unwrap_or(0))
                .collect(),
            lanes,
        },
        start,
    )
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

impl KafkaLanes {
    /// The consumer's position in `lane` (the offset after the last record it consumed there,
    /// control records included).
    fn position(&self, lane: usize) -> Option<i64> {
        let l = self.lanes.get(lane)?;
        let list = self.consumer.as_ref()?.position().ok()?;
        match list.find_partition(&l.topic, l.partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }
}

/// Closing a librdkafka consumer waits for its threads (about 100 ms): done on a thread of its
/// own, so that neither the job's start (after the check of its log) nor its end waits for it.
impl Drop for KafkaLanes {
    fn drop(&mut self) {
        let lanes = std::mem::take(&mut self.lanes);
        let consumer = self.consumer.take();
        let closing = std::thread::Builder::new()
            .name("stockflow-consumer-close".into())
            .spawn(move || drop((lanes, consumer)));
        if let Err(e) = closing {
            tracing::debug!("closing the consumer on this thread: {e}");
        }
    }
}

impl KafkaLanes {
    /// After an end was reported for `lane`: the end with the position there, once known.
    fn end_of(&mut self, lane: usize) -> Fetched<OwnedMessage> {
        if !self.end_pending.get(lane).copied().unwrap_or(false) {
            return Fetched::Nothing;
        }
        let now = Instant::now();
        if self
            .asked
            .get(lane)
            .copied()
            .flatten()
            .is_some_and(|at| now.duration_since(at) < POSITION_EVERY)
        {
            return Fetched::Nothing;
        }
        if let Some(a) = self.asked.get_mut(lane) {
            *a = Some(now);
        }
        let known = self.position(lane).or_else(|| {
            // Nothing consumed, so no position: a lane read from its log end at start has
            // nothing between its start and its end.
            let l = self.lanes.get(lane)?;
            let next = self.next.get(lane).copied()?;
            (next >= l.backlog_end).then_some(next)
        });
        match known {
            Some(next) => {
                if let Some(p) = self.end_pending.get_mut(lane) {
                    *p = false;
                }
                Fetched::End { next }
            }
            None => Fetched::Nothing,
        }
    }
}

impl Lanes for KafkaLanes {
    type Msg = OwnedMessage;

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

    fn view<'a>(&'a self, _lane: usize, m: &'a OwnedMessage) -> RecordRef<'a> {
        record_of(m)
    }

    fn fetch(&mut self, lane: usize, wait: Duration) -> Result<Fetched<OwnedMessage>> {
        let Some(l) = self.lanes.get(lane) else {
            return Ok(Fetched::Nothing);
        };
        match l.queue.poll(wait) {
            None => Ok(self.end_of(lane)),
            Some(Ok(m)) => {
                if let Some(p) = self.end_pending.get_mut(lane) {
                    *p = false;
                }
                if let Some(n) = self.next.get_mut(lane) {
                    *n = (*n).max(m.offset().saturating_add(1));
                }
                Ok(Fetched::Record(m.detach()))
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                if let Some(p) = self.end_pending.get_mut(lane) {
                    *p = true;
                }
                if let Some(a) = self.asked.get_mut(lane) {
                    *a = None;
                }
                Ok(self.end_of(lane))
            }
            Some(Err(e)) => Err(map_error(
                format!("reading {}/{}", l.topic, l.partition),
                &e,
            )),
        }
    }

    /// Serves the consumer's events: errors that concern no partition come out here, and
    /// records fetched before a partition's queue was split off (handed over too, never
    /// dropped).
    fn shared(&mut self, found: &mut dyn FnMut(usize, OwnedMessage)) -> Result<()> {
        let Some(consumer) = self.consumer.as_ref() else {
            return Ok(());
        };
        while let Some(polled) = consumer.poll(Duration::ZERO) {
            let m = match polled {
                Ok(m) => m,
                // An end reported before the partition's queue was split: its lane asks for
                // the position at its next fetch (the event names the partition only).
                Err(KafkaError::PartitionEOF(partition)) => {
                    for (i, l) in self.lanes.iter().enumerate() {
                        if l.partition == partition {
                            if let Some(p) = self.end_pending.get_mut(i) {
                                *p = true;
                            }
                            if let Some(a) = self.asked.get_mut(i) {
                                *a = None;
                            }
                        }
                    }
                    continue;
                }
                Err(e) => return Err(map_error("reading from the broker", &e)),
            };
            let lane = self
                .lanes
                .iter()
                .position(|l| l.partition == m.partition() && l.topic == m.topic());
            match lane {
                Some(i) => {
                    if let Some(n) = self.next.get_mut(i) {
                        *n = (*n).max(m.offset().saturating_add(1));
                    }
                    found(i, m.detach())
                }
                None => tracing::warn!(
                    topic = m.topic(),
                    partition = m.partition(),
                    "a record of a partition this source does not read; ignored"
                ),
            }
        }
        Ok(())
    }
}
