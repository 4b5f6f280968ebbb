//! Records to dataflow inputs under the input contract; a record that breaks it becomes a dead
//! letter with a stable code (`docs/input.md`).

use chrono::Datelike;
use std::sync::Arc;
use stockflow_core::{DeadLetter, HoldingInput, PriceInput, Version};
use stockflow_market::{decode_holding, Calendar, TickDecoder, Universe};
use stockflow_transport::{Lookahead, OrderKey, RecordRef};

/// What a record became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Price(PriceInput),
    Holding(HoldingInput),
    Rejected(DeadLetter),
}

/// One worker's decoder (its calendar caches holidays per year).
pub struct Decoder {
    universe: Arc<Universe>,
    ticks: TickDecoder,
    calendar: Calendar,
}

fn version(r: &RecordRef<'_>) -> Version {
    (r.timestamp_ms.unwrap_or(0), r.partition, r.offset)
}

impl Decoder {
    pub fn new(universe: Arc<Universe>) -> Self {
        Decoder {
            ticks: TickDecoder::for_universe(&universe),
            universe,
            calendar: Calendar::new(),
        }
    }

    /// A record of the price topic.
    pub fn price(&mut self, r: &RecordRef<'_>) -> Decoded {
        let payload = r.payload.unwrap_or_default();
        match self.ticks.decode(payload) {
            Ok(tick) => match self.universe.stock_id(&tick.ticker) {
                Some(stock) => Decoded::Price(PriceInput {
                    stock,
                    date: tick.date,
                    price: tick.price,
                    version: version(r),
                }),
                None => reject(
                    r,
                    "unknown_ticker",
                    &format!("unknown ticker {}", tick.ticker),
                ),
            },
            Err(e) => reject(r, e.code(), &e.to_string()),
        }
    }

    /// A record of the holdings topic.
    pub fn holding(&mut self, r: &RecordRef<'_>) -> Decoded {
        let payload = r.payload.unwrap_or_default();
        match decode_holding(&self.universe, &mut self.calendar, payload) {
            Ok((_, ids)) => Decoded::Holding(HoldingInput {
                portfolio: ids.portfolio,
                stock: ids.stock,
                from: ids.from,
                quantity: ids.quantity,
                version: version(r),
            }),
            Err(e) => reject(r, e.code(), &e.to_string()),
        }
    }
}

fn reject(r: &RecordRef<'_>, code: &str, reason: &str) -> Decoded {
    Decoded::Rejected(DeadLetter::new(
        r.position(),
        r.payload.unwrap_or_default(),
        code,
        reason,
    ))
}

/// How far out of day order the job expects one partition's closes to be, in calendar days (the
/// order key's unit): a partition is read this far past a close before the close is handed
/// over, during a catch-up. Two exchanges writing side by side interleave their producers'
/// batches: a backfill through tansu was out of order by 34 days (300 days backfilled), 63 and
/// 294 days (two productions of the same 2,500), 175 days (the spec market since 2000). It
/// starts at a year: started lower, it grew only once records came later than it, and the days
/// they belonged to had been evaluated incomplete and were corrected (a 2,500-day catch-up of
/// `synthetic:200:2000:10:50:1` peaked at 265–281 MiB correcting, 146–159 MiB at a year). A
/// partition that delivers while it fills is not late (`merge`). The memory it costs is that
/// many days of closes per partition, at most `merge::MAX_WINDOW` records: past about 200
/// closes a trading day in one partition (50,000 ÷ 252), the window, not the year, bounds how
/// far ahead a partition is read (2,000 stocks on 4 partitions: about 100 trading days).
pub const DAY_LOOKAHEAD: Lookahead = Lookahead {
    initial: 366,
    max: 366,
};

/// The order in which a worker's source merges its partitions: price records by trading day
/// (so that a catch-up reads every partition's day D before any partition's day D+1, as a live
/// run receives them), everything else first (holdings, records that will be rejected).
pub fn trading_day_order(prices_topic: &str) -> OrderKey {
    let topic = prices_topic.to_string();
    Box::new(move |r: &RecordRef<'_>| {
        if r.topic != topic {
            return None;
        }
        let day = TickDecoder::day_of(r.payload.unwrap_or_default())?;
        Some(i64::from(day.num_days_from_ce()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: Option<&[u8]>) -> RecordRef<'_> {
        RecordRef {
            topic: "t",
            partition: 1,
            offset: 9,
            key: None,
            payload,
            timestamp_ms: Some(5),
        }
    }

    #[test]
    fn decodes_or_rejects_with_codes() {
        let mut d = Decoder::new(Arc::new(Universe::spec()));
        let ok = d.price(&record(Some(
            br#"{"TICK":"IBM","PRICE":"256.90","TS":"2000-01-03"}"#,
        )));
        assert!(matches!(ok, Decoded::Price(p) if p.version == (5, 1, 9) && p.stock == 0));
        let empty = d.price(&record(None));
        assert!(matches!(empty, Decoded::Rejected(dl) if dl.code == "empty_payload"));
        let weekend = d.holding(&record(Some(
            br#"{"PORTFOLIO":"P11","TICK":"IBM","QTY":1,"FROM":"2000-01-08"}"#,
        )));
        assert!(matches!(weekend, Decoded::Rejected(dl) if dl.code == "not_a_trading_day"));
    }
}
