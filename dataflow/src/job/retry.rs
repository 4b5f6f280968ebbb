//! Retrying source errors that may pass (the broker unreachable): exponential backoff with
//! jitter, giving up once the log has failed for `give_up` in a row. Pure: the time is passed
//! in.
//!
//! "In a row" means: no record was handed over since the first error of the episode. An empty
//! poll is not a success (a consumer whose broker is down mostly returns nothing, with an
//! error now and then: counting empty polls as successes reset the clock forever). An episode
//! ends when records flow again, or after a quiet spell without errors (a quarter of
//! `give_up`, at least a minute and at most five): a live job on an idle log whose broker
//! had one hiccup an hour ago does not give up at the next one.

use std::time::{Duration, Instant};

/// What to do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again after this long.
    After(Duration),
    /// The log has failed for this long in a row: stop.
    GiveUp(Duration),
}

pub struct SourceRetry {
    give_up: Duration,
    quiet: Duration,
    delays: backon::ExponentialBackoff,
    /// The first error of the current episode.
    failing_since: Option<Instant>,
    last_error: Option<Instant>,
    until: Option<Instant>,
}

impl SourceRetry {
    pub fn new(give_up: Duration) -> Self {
        SourceRetry {
            give_up,
            quiet: (give_up / 4).clamp(Duration::from_secs(60), Duration::from_secs(300)),
            delays: stockflow_core::backoff(),
            failing_since: None,
            last_error: None,
            until: None,
        }
    }

    /// Whether a retry is scheduled after `now`.
    pub fn waiting(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// Records were handed over: the episode is over.
    pub fn delivered(&mut self) {
        if self.failing_since.take().is_some() {
            self.delays = stockflow_core::backoff();
        }
        self.until = None;
        self.last_error = None;
    }

    /// An error at `now`.
    pub fn failed(&mut self, now: Instant) -> Retry {
        let quiet_since_last = self
            .last_error
            .is_some_and(|l| now.saturating_duration_since(l) >= self.quiet);
        if quiet_since_last {
            self.failing_since = None;
            self.delays = stockflow_core::backoff();
        }
        self.last_error = Some(now);
        let since = *self.failing_since.get_or_insert(now);
        let failing = now.saturating_duration_since(since);
        if failing >= self.give_up {
            return Retry::GiveUp(failing);
        }
        let delay = self.delays.next().unwrap_or(Duration::from_secs(5));
        self.until = Some(now + delay);
        Retry::After(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIVE_UP: Duration = Duration::from_secs(600);

    #[test]
    fn empty_polls_between_errors_do_not_reset_the_clock() {
        let mut r = SourceRetry::new(GIVE_UP);
        let t0 = Instant::now();
        // An error every 30 s, nothing handed over in between (empty polls are no event).
        let mut t = t0;
        let mut gave_up = None;
        for _ in 0..30 {
            match r.failed(t) {
                Retry::After(d) => assert!(d <= Duration::from_secs(10), "{d:?}"),
                Retry::GiveUp(f) => {
                    gave_up = Some(f);
                    break;
                }
            }
            t += Duration::from_secs(30);
        }
        assert_eq!(gave_up, Some(GIVE_UP), "gives up after 600 s of failures");
    }

    #[test]
    fn records_end_an_episode_and_so_does_a_quiet_spell() {
        let mut r = SourceRetry::new(GIVE_UP);
        let t0 = Instant::now();
        assert!(matches!(r.failed(t0), Retry::After(_)));
        assert!(r.waiting(t0));
        r.delivered();
        assert!(!r.waiting(t0));
        // 599 s later another error: a new episode, not 599 s of failure.
        let t1 = t0 + Duration::from_secs(599);
        assert!(matches!(r.failed(t1), Retry::After(_)));
        // Errors 200 s apart (more than the quiet spell, 150 s): each one a new episode.
        for i in 1..10 {
            let t = t1 + Duration::from_secs(200 * i);
            assert!(matches!(r.failed(t), Retry::After(_)), "error {i}");
        }
        // Errors 100 s apart: one episode, given up once it lasted 600 s.
        let t2 = t1 + Duration::from_secs(2_000);
        let outcomes: Vec<Retry> = (0..8)
            .map(|i| r.failed(t2 + Duration::from_secs(100 * i)))
            .collect();
        assert!(outcomes[..6].iter().all(|o| matches!(o, Retry::After(_))));
        assert_eq!(outcomes[6], Retry::GiveUp(GIVE_UP));
    }
}
