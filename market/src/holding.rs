//! The `holdings` message: a portfolio's quantity of one stock from a first trading day on.
//!
//! `{"PORTFOLIO":"P11","TICK":"IBM","QTY":1300,"FROM":"2000-01-03"}`, keyed `P11/IBM`.
//! The record holds until a later record (by `FROM`) for the same portfolio and ticker;
//! `QTY` 0 closes the position. A second record with the same `FROM` replaces the first.

use crate::tick::parse_trading_date;
use crate::universe::{PortfolioId, StockId, Universe};
use crate::Error;
use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holding {
    pub portfolio: String,
    pub ticker: String,
    pub quantity: i64,
    pub from: NaiveDate,
}

#[derive(Serialize)]
struct WireOut<'a> {
    #[serde(rename = "PORTFOLIO")]
    portfolio: &'a str,
    #[serde(rename = "TICK")]
    ticker: &'a str,
    #[serde(rename = "QTY")]
    qty: i64,
    #[serde(rename = "FROM")]
    from: String,
}

impl Holding {
    pub fn key(&self) -> String {
        format!("{}/{}", self.portfolio, self.ticker)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&WireOut {
            portfolio: &self.portfolio,
            ticker: &self.ticker,
            qty: self.quantity,
            from: self.from.to_string(),
        })
        .unwrap_or_default()
    }
}

/// A holding resolved against a universe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldingIds {
    pub portfolio: PortfolioId,
    pub stock: StockId,
    pub quantity: i64,
    pub from: NaiveDate,
}

/// Decodes a `holdings` payload and resolves it against `universe`.
pub fn decode_holding(universe: &Universe, payload: &[u8]) -> Result<(Holding, HoldingIds), Error> {
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| Error::MalformedJson(e.to_string()))?;
    let obj = v.as_object().ok_or(Error::NotAnObject)?;
    let text = |name: &'static str| -> Result<String, Error> {
        match obj.get(name) {
            None | Some(Value::Null) => Err(Error::MissingField(name)),
            Some(Value::String(s)) => Ok(s.trim().to_string()),
            Some(_) => Err(Error::WrongType {
                field: name,
                expected: "a string",
            }),
        }
    };
    let portfolio_name = text("PORTFOLIO")?;
    let ticker_name = text("TICK")?;
    let quantity = match obj.get("QTY") {
        None | Some(Value::Null) => return Err(Error::MissingField("QTY")),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| Error::BadQuantity(n.to_string()))?,
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| Error::BadQuantity(s.clone()))?,
        Some(other) => return Err(Error::BadQuantity(other.to_string())),
    };
    if quantity < 0 {
        return Err(Error::BadQuantity(quantity.to_string()));
    }
    let from = parse_trading_date(&text("FROM")?)?;
    let portfolio = universe
        .portfolio_id(&portfolio_name)
        .ok_or_else(|| Error::UnknownPortfolio(portfolio_name.clone()))?;
    let stock = universe
        .stock_id(&ticker_name)
        .ok_or_else(|| Error::UnknownTicker(ticker_name.clone()))?;
    let holding = Holding {
        portfolio: universe
            .portfolio(portfolio)
            .map_or(portfolio_name, |p| p.id.clone()),
        ticker: universe
            .stock(stock)
            .map_or(ticker_name, |s| s.ticker.clone()),
        quantity,
        from,
    };
    Ok((
        holding,
        HoldingIds {
            portfolio,
            stock,
            quantity,
            from,
        },
    ))
}

/// The holdings a universe starts with, all from `from`.
pub fn initial_holdings(universe: &Universe, from: NaiveDate) -> Vec<Holding> {
    universe
        .portfolios
        .iter()
        .flat_map(|p| {
            p.holdings.iter().filter_map(move |(s, q)| {
                universe.stock(*s).map(|s| Holding {
                    portfolio: p.id.clone(),
                    ticker: s.ticker.clone(),
                    quantity: *q,
                    from,
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let u = Universe::spec();
        let h = Holding {
            portfolio: "P11".into(),
            ticker: "IBM".into(),
            quantity: 1300,
            from: NaiveDate::from_ymd_opt(2000, 1, 3).unwrap_or_default(),
        };
        let (back, ids) = decode_holding(&u, &h.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, h);
        assert_eq!((ids.portfolio, ids.stock, ids.quantity), (0, 0, 1300));
        let bad = |s: &str| decode_holding(&u, s.as_bytes()).map(|_| ()).unwrap_err();
        assert!(matches!(
            bad(r#"{"PORTFOLIO":"P99","TICK":"IBM","QTY":1,"FROM":"2000-01-03"}"#),
            Error::UnknownPortfolio(_)
        ));
        assert!(matches!(
            bad(r#"{"PORTFOLIO":"P11","TICK":"XYZ","QTY":1,"FROM":"2000-01-03"}"#),
            Error::UnknownTicker(_)
        ));
        assert!(matches!(
            bad(r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":-5,"FROM":"2000-01-03"}"#),
            Error::BadQuantity(_)
        ));
        assert!(matches!(
            bad(r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":1.5,"FROM":"2000-01-03"}"#),
            Error::BadQuantity(_)
        ));
        assert!(matches!(
            bad(r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":1,"FROM":"03/01/2000"}"#),
            Error::BadDate(_)
        ));
        assert!(matches!(
            bad(r#"{"PORTFOLIO":"P11","TICK":"IBM","FROM":"2000-01-03"}"#),
            Error::MissingField("QTY")
        ));
        assert_eq!(initial_holdings(&u, h.from).len(), 36);
    }
}
