//! The spec's own numbers through the dataflow.

use std::sync::{Arc, Mutex};
use stockflow_dataflow::memory::{initial_holdings, run, InputBatch};
use stockflow_dataflow::{CollectSink, PriceInput};

use stockflow_market::{first_trading_day, Universe};

#[test]
fn portfolios_at_initial_prices() {
    let u = Universe::spec();
    let day = first_trading_day();
    let prices = u
        .stocks
        .iter()
        .enumerate()
        .map(|(i, s)| PriceInput {
            stock: i as u32,
            date: day,
            price: s.initial,
            version: (0, 0, i as i64),
        })
        .collect();
    let holdings = initial_holdings(&u, day);
    let sink = Arc::new(Mutex::new(CollectSink::default()));
    run(
        2,
        Arc::new(vec![InputBatch { prices, holdings }]),
        Arc::clone(&sink),
        false,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let sink = sink.lock().unwrap_or_else(|e| panic!("{e}"));
    let value = |id: &str| {
        let p = u.portfolio_id(id).unwrap_or_else(|| panic!("{id}"));
        sink.state
            .keys()
            .find(|e| e.portfolio == p && e.date == day)
            .map(|e| (e.value, e.change))
    };
    assert_eq!(sink.state.len(), 6);
    let shown = |v: Option<(stockflow_core::Money, Option<stockflow_core::Money>)>| {
        v.map(|(v, c)| (v.to_string(), c))
    };
    assert_eq!(shown(value("P11")), Some(("3218476.00".into(), None)));
    assert_eq!(shown(value("P12")), Some(("1268220.00".into(), None)));
}
