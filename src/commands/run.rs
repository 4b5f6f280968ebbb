//! `stockflow run`: opens the sink (taking the job's lease and loading its stored state),
//! plans where every partition starts (refusing a log that lost records), and runs the job.

use super::{open_log, universe};
use crate::cli::{Global, Output, RunArgs, SinkKind};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockflow_core::{Restore, Sink, StoredState};
use stockflow_dataflow::job::{self, Cluster, JobConfig, RunRequest, StartSpec, Topics};
use stockflow_dataflow::{JsonLinesSink, NullSink};
use stockflow_sinks::mysql::{
    retrying, schema_ready, stored_offsets, MySqlConfig, MySqlSink, Purpose, SinkMetrics,
};

fn read_hostfile(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading hostfile {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// The sink of this process (process 0 only), its stored state, and the MySQL sink's counters.
struct Opened {
    sink: Option<Box<dyn Sink>>,
    state: StoredState,
    metrics: Option<Arc<SinkMetrics>>,
    /// Ends the sink's retries at once (a signal).
    cancel: Option<Arc<AtomicBool>>,
}

fn open_sink(
    g: &Global,
    a: &RunArgs,
    universe: &Arc<stockflow_market::Universe>,
) -> Result<Opened> {
    let retry_for = Duration::from_secs(a.sink_retry_secs);
    let mut metrics = None;
    let mut cancel = None;
    let mut sink: Box<dyn Sink> = match a.sink {
        SinkKind::Mysql => {
            let cfg = MySqlConfig::from_url(&a.db.url()?)?;
            if a.process > 0 {
                // Only process 0 writes; the others need the stored offsets to start from,
                // once process 0 has created the schema.
                let offsets = retrying(retry_for, "reading the stored offsets", || {
                    if !schema_ready(&cfg)? {
                        tracing::info!("waiting for process 0 to create the database");
                        return Err(stockflow_sinks::Error::MySql(mysql::Error::IoError(
                            std::io::Error::other("the database or its schema is not ready yet"),
                        )));
                    }
                    stored_offsets(&cfg, &a.job)
                })?;
                return Ok(Opened {
                    sink: None,
                    state: StoredState {
                        offsets: offsets.next,
                        marks: offsets.marks,
                        ..StoredState::default()
                    },
                    metrics: None,
                    cancel: None,
                });
            }
            // The lease first, then the migrations: a --takeover past a hung holder ends its
            // connection before a migration would wait on its locks.
            let shown = cfg.shown().to_string();
            let mut sink = MySqlSink::open_migrated(
                cfg,
                a.job.clone(),
                Arc::clone(universe),
                a.takeover,
                retry_for,
                Purpose::Run,
            )
            .with_context(|| format!("opening {shown}"))?;
            metrics = Some(Arc::clone(&sink.metrics));
            cancel = Some(sink.cancel_flag());
            if let Some(topic) = &a.publish_portfolios {
                // Published after each commit, from the outbox, under the lease.
                let producer = publish_topic(g, topic)?;
                sink.set_publisher(
                    topic.clone(),
                    Box::new(super::publish_sink::LogPublisher {
                        producer,
                        runtime: tokio::runtime::Handle::current(),
                    }),
                )?;
            }
            return Ok(Opened {
                sink: (a.process == 0).then_some(Box::new(sink)),
                state: StoredState::default(),
                metrics,
                cancel,
            });
        }
        SinkKind::Null => Box::new(NullSink),
        SinkKind::Jsonl if a.sink_path.as_os_str() == "-" => Box::new(JsonLinesSink::new(
            std::io::BufWriter::new(std::io::stdout()),
            Arc::clone(universe),
        )),
        SinkKind::Jsonl => {
            let f = std::fs::File::create(&a.sink_path)
                .with_context(|| format!("creating {}", a.sink_path.display()))?;
            Box::new(JsonLinesSink::new(
                std::io::BufWriter::new(f),
                Arc::clone(universe),
            ))
        }
    };
    if let Some(topic) = &a.publish_portfolios {
        sink = Box::new(super::publish_sink::PublishingSink {
            inner: sink,
            publisher: super::publish_sink::LogPublisher {
                producer: publish_topic(g, topic)?,
                runtime: tokio::runtime::Handle::current(),
            },
            topic: topic.clone(),
            universe: Arc::clone(universe),
        });
    }
    Ok(Opened {
        sink: (a.process == 0).then_some(sink),
        state: StoredState::default(),
        metrics,
        cancel,
    })
}

/// Ends the process for a watchdog (exit 3), once the job's own stop has released the lease
/// (`job::watch`).
fn end_process(message: String) {
    eprintln!("error: {message}");
    std::process::exit(i32::from(crate::exit::EXTERNAL));
}

/// What a process of a cluster must share with the others (compared before reading).
fn cluster_settings(a: &RunArgs) -> Vec<(String, String)> {
    if a.processes <= 1 {
        return Vec::new();
    }
    let binary = std::env::current_exe()
        .and_then(std::fs::read)
        .map(|b| format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&b)))
        .unwrap_or_else(|e| format!("unreadable ({e})"));
    [
        ("stockflow version", env!("CARGO_PKG_VERSION").to_string()),
        ("stockflow binary (xxh3)", binary),
        ("--market", a.market.market.clone()),
        ("--prices-topic", a.topics.prices.clone()),
        ("--holdings-topic", a.topics.holdings.clone()),
        ("--job", a.job.clone()),
        ("--sink", format!("{:?}", a.sink)),
        (
            "--from",
            a.from.clone().unwrap_or_else(|| "(resume)".into()),
        ),
        ("--reset-offsets", a.reset_offsets.to_string()),
        ("--restore-days", a.restore_days.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The `--publish-portfolios` topic (created when missing) and a producer for it.
pub(super) fn publish_topic(
    g: &Global,
    topic: &str,
) -> Result<Box<dyn stockflow_transport::LogProducer>> {
    let log = open_log(g)?;
    log.ensure_topic(&stockflow_transport::TopicSpec {
        name: topic.to_string(),
        partitions: 4,
        retention: stockflow_transport::Retention::BrokerDefault,
    })?;
    Ok(log.producer()?)
}

pub async fn run(g: &Global, a: RunArgs) -> Result<ExitCode> {
    let universe = Arc::new(universe(&a.market)?);
    let spec: StartSpec = match a.from.as_deref() {
        Some(s) => s.parse().context("--from")?,
        None => StartSpec::Resume,
    };
    let addresses = match &a.hostfile {
        Some(p) => read_hostfile(p)?,
        None if a.processes > 1 => {
            return Err(crate::exit::UserError("--processes > 1 needs --hostfile".into()).into())
        }
        None => Vec::new(),
    };
    let log = {
        let g2 = g.clone();
        tokio::task::spawn_blocking(move || open_log(&g2)).await??
    };
    // Opening the sink takes the lease and loads the state (blocking I/O).
    let opened = {
        let (g2, a2, u2) = (g.clone(), a.clone(), Arc::clone(&universe));
        tokio::task::spawn_blocking(move || open_sink(&g2, &a2, &u2)).await??
    };
    let Opened {
        sink,
        state,
        metrics,
        cancel,
    } = opened;
    let config = job_config(&a, &universe, addresses);
    let stop = stop_on_signal(cancel);
    let counters = Arc::new(job::JobCounters::default());
    if let Some(addr) = &a.metrics_addr {
        super::metrics::serve(
            addr,
            super::metrics::Sources {
                job: Arc::clone(&counters),
                log: Arc::clone(&log),
                topics: vec![a.topics.prices.clone(), a.topics.holdings.clone()],
            },
        )?;
    }
    let job_done = Arc::new(AtomicBool::new(false));
    start_watchdogs(&a, &counters, &job_done);
    let resumed = Arc::new(AtomicBool::new(false));
    let request = RunRequest {
        spec: spec.clone(),
        reset_offsets: a.reset_offsets,
        restore: restore_of(&a),
        follower: job::Stored {
            offsets: state.offsets,
            marks: state.marks,
        },
    };
    let starting = starting_note(&a, spec, Arc::clone(&resumed));
    let report = tokio::task::spawn_blocking(move || {
        job::run(config, log, sink, request, stop, counters, starting)
    })
    .await
    .context("the job panicked");
    job_done.store(true, Ordering::SeqCst);
    let report = report??;
    print_summary(g, &a, &report, metrics, resumed.load(Ordering::SeqCst));
    Ok(ExitCode::SUCCESS)
}

/// The job's settings from the command line.
fn job_config(
    a: &RunArgs,
    universe: &Arc<stockflow_market::Universe>,
    addresses: Vec<String>,
) -> JobConfig {
    JobConfig {
        topics: Topics {
            prices: a.topics.prices.clone(),
            holdings: a.topics.holdings.clone(),
        },
        until_caught_up: a.until_caught_up,
        cluster: Cluster {
            workers: a.workers,
            processes: a.processes,
            process: a.process,
            addresses,
        },
        universe: Arc::clone(universe),
        max_batch: a.max_batch.max(1),
        queue_depth: 32,
        commit_rows: a.commit_rows.max(1),
        keep_state: a.sink == SinkKind::Mysql,
        source_give_up: Duration::from_secs(a.source_retry_secs),
        window: None,
        days_per_time: a.days_per_timestamp.max(1),
        memory_days: match a.sink {
            // JSON Lines prints every row, and a stateless sink that publishes the portfolios'
            // changes publishes them: a re-run from the start (what a stateless sink does for
            // a record about a day that left memory) would print or publish them again.
            SinkKind::Jsonl => None,
            SinkKind::Null if a.publish_portfolios.is_some() => None,
            SinkKind::Mysql | SinkKind::Null => {
                (a.memory_days > 0).then_some(i64::from(a.memory_days))
            }
        },
        settings: cluster_settings(a),
    }
}

/// A cluster restores everything (its processes cannot re-run together); a single process
/// restores the recent window and re-runs wider when a record needs it.
fn restore_of(a: &RunArgs) -> Restore {
    if a.processes > 1 || a.restore_days == 0 {
        Restore::All
    } else {
        Restore::RecentDays(a.restore_days)
    }
}

/// The stop flag, set by Ctrl-C or SIGTERM (which also ends the sink's retries at once).
fn stop_on_signal(cancel: Option<Arc<AtomicBool>>) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut shutdown = super::shutdown_on_signal();
    let stop_signal = Arc::clone(&stop);
    tokio::spawn(async move {
        shutdown.triggered().await;
        stop_signal.store(true, Ordering::SeqCst);
        if let Some(c) = cancel {
            c.store(true, Ordering::SeqCst);
        }
    });
    stop
}

/// A cluster's watchdogs (`job::watch`): one that does not form, a process not heard from.
fn start_watchdogs(a: &RunArgs, counters: &Arc<job::JobCounters>, done: &Arc<AtomicBool>) {
    if a.processes <= 1 {
        return;
    }
    job::watch::watch_formation(
        Arc::clone(counters),
        a.processes,
        Duration::from_secs(a.cluster_wait_secs),
        end_process,
    );
    job::watch::watch_peers(
        Arc::clone(counters),
        Arc::clone(done),
        (a.processes, a.process),
        Duration::from_secs(a.peer_timeout_secs.max(2)),
        end_process,
    );
}

/// What the job says as it starts (after planning).
fn starting_note(
    a: &RunArgs,
    spec: StartSpec,
    resumed: Arc<AtomicBool>,
) -> impl Fn(&job::StartPlan, &stockflow_core::StoredState) + Send + 'static {
    let prices_topic = a.topics.prices.clone();
    let (workers, from, until) = (a.workers, a.from.clone(), a.until_caught_up);
    move |plan, state| {
        if !state.offsets.is_empty() {
            resumed.store(true, Ordering::SeqCst);
        }
        for note in &plan.notes {
            tracing::warn!("{note}");
        }
        if spec == StartSpec::Latest {
            tracing::warn!(
                skipped = plan.skipped,
                "--from latest skips {} record(s) of {prices_topic} (never evaluated by this run)",
                plan.skipped,
            );
        }
        tracing::info!(
            workers,
            from = ?from,
            restored_prices = state.prices.len(),
            restored_holdings = state.holdings.len(),
            window = ?state.window,
            backlog = plan.backlog(),
            until_caught_up = until,
            "starting the dataflow job"
        );
    }
}

/// The run's summary: JSON or a line for people, on stdout (stderr when the JSON Lines sink
/// writes to stdout).
fn print_summary(
    g: &Global,
    a: &RunArgs,
    report: &job::JobReport,
    metrics: Option<Arc<SinkMetrics>>,
    resumed: bool,
) {
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let sink_metrics = metrics.map(|m| {
        use std::sync::atomic::Ordering::Relaxed;
        serde_json::json!({
            "transactions": m.transactions.load(Relaxed),
            "rows_upserted": m.rows_upserted.load(Relaxed),
            "rows_deleted": m.rows_deleted.load(Relaxed),
            "rows_refused": m.rows_refused.load(Relaxed),
            "state_rows": m.state_rows.load(Relaxed),
            "dead_letters": m.dead_letters.load(Relaxed),
            "retries": m.retries.load(Relaxed),
            "commit_seconds": m.commit_micros.load(Relaxed) as f64 / 1e6,
            "rows_per_second": (m.rows_upserted.load(Relaxed) + m.rows_deleted.load(Relaxed)) as f64 / secs,
            "latency_ms_p50": m.latency_percentile(50.0),
            "latency_ms_p99": m.latency_percentile(99.0),
        })
    });
    let summary = serde_json::json!({
        "resumed": resumed,
        "passes": report.passes,
        "restored_prices": report.restored_prices,
        "restored_from": report.restored_window.map(|d| d.to_string()),
        "sink": sink_metrics,
        "ticks": report.ticks,
        "holdings": report.holdings,
        "dead_letters": report.dead_letters,
        "source_errors": report.source_errors,
        "inserted": report.inserted,
        "retracted": report.retracted,
        "timestamps": report.batches,
        "seconds": secs,
        "ticks_per_second": report.ticks as f64 / secs,
        "evaluations_per_second": report.inserted as f64 / secs,
        "peak_rss_mib": super::bench::peak_rss_mib(),
        "offsets": report.offsets.iter().map(|(t, p, o)| serde_json::json!({"topic": t, "partition": p, "next": o})).collect::<Vec<_>>(),
    });
    let line = match g.output {
        Output::Json => summary.to_string(),
        Output::Text => format!(
            "job done: {} ticks, {} holdings, {} dead letters; {} evaluations inserted, {} retracted in {} committed timestamps; {:.2} s ({:.0} ticks/s)",
            report.ticks, report.holdings, report.dead_letters, report.inserted, report.retracted, report.batches, secs, report.ticks as f64 / secs
        ),
    };
    if a.sink == SinkKind::Jsonl && a.sink_path.as_os_str() == "-" {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}
