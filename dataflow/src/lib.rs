//! The investor side of stockflow: a timely + differential dataflow job that keeps prices and
//! holdings as incremental collections, joins them and emits evaluation diffs.
//!
//! - `graph`: the evaluation dataflow (pure dataflow, no I/O);
//! - `eval`: the evaluation math;
//! - `runtime`: one worker's inputs, graph and sink operator;
//! - `memory`: runs the job over in-memory batches (tests, the core benchmark);
//! - `job`: runs it over the log (Kafka) with replay positions and until-caught-up;
//! - `sink`: the sink interface and the JSON Lines sink.

pub mod bench;
pub mod eval;
pub mod graph;
pub mod job;
pub mod memory;
pub mod runtime;
pub mod sink;
pub mod types;

pub use runtime::{Batch, DeadLetter};
pub use sink::{CollectSink, DiffSink, JsonLinesSink};
pub use types::{Evaluation, HoldingInput, PriceInput, Version};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad job configuration: {0}")]
    Config(String),
    #[error("the sink failed: {0}")]
    Sink(String),
    #[error(transparent)]
    Transport(#[from] stockflow_transport::Error),
    #[error("the dataflow failed: {0}")]
    Dataflow(String),
}

impl Error {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(e) => e.is_retryable(),
            Error::Sink(_) => true,
            Error::Config(_) | Error::Dataflow(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
