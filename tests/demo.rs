//! The README's first command in a reduced form (a short date range, its own topics, database
//! and report folder), and the metrics endpoint of a running job.

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_first_readme_command_runs_the_whole_system() {
    let prices = fresh_topic("demo-prices", 2);
    let holdings = fresh_topic("demo-holdings", 1);
    let url = fresh_db("demo");
    let reports = std::env::temp_dir().join(format!("stockflow-demo-{}", uuid::Uuid::new_v4()));
    let out = run_ok(
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo"))
            .args(["--from", "2024-11-01", "--until", "2025-01-31"])
            .env("STOCKFLOW_BIN", env!("CARGO_BIN_EXE_stockflow"))
            .env("STOCKFLOW_PRICES_TOPIC", &prices)
            .env("STOCKFLOW_HOLDINGS_TOPIC", &holdings)
            .env("STOCKFLOW_MYSQL_URL", &url)
            .env("STOCKFLOW_MYSQL_PASSWORD", common::mysql_password())
            .env("STOCKFLOW_REPORTS", &reports)
            // The default log level: what a user sees.
            .env_remove("STOCKFLOW_LOG"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // No ERROR line in a run that went right (librdkafka's partition-end reports, a closed
    // pipe after `calendar | head -1` printed some).
    assert!(
        !stderr.contains("ERROR") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    let days = stockflow_market::Calendar::new()
        .trading_days(
            chrono::NaiveDate::from_ymd_opt(2024, 11, 1).expect("a valid date"),
            chrono::NaiveDate::from_ymd_opt(2025, 1, 31).expect("a valid date"),
        )
        .len();
    let rows = query(&url, "SELECT COUNT(*) FROM evaluations");
    assert_eq!(rows[0][0], (days * 6).to_string());
    assert!(
        stdout.contains(&format!("{} evaluations", days * 6)),
        "{stdout}"
    );
    assert_eq!(
        query(&url, "SELECT COUNT(*) FROM Inv3_P32")[0][0],
        days.to_string()
    );
    let files: Vec<String> = std::fs::read_dir(&reports)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.ends_with("_stats")).count(),
        6,
        "{files:?}"
    );
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".png")).count(),
        12,
        "{files:?}"
    );
    assert!(
        files.contains(&"stats.csv".to_string()) && files.contains(&"stats.parquet".to_string())
    );
    assert!(stdout.contains("reports in"), "{stdout}");
    let _ = std::fs::remove_dir_all(reports);
    drop_db(&url);
}

fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn the_metrics_endpoint_tells_the_truth() {
    let (prices, holdings) = market_topics("metrics", (2, 1), "2019-01-01", "400", "6107");
    produce_raw(
        &prices,
        "IBM",
        &[
            r#"{"TICK":"#,
            r#"{"TICK":"IBM","PRICE":"-1","TS":"2019-01-02"}"#,
        ],
    );
    let url = fresh_db("metrics");
    let port = 30_000 + (uuid::Uuid::new_v4().as_u128() % 20_000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let mut job = stockflow()
        .args([
            "run",
            "--max-batch",
            "200",
            "--prices-topic",
            &prices,
            "--holdings-topic",
            &holdings,
        ])
        .args(["--mysql-url", &url, "--metrics-addr", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // The endpoint answers while the job runs; then wait (bounded) until the job is caught up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(m) = scrape(&addr) {
            let caught_up = value(&m, "stockflow_ticks_total") == Some(400.0 * 24.0)
                && m.lines()
                    .filter(|l| l.starts_with("stockflow_partition_lag{"))
                    .all(|l| l.ends_with(" 0"));
            last = m;
            if caught_up {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = job.kill();
    let _ = job.wait();
    assert!(
        last.contains("# TYPE stockflow_ticks_total counter"),
        "{last}"
    );
    let rows: f64 = query(&url, "SELECT COUNT(*) FROM evaluations")[0][0]
        .parse()
        .expect("a count");
    assert_eq!(rows, 400.0 * 6.0);
    assert_eq!(value(&last, "stockflow_ticks_total"), Some(400.0 * 24.0));
    assert_eq!(value(&last, "stockflow_holdings_total"), Some(36.0));
    assert_eq!(value(&last, "stockflow_dead_letters_total"), Some(2.0));
    assert_eq!(
        value(&last, "stockflow_evaluations_inserted_total"),
        Some(rows)
    );
    assert_eq!(
        value(&last, "stockflow_sink_rows_upserted_total"),
        Some(rows)
    );
    let dead: f64 = query(&url, "SELECT COUNT(*) FROM dead_letters")[0][0]
        .parse()
        .expect("a count");
    assert_eq!(dead, 2.0);
    assert!(
        value(&last, "stockflow_sink_transactions_total").expect("the sink's transactions") >= 1.0
    );
    assert_eq!(
        last.matches("stockflow_partition_lag{").count(),
        3,
        "one lag per partition"
    );
    drop_db(&url);
}
