//! The evaluation dataflow: prices and holdings → evaluation rows, issues, and the input
//! state's changes, as differential collections.
//!
//! Four keyed operators, each applying a timestamp's changes at once when its inputs'
//! frontiers have passed it (`pending`):
//!
//! 1. `latest` (by record key): the latest version of each close and holding record;
//! 2. `positions` (by portfolio and stock): holding records → quantity intervals;
//! 3. `contribute` (by stock): closes × positions, summed per (portfolio, day) within the
//!    timestamp: the change of priced stocks and of Σ quantity × close;
//! 4. `days` (by portfolio): each portfolio's days, values and evaluations; the previous valued
//!    day from an ordered map (a seed stands for the days before a restore window).
//!
//! Every step is keyed so that a new trading day costs work proportional to that day's data,
//! whatever the length of the history. (The first version, arrangements, joins and reduces,
//! is in the repository's history: `git log -- dataflow/src/graph.rs`.)

mod contribute;
mod days;
mod latest;
mod pending;
mod positions;

use chrono::NaiveDate;
use days::{BookInput, Row};
use differential_dataflow::{AsCollection, Collection};
use stockflow_core::{Evaluation, HoldingInput, Issue, Money, PortfolioId, PriceInput};
use timely::dataflow::operators::{Concat, Inspect, Map};
use timely::dataflow::{Scope, Stream};

/// What the evaluation graph produces.
pub struct Outputs<G: Scope> {
    /// The evaluation of every portfolio-day that has one.
    pub evaluations: Collection<G, Evaluation>,
    /// The portfolio-days that have inputs but no evaluation (incomplete, overflow).
    pub issues: Collection<G, Issue>,
    /// The job's input state: the latest version of each close …
    pub closes: Collection<G, PriceInput>,
    /// … and of each holding record.
    pub records: Collection<G, HoldingInput>,
}

/// Builds the evaluation of every portfolio-day from the raw price and holding inputs. With
/// a restore `window`, `seeds` carry each portfolio's last value before it (for the first
/// day's change) and only days from the window on are output.
pub fn evaluate<G>(
    prices: &Collection<G, PriceInput>,
    holdings: &Collection<G, HoldingInput>,
    seeds: &Collection<G, (PortfolioId, NaiveDate, Money)>,
    window: Option<NaiveDate>,
) -> Outputs<G>
where
    G: Scope<Timestamp = u64>,
{
    let closes = counted(&latest::latest(&prices.inner, "LatestClose"), "LatestClose");
    let records = counted(
        &latest::latest(&holdings.inner, "LatestHolding"),
        "LatestHolding",
    );
    let positions = counted(&positions::positions(&records), "Positions");
    let contributions = counted(&contribute::contribute(&closes, &positions), "Contribute");
    let book_inputs = positions
        .map(|(p, t, d)| (BookInput::Position(p, d), t))
        .concat(
            &seeds
                .inner
                .map(|((p, day, v), t, d)| (BookInput::Seed(p, day, v, d), t)),
        );
    let rows = counted(&days::days(&contributions, &book_inputs, window), "Days");
    let evaluations = rows
        .flat_map(|(r, t, d)| match r {
            Row::Evaluation(e) => Some((e, t, d)),
            Row::Issue(_) => None,
        })
        .as_collection();
    let issues = rows
        .flat_map(|(r, t, d)| match r {
            Row::Issue(i) => Some((i, t, d)),
            Row::Evaluation(_) => None,
        })
        .as_collection();
    Outputs {
        evaluations,
        issues,
        closes: closes.as_collection(),
        records: records.as_collection(),
    }
}

/// The operator's output, counted per worker batch on the metrics endpoint
/// (`stockflow_operator_records_total{operator}`: the console's job graph shows its rate). The
/// counter is a no-op when no metrics recorder is installed.
fn counted<G, D>(stream: &Stream<G, D>, operator: &'static str) -> Stream<G, D>
where
    G: Scope,
    D: Clone + 'static,
{
    let counter = metrics::counter!("stockflow_operator_records_total", "operator" => operator);
    stream.inspect_batch(move |_, data| counter.increment(data.len() as u64))
}
