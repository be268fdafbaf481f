//! HTTP: the axum router of the debug endpoint. Paths, parameters, content
//! types and error codes follow Go's `net/http/pprof`. Every request passes
//! the layers of `layers.rs` (token, limits, panics); `server.rs` serves it.

pub mod assets;
mod cpu;
mod empty;
mod error;
pub(crate) mod guard;
mod heap;
mod layers;
pub(crate) mod limits;
mod params;
pub(crate) mod server;
mod stream;
pub(crate) mod trim;

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
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
    let router = Router::new()
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
        // The viewer's files hold no data: the guard lets them through
        // without the token (see guard.rs and assets.rs).
        .merge(assets::routes());
    // A renderer that panics, to test that the panic is caught (tests only).
    #[cfg(test)]
    let router = router.route(
        "/debug/taskscope/test/panic",
        get(|State(shared): State<AppState>| async move {
            with_snapshot(&shared, |_| -> String { panic!("deliberate panic in a renderer") }).await
        }),
    );
    let token = shared.token.as_deref().map(Arc::from);
    layers::harden(router.with_state(shared), token, limits::MAX_IN_FLIGHT)
}

/// Takes a snapshot and renders it on a blocking thread, so that a large
/// snapshot never stalls the runtime serving the request (the app's, when
/// the router is mounted into the app's own server). A panic becomes a
/// counted 500 (see layers.rs).
async fn with_snapshot<T: Send + 'static>(
    shared: &AppState,
    render: impl FnOnce(Snapshot) -> T + Send + 'static,
) -> Result<T, HttpError> {
    let runtime = shared.runtime.clone();
    let settings = shared.detect;
    layers::join(tokio::task::spawn_blocking(move || take_and_render(runtime.as_ref(), &settings, render)))
        .await
}

/// On a blocking thread: takes a snapshot, runs the detectors on it, renders
/// it with `render`, and records how long that took.
fn take_and_render<T>(
    runtime: Option<&tokio::runtime::Handle>,
    settings: &crate::detect::Settings,
    render: impl FnOnce(Snapshot) -> T,
) -> T {
    let started = std::time::Instant::now();
    let mut snapshot = snapshot::take(crate::tasks::registry(), runtime);
    snapshot.findings = crate::detect::run(&snapshot, settings);
    let tasks = snapshot.tasks_total;
    let out = render(snapshot);
    crate::watch::observe_dump(started.elapsed(), tasks);
    crate::watch::check_dropped();
    out
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
        _ => {
            stream::snapshot_streamed(&shared, "text/plain; charset=utf-8", |s, send| {
                render::text::per_task_streamed(&s, send)
            })
            .await?
        }
    })
}

async fn snapshot_json(
    State(shared): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let selection = Params::parse(query.as_deref())?.task_query()?;
    stream::snapshot_streamed(&shared, "application/json", move |s, send| {
        render::json::stream(s, &selection, send)
    })
    .await
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
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// A renderer that panics on its blocking thread: a counted 500 with a
    /// one-line reason, and the same router answers the next request.
    #[tokio::test]
    async fn a_panicking_renderer_is_a_counted_500() {
        let router = router(Arc::new(Shared::default()));
        let get = |uri: &'static str| {
            let router = router.clone();
            async move {
                let res =
                    router.oneshot(axum::http::Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
                let status = res.status();
                (status, res.into_body().collect().await.unwrap().to_bytes())
            }
        };
        let before = crate::health::panics();
        let (status, body) = get("/debug/taskscope/test/panic").await;
        assert_eq!(status, 500);
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("deliberate panic in a renderer") && body.lines().count() == 1, "{body}");
        assert!(crate::health::panics() > before);
        assert_eq!(get("/debug/pprof/tasks?debug=1").await.0, 200);

        // The count is in the snapshot's JSON and in /metrics.
        let (status, json) = get("/debug/taskscope/api/snapshot?limit=0").await;
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert!(json["agent"]["panics"].as_u64().unwrap() > before, "{}", json["agent"]);
        let (status, text) = get("/metrics").await;
        assert_eq!(status, 200);
        let text = String::from_utf8(text.to_vec()).unwrap();
        let counted = text
            .lines()
            .find_map(|l| l.strip_prefix("taskscope_agent_panics_total ")?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no taskscope_agent_panics_total in\n{text}"));
        assert!(counted > before, "{counted}");
    }
}
