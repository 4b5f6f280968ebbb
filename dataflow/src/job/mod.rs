//! `stockflow run`: the job over a log. Every worker reads its share of the partitions of the
//! price and holdings topics (each partition by exactly one worker); what a worker reads in one
//! round enters the dataflow at that round's timestamp, so the sink sees each completed
//! timestamp with the offsets the sources had reached by then.
//!
//! - `start`: where each partition starts (stored offsets, `--from`), lost or replaced logs
//!   refused;
//! - `decode`: records to inputs under the input contract, or dead letters;
//! - `machine`: the reading loop's decisions as a state machine without I/O (timestamps,
//!   holds, rewinds, the offsets that may be committed, why it stops);
//! - `rounds`: one worker's loop: the machine driven by a reader and a forwarder;
//! - `retry`: retrying source errors that may pass;
//! - `committer`: the commit thread behind a bounded queue;
//! - `counters`: what the summary and the metrics endpoint read.

pub mod agree;
mod align;
pub mod committer;
pub mod counters;
pub mod decode;
pub mod machine;
mod retry;
mod rounds;
pub mod start;
pub mod watch;

pub use rounds::DAYS_PER_TIME;

pub use counters::JobCounters;
pub use start::{plan, PartitionStart, StartPlan, StartSpec, Stored, Topics};

use crate::{Error, Result};
use std::sync::atomic::{
    AtomicBool,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stockflow_core::{Restore, Sink, StoredState};
use stockflow_market::Universe;
use stockflow_transport::Log;

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
    pub topics: Topics,
    /// Stop once the ends seen at start are processed (a batch replay).
    pub until_caught_up: bool,
    pub cluster: Cluster,
    pub universe: Arc<Universe>,
    /// Most records a worker reads into one timestamp.
    pub max_batch: usize,
    /// Batches the commit queue holds.
    pub queue_depth: usize,
    /// Rows a catch-up's transaction gathers (`committer::COALESCE_ROWS` by default).
    pub commit_rows: usize,
    /// Whether batches carry the input state's changes (a stateful sink). The same on every
    /// process of a cluster.
    pub keep_state: bool,
    /// How long the log may fail in a row before the job gives up.
    pub source_give_up: Duration,
    /// The first day of the restored state (set per pass from the stored state); records
    /// about earlier days make the job re-run with a wider window.
    pub window: Option<chrono::NaiveDate>,
    /// During a catch-up, the records of this many trading days share one timestamp
    /// (`DAYS_PER_TIME` by default).
    pub days_per_time: i64,
    /// Calendar days the dataflow keeps in memory behind the days it reads (None: every
    /// day). Older days leave memory; a record about one ends the pass and the job runs
    /// again with it restored from the sink (`machine::horizon`). Single-process jobs only:
    /// the processes of a cluster cannot run again together.
    pub memory_days: Option<i64>,
    /// What this process was started with (binary, market, topics, job, sink, …): the
    /// processes of a cluster compare them, with the workers and the partition plan, before
    /// reading anything (`agree`).
    pub settings: agree::Settings,
}

impl JobConfig {
    /// The days kept in memory: `memory_days` for a single process; every day for a cluster,
    /// whose processes cannot run a pass again together.
    pub fn kept_days(&self) -> Option<i64> {
        self.memory_days.filter(|_| self.cluster.processes <= 1)
    }

    /// The dataflow's horizon (`machine::horizon`), the same function the reading machine
    /// refuses records by.
    pub fn horizon(&self) -> Option<crate::graph::Horizon> {
        let width = self.days_per_time;
        self.kept_days()
            .map(|m| Arc::new(move |t| machine::horizon(t, width, m)) as crate::graph::Horizon)
    }
}

/// How long the processes of a cluster wait for each other's settings once connected.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(60);

/// This process's settings for the handshake: the caller's, the workers and the plan.
fn handshake_settings(config: &JobConfig, plan: &StartPlan) -> agree::Settings {
    let mut s = config.settings.clone();
    s.push((
        "workers per process (-w)".into(),
        config.cluster.workers.to_string(),
    ));
    s.push(("processes".into(), config.cluster.processes.to_string()));
    s.push((
        "days per timestamp".into(),
        config.days_per_time.to_string(),
    ));
    s.push((
        "--until-caught-up".into(),
        config.until_caught_up.to_string(),
    ));
    s.push(("stateful sink".into(), config.keep_state.to_string()));
    // The partitions, not their resolved starts: each process resolves `--from latest` (and
    // the other positions) against the watermarks it read, which move while producers write.
    let partitions: Vec<String> = plan
        .partitions
        .iter()
        .map(|p| format!("{}/{}", p.topic, p.partition))
        .collect();
    s.push(("partitions".into(), partitions.join(",")));
    s
}

