//! The investor side of stockflow: a timely + differential dataflow job that keeps prices and
//! holdings as incremental collections, joins them and emits evaluation diffs.
//!
//! - `graph`: the evaluation dataflow (pure dataflow, no I/O);
//! - `eval`: the evaluation math (exact, checked);
//! - `runtime`: one worker's inputs, graph, batches and cluster-wide stop;
//! - `memory`: runs the evaluation over in-memory batches (tests, benchmarks, rebuilds);
//! - `job`: runs it over a log (any backend of `stockflow-transport`), with a commit thread;
//! - `sinks`: the JSON Lines and null sinks.

pub mod bench;
pub mod eval;
pub mod graph;
pub mod job;
pub mod memory;
pub mod panics;
pub mod ports;
pub mod runtime;
pub mod sinks;

pub use sinks::{JsonLinesSink, MemoryStore, NullSink, StoreTables};
pub use stockflow_core::{
    Batch, CollectSink, DeadLetter, Evaluation, HoldingInput, Issue, PriceInput, Sink, Version,
};

use stockflow_core::Fault;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad job configuration: {0}")]
    Config(String),
    /// The job refuses to start; the message says what happened and what resolves it.
    #[error("{0}")]
    Refused(String),
    #[error("the sink failed: {0}")]
    Sink(#[from] stockflow_core::Error),
    #[error(transparent)]
    Log(#[from] stockflow_transport::Error),
    /// A source error that retrying cannot fix.
    #[error("the source failed: {0}")]
    Source(String),
    /// Another process of the cluster stopped with an error.
    #[error("stopped because another process of the cluster failed: {0}")]
    Stopped(String, Fault),
    /// The log changed under the job in a way a restart takes in (partitions added).
    #[error("{0}")]
    Replan(String),
    #[error("the dataflow failed: {0}")]
    Dataflow(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn fault(&self) -> Fault {
        match self {
            Error::Config(_) | Error::Refused(_) => Fault::User,
            Error::Sink(e) => e.fault,
            Error::Log(e) => e.fault(),
            Error::Stopped(_, fault) => *fault,
            Error::Source(_) | Error::Replan(_) => Fault::External,
            Error::Dataflow(_) | Error::Internal(_) => Fault::Internal,
        }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Sink(e) => e.retryable,
            Error::Log(e) => e.is_retryable(),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
