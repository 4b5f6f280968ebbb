//! A refilled log: the broker loses its data and the history is published again, further than
//! the job had read. The stored offsets all lie inside the new log, so only what identifies
//! the records tells the logs apart: the job refuses, saying what happened and what resolves
//! it; after that command every day of the new log is evaluated and no older row changes
//! wrongly. One test function in its own binary: it wipes the shared broker while nothing else
//! runs (cargo runs test binaries one at a time).

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

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

const EVALUATIONS: &str = "SELECT portfolio, CAST(as_of AS CHAR), CAST(nav AS CHAR), \
     CAST(nav_change AS CHAR), CAST(nav_change_pct AS CHAR) FROM evaluations \
     ORDER BY portfolio, as_of";

#[test]
fn a_log_refilled_past_the_stored_offsets_is_refused_and_reset_reads_all_of_it() {
    let (prices, holdings) = market_topics("refill", (4, 2), "2001-01-01", "200", "13");
    let url = fresh_db("refill");
    let out = run_ok(&mut job(&prices, &holdings, &url));
    assert_eq!(summary_of(&out)["ticks"], 200 * 24);
    let before = query(&url, EVALUATIONS);
    assert_eq!(before.len(), 200 * 6);

    // The broker's data is gone; the topics come back; the same history is published again,
    // and 60 more days: every stored offset now lies inside the new log.
    stack(&["reset", "broker", "--yes"]);
    let log = log();
    for (t, n) in [(&prices, 4), (&holdings, 2)] {
        log.ensure_topic(&TopicSpec::kept(t.as_str(), n))
            .expect("the topic is created again");
    }
    run_ok(stockflow().args(["holdings", "load", "--topic", &holdings]));
    backfill(&prices, "2001-01-01", "260", "13");
    let stored = query(
        &url,
        &format!(
            "SELECT kafka_partition, next_offset FROM stream_progress WHERE topic = '{prices}'"
        ),
    );
    assert_eq!(
        stored.len(),
        4,
        "the job stored every price partition's offset"
    );
    for row in &stored {
        let (p, o): (i32, i64) = (
            row[0].parse().expect("a partition"),
            row[1].parse().expect("an offset"),
        );
        let end = log
            .watermarks(&prices)
            .expect("watermarks")
            .iter()
            .find(|w| w.partition == p)
            .map(|w| w.high)
            .expect("the partition exists");
        assert!(
            o <= end,
            "{prices}/{p}: stored {o} is inside the new log (end {end})"
        );
    }

    let refused = run_err(&mut job(&prices, &holdings, &url));
    assert!(
        refused.contains("the log is not the one this job read"),
        "{refused}"
    );
    assert!(
        refused.contains("holds a record with log time"),
        "{refused}"
    );
    assert!(
        refused.contains("stockflow run --reset-offsets"),
        "{refused}"
    );
    assert_eq!(query(&url, EVALUATIONS), before, "nothing written");

    let out = run_ok(job(&prices, &holdings, &url).arg("--reset-offsets"));
    let s = summary_of(&out);
    assert_eq!(s["ticks"], 260 * 24, "the whole new log is read: {s}");
    let after = query(&url, EVALUATIONS);
    assert_eq!(
        after.len(),
        260 * 6,
        "every day of the new log is evaluated"
    );
    for row in &before {
        assert!(after.contains(row), "an older row changed: {row:?}");
    }
    // Row for row what one run over the new log writes.
    let reference = fresh_db("refill_ref");
    run_ok(&mut job(&prices, &holdings, &reference));
    assert_eq!(tables(&url), tables(&reference));
    // And the job is at home on the new log.
    let out = run_ok(&mut job(&prices, &holdings, &url));
    assert_eq!(summary_of(&out)["ticks"], 0);
    drop_db(&url);
    drop_db(&reference);
}
