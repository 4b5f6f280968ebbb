//! `--publish-portfolios`: every evaluation change also goes to a topic as JSON, as the
//! course's investor apps did.

use std::sync::Arc;
use std::time::Duration;
use stockflow_core::{Batch, Error, Result, Sink, StoredState};
use stockflow_market::Universe;
use stockflow_transport::LogProducer;

/// Publishes a batch's changes (and waits for the log's acknowledgements) before handing the
/// batch to the inner sink. A crash between the two republishes the batch on restart, so the
/// topic gets every change at least once; the database gets it exactly once. For each row, the
/// retraction is published before the insertion that replaces it.
pub struct PublishingSink {
    pub inner: Box<dyn Sink>,
    pub producer: Box<dyn LogProducer>,
    pub topic: String,
    pub universe: Arc<Universe>,
    pub runtime: tokio::runtime::Handle,
}

/// The order of publication: by row, retractions (−1) first.
pub fn publication_order(batch: &Batch) -> Vec<(&stockflow_core::Evaluation, isize)> {
    let mut diffs: Vec<_> = batch.evaluations.iter().map(|(e, d)| (e, *d)).collect();
    diffs.sort_by_key(|(e, d)| (e.portfolio, e.date, *d));
    diffs
}

impl Sink for PublishingSink {
    fn load(&mut self, restore: stockflow_core::Restore) -> Result<StoredState> {
        self.inner.load(restore)
    }

    fn is_stateful(&self) -> bool {
        self.inner.is_stateful()
    }

    fn apply(&mut self, batch: &Batch) -> Result<()> {
        if !batch.evaluations.is_empty() {
            let messages: Vec<(String, Vec<u8>)> = publication_order(batch)
                .into_iter()
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
                        "retract": d < 0,
                    });
                    (format!("{iid}/{pid}"), v.to_string().into_bytes())
                })
                .collect();
            let producer = self.producer.as_ref();
            let topic = self.topic.as_str();
            // Same key, same partition: the log keeps the order in which they are sent.
            self.runtime
                .block_on(async move {
                    let sends = messages
                        .iter()
                        .map(|(k, v)| producer.send(topic, k.as_bytes(), v));
                    futures::future::try_join_all(sends).await
                })
                .map_err(Error::from)?;
            self.producer
                .flush(Duration::from_secs(60))
                .map_err(Error::from)?;
        }
        self.inner.apply(batch)
    }

    fn check(&mut self) -> Result<()> {
        self.inner.check()
    }

    fn finish(&mut self) -> Result<()> {
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockflow_core::{Evaluation, Money};

    #[test]
    fn a_retraction_goes_before_the_insertion_that_replaces_it() {
        let day = chrono::NaiveDate::from_ymd_opt(2001, 1, 3).unwrap_or_default();
        let row = |v: i64| Evaluation {
            portfolio: 0,
            date: day,
            value: Money::from_int(v),
            change: None,
            change_pct: None,
        };
        // Consolidated batches sort by row: a lowered value's insertion sorts first.
        let batch = Batch {
            evaluations: vec![(row(90), 1), (row(100), -1)],
            ..Batch::default()
        };
        let order: Vec<isize> = publication_order(&batch).iter().map(|(_, d)| *d).collect();
        assert_eq!(order, [-1, 1]);
    }
}
