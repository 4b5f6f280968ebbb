//! `--metrics-addr`: Prometheus text exposition of a running job, served by a small HTTP thread.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockflow_dataflow::job::JobCounters;
use stockflow_sinks::mysql::SinkMetrics;
use stockflow_transport::kafka::{KafkaAdmin, KafkaConfig};
use stockflow_transport::LogAdmin;

pub struct Sources {
    pub job: Arc<JobCounters>,
    pub sink: Arc<Mutex<Option<Arc<SinkMetrics>>>>,
    pub kafka: KafkaConfig,
    pub topics: Vec<String>,
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The exposition text, read from the job's counters at scrape time.
pub fn render(s: &Sources, admin: Option<&KafkaAdmin>) -> String {
    let mut out = String::new();
    let j = &s.job;
    metric(
        &mut out,
        "stockflow_ticks_total",
        "counter",
        "Valid ticks consumed.",
        j.ticks.load(Relaxed),
    );
    metric(
        &mut out,
        "stockflow_holdings_total",
        "counter",
        "Valid holding records consumed.",
        j.holdings.load(Relaxed),
    );
    metric(
        &mut out,
        "stockflow_dead_letters_total",
        "counter",
        "Records rejected (dead letters).",
        j.dead_letters.load(Relaxed),
    );
    metric(
        &mut out,
        "stockflow_source_errors_total",
        "counter",
        "Errors reading from the broker (retried).",
        j.source_errors.load(Relaxed),
    );
    metric(
        &mut out,
        "stockflow_evaluations_inserted_total",
        "counter",
        "Evaluation rows emitted (+1).",
        j.inserted.load(Relaxed),
    );
    metric(
        &mut out,
        "stockflow_evaluations_retracted_total",
        "counter",
        "Evaluation rows retracted (-1).",
        j.retracted.load(Relaxed),
    );
    metric(
        &mut out,
        "stockflow_timestamps_completed_total",
        "counter",
        "Timestamps handed to the sink.",
        j.batches.load(Relaxed),
    );
    metric(
        &mut out,
        "stockflow_frontier",
        "gauge",
        "The last completed timestamp.",
        j.frontier.load(Relaxed),
    );
    if let Some(m) = s.sink.lock().ok().and_then(|m| m.clone()) {
        let tx = m.transactions.load(Relaxed);
        metric(
            &mut out,
            "stockflow_sink_transactions_total",
            "counter",
            "MySQL transactions committed.",
            tx,
        );
        metric(
            &mut out,
            "stockflow_sink_commit_seconds_total",
            "counter",
            "Time spent in MySQL transactions.",
            m.commit_micros.load(Relaxed) as f64 / 1e6,
        );
        metric(
            &mut out,
            "stockflow_sink_rows_upserted_total",
            "counter",
            "Rows inserted or updated in MySQL.",
            m.rows_upserted.load(Relaxed),
        );
        metric(
            &mut out,
            "stockflow_sink_rows_deleted_total",
            "counter",
            "Rows deleted from MySQL.",
            m.rows_deleted.load(Relaxed),
        );
        metric(
            &mut out,
            "stockflow_sink_retries_total",
            "counter",
            "Batches retried after a MySQL failure.",
            m.retries.load(Relaxed),
        );
        if let (Some(p50), Some(p99)) = (m.latency_percentile(50.0), m.latency_percentile(99.0)) {
            let _ = writeln!(out, "# HELP stockflow_publish_to_commit_ms Publish-to-commit latency of recent batches.\n# TYPE stockflow_publish_to_commit_ms gauge");
            let _ = writeln!(out, "stockflow_publish_to_commit_ms{{quantile=\"0.5\"}} {p50}\nstockflow_publish_to_commit_ms{{quantile=\"0.99\"}} {p99}");
        }
    }
    let offsets = s.job.offsets.lock().map(|o| o.clone()).unwrap_or_default();
    let _ = writeln!(out, "# HELP stockflow_partition_lag Records in the partition not yet completed by the job.\n# TYPE stockflow_partition_lag gauge");
    if let Some(admin) = admin {
        for topic in &s.topics {
            if let Ok(marks) = admin.watermarks(topic, Duration::from_secs(2)) {
                for w in marks {
                    let done = offsets
                        .get(&(topic.clone(), w.partition))
                        .copied()
                        .unwrap_or(w.low);
                    let _ = writeln!(
                        out,
                        "stockflow_partition_lag{{topic=\"{topic}\",partition=\"{}\"}} {}",
                        w.partition,
                        (w.high - done).max(0)
                    );
                }
            }
        }
    }
    out
}

/// Serves /metrics on `addr` from a background thread until the process ends.
pub fn serve(addr: &str, sources: Sources) -> anyhow::Result<()> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    tracing::info!(%addr, "serving Prometheus metrics on /metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let admin = KafkaAdmin::new(&sources.kafka).ok();
            for request in server.incoming_requests() {
                let (status, body) = if request.url() == "/metrics" {
                    (200, render(&sources, admin.as_ref()))
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
