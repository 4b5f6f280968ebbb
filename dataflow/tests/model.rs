//! Model-based test of the whole job over the memory log: random sequences of operations
//! (closes and holdings published in and out of order, late holdings before the restore window
//! on one partition and across partitions, corrections, dead letters, transaction markers, a
//! crash between two commits, restarts, replays from offsets or a time, a log refilled and read
//! again with `--reset-offsets`, 1–8 workers over 1–4 partitions, one or two processes) against
//! a plain evaluation of every record published (`common::reference`). After every run that
//! ends cleanly the tables equal the reference's, and the run read exactly the records its
//! plan named (no fewer: nothing skipped; no more: nothing counted twice).
//!
//! `STOCKFLOW_MODEL_CASES` sets the number of cases (default 1,000), `STOCKFLOW_MODEL_SEED`
//! replays a seed; a failing case prints its seed and is shrunk to a minimal sequence.

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

mod common;

use chrono::NaiveDate;
use common::{latest_state, reference, Event};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use stockflow_core::{HoldingInput, Money, Position, PriceInput, Restore};
use stockflow_dataflow::job::{
    self, Cluster, JobConfig, JobCounters, JobReport, RunRequest, StartSpec, Stored, Topics,
};
use stockflow_dataflow::MemoryStore;
use stockflow_market::holding::Holding;
use stockflow_market::universe::SyntheticSpec;
use stockflow_market::{first_trading_day, Calendar, Tick, Universe};
use stockflow_transport::memory::MemoryLog;
use stockflow_transport::{Log, TopicSpec};

/// What the cases exercised, printed at the end (a model that never crashes or rewinds tests
/// little).
static RUNS: AtomicU64 = AtomicU64::new(0);
static CLUSTER_RUNS: AtomicU64 = AtomicU64::new(0);
static CRASHES: AtomicU64 = AtomicU64::new(0);
static REWINDS: AtomicU64 = AtomicU64::new(0);
static REFUSALS: AtomicU64 = AtomicU64::new(0);
static REPLAYS: AtomicU64 = AtomicU64::new(0);

