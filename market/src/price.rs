//! The reproducible price models. Prices are exact: whole cents, computed in integers.

use crate::reference::Stock;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stockflow_core::Money;

/// Units of `Money` in a cent.
const CENT: i128 = 10_000;

/// The smallest price a stock can have (0.01).
pub const MIN_PRICE: Money = Money::from_units(CENT);

/// How `r` is drawn: a uniform integer in `[-R_SPAN, R_SPAN)` millionths, i.e. r uniform on a
/// 1e-6 grid of `[-5 %, +5 %)`, exact.
const R_ONE: i128 = 1_000_000;
const R_SPAN: i64 = 50_000;

/// Which price model the exchanges use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PriceModel {
    /// Each close is the previous close × (1 + r), r uniform in [−5 %, +5 %), rounded to cents
    /// (half away from zero), never below 0.01; the first trading day's close is the initial price.
    #[default]
    RandomWalk,
    /// The course starter's model: initial price × (1 + r) every day, not carried forward.
    Course,
}

/// price × (1 + r), r in millionths, rounded to cents half away from zero (prices are
/// positive, so half up), never below 0.01.
fn grow(price: Money, r: i64) -> Money {
    let cents = price.units() / CENT;
    // cents × (10^6 + r) is in 10^-8 dollars; rounding to cents divides by 10^6.
    let scaled = cents * (R_ONE + i128::from(r));
    let rounded = (scaled + R_ONE / 2).div_euclid(R_ONE);
    Money::from_units(rounded * CENT).max(MIN_PRICE)
}

/// A stock's price path: yields the close of the n-th trading day of the market (n = 0 is
/// the first trading day, 2000-01-03). The path depends only on the seed and the ticker,
/// so any range of days can be produced alone and gives the same prices.
#[derive(Debug, Clone)]
pub struct PricePath {
    model: PriceModel,
    initial: Money,
    rng: ChaCha8Rng,
    last: Option<Money>,
}

/// A stable 64-bit FNV-1a hash of a ticker, to derive a per-stock seed.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl PricePath {
    pub fn new(model: PriceModel, seed: u64, stock: &Stock) -> Self {
        Self::from_parts(model, seed, stock.ticker, stock.initial_price())
    }

    /// A path for any ticker and initial price (synthetic markets).
    pub fn from_parts(model: PriceModel, seed: u64, ticker: &str, initial: Money) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(ticker).rotate_left(17));
        PricePath {
            model,
            initial,
            rng,
            last: None,
        }
    }

    fn draw_r(&mut self) -> i64 {
        self.rng.random_range(-R_SPAN..R_SPAN)
    }

    /// The close of the next trading day.
    pub fn next_close(&mut self) -> Money {
        let close = match (self.model, self.last) {
            (PriceModel::RandomWalk, None) => self.initial,
            (PriceModel::RandomWalk, Some(prev)) => {
                let r = self.draw_r();
                grow(prev, r)
            }
            (PriceModel::Course, _) => {
                let r = self.draw_r();
                grow(self.initial, r)
            }
        };
        self.last = Some(close);
        close
    }
}

impl Iterator for PricePath {
    type Item = Money;
    fn next(&mut self) -> Option<Money> {
        Some(self.next_close())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::STOCKS;

    #[test]
    fn growth_rounds_half_up_to_cents() {
        let p = |c: i128| Money::from_units(c * CENT);
        // 100.00 × 1.000050 = 100.005 → 100.01; × 0.999950 = 99.995 → 100.00
        assert_eq!(grow(p(10_000), 50), p(10_001));
        assert_eq!(grow(p(10_000), -50), p(10_000));
        assert_eq!(grow(p(1), -50_000), MIN_PRICE);
        assert_eq!(grow(p(25_690), 12_345), p(26_007));
    }

    #[test]
    fn first_close_is_the_initial_price() {
        for s in &STOCKS {
            let mut p = PricePath::new(PriceModel::RandomWalk, 7, s);
            assert_eq!(p.next_close(), s.initial_price());
        }
    }

    #[test]
    fn same_seed_same_prices_other_seed_other_prices() {
        let s = &STOCKS[0];
        let a: Vec<_> = PricePath::new(PriceModel::RandomWalk, 1, s)
            .take(500)
            .collect();
        let b: Vec<_> = PricePath::new(PriceModel::RandomWalk, 1, s)
            .take(500)
            .collect();
        let c: Vec<_> = PricePath::new(PriceModel::RandomWalk, 2, s)
            .take(500)
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn walk_stays_on_cents_above_floor_within_five_percent() {
        for s in &STOCKS {
            let closes: Vec<_> = PricePath::new(PriceModel::RandomWalk, 42, s)
                .take(7000)
                .collect();
            for w in closes.windows(2) {
                let (prev, next) = (w[0], w[1]);
                assert!(next >= MIN_PRICE);
                assert_eq!(next.units() % CENT, 0, "{next} has more than two decimals");
                // |next - prev| ≤ 5 % of prev, plus at most half a cent of rounding, and the
                // floor lifts anything below a cent back to 0.01.
                let bound = prev.units() * 5 / 100 + CENT / 2;
                assert!(
                    (next.units() - prev.units()).abs() <= bound || next == MIN_PRICE,
                    "{}: {prev} -> {next}",
                    s.ticker
                );
            }
        }
    }

    #[test]
    fn course_model_is_not_carried_forward() {
        for s in &STOCKS {
            let init = s.initial_price();
            for p in PricePath::new(PriceModel::Course, 3, s).take(300) {
                let bound = init.units() * 5 / 100 + CENT / 2;
                assert!(
                    (p.units() - init.units()).abs() <= bound,
                    "{}: {p}",
                    s.ticker
                );
            }
        }
    }
}
