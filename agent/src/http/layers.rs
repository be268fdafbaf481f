//! The layers every request of the debug endpoint passes through, outermost
//! first: a panic anywhere inside becomes a counted, reported 500 (and the
//! server runs on); every answer gets `X-Content-Type-Options: nosniff` and
//! no CORS header; an oversized URI is refused; the bearer token is checked
//! (`guard.rs`); then the in-flight limit and the deadline (`limits.rs`).
//! They wrap the whole router, fallback included, so that no route,
//! present or future, can skip them.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::Poll;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::limits::{self, Limits};
use super::{guard, HttpError};

/// `router` with every layer, for a limit of `max_in_flight` requests.
pub(super) fn harden(router: Router, token: Option<Arc<str>>, max_in_flight: usize) -> Router {
    router
        .layer(middleware::from_fn_with_state(Limits::new(max_in_flight), limits::limit))
        .layer(middleware::from_fn_with_state(token, guard::guard))
        .layer(middleware::from_fn(outer))
}

async fn outer(request: Request, next: Next) -> Response {
    let mut response = match limits::uri_too_long(&request) {
        Some(refused) => refused,
        None => {
            let path = request.uri().path().to_owned();
            catch_panics(&path, next.run(request)).await
        }
    };
    response.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    super::trim::note_answer();
    response
}

/// Runs `answer`; if it panics, reports the panic and answers a 500.
async fn catch_panics(path: &str, answer: impl Future<Output = Response> + Send) -> Response {
    let mut answer = Box::pin(answer);
    let polled =
        std::future::poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| answer.as_mut().poll(cx))) {
            Ok(Poll::Ready(response)) => Poll::Ready(Ok(response)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        })
        .await;
    match polled {
        Ok(response) => response,
        Err(payload) => {
            // The future that panicked may panic again as it is dropped.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(answer)));
            crate::health::report_panic(format_args!("the handler of {path}"), &*payload);
            HttpError::internal(format!(
                "taskscope failed to answer this request (the panic was counted): {}",
                crate::health::panic_message(&*payload)
            ))
            .into_response()
        }
    }
}

/// Waits for work run on a blocking thread. Its panic resumes here, on the
/// request's task, so that [`catch_panics`] reports it like any other.
pub(crate) async fn join<T>(handle: tokio::task::JoinHandle<T>) -> Result<T, HttpError> {
    match handle.await {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(HttpError::internal("taskscope is shutting down")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// A router with handlers that misbehave, behind the real layers.
    fn misbehaving(token: Option<&str>, max_in_flight: usize) -> Router {
        async fn panics() -> &'static str {
            panic!("deliberate panic in a handler")
        }
        async fn panics_on_a_blocking_thread() -> Result<&'static str, HttpError> {
            join(tokio::task::spawn_blocking(|| -> &'static str { panic!("deliberate panic in a renderer") }))
                .await
        }
        async fn panics_after_await() -> &'static str {
            tokio::task::yield_now().await;
            std::panic::panic_any(42u32)
        }
        let routes = Router::new()
            .route("/panic", get(panics))
            .route("/panic-on-a-blocking-thread", get(panics_on_a_blocking_thread))
            .route("/panic-after-await", get(panics_after_await))
            .route("/sleep", get(|| async { tokio::time::sleep(Duration::from_secs(3_600)).await }))
            .route("/ok", get(|| async { "ok" }));
        harden(routes, token.map(Arc::from), max_in_flight)
    }

    async fn call(router: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let res = router.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_counted_500_and_the_router_serves_on() {
        let router = misbehaving(None, 4);
        for (uri, message) in [
            ("/panic", "deliberate panic in a handler"),
            ("/panic-on-a-blocking-thread", "deliberate panic in a renderer"),
            ("/panic-after-await", "(no message)"),
        ] {
            let before = crate::health::panics();
            let (status, headers, body) = call(&router, uri).await;
            assert_eq!(status, 500, "{uri}");
            assert!(body.contains(message) && body.ends_with('\n') && body.lines().count() == 1, "{body:?}");
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert!(crate::health::panics() > before, "{uri}: the panic was not counted");
            assert_eq!(call(&router, "/ok").await.0, 200, "the router serves on after {uri}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_deadline_is_a_503() {
        let before = crate::health::http_counters().timed_out;
        let (status, headers, body) = call(&misbehaving(None, 4), "/sleep").await;
        assert_eq!(status, 503);
        assert_eq!(body, "taskscope did not answer within 60 s (counted)\n");
        assert_eq!(headers["retry-after"], "1");
        assert!(crate::health::http_counters().timed_out > before);
    }

    #[tokio::test]
    async fn requests_beyond_the_in_flight_limit_are_refused_not_queued() {
        let router = misbehaving(None, 2);
        let sleepers: Vec<_> = (0..2)
            .map(|_| {
                let router = router.clone();
                tokio::spawn(async move { call(&router, "/sleep").await })
            })
            .collect();
        // Let both take their permits.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        let (status, headers, body) = call(&router, "/ok").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.starts_with("too many requests in flight"), "{body}");
        assert_eq!(headers["retry-after"], "1");
        for s in sleepers {
            s.abort();
            let _ = s.await;
        }
        // Aborted requests give their permits back.
        assert_eq!(call(&router, "/ok").await.0, 200);
    }

    #[tokio::test]
    async fn the_token_is_checked_before_any_handler_runs() {
        let router = misbehaving(Some("s3cret"), 4);
        let before = crate::health::panics();
        let (status, headers, body) = call(&router, "/panic").await;
        assert_eq!(status, 401);
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert!(body.starts_with("missing or wrong bearer token"), "{body}");
        assert_eq!(crate::health::panics(), before, "the handler must not have run");
        let ok = Request::get("/ok").header("authorization", "bearer s3cret").body(Body::empty()).unwrap();
        assert_eq!(router.clone().oneshot(ok).await.unwrap().status(), 200, "the scheme is case-insensitive");
        let twice = Request::get("/ok")
            .header("authorization", "Bearer s3cret")
            .header("authorization", "Bearer s3cret")
            .body(Body::empty())
            .unwrap();
        assert_eq!(router.clone().oneshot(twice).await.unwrap().status(), 401, "one credential only");
    }
}
