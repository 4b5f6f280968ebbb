//! `stockflow run`: the job over the log. Every worker reads its share of the partitions of the
//! price and holdings topics (each partition by exactly one worker); what a worker reads in one
//! round enters the dataflow at that round's timestamp, so the sink sees each completed
//! timestamp with the offsets the sources had reached by then.

use crate::runtime::{build, Control, DeadLetter};
use crate::sink::DiffSink;
use crate::types::{HoldingInput, PriceInput};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stockflow_market::{decode_holding, Calendar, TickDecoder, Universe};
use stockflow_transport::kafka::{KafkaAdmin, KafkaConfig, KafkaSource};
use stockflow_transport::{LogSource, Position, RecordRef, StartAt};

/// Where the price source starts. Holdings are always read from the beginning: every
/// evaluation needs the whole holdings history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceStart {
    Earliest,
    Latest,
    /// Per partition; partitions not listed start at the earliest offset.
    Offsets(BTreeMap<i32, i64>),
    /// Milliseconds since the Unix epoch, resolved with the broker's timestamp index.
    Time(i64),
}

impl FromStr for PriceStart {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("earliest") {
            return Ok(PriceStart::Earliest);
        }
        if s.eq_ignore_ascii_case("latest") {
            return Ok(PriceStart::Latest);
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
            return Ok(PriceStart::Offsets(map));
        }
        if let Some(t) = s.strip_prefix("time=") {
            let t = chrono::DateTime::parse_from_rfc3339(t.trim())
                .map_err(|e| Error::Config(format!("bad time {t:?} (RFC 3339 expected): {e}")))?;
            return Ok(PriceStart::Time(t.timestamp_millis()));
        }
        Err(Error::Config(format!(
            "bad start {s:?}: expected earliest, latest, offsets=P:O,... or time=RFC3339"
        )))
    }
}

/// How many workers and processes (timely's cluster, built explicitly).
#[derive(Debug, Clone)]
pub struct Cluster {
    pub workers: usize,
    pub processes: usize,
    pub process: usize,
    /// host:port of every process, when `processes` > 1.
    pub addresses: Vec<String>,
}

impl Cluster {
    pub fn single(workers: usize) -> Self {
        Cluster {
            workers,
            processes: 1,
            process: 0,
            addresses: Vec::new(),
        }
    }

