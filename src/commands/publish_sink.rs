//! `--publish-portfolios`: every evaluation change also goes to a topic as JSON, as the
//! course's investor apps did. With the MySQL sink the messages go through the database's
//! outbox and are published after the commit, under the lease (`LogPublisher`); with the
//! stateless sinks (JSON Lines, null) each batch is published before it is handed on
//! (`PublishingSink`).

use std::sync::Arc;
use std::time::Duration;
use stockflow_core::{Batch, Error, Result, Sink, StoredState};
use stockflow_market::Universe;
use stockflow_sinks::mysql::outbox::{self, Message, Publisher};
use stockflow_transport::LogProducer;

/// Sends messages with the log's producer and waits for every acknowledgement.
pub struct LogPublisher {
    pub producer: Box<dyn LogProducer>,
    pub runtime: tokio::runtime::Handle,
}

impl Publisher for LogPublisher {
    fn publish(&mut self, topic: &str, messages: &[Message]) -> Result<()> {
        let producer = self.producer.as_ref();
        // Same key, same partition: the log keeps the order in which they are sent.
        self.runtime
            .block_on(async move {
                let sends = messages
                    .iter()
                    .map(|m| producer.send(topic, &m.key, &m.payload));
                futures::future::try_join_all(sends).await
            })
            .map_err(Error::from)?;
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(Error::from)
    }
}

/// Publishes a batch's changes (and waits for the log's acknowledgements) before handing the
/// batch to a stateless inner sink: the topic gets every change at least once. For each row,
/// the retraction is published before the insertion that replaces it.
pub struct PublishingSink {
    pub inner: Box<dyn Sink>,
    pub publisher: LogPublisher,
    pub topic: String,
    pub universe: Arc<Universe>,
}

impl Sink for PublishingSink {
    fn load(&mut self, restore: stockflow_core::Restore) -> Result<StoredState> {
        self.inner.load(restore)
    }

    fn is_stateful(&self) -> bool {
        self.inner.is_stateful()
    }

    /// Gathers, whatever the inner sink (`--sink null` too): a catch-up's gathered batches
    /// are consolidated once, so a row one timestamp wrote and a later one corrected is
    /// neither stored nor published.
    fn gathers(&self) -> bool {
        true
    }

    fn apply(&mut self, batch: &Batch) -> Result<()> {
        if !batch.evaluations.is_empty() {
            // No lease here: epoch 0, and the batch's timestamp as the commit.
            let commit = i64::try_from(batch.time).unwrap_or(i64::MAX);
            let messages = outbox::messages(&self.universe, batch, 0, commit);
            self.publisher.publish(&self.topic, &messages)?;
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
