//! The agent's own health: panics caught, requests and connections the
//! debug endpoint turned away, and whether hooks are installed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

static PANICS: AtomicU64 = AtomicU64::new(0);
static INSTRUMENTED: AtomicBool = AtomicBool::new(false);

pub(crate) fn count_panic() {
    PANICS.fetch_add(1, Relaxed);
}

/// Counts a panic caught in the agent's code and reports it (through
/// `tracing` or on stderr) with its message; the agent and the app run on.
pub(crate) fn report_panic(context: impl std::fmt::Display, payload: &(dyn std::any::Any + Send)) {
    count_panic();
    report_panic_uncounted(context, payload);
}

/// Reports a panic already counted with [`count_panic`] (for code that
/// counts every panic but reports only some).
pub(crate) fn report_panic_uncounted(context: impl std::fmt::Display, payload: &(dyn std::any::Any + Send)) {
    crate::watch::error(format_args!(
        "{context} panicked: {}; the panic was caught and counted, the agent runs on",
        panic_message(payload)
    ));
}

/// The message of a panic, as `panic!` formatted it.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let message = match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (_, Some(s)) => s.as_str(),
        _ => "(no message)",
    };
    message.replace(['\n', '\r'], " ")
}

pub(crate) fn panics() -> u64 {
    PANICS.load(Relaxed)
}

static UNAUTHORIZED: AtomicU64 = AtomicU64::new(0);
static BUSY: AtomicU64 = AtomicU64::new(0);
static TIMED_OUT: AtomicU64 = AtomicU64::new(0);
static TOO_LARGE: AtomicU64 = AtomicU64::new(0);
static CONNECTIONS_REFUSED: AtomicU64 = AtomicU64::new(0);
static SLOW_CLIENTS: AtomicU64 = AtomicU64::new(0);

/// What the debug endpoint turned away, since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct HttpCounters {
    /// Requests without the right bearer token (401).
    pub(crate) unauthorized: u64,
    /// Requests refused because too many were in flight (503).
    pub(crate) busy: u64,
    /// Requests that ran past their deadline (503).
    pub(crate) timed_out: u64,
    /// Requests whose URI or headers were too large (414, 431).
    pub(crate) too_large: u64,
    /// Connections closed at once because too many were open.
    pub(crate) connections_refused: u64,
    /// Connections closed because the client was too slow to send its
    /// request's headers or to read the answer.
    pub(crate) slow_clients: u64,
}

pub(crate) fn http_counters() -> HttpCounters {
    HttpCounters {
        unauthorized: UNAUTHORIZED.load(Relaxed),
        busy: BUSY.load(Relaxed),
        timed_out: TIMED_OUT.load(Relaxed),
        too_large: TOO_LARGE.load(Relaxed),
        connections_refused: CONNECTIONS_REFUSED.load(Relaxed),
        slow_clients: SLOW_CLIENTS.load(Relaxed),
    }
}

pub(crate) fn count_unauthorized() {
    UNAUTHORIZED.fetch_add(1, Relaxed);
}

pub(crate) fn count_busy() {
    BUSY.fetch_add(1, Relaxed);
}

pub(crate) fn count_timed_out() {
    TIMED_OUT.fetch_add(1, Relaxed);
}

pub(crate) fn count_too_large() {
    TOO_LARGE.fetch_add(1, Relaxed);
}

pub(crate) fn count_connection_refused() {
    CONNECTIONS_REFUSED.fetch_add(1, Relaxed);
}

pub(crate) fn count_slow_client() {
    SLOW_CLIENTS.fetch_add(1, Relaxed);
}

#[cfg_attr(not(tokio_unstable), allow(dead_code))]
pub(crate) fn note_instrumented() {
    INSTRUMENTED.store(true, Relaxed);
}

/// True once a runtime has been built with taskscope's hooks.
pub(crate) fn instrumented() -> bool {
    INSTRUMENTED.load(Relaxed)
}

/// Why task tracking is off, with what to do about it; `None` when it is on.
pub(crate) fn tracking_problem() -> Option<&'static str> {
    if !cfg!(tokio_unstable) {
        Some(
            "task tracking needs tokio's hooks, which need --cfg tokio_unstable: add \
             `[build] rustflags = [\"--cfg\", \"tokio_unstable\"]` to .cargo/config.toml and rebuild",
        )
    } else if !instrumented() {
        Some(
            "no runtime is instrumented: use #[taskscope::main], or call \
             taskscope::instrument(&mut builder) before building the runtime",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_either_payload_on_one_line() {
        let s: Box<dyn std::any::Any + Send> = Box::new("static message");
        assert_eq!(panic_message(&*s), "static message");
        let s: Box<dyn std::any::Any + Send> = Box::new(format!("formatted\n{}", 42));
        assert_eq!(panic_message(&*s), "formatted 42");
        let s: Box<dyn std::any::Any + Send> = Box::new(7u8);
        assert_eq!(panic_message(&*s), "(no message)");
    }
}
