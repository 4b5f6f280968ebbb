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
    #[error(
        "the database {database} belongs to job {owner:?}: its tables hold that job's rows and \
         state, and a job named {job:?} cannot share them. Run with --job {owner}, or give this \
         job a database of its own (--mysql-url mysql://…/<another database>)"
    )]
    OtherJob {
        database: String,
        owner: String,
        job: String,
    },
    #[error(
        "the database no longer holds this run's last commit of job {job} (commit number \
         {expected}; the database holds {found}): it was restored from a backup, or failed over \
         and lost commits, while the job ran. Nothing more was written. Start the job again \
         (`stockflow run`): it reloads its state from what the database holds and reads the \
         log again from there"
    )]
    Diverged {
        job: String,
        expected: i64,
        found: i64,
    },
    #[error(
        "a `stockflow db rebuild` of {database} started at {since} and did not finish: the \
         derived rows are partly rebuilt. Run `stockflow db rebuild` again to finish it, then \
         start the job"
    )]
    RebuildPending { database: String, since: String },
    #[error(
        "a statement of {bytes} bytes is larger than the server accepts (max_allowed_packet = \
         {limit} bytes): {what}. Raise max_allowed_packet on the server (SET GLOBAL \
         max_allowed_packet = …, or in its configuration) and start the job again"
    )]
    PacketTooLarge {
        what: String,
        bytes: usize,
        limit: usize,
    },
    #[error(
        "stopped by a signal while MySQL was unavailable ({0}); the batch being written was not \
         committed and nothing is lost: start the job again once MySQL is back"
    )]
    Interrupted(String),
    #[error(
        "job {job}'s lease stayed out of reach for {secs} s ({holder}); start the run again \
         in a moment (or stop the other run)"
    )]
    LeaseBusy {
        job: String,
        holder: String,
        secs: u64,
    },
    #[error(
        "the database {database} is in use by a live run ({holder}) and this stockflow has \
         migrations to apply: stop that run first, or start this one with --takeover (it fences \
         the other run off; migrations only add columns and tables)"
    )]
    SchemaInUse { database: String, holder: String },
    /// Publishing the outbox to the log failed.
    #[error("publishing the committed portfolio changes: {0}")]
    Publish(stockflow_core::Error),
    /// MySQL stayed unreachable longer than the job waits.
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "the MySQL server {server} refuses LOAD DATA LOCAL INFILE (local_infile is OFF), which \
         the sink streams its rows with (from memory: no file on the server, no FILE \
         privilege). Turn it on: SET GLOBAL local_infile = ON as an administrator, or \
         --local-infile=ON (local_infile = ON in the server's configuration), then start the \
         job again"
    )]
    LocalInfileOff { server: String },
    /// A bulk load whose rows the table did not all take as they were (a value out of range,
    /// a bad date): `LOAD DATA LOCAL` reports these as warnings, never as errors.
    #[error("the table {table} refused rows of a bulk load: {detail}")]
    Refused { table: &'static str, detail: String },
    #[error("{0}")]
    State(String),
}

impl Error {
    /// Whose fault, and whether the same call may succeed later.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Url(_) | Error::NotConfirmed(_) | Error::LeaseHeld { .. } => Fault::User,
            Error::LeaseLost { .. } | Error::State(_) => Fault::User,
            Error::OtherJob { .. } | Error::RebuildPending { .. } | Error::SchemaInUse { .. } => {
                Fault::User
            }
            Error::LocalInfileOff { .. } => Fault::User,
            Error::MySql(_) | Error::Migration(_) => Fault::External,
            Error::Diverged { .. }
            | Error::PacketTooLarge { .. }
            | Error::Interrupted(_)
            | Error::Unavailable(_)
            | Error::LeaseBusy { .. } => Fault::External,
            // A value outside a column: the evaluation's bounds should have caught it.
            Error::Refused { .. } => Fault::Internal,
            Error::Publish(e) => e.fault,
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            Error::MySql(e) => is_retryable_mysql(e),
            Error::Publish(e) => e.retryable,
            // A restart helps (it reloads from what the database holds, or finds MySQL back);
            // retrying the same call in this process does not.
            _ => false,
        }
    }

    /// Whether the server refused a value (out of range, bad date, too long): an error about
    /// specific rows, not about the database.
    pub fn is_data_error(&self) -> bool {
        match self {
            Error::Refused { .. } => true,
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
            Error::MySql(e) if is_packet_too_large(e) => {
                "a statement is larger than the server's max_allowed_packet: raise it on the server (SET GLOBAL max_allowed_packet = …) and start the job again"
            }
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

/// Whether the client or the server refused a packet over `max_allowed_packet` (the same
/// statement fails again: never retried).
pub fn is_packet_too_large(e: &::mysql::Error) -> bool {
    use ::mysql::Error as E;
    match e {
        E::DriverError(::mysql::DriverError::PacketTooLarge) => true,
        E::CodecError(c) => c.to_string().to_ascii_lowercase().contains("too large"),
        E::MySqlError(me) => matches!(me.code, 1153 | 1301),
        _ => false,
    }
}

fn is_retryable_mysql(e: &::mysql::Error) -> bool {
    use ::mysql::Error as E;
    if is_packet_too_large(e) {
        return false;
    }
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
