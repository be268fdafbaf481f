//! `taskscope serve snap.json`: the web viewer on a saved snapshot, offline
//! and read-only. It serves the viewer's files (embedded in the agent crate,
//! `taskscope::__assets`) under `/debug/taskscope/`, as the agent does, and
//! the file at `/debug/taskscope/snapshot.json`; the page opened as
//! `…/debug/taskscope/?snapshot=snapshot.json` reads it once (the viewer's
//! offline mode). Only GET is answered; profiles, which need the live app,
//! answer 404 with a reason.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::read_snapshot;
use crate::model::check::exit;

/// Where the page finds the snapshot, relative to the viewer.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// What the server holds: the file, as read at start.
#[derive(Debug)]
struct Saved {
    name: String,
    json: Vec<u8>,
}

pub fn run(file: &Path, addr: SocketAddr) -> Result<u8> {
    read_snapshot(file)?;
    let json = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let saved = Arc::new(Saved { name: file.display().to_string(), json });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot start the server's runtime")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr().context("reading the listening address")?;
        eprintln!(
            "taskscope: serving {} read-only at http://{local}/debug/taskscope/?snapshot={SNAPSHOT_FILE} (Ctrl-C stops)",
            saved.name
        );
        axum::serve(listener, router(saved)).await.context("serving")
    })?;
    Ok(exit::CLEAN)
}

fn router(saved: Arc<Saved>) -> Router {
    let viewer = || Redirect::temporary(&format!("/debug/taskscope/?snapshot={SNAPSHOT_FILE}"));
    Router::new()
        .route("/", get(move || async move { viewer() }))
        .route("/debug/taskscope", get(move || async move { viewer() }))
        .route("/debug/taskscope/", get(|| async { asset("index.html") }))
        .route(&format!("/debug/taskscope/{SNAPSHOT_FILE}"), get(snapshot))
        // The live viewer's API path too, so a page that asks the API gets the file.
        .route("/debug/taskscope/api/snapshot", get(snapshot))
        .route("/debug/taskscope/{*path}", get(|UrlPath(path): UrlPath<String>| async move { asset(&path) }))
        .fallback(fallback)
        .method_not_allowed_fallback(fallback)
        .with_state(saved)
}

async fn snapshot(State(saved): State<Arc<Saved>>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], saved.json.clone()).into_response()
}

fn reason(status: StatusCode, text: &str) -> Response {
    let mut r =
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{text}\n")).into_response();
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

async fn fallback(method: Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return reason(StatusCode::METHOD_NOT_ALLOWED, "read-only: taskscope serve answers GET only");
    }
    reason(
        StatusCode::NOT_FOUND,
        "not in a saved snapshot: profiles and dumps need the live agent; the viewer is at /debug/taskscope/",
    )
}

/// One of the viewer's files, from the agent crate's embedded copy, with
/// the caching it suits (`index.html` revalidated, versioned files immutable).
fn asset(path: &str) -> Response {
    match taskscope::__assets::get(path) {
        Some((bytes, content_type)) => {
            let cache = taskscope::__assets::cache_control(path);
            let mut r = ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, cache)], bytes)
                .into_response();
            r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            r
        }
        None => reason(StatusCode::NOT_FOUND, &format!("not found: the viewer has no file {path:?}")),
    }
}
