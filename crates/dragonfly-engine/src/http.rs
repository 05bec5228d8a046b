//! The engine's HTTP listener (`engine.http = "127.0.0.1:7070"`; off when absent): health,
//! Prometheus metrics, the stats as JSON, a live pipeline page and hot reload, for monitoring
//! and orchestration.
//!
//! Routes (anything else is 404, another method on a route 405): `GET /` (the live page,
//! page.html, compiled in), `/health` (200 when every `setup()` ran and every input is
//! open, 503 otherwise; the body names each input's state and why it is not ready:
//! `{"status":"live","ready":true,"inputs":{"eve":{"ready":true,"state":"following"}}}`),
//! `/metrics` (every number of the stats record in the Prometheus text format, named as
//! Prometheus asks, with the build and the standard process metrics: [`crate::metrics`]),
//! `/api/stats` (the stats record as JSON, as the stats log writes it),
//! `/api/pipeline` (the configured graph), `/api/errors` (the last script failures),
//! `/api/error_groups` (failures by script, line and kind: [`crate::errgroups`]),
//! `/api/history` (ten minutes of each node's totals: [`crate::history`]),
//! `/api/analyzers` (each analyzer's configuration and its `www/<tag>.json` description, as
//! the original served them, read at start-up), `/api/tap` (sampled events as they pass a
//! stage, streamed: [`crate::tap`]), and `POST /api/reload` (a hot reload, answered when
//! done). Nothing else is served: no file is ever read from a request's path,
//! so there is nothing for a path traversal to reach.
//!
//! Guarantees: the socket is bound at start-up, before privileges are dropped (a bad or busy
//! address is a start-up error naming `engine.http`); the listener runs on a thread of its own
//! (one tokio current-thread runtime), so a slow or hostile client never holds a worker, and
//! it survives its clients ([`serve`]: a header timeout, a connection cap that closes the
//! oldest, accept errors that back off; it never panics). Each request builds the record
//! from the live counters (atomic loads, no lock held across I/O). Cost: nothing until a
//! request comes; a request walks the counters once.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, MethodRouter};
use axum::Router;
use serde_json::Value;

use crate::stats::Stats;

/// The bound listener, ready to serve once the engine runs.
pub struct HttpListener {
    listener: TcpListener,
    addr: SocketAddr,
    /// The `/api/analyzers` answer, made at start-up.
    analyzers: String,
    /// The `/api/pipeline` answer, made at start-up.
    pipeline: String,
}

/// The live pipeline page (self-contained: no script or style from anywhere else).
const PAGE: &str = include_str!("page.html");

