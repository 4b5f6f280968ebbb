//! An in-process log with the same semantics as a broker's: topics of partitions of records
//! with offsets and timestamps, watermarks, offsets for times, sources that refuse positions
//! the log no longer has. Tests use it to drive the job without a broker, and to do what a
//! real broker makes hard: drop a partition's head (retention) or lose a topic's data.

use crate::reader::{Fetched, Lanes, MergedSource};
use crate::{
    Error, ErrorKind, Log, LogProducer, LogSource, Position, RecordRef, Result, Retention,
    SendFuture, TopicRetention, TopicSpec, TopicState, Watermarks,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Clone)]
struct Entry {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    timestamp_ms: i64,
    /// A record the log holds but never hands to readers (a Kafka transaction marker).
    control: bool,
}

#[derive(Debug, Default)]
struct Partition {
    /// Offset of `entries[0]`.
    low: i64,
    entries: VecDeque<Entry>,
}

impl Partition {
    fn high(&self) -> i64 {
        self.low + self.entries.len() as i64
    }
}

#[derive(Debug)]
struct Topic {
    partitions: Vec<Partition>,
    retention: Retention,
}

#[derive(Debug, Default)]
struct State {
    topics: BTreeMap<String, Topic>,
    /// The last timestamp handed out: timestamps are strictly increasing.
    clock_ms: i64,
    /// Reads fail as if the broker could not be reached.
    unreachable: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    appended: Condvar,
}

/// The in-process log. Cloning gives another handle to the same log.
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    shared: Arc<Shared>,
}

fn unknown_topic(topic: &str) -> Error {
    Error::new(ErrorKind::UnknownTopic, topic, "the topic does not exist")
}

fn unknown_partition(topic: &str, partition: i32) -> Error {
    Error::new(
        ErrorKind::UnknownPartition,
        topic,
        format!("no partition {partition}"),
    )
}

impl Topic {
    fn partition(&self, topic: &str, partition: i32) -> Result<&Partition> {
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .ok_or_else(|| unknown_partition(topic, partition))
    }

    fn partition_mut(&mut self, topic: &str, partition: i32) -> Result<&mut Partition> {
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.partitions.get_mut(i))
            .ok_or_else(|| unknown_partition(topic, partition))
    }
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a record to one partition with the next log timestamp.
    pub fn append(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Result<Position> {
        self.push(topic, partition, key, payload, false)
            .map(|(p, _)| p)
    }

    /// Appends a record and returns its position and log timestamp (its version, for a
    /// reader keyed by version).
    pub fn append_timed(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Result<(Position, i64)> {
        self.push(topic, partition, key, payload, false)
    }

    /// Appends a record that readers never see but that takes an offset, as a Kafka
    /// transaction's commit marker does.
    pub fn append_control(&self, topic: &str, partition: i32) -> Result<Position> {
        self.push(topic, partition, None, None, true)
            .map(|(p, _)| p)
    }

    fn push(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        control: bool,
    ) -> Result<(Position, i64)> {
        let mut st = self.lock();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        st.clock_ms = now.max(st.clock_ms + 1);
        let ts = st.clock_ms;
        let t = st
            .topics
            .get_mut(topic)
            .ok_or_else(|| unknown_topic(topic))?;
        let p = t.partition_mut(topic, partition)?;
        p.entries.push_back(Entry {
            key: key.map(<[u8]>::to_vec),
            payload: payload.map(<[u8]>::to_vec),
            timestamp_ms: ts,
            control,
        });
        let offset = p.high() - 1;
        drop(st);
        self.shared.appended.notify_all();
        Ok((
            Position {
                topic: topic.to_string(),
                partition,
                offset,
            },
            ts,
        ))
    }

    /// While set, every read fails as if the broker could not be reached (retryable).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.lock().unreachable = unreachable;
        self.shared.appended.notify_all();
    }

    /// Drops the records below `offset` (what retention does to a partition's head).
    pub fn truncate_before(&self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        let mut st = self.lock();
        let t = st
            .topics
            .get_mut(topic)
            .ok_or_else(|| unknown_topic(topic))?;
        if let Ok(p) = t.partition_mut(topic, partition) {
            while p.low < offset && !p.entries.is_empty() {
                p.entries.pop_front();
                p.low += 1;
            }
        }
        Ok(())
    }

    /// Deletes the topic's data and creates it again, empty, with offsets from 0 (a broker whose
    /// data was lost, or a topic deleted and recreated).
    pub fn recreate(&self, topic: &str) -> Result<()> {
        let mut st = self.lock();
        let t = st
            .topics
            .get_mut(topic)
            .ok_or_else(|| unknown_topic(topic))?;
        for p in &mut t.partitions {
            *p = Partition::default();
        }
        Ok(())
    }

    /// Gives the topic `count` partitions (adds empty ones; never removes), as an operator
    /// adding partitions to a live topic does.
    pub fn add_partitions(&self, topic: &str, count: usize) -> Result<()> {
        let mut st = self.lock();
        let t = st
            .topics
            .get_mut(topic)
            .ok_or_else(|| unknown_topic(topic))?;
        while t.partitions.len() < count {
            t.partitions.push(Partition::default());
        }
        Ok(())
    }

    /// The partition a key goes to (FNV-1a, so a key's records stay in order in one partition).
    pub fn partition_for(key: &[u8], partitions: usize) -> i32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % partitions.max(1) as u64) as i32
    }
}

