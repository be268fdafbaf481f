//! `/debug/pprof/heap`, `/debug/pprof/allocs` and
//! `/debug/pprof/heap/flamegraph`: heap profiles as Go's pprof handler
//! serves them. With `?seconds=N` the request awaits a timer between two
//! readings and answers their difference; the agent keeps answering others.
//! Without taskscope's allocator they serve valid empty profiles, whose
//! comments (and the `debug=1` text) say how to enable heap profiling.

use std::time::Duration;

use axum::extract::RawQuery;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::params::Params;
use super::{profile_response, text, HttpError};
use crate::heap::{self, HeapProfile};
use crate::render::heap::{self as render, SampleType};

/// The longest delta profile.
const MAX_SECONDS: u64 = 600;

/// Runs `f` on a blocking thread: symbolizing can take a while. A panic
/// becomes a counted 500 (see layers.rs).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, HttpError> {
    super::layers::join(tokio::task::spawn_blocking(f)).await
}

/// The profile now, or the difference over the next `seconds`; symbolized.
async fn read(seconds: Option<u64>) -> Result<HeapProfile, HttpError> {
    heap::start_history();
    let Some(seconds) = seconds else {
        return blocking(|| heap::take(true)).await;
    };
    let before = blocking(|| heap::take(false)).await?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    blocking(move || {
        let mut delta = heap::take(false).since(&before);
        delta.symbolize();
        delta
    })
    .await
}

async fn serve(
    query: Option<String>,
    name: &'static str,
    default: SampleType,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref())?;
    let debug = params.debug()?;
    let seconds = params.delta_seconds(MAX_SECONDS)?;
    if seconds.is_some() && debug != 0 {
        return Err(HttpError::bad_request("seconds and debug params are incompatible"));
    }
    let profile = read(seconds).await?;
    if debug != 0 {
        return Ok(text(blocking(move || render::text(&profile)).await?));
    }
    let body = blocking(move || render::profile(&profile, default).gzip()).await?;
    Ok(match seconds {
        Some(_) => profile_response(&format!("{name}-delta"), body),
        None => profile_response(name, body),
    })
}

pub(super) async fn heap(RawQuery(query): RawQuery) -> Result<Response, HttpError> {
    serve(query, "heap", SampleType::InuseSpace).await
}

pub(super) async fn allocs(RawQuery(query): RawQuery) -> Result<Response, HttpError> {
    serve(query, "allocs", SampleType::AllocSpace).await
}

/// `?sample=inuse_space` (default), `inuse_objects`, `alloc_space` or
/// `alloc_objects`; `seconds`, and the drawing options of every flamegraph.
pub(super) async fn flamegraph(RawQuery(query): RawQuery) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref())?;
    let sample = params.heap_sample()?;
    let seconds = params.delta_seconds(MAX_SECONDS)?;
    let options = params.flamegraph()?;
    let profile = read(seconds).await?;
    let svg = blocking(move || render::flamegraph(&profile, sample, options))
        .await?
        .map_err(|e| HttpError::internal(format!("could not draw the flamegraph: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}
