use super::kafka_config;
use crate::cli::{Global, Output, TopicsCommand};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;
use stockflow_market::TickDecoder;
use stockflow_transport::kafka::{read_to_end, KafkaAdmin};
use stockflow_transport::{LogAdmin, TopicState};

pub const PIPELINE_TOPICS: [&str; 3] = ["StockExchange", "holdings", "portfolios"];

pub async fn run(g: &Global, command: TopicsCommand) -> Result<ExitCode> {
    let config = kafka_config(g);
    match command {
        TopicsCommand::Create { partitions, topics } => {
            let admin = KafkaAdmin::new(&config)?;
            admin
                .wait_ready(Duration::from_secs(60))
                .with_context(|| format!("no Kafka broker answers at {}", config.brokers))?;
            let topics = if topics.is_empty() {
                PIPELINE_TOPICS.iter().map(|s| s.to_string()).collect()
            } else {
                topics
            };
            for t in &topics {
                let state = admin.ensure_topic(t, partitions).await?;
                let word = match state {
                    TopicState::Created => "created",
                    TopicState::Existed => "exists",
                };
                println!("{t}: {word}");
            }
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::Summary { topic } => summary(g.output, &config, &topic),
    }
}

#[derive(Default)]
struct ExchangeStats {
    messages: usize,
    days: BTreeSet<chrono::NaiveDate>,
    tickers: BTreeSet<String>,
}

fn summary(
    output: Output,
    config: &stockflow_transport::kafka::KafkaConfig,
    topic: &str,
) -> Result<ExitCode> {
    let admin = KafkaAdmin::new(config)?;
    let marks = admin.watermarks(topic, Duration::from_secs(10))?;
    let records = read_to_end(config, topic, Duration::from_secs(300))?;
    let decoder = TickDecoder::spec();
    let mut per_exchange: BTreeMap<String, ExchangeStats> = BTreeMap::new();
    let mut invalid = 0usize;
    for r in &records {
        match decoder.decode(r.payload.as_deref().unwrap_or_default()) {
            Ok(t) => {
                let s = per_exchange
                    .entry(t.exchange.code().to_string())
                    .or_default();
                s.messages += 1;
                s.days.insert(t.date);
                s.tickers.insert(t.ticker);
            }
            Err(_) => invalid += 1,
        }
    }
    match output {
        Output::Json => {
            let v = serde_json::json!({
                "topic": topic,
                "messages": records.len(),
                "invalid": invalid,
                "partitions": marks.iter().map(|w| serde_json::json!({"partition": w.partition, "low": w.low, "high": w.high})).collect::<Vec<_>>(),
                "exchanges": per_exchange.iter().map(|(e, s)| serde_json::json!({
                    "exchange": e,
                    "messages": s.messages,
                    "stocks": s.tickers.len(),
                    "days": s.days.len(),
                    "first_day": s.days.first().map(|d| d.to_string()),
                    "last_day": s.days.last().map(|d| d.to_string()),
                })).collect::<Vec<_>>(),
            });
            println!("{v}");
        }
        Output::Text => {
            println!(
                "topic {topic}: {} messages, {invalid} invalid",
                records.len()
            );
            for w in &marks {
                println!(
                    "  partition {}: offsets {}..{} ({} messages)",
                    w.partition,
                    w.low,
                    w.high,
                    w.len()
                );
            }
            for (e, s) in &per_exchange {
                println!(
                    "  {e}: {} messages, {} stocks, {} trading days ({} .. {})",
                    s.messages,
                    s.tickers.len(),
                    s.days.len(),
                    s.days.first().map_or("-".into(), |d| d.to_string()),
                    s.days.last().map_or("-".into(), |d| d.to_string()),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
