//! Where each source partition starts: the stored offsets (resume), or `--from`, checked against
//! what the log holds now. A log that lost records the job had read is refused, not trusted; a
//! log whose head is gone (retention) is fine, because the state covering it is stored.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;
use stockflow_core::{Last, RecordMark};
use stockflow_transport::{ErrorKind, Log, Position, Record, Watermarks};

/// How long the check of the log's identity may take to read the records it compares.
const IDENTITY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the sources start (`--from`). Without it a job resumes from its stored offsets (or
/// reads each topic from its start when nothing is stored).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StartSpec {
    #[default]
    Resume,
    /// Both topics from their first record.
    Earliest,
    /// The price topic from its end (what arrives from now on).
    Latest,
    /// Price partitions from these offsets; partitions not listed resume.
    Offsets(BTreeMap<i32, i64>),
    /// Price partitions from the first record at or after this time (ms since the epoch).
    Time(i64),
}

impl FromStr for StartSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("earliest") {
            return Ok(StartSpec::Earliest);
        }
        if s.eq_ignore_ascii_case("latest") {
            return Ok(StartSpec::Latest);
        }
        if let Some(list) = s.strip_prefix("offsets=") {
            let mut map = BTreeMap::new();
            for item in list.split(',').filter(|i| !i.trim().is_empty()) {
                let (p, o) = item.split_once(':').ok_or_else(|| {
                    Error::Config(format!("expected PARTITION:OFFSET, got {item:?}"))
                })?;
                let p: i32 = p
                    .trim()
                    .parse()
                    .map_err(|_| Error::Config(format!("bad partition {p:?}")))?;
                let o: i64 = o
                    .trim()
                    .parse()
                    .map_err(|_| Error::Config(format!("bad offset {o:?}")))?;
                if p < 0 || o < 0 {
                    return Err(Error::Config(format!(
                        "negative partition or offset in {item:?}"
                    )));
                }
                map.insert(p, o);
            }
            if map.is_empty() {
                return Err(Error::Config("offsets= lists no partition".into()));
            }
            return Ok(StartSpec::Offsets(map));
        }
        if let Some(t) = s.strip_prefix("time=") {
            let t = chrono::DateTime::parse_from_rfc3339(t.trim())
                .map_err(|e| Error::Config(format!("bad time {t:?} (RFC 3339 expected): {e}")))?;
            return Ok(StartSpec::Time(t.timestamp_millis()));
        }
        Err(Error::Config(format!(
            "bad start {s:?}: expected earliest, latest, offsets=P:O,... or time=RFC3339"
        )))
    }
}

/// The topics a job reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub prices: String,
    pub holdings: String,
}

/// One partition's start, and its end when the job started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStart {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    /// The end of the partition (next offset to be written) when the plan was made.
    pub end: i64,
    /// What the job knows of the records below `start` (carried into its first commit).
    pub last: Last,
}

impl PartitionStart {
    pub fn position(&self) -> Position {
        Position {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.start,
        }
    }
}

/// Where every partition of both topics starts, and what the plan noticed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartPlan {
    pub partitions: Vec<PartitionStart>,
    /// Records `--from latest` skips (between where the job stood and the end).
    pub skipped: i64,
    /// Things worth a warning (gaps below the stored offsets, explicit positions that move
    /// the job back or forward, offsets reset).
    pub notes: Vec<String>,
}

impl StartPlan {
    /// Records between the starts and the ends: what `--until-caught-up` will read.
    pub fn backlog(&self) -> i64 {
        self.partitions
            .iter()
            .map(|p| (p.end - p.start).max(0))
            .sum()
    }
}

/// What one lost partition looks like, for the refusal.
fn lost_partition(topic: &str, partition: i32, stored: i64, marks: Option<&Watermarks>) -> String {
    match marks {
        Some(w) => format!(
            "{topic}/{partition} ends at offset {} but this job had already read up to offset {stored}",
            w.high
        ),
        None => format!(
            "{topic} has no partition {partition} any more, but this job had read it up to offset {stored}"
        ),
    }
}

fn lost_log_refusal(lost: &[String]) -> Error {
    Error::Refused(format!(
        "the log is not the one this job read: {} (the topic was recreated, or the broker lost \
         its data and was written again). The job's state and tables are intact in the \
         database. To read the new log from its start on top of the stored state, run the job \
         again with --reset-offsets (`stockflow run --reset-offsets`); `stockflow status` shows \
         every partition's stored offset and log range",
        lost.join("; ")
    ))
}

