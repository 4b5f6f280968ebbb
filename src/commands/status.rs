use super::kafka_config;
use crate::cli::{DbArgs, Global, Output, TopicArgs};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::time::Duration;
use stockflow_sinks::mysql::{redact, status, MySqlConfig};
use stockflow_transport::kafka::KafkaAdmin;
use stockflow_transport::LogAdmin;

pub async fn run(g: &Global, db: DbArgs, topics: TopicArgs, job: String) -> Result<ExitCode> {
    let cfg = MySqlConfig::from_url(&db.url)?;
    let job2 = job.clone();
    let st = tokio::task::spawn_blocking(move || status(&cfg, &job2))
        .await?
        .with_context(|| format!("reading {}", redact(&db.url)))?;
    let admin = KafkaAdmin::new(&kafka_config(g))?;
    let mut partitions = Vec::new();
    for topic in [&topics.prices, &topics.holdings] {
        for w in admin.watermarks(topic, Duration::from_secs(10))? {
            let committed = st
                .offsets
                .iter()
                .find(|(t, p, _)| t == topic && *p == w.partition)
                .map(|(_, _, o)| *o);
            partitions.push((topic.clone(), w.partition, committed, w.high));
        }
    }
    let lag: i64 = partitions
        .iter()
        .map(|(_, _, c, end)| end - c.unwrap_or(0))
        .sum();
    match g.output {
        Output::Json => {
            let v = serde_json::json!({
                "job": job,
                "lag": lag,
                "partitions": partitions.iter().map(|(t, p, c, e)| serde_json::json!({
                    "topic": t, "partition": p, "committed": c, "end": e,
                    "lag": e - c.unwrap_or(0),
                })).collect::<Vec<_>>(),
                "portfolios": st.portfolios.iter().map(|(i, p, d, v, n)| serde_json::json!({
                    "investor": i, "portfolio": p, "last_day": d, "value": v, "days": n,
                })).collect::<Vec<_>>(),
                "evaluations": st.evaluations,
                "dead_letters": st.dead_letters,
            });
            println!("{v}");
        }
        Output::Text => {
            println!(
                "job {job}: {} evaluations, {} dead letters, lag {lag} records",
                st.evaluations, st.dead_letters
            );
            println!(
                "\n{:<30} {:>9} {:>12} {:>12} {:>10}",
                "topic", "partition", "committed", "end", "lag"
            );
            for (t, p, c, e) in &partitions {
                println!(
                    "{:<30} {:>9} {:>12} {:>12} {:>10}",
                    t,
                    p,
                    c.map_or("-".into(), |c| c.to_string()),
                    e,
                    e - c.unwrap_or(0)
                );
            }
            println!(
                "\n{:<6} {:<10} {:<12} {:>20} {:>8}",
                "inv", "portfolio", "last day", "value", "days"
            );
            for (i, p, d, v, n) in &st.portfolios {
                println!("{i:<6} {p:<10} {d:<12} {v:>20} {n:>8}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
