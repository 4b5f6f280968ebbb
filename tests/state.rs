//! Durable job state against the real broker and MariaDB: replays into a full database, one
//! writer per job, a cluster that stops together.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn replays_into_a_full_database_leave_it_equal_to_an_uninterrupted_run() {
    let (prices, holdings) = market_topics("replay", (4, 2), "2004-01-01", "120", "11");
    // A time between this backfill and the next, by the records' clock.
    std::thread::sleep(Duration::from_millis(50));
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(Duration::from_millis(50));
    backfill(&prices, "2004-07-01", "80", "11");
    let url = fresh_db("replay");
    let out = run_ok(job(&prices, &holdings, &url).args(["--until-caught-up"]));
    assert_eq!(summary_of(&out)["ticks"], 200 * 24);
    let want = tables(&url);
    assert_eq!(want[0].1.len(), 200 * 6);
    let ends = log_ends(&prices);
    let middle: Vec<String> = ends
        .iter()
        .map(|(p, end)| format!("{p}:{}", end / 2))
        .collect();
    let from_middle: i64 = ends.iter().map(|(_, end)| end - end / 2).sum();
    let from_400: i64 = ends.iter().map(|(_, end)| end - 400).sum();
    // Each replay must read exactly what it names (a replay that reads nothing leaves the
    // tables equal too).
    for (from, ticks) in [
        (format!("offsets={}", middle.join(",")), from_middle),
        ("offsets=0:400,1:400,2:400,3:400".to_string(), from_400),
        (format!("time={between}"), 80 * 24),
        ("earliest".to_string(), 200 * 24),
    ] {
        let out =
            run_ok(job(&prices, &holdings, &url).args(["--until-caught-up", "--from", &from]));
        assert_eq!(summary_of(&out)["resumed"], true);
        assert_eq!(
            summary_of(&out)["ticks"],
            ticks,
            "ticks read with --from {from}"
        );
        assert_eq!(tables(&url), want, "after --from {from}");
        // A plain resume afterwards: still equal, and nothing left to read.
        let out = run_ok(job(&prices, &holdings, &url).args(["--until-caught-up"]));
        assert_eq!(summary_of(&out)["ticks"], 0, "after --from {from}");
        assert_eq!(tables(&url), want, "resume after --from {from}");
    }
    // --from latest says what it skips.
    backfill(&prices, "2004-11-01", "2", "11");
    let out = job(&prices, &holdings, &url)
        .args(["--until-caught-up", "--from", "latest"])
        .env("STOCKFLOW_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--from latest skips 48 record(s)"),
        "{stderr}"
    );
    drop_db(&url);
}

fn log_ends(topic: &str) -> Vec<(i32, i64)> {
    use stockflow_transport::Log;
    log()
        .watermarks(topic)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|w| (w.partition, w.high))
        .collect()
}

