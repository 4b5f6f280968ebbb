//! The exchange servers and the publisher through the real broker.

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

mod common;

use chrono::NaiveDate;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use stockflow_market::{Exchange, PriceModel, Tick, TickDecoder};
use stockflow_producers::Schedule;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap_or_else(|| panic!("bad date"))
}

fn decode_all(topic: &str) -> Vec<(String, Tick)> {
    let mut dec = TickDecoder::spec();
    read_topic(topic)
        .into_iter()
        .map(|r| {
            let key = String::from_utf8(r.key.expect("every tick has a key")).expect("a UTF-8 key");
            let tick = dec
                .decode(r.payload.as_deref().expect("every tick has a payload"))
                .unwrap_or_else(|e| panic!("record at {:?} does not decode: {e}", r.position));
            (key, tick)
        })
        .collect()
}

#[test]
fn backfill_lands_every_tick_with_the_models_prices() {
    let topic = fresh_topic("backfill", 3);
    let out = run_ok(stockflow().args([
        "exchange",
        "all",
        "--backfill",
        "--from",
        "2003-12-15",
        "--until",
        "2004-02-20",
        "--seed",
        "99",
        "--topic",
        &topic,
        "--output",
        "json",
    ]));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("report is not JSON: {e}"));

    // Expected: the model's plan for both exchanges over that range.
    let mut expected = BTreeSet::new();
    let mut days = BTreeSet::new();
    for exchange in Exchange::ALL {
        let plan = Schedule {
            exchange,
            seed: 99,
            model: PriceModel::RandomWalk,
            from: d(2003, 12, 15),
            until: d(2004, 2, 20),
            max_days: None,
            universe: std::sync::Arc::new(stockflow_market::Universe::spec()),
        }
        .plan()
        .unwrap_or_else(|e| panic!("plan: {e}"));
        for day in plan {
            days.insert(day.date);
            expected.extend(day.ticks);
        }
    }
    // 2003-12-15..2004-02-20: 50 weekdays less 25, 26 Dec, 1 and 6 Jan = 46 trading days.
    assert_eq!(days.len(), 46);
    assert_eq!(report[0]["messages"], 46 * 12);
    assert_eq!(report[1]["messages"], 46 * 12);

    let got = decode_all(&topic);
    assert_eq!(got.len(), 46 * 24, "every tick exactly once");
    for (key, tick) in &got {
        assert_eq!(key, &tick.ticker, "records are keyed by ticker");
    }
    let got: BTreeSet<Tick> = got.into_iter().map(|(_, t)| t).collect();
    assert_eq!(got, expected, "prices are the model's");

    // One ticker always lands in one partition (ordering per stock).
    let mut partitions: BTreeMap<Vec<u8>, BTreeSet<i32>> = BTreeMap::new();
    for r in read_topic(&topic) {
        partitions
            .entry(r.key.expect("every tick has a key"))
            .or_default()
            .insert(r.position.partition);
    }
    assert_eq!(partitions.len(), 24);
    assert!(partitions.values().all(|p| p.len() == 1));
}

#[test]
fn same_seed_same_messages_different_seed_different_prices() {
    let a = fresh_topic("seed-a", 1);
    let b = fresh_topic("seed-b", 1);
    for (topic, seed) in [(&a, "5"), (&b, "6")] {
        run_ok(stockflow().args([
            "exchange",
            "se1",
            "--backfill",
            "--from",
            "2010-03-01",
            "--days",
            "20",
            "--seed",
            seed,
            "--topic",
            topic,
        ]));
    }
    let ta: BTreeSet<Tick> = decode_all(&a).into_iter().map(|(_, t)| t).collect();
    let tb: BTreeSet<Tick> = decode_all(&b).into_iter().map(|(_, t)| t).collect();
    assert_eq!(ta.len(), 20 * 12);
    assert!(ta.iter().all(|t| t.exchange == Exchange::Se1));
    assert_ne!(ta, tb);
    let a2 = fresh_topic("seed-a2", 1);
    run_ok(stockflow().args([
        "exchange",
        "se1",
        "--backfill",
        "--from",
        "2010-03-01",
        "--days",
        "20",
        "--seed",
        "5",
        "--topic",
        &a2,
    ]));
    let ta2: BTreeSet<Tick> = decode_all(&a2).into_iter().map(|(_, t)| t).collect();
    assert_eq!(ta, ta2);
}

