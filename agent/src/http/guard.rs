//! Who may ask: with a token configured, every request must carry
//! `Authorization: Bearer <token>`, compared in constant time. The guard
//! wraps the whole router, routes and fallback alike, so a route added later
//! cannot skip it. The one exception is the web viewer's page and files,
//! which hold no data: a browser cannot attach a bearer token when it
//! navigates to a page, so the page asks for the token itself and sends it
//! with every request for data (see `assets.rs`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::HttpError;

/// The longest token accepted, in bytes.
pub(crate) const MAX_TOKEN_BYTES: usize = 4096;

/// Checks the bearer token, if one is configured.
pub(super) async fn guard(State(token): State<Option<Arc<str>>>, request: Request, next: Next) -> Response {
    let Some(token) = token else { return next.run(request).await };
    if is_public(request.uri().path()) || authorized(&request, &token) {
        return next.run(request).await;
    }
    crate::health::count_unauthorized();
    let mut r = HttpError {
        status: StatusCode::UNAUTHORIZED,
        reason: "missing or wrong bearer token: send Authorization: Bearer <TASKSCOPE_TOKEN>".into(),
    }
    .into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The viewer's page and its static files: embedded files, no data.
pub(crate) fn is_public(path: &str) -> bool {
    matches!(path, "/debug/taskscope" | "/debug/taskscope/" | "/debug/taskscope/index.html")
        || path.starts_with("/debug/taskscope/static/")
}

fn authorized(request: &Request, token: &str) -> bool {
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return false };
    // The scheme is case-insensitive (RFC 9110, section 11.1).
    let bytes = value.as_bytes();
    bytes.len() > 7
        && bytes[..7].eq_ignore_ascii_case(b"bearer ")
        && constant_time_eq(bytes[7..].trim_ascii(), token.as_bytes())
}

/// Compares a secret with what a client sent, in time that depends only on
/// the length of what was sent: every byte is compared, with no early exit,
/// and the length of the secret is folded into the result instead of
/// deciding how much to compare.
pub(crate) fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = (given.len() ^ secret.len()) as u64;
    if secret.is_empty() {
        // A configured token is never empty (`Builder::start` refuses one);
        // deny rather than divide by zero below.
        return false;
    }
    for (i, &g) in given.iter().enumerate() {
        // `i % len` keeps indexing in bounds whatever `given`'s length, so
        // the loop never branches on the secret.
        let s = secret[i % secret.len()];
        diff |= std::hint::black_box((g ^ s) as u64);
    }
    std::hint::black_box(diff) == 0
}

/// A token must be something a client can send in a header: 1 to
/// [`MAX_TOKEN_BYTES`] visible ASCII characters, no spaces.
pub(crate) fn valid_token(token: &str) -> bool {
    (1..=MAX_TOKEN_BYTES).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secretsecret", b"secret"), "a repeated secret is not the secret");
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret", b""));
        assert!(!constant_time_eq(b"", b""));
    }

    /// The comparison's work depends on the length sent, not on where the
    /// first difference is: a statistical check that a wrong first byte and
    /// a wrong last byte take about the same time (within 2x; an early exit
    /// would make the first about 4000x faster).
    #[test]
    fn token_comparison_takes_as_long_for_an_early_or_a_late_difference() {
        let secret = vec![b'k'; 4096];
        let mut early = secret.clone();
        early[0] = b'x';
        let mut late = secret.clone();
        late[4095] = b'x';
        let time = |given: &[u8]| {
            let mut runs: Vec<u128> = (0..101)
                .map(|_| {
                    let t = std::time::Instant::now();
                    for _ in 0..20 {
                        assert!(!constant_time_eq(std::hint::black_box(given), &secret));
                    }
                    t.elapsed().as_nanos()
                })
                .collect();
            runs.sort_unstable();
            runs[runs.len() / 2] as f64
        };
        // Interleave to share any frequency changes.
        let (mut e, mut l) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            e.push(time(&early));
            l.push(time(&late));
        }
        let (e, l) = (e.iter().cloned().fold(f64::MAX, f64::min), l.iter().cloned().fold(f64::MAX, f64::min));
        assert!(e / l > 0.5 && e / l < 2.0, "early difference {e} ns, late {l} ns");
    }

    #[test]
    fn tokens_must_be_sendable_in_a_header() {
        assert!(valid_token("s3cret-token_1.2~"));
        for bad in ["", "two words", "tab\there", "naïve", "line\n"] {
            assert!(!valid_token(bad), "{bad:?}");
        }
        assert!(!valid_token(&"x".repeat(MAX_TOKEN_BYTES + 1)));
    }

    #[test]
    fn the_public_paths_are_the_viewers_files_only() {
        for public in ["/debug/taskscope/", "/debug/taskscope", "/debug/taskscope/static/abc/app.js"] {
            assert!(is_public(public), "{public}");
        }
        for private in [
            "/debug/taskscope/api/snapshot",
            "/debug/taskscope/findings",
            "/debug/taskscope/staticx",
            "/debug/pprof/",
            "/metrics",
            "/debug/taskscope//static/x",
        ] {
            assert!(!is_public(private), "{private}");
        }
    }
}