/// The `/api/pipeline` answer: the graph as configured — inputs (each with its filter and
/// where the filter sends by default), analyzers (default analyzer and output) and outputs.
/// Hand-offs a script makes to other tags at run time are not in it.
pub fn pipeline_json(config: &dragonfly_config::Config) -> String {
    serde_json::json!({
        "inputs": config.inputs.iter().map(|i| serde_json::json!({
            "tag": i.tag, "uri": i.uri, "filter": i.script,
            "default_analyzer": i.default_analyzer,
        })).collect::<Vec<_>>(),
        "analyzers": config.analyzers.iter().map(|a| serde_json::json!({
            "tag": a.tag, "script": a.script, "default_analyzer": a.default_analyzer,
            "default_output": a.default_output, "concurrency": a.concurrency,
        })).collect::<Vec<_>>(),
        "outputs": config.outputs.iter().map(|o| serde_json::json!({
            "tag": o.tag, "uri": o.uri,
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// Largest `www/<tag>.json` description read.
const MAX_DESCRIPTION: u64 = 1 << 20;

/// The `/api/analyzers` answer: each analyzer's configuration and, as the original served
/// them, its description `ROOT/www/<tag>.json` when there is one — a regular file (never a
/// symlink), at most 1 MiB, valid JSON — read now, before privileges are dropped. A tag that
/// is not a plain file name (letters, digits, `_`, `-`, `.`, not starting with `.`) has none.
pub fn analyzers_json(config: &dragonfly_config::Config, root: &std::path::Path) -> String {
    let www = root.join("www");
    let list: Vec<Value> = config
        .analyzers
        .iter()
        .map(|a| {
            let plain = !a.tag.is_empty()
                && !a.tag.starts_with('.')
                && a.tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            let description = plain
                .then(|| www.join(format!("{}.json", a.tag)))
                .filter(|p| {
                    std::fs::symlink_metadata(p)
                        .is_ok_and(|m| m.file_type().is_file() && m.len() <= MAX_DESCRIPTION)
                })
                .and_then(|p| std::fs::read(p).ok())
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .unwrap_or(Value::Null);
            serde_json::json!({
                "tag": a.tag,
                "script": a.script,
                "default_analyzer": a.default_analyzer,
                "default_output": a.default_output,
                "concurrency": a.concurrency,
                "description": description,
            })
        })
        .collect();
    Value::Array(list).to_string()
}

/// Bind `addr` ("host:port") now; `analyzers` and `pipeline` are the `/api/analyzers` and
/// `/api/pipeline` answers.
pub fn bind(addr: &str, analyzers: String, pipeline: String) -> Result<HttpListener, String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("{addr}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("{addr}: {e}"))?;
    Ok(HttpListener {
        listener,
        addr,
        analyzers,
        pipeline,
    })
}

impl HttpListener {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve on a thread of its own until the process exits.
    pub fn start(
        self,
        stats: Arc<Stats>,
        reloads: Arc<crate::Reloads>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let addr = self.addr;
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("engine.http: cannot start the listener: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(self.listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("engine.http: {addr}: {e}");
                            return;
                        }
                    };
                    let history =
                        Arc::new(std::sync::Mutex::new(crate::history::History::default()));
                    tokio::spawn(sample_history(stats.clone(), history.clone()));
                    let app = router(
                        stats.clone(),
                        self.analyzers,
                        self.pipeline,
                        reloads,
                        history,
                    );
                    serve(listener, app, stats).await;
                });
            })
    }
}

/// Sample the nodes' totals into `history` every [`crate::history::INTERVAL`], from now on.
async fn sample_history(
    stats: Arc<Stats>,
    history: Arc<std::sync::Mutex<crate::history::History>>,
) {
    use dragonfly_event::sync::Locked;
    let mut every = tokio::time::interval(crate::history::INTERVAL);
    loop {
        every.tick().await;
        let r = stats.snapshot(false);
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        history.locked().sample(&r, at);
    }
}

/// Most connections served at once; a new one past it closes the oldest (see [`serve`]).
pub const MAX_CONNECTIONS: usize = 256;
/// Longest a client may take to send a request's headers, counted from when the connection
/// is ready for them (accepted, or done with the previous request).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Largest request head accepted.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long accepting pauses after an error that is not the client's (out of descriptors).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Accept and serve HTTP/1 connections, each a task on this thread, until the process ends.
///
/// The listener survives its clients: a client that does not send its headers within
/// [`HEADER_TIMEOUT`] is closed (slowloris); at [`MAX_CONNECTIONS`] the oldest connection is
/// closed for a new one, so a flood of idle connections can never keep `/health` or
/// `/metrics` from being answered; an accept error (out of file descriptors) closes the oldest
/// connection to free one, waits [`ACCEPT_BACKOFF`] and goes on — it never ends the
/// listener. Counted: `http_connections_closed` (timeouts, refusals, closed to make room) and
/// `http_accept_errors`.
async fn serve(listener: tokio::net::TcpListener, app: Router, stats: Arc<Stats>) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use std::collections::VecDeque;
    use std::sync::atomic::Ordering::Relaxed;
    let mut open: VecDeque<tokio::task::JoinHandle<()>> = VecDeque::new();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                let (n, log) = dragonfly_io::ratelimit::bump(&stats.http_accept_errors);
                if log {
                    tracing::error!(count = n, "engine.http: accept failed: {e}; closing the oldest connection and going on");
                }
                open.retain(|t| !t.is_finished());
                if let Some(oldest) = open.pop_front() {
                    oldest.abort();
                    stats.http_connections_closed.fetch_add(1, Relaxed);
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        open.retain(|t| !t.is_finished());
        while open.len() >= MAX_CONNECTIONS {
            if let Some(oldest) = open.pop_front() {
                oldest.abort();
                stats.http_connections_closed.fetch_add(1, Relaxed);
            }
        }
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let stats = stats.clone();
        open.push_back(tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES.max(8192))
                .serve_connection(TokioIo::new(stream), svc);
            // errors are the client's: a timeout (counted), a reset, a bad request
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    stats.http_connections_closed.fetch_add(1, Relaxed);
                }
            }
        }));
    }
}

