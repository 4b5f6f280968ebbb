//! `--publish-portfolios`: every evaluation change also goes to a Kafka topic as JSON, as the
//! course's investor apps did.

use std::sync::Arc;
use std::time::Duration;
use stockflow_dataflow::{Batch, DiffSink};
use stockflow_market::Universe;
use stockflow_transport::kafka::KafkaSink;
use stockflow_transport::LogSink;

/// Publishes a batch's changes (and waits for the broker's acknowledgements) before handing
/// the batch to the inner sink. A crash between the two republishes the batch on restart, so
/// the topic gets every change at least once; the database gets it exactly once.
pub struct PublishingSink {
    pub inner: Box<dyn DiffSink>,
    pub producer: KafkaSink,
    pub topic: String,
    pub universe: Arc<Universe>,
    pub runtime: tokio::runtime::Handle,
    /// Timestamp 0 of a resumed job was published by the run that stored it.
    pub skip_rebuild: bool,
}

impl DiffSink for PublishingSink {
    fn apply(&mut self, batch: &Batch) -> stockflow_dataflow::Result<()> {
        let rebuilt = batch.time == 0 && self.skip_rebuild;
        if !rebuilt && !batch.diffs.is_empty() {
            let messages: Vec<(String, Vec<u8>)> = batch
                .diffs
                .iter()
                .map(|(e, d)| {
                    let (pid, iid) = self
                        .universe
                        .portfolio(e.portfolio)
                        .map_or(("?", "?"), |p| (p.id.as_str(), p.investor.as_str()));
                    let v = serde_json::json!({
                        "investor": iid,
                        "portfolio": pid,
                        "date": e.date.to_string(),
                        "value": e.value.to_string(),
                        "change": e.change.map(|c| c.to_string()),
                        "change_pct": e.change_pct.map(|c| c.to_string()),
                        "retract": *d < 0,
                    });
                    (format!("{iid}/{pid}"), v.to_string().into_bytes())
                })
                .collect();
            let producer = &self.producer;
            let topic = self.topic.as_str();
            self.runtime
                .block_on(async move {
                    let sends = messages
                        .iter()
                        .map(|(k, v)| producer.send(topic, k.as_bytes(), v));
                    futures::future::try_join_all(sends).await
                })
                .map_err(|e| {
                    stockflow_dataflow::Error::Sink(format!("publishing to {topic}: {e}"))
                })?;
            self.producer
                .flush(Duration::from_secs(60))
                .map_err(|e| stockflow_dataflow::Error::Sink(e.to_string()))?;
        }
        self.inner.apply(batch)
    }
}
