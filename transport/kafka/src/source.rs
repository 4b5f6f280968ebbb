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
//!
//! Why records are taken out of librdkafka early ([`KafkaLanes`]'s `fill`): librdkafka keeps
//! a queued record as an op of about 430 bytes, and keeps each fetch response's buffer until
//! the last of its records is freed; a record here ([`KafkaRecord`]) is its bytes and 40. So
//! librdkafka queues at most 1,000 records and one response a partition
//! (`queued.min.messages`, set in `open_source`), and each partition's records wait here, up
//! to [`LOCAL_RECORDS`], for the merge. On a 500,000-record catch-up librdkafka's queues held
//! 33 MB of ops and 17 MB of response buffers at the peak before (docs/benchmarks.md).

use crate::map_error;
use crate::SourceContext;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::Offset;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockflow_transport::reader::{Fetched, Lanes, MergedSource};
use stockflow_transport::RecordRef;
use stockflow_transport::{Error, Result};

/// The most records a partition keeps fetched out of librdkafka and not yet taken by the merge.
/// Past it librdkafka's queue for the partition fills (to `queued.min.messages` and one fetch
/// response) and then it stops fetching the partition until the merge takes some. About 0.9 MB
/// a partition at the job's ~70-byte records; a partition is read at about 12,000 records a
/// second in a catch-up, so this is most of a second of reading, against the 30 ms of a fetch.
/// A power of two: a deque's capacity doubles as it grows and never shrinks, so 10,000 (as it
/// was) left a 16,384-record array in a lane that filled (1 MiB of 64-byte records; heaptrack
/// found 7.3 MB of them at a 2,500-day catch-up's peak, the largest single item after the
/// merge's windows).
pub const LOCAL_RECORDS: usize = 8_192;

/// A fetched record, compact (40 bytes and its bytes; 64 with `Option` fields): the topic and
/// partition are its lane's, the key and payload share one allocation. A catch-up keeps up to a
/// year of records a partition in the merge's window and `LOCAL_RECORDS` in each lane's deque,
/// so every byte here counts about 100,000 times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    offset: i64,
    /// The log time, if the record has one (`HAS_TIMESTAMP`).
    timestamp_ms: i64,
    /// The key's length at the start of `bytes`, if the record has a key (`HAS_KEY`).
    key_len: u32,
    /// `HAS_KEY`, `HAS_PAYLOAD` (the rest of `bytes`), `HAS_TIMESTAMP`.
    flags: u8,
    bytes: Box<[u8]>,
}

const HAS_KEY: u8 = 1;
const HAS_PAYLOAD: u8 = 2;
const HAS_TIMESTAMP: u8 = 4;

