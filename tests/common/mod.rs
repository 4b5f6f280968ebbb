//! Helpers for the integration tests: they run the real `stockflow` binary against the real
//! broker on 127.0.0.1 (started by `compose/stack up`, which `scripts/test` runs first).
#![allow(dead_code)]

pub mod proxy;

use std::process::{Command, Output};
use std::time::Duration;
use stockflow_kafka::{KafkaConfig, KafkaLog};
use stockflow_transport::{read_to_end, Log, Record, TopicSpec};

pub fn brokers() -> String {
    std::env::var("STOCKFLOW_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn kafka() -> KafkaConfig {
    KafkaConfig::new(brokers())
}

/// The broker as a log.
pub fn log() -> KafkaLog {
    let log = KafkaLog::new(&kafka()).unwrap_or_else(|e| panic!("kafka client: {e}"));
    log.wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("no broker at {} (run compose/stack up): {e}", brokers()));
    log
}

/// A fresh topic with a unique name, so tests never see each other's records.
pub fn fresh_topic(prefix: &str, partitions: i32) -> String {
    let name = format!("test-{prefix}-{}", uuid::Uuid::new_v4().simple());
    log()
        .ensure_topic(&TopicSpec::kept(name.as_str(), partitions))
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    name
}

pub fn read_topic(topic: &str) -> Vec<Record> {
    read_to_end(&log(), topic, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("reading {topic}: {e}"))
}

/// The sum of the partitions' ends.
pub fn ends(topic: &str) -> i64 {
    log()
        .watermarks(topic)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|w| w.high)
        .sum()
}

pub fn stockflow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stockflow"));
    c.env("STOCKFLOW_BROKERS", brokers())
        // The Kafka broker, even where the environment selects Fluvio (tests/fluvio.rs sets
        // its own).
        .env("STOCKFLOW_LOG_BACKEND", "kafka")
        .env("STOCKFLOW_LOG", "warn")
        // The password goes by environment: the URLs on the command lines carry none.
        .env("STOCKFLOW_MYSQL_PASSWORD", mysql_password())
        .env("STOCKFLOW_CONSOLE_MYSQL_PASSWORD", reader_password());
    c
}

/// The read-only account's password (the stack's development default).
pub fn reader_password() -> String {
    std::env::var("STOCKFLOW_TEST_MYSQL_READER_PASSWORD")
        .unwrap_or_else(|_| "stockflow-reader".into())
}

/// `url` (the app user's, as `fresh_db` gives it) with the stack's read-only account.
pub fn reader_url(url: &str) -> String {
    let mut u = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    u.set_username("stockflow_reader")
        .unwrap_or_else(|()| panic!("{url}: cannot set its user"));
    u.to_string()
}

/// `stockflow run` on these topics into this database, its summary as JSON on stdout.
pub fn job(prices: &str, holdings: &str, url: &str) -> Command {
    let mut c = stockflow();
    c.args(["run", "--output", "json"])
        .args(["--prices-topic", prices, "--holdings-topic", holdings])
        .args(["--mysql-url", url]);
    c
}

/// `job` as process `process` of a two-process cluster on the hostfile `hosts`.
pub fn cluster_job(prices: &str, holdings: &str, url: &str, hosts: &str, process: &str) -> Command {
    let mut c = job(prices, holdings, url);
    c.args([
        "--processes",
        "2",
        "--process",
        process,
        "--hostfile",
        hosts,
    ]);
    c
}

