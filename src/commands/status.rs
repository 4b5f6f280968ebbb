//! `stockflow status`: what a job (running or stopped) has done, from MySQL and the log:
//! committed offsets against each partition's range, each topic's retention, the job's lease,
//! the last evaluated day of every portfolio, and the portfolio-days without an evaluation.

use super::open_log;
use crate::cli::{DbArgs, Global, Output, TopicArgs};
use anyhow::{Context, Result};
use std::process::ExitCode;
use stockflow_sinks::mysql::state::status;
use stockflow_sinks::mysql::{redact, MySqlConfig};

struct PartitionRow {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    low: i64,
    end: i64,
}

impl PartitionRow {
    fn lag(&self) -> i64 {
        (self.end - self.committed.unwrap_or(self.low).max(self.low)).max(0)
    }

    /// What a person should know about this partition.
    fn state(&self) -> &'static str {
        match self.committed {
            Some(c) if c > self.end => {
                "LOST: stored offset beyond the log's end (run --reset-offsets)"
            }
            Some(c) if c < self.low => "head gone (retention); state stored",
            None => "not read yet",
            _ => "ok",
        }
    }
}

pub async fn run(
    g: &Global,
    db: DbArgs,
    topics: TopicArgs,
    job: String,
    issues: usize,
) -> Result<ExitCode> {
    let cfg = MySqlConfig::from_url(&db.url()?)?;
    let job2 = job.clone();
    let st = tokio::task::spawn_blocking(move || status(&cfg, &job2, issues))
        .await?
        .with_context(|| format!("reading {}", redact(&db.raw_url)))?;
    let g2 = g.clone();
    let topic_names = [topics.prices.clone(), topics.holdings.clone()];
    let (partitions, retention) = tokio::task::spawn_blocking(move || -> Result<_> {
        let log = open_log(&g2)?;
        let mut partitions = Vec::new();
        let mut retention = Vec::new();
        for topic in &topic_names {
            for w in log.watermarks(topic)? {
                partitions.push((topic.clone(), w));
            }
            retention.push((topic.clone(), log.retention(topic).map(|r| r.describe())));
        }
        Ok((partitions, retention))
    })
    .await??;
    let partitions: Vec<PartitionRow> = partitions
        .into_iter()
        .map(|(topic, w)| PartitionRow {
            committed: st
                .offsets
                .iter()
                .find(|(t, p, _)| *t == topic && *p == w.partition)
                .map(|(_, _, o)| *o),
            topic,
            partition: w.partition,
            low: w.low,
            end: w.high,
        })
        .collect();
    let lag: i64 = partitions.iter().map(PartitionRow::lag).sum();
    let lease = st.lease.as_ref().map(|l| {
        let live = stockflow_sinks::mysql::lease::is_live(
            l,
            &stockflow_sinks::mysql::lease::Holder::this_process(),
        );
        (l.describe(), live)
    });
    match g.output {
        Output::Json => {
            let v = serde_json::json!({
                "job": job,
                "lag": lag,
                "lease": lease.as_ref().map(|(d, live)| serde_json::json!({"holder": d, "live": live})),
                "partitions": partitions.iter().map(|p| serde_json::json!({
                    "topic": p.topic, "partition": p.partition, "committed": p.committed,
                    "log_start": p.low, "end": p.end, "lag": p.lag(), "state": p.state(),
                })).collect::<Vec<_>>(),
                "retention": retention.iter().map(|(t, r)| serde_json::json!({
                    "topic": t, "retention": match r { Ok(r) => r.clone(), Err(e) => e.to_string() },
                })).collect::<Vec<_>>(),
                "portfolios": st.portfolios.iter().map(|(i, p, d, v, n)| serde_json::json!({
                    "investor": i, "portfolio": p, "last_day": d, "value": v, "days": n,
                })).collect::<Vec<_>>(),
                "evaluations": st.evaluations,
                "dead_letters": st.dead_letters,
                "stored_prices": st.prices,
                "stored_holding_records": st.holding_records,
                "issue_counts": st.issue_counts.iter().map(|(k, n)| serde_json::json!({"kind": k, "count": n})).collect::<Vec<_>>(),
                "issues": st.issues.iter().map(|i| serde_json::json!({
                    "portfolio": i.portfolio, "date": i.date, "kind": i.kind, "held": i.held,
                    "priced": i.priced, "missing": i.missing, "detail": i.detail,
                })).collect::<Vec<_>>(),
            });
            println!("{v}");
        }
        Output::Text => {
            println!(
                "job {job}: {} evaluations, {} dead letters, lag {lag} records; state: {} prices, {} holding records",
                st.evaluations, st.dead_letters, st.prices, st.holding_records
            );
            match &lease {
                Some((d, true)) => println!("lease: running, {d}"),
                Some((d, false)) => println!("lease: free (last holder {d})"),
                None => println!("lease: never taken"),
            }
            for (t, r) in &retention {
                match r {
                    Ok(r) => println!("retention of {t}: {r}"),
                    Err(e) => println!("retention of {t}: unknown ({e})"),
                }
            }
            println!(
                "\n{:<30} {:>9} {:>12} {:>10} {:>12} {:>10}  state",
                "topic", "partition", "committed", "log start", "end", "lag"
            );
            for p in &partitions {
                println!(
                    "{:<30} {:>9} {:>12} {:>10} {:>12} {:>10}  {}",
                    p.topic,
                    p.partition,
                    p.committed.map_or("-".into(), |c| c.to_string()),
                    p.low,
                    p.end,
                    p.lag(),
                    p.state()
                );
            }
            println!(
                "\n{:<6} {:<10} {:<12} {:>20} {:>8}",
                "inv", "portfolio", "last day", "value", "days"
            );
            for (i, p, d, v, n) in &st.portfolios {
                println!("{i:<6} {p:<10} {d:<12} {v:>20} {n:>8}");
            }
            if st.issue_counts.is_empty() {
                println!("\nevery portfolio-day with inputs is evaluated");
            } else {
                let counts: Vec<String> = st
                    .issue_counts
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect();
                println!(
                    "\nportfolio-days without an evaluation: {} (latest {} below)",
                    counts.join(", "),
                    st.issues.len()
                );
                for i in &st.issues {
                    let what = match i.kind.as_str() {
                        "incomplete" => format!(
                            "{} of {} closes; missing {}",
                            i.priced,
                            i.held,
                            i.missing.join(", ")
                        ),
                        _ => i.detail.clone().unwrap_or_default(),
                    };
                    println!("  {:<10} {:<12} {:<10} {what}", i.portfolio, i.date, i.kind);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
