//! The stock exchange servers of stockflow (the course's se1_server.py, se2_server.py and
//! server.py) and the publisher of recorded prices.
//!
//! `plan` is pure: it turns a schedule (exchange, seed, model, date range) into the ticks of
//! every trading day. `server` sends a plan to the log, paced (live) or as fast as the broker
//! takes it (backfill). `publish` replays a JSON Lines file of ticks.

pub mod plan;
pub mod publish;
pub mod server;

pub use plan::{DayTicks, Schedule};
pub use server::{run_exchange, DayGate, ExchangeReport, Pacing, Shutdown};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad schedule: {0}")]
    Schedule(String),
    #[error(transparent)]
    Transport(#[from] stockflow_transport::Error),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the same call may succeed later (the broker came back, say).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(e) => e.is_retryable(),
            Error::Schedule(_) | Error::Io { .. } => false,
        }
    }

    /// Whose fault.
    pub fn fault(&self) -> stockflow_core::Fault {
        match self {
            Error::Transport(e) => e.fault(),
            Error::Schedule(_) | Error::Io { .. } => stockflow_core::Fault::User,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
