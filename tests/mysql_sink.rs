//! The MySQL sink against the real MariaDB and the real broker: exactly once across crashes,
//! replays, late holdings changes and bad input.

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

mod common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

struct Setup {
    prices: String,
    holdings: String,
}

fn setup(name: &str, days: &str) -> Setup {
    let (prices, holdings) = market_topics(name, (4, 2), "2001-01-01", days, "5");
    Setup { prices, holdings }
}

fn job(s: &Setup, url: &str) -> std::process::Command {
    let mut c = stockflow();
    c.args([
        "run",
        "--output",
        "json",
        "--prices-topic",
        &s.prices,
        "--holdings-topic",
        &s.holdings,
    ])
    .args(["--mysql-url", url]);
    c
}

fn summary(out: &std::process::Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn evaluations(url: &str) -> Vec<Vec<String>> {
    query(
        url,
        "SELECT investor, portfolio, CAST(as_of AS CHAR), CAST(nav AS CHAR), \
         CAST(nav_change AS CHAR), CAST(nav_change_pct AS CHAR) FROM evaluations ORDER BY portfolio, as_of",
    )
}

fn progress(url: &str) -> Vec<Vec<String>> {
    query(url, "SELECT topic, kafka_partition, next_offset FROM stream_progress ORDER BY topic, kafka_partition")
}

#[test]
fn db_init_is_idempotent_and_creates_the_course_tables() {
    let url = fresh_db("init");
    run_ok(stockflow().args(["db", "init", "--mysql-url", &url]));
    run_ok(stockflow().args(["db", "init", "--mysql-url", &url]));
    let investors = query(&url, "SELECT Id, Name, City FROM Investors ORDER BY Id");
    assert_eq!(investors.len(), 3);
    assert_eq!(investors[0], ["Inv1", "Aegean Capital", "Athens"]);
    let portfolios = query(&url, "SELECT Id, Cumulative FROM Portfolios ORDER BY Id");
    assert_eq!(portfolios.len(), 6);
    assert_eq!(portfolios[0], ["P11", "1"]);
    assert_eq!(portfolios[1], ["P12", "0"]);
    let links = query(
        &url,
        "SELECT iid, pid FROM Investors_Portfolios ORDER BY pid",
    );
    assert_eq!(links.len(), 6);
    assert_eq!(links[5], ["Inv3", "P32"]);
    for view in [
        "Inv1_P11", "Inv1_P12", "Inv2_P21", "Inv2_P22", "Inv3_P31", "Inv3_P32",
    ] {
        let cols = query(
            &url,
            &format!("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{view}' ORDER BY ORDINAL_POSITION"),
        );
        let cols: Vec<&str> = cols.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            cols,
            [
                "As Of",
                "NAV per Share",
                "Daily NAV Change",
                "Daily NAV Change %"
            ],
            "{view}"
        );
    }
    let migrations = query(
        &url,
        "SELECT version, name FROM refinery_schema_history ORDER BY version",
    );
    assert_eq!(migrations.len(), 9);
    assert_eq!(migrations[3], ["4", "job_state"]);
    assert_eq!(migrations[4], ["5", "record_marks"]);
    assert_eq!(migrations[5], ["6", "one_writer"]);
    assert_eq!(migrations[6], ["7", "publish_outbox"]);
    assert_eq!(migrations[7], ["8", "console_journal"]);
    assert_eq!(migrations[8], ["9", "lean_evaluations"]);
    // Only the index a query needs: the primary key (docs/sink.md, "Indexes").
    let indexes = query(
        &url,
        "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'evaluations'",
    );
    assert_eq!(indexes, [["PRIMARY"]]);
    for table in [
        "prices",
        "holding_records",
        "job_leases",
        "job_heartbeats",
        "database_owner",
        "publish_outbox",
        "evaluation_issues",
        "job_commits",
        "evaluation_changes",
    ] {
        assert_eq!(
            query(&url, &format!("SELECT COUNT(*) FROM {table}"))[0][0],
            "0",
            "{table} exists"
        );
    }
    // --reset needs --yes.
    let refused = stockflow()
        .args(["db", "init", "--reset", "--mysql-url", &url])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!refused.status.success());
    run_ok(stockflow().args(["db", "init", "--reset", "--yes", "--mysql-url", &url]));
    assert_eq!(query(&url, "SELECT COUNT(*) FROM Investors")[0][0], "3");
    drop_db(&url);
}

