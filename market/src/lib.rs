//! The market of stockflow: stocks, exchanges, investors and portfolios; the trading calendar;
//! the price models; and the `StockExchange` message codec. Pure logic: no I/O here.

pub mod calendar;
pub mod holding;
pub mod json;
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
pub(crate) use stockflow_core::limits::quote;

/// Why a message or an argument about the market was rejected. Every variant is the
/// input's fault, and the same input always gets the same answer. Texts quoted from the input
/// are cut and escaped (`quote`), so a reason is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the record has no payload")]
    EmptyPayload,
    #[error("payload of {0} bytes is larger than the {max} a record may have", max = MAX_PAYLOAD)]
    PayloadTooLarge(usize),
    #[error("payload is not UTF-8 (invalid byte after {0} valid bytes)")]
    NotUtf8(usize),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("key {0} appears more than once")]
    DuplicateField(String),
    #[error("missing field {0}")]
    MissingField(&'static str),
    #[error("field {field} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("price {} is not a plain decimal number", quote(.0))]
    NonNumericPrice(String),
    #[error("price {} is not positive", quote(.0))]
    NonPositivePrice(String),
    #[error("price {} has more than 6 decimals", quote(.0))]
    TooPrecisePrice(String),
    #[error("price {} is not below 1,000,000,000", quote(.0))]
    PriceOutOfRange(String),
    #[error("unknown ticker {}", quote(.0))]
    UnknownTicker(String),
    #[error("bad date {}: expected YYYY-MM-DD or an ISO 8601 date-time", quote(.0))]
    BadDate(String),
    #[error("date {0} is before the market opened (2000-01-01)")]
    BeforeMarket(NaiveDate),
    #[error("unknown portfolio {}", quote(.0))]
    UnknownPortfolio(String),
    #[error("quantity {} is not a whole number of shares", quote(.0))]
    BadQuantity(String),
    #[error("quantity {} is outside 0..=1,000,000,000", quote(.0))]
    QuantityOutOfRange(String),
    #[error("{0} is not a trading day")]
    NotATradingDay(NaiveDate),
    #[error("unknown exchange {}: expected SE1 or SE2", quote(.0))]
    UnknownExchange(String),
    #[error("{ticker} is listed on {listed}, not {claimed}")]
    WrongExchange {
        ticker: String,
        listed: Exchange,
        claimed: Exchange,
    },
}

/// The largest payload a tick or holding record may have (a tick is about 70 bytes).
pub const MAX_PAYLOAD: usize = 4096;

impl Error {
    /// A short stable code for counters and dead letters (`docs/input.md` lists them all).
    pub fn code(&self) -> &'static str {
        match self {
            Error::EmptyPayload => "empty_payload",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::NotUtf8(_) => "not_utf8",
            Error::MalformedJson(_) => "malformed_json",
            Error::NotAnObject => "not_an_object",
            Error::DuplicateField(_) => "duplicate_field",
            Error::MissingField(_) => "missing_field",
            Error::WrongType { .. } => "wrong_type",
            Error::NonNumericPrice(_) => "non_numeric_price",
            Error::NonPositivePrice(_) => "non_positive_price",
            Error::TooPrecisePrice(_) => "too_precise_price",
            Error::PriceOutOfRange(_) => "price_out_of_range",
            Error::UnknownTicker(_) => "unknown_ticker",
            Error::BadDate(_) => "bad_date",
            Error::BeforeMarket(_) => "before_market",
            Error::UnknownExchange(_) => "unknown_exchange",
            Error::UnknownPortfolio(_) => "unknown_portfolio",
            Error::BadQuantity(_) => "bad_quantity",
            Error::QuantityOutOfRange(_) => "quantity_out_of_range",
            Error::NotATradingDay(_) => "not_a_trading_day",
            Error::WrongExchange { .. } => "wrong_exchange",
        }
    }

    /// Every code, for the docs and their test.
    pub const CODES: [&'static str; 21] = [
        "empty_payload",
        "payload_too_large",
        "not_utf8",
        "malformed_json",
        "not_an_object",
        "duplicate_field",
        "missing_field",
        "wrong_type",
        "non_numeric_price",
        "non_positive_price",
        "too_precise_price",
        "price_out_of_range",
        "unknown_ticker",
        "bad_date",
        "before_market",
        "unknown_exchange",
        "unknown_portfolio",
        "bad_quantity",
        "quantity_out_of_range",
        "not_a_trading_day",
        "wrong_exchange",
    ];
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
