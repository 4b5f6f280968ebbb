use super::exchange::ensure_topic;
use super::{kafka_config, universe};
use crate::cli::{Global, HoldingsCommand, Output};
use anyhow::{Context, Result};
use futures::stream::{self, StreamExt};
use std::process::ExitCode;
use std::time::Duration;
use stockflow_market::holding::{decode_holding, initial_holdings};
use stockflow_market::{first_trading_day, Holding};
use stockflow_transport::kafka::KafkaSink;
use stockflow_transport::LogSink;

pub async fn run(g: &Global, command: HoldingsCommand) -> Result<ExitCode> {
    let config = kafka_config(g);
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
            let (h, _) = decode_holding(&u, &raw.to_json()).context("refused")?;
            (vec![h], topic)
        }
    };
    ensure_topic(&config, &topic, 4).await?;
    let sink = KafkaSink::new(&config)?;
    let sent: Vec<_> = stream::iter(records.iter())
        .map(|h| {
            let (key, payload) = (h.key(), h.to_json());
            let sink = &sink;
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
