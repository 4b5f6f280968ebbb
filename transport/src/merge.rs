//! Merging the partitions of a log by an order key when each partition is only roughly in that
//! order. Pure (no I/O, time passed in), so backends share it and it tests without a broker.
//!
//! A log written by several producers is ordered per partition by arrival, not by what the
//! records are about: two exchanges backfilling ten years of closes, each a day or two ahead of
//! the other at moments, leave every partition with day d+2 of one exchange before day d of the
//! other. Merging partition heads alone then hands over d+2 while d is still half-read, and the
//! job evaluates day d with half its closes (corrected one round later: every row written twice
//! and an `incomplete` row written and deleted). So each partition keeps a window of fetched
//! records sorted by key, and during a catch-up its earliest record is handed over only once
//! the partition has been read `lookahead` keys past it (or its backlog is read, or the window
//! is full, or it has kept records at hand waiting for `patience` without delivering, or it has
//! been short for `EMPTY_PATIENCE` patiences).
//!
//! Records leave a partition out of offset order, so the position a reader may resume from is
//! the lowest offset still in the window ([`Merge::resume`]): a restart re-reads the few
//! records after it that were already handed over, which a reader keyed by record version (the
//! job's) ignores.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// At most this many records are kept per partition, whatever the lookahead.
pub const MAX_WINDOW: usize = 50_000;

/// A lane short this many patiences in a row expires, even while nothing is at hand or while
/// it delivers (a partition that never delivers, or trickles).
pub const EMPTY_PATIENCE: u32 = 6;

/// One partition's pending records and what is known of the rest.
#[derive(Debug)]
struct Lane<M> {
    /// Fetched records not handed over: (order key, offset) → record.
    window: BTreeMap<(i64, i64), M>,
    /// The next offset to fetch.
    fetched: i64,
    /// The log end when reading started: below it the partition has a backlog.
    backlog_end: i64,
    /// The largest ordered key fetched.
    horizon: Option<i64>,
    /// The key of the last record handed over.
    last_key: Option<i64>,
    /// Since when it has been short (a backlog, not read far enough).
    blocked: Option<Instant>,
    /// Since when it has been short while records were at hand, without delivering (keeping
    /// them waiting).
    waited: Option<Instant>,
    /// Its wait outlasted the patience (reported once, when it did): the others are read
    /// ahead of it until it is read far enough.
    expired: bool,
    /// The most a record came behind the horizon (how out of order the partition is).
    disorder: i64,
}

/// What the merge does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Hand over this lane's earliest record ([`Merge::pop`]).
    Take(usize),
    /// This lane may still hold something earlier than every record at hand: fetch from it,
    /// waiting a little.
    Wait(usize),
    /// The earliest record is after the hold.
    Held,
    /// Nothing is pending anywhere.
    Empty,
}

/// The merge of several lanes (partitions).
#[derive(Debug)]
pub struct Merge<M> {
    lanes: Vec<Lane<M>>,
    lookahead: i64,
    /// The lookahead grows up to this as the log shows more disorder.
    max_lookahead: i64,
    /// The lookahead grew to this since the last `take_growth`.
    grown: Option<i64>,
    patience: Duration,
    hold: Option<i64>,
    warnings: Vec<usize>,
}

/// Keys of records that are not ordered (`None` from the order key): handed over at once.
const UNORDERED: i64 = i64::MIN;

impl<M> Merge<M> {
    /// `lanes`: per lane, (first offset to read, log end at start). `lookahead`: how far past a
    /// record's key a lane with a backlog is read before the record is handed over (0: merge
    /// the heads only). `patience`: the longest a lane may keep records at hand waiting without
    /// delivering (and `EMPTY_PATIENCE` of them the longest it may stay short at all).
    pub fn new(lanes: &[(i64, i64)], lookahead: i64, patience: Duration) -> Self {
        Merge {
            lanes: lanes
                .iter()
                .map(|&(start, backlog_end)| Lane {
                    window: BTreeMap::new(),
                    fetched: start,
                    backlog_end,
                    horizon: None,
                    last_key: None,
                    blocked: None,
                    waited: None,
                    expired: false,
                    disorder: 0,
                })
                .collect(),
            lookahead: lookahead.max(0),
            max_lookahead: lookahead.max(0),
            grown: None,
            patience,
            hold: None,
            warnings: Vec::new(),
        }
    }