#[test]
fn publish_reports_bad_lines_and_publishes_the_good_ones() {
    let topic = fresh_topic("publish", 2);
    let dir = std::env::temp_dir().join(format!("stockflow-publish-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("ticks.jsonl");
    let lines = [
        r#"{"TICK": "IBM", "PRICE": "256.90", "TS": "2000-01-03", "EXCHANGE": "SE1"}"#,
        r#"{"TICK": "ORKL", "PRICE": 148.79, "TS": "2000-01-03T18:00:00"}"#,
        r#"{"TICK": "IBM", "PRICE": "#,
        "",
        r#"{"TICK": "VZ", "PRICE": -1, "TS": "2000-01-03"}"#,
        r#"{"TICK": "XYZ", "PRICE": "1.00", "TS": "2000-01-03"}"#,
        r#"{"TICK": "VZ", "PRICE": "46.49", "TS": "2000-02-31"}"#,
        r#"{"TICK": "VZ", "PRICE": "46.49", "TS": "2000-01-04"}"#,
    ];
    // A line that is not UTF-8, then one more good line: the rest is still published.
    let mut bytes = lines.join("\n").into_bytes();
    bytes.extend_from_slice(b"\n{\"TICK\": \"IBM\xff\", \"PRICE\": \"1.00\"}\r\n");
    bytes.extend_from_slice(br#"{"TICK": "MSFT", "PRICE": "380.16", "TS": "2000-01-03"}"#);
    std::fs::write(&file, bytes).unwrap_or_else(|e| panic!("{e}"));
    let out = stockflow()
        .args(["exchange", "publish", "--topic", &topic])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2), "bad lines give exit code 2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ticks.jsonl:3: malformed JSON"), "{stderr}");
    assert!(
        stderr.contains("ticks.jsonl:5: price \"-1\" is not positive"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ticks.jsonl:6: unknown ticker \"XYZ\""),
        "{stderr}"
    );
    assert!(stderr.contains("ticks.jsonl:7: bad date"), "{stderr}");
    assert!(
        stderr.contains("ticks.jsonl:9: payload is not UTF-8"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("4 published"), "{stdout}");

    let got = decode_all(&topic);
    let tickers: BTreeSet<(String, String)> = got
        .iter()
        .map(|(_, t)| (t.ticker.clone(), t.price.to_string()))
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("IBM", "256.90"),
        ("ORCL", "148.79"),
        ("VZ", "46.49"),
        ("MSFT", "380.16"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(tickers, want);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn interrupted_live_run_writes_whole_days_only() {
    let topic = fresh_topic("live", 2);
    let child = stockflow()
        .args([
            "exchange",
            "all",
            "--from",
            "2020-01-02",
            "--days",
            "50",
            "--pace",
            "0.2",
            "--topic",
            &topic,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // Wait (bounded) until a few days have landed, then Ctrl-C.
    let admin = log();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        use stockflow_transport::Log;
        let n: i64 = admin
            .watermarks(&topic)
            .map(|w| w.iter().map(|w| w.len()).sum())
            .unwrap_or(0);
        if n >= 3 * 24 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no days landed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    run_ok(std::process::Command::new("kill").args(["-INT", &pid]));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "clean exit on Ctrl-C");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(interrupted)"), "{stdout}");

    let ticks = decode_all(&topic);
    assert!(ticks.len() < 50 * 24, "stopped early");
    let mut per_day: BTreeMap<(Exchange, NaiveDate), usize> = BTreeMap::new();
    for (_, t) in ticks {
        *per_day.entry((t.exchange, t.date)).or_default() += 1;
    }
    assert!(
        per_day.values().all(|&n| n == 12),
        "a half-written day: {per_day:?}"
    );
}

#[test]
fn calendar_command_prints_iso_dates() {
    let out = run_ok(stockflow().args(["calendar", "--from", "2000-04-26", "--to", "2000-05-05"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let days: Vec<&str> = text.lines().collect();
    // 28 Apr Good Friday, 1 May Easter Monday, 2 May Labour Day moved.
    assert_eq!(
        days,
        [
            "2000-04-26",
            "2000-04-27",
            "2000-05-03",
            "2000-05-04",
            "2000-05-05"
        ]
    );
}
