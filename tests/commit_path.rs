//! The sink's commit path against the real MariaDB and the real broker: the same commit
//! cadence from any start, bulk loads that survive a SIGKILL and a lost COMMIT answer, a
//! transaction larger than the server's packet limit, and values at the columns' bounds
//! written exactly (docs/sink.md).

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

mod common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A synthetic market whose days are 5,000 evaluation rows: bulk loads long enough to be
/// caught in the middle.
const MARKET: &str = "synthetic:200:5000:5:20:1";

/// Fresh topics with `MARKET`'s holdings and `days` days of closes.
fn synthetic_topics(name: &str, days: &str) -> (String, String) {
    let prices = fresh_topic(&format!("{name}-prices"), 4);
    let holdings = fresh_topic(&format!("{name}-holdings"), 2);
    run_ok(stockflow().args(["holdings", "load", "--market", MARKET, "--topic", &holdings]));
    run_ok(stockflow().args([
        "exchange",
        "all",
        "--backfill",
        "--from",
        "2004-01-05",
        "--days",
        days,
        "--seed",
        "11",
        "--market",
        MARKET,
        "--topic",
        &prices,
    ]));
    (prices, holdings)
}

fn synthetic_job(prices: &str, holdings: &str, url: &str) -> std::process::Command {
    let mut c = job(prices, holdings, url);
    c.args(["--market", MARKET]);
    c
}

fn transactions(out: &std::process::Output) -> i64 {
    summary_of(out)["sink"]["transactions"]
        .as_i64()
        .expect("the summary counts transactions")
}

#[test]
fn a_restart_with_a_backlog_commits_as_often_as_a_first_run() {
    // The spec's holdings, then ten years of closes published after a first run stored them:
    // the restart that follows has all of them to catch up on, its holdings already read (a
    // run that stopped or crashed after its first commits). It used to commit every
    // timestamp alone (1,258 transactions where a first run made 44) and catch up six times
    // slower.
    let prices = fresh_topic("cadence-prices", 4);
    let holdings = fresh_topic("cadence-holdings", 2);
    run_ok(stockflow().args(["holdings", "load", "--topic", &holdings]));
    let restarted = fresh_db("cadence_restart");
    let first = run_ok(job(&prices, &holdings, &restarted).args(["--until-caught-up"]));
    assert_eq!(
        summary_of(&first)["holdings"],
        36,
        "the first run read the holdings"
    );
    assert_eq!(
        query(&restarted, "SELECT COUNT(*) FROM holding_records"),
        [["36"]]
    );
    backfill(&prices, "2000-01-03", "2600", "7");
    let end = ends(&prices);

    let fresh = fresh_db("cadence_fresh");
    let args = ["--until-caught-up", "--commit-rows", "5000"];
    let from_empty = run_ok(job(&prices, &holdings, &fresh).args(args));
    let restart = run_ok(job(&prices, &holdings, &restarted).args(args));
    let (a, b) = (transactions(&from_empty), transactions(&restart));
    eprintln!(
        "transactions: {a} from an empty database, {b} for the restart; seconds {} and {}",
        summary_of(&from_empty)["seconds"],
        summary_of(&restart)["seconds"]
    );
    // What each read: everything, and the closes only (the holdings were read before).
    assert_eq!(summary_of(&from_empty)["ticks"], end);
    assert_eq!(summary_of(&restart)["ticks"], end);
    assert_eq!(summary_of(&restart)["holdings"], 0);
    // 2,600 days: 62,400 closes and 15,600 evaluations in transactions of 5,000 rows.
    assert!(a >= 10, "a catch-up commits in several transactions: {a}");
    assert!(
        (a - b).abs() * 10 <= a,
        "the restart's commits within 10 % of the first run's: {b} against {a}"
    );
    assert_eq!(tables(&restarted), tables(&fresh));
    assert_journal_matches(&restarted);
    drop_db(&fresh);
    drop_db(&restarted);
}

/// The job's connection while it runs a bulk load of evaluations, if it is in one now.
fn loading_evaluations(url: &str) -> bool {
    poll_number(
        url,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() \
         AND INFO LIKE 'LOAD DATA LOCAL INFILE ''stockflow-stream/evaluations''%'",
    ) > 0
}

