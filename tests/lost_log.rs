//! A lost log: the broker's data deleted and the topics recreated under a database with
//! offsets. The job refuses, saying what happened and what resolves it; after that command the
//! new days are evaluated and no older row changes. One test function in its own binary: it
//! wipes the shared broker while nothing else runs (cargo runs test binaries one at a time).

mod common;

use common::*;
use stockflow_transport::{Log, TopicSpec};

fn job(prices: &str, holdings: &str, url: &str) -> std::process::Command {
    let mut c = stockflow();
    c.args(["run", "--output", "json", "--until-caught-up"])
        .args(["--prices-topic", prices, "--holdings-topic", holdings])
        .args(["--mysql-url", url]);
    c
}

#[test]
fn a_lost_log_is_refused_and_the_documented_command_resumes_on_the_stored_state() {
    let (prices, holdings) = market_topics("lost", (4, 2), "2002-01-01", "30", "9");
    let url = fresh_db("lost");
    run_ok(&mut job(&prices, &holdings, &url));
    let before = query(
        &url,
        "SELECT portfolio, CAST(as_of AS CHAR), CAST(nav AS CHAR), CAST(nav_change AS CHAR), \
         CAST(nav_change_pct AS CHAR) FROM evaluations ORDER BY portfolio, as_of",
    );
    assert_eq!(before.len(), 30 * 6);
    let stored = query(
        &url,
        &format!("SELECT kafka_partition, next_offset FROM stream_progress WHERE topic = '{prices}' ORDER BY next_offset DESC LIMIT 1"),
    );

    // The broker's data is gone; the topics come back empty; holdings and 10 new days arrive.
    stack(&["reset", "broker", "--yes"]);
    let log = log();
    for (t, n) in [(&prices, 4), (&holdings, 2)] {
        log.ensure_topic(&TopicSpec::kept(t.as_str(), n))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    run_ok(stockflow().args(["holdings", "load", "--topic", &holdings]));
    backfill(&prices, "2002-03-01", "10", "9");

    let refused = run_err(&mut job(&prices, &holdings, &url));
    assert!(
        refused.contains("the log is not the one this job read"),
        "{refused}"
    );
    assert!(
        refused.contains(&format!("{prices}/{}", stored[0][0]))
            && refused.contains(&format!("up to offset {}", stored[0][1])),
        "names the partition and the stored offset: {refused}"
    );
    assert!(refused.contains("ends at offset"), "{refused}");
    assert!(refused.contains("--reset-offsets"), "{refused}");
    assert_eq!(query(&url, "SELECT COUNT(*) FROM evaluations")[0][0], "180");

    let out = run_ok(job(&prices, &holdings, &url).arg("--reset-offsets"));
    assert_eq!(summary_of(&out)["ticks"], 10 * 24);
    let after = query(
        &url,
        "SELECT portfolio, CAST(as_of AS CHAR), CAST(nav AS CHAR), CAST(nav_change AS CHAR), \
         CAST(nav_change_pct AS CHAR) FROM evaluations ORDER BY portfolio, as_of",
    );
    assert_eq!(after.len(), 40 * 6, "the new days are evaluated");
    for row in &before {
        assert!(after.contains(row), "an older row changed: {row:?}");
    }
    // The first new day's change is against the last stored day, not NULL.
    assert!(after
        .iter()
        .filter(|r| r[1] == "2002-03-01")
        .all(|r| r[3] != "NULL"));
    // And the job is at home on the new log.
    let out = run_ok(&mut job(&prices, &holdings, &url));
    assert_eq!(summary_of(&out)["ticks"], 0);
    drop_db(&url);
}