    /// Starts with `lookahead` and grows it, up to `max`, whenever a partition shows more
    /// disorder than that: a log out of order by more than the lookahead gets partly evaluated
    /// days once, then the merge reads far enough ahead.
    pub fn set_lookahead(&mut self, lookahead: i64, max: i64) {
        self.lookahead = lookahead.max(0);
        self.max_lookahead = max.max(self.lookahead);
    }

    /// The lookahead now.
    pub fn lookahead(&self) -> i64 {
        self.lookahead
    }

    /// The lookahead it grew to since the last call, if it grew.
    pub fn take_growth(&mut self) -> Option<i64> {
        self.grown.take()
    }

    /// Hand over nothing whose key is after `key` (None: no limit).
    pub fn hold_after(&mut self, key: Option<i64>) {
        self.hold = key;
    }

    /// A record fetched from `lane` (key None: not ordered, handed over first).
    pub fn insert(&mut self, lane: usize, key: Option<i64>, offset: i64, record: M) {
        let Some(l) = self.lanes.get_mut(lane) else {
            return;
        };
        if let Some(k) = key {
            if let Some(h) = l.horizon {
                let behind = h.saturating_sub(k);
                l.disorder = l.disorder.max(behind);
                if behind > self.lookahead && self.lookahead < self.max_lookahead {
                    self.lookahead = behind.min(self.max_lookahead);
                    self.grown = Some(self.lookahead);
                }
            }
            l.horizon = Some(l.horizon.map_or(k, |h| h.max(k)));
        }
        l.fetched = l.fetched.max(offset.saturating_add(1));
        l.window.insert((key.unwrap_or(UNORDERED), offset), record);
        // A lane that delivers keeps no one waiting: its wait starts again. One that fills its
        // lookahead slowly but steadily is not late; `EMPTY_PATIENCE` still bounds how long it
        // may stay short.
        l.waited = None;
    }

    /// Whether `lane` should be fetched from now (without waiting): it is not yet read far
    /// enough past its earliest record, and its window has room.
    pub fn wants(&self, lane: usize) -> bool {
        self.lanes
            .get(lane)
            .is_some_and(|l| l.window.len() < MAX_WINDOW && !self.ahead(l))
    }

    fn ahead(&self, l: &Lane<M>) -> bool {
        match l.window.first_key_value() {
            None => false,
            Some((&(UNORDERED, _), _)) => true,
            Some((&(head, _), _)) => l
                .horizon
                .is_some_and(|h| h >= head.saturating_add(self.lookahead)),
        }
    }

    fn backlog(l: &Lane<M>) -> bool {
        l.fetched < l.backlog_end
    }

    /// Whether `lane` has waited too long: it kept records at hand waiting for the patience
    /// without delivering, or it has been short for `EMPTY_PATIENCE` patiences whatever was at
    /// hand (a partition that never delivers holds no one back for good, whichever worker
    /// reads it).
    fn expired(&self, l: &Lane<M>, now: Instant, at_hand: bool) -> bool {
        let outlasted = |since: Option<Instant>, limit: Duration| {
            since.is_some_and(|s| now.saturating_duration_since(s) >= limit)
        };
        l.expired
            || (at_hand && outlasted(l.waited, self.patience))
            || outlasted(l.blocked, self.patience.saturating_mul(EMPTY_PATIENCE))
    }

    fn at_hand(&self) -> bool {
        self.lanes.iter().any(|l| !l.window.is_empty())
    }

