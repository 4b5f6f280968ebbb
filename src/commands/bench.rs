use super::exchange::{ensure_topic, serve_exchanges};
use super::open_log;
use crate::cli::{BenchCommand, Global, Model, Output, ServerArgs};
use anyhow::Result;
use futures::stream::{self, StreamExt};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockflow_transport::{Log, Position};

pub async fn run(g: &Global, command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Dataflow {
            workers,
            days,
            memory_days,
            in_flight,
            scaling_rounds,
            market,
        } => {
            anyhow::ensure!(
                scaling_rounds == 0 || workers >= 2,
                "--scaling-rounds compares one worker with -w workers: give -w 2 or more"
            );
            let universe = Arc::new(super::universe(&market)?);
            let cfg = stockflow_dataflow::bench::CoreBenchConfig {
                days,
                workers,
                seed: 6107,
                memory_days: (memory_days > 0).then_some(i64::from(memory_days)),
                in_flight,
            };
            if scaling_rounds > 0 {
                let v = scaling(&universe, &cfg, memory_days, scaling_rounds).await?;
                match g.output {
                    Output::Json => println!("{v}"),
                    Output::Text => println!("{}", serde_json::to_string_pretty(&v)?),
                }
                return Ok(ExitCode::SUCCESS);
            }
            let r = tokio::task::spawn_blocking(move || {
                stockflow_dataflow::bench::run_core_bench(&universe, &cfg)
            })
            .await??;
            let secs = r.elapsed.as_secs_f64().max(1e-9);
            let base_secs = r.baseline_elapsed.as_secs_f64().max(1e-9);
            let v = serde_json::json!({
                "workers": workers,
                "days": days,
                "memory_days": memory_days,
                "in_flight": in_flight,
                "ticks": r.ticks,
                "evaluations": r.evaluations,
                "seconds": secs,
                "ticks_per_second": r.ticks as f64 / secs,
                "ticks_per_second_per_worker": r.ticks as f64 / secs / workers.max(1) as f64,
                "evaluations_per_second": r.evaluations as f64 / secs,
                "early_day_ms": r.early_day.as_secs_f64() * 1e3,
                "late_day_ms": r.late_day.as_secs_f64() * 1e3,
                "restatements": stockflow_dataflow::bench::RESTATEMENTS,
                "restatement_ms": r.restatement.as_secs_f64() * 1e3,
                "restatement_min_ms": r.restatement_min.as_secs_f64() * 1e3,
                "restatement_max_ms": r.restatement_max.as_secs_f64() * 1e3,
                "day_ms_by_decile": r.day_cost_by_decile.iter().map(|d| (d.as_secs_f64() * 1e4).round() / 10.0).collect::<Vec<_>>(),
                "restatement_retracted": r.restatement_retracted.1,
                "restatement_inserted": r.restatement_inserted.1,
                "restatements_moved_the_same_rows": r.restatement_retracted.0 == r.restatement_retracted.1
                    && r.restatement_inserted.0 == r.restatement_inserted.1,
                "peak_rss_mib": peak_rss_mib(),
                "baseline_ticks_per_second": r.ticks as f64 / base_secs,
                "baseline_evaluations": r.baseline_evaluations,
                "dataflow_to_baseline": base_secs / secs,
                "same_rows_as_baseline": r.checksum == r.baseline_checksum && r.evaluations == r.baseline_evaluations,
                "late_to_early_day": r.late_day.as_secs_f64() / r.early_day.as_secs_f64().max(1e-12),
            });
            match g.output {
                Output::Json => println!("{v}"),
                Output::Text => println!("{}", serde_json::to_string_pretty(&v)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::MysqlInsert { rows, db } => {
            let cfg = stockflow_sinks::mysql::MySqlConfig::from_url(&db.url()?)?;
            let u = stockflow_market::Universe::spec();
            let rate = tokio::task::spawn_blocking(move || {
                stockflow_sinks::mysql::init(&cfg, &u, false, false)?;
                stockflow_sinks::mysql::raw_insert_rate(&cfg, rows)
            })
            .await??;
            let v = serde_json::json!({"rows": rows, "rows_per_second": rate});
            match g.output {
                Output::Json => println!("{v}"),
                Output::Text => println!("raw multi-row INSERT: {rows} rows at {rate:.0} rows/s"),
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::MysqlLoad { rows, db } => {
            let cfg = stockflow_sinks::mysql::MySqlConfig::from_url(&db.url()?)?;
            let u = stockflow_market::Universe::spec();
            let rates = tokio::task::spawn_blocking(move || {
                stockflow_sinks::mysql::init(&cfg, &u, false, false)?;
                stockflow_sinks::mysql::raw_load_rates(&cfg, rows)
            })
            .await??;
            let v = serde_json::json!({
                "rows": rows,
                "load_with_investor_index_rows_per_second": rates.with_investor_index,
                "load_primary_key_only_rows_per_second": rates.primary_key_only,
            });
            match g.output {
                Output::Json => println!("{v}"),
                Output::Text => println!(
                    "raw LOAD DATA LOCAL INFILE, {rows} rows: {:.0} rows/s with the index by investor, {:.0} rows/s with the primary key only",
                    rates.with_investor_index, rates.primary_key_only
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Consume { topic } => {
            let g2 = g.clone();
            let r =
                tokio::task::spawn_blocking(move || raw_consume(open_log(&g2)?.as_ref(), &topic))
                    .await??;
            match g.output {
                Output::Json => println!("{r}"),
                Output::Text => println!("{}", serde_json::to_string_pretty(&r)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Producers {
            from,
            until,
            partitions,
        } => producers(g, from, until, partitions).await,
    }
}

/// Raw producer throughput: `n` messages of the exchanges' size and shape, same client and
/// settings, no schedule, no per-day grouping.
async fn raw_produce(log: &dyn Log, topic: &str, n: usize) -> Result<f64> {
    let sink = log.producer()?;
    let payload = br#"{"TICK":"AAPL","PRICE":"227.48","TS":"2000-01-03","EXCHANGE":"SE1"}"#;
    let keys: Vec<String> = (0..24).map(|i| format!("T{i:02}")).collect();
    let started = Instant::now();
    let results: Vec<_> = stream::iter(0..n)
        .map(|i| {
            let key = keys[i % keys.len()].as_bytes();
            let sink = sink.as_ref();
            async move { sink.send(topic, key, payload).await }
        })
        .buffered(6144)
        .collect()
        .await;
    for r in results {
        r?;
    }
    sink.flush(Duration::from_secs(60))?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn producers(
    g: &Global,
    from: chrono::NaiveDate,
    until: Option<chrono::NaiveDate>,
    partitions: i32,
) -> Result<ExitCode> {
    let g2 = g.clone();
    let log = tokio::task::spawn_blocking(move || open_log(&g2)).await??;
    let run_id = std::process::id();
    let exchange_topic = format!("bench-exchange-{run_id}");
    let raw_topic = format!("bench-raw-{run_id}");
    let args = ServerArgs {
        from,
        until,
        days: None,
        seed: 6107,
        model: Model::RandomWalk,
        backfill: true,
        pace: 0.0,
        topic: exchange_topic.clone(),
        partitions,
        market: crate::cli::MarketArgs {
            market: "spec".into(),
        },
    };
    let started = Instant::now();
    let reports = serve_exchanges(
        Arc::clone(&log),
        &stockflow_market::Exchange::ALL,
        &args,
        false,
    )
    .await?;
    let exchange_secs = started.elapsed().as_secs_f64();
    let messages: usize = reports.iter().map(|r| r.messages).sum();
    let exchange_rate = messages as f64 / exchange_secs;

    ensure_topic(log.as_ref(), &raw_topic, partitions)?;
    let raw_rate = raw_produce(log.as_ref(), &raw_topic, messages).await?;
    let ratio = exchange_rate / raw_rate;
    // The topics are left in place: tansu 0.6 answered a DeleteTopics request for one
    // benchmark topic by dropping other topics too (seen here), so nothing deletes topics.
    match g.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "messages": messages,
                "exchange_all_backfill_msgs_per_s": exchange_rate,
                "raw_produce_msgs_per_s": raw_rate,
                "ratio": ratio,
                "exchange_topic": exchange_topic,
                "raw_topic": raw_topic,
            })
        ),
        Output::Text => {
            println!("| measure | messages | msg/s |");
            println!("|---|---:|---:|");
            println!(
                "| exchange all --backfill ({from} .. {}) | {messages} | {exchange_rate:.0} |",
                until.map_or("today".into(), |d| d.to_string())
            );
            println!("| raw produce, same client and broker | {messages} | {raw_rate:.0} |");
            println!("ratio exchange/raw = {ratio:.2} (topics {exchange_topic}, {raw_topic} kept)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench dataflow --scaling-rounds`: one worker against `base.workers`, alternated in one
/// process (the machine's noise comes in waves of seconds: a ratio of runs minutes apart
/// measured the machine as much as the code), each round's ratio and their median.
async fn scaling(
    universe: &Arc<stockflow_market::Universe>,
    base: &stockflow_dataflow::bench::CoreBenchConfig,
    memory_days: u32,
    rounds: u32,
) -> Result<serde_json::Value> {
    let workers = base.workers;
    let mut out = Vec::new();
    let mut ratios = Vec::new();
    let mut same_rows = true;
    for round in 0..rounds {
        // Which runs first alternates: a wave of noise favours neither.
        let order = if round % 2 == 0 {
            [1, workers]
        } else {
            [workers, 1]
        };
        let mut ticks_per_second = [0.0f64; 2];
        for w in order {
            let cfg = stockflow_dataflow::bench::CoreBenchConfig {
                workers: w,
                ..base.clone()
            };
            let u = Arc::clone(universe);
            let r = tokio::task::spawn_blocking(move || {
                stockflow_dataflow::bench::run_core_bench(&u, &cfg)
            })
            .await??;
            // The plain loop's rows, and every restatement moving the same rows.
            same_rows &= r.checksum == r.baseline_checksum
                && r.evaluations == r.baseline_evaluations
                && r.restatement_retracted.0 == r.restatement_retracted.1
                && r.restatement_inserted.0 == r.restatement_inserted.1;
            ticks_per_second[usize::from(w != 1)] =
                r.ticks as f64 / r.elapsed.as_secs_f64().max(1e-9);
        }
        let ratio = ticks_per_second[1] / ticks_per_second[0].max(1e-9);
        tracing::info!(
            round,
            one = ticks_per_second[0].round(),
            many = ticks_per_second[1].round(),
            ratio,
            "scaling round"
        );
        ratios.push(ratio);
        out.push(serde_json::json!({
            "ticks_per_second_1": ticks_per_second[0],
            "ticks_per_second_w": ticks_per_second[1],
            "ratio": ratio,
        }));
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    // The middle one, or the mean of the middle two.
    let n = sorted.len();
    let median = match n {
        0 => None,
        _ if n % 2 == 1 => sorted.get(n / 2).copied(),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    };
    Ok(serde_json::json!({
        "workers": workers,
        "days": base.days,
        "memory_days": memory_days,
        "in_flight": base.in_flight,
        "rounds": out,
        "median_ratio": median,
        "min_ratio": sorted.first(),
        "max_ratio": sorted.last(),
        "same_rows_as_baseline": same_rows,
    }))
}

/// Peak resident memory of this process (Linux VmHWM), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Reads a whole topic with the job's source (same client, same settings), counting records.
fn raw_consume(log: &dyn Log, topic: &str) -> Result<serde_json::Value> {
    let marks = log.watermarks(topic)?;
    let start: Vec<Position> = marks
        .iter()
        .map(|w| Position {
            topic: topic.to_string(),
            partition: w.partition,
            offset: w.low,
        })
        .collect();
    let total: i64 = marks.iter().map(|w| w.len()).sum();
    let started = Instant::now();
    let mut source = log.open_source(&start)?;
    let mut seen = 0i64;
    let mut bytes = 0usize;
    while seen < total {
        seen += source.poll_batch(50_000, Duration::from_millis(100), &mut |r| {
            bytes += r.payload.map_or(0, <[u8]>::len);
            stockflow_transport::Take::Next
        })? as i64;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    Ok(serde_json::json!({
        "topic": topic,
        "records": seen,
        "seconds": secs,
        "records_per_second": seen as f64 / secs,
        "payload_bytes": bytes,
    }))
}