impl Log for MemoryLog {
    fn describe(&self) -> String {
        "memory log".to_string()
    }

    fn wait_ready(&self, _timeout: Duration) -> Result<()> {
        Ok(())
    }

    fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        let st = self.lock();
        let t = st.topics.get(topic).ok_or_else(|| unknown_topic(topic))?;
        Ok((0..t.partitions.len() as i32).collect())
    }

    fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>> {
        let st = self.lock();
        let t = st.topics.get(topic).ok_or_else(|| unknown_topic(topic))?;
        Ok(t.partitions
            .iter()
            .enumerate()
            .map(|(i, p)| Watermarks {
                partition: i as i32,
                low: p.low,
                high: p.high(),
            })
            .collect())
    }

    fn offset_for_time(&self, topic: &str, partition: i32, ms: i64) -> Result<Option<i64>> {
        let st = self.lock();
        let t = st.topics.get(topic).ok_or_else(|| unknown_topic(topic))?;
        let p = t.partition(topic, partition)?;
        Ok(p.entries
            .iter()
            .position(|e| e.timestamp_ms >= ms)
            .map(|i| p.low + i as i64))
    }

    fn ensure_topic(&self, spec: &TopicSpec) -> Result<TopicState> {
        if spec.partitions < 1 {
            return Err(Error::new(
                ErrorKind::Config,
                &spec.name,
                "a topic needs at least one partition",
            ));
        }
        let mut st = self.lock();
        if st.topics.contains_key(&spec.name) {
            return Ok(TopicState::Existed);
        }
        st.topics.insert(
            spec.name.clone(),
            Topic {
                partitions: (0..spec.partitions).map(|_| Partition::default()).collect(),
                retention: spec.retention,
            },
        );
        Ok(TopicState::Created)
    }

    fn retention(&self, topic: &str) -> Result<TopicRetention> {
        let st = self.lock();
        let t = st.topics.get(topic).ok_or_else(|| unknown_topic(topic))?;
        let ms = match t.retention {
            Retention::Infinite => -1,
            Retention::BrokerDefault => 7 * 24 * 3_600_000,
            Retention::Ms(ms) => ms,
        };
        Ok(TopicRetention {
            ms: Some(ms),
            bytes: Some(-1),
        })
    }

    fn open_source(&self, start: &[Position]) -> Result<Box<dyn LogSource>> {
        {
            let st = self.lock();
            for p in start {
                let t = st
                    .topics
                    .get(&p.topic)
                    .ok_or_else(|| unknown_topic(&p.topic))?;
                if p.partition < 0 || p.partition as usize >= t.partitions.len() {
                    return Err(Error::new(
                        ErrorKind::UnknownPartition,
                        &p.topic,
                        format!("no partition {}", p.partition),
                    ));
                }
            }
        }
        let st = self.lock();
        let lanes = start
            .iter()
            .map(|p| MemoryLane {
                topic: p.topic.clone(),
                partition: p.partition,
                next: p.offset,
                backlog_end: st
                    .topics
                    .get(&p.topic)
                    .and_then(|t| t.partitions.get(p.partition as usize))
                    .map_or(0, Partition::high),
            })
            .collect();
        drop(st);
        let offsets: Vec<i64> = start.iter().map(|p| p.offset).collect();
        Ok(Box::new(MergedSource::new(
            MemoryLanes {
                log: self.clone(),
                lanes,
            },
            &offsets,
        )))
    }

    fn producer(&self) -> Result<Box<dyn LogProducer>> {
        Ok(Box::new(self.clone()))
    }
}

