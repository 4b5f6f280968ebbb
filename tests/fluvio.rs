//! The Fluvio backend against a real Fluvio cluster, and the whole pipeline on it.
//!
//! They are ignored unless asked for, with the reason in the test summary: they need
//! `STOCKFLOW_FLUVIO_ENDPOINT` to name a cluster's SC (host:port), and CI has no Fluvio
//! cluster (none ships in a package registry; docs/backends.md says how to build and run one
//! on loopback). `scripts/test` runs them when the variable is set (`-- --include-ignored`);
//! asked for without it, they fail saying so. With `STOCKFLOW_FLUVIO_SPU` set
//! to `ID,PUBLIC,PRIVATE` (e.g. `5001,127.0.0.1:9010,127.0.0.1:9011`) the tests first register
//! that SPU with the SC, as a cluster started by hand with `fluvio-run` needs.
//!
//! The pipeline test also needs the Kafka broker and MariaDB of `compose/stack up`: the same
//! run on both backends must give the same tables. The SPU outage test runs when
//! `STOCKFLOW_FLUVIO_SPU_CMD` is also the command line the cluster's SPU was started with (as
//! `pgrep -f` finds it): it SIGKILLs that SPU mid-run and starts it again with it.

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stockflow_fluvio::{FluvioConfig, FluvioLog};
use stockflow_transport::{
    read_to_end, ErrorKind, Log, Position, Retention, Take, TopicSpec, TopicState,
};

/// The cluster's endpoint; a test asked for without one fails, saying so.
fn endpoint() -> String {
    match std::env::var("STOCKFLOW_FLUVIO_ENDPOINT") {
        Ok(e) if !e.trim().is_empty() => e,
        _ => panic!(
            "STOCKFLOW_FLUVIO_ENDPOINT is not set, so there is no Fluvio cluster to test against \
             (CI has none; docs/backends.md, \"Running on Fluvio\", says how to start one on \
             loopback)"
        ),
    }
}

/// The cluster as a log, its SPU registered first if `STOCKFLOW_FLUVIO_SPU` says so.
fn fluvio_log(endpoint: &str) -> FluvioLog {
    let log = FluvioLog::new(&FluvioConfig::new(endpoint)).expect("a Fluvio client");
    if let Ok(spu) = std::env::var("STOCKFLOW_FLUVIO_SPU") {
        let parts: Vec<&str> = spu.split(',').collect();
        let [id, public, private] = parts[..] else {
            panic!("STOCKFLOW_FLUVIO_SPU={spu:?}: expected ID,PUBLIC,PRIVATE");
        };
        let id: i32 = id.parse().expect("STOCKFLOW_FLUVIO_SPU: a numeric SPU id");
        stockflow_fluvio::cluster::register_custom_spu(&log, id, public, private)
            .expect("registering the SPU with the SC");
    }
    log.wait_ready(Duration::from_secs(60))
        .expect("a Fluvio cluster with an SPU online at STOCKFLOW_FLUVIO_ENDPOINT");
    log
}

/// A fresh topic on the cluster, kept forever. Fluvio topic names are lowercase.
fn fresh_fluvio_topic(log: &FluvioLog, prefix: &str, partitions: i32) -> String {
    let name = format!("test-{prefix}-{}", uuid::Uuid::new_v4().simple());
    let state = log
        .ensure_topic(&TopicSpec::kept(name.as_str(), partitions))
        .expect("creating a topic");
    assert_eq!(state, TopicState::Created);
    name
}

/// The sum of a topic's partition ends on the cluster.
fn fluvio_ends(log: &FluvioLog, topic: &str) -> i64 {
    log.watermarks(topic)
        .expect("watermarks")
        .iter()
        .map(|w| w.high)
        .sum()
}

