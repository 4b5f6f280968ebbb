use super::{kafka_config, universe};
use crate::cli::{Global, Output, RunArgs, SinkKind};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use stockflow_dataflow::job::{run_job, Cluster, JobConfig, PriceStart};
use stockflow_dataflow::{Batch, DiffSink, JsonLinesSink};

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

pub async fn run(g: &Global, a: RunArgs) -> Result<ExitCode> {
    let start: PriceStart = a.from.parse().context("--from")?;
    let addresses = match &a.hostfile {
        Some(p) => read_hostfile(p)?,
        None if a.processes > 1 => anyhow::bail!("--processes > 1 needs --hostfile"),
        None => Vec::new(),
    };
    let universe = Arc::new(universe(&a.market)?);
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
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut shutdown = super::shutdown_on_signal();
    let stop_signal = Arc::clone(&stop);
    tokio::spawn(async move {
        shutdown.triggered().await;
        stop_signal.store(true, Ordering::SeqCst);
    });
    tracing::info!(workers = a.workers, from = %a.from, until_caught_up = a.until_caught_up, "starting the dataflow job");
    let sink_kind = a.sink;
    let sink_path = a.sink_path.clone();
    let report = tokio::task::spawn_blocking(move || {
        run_job(
            config,
            move || -> stockflow_dataflow::Result<Box<dyn DiffSink>> {
                match sink_kind {
                    SinkKind::Null => Ok(Box::new(NullSink)),
                    SinkKind::Jsonl if sink_path.as_os_str() == "-" => {
                        Ok(Box::new(JsonLinesSink::new(
                            std::io::BufWriter::new(std::io::stdout()),
                            Arc::clone(&universe),
                        )))
                    }
                    SinkKind::Jsonl => {
                        let f = std::fs::File::create(&sink_path).map_err(|e| {
                            stockflow_dataflow::Error::Sink(format!(
                                "creating {}: {e}",
                                sink_path.display()
                            ))
                        })?;
                        Ok(Box::new(JsonLinesSink::new(
                            std::io::BufWriter::new(f),
                            Arc::clone(&universe),
                        )))
                    }
                }
            },
            stop,
        )
    })
    .await
    .context("the job panicked")??;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let summary = serde_json::json!({
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
