//! `stockflow run` through the real broker.

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

mod common;

use chrono::NaiveDate;
use common::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use stockflow_market::{Exchange, PriceModel, Universe};
use stockflow_producers::Schedule;

struct Topics {
    prices: String,
    holdings: String,
}

fn topics(name: &str, price_partitions: i32) -> Topics {
    Topics {
        prices: fresh_topic(&format!("{name}-prices"), price_partitions),
        holdings: fresh_topic(&format!("{name}-holdings"), 2),
    }
}

fn load_holdings(t: &Topics) {
    run_ok(stockflow().args(["holdings", "load", "--topic", &t.holdings]));
}

fn backfill(t: &Topics, from: &str, days: &str) {
    run_ok(stockflow().args([
        "exchange",
        "all",
        "--backfill",
        "--from",
        from,
        "--days",
        days,
        "--seed",
        "77",
        "--topic",
        &t.prices,
    ]));
}

/// Runs the job until caught up; returns the final state (row → count) and the summary.
fn run_job(t: &Topics, extra: &[&str]) -> (BTreeMap<Vec<String>, i64>, serde_json::Value) {
    let out = run_ok(
        stockflow()
            .args([
                "run",
                "--sink",
                "jsonl",
                "--until-caught-up",
                "--output",
                "json",
                "--prices-topic",
                &t.prices,
            ])
            .args(["--holdings-topic", &t.holdings])
            .args(extra),
    );
    let mut state: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line}: {e}"));
        let key: Vec<String> = [
            "investor",
            "portfolio",
            "date",
            "value",
            "change",
            "change_pct",
        ]
        .iter()
        .map(|f| v[f].as_str().unwrap_or("NULL").to_string())
        .collect();
        *state.entry(key).or_default() += v["diff"].as_i64().expect("every line has a diff");
    }
    state.retain(|_, c| *c != 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stderr
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary in {stderr}"));
    (state, summary)
}

fn closes(from: NaiveDate, days: usize) -> BTreeMap<(String, NaiveDate), Decimal> {
    let mut out = BTreeMap::new();
    for exchange in Exchange::ALL {
        let plan = Schedule {
            exchange,
            seed: 77,
            model: PriceModel::RandomWalk,
            from,
            until: NaiveDate::from_ymd_opt(2100, 1, 1).unwrap_or(from),
            max_days: Some(days),
            universe: Arc::new(Universe::spec()),
        }
        .plan()
        .unwrap_or_else(|e| panic!("{e}"));
        for day in plan {
            for t in day.ticks {
                let price = Decimal::from_str(&t.price.to_string()).expect("a decimal price");
                out.insert((t.ticker, t.date), price);
            }
        }
    }
    out
}

fn expected_value(
    portfolio: &str,
    day: NaiveDate,
    closes: &BTreeMap<(String, NaiveDate), Decimal>,
) -> Decimal {
    let p = stockflow_market::lookup_portfolio(portfolio).unwrap_or_else(|| panic!("{portfolio}"));
    p.holdings
        .iter()
        .map(|(t, q)| closes[&(t.to_string(), day)] * Decimal::from(*q))
        .sum()
}

#[test]
fn evaluates_every_portfolio_day_through_the_broker_for_any_worker_count() {
    let t = topics("eval", 4);
    load_holdings(&t);
    backfill(&t, "2005-12-20", "30");
    let (one, summary) = run_job(&t, &["-w", "1"]);
    assert_eq!(summary["ticks"], 30 * 24);
    assert_eq!(summary["holdings"], 36);
    assert_eq!(summary["dead_letters"], 0);
    assert_eq!(one.len(), 30 * 6, "6 portfolios × 30 days");
    assert!(one.values().all(|&c| c == 1));
    let (three, _) = run_job(&t, &["-w", "3"]);
    assert_eq!(one, three, "same result with 1 and 3 workers");

    // Values against the model's closes and the spec's holdings.
    let start = NaiveDate::from_ymd_opt(2005, 12, 20).expect("a valid date");
    let closes = closes(start, 30);
    let mut by_portfolio: BTreeMap<String, Vec<(NaiveDate, Decimal, String)>> = BTreeMap::new();
    for row in one.keys() {
        let day = NaiveDate::from_str(&row[2]).expect("a stored date");
        let value = Decimal::from_str(&row[3]).expect("a stored value");
        by_portfolio
            .entry(row[1].clone())
            .or_default()
            .push((day, value, row[4].clone()));
    }
    for (p, rows) in &by_portfolio {
        assert_eq!(rows[0].2, "NULL", "{p}: no change on the first day");
        for (i, (day, value, change)) in rows.iter().enumerate() {
            assert_eq!(*value, expected_value(p, *day, &closes), "{p} {day}");
            if i > 0 {
                let prev = rows[i - 1].1;
                assert_eq!(
                    Decimal::from_str(change).ok(),
                    Some(*value - prev),
                    "{p} {day}"
                );
            }
        }
    }
    let inv = one.keys().find(|r| r[1] == "P22").map(|r| r[0].clone());
    assert_eq!(inv.as_deref(), Some("Inv2"));
}

