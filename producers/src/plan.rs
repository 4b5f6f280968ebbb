//! What an exchange emits: pure, reproducible, no I/O.

use crate::{Error, Result};
use chrono::NaiveDate;
use std::sync::Arc;
use stockflow_market::{
    first_trading_day, Calendar, Exchange, PriceModel, PricePath, Tick, Universe,
};

/// Which days an exchange emits and how its prices move.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub exchange: Exchange,
    pub seed: u64,
    pub model: PriceModel,
    /// First calendar day to emit (earlier trading days still advance the price paths).
    pub from: NaiveDate,
    /// Last calendar day to emit.
    pub until: NaiveDate,
    /// At most this many trading days (counted from `from`).
    pub max_days: Option<usize>,
    /// The market whose stocks the exchange lists.
    pub universe: Arc<Universe>,
}

/// The 12 closes of one exchange on one trading day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayTicks {
    pub date: NaiveDate,
    pub ticks: Vec<Tick>,
}

impl Schedule {
    /// The trading days this schedule emits.
    pub fn days(&self) -> Result<Vec<NaiveDate>> {
        if self.until < self.from {
            return Err(Error::Schedule(format!(
                "the end {} is before the start {}",
                self.until, self.from
            )));
        }
        let mut days = Calendar::new().trading_days(self.from, self.until);
        if let Some(n) = self.max_days {
            days.truncate(n);
        }
        Ok(days)
    }

    /// Every tick of the schedule, day by day. Prices are the model's closes for those dates:
    /// the same whatever `from` is, since the paths always start on the market's first day.
    pub fn plan(&self) -> Result<Vec<DayTicks>> {
        let days = self.days()?;
        let Some(&last) = days.last() else {
            return Ok(Vec::new());
        };
        let all_days = Calendar::new().trading_days(first_trading_day(), last);
        let mut paths: Vec<(&str, PricePath)> = self
            .universe
            .stocks
            .iter()
            .filter(|s| s.exchange == self.exchange)
            .map(|s| {
                let path = PricePath::from_parts(self.model, self.seed, &s.ticker, s.initial);
                (s.ticker.as_str(), path)
            })
            .collect();
        let first = days[0];
        let mut out = Vec::with_capacity(days.len());
        for date in all_days {
            let closes: Vec<Tick> = paths
                .iter_mut()
                .map(|(ticker, path)| Tick {
                    ticker: (*ticker).to_string(),
                    exchange: self.exchange,
                    date,
                    price: path.next_close(),
                })
                .collect();
            if date >= first {
                out.push(DayTicks {
                    date,
                    ticks: closes,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or(stockflow_market::MARKET_EPOCH)
    }

    fn schedule(from: NaiveDate, until: NaiveDate) -> Schedule {
        Schedule {
            exchange: Exchange::Se2,
            seed: 11,
            model: PriceModel::RandomWalk,
            from,
            until,
            max_days: None,
            universe: Arc::new(Universe::spec()),
        }
    }

    #[test]
    fn prices_do_not_depend_on_the_start() {
        let full = schedule(d(2000, 1, 1), d(2000, 6, 30))
            .plan()
            .unwrap_or_default();
        let tail = schedule(d(2000, 3, 1), d(2000, 6, 30))
            .plan()
            .unwrap_or_default();
        assert!(!tail.is_empty());
        assert_eq!(full[full.len() - tail.len()..], tail[..]);
        assert_eq!(full[0].date, d(2000, 1, 3));
        assert_eq!(full[0].ticks.len(), 12);
        assert_eq!(full[0].ticks[0].ticker, "HPQ");
        assert_eq!(full[0].ticks[0].price.to_string(), "28.98");
    }

    #[test]
    fn max_days_counts_trading_days() {
        let mut s = schedule(d(2000, 1, 1), d(2000, 12, 31));
        s.max_days = Some(5);
        let days = s.days().unwrap_or_default();
        assert_eq!(days.len(), 5);
        assert_eq!(days[0], d(2000, 1, 3));
        assert_eq!(days[4], d(2000, 1, 10)); // 6 Jan is Epiphany
    }

    #[test]
    fn reversed_range_is_an_error() {
        assert!(schedule(d(2001, 1, 1), d(2000, 1, 1)).plan().is_err());
    }
}
