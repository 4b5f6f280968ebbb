//! The `StockExchange` message: one stock's close on one trading day, and its JSON codec.
//!
//! Canonical form (what stockflow emits):
//! `{"TICK":"IBM","PRICE":"256.90","TS":"2000-01-03","EXCHANGE":"SE1"}`.
//! Accepted on input (`docs/input.md` is the contract), as the course's starter and student
//! servers sent: `PRICE` as a string or a number, read exactly from its text; `TS` as an ISO
//! date or an ISO 8601 date-time (its date part, as written, is the trading day); `EXCHANGE`
//! absent (then the stock's listing decides); tickers in any case; `ORKL` for `ORCL`.

use crate::calendar::Calendar;
use crate::json::{Field, Object};
use crate::reference::{lookup_stock, Exchange, STOCKS};
use crate::{Error, MAX_PAYLOAD};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::Serialize;
use std::collections::HashMap;
use std::str::FromStr;
use stockflow_core::limits::{FIRST_DATE, PRICE_CEILING};
use stockflow_core::money::ParseError;
use stockflow_core::Money;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tick {
    pub ticker: String,
    pub exchange: Exchange,
    pub date: NaiveDate,
    pub price: Money,
}

#[derive(Serialize)]
struct WireOut<'a> {
    #[serde(rename = "TICK")]
    tick: &'a str,
    #[serde(rename = "PRICE")]
    price: String,
    #[serde(rename = "TS")]
    ts: String,
    #[serde(rename = "EXCHANGE")]
    exchange: &'static str,
}

/// Formats a price with two to six decimals ("256.90", "0.01", "1.234567").
pub fn format_price(p: Money) -> String {
    p.to_string()
}

impl Tick {
    /// The canonical JSON encoding.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = WireOut {
            tick: &self.ticker,
            price: format_price(self.price),
            ts: self.date.format("%Y-%m-%d").to_string(),
            exchange: self.exchange.code(),
        };
        // Serializing a struct of strings cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}

/// Decodes ticks, checking tickers against a known universe of stocks and dates against the
/// trading calendar.
#[derive(Debug, Clone)]
pub struct TickDecoder {
    /// Upper-cased ticker (and aliases) -> (canonical ticker, listing exchange).
    tickers: HashMap<String, (String, Exchange)>,
    calendar: Calendar,
}

impl Default for TickDecoder {
    fn default() -> Self {
        Self::spec()
    }
}

impl TickDecoder {
    fn with_table(tickers: HashMap<String, (String, Exchange)>) -> Self {
        TickDecoder {
            tickers,
            calendar: Calendar::new(),
        }
    }

    /// A decoder for the spec's 24 stocks (with `ORKL` as an alias of `ORCL`).
    pub fn spec() -> Self {
        let mut tickers: HashMap<String, (String, Exchange)> = STOCKS
            .iter()
            .map(|s| (s.ticker.to_string(), (s.ticker.to_string(), s.exchange)))
            .collect();
        if let Some(orcl) = lookup_stock("ORCL") {
            tickers.insert("ORKL".into(), (orcl.ticker.into(), orcl.exchange));
        }
        Self::with_table(tickers)
    }

    /// A decoder for any universe of stocks (e.g. a synthetic market).
    pub fn with_stocks<I, S>(stocks: I) -> Self
    where
        I: IntoIterator<Item = (S, Exchange)>,
        S: Into<String>,
    {
        let tickers = stocks
            .into_iter()
            .map(|(t, e)| {
                let t: String = t.into();
                (t.to_ascii_uppercase(), (t, e))
            })
            .collect();
        Self::with_table(tickers)
    }

    /// A decoder for the stocks of a universe (with its aliases).
    pub fn for_universe(u: &crate::universe::Universe) -> Self {
        let tickers = u
            .ticker_table()
            .into_iter()
            .map(|(alias, ticker, exchange)| (alias, (ticker, exchange)))
            .collect();
        Self::with_table(tickers)
    }

    /// The day a payload is about, read as cheaply as the contract allows: the object and its
    /// `TS` field only (no ticker, price or calendar). None when it names none: `decode` then
    /// says why. What the job orders a catch-up by.
    pub fn day_of(payload: &[u8]) -> Option<NaiveDate> {
        check_size(payload).ok()?;
        match Object::parse(payload).ok()?.get("TS") {
            Field::Str(s) => parse_date(s).ok(),
            _ => None,
        }
    }