/// A hostfile of two processes on loopback ports free now ([`free_ports`]): (its folder, its
/// path).
pub fn hostfile() -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("stockflow-hosts-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("hosts");
    let ports = free_ports(2);
    std::fs::write(
        &file,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let hosts = file.to_string_lossy().to_string();
    (dir, hosts)
}

/// `n` distinct free loopback ports below the ephemeral range (`stockflow_dataflow::ports`).
pub fn free_ports(n: usize) -> Vec<u16> {
    stockflow_dataflow::ports::free_ports(n).unwrap_or_else(|e| panic!("free ports: {e}"))
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    succeeded(cmd, out)
}

/// `out`, if `cmd` exited 0; else fails with what it printed.
fn succeeded(cmd: &Command, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `run_ok`, but the command must end within `limit` (killed and failed otherwise): for a run
/// that, broken, would loop rather than fail.
pub fn run_ok_within(cmd: &mut Command, limit: std::time::Duration) -> Output {
    fn drain(
        pipe: Option<impl std::io::Read + Send + 'static>,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let status = wait_exit(&mut child, limit);
    let read = |h: std::thread::JoinHandle<Vec<u8>>| {
        h.join()
            .unwrap_or_else(|_| panic!("a reader of {cmd:?}'s output panicked"))
    };
    let output = Output {
        status,
        stdout: read(out),
        stderr: read(err),
    };
    succeeded(cmd, output)
}

/// The test user's password (the local stack's development default).
pub fn mysql_password() -> String {
    std::env::var("STOCKFLOW_TEST_MYSQL_PASSWORD").unwrap_or_else(|_| "stockflow".into())
}

/// Connection options of a test URL (which carries no password) with the password added.
pub fn mysql_opts(url: &str) -> mysql::Opts {
    let opts = mysql::Opts::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    mysql::OptsBuilder::from_opts(opts)
        .pass(Some(mysql_password()))
        .into()
}

/// A fresh database name on the local server, and its URL (without the password:
/// `stockflow()` passes it by environment).
pub fn fresh_db(prefix: &str) -> String {
    let name = format!(
        "sf_{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let base = std::env::var("STOCKFLOW_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://stockflow@127.0.0.1:3306".into());
    format!("{base}/{name}")
}

/// Rows of a query as strings (NULL as "NULL").
pub fn query(url: &str, sql: &str) -> Vec<Vec<String>> {
    try_query(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Rows of a query, or why there are none (the database may not exist yet while a job starts:
/// polling helpers wait on it).
pub fn try_query(url: &str, sql: &str) -> Result<Vec<Vec<String>>, mysql::Error> {
    use mysql::prelude::Queryable;
    let mut conn = mysql::Conn::new(mysql_opts(url))?;
    let rows: Vec<mysql::Row> = conn.query(sql)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql::Value::NULL => "NULL".to_string(),
                    mysql::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => other.as_sql(true),
                })
                .collect()
        })
        .collect())
}

/// A number a query returns in its first cell, 0 while the database or table does not exist.
pub fn poll_number(url: &str, sql: &str) -> i64 {
    try_query(url, sql)
        .ok()
        .and_then(|rows| {
            rows.first()
                .and_then(|r| r.first())
                .and_then(|c| c.parse().ok())
        })
        .unwrap_or(0)
}

pub fn drop_db(url: &str) {
    if let Some((base, name)) = url.rsplit_once('/') {
        use mysql::prelude::Queryable;
        if mysql::Opts::from_url(base).is_ok() {
            if let Ok(mut c) = mysql::Conn::new(mysql_opts(base)) {
                let _ = c.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"));
            }
        }
    }
}

/// Fresh price and holdings topics, the spec's holdings loaded, and both exchanges backfilled
/// for `days` trading days from `from` with `seed`. Returns (prices topic, holdings topic).
pub fn market_topics(
    name: &str,
    partitions: (i32, i32),
    from: &str,
    days: &str,
    seed: &str,
) -> (String, String) {
    let prices = fresh_topic(&format!("{name}-prices"), partitions.0);
    let holdings = fresh_topic(&format!("{name}-holdings"), partitions.1);
    run_ok(stockflow().args(["holdings", "load", "--topic", &holdings]));
    backfill(&prices, from, days, seed);
    (prices, holdings)
}

/// Both exchanges backfill `days` trading days from `from` with `seed` into `topic`.
pub fn backfill(topic: &str, from: &str, days: &str, seed: &str) {
    backfill_with(stockflow(), topic, from, days, seed);
}

/// `backfill` through `stockflow`, a `stockflow()` command with its own settings (another log
/// backend).
pub fn backfill_with(mut stockflow: Command, topic: &str, from: &str, days: &str, seed: &str) {
    run_ok(stockflow.args([
        "exchange",
        "all",
        "--backfill",
        "--from",
        from,
        "--days",
        days,
        "--seed",
        seed,
        "--topic",
        topic,
    ]));
}

/// A current-thread runtime for a test's producer.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Produces payloads byte for byte (bad input included) to `topic` under `key`, in order.
pub fn produce_raw<P: AsRef<[u8]>>(topic: &str, key: &str, payloads: &[P]) {
    let rt = runtime();
    let producer = log().producer().unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        for p in payloads {
            producer
                .send(topic, key.as_bytes(), p.as_ref())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    });
    producer
        .flush(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Every table a job writes (offsets aside), row by row, in a stable order: what "equal to
/// an uninterrupted run" compares.
pub fn tables(url: &str) -> Vec<(String, Vec<Vec<String>>)> {
    [
        (
            "evaluations",
            "SELECT investor, portfolio, CAST(as_of AS CHAR), CAST(nav AS CHAR), \
             CAST(nav_change AS CHAR), CAST(nav_change_pct AS CHAR) FROM evaluations ORDER BY portfolio, as_of",
        ),
        (
            "prices",
            "SELECT ticker, CAST(as_of AS CHAR), CAST(price AS CHAR) FROM prices ORDER BY ticker, as_of",
        ),
        (
            "holding_records",
            "SELECT portfolio, ticker, CAST(from_day AS CHAR), quantity FROM holding_records \
             ORDER BY portfolio, ticker, from_day",
        ),
        (
            "evaluation_issues",
            "SELECT portfolio, CAST(as_of AS CHAR), kind, held, priced FROM evaluation_issues \
             ORDER BY portfolio, as_of, kind",
        ),
        (
            "dead_letters",
            "SELECT topic, kafka_partition, kafka_offset, code FROM dead_letters \
             ORDER BY topic, kafka_partition, kafka_offset",
        ),
    ]
    .iter()
    .map(|(name, sql)| (name.to_string(), query(url, sql)))
    .collect()
}

/// The JSON summary a run prints last on stdout.
pub fn summary_of(out: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// A command that must fail; returns its stderr.
pub fn run_err(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The sum of the next offsets a job has committed for `topic` (0 before its first commit).
pub fn committed(url: &str, topic: &str) -> i64 {
    poll_number(
        url,
        &format!(
            "SELECT COALESCE(SUM(next_offset), 0) FROM stream_progress WHERE topic = '{topic}'"
        ),
    )
}

/// Waits until a job has committed `target` as the sum of `topic`'s next offsets (the progress
/// signal), at most `limit`; fails at once if `child` (the job) exits first.
pub fn wait_committed(
    url: &str,
    topic: &str,
    target: i64,
    limit: std::time::Duration,
    mut child: Option<&mut std::process::Child>,
) {
    let deadline = std::time::Instant::now() + limit;
    while committed(url, topic) < target {
        if let Some(c) = child.as_deref_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("the job exited ({status}) before committing {topic} up to {target}");
            }
        }
        if std::time::Instant::now() >= deadline {
            if let Some(c) = child.as_deref_mut() {
                let _ = c.kill();
            }
            panic!("{topic}: not committed up to {target} within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits (bounded) for a child to exit; kills it and fails after `limit`.
pub fn wait_exit(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the process did not stop within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `compose/stack` with these arguments (the tests that wipe the shared broker).
pub fn stack(args: &[&str]) {
    let root = env!("CARGO_MANIFEST_DIR");
    run_ok(std::process::Command::new(format!("{root}/compose/stack")).args(args));
}

/// The sink's journal of commits (what the console shows) against the table: the rows its
/// commits inserted minus those they retracted are the rows `evaluations` holds. A batch
/// journalled twice (written again after a lost COMMIT) or not at all breaks it. (Holds while
/// the journal has not been pruned: under 5,000 commits.)
pub fn assert_journal_matches(url: &str) {
    let net = poll_number(
        url,
        "SELECT COALESCE(SUM(inserted), 0) - COALESCE(SUM(retracted), 0) FROM job_commits",
    );
    let rows = poll_number(url, "SELECT COUNT(*) FROM evaluations");
    assert_eq!(
        net, rows,
        "the journal's inserted − retracted against evaluations"
    );
}
