//! The dataflow against a plain, obviously-correct reference evaluator written here.

mod common;

use chrono::NaiveDate;
use common::{reference, Event};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use stockflow_core::{Issue, Money};
use stockflow_dataflow::memory::{run, InputBatch};
use stockflow_dataflow::{CollectSink, Evaluation, HoldingInput, PriceInput};

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap_or_else(|| panic!("bad date"))
}

/// Days across month and year boundaries, with a gap of months.
fn days() -> Vec<NaiveDate> {
    vec![
        d(2000, 12, 27),
        d(2000, 12, 28),
        d(2000, 12, 29),
        d(2001, 1, 2),
        d(2001, 1, 3),
        d(2001, 2, 1),
        d(2001, 2, 2),
        d(2002, 3, 1),
        d(2002, 3, 4),
    ]
}

fn run_dataflow(
    workers: usize,
    batches: Vec<InputBatch>,
) -> (BTreeSet<Evaluation>, BTreeSet<Issue>) {
    let sink = Arc::new(Mutex::new(CollectSink::default()));
    run(workers, Arc::new(batches), Arc::clone(&sink), false)
        .unwrap_or_else(|e| panic!("dataflow failed: {e}"));
    let sink = sink.lock().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sink.state.values().all(|&c| c == 1),
        "every row is present once: {:?}",
        sink.state
    );
    assert!(sink.issues.values().all(|&c| c == 1), "{:?}", sink.issues);
    (
        sink.state.keys().cloned().collect(),
        sink.issues.keys().cloned().collect(),
    )
}

fn to_batches(events: &[Event], cuts: &[usize]) -> Vec<InputBatch> {
    let mut batches = vec![InputBatch::default()];
    for (i, e) in events.iter().enumerate() {
        if cuts.contains(&i) {
            batches.push(InputBatch::default());
        }
        let b = batches.last_mut().unwrap_or_else(|| unreachable!());
        match e {
            Event::Price(p) => b.prices.push(p.clone()),
            Event::Holding(h) => b.holdings.push(h.clone()),
        }
    }
    batches
}

fn event_strategy() -> impl Strategy<Value = Vec<Event>> {
    let n_days = days().len();
    let price = (0u32..4, 0..n_days, 1i64..20_000)
        .prop_map(move |(s, di, cents)| (s, di, Money::from_units(i128::from(cents) * 10_000)));
    let holding = (
        0u32..3,
        0u32..4,
        0..n_days,
        prop::sample::select(vec![0i64, 10, 20, 35]),
    );
    (
        prop::collection::vec(price, 1..40),
        prop::collection::vec(holding, 1..14),
        any::<u64>(),
    )
        .prop_map(|(prices, holdings, shuffle_seed)| {
            let all_days = days();
            let mut events: Vec<Event> = Vec::new();
            // Versions follow generation order (the log's order); arrival is shuffled below.
            let mut seq = 0i64;
            for (s, di, price) in prices {
                seq += 1;
                events.push(Event::Price(PriceInput {
                    stock: s,
                    date: all_days[di],
                    price,
                    version: (seq, 0, seq),
                }));
            }
            for (p, s, di, q) in holdings {
                seq += 1;
                events.push(Event::Holding(HoldingInput {
                    portfolio: p,
                    stock: s,
                    from: all_days[di],
                    quantity: q,
                    version: (seq, 0, seq),
                }));
            }
            // A deterministic shuffle from the seed (Fisher–Yates with an LCG).
            let mut x = shuffle_seed | 1;
            for i in (1..events.len()).rev() {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let j = (x >> 33) as usize % (i + 1);
                events.swap(i, j);
            }
            events
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn dataflow_equals_reference(events in event_strategy(), cut_a in 0usize..60, cut_b in 0usize..60) {
        let expected = reference(&events);
        let batches = to_batches(&events, &[cut_a, cut_b]);
        for workers in [1, 3] {
            let got = run_dataflow(workers, batches.clone());
            prop_assert_eq!(&got, &expected, "workers = {}", workers);
        }
    }
}

#[test]
fn restated_price_retracts_and_reinserts_the_next_days_change() {
    let h = |s: u32, q: i64| HoldingInput {
        portfolio: 0,
        stock: s,
        from: d(2001, 1, 2),
        quantity: q,
        version: (0, 0, 0),
    };
    let p = |s: u32, day: NaiveDate, cents: i64, v: i64| PriceInput {
        stock: s,
        date: day,
        price: Money::from_units(i128::from(cents) * 10_000),
        version: (v, 0, v),
    };
    let batches = vec![
        InputBatch {
            prices: vec![p(0, d(2001, 1, 2), 1000, 1), p(0, d(2001, 1, 3), 1100, 2)],
            holdings: vec![h(0, 10)],
        },
        // A correction of the first day's close.
        InputBatch {
            prices: vec![p(0, d(2001, 1, 2), 1200, 3)],
            holdings: vec![],
        },
    ];
    let sink = Arc::new(Mutex::new(CollectSink::default()));
    run(2, Arc::new(batches), Arc::clone(&sink), true).unwrap_or_else(|e| panic!("{e}"));
    let sink = sink.lock().unwrap_or_else(|e| panic!("{e}"));
    // First timestamp: 2 rows in; second: both restated (2 out, 2 in).
    assert_eq!(sink.timestamps, 2);
    assert_eq!((sink.inserted, sink.retracted), (4, 2));
    let rows: Vec<_> = sink.state.keys().cloned().collect();
    assert_eq!(rows[0].value.to_string(), "120.00");
    assert_eq!(rows[0].change, None);
    assert_eq!(rows[1].change.map(|c| c.to_string()), Some("-10.00".into()));
    assert_eq!(
        rows[1].change_pct.map(|x| x.to_string()),
        Some("-8.333333".into())
    );
}