    /// Decodes one message payload under the input contract.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Tick, Error> {
        check_size(payload)?;
        let obj = Object::parse(payload)?;
        let raw_ticker = match obj.get("TICK") {
            Field::Null => return Err(Error::MissingField("TICK")),
            Field::Str(s) => s,
            _ => {
                return Err(Error::WrongType {
                    field: "TICK",
                    expected: "a string",
                })
            }
        };
        let (ticker, listed) = self
            .tickers
            .get(&raw_ticker.to_ascii_uppercase())
            .cloned()
            .ok_or_else(|| Error::UnknownTicker(raw_ticker.to_string()))?;

        let price = parse_price(obj.get("PRICE"))?;

        let date = match obj.get("TS") {
            Field::Null => return Err(Error::MissingField("TS")),
            Field::Str(s) => parse_date(s)?,
            Field::Number(t) | Field::Other(t) => return Err(Error::BadDate(t.to_string())),
        };
        if !self.calendar.is_trading_day(date) {
            return Err(Error::NotATradingDay(date));
        }

        let exchange = match obj.get("EXCHANGE") {
            Field::Null => listed,
            Field::Str(s) => {
                let claimed = Exchange::from_str(s)?;
                if claimed != listed {
                    return Err(Error::WrongExchange {
                        ticker,
                        listed,
                        claimed,
                    });
                }
                claimed
            }
            _ => {
                return Err(Error::WrongType {
                    field: "EXCHANGE",
                    expected: "a string",
                })
            }
        };

        Ok(Tick {
            ticker,
            exchange,
            date,
            price,
        })
    }
}

/// Empty and oversized payloads are refused before any parsing.
pub(crate) fn check_size(payload: &[u8]) -> Result<(), Error> {
    if payload.is_empty() {
        return Err(Error::EmptyPayload);
    }
    if payload.len() > MAX_PAYLOAD {
        return Err(Error::PayloadTooLarge(payload.len()));
    }
    Ok(())
}

/// `PRICE`: a JSON number or a string holding a plain decimal, exact, 0 < price < 10^9, at
/// most 6 decimals.
fn parse_price(field: Field<'_>) -> Result<Money, Error> {
    let text = match field {
        Field::Null => return Err(Error::MissingField("PRICE")),
        Field::Str(s) | Field::Number(s) => s,
        Field::Other(t) => return Err(Error::NonNumericPrice(t.to_string())),
    };
    let price = Money::parse(text).map_err(|e| match e {
        ParseError::Syntax => Error::NonNumericPrice(text.to_string()),
        ParseError::TooPrecise => Error::TooPrecisePrice(text.to_string()),
        ParseError::OutOfRange => Error::PriceOutOfRange(text.to_string()),
    })?;
    if !price.is_positive() {
        return Err(Error::NonPositivePrice(text.to_string()));
    }
    if price >= PRICE_CEILING {
        return Err(Error::PriceOutOfRange(text.to_string()));
    }
    Ok(price)
}

/// A strict ISO 8601 date: `YYYY-MM-DD`, alone or followed by a time: `T` or a space, then
/// `HH:MM`, optional `:SS`, optional fraction `.f…`, then optionally `Z` or `±HH:MM`
/// (`docs/input.md`). The date as written is the trading day. Dates before 2000-01-01 are
/// refused; four-digit years keep every date within what a MySQL `DATE` holds (9999-12-31).
/// Every date-time form `parse_date` takes: separator × time × zone.
const TIME_FORMATS: [&str; 12] = [
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%MZ",
    "%Y-%m-%dT%H:%M%:z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%MZ",
    "%Y-%m-%d %H:%M%:z",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.fZ",
    "%Y-%m-%d %H:%M:%S%.f%:z",
];

fn time_parses(s: &str, format: &str) -> bool {
    if format.ends_with("%:z") {
        DateTime::parse_from_str(s, format).is_ok()
    } else {
        NaiveDateTime::parse_from_str(s, format).is_ok()
    }
}

