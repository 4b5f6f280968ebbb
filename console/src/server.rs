//! The console's HTTP server: pages (one HTML page, its script and style, compiled into the
//! binary), a JSON API, server-sent events and the one write endpoint.
//!
//! Security: every response carries a Content-Security-Policy that allows no inline script
//! and nothing from another origin; a request whose `Host` is not this console is refused (a
//! page of another site resolving its name to 127.0.0.1); the write endpoint exists only with
//! `--allow-holdings-changes` and wants the session's CSRF token in a header and a JSON body,
//! which a cross-site form cannot send.

use crate::events::{self, Clients};
use crate::metrics::{self, Samples};
use crate::view::{bucket_for, freshness_series, host_allowed};
use crate::{charts, db, Error, Result};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State as Ax};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockflow_analytics::{stats, Period};
use stockflow_market::{decode_holding, Calendar, Universe};
use stockflow_transport::{Log, LogProducer};
use tokio::sync::broadcast;

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// How the console runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    /// The database URL, password included (never shown).
    pub mysql_url: String,
    pub job: String,
    pub prices_topic: String,
    pub holdings_topic: String,
    /// The job's metrics endpoint (`http://127.0.0.1:9464/metrics`), for the operator graph.
    pub metrics_url: Option<String>,
    pub allow_holdings_changes: bool,
    /// Server-sent event clients at most.
    pub max_clients: usize,
    /// The period of the report's item 4.
    pub period: Period,
}

/// What the handlers share.
pub struct State {
    pub cfg: Config,
    pool: mysql::Pool,
    pub events: broadcast::Sender<Arc<String>>,
    pub clients: Arc<Clients>,
    csrf: String,
    log: Arc<dyn Log>,
    producer: tokio::sync::OnceCell<Box<dyn LogProducer>>,
    /// Holdings changes go one at a time: the next is sent once the previous one's answer
    /// came (a change still being sent again after a broker or SPU outage must not be
    /// overtaken by a later one).
    holdings_sent: tokio::sync::Mutex<()>,
    universe: Arc<Universe>,
    samples: Option<Arc<Mutex<Samples>>>,
    bound: SocketAddr,
    cache: Cache,
}

/// Seconds a request waits for a free database connection.
const POOL_WAIT_S: u64 = 5;

/// Answers kept for a second, shared by every client: the pages refresh on commits, and a
/// crowd of them must not multiply the database's work.
struct Cache {
    entries: Mutex<std::collections::HashMap<String, (std::time::Instant, Arc<serde_json::Value>)>>,
}

/// How long an answer is kept, and how many.
const CACHE_FOR: Duration = Duration::from_secs(1);
const CACHE_ENTRIES: usize = 64;

impl Cache {
    fn get(&self, key: &str) -> Option<Arc<serde_json::Value>> {
        let e = self.entries.lock().ok()?;
        e.get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, v)| Arc::clone(v))
    }

    fn put(&self, key: String, v: Arc<serde_json::Value>) {
        if let Ok(mut e) = self.entries.lock() {
            e.retain(|_, (at, _)| at.elapsed() < CACHE_FOR);
            if e.len() < CACHE_ENTRIES {
                e.insert(key, (std::time::Instant::now(), v));
            }
        }
    }
}

impl State {
    /// A connection of the pool, waiting at most `POOL_WAIT_S` for a free one.
    pub fn connection(&self) -> Result<mysql::PooledConn> {
        self.pool
            .try_get_conn(Duration::from_secs(POOL_WAIT_S))
            .map_err(|e| match e {
                mysql::Error::DriverError(mysql::DriverError::Timeout) => Error::Busy(POOL_WAIT_S),
                other => Error::from(other),
            })
    }

    /// Runs `f` with a pooled connection on a blocking thread.
    pub async fn db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut mysql::PooledConn, &State) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let s = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut c = s.connection()?;
            f(&mut c, &s)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }
}

/// Runs blocking work (Polars, plotters) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Contract(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Database(_) | Error::Busy(_) | Error::Log(_) | Error::Schema(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Analytics(e) if e.fault() == stockflow_core::Fault::User => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!("{self}");
        }
        let body = json!({
            "error": self.to_string(),
            "fault": self.fault().to_string(),
            "retryable": self.is_retryable(),
        });
        (status, Json(body)).into_response()
    }
}

