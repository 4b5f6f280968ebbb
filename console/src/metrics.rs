//! The job's metrics endpoint (`stockflow run --metrics-addr`), scraped every second when the
//! console is given it: the dataflow's operators with their records per second.

use crate::view::rate;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// An operator of the job's dataflow as the graph shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: &'static str,
    pub label: &'static str,
    /// What its rate counts.
    pub unit: &'static str,
    pub column: u8,
    pub row: u8,
    pub total: Option<f64>,
    pub per_second: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// Where the figures come from, or why there are none.
    pub source: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<(&'static str, &'static str)>,
    pub sampled_ago_s: Option<f64>,
}

/// The job's dataflow (dataflow/src/graph/mod.rs and the job around it): id, label, unit,
/// column, and the metric series (name, label value) summed for its figure.
type Spec = (
    &'static str,
    &'static str,
    &'static str,
    (u8, u8),
    &'static [(&'static str, &'static str)],
);

const NODES: [Spec; 10] = [
    (
        "prices",
        "StockExchange",
        "ticks",
        (0, 0),
        &[("stockflow_ticks_total", "")],
    ),
    (
        "holdings",
        "holdings",
        "records",
        (0, 1),
        &[("stockflow_holdings_total", "")],
    ),
    (
        "dead",
        "dead letters",
        "records",
        (1, 2),
        &[("stockflow_dead_letters_total", "")],
    ),
    (
        "latest_close",
        "LatestClose",
        "changes",
        (1, 0),
        &[("stockflow_operator_records_total", "LatestClose")],
    ),
    (
        "latest_holding",
        "LatestHolding",
        "changes",
        (1, 1),
        &[("stockflow_operator_records_total", "LatestHolding")],
    ),
    (
        "positions",
        "Positions",
        "changes",
        (2, 1),
        &[("stockflow_operator_records_total", "Positions")],
    ),
    (
        "contribute",
        "Contribute",
        "changes",
        (3, 0),
        &[("stockflow_operator_records_total", "Contribute")],
    ),
    (
        "days",
        "Days",
        "rows",
        (4, 1),
        &[("stockflow_operator_records_total", "Days")],
    ),
    (
        "sink",
        "MySQL sink",
        "rows",
        (5, 1),
        &[
            ("stockflow_sink_rows_upserted_total", ""),
            ("stockflow_sink_rows_deleted_total", ""),
        ],
    ),
    (
        "commits",
        "commits",
        "transactions",
        (6, 1),
        &[("stockflow_sink_transactions_total", "")],
    ),
];

const EDGES: [(&str, &str); 10] = [
    ("prices", "latest_close"),
    ("prices", "dead"),
    ("holdings", "latest_holding"),
    ("holdings", "dead"),
    ("latest_holding", "positions"),
    ("latest_close", "contribute"),
    ("positions", "contribute"),
    ("positions", "days"),
    ("contribute", "days"),
    ("days", "sink"),
];

/// One scrape: (metric, operator label) → value summed over the other labels.
pub type Sample = BTreeMap<(String, String), f64>;

/// Parses the Prometheus text format.
pub fn parse(text: &str) -> Sample {
    let mut out = Sample::new();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
        return out;
    };
    for s in scrape.samples {
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let op = s.labels.get("operator").unwrap_or("").to_string();
        *out.entry((s.metric, op)).or_default() += v;
    }
    out
}

fn figure(sample: &Sample, series: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for (m, op) in series {
        if let Some(v) = sample.get(&(m.to_string(), op.to_string())) {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// The graph from the last two samples.
pub fn graph(
    source: String,
    prev: Option<&(Instant, Sample)>,
    cur: Option<&(Instant, Sample)>,
) -> Graph {
    let nodes = NODES
        .iter()
        .map(|(id, label, unit, (column, row), series)| {
            let total = cur.and_then(|(_, s)| figure(s, series));
            let per_second = match (prev, cur) {
                (Some((t0, s0)), Some((t1, s1))) => figure(s0, series)
                    .zip(figure(s1, series))
                    .map(|(a, b)| rate(a, b, t1.duration_since(*t0).as_secs_f64())),
                _ => None,
            };
            Node {
                id,
                label,
                unit,
                column: *column,
                row: *row,
                total,
                per_second,
            }
        })
        .collect();
    Graph {
        source,
        nodes,
        edges: EDGES.to_vec(),
        sampled_ago_s: cur.map(|(t, _)| t.elapsed().as_secs_f64()),
    }
}

/// Scrapes `url` every second into `samples` (the latest two) until the process ends.
pub fn scrape_forever(url: String, samples: std::sync::Arc<std::sync::Mutex<Samples>>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    loop {
        let got = agent
            .get(&url)
            .call()
            .map_err(|e| e.to_string())
            .and_then(|mut r| r.body_mut().read_to_string().map_err(|e| e.to_string()));
        if let Ok(mut s) = samples.lock() {
            match got {
                Ok(text) => {
                    s.prev = s.cur.take();
                    s.cur = Some((Instant::now(), parse(&text)));
                    s.error = None;
                }
                Err(e) => s.error = Some(e),
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[derive(Debug, Default)]
pub struct Samples {
    pub prev: Option<(Instant, Sample)>,
    pub cur: Option<(Instant, Sample)>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE stockflow_ticks_total counter\nstockflow_ticks_total 100\n\
        # TYPE stockflow_operator_records_total counter\n\
        stockflow_operator_records_total{operator=\"Days\"} 40\n\
        stockflow_operator_records_total{operator=\"Positions\"} 7\n\
        stockflow_sink_rows_upserted_total 30\nstockflow_sink_rows_deleted_total 2\n";

    #[test]
    fn operators_and_rates_from_two_scrapes() {
        let t0 = Instant::now();
        let a = (t0, parse(TEXT));
        let b = (
            t0 + Duration::from_secs(2),
            parse(&TEXT.replace(" 100", " 140").replace(" 40", " 60")),
        );
        let g = graph("test".into(), Some(&a), Some(&b));
        let node = |id: &str| g.nodes.iter().find(|n| n.id == id).expect("a node");
        assert_eq!(node("prices").total, Some(140.0));
        assert_eq!(node("prices").per_second, Some(20.0));
        assert_eq!(node("days").per_second, Some(10.0));
        assert_eq!(node("sink").total, Some(32.0));
        assert_eq!(node("contribute").total, None, "not in the scrape");
        assert!(
            g.edges
                .iter()
                .all(|(a, b)| g.nodes.iter().any(|n| n.id == *a)
                    && g.nodes.iter().any(|n| n.id == *b))
        );
    }
}
