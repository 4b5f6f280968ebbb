//! Where the job's output goes.

use crate::batch::{Batch, Restore, StoredState};
use crate::error::Result;

/// Receives the job's output one completed timestamp at a time ([`Batch`]). A stateful sink
/// also stores the job's input state and offsets in the same transaction as the rows, and
/// hands them back at the next start (`load`), so that a restart never needs the log's past.
pub trait Sink: Send {
    /// What this sink stored, as of its last committed batch (all of it, or a window, as
    /// `restore` asks). Sinks without state return an empty state (the job then reads the
    /// log from its start).
    fn load(&mut self, restore: Restore) -> Result<StoredState> {
        let _ = restore;
        Ok(StoredState::default())
    }

    /// Whether `load` returns state (a restart continues from it).
    fn is_stateful(&self) -> bool {
        false
    }

    /// Whether batches read during a catch-up are worth gathering into fewer, larger applies
    /// (a transactional sink: fewer, larger transactions). A sink that only drops or counts
    /// its batches says no: each is applied alone, and nothing is held to be merged.
    fn gathers(&self) -> bool {
        true
    }

    /// Applies one completed timestamp, atomically for a transactional sink.
    fn apply(&mut self, batch: &Batch) -> Result<()>;

    /// Called between batches when the job is idle: an error stops the job (a stateful sink
    /// whose lease was taken over says so here, not only at its next commit).
    fn check(&mut self) -> Result<()> {
        Ok(())
    }

    /// Called once when the job stops cleanly.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn load(&mut self, restore: Restore) -> Result<StoredState> {
        (**self).load(restore)
    }
    fn is_stateful(&self) -> bool {
        (**self).is_stateful()
    }
    fn gathers(&self) -> bool {
        (**self).gathers()
    }
    fn apply(&mut self, batch: &Batch) -> Result<()> {
        (**self).apply(batch)
    }
    fn check(&mut self) -> Result<()> {
        (**self).check()
    }
    fn finish(&mut self) -> Result<()> {
        (**self).finish()
    }
}

/// Keeps the current output (the sum of all diffs): for tests and summaries.
#[derive(Debug, Default)]
pub struct CollectSink {
    pub state: std::collections::BTreeMap<crate::Evaluation, isize>,
    pub issues: std::collections::BTreeMap<crate::Issue, isize>,
    pub timestamps: usize,
    pub inserted: usize,
    pub retracted: usize,
}

impl Sink for CollectSink {
    fn apply(&mut self, batch: &Batch) -> Result<()> {
        self.timestamps += 1;
        self.inserted += batch.inserted() as usize;
        self.retracted += batch.retracted() as usize;
        for (e, d) in &batch.evaluations {
            let entry = self.state.entry(e.clone()).or_insert(0);
            *entry += d;
            if *entry == 0 {
                self.state.remove(e);
            }
        }
        for (i, d) in &batch.issues {
            let entry = self.issues.entry(i.clone()).or_insert(0);
            *entry += d;
            if *entry == 0 {
                self.issues.remove(i);
            }
        }
        Ok(())
    }
}
