//! The core of stockflow, shared by every other crate and free of I/O crates:
//!
//! - `money`: exact fixed-point amounts (`Fixed6`, 6 decimals in an `i128`);
//! - `limits`: the input contract's bounds, derived from the schema (`docs/input.md`);
//! - `types`: the records that flow through the job (ticks and holdings as dataflow inputs,
//!   evaluations, issues, dead letters, log positions);
//! - `batch`: what a sink receives per completed timestamp, and the state a sink stores;
//! - `sink`: the sink trait (load stored state and offsets, apply a batch);
//! - `error`: an error that says whose fault it is and whether to retry, and the retry backoff.

pub mod batch;
pub mod error;
pub mod limits;
pub mod money;
pub mod sink;
pub mod types;

pub use batch::{Batch, Restore, Rows, Seed, StoredState};
pub use error::{backoff, Error, Fault, Result};
pub use money::{Fixed6, Money, Percent};
pub use sink::{CollectSink, Sink};
pub use types::{
    DeadLetter, Evaluation, HoldingInput, Issue, IssueKind, Last, PortfolioId, Position,
    PriceInput, Progress, RecordMark, StockId, Version,
};
