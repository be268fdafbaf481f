//! HTTP: the axum router of the debug endpoint. Paths, parameters, content
//! types and error codes follow Go's `net/http/pprof`.

pub mod assets;
mod cpu;
mod empty;
mod error;
mod heap;
mod params;

use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

pub(crate) use error::HttpError;
use params::Params;

use crate::render;
use crate::snapshot::{self, Snapshot};

/// What the handlers share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    pub(crate) token: Option<String>,
    pub(crate) detect: crate::detect::Settings,
    pub(crate) cpu: crate::cpu::Settings,
    pub(crate) metrics: render::metrics::Options,
}

type AppState = Arc<Shared>;

/// The router of every endpoint.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    // With taskscope's allocator installed, start reading the heap's history.
    crate::heap::start_history();
    Router::new()
        .route("/debug/pprof", get(|| async { Redirect::permanent("/debug/pprof/") }))
        .route("/debug/pprof/", get(index))
        .route("/debug/pprof/tasks", get(tasks))
        .route("/debug/pprof/goroutine", get(tasks))
        .route("/debug/pprof/profile", get(cpu::profile))
        .route("/debug/pprof/flamegraph", get(cpu::flamegraph))
        .route("/debug/pprof/block", get(empty::block))
        .route("/debug/pprof/mutex", get(empty::mutex))
        .route("/debug/pprof/allocs", get(heap::allocs))
        .route("/debug/pprof/heap", get(heap::heap))
        .route("/debug/pprof/heap/flamegraph", get(heap::flamegraph))
        .route("/debug/pprof/{profile}", get(unknown_profile))
        .route("/debug/taskscope/api/snapshot", get(snapshot_json))
        .route("/debug/taskscope/findings", get(findings_text))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            HttpError { status: StatusCode::METHOD_NOT_ALLOWED, reason: "method not allowed: use GET".into() }
        })
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        // The viewer's files hold no data: served without the token (see assets.rs).
        .merge(assets::routes().layer(middleware::map_response(nosniff_async)))
        .with_state(shared)
}

/// Runs on every request: the bearer token, and `nosniff` on every answer.
async fn guard(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &shared.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            let mut r = HttpError {
                status: StatusCode::UNAUTHORIZED,
                reason: "missing or wrong bearer token: send Authorization: Bearer <TASKSCOPE_TOKEN>".into(),
            }
            .into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return nosniff(r);
        }
    }
    nosniff(next.run(request).await)
}

fn nosniff(mut r: Response) -> Response {
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

async fn nosniff_async(r: Response) -> Response {
    nosniff(r)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= (x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

/// Takes a snapshot and renders it on a blocking thread, so that a large
/// snapshot never stalls the runtime serving the request (the app's, when
/// the router is mounted into the app's own server). A panic becomes a 500.
async fn with_snapshot<T: Send + 'static>(
    shared: &AppState,
    render: impl FnOnce(Snapshot) -> T + Send + 'static,
) -> Result<T, HttpError> {
    let runtime = shared.runtime.clone();
    let settings = shared.detect;
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let mut snapshot = snapshot::take(crate::tasks::registry(), runtime.as_ref());
        snapshot.findings = crate::detect::run(&snapshot, &settings);
        let tasks = snapshot.tasks_total;
        let out = render(snapshot);
        crate::watch::observe_dump(started.elapsed(), tasks);
        crate::watch::check_dropped();
        out
    })
    .await
    .map_err(|e| {
        crate::health::count_panic();
        HttpError::internal(format!("taskscope failed to render this page (counted): {e}"))
    })
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// A gzip'd profile, with Go's headers.
pub(crate) fn profile_response(name: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response()
}

async fn index(State(shared): State<AppState>) -> Result<Response, HttpError> {
    let page = with_snapshot(&shared, |s| render::index::page(&s)).await?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response())
}

async fn tasks(State(shared): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, HttpError> {
    let debug = Params::parse(query.as_deref())?.debug()?;
    Ok(match debug {
        0 => {
            let body = with_snapshot(&shared, |s| render::pprof::tasks_profile(&s).gzip()).await?;
            profile_response("goroutine", body)
        }
        1 => text(with_snapshot(&shared, |s| render::text::grouped(&s)).await?),
        _ => text(with_snapshot(&shared, |s| render::text::per_task(&s)).await?),
    })
}

async fn snapshot_json(
    State(shared): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let selection = Params::parse(query.as_deref())?.task_query()?;
    let body = with_snapshot(&shared, move |s| render::json::selected(s, &selection)).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn findings_text(State(shared): State<AppState>) -> Result<Response, HttpError> {
    Ok(text(with_snapshot(&shared, |s| render::text::findings(&s)).await?))
}

/// Prometheus metrics, in the text exposition format.
async fn metrics(State(shared): State<AppState>) -> Result<Response, HttpError> {
    let options = shared.metrics;
    let body = with_snapshot(&shared, move |s| {
        let (deep_dropped_tasks, deep_dropped_stacks) = crate::deep::dropped();
        let stats = render::metrics::AgentStats {
            dumps: crate::watch::dumps(),
            deep_dropped_tasks,
            deep_dropped_stacks,
        };
        render::metrics::render(&s, &stats, &options)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, render::metrics::CONTENT_TYPE)], body).into_response())
}

async fn unknown_profile() -> HttpError {
    HttpError::not_found("Unknown profile")
}

async fn not_found() -> HttpError {
    HttpError::not_found("not found: the profiles are listed at /debug/pprof/")
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret", b""));
    }
}
