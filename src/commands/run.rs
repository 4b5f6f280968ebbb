use super::{kafka_config, universe};
use crate::cli::{Global, Output, RunArgs, SinkKind};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use stockflow_dataflow::job::{run_job, Cluster, JobConfig, PriceStart};
use stockflow_dataflow::{Batch, DiffSink, JsonLinesSink};
use stockflow_sinks::mysql::{init, stored_offsets, MySqlConfig, MySqlSink, SinkMetrics};

/// Counts and drops everything (benchmarks).
struct NullSink;

impl DiffSink for NullSink {
    fn apply(&mut self, _batch: &Batch) -> stockflow_dataflow::Result<()> {
        Ok(())
    }
}

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

/// Waits (bounded) for MySQL at start, so a job started with the stack comes up cleanly.
fn with_mysql_retry<T>(what: &str, mut f: impl FnMut() -> stockflow_sinks::Result<T>) -> Result<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && std::time::Instant::now() < deadline => {
                tracing::warn!("{what}: MySQL unavailable, retrying: {e}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => return Err(anyhow::Error::new(e).context(what.to_string())),
        }
    }
}

pub async fn run(g: &Global, a: RunArgs) -> Result<ExitCode> {
    let universe = Arc::new(universe(&a.market)?);
    // With MySQL and no explicit --from: resume from the stored offsets.
    let mut bootstrap = std::collections::BTreeMap::new();
    let mut resuming = false;
    let mysql = if a.sink == SinkKind::Mysql {
        let cfg = MySqlConfig::from_url(&a.db.url)?;
        let (cfg2, u2, job, from_given) = (
            cfg.clone(),
            Arc::clone(&universe),
            a.job.clone(),
            a.from.is_some(),
        );
        let stored = tokio::task::spawn_blocking(move || -> Result<_> {
            with_mysql_retry("initialising the database", || init(&cfg2, &u2, false))?;
            if from_given {
                return Ok(Default::default());
            }
            with_mysql_retry("reading the stored offsets", || stored_offsets(&cfg2, &job))
        })
        .await??;
        if !stored.is_empty() {
            tracing::info!(
                partitions = stored.len(),
                "resuming from the offsets stored in MySQL (rebuilding the state from the log)"
            );
            resuming = true;
            bootstrap = stored;
        }
        Some(cfg)
    } else {
        None
    };
    let start: PriceStart = a
        .from
        .as_deref()
        .unwrap_or("earliest")
        .parse()
        .context("--from")?;
    let addresses = match &a.hostfile {
        Some(p) => read_hostfile(p)?,
        None if a.processes > 1 => anyhow::bail!("--processes > 1 needs --hostfile"),
        None => Vec::new(),
    };
    let config = JobConfig {
        kafka: kafka_config(g),
        prices_topic: a.topics.prices.clone(),
        holdings_topic: a.topics.holdings.clone(),
        start,
        until_caught_up: a.until_caught_up,
        cluster: Cluster {
            workers: a.workers,
            processes: a.processes,
            process: a.process,
            addresses,
        },
        universe: Arc::clone(&universe),
        max_batch: a.max_batch.max(1),
        bootstrap,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut shutdown = super::shutdown_on_signal();
    let stop_signal = Arc::clone(&stop);
    tokio::spawn(async move {
        shutdown.triggered().await;
        stop_signal.store(true, Ordering::SeqCst);
    });
    tracing::info!(workers = a.workers, from = ?a.from, until_caught_up = a.until_caught_up, "starting the dataflow job");
    let sink_kind = a.sink;
    let job = a.job.clone();
    let publish = match &a.publish_portfolios {
        Some(topic) => {
            super::exchange::ensure_topic(&kafka_config(g), topic, 4).await?;
            Some((
                topic.clone(),
                stockflow_transport::kafka::KafkaSink::new(&kafka_config(g))?,
            ))
        }
        None => None,
    };
    let publish = std::sync::Mutex::new(publish);
    let runtime = tokio::runtime::Handle::current();
    let metrics: Arc<std::sync::Mutex<Option<Arc<SinkMetrics>>>> = Arc::default();
    let metrics_w = Arc::clone(&metrics);
    let sink_path = a.sink_path.clone();
    let counters = Arc::new(stockflow_dataflow::job::JobCounters::default());
    if let Some(addr) = &a.metrics_addr {
        super::metrics::serve(
            addr,
            super::metrics::Sources {
                job: Arc::clone(&counters),
                sink: Arc::clone(&metrics),
                kafka: kafka_config(g),
                topics: vec![a.topics.prices.clone(), a.topics.holdings.clone()],
            },
        )?;
    }
    let report = tokio::task::spawn_blocking(move || {
        run_job(
            config,
            move || -> stockflow_dataflow::Result<Box<dyn DiffSink>> {
                let inner: Box<dyn DiffSink> = match sink_kind {
                    SinkKind::Mysql => {
                        let cfg = mysql.clone().ok_or_else(|| {
                            stockflow_dataflow::Error::Config("no MySQL configuration".into())
                        })?;
                        let sink =
                            MySqlSink::new(cfg, job.clone(), Arc::clone(&universe), resuming);
                        if let Ok(mut m) = metrics_w.lock() {
                            *m = Some(Arc::clone(&sink.metrics));
                        }
                        Box::new(sink)
                    }
                    SinkKind::Null => Box::new(NullSink),
                    SinkKind::Jsonl if sink_path.as_os_str() == "-" => {
                        Box::new(JsonLinesSink::new(
                            std::io::BufWriter::new(std::io::stdout()),
                            Arc::clone(&universe),
                        ))
                    }
                    SinkKind::Jsonl => {
                        let f = std::fs::File::create(&sink_path).map_err(|e| {
                            stockflow_dataflow::Error::Sink(format!(
                                "creating {}: {e}",
                                sink_path.display()
                            ))
                        })?;
                        Box::new(JsonLinesSink::new(
                            std::io::BufWriter::new(f),
                            Arc::clone(&universe),
                        ))
                    }
                };
                match publish.lock().ok().and_then(|mut p| p.take()) {
                    Some((topic, producer)) => Ok(Box::new(super::publish_sink::PublishingSink {
                        inner,
                        producer,
                        topic,
                        universe: Arc::clone(&universe),
                        runtime: runtime.clone(),
                        skip_rebuild: resuming,
                    })),
                    None => Ok(inner),
                }
            },
            stop,
            counters,
        )
    })
    .await
    .context("the job panicked")??;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let sink_metrics = metrics.lock().ok().and_then(|m| m.clone()).map(|m| {
        use std::sync::atomic::Ordering::Relaxed;
        serde_json::json!({
            "transactions": m.transactions.load(Relaxed),
            "rows_upserted": m.rows_upserted.load(Relaxed),
            "rows_deleted": m.rows_deleted.load(Relaxed),
            "dead_letters": m.dead_letters.load(Relaxed),
            "retries": m.retries.load(Relaxed),
            "commit_seconds": m.commit_micros.load(Relaxed) as f64 / 1e6,
            "rows_per_second": (m.rows_upserted.load(Relaxed) + m.rows_deleted.load(Relaxed)) as f64 / secs,
            "latency_ms_p50": m.latency_percentile(50.0),
            "latency_ms_p99": m.latency_percentile(99.0),
        })
    });
    let summary = serde_json::json!({
        "resumed": resuming,
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
        "offsets": report.offsets.iter().map(|p| serde_json::json!({"topic": p.topic, "partition": p.partition, "next": p.offset})).collect::<Vec<_>>(),
    });
    match g.output {
        Output::Json => eprintln!("{summary}"),
        Output::Text => eprintln!(
            "job done: {} ticks, {} holdings, {} dead letters; {} evaluations inserted, {} retracted in {} timestamps; {:.2} s ({:.0} ticks/s)",
            report.ticks, report.holdings, report.dead_letters, report.inserted, report.retracted, report.batches, secs, report.ticks as f64 / secs
        ),
    }
    Ok(ExitCode::SUCCESS)
}