impl LogProducer for MemoryLog {
    fn send<'a>(&'a self, topic: &'a str, key: &'a [u8], payload: &'a [u8]) -> SendFuture<'a> {
        let result = self.partitions(topic).and_then(|ps| {
            let p = Self::partition_for(key, ps.len());
            self.append(topic, p, Some(key), Some(payload))
        });
        Box::pin(std::future::ready(result))
    }

    fn flush(&self, _timeout: Duration) -> Result<()> {
        Ok(())
    }
}

/// One partition a memory source reads.
struct MemoryLane {
    topic: String,
    partition: i32,
    /// The next offset to fetch.
    next: i64,
    backlog_end: i64,
}

/// A fetched record.
pub struct MemoryRecord {
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    timestamp_ms: i64,
}

/// The memory log's partitions for [`MergedSource`]: the same merge, hold and resume code as
/// the Kafka backend.
struct MemoryLanes {
    log: MemoryLog,
    lanes: Vec<MemoryLane>,
}

impl MemoryLanes {
    /// One try: the lane's next record, its end, or an error.
    fn try_fetch(st: &State, lane: &mut MemoryLane) -> Result<Option<Fetched<MemoryRecord>>> {
        if st.unreachable {
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!("reading {}/{}", lane.topic, lane.partition),
                "the memory log is unreachable (a test said so)",
            ));
        }
        let t = st
            .topics
            .get(&lane.topic)
            .ok_or_else(|| unknown_topic(&lane.topic))?;
        let p = t.partition(&lane.topic, lane.partition)?;
        if lane.next < p.low || lane.next > p.high() {
            return Err(Error::new(
                ErrorKind::OffsetOutOfRange,
                format!("{}/{}", lane.topic, lane.partition),
                format!(
                    "offset {} is not in the log (start {}, end {})",
                    lane.next,
                    p.low,
                    p.high()
                ),
            ));
        }
        while lane.next < p.high() {
            let e = &p.entries[(lane.next - p.low) as usize];
            let offset = lane.next;
            lane.next += 1;
            if !e.control {
                return Ok(Some(Fetched::Record(MemoryRecord {
                    offset,
                    key: e.key.clone(),
                    payload: e.payload.clone(),
                    timestamp_ms: e.timestamp_ms,
                })));
            }
        }
        Ok(None)
    }
}

impl Lanes for MemoryLanes {
    type Msg = MemoryRecord;

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

    fn view<'a>(&'a self, lane: usize, m: &'a MemoryRecord) -> RecordRef<'a> {
        let (topic, partition) = self.name(lane);
        RecordRef {
            topic,
            partition,
            offset: m.offset,
            key: m.key.as_deref(),
            payload: m.payload.as_deref(),
            timestamp_ms: Some(m.timestamp_ms),
        }
    }