#[test]
fn crashes_at_random_moments_lose_and_duplicate_nothing() {
    let s = setup("crash", "1000");
    let reference = fresh_db("crash_ref");
    let out = run_ok(job(&s, &reference).args(["--until-caught-up", "--max-batch", "5"]));
    // How long the reading and committing take, start-up aside.
    let duration = Duration::from_secs_f64(summary(&out)["seconds"].as_f64().unwrap_or(1.0));
    assert_eq!(summary(&out)["ticks"], 1000 * 24);
    let expected = evaluations(&reference);
    assert_eq!(expected.len(), 1000 * 6);
    let end = ends(&s.prices);

    let mut seed = uuid::Uuid::new_v4().as_u128();
    let stored_now = |url: &str| -> i64 {
        progress(url)
            .iter()
            .filter(|r| r[0] == s.prices)
            .map(|r| r[2].parse::<i64>().expect("a stored offset"))
            .sum()
    };
    // A run that reads the whole backlog before its first commit (catch-up timestamps are
    // weeks, and the commit thread takes every waiting batch together) cannot be killed
    // mid-run: start again on a fresh database then, a few times at most.
    let mut crashed = String::new();
    let mut partial_kills = 0;
    for _attempt in 0..5 {
        if !crashed.is_empty() {
            drop_db(&crashed);
        }
        crashed = fresh_db("crash_run");
        run_ok(stockflow().args(["db", "init", "--mysql-url", &crashed]));
        for _ in 0..8 {
            let before = stored_now(&crashed);
            let mut child = job(&s, &crashed)
                // Small transactions: a catch-up commits every 200 rows, so that kills
                // land between commits and inside them.
                .args(["--max-batch", "5", "--commit-rows", "200"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{e}"));
            // Once this run has committed, a random moment within a third of an
            // uninterrupted run's reading time.
            let deadline = Instant::now() + Duration::from_secs(60);
            while stored_now(&crashed) == before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let fraction = (seed % 1000) as f64 / 1000.0 / 3.0;
            std::thread::sleep(duration.mul_f64(fraction));
            let _ = child.kill(); // SIGKILL: no clean shutdown, possibly mid-transaction
            let _ = child.wait();
            let stored = stored_now(&crashed);
            if stored > 0 && stored < end {
                partial_kills += 1;
            }
            if stored >= end {
                break;
            }
        }
        if partial_kills > 0 {
            break;
        }
    }
    assert!(partial_kills > 0, "at least one kill landed mid-run");
    let out = run_ok(job(&s, &crashed).args(["--until-caught-up"]));
    let got = evaluations(&crashed);
    assert_eq!(got.len(), expected.len());
    assert_eq!(
        got,
        expected,
        "row for row equal to an uninterrupted run (resumed: {})",
        summary(&out)["resumed"]
    );
    // No offset skipped: the progress table stands at the topics' ends.
    let stored: i64 = progress(&crashed)
        .iter()
        .filter(|r| r[0] == s.prices)
        .map(|r| r[2].parse::<i64>().expect("a stored offset"))
        .sum();
    assert_eq!(stored, end);
    assert_eq!(progress(&crashed), progress(&reference));

    // Replay from earliest into the full database, on top of its stored state: nothing changes.
    let out = run_ok(job(&s, &reference).args(["--until-caught-up", "--from", "earliest"]));
    assert_eq!(summary(&out)["resumed"], true);
    assert_eq!(evaluations(&reference), expected);
    drop_db(&reference);
    drop_db(&crashed);
}

#[test]
fn a_late_holdings_change_restates_the_right_rows_only() {
    let s = setup("late", "40");
    let url = fresh_db("late");
    run_ok(job(&s, &url).args(["--until-caught-up"]));
    let before = evaluations(&url);
    run_ok(stockflow().args([
        "holdings",
        "set",
        "P21",
        "VZ",
        "5000",
        "--from",
        "2001-02-01",
        "--topic",
        &s.holdings,
    ]));
    let out = run_ok(job(&s, &url).args(["--until-caught-up"]));
    assert_eq!(summary(&out)["resumed"], true);
    let after = evaluations(&url);
    assert_eq!(before.len(), after.len());
    let changed: Vec<&Vec<String>> = after.iter().filter(|r| !before.contains(r)).collect();
    assert!(!changed.is_empty());
    assert!(
        changed
            .iter()
            .all(|r| r[1] == "P21" && r[2].as_str() >= "2001-02-01"),
        "{changed:?}"
    );
    let p21_after_change = after
        .iter()
        .filter(|r| r[1] == "P21" && r[2].as_str() >= "2001-02-01")
        .count();
    assert_eq!(changed.len(), p21_after_change);
    drop_db(&url);
}

#[test]
fn bad_input_lands_in_dead_letters_and_good_ticks_are_evaluated() {
    let s = setup("dead", "5");
    let bad = [
        (r#"{"TICK": "IBM", "PRICE": "#, "malformed_json"),
        (
            r#"{"TICK": "IBM", "PRICE": "-4.00", "TS": "2001-01-03"}"#,
            "non_positive_price",
        ),
        (
            r#"{"TICK": "XYZ", "PRICE": "4.00", "TS": "2001-01-03"}"#,
            "unknown_ticker",
        ),
        (
            r#"{"TICK": "IBM", "PRICE": "4.00", "TS": "2001-02-30"}"#,
            "bad_date",
        ),
    ];
    let payloads: Vec<&str> = bad.iter().map(|(p, _)| *p).collect();
    produce_raw(&s.prices, "IBM", &payloads);
    let url = fresh_db("dead");
    let out = run_ok(job(&s, &url).args(["--until-caught-up", "-w", "2"]));
    assert_eq!(summary(&out)["dead_letters"], 4);
    let letters = query(
        &url,
        "SELECT code, CAST(payload AS CHAR), topic FROM dead_letters ORDER BY kafka_offset",
    );
    let mut codes: Vec<&str> = letters.iter().map(|r| r[0].as_str()).collect();
    codes.sort_unstable();
    let mut want: Vec<&str> = bad.iter().map(|(_, c)| *c).collect();
    want.sort_unstable();
    assert_eq!(codes, want);
    assert!(letters.iter().all(|r| r[2] == s.prices));
    assert!(letters.iter().any(|r| r[1] == bad[1].0));
    assert_eq!(evaluations(&url).len(), 5 * 6, "every good day evaluated");
    // A replay meets the same bad records: still one row each.
    run_ok(job(&s, &url).args(["--until-caught-up", "--from", "earliest"]));
    assert_eq!(query(&url, "SELECT COUNT(*) FROM dead_letters")[0][0], "4");
    drop_db(&url);
}

#[test]
fn publish_portfolios_writes_every_change_to_the_topic() {
    let s = setup("publish", "5");
    let topic = fresh_topic("portfolios", 2);
    let url = fresh_db("publish");
    run_ok(job(&s, &url).args(["--until-caught-up", "--publish-portfolios", &topic]));
    let records = read_topic(&topic);
    assert_eq!(records.len(), 5 * 6);
    let rows = evaluations(&url);
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(r.payload.as_deref().expect("a payload"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["retract"], false);
        let key = String::from_utf8_lossy(r.key.as_deref().expect("a key")).to_string();
        assert_eq!(
            key,
            format!(
                "{}/{}",
                v["investor"].as_str().expect("an investor"),
                v["portfolio"].as_str().expect("a portfolio")
            )
        );
        let date = v["date"].as_str().expect("a date");
        let row = rows
            .iter()
            .find(|row| row[1] == v["portfolio"].as_str().expect("a portfolio") && row[2] == date)
            .unwrap_or_else(|| panic!("no row for {v}"));
        // The database keeps 6 decimals; the message the exact value.
        let db_value: f64 = row[3].parse().expect("a stored value");
        let msg_value: f64 = v["value"]
            .as_str()
            .expect("a value")
            .parse()
            .expect("a decimal value");
        assert!((db_value - msg_value).abs() < 1e-6, "{row:?} vs {v}");
    }
    drop_db(&url);
}
