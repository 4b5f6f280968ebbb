//! The job's reading loop against the real broker and MariaDB, in the operations that lost
//! records or froze it before (issue 16): late holdings changes with restarts, sixteen workers
//! on eight partitions live, SIGKILLs while late changes arrive. Each ends with exactly the
//! tables of one uninterrupted run over the same topics, and reads what it should.

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The trading days of a year range, as `stockflow calendar` prints them.
fn trading_days(from: &str, to: &str) -> Vec<String> {
    let out = run_ok(stockflow().args(["calendar", "--from", from, "--to", to]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn set(holdings: &str, portfolio: &str, ticker: &str, qty: &str, from: &str) {
    run_ok(stockflow().args([
        "holdings", "set", portfolio, ticker, qty, "--from", from, "--topic", holdings,
    ]));
}

fn holding_records(url: &str) -> Vec<Vec<String>> {
    query(
        url,
        "SELECT portfolio, ticker, CAST(from_day AS CHAR), CAST(quantity AS CHAR) \
         FROM holding_records ORDER BY portfolio, ticker, from_day",
    )
}

fn count(url: &str, table: &str) -> i64 {
    poll_number(url, &format!("SELECT COUNT(*) FROM {table}"))
}

/// Waits until the job has committed `rows` evaluations (the progress signal), at most
/// `limit`.
fn wait_rows(url: &str, rows: i64, limit: Duration, child: &mut Child) {
    let deadline = Instant::now() + limit;
    loop {
        let n = count(url, "evaluations");
        if n >= rows {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the job exited ({status}) with {n} of {rows} rows committed");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{n} of {rows} rows committed after {limit:?}: the job froze");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn late_holdings_changes_with_restarts_end_with_the_uninterrupted_tables() {
    let (prices, holdings) = market_topics("late", (4, 4), "2000-01-01", "150", "21");
    let days = trading_days("2000-01-01", "2000-12-31");
    let url = fresh_db("late");
    let out = run_ok(job(&prices, &holdings, &url).arg("--until-caught-up"));
    assert_eq!(summary_of(&out)["ticks"], 150 * 24);

    // One stock changed last week, then the same stock four months earlier (the same key: the
    // same partition, the later record dated before the restored window), two more months
    // back.
    let first = [
        ("P12", "EBAY", "700", &days[144]),
        ("P12", "EBAY", "300", &days[60]),
        ("P21", "VZ", "5000", &days[100]),
        ("P31", "IBM", "0", &days[30]),
    ];
    for (p, t, q, d) in first {
        set(&holdings, p, t, q, d);
    }
    let out = run_ok(job(&prices, &holdings, &url).arg("--until-caught-up"));
    let s = summary_of(&out);
    assert_eq!(s["holdings"], 4, "read each change once: {s}");
    assert_eq!(s["ticks"], 0, "{s}");
    assert!(
        s["passes"].as_u64().expect("passes is a number") >= 2,
        "a change before the window re-ran wider: {s}"
    );
    let records = holding_records(&url);
    for (p, t, q, d) in first {
        let row = vec![p.to_string(), t.to_string(), d.to_string(), q.to_string()];
        assert!(records.contains(&row), "{row:?} not stored: {records:?}");
    }

    let second = [
        ("P12", "EBAY", "900", &days[20]),
        ("P22", "ORCL", "100", &days[140]),
        ("P11", "AAPL", "0", &days[75]),
    ];
    for (p, t, q, d) in second {
        set(&holdings, p, t, q, d);
    }
    let out = run_ok(job(&prices, &holdings, &url).arg("--until-caught-up"));
    assert_eq!(summary_of(&out)["holdings"], 3);
    let records = holding_records(&url);
    for (p, t, q, d) in second {
        let row = vec![p.to_string(), t.to_string(), d.to_string(), q.to_string()];
        assert!(records.contains(&row), "{row:?} not stored: {records:?}");
    }
    // And nothing is left to read.
    let out = run_ok(job(&prices, &holdings, &url).arg("--until-caught-up"));
    assert_eq!(summary_of(&out)["holdings"], 0);

    let reference = fresh_db("late_ref");
    run_ok(job(&prices, &holdings, &reference).arg("--until-caught-up"));
    let (got, want) = (tables(&url), tables(&reference));
    assert_eq!(want[0].1.len(), 150 * 6, "every portfolio-day valued");
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        let wrong = g.iter().filter(|r| !w.contains(r)).count();
        assert_eq!(g, w, "{name}: {wrong} of {} rows differ", w.len());
    }
    drop_db(&url);
    drop_db(&reference);
}

#[test]
fn sixteen_workers_on_eight_partitions_commit_every_day_live() {
    let (prices, holdings) = market_topics("w16", (4, 4), "2003-01-01", "60", "5");
    let url = fresh_db("w16");
    let mut child = job(&prices, &holdings, &url)
        .args(["-w", "16"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the job starts");
    wait_rows(&url, 60 * 6, Duration::from_secs(60), &mut child);
    // Live: more days arrive, and are committed while the job runs.
    backfill(&prices, "2003-04-01", "5", "5");
    wait_rows(&url, 65 * 6, Duration::from_secs(60), &mut child);
    set(&holdings, "P11", "IBM", "0", "2003-03-03");
    // A change restates P11 from 2003-03-03 on; the job commits it live too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&url, "holding_records") < 37 {
        assert!(
            Instant::now() < deadline,
            "the holdings change was not committed live"
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the job exited"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    run_ok(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert!(status.success(), "Ctrl-C ends the job cleanly: {status}");

    let reference = fresh_db("w16_ref");
    run_ok(job(&prices, &holdings, &reference).args(["--until-caught-up", "-w", "1"]));
    assert_eq!(tables(&url), tables(&reference));
    drop_db(&url);
    drop_db(&reference);
}

#[test]
fn sigkills_while_late_holdings_changes_arrive_lose_and_double_nothing() {
    let seed: u64 = std::env::var("STOCKFLOW_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("seed {seed} (STOCKFLOW_TEST_SEED={seed} replays the kill times)");
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    let (prices, holdings) = market_topics("kills", (4, 2), "2001-01-01", "180", "8");
    let days = trading_days("2001-01-01", "2001-12-31");
    let url = fresh_db("kills");
    // Per round, changes published while the job runs: a late pair on one key (one
    // partition), changes dated months back on several partitions, one inside the window.
    let changes: [&[(&str, &str, &str, usize)]; 6] = [
        &[("P12", "EBAY", "700", 170), ("P12", "EBAY", "300", 60)],
        &[
            ("P21", "VZ", "5000", 90),
            ("P32", "VZ", "0", 20),
            ("P11", "AMZN", "100", 120),
        ],
        &[("P22", "INTC", "4000", 5), ("P31", "IBM", "0", 100)],
        &[("P12", "EBAY", "900", 30)],
        &[("P11", "IBM", "2600", 178), ("P11", "IBM", "50", 40)],
        &[("P21", "ZM", "0", 75), ("P22", "MSI", "10", 150)],
    ];
    let mut kills = 0;
    for round in 0..8usize {
        // Changes published while the job was down, read together at its start.
        for (p, t, q, d) in changes.get(round).copied().unwrap_or_default() {
            set(&holdings, p, t, q, &days[*d]);
        }
        let mut child = job(&prices, &holdings, &url)
            .args(["-w", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the job starts");
        if round == 3 {
            backfill(&prices, "2001-10-01", "20", "8");
        }
        // The progress signal: the job has committed offsets up to the holdings topic's end
        // (it read the late change), then it dies at a random moment.
        wait_committed(
            &url,
            &holdings,
            ends(&holdings),
            Duration::from_secs(60),
            Some(&mut child),
        );
        std::thread::sleep(Duration::from_millis(next(800)));
        let _ = child.kill(); // SIGKILL: no clean shutdown, possibly mid-transaction
        let _ = child.wait();
        kills += 1;
    }
    let out = run_ok(job(&prices, &holdings, &url).arg("--until-caught-up"));
    println!("after {kills} kills: {}", summary_of(&out));
    let reference = fresh_db("kills_ref");
    run_ok(job(&prices, &holdings, &reference).arg("--until-caught-up"));
    let (got, want) = (tables(&url), tables(&reference));
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        let wrong = g.iter().filter(|r| !w.contains(r)).count();
        assert_eq!(
            g,
            w,
            "seed {seed}: {name}: {wrong} of {} rows differ",
            w.len()
        );
    }
    let stored = query(
        &url,
        "SELECT topic, kafka_partition, next_offset FROM stream_progress ORDER BY topic, kafka_partition",
    );
    let stored_ref = query(
        &reference,
        "SELECT topic, kafka_partition, next_offset FROM stream_progress ORDER BY topic, kafka_partition",
    );
    assert_eq!(stored, stored_ref, "seed {seed}: the same offsets");
    drop_db(&url);
    drop_db(&reference);
}

/// A process killed when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_live_cluster_with_more_workers_than_partitions_and_a_far_future_tick_commits_every_day() {
    let (prices, holdings) = market_topics("cluster_live", (2, 1), "2009-01-01", "30", "6");
    let url = fresh_db("cluster_live");
    let (dir, hosts) = hostfile();
    // Three workers a process, six in all, for three partitions: three read nothing.
    let process = |i: &str| {
        job(&prices, &holdings, &url)
            .args([
                "-w",
                "3",
                "--processes",
                "2",
                "--process",
                i,
                "--hostfile",
                &hosts,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("a process starts")
    };
    let mut first = process("0");
    let second = process("1");
    // Whatever happens, the other process does not outlive the test.
    let mut second = KillOnDrop(second);
    wait_rows(&url, 30 * 6, Duration::from_secs(90), &mut first);
    // A close dated in year 9999 (the contract accepts it): it must not freeze anyone.
    produce_raw(
        &prices,
        "IBM",
        &[r#"{"TICK":"IBM","PRICE":"100.00","TS":"9999-12-31"}"#],
    );
    backfill(&prices, "2009-02-16", "5", "6");
    wait_rows(&url, 35 * 6, Duration::from_secs(90), &mut first);
    run_ok(Command::new("kill").args(["-INT", &first.id().to_string()]));
    let s0 = wait_exit(&mut first, Duration::from_secs(60));
    let s1 = wait_exit(&mut second.0, Duration::from_secs(60));
    assert!(
        s0.success() && s1.success(),
        "both stop cleanly: {s0}, {s1}"
    );
    // The far-future close is stored, and its day is an incomplete one for IBM's holders.
    let far = query(
        &url,
        "SELECT COUNT(*) FROM prices WHERE as_of = '9999-12-31'",
    );
    assert_eq!(far[0][0], "1");
    let reference = fresh_db("cluster_live_ref");
    run_ok(job(&prices, &holdings, &reference).args(["--until-caught-up", "-w", "1"]));
    assert_eq!(tables(&url), tables(&reference));
    drop_db(&url);
    drop_db(&reference);
    let _ = std::fs::remove_dir_all(dir);
}

/// Days behind `--memory-days` leave the job's memory; a record about one (here a correction
/// of day 10, at the end of a 400-day backlog) ends the pass, and the job runs again with the
/// state from before that day restored from MySQL. The records are read and counted once,
/// and the tables are those of a job that kept every day. With `--sink null` (nothing to
/// restore from) the job reads the log again from its start, keeping every day.
#[test]
fn a_record_behind_the_days_kept_in_memory_re_runs_the_job_and_ends_with_the_uninterrupted_tables()
{
    // Longer than the merge's lookahead (a year) and the 40 days kept, so that day 10's
    // correction, last in its partition, comes after far later days were handed over.
    let (prices, holdings) = market_topics("memory", (2, 2), "2003-01-01", "400", "5");
    let days = trading_days("2003-01-01", "2004-12-31");
    let correction = format!(
        r#"{{"TICK":"IBM","PRICE":"99.99","TS":"{}","EXCHANGE":"SE1"}}"#,
        days[10]
    );
    produce_raw(&prices, "IBM", &[correction]);
    let url = fresh_db("memory");
    // Bounded: a pass that refused the record again each time would loop, not fail.
    let out = run_ok_within(
        job(&prices, &holdings, &url).args(["--until-caught-up", "--memory-days", "40"]),
        Duration::from_secs(120),
    );
    let s = summary_of(&out);
    assert_eq!(
        s["passes"], 3,
        "the correction, far behind the days kept, re-ran the job (keeping every day until \
         it read it), then again with 40 days: {s}"
    );
    assert_eq!(s["ticks"], 400 * 24 + 1, "every record counted once: {s}");
    let reference = fresh_db("memory_ref");
    let out = run_ok(job(&prices, &holdings, &reference).args([
        "--until-caught-up",
        "--memory-days",
        "0",
    ]));
    let r = summary_of(&out);
    assert_eq!(r["passes"], 1, "keeping every day, one pass: {r}");
    assert_eq!(r["ticks"], 400 * 24 + 1, "{r}");
    assert_eq!(tables(&url), tables(&reference));
    let ibm = query(
        &url,
        &format!(
            "SELECT CAST(price AS CHAR) FROM prices WHERE ticker = 'IBM' AND as_of = '{}'",
            days[10]
        ),
    );
    assert_eq!(ibm[0][0], "99.990000");
    // Without a stateful sink.
    let out = run_ok_within(
        stockflow()
            .args([
                "run",
                "--output",
                "json",
                "--sink",
                "null",
                "--until-caught-up",
            ])
            .args(["--prices-topic", &prices, "--holdings-topic", &holdings])
            .args(["--memory-days", "40"]),
        Duration::from_secs(120),
    );
    let n = summary_of(&out);
    assert_eq!(n["passes"], 2, "{n}");
    assert_eq!(n["ticks"], 400 * 24 + 1, "every record counted once: {n}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot restore it"),
        "the job says why it reads the log again"
    );
    drop_db(&url);
    drop_db(&reference);
}