/// What a run did.
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
    /// The next offsets as of the last committed batch (process 0 only).
    pub offsets: Vec<(String, i32, i64)>,
    /// The earliest day a record touched before the restored window: re-run from there.
    pub rewind: Option<chrono::NaiveDate>,
    /// Passes run (more than one when a record needed a wider window).
    pub passes: u32,
    /// The restored state of the last pass: closes and seeds, and its first day.
    pub restored_prices: usize,
    pub restored_window: Option<chrono::NaiveDate>,
}

/// One pass of the job: runs until `stop` is set (or, with `until_caught_up`, until caught
/// up, or until a record needs a wider restore window). `sink` is given on process 0 only;
/// its stored `state` enters at timestamp 0 there. Gives the sink back.
pub fn run_job(
    config: JobConfig,
    log: Arc<dyn Log>,
    plan: StartPlan,
    sink: Option<(Box<dyn Sink>, Arc<StoredState>)>,
    stop: Arc<AtomicBool>,
    counters: Arc<JobCounters>,
) -> Result<(JobReport, Option<Box<dyn Sink>>)> {
    let timely_config = config.cluster.timely_config()?;
    let started = Instant::now();
    let (outlet, state, commit_thread) = match sink {
        Some((sink, state)) => {
            let (outlet, handle) = committer::start(
                sink,
                config.queue_depth,
                config.commit_rows,
                Arc::clone(&counters),
            )
            .map_err(|e| Error::Internal(format!("starting the commit thread: {e}")))?;
            (Some(outlet), Some(state), Some(handle))
        }
        None => (None, None, None),
    };
    let commit_state = outlet.as_ref().map(|o| Arc::clone(&o.state));
    let outlet = Arc::new(Mutex::new(outlet));
    let align = Arc::new(align::Align::new(
        config.cluster.workers.max(1) * config.cluster.processes.max(1),
    ));
    let remote_peers = config.cluster.processes > 1;
    let settings = handshake_settings(&config, &plan);
    let shared = Arc::new((config, log, plan));
    let (counters_w, stop_w) = (Arc::clone(&counters), Arc::clone(&stop));
    let guards = timely::execute(timely_config, move |worker| {
        let (config, log, plan) = &*shared;
        counters_w.started.store(true, SeqCst);
        if remote_peers {
            agree::handshake(worker, config.cluster.process, &settings, HANDSHAKE_LIMIT)?;
        }
        let first = worker.index() == 0;
        let outlet = if first {
            outlet.lock().ok().and_then(|mut o| o.take())
        } else {
            None
        };
        rounds::run_worker(
            worker,
            rounds::WorkerSetup {
                config,
                log: log.as_ref(),
                partitions: &plan.partitions,
                counters: &counters_w,
                stop: &stop_w,
                state: if first { state.clone() } else { None },
                outlet,
                align: &align,
                remote_peers,
            },
        )
    })
    .map_err(crate::panics::describe)?;
    let mut own: Option<Error> = None;
    let mut stopped: Option<Error> = None;
    for r in guards.join() {
        match r.map_err(crate::panics::describe).and_then(|r| r) {
            Ok(()) => {}
            Err(e @ Error::Stopped(..)) => {
                stopped.get_or_insert(e);
            }
            Err(e) => {
                own.get_or_insert(e);
            }
        }
    }
    // The workers have dropped the queue: the commit thread finishes what it holds.
    let sink = match commit_thread {
        Some(h) => Some(
            h.join()
                .map_err(|_| Error::Internal("the commit thread panicked".into()))?,
        ),
        None => None,
    };
    if let Some(e) = commit_state.as_ref().and_then(|s| s.take_error()) {
        return Err(Error::Sink(e));
    }
    if let Some(e) = own.or(stopped) {
        return Err(e);
    }
    use std::sync::atomic::Ordering::Relaxed;
    let rewind = counters.rewind_to.lock().ok().and_then(|mut r| r.take());
    let report = JobReport {
        ticks: counters.ticks.load(Relaxed),
        holdings: counters.holdings.load(Relaxed),
        dead_letters: counters.dead_letters.load(Relaxed),
        source_errors: counters.source_errors.load(Relaxed),
        inserted: counters.inserted.load(Relaxed),
        retracted: counters.retracted.load(Relaxed),
        batches: counters.batches.load(Relaxed),
        elapsed: started.elapsed(),
        offsets: counters
            .offsets
            .lock()
            .map(|o| o.iter().map(|((t, p), n)| (t.clone(), *p, *n)).collect())
            .unwrap_or_default(),
        rewind,
        passes: 1,
        restored_prices: 0,
        restored_window: None,
    };
    Ok((report, sink))
}

