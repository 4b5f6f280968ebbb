//! The reading loop's decisions, with no I/O: one worker's state machine. The driver
//! (`rounds`) feeds it events and does what it says:
//!
//! - [`Machine::begin_round`] (the process's earliest next key, whether this worker's source
//!   holds anything, the latest time any peer has reached): the round's timestamp and the
//!   hold (the latest order key the source may hand over);
//! - [`Machine::record`] (a record handed over): the timestamp it enters the dataflow at, or
//!   [`Verdict::Refuse`]: it is not applied, the source keeps it, and the pass ends before it;
//! - [`Machine::end_round`] (each partition's resume offset): the offsets that may be
//!   committed, with the mark of the last record applied below each, the next timestamp, and
//!   the time the worker must see completed before it reads more (rounds in flight);
//! - [`Machine::stop`] (a signal, a failure, a peer's stop): why the worker stops reading.
//!
//! Timestamps: 0 holds the stored state; 1 the holdings present at start (read to their end
//! before any price enters); from 2 on, rounds. During a catch-up the records of the trading
//! days of one bucket ([`MachineConfig::days_per_time`] days) enter at the bucket's own time in
//! every worker (`bucket · 2³² + 2`), so that a day several workers read is evaluated once,
//! complete; rounds without a bucket count on from there.
//!
//! The invariants (`docs/dataflow.md`), each checked by the tests below:
//! - an offset reported for a partition never passes a record that was not applied (records
//!   are handed over out of offset order by the merge; the source's resume offset and the
//!   lowest refused offset bound it);
//! - a record that ends a pass (a day before the restored window) is refused, not applied,
//!   and stays at or above the reported offset: the next pass reads it;
//! - times never go backwards, and a record enters at or after the current time;
//! - a worker with nothing pending takes the latest time of its peers, so that no worker holds
//!   the others back (a worker without partitions, an idle one, one of another process); a
//!   record dated far in the future (beyond [`MachineConfig::day_cap`]) never moves time.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use stockflow_core::{Last, RecordMark};

/// A dataflow timestamp.
pub type Time = u64;

/// Rounds a worker may run ahead of the dataflow's completed timestamps.
pub const MAX_ROUNDS_IN_FLIGHT: usize = 4;

/// The first timestamp of rounds (0: stored state, 1: holdings at start).
const FIRST_ROUND: Time = 2;

/// Which input a partition feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Prices,
    Holdings,
}

/// One partition this worker reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneSpec {
    pub input: Input,
    /// The first offset to read.
    pub start: i64,
    /// The partition's end when the job started (what `--until-caught-up` reads to).
    pub end: i64,
    /// What is known of the records below `start`.
    pub last: Last,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// The first day of the restored state: a record about an earlier day ends the pass.
    pub window: Option<NaiveDate>,
    /// Stop once every partition is read to its end at start.
    pub until_caught_up: bool,
    /// Order keys (days from CE) above this never move time: a record dated far in the future
    /// is read in an ordinary round.
    pub day_cap: i64,
    /// Trading days per catch-up timestamp.
    pub days_per_time: i64,
    /// Calendar days the dataflow keeps in memory behind the bucket it has reached (None:
    /// every day): a record about an earlier day ends the pass like one before the
    /// restored window ([`horizon`]).
    pub memory_days: Option<i64>,
}

/// Why a worker stops reading. Every kind but `CaughtUp` reaches every worker of every process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// Ctrl-C or SIGTERM: finish what was read, exit cleanly.
    Signal,
    /// This pass kept every day until it read the records the pass before refused (about
    /// days that had left memory); it has: finish what was read, and the job runs again
    /// keeping only its memory days.
    RefusedRead,
    /// `--until-caught-up`: this worker read its partitions to their ends at start.
    CaughtUp,
    /// A record about this day, before the restored window: finish what was read, then the
    /// job runs again with a window that covers it.
    Rewind(NaiveDate),
    /// A failure (the sink, the log, a panic): every process exits with an error, the same
    /// for every process (whose fault it is sets the exit code).
    Failed(String, stockflow_core::Fault),
}

impl StopReason {
    /// Whether the job ends with an error.
    pub fn is_error(&self) -> bool {
        matches!(self, StopReason::Failed(..))
    }

