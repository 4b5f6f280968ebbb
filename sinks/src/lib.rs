//! Sinks for the dataflow's evaluation diffs. `mysql`: InvestorsDB, exactly once: the rows, the
//! dead letters and the next offset of every source partition commit in one transaction.

pub mod mysql;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad MySQL URL: {0}")]
    Url(String),
    #[error("MySQL: {0}")]
    MySql(#[from] ::mysql::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        #[source]
        source: ::mysql::Error,
    },
    #[error("refusing to {0} without the confirmation flag")]
    NotConfirmed(&'static str),
}

impl Error {
    /// Whether the operation may succeed when retried (the server was down, a deadlock...).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::MySql(e) => is_retryable_mysql(e),
            Error::Url(_) | Error::Migration { .. } | Error::NotConfirmed(_) => false,
        }
    }
}

fn is_retryable_mysql(e: &::mysql::Error) -> bool {
    use ::mysql::Error as E;
    match e {
        E::IoError(_) | E::DriverError(_) | E::CodecError(_) => true,
        // Deadlock, lock wait timeout, server shutdown / gone, too many connections.
        E::MySqlError(me) => matches!(me.code, 1205 | 1213 | 1053 | 2006 | 2013 | 1040 | 1927),
        _ => false,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
