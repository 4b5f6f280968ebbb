//! The evaluation dataflow: prices and holdings → evaluation rows, issues, and the input
//! state's changes, as differential collections.
//!
//! Three keyed operators, each applying a timestamp's changes at once when its inputs'
//! frontiers have passed it (`pending`):
//!
//! 1. `latest` (closes by record key, holding records by portfolio): the latest version of
//!    each close and holding record;
//! 2. `positions` (pipelined: its input is on its portfolio's worker): holding records →
//!    quantity intervals;
//! 3. `books` (closes broadcast to every worker, positions pipelined, seeds by portfolio): each
//!    worker keeps every close in dense arrays by stock and evaluates its own portfolios from
//!    them; a new day costs a pass over each portfolio's positions, a restated close or a
//!    changed position the days it touches.
//!
//! (Earlier versions: arrangements, joins and reduces, then a join by stock summed per
//! portfolio-day before the books; both in the repository's history.)

mod books;
mod latest;
mod pending;
mod pieces;
mod positions;
mod sorted;

use books::BookInput;
pub use books::Row;
use chrono::NaiveDate;
use differential_dataflow::{AsCollection, Collection};
use stockflow_core::{HoldingInput, Money, PortfolioId, PriceInput};
use timely::dataflow::operators::{Concat, Exchange, Inspect, Map};
use timely::dataflow::{Scope, Stream};

/// The first day the dataflow holds at a timestamp (None: every day): once a timestamp is
/// complete, the operators forget what is about earlier days. The reading loop refuses records
/// about them (`job::machine::horizon`), so a day that left memory is only needed again by a
/// later pass, which restores it from the sink. Must never decrease as time moves on.
pub type Horizon = std::sync::Arc<dyn Fn(u64) -> Option<NaiveDate> + Send + Sync>;

/// What the evaluation graph produces.
pub struct Outputs<G: Scope> {
    /// The evaluation of every portfolio-day that has one, and the portfolio-days that have
    /// inputs but no evaluation (incomplete, overflow), as one stream of changes (each row
    /// moved once to the sink, never copied into two streams).
    pub rows: Stream<G, (Row, u64, isize)>,
    /// The job's input state: the latest version of each close …
    pub closes: Collection<G, PriceInput>,
    /// … and of each holding record.
    pub records: Collection<G, HoldingInput>,
}

/// Builds the evaluation of every portfolio-day from the raw price and holding inputs. With
/// a restore `window`, `seeds` carry each portfolio's last value before it (for the first
/// day's change) and only days from the window on are output. With a `horizon`, state about
/// earlier days leaves memory as time moves on.
pub fn evaluate<G>(
    prices: &Collection<G, PriceInput>,
    holdings: &Collection<G, HoldingInput>,
    seeds: &Collection<G, (PortfolioId, NaiveDate, Money)>,
    window: Option<NaiveDate>,
    horizon: Option<Horizon>,
) -> Outputs<G>
where
    G: Scope<Timestamp = u64>,
{
    let closes = counted(
        &latest::latest(&prices.inner, "LatestClose", horizon.clone()),
        "LatestClose",
    );
    let records = counted(
        &latest::latest(&holdings.inner, "LatestHolding", None),
        "LatestHolding",
    );
    let positions = counted(&positions::positions(&records), "Positions");
    // Each on its portfolio's worker: the positions are already (`by_portfolio` in `latest`),
    // the seeds go there.
    let book_inputs = positions
        .map(|(p, t, d)| (BookInput::Position(p, d), t))
        .concat(
            &seeds
                .inner
                .exchange(|((p, _, _), _, _)| pending::by_portfolio(*p))
                .map(|((p, day, v), t, d)| (BookInput::Seed(p, day, v, d), t)),
        );
    let rows = counted(
        &books::books(&closes, &book_inputs, window, horizon),
        "Books",
    );
    Outputs {
        rows,
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