    /// Which of two reasons wins when both arrive: an error over a rewind over a signal.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            StopReason::CaughtUp => 0,
            StopReason::RefusedRead => 1,
            StopReason::Signal => 2,
            StopReason::Rewind(_) => 3,
            StopReason::Failed(..) => 4,
        }
    }
}

/// What a record becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Enters the dataflow at this time.
    Apply { at: Time },
    /// Not applied: the source keeps it and the pass ends before it.
    Refuse,
}

/// What the driver does at the start of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundStart {
    /// The round's time; the inputs advance to it.
    pub time: Time,
    /// The latest order key the source may hand over this round (None: no limit).
    pub hold_after: Option<i64>,
}

/// An offset that may be committed: every record of the partition below `next` was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetReport {
    pub lane: usize,
    pub next: i64,
    /// What is known of the records below `next`: the last one applied, where known.
    pub last: Last,
    /// The time the report enters at (with the round's records).
    pub at: Time,
    /// The newest log timestamp among the round's records of this partition.
    pub newest_ms: Option<i64>,
    /// The partition is still below its end at start: the job is catching up on it.
    pub backlog: bool,
}

/// What the driver does at the end of a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundEnd {
    pub reports: Vec<OffsetReport>,
    /// The time of the next round; the inputs advance to it.
    pub time: Time,
    /// Read nothing more until the dataflow has completed every time before this one.
    pub wait_for: Time,
}

#[derive(Debug, Clone)]
struct Lane {
    spec: LaneSpec,
    /// The offset reported last.
    reported: i64,
    /// What is known below `reported`.
    last: Last,
    /// Applied records at or above `reported` (handed over out of offset order), by offset.
    applied: BTreeMap<i64, RecordMark>,
    /// The lowest offset refused in this pass: nothing at or above it is reported as read.
    refused: Option<i64>,
    /// The earliest day of the records refused in this pass.
    refused_day: Option<NaiveDate>,
    /// This round: (latest time a record entered at, newest log timestamp).
    round: Option<(Time, Option<i64>)>,
    /// The latest time any record of this lane entered at: a report enters no earlier, so
    /// that an offset is never committed before the records below it (a round may move a
    /// lane's offset past records the log never hands over while its last records entered at
    /// a later time than the round's).
    entered: Time,
}

/// One worker's reading loop.
#[derive(Debug, Clone)]
pub struct Machine {
    config: MachineConfig,
    lanes: Vec<Lane>,
    time: Time,
    /// This round's time is a bucket's: it does not move at the end of the round.
    keyed: bool,
    /// Records entered at the current time since it last moved: a round that reads nothing
    /// moves time past them (so that their timestamp completes), and otherwise leaves it.
    unsealed: bool,
    /// The times of the last rounds.
    recent: VecDeque<Time>,
    stop: Option<StopReason>,
}

/// The time of catch-up bucket `bucket`: far apart (2³² per bucket), so that the rounds
/// counted between two buckets never reach the next bucket's time.
fn bucket_time(bucket: i64) -> Option<Time> {
    u64::try_from(bucket)
        .ok()?
        .checked_mul(1 << 32)?
        .checked_add(FIRST_ROUND)
}

/// The first day the dataflow still holds at time `t` when it keeps `memory_days` calendar
/// days behind the first day of `t`'s catch-up bucket (None: every day). A pure function of
/// the time, so that every worker of the process agrees on it: the books evict the days
/// before it once `t` is complete, and the machine refuses a record entering at `t` about an
/// earlier day (the pass ends and the job runs again with that day restored). Monotone in
/// `t`, so that a day evicted never has to come back within a pass.
pub fn horizon(t: Time, days_per_time: i64, memory_days: i64) -> Option<NaiveDate> {
    let bucket = i64::try_from(t.checked_sub(FIRST_ROUND)? >> 32).ok()?;
    if bucket == 0 {
        // No bucket reached yet (the stored state, the holdings at start, or rounds before
        // any keyed one).
        return None;
    }
    let key = bucket
        .checked_mul(days_per_time.max(1))?
        .checked_sub(memory_days.max(0))?;
    NaiveDate::from_num_days_from_ce_opt(i32::try_from(key).ok()?)
}

/// The order key (days from CE) of a day.
pub fn day_key(day: NaiveDate) -> i64 {
    i64::from(day.num_days_from_ce())
}

