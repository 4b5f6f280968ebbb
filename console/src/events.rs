//! Server-sent events: one task watches the job's last commit number (a primary-key lookup
//! every 200 ms); when it moves, it reads what the new commits wrote (their journal rows,
//! their kept diffs and the latest evaluation of each portfolio they touched) once, and sends
//! it to every client. Each client has a bounded buffer: one that falls behind is told so and
//! dropped (its page reloads what it shows), and the number of clients is capped.

use crate::db;
use crate::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Events a client may fall behind by before it is dropped.
pub const CLIENT_BUFFER: usize = 64;
/// Diffs one event carries at most (the latest); the event says how many there were.
pub const EVENT_CHANGES: u64 = 1_000;

/// What clients receive when commits land.
#[derive(Debug, Clone, Serialize)]
pub struct CommitEvent {
    pub last_commit: i64,
    pub commits: Vec<db::CommitRow>,
    pub changes: Vec<db::Change>,
    /// The latest evaluation of every portfolio the diffs touched.
    pub latest: std::collections::HashMap<String, db::Latest>,
}

/// Counts connected clients; a guard per client.
#[derive(Debug, Default)]
pub struct Clients(AtomicUsize);

pub struct ClientGuard(Arc<Clients>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Clients {
    /// A place for one more client, unless `cap` are connected.
    pub fn join(self: &Arc<Self>, cap: usize) -> Option<ClientGuard> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| ClientGuard(Arc::clone(self)))
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Watches the commits until the process ends.
pub async fn watch(state: Arc<State>) {
    let mut last: Option<i64> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if state.events.receiver_count() == 0 && last.is_some() {
            // Nobody listens: keep the position current without reading the commits.
            if let Ok(now) = state.db(move |c, s| db::last_commit(c, &s.cfg.job)).await {
                last = Some(now);
            }
            continue;
        }
        let now = match state.db(|c, s| db::last_commit(c, &s.cfg.job)).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("watching the commits: {e}");
                continue;
            }
        };
        let Some(before) = last else {
            last = Some(now);
            continue;
        };
        if now == before {
            continue;
        }
        if now < before {
            // The database went back (restored, or reset): start from its last commit.
            last = Some(now);
            continue;
        }
        let read = state
            .db(move |c, s| {
                let commits = db::commits(c, &s.cfg.job, before, 200)?;
                let changes = db::changes(c, &s.cfg.job, before, EVENT_CHANGES)?;
                let mut touched: Vec<String> =
                    changes.iter().map(|ch| ch.portfolio.clone()).collect();
                touched.sort();
                touched.dedup();
                touched.truncate(500);
                let latest = db::latest_of(c, &touched)?;
                Ok(CommitEvent {
                    last_commit: now,
                    commits,
                    changes,
                    latest,
                })
            })
            .await;
        match read {
            Ok(event) => {
                last = Some(now);
                match serde_json::to_string(&event) {
                    Ok(json) => {
                        let _ = state.events.send(Arc::new(json));
                    }
                    Err(e) => tracing::warn!("an event could not be encoded: {e}"),
                }
            }
            Err(e) => tracing::debug!("reading the new commits: {e}"),
        }
    }
}

/// The event stream of one client.
pub fn stream(
    state: &Arc<State>,
    guard: ClientGuard,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = state.events.subscribe();
    let hello = Event::default()
        .event("hello")
        .data(format!("{{\"clients\":{}}}", state.clients.count()));
    let events = futures::stream::unfold(
        (Some(rx), Some(hello), guard),
        |(rx, first, guard)| async move {
            if let Some(hello) = first {
                return Some((Ok(hello), (rx, None, guard)));
            }
            let mut rx = rx?;
            match rx.recv().await {
                Ok(json) => Some((
                    Ok(Event::default().event("commit").data(json.as_str())),
                    (Some(rx), None, guard),
                )),
                Err(broadcast::error::RecvError::Lagged(n)) => Some((
                    // Fell behind: say so and end this stream; the page reloads.
                    Ok(Event::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{n}}}"))),
                    (None, None, guard),
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_capped_and_leave() {
        let c = Arc::new(Clients::default());
        let a = c.join(2).expect("first");
        let _b = c.join(2).expect("second");
        assert!(c.join(2).is_none(), "a third is refused");
        drop(a);
        assert_eq!(c.count(), 1);
        assert!(c.join(2).is_some(), "a place freed");
    }
}
