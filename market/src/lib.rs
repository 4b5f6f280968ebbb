//! The market of stockflow: stocks, exchanges, investors and portfolios; the trading calendar;
//! the price models; and the `StockExchange` message codec. Pure logic: no I/O here.

pub mod calendar;
pub mod holding;
pub mod price;
pub mod reference;
pub mod tick;
pub mod universe;

pub use calendar::{first_trading_day, Calendar, MARKET_EPOCH};
pub use holding::{decode_holding, Holding, HoldingIds};
pub use price::{PriceModel, PricePath};
pub use reference::{
    lookup_investor, lookup_portfolio, lookup_stock, Exchange, Investor, Portfolio, Stock,
    INVESTORS, PORTFOLIOS, STOCKS,
};
pub use tick::{Tick, TickDecoder};
pub use universe::{PortfolioId, StockId, SyntheticSpec, Universe};

use chrono::NaiveDate;

/// Why a message or an argument about the market was rejected. Every variant is the
/// input's fault and retrying the same input gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("missing field {0}")]
    MissingField(&'static str),
    #[error("field {field} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("price {0} is not a number")]
    NonNumericPrice(String),
    #[error("price {0} is not positive")]
    NonPositivePrice(String),
    #[error("price {0} has more than {max} decimals", max = tick::MAX_PRICE_SCALE)]
    TooPrecisePrice(String),
    #[error("unknown ticker {0:?}")]
    UnknownTicker(String),
    #[error("bad date {0:?}: expected YYYY-MM-DD or an ISO date-time")]
    BadDate(String),
    #[error("date {0} is before the market opened (2000-01-01)")]
    BeforeMarket(NaiveDate),
    #[error("unknown portfolio {0:?}")]
    UnknownPortfolio(String),
    #[error("quantity {0} is not a whole number of shares ≥ 0")]
    BadQuantity(String),
    #[error("{0} is not a trading day")]
    NotATradingDay(NaiveDate),
    #[error("unknown exchange {0:?}: expected SE1 or SE2")]
    UnknownExchange(String),
    #[error("{ticker} is listed on {listed}, not {claimed}")]
    WrongExchange {
        ticker: String,
        listed: Exchange,
        claimed: Exchange,
    },
}

impl Error {
    /// A short stable code for counters and dead letters.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MalformedJson(_) => "malformed_json",
            Error::NotAnObject => "not_an_object",
            Error::MissingField(_) => "missing_field",
            Error::WrongType { .. } => "wrong_type",
            Error::NonNumericPrice(_) => "non_numeric_price",
            Error::NonPositivePrice(_) => "non_positive_price",
            Error::TooPrecisePrice(_) => "too_precise_price",
            Error::UnknownTicker(_) => "unknown_ticker",
            Error::BadDate(_) => "bad_date",
            Error::BeforeMarket(_) => "before_market",
            Error::UnknownExchange(_) => "unknown_exchange",
            Error::UnknownPortfolio(_) => "unknown_portfolio",
            Error::BadQuantity(_) => "bad_quantity",
            Error::NotATradingDay(_) => "not_a_trading_day",
            Error::WrongExchange { .. } => "wrong_exchange",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