impl KafkaRecord {
    fn new(
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Self {
        // Kafka's record format gives a key's length as a signed 32-bit number, so a key
        // always fits in `key_len` (a longer one cannot come off the wire; it would be dropped).
        let key = key.filter(|k| u32::try_from(k.len()).is_ok());
        let k = key.unwrap_or_default();
        let p = payload.unwrap_or_default();
        let mut bytes = Vec::with_capacity(k.len().saturating_add(p.len()));
        bytes.extend_from_slice(k);
        bytes.extend_from_slice(p);
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        KafkaRecord {
            offset,
            timestamp_ms: timestamp_ms.unwrap_or(0),
            key_len: key.map_or(0, |k| u32::try_from(k.len()).unwrap_or(0)),
            flags: flag(key.is_some(), HAS_KEY)
                | flag(payload.is_some(), HAS_PAYLOAD)
                | flag(timestamp_ms.is_some(), HAS_TIMESTAMP),
            bytes: bytes.into_boxed_slice(),
        }
    }

    fn of(m: &BorrowedMessage<'_>) -> Self {
        Self::new(m.offset(), m.timestamp().to_millis(), m.key(), m.payload())
    }

    fn key_end(&self) -> usize {
        usize::try_from(self.key_len).unwrap_or(usize::MAX)
    }

    fn key(&self) -> Option<&[u8]> {
        if self.flags & HAS_KEY == 0 {
            return None;
        }
        self.bytes.get(..self.key_end())
    }

    fn payload(&self) -> Option<&[u8]> {
        if self.flags & HAS_PAYLOAD == 0 {
            return None;
        }
        self.bytes.get(self.key_end()..)
    }

    fn timestamp_ms(&self) -> Option<i64> {
        (self.flags & HAS_TIMESTAMP != 0).then_some(self.timestamp_ms)
    }

    fn view<'a>(&'a self, topic: &'a str, partition: i32) -> RecordRef<'a> {
        RecordRef {
            topic,
            partition,
            offset: self.offset,
            key: self.key(),
            payload: self.payload(),
            timestamp_ms: self.timestamp_ms(),
        }
    }
}

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
    /// Per lane: the offset after the last record taken from librdkafka, or the start.
    next: Vec<i64>,
    /// Per lane: records taken from librdkafka, not yet by the merge (at most `LOCAL_RECORDS`;
    /// `fetch` takes from librdkafka directly once it is empty).
    local: Vec<VecDeque<KafkaRecord>>,
    /// Per lane: an error librdkafka reported after the records in `local`, handed over
    /// after them.
    failed: Vec<Option<Error>>,
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
            local: (0..lanes.len()).map(|_| VecDeque::new()).collect(),
            failed: (0..lanes.len()).map(|_| None).collect(),
            lanes,
        },
        start,
    )
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
    /// `lane`'s next record from librdkafka, waiting up to `wait`: None when nothing came or
    /// its end was reported (then `end_pending`).
    fn poll_lane(&mut self, lane: usize, wait: Duration) -> Result<Option<KafkaRecord>> {
        let Some(l) = self.lanes.get(lane) else {
            return Ok(None);
        };
        match l.queue.poll(wait) {
            None => Ok(None),
            Some(Ok(m)) => {
                let r = KafkaRecord::of(&m);
                if let Some(p) = self.end_pending.get_mut(lane) {
                    *p = false;
                }
                if let Some(n) = self.next.get_mut(lane) {
                    *n = (*n).max(r.offset.saturating_add(1));
                }
                Ok(Some(r))
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                if let Some(p) = self.end_pending.get_mut(lane) {
                    *p = true;
                }
                if let Some(a) = self.asked.get_mut(lane) {
                    *a = None;
                }
                Ok(None)
            }
            Some(Err(e)) => Err(map_error(
                format!("reading {}/{}", l.topic, l.partition),
                &e,
            )),
        }
    }

    /// After an end was reported for `lane`: the end with the position there, once known.
    fn end_of(&mut self, lane: usize) -> Fetched<KafkaRecord> {
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
    type Msg = KafkaRecord;

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

    fn view<'a>(&'a self, lane: usize, m: &'a KafkaRecord) -> RecordRef<'a> {
        let (topic, partition) = self.name(lane);
        m.view(topic, partition)
    }

    fn fetch(&mut self, lane: usize, wait: Duration) -> Result<Fetched<KafkaRecord>> {
        if let Some(r) = self.local.get_mut(lane).and_then(VecDeque::pop_front) {
            return Ok(Fetched::Record(r));
        }
        if let Some(e) = self.failed.get_mut(lane).and_then(Option::take) {
            return Err(e);
        }
        match self.poll_lane(lane, wait)? {
            Some(r) => Ok(Fetched::Record(r)),
            None => Ok(self.end_of(lane)),
        }
    }

    /// Takes what librdkafka has queued for each partition, up to `LOCAL_RECORDS` a
    /// partition, so that it fetches the next response while the merge works.
    fn fill(&mut self) {
        for lane in 0..self.lanes.len() {
            loop {
                let room = self
                    .local
                    .get(lane)
                    .is_some_and(|q| q.len() < LOCAL_RECORDS);
                let failed = self.failed.get(lane).is_some_and(Option::is_some);
                if !room || failed {
                    break;
                }
                match self.poll_lane(lane, Duration::ZERO) {
                    Ok(Some(r)) => {
                        if let Some(q) = self.local.get_mut(lane) {
                            q.push_back(r);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        if let Some(f) = self.failed.get_mut(lane) {
                            *f = Some(e);
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Serves the consumer's events: errors that concern no partition come out here, and
    /// records fetched before a partition's queue was split off (handed over too, never
    /// dropped).
    fn shared(&mut self, found: &mut dyn FnMut(usize, KafkaRecord)) -> Result<()> {
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
                    found(i, KafkaRecord::of(&m))
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

#[cfg(test)]
mod tests {
    use super::KafkaRecord;
    use proptest::prelude::*;

    #[test]
    fn absent_and_empty_keys_and_payloads_stay_apart() {
        type Bytes<'a> = Option<&'a [u8]>;
        let cases: [(Bytes, Bytes); 6] = [
            (Some(b"SE1"), Some(br#"{"close":1}"#)),
            (None, Some(b"x")),
            (Some(b""), Some(b"x")),
            (Some(b"k"), None),
            (Some(b"k"), Some(b"")),
            (None, None),
        ];
        for (key, payload) in cases {
            let r = KafkaRecord::new(7, Some(1_700_000_000_000), key, payload);
            let v = r.view("t", 3);
            assert_eq!((v.key, v.payload), (key, payload), "{key:?} {payload:?}");
            assert_eq!((v.topic, v.partition, v.offset), ("t", 3, 7));
            assert_eq!(v.timestamp_ms, Some(1_700_000_000_000));
        }
        let r = KafkaRecord::new(0, None, None, None);
        assert_eq!(r.view("t", 0).timestamp_ms, None, "no log time stays none");
        let r = KafkaRecord::new(0, Some(0), None, None);
        assert_eq!(
            r.view("t", 0).timestamp_ms,
            Some(0),
            "a log time of 0 stays 0"
        );
    }

    /// A catch-up holds about 100,000 of them (the merge's windows, the lanes' deques).
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_record_is_forty_bytes_besides_its_bytes() {
        assert_eq!(std::mem::size_of::<KafkaRecord>(), 40);
    }

    proptest! {
        #[test]
        fn a_record_reads_back_what_it_was_made_of(
            offset in any::<i64>(),
            ts in proptest::option::of(any::<i64>()),
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            payload in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        ) {
            let r = KafkaRecord::new(offset, ts, key.as_deref(), payload.as_deref());
            let v = r.view("topic", 1);
            prop_assert_eq!(v.offset, offset);
            prop_assert_eq!(v.timestamp_ms, ts);
            prop_assert_eq!(v.key, key.as_deref());
            prop_assert_eq!(v.payload, payload.as_deref());
        }
    }
}