/// The grants of the console's account that let it write, if any.
fn writes_allowed(pool: &mysql::Pool) -> Option<String> {
    use mysql::prelude::Queryable;
    let mut conn = pool.get_conn().ok()?;
    let grants: Vec<String> = conn.query("SHOW GRANTS FOR CURRENT_USER()").ok()?;
    let writing = [
        "ALL PRIVILEGES",
        "INSERT",
        "UPDATE",
        "DELETE",
        "DROP",
        "ALTER",
        "CREATE",
    ];
    // The privileges of each grant: between GRANT and ON (the names after it may hold any
    // word).
    let privileges: Vec<String> = grants
        .iter()
        .filter_map(|g| {
            let g = g.to_uppercase();
            let rest = g.strip_prefix("GRANT ")?;
            rest.split_once(" ON ").map(|(p, _)| p.to_string())
        })
        .collect();
    let found: Vec<&str> = writing
        .iter()
        .copied()
        .filter(|w| privileges.iter().any(|p| p.contains(w)))
        .collect();
    (!found.is_empty()).then(|| found.join(", "))
}

/// Serves the console until `shutdown` resolves.
pub async fn serve(
    cfg: Config,
    universe: Universe,
    log: Arc<dyn Log>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let opts = mysql::Opts::from_url(&cfg.mysql_url)
        .map_err(|e| Error::BadRequest(format!("--mysql-url: {e}")))?;
    let opts = mysql::OptsBuilder::from_opts(opts)
        .tcp_connect_timeout(Some(Duration::from_secs(3)))
        .read_timeout(Some(Duration::from_secs(30)))
        .pool_opts(
            // Eight connections for requests, one for the commit watcher.
            mysql::PoolOpts::default()
                .with_constraints(mysql::PoolConstraints::new(0, 9).unwrap_or_default()),
        );
    let pool = mysql::Pool::new(opts)?;
    {
        let pool = pool.clone();
        // The console reads only: an account that may write is said (a MySQL that is down now
        // is said by the pages, not here).
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(grants) = writes_allowed(&pool) {
                tracing::warn!(
                    "the console's MySQL account may write ({grants}): give it a read-only \
                     one (SELECT; the stack creates stockflow_reader), --mysql-url or \
                     STOCKFLOW_CONSOLE_MYSQL_URL"
                );
            }
        })
        .await;
    }
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| Error::Bind {
            addr: cfg.addr,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind {
        addr: cfg.addr,
        source,
    })?;
    if !bound.ip().is_loopback() {
        tracing::warn!(
            %bound,
            "the console is served beyond this machine: it has no login, and anyone who reaches {bound} reads InvestorsDB's figures{}",
            if cfg.allow_holdings_changes { " and can change holdings" } else { "" }
        );
    }
    let samples = cfg.metrics_url.clone().map(|url| {
        let s = Arc::new(Mutex::new(Samples::default()));
        let s2 = Arc::clone(&s);
        std::thread::Builder::new()
            .name("console-metrics".into())
            .spawn(move || metrics::scrape_forever(url, s2))
            .ok();
        s
    });
    let (events, _) = broadcast::channel(events::BROADCAST);
    let csrf = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let state = Arc::new(State {
        cfg,
        pool,
        events,
        clients: Arc::new(Clients::default()),
        csrf,
        log,
        producer: tokio::sync::OnceCell::new(),
        holdings_sent: tokio::sync::Mutex::new(()),
        universe: Arc::new(universe),
        samples,
        bound,
        cache: Cache {
            entries: Mutex::new(Default::default()),
        },
    });
    tokio::spawn(events::watch(Arc::clone(&state)));
    let app = router(Arc::clone(&state));
    println!("console: http://{bound}/");
    tracing::info!(%bound, job = %state.cfg.job, "console serving");
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut graceful = stop_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|s| *s).await;
    });
    tokio::select! {
        r = server => r.map_err(|e| Error::Internal(e.to_string())),
        // Event streams stay open: past a grace period they are cut.
        _ = async {
            let _ = stop_rx.wait_for(|s| *s).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        } => Ok(()),
    }
}

/// Every route.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/job", get(page))
        .route("/portfolios/{id}", get(page))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style))
        .route("/api/session", get(session))
        .route("/api/portfolios", get(portfolios))
        .route("/api/sparklines", get(sparklines))
        .route("/api/portfolios/{id}", get(portfolio))
        .route("/api/portfolios/{id}/chart", get(chart))
        .route("/api/portfolios/{id}/download", get(download))
        .route("/api/changes", get(changes))
        .route("/api/job", get(job))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/events", get(event_stream))
        .route("/api/holdings", post(holdings))
        .fallback(|| async { Error::NotFound("no such page or endpoint".into()) })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), guard))
        .with_state(state)
}

