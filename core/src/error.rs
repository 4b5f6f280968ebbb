//! An error that says whose fault it is and whether retrying can help.

use std::fmt;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Fault {
    /// The user asked for something that cannot work (configuration, arguments, a state the
    /// user must resolve): retrying the same thing gives the same answer.
    User,
    /// A service outside the process failed or refused (broker, database, disk).
    External,
    /// A bug in stockflow.
    Internal,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::User => "user",
            Fault::External => "external",
            Fault::Internal => "internal",
        })
    }
}

/// What crosses the seams between crates (sinks, logs, the job): a message, whose fault, and
/// whether the same call may succeed later.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub fault: Fault,
    pub retryable: bool,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub fn new(fault: Fault, retryable: bool, message: impl Into<String>) -> Self {
        Error {
            fault,
            retryable,
            message: message.into(),
            source: None,
        }
    }

    /// The user must change something; retrying does not help.
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(Fault::User, false, message)
    }

    /// A service failed in a way that may pass (unreachable, timeout, deadlock).
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(Fault::External, true, message)
    }

    /// A service refused in a way that will not pass by itself (authentication, missing
    /// schema, disk full): the message says what to fix.
    pub fn external(message: impl Into<String>) -> Self {
        Self::new(Fault::External, false, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Fault::Internal, false, message)
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The backoff of every retry in stockflow (the log, the database): exponential from 100 ms to
/// 5 s with jitter, without a count limit (callers give up after a time of their own).
pub fn backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(100))
        .with_max_delay(std::time::Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}
