//! The agent's own health: panics caught and whether hooks are installed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

static PANICS: AtomicU64 = AtomicU64::new(0);
static INSTRUMENTED: AtomicBool = AtomicBool::new(false);

pub(crate) fn count_panic() {
    PANICS.fetch_add(1, Relaxed);
}

pub(crate) fn panics() -> u64 {
    PANICS.load(Relaxed)
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
