//! The job's round and timestamp logic over the in-process memory log, with an in-memory
//! stateful sink: restart from stored state, a log whose head is gone (retention), a lost
//! log refused and reset, replays on top of the state, holdings read before prices.
//! Fast: no broker, no database.

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

use chrono::NaiveDate;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use stockflow_core::Restore;
use stockflow_dataflow::job::{
    self, Cluster, JobConfig, JobCounters, RunRequest, StartSpec, Topics,
};
use stockflow_dataflow::{MemoryStore, StoreTables};
use stockflow_market::holding::initial_holdings;
use stockflow_market::{first_trading_day, Calendar, PriceModel, Tick, Universe};
use stockflow_transport::memory::MemoryLog;
use stockflow_transport::{Log, TopicSpec};

fn topics() -> Topics {
    Topics {
        prices: "prices".into(),
        holdings: "holdings".into(),
    }
}

fn market() -> (MemoryLog, Arc<Universe>) {
    let log = MemoryLog::new();
    for t in ["prices", "holdings"] {
        let _ = log.ensure_topic(&TopicSpec::kept(t, 3));
    }
    (log, Arc::new(Universe::spec()))
}

fn days(from: NaiveDate, n: usize) -> Vec<NaiveDate> {
    Calendar::new()
        .trading_days(from, from + chrono::Duration::days(n as i64 * 2 + 30))
        .into_iter()
        .take(n)
        .collect()
}

/// Publishes the closes of `days` (the spec's stocks, seed 5), keyed by ticker.
fn publish_days(log: &MemoryLog, u: &Universe, all: &[NaiveDate], range: std::ops::Range<usize>) {
    for (s, def) in u.stocks.iter().enumerate() {
        let mut path = u
            .price_path(PriceModel::RandomWalk, 5, s as u32)
            .unwrap_or_else(|| panic!("stock {s}"));
        for (i, day) in all.iter().enumerate() {
            let price = path.next_close();
            if range.contains(&i) {
                let tick = Tick {
                    ticker: def.ticker.clone(),
                    exchange: def.exchange,
                    date: *day,
                    price,
                };
                let p = MemoryLog::partition_for(def.ticker.as_bytes(), 3);
                let _ = log.append(
                    "prices",
                    p,
                    Some(def.ticker.as_bytes()),
                    Some(&tick.to_json()),
                );
            }
        }
    }
}

fn publish_holdings(log: &MemoryLog, u: &Universe) {
    for h in initial_holdings(u, first_trading_day()) {
        let key = h.key();
        let p = MemoryLog::partition_for(key.as_bytes(), 3);
        let _ = log.append("holdings", p, Some(key.as_bytes()), Some(&h.to_json()));
    }
}

fn config(u: &Arc<Universe>, workers: usize) -> JobConfig {
    JobConfig {
        topics: topics(),
        until_caught_up: true,
        cluster: Cluster::single(workers),
        universe: Arc::clone(u),
        max_batch: 40,
        queue_depth: 2,
        commit_rows: stockflow_dataflow::job::committer::COALESCE_ROWS,
        keep_state: true,
        source_give_up: Duration::from_secs(5),
        window: None,
        days_per_time: job::DAYS_PER_TIME,
        memory_days: Some(40),
        settings: Vec::new(),
    }
}

/// Runs the job until caught up on `store`, as `stockflow run` does (restoring a window of
/// the last 10 days of state, so that restarts exercise windows and re-runs).
fn run(
    log: &MemoryLog,
    u: &Arc<Universe>,
    store: &MemoryStore,
    spec: StartSpec,
    reset: bool,
    workers: usize,
) -> Result<job::JobReport, stockflow_dataflow::Error> {
    run_restoring(log, u, store, spec, reset, workers, Restore::RecentDays(10))
}

