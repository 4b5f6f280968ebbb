//! The `holdings` message: a portfolio's quantity of one stock from a first trading day on.
//!
//! `{"PORTFOLIO":"P11","TICK":"IBM","QTY":1300,"FROM":"2000-01-03"}`, keyed `P11/IBM`.
//! The record holds until a later record (by `FROM`) for the same portfolio and ticker;
//! `QTY` 0 closes the position. A second record with the same `FROM` replaces the first.

use crate::calendar::Calendar;
use crate::json::{Field, Object};
use crate::tick::{check_size, parse_date, parse_quantity};
use crate::universe::{PortfolioId, StockId, Universe};
use crate::Error;
use chrono::NaiveDate;
use serde::Serialize;

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

/// Decodes a `holdings` payload under the input contract (`docs/input.md`) and resolves it
/// against `universe`; `FROM` must be a trading day.
pub fn decode_holding(
    universe: &Universe,
    calendar: &mut Calendar,
    payload: &[u8],
) -> Result<(Holding, HoldingIds), Error> {
    check_size(payload)?;
    let obj = Object::parse(payload)?;
    let text = |name: &'static str| -> Result<&str, Error> {
        match obj.get(name) {
            Field::Null => Err(Error::MissingField(name)),
            Field::Str(s) => Ok(s),
            _ => Err(Error::WrongType {
                field: name,
                expected: "a string",
            }),
        }
    };
    let portfolio_name = text("PORTFOLIO")?;
    let ticker_name = text("TICK")?;
    let quantity = parse_quantity(obj.get("QTY"))?;
    let from = match obj.get("FROM") {
        Field::Null => return Err(Error::MissingField("FROM")),
        Field::Str(s) => parse_date(s)?,
        Field::Number(t) | Field::Other(t) => return Err(Error::BadDate(t.to_string())),
    };
    if !calendar.is_trading_day(from) {
        return Err(Error::NotATradingDay(from));
    }
    let portfolio = universe
        .portfolio_id(portfolio_name)
        .ok_or_else(|| Error::UnknownPortfolio(portfolio_name.to_string()))?;
    let stock = universe
        .stock_id(ticker_name)
        .ok_or_else(|| Error::UnknownTicker(ticker_name.to_string()))?;
    let holding = Holding {
        portfolio: universe
            .portfolio(portfolio)
            .map_or_else(|| portfolio_name.to_string(), |p| p.id.clone()),
        ticker: universe
            .stock(stock)
            .map_or_else(|| ticker_name.to_string(), |s| s.ticker.clone()),
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
        let mut cal = Calendar::new();
        let h = Holding {
            portfolio: "P11".into(),
            ticker: "IBM".into(),
            quantity: 1300,
            from: NaiveDate::from_ymd_opt(2000, 1, 3).unwrap_or_default(),
        };
        let (back, ids) =
            decode_holding(&u, &mut cal, &h.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, h);
        assert_eq!((ids.portfolio, ids.stock, ids.quantity), (0, 0, 1300));
        let ok = decode_holding(
            &u,
            &mut cal,
            br#"{"PORTFOLIO":"p11","TICK":"ibm","QTY":"0","FROM":"2000-01-03T10:00:00Z"}"#,
        );
        assert_eq!(
            ok.map(|(h, _)| (h.portfolio, h.quantity)),
            Ok(("P11".into(), 0))
        );
        let mut code = |s: &str| {
            decode_holding(&u, &mut cal, s.as_bytes())
                .err()
                .map(|e| e.code())
                .unwrap_or("accepted")
        };
        for (input, want) in [
            (
                r#"{"PORTFOLIO":"P99","TICK":"IBM","QTY":1,"FROM":"2000-01-03"}"#,
                "unknown_portfolio",
            ),
            (
                r#"{"PORTFOLIO":"P11","TICK":"XYZ","QTY":1,"FROM":"2000-01-03"}"#,
                "unknown_ticker",
            ),
            (
                r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":-5,"FROM":"2000-01-03"}"#,
                "quantity_out_of_range",
            ),
            (
                r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":1.5,"FROM":"2000-01-03"}"#,
                "bad_quantity",
            ),
            (
                r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":1e3,"FROM":"2000-01-03"}"#,
                "bad_quantity",
            ),
            (
                r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":"1_000","FROM":"2000-01-03"}"#,
                "bad_quantity",
            ),
            (
                r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":1000000001,"FROM":"2000-01-03"}"#,
                "quantity_out_of_range",
            ),
            (
                r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":99999999999999999999,"FROM":"2000-01-03"}"#,
                "quantity_out_of_range",
            ),
            (
                r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":1,"FROM":"03/01/2000"}"#,
                "bad_date",
            ),
            (
                r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":1,"FROM":"2000-01-08"}"#,
                "not_a_trading_day",
            ),
            (
                r#"{"PORTFOLIO":"P11","TICK":"IBM","FROM":"2000-01-03"}"#,
                "missing_field",
            ),
            (
                r#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":1,"QTY":2,"FROM":"2000-01-03"}"#,
                "duplicate_field",
            ),
            (
                r#"{"PORTFOLIO":11,"TICK":"IBM","QTY":1,"FROM":"2000-01-03"}"#,
                "wrong_type",
            ),
        ] {
            assert_eq!(code(input), want, "{input}");
        }
        assert_eq!(initial_holdings(&u, h.from).len(), 36);
    }
}