impl Machine {
    pub fn new(config: MachineConfig, lanes: Vec<LaneSpec>) -> Self {
        let lanes = lanes
            .into_iter()
            .map(|spec| Lane {
                reported: spec.start,
                last: spec.last.below(spec.start),
                applied: BTreeMap::new(),
                refused: None,
                refused_day: None,
                round: None,
                entered: 0,
                spec,
            })
            .collect();
        Machine {
            config: MachineConfig {
                days_per_time: config.days_per_time.max(1),
                ..config
            },
            lanes,
            time: 0,
            keyed: false,
            unsealed: false,
            recent: VecDeque::new(),
            stop: None,
        }
    }

    pub fn time(&self) -> Time {
        self.time
    }

    /// The last day (order key) whose records may move time, as the clock moves on.
    pub fn set_day_cap(&mut self, day_cap: i64) {
        self.config.day_cap = day_cap;
    }

    pub fn stopped(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }

    /// A reason to stop from outside the loop (a signal, a failure, another worker's stop):
    /// the strongest reason seen wins.
    pub fn stop(&mut self, reason: StopReason) {
        if self.stop.as_ref().is_none_or(|s| reason.rank() > s.rank()) {
            self.stop = Some(reason);
        }
    }

    /// What time 0 carries besides the stored state: every partition's start, with the mark
    /// below it, so that where the job starts (`--from`, `--reset-offsets`) is committed with
    /// the first batch.
    pub fn initial_reports(&self) -> Vec<OffsetReport> {
        self.lanes
            .iter()
            .enumerate()
            .map(|(lane, l)| OffsetReport {
                lane,
                next: l.reported,
                last: l.last,
                at: 0,
                newest_ms: None,
                backlog: l.reported < l.spec.end,
            })
            .collect()
    }

    /// The records of `lane` applied at or above the offset reported last (handed over out of
    /// offset order): what a reader resuming from that offset reads again.
    pub fn applied_ahead(&self, lane: usize) -> Vec<i64> {
        self.lanes
            .get(lane)
            .map(|l| l.applied.range(l.reported..).map(|(o, _)| *o).collect())
            .unwrap_or_default()
    }

    /// The lowest offset of `lane` refused in this pass, and the earliest day refused: the
    /// next pass holds every worker of the process at that day until it has read it again.
    pub fn refused(&self, lane: usize) -> Option<(i64, NaiveDate)> {
        let l = self.lanes.get(lane)?;
        l.refused.zip(l.refused_day)
    }

    /// Every partition read to its end at start (nothing refused).
    pub fn caught_up(&self) -> bool {
        self.lanes.iter().all(|l| l.reported >= l.spec.end)
    }

    fn holdings_read(&self) -> bool {
        self.lanes
            .iter()
            .all(|l| l.spec.input == Input::Prices || l.reported >= l.spec.end)
    }