/// What one replaced partition looks like, for the refusal.
fn replaced_partition(
    topic: &str,
    partition: i32,
    mark: &RecordMark,
    found: Option<&Record>,
) -> String {
    let found = match found {
        Some(r) => format!(
            "a record with log time {} and another content",
            r.timestamp_ms
                .map_or_else(|| "none".to_string(), |t| t.to_string())
        ),
        None => "no record".to_string(),
    };
    format!(
        "{topic}/{partition} holds {found} at offset {}, where this job applied a record with log \
         time {}",
        mark.offset,
        mark.timestamp_ms
            .map_or_else(|| "none".to_string(), |t| t.to_string())
    )
}

/// A partition where the job read no record below `next`, and the log holds one now.
fn filled_partition(topic: &str, partition: i32, next: i64, found: &Record) -> String {
    format!(
        "{topic}/{partition} holds a record at offset {} below offset {next}, where this job \
         read none",
        found.position.offset
    )
}

/// Whether `record` is the one `mark` names.
fn same_record(mark: &RecordMark, record: Option<&Record>) -> bool {
    record.is_some_and(|r| {
        let r = r.as_ref();
        r.offset == mark.offset && r.timestamp_ms == mark.timestamp_ms && r.mark().hash == mark.hash
    })
}

/// What the job stored: the next offset of every partition, and the mark of the last record it
/// applied there (where known).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub offsets: BTreeMap<(String, i32), i64>,
    pub marks: BTreeMap<(String, i32), Last>,
}

impl From<&stockflow_core::StoredState> for Stored {
    fn from(s: &stockflow_core::StoredState) -> Self {
        Stored {
            offsets: s.offsets.clone(),
            marks: s.marks.clone(),
        }
    }
}

/// Plans the start of every partition of both topics. A partition whose log lost records the
/// job had read (it ends before the stored offset), or holds another record where the job
/// applied one (the log was replaced), is refused, or read from its start with
/// `reset_offsets`.
pub fn plan(
    log: &dyn Log,
    topics: &Topics,
    stored: &Stored,
    spec: &StartSpec,
    reset_offsets: bool,
) -> Result<StartPlan> {
    check_offsets_spec(log, topics, spec)?;
    let mut ranges: Vec<(&String, bool, Vec<Watermarks>)> = Vec::new();
    for (topic, is_prices) in [(&topics.prices, true), (&topics.holdings, false)] {
        let marks = log.watermarks(topic).map_err(|e| missing_topic(e, topic))?;
        ranges.push((topic, is_prices, marks));
    }
    let replaced = replaced_partitions(log, stored, &ranges)?;
    let mut planner = Planner {
        log,
        stored,
        spec,
        reset_offsets,
        replaced,
        out: StartPlan::default(),
        lost: Vec::new(),
        lookups: Vec::new(),
    };
    for (topic, is_prices, marks) in &ranges {
        planner.gone_partitions(topic, marks);
        for w in marks {
            planner.partition(topic, *is_prices, w)?;
        }
    }
    planner.finish()
}

/// `--from offsets=` names partitions the prices topic has.
fn check_offsets_spec(log: &dyn Log, topics: &Topics, spec: &StartSpec) -> Result<()> {
    let StartSpec::Offsets(m) = spec else {
        return Ok(());
    };
    let parts = log
        .partitions(&topics.prices)
        .map_err(|e| missing_topic(e, &topics.prices))?;
    match m.keys().find(|p| !parts.contains(p)) {
        Some(p) => Err(Error::Config(format!(
            "--from offsets= names partition {p}, but {} has partitions {parts:?}",
            topics.prices
        ))),
        None => Ok(()),
    }
}

