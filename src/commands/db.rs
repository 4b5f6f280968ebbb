use super::universe;
use crate::cli::{DbCommand, Global, Output};
use anyhow::{Context, Result};
use std::process::ExitCode;
use stockflow_sinks::mysql::{init, redact, MySqlConfig};

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
            let cfg = MySqlConfig::from_url(&db.url)?;
            let u = universe(&market)?;
            let shown = redact(&db.url);
            let applied = tokio::task::spawn_blocking(move || init(&cfg, &u, reset))
                .await?
                .with_context(|| format!("initialising {shown}"))?;
            match g.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"applied_migrations": applied, "reset": reset})
                ),
                Output::Text => println!(
                    "InvestorsDB ready ({}): {} migration(s) applied{}",
                    redact(&db.url),
                    applied.len(),
                    if reset { " after a reset" } else { "" }
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