#[test]
fn a_sigkill_inside_a_bulk_load_then_a_restart_equals_an_uninterrupted_run() {
    let (prices, holdings) = synthetic_topics("bulk-kill", "60");
    let reference = fresh_db("bulk_kill_ref");
    run_ok(synthetic_job(&prices, &holdings, &reference).args(["--until-caught-up"]));
    let want = tables(&reference);
    let end = ends(&prices);

    // 300,000 evaluation rows, loaded 20,000 rows a transaction: SIGKILL while the server
    // reads one of them from the job's stream.
    let url = fresh_db("bulk_kill");
    let mut killed_inside = false;
    for _attempt in 0..10 {
        let mut child = synthetic_job(&prices, &holdings, &url)
            .args(["--until-caught-up", "--commit-rows", "20000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the job");
        // After a first commit with evaluations, inside the next load.
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline
            && (poll_number(&url, "SELECT COUNT(*) FROM evaluations") == 0
                || !loading_evaluations(&url))
        {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        if committed(&url, &prices) < end {
            killed_inside = true;
            break;
        }
    }
    assert!(killed_inside, "a SIGKILL landed inside a bulk load");
    // Nothing of the interrupted transaction is visible: the journal's commits add up to
    // the rows the table holds, and the stored offsets are a commit's.
    assert_journal_matches(&url);
    let stored = committed(&url, &prices);
    let out = run_ok(synthetic_job(&prices, &holdings, &url).args(["--until-caught-up"]));
    // The restart read from the stored offsets (a few records past them were read again:
    // the merge hands a partition's records over out of offset order), not from the start.
    let ticks = summary_of(&out)["ticks"].as_i64().expect("ticks counted");
    assert!(
        ticks >= end - stored && ticks < end,
        "the restart read {ticks} records; {stored} of {end} were committed"
    );
    assert_eq!(tables(&url), want, "after the restart");
    assert_journal_matches(&url);
    drop_db(&url);
    drop_db(&reference);
}

#[test]
fn a_lost_commit_answer_on_the_bulk_path_is_written_once() {
    let (prices, holdings) = synthetic_topics("bulk-lost", "30");
    let reference = fresh_db("bulk_lost_ref");
    run_ok(synthetic_job(&prices, &holdings, &reference).args(["--until-caught-up"]));
    let want = tables(&reference);

    // The job talks to MySQL through a proxy that loses the answer of the second COMMIT of a
    // transaction with a bulk load: the server committed it, the job hears nothing.
    let proxy = proxy::CommitDropper::start("127.0.0.1:3306", 2);
    let url = fresh_db("bulk_lost");
    // prefer_socket=false: the client would otherwise ask the server for its Unix socket and
    // go around the proxy.
    let through = format!(
        "{}?prefer_socket=false",
        url.replace("127.0.0.1:3306", &format!("127.0.0.1:{}", proxy.port))
    );
    assert_ne!(through, url, "the URL goes through the proxy");
    let out = run_ok(
        synthetic_job(&prices, &holdings, &through)
            .args(["--until-caught-up", "--commit-rows", "20000"])
            .env("STOCKFLOW_LOG", "info"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        proxy.dropped(),
        1,
        "one answer was lost ({} bulk commits seen)",
        proxy.seen()
    );
    assert!(
        proxy.seen() >= 3,
        "commits went on after it: {}",
        proxy.seen()
    );
    assert!(
        err.contains("the last commit had landed before the connection was lost"),
        "the job found its commit had landed: {err}"
    );
    assert_eq!(summary_of(&out)["ticks"], ends(&prices));
    assert_eq!(tables(&url), want);
    // Journalled once: the batch written again (its own commit number) is not journalled
    // again; every other commit number has its row.
    assert_journal_matches(&url);
    let span = poll_number(
        &url,
        "SELECT MAX(commit_seq) - MIN(commit_seq) + 1 FROM job_commits",
    );
    let journalled = poll_number(&url, "SELECT COUNT(*) FROM job_commits");
    assert_eq!(
        journalled,
        span - 1,
        "one commit number without a journal row: the replay"
    );
    drop_db(&url);
    drop_db(&reference);
}

#[test]
fn a_transaction_larger_than_max_allowed_packet_commits() {
    let (prices, holdings) = synthetic_topics("bulk-big", "100");
    let url = fresh_db("bulk_big");
    // One transaction for the whole catch-up: 500,000 evaluation rows.
    let out = run_ok(synthetic_job(&prices, &holdings, &url).args([
        "--until-caught-up",
        "--commit-rows",
        "2000000",
    ]));
    assert_eq!(summary_of(&out)["ticks"], ends(&prices));
    let rows = poll_number(&url, "SELECT COUNT(*) FROM evaluations");
    assert_eq!(rows, 5000 * 100);
    let biggest = poll_number(&url, "SELECT MAX(inserted) FROM job_commits");
    assert!(
        biggest >= rows - 5000,
        "nearly every row in one commit: {biggest} of {rows}"
    );
    // The bytes its evaluations took on the wire, against the server's packet limit.
    let bytes = poll_number(
        &url,
        "SELECT SUM(LENGTH(investor) + LENGTH(portfolio) + 10 + LENGTH(CAST(nav AS CHAR)) \
         + COALESCE(LENGTH(CAST(nav_change AS CHAR)), 2) \
         + COALESCE(LENGTH(CAST(nav_change_pct AS CHAR)), 2) + 6) FROM evaluations",
    );
    let limit = poll_number(&url, "SELECT @@max_allowed_packet");
    assert!(
        bytes > limit,
        "the load ({bytes} bytes) is larger than max_allowed_packet ({limit})"
    );
    drop_db(&url);
}

mod bounds {
    use super::common::*;
    use chrono::NaiveDate;
    use std::sync::Arc;
    use std::time::Duration;
    use stockflow_core::{Batch, Evaluation, HoldingInput, Money, PriceInput, Sink};
    use stockflow_market::Universe;
    use stockflow_sinks::mysql::{init, MySqlConfig, MySqlSink, Purpose};

    fn money(s: &str) -> Money {
        Money::parse(s).expect("an amount")
    }

    #[test]
    fn values_at_the_column_bounds_are_written_exactly_and_one_beyond_is_refused_alone() {
        let url = fresh_db("bounds");
        let with_password =
            url.replacen("stockflow@", &format!("stockflow:{}@", mysql_password()), 1);
        let cfg = MySqlConfig::from_url(&with_password).expect("a MySQL URL");
        let u = Arc::new(Universe::spec());
        init(&cfg, &u, false, false).expect("db init");
        let mut sink = MySqlSink::open(
            cfg,
            "stockflow".into(),
            Arc::clone(&u),
            false,
            Duration::from_secs(30),
            Purpose::Run,
        )
        .expect("the sink opens");
        let p = |id: &str| u.portfolio_id(id).expect("a spec portfolio");
        let s = |t: &str| u.stock_id(t).expect("a spec stock");
        let last = NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date");
        let first = NaiveDate::from_ymd_opt(1000, 1, 1).expect("a date");
        // DECIMAL(28, 6) and DECIMAL(38, 6) at their largest, both signs; a first day with
        // NULL changes; a close at the smallest and the largest DECIMAL(15, 6).
        let top = money("9999999999999999999999.999999");
        let top_pct = money("99999999999999999999999999999999.999999");
        let rows = [
            Evaluation {
                portfolio: p("P11"),
                date: first,
                value: money("0.000001"),
                change: None,
                change_pct: None,
            },
            Evaluation {
                portfolio: p("P11"),
                date: last,
                value: top,
                change: Some(top),
                change_pct: Some(top_pct),
            },
            Evaluation {
                portfolio: p("P12"),
                date: last,
                value: money("0.000001"),
                change: Some(Money::from_units(-top.units())),
                change_pct: Some(Money::from_units(-top_pct.units())),
            },
        ];
        // One past the value column's bound: the table refuses it (LOAD DATA LOCAL says so
        // only in a warning); it is recorded, and everything else commits.
        let beyond = Evaluation {
            portfolio: p("P21"),
            date: last,
            value: money("10000000000000000000000"),
            change: None,
            change_pct: None,
        };
        let mut evaluations: Vec<(Evaluation, isize)> =
            rows.iter().cloned().map(|e| (e, 1)).collect();
        evaluations.push((beyond, 1));
        evaluations.sort();
        let batch = Batch {
            time: 2,
            evaluations: evaluations.into(),
            prices: vec![
                (
                    PriceInput {
                        stock: s("IBM"),
                        date: last,
                        price: money("999999999.999999"),
                        version: (i64::MAX, i32::MAX, i64::MAX),
                    },
                    1,
                ),
                (
                    PriceInput {
                        stock: s("IBM"),
                        date: first,
                        price: money("0.000001"),
                        version: (0, 0, 0),
                    },
                    1,
                ),
            ],
            holdings: vec![(
                HoldingInput {
                    portfolio: p("P11"),
                    stock: s("IBM"),
                    from: last,
                    quantity: i64::MAX,
                    version: (1, 2, 3),
                },
                1,
            )],
            ..Batch::default()
        };
        sink.apply(&batch).expect("the batch commits");
        sink.finish().expect("the sink finishes");
        assert_eq!(
            query(
                &url,
                "SELECT portfolio, CAST(as_of AS CHAR), CAST(nav AS CHAR), \
                 CAST(nav_change AS CHAR), CAST(nav_change_pct AS CHAR) FROM evaluations \
                 ORDER BY portfolio, as_of"
            ),
            [
                ["P11", "1000-01-01", "0.000001", "NULL", "NULL"],
                [
                    "P11",
                    "9999-12-31",
                    "9999999999999999999999.999999",
                    "9999999999999999999999.999999",
                    "99999999999999999999999999999999.999999"
                ],
                [
                    "P12",
                    "9999-12-31",
                    "0.000001",
                    "-9999999999999999999999.999999",
                    "-99999999999999999999999999999999.999999"
                ],
            ]
        );
        let refused = query(
            &url,
            "SELECT portfolio, CAST(as_of AS CHAR), kind FROM evaluation_issues",
        );
        assert_eq!(refused, [["P21", "9999-12-31", "refused"]]);
        assert_eq!(
            query(
                &url,
                "SELECT ticker, CAST(as_of AS CHAR), CAST(price AS CHAR), version_ts, \
                 version_partition, version_offset FROM prices ORDER BY as_of"
            ),
            [
                ["IBM", "1000-01-01", "0.000001", "0", "0", "0"],
                [
                    "IBM",
                    "9999-12-31",
                    "999999999.999999",
                    &i64::MAX.to_string(),
                    &i32::MAX.to_string(),
                    &i64::MAX.to_string()
                ],
            ]
        );
        assert_eq!(
            query(
                &url,
                "SELECT portfolio, ticker, CAST(from_day AS CHAR), quantity FROM holding_records"
            ),
            [["P11", "IBM", "9999-12-31", &i64::MAX.to_string()]]
        );
        drop_db(&url);
    }

    #[test]
    fn a_bulk_load_the_server_takes_only_with_a_warning_is_an_error_about_the_data() {
        use mysql::prelude::Queryable;
        use stockflow_sinks::mysql::bulk;
        let url = fresh_db("bulk_warning");
        let with_password =
            url.replacen("stockflow@", &format!("stockflow:{}@", mysql_password()), 1);
        let cfg = MySqlConfig::from_url(&with_password).expect("a MySQL URL");
        init(&cfg, &Universe::spec(), false, false).expect("db init");
        let mut conn = cfg.connect().expect("a connection");
        // Seven decimals: MariaDB rounds them with a note, MySQL's LOAD DATA LOCAL turns even
        // an out-of-range value into a warning. Either is a row not stored as sent.
        let mut rows = bulk::Rows::default();
        rows.text("Inv1")
            .text("P11")
            .text("2000-01-03")
            .text("1.1234567")
            .null()
            .null();
        rows.end();
        let stream = rows.finish();
        let mut tx = conn
            .start_transaction(mysql::TxOpts::default())
            .expect("a transaction");
        let err = bulk::load(&mut tx, &bulk::EVALUATIONS, &stream).expect_err("refused");
        assert!(err.is_data_error(), "{err}");
        assert!(err.to_string().contains("1265"), "{err}");
        tx.rollback().expect("rolled back");
        let n: Option<i64> = conn
            .query_first("SELECT COUNT(*) FROM evaluations")
            .expect("counted");
        assert_eq!(n, Some(0));
        drop_db(&url);
    }
}