    fn fetch(&mut self, lane: usize, wait: Duration) -> Result<Fetched<MemoryRecord>> {
        let Some(l) = self.lanes.get_mut(lane) else {
            return Ok(Fetched::Nothing);
        };
        let shared = Arc::clone(&self.log.shared);
        let st = self.log.lock();
        if let Some(f) = Self::try_fetch(&st, l)? {
            return Ok(f);
        }
        if wait.is_zero() {
            return Ok(Fetched::End { next: l.next });
        }
        let st = shared
            .appended
            .wait_timeout(st, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
        Ok(Self::try_fetch(&st, l)?.unwrap_or(Fetched::End { next: l.next }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_to_end;

    fn log_with(topic: &str, partitions: i32) -> MemoryLog {
        let log = MemoryLog::new();
        let created = log.ensure_topic(&TopicSpec::kept(topic, partitions));
        assert_eq!(created.ok(), Some(TopicState::Created));
        log
    }

    #[test]
    fn records_keep_offsets_and_order() -> Result<()> {
        let log = log_with("t", 2);
        for i in 0..5u8 {
            log.append("t", i32::from(i % 2), None, Some(&[i]))?;
        }
        let w = log.watermarks("t")?;
        assert_eq!((w[0].low, w[0].high, w[1].high), (0, 3, 2));
        let all = read_to_end(&log, "t", Duration::from_secs(1))?;
        assert_eq!(all.len(), 5);
        assert_eq!(all[2].payload.as_deref(), Some(&[4u8][..]));
        assert_eq!(
            log.ensure_topic(&TopicSpec::kept("t", 2))?,
            TopicState::Existed
        );
        Ok(())
    }

    #[test]
    fn positions_outside_the_log_are_errors() -> Result<()> {
        let log = log_with("t", 1);
        for _ in 0..4 {
            log.append("t", 0, None, Some(b"x"))?;
        }
        log.truncate_before("t", 0, 2)?;
        let pos = |o| Position {
            topic: "t".into(),
            partition: 0,
            offset: o,
        };
        let mut below = log.open_source(&[pos(1)])?;
        let err = below.poll_batch(10, Duration::ZERO, &mut |_| crate::Take::Next);
        assert!(matches!(err, Err(e) if e.kind == ErrorKind::OffsetOutOfRange));
        log.recreate("t")?;
        let mut beyond = log.open_source(&[pos(4)])?;
        let err = beyond.poll_batch(10, Duration::ZERO, &mut |_| crate::Take::Next);
        assert!(
            matches!(err, Err(e) if e.kind == ErrorKind::OffsetOutOfRange && !e.is_retryable())
        );
        Ok(())
    }

    #[test]
    fn offsets_for_times_and_breaks() -> Result<()> {
        let log = log_with("t", 1);
        let mut stamps = Vec::new();
        for _ in 0..3 {
            log.append("t", 0, None, Some(b"x"))?;
        }
        let mut src = log.open_source(&[Position {
            topic: "t".into(),
            partition: 0,
            offset: 0,
        }])?;
        let n = src.poll_batch(10, Duration::ZERO, &mut |r| {
            stamps.push(r.timestamp_ms.expect("memory records have timestamps"));
            crate::Take::Last
        })?;
        assert_eq!(n, 1);
        assert_eq!(log.offset_for_time("t", 0, stamps[0] + 1)?, Some(1));
        assert_eq!(log.offset_for_time("t", 0, i64::MAX)?, None);
        Ok(())
    }

    #[test]
    fn the_tail_is_each_partitions_last_records() -> Result<()> {
        let log = log_with("t", 3);
        for i in 0..7u8 {
            log.append("t", 0, Some(b"k"), Some(&[i]))?;
        }
        log.append("t", 1, None, Some(b"one"))?;
        // A partition ending in a transaction marker is read to its end all the same.
        log.append("t", 2, None, Some(b"two"))?;
        log.append_control("t", 2)?;
        let tail = crate::read_tail(&log, "t", 3, Duration::from_secs(5))?;
        let got: Vec<(i32, i64)> = tail
            .iter()
            .map(|r| (r.position.partition, r.position.offset))
            .collect();
        // Partition 0's last three, and the others' only records.
        assert_eq!(got, [(0, 4), (0, 5), (0, 6), (1, 0), (2, 0)]);
        assert_eq!(tail[2].payload.as_deref(), Some(&[6u8][..]));
        assert_eq!(tail[0].key.as_deref(), Some(&b"k"[..]));
        // A log whose head was cut: never below its start.
        log.truncate_before("t", 0, 6)?;
        let tail = crate::read_tail(&log, "t", 3, Duration::from_secs(5))?;
        let got: Vec<(i32, i64)> = tail
            .iter()
            .map(|r| (r.position.partition, r.position.offset))
            .collect();
        assert_eq!(got, [(0, 6), (1, 0), (2, 0)]);
        assert!(crate::read_tail(&log, "t", 0, Duration::from_secs(5))?.is_empty());
        Ok(())
    }
}
