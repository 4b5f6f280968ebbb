use super::open_log;
use crate::cli::{Global, Output, TopicsCommand};
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;
use stockflow_market::TickDecoder;
use stockflow_transport::{read_tail, read_to_end, Log, Retention, TopicSpec, TopicState};

pub const PIPELINE_TOPICS: [&str; 3] = ["StockExchange", "holdings", "portfolios"];

/// How a topic of the pipeline is created: the job's inputs (prices, holdings) are kept
/// forever (the job's history; a broker default of 7 days would silently drop it); the
/// output topic keeps the broker's default.
pub fn spec_for(topic: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: topic.to_string(),
        partitions,
        retention: if topic == "portfolios" {
            Retention::BrokerDefault
        } else {
            Retention::Infinite
        },
    }
}

pub async fn run(g: &Global, command: TopicsCommand) -> Result<ExitCode> {
    let g = g.clone();
    tokio::task::spawn_blocking(move || {
        let log = open_log(&g)?;
        let names = |topics: Vec<String>| {
            if topics.is_empty() {
                PIPELINE_TOPICS.iter().map(|s| s.to_string()).collect()
            } else {
                topics
            }
        };
        match command {
            TopicsCommand::Create { partitions, topics } => {
                for t in names(topics) {
                    let spec = spec_for(&t, partitions);
                    let word = match log.ensure_topic(&spec)? {
                        TopicState::Created => "created",
                        TopicState::Existed => "exists",
                    };
                    let retention = log
                        .retention(&t)
                        .map_or_else(|e| format!("unknown ({e})"), |r| r.describe());
                    println!("{t}: {word}, retention {retention}");
                }
                Ok(ExitCode::SUCCESS)
            }
            TopicsCommand::Describe { topics } => describe(g.output, log.as_ref(), &names(topics)),
            TopicsCommand::Summary { topic } => summary(g.output, log.as_ref(), &topic),
            TopicsCommand::Tail {
                topic,
                count,
                partition,
            } => tail(g.output, log.as_ref(), &topic, count, partition),
        }
    })
    .await?
}

fn describe(output: Output, log: &dyn Log, topics: &[String]) -> Result<ExitCode> {
    let mut rows = Vec::new();
    for t in topics {
        let marks = log.watermarks(t)?;
        let retention = log.retention(t).map(|r| r.describe());
        rows.push((t, marks, retention));
    }
    match output {
        Output::Json => {
            let v: Vec<_> = rows
                .iter()
                .map(|(t, marks, r)| {
                    serde_json::json!({
                        "topic": t,
                        "retention": match r { Ok(r) => r.clone(), Err(e) => e.to_string() },
                        "partitions": marks.iter().map(|w| serde_json::json!({"partition": w.partition, "log_start": w.low, "end": w.high})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(v));
        }
        Output::Text => {
            for (t, marks, r) in &rows {
                match r {
                    Ok(r) => println!("{t}: {} partitions, retention {r}", marks.len()),
                    Err(e) => println!("{t}: {} partitions, retention unknown ({e})", marks.len()),
                }
                for w in marks {
                    println!(
                        "  partition {}: log start {}, end {}",
                        w.partition, w.low, w.high
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct ExchangeStats {
    messages: usize,
    days: BTreeSet<chrono::NaiveDate>,
    tickers: BTreeSet<String>,
}

fn summary(output: Output, log: &dyn Log, topic: &str) -> Result<ExitCode> {
    let marks = log.watermarks(topic)?;
    let records = read_to_end(log, topic, Duration::from_secs(300))?;
    let mut decoder = TickDecoder::spec();
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

/// A topic's latest records, `count` per partition (of one partition with `partition`).
fn tail(
    output: Output,
    log: &dyn Log,
    topic: &str,
    count: usize,
    partition: Option<i32>,
) -> Result<ExitCode> {
    let records = read_tail(log, topic, count, Duration::from_secs(60))?;
    let text = |b: &Option<Vec<u8>>| {
        b.as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let time = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    for r in records
        .iter()
        .filter(|r| partition.is_none_or(|p| p == r.position.partition))
    {
        match output {
            Output::Json => println!(
                "{}",
                serde_json::json!({
                    "topic": topic,
                    "partition": r.position.partition,
                    "offset": r.position.offset,
                    "timestamp_ms": r.timestamp_ms,
                    "time": time(r.timestamp_ms),
                    "key": text(&r.key),
                    "payload": text(&r.payload),
                })
            ),
            Output::Text => println!(
                "{}/{} @{}  {}  key {}  {}",
                topic,
                r.position.partition,
                r.position.offset,
                time(r.timestamp_ms).unwrap_or_else(|| "-".into()),
                text(&r.key).unwrap_or_else(|| "-".into()),
                text(&r.payload).unwrap_or_else(|| "-".into()),
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