fn run_restoring(
    log: &MemoryLog,
    u: &Arc<Universe>,
    store: &MemoryStore,
    spec: StartSpec,
    reset: bool,
    workers: usize,
    restore: Restore,
) -> Result<job::JobReport, stockflow_dataflow::Error> {
    run_configured(
        config(u, workers),
        log,
        store,
        spec,
        reset,
        restore,
        &Arc::new(JobCounters::default()),
    )
}

/// One run of the job with this configuration, on `store`, counting into `counters`.
fn run_configured(
    config: JobConfig,
    log: &MemoryLog,
    store: &MemoryStore,
    spec: StartSpec,
    reset: bool,
    restore: Restore,
    counters: &Arc<JobCounters>,
) -> Result<job::JobReport, stockflow_dataflow::Error> {
    job::run(
        config,
        Arc::new(log.clone()),
        Some(Box::new(store.clone())),
        RunRequest {
            spec,
            reset_offsets: reset,
            restore,
            follower: Default::default(),
        },
        Arc::new(AtomicBool::new(false)),
        Arc::clone(counters),
        |_, _| {},
    )
}

/// The tables a job must end with, whatever happened on the way (offsets and counts aside).
fn outcome(t: &StoreTables) -> (usize, Vec<String>, usize, usize) {
    let rows: Vec<String> = t
        .evaluations
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {:?} {:?}",
                e.portfolio, e.date, e.value, e.change, e.change_pct
            )
        })
        .collect();
    (rows.len(), rows, t.prices.len(), t.holdings.len())
}

fn uninterrupted(n_days: usize) -> (StoreTables, Vec<NaiveDate>) {
    let (log, u) = market();
    let all = days(first_trading_day(), n_days);
    publish_holdings(&log, &u);
    publish_days(&log, &u, &all, 0..n_days);
    let store = MemoryStore::default();
    let r = run(&log, &u, &store, StartSpec::Resume, false, 2);
    assert!(r.is_ok(), "{r:?}");
    (store.snapshot(), all)
}

#[test]
fn a_restart_continues_from_the_stored_state_not_the_log() {
    let (want, all) = uninterrupted(20);
    assert_eq!(want.evaluations.len(), 20 * 6);
    let (log, u) = market();
    publish_holdings(&log, &u);
    publish_days(&log, &u, &all, 0..10);
    let store = MemoryStore::default();
    let first = run(&log, &u, &store, StartSpec::Resume, false, 1);
    assert_eq!(first.map(|r| r.ticks).ok(), Some(10 * 24));
    publish_days(&log, &u, &all, 10..20);
    // The restart reads only what is new: the state comes from the store.
    let second = run(&log, &u, &store, StartSpec::Resume, false, 3);
    assert_eq!(
        second.map(|r| (r.ticks, r.holdings)).ok(),
        Some((10 * 24, 0))
    );
    assert_eq!(outcome(&store.snapshot()), outcome(&want));
}

#[test]
fn a_log_whose_head_is_gone_still_gives_the_uninterrupted_result() {
    let (want, all) = uninterrupted(16);
    let (log, u) = market();
    publish_holdings(&log, &u);
    publish_days(&log, &u, &all, 0..8);
    let store = MemoryStore::default();
    assert!(run(&log, &u, &store, StartSpec::Resume, false, 2).is_ok());
    // Retention drops everything read so far (and the holdings).
    for topic in ["prices", "holdings"] {
        for w in log.watermarks(topic).expect("the topic exists") {
            let _ = log.truncate_before(topic, w.partition, w.high);
        }
    }
    publish_days(&log, &u, &all, 8..16);
    let snapshot = store.snapshot();
    let plan = job::plan(
        &log,
        &topics(),
        &job::Stored {
            offsets: snapshot.offsets.clone(),
            marks: snapshot.marks.clone(),
        },
        &StartSpec::Resume,
        false,
    );
    assert!(plan.is_ok());
    assert!(run(&log, &u, &store, StartSpec::Resume, false, 2).is_ok());
    assert_eq!(outcome(&store.snapshot()), outcome(&want));
}

