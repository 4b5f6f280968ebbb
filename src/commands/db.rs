use super::universe;
use crate::cli::{DbCommand, Global, Output};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stockflow_core::{CollectSink, Sink};
use stockflow_dataflow::memory::{run_with, InputBatch};
use stockflow_sinks::mysql::{init, rebuild, redact, MySqlConfig, MySqlSink, Purpose};

pub async fn run(g: &Global, command: DbCommand) -> Result<ExitCode> {
    match command {
        DbCommand::Init {
            db,
            market,
            reset,
            yes,
        } => {
            if reset && !yes {
                return Err(stockflow_sinks::Error::NotConfirmed("drop the database").into());
            }
            let cfg = MySqlConfig::from_url(&db.url()?)?;
            let u = universe(&market)?;
            let shown = redact(&db.raw_url);
            let applied = tokio::task::spawn_blocking(move || init(&cfg, &u, reset, false))
                .await?
                .with_context(|| format!("initialising {shown}"))?;
            match g.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"applied_migrations": applied, "reset": reset})
                ),
                Output::Text => println!(
                    "InvestorsDB ready ({}): {} migration(s) applied{}",
                    redact(&db.raw_url),
                    applied.len(),
                    if reset { " after a reset" } else { "" }
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Rebuild {
            db,
            market,
            job,
            takeover,
            workers,
            publish_portfolios,
        } => {
            let cfg = MySqlConfig::from_url(&db.url()?)?;
            let u = Arc::new(universe(&market)?);
            let output = g.output;
            let publish = match publish_portfolios {
                Some(topic) => {
                    let (g2, t2) = (g.clone(), topic.clone());
                    let producer =
                        tokio::task::spawn_blocking(move || super::run::publish_topic(&g2, &t2))
                            .await??;
                    Some((topic, producer))
                }
                None => None,
            };
            tokio::task::spawn_blocking(move || {
                rebuild_all(cfg, u, job, takeover, workers, publish, output)
            })
            .await?
        }
    }
}

/// Recomputes every derived row from the stored state and brings the tables to it.
fn rebuild_all(
    cfg: MySqlConfig,
    universe: Arc<stockflow_market::Universe>,
    job: String,
    takeover: bool,
    workers: usize,
    publish: Option<(String, Box<dyn stockflow_transport::LogProducer>)>,
    output: Output,
) -> Result<ExitCode> {
    let started = Instant::now();
    let shown = cfg.shown().to_string();
    let mut sink = MySqlSink::open_migrated(
        cfg,
        job,
        Arc::clone(&universe),
        takeover,
        Duration::from_secs(60),
        Purpose::Rebuild,
    )
    .with_context(|| format!("opening {shown}"))?;
    if let Some((topic, producer)) = publish {
        // What a run left unpublished goes first, then each chunk's changes.
        sink.set_publisher(
            topic,
            Box::new(super::publish_sink::LogPublisher {
                producer,
                runtime: tokio::runtime::Handle::current(),
            }),
        )?;
    }
    let state = sink.load(stockflow_core::Restore::All)?;
    tracing::info!(
        prices = state.prices.len(),
        holdings = state.holdings.len(),
        "recomputing every evaluation from the stored state"
    );
    let computed = Arc::new(Mutex::new(CollectSink::default()));
    let batches = Arc::new(vec![InputBatch {
        prices: state.prices,
        holdings: state.holdings,
    }]);
    run_with(workers, batches, Arc::clone(&computed), false, false)?;
    let computed = std::mem::take(
        &mut *computed
            .lock()
            .map_err(|_| anyhow::anyhow!("result lock poisoned"))?,
    );
    let evaluations = computed.state.keys().cloned().collect();
    let issues = computed.issues.keys().cloned().collect();
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(universe.portfolios.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = rebuild::rebuild(&mut sink, &evaluations, &issues, |done, _| {
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    sink.finish()?;
    let secs = started.elapsed().as_secs_f64();
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "portfolios": report.portfolios,
                "upserted": report.upserted,
                "deleted": report.deleted,
                "unchanged": report.unchanged,
                "issues_changed": report.issues_changed,
                "seconds": secs,
            })
        ),
        Output::Text => println!(
            "rebuilt {} portfolios in {secs:.2} s: {} rows written, {} deleted, {} unchanged",
            report.portfolios, report.upserted, report.deleted, report.unchanged
        ),
    }
    Ok(ExitCode::SUCCESS)
}
