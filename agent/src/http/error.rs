//! The error of a request: a status and a one-line plain-text reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub(crate) struct HttpError {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
}

impl HttpError {
    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        HttpError { status: StatusCode::BAD_REQUEST, reason: reason.into() }
    }

    pub(crate) fn not_found(reason: impl Into<String>) -> Self {
        HttpError { status: StatusCode::NOT_FOUND, reason: reason.into() }
    }

    pub(crate) fn internal(reason: impl Into<String>) -> Self {
        HttpError { status: StatusCode::INTERNAL_SERVER_ERROR, reason: reason.into() }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut line = self.reason.replace(['\n', '\r'], " ");
        line.push('\n');
        // `X-Go-Pprof` makes `go tool pprof` print the reason, as for Go's errors.
        (self.status, [("content-type", "text/plain; charset=utf-8"), ("x-go-pprof", "1")], line)
            .into_response()
    }
}