    /// The start of a round. `hold`: the earliest order key any worker of this process will
    /// hand over next (None: none has anything); `next`: this worker's (None: its source holds
    /// nothing); `peers`: the latest time any worker of the job has reached.
    pub fn begin_round(&mut self, hold: Option<i64>, next: Option<i64>, peers: Time) -> RoundStart {
        let width = self.config.days_per_time;
        let hold_after = hold.map(|k| {
            if k == i64::MIN || k > self.config.day_cap {
                k
            } else {
                k.div_euclid(width)
                    .saturating_add(1)
                    .saturating_mul(width)
                    .saturating_sub(1)
            }
        });
        let can_read = match (next, hold_after) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(k), Some(h)) => k <= h,
        };
        if self.time >= FIRST_ROUND && !can_read {
            // Nothing this worker may read now (nothing there, or held back until the others
            // have read earlier days): it must never hold their timestamps back.
            self.time = self.time.max(peers);
        }
        self.keyed = false;
        if self.time >= FIRST_ROUND {
            let bucket = hold
                .filter(|&k| k != i64::MIN && k <= self.config.day_cap)
                .and_then(|k| bucket_time(k.div_euclid(width)));
            if let Some(t) = bucket.filter(|&t| t >= self.time) {
                self.keyed = true;
                self.time = t;
            }
        }
        self.note_time();
        RoundStart {
            time: self.time,
            hold_after,
        }
    }

    fn note_time(&mut self) {
        if self.recent.back() != Some(&self.time) {
            self.recent.push_back(self.time);
            while self.recent.len() > MAX_ROUNDS_IN_FLIGHT {
                self.recent.pop_front();
            }
        }
    }

    /// A record of `lane` at `offset`, about `day` (None: it will be rejected, or carries no
    /// day), handed over by the source.
    pub fn record(
        &mut self,
        lane: usize,
        offset: i64,
        day: Option<NaiveDate>,
        mark: RecordMark,
    ) -> Verdict {
        let time = self.time;
        let (window, width, memory) = (
            self.config.window,
            self.config.days_per_time,
            self.config.memory_days,
        );
        let Some(l) = self.lanes.get_mut(lane) else {
            return Verdict::Refuse;
        };
        let at = if l.spec.input == Input::Holdings && offset < l.spec.end {
            time.max(1)
        } else {
            time.max(FIRST_ROUND)
        };
        // The first day the dataflow holds at `at`: the restored window, or the days it
        // keeps in memory.
        let floor = window.max(memory.and_then(|m| horizon(at, width, m)));
        if let (Some(w), Some(d)) = (floor, day) {
            if d < w {
                l.refused = Some(l.refused.map_or(offset, |r| r.min(offset)));
                l.refused_day = Some(l.refused_day.map_or(d, |r| r.min(d)));
                let earliest = match &self.stop {
                    Some(StopReason::Rewind(r)) => (*r).min(d),
                    _ => d,
                };
                self.stop(StopReason::Rewind(earliest));
                if let Some(StopReason::Rewind(r)) = self.stop.as_mut() {
                    *r = earliest;
                }
                return Verdict::Refuse;
            }
        }
        l.round = Some(match l.round {
            Some((t, newest)) => (t.max(at), newest.max(mark.timestamp_ms)),
            None => (at, mark.timestamp_ms),
        });
        l.entered = l.entered.max(at);
        l.applied.insert(offset, mark);
        self.unsealed = true;
        Verdict::Apply { at }
    }

    /// The end of a round: `resume(lane)` is the source's resume offset of each partition.
    pub fn end_round(&mut self, resume: impl Fn(usize) -> Option<i64>) -> RoundEnd {
        let time = self.time;
        let mut reports = Vec::new();
        for (i, l) in self.lanes.iter_mut().enumerate() {
            let resumed = resume(i).unwrap_or(l.reported);
            let next = l.refused.map_or(resumed, |r| resumed.min(r));
            let round = l.round.take();
            if next == l.reported && round.is_none() {
                continue;
            }
            if let Some((&offset, &mark)) = l.applied.range(..next).next_back() {
                l.last = Last::Record(mark);
                l.applied = l.applied.split_off(&offset.saturating_add(1));
            }
            l.reported = next;
            reports.push(OffsetReport {
                lane: i,
                next,
                last: l.last.below(next),
                at: round.map_or(time, |r| r.0).max(l.entered),
                newest_ms: round.and_then(|r| r.1),
                backlog: next < l.spec.end,
            });
        }
        if self.config.until_caught_up && self.stop.is_none() && self.caught_up() {
            self.stop = Some(StopReason::CaughtUp);
        }
        // A round that read nothing leaves time where it is once the records at the current
        // time are sealed: an idle live job does not make a new timestamp a round (each one
        // costs the dataflow a progress update: an idle job spun a core on them), and its
        // next records enter at the time it waits at.
        let moves = match self.time {
            0 => true,
            1 => self.holdings_read(),
            _ => !self.keyed && (!reports.is_empty() || self.unsealed),
        };
        if moves {
            self.time += 1;
            self.unsealed = false;
        }
        self.note_time();
        let wait_for = if self.recent.len() >= MAX_ROUNDS_IN_FLIGHT {
            self.recent.front().copied().unwrap_or(0)
        } else {
            0
        };
        RoundEnd {
            reports,
            time: self.time,
            wait_for,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(n: i64) -> NaiveDate {
        NaiveDate::from_num_days_from_ce_opt(730_000 + n as i32).expect("a valid day")
    }

    fn mark(offset: i64) -> RecordMark {
        RecordMark {
            offset,
            timestamp_ms: Some(offset * 10),
            hash: offset as u64,
        }
    }

    fn config() -> MachineConfig {
        MachineConfig {
            window: None,
            until_caught_up: true,
            day_cap: day_key(day(10_000)),
            days_per_time: 1,
            memory_days: None,
        }
    }

    fn lane(input: Input, start: i64, end: i64) -> LaneSpec {
        LaneSpec {
            input,
            start,
            end,
            last: Last::Unknown,
        }
    }

    #[test]
    fn holdings_at_start_enter_at_one_and_prices_from_two() {
        let mut m = Machine::new(
            config(),
            vec![lane(Input::Holdings, 0, 2), lane(Input::Prices, 0, 5)],
        );
        assert_eq!(m.begin_round(None, Some(0), 0).time, 0);
        assert_eq!(
            m.record(0, 0, Some(day(1)), mark(0)),
            Verdict::Apply { at: 1 }
        );
        assert_eq!(
            m.record(1, 0, Some(day(1)), mark(0)),
            Verdict::Apply { at: 2 }
        );
        let end = m.end_round(|i| Some([1, 1][i]));
        assert_eq!(end.time, 1);
        // The holdings are not read to their end: time stays at 1.
        m.begin_round(None, Some(0), 0);
        assert_eq!(
            m.record(0, 1, Some(day(1)), mark(1)),
            Verdict::Apply { at: 1 }
        );
        assert_eq!(m.end_round(|i| Some([2, 1][i])).time, 2);
        // A holding published after the start is an ordinary one.
        m.begin_round(None, Some(0), 0);
        assert_eq!(
            m.record(0, 2, Some(day(1)), mark(2)),
            Verdict::Apply { at: 2 }
        );
    }

    #[test]
    fn a_record_before_the_window_is_refused_and_never_passed() {
        let mut m = Machine::new(
            MachineConfig {
                window: Some(day(100)),
                ..config()
            },
            vec![lane(Input::Holdings, 10, 20)],
        );
        m.begin_round(None, Some(0), 0);
        assert_eq!(
            m.record(0, 10, Some(day(150)), mark(10)),
            Verdict::Apply { at: 1 }
        );
        assert_eq!(m.record(0, 11, Some(day(40)), mark(11)), Verdict::Refuse);
        assert_eq!(m.stopped(), Some(&StopReason::Rewind(day(40))));
        // Even if the source said it was past it, the report stays below the refused record.
        let end = m.end_round(|_| Some(12));
        assert_eq!(end.reports.len(), 1);
        assert_eq!(end.reports[0].next, 11);
        assert_eq!(end.reports[0].last, Last::Record(mark(10)));
        assert!(!m.caught_up());
    }

    #[test]
    fn the_horizon_trails_the_bucket_and_never_goes_back() {
        assert_eq!(horizon(0, 7, 40), None);
        assert_eq!(horizon(1, 7, 40), None);
        // Rounds before any bucket.
        assert_eq!(horizon(FIRST_ROUND + 5, 7, 40), None);
        let k = day_key(day(700));
        let b = k.div_euclid(7);
        let t = bucket_time(b).expect("a bucket time");
        let first = NaiveDate::from_num_days_from_ce_opt((b * 7) as i32).expect("a day");
        assert_eq!(horizon(t, 7, 40), Some(first - chrono::Duration::days(40)));
        // Rounds counted on after a bucket keep its horizon; the next bucket moves it on.
        assert_eq!(horizon(t + 1000, 7, 40), horizon(t, 7, 40));
        let next = bucket_time(b + 1).expect("a bucket time");
        assert_eq!(
            horizon(next, 7, 40),
            Some(first + chrono::Duration::days(7 - 40))
        );
        let mut last = None;
        for t in [0, 1, 2, 3, t - 1, t, t + 1, next - 1, next, next + 1] {
            let h = horizon(t, 7, 40);
            assert!(h >= last, "the horizon went back at {t}");
            last = h;
        }
    }

    #[test]
    fn a_record_behind_the_days_kept_in_memory_is_refused_and_never_passed() {
        let mut m = Machine::new(
            MachineConfig {
                days_per_time: 7,
                memory_days: Some(40),
                ..config()
            },
            vec![lane(Input::Prices, 0, 20), lane(Input::Holdings, 0, 0)],
        );
        // Time 0, then the holdings at start (none), then a keyed round at day 700's bucket.
        m.begin_round(None, Some(0), 0);
        m.end_round(|_| Some(0));
        m.begin_round(None, Some(0), 0);
        m.end_round(|_| Some(0));
        let k = day_key(day(700));
        let start = m.begin_round(Some(k), Some(k), 0);
        let at = start.time;
        let h = horizon(at, 7, 40).expect("a horizon at a bucket's time");
        assert!(h <= day(700) - chrono::Duration::days(40));
        assert_eq!(
            m.record(0, 0, Some(day(700)), mark(0)),
            Verdict::Apply { at }
        );
        // At the horizon: still held.
        assert_eq!(m.record(0, 1, Some(h), mark(1)), Verdict::Apply { at });
        // A late holding change about a day before it (a holding record's day is its start).
        let before = h - chrono::Duration::days(1);
        assert_eq!(m.record(0, 2, Some(before), mark(2)), Verdict::Refuse);
        assert_eq!(m.stopped(), Some(&StopReason::Rewind(before)));
        let end = m.end_round(|_| Some(3));
        assert_eq!(end.reports[0].next, 2, "never past the refused record");
        // Without memory days, the same record is applied.
        let mut all = Machine::new(
            MachineConfig {
                days_per_time: 7,
                ..config()
            },
            vec![lane(Input::Prices, 0, 20)],
        );
        all.begin_round(None, Some(0), 0);
        all.end_round(|_| Some(0));
        all.begin_round(None, Some(0), 0);
        all.end_round(|_| Some(0));
        all.begin_round(Some(k), Some(k), 0);
        assert!(matches!(
            all.record(0, 0, Some(before), mark(0)),
            Verdict::Apply { .. }
        ));
    }

    #[test]
    fn an_earlier_rewind_wins_and_an_error_outranks_it() {
        let mut m = Machine::new(
            MachineConfig {
                window: Some(day(100)),
                ..config()
            },
            vec![lane(Input::Prices, 0, 9)],
        );
        m.stop(StopReason::Signal);
        m.begin_round(None, Some(0), 0);
        assert_eq!(m.record(0, 0, Some(day(50)), mark(0)), Verdict::Refuse);
        assert_eq!(m.record(0, 1, Some(day(20)), mark(1)), Verdict::Refuse);
        assert_eq!(m.stopped(), Some(&StopReason::Rewind(day(20))));
        m.stop(StopReason::Signal);
        assert_eq!(m.stopped(), Some(&StopReason::Rewind(day(20))));
        m.stop(StopReason::Failed(
            "x".into(),
            stockflow_core::Fault::External,
        ));
        assert!(m.stopped().is_some_and(StopReason::is_error));
    }

    #[test]
    fn an_idle_worker_takes_its_peers_time_and_a_worker_without_partitions_too() {
        let mut idle = Machine::new(
            MachineConfig {
                until_caught_up: false,
                ..config()
            },
            vec![],
        );
        for _ in 0..3 {
            idle.begin_round(None, None, 0);
            idle.end_round(|_| None);
        }
        // Past the holdings (time 1), rounds that read nothing make no new timestamps.
        assert_eq!(idle.time(), 2);
        for _ in 0..100 {
            idle.begin_round(None, None, 0);
            assert_eq!(idle.end_round(|_| None).time, 2);
        }
        let far = bucket_time(day_key(day(5))).expect("fits");
        assert_eq!(idle.begin_round(None, None, far).time, far);
        // A worker with something pending keeps its own pace (here: none read yet).
        let mut busy = Machine::new(config(), vec![lane(Input::Prices, 0, 9)]);
        for _ in 0..3 {
            busy.begin_round(None, Some(0), 0);
            busy.end_round(|_| Some(0));
        }
        assert_eq!(busy.begin_round(None, Some(0), far).time, 2);
    }

    #[test]
    fn a_day_bucket_is_one_time_in_every_worker_and_far_future_days_do_not_move_it() {
        let cfg = MachineConfig {
            days_per_time: 7,
            until_caught_up: false,
            ..config()
        };
        let mut a = Machine::new(cfg.clone(), vec![lane(Input::Prices, 0, 100)]);
        let mut b = Machine::new(cfg.clone(), vec![]);
        for m in [&mut a, &mut b] {
            for _ in 0..2 {
                m.begin_round(None, Some(0), 0);
                m.end_round(|_| Some(0));
            }
        }
        let k = day_key(day(3));
        let ra = a.begin_round(Some(k), Some(k), 0);
        let rb = b.begin_round(Some(k), None, 0);
        assert_eq!(ra.time, rb.time);
        assert_eq!(ra.hold_after, Some((k.div_euclid(7) + 1) * 7 - 1));
        // Another round of the same bucket keeps the time.
        a.end_round(|_| Some(1));
        assert_eq!(a.begin_round(Some(k + 1), Some(k + 1), 0).time, ra.time);
        // A record dated in year 9999: read in an ordinary round, time barely moves.
        let cap = cfg.day_cap;
        a.end_round(|_| Some(2));
        let far = a.begin_round(Some(cap + 1_000_000), Some(cap + 1_000_000), 0);
        assert!(far.time < bucket_time(cap.div_euclid(7)).expect("fits"));
        assert_eq!(far.hold_after, Some(cap + 1_000_000));
    }

    #[test]
    fn a_live_days_records_complete_when_the_next_round_reads_nothing() {
        // Live: a day's records enter at its bucket's time (a keyed round, which does not
        // move time); the round after, with nothing to read, must move past them, or their
        // timestamp never completes and the day is never committed.
        let cfg = MachineConfig {
            days_per_time: 7,
            until_caught_up: false,
            ..config()
        };
        let mut m = Machine::new(cfg, vec![lane(Input::Prices, 0, 0)]);
        for _ in 0..2 {
            m.begin_round(None, None, 0);
            m.end_round(|_| None);
        }
        let k = day_key(day(3));
        let r = m.begin_round(Some(k), Some(k), 0);
        assert_eq!(
            m.record(0, 0, Some(day(3)), mark(0)),
            Verdict::Apply { at: r.time }
        );
        assert_eq!(m.end_round(|_| Some(1)).time, r.time, "a keyed round stays");
        m.begin_round(None, None, 0);
        let sealed = m.end_round(|_| Some(1));
        assert!(
            sealed.time > r.time,
            "the idle round after it moves past it"
        );
        // And then idles at that time.
        m.begin_round(None, None, 0);
        assert_eq!(m.end_round(|_| Some(1)).time, sealed.time);
    }

    #[test]
    fn a_worker_held_back_by_the_others_takes_their_time() {
        // Worker a may read day 10; worker b's next record is day 40, held back until a has
        // read day 10's bucket. a runs rounds ahead and waits for b's time: b must take it,
        // or both wait for each other.
        let mut b = Machine::new(config(), vec![lane(Input::Prices, 0, 100)]);
        for _ in 0..3 {
            b.begin_round(None, Some(0), 0);
            b.end_round(|_| Some(0));
        }
        let before = b.time();
        let far = bucket_time(10).expect("fits") + 7;
        let held = b.begin_round(Some(10), Some(40), far);
        assert_eq!(held.hold_after, Some(10));
        assert_eq!(held.time, far, "took the others' time");
        assert!(held.time > before);
        // Once its record may be read, its time is its day's, not the peers'.
        let free = b.begin_round(Some(40), Some(40), u64::MAX);
        assert_eq!(free.time, bucket_time(40).expect("fits"));
    }

    #[test]
    fn holdings_first_hold_everything_ordered() {
        let mut m = Machine::new(config(), vec![lane(Input::Prices, 0, 1)]);
        assert_eq!(
            m.begin_round(Some(i64::MIN), Some(3), 0).hold_after,
            Some(i64::MIN)
        );
    }

    #[test]
    fn the_start_is_reported_at_time_zero_with_its_mark() {
        let m = Machine::new(
            config(),
            vec![
                LaneSpec {
                    last: Last::Record(mark(4)),
                    ..lane(Input::Prices, 5, 9)
                },
                LaneSpec {
                    // A mark at or above the start is not the record below it.
                    last: Last::Record(mark(7)),
                    ..lane(Input::Prices, 2, 9)
                },
                LaneSpec {
                    last: Last::Nothing,
                    ..lane(Input::Prices, 0, 9)
                },
            ],
        );
        let r = m.initial_reports();
        assert_eq!(
            (r[0].next, r[0].last, r[0].at),
            (5, Last::Record(mark(4)), 0)
        );
        assert_eq!((r[1].next, r[1].last), (2, Last::Unknown));
        assert_eq!((r[2].next, r[2].last), (0, Last::Nothing));
    }

    /// One step of a random run of one worker over partitions whose records the "source" hands
    /// over in any order.
    #[derive(Debug, Clone)]
    enum Op {
        /// Hand over the pending record at this index (modulo), about this day.
        Hand(usize, i64),
        /// A record the source never hands over (a transaction marker) in partition (modulo):
        /// the resume offset jumps past it once everything before it was handed over.
        Marker(usize),
        /// End the round; the source reports its resume offsets.
        EndRound,
        /// A record arrives in partition (modulo).
        Arrive(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                4 => (any::<usize>(), 0i64..60).prop_map(|(i, d)| Op::Hand(i, d)),
                2 => Just(Op::EndRound),
                2 => any::<usize>().prop_map(Op::Arrive),
                1 => any::<usize>().prop_map(Op::Marker),
            ],
            0..120,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Against a plain model of what was applied: a reported offset never passes a record
        /// that was not applied, a refused record stays above every report, the mark is the
        /// last applied record below the report, times never go backwards and every record
        /// enters at or after the current time.
        #[test]
        fn reports_never_pass_an_unapplied_record(ops in ops(), partitions in 1usize..4, window in 0i64..40) {
            let mut m = Machine::new(
                MachineConfig { window: Some(day(window)), until_caught_up: false, ..config() },
                (0..partitions)
                    .map(|_| LaneSpec { last: Last::Nothing, ..lane(Input::Prices, 0, 0) })
                    .collect(),
            );
            // Per partition: records in the log (offsets 0..len), which are pending at the
            // source, which were applied, which were refused.
            let mut len = vec![0i64; partitions];
            let mut pending: Vec<(usize, i64)> = Vec::new();
            let mut applied: Vec<std::collections::BTreeSet<i64>> = vec![Default::default(); partitions];
            let mut refused: Vec<std::collections::BTreeSet<i64>> = vec![Default::default(); partitions];
            let mut reported = vec![0i64; partitions];
            let mut markers: Vec<std::collections::BTreeSet<i64>> = vec![Default::default(); partitions];
            let mut entered: std::collections::BTreeMap<(usize, i64), Time> = Default::default();
            let mut last_time = 0;
            m.begin_round(None, Some(0), 0);
            for op in ops {
                match op {
                    Op::Arrive(p) => {
                        let p = p % partitions;
                        pending.push((p, len[p]));
                        len[p] += 1;
                    }
                    Op::Marker(p) => {
                        let p = p % partitions;
                        markers[p].insert(len[p]);
                        len[p] += 1;
                    }
                    Op::Hand(i, d) if !pending.is_empty() => {
                        let (p, o) = pending[i % pending.len()];
                        let now = m.time();
                        match m.record(p, o, Some(day(d)), mark(o)) {
                            Verdict::Apply { at } => {
                                prop_assert!(at >= now);
                                pending.retain(|x| *x != (p, o));
                                applied[p].insert(o);
                                entered.insert((p, o), at);
                            }
                            // The source keeps it.
                            Verdict::Refuse => { refused[p].insert(o); }
                        }
                    }
                    Op::Hand(..) => {}
                    Op::EndRound => {
                        // The source's resume offset: its lowest pending offset, or its end.
                        let resume: Vec<i64> = (0..partitions)
                            .map(|p| pending.iter().filter(|x| x.0 == p).map(|x| x.1).min().unwrap_or(len[p]))
                            .collect();
                        let end = m.end_round(|i| resume.get(i).copied());
                        for r in &end.reports {
                            for o in 0..r.next {
                                prop_assert!(
                                    applied[r.lane].contains(&o) || markers[r.lane].contains(&o),
                                    "offset {} reported past unapplied {}", r.next, o
                                );
                                // Committed no earlier than the records below it.
                                if let Some(&at) = entered.get(&(r.lane, o)) {
                                    prop_assert!(r.at >= at, "offset {} at {} before record {} at {}", r.next, r.at, o, at);
                                }
                            }
                            prop_assert!(refused[r.lane].iter().all(|&o| o >= r.next));
                            let want = applied[r.lane]
                                .range(..r.next)
                                .next_back()
                                .map_or(Last::Nothing, |&o| Last::Record(mark(o)));
                            prop_assert_eq!(r.last, want);
                            prop_assert!(r.next >= reported[r.lane]);
                            reported[r.lane] = r.next;
                        }
                        prop_assert!(end.time >= last_time);
                        last_time = end.time;
                        if m.stopped().is_some() {
                            break;
                        }
                        let start = m.begin_round(None, (!pending.is_empty()).then_some(0), 0);
                        prop_assert!(start.time >= last_time);
                        last_time = start.time;
                    }
                }
            }
        }
    }
}