pub fn parse_date(s: &str) -> Result<NaiveDate, Error> {
    let bad = || Error::BadDate(s.to_string());
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .map(|d| d.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0')))
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let (y, m, d) = match (digits(0..4), digits(5..7), digits(8..10)) {
        (Some(y), Some(m), Some(d)) => (y, m, d),
        _ => return Err(bad()),
    };
    let date = NaiveDate::from_ymd_opt(y as i32, m, d).ok_or_else(bad)?;
    if b.len() > 10 && !TIME_FORMATS.iter().any(|f| time_parses(s, f)) {
        return Err(bad());
    }
    if date < FIRST_DATE {
        return Err(Error::BeforeMarket(date));
    }
    Ok(date)
}

/// `QTY`: a JSON integer or a string of digits, 0 ≤ QTY ≤ 10^9.
pub(crate) fn parse_quantity(field: Field<'_>) -> Result<i64, Error> {
    let text = match field {
        Field::Null => return Err(Error::MissingField("QTY")),
        Field::Str(s) | Field::Number(s) => s,
        Field::Other(t) => return Err(Error::BadQuantity(t.to_string())),
    };
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if body.is_empty() || !body.bytes().all(|c| c.is_ascii_digit()) {
        return Err(Error::BadQuantity(text.to_string()));
    }
    let n: i64 = body
        .parse()
        .map_err(|_| Error::QuantityOutOfRange(text.to_string()))?;
    if negative && n != 0 {
        return Err(Error::QuantityOutOfRange(text.to_string()));
    }
    if n > stockflow_core::limits::MAX_QUANTITY {
        return Err(Error::QuantityOutOfRange(text.to_string()));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::MARKET_EPOCH;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or(MARKET_EPOCH)
    }

    fn ibm(price: &str) -> Tick {
        Tick {
            ticker: "IBM".into(),
            exchange: Exchange::Se1,
            date: d(2000, 1, 3),
            price: Money::parse(price).unwrap_or_default(),
        }
    }

    #[test]
    fn canonical_roundtrip() {
        let t = ibm("256.90");
        let json = String::from_utf8(t.to_json()).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"TICK":"IBM","PRICE":"256.90","TS":"2000-01-03","EXCHANGE":"SE1"}"#
        );
        assert_eq!(TickDecoder::spec().decode(json.as_bytes()), Ok(t));
    }

    #[test]
    fn accepted_variants() {
        let mut dec = TickDecoder::spec();
        let ok = [
            r#"{"TICK": "IBM", "PRICE": "256.90", "TS": "2000-01-03", "EXCHANGE": "SE1"}"#,
            r#"{"TICK": "IBM", "PRICE": 256.9, "TS": "2000-01-03"}"#,
            r#"{"TICK": "IBM", "PRICE": 256.90, "TS": "2000-01-03T17:30:00"}"#,
            r#"{"TICK": "IBM", "PRICE": "256.9", "TS": "2000-01-03 17:30:00.123"}"#,
            r#"{"TICK": "IBM", "PRICE": "256.9", "TS": "2000-01-03 17:30"}"#,
            r#"{"TICK": "IBM", "PRICE": "256.9", "TS": "2000-01-03T17:30Z"}"#,
            r#"{"TICK": "IBM", "PRICE": "256.9", "TS": "2000-01-03 17:30+02:00"}"#,
            r#"{"TICK": "IBM", "PRICE": "256.9", "TS": "2000-01-03T17:30:05.5-05:00"}"#,
            r#"{"TICK": "IBM", "PRICE": "256.9", "TS": "2000-01-03 17:30:05Z"}"#,
            r#"{"TICK": "IBM", "PRICE": "2.569e2", "TS": "2000-01-03T23:30:00+02:00"}"#,
            r#"{"TICK": "IBM", "PRICE": 2569E-1, "TS": "2000-01-03T09:00"}"#,
            r#"{"TICK": "ibm", "PRICE": "256.900000", "TS": "2000-01-03T09:00:00Z", "EXCHANGE": "se1"}"#,
            r#"{"TICK": "IBM", "PRICE": 256.9000000000, "TS": "2000-01-03", "EXCHANGE": null, "NOTE": [1]}"#,
        ];
        for s in ok {
            let t = dec.decode(s.as_bytes());
            assert_eq!(
                t.as_ref().map(|t| t.price),
                Ok(Money::from_units(256_900_000)),
                "{s}"
            );
            assert_eq!(t.as_ref().map(|t| t.date), Ok(d(2000, 1, 3)), "{s}");
            assert_eq!(t.map(|t| t.exchange), Ok(Exchange::Se1), "{s}");
        }
        let orkl = dec.decode(br#"{"TICK":"ORKL","PRICE":148.79,"TS":"2000-01-03"}"#);
        assert_eq!(orkl.map(|t| t.ticker), Ok("ORCL".to_string()));
        let se2 = dec.decode(br#"{"TICK":"VZ","PRICE":46.49,"TS":"2000-01-03"}"#);
        assert_eq!(se2.map(|t| t.exchange), Ok(Exchange::Se2));
        // 18 decimals, all zeros past the sixth: exact, accepted; one non-zero: refused.
        let exact =
            dec.decode(br#"{"TICK":"IBM","PRICE":97.630000000000000000,"TS":"2000-01-03"}"#);
        assert_eq!(exact.map(|t| t.price.units()), Ok(97_630_000));
        let max = dec.decode(br#"{"TICK":"IBM","PRICE":"999999999.999999","TS":"9999-12-31"}"#);
        assert!(max.is_ok(), "{max:?}");
    }

    #[test]
    fn every_rejection_has_its_code() {
        let mut dec = TickDecoder::spec();
        let big = format!(
            r#"{{"TICK":"IBM","PRICE":"1.00","TS":"2000-01-03","X":"{}"}}"#,
            "a".repeat(5000)
        );
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "empty_payload"),
            (big.as_bytes(), "payload_too_large"),
            (b"\xff\xfe{}", "not_utf8"),
            (br#"{"TICK": "IBM", "PRICE": "#, "malformed_json"),
            (br#"[1,2]"#, "not_an_object"),
            (
                br#"{"TICK":"IBM","PRICE":"1.00","PRICE":"2.00","TS":"2000-01-03"}"#,
                "duplicate_field",
            ),
            (br#"{"PRICE": "1.00", "TS": "2000-01-03"}"#, "missing_field"),
            (br#"{"TICK": "IBM", "TS": "2000-01-03"}"#, "missing_field"),
            (br#"{"TICK": "IBM", "PRICE": "1.00"}"#, "missing_field"),
            (
                br#"{"TICK": 12, "PRICE": "1.00", "TS": "2000-01-03"}"#,
                "wrong_type",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "abc", "TS": "2000-01-03"}"#,
                "non_numeric_price",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "9_7.63", "TS": "2000-01-03"}"#,
                "non_numeric_price",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": " 97.63", "TS": "2000-01-03"}"#,
                "non_numeric_price",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": true, "TS": "2000-01-03"}"#,
                "non_numeric_price",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "NaN", "TS": "2000-01-03"}"#,
                "non_numeric_price",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "-3.10", "TS": "2000-01-03"}"#,
                "non_positive_price",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": 0, "TS": "2000-01-03"}"#,
                "non_positive_price",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": 97.630000000000000001, "TS": "2000-01-03"}"#,
                "too_precise_price",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.0000001", "TS": "2000-01-03"}"#,
                "too_precise_price",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "100000000000000000000000000", "TS": "2000-01-03"}"#,
                "price_out_of_range",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1000000000", "TS": "2000-01-03"}"#,
                "price_out_of_range",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": 1e400, "TS": "2000-01-03"}"#,
                "price_out_of_range",
            ),
            (
                br#"{"TICK": "XYZ", "PRICE": "1.00", "TS": "2000-01-03"}"#,
                "unknown_ticker",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-13-03"}"#,
                "bad_date",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-1-3"}"#,
                "bad_date",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "10000-01-03"}"#,
                "bad_date",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-01-03T25:00"}"#,
                "bad_date",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-01-03junk"}"#,
                "bad_date",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-01-03 17"}"#,
                "bad_date",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-01-03T17:30+2"}"#,
                "bad_date",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-01-03t17:30"}"#,
                "bad_date",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": 20000103}"#,
                "bad_date",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "1999-12-31"}"#,
                "before_market",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-01-01"}"#,
                "not_a_trading_day",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-01-03", "EXCHANGE": "NYSE"}"#,
                "unknown_exchange",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-01-03", "EXCHANGE": "SE2"}"#,
                "wrong_exchange",
            ),
            (
                br#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-01-03", "EXCHANGE": 1}"#,
                "wrong_type",
            ),
        ];
        for (input, code) in cases {
            match dec.decode(input) {
                Err(e) => assert_eq!(e.code(), code, "{}: {e}", String::from_utf8_lossy(input)),
                Ok(t) => panic!("{}: accepted as {t:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    #[test]
    fn reasons_quote_input_safely() {
        let mut dec = TickDecoder::spec();
        let e = dec
            .decode(b"{\"TICK\":\"\\u001b[2J\\nEVIL\",\"PRICE\":\"1.00\",\"TS\":\"2000-01-03\"}");
        let reason = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
    }
}