/// The log's identity: where the job applied a record, the log holds that record; where it
/// read none, the log holds none. The partitions where it does not, with what they hold.
fn replaced_partitions(
    log: &dyn Log,
    stored: &Stored,
    ranges: &[(&String, bool, Vec<Watermarks>)],
) -> Result<BTreeMap<(String, i32), String>> {
    enum Check {
        Same(RecordMark),
        Empty(i64),
    }
    let mut checks: Vec<((String, i32), Position, Check)> = Vec::new();
    for (topic, _, marks) in ranges {
        for w in marks {
            let key = ((*topic).clone(), w.partition);
            let at = |offset| Position {
                topic: (*topic).clone(),
                partition: w.partition,
                offset,
            };
            match stored.marks.get(&key) {
                Some(Last::Record(m)) if w.low <= m.offset && m.offset < w.high => {
                    checks.push((key, at(m.offset), Check::Same(*m)));
                }
                Some(Last::Nothing) => {
                    if let Some(&next) = stored.offsets.get(&key).filter(|&&o| o > w.low) {
                        checks.push((key, at(w.low), Check::Empty(next)));
                    }
                }
                _ => {}
            }
        }
    }
    let positions: Vec<Position> = checks.iter().map(|c| c.1.clone()).collect();
    let found = if positions.is_empty() {
        Vec::new()
    } else {
        log.first_records(&positions, IDENTITY_TIMEOUT)?
    };
    let mut replaced = BTreeMap::new();
    for ((key, _, check), record) in checks.iter().zip(&found) {
        if let (Check::Same(m), Some(r)) = (check, record) {
            // The marked record is gone: retention moved the log's start past it since the
            // ranges were read (a job down about as long as the retention). Nothing left to
            // compare with; not a replaced log.
            if r.position.offset > m.offset && low_of(log, key)? > m.offset {
                continue;
            }
        }
        let why = match (check, record) {
            (Check::Same(m), r) if !same_record(m, r.as_ref()) => {
                Some(replaced_partition(&key.0, key.1, m, r.as_ref()))
            }
            (Check::Empty(next), Some(r)) if r.position.offset < *next => {
                Some(filled_partition(&key.0, key.1, *next, r))
            }
            _ => None,
        };
        if let Some(why) = why {
            replaced.insert(key.clone(), why);
        }
    }
    Ok(replaced)
}

/// A partition's first offset now.
fn low_of(log: &dyn Log, key: &(String, i32)) -> Result<i64> {
    Ok(log
        .watermarks(&key.0)?
        .iter()
        .find(|w| w.partition == key.1)
        .map_or(i64::MAX, |w| w.low))
}

/// Plans one partition after another: where each starts, what the job knows of the record
/// below its start, and the refusals and notes on the way.
struct Planner<'a> {
    log: &'a dyn Log,
    stored: &'a Stored,
    spec: &'a StartSpec,
    reset_offsets: bool,
    replaced: BTreeMap<(String, i32), String>,
    out: StartPlan,
    /// Partitions whose log lost records the job had read (the refusal's lines).
    lost: Vec<String>,
    /// Records below a start to read for their marks.
    lookups: Vec<Position>,
}

