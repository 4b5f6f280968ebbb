use super::{open_log, shutdown_on_signal};
use crate::cli::{ExchangeCommand, Global, Model, Output, ServerArgs};
use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use stockflow_market::{Exchange, PriceModel, TickDecoder, Universe};
use stockflow_producers::{run_exchange, DayGate, ExchangeReport, Pacing, Schedule};
use stockflow_transport::Log;

pub async fn run(g: &Global, command: ExchangeCommand) -> Result<ExitCode> {
    let g2 = g.clone();
    let log = tokio::task::spawn_blocking(move || open_log(&g2)).await??;
    match command {
        ExchangeCommand::Se1(a) => serve(g, log, &[Exchange::Se1], a).await,
        ExchangeCommand::Se2(a) => serve(g, log, &[Exchange::Se2], a).await,
        ExchangeCommand::All(a) => serve(g, log, &Exchange::ALL, a).await,
        ExchangeCommand::Publish { file, topic } => publish(g, log, &file, &topic).await,
    }
}

pub fn schedule(exchange: Exchange, a: &ServerArgs, universe: Arc<Universe>) -> Schedule {
    Schedule {
        universe,
        exchange,
        seed: a.seed,
        model: match a.model {
            Model::RandomWalk => PriceModel::RandomWalk,
            Model::Course => PriceModel::Course,
        },
        from: a.from,
        until: a.until.unwrap_or_else(|| chrono::Local::now().date_naive()),
        max_days: a.days,
    }
}

/// Creates the topic if missing, with the pipeline's retention for it.
pub fn ensure_topic(log: &dyn Log, topic: &str, partitions: i32) -> Result<()> {
    log.ensure_topic(&super::topics::spec_for(topic, partitions))
        .with_context(|| format!("ensuring topic {topic}"))?;
    Ok(())
}

fn progress_bar(multi: &MultiProgress, exchange: Exchange) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} days ({per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let pb = multi.add(ProgressBar::new(0));
    pb.set_style(style);
    pb.set_prefix(exchange.code());
    pb
}

/// Runs the given exchanges as independent tasks, each with its own producer.
pub async fn serve_exchanges(
    log: Arc<dyn Log>,
    exchanges: &[Exchange],
    a: &ServerArgs,
    show_progress: bool,
) -> Result<Vec<ExchangeReport>> {
    if !a.backfill && a.pace < 2.0 {
        tracing::warn!(
            pace = a.pace,
            "pace below the course rule of 2 s between days"
        );
    }
    anyhow::ensure!(
        a.pace.is_finite() && a.pace >= 0.0,
        crate::exit::UserError("--pace must be a number of seconds ≥ 0".into())
    );
    ensure_topic(log.as_ref(), &a.topic, a.partitions)?;
    let pacing = if a.backfill {
        Pacing::DEFAULT_BACKFILL
    } else {
        Pacing::Live(Duration::from_secs_f64(a.pace))
    };
    let universe = Arc::new(super::universe(&a.market)?);
    let shutdown = shutdown_on_signal();
    let multi = MultiProgress::new();
    // Backfilling exchanges keep in step (two days apart at most), so that the log holds
    // the days in order across exchanges, as live exchanges write them.
    let gate = (a.backfill && exchanges.len() > 1).then(|| DayGate::new(exchanges.len(), 2));
    let mut tasks = Vec::new();
    for (me, &exchange) in exchanges.iter().enumerate() {
        let gate = gate.clone();
        let sink = log.producer()?;
        let schedule = schedule(exchange, a, Arc::clone(&universe));
        let topic = a.topic.clone();
        let shutdown = shutdown.clone();
        let pb = show_progress.then(|| progress_bar(&multi, exchange));
        tasks.push(tokio::spawn(async move {
            let gate = gate.as_deref().map(|g| (g, me));
            run_exchange(sink.as_ref(), &topic, &schedule, pacing, shutdown, pb, gate).await
        }));
    }
    let mut reports = Vec::new();
    for t in tasks {
        let report = t.await.context("exchange task panicked")??;
        reports.push(report);
    }
    Ok(reports)
}

async fn serve(
    g: &Global,
    log: Arc<dyn Log>,
    exchanges: &[Exchange],
    a: ServerArgs,
) -> Result<ExitCode> {
    tracing::info!(log = %log.describe(), topic = %a.topic, backfill = a.backfill, "starting exchange servers");
    let reports = serve_exchanges(log, exchanges, &a, a.backfill).await?;
    print_reports(g.output, &reports)?;
    Ok(ExitCode::SUCCESS)
}

pub fn print_reports(output: Output, reports: &[ExchangeReport]) -> Result<()> {
    match output {
        Output::Json => {
            let v: Vec<_> = reports
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "exchange": r.exchange.code(),
                        "days": r.days,
                        "messages": r.messages,
                        "first_day": r.first_day.map(|d| d.to_string()),
                        "last_day": r.last_day.map(|d| d.to_string()),
                        "seconds": r.elapsed.as_secs_f64(),
                        "messages_per_second": r.messages_per_second(),
                        "interrupted": r.interrupted,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string(&v)?);
        }
        Output::Text => {
            for r in reports {
                println!(
                    "{}: {} days, {} messages ({} .. {}) in {:.2} s = {:.0} msg/s{}",
                    r.exchange,
                    r.days,
                    r.messages,
                    r.first_day.map_or("-".into(), |d| d.to_string()),
                    r.last_day.map_or("-".into(), |d| d.to_string()),
                    r.elapsed.as_secs_f64(),
                    r.messages_per_second(),
                    if r.interrupted { " (interrupted)" } else { "" }
                );
            }
        }
    }
    Ok(())
}

async fn publish(
    g: &Global,
    log: Arc<dyn Log>,
    file: &std::path::Path,
    topic: &str,
) -> Result<ExitCode> {
    ensure_topic(log.as_ref(), topic, 4)?;
    let sink = log.producer()?;
    let name = file.display().to_string();
    let mut decoder = TickDecoder::spec();
    let report = if name == "-" {
        let stdin = std::io::stdin();
        stockflow_producers::publish::publish_lines(
            stdin.lock(),
            "stdin",
            &mut decoder,
            sink.as_ref(),
            topic,
        )
        .await?
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {name}"))?;
        let reader = std::io::BufReader::new(f);
        stockflow_producers::publish::publish_lines(
            reader,
            &name,
            &mut decoder,
            sink.as_ref(),
            topic,
        )
        .await?
    };
    for b in &report.bad {
        eprintln!("{name}:{}: {}", b.line, b.reason);
    }
    match g.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "published": report.published,
                "bad": report.bad.iter().map(|b| serde_json::json!({"line": b.line, "reason": b.reason})).collect::<Vec<_>>(),
                "blank": report.blank,
            })
        ),
        Output::Text => println!(
            "{name}: {} published to {topic}, {} bad, {} blank",
            report.published,
            report.bad.len(),
            report.blank
        ),
    }
    Ok(if report.bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
