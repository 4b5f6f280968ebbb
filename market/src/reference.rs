//! The market's reference data, exactly as the course's specification gives it (`docs/market.md`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use stockflow_core::Money;

/// One of the two stock exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Exchange {
    #[serde(rename = "SE1")]
    Se1,
    #[serde(rename = "SE2")]
    Se2,
}

impl Exchange {
    pub const ALL: [Exchange; 2] = [Exchange::Se1, Exchange::Se2];

    pub fn code(self) -> &'static str {
        match self {
            Exchange::Se1 => "SE1",
            Exchange::Se2 => "SE2",
        }
    }

    /// The stocks this exchange trades, in the spec's order.
    pub fn stocks(self) -> impl Iterator<Item = &'static Stock> {
        STOCKS.iter().filter(move |s| s.exchange == self)
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Exchange {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "SE1" => Ok(Exchange::Se1),
            "SE2" => Ok(Exchange::Se2),
            _ => Err(crate::Error::UnknownExchange(s.to_string())),
        }
    }
}

/// A listed stock with its initial price in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    pub ticker: &'static str,
    pub exchange: Exchange,
    initial_cents: i64,
}

impl Stock {
    /// The close on the first trading day of the market.
    pub fn initial_price(&self) -> Money {
        Money::from_units(i128::from(self.initial_cents) * 10_000)
    }
}

const fn stock(ticker: &'static str, exchange: Exchange, initial_cents: i64) -> Stock {
    Stock {
        ticker,
        exchange,
        initial_cents,
    }
}

/// The 24 stocks: SE1 trades the first 12, SE2 the other 12.
pub static STOCKS: [Stock; 24] = [
    stock("IBM", Exchange::Se1, 25690),
    stock("AAPL", Exchange::Se1, 22748),
    stock("FB", Exchange::Se1, 59799),
    stock("AMZN", Exchange::Se1, 19454),
    stock("GOOG", Exchange::Se1, 16781),
    stock("META", Exchange::Se1, 59799),
    stock("MSI", Exchange::Se1, 41567),
    stock("INTC", Exchange::Se1, 1993),
    stock("AMD", Exchange::Se1, 9663),
    stock("MSFT", Exchange::Se1, 38016),
    stock("DELL", Exchange::Se1, 9034),
    stock("ORCL", Exchange::Se1, 14879),
    stock("HPQ", Exchange::Se2, 2898),
    stock("CSCO", Exchange::Se2, 6006),
    stock("ZM", Exchange::Se2, 7347),
    stock("QCOM", Exchange::Se2, 15498),
    stock("ADBE", Exchange::Se2, 43508),
    stock("VZ", Exchange::Se2, 4649),
    stock("TXN", Exchange::Se2, 18649),
    stock("CRM", Exchange::Se2, 27290),
    stock("AVGO", Exchange::Se2, 18445),
    stock("NVDA", Exchange::Se2, 10698),
    stock("MSTR", Exchange::Se2, 23927),
    stock("EBAY", Exchange::Se2, 6819),
];

/// Looks a ticker up, accepting the course starter's `ORKL` as an alias of `ORCL`
/// and any letter case.
pub fn lookup_stock(ticker: &str) -> Option<&'static Stock> {
    let t = ticker.trim();
    let t = if t.eq_ignore_ascii_case("ORKL") {
        "ORCL"
    } else {
        t
    };
    STOCKS.iter().find(|s| s.ticker.eq_ignore_ascii_case(t))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Investor {
    pub id: &'static str,
    pub name: &'static str,
    pub city: &'static str,
}

pub static INVESTORS: [Investor; 3] = [
    Investor {
        id: "Inv1",
        name: "Aegean Capital",
        city: "Athens",
    },
    Investor {
        id: "Inv2",
        name: "Hermes Partners",
        city: "Thessaloniki",
    },
    Investor {
        id: "Inv3",
        name: "Olympus Funds",
        city: "Patras",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Portfolio {
    pub id: &'static str,
    pub investor: &'static str,
    pub cumulative: bool,
    /// Initial holdings: (ticker, number of shares).
    pub holdings: &'static [(&'static str, i64)],
}