impl Planner<'_> {
    /// Stored partitions the topic no longer has.
    fn gone_partitions(&mut self, topic: &String, marks: &[Watermarks]) {
        for ((t, p), o) in self
            .stored
            .offsets
            .range((topic.clone(), i32::MIN)..=(topic.clone(), i32::MAX))
        {
            if t == topic && !marks.iter().any(|w| w.partition == *p) {
                if self.reset_offsets {
                    self.out.notes.push(format!(
                        "{t}/{p}: the partition is gone (stored offset {o}); forgotten (--reset-offsets)"
                    ));
                } else {
                    self.lost.push(lost_partition(t, *p, *o, None));
                }
            }
        }
    }

    /// One partition's start and last record.
    fn partition(&mut self, topic: &str, is_prices: bool, w: &Watermarks) -> Result<()> {
        let key = (topic.to_string(), w.partition);
        let stored_at = self.stored.offsets.get(&key).copied();
        let explicit = self.explicit_start(topic, is_prices, w, stored_at)?;
        let start = self.start(&key, w, explicit, stored_at);
        let last = if start == 0 {
            Last::Nothing
        } else if self.replaced.contains_key(&key) {
            Last::Unknown
        } else if stored_at.is_some_and(|s| s == start || (s < w.low && start == w.low)) {
            self.stored
                .marks
                .get(&key)
                .copied()
                .unwrap_or_default()
                .below(start)
        } else {
            if start > w.low {
                self.lookups.push(Position {
                    topic: topic.to_string(),
                    partition: w.partition,
                    offset: start - 1,
                });
            }
            Last::Unknown
        };
        self.out.partitions.push(PartitionStart {
            topic: topic.to_string(),
            partition: w.partition,
            start,
            end: w.high,
            last,
        });
        Ok(())
    }

    /// Where `--from` puts this partition (None: where the job stands).
    fn explicit_start(
        &mut self,
        topic: &str,
        is_prices: bool,
        w: &Watermarks,
        stored_at: Option<i64>,
    ) -> Result<Option<i64>> {
        Ok(match (is_prices, self.spec) {
            (_, StartSpec::Earliest) => Some(w.low),
            (true, StartSpec::Latest) => {
                let from = stored_at.unwrap_or(w.low).clamp(w.low, w.high);
                self.out.skipped += w.high - from;
                Some(w.high)
            }
            (true, StartSpec::Offsets(m)) => match m.get(&w.partition) {
                Some(&o) if o > w.high => {
                    return Err(Error::Config(format!(
                        "--from offsets=: {topic}/{} ends at {}, offset {o} is beyond it",
                        w.partition, w.high
                    )))
                }
                Some(&o) if o < w.low => {
                    self.out.notes.push(format!(
                        "{topic}/{}: offsets below {} are gone from the log; starting there instead of {o}",
                        w.partition, w.low
                    ));
                    Some(w.low)
                }
                Some(&o) => Some(o),
                None => None,
            },
            (true, StartSpec::Time(ms)) => Some(
                self.log
                    .offset_for_time(topic, w.partition, *ms)?
                    .unwrap_or(w.high)
                    .clamp(w.low, w.high),
            ),
            _ => None,
        })
    }

    /// The start: as asked, or where the job stands, or the log's start when the log lost or
    /// replaced what the job read (refused unless `--reset-offsets`).
    fn start(
        &mut self,
        key: &(String, i32),
        w: &Watermarks,
        explicit: Option<i64>,
        stored_at: Option<i64>,
    ) -> i64 {
        let (topic, replaced_here) = (&key.0, self.replaced.get(key).cloned());
        match (explicit, stored_at) {
            (Some(o), _) => {
                if let Some(why) = replaced_here {
                    self.out.notes.push(format!(
                        "{why}: the log was replaced; reading it from offset {o} as asked"
                    ));
                }
                o
            }
            (None, None) => w.low,
            (None, Some(s)) if s > w.high => {
                if !self.reset_offsets {
                    self.lost
                        .push(lost_partition(topic, w.partition, s, Some(w)));
                }
                self.out.notes.push(format!(
                    "{topic}/{}: stored offset {s} is beyond the log's end {}; reading the log from its start {} (--reset-offsets)",
                    w.partition, w.high, w.low
                ));
                w.low
            }
            (None, Some(_)) if replaced_here.is_some() => {
                let why = replaced_here.unwrap_or_default();
                if !self.reset_offsets {
                    self.lost.push(why.clone());
                }
                self.out.notes.push(format!(
                    "{why}: the log was replaced; reading it from its start {} (--reset-offsets)",
                    w.low
                ));
                w.low
            }
            (None, Some(s)) if s < w.low => {
                self.out.notes.push(format!(
                    "{topic}/{}: offsets {s}..{} are gone from the log (retention); the stored state holds what they carried, continuing from {}",
                    w.partition, w.low, w.low
                ));
                w.low
            }
            (None, Some(s)) => s,
        }
    }

    /// The refusal when the log lost what the job read; else the plan, with the marks of the
    /// records below starts the job did not stand at.
    fn finish(mut self) -> Result<StartPlan> {
        if !self.lost.is_empty() {
            return Err(lost_log_refusal(&self.lost));
        }
        if self.lookups.is_empty() {
            return Ok(self.out);
        }
        let below = self.log.first_records(&self.lookups, IDENTITY_TIMEOUT)?;
        for (p, r) in self.lookups.iter().zip(below) {
            let Some(r) = r.filter(|r| r.position.offset == p.offset) else {
                continue;
            };
            if let Some(start) = self
                .out
                .partitions
                .iter_mut()
                .find(|s| s.topic == p.topic && s.partition == p.partition)
            {
                start.last = Last::Record(r.as_ref().mark());
            }
        }
        Ok(self.out)
    }
}

