//! Symbolization, off the hot path: return addresses to functions, files and
//! lines, inlined frames included, cached per address. And the wait reason a
//! parked-at stack implies.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::snapshot::Frame;

/// Addresses symbolized so far; bounded, cleared when full.
static CACHE: OnceLock<Mutex<HashMap<usize, Vec<Frame>>>> = OnceLock::new();
const CACHE_CAP: usize = 65_536;

/// Crates whose frames are not the application's.
const INTERNAL: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "tokio::",
    "tracing::",
    "tracing_core::",
    "taskscope::",
    "futures",
    "backtrace::",
    "__rust",
    "axum::",
    "hyper::",
    "hyper_util::",
    "tower::",
    "pin_project",
];

/// taskscope's own sources, wherever it is built from.
const OWN_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

fn is_user(function: &str, file: Option<&str>) -> bool {
    let name = function.trim_start_matches('<');
    if INTERNAL.iter().any(|p| name.starts_with(p)) {
        return false;
    }
    match file {
        Some(f) => {
            !(f.contains("/.cargo/registry/")
                || f.contains("/.cargo/git/")
                || f.starts_with("/rustc/")
                || f.starts_with(OWN_SOURCES)
                // C libraries built elsewhere, e.g. glibc's ./nptl/pthread_create.c
                || f.starts_with("./"))
        }
        None => false,
    }
}

/// The frames at return address `addr`, innermost inlined frame first.
pub(crate) fn symbolize(addr: usize) -> Vec<Frame> {
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&addr) {
        return hit.clone();
    }
    let mut frames = Vec::new();
    // A return address points after the call; look up the call itself.
    let lookup = addr.saturating_sub(1) as *mut std::ffi::c_void;
    backtrace::resolve(lookup, |symbol| {
        let function = symbol.name().map(|n| format!("{n:#}")).unwrap_or_else(|| format!("{addr:#x}"));
        let file = symbol.filename().map(|p| p.display().to_string());
        let user = is_user(&function, file.as_deref());
        frames.push(Frame { function, file, line: symbol.lineno(), user });
    });
    if frames.is_empty() {
        frames.push(Frame { function: format!("{addr:#x}"), file: None, line: None, user: false });
    }
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= CACHE_CAP {
        cache.clear();
    }
    cache.insert(addr, frames.clone());
    frames
}

/// What a task parked at `frames` (leaf first) is waiting for, Go style.
///
/// The deciding frame is the library call the application made: the last
/// non-application frame before the first application frame, counting from
/// the leaf (e.g. `tokio::sync::mutex::Mutex<T>::lock`). If that says
/// nothing, every frame is tried from the leaf.
pub(crate) fn wait_reason(frames: &[Frame]) -> &'static str {
    let first_user = frames.iter().position(|f| f.user);
    let entry = first_user.and_then(|i| i.checked_sub(1)).map(|i| &frames[i]);
    if let Some(reason) = entry.and_then(classify) {
        return reason;
    }
    frames.iter().filter(|f| !f.user).find_map(classify).unwrap_or("idle")
}

