//! `stockflow report` on a small hand-filled database, and on the pipeline's own output.

// Tests say why they expect a value; clippy.toml allows it in #[test] functions only.
#![allow(clippy::expect_used)]

mod common;

use common::*;

/// investor, portfolio, as_of, nav, change, change %
type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
);

fn insert_rows(url: &str, rows: &[Row<'_>]) {
    use mysql::prelude::Queryable;
    let mut conn = mysql::Conn::new(common::mysql_opts(url)).unwrap_or_else(|e| panic!("{e}"));
    conn.exec_batch(
        "INSERT INTO evaluations (investor, portfolio, as_of, nav, nav_change, nav_change_pct) VALUES (?, ?, ?, ?, ?, ?)",
        rows.iter().copied(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

fn sample_std(v: &[f64]) -> f64 {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

fn close(a: &serde_json::Value, b: f64) -> bool {
    a.as_f64().is_some_and(|x| (x - b).abs() < 1e-6)
}

#[test]
fn the_five_items_match_hand_computed_values() {
    let url = fresh_db("report");
    run_ok(stockflow().args(["db", "init", "--mysql-url", &url]));
    let p11 = [
        ("Inv1", "P11", "2023-12-28", "100.00", None, None),
        (
            "Inv1",
            "P11",
            "2023-12-29",
            "110.00",
            Some("10.00"),
            Some("10.000000"),
        ),
        (
            "Inv1",
            "P11",
            "2024-01-02",
            "99.00",
            Some("-11.00"),
            Some("-10.000000"),
        ),
        (
            "Inv1",
            "P11",
            "2024-01-03",
            "120.00",
            Some("21.00"),
            Some("21.212121"),
        ),
        (
            "Inv1",
            "P11",
            "2024-02-01",
            "90.00",
            Some("-30.00"),
            Some("-25.000000"),
        ),
        ("Inv1", "P12", "2024-01-02", "50.00", None, None),
        (
            "Inv1",
            "P12",
            "2024-01-03",
            "55.00",
            Some("5.00"),
            Some("10.000000"),
        ),
        ("Inv2", "P21", "2024-01-02", "7.00", None, None),
    ];
    insert_rows(&url, &p11);
    let out_dir = std::env::temp_dir().join(format!("stockflow-report-{}", uuid::Uuid::new_v4()));
    let out = run_ok(
        stockflow()
            .args([
                "report",
                "--investor",
                "Inv1",
                "--period",
                "2024..2024",
                "--format",
                "json",
                "--no-charts",
            ])
            .arg("--out")
            .arg(&out_dir)
            .args(["--mysql-url", &url]),
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let ps = v["stats"]["portfolios"]
        .as_array()
        .cloned()
        .expect("the report lists portfolios");
    assert_eq!(ps.len(), 2, "Inv1 only");
    let p = &ps[0];
    assert_eq!(p["portfolio"], "P11");
    // 1. whole history
    assert_eq!(
        p["overall"]["max_change"][0], "21.00",
        "exact money, as text"
    );
    assert_eq!(p["overall"]["max_change"][1], "2024-01-03");
    assert_eq!(p["overall"]["min_change"][0], "-30.00");
    assert_eq!(p["overall"]["min_change"][1], "2024-02-01");
    assert_eq!(p["overall"]["max_change_pct"][0], "21.212121");
    assert_eq!(p["overall"]["min_change_pct"][0], "-25.00");
    // 2. per year (the first day's NULL change is not a change)
    let years = p["yearly"].as_array().cloned().expect("yearly figures");
    assert_eq!(years.len(), 2);
    assert_eq!(years[0][0], 2023);
    assert_eq!(years[0][1]["max_change"][0], "10.00");
    assert_eq!(years[0][1]["min_change"][0], "10.00");
    assert_eq!(years[1][1]["max_change"][0], "21.00");
    assert_eq!(years[1][1]["min_change_pct"][0], "-25.00");
    // 3. whole history, sample standard deviation
    let all = [100.0, 110.0, 99.0, 120.0, 90.0];
    assert!(close(
        &p["evaluation"]["mean"],
        all.iter().sum::<f64>() / 5.0
    ));
    assert!(close(&p["evaluation"]["std"], sample_std(&all)));
    // 4. the period
    let in_period = [99.0, 120.0, 90.0];
    assert!(close(&p["period"]["mean"], 103.0));
    assert!(close(&p["period"]["std"], sample_std(&in_period)));
    // 5. months, most recent first
    let months = p["monthly"].as_array().cloned().expect("monthly figures");
    let got: Vec<(i64, i64, f64)> = months
        .iter()
        .map(|m| {
            (
                m[0][0].as_i64().unwrap_or(0),
                m[0][1].as_i64().unwrap_or(0),
                m[1].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(2024, 2, 90.0), (2024, 1, 109.5), (2023, 12, 105.0)]
    );

    // Files: the course's names, people's format.
    let text =
        std::fs::read_to_string(out_dir.join("Inv1_P11_stats")).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("-30.00  on 2024-02-01"), "{text}");
    assert!(
        text.contains("2024-01") && text.contains("109.50"),
        "{text}"
    );
    assert!(out_dir.join("Inv1_P12_stats").exists());
    assert!(!out_dir.join("Inv2_P21_stats").exists());
    let csv = std::fs::read_to_string(out_dir.join("stats.csv")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        csv.starts_with("investor,portfolio,item,scope,metric,value,exact,day"),
        "{csv}"
    );
    assert!(
        std::fs::metadata(out_dir.join("stats.parquet"))
            .map(|m| m.len())
            .unwrap_or(0)
            > 0
    );

    // Clear errors.
    let unknown = stockflow()
        .args(["report", "--investor", "Inv9", "--mysql-url", &url])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown investor \"Inv9\""));
    let empty = stockflow()
        .args(["report", "--investor", "Inv3", "--mysql-url", &url])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("no evaluations"),
        "{}",
        String::from_utf8_lossy(&empty.stderr)
    );
    let no_period = stockflow()
        .args([
            "report",
            "--all",
            "--period",
            "2010..2012",
            "--no-charts",
            "--mysql-url",
            &url,
        ])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    // An empty period is a warning: everything else is written, exit 0.
    assert!(no_period.status.success());
    assert!(String::from_utf8_lossy(&no_period.stderr)
        .contains("no evaluations in the period 2010..2012"));
    let text =
        std::fs::read_to_string(out_dir.join("Inv1_P11_stats")).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("no evaluation in this period"), "{text}");
    assert!(text.contains("-30.00  on 2024-02-01"), "{text}");
    let down = stockflow()
        .args([
            "report",
            "--all",
            "--mysql-url",
            "mysql://stockflow:stockflow@127.0.0.1:1/InvestorsDB",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot read InvestorsDB"));
    let _ = std::fs::remove_dir_all(out_dir);
    drop_db(&url);
}

#[test]
fn the_pipelines_output_gives_six_files_and_charts() {
    let (prices, holdings) = market_topics("report", (2, 1), "2021-01-04", "60", "6107");
    let url = fresh_db("report_e2e");
    run_ok(stockflow().args([
        "run",
        "--until-caught-up",
        "--prices-topic",
        &prices,
        "--holdings-topic",
        &holdings,
        "--mysql-url",
        &url,
    ]));
    let out_dir =
        std::env::temp_dir().join(format!("stockflow-report-e2e-{}", uuid::Uuid::new_v4()));
    let out = run_ok(
        stockflow()
            .args(["report", "--all", "--mysql-url", &url])
            .arg("--out")
            .arg(&out_dir),
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    for name in [
        "Inv1_P11", "Inv1_P12", "Inv2_P21", "Inv2_P22", "Inv3_P31", "Inv3_P32",
    ] {
        let stats = out_dir.join(format!("{name}_stats"));
        let text =
            std::fs::read_to_string(&stats).unwrap_or_else(|e| panic!("{}: {e}", stats.display()));
        assert!(text.contains("60 evaluated days"), "{text}");
        assert!(summary.contains(&name[5..]), "{summary}");
        for chart in ["value", "monthly"] {
            let png = std::fs::read(out_dir.join(format!("{name}_{chart}.png")))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} {chart} is a PNG");
            assert!(png.len() > 10_000, "{name} {chart}: {} bytes", png.len());
        }
    }
    let _ = std::fs::remove_dir_all(out_dir);
    drop_db(&url);
}