    fn timely_config(&self) -> Result<timely::Config> {
        let workers = self.workers.max(1);
        if self.processes <= 1 {
            return Ok(timely::Config::process(workers));
        }
        if self.addresses.len() != self.processes {
            return Err(Error::Config(format!(
                "{} processes but {} addresses in the hostfile",
                self.processes,
                self.addresses.len()
            )));
        }
        if self.process >= self.processes {
            return Err(Error::Config(format!(
                "process index {} out of 0..{}",
                self.process, self.processes
            )));
        }
        Ok(timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: workers,
                process: self.process,
                addresses: self.addresses.clone(),
                report: false,
                zerocopy: false,
                log_fn: Arc::new(|_| None),
            },
            worker: timely::WorkerConfig::default(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct JobConfig {
    pub kafka: KafkaConfig,
    pub prices_topic: String,
    pub holdings_topic: String,
    pub start: PriceStart,
    /// Stop once the end offsets seen at start are processed (a batch replay).
    pub until_caught_up: bool,
    pub cluster: Cluster,
    pub universe: Arc<Universe>,
    /// Most records a worker reads into one timestamp.
    pub max_batch: usize,
    /// Records below these offsets are read into timestamp 0, to rebuild the state a sink has
    /// already stored (resume): a resuming sink skips timestamp 0. Sources start at the
    /// earliest offset of partitions listed here.
    pub bootstrap: BTreeMap<(String, i32), i64>,
}

/// Counters shared by the workers of this process (and read by the metrics endpoint).
#[derive(Debug, Default)]
pub struct JobCounters {
    pub ticks: AtomicU64,
    pub holdings: AtomicU64,
    pub dead_letters: AtomicU64,
    pub source_errors: AtomicU64,
    /// Rows inserted / retracted by the sink, and batches (completed timestamps) applied.
    pub inserted: AtomicU64,
    pub retracted: AtomicU64,
    pub batches: AtomicU64,
    /// The last completed timestamp (the output frontier is past it).
    pub frontier: AtomicU64,
    /// The next offset of every partition as of the last completed timestamp.
    pub offsets: Mutex<BTreeMap<(String, i32), i64>>,
}

/// Counts what reaches the sink, for the metrics endpoint, then hands it on.
struct ObservedSink {
    inner: Box<dyn DiffSink>,
    counters: Arc<JobCounters>,
}

impl DiffSink for ObservedSink {
    fn apply(&mut self, batch: &crate::Batch) -> Result<()> {
        self.inner.apply(batch)?;
        let c = &self.counters;
        for (_, d) in &batch.diffs {
            if *d > 0 {
                c.inserted.fetch_add(*d as u64, Ordering::Relaxed);
            } else {
                c.retracted
                    .fetch_add(d.unsigned_abs() as u64, Ordering::Relaxed);
            }
        }
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.frontier.store(batch.time, Ordering::Relaxed);
        if let Ok(mut o) = c.offsets.lock() {
            for p in &batch.offsets {
                o.insert((p.topic.clone(), p.partition), p.offset);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.inner.finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct JobReport {
    pub ticks: u64,
    pub holdings: u64,
    pub dead_letters: u64,
    pub source_errors: u64,
    pub inserted: u64,
    pub retracted: u64,
    pub batches: u64,
    pub elapsed: Duration,
    /// The next offsets the sink saw last (process 0 only).
    pub offsets: Vec<Position>,
}

/// Rounds a worker may run ahead of the dataflow's completed timestamps.
const MAX_ROUNDS_IN_FLIGHT: u64 = 4;

/// Runs the job until `stop` is set (or, with `until_caught_up`, until caught up). The sink is
/// created on worker 0 by `make_sink`.
pub fn run_job<F>(
    config: JobConfig,
    make_sink: F,
    stop: Arc<AtomicBool>,
    counters: Arc<JobCounters>,
) -> Result<JobReport>
where
    F: Fn() -> Result<Box<dyn DiffSink>> + Send + Sync + 'static,
{
    let timely_config = config.cluster.timely_config()?;
    let admin = KafkaAdmin::new(&config.kafka)?;
    admin.wait_ready(Duration::from_secs(30))?;
    let mut assignments: Vec<(String, i32, StartAt)> = Vec::new();
    for p in admin.partitions(&config.prices_topic, Duration::from_secs(10))? {
        let start = match &config.start {
            _ if config
                .bootstrap
                .contains_key(&(config.prices_topic.clone(), p)) =>
            {
                StartAt::Earliest
            }
            PriceStart::Earliest => StartAt::Earliest,
            PriceStart::Latest => StartAt::Latest,
            PriceStart::Offsets(m) => m.get(&p).map_or(StartAt::Earliest, |o| StartAt::Offset(*o)),
            PriceStart::Time(ms) => StartAt::Time(*ms),
        };
        assignments.push((config.prices_topic.clone(), p, start));
    }
    if let PriceStart::Offsets(m) = &config.start {
        if let Some(p) = m.keys().find(|p| !assignments.iter().any(|a| a.1 == **p)) {
            return Err(stockflow_transport::Error::UnknownPartition {
                topic: config.prices_topic.clone(),
                partition: *p,
            }
            .into());
        }
    }
    for p in admin.partitions(&config.holdings_topic, Duration::from_secs(10))? {
        assignments.push((config.holdings_topic.clone(), p, StartAt::Earliest));
    }
    drop(admin);

    let report = Arc::new(Mutex::new(JobReport::default()));
    let started = Instant::now();
    let shared = Arc::new((config, assignments, make_sink));
    let (counters_w, report_w, stop_w) = (
        Arc::clone(&counters),
        Arc::clone(&report),
        Arc::clone(&stop),
    );
    let guards = timely::execute(timely_config, move |worker| {
        let (config, assignments, make_sink) = &*shared;
        let index = worker.index();
        let peers = worker.peers();
        let mut setup_error = None;
        let sink = if index == 0 {
            match make_sink() {
                Ok(s) => Some(Box::new(ObservedSink {
                    inner: s,
                    counters: Arc::clone(&counters_w),
                }) as Box<dyn DiffSink>),
                Err(e) => {
                    setup_error = Some(e);
                    None
                }
            }
        } else {
            None
        };
        // Every worker builds the same dataflow, whatever happens next.
        let (mut inputs, probe, status) = build(worker, sink);
        let mine: Vec<(String, i32, StartAt)> = assignments
            .iter()
            .enumerate()
            .filter(|(i, _)| i % peers == index)
            .map(|(_, a)| a.clone())
            .collect();
        let opened = if mine.is_empty() || setup_error.is_some() {
            Ok(None)
        } else {
            KafkaSource::open(&config.kafka, &mine).map(Some)
        };
        let (mut source, plans) = match opened {
            Ok(Some((s, p))) => (Some(s), p),
            Ok(None) => (None, Vec::new()),
            Err(e) => {
                setup_error = Some(e.into());
                (None, Vec::new())
            }
        };
        if setup_error.is_some() {
            stop_w.store(true, Ordering::SeqCst);
        }
        // This worker's partitions, and how to find one from a record without allocating.
        let mut parts: Vec<PartitionState> = plans
            .iter()
            .map(|p| {
                let boot = config
                    .bootstrap
                    .get(&(p.topic.clone(), p.partition))
                    .copied()
                    .unwrap_or(p.start)
                    .max(p.start);
                PartitionState {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    is_prices: p.topic == config.prices_topic,
                    next: p.start,
                    end: p.end_at_open,
                    boot,
                }
            })
            .collect();
        let slot_of: std::collections::HashMap<(bool, i32), usize> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.is_prices, p.partition), i))
            .collect();
        for p in &parts {
            inputs.control.send((Control::Offset(p.position(p.next), None), 0));
        }
        tracing::debug!(worker = index, partitions = ?parts.iter().map(|p| (&p.topic, p.partition)).collect::<Vec<_>>(), "assigned");

        let decoder = TickDecoder::for_universe(&config.universe);
        let mut calendar = Calendar::new();
        // Timestamps: 0 = the records below the bootstrap offsets (state a sink already has);
        // 1 = the holdings present at start, read to their end before any price, so that no
        // portfolio is ever evaluated on a partial view of its positions; 2.. = live rounds.
        let mut t = 0u64;
        loop {
            if stop_w.load(Ordering::SeqCst) {
                break;
            }
            let caught_up = parts.iter().all(|p| p.next >= p.end);
            if config.until_caught_up && caught_up {
                break;
            }
            // Per partition slot read this round: (next offset, timestamp, newest record time).
            let mut advanced: BTreeMap<usize, (i64, u64, Option<i64>)> = BTreeMap::new();
            if let Some(src) = source.as_mut() {
                let wait = if probe.less_than(&t) {
                    Duration::ZERO
                } else {
                    Duration::from_millis(20)
                };
                let prices = &mut inputs.prices;
                let holdings = &mut inputs.holdings;
                let control = &mut inputs.control;
                let counters = &counters_w;
                let parts_ref = &parts;
                let mut on_record = |r: RecordRef<'_>| {
                    let is_prices = r.topic == config.prices_topic;
                    let slot_index = slot_of.get(&(is_prices, r.partition)).copied();
                    let at = match slot_index.map(|i| &parts_ref[i]) {
                        Some(p) if r.offset < p.boot => 0,
                        Some(p) if !is_prices && r.offset < p.end => t.max(1),
                        _ => t.max(2),
                    };
                    if let Some(i) = slot_index {
                        let slot = advanced.entry(i).or_insert((0, at, None));
                        *slot = (r.offset + 1, slot.1.max(at), slot.2.max(r.timestamp_ms));
                    }
                    let rejected = if is_prices {
                        decode_price(&decoder, &config.universe, &mut calendar, &r).map(|p| {
                            counters.ticks.fetch_add(1, Ordering::Relaxed);
                            prices.update_at(p, at, 1);
                        })
                    } else {
                        decode_holding_input(&config.universe, &r).map(|h| {
                            counters.holdings.fetch_add(1, Ordering::Relaxed);
                            holdings.update_at(h, at, 1);
                        })
                    };
                    if let Err((code, reason)) = rejected {
                        counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            topic = r.topic,
                            partition = r.partition,
                            offset = r.offset,
                            code,
                            "rejected: {reason}"
                        );
                        let dl = DeadLetter {
                            position: r.position(),
                            payload: r.payload.unwrap_or_default().to_vec(),
                            code: code.to_string(),
                            reason,
                        };
                        control.send((Control::DeadLetter(dl), at));
                    }
                };
                if let Err(e) = src.poll_batch(config.max_batch, wait, &mut on_record) {
                    counters_w.source_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(worker = index, "source error (retrying): {e}");
                }
            } else if !config.until_caught_up {
                worker.step_or_park(Some(Duration::from_millis(50)));
            }
            for (i, (offset, at, newest)) in advanced {
                let p = &mut parts[i];
                p.next = p.next.max(offset);
                inputs.control.send((Control::Offset(p.position(offset), newest), at));
            }
            let phase_done = match t {
                0 => parts.iter().all(|p| p.next >= p.boot),
                1 => parts.iter().all(|p| p.is_prices || p.next >= p.end),
                _ => true,
            };
            if phase_done {
                t += 1;
                inputs.advance_to(t);
            }
            worker.step();
            while probe.less_than(&t.saturating_sub(MAX_ROUNDS_IN_FLIGHT)) {
                worker.step();
            }
            if status.borrow().error.is_some() {
                stop_w.store(true, Ordering::SeqCst);
                break;
            }
        }
        // Close the inputs and let everything read so far reach the sink.
        drop(inputs);
        while worker.step_or_park(None) {
            if status.borrow().error.is_some() {
                break;
            }
        }
        let mut s = status.borrow_mut();
        if index == 0 {
            if let Ok(mut r) = report_w.lock() {
                r.inserted = s.inserted;
                r.retracted = s.retracted;
                r.batches = s.batches;
                r.offsets = s.offsets.clone();
            }
        }
        match (setup_error, s.error.take()) {
            (Some(e), _) | (None, Some(e)) => Err(e),
            (None, None) => Ok(()),
        }
    })
    .map_err(Error::Dataflow)?;
    for r in guards.join() {
        r.map_err(Error::Dataflow)??;
    }
    let mut report = report
        .lock()
        .map_err(|_| Error::Dataflow("report lock poisoned".into()))?
        .clone();
    report.ticks = counters.ticks.load(Ordering::Relaxed);
    report.holdings = counters.holdings.load(Ordering::Relaxed);
    report.dead_letters = counters.dead_letters.load(Ordering::Relaxed);
    report.source_errors = counters.source_errors.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A partition a worker reads: where it stands, where it ended at open, where the bootstrap
/// (timestamp 0) ends.
struct PartitionState {
    topic: String,
    partition: i32,
    is_prices: bool,
    next: i64,
    end: i64,
    boot: i64,
}

impl PartitionState {
    fn position(&self, offset: i64) -> Position {
        Position {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
        }
    }
}

type Rejection = (&'static str, String);

fn version(r: &RecordRef<'_>) -> crate::Version {
    (r.timestamp_ms.unwrap_or(0), r.partition, r.offset)
}

fn decode_price(
    decoder: &TickDecoder,
    universe: &Universe,
    calendar: &mut Calendar,
    r: &RecordRef<'_>,
) -> Result<PriceInput, Rejection> {
    let payload = r
        .payload
        .ok_or(("empty_payload", "the record has no payload".to_string()))?;
    let tick = decoder
        .decode(payload)
        .map_err(|e| (e.code(), e.to_string()))?;
    if !calendar.is_trading_day(tick.date) {
        let e = stockflow_market::Error::NotATradingDay(tick.date);
        return Err((e.code(), e.to_string()));
    }
    let stock = universe.stock_id(&tick.ticker).ok_or_else(|| {
        (
            "unknown_ticker",
            format!("unknown ticker {:?}", tick.ticker),
        )
    })?;
    Ok(PriceInput {
        stock,
        date: tick.date,
        price: tick.price,
        version: version(r),
    })
}

fn decode_holding_input(universe: &Universe, r: &RecordRef<'_>) -> Result<HoldingInput, Rejection> {
    let payload = r
        .payload
        .ok_or(("empty_payload", "the record has no payload".to_string()))?;
    let (_, ids) = decode_holding(universe, payload).map_err(|e| (e.code(), e.to_string()))?;
    Ok(HoldingInput {
        portfolio: ids.portfolio,
        stock: ids.stock,
        from: ids.from,
        quantity: ids.quantity,
        version: version(r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_positions() {
        assert_eq!(
            "earliest".parse::<PriceStart>().ok(),
            Some(PriceStart::Earliest)
        );
        assert_eq!(
            "latest".parse::<PriceStart>().ok(),
            Some(PriceStart::Latest)
        );
        let m: BTreeMap<i32, i64> = [(0, 10), (3, 7)].into_iter().collect();
        assert_eq!(
            "offsets=0:10,3:7".parse::<PriceStart>().ok(),
            Some(PriceStart::Offsets(m))
        );
        assert_eq!(
            "time=2024-01-02T00:00:00Z".parse::<PriceStart>().ok(),
            Some(PriceStart::Time(1_704_153_600_000))
        );
        assert!("offsets=0".parse::<PriceStart>().is_err());
        assert!("offsets=-1:3".parse::<PriceStart>().is_err());
        assert!("time=yesterday".parse::<PriceStart>().is_err());
        assert!("middle".parse::<PriceStart>().is_err());
    }
}
