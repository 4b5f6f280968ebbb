//! The dataflow against a plain, obviously-correct reference evaluator written here.

mod common;

use chrono::NaiveDate;
use common::{reference, Event};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use stockflow_core::{Issue, Money};
use stockflow_dataflow::graph::Horizon;
use stockflow_dataflow::memory::{run, run_source, InputBatch, Pace};
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

/// A market over `n` trading days, one batch a day (every stock's close, some missing), and
/// in each batch late changes about the days kept in memory: restated closes and holding
/// changes up to `late` trading days back. Returns the batches (batch 0: the holdings at the
/// first day) and every event in log order.
fn windowed_market(
    n: usize,
    late: usize,
    changes: &[(u8, u8, u8, u16)],
    missing: &[(u8, u8)],
) -> (Vec<NaiveDate>, Vec<InputBatch>, Vec<Event>) {
    let days: Vec<NaiveDate> = (0..n as i64)
        .map(|i| d(2001, 1, 1) + chrono::Duration::days(i + 2 * (i / 5)))
        .collect();
    let mut seq = 0i64;
    let mut version = || {
        seq += 1;
        (seq, 0, seq)
    };
    let mut events = Vec::new();
    let mut batches = vec![InputBatch::default()];
    for p in 0..3u32 {
        for st in 0..4u32 {
            if (p + st) % 2 == 0 {
                let h = HoldingInput {
                    portfolio: p,
                    stock: st,
                    from: days[0],
                    quantity: 10 + i64::from(st),
                    version: version(),
                };
                events.push(Event::Holding(h.clone()));
                batches[0].holdings.push(h);
            }
        }
    }
    for (i, day) in days.iter().enumerate() {
        let mut b = InputBatch::default();
        for st in 0..4u32 {
            if missing.contains(&(i as u8, st as u8)) {
                continue;
            }
            let cents = 1_000 + (i as i64 * 37 + i64::from(st) * 101) % 900;
            b.prices.push(PriceInput {
                stock: st,
                date: *day,
                price: Money::from_units(i128::from(cents) * 10_000),
                version: version(),
            });
        }
        for &(at, back, what, amount) in changes {
            if usize::from(at) != i {
                continue;
            }
            let back = usize::from(back) % (late + 1);
            let target = days[i.saturating_sub(back)];
            let what = u32::from(what);
            if what < 4 {
                b.prices.push(PriceInput {
                    stock: what,
                    date: target,
                    price: Money::from_units(i128::from(amount) * 10_000 + 1),
                    version: version(),
                });
            } else {
                b.holdings.push(HoldingInput {
                    portfolio: what % 3,
                    stock: (what / 3) % 4,
                    from: target,
                    quantity: i64::from(amount % 4) * 5,
                    version: version(),
                });
            }
        }
        events.extend(b.prices.iter().cloned().map(Event::Price));
        events.extend(b.holdings.iter().cloned().map(Event::Holding));
        batches.push(b);
    }
    (days, batches, events)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Days leave memory behind a horizon (as the job's `--memory-days` does), and the late
    /// changes the horizon lets through (restated closes, holding changes) still give the
    /// reference's rows: the books keep, for each portfolio, its last value before the
    /// horizon as the value the next day compares with.
    #[test]
    fn a_dataflow_that_forgets_old_days_equals_the_reference(
        n in 40usize..90,
        late in 0usize..8,
        extra in 0i64..10,
        changes in prop::collection::vec((0u8..90, any::<u8>(), 0u8..16, 1u16..3_000), 0..40),
        missing in prop::collection::vec((0u8..90, 0u8..4), 0..12),
        workers in 1usize..4,
    ) {
        let (days, batches, events) = windowed_market(n, late, &changes, &missing);
        let expected = reference(&events);
        // Kept: at least the `late` trading days a change reaches back (calendar days: a
        // trading week is 7 calendar days here).
        let memory = (late as i64 / 5 + 1) * 7 + extra;
        let days = Arc::new(days);
        let horizon: Horizon = Arc::new(move |t: u64| {
            let i = usize::try_from(t).ok()?.checked_sub(1)?.min(days.len() - 1);
            Some(days[i] - chrono::Duration::days(memory))
        });
        let sink = Arc::new(Mutex::new(CollectSink::default()));
        run_source(workers, Arc::new(batches), Arc::clone(&sink), Pace::Free, false, Some(horizon))
            .unwrap_or_else(|e| panic!("dataflow failed: {e}"));
        let sink = sink.lock().unwrap_or_else(|e| panic!("{e}"));
        prop_assert!(sink.state.values().all(|&c| c == 1), "every row once: {:?}", sink.state);
        prop_assert!(sink.issues.values().all(|&c| c == 1), "{:?}", sink.issues);
        let got: (BTreeSet<Evaluation>, BTreeSet<Issue>) = (
            sink.state.keys().cloned().collect(),
            sink.issues.keys().cloned().collect(),
        );
        prop_assert_eq!(&got.0, &expected.0, "evaluations (memory {} days)", memory);
        prop_assert_eq!(&got.1, &expected.1, "issues");
    }

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
