//! The records that flow through the job.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use stockflow_market::{PortfolioId, StockId};

/// Orders the versions of a record: later wins. (Kafka timestamp ms, partition, offset) for
/// records read from the log; any increasing sequence for in-memory input.
pub type Version = (i64, i32, i64);

/// A close as read: several versions of one (stock, day) may arrive (duplicates, corrections).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PriceInput {
    pub stock: StockId,
    pub date: NaiveDate,
    pub price: Decimal,
    pub version: Version,
}

/// A holding record as read: quantity of `stock` in `portfolio` from `from` on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HoldingInput {
    pub portfolio: PortfolioId,
    pub stock: StockId,
    pub from: NaiveDate,
    pub quantity: i64,
    pub version: Version,
}

/// One evaluated portfolio-day: the job's output rows (inserted +1, retracted −1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Evaluation {
    pub portfolio: PortfolioId,
    pub date: NaiveDate,
    pub value: Decimal,
    /// Change versus the previous evaluated day; None on the portfolio's first day.
    pub change: Option<Decimal>,
    /// change / previous value × 100, rounded to `PCT_SCALE` decimals; None on the first day.
    pub change_pct: Option<Decimal>,
}
