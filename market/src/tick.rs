//! The `StockExchange` message: one stock's close on one trading day, and its JSON codec.
//!
//! Canonical form (what stockflow emits):
//! `{"TICK":"IBM","PRICE":"256.90","TS":"2000-01-03","EXCHANGE":"SE1"}`.
//! Accepted on input, as the course's starter and student servers sent: `PRICE` as a string or
//! a number; `TS` as an ISO date or a date-time (its date part, as written, is the trading
//! day); `EXCHANGE` absent (then the stock's listing decides); `ORKL` for `ORCL`.

use crate::calendar::MARKET_EPOCH;
use crate::reference::{lookup_stock, Exchange, STOCKS};
use crate::Error;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;

/// Most decimal places a price may carry on input (prices are kept exactly as given).
pub const MAX_PRICE_SCALE: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tick {
    pub ticker: String,
    pub exchange: Exchange,
    pub date: NaiveDate,
    pub price: Decimal,
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

/// Formats a price with at least two decimals ("256.90", "0.01").
pub fn format_price(p: Decimal) -> String {
    let mut p = p.normalize();
    if p.scale() < 2 {
        p.rescale(2);
    }
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

/// Decodes ticks, checking tickers against a known universe of stocks.
#[derive(Debug, Clone)]
pub struct TickDecoder {
    /// Upper-cased ticker (and aliases) -> (canonical ticker, listing exchange).
    tickers: HashMap<String, (String, Exchange)>,
}

impl Default for TickDecoder {
    fn default() -> Self {
        Self::spec()
    }
}

impl TickDecoder {
    /// A decoder for the spec's 24 stocks (with `ORKL` as an alias of `ORCL`).
    pub fn spec() -> Self {
        let mut tickers: HashMap<String, (String, Exchange)> = STOCKS
            .iter()
            .map(|s| (s.ticker.to_string(), (s.ticker.to_string(), s.exchange)))
            .collect();
        if let Some(orcl) = lookup_stock("ORCL") {
            tickers.insert("ORKL".into(), (orcl.ticker.into(), orcl.exchange));
        }
        TickDecoder { tickers }
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
        TickDecoder { tickers }
    }

    /// A decoder for the stocks of a universe (with its aliases).
    pub fn for_universe(u: &crate::universe::Universe) -> Self {
        let tickers = u
            .ticker_table()
            .into_iter()
            .map(|(alias, ticker, exchange)| (alias, (ticker, exchange)))
            .collect();
        TickDecoder { tickers }
    }

    /// Decodes one message payload.
    pub fn decode(&self, payload: &[u8]) -> Result<Tick, Error> {
        let v: Value =
            serde_json::from_slice(payload).map_err(|e| Error::MalformedJson(e.to_string()))?;
        let obj = v.as_object().ok_or(Error::NotAnObject)?;
        let field = |name: &'static str| obj.get(name).filter(|v| !v.is_null());

        let raw_ticker = match field("TICK").ok_or(Error::MissingField("TICK"))? {
            Value::String(s) => s.trim(),
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

        let price = parse_price(field("PRICE").ok_or(Error::MissingField("PRICE"))?)?;

        let date = match field("TS").ok_or(Error::MissingField("TS"))? {
            Value::String(s) => parse_trading_date(s)?,
            other => return Err(Error::BadDate(other.to_string())),
        };

        let exchange = match field("EXCHANGE") {
            None => listed,
            Some(Value::String(s)) => {
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
            Some(_) => {
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

fn parse_price(v: &Value) -> Result<Decimal, Error> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        // serde_json keeps the shortest representation that round-trips, so "256.9"
        // written as a number comes back as "256.9" and parses to the exact decimal.
        Value::Number(n) => n.to_string(),
        other => return Err(Error::NonNumericPrice(other.to_string())),
    };
    let price = Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| Error::NonNumericPrice(text.clone()))?;
    if price <= Decimal::ZERO {
        return Err(Error::NonPositivePrice(text));
    }
    let mut price = price.normalize();
    if price.scale() > MAX_PRICE_SCALE {
        return Err(Error::TooPrecisePrice(text));
    }
    if price.scale() < 2 {
        price.rescale(2); // money: "256.9" reads as 256.90
    }
    Ok(price)
}

/// Parses `TS`: an ISO date, or a date-time whose date part (as written) is the trading day.
pub fn parse_trading_date(s: &str) -> Result<NaiveDate, Error> {
    let s = s.trim();
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|d| d.date_naive()))
        .or_else(|| {
            [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .map(|d| d.date())
        })
        .or_else(|| {
            ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z"]
                .iter()
                .find_map(|f| DateTime::parse_from_str(s, f).ok())
                .map(|d| d.date_naive())
        })
        .ok_or_else(|| Error::BadDate(s.to_string()))?;
    if date < MARKET_EPOCH {
        return Err(Error::BeforeMarket(date));
    }
    Ok(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or(MARKET_EPOCH)
    }

    fn ibm(price: &str) -> Tick {
        Tick {
            ticker: "IBM".into(),
            exchange: Exchange::Se1,
            date: d(2000, 1, 3),
            price: Decimal::from_str(price).unwrap_or_default(),
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
        let dec = TickDecoder::spec();
        let ok = [
            r#"{"TICK": "IBM", "PRICE": "256.90", "TS": "2000-01-03", "EXCHANGE": "SE1"}"#,
            r#"{"TICK": "IBM", "PRICE": 256.9, "TS": "2000-01-03"}"#,
            r#"{"TICK": "IBM", "PRICE": 256.90, "TS": "2000-01-03T17:30:00"}"#,
            r#"{"TICK": "IBM", "PRICE": "256.9", "TS": "2000-01-03 17:30:00.123"}"#,
            r#"{"TICK": "IBM", "PRICE": "2.569e2", "TS": "2000-01-03T23:30:00+02:00"}"#,
            r#"{"TICK": "ibm", "PRICE": " 256.90 ", "TS": "2000-01-03T09:00:00Z", "EXCHANGE": "se1"}"#,
        ];
        for s in ok {
            let t = dec.decode(s.as_bytes());
            assert_eq!(
                t.as_ref().map(|t| t.price),
                Ok(Decimal::new(25690, 2)),
                "{s}"
            );
            assert_eq!(t.as_ref().map(|t| t.date), Ok(d(2000, 1, 3)), "{s}");
            assert_eq!(t.map(|t| t.exchange), Ok(Exchange::Se1), "{s}");
        }
        let orkl = dec.decode(br#"{"TICK":"ORKL","PRICE":148.79,"TS":"2000-01-03"}"#);
        assert_eq!(orkl.map(|t| t.ticker), Ok("ORCL".to_string()));
        let se2 = dec.decode(br#"{"TICK":"VZ","PRICE":46.49,"TS":"2000-01-03"}"#);
        assert_eq!(se2.map(|t| t.exchange), Ok(Exchange::Se2));
    }

    #[test]
    fn specific_errors() {
        let dec = TickDecoder::spec();
        let cases: [(&str, fn(&Error) -> bool); 12] = [
            (r#"{"TICK": "IBM", "PRICE": "#, |e| {
                matches!(e, Error::MalformedJson(_))
            }),
            (r#"[1,2]"#, |e| matches!(e, Error::NotAnObject)),
            (r#"{"PRICE": "1.00", "TS": "2000-01-03"}"#, |e| {
                matches!(e, Error::MissingField("TICK"))
            }),
            (r#"{"TICK": "IBM", "TS": "2000-01-03"}"#, |e| {
                matches!(e, Error::MissingField("PRICE"))
            }),
            (r#"{"TICK": "IBM", "PRICE": "1.00"}"#, |e| {
                matches!(e, Error::MissingField("TS"))
            }),
            (
                r#"{"TICK": "IBM", "PRICE": "abc", "TS": "2000-01-03"}"#,
                |e| matches!(e, Error::NonNumericPrice(_)),
            ),
            (
                r#"{"TICK": "IBM", "PRICE": true, "TS": "2000-01-03"}"#,
                |e| matches!(e, Error::NonNumericPrice(_)),
            ),
            (
                r#"{"TICK": "IBM", "PRICE": "-3.10", "TS": "2000-01-03"}"#,
                |e| matches!(e, Error::NonPositivePrice(_)),
            ),
            (
                r#"{"TICK": "XYZ", "PRICE": "1.00", "TS": "2000-01-03"}"#,
                |e| matches!(e, Error::UnknownTicker(_)),
            ),
            (
                r#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-13-03"}"#,
                |e| matches!(e, Error::BadDate(_)),
            ),
            (
                r#"{"TICK": "IBM", "PRICE": "1.00", "TS": "1999-12-31"}"#,
                |e| matches!(e, Error::BeforeMarket(_)),
            ),
            (
                r#"{"TICK": "IBM", "PRICE": "1.00", "TS": "2000-01-03", "EXCHANGE": "SE2"}"#,
                |e| matches!(e, Error::WrongExchange { .. }),
            ),
        ];
        for (input, check) in cases {
            match dec.decode(input.as_bytes()) {
                Err(e) => assert!(check(&e), "{input}: unexpected error {e}"),
                Ok(t) => panic!("{input}: accepted as {t:?}"),
            }
        }
        assert!(matches!(
            dec.decode(br#"{"TICK":"IBM","PRICE":"NaN","TS":"2000-01-03"}"#),
            Err(Error::NonNumericPrice(_))
        ));
        assert!(matches!(
            dec.decode(br#"{"TICK":"IBM","PRICE":"0","TS":"2000-01-03"}"#),
            Err(Error::NonPositivePrice(_))
        ));
        assert!(matches!(
            dec.decode(br#"{"TICK":"IBM","PRICE":"1.0000001","TS":"2000-01-03"}"#),
            Err(Error::TooPrecisePrice(_))
        ));
    }
}
