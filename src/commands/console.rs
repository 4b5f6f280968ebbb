//! `stockflow console`: the live console (docs/console.md), served until Ctrl-C.

use super::universe;
use crate::cli::{ConsoleArgs, Global};
use crate::exit::UserError;
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::sync::Arc;
use stockflow_transport::Log;

pub async fn run(g: &Global, a: ConsoleArgs) -> Result<ExitCode> {
    let period: stockflow_analytics::Period = a
        .period
        .parse()
        .map_err(|e| UserError(format!("--period: {e}")))?;
    let u = universe(&a.market)?;
    // The console serves with the broker down (the job page says so); only the form needs it.
    let log: Arc<dyn Log> = super::make_log(g)?;
    if a.allow_holdings_changes {
        let (log2, topic) = (Arc::clone(&log), a.topics.holdings.clone());
        let ensured = tokio::task::spawn_blocking(move || {
            super::exchange::ensure_topic(log2.as_ref(), &topic, 4)
        })
        .await?;
        if let Err(e) = ensured {
            tracing::warn!("the holdings form will fail until the broker answers: {e:#}");
        }
    }
    let cfg = stockflow_console::Config {
        addr: a.addr,
        mysql_url: a.db.url()?,
        job: a.job,
        prices_topic: a.topics.prices,
        holdings_topic: a.topics.holdings,
        metrics_url: a.metrics_url,
        allow_holdings_changes: a.allow_holdings_changes,
        max_clients: a.max_clients.max(1),
        period,
    };
    let mut shutdown = super::shutdown_on_signal();
    stockflow_console::serve(cfg, u, log, async move { shutdown.triggered().await })
        .await
        .context("stockflow console")?;
    Ok(ExitCode::SUCCESS)
}
