use super::exchange::ensure_topic;
use super::{open_log, universe};
use crate::cli::{Global, HoldingsCommand, Output};
use anyhow::{Context, Result};
use futures::stream::{self, StreamExt};
use std::process::ExitCode;
use std::time::Duration;
use stockflow_market::holding::{decode_holding, initial_holdings};
use stockflow_market::{first_trading_day, Calendar, Holding};

pub async fn run(g: &Global, command: HoldingsCommand) -> Result<ExitCode> {
    let (records, topic) = match command {
        HoldingsCommand::Load {
            from,
            topic,
            market,
        } => {
            let u = universe(&market)?;
            (
                initial_holdings(&u, from.unwrap_or_else(first_trading_day)),
                topic,
            )
        }
        HoldingsCommand::Set {
            portfolio,
            ticker,
            quantity,
            from,
            topic,
            market,
        } => {
            let u = universe(&market)?;
            let raw = Holding {
                portfolio,
                ticker,
                quantity,
                from,
            };
            // Validate exactly as the job will, so a bad change is refused here.
            let (h, _) =
                decode_holding(&u, &mut Calendar::new(), &raw.to_json()).context("refused")?;
            (vec![h], topic)
        }
    };
    let g2 = g.clone();
    let log = tokio::task::spawn_blocking(move || open_log(&g2)).await??;
    ensure_topic(log.as_ref(), &topic, 4)?;
    let sink = log.producer()?;
    let sent: Vec<_> = stream::iter(records.iter())
        .map(|h| {
            let (key, payload) = (h.key(), h.to_json());
            let sink = sink.as_ref();
            let topic = topic.as_str();
            async move { sink.send(topic, key.as_bytes(), &payload).await }
        })
        .buffered(1024)
        .collect()
        .await;
    for r in sent {
        r?;
    }
    sink.flush(Duration::from_secs(60))?;
    match g.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"published": records.len(), "topic": topic})
        ),
        Output::Text => println!("{} holding record(s) published to {topic}", records.len()),
    }
    Ok(ExitCode::SUCCESS)
}
