//! Limits on what one request may cost: how many run at once, and how long
//! one may take. Requests over the limit are refused at once with a 503 and
//! a one-line reason, rather than queued: a debug endpoint that cannot keep
//! up should say so, not pile up work in the process it is observing. The
//! limits of the connection itself (header size, slow clients) are the
//! server's, in `server.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::HttpError;

/// The longest request URI (path and query), in bytes.
pub(crate) const MAX_URI_BYTES: usize = 8 * 1024;
/// Requests served at once, long profiles included; more get a 503.
pub(crate) const MAX_IN_FLIGHT: usize = 16;
/// Threads of the agent's own server that take snapshots and render
/// answers; requests beyond wait for one (within their deadline).
pub(crate) const BLOCKING_THREADS: usize = 4;
/// How long a request may take, beyond the `seconds` a profile asks for.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `seconds` counted into a deadline (an hour): larger values
/// are refused by the handlers anyway, unless configured otherwise.
const MAX_EXTRA_SECONDS: u64 = 3_600;

/// The in-flight limit of one router.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    in_flight: Arc<Semaphore>,
}

impl Limits {
    pub(super) fn new(max_in_flight: usize) -> Self {
        Limits { in_flight: Arc::new(Semaphore::new(max_in_flight)) }
    }
}

/// Refuses requests beyond [`MAX_IN_FLIGHT`] and ends those that run past
/// their deadline.
pub(super) async fn limit(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        crate::health::count_busy();
        return retry_later(format!(
            "too many requests in flight (at most {MAX_IN_FLIGHT} at once): retry later"
        ));
    };
    let deadline = deadline(&request);
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            crate::health::count_timed_out();
            retry_later(format!("taskscope did not answer within {} s (counted)", deadline.as_secs()))
        }
    }
}

/// A URI too long to be a request of ours; checked before anything else.
pub(super) fn uri_too_long(request: &Request) -> Option<Response> {
    let len = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if len <= MAX_URI_BYTES {
        return None;
    }
    crate::health::count_too_large();
    let reason = format!("request URI of {len} bytes is too long: at most {MAX_URI_BYTES} bytes");
    Some(HttpError { status: StatusCode::URI_TOO_LONG, reason }.into_response())
}

fn retry_later(reason: String) -> Response {
    let mut r = HttpError { status: StatusCode::SERVICE_UNAVAILABLE, reason }.into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// [`REQUEST_TIMEOUT`], plus the `seconds` the request asks to record for
/// (Go's default of 30 for CPU profiles that do not say).
fn deadline(request: &Request) -> Duration {
    let path = request.uri().path();
    let asked = request
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|pairs| pairs.into_iter().rev().find(|(k, _)| k == "seconds"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let cpu = path == "/debug/pprof/profile" || path == "/debug/pprof/flamegraph";
    let extra = asked.unwrap_or(if cpu { crate::cpu::DEFAULT_SECONDS } else { 0 });
    REQUEST_TIMEOUT + Duration::from_secs(extra.min(MAX_EXTRA_SECONDS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(uri: &str) -> Request {
        Request::builder().uri(uri).body(Body::empty()).unwrap()
    }

    #[test]
    fn deadlines_allow_for_the_seconds_a_profile_records() {
        let s = |uri| deadline(&request(uri)).as_secs();
        assert_eq!(s("/debug/pprof/tasks"), 60);
        assert_eq!(s("/debug/pprof/profile"), 90, "Go's default of 30 s");
        assert_eq!(s("/debug/pprof/flamegraph?seconds=5"), 65);
        assert_eq!(s("/debug/pprof/heap?seconds=120"), 180);
        assert_eq!(
            s("/debug/pprof/heap?seconds=99999999999999999999"),
            60,
            "invalid: the handler refuses it"
        );
        assert_eq!(s("/debug/pprof/profile?seconds=86400"), 3660, "capped");
        assert_eq!(s("/debug/pprof/profile?seconds=%ZZ"), 90);
    }

    #[test]
    fn long_uris_are_refused() {
        assert!(
            uri_too_long(&request(&format!("/debug/pprof/?{}", "a".repeat(MAX_URI_BYTES - 20)))).is_none()
        );
        let r = uri_too_long(&request(&format!("/debug/pprof/?{}", "a".repeat(MAX_URI_BYTES)))).unwrap();
        assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
    }
}