/// Refuses another host's requests; adds the security headers to every response.
async fn guard(Ax(state): Ax<Arc<State>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !host_allowed(host, state.bound) {
        return Error::Forbidden(format!(
            "this console answers requests for {} (or localhost) only, not for host {:?}",
            state.bound,
            host.unwrap_or("")
        ))
        .into_response();
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn session(Ax(state): Ax<Arc<State>>) -> Json<serde_json::Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "job": state.cfg.job,
        "csrf": state.csrf,
        "holdings_changes": state.cfg.allow_holdings_changes,
        "holdings_topic": state.cfg.holdings_topic,
        "metrics": state.cfg.metrics_url.is_some(),
        "max_clients": state.cfg.max_clients,
        "period": [state.cfg.period.from, state.cfg.period.to],
        "tickers": state.universe.stocks.iter().map(|s| s.ticker.as_str()).collect::<Vec<_>>(),
    }))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: u64,
    size: Option<u64>,
}

/// Rows of a page of portfolios at most.
pub const MAX_PAGE: u64 = 200;

async fn portfolios(
    Ax(state): Ax<Arc<State>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>> {
    let size = q.size.unwrap_or(50);
    if size == 0 || size > MAX_PAGE {
        return Err(Error::BadRequest(format!(
            "size must be 1..={MAX_PAGE}, not {size}"
        )));
    }
    if q.q.len() > 100 {
        return Err(Error::BadRequest(
            "a search has at most 100 characters".into(),
        ));
    }
    let key = format!("portfolios\u{0}{}\u{0}{}\u{0}{size}", q.q, q.page);
    if let Some(hit) = state.cache.get(&key) {
        return Ok(Json((*hit).clone()));
    }
    let page = state
        .db(move |c, _| db::portfolios(c, &q.q, q.page, size))
        .await?;
    let v = Arc::new(serde_json::to_value(page).map_err(|e| Error::Internal(e.to_string()))?);
    state.cache.put(key, Arc::clone(&v));
    Ok(Json((*v).clone()))
}

#[derive(Debug, Deserialize)]
struct SparkQuery {
    ids: String,
}

/// The sparklines of some portfolios (a page's, after commits touched them): one backward
/// range of the primary key each.
async fn sparklines(
    Ax(state): Ax<Arc<State>>,
    Query(q): Query<SparkQuery>,
) -> Result<Json<serde_json::Value>> {
    let ids: Vec<String> = q
        .ids
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if ids.len() > MAX_PAGE as usize || ids.iter().any(|i| i.len() > 16) {
        return Err(Error::BadRequest(format!(
            "at most {MAX_PAGE} portfolio ids of at most 16 characters"
        )));
    }
    let values = state
        .db(move |c, _| db::recent_values(c, &ids, db::SPARK_DAYS))
        .await?;
    let mut out = serde_json::Map::new();
    for (id, v) in values {
        out.insert(id, json!(charts::sparkline(&v, (120, 28))?));
    }
    Ok(Json(serde_json::Value::Object(out)))
}

#[derive(Debug, Deserialize)]
struct PeriodQuery {
    period: Option<String>,
}

/// A portfolio's whole history, with its reference data.
async fn history_of(
    state: &Arc<State>,
    id: String,
) -> Result<(
    (String, String, String, String),
    Vec<stockflow_analytics::load::EvalRow>,
)> {
    if id.len() > 16 {
        return Err(Error::NotFound(format!("no portfolio {id:?}")));
    }
    state
        .db(move |c, _| {
            let info = db::portfolio_info(c, &id)?;
            let rows = db::history(c, &info.0, &id)?;
            Ok((info, rows))
        })
        .await
}

/// The days of each year's max and min daily change (the report's item 2).
fn yearly_marks(rows: &[stockflow_analytics::load::EvalRow]) -> (Vec<NaiveDate>, Vec<NaiveDate>) {
    use chrono::Datelike;
    let (mut maxes, mut mins) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < rows.len() {
        let year = rows[start].day.year();
        let end = rows[start..]
            .iter()
            .position(|r| r.day.year() != year)
            .map_or(rows.len(), |n| start + n);
        let e = stats::Extremes::of(&rows[start..end]);
        maxes.extend(e.max_change.map(|(_, d)| d));
        mins.extend(e.min_change.map(|(_, d)| d));
        start = end;
    }
    (maxes, mins)
}

async fn portfolio(
    Ax(state): Ax<Arc<State>>,
    Path(id): Path<String>,
    Query(q): Query<PeriodQuery>,
) -> Result<Json<serde_json::Value>> {
    let period: Period = match &q.period {
        Some(p) => p.parse()?,
        None => state.cfg.period,
    };
    let ((investor, investor_name, city, name), rows) = history_of(&state, id.clone()).await?;
    let investor_json = json!({"id": investor, "name": investor_name, "city": city});
    let latest = rows.last().map(|r| {
        json!({
            "day": r.day,
            "value": stockflow_analytics::render::money(r.value),
            "change": r.change.map(stockflow_analytics::render::money),
            "change_pct": r.change_pct.map(stockflow_analytics::render::money),
        })
    });
    let (first, last) = (rows.first().map(|r| r.day), rows.last().map(|r| r.day));
    let (maxes, mins) = yearly_marks(&rows);
    let days = rows.len();
    // The report's own computation, on this portfolio's rows: the same figures.
    let report = blocking(move || -> Result<Option<serde_json::Value>> {
        if rows.is_empty() {
            return Ok(None);
        }
        let reference = stockflow_analytics::load::Reference {
            investors: vec![(investor.clone(), investor_name, city)],
            links: vec![(investor, rows[0].portfolio.clone())],
        };
        let evals = stockflow_analytics::load::Evaluations { rows };
        let s = stats::compute(&reference, &evals, period)?;
        Ok(s.portfolios.first().map(|p| {
            json!({
                "text": stockflow_analytics::render::stats_file(p, (period.from, period.to)),
                "figures": p,
            })
        }))
    })
    .await?;
    Ok(Json(json!({
        "portfolio": id,
        "name": name,
        "investor": investor_json,
        "first_day": first,
        "last_day": last,
        "days": days,
        "latest": latest,
        "yearly_max_change_days": maxes,
        "yearly_min_change_days": mins,
        "period": [period.from, period.to],
        "report": report,
    })))
}

#[derive(Debug, Deserialize)]
struct ChartQuery {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    #[serde(default)]
    log: bool,
    width: Option<u32>,
    height: Option<u32>,
}

async fn chart(
    Ax(state): Ax<Arc<State>>,
    Path(id): Path<String>,
    Query(q): Query<ChartQuery>,
) -> Result<Json<charts::Chart>> {
    let size = (
        q.width.unwrap_or(1000).clamp(300, 2400),
        q.height.unwrap_or(420).clamp(200, 1200),
    );
    let (_, rows) = history_of(&state, id.clone()).await?;
    let (Some(first), Some(last)) = (rows.first().map(|r| r.day), rows.last().map(|r| r.day))
    else {
        return Err(Error::NotFound(format!(
            "{id} has no evaluations yet: run the pipeline first (stockflow run)"
        )));
    };
    let from = q.from.unwrap_or(first).max(first);
    let to = q.to.unwrap_or(last).min(last);
    if from >= to {
        return Err(Error::BadRequest(format!(
            "the window {from}..{to} holds no two days of {first}..{last}"
        )));
    }
    let (maxes, mins) = yearly_marks(&rows);
    let series: Vec<(NaiveDate, f64)> = rows
        .iter()
        .map(|r| (r.day, stockflow_analytics::load::approx(r.value)))
        .collect();
    let c = blocking(move || charts::value_chart(&series, &maxes, &mins, (from, to), q.log, size))
        .await?;
    Ok(Json(c))
}

#[derive(Debug, Deserialize)]
struct DownloadQuery {
    format: String,
}

async fn download(
    Ax(state): Ax<Arc<State>>,
    Path(id): Path<String>,
    Query(q): Query<DownloadQuery>,
) -> Result<Response> {
    let (_, rows) = history_of(&state, id.clone()).await?;
    let format = q.format;
    let (bytes, mime, ext) = blocking(move || -> Result<_> {
        let mut df = stockflow_analytics::export::history(&rows)?;
        Ok(match format.as_str() {
            "csv" => (
                stockflow_analytics::export::csv_bytes(&mut df)?,
                "text/csv; charset=utf-8",
                "csv",
            ),
            "parquet" => (
                stockflow_analytics::export::parquet_bytes(&mut df)?,
                "application/vnd.apache.parquet",
                "parquet",
            ),
            other => {
                return Err(Error::BadRequest(format!(
                    "format must be csv or parquet, not {other:?}"
                )))
            }
        })
    })
    .await?;
    // The id is a portfolio's id from the database (checked above): safe in a header.
    let file: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}_history.{ext}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct ChangesQuery {
    limit: Option<u64>,
}

/// The change stream's latest diffs (at most 1,000 a request).
async fn changes(
    Ax(state): Ax<Arc<State>>,
    Query(q): Query<ChangesQuery>,
) -> Result<Json<serde_json::Value>> {
    let limit = q.limit.unwrap_or(200).clamp(1, events::EVENT_CHANGES);
    let (last, changes, commits) = state
        .db(move |c, s| {
            let last = db::last_commit(c, &s.cfg.job)?;
            let changes = db::changes(c, &s.cfg.job, (0, last), limit)?;
            let commits = db::commits(c, &s.cfg.job, (0, last), 50)?;
            Ok((last, changes, commits))
        })
        .await?;
    Ok(Json(json!({
        "last_commit": last,
        "changes": changes,
        "commits": commits,
        "kept_per_commit": 500,
    })))
}

/// The job: lease, partitions, commits, freshness, incomplete days, operator graph.
async fn job(Ax(state): Ax<Arc<State>>) -> Result<Json<serde_json::Value>> {
    if let Some(hit) = state.cache.get("job") {
        return Ok(Json((*hit).clone()));
    }
    let v = Arc::new(job_now(&state).await?);
    state.cache.put("job".into(), Arc::clone(&v));
    Ok(Json((*v).clone()))
}

async fn job_now(state: &Arc<State>) -> Result<serde_json::Value> {
    let topics = vec![
        state.cfg.prices_topic.clone(),
        state.cfg.holdings_topic.clone(),
    ];
    let log = Arc::clone(&state.log);
    let ends = tokio::task::spawn_blocking(move || {
        topics
            .into_iter()
            .map(|t| {
                let marks = log.watermarks(&t).map_err(|e| e.to_string());
                (t, marks)
            })
            .collect::<Vec<_>>()
    });
    let (lease, progress, commits, fresh, incomplete) = state
        .db(|c, s| {
            let job = &s.cfg.job;
            Ok((
                db::lease(c, job)?,
                db::progress(c, job)?,
                db::commits(c, job, (0, i64::MAX), 200)?,
                db::freshness(c, job, 5_000)?,
                db::incomplete(c, 20)?,
            ))
        })
        .await?;
    let ends = ends.await.map_err(|e| Error::Internal(e.to_string()))?;
    let mut partitions = Vec::new();
    let mut log_errors = Vec::new();
    for (topic, marks) in ends {
        match marks {
            Ok(marks) => {
                for w in marks {
                    let committed = progress
                        .iter()
                        .find(|(t, p, _)| *t == topic && *p == w.partition)
                        .map(|(_, _, o)| *o);
                    let lag = w.high - committed.unwrap_or(w.low).max(w.low);
                    partitions.push(json!({
                        "topic": topic,
                        "partition": w.partition,
                        "start": w.low,
                        "end": w.high,
                        "committed": committed,
                        "lag": lag.max(0),
                    }));
                }
            }
            Err(e) => log_errors.push(format!("{topic}: {e}")),
        }
    }
    let mut fresh = fresh;
    fresh.reverse();
    let span = match (fresh.first(), fresh.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0,
    };
    let freshness = freshness_series(&fresh, bucket_for(span), 120);
    let freshness_svg = charts::time_chart(
        &[
            (
                "p50",
                plotters::style::RGBColor(30, 90, 200),
                freshness
                    .iter()
                    .map(|p| (p.at_ms, p.p50_ms as f64))
                    .collect(),
            ),
            (
                "p99",
                plotters::style::RGBColor(200, 60, 30),
                freshness
                    .iter()
                    .map(|p| (p.at_ms, p.p99_ms as f64))
                    .collect(),
            ),
        ],
        "ms",
        (900, 260),
    )?;
    let commits_svg = charts::time_chart(
        &[(
            "commit duration",
            plotters::style::RGBColor(90, 60, 160),
            commits
                .iter()
                .map(|c| (c.at_ms, c.duration_ms as f64))
                .collect(),
        )],
        "ms",
        (900, 220),
    )?;
    let graph = match &state.samples {
        Some(s) => {
            let s = s.lock().map_err(|_| Error::Internal("metrics lock".into()))?;
            let source = match &s.error {
                Some(e) => format!("{} (last scrape failed: {e})", state.cfg.metrics_url.clone().unwrap_or_default()),
                None => state.cfg.metrics_url.clone().unwrap_or_default(),
            };
            metrics::graph(source, s.prev.as_ref(), s.cur.as_ref())
        }
        None => metrics::graph(
            "no metrics endpoint: start the job with --metrics-addr and the console with --metrics-url for records per second".into(),
            None,
            None,
        ),
    };
    Ok(json!({
        "job": state.cfg.job,
        "log": state.log.describe(),
        "lease": lease,
        "partitions": partitions,
        "log_errors": log_errors,
        "commits": commits,
        "freshness": freshness,
        "freshness_svg": freshness_svg,
        "commits_svg": commits_svg,
        "incomplete": {"total": incomplete.0, "latest": incomplete.1},
        "graph": graph,
        "clients": state.clients.count(),
    }))
}

#[derive(Debug, Deserialize)]
struct DeadQuery {
    before: Option<i64>,
    size: Option<u64>,
}

async fn dead_letters(
    Ax(state): Ax<Arc<State>>,
    Query(q): Query<DeadQuery>,
) -> Result<Json<serde_json::Value>> {
    let size = q.size.unwrap_or(20);
    if size == 0 || size > MAX_PAGE {
        return Err(Error::BadRequest(format!(
            "size must be 1..={MAX_PAGE}, not {size}"
        )));
    }
    let (total, rows) = state
        .db(move |c, _| db::dead_letters(c, q.before, size))
        .await?;
    let next = (rows.len() as u64 == size)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(Json(
        json!({"total": total, "rows": rows, "next_before": next}),
    ))
}

async fn event_stream(Ax(state): Ax<Arc<State>>) -> Response {
    match state.clients.join(state.cfg.max_clients) {
        Some(guard) => events::stream(&state, guard).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": format!("{} live clients already connected (the console's cap, --max-clients)", state.cfg.max_clients),
                "fault": "user",
                "retryable": true,
            })),
        )
            .into_response(),
    }
}