/// How often a running job asks the log how many partitions its topics have.
const PARTITION_CHECK: Duration = Duration::from_secs(2);

/// Watches the job's topics for partitions added while it runs: the job reads the partitions
/// it planned at start, so on a new one it stops cleanly (as on a signal) and the run ends
/// with an error that says to start it again, which reads the new partitions from their start.
struct PartitionWatch {
    grown: Arc<Mutex<Option<String>>>,
    /// Dropped to stop the thread: its wait between checks ends at once.
    done: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PartitionWatch {
    fn start(log: Arc<dyn Log>, topics: &Topics, stop: Arc<AtomicBool>) -> Self {
        use std::sync::mpsc::RecvTimeoutError;
        use SeqCst;
        let grown: Arc<Mutex<Option<String>>> = Arc::default();
        let (done, done_rx) = std::sync::mpsc::channel::<()>();
        let names = [topics.prices.clone(), topics.holdings.clone()];
        let count = |log: &dyn Log, t: &str| log.partitions(t).map(|p| p.len()).ok();
        let known: Vec<Option<usize>> = names.iter().map(|t| count(log.as_ref(), t)).collect();
        let grown_t = Arc::clone(&grown);
        let handle = std::thread::Builder::new()
            .name("stockflow-partitions".into())
            .spawn(move || {
                // Until the job drops its end of the channel.
                while let Err(RecvTimeoutError::Timeout) = done_rx.recv_timeout(PARTITION_CHECK) {
                    for (name, before) in names.iter().zip(&known) {
                        let (Some(before), Some(now)) = (before, count(log.as_ref(), name)) else {
                            continue;
                        };
                        if now > *before {
                            let message = format!(
                                "topic {name} gained partitions while the job ran (it has {now}, \
                                 the job read {before}); the job stopped cleanly and everything it \
                                 read is committed. Start it again (`stockflow run`) to read the new \
                                 partitions from their start"
                            );
                            tracing::warn!("{message}");
                            if let Ok(mut g) = grown_t.lock() {
                                g.get_or_insert(message);
                            }
                            stop.store(true, SeqCst);
                            return;
                        }
                    }
                }
            })
            .ok();
        PartitionWatch {
            grown,
            done: Some(done),
            handle,
        }
    }

    fn grown(&self) -> Option<String> {
        self.grown.lock().ok().and_then(|g| g.clone())
    }
}

impl Drop for PartitionWatch {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What a whole run asks for.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub spec: StartSpec,
    pub reset_offsets: bool,
    pub restore: Restore,
    /// On processes other than 0 (no sink): the offsets (and marks) stored by the job.
    pub follower: Stored,
}

/// Days a re-run's window reaches before the earliest day that needed it, so that a replay
/// reading old records partition by partition does not re-run once per partition.
const REWIND_MARGIN_DAYS: i64 = 31;

/// A whole run: loads the stored state (a window of it, or all), plans the start (a lost log
/// is refused here), runs a pass, and re-runs with a wider window as long as a record needs
/// one. `on_plan` sees every pass's plan (for its notes). On a clean end the sink is finished
/// (a stateful sink gives its lease back).
pub fn run(
    mut config: JobConfig,
    log: Arc<dyn Log>,
    mut sink: Option<Box<dyn Sink>>,
    request: RunRequest,
    stop: Arc<AtomicBool>,
    counters: Arc<JobCounters>,
    on_plan: impl Fn(&StartPlan, &StoredState),
) -> Result<JobReport> {
    let started = Instant::now();
    let watch = PartitionWatch::start(Arc::clone(&log), &config.topics, Arc::clone(&stop));
    let mut restore = request.restore;
    // Where the first pass started each price partition: a pass without a stateful sink that
    // must read again starts there (re-planning `--from latest` would start at the log's end).
    let mut first_starts: Option<std::collections::BTreeMap<i32, i64>> = None;
    let mut spec = request.spec;
    let mut reset = request.reset_offsets;
    let mut passes = 0u32;
    loop {
        passes += 1;
        let state = match sink.as_mut() {
            Some(s) => s.load(restore)?,
            None => StoredState {
                offsets: request.follower.offsets.clone(),
                marks: request.follower.marks.clone(),
                ..StoredState::default()
            },
        };
        let plan = match plan(
            log.as_ref(),
            &config.topics,
            &Stored::from(&state),
            &spec,
            reset,
        ) {
            Ok(p) => p,
            Err(e) => {
                if let Some(s) = sink.as_mut() {
                    let _ = s.finish();
                }
                return Err(e);
            }
        };
        on_plan(&plan, &state);
        if first_starts.is_none() {
            first_starts = Some(
                plan.partitions
                    .iter()
                    .filter(|p| p.topic == config.topics.prices)
                    .map(|p| (p.partition, p.start))
                    .collect(),
            );
        }
        config.window = state.window;
        let (restored_prices, restored_window) = (state.prices.len(), state.window);
        // After a pass ended on records about days that had left memory, this one keeps
        // every day until it has read them (else the merge could hand later days over first,
        // time would move past their days again, and they would be refused anew), then stops
        // for the next, which keeps only the memory days again.
        let refused = counters.refused.lock().map_or(0, |m| m.len());
        let keep_all = refused > 0 && config.kept_days().is_some();
        counters.refused_left.store(refused, Relaxed);
        counters.until_refused_read.store(keep_all, Relaxed);
        counters.stopped_refused_read.store(false, Relaxed);
        let mut pass_config = config.clone();
        if keep_all {
            pass_config.memory_days = None;
        }
        let (mut report, back) = run_job(
            pass_config,
            Arc::clone(&log),
            plan,
            sink.take().map(|s| (s, Arc::new(state))),
            Arc::clone(&stop),
            Arc::clone(&counters),
        )?;
        sink = back;
        if let Some(message) = watch.grown() {
            // The pass stopped cleanly (as on a signal): what it read is committed.
            if let Some(s) = sink.as_mut() {
                s.finish()?;
            }
            return Err(Error::Replan(message));
        }
        report.passes = passes;
        report.restored_prices = restored_prices;
        report.restored_window = restored_window;
        report.elapsed = started.elapsed();
        match report.rewind {
            Some(day) if !stop.load(SeqCst) && !sink.as_ref().is_some_and(|s| s.is_stateful()) => {
                // Only the days kept in memory end a pass without a stateful sink (there is no
                // restored window): nothing can restore the day, so the log is read again from
                // where this run started, with every day kept (the sink keeps no state: this
                // one's output was discarded or printed).
                tracing::warn!(
                    %day,
                    kept_days = ?config.memory_days,
                    "a record is about a day that left memory, and this sink cannot restore it: \
                     reading the log again from the start of this run, keeping every day \
                     (a larger --memory-days avoids this)"
                );
                config.memory_days = None;
                if let Ok(mut r) = counters.refused.lock() {
                    r.clear();
                }
                spec = StartSpec::Offsets(first_starts.clone().unwrap_or_default());
                reset = request.reset_offsets;
                // The next pass reads and outputs everything this one did again: the run
                // reports the records it read, and the rows of that pass, once.
                for c in [
                    &counters.ticks,
                    &counters.holdings,
                    &counters.dead_letters,
                    &counters.inserted,
                    &counters.retracted,
                    &counters.batches,
                    &counters.issues,
                ] {
                    c.store(0, Relaxed);
                }
                if let Ok(mut ahead) = counters.read_ahead.lock() {
                    ahead.clear();
                }
            }
            None if keep_all
                && counters.refused_left.load(Relaxed) == 0
                && counters.stopped_refused_read.load(Relaxed)
                && !stop.load(SeqCst) =>
            {
                tracing::info!(
                    "the records about days that had left memory are read: running again \
                     with {} days in memory",
                    config.memory_days.unwrap_or_default()
                );
                // The same window as this pass: a replay reading old days goes on reading
                // them (restoring only the recent days again would refuse the next one).
                spec = StartSpec::Resume;
                reset = false;
            }
            Some(day) if !stop.load(SeqCst) => {
                let from = day - chrono::Duration::days(REWIND_MARGIN_DAYS);
                tracing::info!(
                    %day,
                    window = %from,
                    "a record touches a day before the restored state: running again with the state from {from}"
                );
                restore = Restore::From(from);
                spec = StartSpec::Resume;
                reset = false;
            }
            _ => {
                if let Some(s) = sink.as_mut() {
                    s.finish()?;
                }
                return Ok(report);
            }
        }
    }
}