#[test]
fn one_writer_per_job_and_takeover_fences_the_old_run() {
    let (prices, holdings) = market_topics("lease", (2, 1), "2006-01-02", "30", "4");
    // The uninterrupted result of 40 days.
    let reference = fresh_db("lease_ref");
    let url = fresh_db("lease");
    let mut first = job(&prices, &holdings, &url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    wait_committed(&url, &prices, 30 * 24, Duration::from_secs(120), None);
    // A second run of the same job refuses, naming the first.
    let refused = run_err(job(&prices, &holdings, &url).args(["--until-caught-up"]));
    assert!(refused.contains("is already running"), "{refused}");
    assert!(
        refused.contains(&format!("pid {}", first.id())),
        "{refused}"
    );
    assert!(refused.contains("--takeover"), "{refused}");
    // With --takeover the second runs and the first stops, saying why.
    backfill(&prices, "2006-02-14", "10", "4");
    run_ok(job(&prices, &holdings, &url).args(["--until-caught-up", "--takeover"]));
    let status = wait_exit(&mut first, Duration::from_secs(30));
    assert!(!status.success(), "the fenced run stops with an error");
    let mut stderr = String::new();
    if let Some(mut e) = first.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(stderr.contains("was taken over"), "{stderr}");
    run_ok(job(&prices, &holdings, &reference).args(["--until-caught-up"]));
    assert_eq!(tables(&url), tables(&reference));
    assert_eq!(
        query(&url, "SELECT COUNT(*) FROM evaluations")[0][0],
        (40 * 6).to_string()
    );
    // A clean stop gives the lease back: the next run needs no --takeover.
    run_ok(job(&prices, &holdings, &url).args(["--until-caught-up"]));
    drop_db(&url);
    drop_db(&reference);
}

#[test]
fn a_cluster_stops_together_on_ctrl_c_or_an_error_in_one_process() {
    let (prices, holdings) = market_topics("stop", (4, 2), "2009-01-05", "20", "6");
    let url = fresh_db("stop");
    let (dir, hosts) = hostfile();
    let start = |process: &str| {
        job(&prices, &holdings, &url)
            .args([
                "--processes",
                "2",
                "--process",
                process,
                "--hostfile",
                &hosts,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    // Ctrl-C in process 1 stops both, cleanly.
    let mut p0 = start("0");
    let mut p1 = start("1");
    wait_committed(&url, &prices, 20 * 24, Duration::from_secs(120), None);
    run_ok(Command::new("kill").args(["-INT", &p1.id().to_string()]));
    assert!(wait_exit(&mut p1, Duration::from_secs(30)).success());
    assert!(wait_exit(&mut p0, Duration::from_secs(30)).success());
    // An error in process 0 (its lease taken over) stops process 1 with an error too.
    let mut p0 = start("0");
    let mut p1 = start("1");
    std::thread::sleep(Duration::from_secs(3));
    run_ok(job(&prices, &holdings, &url).args(["--until-caught-up", "--takeover"]));
    assert!(!wait_exit(&mut p0, Duration::from_secs(30)).success());
    assert!(!wait_exit(&mut p1, Duration::from_secs(30)).success());
    let mut stderr = String::new();
    if let Some(mut e) = p1.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(
        stderr.contains("another process of the cluster failed"),
        "{stderr}"
    );
    // A process whose peer never comes gives up instead of waiting forever.
    let (dir2, hosts2) = hostfile();
    let lonely = job(&prices, &holdings, &url)
        .args(["--processes", "2", "--process", "0", "--hostfile", &hosts2])
        .args(["--cluster-wait-secs", "3", "--takeover"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!lonely.status.success());
    assert!(String::from_utf8_lossy(&lonely.stderr).contains("the cluster did not form"));
    drop_db(&url);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}

#[test]
fn a_correction_older_than_the_restored_window_gives_the_uninterrupted_result() {
    let (prices, holdings) = market_topics("window", (2, 1), "2007-01-01", "90", "3");
    let url = fresh_db("window");
    run_ok(job(&prices, &holdings, &url).args(["--until-caught-up"]));
    // A restart with nothing new restores a month of closes, not all of them.
    let out = run_ok(job(&prices, &holdings, &url).args(["--until-caught-up"]));
    let s = summary_of(&out);
    assert_eq!(s["passes"], 1);
    assert!(
        s["restored_prices"].as_u64().unwrap_or(u64::MAX) < 30 * 24,
        "{s}"
    );
    // IBM's close of 2007-01-09 is corrected, months later.
    produce_raw(
        &prices,
        "IBM",
        &[r#"{"TICK":"IBM","PRICE":"99.99","TS":"2007-01-09","EXCHANGE":"SE1"}"#],
    );
    let out = run_ok(job(&prices, &holdings, &url).args(["--until-caught-up"]));
    let s = summary_of(&out);
    assert_eq!(
        s["passes"], 3,
        "re-ran with a window covering the correction, keeping every day until it had read \
         it, then again keeping --memory-days: {s}"
    );
    assert_eq!(s["ticks"], 1);
    // The same log in one run from nothing.
    let reference = fresh_db("window_ref");
    run_ok(job(&prices, &holdings, &reference).args(["--until-caught-up"]));
    assert_eq!(tables(&url), tables(&reference));
    let ibm = query(
        &url,
        "SELECT CAST(price AS CHAR) FROM prices WHERE ticker = 'IBM' AND as_of = '2007-01-09'",
    );
    assert_eq!(ibm[0][0], "99.990000");
    drop_db(&url);
    drop_db(&reference);
}