#[test]
fn a_lost_log_is_refused_then_read_from_its_new_start() {
    let (log, u) = market();
    let all = days(first_trading_day(), 14);
    publish_holdings(&log, &u);
    publish_days(&log, &u, &all, 0..10);
    let store = MemoryStore::default();
    assert!(run(&log, &u, &store, StartSpec::Resume, false, 1).is_ok());
    let before = store.snapshot();
    // The broker's data is lost; the topics come back empty; new days arrive.
    log.recreate("prices").unwrap_or_else(|e| panic!("{e}"));
    log.recreate("holdings").unwrap_or_else(|e| panic!("{e}"));
    publish_holdings(&log, &u);
    publish_days(&log, &u, &all, 10..14);
    let refused = run(&log, &u, &store, StartSpec::Resume, false, 1);
    let msg = refused.expect_err("a lost log is refused").to_string();
    assert!(
        msg.contains("the log is not the one this job read"),
        "{msg}"
    );
    assert!(msg.contains("prices/0 ends at offset"), "{msg}");
    assert!(msg.contains("--reset-offsets"), "{msg}");
    assert_eq!(
        store.snapshot().evaluations,
        before.evaluations,
        "nothing written"
    );
    assert!(run(&log, &u, &store, StartSpec::Resume, true, 2).is_ok());
    let after = store.snapshot();
    assert_eq!(
        after.evaluations.len(),
        14 * 6,
        "the new days are evaluated"
    );
    assert!(
        before.evaluations.is_subset(&after.evaluations),
        "no older row changed"
    );
    // The first new day's change is against the last stored day.
    assert!(after
        .evaluations
        .iter()
        .filter(|e| e.date == all[10])
        .all(|e| e.change.is_some()));
}

#[test]
fn replays_on_top_of_the_state_change_nothing() {
    let (want, all) = uninterrupted(12);
    let (log, u) = market();
    publish_holdings(&log, &u);
    publish_days(&log, &u, &all, 0..12);
    let store = MemoryStore::default();
    assert!(run(&log, &u, &store, StartSpec::Resume, false, 2).is_ok());
    let middle: std::collections::BTreeMap<i32, i64> = log
        .watermarks("prices")
        .expect("the topic exists")
        .iter()
        .map(|w| (w.partition, w.high / 2))
        .collect();
    for spec in [
        StartSpec::Offsets(middle),
        StartSpec::Earliest,
        StartSpec::Time(0),
        StartSpec::Latest,
        StartSpec::Resume,
    ] {
        let r = run(&log, &u, &store, spec.clone(), false, 2);
        assert!(r.is_ok(), "{spec:?}: {r:?}");
        assert_eq!(outcome(&store.snapshot()), outcome(&want), "after {spec:?}");
    }
}

#[test]
fn holdings_present_at_start_are_read_before_any_price() {
    let (log, u) = market();
    let all = days(first_trading_day(), 6);
    // Prices first in the log, holdings after them.
    publish_days(&log, &u, &all, 0..6);
    publish_holdings(&log, &u);
    let store = MemoryStore::default();
    let r = run(&log, &u, &store, StartSpec::Resume, false, 2);
    assert_eq!(r.map(|r| (r.ticks, r.holdings)).ok(), Some((6 * 24, 36)));
    let t = store.snapshot();
    assert_eq!(t.evaluations.len(), 6 * 6);
    assert_eq!(
        t.retracted, 0,
        "no portfolio was evaluated on partial positions"
    );
    assert!(t.issues.is_empty());
}

