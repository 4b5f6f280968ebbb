//! `--metrics-addr`: Prometheus metrics of a running job. Everything is recorded through the
//! `metrics` facade (the sink records its commit and publish→commit latencies as histograms);
//! the `metrics-exporter-prometheus` recorder renders the exposition format, and a small HTTP
//! thread serves it. The job's counters (atomics shared with the run summary) and the
//! per-partition lag are brought up to date at each scrape.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use stockflow_dataflow::job::JobCounters;
use stockflow_transport::Log;

pub struct Sources {
    pub job: Arc<JobCounters>,
    pub log: Arc<dyn Log>,
    pub topics: Vec<String>,
}

/// Latency buckets (seconds): from a millisecond to a minute.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("stockflow_ticks_total", "Valid ticks consumed.");
    describe_counter!(
        "stockflow_holdings_total",
        "Valid holding records consumed."
    );
    describe_counter!(
        "stockflow_dead_letters_total",
        "Records rejected (dead letters)."
    );
    describe_counter!(
        "stockflow_source_errors_total",
        "Log read errors (retried with backoff)."
    );
    describe_counter!(
        "stockflow_evaluations_inserted_total",
        "Evaluation rows inserted by committed batches."
    );
    describe_counter!(
        "stockflow_evaluations_retracted_total",
        "Evaluation rows retracted by committed batches."
    );
    describe_counter!(
        "stockflow_timestamps_committed_total",
        "Batches (completed timestamps) committed."
    );
    describe_gauge!("stockflow_frontier", "The last committed timestamp.");
    describe_gauge!(
        "stockflow_unevaluated_days",
        "Portfolio-days with inputs but no evaluation (incomplete or overflow)."
    );
    describe_gauge!(
        "stockflow_partition_lag",
        "Records in the partition not yet committed by the job."
    );
    describe_counter!(
        "stockflow_sink_transactions_total",
        "MySQL transactions committed."
    );
    describe_counter!(
        "stockflow_sink_rows_upserted_total",
        "Evaluation rows inserted or updated in MySQL."
    );
    describe_counter!(
        "stockflow_sink_rows_deleted_total",
        "Evaluation rows deleted from MySQL."
    );
    describe_counter!(
        "stockflow_sink_rows_refused_total",
        "Evaluation rows the table refused (recorded in evaluation_issues)."
    );
    describe_counter!(
        "stockflow_sink_state_rows_total",
        "Rows of the job's state (prices, holding records) written."
    );
    describe_counter!(
        "stockflow_sink_retries_total",
        "Batches retried after a MySQL failure."
    );
    describe_histogram!(
        "stockflow_sink_commit_seconds",
        Unit::Seconds,
        "Time of one batch's MySQL transaction."
    );
    describe_histogram!(
        "stockflow_publish_to_commit_seconds",
        Unit::Seconds,
        "From the newest record's log timestamp to its batch's commit."
    );
}

/// Brings the job's counters and the lag up to date, then renders.
pub fn render(s: &Sources, handle: &PrometheusHandle) -> String {
    let j = &s.job;
    metrics::counter!("stockflow_ticks_total").absolute(j.ticks.load(Relaxed));
    metrics::counter!("stockflow_holdings_total").absolute(j.holdings.load(Relaxed));
    metrics::counter!("stockflow_dead_letters_total").absolute(j.dead_letters.load(Relaxed));
    metrics::counter!("stockflow_source_errors_total").absolute(j.source_errors.load(Relaxed));
    metrics::counter!("stockflow_evaluations_inserted_total").absolute(j.inserted.load(Relaxed));
    metrics::counter!("stockflow_evaluations_retracted_total").absolute(j.retracted.load(Relaxed));
    metrics::counter!("stockflow_timestamps_committed_total").absolute(j.batches.load(Relaxed));
    metrics::gauge!("stockflow_frontier").set(j.frontier.load(Relaxed) as f64);
    metrics::gauge!("stockflow_unevaluated_days").set(j.issues.load(Relaxed) as f64);
    let offsets = j.offsets.lock().map(|o| o.clone()).unwrap_or_default();
    for topic in &s.topics {
        if let Ok(marks) = s.log.watermarks(topic) {
            for w in marks {
                let done = offsets
                    .get(&(topic.clone(), w.partition))
                    .copied()
                    .unwrap_or(w.low);
                metrics::gauge!("stockflow_partition_lag", "topic" => topic.clone(), "partition" => w.partition.to_string())
                    .set((w.high - done).max(0) as f64);
            }
        }
    }
    handle.render()
}

/// Installs the Prometheus recorder and serves /metrics on `addr` from a background thread
/// until the process ends.
pub fn serve(addr: &str, sources: Sources) -> anyhow::Result<()> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)?
        .install_recorder()?;
    describe();
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    tracing::info!(%addr, "serving Prometheus metrics on /metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let (status, body) = if request.url() == "/metrics" {
                    (200, render(&sources, &handle))
                } else {
                    (404, "try /metrics\n".to_string())
                };
                let header = tiny_http::Header::from_bytes(
                    &b"Content-Type"[..],
                    &b"text/plain; version=0.0.4"[..],
                )
                .ok();
                let mut response = tiny_http::Response::from_string(body).with_status_code(status);
                if let Some(h) = header {
                    response = response.with_header(h);
                }
                let _ = request.respond(response);
            }
        })?;
    Ok(())
}
