//! Outages: MySQL, then the broker, restarted under a running job. The job retries with
//! backoff, keeps its place and ends equal to an uninterrupted run. One test function, so the
//! shared services restart while nothing else runs (cargo runs test binaries one at a time).

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn evaluations(url: &str) -> Vec<Vec<String>> {
    query(
        url,
        "SELECT portfolio, CAST(as_of AS CHAR), CAST(nav AS CHAR), CAST(nav_change AS CHAR), \
         CAST(nav_change_pct AS CHAR) FROM evaluations ORDER BY portfolio, as_of",
    )
}

/// Polls (bounded) until the job has stored `target` as the prices topic's next offsets.
fn wait_for_progress(url: &str, topic: &str, target: i64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if committed(url, topic) >= target {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn start_job(prices: &str, holdings: &str, url: &str) -> Child {
    stockflow()
        .args([
            "run",
            "--max-batch",
            "20",
            // Small transactions: the catch-up commits all along, so that commits meet the
            // outage (a catch-up gathers 100,000 rows a transaction by default).
            "--commit-rows",
            "500",
            "--prices-topic",
            prices,
            "--holdings-topic",
            holdings,
        ])
        .args(["--mysql-url", url, "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Stops the job with Ctrl-C and returns its JSON summary.
fn stop_job(child: Child) -> serde_json::Value {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "clean exit after the outage");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn mysql_and_broker_restarts_under_a_running_job() {
    let (prices, holdings) = market_topics("outage", (4, 2), "2003-01-01", "1500", "8");
    let total = 1500 * 24;
    let reference = fresh_db("outage_ref");
    run_ok(
        stockflow()
            .args([
                "run",
                "--until-caught-up",
                "--prices-topic",
                &prices,
                "--holdings-topic",
                &holdings,
            ])
            .args(["--mysql-url", &reference]),
    );
    let expected = evaluations(&reference);
    assert_eq!(expected.len(), 1500 * 6);

    for service in ["mysql", "broker"] {
        let url = fresh_db(&format!("outage_{service}"));
        run_ok(stockflow().args(["db", "init", "--mysql-url", &url]));
        let job = start_job(&prices, &holdings, &url);
        assert!(
            wait_for_progress(&url, &prices, 1, Duration::from_secs(60)),
            "the job started writing"
        );
        stack(&["restart", service]);
        assert!(
            wait_for_progress(&url, &prices, total, Duration::from_secs(180)),
            "the job caught up after the {service} restart"
        );
        let summary = stop_job(job);
        if service == "mysql" {
            let retries = summary["sink"]["retries"].as_u64().unwrap_or(0);
            assert!(
                retries > 0,
                "the sink retried while MySQL was down: {summary}"
            );
        }
        assert_eq!(summary["ticks"], total, "every tick read once");
        assert_eq!(evaluations(&url), expected, "after a {service} restart");
        assert_journal_matches(&url);
        drop_db(&url);
    }
    drop_db(&reference);
}