#[test]
fn an_incomplete_day_is_an_issue_until_its_last_close() {
    let (log, u) = market();
    let all = days(first_trading_day(), 2);
    publish_holdings(&log, &u);
    publish_days(&log, &u, &all, 0..1);
    // Day 2: only IBM's close.
    let ibm = u.stock_id("IBM").unwrap_or(0);
    let tick = Tick {
        ticker: "IBM".into(),
        exchange: stockflow_market::Exchange::Se1,
        date: all[1],
        price: stockflow_core::Money::from_int(250),
    };
    let _ = log.append("prices", 0, Some(b"IBM"), Some(&tick.to_json()));
    let store = MemoryStore::default();
    assert!(run(&log, &u, &store, StartSpec::Resume, false, 1).is_ok());
    let t = store.snapshot();
    let holders = u
        .portfolios
        .iter()
        .filter(|p| p.holdings.iter().any(|(s, _)| *s == ibm))
        .count();
    assert_eq!(t.issues.len(), holders, "{:?}", t.issues);
    assert!(t
        .issues
        .iter()
        .all(|i| i.date == all[1] && i.priced == 1 && i.held == 6));
    // The rest of day 2 arrives: the issues go, the evaluations come.
    publish_days(&log, &u, &all, 1..2);
    assert!(run(&log, &u, &store, StartSpec::Resume, false, 1).is_ok());
    let t = store.snapshot();
    assert!(t.issues.is_empty());
    assert_eq!(t.evaluations.len(), 2 * 6);
}

#[test]
fn a_restart_restores_a_window_and_a_late_correction_widens_it() {
    let (log, u) = market();
    let all = days(first_trading_day(), 40);
    publish_holdings(&log, &u);
    publish_days(&log, &u, &all, 0..30);
    let store = MemoryStore::default();
    assert!(run(&log, &u, &store, StartSpec::Resume, false, 2).is_ok());
    publish_days(&log, &u, &all, 30..40);
    // Only the last 10 calendar days of closes are restored: one pass, few closes.
    let r = run(&log, &u, &store, StartSpec::Resume, false, 2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.passes, 1);
    assert!(r.restored_window.is_some());
    assert!(
        r.restored_prices < 10 * 24,
        "{} closes restored",
        r.restored_prices
    );
    // A correction of day 5's IBM close: a record before the window, so a second pass.
    let tick = Tick {
        ticker: "IBM".into(),
        exchange: stockflow_market::Exchange::Se1,
        date: all[5],
        price: stockflow_core::Money::from_int(300),
    };
    let p = MemoryLog::partition_for(b"IBM", 3);
    let _ = log.append("prices", p, Some(b"IBM"), Some(&tick.to_json()));
    let r = run(&log, &u, &store, StartSpec::Resume, false, 2).unwrap_or_else(|e| panic!("{e}"));
    // Three passes: the second keeps every day until it has read the correction (the job
    // keeps 40 days in memory), the third keeps 40 days again.
    assert_eq!(r.passes, 3, "re-ran with a wider window");
    assert_eq!(r.ticks, 1);
    // The same log evaluated in one uninterrupted run, restoring nothing.
    let reference = MemoryStore::default();
    let full = run_restoring(
        &log,
        &u,
        &reference,
        StartSpec::Resume,
        false,
        1,
        Restore::All,
    );
    assert!(full.is_ok());
    assert_eq!(outcome(&store.snapshot()), outcome(&reference.snapshot()));
    let ibm_holders: Vec<u32> = (0..u.portfolios.len() as u32)
        .filter(|p| {
            u.portfolios[*p as usize]
                .holdings
                .iter()
                .any(|(s, _)| *s == 0)
        })
        .collect();
    let changed = store
        .snapshot()
        .evaluations
        .iter()
        .filter(|e| e.date == all[5] && ibm_holders.contains(&e.portfolio))
        .count();
    assert_eq!(changed, ibm_holders.len());
}