/// `stockflow` on the Fluvio backend.
fn on_fluvio(mut c: Command, endpoint: &str) -> Command {
    c.env("STOCKFLOW_LOG_BACKEND", "fluvio")
        .env("STOCKFLOW_FLUVIO_ENDPOINT", endpoint);
    c
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

#[test]
#[ignore = "needs a Fluvio cluster: STOCKFLOW_FLUVIO_ENDPOINT (docs/backends.md)"]
fn the_backend_keeps_the_log_interface() {
    let ep = endpoint();
    let log = fluvio_log(&ep);
    assert_eq!(log.describe(), format!("fluvio at {ep}"));

    // Topics: created once, kept forever, three partitions.
    let topic = fresh_fluvio_topic(&log, "iface", 3);
    assert_eq!(
        log.ensure_topic(&TopicSpec::kept(topic.as_str(), 3))
            .expect("ensuring an existing topic"),
        TopicState::Existed
    );
    assert_eq!(log.partitions(&topic).expect("partitions"), vec![0, 1, 2]);
    let retention = log.retention(&topic).expect("retention");
    assert_eq!((retention.ms, retention.bytes), (Some(-1), Some(-1)));
    let day = fresh_fluvio_topic(&log, "retention", 1);
    let kept_a_day = TopicSpec {
        name: format!("{day}-day"),
        partitions: 1,
        retention: Retention::Ms(86_400_000),
    };
    log.ensure_topic(&kept_a_day).expect("a topic kept a day");
    assert_eq!(
        log.retention(&kept_a_day.name).expect("retention").ms,
        Some(86_400_000)
    );
    let missing = log
        .partitions("test-no-such-topic-here")
        .expect_err("an unknown topic");
    assert_eq!(missing.kind, ErrorKind::UnknownTopic);

    // Producing: 30 keys, 10 records each, acknowledged with their positions; one key's
    // records in one partition, in the order sent.
    let producer = log.producer().expect("a producer");
    let t0 = chrono::Utc::now().timestamp_millis();
    let mut acks: BTreeMap<String, Vec<Position>> = BTreeMap::new();
    block_on(async {
        for round in 0..10 {
            let sends: Vec<_> = (0..30)
                .map(|k| {
                    let key = format!("key-{k}");
                    let payload = format!("{{\"key\":{k},\"round\":{round}}}");
                    (key, payload)
                })
                .collect();
            let futures: Vec<_> = sends
                .iter()
                .map(|(k, p)| producer.send(&topic, k.as_bytes(), p.as_bytes()))
                .collect();
            for ((k, _), f) in sends.iter().zip(futures) {
                let at = f.await.expect("an acknowledged send");
                acks.entry(k.clone()).or_default().push(at);
            }
        }
    });
    producer.flush(Duration::from_secs(30)).expect("a flush");
    let t1 = chrono::Utc::now().timestamp_millis();
    for (key, positions) in &acks {
        assert!(
            positions
                .windows(2)
                .all(|w| w[0].partition == w[1].partition && w[0].offset < w[1].offset),
            "{key}: one partition, offsets in send order: {positions:?}"
        );
    }
    let used: std::collections::BTreeSet<i32> = acks.values().map(|p| p[0].partition).collect();
    assert!(
        used.len() > 1,
        "30 keys spread over the partitions: {used:?}"
    );

    // The ranges: every record counted, from offset 0.
    let marks = log.watermarks(&topic).expect("watermarks");
    assert_eq!(marks.len(), 3);
    assert!(marks.iter().all(|w| w.low == 0));
    assert_eq!(marks.iter().map(|w| w.high).sum::<i64>(), 300);

    // Reading: what was acknowledged, where it was acknowledged, with the producer's time.
    let records = read_to_end(&log, &topic, Duration::from_secs(60)).expect("reading it all");
    assert_eq!(records.len(), 300);
    for r in &records {
        let key = String::from_utf8(r.key.clone().expect("a key")).expect("a UTF-8 key");
        let payload: serde_json::Value =
            serde_json::from_slice(r.payload.as_deref().expect("a payload")).expect("JSON");
        let round = usize::try_from(payload["round"].as_u64().expect("a round")).expect("small");
        assert_eq!(acks[&key][round], r.position, "{key} round {round}");
        let ts = r.timestamp_ms.expect("a timestamp");
        assert!(
            ts >= t0 - 1_000 && ts <= t1 + 1_000,
            "{ts} within [{t0}, {t1}]"
        );
    }

    // A position the log does not hold is refused, never jumped over.
    let p0 = marks[0];
    let past_end = log
        .open_source(&[Position {
            topic: topic.clone(),
            partition: 0,
            offset: p0.high + 1,
        }])
        .err()
        .expect("an offset past the end");
    assert_eq!(past_end.kind, ErrorKind::OffsetOutOfRange, "{past_end}");

    // The first record at or after a position.
    let mid = Position {
        topic: topic.clone(),
        partition: p0.partition,
        offset: p0.high / 2,
    };
    let first = log
        .first_records(std::slice::from_ref(&mid), Duration::from_secs(30))
        .expect("first records");
    let got = first[0].as_ref().expect("a record at the middle");
    assert_eq!(got.position, mid);
    assert_eq!(
        Some(got),
        records.iter().find(|r| r.position == mid),
        "the same record as the full read"
    );

    // A refused record is handed over again first; the resume offset stays at it, and reaches
    // the partition's end once everything is taken.
    let mut source = log
        .open_source(&[Position {
            topic: topic.clone(),
            partition: p0.partition,
            offset: 0,
        }])
        .expect("a source");
    let mut taken = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused_once = false;
    while source.resume_offset(&topic, p0.partition) != Some(p0.high) {
        assert!(Instant::now() < deadline, "partition 0 not read to its end");
        source
            .poll_batch(1000, Duration::from_millis(100), &mut |r| {
                if r.offset == 5 && !refused_once {
                    refused_once = true;
                    return Take::Refuse;
                }
                taken.push(r.offset);
                Take::Next
            })
            .expect("polling");
        if refused_once && taken.len() == 5 {
            assert_eq!(source.resume_offset(&topic, p0.partition), Some(5));
        }
    }
    assert!(refused_once);
    assert_eq!(
        taken,
        (0..p0.high).collect::<Vec<_>>(),
        "every offset once, in order"
    );

    // Live: a source at the end, idle past the lanes' idle check, is handed a record written
    // after it opened.
    let partition_of_key0 = acks["key-0"][0].partition;
    let end0 = marks[usize::try_from(partition_of_key0).expect("small")].high;
    let mut live = log
        .open_source(&[Position {
            topic: topic.clone(),
            partition: partition_of_key0,
            offset: end0,
        }])
        .expect("a live source");
    let idle_until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < idle_until {
        let n = live
            .poll_batch(10, Duration::from_millis(100), &mut |_| Take::Next)
            .expect("polling an idle source");
        assert_eq!(n, 0, "nothing past the end yet");
    }
    assert_eq!(live.resume_offset(&topic, partition_of_key0), Some(end0));
    block_on(producer.send(&topic, b"key-0", b"{\"late\":true}")).expect("a late record");
    let mut late = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while late.is_none() {
        assert!(Instant::now() < deadline, "the late record never came");
        live.poll_batch(10, Duration::from_millis(200), &mut |r| {
            late = Some(r.to_record());
            Take::Next
        })
        .expect("polling live");
    }
    let late = late.expect("the late record");
    assert_eq!(late.position.offset, end0);
    assert_eq!(late.payload.as_deref(), Some(&b"{\"late\":true}"[..]));

    // Offsets for times: the first record stamped at or after a record's own time.
    let probe = &records[150];
    let ts = probe.timestamp_ms.expect("a timestamp");
    let found = log
        .offset_for_time(&topic, probe.position.partition, ts)
        .expect("an offset for a time")
        .expect("a record at or after that time");
    assert!(found <= probe.position.offset);
    let at = records
        .iter()
        .find(|r| r.position.partition == probe.position.partition && r.position.offset == found)
        .expect("the found record");
    assert!(at.timestamp_ms.expect("a timestamp") >= ts);
    assert!(records
        .iter()
        .filter(|r| r.position.partition == probe.position.partition && r.position.offset < found)
        .all(|r| r.timestamp_ms.expect("a timestamp") < ts));
    assert_eq!(
        log.offset_for_time(&topic, 0, t1 + 3_600_000)
            .expect("a time after every record"),
        None
    );
}

/// The rows of `evaluations` and the stored offsets' sum for `topic`.
fn progress_sum(url: &str, topic: &str) -> i64 {
    committed(url, topic)
}

#[test]
#[ignore = "needs a Fluvio cluster: STOCKFLOW_FLUVIO_ENDPOINT (docs/backends.md)"]
fn the_pipeline_on_fluvio_equals_the_kafka_run_and_survives_a_sigkill() {
    let ep = endpoint();
    let flog = fluvio_log(&ep);
    let (from, days, seed) = ("2001-01-02", "120", "41");

    // The reference: the same market on the Kafka broker.
    let (kprices, kholdings) = market_topics("fl-ref", (3, 2), from, days, seed);
    let kafka_db = fresh_db("flref");
    run_ok(job(&kprices, &kholdings, &kafka_db).args(["--until-caught-up"]));
    let expected = tables(&kafka_db);
    assert!(
        expected[0].1.len() > 500,
        "the reference has evaluations: {}",
        expected[0].1.len()
    );

    // The topics, by the command, on Fluvio.
    let fprices = format!("test-fl-prices-{}", uuid::Uuid::new_v4().simple());
    let fholdings = format!("test-fl-holdings-{}", uuid::Uuid::new_v4().simple());
    run_ok(
        on_fluvio(stockflow(), &ep)
            .args(["topics", "create", "--partitions", "3"])
            .args(["--topic", &fprices, "--topic", &fholdings]),
    );
    let described = run_ok(on_fluvio(stockflow(), &ep).args([
        "--output", "json", "topics", "describe", "--topic", &fprices,
    ]));
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(text.contains(&fprices), "describe names the topic: {text}");

    // Both exchanges and the holdings into Fluvio.
    run_ok(on_fluvio(stockflow(), &ep).args(["holdings", "load", "--topic", &fholdings]));
    backfill_with(on_fluvio(stockflow(), &ep), &fprices, from, days, seed);

    // What was read: the same records (key and payload) on both logs, each key's in the same
    // order.
    let by_key = |records: Vec<stockflow_transport::Record>| {
        let mut m: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for r in records {
            m.entry(r.key.unwrap_or_default())
                .or_default()
                .push(r.payload.unwrap_or_default());
        }
        m
    };
    let on_kafka = by_key(read_topic(&kprices));
    let on_fluvio_log =
        by_key(read_to_end(&flog, &fprices, Duration::from_secs(120)).expect("reading Fluvio"));
    assert_eq!(on_kafka.len(), on_fluvio_log.len(), "the same keys");
    assert_eq!(
        on_kafka, on_fluvio_log,
        "the same records per key, in order"
    );
    let end = fluvio_ends(&flog, &fprices);

    // One uninterrupted run on Fluvio: the Kafka run's tables.
    let clean = fresh_db("flclean");
    let out = run_ok(on_fluvio(job(&fprices, &fholdings, &clean), &ep).args(["--until-caught-up"]));
    assert_eq!(
        tables(&clean),
        expected,
        "Fluvio run = Kafka run, table for table"
    );
    assert_eq!(
        progress_sum(&clean, &fprices),
        end,
        "every offset committed"
    );
    assert_eq!(summary_of(&out)["resumed"], false);

    // status reads the Fluvio log's ends: no lag.
    let status = run_ok(
        on_fluvio(stockflow(), &ep)
            .args(["--output", "json", "status", "--mysql-url", &clean])
            .args(["--prices-topic", &fprices, "--holdings-topic", &fholdings]),
    );
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status_text.contains(&fprices),
        "status names the topic: {status_text}"
    );

    // SIGKILL mid-run, then a restart: the same tables again. The job reads 120 days in well
    // under a second on Fluvio: one record per timestamp, and tries until a kill lands before
    // the end (a fresh database each time).
    let mut crashed = String::new();
    let mut at_kill = end;
    for attempt in 0..10 {
        if !crashed.is_empty() {
            drop_db(&crashed);
        }
        crashed = fresh_db("flkill");
        run_ok(stockflow().args(["db", "init", "--mysql-url", &crashed]));
        // Small transactions: a catch-up gathers 100,000 rows a transaction by default, and
        // 120 days would commit at once.
        let mut child = on_fluvio(job(&fprices, &fholdings, &crashed), &ep)
            .args(["--max-batch", "1", "--commit-rows", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the job");
        let deadline = Instant::now() + Duration::from_secs(120);
        while progress_sum(&crashed, &fprices) == 0 {
            assert!(Instant::now() < deadline, "the job never committed");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the job exited ({status}) before its first commit");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill(); // SIGKILL: no clean shutdown, possibly mid-transaction
        let _ = child.wait();
        at_kill = progress_sum(&crashed, &fprices);
        eprintln!("attempt {attempt}: killed with {at_kill} of {end} price records committed");
        if at_kill < end {
            break;
        }
    }
    assert!(at_kill < end, "a kill landed mid-run in 10 attempts");
    let out =
        run_ok(on_fluvio(job(&fprices, &fholdings, &crashed), &ep).args(["--until-caught-up"]));
    assert_eq!(
        tables(&crashed),
        expected,
        "after SIGKILL + restart = the Kafka run"
    );
    assert_eq!(progress_sum(&crashed, &fprices), end);
    assert_eq!(summary_of(&out)["resumed"], true, "the restart resumed");
    assert_journal_matches(&crashed);

    // A replay from the start on top of the stored state changes nothing; so does one from a
    // time after every record (Fluvio: offsets for times by a scan).
    run_ok(on_fluvio(job(&fprices, &fholdings, &clean), &ep).args([
        "--until-caught-up",
        "--from",
        "earliest",
    ]));
    assert_eq!(tables(&clean), expected, "a replay from earliest");
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    run_ok(on_fluvio(job(&fprices, &fholdings, &clean), &ep).args([
        "--until-caught-up",
        "--from",
        &format!("time={later}"),
    ]));
    assert_eq!(tables(&clean), expected, "a replay from a later time");

    for db in [kafka_db, clean, crashed] {
        drop_db(&db);
    }
}

/// Deletes a topic on the cluster (what an operator's `fluvio topic delete` does) and waits
/// until the SC has forgotten it.
fn delete_fluvio_topic(endpoint: &str, log: &FluvioLog, topic: &str) {
    let admin = block_on(async {
        fluvio::Fluvio::connect_with_config(&fluvio::FluvioClusterConfig::new(endpoint))
            .await
            .expect("connecting to the SC")
            .admin()
            .await
    });
    block_on(admin.delete::<fluvio::metadata::topic::TopicSpec>(topic.to_string()))
        .expect("deleting the topic");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match log.partitions(topic) {
            Err(e) if e.kind == ErrorKind::UnknownTopic => break,
            _ if Instant::now() >= deadline => panic!("{topic} was not deleted within 60 s"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    // Its partitions go after it: the SC's store refuses a new topic's partitions under the
    // same names while the old ones are there ("update by stale value").
    loop {
        let left = block_on(admin.all::<fluvio::metadata::partition::PartitionSpec>())
            .expect("listing the partitions")
            .into_iter()
            .filter(|m| {
                m.name
                    .rsplit_once('-')
                    .is_some_and(|(name, _)| name == topic)
            })
            .count();
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} partitions of {topic} still there after 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs a Fluvio cluster: STOCKFLOW_FLUVIO_ENDPOINT (docs/backends.md)"]
fn a_recreated_topic_on_fluvio_is_refused_and_the_documented_command_resumes() {
    let ep = endpoint();
    let flog = fluvio_log(&ep);
    let prices = fresh_fluvio_topic(&flog, "lost-prices", 4);
    let holdings = fresh_fluvio_topic(&flog, "lost-holdings", 2);
    let sf = || on_fluvio(stockflow(), &ep);
    run_ok(sf().args(["holdings", "load", "--topic", &holdings]));
    let backfill = |from: &str, days: &str| backfill_with(sf(), &prices, from, days, "9");
    backfill("2002-01-01", "30");
    let url = fresh_db("fllost");
    let job = || {
        let mut c = on_fluvio(job(&prices, &holdings, &url), &ep);
        c.arg("--until-caught-up");
        c
    };
    run_ok(&mut job());
    let rows =
        "SELECT portfolio, CAST(as_of AS CHAR), CAST(nav AS CHAR), CAST(nav_change AS CHAR), \
                CAST(nav_change_pct AS CHAR) FROM evaluations ORDER BY portfolio, as_of";
    let before = query(&url, rows);
    assert_eq!(before.len(), 30 * 6);

    // The topics are deleted and created again, empty; holdings and 10 new days arrive.
    for (t, n) in [(&prices, 4), (&holdings, 2)] {
        delete_fluvio_topic(&ep, &flog, t);
        // The SC finishes a deletion (its partitions) after the topic leaves its list: a
        // create may be refused meanwhile.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match flog.ensure_topic(&TopicSpec::kept(t.as_str(), n)) {
                // Existed: an attempt that timed out had created it.
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("recreating {t}: {e}; trying again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("recreating {t}: {e}"),
            }
        }
        // Its partitions get their leaders a moment after the topic is listed.
        let deadline = Instant::now() + Duration::from_secs(60);
        let marks = loop {
            match flog.watermarks(t) {
                Ok(marks) => break marks,
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    eprintln!("the ranges of {t}: {e}; trying again");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("the ranges of {t}: {e}"),
            }
        };
        assert_eq!(marks.len(), usize::try_from(n).expect("small"));
        assert!(
            marks.iter().all(|w| w.high == 0),
            "recreated empty: {marks:?}"
        );
    }
    run_ok(sf().args(["holdings", "load", "--topic", &holdings]));
    backfill("2002-03-01", "10");

    let refused = run_err(&mut job());
    assert!(
        refused.contains("the log is not the one this job read"),
        "{refused}"
    );
    assert!(refused.contains("--reset-offsets"), "{refused}");
    assert_eq!(query(&url, "SELECT COUNT(*) FROM evaluations")[0][0], "180");

    let out = run_ok(job().arg("--reset-offsets"));
    assert_eq!(summary_of(&out)["ticks"], 10 * 24);
    let after = query(&url, rows);
    assert_eq!(after.len(), 40 * 6, "the new days are evaluated");
    for row in &before {
        assert!(after.contains(row), "an older row changed: {row:?}");
    }
    let out = run_ok(&mut job());
    assert_eq!(summary_of(&out)["ticks"], 0, "nothing read twice");
    drop_db(&url);
}

#[test]
#[ignore = "needs a Fluvio cluster: STOCKFLOW_FLUVIO_ENDPOINT (docs/backends.md)"]
fn a_backlog_larger_than_a_fetch_is_read_whole() {
    // An SPU answers a stream with its log cut at the fetch size (about 1 MB), often inside a
    // batch; the fluvio 0.50.1 client drops the cut batch's remaining records and goes on after
    // it. 5 MB in one partition, in batches of hundreds of records: every record must come,
    // once, in order.
    let ep = endpoint();
    let log = fluvio_log(&ep);
    let topic = fresh_fluvio_topic(&log, "big", 1);
    let producer = log.producer().expect("a producer");
    let n = 40_000usize;
    let filler = "x".repeat(80);
    let payloads: Vec<String> = (0..n)
        .map(|i| format!("{{\"i\":{i},\"f\":\"{filler}\"}}"))
        .collect();
    block_on(async {
        use futures::stream::{self, StreamExt};
        let acks: Vec<_> = stream::iter(payloads.iter())
            .map(|p| producer.send(&topic, b"one-key", p.as_bytes()))
            .buffered(4096)
            .collect()
            .await;
        for a in acks {
            a.expect("an acknowledged send");
        }
    });
    producer.flush(Duration::from_secs(60)).expect("a flush");
    let marks = log.watermarks(&topic).expect("watermarks");
    assert_eq!(marks[0].high, i64::try_from(n).expect("small"));

    let records = read_to_end(&log, &topic, Duration::from_secs(120)).expect("reading it all");
    assert_eq!(records.len(), n, "every record");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.position.offset,
            i64::try_from(i).expect("small"),
            "dense offsets"
        );
        assert_eq!(
            r.payload.as_deref(),
            Some(payloads[i].as_bytes()),
            "record {i}"
        );
    }
    // The time scan goes through the cut batches too.
    let last = records.last().expect("records");
    let found = log
        .offset_for_time(&topic, 0, last.timestamp_ms.expect("a timestamp"))
        .expect("a scan")
        .expect("a record at that time");
    assert!(found <= last.position.offset);
    assert_eq!(
        records[usize::try_from(found).expect("small")].timestamp_ms,
        last.timestamp_ms
    );
}

/// The SPU's process id, found by its command line.
fn spu_pid(cmd: &str) -> Option<String> {
    let out = Command::new("pgrep")
        .args(["-f", "-x", cmd])
        .output()
        .expect("running pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
}

#[test]
#[ignore = "needs a Fluvio cluster and its SPU's command line: STOCKFLOW_FLUVIO_ENDPOINT, STOCKFLOW_FLUVIO_SPU_CMD (docs/backends.md)"]
fn an_spu_restart_mid_run_loses_nothing() {
    let ep = endpoint();
    let spu_cmd = std::env::var("STOCKFLOW_FLUVIO_SPU_CMD").expect(
        "STOCKFLOW_FLUVIO_SPU_CMD: the command line of the cluster's SPU, to SIGKILL and start \
         it again",
    );
    let flog = fluvio_log(&ep);
    let pid = spu_pid(&spu_cmd).expect("the SPU process (STOCKFLOW_FLUVIO_SPU_CMD, pgrep -fx)");
    let prices = fresh_fluvio_topic(&flog, "outage-prices", 4);
    let holdings = fresh_fluvio_topic(&flog, "outage-holdings", 2);
    run_ok(on_fluvio(stockflow(), &ep).args(["holdings", "load", "--topic", &holdings]));
    let live = fresh_db("flspu");
    run_ok(stockflow().args(["db", "init", "--mysql-url", &live]));
    let mut live_job = on_fluvio(job(&prices, &holdings, &live), &ep)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the job");
    // The exchanges publish 40 days, one every 0.3 s, while the SPU goes down and comes back.
    let days: i64 = 40;
    let mut exchanges = on_fluvio(stockflow(), &ep)
        .args([
            "exchange",
            "all",
            "--from",
            "2020-01-01",
            "--days",
            "40",
            "--pace",
            "0.3",
        ])
        .args(["--topic", &prices])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the exchanges");
    wait_committed(
        &live,
        &prices,
        24 * 5,
        Duration::from_secs(60),
        Some(&mut live_job),
    );
    let killed = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(killed.success(), "SIGKILL of the SPU {pid}");
    let at_kill = committed(&live, &prices);
    std::thread::sleep(Duration::from_secs(3));
    let parts: Vec<&str> = spu_cmd.split_whitespace().collect();
    let (program, args) = parts.split_first().expect("a command");
    let log_dir = std::env::temp_dir().join(format!("stockflow-spu-{}", uuid::Uuid::new_v4()));
    let spu_log = std::fs::File::create(&log_dir).expect("the SPU's log file");
    let mut restart = Command::new("setsid");
    restart
        .arg("-f")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(spu_log.try_clone().expect("a log handle"))
        .stderr(spu_log);
    assert!(restart.status().expect("restarting the SPU").success());
    eprintln!("SPU {pid} killed with {at_kill} price records committed, started again");

    // Every record published, once: the exchanges sent again what the restart refused.
    let status = wait_exit(&mut exchanges, Duration::from_secs(240));
    let mut ex_err = String::new();
    if let Some(mut e) = exchanges.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut ex_err);
    }
    assert!(
        status.success(),
        "the exchanges survived the SPU restart: {ex_err}"
    );
    let end = fluvio_ends(&flog, &prices);
    assert!(end >= days * 24, "{end} records for {days} days");
    eprintln!(
        "{end} price records in the log for {} published; {} sends repeated",
        days * 24,
        ex_err.matches("sending it again").count()
    );
    // The live job reads it all and equals an uninterrupted run over the same log.
    wait_committed(
        &live,
        &prices,
        end,
        Duration::from_secs(120),
        Some(&mut live_job),
    );
    let _ = Command::new("kill")
        .args(["-INT", &live_job.id().to_string()])
        .status();
    let stopped = wait_exit(&mut live_job, Duration::from_secs(60));
    assert!(stopped.success(), "the job stopped cleanly");
    let reference = fresh_db("flspuref");
    run_ok(on_fluvio(job(&prices, &holdings, &reference), &ep).args(["--until-caught-up"]));
    let expected = tables(&reference);
    assert_eq!(
        expected[0].1.len(),
        usize::try_from(days * 6).expect("small"),
        "every day evaluated"
    );
    assert_eq!(
        tables(&live),
        expected,
        "the live run through the outage = an uninterrupted run"
    );
    assert_journal_matches(&live);
    for db in [live, reference] {
        drop_db(&db);
    }
}

/// SIGKILLs the SPU found by `spu_cmd` and returns a closure that starts it again.
fn kill_spu(spu_cmd: &str) -> impl FnOnce() {
    let pid = spu_pid(spu_cmd).expect("the SPU process (STOCKFLOW_FLUVIO_SPU_CMD, pgrep -fx)");
    let killed = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(killed.success(), "SIGKILL of the SPU {pid}");
    let spu_cmd = spu_cmd.to_string();
    move || {
        let parts: Vec<&str> = spu_cmd.split_whitespace().collect();
        let (program, args) = parts.split_first().expect("a command");
        let log = std::env::temp_dir().join(format!("stockflow-spu-{}", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&log).expect("the SPU's log file");
        let started = Command::new("setsid")
            .arg("-f")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("a log handle"))
            .stderr(file)
            .status()
            .expect("restarting the SPU");
        assert!(started.success());
    }
}

#[test]
#[ignore = "needs a Fluvio cluster and its SPU's command line: STOCKFLOW_FLUVIO_ENDPOINT, STOCKFLOW_FLUVIO_SPU_CMD (docs/backends.md)"]
fn a_change_sent_during_an_spu_outage_does_not_land_after_a_later_one() {
    // Two changes of one holding through one producer: the first is sent while the SPU is
    // down (refused, sent again), the second as soon as the SPU is back. The log must end
    // with the second: a re-sent record that lands after a later record of its key makes
    // that one go again after it (before, the first change could land last and win).
    let ep = endpoint();
    let spu_cmd = std::env::var("STOCKFLOW_FLUVIO_SPU_CMD")
        .expect("STOCKFLOW_FLUVIO_SPU_CMD: the command line of the cluster's SPU");
    let flog = fluvio_log(&ep);
    let topic = fresh_fluvio_topic(&flog, "resend-order", 1);
    let producer = flog.producer().expect("a producer");
    for round in 0..3 {
        let (a, b) = (format!("first-{round}"), format!("second-{round}"));
        let start_again = kill_spu(&spu_cmd);
        let first = producer.send(&topic, b"P11/IBM", a.as_bytes());
        // The outage: a second, while the first change is refused and sent again with backoff.
        // Its answer is awaited below, with the second's: the second goes as soon as the SPU
        // is back, while the first may still wait for its next try.
        std::thread::sleep(Duration::from_secs(1));
        start_again();
        std::thread::sleep(Duration::from_millis(300 * round));
        let second = producer.send(&topic, b"P11/IBM", b.as_bytes());
        let (first, second) = block_on(async { (first.await, second.await) });
        let (first, second) = (
            first.expect("the first change, sent again"),
            second.expect("the second change"),
        );
        let records = read_to_end(&flog, &topic, Duration::from_secs(60)).expect("reading");
        let last = records
            .iter()
            .rev()
            .find(|r| r.key.as_deref() == Some(b"P11/IBM".as_slice()))
            .expect("the key's records");
        assert_eq!(
            last.payload.as_deref(),
            Some(b.as_bytes()),
            "round {round}: the later change is the key's last record (first at {}, second \
             at {}, {} records)",
            first.offset,
            second.offset,
            records.len()
        );
        eprintln!(
            "round {round}: first change at {}, second at {}; the log: {:?}",
            first.offset,
            second.offset,
            records
                .iter()
                .map(
                    |r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default())
                        .to_string()
                )
                .collect::<Vec<_>>()
        );
    }
}
