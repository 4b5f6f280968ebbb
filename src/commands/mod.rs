mod bench;
mod console;
mod db;
mod exchange;
mod holdings;
mod metrics;
mod publish_sink;
mod report;
mod run;
mod status;
mod topics;

use crate::cli::{Cli, Command, Global, LogBackend, Output};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use stockflow_fluvio::{FluvioConfig, FluvioLog};
use stockflow_kafka::{KafkaConfig, KafkaLog};
use stockflow_transport::Log;

pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Exchange { command } => exchange::run(g, command).await,
        Command::Calendar { from, to } => calendar(g, from, to),
        Command::Topics { command } => topics::run(g, command).await,
        Command::Bench { command } => bench::run(g, command).await,
        Command::Run(args) => run::run(g, *args).await,
        Command::Db { command } => db::run(g, command).await,
        Command::Report(args) => report::run(g, args).await,
        Command::Status {
            db,
            topics,
            job,
            issues,
        } => status::run(g, db, topics, job, issues).await,
        Command::Holdings { command } => holdings::run(g, command).await,
        Command::Console(args) => console::run(g, *args).await,
    }
}

pub fn kafka_config(g: &Global) -> KafkaConfig {
    KafkaConfig {
        brokers: g.brokers.clone(),
        properties: g.kafka_properties.clone(),
    }
}

/// The log the pipeline runs on (`--log`: Kafka or Fluvio, docs/backends.md), not contacted
/// yet.
pub fn make_log(g: &Global) -> Result<Arc<dyn Log>> {
    Ok(match g.log_backend {
        LogBackend::Kafka => Arc::new(KafkaLog::new(&kafka_config(g))?),
        LogBackend::Fluvio => Arc::new(FluvioLog::new(&FluvioConfig::new(
            g.fluvio_endpoint.clone(),
        ))?),
    })
}

/// The log the pipeline runs on, once it answers.
pub fn open_log(g: &Global) -> Result<Arc<dyn Log>> {
    let log = make_log(g)?;
    let hint = match g.log_backend {
        LogBackend::Kafka => "is the broker up? (compose/stack up)".to_string(),
        LogBackend::Fluvio => format!(
            "is a Fluvio cluster up at {} with an SPU? (docs/backends.md, \"Running on \
             Fluvio\"; or --log kafka)",
            g.fluvio_endpoint
        ),
    };
    log.wait_ready(Duration::from_secs(30)).context(hint)?;
    Ok(log)
}

/// A Ctrl-C (or SIGTERM) handler that triggers a clean shutdown once, and exits at the second.
pub fn shutdown_on_signal() -> stockflow_producers::Shutdown {
    let (tx, rx) = stockflow_producers::Shutdown::new();
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::warn!("stopping cleanly: finishing the days in flight (Ctrl-C again to abort)");
        let _ = tx.send(true);
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    rx
}

fn calendar(g: &Global, from: chrono::NaiveDate, to: chrono::NaiveDate) -> Result<ExitCode> {
    anyhow::ensure!(
        from <= to,
        crate::exit::UserError(format!("--from {from} is after --to {to}"))
    );
    let days = stockflow_market::Calendar::new().trading_days(from, to);
    let mut out = String::with_capacity(days.len() * 11);
    match g.output {
        Output::Text => {
            for d in days {
                out.push_str(&d.format("%Y-%m-%d\n").to_string());
            }
        }
        Output::Json => {
            let v: Vec<String> = days.iter().map(|d| d.to_string()).collect();
            out = serde_json::to_string(&v)? + "\n";
        }
    }
    crate::exit::write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The market named by `--market`: `spec` or `synthetic:STOCKS:PORTFOLIOS:MIN:MAX:SEED`.
pub fn universe(m: &crate::cli::MarketArgs) -> Result<stockflow_market::Universe> {
    let spec = m.market.trim();
    if spec.eq_ignore_ascii_case("spec") {
        return Ok(stockflow_market::Universe::spec());
    }
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        ["synthetic", stocks, portfolios, min, max, seed] => {
            let n = |s: &str, what: &str| -> Result<u64> {
                s.trim().parse().map_err(|_| {
                    crate::exit::UserError(format!("--market: {what} must be a number, got {s:?}"))
                        .into()
                })
            };
            let stocks = u32::try_from(n(stocks, "STOCKS")?)?;
            anyhow::ensure!(
                (1..=stockflow_core::limits::MAX_STOCKS as u32).contains(&stocks),
                crate::exit::UserError(format!(
                    "--market: STOCKS must be 1..={} (the input contract's bound)",
                    stockflow_core::limits::MAX_STOCKS
                ))
            );
            Ok(stockflow_market::Universe::synthetic(
                stockflow_market::SyntheticSpec {
                    stocks,
                    portfolios: u32::try_from(n(portfolios, "PORTFOLIOS")?)?,
                    min_holdings: u32::try_from(n(min, "MIN_HOLDINGS")?)?,
                    max_holdings: u32::try_from(n(max, "MAX_HOLDINGS")?)?,
                    seed: n(seed, "SEED")?,
                },
            ))
        }
        _ => Err(crate::exit::UserError(format!(
            "--market must be `spec` or `synthetic:STOCKS:PORTFOLIOS:MIN:MAX:SEED`, got {spec:?}"
        ))
        .into()),
    }
}
