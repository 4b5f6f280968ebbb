//! `stockflow console`: the live console, served by the stockflow binary (docs/console.md).
//!
//! - `view`: pure logic (figures, previews, freshness percentiles, rates, allowed hosts);
//! - `db`: bounded, indexed reads of InvestorsDB;
//! - `charts`: server-rendered SVG with plotters;
//! - `events`: the commit watcher and the server-sent event streams;
//! - `metrics`: the job's metrics endpoint, scraped into the operator graph;
//! - `server`: the routes, the security checks, the assets (in the binary).

pub mod charts;
pub mod db;
pub mod events;
pub mod metrics;
pub mod server;
pub mod view;

pub use server::{serve, Config, State};

/// What went wrong, whose fault it is, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("InvestorsDB: {0}")]
    Database(mysql::Error),
    #[error("InvestorsDB is not ready for this stockflow ({0}): run `stockflow db init` (or the job, which applies its migrations)")]
    Schema(String),
    #[error("InvestorsDB is busy: no connection free within {0} s")]
    Busy(u64),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the record breaks the holdings contract (docs/input.md): {0}")]
    Contract(String),
    #[error("the log: {0}")]
    Log(#[from] stockflow_transport::Error),
    #[error("{0}")]
    Analytics(#[from] stockflow_analytics::Error),
    #[error("chart: {0}")]
    Chart(String),
    #[error("cannot serve on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("internal: {0}")]
    Internal(String),
}

impl From<mysql::Error> for Error {
    /// A database or table that does not exist (yet) says what to run.
    fn from(e: mysql::Error) -> Self {
        match &e {
            mysql::Error::MySqlError(me) if me.code == 1049 || me.code == 1146 => {
                Error::Schema(me.message.clone())
            }
            _ => Error::Database(e),
        }
    }
}

impl Error {
    /// Whose fault.
    pub fn fault(&self) -> stockflow_core::Fault {
        use stockflow_core::Fault;
        match self {
            Error::Database(_) | Error::Busy(_) | Error::Log(_) | Error::Bind { .. } => {
                Fault::External
            }
            Error::NotFound(_)
            | Error::BadRequest(_)
            | Error::Forbidden(_)
            | Error::Contract(_)
            | Error::Schema(_) => Fault::User,
            Error::Analytics(e) => e.fault(),
            Error::Chart(_) | Error::Internal(_) => Fault::Internal,
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Database(_) | Error::Busy(_) => true,
            Error::Log(e) => e.is_retryable(),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
