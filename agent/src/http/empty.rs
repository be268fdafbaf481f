//! `block` and `mutex`: profiles taskscope has no data for yet, served as
//! valid empty profiles with Go's sample types, so that scrape jobs
//! configured for Go (Parca's, Alloy's) succeed instead of failing on a 404.

use axum::extract::RawQuery;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::params::Params;
use super::{profile_response, HttpError};
use crate::render::pprof::ProfileBuilder;

/// Go's contention profiles (`block`, `mutex`): `contentions/count` and
/// `delay/nanoseconds`.
fn contention(what: &str) -> Vec<u8> {
    let mut b = ProfileBuilder::new(
        &[("contentions", "count"), ("delay", "nanoseconds")],
        ("contentions", "count", 1),
    );
    b.comment(&format!("taskscope does not record {what} yet: this profile is empty"));
    b.gzip()
}

/// The binary profile, or with `debug=1`/`2` a line saying why it is empty.
fn serve(
    query: Option<String>,
    name: &str,
    why: &str,
    body: impl FnOnce() -> Vec<u8>,
) -> Result<Response, HttpError> {
    Ok(match Params::parse(query.as_deref())?.debug()? {
        0 => profile_response(name, body()),
        _ => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{why}\n")).into_response(),
    })
}

pub(super) async fn block(RawQuery(query): RawQuery) -> Result<Response, HttpError> {
    let why = "no block profile: taskscope does not record blocking on synchronization yet";
    serve(query, "block", why, || contention("blocking on synchronization"))
}

pub(super) async fn mutex(RawQuery(query): RawQuery) -> Result<Response, HttpError> {
    let why = "no mutex profile: taskscope does not record mutex contention yet";
    serve(query, "mutex", why, || contention("mutex contention"))
}