#[test]
fn replays_from_offsets_and_from_a_time() {
    let t = topics("replay", 1);
    load_holdings(&t);
    backfill(&t, "2010-01-04", "10");
    // A time between the two backfills, by the broker's clock of the records.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let between = chrono::Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(50));
    backfill(&t, "2010-01-18", "5");

    let (_, all) = run_job(&t, &[]);
    assert_eq!(all["ticks"], 15 * 24);
    let (_, from_offset) = run_job(&t, &["--from", "offsets=0:100"]);
    assert_eq!(from_offset["ticks"], 15 * 24 - 100);
    let time = format!(
        "time={}",
        between.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let (state, from_time) = run_job(&t, &["--from", &time]);
    assert_eq!(from_time["ticks"], 5 * 24, "only the second backfill");
    // Evaluated days are those of the second backfill only.
    assert!(state.keys().all(|r| r[2].as_str() >= "2010-01-18"));
    assert_eq!(state.len(), 5 * 6);
    let (_, latest) = run_job(&t, &["--from", "latest"]);
    assert_eq!(latest["ticks"], 0);
}

#[test]
fn bad_input_is_counted_and_the_rest_evaluated() {
    let t = topics("bad", 2);
    load_holdings(&t);
    backfill(&t, "2012-03-01", "3");
    // Bad records, produced as they are (the publisher would refuse them).
    let bad = [
        r#"{"TICK": "IBM", "PRICE": "#,
        r#"{"TICK": "IBM", "PRICE": "-4.00", "TS": "2012-03-05"}"#,
        r#"{"TICK": "XYZ", "PRICE": "4.00", "TS": "2012-03-05"}"#,
        r#"{"TICK": "IBM", "PRICE": "4.00", "TS": "2012-02-30"}"#,
        r#"{"TICK": "IBM", "PRICE": "4.00", "TS": "2012-03-04"}"#,
    ];
    produce_raw(&t.prices, "raw", &bad);
    produce_raw(
        &t.holdings,
        "raw",
        &[r#"{"PORTFOLIO":"P11","TICK":"XYZ","QTY":5,"FROM":"2012-03-01"}"#],
    );
    let (state, summary) = run_job(&t, &["-w", "2"]);
    assert_eq!(summary["dead_letters"], 6);
    assert_eq!(summary["ticks"], 3 * 24);
    assert_eq!(state.len(), 3 * 6, "every good day evaluated");
}

#[test]
fn a_holdings_change_restates_only_the_days_it_touches() {
    let t = topics("restate", 2);
    load_holdings(&t);
    backfill(&t, "2015-06-01", "10");
    let (before, _) = run_job(&t, &[]);
    // From 2015-06-08 on, P11 holds no IBM.
    run_ok(stockflow().args([
        "holdings",
        "set",
        "P11",
        "IBM",
        "0",
        "--from",
        "2015-06-08",
        "--topic",
        &t.holdings,
    ]));
    let (after, _) = run_job(&t, &[]);
    assert_eq!(before.len(), after.len());
    let changed: Vec<&Vec<String>> = after.keys().filter(|r| !before.contains_key(*r)).collect();
    assert!(!changed.is_empty());
    assert!(
        changed
            .iter()
            .all(|r| r[1] == "P11" && r[2].as_str() >= "2015-06-08"),
        "{changed:?}"
    );
    let p11_from: usize = after
        .keys()
        .filter(|r| r[1] == "P11" && r[2].as_str() >= "2015-06-08")
        .count();
    assert_eq!(
        changed.len(),
        p11_from,
        "every P11 day from the change on is restated"
    );
}

#[test]
fn a_two_process_cluster_gives_the_same_result() {
    let t = topics("cluster", 4);
    load_holdings(&t);
    backfill(&t, "2008-03-03", "20");
    let (single, _) = run_job(&t, &["-w", "1"]);
    let (dir, hosts) = hostfile();
    let other = stockflow()
        .args([
            "run",
            "--sink",
            "jsonl",
            "--sink-path",
            "/dev/null",
            "--until-caught-up",
        ])
        .args(["--prices-topic", &t.prices, "--holdings-topic", &t.holdings])
        .args(["--processes", "2", "--process", "1", "--hostfile", &hosts])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let (cluster, summary) = run_job(
        &t,
        &["--processes", "2", "--process", "0", "--hostfile", &hosts],
    );
    let status = other
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{e}"))
        .status;
    assert!(status.success());
    assert!(
        summary["ticks"].as_u64().expect("ticks counted") < 20 * 24,
        "process 0 read only its share"
    );
    assert_eq!(cluster, single);
    let _ = std::fs::remove_dir_all(dir);
}