/// How long `POST /api/reload` waits for the engine to have handled the request: longer than a
/// reload may take (config.lua's 10 s, twice the default setup budget and a margin).
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(180);

/// The HTTP listener's routes: the live page, its JSON APIs, reload, health and metrics.
fn router(
    stats: Arc<Stats>,
    analyzers: String,
    pipeline: String,
    reloads: Arc<crate::Reloads>,
    history: Arc<std::sync::Mutex<crate::history::History>>,
) -> Router {
    use dragonfly_event::sync::Locked;
    let groups = stats.clone();
    Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }),
        )
        .route("/api/pipeline", fixed_json(pipeline))
        .route("/api/errors", errors_route(stats.clone()))
        .route("/api/reload", reload_route(reloads))
        .route("/api/analyzers", fixed_json(analyzers))
        .route("/health", health_route(stats.clone()))
        .route("/api/tap", tap_route(stats.taps.clone()))
        .route(
            "/api/error_groups",
            get(move || {
                let body = groups.error_groups.locked().to_json().to_string();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .route(
            "/api/history",
            get(move || {
                let body = history.locked().to_json().to_string();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .route(
            "/metrics",
            from_stats(
                stats.clone(),
                "text/plain; version=0.0.4",
                crate::metrics::render,
            ),
        )
        .route(
            "/api/stats",
            from_stats(stats, "application/json", |r| {
                serde_json::to_string(r).unwrap_or_default()
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n").into_response() })
}

/// `GET /api/errors`: the recent script errors, as JSON.
fn errors_route(stats: Arc<Stats>) -> MethodRouter {
    get(move || {
        let s = stats.clone();
        async move {
            (
                [(header::CONTENT_TYPE, "application/json")],
                s.recent_errors().to_string(),
            )
        }
    })
}

/// `POST /api/reload`: ask for a reload and answer with its outcome (200 reloaded, 422
/// refused, 503 not handled in time).
fn reload_route(reloads: Arc<crate::Reloads>) -> MethodRouter {
    axum::routing::post(move || {
        let reloads = reloads.clone();
        async move {
            let generation = reloads.request();
            let waited = tokio::task::spawn_blocking(move || reloads.wait(generation, RELOAD_WAIT))
                .await
                .ok()
                .flatten();
            let (status, body) = match waited {
                Some(r) if r.ok => (StatusCode::OK, r.json),
                Some(r) => (StatusCode::UNPROCESSABLE_ENTITY, r.json),
                None => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"reloaded":false,"errors":["the engine did not handle the reload in time"]}"#
                        .to_string(),
                ),
            };
            (status, [(header::CONTENT_TYPE, "application/json")], body)
        }
    })
}

/// A tap's stream sends a heartbeat (an empty line; an SSE comment) after this long without
/// an event: so a client that went is noticed (and its tap closed) even when nothing matches.
pub const TAP_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /api/tap?stage=..&filter=..&rate=..&limit=..` ([`crate::tap`]): the sampled events as
/// JSON lines (`application/x-ndjson`; server-sent events when the client accepts
/// `text/event-stream`), until `limit` events or the client goes. 400 for a bad query (the
/// message says what), 429 when [`crate::tap::MAX_TAPS`] are open.
fn tap_route(taps: Arc<crate::tap::Taps>) -> MethodRouter {
    get(
        move |headers: axum::http::HeaderMap,
              axum::extract::RawQuery(query): axum::extract::RawQuery| {
            let taps = taps.clone();
            async move {
                let json = [(header::CONTENT_TYPE, "application/json")];
                let (req, limit) = match tap_request(&taps, query.as_deref().unwrap_or("")) {
                    Ok(r) => r,
                    Err(e) => {
                        let body = serde_json::json!({ "error": e }).to_string();
                        return (StatusCode::BAD_REQUEST, json, body).into_response();
                    }
                };
                let tap = match taps.open(req) {
                    Ok(t) => t,
                    Err(e) => {
                        let body = serde_json::json!({ "error": e }).to_string();
                        return (StatusCode::TOO_MANY_REQUESTS, json, body).into_response();
                    }
                };
                let sse = headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/event-stream"));
                let kind = if sse {
                    "text/event-stream"
                } else {
                    "application/x-ndjson"
                };
                let body = axum::body::Body::from_stream(tap_stream(tap, limit, sse));
                (
                    [
                        (header::CONTENT_TYPE, kind),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    body,
                )
                    .into_response()
            }
        },
    )
}

/// A tap's lines as a body: each line and a newline (`data: LINE` and a blank line for SSE),
/// a heartbeat after [`TAP_HEARTBEAT`] of silence, the end after `limit` lines.
fn tap_stream(
    tap: crate::tap::Tap,
    limit: Option<u64>,
    sse: bool,
) -> impl futures_util::Stream<Item = Result<String, std::convert::Infallible>> {
    futures_util::stream::unfold((tap, limit), move |(mut tap, left)| async move {
        if left == Some(0) {
            return None;
        }
        match tokio::time::timeout(TAP_HEARTBEAT, tap.lines.recv()).await {
            Ok(Some(line)) => {
                let out = if sse {
                    format!("data: {line}\n\n")
                } else {
                    line + "\n"
                };
                Some((Ok(out), (tap, left.map(|n| n - 1))))
            }
            Ok(None) => None,
            Err(_) => {
                let beat = if sse { ": heartbeat\n\n" } else { "\n" };
                Some((Ok(beat.to_string()), (tap, left)))
            }
        }
    })
}

/// A tap's query: `stage` (repeated: any of them; none: every stage), `filter` (repeated:
/// all of them, at most [`crate::tap::MAX_FILTERS`]), `rate` (1 to
/// [`crate::tap::MAX_RATE`] events per second), `limit` (events, then the stream ends).
pub fn tap_request(
    taps: &crate::tap::Taps,
    query: &str,
) -> Result<(crate::tap::Request, Option<u64>), String> {
    use crate::tap::{FieldMatch, Request, DEFAULT_RATE, MAX_FILTERS, MAX_RATE};
    let mut req = Request {
        stages: Vec::new(),
        filters: Vec::new(),
        rate: DEFAULT_RATE,
    };
    let mut limit = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "stage" => {
                for s in taps.resolve(&v)? {
                    if !req.stages.contains(&s) {
                        req.stages.push(s);
                    }
                }
            }
            "filter" => {
                if req.filters.len() == MAX_FILTERS {
                    return Err(format!("at most {MAX_FILTERS} filters"));
                }
                req.filters.push(FieldMatch::parse(&v)?);
            }
            "rate" => {
                req.rate = v
                    .parse()
                    .ok()
                    .filter(|r| (1..=MAX_RATE).contains(r))
                    .ok_or_else(|| {
                        format!("rate {v:?}: expected 1 to {MAX_RATE} events per second")
                    })?;
            }
            "limit" => {
                limit = Some(v.parse().ok().filter(|&n: &u64| n > 0).ok_or_else(|| {
                    format!("limit {v:?}: expected a number of events (1 or more)")
                })?);
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (stage, filter, rate, limit)"
                ))
            }
        }
    }
    Ok((req, limit))
}

/// `GET /health`: live as soon as it answers; ready (200) once every setup() ran and every
/// input is open, 503 before or while one is not (its state says why).
fn health_route(stats: Arc<Stats>) -> MethodRouter {
    get(move || {
        let (ready, body) = stats.health();
        async move {
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (
                code,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
        }
    })
}

/// A GET route answering with `body`, JSON made at start-up.
fn fixed_json(body: String) -> MethodRouter {
    get(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    })
}

/// A GET route answering with the live stats record, rendered by `render`.
fn from_stats(
    stats: Arc<Stats>,
    content_type: &'static str,
    render: fn(&crate::record::StatsRecord) -> String,
) -> MethodRouter {
    get(move || {
        let s = stats.clone();
        async move {
            (
                [(header::CONTENT_TYPE, content_type)],
                render(&s.snapshot(false)),
            )
        }
    })
}
