//! An exchange server: sends a schedule's ticks to the log, day by day.

use crate::plan::{DayTicks, Schedule};
use crate::Result;
use chrono::NaiveDate;
use futures::stream::{FuturesOrdered, StreamExt};
use indicatif::ProgressBar;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockflow_market::Tick;
use stockflow_transport::LogProducer;
use tokio::sync::{watch, Notify};

/// How fast days go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Wait this long between two trading days (the course rule: at least 2 s).
    Live(Duration),
    /// As fast as the broker takes it, with up to this many days in flight.
    Backfill { days_in_flight: usize },
}

impl Pacing {
    pub const DEFAULT_LIVE: Duration = Duration::from_secs(2);
    pub const DEFAULT_BACKFILL: Pacing = Pacing::Backfill {
        days_in_flight: 512,
    };
}

/// Keeps exchanges that backfill together in step: an exchange starts day `i` only once every
/// other one has started day `i - lead`. Without it one exchange can run hundreds of days ahead
/// of the other, and the log holds day D+300 of one exchange before day D of the other: a
/// job reading it evaluates every day in between without half of its closes first (and
/// corrects it later). A live exchange is paced by the clock and needs no gate.
#[derive(Debug)]
pub struct DayGate {
    started: Vec<AtomicUsize>,
    lead: usize,
    changed: Notify,
}

impl DayGate {
    pub fn new(exchanges: usize, lead: usize) -> Arc<Self> {
        Arc::new(DayGate {
            started: (0..exchanges).map(|_| AtomicUsize::new(0)).collect(),
            lead,
            changed: Notify::new(),
        })
    }

    /// Whether exchange `me` may start its day number `day` (0-based).
    pub fn may_start(&self, me: usize, day: usize) -> bool {
        self.started
            .iter()
            .enumerate()
            .all(|(k, n)| k == me || n.load(Ordering::Acquire).saturating_add(self.lead) >= day)
    }

    /// Exchange `me` has started `days` days.
    pub fn started(&self, me: usize, days: usize) {
        if let Some(n) = self.started.get(me) {
            n.store(days, Ordering::Release);
        }
        self.changed.notify_waiters();
    }

    /// Exchange `me` starts no more days (finished, failed or stopped): nobody waits for it.
    pub fn leave(&self, me: usize) {
        self.started(me, usize::MAX);
    }

    async fn wait_until(&self, me: usize, day: usize) {
        loop {
            let changed = self.changed.notified();
            if self.may_start(me, day) {
                return;
            }
            changed.await;
        }
    }
}

/// Leaves the gate however the exchange's run ends.
struct Leave<'a>(Option<(&'a DayGate, usize)>);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if let Some((gate, me)) = self.0 {
            gate.leave(me);
        }
    }
}

/// A clean-stop signal shared by every task of a command (Ctrl-C sets it).
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A signal and the handle that triggers it.
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the signal is triggered (or its sender is gone).
    pub async fn triggered(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// What an exchange server did.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeReport {
    pub exchange: stockflow_market::Exchange,
    pub days: usize,
    pub messages: usize,
    pub first_day: Option<chrono::NaiveDate>,
    pub last_day: Option<chrono::NaiveDate>,
    pub elapsed: Duration,
    /// True when a shutdown signal ended the run before the schedule did.
    pub interrupted: bool,
}

impl ExchangeReport {
    pub fn messages_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.messages as f64 / secs
        } else {
            0.0
        }
    }
}

/// Sends one whole day and resolves when every tick of it is acknowledged.
async fn send_day<S: LogProducer + ?Sized>(
    sink: &S,
    topic: &str,
    day: &DayTicks,
) -> Result<(NaiveDate, usize)> {
    let payloads: Vec<Vec<u8>> = day.ticks.iter().map(Tick::to_json).collect();
    let mut sends = Vec::with_capacity(payloads.len());
    for (t, p) in day.ticks.iter().zip(&payloads) {
        sends.push(sink.send(topic, t.ticker.as_bytes(), p));
    }
    let acked = futures::future::try_join_all(sends).await?;
    Ok((day.date, acked.len()))
}

/// Runs one exchange server over its schedule. On shutdown no new day is started; days
/// already started are sent completely and acknowledged, so no day is half-written.
pub async fn run_exchange<S: LogProducer + ?Sized>(
    sink: &S,
    topic: &str,
    schedule: &Schedule,
    pacing: Pacing,
    mut shutdown: Shutdown,
    progress: Option<ProgressBar>,
    gate: Option<(&DayGate, usize)>,
) -> Result<ExchangeReport> {
    let _leave = Leave(gate);
    let plan = schedule.plan()?;
    let started = Instant::now();
    let mut report = ExchangeReport {
        exchange: schedule.exchange,
        days: 0,
        messages: 0,
        first_day: None,
        last_day: None,
        elapsed: Duration::ZERO,
        interrupted: false,
    };
    if let Some(pb) = &progress {
        pb.set_length(plan.len() as u64);
    }
    match pacing {
        Pacing::Backfill { days_in_flight } => {
            // Days go out in order with up to `days_in_flight` awaiting acknowledgement; once
            // the signal comes no new day is started and the started ones complete.
            let mut in_flight = FuturesOrdered::new();
            let mut days = plan.iter().peekable();
            let mut started_days = 0usize;
            loop {
                while in_flight.len() < days_in_flight.max(1) && !shutdown.is_triggered() {
                    if days.peek().is_none() {
                        break;
                    }
                    if let Some((g, me)) = gate {
                        if !g.may_start(me, started_days) {
                            if !in_flight.is_empty() {
                                break;
                            }
                            g.wait_until(me, started_days).await;
                        }
                    }
                    if let Some(day) = days.next() {
                        in_flight.push_back(send_day(sink, topic, day));
                        started_days += 1;
                        if let Some((g, me)) = gate {
                            g.started(me, started_days);
                        }
                    }
                }
                let Some(done) = in_flight.next().await else {
                    break;
                };
                let (date, n) = done?;
                report.days += 1;
                report.messages += n;
                report.first_day.get_or_insert(date);
                report.last_day = Some(date);
                if let Some(pb) = &progress {
                    pb.inc(1);
                }
            }
        }
        Pacing::Live(pause) => {
            for (i, day) in plan.iter().enumerate() {
                if shutdown.is_triggered() {
                    break;
                }
                if i > 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.triggered() => break,
                    }
                }
                let (_, n) = send_day(sink, topic, day).await?;
                report.days += 1;
                report.messages += n;
                report.first_day.get_or_insert(day.date);
                report.last_day = Some(day.date);
                tracing::info!(exchange = %schedule.exchange, day = %day.date, ticks = n, "day published");
                if let Some(pb) = &progress {
                    pb.inc(1);
                }
            }
        }
    }
    sink.flush(Duration::from_secs(60))?;
    report.interrupted = report.days < plan.len();
    report.elapsed = started.elapsed();
    if let Some(pb) = &progress {
        pb.finish();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::DayGate;

    #[test]
    fn exchanges_keep_within_the_lead() {
        let g = DayGate::new(2, 2);
        assert!(g.may_start(0, 2));
        assert!(!g.may_start(0, 3));
        g.started(1, 1);
        assert!(g.may_start(0, 3));
        // An exchange that left holds nobody back.
        g.leave(1);
        assert!(g.may_start(0, 1_000_000));
    }
}