/// Constant-time equality of two tokens.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Publishes one holdings record (the topic's JSON), exactly as `stockflow holdings set`: the
/// console never writes the database, the job applies the record like any other.
async fn holdings(
    Ax(state): Ax<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>> {
    if !state.cfg.allow_holdings_changes {
        return Err(Error::Forbidden(
            "holdings changes are off: start the console with --allow-holdings-changes".into(),
        ));
    }
    let token = headers
        .get("x-csrf-token")
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if !same_token(token, state.csrf.as_bytes()) {
        return Err(Error::Forbidden(
            "missing or wrong X-CSRF-Token (reload the page)".into(),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if !host_allowed(host, state.bound) {
            return Err(Error::Forbidden(format!(
                "a request from origin {origin:?}"
            )));
        }
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !json_body {
        return Err(Error::BadRequest(
            "the body must be the holdings record as application/json".into(),
        ));
    }
    // The topic's contract, by the job's own decoder.
    let (h, _) = decode_holding(&state.universe, &mut Calendar::new(), &body)
        .map_err(|e| Error::Contract(e.to_string()))?;
    let producer = state
        .producer
        .get_or_try_init(|| async { state.log.producer() })
        .await?;
    let (key, payload) = (h.key(), h.to_json());
    let topic = state.cfg.holdings_topic.clone();
    let one_at_a_time = state.holdings_sent.lock().await;
    let at = producer.send(&topic, key.as_bytes(), &payload).await?;
    drop(one_at_a_time);
    tracing::info!(
        portfolio = %h.portfolio, ticker = %h.ticker, quantity = h.quantity, from = %h.from,
        partition = at.partition, offset = at.offset,
        "the console published a holdings change"
    );
    Ok(Json(json!({
        "published": {
            "portfolio": h.portfolio,
            "ticker": h.ticker,
            "quantity": h.quantity,
            "from": h.from,
        },
        "topic": topic,
        "partition": at.partition,
        "offset": at.offset,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"abc", b"abc"));
        assert!(!same_token(b"abc", b"abd"));
        assert!(!same_token(b"ab", b"abc"));
        assert!(!same_token(b"", b"abc"));
    }
}
