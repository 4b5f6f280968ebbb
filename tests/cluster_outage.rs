//! A cluster through a MySQL outage longer than its peer timeout (15 s down, a 5 s timeout;
//! the same holds for the default 60 s timeout, at the cost of a 90 s outage): every process
//! keeps beating while the sink retries (process 1 has read everything and waits, process 0
//! holds its batches), and the cluster ends with every row. Before, beats were sent only while
//! reading: a process waiting on the sink or on the others went silent, and the cluster stopped
//! after the timeout with "not heard from". Its own test binary: it stops the shared MySQL, so it runs
//! alone (scripts/test runs it with the other disruptive ones, one at a time).
#![allow(clippy::expect_used)]

mod common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn a_cluster_rides_out_a_mysql_outage_longer_than_its_peer_timeout() {
    let (prices, holdings) = market_topics("cluster-outage", (4, 2), "2003-01-01", "1500", "8");
    let url = fresh_db("cluster_outage");
    run_ok(stockflow().args(["db", "init", "--mysql-url", &url]));
    let (dir, hosts) = hostfile();
    let log = |process: &str| dir.join(format!("process-{process}.stderr"));
    let start = |process: &str| {
        // stderr into a file: a pipe nobody reads during the outage's retries could fill.
        let stderr = std::fs::File::create(log(process)).expect("a file for stderr");
        cluster_job(&prices, &holdings, &url, &hosts, process)
            .args([
                "--until-caught-up",
                "-w",
                "2",
                // Small transactions: commits go on until the outage meets them.
                "--commit-rows",
                "500",
                "--peer-timeout-secs",
                "5",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("starting a process of the cluster")
    };
    let mut p0 = start("0");
    let mut p1 = start("1");
    wait_committed(&url, &prices, 1, Duration::from_secs(60), Some(&mut p0));
    let before = committed(&url, &prices);
    assert!(
        before < ends(&prices),
        "the outage must meet the catch-up: it had committed everything already"
    );
    let down = Instant::now();
    stack(&["restart", "mysql", "--down", "15"]);
    let outage = down.elapsed();
    eprintln!("MySQL was down {:.0} s", outage.as_secs_f64());
    assert!(
        outage > Duration::from_secs(10),
        "the outage ({outage:?}) must be longer than the 5 s peer timeout, twice"
    );
    let s0 = wait_exit(&mut p0, Duration::from_secs(600));
    let s1 = wait_exit(&mut p1, Duration::from_secs(60));
    let err = |process: &str| std::fs::read_to_string(log(process)).expect("its stderr");
    let (e0, e1) = (err("0"), err("1"));
    assert!(s0.success(), "process 0 ({s0}): {e0}");
    assert!(s1.success(), "process 1 ({s1}): {e1}");
    assert_eq!(
        committed(&url, &prices),
        ends(&prices),
        "every price committed"
    );
    let reference = fresh_db("cluster_outage_ref");
    run_ok(job(&prices, &holdings, &reference).args(["--until-caught-up"]));
    assert_eq!(tables(&url), tables(&reference));
    assert_journal_matches(&url);
    drop_db(&url);
    drop_db(&reference);
    let _ = std::fs::remove_dir_all(dir);
}
