//! Server-sent events: one task watches the job's last commit number (a primary-key lookup
//! every 200 ms); when it moves, it reads what the new commits wrote (their journal rows,
//! their kept diffs and the latest evaluation of each portfolio they touched) once, and sends
//! it to every client. Each client has a bounded buffer: one that stops reading is dropped (its
//! page reloads what it shows when it reconnects), and the number of clients is capped.

use crate::db;
use crate::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Events a client may fall behind by before it is dropped.
pub const CLIENT_BUFFER: usize = 64;
/// Events the broadcast keeps for its slowest forwarder.
pub const BROADCAST: usize = 256;
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

/// The watcher's connection: its own, out of the request pool, so that busy pages never hold
/// the live updates back; opened again after an error.
type Conn = Option<mysql::PooledConn>;

async fn with_conn<T: Send + 'static>(
    state: &Arc<State>,
    conn: &mut Conn,
    f: impl FnOnce(&mut mysql::PooledConn, &State) -> crate::Result<T> + Send + 'static,
) -> crate::Result<T> {
    let s = Arc::clone(state);
    let taken = conn.take();
    let (back, out) = tokio::task::spawn_blocking(move || {
        let mut c = match taken {
            Some(c) => c,
            None => match s.connection() {
                Ok(c) => c,
                Err(e) => return (None, Err(e)),
            },
        };
        let out = f(&mut c, &s);
        // A connection that failed is not kept.
        (out.is_ok().then_some(c), out)
    })
    .await
    .map_err(|e| crate::Error::Internal(e.to_string()))?;
    *conn = back;
    out
}

/// Watches the commits until the process ends.
pub async fn watch(state: Arc<State>) {
    let mut last: Option<i64> = None;
    let mut conn: Conn = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = match with_conn(&state, &mut conn, |c, s| db::last_commit(c, &s.cfg.job)).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("the console's live updates wait for InvestorsDB: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let before = match last {
            Some(b) if now > b && state.events.receiver_count() > 0 => b,
            // First look, nothing new, nobody listening, or the database went back (restored
            // or reset): only the position moves.
            _ => {
                last = Some(now);
                continue;
            }
        };
        // Exactly the commits (before, now]: one landing meanwhile is the next tick's.
        let read = with_conn(&state, &mut conn, move |c, s| {
            let commits = db::commits(c, &s.cfg.job, (before, now), 200)?;
            let changes = db::changes(c, &s.cfg.job, (before, now), EVENT_CHANGES)?;
            let mut touched: Vec<String> = changes.iter().map(|ch| ch.portfolio.clone()).collect();
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
        match read.and_then(|event| {
            serde_json::to_string(&event).map_err(|e| crate::Error::Internal(e.to_string()))
        }) {
            Ok(json) => {
                last = Some(now);
                let _ = state.events.send(Arc::new(json));
            }
            Err(e) => tracing::warn!("reading the new commits (tried again): {e}"),
        }
    }
}

/// What a client's buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out<T> {
    Event(T),
    /// The client missed this many events: its page reloads what it shows.
    Lagged(u64),
}

/// Why a client's forwarding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client went away.
    Gone,
    /// Its buffer was full: it stopped reading, and is dropped.
    Full,
    /// It fell behind the broadcast itself.
    Lagged,
    /// The console stops.
    Closed,
}

/// Moves the broadcast's events into one client's bounded buffer. A client whose buffer is
/// full (it stopped reading) is dropped at once: its place among the clients is freed (the
/// guard goes with this task), nothing more is buffered for it, and its stream ends.
pub async fn forward<T: Clone>(
    mut rx: broadcast::Receiver<T>,
    tx: tokio::sync::mpsc::Sender<Out<T>>,
    guard: ClientGuard,
) -> Ended {
    let _place = guard;
    loop {
        tokio::select! {
            _ = tx.closed() => return Ended::Gone,
            got = rx.recv() => match got {
                Ok(v) => match tx.try_send(Out::Event(v)) {
                    Ok(()) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => return Ended::Full,
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return Ended::Gone,
                },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let _ = tx.try_send(Out::Lagged(n));
                    return Ended::Lagged;
                }
                Err(broadcast::error::RecvError::Closed) => return Ended::Closed,
            }
        }
    }
}

/// The event stream of one client: `hello`, then `commit` events, `lagged` if it fell behind.
pub fn stream(
    state: &Arc<State>,
    guard: ClientGuard,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = state.events.subscribe();
    let (tx, out) = tokio::sync::mpsc::channel(CLIENT_BUFFER);
    let hello = Event::default()
        .event("hello")
        .data(format!("{{\"clients\":{}}}", state.clients.count()));
    tokio::spawn(async move {
        let why = forward(rx, tx, guard).await;
        if why == Ended::Full {
            tracing::info!("a live client stopped reading: dropped");
        }
    });
    let events = futures::stream::once(async move { Ok(hello) }).chain(futures::stream::unfold(
        out,
        |mut out| async move {
            let event = match out.recv().await? {
                Out::Event(json) => Event::default().event("commit").data(json.as_str()),
                Out::Lagged(n) => Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{n}}}")),
            };
            Some((Ok(event), out))
        },
    ));
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

    #[test]
    fn a_client_that_stops_reading_is_dropped_and_frees_its_place() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let clients = Arc::new(Clients::default());
            let (events, _) = broadcast::channel::<u32>(64);
            let (tx, mut out) = tokio::sync::mpsc::channel(4);
            let task = tokio::spawn(forward(
                events.subscribe(),
                tx,
                clients.join(1).expect("a place"),
            ));
            assert!(clients.join(1).is_none(), "the cap holds");
            // The client reads nothing: its buffer of 4 fills, the fifth event drops it.
            for i in 0..10 {
                let _ = events.send(i);
                tokio::task::yield_now().await;
            }
            assert_eq!(task.await.expect("the forwarder ends"), Ended::Full);
            assert_eq!(clients.count(), 0, "its place is free");
            let mut got = Vec::new();
            while let Some(Out::Event(v)) = out.recv().await {
                got.push(v);
            }
            assert_eq!(
                got,
                [0, 1, 2, 3],
                "what was buffered, then the end of its stream"
            );

            // A client that reads keeps up; one that goes away ends its forwarder.
            let (tx, mut out) = tokio::sync::mpsc::channel(4);
            let task = tokio::spawn(forward(
                events.subscribe(),
                tx,
                clients.join(1).expect("a place"),
            ));
            for i in 0..10 {
                let _ = events.send(i);
                assert_eq!(out.recv().await, Some(Out::Event(i)));
            }
            drop(out);
            assert_eq!(task.await.expect("the forwarder ends"), Ended::Gone);
            assert_eq!(clients.count(), 0);
        });
    }
}