#[test]
fn a_log_that_fails_for_a_while_is_waited_for_and_one_that_keeps_failing_is_given_up() {
    let (log, u) = market();
    let all = days(first_trading_day(), 5);
    publish_holdings(&log, &u);
    publish_days(&log, &u, &all, 0..5);
    // The broker is unreachable for half a second: the job retries and ends complete.
    let store = MemoryStore::default();
    log.set_unreachable(true);
    let healer = {
        let log = log.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            log.set_unreachable(false);
        })
    };
    let counters = Arc::new(JobCounters::default());
    let r = run_configured(
        config(&u, 2),
        &log,
        &store,
        StartSpec::Resume,
        false,
        Restore::RecentDays(10),
        &counters,
    )
    .expect("a log that comes back is read to its end");
    healer.join().expect("the healer ends");
    assert_eq!(r.ticks, 5 * 24);
    assert!(r.source_errors > 0, "the failures were seen and retried");
    assert_eq!(store.snapshot().evaluations.len(), 5 * 6);

    // Unreachable for good (a job with nothing stored: its start reads nothing): the job gives
    // up after its limit (2 s here), saying so, though most polls in between return nothing
    // rather than an error.
    log.set_unreachable(true);
    let fresh = MemoryStore::default();
    let started = std::time::Instant::now();
    let err = run_configured(
        JobConfig {
            source_give_up: Duration::from_secs(2),
            ..config(&u, 1)
        },
        &log,
        &fresh,
        StartSpec::Resume,
        false,
        Restore::RecentDays(10),
        &Arc::new(JobCounters::default()),
    )
    .expect_err("a log that keeps failing is given up");
    let msg = err.to_string();
    assert!(msg.contains("giving up"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "given up in time"
    );
    assert!(
        fresh.snapshot().evaluations.is_empty(),
        "nothing evaluated from a log never read"
    );
}

#[test]
fn a_partition_added_while_running_stops_the_job_and_a_restart_reads_it() {
    let (want, _) = uninterrupted(11);
    let (log, u) = market();
    let all = days(first_trading_day(), 11);
    publish_holdings(&log, &u);
    publish_days(&log, &u, &all, 0..10);
    let store = MemoryStore::default();
    let stop = Arc::new(AtomicBool::new(false));
    let live = {
        let (log, u, store, stop) = (
            log.clone(),
            Arc::clone(&u),
            store.clone(),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            job::run(
                JobConfig {
                    until_caught_up: false,
                    ..config(&u, 2)
                },
                Arc::new(log),
                Some(Box::new(store)),
                RunRequest {
                    spec: StartSpec::Resume,
                    reset_offsets: false,
                    restore: Restore::RecentDays(10),
                    follower: Default::default(),
                },
                stop,
                Arc::new(JobCounters::default()),
                |_, _| {},
            )
        })
    };
    // Ten days committed (the progress signal), then a partition appears and the eleventh
    // day goes there only.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.snapshot().evaluations.len() < 10 * 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "ten days not committed in 60 s"
        );
        assert!(!live.is_finished(), "the live job ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    log.add_partitions("prices", 4).expect("a fourth partition");
    let day = all[10];
    for (s, def) in u.stocks.iter().enumerate() {
        let mut path = u
            .price_path(PriceModel::RandomWalk, 5, s as u32)
            .expect("a price path");
        let price = (0..11).map(|_| path.next_close()).last().expect("a close");
        let tick = Tick {
            ticker: def.ticker.clone(),
            exchange: def.exchange,
            date: day,
            price,
        };
        log.append(
            "prices",
            3,
            Some(def.ticker.as_bytes()),
            Some(&tick.to_json()),
        )
        .expect("appending to the new partition");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !live.is_finished() {
        if std::time::Instant::now() > deadline {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            panic!("the job did not notice the new partition within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let err = live
        .join()
        .expect("the job thread")
        .expect_err("a new partition ends the run with an error");
    let text = err.to_string();
    assert!(text.contains("gained partitions"), "{text}");
    assert!(text.contains("stockflow run"), "{text}");
    assert_eq!(
        err.fault(),
        stockflow_core::Fault::External,
        "exit 3: a restart helps"
    );
    assert_eq!(
        store.snapshot().evaluations.len(),
        10 * 6,
        "stopped before day 11"
    );
    // The restart plans the new partition and reads it from its start.
    let report = run(&log, &u, &store, StartSpec::Resume, false, 2).expect("the restart");
    assert_eq!(
        report.ticks, 24,
        "read the eleventh day from the new partition"
    );
    assert_eq!(outcome(&store.snapshot()), outcome(&want));
}
