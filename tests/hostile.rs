//! No record can stop the job: a hostile corpus produced byte for byte into the real broker,
//! a poison record before a normal day, and a row the table refuses.

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

mod common;

use common::*;

fn job(prices: &str, holdings: &str, url: &str) -> std::process::Command {
    let mut c = stockflow();
    c.args(["run", "--output", "json", "--until-caught-up"])
        .args(["--prices-topic", prices, "--holdings-topic", holdings])
        .args(["--mysql-url", url]);
    c
}

/// (payload, expected dead-letter code or "ok").
fn tick_corpus() -> Vec<(Vec<u8>, &'static str)> {
    let s = |t: &str| t.as_bytes().to_vec();
    vec![
        (Vec::new(), "empty_payload"),
        (vec![b'x'; 100_000], "payload_too_large"),
        (vec![0x00, 0xff, 0x10, 0x80, 0xfe, 0x7b], "not_utf8"),
        (
            b"\xff\xfe{\"TICK\":\"IBM\",\"PRICE\":\"1.00\",\"TS\":\"2001-01-03\"}".to_vec(),
            "not_utf8",
        ),
        (
            b"{\"TICK\":\"IBM\xc3\x28\",\"PRICE\":\"1.00\",\"TS\":\"2001-01-03\"}".to_vec(),
            "not_utf8",
        ),
        (s(r#"{"TICK":"IBM","PRICE":"#), "malformed_json"),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"2001-01-03"} trailing"#),
            "malformed_json",
        ),
        (s("[1,2,3]"), "not_an_object"),
        (s(r#""IBM""#), "not_an_object"),
        (s("null"), "not_an_object"),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","PRICE":"2.00","TS":"2001-01-03"}"#),
            "duplicate_field",
        ),
        (s(r#"{"PRICE":"1.00","TS":"2001-01-03"}"#), "missing_field"),
        (s(r#"{"TICK":"IBM","TS":"2001-01-03"}"#), "missing_field"),
        (s(r#"{"TICK":"IBM","PRICE":"1.00"}"#), "missing_field"),
        (
            s(r#"{"TICK":"IBM","PRICE":null,"TS":"2001-01-03"}"#),
            "missing_field",
        ),
        (
            s(r#"{"TICK":12,"PRICE":"1.00","TS":"2001-01-03"}"#),
            "wrong_type",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"2001-01-03","EXCHANGE":1}"#),
            "wrong_type",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"abc","TS":"2001-01-03"}"#),
            "non_numeric_price",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"9_7.63","TS":"2001-01-03"}"#),
            "non_numeric_price",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":" 97.63","TS":"2001-01-03"}"#),
            "non_numeric_price",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":true,"TS":"2001-01-03"}"#),
            "non_numeric_price",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"NaN","TS":"2001-01-03"}"#),
            "non_numeric_price",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"Infinity","TS":"2001-01-03"}"#),
            "non_numeric_price",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"0x10","TS":"2001-01-03"}"#),
            "non_numeric_price",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"-4.00","TS":"2001-01-03"}"#),
            "non_positive_price",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":0,"TS":"2001-01-03"}"#),
            "non_positive_price",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":97.630000000000000001,"TS":"2001-01-03"}"#),
            "too_precise_price",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.0000001","TS":"2001-01-03"}"#),
            "too_precise_price",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"100000000000000000000000000","TS":"2001-01-03"}"#),
            "price_out_of_range",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":1e400,"TS":"2001-01-03"}"#),
            "price_out_of_range",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1000000000","TS":"2001-01-03"}"#),
            "price_out_of_range",
        ),
        (
            s(r#"{"TICK":"XYZ","PRICE":"1.00","TS":"2001-01-03"}"#),
            "unknown_ticker",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"2001-1-3"}"#),
            "bad_date",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"2001-02-30"}"#),
            "bad_date",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"10000-01-03"}"#),
            "bad_date",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"2001-01-03T25:00"}"#),
            "bad_date",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":20010103}"#),
            "bad_date",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"1999-12-31"}"#),
            "before_market",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"1970-01-01T00:00:00Z"}"#),
            "before_market",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"2001-01-06"}"#),
            "not_a_trading_day",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"2001-01-01"}"#),
            "not_a_trading_day",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"2001-01-03","EXCHANGE":"NYSE"}"#),
            "unknown_exchange",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"2001-01-03","EXCHANGE":"SE2"}"#),
            "wrong_exchange",
        ),
        // Accepted variants: they correct closes of the baseline (newer versions win).
        (
            s(r#"{"TICK":"ibm","PRICE":256.5,"TS":"2001-01-03T17:30:00"}"#),
            "ok",
        ),
        (
            s(r#"{"TICK":"ORKL","PRICE":"150.25","TS":"2001-01-04 09:00:00.5"}"#),
            "ok",
        ),
        (
            s(r#"{"TICK":"VZ","PRICE":4.65e1,"TS":"2001-01-05T10:00:00+02:00","EXCHANGE":"se2"}"#),
            "ok",
        ),
        (
            s(
                r#"{"TICK":"AAPL","PRICE":"227.480000","TS":"2001-01-08","EXCHANGE":null,"NOTE":"x"}"#,
            ),
            "ok",
        ),
        (
            s(r#"{"TICK":"MSFT","PRICE":97.630000000000000000,"TS":"2001-01-02"}"#),
            "ok",
        ),
        (
            s(r#"{"TICK":"INTC","PRICE":"999999999.999999","TS":"2001-01-02"}"#),
            "ok",
        ),
        (
            s(r#"{"TICK":"IBM","PRICE":"1.00","TS":"2090-01-03"}"#),
            "ok",
        ),
    ]
}

fn holding_corpus() -> Vec<(Vec<u8>, &'static str)> {
    let s = |t: &str| t.as_bytes().to_vec();
    vec![
        (Vec::new(), "empty_payload"),
        (vec![0xc3, 0x28, 0xa0, 0xa1], "not_utf8"),
        (
            s(r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":-5,"FROM":"2001-01-03"}"#),
            "quantity_out_of_range",
        ),
        (
            s(r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":1.5,"FROM":"2001-01-03"}"#),
            "bad_quantity",
        ),
        (
            s(r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":1000000001,"FROM":"2001-01-03"}"#),
            "quantity_out_of_range",
        ),
        (
            s(r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":5,"FROM":"2001-01-06"}"#),
            "not_a_trading_day",
        ),
        (
            s(r#"{"PORTFOLIO":"P99","TICK":"IBM","QTY":5,"FROM":"2001-01-03"}"#),
            "unknown_portfolio",
        ),
        (
            s(r#"{"PORTFOLIO":"P11","TICK":"XYZ","QTY":5,"FROM":"2001-01-03"}"#),
            "unknown_ticker",
        ),
        (
            s(r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":5,"QTY":6,"FROM":"2001-01-03"}"#),
            "duplicate_field",
        ),
        (
            s(r#"{"PORTFOLIO":"P12","TICK":"VZ","QTY":"3000","FROM":"2001-01-04"}"#),
            "ok",
        ),
        (
            s(r#"{"PORTFOLIO":"P21","TICK":"HPQ","QTY":1000000000,"FROM":"2001-01-05"}"#),
            "ok",
        ),
    ]
}

fn state_tables(url: &str) -> Vec<(String, Vec<Vec<String>>)> {
    tables(url)
        .into_iter()
        .filter(|(name, _)| name != "dead_letters")
        .collect()
}

#[test]
fn a_hostile_corpus_is_accounted_for_record_by_record() {
    let (prices, holdings) = market_topics("hostile", (4, 2), "2001-01-01", "5", "2");
    let ticks = tick_corpus();
    let records = holding_corpus();
    assert!(ticks.len() + records.len() >= 50);
    let baseline = ends(&prices) + ends(&holdings);
    produce_raw(
        &prices,
        "hostile",
        &ticks.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
    );
    produce_raw(
        &holdings,
        "hostile",
        &records.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
    );
    let url = fresh_db("hostile");
    let out = run_ok(&mut job(&prices, &holdings, &url));
    let s = summary_of(&out);
    let produced = baseline + (ticks.len() + records.len()) as i64;
    let accounted = s["ticks"].as_i64().expect("ticks counted")
        + s["holdings"].as_i64().expect("holdings counted")
        + s["dead_letters"].as_i64().expect("dead letters counted");
    assert_eq!(
        accounted, produced,
        "ticks + holdings + dead letters = records: {s}"
    );
    // Every rejection has its code, in the order produced (one partition: the key is fixed).
    for (topic, corpus) in [(&prices, &ticks), (&holdings, &records)] {
        let got: Vec<String> = query(
            &url,
            &format!("SELECT code FROM dead_letters WHERE topic = '{topic}' ORDER BY kafka_offset"),
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
        let want: Vec<&str> = corpus
            .iter()
            .map(|(_, c)| *c)
            .filter(|c| *c != "ok")
            .collect();
        assert_eq!(got, want, "{topic}");
    }
    // The 100 kB payload is kept cut, with its length and hash.
    let big = query(
        &url,
        "SELECT LENGTH(payload), payload_len, LENGTH(payload_sha256) FROM dead_letters WHERE code = 'payload_too_large'",
    );
    assert_eq!(big[0], ["65536", "100000", "64"]);

    // The reference: the same baseline and only the valid records, in the same order.
    let (ref_prices, ref_holdings) = market_topics("hostile-ref", (4, 2), "2001-01-01", "5", "2");
    let valid = |c: &[(Vec<u8>, &str)]| -> Vec<Vec<u8>> {
        c.iter()
            .filter(|(_, code)| *code == "ok")
            .map(|(p, _)| p.clone())
            .collect()
    };
    produce_raw(&ref_prices, "hostile", &valid(&ticks));
    produce_raw(&ref_holdings, "hostile", &valid(&records));
    let reference = fresh_db("hostile_ref");
    run_ok(&mut job(&ref_prices, &ref_holdings, &reference));
    assert_eq!(state_tables(&url), state_tables(&reference));
    assert_eq!(
        query(&reference, "SELECT COUNT(*) FROM dead_letters")[0][0],
        "0"
    );
    // The accepted corrections took effect (INTC at the price ceiling on 2001-01-02).
    let intc = query(
        &url,
        "SELECT CAST(price AS CHAR) FROM prices WHERE ticker = 'INTC' AND as_of = '2001-01-02'",
    );
    assert_eq!(intc[0][0], "999999999.999999");
    drop_db(&url);
    drop_db(&reference);
}

#[test]
fn a_poison_record_before_a_normal_day_stops_nothing() {
    let (prices, holdings) = market_topics("poison", (4, 2), "2001-03-01", "3", "7");
    produce_raw(
        &prices,
        "IBM",
        &[r#"{"TICK":"IBM","PRICE":"100000000000000000000000000","TS":"2001-03-06"}"#],
    );
    backfill(&prices, "2001-03-06", "1", "7");
    let url = fresh_db("poison");
    run_ok(&mut job(&prices, &holdings, &url));
    let day4 = query(
        &url,
        "SELECT COUNT(*) FROM evaluations WHERE as_of = '2001-03-06'",
    );
    assert_eq!(day4[0][0], "6", "the normal day is evaluated");
    let letters = || {
        query(
            &url,
            "SELECT code, COUNT(*) FROM dead_letters GROUP BY code",
        )
    };
    assert_eq!(letters(), [["price_out_of_range", "1"]]);
    // A restart, and a replay from the start: no second dead letter for the same offset.
    run_ok(&mut job(&prices, &holdings, &url));
    run_ok(job(&prices, &holdings, &url).args(["--from", "earliest"]));
    assert_eq!(letters(), [["price_out_of_range", "1"]]);
    drop_db(&url);
}

#[test]
fn a_row_the_table_refuses_is_recorded_and_the_rest_commits() {
    let (prices, holdings) = market_topics("refuse", (2, 1), "2001-05-02", "4", "3");
    let url = fresh_db("refuse");
    run_ok(stockflow().args(["db", "init", "--mysql-url", &url]));
    // The table refuses one row (as a narrower column or a constraint would).
    {
        use mysql::prelude::Queryable;
        let mut c = mysql::Conn::new(common::mysql_opts(&url)).unwrap_or_else(|e| panic!("{e}"));
        c.query_drop(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON evaluations FOR EACH ROW \
             IF NEW.portfolio = 'P12' AND NEW.as_of = '2001-05-03' THEN \
             SIGNAL SQLSTATE '22003' SET MESSAGE_TEXT = 'value out of range for this test', MYSQL_ERRNO = 1264; \
             END IF",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = run_ok(&mut job(&prices, &holdings, &url));
    let s = summary_of(&out);
    assert_eq!(s["sink"]["rows_refused"], 1, "{s}");
    assert_eq!(
        query(&url, "SELECT COUNT(*) FROM evaluations")[0][0],
        (4 * 6 - 1).to_string()
    );
    let refused = query(
        &url,
        "SELECT portfolio, CAST(as_of AS CHAR), detail FROM evaluation_issues WHERE kind = 'refused'",
    );
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0][..2], ["P12", "2001-05-03"]);
    assert!(
        refused[0][2].contains("out of range for this test"),
        "{:?}",
        refused[0]
    );
    assert!(
        refused[0][2].contains("\"value\""),
        "the row's values are kept: {:?}",
        refused[0]
    );
    // The rest of the batch, and the state and offsets, committed.
    assert_eq!(
        query(&url, "SELECT COUNT(*) FROM prices")[0][0],
        (4 * 24).to_string()
    );
    let status = run_ok(stockflow().args([
        "status",
        "--mysql-url",
        &url,
        "--prices-topic",
        &prices,
        "--holdings-topic",
        &holdings,
    ]));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("1 refused"), "{text}");
    drop_db(&url);
}

#[test]
fn status_lists_incomplete_days_with_their_missing_stocks() {
    let (prices, holdings) = market_topics("incomplete", (2, 1), "2001-06-01", "2", "3");
    // A third day with SE1's closes only.
    run_ok(stockflow().args([
        "exchange",
        "se1",
        "--backfill",
        "--from",
        "2001-06-06",
        "--days",
        "1",
        "--seed",
        "3",
        "--topic",
        &prices,
    ]));
    let url = fresh_db("incomplete");
    run_ok(&mut job(&prices, &holdings, &url));
    let out = run_ok(stockflow().args([
        "--output",
        "json",
        "status",
        "--mysql-url",
        &url,
        "--prices-topic",
        &prices,
        "--holdings-topic",
        &holdings,
    ]));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let issues = v["issues"]
        .as_array()
        .cloned()
        .expect("status lists issues");
    // Every portfolio needs both exchanges; P21 holds SE2 stocks only, so it has no input at
    // all for the day yet (nothing to list), the five others are incomplete.
    assert_eq!(issues.len(), 5, "{v}");
    assert!(issues.iter().all(|i| i["portfolio"] != "P21"));
    let p11 = issues
        .iter()
        .find(|i| i["portfolio"] == "P11")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(p11["kind"], "incomplete");
    assert_eq!(p11["date"], "2001-06-06");
    assert_eq!(
        p11["missing"],
        serde_json::json!(["AVGO"]),
        "P11 holds one SE2 stock: {p11}"
    );
    drop_db(&url);
}
