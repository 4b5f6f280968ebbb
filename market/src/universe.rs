//! A universe of stocks and portfolios: the spec's market, or a large synthetic one for
//! benchmarks. The dataflow works on dense ids into a universe.

use crate::price::PriceModel;
use crate::reference::{Exchange, INVESTORS, PORTFOLIOS, STOCKS};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use stockflow_core::Money;

pub use stockflow_core::{PortfolioId, StockId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockDef {
    pub ticker: String,
    pub exchange: Exchange,
    pub initial: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortfolioDef {
    pub id: String,
    pub investor: String,
    pub cumulative: bool,
    /// Initial holdings: (stock, shares).
    pub holdings: Vec<(StockId, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvestorDef {
    pub id: String,
    pub name: String,
    pub city: String,
}

#[derive(Debug, Clone)]
pub struct Universe {
    pub stocks: Vec<StockDef>,
    pub portfolios: Vec<PortfolioDef>,
    pub investors: Vec<InvestorDef>,
    stock_index: HashMap<String, StockId>,
    portfolio_index: HashMap<String, PortfolioId>,
}

/// Sizes of a synthetic market.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticSpec {
    pub stocks: u32,
    pub portfolios: u32,
    pub min_holdings: u32,
    pub max_holdings: u32,
    pub seed: u64,
}

impl Universe {
    fn build(
        stocks: Vec<StockDef>,
        portfolios: Vec<PortfolioDef>,
        investors: Vec<InvestorDef>,
        aliases: &[(&str, &str)],
    ) -> Self {
        let mut stock_index: HashMap<String, StockId> = stocks
            .iter()
            .enumerate()
            .map(|(i, s)| (s.ticker.to_ascii_uppercase(), i as StockId))
            .collect();
        for (alias, target) in aliases {
            if let Some(&id) = stock_index.get(*target) {
                stock_index.insert(alias.to_string(), id);
            }
        }
        let portfolio_index = portfolios
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.to_ascii_uppercase(), i as PortfolioId))
            .collect();
        Universe {
            stocks,
            portfolios,
            investors,
            stock_index,
            portfolio_index,
        }
    }

    /// The spec's 24 stocks, 3 investors and 6 portfolios (`ORKL` accepted for `ORCL`).
    pub fn spec() -> Self {
        let stocks: Vec<StockDef> = STOCKS
            .iter()
            .map(|s| StockDef {
                ticker: s.ticker.to_string(),
                exchange: s.exchange,
                initial: s.initial_price(),
            })
            .collect();
        let index = |t: &str| STOCKS.iter().position(|s| s.ticker == t).unwrap_or(0) as StockId;
        let portfolios = PORTFOLIOS
            .iter()
            .map(|p| PortfolioDef {
                id: p.id.to_string(),
                investor: p.investor.to_string(),
                cumulative: p.cumulative,
                holdings: p.holdings.iter().map(|(t, q)| (index(t), *q)).collect(),
            })
            .collect();
        let investors = INVESTORS
            .iter()
            .map(|i| InvestorDef {
                id: i.id.to_string(),
                name: i.name.to_string(),
                city: i.city.to_string(),
            })
            .collect();
        Self::build(stocks, portfolios, investors, &[("ORKL", "ORCL")])
    }

    /// A reproducible synthetic market: stocks `S0000…` split between the two exchanges,
    /// portfolios `Q00000…` of `min..=max` distinct holdings, 100 investors.
    pub fn synthetic(spec: SyntheticSpec) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        // The input contract bounds a universe (and so a portfolio's positions).
        let n = spec
            .stocks
            .clamp(1, stockflow_core::limits::MAX_STOCKS as u32);
        let stocks: Vec<StockDef> = (0..n)
            .map(|i| StockDef {
                ticker: format!("S{i:04}"),
                exchange: if i < n.div_ceil(2) {
                    Exchange::Se1
                } else {
                    Exchange::Se2
                },
                initial: Money::from_units(i128::from(rng.random_range(500..100_000i64)) * 10_000),
            })
            .collect();
        let investors: Vec<InvestorDef> = (0..100)
            .map(|i| InvestorDef {
                id: format!("I{i:03}"),
                name: format!("Synthetic investor {i}"),
                city: "Nowhere".into(),
            })
            .collect();
        let lo = spec.min_holdings.clamp(1, n);
        let hi = spec.max_holdings.clamp(lo, n);
        let portfolios = (0..spec.portfolios)
            .map(|i| {
                let k = rng.random_range(lo..=hi) as usize;
                let mut held: Vec<StockId> = Vec::with_capacity(k);
                while held.len() < k {
                    let s = rng.random_range(0..n);
                    if !held.contains(&s) {
                        held.push(s);
                    }
                }
                PortfolioDef {
                    id: format!("Q{i:05}"),
                    investor: format!("I{:03}", i % 100),
                    cumulative: i % 2 == 0,
                    holdings: held
                        .into_iter()
                        .map(|s| (s, rng.random_range(1..50) * 100))
                        .collect(),
                }
            })
            .collect();
        Self::build(stocks, portfolios, investors, &[])
    }

    pub fn stock_id(&self, ticker: &str) -> Option<StockId> {
        self.stock_index
            .get(&ticker.trim().to_ascii_uppercase())
            .copied()
    }

    pub fn portfolio_id(&self, id: &str) -> Option<PortfolioId> {
        self.portfolio_index
            .get(&id.trim().to_ascii_uppercase())
            .copied()
    }

    pub fn stock(&self, id: StockId) -> Option<&StockDef> {
        self.stocks.get(id as usize)
    }

    pub fn portfolio(&self, id: PortfolioId) -> Option<&PortfolioDef> {
        self.portfolios.get(id as usize)
    }

    /// Aliases and canonical tickers, for a tick decoder over this universe.
    pub fn ticker_table(&self) -> Vec<(String, String, Exchange)> {
        self.stock_index
            .iter()
            .filter_map(|(alias, &id)| {
                self.stock(id)
                    .map(|s| (alias.clone(), s.ticker.clone(), s.exchange))
            })
            .collect()
    }

    /// A price path for a stock of this universe.
    pub fn price_path(
        &self,
        model: PriceModel,
        seed: u64,
        id: StockId,
    ) -> Option<crate::PricePath> {
        self.stock(id)
            .map(|s| crate::PricePath::from_parts(model, seed, &s.ticker, s.initial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_universe_ids() {
        let u = Universe::spec();
        assert_eq!(u.stocks.len(), 24);
        assert_eq!(u.portfolios.len(), 6);
        assert_eq!(u.stock_id("ORKL"), u.stock_id("ORCL"));
        assert_eq!(u.portfolio_id("p11"), Some(0));
        assert_eq!(u.portfolio(1).map(|p| p.investor.as_str()), Some("Inv1"));
    }

    #[test]
    fn synthetic_universe_is_reproducible() {
        let spec = SyntheticSpec {
            stocks: 50,
            portfolios: 20,
            min_holdings: 3,
            max_holdings: 8,
            seed: 1,
        };
        let a = Universe::synthetic(spec);
        let b = Universe::synthetic(spec);
        assert_eq!(a.portfolios, b.portfolios);
        assert!(a
            .portfolios
            .iter()
            .all(|p| (3..=8).contains(&p.holdings.len())));
    }
}
