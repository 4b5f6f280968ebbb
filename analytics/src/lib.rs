//! Batch analytics with Polars: the course's per-portfolio statistics (its Spark app), as
//! aligned text files, a tidy CSV/Parquet/JSON table, and PNG charts.
//!
//! `load` reads InvestorsDB (one query per table), amounts exact; `stats` computes the five
//! items: the money figures (extremes) exactly from the stored decimals, the means, deviations
//! and monthly averages with Polars; `render` writes the text files; `export` the tidy table;
//! `charts` the PNGs.

pub mod charts;
pub mod export;
pub mod load;
pub mod render;
pub mod stats;

pub use stats::{PortfolioStats, Stats};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read InvestorsDB: {0}")]
    Database(#[from] mysql::Error),
    #[error("bad MySQL URL: {0}")]
    Url(String),
    #[error("unknown investor {0:?} (known: {1})")]
    UnknownInvestor(String, String),
    #[error("{0} has no evaluations yet: run the pipeline first (stockflow run)")]
    EmptyHistory(String),
    #[error("a stored figure is unreadable: {0}")]
    Corrupt(String),
    #[error("bad period {0:?}: expected YYYY..YYYY")]
    BadPeriod(String),
    #[error("Polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("chart {0}: {1}")]
    Chart(String, String),
}

impl Error {
    /// Whose fault.
    pub fn fault(&self) -> stockflow_core::Fault {
        use stockflow_core::Fault;
        match self {
            Error::Database(_) | Error::Io { .. } => Fault::External,
            Error::Url(_)
            | Error::UnknownInvestor(..)
            | Error::EmptyHistory(_)
            | Error::BadPeriod(_) => Fault::User,
            Error::Corrupt(_) | Error::Polars(_) | Error::Chart(..) => Fault::Internal,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A period of whole years, inclusive: `2020..2024`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: i32,
    pub to: i32,
}

impl std::str::FromStr for Period {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (a, b) = s
            .split_once("..")
            .ok_or_else(|| Error::BadPeriod(s.to_string()))?;
        let from: i32 = a
            .trim()
            .parse()
            .map_err(|_| Error::BadPeriod(s.to_string()))?;
        let to: i32 = b
            .trim()
            .parse()
            .map_err(|_| Error::BadPeriod(s.to_string()))?;
        if from > to {
            return Err(Error::BadPeriod(s.to_string()));
        }
        Ok(Period { from, to })
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.from, self.to)
    }
}