const PRICES: &str = "prices";
const HOLDINGS: &str = "holdings";
const DAYS: usize = 30;
/// The longest one run of the job over the model's log may take (they take milliseconds).
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Calendar days of closes a restart restores (the model's days span about six weeks).
const RESTORE_DAYS: u32 = 10;

/// Where a run starts.
#[derive(Debug, Clone)]
enum From {
    Resume,
    Earliest,
    /// Each price partition from this share (‰) of its stored offset: a replay back.
    Offsets(Vec<u16>),
    /// From the log time of this record (index into the records published before the last
    /// run that ended cleanly).
    Time(usize),
}

#[derive(Debug, Clone)]
enum Op {
    /// Every stock's close for days `from..from + count`, in day order.
    Days { from: usize, count: usize, salt: u8 },
    /// One close (a correction when the day has one).
    Tick { stock: u32, day: usize, cents: i64 },
    /// A holdings change from a day (0 closes the position).
    Hold {
        portfolio: u32,
        stock: u32,
        day: usize,
        qty: i64,
    },
    /// A record that breaks the input contract.
    Garbage { partition: usize },
    /// A transaction marker: an offset readers never see.
    Marker { partition: usize },
    Run {
        workers: usize,
        two_processes: bool,
        /// The store fails at this many batches into the run (a crash between commits).
        crash_at: Option<u64>,
        from: From,
        max_batch: usize,
        /// Trading days per catch-up timestamp.
        days_per_time: i64,
        /// Calendar days the job keeps in memory (None: every day).
        memory_days: Option<i64>,
    },
    /// The job catches up; then the broker loses its data and the first ‰ of what the log
    /// held is published again (records lost before any run read them are gone for good, so
    /// the model lets the job read everything first).
    Refill { keep: u16, workers: usize },
}

/// What a record of the log is about (versions come from the log).
#[derive(Debug, Clone)]
enum Content {
    Price {
        stock: u32,
        day: NaiveDate,
        price: Money,
    },
    Holding {
        portfolio: u32,
        stock: u32,
        from: NaiveDate,
        quantity: i64,
    },
    Garbage,
    Marker,
}

#[derive(Debug, Clone)]
struct Published {
    topic: &'static str,
    partition: i32,
    key: Vec<u8>,
    payload: Vec<u8>,
    content: Content,
    /// Where it landed in the current log.
    offset: i64,
}

struct World {
    log: MemoryLog,
    u: Arc<Universe>,
    days: Vec<NaiveDate>,
    store: MemoryStore,
    parts: (i32, i32),
    /// What the log holds now, in publishing order.
    current: Vec<Published>,
    /// Every valid record ever published, with its version.
    history: Vec<Event>,
    /// Log times of the records of `history` (for time replays).
    stamps: Vec<i64>,
    /// Every dead letter's position ever published.
    garbage: BTreeSet<Position>,
    /// Markers in the current log, per (topic, partition): their offsets.
    markers: BTreeSet<(String, i32, i64)>,
    /// `history.len()` at the end of the last run that ended cleanly.
    last_ok: usize,
    /// The log was refilled since the last clean run.
    refilled: bool,
    /// Trading days per catch-up timestamp of the next runs.
    days_per_time: i64,
    /// Calendar days the next runs keep in memory.
    memory_days: Option<i64>,
}

fn universe() -> Universe {
    Universe::synthetic(SyntheticSpec {
        stocks: 4,
        portfolios: 3,
        min_holdings: 1,
        max_holdings: 3,
        seed: 7,
    })
}

fn topics() -> Topics {
    Topics {
        prices: PRICES.into(),
        holdings: HOLDINGS.into(),
    }
}

impl World {
    fn new(parts: (i32, i32)) -> Self {
        let log = MemoryLog::new();
        log.ensure_topic(&TopicSpec::kept(PRICES, parts.0))
            .expect("the memory log creates topics");
        log.ensure_topic(&TopicSpec::kept(HOLDINGS, parts.1))
            .expect("the memory log creates topics");
        let days: Vec<NaiveDate> = Calendar::new()
            .trading_days(
                first_trading_day(),
                first_trading_day() + chrono::Duration::days(80),
            )
            .into_iter()
            .take(DAYS)
            .collect();
        let mut w = World {
            log,
            u: Arc::new(universe()),
            days,
            store: MemoryStore::default(),
            parts,
            current: Vec::new(),
            history: Vec::new(),
            stamps: Vec::new(),
            garbage: BTreeSet::new(),
            markers: BTreeSet::new(),
            last_ok: 0,
            refilled: false,
            days_per_time: job::DAYS_PER_TIME,
            memory_days: None,
        };
        // The initial holdings, from the first day.
        let initial: Vec<(u32, u32, i64)> =
            w.u.portfolios
                .iter()
                .enumerate()
                .flat_map(|(p, def)| def.holdings.iter().map(move |(s, q)| (p as u32, *s, *q)))
                .collect();
        for (p, s, q) in initial {
            w.hold(p, s, 0, q);
        }
        w
    }

    fn publish(&mut self, mut p: Published) {
        if matches!(p.content, Content::Marker) {
            let pos = self
                .log
                .append_control(p.topic, p.partition)
                .expect("the topic exists");
            self.markers
                .insert((p.topic.to_string(), pos.partition, pos.offset));
            p.offset = pos.offset;
            self.current.push(p);
            return;
        }
        let (pos, ts) = self
            .log
            .append_timed(p.topic, p.partition, Some(&p.key), Some(&p.payload))
            .expect("the topic exists");
        let version = (ts, pos.partition, pos.offset);
        p.offset = pos.offset;
        match p.content {
            Content::Price { stock, day, price } => {
                self.history.push(Event::Price(PriceInput {
                    stock,
                    date: day,
                    price,
                    version,
                }));
                self.stamps.push(ts);
            }
            Content::Holding {
                portfolio,
                stock,
                from,
                quantity,
            } => {
                self.history.push(Event::Holding(HoldingInput {
                    portfolio,
                    stock,
                    from,
                    quantity,
                    version,
                }));
                self.stamps.push(ts);
            }
            Content::Garbage => {
                self.garbage.insert(pos);
            }
            Content::Marker => {}
        }
        self.current.push(p);
    }

    fn tick(&mut self, stock: u32, day: usize, price: Money) {
        let def = &self.u.stocks[stock as usize];
        let date = self.days[day % self.days.len()];
        let tick = Tick {
            ticker: def.ticker.clone(),
            exchange: def.exchange,
            date,
            price,
        };
        let key = def.ticker.as_bytes().to_vec();
        let partition = MemoryLog::partition_for(&key, self.parts.0 as usize);
        self.publish(Published {
            topic: PRICES,
            partition,
            payload: tick.to_json(),
            key,
            content: Content::Price {
                stock,
                day: date,
                price,
            },
            offset: 0,
        });
    }

    fn hold(&mut self, portfolio: u32, stock: u32, day: usize, quantity: i64) {
        let from = self.days[day % self.days.len()];
        let h = Holding {
            portfolio: self.u.portfolios[portfolio as usize].id.clone(),
            ticker: self.u.stocks[stock as usize].ticker.clone(),
            quantity,
            from,
        };
        let key = h.key().into_bytes();
        let partition = MemoryLog::partition_for(&key, self.parts.1 as usize);
        self.publish(Published {
            topic: HOLDINGS,
            partition,
            payload: h.to_json(),
            key,
            content: Content::Holding {
                portfolio,
                stock,
                from,
                quantity,
            },
            offset: 0,
        });
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Days { from, count, salt } => {
                for d in *from..(*from + *count).min(self.days.len()) {
                    for s in 0..self.u.stocks.len() as u32 {
                        let cents = 1_000
                            + (d as i64 * 37 + i64::from(s) * 101 + i64::from(*salt) * 13) % 9_000;
                        self.tick(s, d, Money::from_units(i128::from(cents) * 10_000));
                    }
                }
            }
            Op::Tick { stock, day, cents } => {
                let s = stock % self.u.stocks.len() as u32;
                self.tick(s, *day, Money::from_units(i128::from(*cents) * 10_000));
            }
            Op::Hold {
                portfolio,
                stock,
                day,
                qty,
            } => {
                let p = portfolio % self.u.portfolios.len() as u32;
                let s = stock % self.u.stocks.len() as u32;
                self.hold(p, s, *day, *qty);
            }
            Op::Garbage { partition } => self.publish(Published {
                topic: PRICES,
                partition: (*partition % self.parts.0 as usize) as i32,
                key: b"S0000".to_vec(),
                payload: b"{\"TICK\":\"S0000\",\"PRICE\":".to_vec(),
                content: Content::Garbage,
                offset: 0,
            }),
            Op::Marker { partition } => self.publish(Published {
                topic: PRICES,
                partition: (*partition % self.parts.0 as usize) as i32,
                key: Vec::new(),
                payload: Vec::new(),
                content: Content::Marker,
                offset: 0,
            }),
            Op::Refill { keep, workers } => {
                self.run(*workers, false, None, &From::Resume, 25)?;
                let keep = self.current.len() * usize::from(*keep) / 1000;
                let again: Vec<Published> = self.current[..keep].to_vec();
                self.log.recreate(PRICES).expect("the topic exists");
                self.log.recreate(HOLDINGS).expect("the topic exists");
                self.current.clear();
                self.markers.clear();
                for p in again {
                    self.publish(p);
                }
                self.refilled = true;
            }
            Op::Run {
                workers,
                two_processes,
                crash_at,
                from,
                max_batch,
                days_per_time,
                memory_days,
            } => {
                self.days_per_time = *days_per_time;
                self.memory_days = *memory_days;
                self.run(*workers, *two_processes, *crash_at, from, *max_batch)?
            }
        }
        Ok(())
    }

    fn stored(&self) -> Stored {
        let t = self.store.snapshot();
        Stored {
            offsets: t.offsets,
            marks: t.marks,
        }
    }

    fn spec(&self, from: &From) -> StartSpec {
        match from {
            From::Resume => StartSpec::Resume,
            From::Earliest => StartSpec::Earliest,
            From::Offsets(shares) => {
                let stored = self.stored();
                let m: BTreeMap<i32, i64> = (0..self.parts.0)
                    .zip(shares.iter().cycle())
                    .filter_map(|(p, share)| {
                        let o = *stored.offsets.get(&(PRICES.to_string(), p))?;
                        Some((p, o * i64::from(*share) / 1000))
                    })
                    .collect();
                if m.is_empty() {
                    StartSpec::Resume
                } else {
                    StartSpec::Offsets(m)
                }
            }
            From::Time(i) if self.last_ok > 0 => StartSpec::Time(self.stamps[i % self.last_ok]),
            From::Time(_) => StartSpec::Resume,
        }
    }

    fn config(
        &self,
        workers: usize,
        processes: usize,
        process: usize,
        addresses: &[String],
        max_batch: usize,
    ) -> JobConfig {
        JobConfig {
            topics: topics(),
            until_caught_up: true,
            cluster: Cluster {
                workers,
                processes,
                process,
                addresses: addresses.to_vec(),
            },
            universe: Arc::clone(&self.u),
            max_batch,
            queue_depth: 2,
            commit_rows: stockflow_dataflow::job::committer::COALESCE_ROWS,
            keep_state: true,
            source_give_up: Duration::from_secs(5),
            window: None,
            days_per_time: self.days_per_time,
            memory_days: self.memory_days,
            settings: Vec::new(),
        }
    }

    /// Runs the job (one or two processes); the reports of every process.
    fn run_job(
        &self,
        workers: usize,
        two_processes: bool,
        spec: &StartSpec,
        reset: bool,
        max_batch: usize,
    ) -> Vec<Result<JobReport, String>> {
        RUNS.fetch_add(1, Relaxed);
        if two_processes {
            CLUSTER_RUNS.fetch_add(1, Relaxed);
        }
        if !matches!(spec, StartSpec::Resume) {
            REPLAYS.fetch_add(1, Relaxed);
        }
        let log: Arc<dyn Log> = Arc::new(self.log.clone());
        if !two_processes {
            let config = self.config(workers, 1, 0, &[], max_batch);
            let sink = Box::new(self.store.clone());
            let request = RunRequest {
                spec: spec.clone(),
                reset_offsets: reset,
                restore: Restore::RecentDays(RESTORE_DAYS),
                follower: Stored::default(),
            };
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let r = job::run(
                    config,
                    log,
                    Some(sink),
                    request,
                    Arc::new(AtomicBool::new(false)),
                    Arc::new(JobCounters::default()),
                    |_, _| {},
                );
                let _ = tx.send(r.map_err(|e| e.to_string()));
            });
            // A run over the model's small log takes milliseconds: one that does not end froze.
            return vec![rx.recv_timeout(RUN_LIMIT).unwrap_or_else(|_| {
                Err(format!(
                    "the job did not end within {RUN_LIMIT:?}: it froze"
                ))
            })];
        }
        // Two distinct ports below the ephemeral range: two kernel-picked ports could be the
        // same one (each freed before the next pick), or one could become process 1's source
        // port for its connection to process 0; either made process 1 fail to bind and
        // process 0 panic on the closed connection, now and then.
        let addresses: Vec<String> = stockflow_dataflow::ports::free_ports(2)
            .expect("two free ports")
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let follower = self.stored();
        let handles: Vec<_> = (0..2)
            .map(|process| {
                let config = self.config(workers, 2, process, &addresses, max_batch);
                let log = Arc::clone(&log);
                let sink: Option<Box<dyn stockflow_core::Sink>> =
                    (process == 0).then(|| Box::new(self.store.clone()) as _);
                let request = RunRequest {
                    spec: spec.clone(),
                    reset_offsets: reset,
                    restore: Restore::All,
                    follower: if process == 0 {
                        Stored::default()
                    } else {
                        follower.clone()
                    },
                };
                if process == 1 {
                    // Timely's process 1 connects to process 0 and retries after a second when
                    // nobody listens yet: give process 0 a moment to bind (speed, not
                    // correctness).
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::spawn(move || {
                    job::run(
                        config,
                        log,
                        sink,
                        request,
                        Arc::new(AtomicBool::new(false)),
                        Arc::new(JobCounters::default()),
                        |_, _| {},
                    )
                    .map_err(|e| e.to_string())
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + RUN_LIMIT;
        handles
            .into_iter()
            .map(|h| {
                while !h.is_finished() && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if h.is_finished() {
                    h.join()
                        .unwrap_or_else(|_| Err("a process panicked".into()))
                } else {
                    Err(format!(
                        "the cluster did not end within {RUN_LIMIT:?}: it froze"
                    ))
                }
            })
            .collect()
    }

    /// Records the plan of `spec` will read (to the ends seen now), markers aside.
    fn to_read(&self, spec: &StartSpec, reset: bool) -> Result<i64, String> {
        let plan = job::plan(&self.log, &topics(), &self.stored(), spec, reset)
            .map_err(|e| e.to_string())?;
        Ok(plan
            .partitions
            .iter()
            .map(|p| {
                let markers = self
                    .markers
                    .iter()
                    .filter(|(t, part, o)| {
                        *t == p.topic && *part == p.partition && *o >= p.start && *o < p.end
                    })
                    .count() as i64;
                (p.end - p.start).max(0) - markers
            })
            .sum())
    }

    fn run(
        &mut self,
        workers: usize,
        two_processes: bool,
        crash_at: Option<u64>,
        from: &From,
        max_batch: usize,
    ) -> Result<(), TestCaseError> {
        let mut spec = self.spec(from);
        if self.refilled {
            // The log was replaced: a plain start is refused exactly when the job had read
            // something of the old log; `--reset-offsets` then reads the new one.
            spec = StartSpec::Resume;
            let stored = self.stored();
            let ends: BTreeMap<(String, i32), i64> = [PRICES, HOLDINGS]
                .iter()
                .flat_map(|t| {
                    self.log
                        .watermarks(t)
                        .expect("the topic exists")
                        .into_iter()
                        .map(move |w| ((t.to_string(), w.partition), w.high))
                })
                .collect();
            // The lowest offset of a record a reader is handed, per partition of the new log.
            let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for p in self
                .current
                .iter()
                .filter(|p| !matches!(p.content, Content::Marker))
            {
                let e = first
                    .entry((p.topic.to_string(), p.partition))
                    .or_insert(p.offset);
                *e = (*e).min(p.offset);
            }
            let must_refuse = stored.offsets.iter().any(|(k, o)| {
                ends.get(k).is_none_or(|e| o > e)
                    || match stored.marks.get(k) {
                        Some(stockflow_core::Last::Record(_)) => true,
                        Some(stockflow_core::Last::Nothing) => first.get(k).is_some_and(|f| f < o),
                        _ => false,
                    }
            });
            let results = self.run_job(workers, false, &spec, false, max_batch);
            match &results[0] {
                Err(msg) => {
                    REFUSALS.fetch_add(1, Relaxed);
                    prop_assert!(must_refuse, "refused a log it had not read: {msg}");
                    prop_assert!(msg.contains("--reset-offsets"), "{msg}");
                    let expected = self.to_read(&spec, true).map_err(TestCaseError::fail)?;
                    let results = self.run_job(workers, two_processes, &spec, true, max_batch);
                    self.check_ok(&results, expected)?;
                }
                Ok(r) => {
                    prop_assert!(
                        !must_refuse,
                        "a replaced log was taken for the old one: {r:?}"
                    );
                    self.check_tables()?;
                }
            }
            self.refilled = false;
            self.last_ok = self.history.len();
            return Ok(());
        }
        let expected = self.to_read(&spec, false).map_err(TestCaseError::fail)?;
        if let Some(n) = crash_at {
            let mut t = self
                .store
                .tables
                .lock()
                .map_err(|_| TestCaseError::fail("store lock"))?;
            t.fail_at_batch = Some(t.batches + n);
        }
        let results = self.run_job(workers, two_processes, &spec, false, max_batch);
        for r in &results {
            if let Err(e) = r {
                prop_assert!(!e.contains("it froze"), "{e}");
            }
        }
        let crashed = {
            let mut t = self
                .store
                .tables
                .lock()
                .map_err(|_| TestCaseError::fail("store lock"))?;
            let crashed = t.failures > 0;
            t.fail_at_batch = None;
            t.failures = 0;
            crashed
        };
        if crashed {
            CRASHES.fetch_add(1, Relaxed);
            for r in &results {
                prop_assert!(r.is_err(), "a job whose store failed ended cleanly: {r:?}");
            }
            return Ok(());
        }
        self.check_ok(&results, expected)?;
        self.last_ok = self.history.len();
        Ok(())
    }

    fn check_ok(
        &self,
        results: &[Result<JobReport, String>],
        expected_reads: i64,
    ) -> Result<(), TestCaseError> {
        let mut read = 0i64;
        if std::env::var_os("STOCKFLOW_MODEL_DEBUG").is_some() {
            eprintln!("expected reads {expected_reads}; results {results:#?}");
            eprintln!("markers {:?}", self.markers);
        }
        for r in results {
            match r {
                Ok(r) => {
                    read += (r.ticks + r.holdings + r.dead_letters) as i64;
                    if r.passes > 1 {
                        REWINDS.fetch_add(1, Relaxed);
                    }
                }
                Err(e) => return Err(TestCaseError::fail(format!("the job failed: {e}"))),
            }
        }
        prop_assert_eq!(read, expected_reads, "records read by the run");
        self.check_tables()
    }

    /// The tables equal the reference evaluation of every record published.
    fn check_tables(&self) -> Result<(), TestCaseError> {
        let t = self.store.snapshot();
        let (evaluations, issues) = reference(&self.history);
        let (closes, records) = latest_state(&self.history);
        prop_assert_eq!(&t.prices, &closes, "the stored closes");
        prop_assert_eq!(&t.holdings, &records, "the stored holding records");
        let missing: Vec<_> = evaluations.difference(&t.evaluations).take(5).collect();
        let extra: Vec<_> = t.evaluations.difference(&evaluations).take(5).collect();
        prop_assert!(
            missing.is_empty() && extra.is_empty(),
            "evaluations: {} want, {} have; missing {:?}; extra {:?}",
            evaluations.len(),
            t.evaluations.len(),
            missing,
            extra
        );
        prop_assert_eq!(&t.issues, &issues, "the incomplete days");
        prop_assert_eq!(&t.dead_letters, &self.garbage, "the dead letters");
        Ok(())
    }
}

fn from_strategy() -> impl Strategy<Value = From> {
    prop_oneof![
        6 => Just(From::Resume),
        1 => Just(From::Earliest),
        2 => prop::collection::vec(0u16..=1000, 1..4).prop_map(From::Offsets),
        2 => any::<usize>().prop_map(From::Time),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..DAYS, 1usize..8, any::<u8>()).prop_map(|(from, count, salt)| Op::Days { from, count, salt }),
        3 => (0u32..4, 0..DAYS, 100i64..20_000).prop_map(|(stock, day, cents)| Op::Tick { stock, day, cents }),
        3 => (0u32..3, 0u32..4, 0..DAYS, prop::sample::select(vec![0i64, 100, 500, 1_200]))
            .prop_map(|(portfolio, stock, day, qty)| Op::Hold { portfolio, stock, day, qty }),
        1 => any::<usize>().prop_map(|partition| Op::Garbage { partition }),
        1 => any::<usize>().prop_map(|partition| Op::Marker { partition }),
        5 => (1usize..=8, prop::bool::weighted(0.12), prop::option::weighted(0.25, 1u64..6), from_strategy(), 1usize..40, prop::sample::select(vec![1i64, 3, 7]), prop::option::weighted(0.5, 1i64..20))
            .prop_map(|(workers, two_processes, crash_at, from, max_batch, days_per_time, memory_days)| Op::Run { workers, two_processes, crash_at, from, max_batch, days_per_time, memory_days }),
        1 => (0u16..=1000, 1usize..=4).prop_map(|(keep, workers)| Op::Refill { keep, workers }),
    ]
}

fn case_strategy() -> impl Strategy<Value = ((i32, i32), Vec<Op>, usize)> {
    (
        (1i32..=4, 1i32..=4),
        prop::collection::vec(op_strategy(), 1..14),
        1usize..=8,
    )
}

fn run_case(parts: (i32, i32), ops: &[Op], final_workers: usize) -> Result<(), TestCaseError> {
    let mut w = World::new(parts);
    for op in ops {
        w.apply(op)?;
    }
    // Whatever happened, a last run ends with the tables of one uninterrupted run.
    w.apply(&Op::Run {
        workers: final_workers,
        two_processes: false,
        crash_at: None,
        from: From::Resume,
        max_batch: 25,
        days_per_time: job::DAYS_PER_TIME,
        memory_days: Some(12),
    })
}

#[test]
fn any_sequence_of_operations_ends_with_the_reference_tables() {
    let cases: u32 = std::env::var("STOCKFLOW_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("STOCKFLOW_MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("model seed {seed} ({cases} cases): STOCKFLOW_MODEL_SEED={seed} replays it");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 400,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let result = runner.run(&case_strategy(), |(parts, ops, final_workers)| {
        run_case(parts, &ops, final_workers)
    });
    println!(
        "{} runs: {} of two processes, {} crashed between commits, {} re-ran with a wider \
         window, {} refused a replaced log, {} replays",
        RUNS.load(Relaxed),
        CLUSTER_RUNS.load(Relaxed),
        CRASHES.load(Relaxed),
        REWINDS.load(Relaxed),
        REFUSALS.load(Relaxed),
        REPLAYS.load(Relaxed)
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, (parts, ops, final_workers))) => panic!(
            "model seed {seed} fails: {why}\nminimal case: partitions {parts:?}, final workers \
             {final_workers}, operations:\n{ops:#?}"
        ),
        Err(e) => panic!("model seed {seed}: {e}"),
    }
}
