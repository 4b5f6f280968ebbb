//! Sinks for the job's output. `mysql`: InvestorsDB, exactly once: the rows, the job's input
//! state, the dead letters and the next offset of every source partition commit in one
//! transaction, under a lease that keeps a job to one writer.

pub mod mysql;

use stockflow_core::Fault;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad MySQL URL: {0}")]
    Url(String),
    #[error("MySQL: {0}")]
    MySql(#[from] ::mysql::Error),
    #[error("migrating the database failed: {0}")]
    Migration(String),
    #[error("refusing to {0} without the confirmation flag")]
    NotConfirmed(&'static str),
    #[error(
        "job {job} is already running: {holder}. Stop that run first, or start this one with \
         --takeover to fence it off (its next commit then fails and it stops)"
    )]
    LeaseHeld { job: String, holder: String },
    #[error(
        "job {job} was taken over by another run ({holder}); this run stops without writing \
         anything more"
    )]
    LeaseLost { job: String, holder: String },
    #[error("{0}")]
    State(String),
}

impl Error {
    /// Whose fault, and whether the same call may succeed later.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Url(_) | Error::NotConfirmed(_) | Error::LeaseHeld { .. } => Fault::User,
            Error::LeaseLost { .. } | Error::State(_) => Fault::User,
            Error::MySql(_) | Error::Migration(_) => Fault::External,
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            Error::MySql(e) => is_retryable_mysql(e),
            _ => false,
        }
    }

    /// Whether the server refused a value (out of range, bad date, too long): an error about
    /// specific rows, not about the database.
    pub fn is_data_error(&self) -> bool {
        match self {
            Error::MySql(::mysql::Error::MySqlError(e)) => {
                e.state.starts_with("22")
                    || matches!(
                        e.code,
                        1048 | 1264 | 1265 | 1292 | 1366 | 1406 | 1690 | 3819
                    )
            }
            _ => false,
        }
    }

    /// The message with what to fix, for errors that retrying does not cure.
    pub fn explain(&self) -> String {
        let hint = match self {
            Error::MySql(::mysql::Error::MySqlError(e)) => match e.code {
                1045 => "check the user and password in --mysql-url / STOCKFLOW_MYSQL_URL",
                1044 | 1142 | 1143 | 1227 => "grant the MySQL user the privileges on InvestorsDB",
                1049 => "create the database: stockflow db init",
                1146 | 1054 => {
                    "the schema is missing or older than this stockflow: run stockflow db init"
                }
                1021 | 1114 => {
                    "the database server is out of disk space: free some and start the job again"
                }
                1290 | 1836 => "the database server is read-only",
                _ => "",
            },
            _ => "",
        };
        if hint.is_empty() {
            self.to_string()
        } else {
            format!("{self} ({hint})")
        }
    }
}

fn is_retryable_mysql(e: &::mysql::Error) -> bool {
    use ::mysql::Error as E;
    match e {
        E::IoError(_) | E::DriverError(_) | E::CodecError(_) => true,
        // Deadlock, lock wait timeout, server shutdown / gone, too many connections, killed.
        E::MySqlError(me) => matches!(
            me.code,
            1205 | 1213 | 1053 | 2006 | 2013 | 1040 | 1927 | 4031
        ),
        _ => false,
    }
}

impl From<Error> for stockflow_core::Error {
    fn from(e: Error) -> Self {
        let (fault, retryable) = (e.fault(), e.is_retryable());
        stockflow_core::Error::new(fault, retryable, e.explain())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