fn missing_topic(e: stockflow_transport::Error, topic: &str) -> Error {
    if e.kind == ErrorKind::UnknownTopic {
        Error::Refused(format!(
            "topic {topic} does not exist: create the pipeline's topics with `stockflow topics create` \
             (or `compose/stack up`), or name the right one with --prices-topic/--holdings-topic"
        ))
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockflow_transport::memory::MemoryLog;
    use stockflow_transport::TopicSpec;

    #[test]
    fn parses_start_specs() {
        assert_eq!(
            "earliest".parse::<StartSpec>().ok(),
            Some(StartSpec::Earliest)
        );
        assert_eq!("latest".parse::<StartSpec>().ok(), Some(StartSpec::Latest));
        let m: BTreeMap<i32, i64> = [(0, 10), (3, 7)].into_iter().collect();
        assert_eq!(
            "offsets=0:10,3:7".parse::<StartSpec>().ok(),
            Some(StartSpec::Offsets(m))
        );
        assert_eq!(
            "time=2024-01-02T00:00:00Z".parse::<StartSpec>().ok(),
            Some(StartSpec::Time(1_704_153_600_000))
        );
        for bad in [
            "offsets=0",
            "offsets=-1:3",
            "offsets=",
            "time=yesterday",
            "middle",
        ] {
            assert!(bad.parse::<StartSpec>().is_err(), "{bad}");
        }
    }

    fn log() -> (MemoryLog, Topics) {
        let log = MemoryLog::new();
        let topics = Topics {
            prices: "prices".into(),
            holdings: "holdings".into(),
        };
        for t in [&topics.prices, &topics.holdings] {
            let _ = log.ensure_topic(&TopicSpec::kept(t.as_str(), 2));
        }
        for i in 0..10 {
            let _ = log.append("prices", i % 2, None, Some(b"x"));
        }
        let _ = log.append("holdings", 0, None, Some(b"h"));
        (log, topics)
    }

    fn starts(plan: &StartPlan) -> Vec<(String, i32, i64)> {
        plan.partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.start))
            .collect()
    }

    fn stored(list: &[(&str, i32, i64)]) -> Stored {
        Stored {
            offsets: list
                .iter()
                .map(|(t, p, o)| ((t.to_string(), *p), *o))
                .collect(),
            marks: BTreeMap::new(),
        }
    }

    #[test]
    fn resumes_from_stored_offsets_or_the_start() -> Result<()> {
        let (log, topics) = log();
        let p = plan(&log, &topics, &Stored::default(), &StartSpec::Resume, false)?;
        assert!(starts(&p).iter().all(|s| s.2 == 0));
        assert_eq!(p.backlog(), 11);
        let st = stored(&[("prices", 0, 3), ("prices", 1, 5), ("holdings", 0, 1)]);
        let p = plan(&log, &topics, &st, &StartSpec::Resume, false)?;
        assert_eq!(
            starts(&p),
            vec![
                ("prices".into(), 0, 3),
                ("prices".into(), 1, 5),
                ("holdings".into(), 0, 1),
                ("holdings".into(), 1, 0)
            ]
        );
        Ok(())
    }

    #[test]
    fn a_lost_log_is_refused_until_reset() -> Result<()> {
        let (log, topics) = log();
        let st = stored(&[("prices", 0, 5), ("prices", 1, 5)]);
        log.recreate("prices")?;
        let _ = log.append("prices", 0, None, Some(b"new"));
        let err = plan(&log, &topics, &st, &StartSpec::Resume, false);
        let msg = err.expect_err("a lost log is refused").to_string();
        assert!(msg.contains("prices/0 ends at offset 1"), "{msg}");
        assert!(msg.contains("offset 5"), "{msg}");
        assert!(msg.contains("--reset-offsets"), "{msg}");
        let p = plan(&log, &topics, &st, &StartSpec::Resume, true)?;
        assert_eq!(
            starts(&p)[..2],
            [("prices".into(), 0, 0), ("prices".into(), 1, 0)]
        );
        assert_eq!(p.notes.len(), 2);
        Ok(())
    }

    #[test]
    fn a_gone_head_is_noted_not_refused() -> Result<()> {
        let (log, topics) = log();
        log.truncate_before("prices", 0, 4)?;
        let st = stored(&[("prices", 0, 2)]);
        let p = plan(&log, &topics, &st, &StartSpec::Resume, false)?;
        assert_eq!(starts(&p)[0], ("prices".into(), 0, 4));
        assert!(p.notes[0].contains("retention"), "{:?}", p.notes);
        Ok(())
    }

    #[test]
    fn explicit_starts() -> Result<()> {
        let (log, topics) = log();
        let st = stored(&[("prices", 0, 2), ("prices", 1, 1)]);
        let p = plan(&log, &topics, &st, &StartSpec::Latest, false)?;
        assert_eq!(p.skipped, 3 + 4);
        assert_eq!(starts(&p)[0].2, 5);
        let m = [(1, 2)].into_iter().collect();
        let p = plan(&log, &topics, &st, &StartSpec::Offsets(m), false)?;
        assert_eq!(
            starts(&p)[..2],
            [("prices".into(), 0, 2), ("prices".into(), 1, 2)]
        );
        let beyond = [(1, 99)].into_iter().collect();
        assert!(plan(&log, &topics, &st, &StartSpec::Offsets(beyond), false).is_err());
        let unknown = [(7, 0)].into_iter().collect();
        assert!(plan(&log, &topics, &st, &StartSpec::Offsets(unknown), false).is_err());
        let p = plan(&log, &topics, &st, &StartSpec::Time(i64::MAX), false)?;
        assert_eq!(starts(&p)[0].2, 5);
        let p = plan(&log, &topics, &st, &StartSpec::Earliest, false)?;
        assert!(starts(&p).iter().all(|s| s.2 == 0));
        let missing = Topics {
            prices: "nope".into(),
            holdings: "holdings".into(),
        };
        let msg = plan(&log, &missing, &st, &StartSpec::Resume, false)
            .expect_err("a missing topic is refused")
            .to_string();
        assert!(msg.contains("stockflow topics create"), "{msg}");
        Ok(())
    }

    /// The marks of the records at these offsets of `topic` (what a job that read them stores).
    fn marks_of(log: &MemoryLog, topic: &str, at: &[(i32, i64)]) -> Stored {
        let mut out = Stored::default();
        for &(p, o) in at {
            let pos = Position {
                topic: topic.into(),
                partition: p,
                offset: o,
            };
            let rec = log
                .first_records(&[pos], Duration::from_secs(1))
                .expect("the memory log answers")
                .remove(0)
                .expect("the record exists");
            out.offsets.insert((topic.into(), p), o + 1);
            out.marks
                .insert((topic.into(), p), Last::Record(rec.as_ref().mark()));
        }
        out
    }

    #[test]
    fn a_log_refilled_past_the_stored_offsets_is_refused_until_reset() -> Result<()> {
        let (log, topics) = log();
        let st = marks_of(&log, "prices", &[(0, 3), (1, 2)]);
        // The same log: resumed.
        let p = plan(&log, &topics, &st, &StartSpec::Resume, false)?;
        assert_eq!(
            starts(&p)[..2],
            [("prices".into(), 0, 4), ("prices".into(), 1, 3)]
        );
        assert_eq!(
            Some(p.partitions[0].last),
            st.marks.get(&("prices".into(), 0)).copied()
        );
        // The broker loses its data and the history is published again, further than before.
        log.recreate("prices")?;
        for i in 0..20 {
            log.append("prices", i % 2, None, Some(b"x"))?;
        }
        let msg = plan(&log, &topics, &st, &StartSpec::Resume, false)
            .expect_err("a replaced log is refused")
            .to_string();
        assert!(
            msg.contains("prices/0 holds a record with log time"),
            "{msg}"
        );
        assert!(msg.contains("at offset 3"), "{msg}");
        assert!(msg.contains("stockflow run --reset-offsets"), "{msg}");
        let p = plan(&log, &topics, &st, &StartSpec::Resume, true)?;
        assert_eq!(
            starts(&p)[..2],
            [("prices".into(), 0, 0), ("prices".into(), 1, 0)]
        );
        assert_eq!(p.partitions[0].last, Last::Nothing, "read from offset 0");
        // A replay from the start of the new log is what was asked: noted, not refused.
        let p = plan(&log, &topics, &st, &StartSpec::Earliest, false)?;
        assert!(
            p.notes.iter().any(|n| n.contains("replaced")),
            "{:?}",
            p.notes
        );
        Ok(())
    }
}
