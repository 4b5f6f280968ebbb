//! `stockflow console` against the real services: its API (every endpoint's shape, paging,
//! errors, the write endpoint's checks) and a real browser (Debian's chromium, headless, driven
//! by playwright-core through tests/browser/console.mjs) while the job runs live.
#![allow(clippy::expect_used)]

mod common;

use common::*;
use rust_decimal::Decimal;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    free_ports(1)[0]
}

/// Lines of a child's stdout, read on a thread (so that a wait can time out).
fn lines_of(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A child process killed when dropped (a failed assertion leaves no job running).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running console; killed when dropped.
struct Console {
    child: Child,
    base: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `stockflow console` on a free port and waits for the line that says it serves.
fn console(url: &str, prices: &str, holdings: &str, extra: &[&str]) -> Console {
    let addr = format!("127.0.0.1:{}", free_port());
    // The read-only account, as the console runs by default.
    let mut child = stockflow()
        .args(["console", "--addr", &addr, "--mysql-url", &reader_url(url)])
        .args(["--prices-topic", prices, "--holdings-topic", holdings])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the console");
    let lines = lines_of(child.stdout.take().expect("its stdout"));
    let line = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the console says where it serves within 30 s");
    assert_eq!(line, format!("console: http://{addr}/"));
    Console {
        child,
        base: format!("http://{addr}"),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// GET → (status, JSON body).
fn get(base: &str, path: &str) -> (u16, serde_json::Value) {
    let mut r = agent()
        .get(&format!("{base}{path}"))
        .call()
        .expect("the console answers");
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().expect("a body");
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

/// A decimal from the database as the console shows it: two decimals (half away from zero),
/// thousands separators. Written apart from the console's formatting, to check it.
fn shown(text: &str) -> String {
    let d = Decimal::from_str(text)
        .expect("a decimal")
        .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let s = format!("{:.2}", d.abs());
    let (int, frac) = s.split_once('.').expect("two decimals");
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if d.is_sign_negative() && !d.is_zero() {
        "-"
    } else {
        ""
    };
    format!("{sign}{grouped}.{frac}")
}

/// (portfolio → (latest day, value as shown)) from the database.
fn latest_in_db(url: &str) -> std::collections::BTreeMap<String, (String, String)> {
    query(
        url,
        "SELECT e.portfolio, CAST(e.as_of AS CHAR), CAST(e.nav AS CHAR) FROM evaluations e \
         JOIN (SELECT portfolio, MAX(as_of) d FROM evaluations GROUP BY portfolio) m \
         ON m.portfolio = e.portfolio AND m.d = e.as_of",
    )
    .into_iter()
    .map(|r| (r[0].clone(), (r[1].clone(), shown(&r[2]))))
    .collect()
}

/// Rows the page showed: portfolio → (day, value).
fn rows_shown(step: &serde_json::Value) -> std::collections::BTreeMap<String, (String, String)> {
    step["rows"]
        .as_object()
        .expect("rows")
        .iter()
        .map(|(p, r)| {
            (
                p.clone(),
                (
                    r["day"].as_str().expect("a day").to_string(),
                    r["value"].as_str().expect("a value").to_string(),
                ),
            )
        })
        .collect()
}

/// The screenshots the browser script saves, one a step.
const SCREENSHOTS: [&str; 5] = [
    "portfolios.png",
    "portfolios-live.png",
    "portfolio.png",
    "portfolio-restated.png",
    "job.png",
];

/// What a hostile producer puts on the price topic: markup that would run script if it were
/// inserted as HTML, and a right-to-left override that would make it read differently.
const HOSTILE: &str =
    "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">\u{202E}txt.exe";

fn browser_ready() -> (String, std::path::PathBuf) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no chromium at {chromium}: scripts/test installs Debian's chromium (compose/stack browser)"
    );
    assert!(
        root.join("tests/browser/node_modules/playwright-core").exists(),
        "playwright-core is not installed: scripts/test runs npm ci in tests/browser (compose/stack browser)"
    );
    (chromium, root)
}

#[test]
fn the_console_in_a_real_browser_follows_the_live_job() {
    let (chromium, root) = browser_ready();
    let url = fresh_db("console");
    let (prices, holdings) = market_topics("console", (2, 1), "2024-01-02", "60", "11");
    produce_raw(&prices, "SE1", &[HOSTILE]);
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut job_child = Killed(
        job(&prices, &holdings, &url)
            .args(["--metrics-addr", &metrics])
            .stdout(Stdio::null())
            .spawn()
            .expect("the job"),
    );
    wait_committed(
        &url,
        &prices,
        ends(&prices),
        Duration::from_secs(180),
        Some(&mut job_child.0),
    );
    assert_eq!(
        poll_number(&url, "SELECT COUNT(*) FROM dead_letters"),
        1,
        "the hostile record is a dead letter"
    );
    let c = console(
        &url,
        &prices,
        &holdings,
        &[
            "--allow-holdings-changes",
            "--metrics-url",
            &format!("http://{metrics}/metrics"),
        ],
    );
    // The holdings change the form will make: P11 holds 100 more of its first stock from its
    // 30th evaluated day on.
    let held = query(
        &url,
        "SELECT ticker, quantity FROM holding_records WHERE portfolio = 'P11' ORDER BY ticker LIMIT 1",
    );
    let (ticker, qty) = (
        held[0][0].clone(),
        held[0][1].parse::<i64>().expect("a quantity"),
    );
    let from = query(
        &url,
        "SELECT CAST(as_of AS CHAR) FROM evaluations WHERE portfolio = 'P11' ORDER BY as_of LIMIT 1 OFFSET 30",
    )[0][0]
        .clone();
    let shots = root.join("target/console-screenshots");
    std::fs::create_dir_all(&shots).expect("a folder for the screenshots");
    for f in SCREENSHOTS {
        let _ = std::fs::remove_file(shots.join(f));
    }
    let mut node = Killed(
        Command::new("node")
            .arg(root.join("tests/browser/console.mjs"))
            .current_dir(root.join("tests/browser"))
            .env("CONSOLE_URL", &c.base)
            .env("SCREENSHOTS", &shots)
            .env("CHROMIUM", &chromium)
            .env("HOLD_TICKER", &ticker)
            .env("HOLD_QTY", (qty + 100).to_string())
            .env("HOLD_FROM", &from)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs the browser script"),
    );
    let mut to_node = node.0.stdin.take().expect("its stdin");
    let steps = lines_of(node.0.stdout.take().expect("its stdout"));
    let mut seen = Vec::new();
    let mut new_day = String::new();
    let mut p11_before = String::new();
    loop {
        let line = steps
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("the browser script stalled after {seen:?}: {e}"));
        let step: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let name = step["step"].as_str().expect("a step").to_string();
        println!("browser: {name}");
        match name.as_str() {
            "list" => {
                let db = latest_in_db(&url);
                assert_eq!(db.len(), 6, "the spec's six portfolios are evaluated");
                assert_eq!(
                    rows_shown(&step),
                    db,
                    "the page lists every portfolio with the database's latest value"
                );
                assert_eq!(step["sparklines"], 6);
            }
            "await-day" => {
                // Publish the next trading day while the job runs, and tell the page once
                // the database holds it.
                let last =
                    query(&url, "SELECT CAST(MAX(as_of) AS CHAR) FROM evaluations")[0][0].clone();
                let next =
                    run_ok(stockflow().args(["calendar", "--from", &last, "--to", "2024-12-31"]));
                new_day = String::from_utf8_lossy(&next.stdout)
                    .lines()
                    .nth(1)
                    .expect("a next trading day")
                    .to_string();
                let target = ends(&prices) + 24;
                backfill(&prices, &new_day, "1", "11");
                wait_committed(
                    &url,
                    &prices,
                    target,
                    Duration::from_secs(60),
                    Some(&mut job_child.0),
                );
                let deadline = Instant::now() + Duration::from_secs(60);
                while poll_number(
                    &url,
                    &format!("SELECT COUNT(*) FROM evaluations WHERE as_of = '{new_day}'"),
                ) < 6
                {
                    assert!(Instant::now() < deadline, "{new_day} evaluated within 60 s");
                    std::thread::sleep(Duration::from_millis(20));
                }
                writeln!(to_node, "{new_day}").expect("telling the page");
            }
            "live" => {
                let db = latest_in_db(&url);
                assert!(db.values().all(|(d, _)| *d == new_day));
                assert_eq!(
                    rows_shown(&step),
                    db,
                    "the new day, with the database's values"
                );
                assert_eq!(step["same_document"], true, "shown without a reload");
                assert_eq!(
                    step["stream_has_day"], true,
                    "the change stream shows the new day's diffs"
                );
                println!(
                    "the new day appeared on the page {} ms after the database held it",
                    step["elapsed_ms"]
                );
            }
            "portfolio" => {
                let out =
                    std::env::temp_dir().join(format!("console-report-{}", uuid::Uuid::new_v4()));
                run_ok(
                    stockflow()
                        .args([
                            "report",
                            "--investor",
                            "Inv1",
                            "--no-charts",
                            "--mysql-url",
                            &url,
                        ])
                        .arg("--out")
                        .arg(&out),
                );
                let file = std::fs::read_to_string(out.join("Inv1_P11_stats"))
                    .expect("the report's stats file");
                assert_eq!(
                    step["report"].as_str(),
                    Some(file.as_str()),
                    "the same figures as stockflow report"
                );
                let _ = std::fs::remove_dir_all(&out);
                let zoomed = step["zoomed"].as_str().expect("the zoomed window");
                assert_ne!(step["whole"], step["zoomed"]);
                assert!(zoomed.contains("log scale"), "{zoomed}");
                p11_before = step["latest"].as_str().expect("P11's latest").to_string();
            }
            "holdings" => {
                assert_eq!(
                    step["posts"].as_u64(),
                    Some(1),
                    "a double click published one change (the form waits for its answer)"
                );
                assert_eq!(step["submit_enabled_after"].as_bool(), Some(true));
                let record = query(
                    &url,
                    &format!(
                        "SELECT quantity FROM holding_records WHERE portfolio = 'P11' AND ticker = '{ticker}' AND from_day = '{from}'"
                    ),
                );
                assert_eq!(
                    record,
                    vec![vec![(qty + 100).to_string()]],
                    "the job applied the published record"
                );
                let db = latest_in_db(&url);
                let p11 = &db["P11"].1;
                assert_eq!(
                    step["latest"].as_str(),
                    Some(p11.as_str()),
                    "the page shows the restated value"
                );
                assert_ne!(
                    step["latest"].as_str(),
                    Some(p11_before.as_str()),
                    "the value changed"
                );
                assert!(
                    step["restated_badges"].as_u64().expect("a count") > 0,
                    "restated diffs marked"
                );
                assert!(
                    poll_number(&url, "SELECT COALESCE(MAX(restated), 0) FROM job_commits") > 30,
                    "a commit restated P11's days from {from} on"
                );
                let notice = step["notice"].as_str().expect("the notice");
                assert!(notice.contains("restated"), "{notice}");
            }
            "job" => {
                let payloads = step["payloads"].as_array().expect("payloads");
                assert_eq!(payloads.len(), 1);
                let text = payloads[0].as_str().expect("text");
                assert!(
                    text.contains("<script>window.__pwned=1</script>"),
                    "shown as text: {text}"
                );
                assert!(
                    text.contains("<U+202E>"),
                    "the override made visible: {text}"
                );
                assert!(
                    !text.contains('\u{202E}'),
                    "the override itself is not in the page"
                );
                assert_eq!(
                    step["pwned"],
                    serde_json::Value::Null,
                    "no script of the payload ran"
                );
                assert_eq!(
                    step["injected_elements"], 0,
                    "no element of the payload exists"
                );
                assert!(step["nodes"].as_array().expect("nodes").len() >= 10);
                assert!(step["partitions"].as_u64().expect("rows") >= 3);
                assert!(step["commits"].as_u64().expect("rows") >= 1);
                assert_eq!(step["freshness_chart"], 1);
            }
            "done" => {
                assert_eq!(
                    step["problems"],
                    serde_json::json!([]),
                    "no dialog, page error or console error"
                );
                break;
            }
            "error" => panic!("the browser script failed: {}", step["error"]),
            other => panic!("unknown step {other}"),
        }
        seen.push(name);
    }
    drop(to_node);
    let status = wait_exit(&mut node.0, Duration::from_secs(30));
    assert!(status.success());
    assert_eq!(
        seen,
        ["list", "await-day", "live", "portfolio", "holdings", "job"]
    );
    for f in SCREENSHOTS {
        let size = std::fs::metadata(shots.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 10_000, "screenshot {f} saved ({size} bytes)");
    }
    drop(job_child);
    assert_journal_matches(&url);
    drop_db(&url);
}

/// POST a holdings record → (status, JSON body).
fn post(base: &str, headers: &[(&str, &str)], body: &str) -> (u16, serde_json::Value) {
    let mut req = agent().post(&format!("{base}/api/holdings"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send(body).expect("the console answers");
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().expect("a body");
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

#[test]
fn every_endpoint_answers_with_its_shape_pages_and_errors() {
    let url = fresh_db("console_api");
    let (prices, holdings) = market_topics("console-api", (2, 1), "2024-01-02", "30", "5");
    produce_raw(&prices, "SE2", &["not json 1", "not json 2", "not json 3"]);
    run_ok(job(&prices, &holdings, &url).arg("--until-caught-up"));
    let read_only = console(&url, &prices, &holdings, &["--max-clients", "1"]);
    let base = read_only.base.as_str();

    // Pages and assets, with the security headers.
    let r = agent().get(&format!("{base}/")).call().expect("the page");
    assert_eq!(r.status().as_u16(), 200);
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("a CSP")
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    for path in [
        "/job",
        "/portfolios/P11",
        "/assets/app.js",
        "/assets/style.css",
    ] {
        assert_eq!(
            agent()
                .get(&format!("{base}{path}"))
                .call()
                .expect(path)
                .status()
                .as_u16(),
            200,
            "{path}"
        );
    }
    let (status, body) = get(base, "/nope");
    assert_eq!((status, body["fault"].as_str()), (404, Some("user")));

    // Another host name (a page of another site resolving its name to 127.0.0.1) is refused.
    let r = agent()
        .get(&format!("{base}/api/session"))
        .header("Host", "evil.example")
        .call()
        .expect("an answer");
    assert_eq!(r.status().as_u16(), 403);

    // Session.
    let (status, s) = get(base, "/api/session");
    assert_eq!(status, 200);
    assert_eq!(s["holdings_changes"], false);
    assert_eq!(s["csrf"].as_str().map(str::len), Some(64));
    assert_eq!(s["tickers"].as_array().map(Vec::len), Some(24));

    // The list: paging, search, figures as the database holds them.
    let (status, p) = get(base, "/api/portfolios?size=4&page=1");
    assert_eq!(status, 200);
    assert_eq!(
        (p["total"].as_u64(), p["page"].as_u64(), p["size"].as_u64()),
        (Some(6), Some(1), Some(4))
    );
    let ids: Vec<&str> = p["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["portfolio"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, ["P31", "P32"]);
    let db = latest_in_db(&url);
    let row = &p["rows"][0];
    assert_eq!(
        row["latest"]["value_shown"].as_str(),
        Some(db["P31"].1.as_str())
    );
    assert_eq!(row["latest"]["day"].as_str(), Some(db["P31"].0.as_str()));
    assert!(row["sparkline"]
        .as_str()
        .expect("an SVG")
        .starts_with("<svg"));
    let (_, found) = get(base, "/api/portfolios?q=inv2");
    let ids: Vec<&str> = found["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["portfolio"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, ["P21", "P22"], "search by investor");
    let (_, none) = get(base, "/api/portfolios?q=%25");
    assert_eq!(none["total"], 0, "a % searches for itself");
    assert_eq!(get(base, "/api/portfolios?size=0").0, 400);
    assert_eq!(get(base, "/api/portfolios?size=201").0, 400);

    // One portfolio.
    let (status, one) = get(base, "/api/portfolios/P21");
    assert_eq!(status, 200);
    assert_eq!(one["days"], 30);
    assert_eq!(one["investor"]["id"], "Inv2");
    assert!(one["report"]["text"]
        .as_str()
        .expect("the stats text")
        .starts_with("Inv2_P21_stats"));
    assert!(!one["yearly_max_change_days"]
        .as_array()
        .expect("days")
        .is_empty());
    assert_eq!(get(base, "/api/portfolios/P99").0, 404);
    assert_eq!(get(base, "/api/portfolios/P21?period=soon").0, 400);
    let (status, chart) = get(
        base,
        "/api/portfolios/P21/chart?log=true&from=2024-01-10&to=2024-01-31",
    );
    assert_eq!(status, 200);
    assert_eq!(
        (chart["log"].as_bool(), chart["from"].as_str()),
        (Some(true), Some("2024-01-10"))
    );
    assert!(chart["left"].as_i64() < chart["right"].as_i64());
    assert_eq!(
        get(
            base,
            "/api/portfolios/P21/chart?from=2024-01-31&to=2024-01-10"
        )
        .0,
        400
    );
    let mut csv = agent()
        .get(&format!("{base}/api/portfolios/P21/download?format=csv"))
        .call()
        .expect("csv");
    let text = csv.body_mut().read_to_string().expect("csv text");
    assert_eq!(text.lines().count(), 31, "a header and 30 days");
    assert!(
        text.starts_with("investor,portfolio,as_of,value,change,change_pct,value_f64"),
        "{text}"
    );
    let mut pq = agent()
        .get(&format!(
            "{base}/api/portfolios/P21/download?format=parquet"
        ))
        .call()
        .expect("parquet");
    let bytes = pq.body_mut().read_to_vec().expect("parquet bytes");
    assert_eq!(&bytes[..4], b"PAR1");
    assert_eq!(get(base, "/api/portfolios/P21/download?format=xlsx").0, 400);

    // The change stream and the job.
    let (_, ch) = get(base, "/api/changes?limit=5");
    assert_eq!(ch["changes"].as_array().map(Vec::len), Some(5));
    let last = ch["last_commit"].as_i64().expect("a commit number");
    assert!(last >= 1);
    assert!(ch["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .all(|c| c["diff"] == 1 && c["restated"] == false));
    let (status, j) = get(base, "/api/job");
    assert_eq!(status, 200);
    assert_eq!(
        j["lease"]["commit_seq"].as_i64(),
        Some(last),
        "the lease's commit is the journal's last"
    );
    let lag: i64 = j["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["lag"].as_i64().expect("a lag"))
        .sum();
    assert_eq!(lag, 0, "caught up");
    assert_eq!(j["partitions"].as_array().map(Vec::len), Some(3));
    assert!(j["graph"]["source"]
        .as_str()
        .expect("why no rates")
        .contains("--metrics-addr"));
    assert!(j["freshness_svg"]
        .as_str()
        .expect("an SVG")
        .starts_with("<svg"));

    // Sparklines of some portfolios (what a page fetches after commits touched its rows).
    let (status, sp) = get(base, "/api/sparklines?ids=P11,P32");
    assert_eq!(status, 200);
    assert!(sp["P11"].as_str().expect("an SVG").starts_with("<svg"));
    assert!(sp["P32"].as_str().expect("an SVG").starts_with("<svg"));
    let many = vec!["P11"; 201].join(",");
    assert_eq!(get(base, &format!("/api/sparklines?ids={many}")).0, 400);

    // Dead letters, paged newest first.
    let (_, d1) = get(base, "/api/dead-letters?size=2");
    assert_eq!(d1["total"], 3);
    let rows = d1["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["preview"], "not json 3");
    let before = d1["next_before"].as_i64().expect("a next page");
    let (_, d2) = get(base, &format!("/api/dead-letters?size=2&before={before}"));
    assert_eq!(d2["rows"][0]["preview"], "not json 1");
    assert_eq!(d2["next_before"], serde_json::Value::Null);

    // Live clients are capped (--max-clients 1).
    let mut first = agent()
        .get(&format!("{base}/api/events"))
        .call()
        .expect("events");
    assert_eq!(first.status().as_u16(), 200);
    let mut reader = BufReader::new(first.body_mut().as_reader());
    let mut line = String::new();
    reader.read_line(&mut line).expect("the first event");
    assert_eq!(line.trim(), "event: hello");
    let (status, body) = get(base, "/api/events");
    assert_eq!(status, 503, "{body}");
    drop(reader);

    // Writes: off without --allow-holdings-changes.
    let record = r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":7,"FROM":"2024-01-10"}"#;
    let (status, body) = post(
        base,
        &[
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", s["csrf"].as_str().expect("a token")),
        ],
        record,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("why")
        .contains("--allow-holdings-changes"));
    drop(read_only);

    let writable = console(&url, &prices, &holdings, &["--allow-holdings-changes"]);
    let base = writable.base.as_str();
    let (_, s) = get(base, "/api/session");
    let token = s["csrf"].as_str().expect("a token").to_string();
    let json = ("Content-Type", "application/json");
    let before = ends(&holdings);
    assert_eq!(post(base, &[json], record).0, 403, "no token");
    assert_eq!(
        post(
            base,
            &[json, ("X-CSRF-Token", "0".repeat(64).as_str())],
            record
        )
        .0,
        403,
        "a wrong token"
    );
    assert_eq!(
        post(
            base,
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-CSRF-Token", &token)
            ],
            record
        )
        .0,
        400,
        "a form's body"
    );
    assert_eq!(
        post(
            base,
            &[
                json,
                ("X-CSRF-Token", &token),
                ("Origin", "http://evil.example")
            ],
            record
        )
        .0,
        403,
        "another origin"
    );
    for (bad, why) in [
        (
            r#"{"PORTFOLIO":"P11","TICK":"NOPE","QTY":7,"FROM":"2024-01-10"}"#,
            "an unknown stock",
        ),
        (
            r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":-7,"FROM":"2024-01-10"}"#,
            "a negative quantity",
        ),
        (
            r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":7,"FROM":"2024-01-13"}"#,
            "a Saturday",
        ),
        (r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":7}"#, "no day"),
        ("<script>", "not JSON"),
    ] {
        let (status, body) = post(base, &[json, ("X-CSRF-Token", &token)], bad);
        assert_eq!(status, 422, "{why}: {body}");
        assert!(
            body["error"].as_str().expect("why").contains("contract"),
            "{why}: {body}"
        );
    }
    assert_eq!(ends(&holdings), before, "nothing refused was published");
    let (status, body) = post(base, &[json, ("X-CSRF-Token", &token)], record);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["published"]["quantity"], 7);
    assert_eq!(ends(&holdings), before + 1);
    let last = read_topic(&holdings).pop().expect("the record");
    assert_eq!(last.key.as_deref(), Some(&b"P11/IBM"[..]));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(last.payload.as_deref().expect("a payload"))
            .expect("JSON"),
        serde_json::json!({"PORTFOLIO":"P11","TICK":"IBM","QTY":7,"FROM":"2024-01-10"})
    );
    assert_eq!(body["offset"].as_i64(), Some(last.position.offset));
    drop(writable);
    drop_db(&url);

    // A database that does not exist (yet): the pages say what to run.
    let missing = fresh_db("console_none");
    let c = console(&missing, &prices, &holdings, &[]);
    let (status, body) = get(&c.base, "/api/portfolios");
    assert_eq!(status, 503, "{body}");
    let why = body["error"].as_str().expect("why");
    assert!(why.contains("stockflow db init"), "{why}");
    assert_eq!(body["fault"], "user");
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    for args in [
        vec!["calendar", "--from", "1990-01-01", "--to", "2090-12-31"],
        vec![
            "--output",
            "json",
            "calendar",
            "--from",
            "1990-01-01",
            "--to",
            "2090-12-31",
        ],
    ] {
        let mut child = stockflow()
            .args(&args)
            .env("STOCKFLOW_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stockflow");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("a first line");
        assert!(!first.is_empty());
        drop(out); // `| head -1`
        let status = wait_exit(&mut child, Duration::from_secs(30));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
            .expect("stderr");
        assert!(status.success(), "{args:?}: {status} {err}");
        assert_eq!(err, "", "{args:?}: nothing on stderr");
    }
}

#[test]
fn the_console_reads_with_an_account_that_cannot_write() {
    let url = fresh_db("console_reader");
    run_ok(stockflow().args(["db", "init", "--mysql-url", &url]));
    // The stack's read-only account reads the tables and writes nothing.
    let reader =
        mysql::OptsBuilder::from_opts(mysql_opts(&reader_url(&url))).pass(Some(reader_password()));
    let mut c = mysql::Conn::new(reader).expect("the read-only account connects");
    use mysql::prelude::Queryable;
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM Portfolios")
        .expect("it reads");
    assert_eq!(n, Some(6));
    match c.query_drop("DELETE FROM Portfolios") {
        Err(mysql::Error::MySqlError(e)) => assert_eq!(e.code, 1142, "{e}"),
        other => panic!("the read-only account deleted rows: {other:?}"),
    }
    // The console serves with it (every other console test runs so), and says when its
    // account may write.
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = stockflow()
        .args(["console", "--addr", &addr, "--mysql-url", &url])
        .env("STOCKFLOW_CONSOLE_MYSQL_PASSWORD", mysql_password())
        .env("STOCKFLOW_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the console");
    let lines = lines_of(child.stdout.take().expect("its stdout"));
    lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the console serves");
    let _ = child.kill();
    let out = child.wait_with_output().expect("its stderr");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the console's MySQL account may write"),
        "{err}"
    );
    drop_db(&url);
}