    /// Per lane: (the smallest key it may still hand over, whether its earliest record may go
    /// now); None for a lane with nothing pending.
    fn bound(&self, l: &Lane<M>, now: Instant, at_hand: bool) -> Option<(i64, bool)> {
        let waiting = Self::backlog(l) && !self.expired(l, now, at_hand);
        match l.window.first_key_value() {
            Some((&(head, _), _)) => {
                let ready = !waiting || self.ahead(l) || l.window.len() >= MAX_WINDOW;
                let floor = l
                    .horizon
                    .map_or(UNORDERED, |h| h.saturating_sub(self.lookahead));
                Some(if ready {
                    (head, true)
                } else {
                    (head.min(floor), false)
                })
            }
            None if waiting => Some((
                l.last_key
                    .map_or(UNORDERED, |k| k.saturating_sub(self.lookahead)),
                false,
            )),
            None => None,
        }
    }

    /// What to do next, at time `now`.
    pub fn next(&mut self, now: Instant) -> Step {
        // Track who keeps the merge waiting, and report each wait that outlasts the patience
        // once. A short lane keeps the merge waiting while records are at hand: at a start
        // against a broker that answers its first fetches slowly (tansu 0.6.0 took 3 to 5 s on
        // a 500,000-record topic), every lane is empty for seconds, which is no lane's lag, so
        // that wait starts when the first records come. A lane short for `EMPTY_PATIENCE`
        // patiences expires all the same. Once expired, a lane stays so until it is read far
        // enough.
        let at_hand = self.at_hand();
        for i in 0..self.lanes.len() {
            let l = &self.lanes[i];
            let short = Self::backlog(l) && !(self.ahead(l) || l.window.len() >= MAX_WINDOW);
            if !short {
                let l = &mut self.lanes[i];
                l.blocked = None;
                l.waited = None;
                l.expired = false;
                continue;
            }
            let expired = self.expired(l, now, at_hand);
            let l = &mut self.lanes[i];
            l.blocked.get_or_insert(now);
            if at_hand {
                l.waited.get_or_insert(now);
            } else {
                l.waited = None;
            }
            if expired && !l.expired {
                self.warnings.push(i);
            }
            l.expired = expired;
        }
        let pick = self
            .lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| self.bound(l, now, at_hand).map(|(k, ready)| (k, !ready, i)))
            .min();
        match pick {
            None => Step::Empty,
            Some((_, true, i)) => Step::Wait(i),
            Some((key, false, i)) => {
                if self.hold.is_some_and(|h| key > h) {
                    Step::Held
                } else {
                    Step::Take(i)
                }
            }
        }
    }

    /// The lanes whose wait outlasted the patience since the last call (each wait once).
    pub fn take_warnings(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.warnings)
    }

    /// Removes and returns `lane`'s earliest record with its key (None: not ordered).
    pub fn pop(&mut self, lane: usize) -> Option<(Option<i64>, M)> {
        let l = self.lanes.get_mut(lane)?;
        let ((key, _), record) = l.window.pop_first()?;
        let key = (key != UNORDERED).then_some(key);
        if key.is_some() {
            l.last_key = key;
        }
        Some((key, record))
    }

    /// Gives back a record [`Merge::pop`] handed over and its reader did not apply: it is the
    /// lane's earliest again, and the lane's resume offset stays at or below it.
    pub fn unpop(&mut self, lane: usize, key: Option<i64>, offset: i64, record: M) {
        if let Some(l) = self.lanes.get_mut(lane) {
            l.window.insert((key.unwrap_or(UNORDERED), offset), record);
        }
    }

    /// The backend says `lane` holds nothing more now, and its next offset is `next` (past the
    /// last record fetched when the partition ends in records that are never handed over,
    /// such as Kafka's transaction markers).
    pub fn at_end(&mut self, lane: usize, next: i64) {
        if let Some(l) = self.lanes.get_mut(lane) {
            l.fetched = l.fetched.max(next);
        }
    }

    /// The offset `lane` may resume from: its lowest offset not handed over.
    pub fn resume(&self, lane: usize) -> Option<i64> {
        let l = self.lanes.get(lane)?;
        Some(l.window.keys().map(|&(_, o)| o).min().unwrap_or(l.fetched))
    }

    /// The smallest key this merge may still hand over, as far as it knows (a lower bound while
    /// a lane with a backlog is not read far enough); None when nothing is pending.
    pub fn next_key(&self, now: Instant) -> Option<i64> {
        let at_hand = self.at_hand();
        self.lanes
            .iter()
            .filter_map(|l| self.bound(l, now, at_hand).map(|(k, _)| k))
            .min()
            .map(|k| if k == UNORDERED { i64::MIN } else { k })
    }

    /// Per lane: the most a record came behind the largest key fetched before it. Above the
    /// lookahead, the partition is more out of order than the merge can repair.
    pub fn disorder(&self) -> Vec<i64> {
        self.lanes.iter().map(|l| l.disorder).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Merge, Step};
    use std::collections::VecDeque;
    use std::time::{Duration, Instant};

    const PATIENCE: Duration = Duration::from_secs(5);

    /// Runs a merge over lanes whose records are all fetchable at once; returns the (key,
    /// lane, offset) handed over, checking after every step that each lane's resume offset is
    /// at most every offset it has not handed over.
    fn drain(lanes: Vec<Vec<i64>>, lookahead: i64) -> Vec<(i64, usize, i64)> {
        let mut queues: Vec<VecDeque<(i64, i64)>> = lanes
            .iter()
            .map(|keys| (0..).zip(keys.iter().copied()).collect())
            .collect();
        let ends: Vec<(i64, i64)> = lanes.iter().map(|k| (0, k.len() as i64)).collect();
        let mut m = Merge::new(&ends, lookahead, PATIENCE);
        let mut out = Vec::new();
        let now = Instant::now();
        loop {
            for (i, q) in queues.iter_mut().enumerate() {
                while m.wants(i) {
                    let Some((o, k)) = q.pop_front() else { break };
                    m.insert(i, Some(k), o, (i, o));
                }
            }
            match m.next(now) {
                Step::Take(i) => {
                    let Some((Some(key), (lane, offset))) = m.pop(i) else {
                        panic!("lane {i} had nothing to take")
                    };
                    assert_eq!(lane, i);
                    out.push((key, lane, offset));
                    let handed: Vec<i64> = out.iter().filter(|r| r.1 == i).map(|r| r.2).collect();
                    let resume = m.resume(i).unwrap_or(i64::MAX);
                    for o in 0..lanes[i].len() as i64 {
                        if !handed.contains(&o) {
                            assert!(resume <= o, "resume {resume} skips offset {o}");
                        }
                    }
                }
                Step::Empty => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    #[test]
    fn disorder_within_the_lookahead_comes_out_in_key_order() {
        // Two producers a day or two apart in each partition.
        let a = vec![1, 2, 3, 1, 4, 2, 5, 3, 6, 4, 7, 5, 6, 7];
        let b = vec![2, 1, 3, 2, 4, 3, 5, 4, 6, 5, 7, 6, 7];
        let out = drain(vec![a.clone(), b.clone()], 2);
        let keys: Vec<i64> = out.iter().map(|r| r.0).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(out.len(), a.len() + b.len());
    }

    #[test]
    fn the_lookahead_grows_to_the_disorder_seen() {
        let mut m: Merge<()> = Merge::new(&[(0, 100)], 2, PATIENCE);
        m.set_lookahead(2, 10);
        m.insert(0, Some(20), 0, ());
        m.insert(0, Some(14), 1, ());
        assert_eq!(m.lookahead(), 6);
        assert_eq!(m.take_growth(), Some(6));
        assert_eq!(m.take_growth(), None);
        m.insert(0, Some(1), 2, ());
        assert_eq!(m.lookahead(), 10, "never beyond the maximum");
        assert_eq!(m.disorder(), vec![19]);
    }

    #[test]
    fn without_lookahead_only_the_heads_are_merged() {
        let out = drain(vec![vec![1, 3, 2], vec![2]], 0);
        let keys: Vec<i64> = out.iter().map(|r| r.0).collect();
        assert_eq!(keys, vec![1, 2, 3, 2]);
    }

    #[test]
    fn a_silent_lane_is_waited_for_then_read_ahead_of_once_warned() {
        let mut m: Merge<()> = Merge::new(&[(0, 10), (0, 10)], 2, PATIENCE);
        for (o, k) in [(0, 1), (1, 2), (2, 3), (3, 4)] {
            m.insert(0, Some(k), o, ());
        }
        let t0 = Instant::now();
        assert_eq!(m.next(t0), Step::Wait(1));
        assert!(m.take_warnings().is_empty());
        assert_eq!(m.next(t0 + Duration::from_secs(1)), Step::Wait(1));
        let late = t0 + PATIENCE;
        assert_eq!(m.next(late), Step::Take(0));
        assert_eq!(m.take_warnings(), vec![1]);
        assert_eq!(m.pop(0).map(|r| r.0), Some(Some(1)));
        assert_eq!(m.next(late), Step::Take(0));
        assert!(m.take_warnings().is_empty(), "one warning per wait");
        assert_eq!(m.pop(0).map(|r| r.0), Some(Some(2)));
        // Records come: the lane counts again, and a new wait starts afresh.
        for (o, k) in [(0, 1), (1, 4)] {
            m.insert(1, Some(k), o, ());
        }
        assert_eq!(m.next(late), Step::Take(1));
    }

    #[test]
    fn a_wait_starts_when_records_are_at_hand_not_while_every_lane_is_empty() {
        let mut m: Merge<()> = Merge::new(&[(0, 10), (0, 10)], 2, PATIENCE);
        let t0 = Instant::now();
        // The broker answers nothing for longer than the patience: no lane is late.
        assert_eq!(m.next(t0), Step::Wait(0));
        let first = t0 + PATIENCE * 2;
        assert!(matches!(m.next(first), Step::Wait(_)));
        assert!(m.take_warnings().is_empty());
        // Lane 0's records come; lane 1's wait starts now.
        for (o, k) in [1, 2, 3].into_iter().enumerate() {
            m.insert(0, Some(k), o as i64, ());
        }
        assert_eq!(m.next(first), Step::Wait(1));
        assert_eq!(m.next(first + PATIENCE / 2), Step::Wait(1));
        assert!(m.take_warnings().is_empty(), "late by half the patience");
        assert_eq!(m.next(first + PATIENCE), Step::Take(0));
        assert_eq!(m.take_warnings(), [1]);
        // Once warned, read ahead of it until it is read far enough, even with nothing at hand.
        m.pop(0).expect("a record");
        m.pop(0).expect("a record");
        m.pop(0).expect("a record");
        assert_eq!(
            m.next(first + PATIENCE * 2),
            Step::Wait(0),
            "lane 0 has a backlog"
        );
        for (o, k) in [4, 5, 6].into_iter().enumerate() {
            m.insert(0, Some(k), o as i64 + 3, ());
        }
        assert_eq!(m.next(first + PATIENCE * 2), Step::Take(0));
        assert!(m.take_warnings().is_empty(), "the same wait, warned once");
    }

    #[test]
    fn a_lane_that_never_delivers_expires_even_with_nothing_at_hand() {
        // Another worker's merge waits on this one's next key: a partition that never
        // delivers must not hold it back for good.
        let mut m: Merge<()> = Merge::new(&[(0, 10)], 2, PATIENCE);
        let t0 = Instant::now();
        assert_eq!(m.next(t0), Step::Wait(0));
        let nearly = t0 + PATIENCE * (super::EMPTY_PATIENCE - 1);
        assert_eq!(m.next(nearly), Step::Wait(0));
        assert_eq!(m.next_key(nearly), Some(i64::MIN), "still waited for");
        assert!(m.take_warnings().is_empty());
        let late = t0 + PATIENCE * super::EMPTY_PATIENCE;
        assert_eq!(m.next(late), Step::Empty);
        assert_eq!(m.next_key(late), None, "no longer holds anyone back");
        assert_eq!(m.take_warnings(), [0]);
    }

    #[test]
    fn a_lane_that_delivers_is_not_late_however_long_it_fills() {
        let mut m: Merge<()> = Merge::new(&[(0, 1_000), (0, 1_000)], 100, PATIENCE);
        let t0 = Instant::now();
        m.insert(0, Some(1), 0, ());
        m.insert(0, Some(200), 1, ());
        // Lane 1 delivers a day every patience ÷ 2, far from read 100 days ahead.
        for k in 1..(2 * super::EMPTY_PATIENCE as i64 - 1) {
            m.insert(1, Some(k), k, ());
            let now = t0 + PATIENCE / 2 * k as u32;
            assert_eq!(m.next(now), Step::Wait(1), "still filling at {k}");
        }
        assert!(m.take_warnings().is_empty(), "it delivered");
        // Short for EMPTY_PATIENCE patiences since the first look (t0 + patience ÷ 2): read
        // ahead of, delivering or not.
        let bound = t0 + PATIENCE / 2 + PATIENCE * super::EMPTY_PATIENCE;
        m.insert(1, Some(11), 11, ());
        assert_eq!(m.next(bound - Duration::from_millis(1)), Step::Wait(1));
        assert!(m.take_warnings().is_empty(), "it delivered just now");
        assert_eq!(m.next(bound), Step::Take(0));
        assert_eq!(m.take_warnings(), [1]);
    }

    #[test]
    fn the_hold_stops_records_after_it() {
        let mut m: Merge<()> = Merge::new(&[(0, 2)], 0, PATIENCE);
        m.insert(0, Some(5), 0, ());
        m.insert(0, Some(6), 1, ());
        m.hold_after(Some(5));
        let now = Instant::now();
        assert_eq!(m.next(now), Step::Take(0));
        assert_eq!(m.pop(0).map(|r| r.0), Some(Some(5)));
        assert_eq!(m.next(now), Step::Held);
        m.hold_after(None);
        assert_eq!(m.next(now), Step::Take(0));
    }

    #[test]
    fn unordered_records_go_first_without_waiting() {
        // A holdings lane (no key) with a backlog beside a price lane.
        let mut m: Merge<&str> = Merge::new(&[(0, 100), (0, 100)], 7, PATIENCE);
        m.insert(0, None, 0, "holding");
        m.insert(1, Some(3), 0, "close");
        let now = Instant::now();
        assert_eq!(m.next(now), Step::Take(0));
        assert_eq!(m.pop(0), Some((None, "holding")));
        assert!(m.wants(1));
    }

    #[test]
    fn a_record_given_back_comes_first_again_and_holds_the_resume_offset() {
        let mut m: Merge<&str> = Merge::new(&[(0, 3)], 0, PATIENCE);
        m.insert(0, Some(1), 0, "a");
        m.insert(0, Some(2), 1, "b");
        m.insert(0, Some(3), 2, "c");
        let now = Instant::now();
        assert_eq!(m.next(now), Step::Take(0));
        assert_eq!(m.pop(0), Some((Some(1), "a")));
        assert_eq!(m.resume(0), Some(1));
        let (key, rec) = m.pop(0).expect("b is pending");
        m.unpop(0, key, 1, rec);
        assert_eq!(m.resume(0), Some(1), "b was not applied");
        assert_eq!(m.pop(0), Some((Some(2), "b")));
        assert_eq!(m.pop(0), Some((Some(3), "c")));
        assert_eq!(m.resume(0), Some(3));
        // The partition ends in two records a reader never sees (transaction markers).
        m.at_end(0, 5);
        assert_eq!(m.resume(0), Some(5));
        m.at_end(0, 4);
        assert_eq!(m.resume(0), Some(5), "never backwards");
    }

    #[test]
    fn next_key_is_a_lower_bound_while_a_lane_is_short() {
        let mut m: Merge<()> = Merge::new(&[(0, 100), (0, 0)], 3, PATIENCE);
        let now = Instant::now();
        assert_eq!(m.next_key(now), Some(i64::MIN));
        m.insert(0, Some(10), 0, ());
        m.insert(0, Some(11), 1, ());
        // Lane 0 is read to 11 only: something down to 11 - 3 may still come.
        assert_eq!(m.next_key(now), Some(8));
        m.insert(0, Some(13), 2, ());
        assert_eq!(m.next_key(now), Some(10));
        m.insert(1, Some(9), 0, ());
        assert_eq!(m.next_key(now), Some(9));
        assert_eq!(m.resume(0), Some(0));
        let _ = m.pop(1);
        assert_eq!(m.next_key(now), Some(10));
        assert_eq!(m.resume(1), Some(1));
    }
}
