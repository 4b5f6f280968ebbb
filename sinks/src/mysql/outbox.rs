//! `--publish-portfolios`: every evaluation change as a JSON message, keyed by
//! `investor/portfolio`, through an outbox in the database (`docs/sink.md`): the messages of a
//! batch are stored in the batch's transaction and published afterwards under the lease.

use stockflow_core::{Batch, Evaluation};
use stockflow_market::Universe;

/// A message for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Sends messages to a topic of the log and waits for its acknowledgements, in order per key.
pub trait Publisher: Send {
    fn publish(&mut self, topic: &str, messages: &[Message]) -> stockflow_core::Result<()>;
}

/// The order of publication: by row, retractions (−1) first.
pub fn publication_order(batch: &Batch) -> Vec<(&Evaluation, isize)> {
    let mut diffs: Vec<_> = batch.evaluations.iter().map(|(e, d)| (e, *d)).collect();
    diffs.sort_by_key(|(e, d)| (e.portfolio, e.date, *d));
    diffs
}

/// The messages of a batch. `epoch` and `commit` (the lease's epoch and the commit sequence
/// number) order messages across runs: a consumer that keeps the last value per key keeps the
/// one with the highest (epoch, commit).
pub fn messages(u: &Universe, batch: &Batch, epoch: i64, commit: i64) -> Vec<Message> {
    publication_order(batch)
        .into_iter()
        .map(|(e, d)| {
            let (pid, iid) = u
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
                "epoch": epoch,
                "commit": commit,
            });
            Message {
                key: format!("{iid}/{pid}").into_bytes(),
                payload: v.to_string().into_bytes(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockflow_core::Money;

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
            evaluations: vec![(row(90), 1), (row(100), -1)].into(),
            ..Batch::default()
        };
        let order: Vec<isize> = publication_order(&batch).iter().map(|(_, d)| *d).collect();
        assert_eq!(order, [-1, 1]);
        let m = messages(&Universe::spec(), &batch, 3, 17);
        let first: serde_json::Value = serde_json::from_slice(&m[0].payload).unwrap_or_default();
        assert_eq!(first["retract"], true);
        assert_eq!(first["epoch"], 3);
        assert_eq!(first["commit"], 17);
        assert_eq!(m[0].key, b"Inv1/P11");
    }
}
