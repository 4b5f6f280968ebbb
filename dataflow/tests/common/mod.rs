//! Shared by the dataflow's tests: a plain, obviously-correct reference evaluator written here,
//! independently of the job (rust_decimal, brute force over every portfolio-day).
#![allow(dead_code)]

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, BTreeSet};
use stockflow_core::{Evaluation, HoldingInput, Issue, IssueKind, Money, PriceInput, Version};

/// The reference computes with rust_decimal, independently of the job's fixed-point money.
pub fn money(d: Decimal) -> Money {
    Money::parse(&d.normalize().to_string()).unwrap_or_else(|e| panic!("{d}: {e}"))
}

pub fn decimal(m: Money) -> Decimal {
    m.to_string().parse().unwrap_or_else(|e| panic!("{m}: {e}"))
}

#[derive(Debug, Clone)]
pub enum Event {
    Price(PriceInput),
    Holding(HoldingInput),
}

/// The reference: latest versions, then every portfolio-day by brute force; the days with some
/// but not all closes of the held stocks are incomplete.
pub fn reference(events: &[Event]) -> (BTreeSet<Evaluation>, BTreeSet<Issue>) {
    let mut closes: BTreeMap<(u32, NaiveDate), (Version, Decimal)> = BTreeMap::new();
    let mut records: BTreeMap<(u32, u32, NaiveDate), (Version, i64)> = BTreeMap::new();
    for e in events {
        match e {
            Event::Price(p) => {
                let price = decimal(p.price);
                let slot = closes
                    .entry((p.stock, p.date))
                    .or_insert((p.version, price));
                if p.version >= slot.0 {
                    *slot = (p.version, price);
                }
            }
            Event::Holding(h) => {
                let slot = records
                    .entry((h.portfolio, h.stock, h.from))
                    .or_insert((h.version, h.quantity));
                if h.version >= slot.0 {
                    *slot = (h.version, h.quantity);
                }
            }
        }
    }
    let quantity = |p: u32, s: u32, day: NaiveDate| -> i64 {
        // The record with the greatest `from` on or before `day`.
        records
            .iter()
            .filter(|((rp, rs, from), _)| *rp == p && *rs == s && *from <= day)
            .max_by_key(|((_, _, from), _)| *from)
            .map_or(0, |(_, (_, q))| *q)
    };
    let portfolios: BTreeSet<u32> = records.keys().map(|k| k.0).collect();
    let stocks: BTreeSet<u32> = records.keys().map(|k| k.1).collect();
    let all_days: BTreeSet<NaiveDate> = closes.keys().map(|k| k.1).collect();
    let mut out = BTreeSet::new();
    let mut issues = BTreeSet::new();
    for &p in &portfolios {
        let mut previous: Option<Decimal> = None;
        for &day in &all_days {
            let held: Vec<(u32, i64)> = stocks
                .iter()
                .map(|&s| (s, quantity(p, s, day)))
                .filter(|(_, q)| *q != 0)
                .collect();
            let priced = held
                .iter()
                .filter(|(s, _)| closes.contains_key(&(*s, day)))
                .count();
            if priced > 0 && priced < held.len() {
                issues.insert(Issue {
                    portfolio: p,
                    date: day,
                    kind: IssueKind::Incomplete,
                    held: held.len() as i64,
                    priced: priced as i64,
                });
            }
            if held.is_empty() || priced < held.len() {
                continue;
            }
            let value: Decimal = held
                .iter()
                .map(|(s, q)| closes[&(*s, day)].1 * Decimal::from(*q))
                .sum();
            let change = previous.map(|prev| value - prev);
            let change_pct = previous
                .and_then(|prev| {
                    (!prev.is_zero()).then(|| (value - prev) / prev * Decimal::from(100))
                })
                .map(|x| x.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero));
            out.insert(Evaluation {
                portfolio: p,
                date: day,
                value: money(value),
                change: change.map(money),
                change_pct: change_pct.map(money),
            });
            previous = Some(value);
        }
    }
    (out, issues)
}

/// The latest close of every (stock, day).
pub type Closes = BTreeMap<(u32, NaiveDate), PriceInput>;
/// The latest holding record of every (portfolio, stock, from).
pub type Records = BTreeMap<(u32, u32, NaiveDate), HoldingInput>;

/// The state a job must hold after applying `events`.
pub fn latest_state(events: &[Event]) -> (Closes, Records) {
    let mut closes: BTreeMap<(u32, NaiveDate), PriceInput> = BTreeMap::new();
    let mut records: BTreeMap<(u32, u32, NaiveDate), HoldingInput> = BTreeMap::new();
    for e in events {
        match e {
            Event::Price(p) => {
                let slot = closes.entry((p.stock, p.date)).or_insert_with(|| p.clone());
                if p.version >= slot.version {
                    *slot = p.clone();
                }
            }
            Event::Holding(h) => {
                let slot = records
                    .entry((h.portfolio, h.stock, h.from))
                    .or_insert_with(|| h.clone());
                if h.version >= slot.version {
                    *slot = h.clone();
                }
            }
        }
    }
    (closes, records)
}