pub static PORTFOLIOS: [Portfolio; 6] = [
    Portfolio {
        id: "P11",
        investor: "Inv1",
        cumulative: true,
        holdings: &[
            ("IBM", 1300),
            ("AAPL", 2200),
            ("FB", 1900),
            ("AMZN", 2500),
            ("GOOG", 1900),
            ("AVGO", 2400),
        ],
    },
    Portfolio {
        id: "P12",
        investor: "Inv1",
        cumulative: false,
        holdings: &[
            ("VZ", 2900),
            ("INTC", 2600),
            ("AMD", 2100),
            ("MSFT", 1200),
            ("DELL", 2700),
            ("ORCL", 1200),
        ],
    },
    Portfolio {
        id: "P21",
        investor: "Inv2",
        cumulative: true,
        holdings: &[
            ("HPQ", 1600),
            ("CSCO", 1700),
            ("ZM", 1900),
            ("QCOM", 2100),
            ("ADBE", 2800),
            ("VZ", 1700),
        ],
    },
    Portfolio {
        id: "P22",
        investor: "Inv2",
        cumulative: false,
        holdings: &[
            ("TXN", 1400),
            ("CRM", 2600),
            ("AVGO", 1700),
            ("NVDA", 1800),
            ("MSTR", 2600),
            ("MSI", 1800),
        ],
    },
    Portfolio {
        id: "P31",
        investor: "Inv3",
        cumulative: true,
        holdings: &[
            ("HPQ", 2200),
            ("ZM", 1800),
            ("DELL", 2400),
            ("NVDA", 1200),
            ("IBM", 1900),
            ("INTC", 1600),
        ],
    },
    Portfolio {
        id: "P32",
        investor: "Inv3",
        cumulative: false,
        holdings: &[
            ("VZ", 1800),
            ("AVGO", 2900),
            ("NVDA", 1600),
            ("AAPL", 2200),
            ("DELL", 2500),
            ("ORCL", 2000),
        ],
    },
];

pub fn lookup_portfolio(id: &str) -> Option<&'static Portfolio> {
    PORTFOLIOS
        .iter()
        .find(|p| p.id.eq_ignore_ascii_case(id.trim()))
}

pub fn lookup_investor(id: &str) -> Option<&'static Investor> {
    INVESTORS
        .iter()
        .find(|i| i.id.eq_ignore_ascii_case(id.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_at_initial_prices(p: &Portfolio) -> Money {
        p.holdings.iter().fold(Money::ZERO, |sum, (t, q)| {
            let s = lookup_stock(t)
                .map(|s| s.initial_price())
                .unwrap_or_default();
            sum.wrapping_add(s.wrapping_mul_int(*q))
        })
    }

    #[test]
    fn twelve_stocks_per_exchange() {
        assert_eq!(Exchange::Se1.stocks().count(), 12);
        assert_eq!(Exchange::Se2.stocks().count(), 12);
        assert_eq!(Exchange::Se1.stocks().next().map(|s| s.ticker), Some("IBM"));
        assert_eq!(
            Exchange::Se2.stocks().last().map(|s| s.ticker),
            Some("EBAY")
        );
    }

    #[test]
    fn orkl_is_an_alias_of_orcl() {
        assert_eq!(lookup_stock("ORKL").map(|s| s.ticker), Some("ORCL"));
        assert_eq!(lookup_stock("orcl").map(|s| s.ticker), Some("ORCL"));
        assert!(lookup_stock("XYZ").is_none());
    }

    #[test]
    fn every_held_ticker_is_listed() {
        for p in &PORTFOLIOS {
            assert_eq!(p.holdings.len(), 6, "{}", p.id);
            for (t, _) in p.holdings {
                assert!(lookup_stock(t).is_some(), "{} holds unknown {t}", p.id);
            }
        }
    }

    #[test]
    fn spec_values_at_initial_prices() {
        let p11 = lookup_portfolio("P11").map(value_at_initial_prices);
        let p12 = lookup_portfolio("P12").map(value_at_initial_prices);
        assert_eq!(p11.map(|v| v.to_string()), Some("3218476.00".into()));
        assert_eq!(p12.map(|v| v.to_string()), Some("1268220.00".into()));
    }

    #[test]
    fn meta_and_ebay_are_in_no_portfolio() {
        for p in &PORTFOLIOS {
            for (t, _) in p.holdings {
                assert_ne!(*t, "META");
                assert_ne!(*t, "EBAY");
            }
        }
    }
}