/// The wait reason a library frame implies, from its source file (names of
/// inlined frames can be short) or else its function name.
fn classify(frame: &Frame) -> Option<&'static str> {
    if let Some(file) = frame.file.as_deref() {
        let file = file.replace('\\', "/");
        let tokio = |path: &str| file.contains("/tokio-") && file.contains(path);
        let reason = if tokio("/src/sync/mutex.rs") {
            Some("mutex lock")
        } else if tokio("/src/sync/rwlock") {
            Some("rwlock")
        } else if tokio("/src/sync/semaphore.rs") || tokio("/src/sync/batch_semaphore.rs") {
            Some("semaphore acquire")
        } else if tokio("/src/time/") {
            Some("sleep")
        } else if tokio("/src/sync/mpsc/")
            && (frame.function.contains("send") || frame.function.contains("reserve"))
        {
            Some("chan send")
        } else if tokio("/src/sync/mpsc/")
            || tokio("/src/sync/oneshot.rs")
            || tokio("/src/sync/broadcast.rs")
            || tokio("/src/sync/watch.rs")
        {
            Some("chan receive")
        } else if tokio("/src/sync/notify.rs") {
            Some("notify")
        } else if tokio("/src/runtime/task/join.rs") || tokio("/src/task/join_set.rs") {
            Some("join")
        } else if tokio("/src/net/") || tokio("/src/io/") || tokio("/src/runtime/io/") {
            Some("io wait")
        } else if tokio("/src/macros/") {
            Some("select")
        } else if tokio("/src/task/yield_now.rs") || tokio("/src/runtime/scheduler/defer.rs") {
            Some("yield")
        } else {
            None
        };
        if reason.is_some() {
            return reason;
        }
    }
    let function = frame.function.as_str();
    let has = |s: &str| function.contains(s);
    Some(if has("tokio::sync::mutex") {
        "mutex lock"
    } else if has("tokio::sync::rwlock") {
        "rwlock"
    } else if has("Semaphore") || has("semaphore") {
        "semaphore acquire"
    } else if has("tokio::time") || has("Sleep") {
        "sleep"
    } else if has("mpsc") && (has("send") || has("reserve") || has("Sender")) {
        "chan send"
    } else if has("mpsc") || has("oneshot") || has("broadcast") || has("watch::Receiver") {
        "chan receive"
    } else if has("Notify") || has("Notified") {
        "notify"
    } else if has("JoinHandle") || has("JoinSet") {
        "join"
    } else if has("tokio::net") || has("tokio::io") || has("PollEvented") || has("scheduled_io") {
        "io wait"
    } else if has("tokio::macros::support") {
        "select"
    } else if has("tokio::task::yield_now") || has("scheduler::defer::Defer") {
        "yield"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, user: bool) -> Frame {
        Frame { function: function.into(), file: None, line: None, user }
    }

    #[test]
    fn the_library_call_of_the_app_decides_the_reason() {
        let stack = [
            frame("tokio::sync::batch_semaphore::Acquire::poll", false),
            frame("tokio::sync::mutex::Mutex<T>::acquire", false),
            frame("tokio::sync::mutex::Mutex<T>::lock", false),
            frame("app::transfer::{{closure}}", true),
        ];
        assert_eq!(wait_reason(&stack), "mutex lock");
        let stack = [
            frame("tokio::sync::mpsc::chan::Rx<T,S>::recv", false),
            frame("tokio::sync::mpsc::bounded::Receiver<T>::recv", false),
            frame("app::consumer::{{closure}}", true),
        ];
        assert_eq!(wait_reason(&stack), "chan receive");
        let stack = [
            frame("<tokio::time::sleep::Sleep as core::future::future::Future>::poll", false),
            frame("app::sleepy::{{closure}}", true),
        ];
        assert_eq!(wait_reason(&stack), "sleep");
        let stack = [
            frame("tokio::net::tcp::listener::TcpListener::accept", false),
            frame("app::main::{{closure}}", true),
        ];
        assert_eq!(wait_reason(&stack), "io wait");
        let stack = [
            frame("tokio::runtime::scheduler::defer::Defer::defer", false),
            frame("tokio::task::yield_now::yield_now::{{closure}}", false),
            frame("app::spin::{{closure}}", true),
        ];
        assert_eq!(wait_reason(&stack), "yield");
        assert_eq!(wait_reason(&[frame("app::f", true)]), "idle");
        assert_eq!(wait_reason(&[]), "idle");
    }

    #[test]
    fn library_files_decide_when_inlined_names_are_short() {
        let at = |function: &str, file: &str, user| Frame {
            function: function.into(),
            file: Some(file.into()),
            line: Some(1),
            user,
        };
        let registry = "/root/.cargo/registry/src/index.crates.io-1/tokio-1.54.1/src";
        let stack = [
            at("poll_acquire", &format!("{registry}/sync/batch_semaphore.rs"), false),
            at("{async_fn#0}<()>", &format!("{registry}/sync/mutex.rs"), false),
            at("{async_block#2}", "examples/app/src/main.rs", true),
        ];
        assert_eq!(wait_reason(&stack), "mutex lock");
        let stack = [
            at("recv", &format!("{registry}/sync/mpsc/chan.rs"), false),
            at("{async_block#0}", "src/main.rs", true),
        ];
        assert_eq!(wait_reason(&stack), "chan receive");
        let stack = [
            at("poll", &format!("{registry}/time/sleep.rs"), false),
            at("{async_block#0}", "src/main.rs", true),
        ];
        assert_eq!(wait_reason(&stack), "sleep");
    }

    #[test]
    fn taskscope_frames_are_not_the_apps() {
        let own = format!("{OWN_SOURCES}deep/subscriber.rs");
        assert!(!is_user("event", Some(&own)));
    }

    #[test]
    fn registry_and_std_frames_are_not_the_apps() {
        assert!(is_user("app::main::{{closure}}", Some("src/main.rs")));
        assert!(!is_user("tokio::spawn", Some("src/main.rs")));
        assert!(!is_user("<core::pin::Pin<P> as Future>::poll", Some("/rustc/abc/library/core/src/pin.rs")));
        assert!(!is_user("h2::proto::go", Some("/root/.cargo/registry/src/x/h2/src/lib.rs")));
        assert!(!is_user("app::f", None));
    }
}
