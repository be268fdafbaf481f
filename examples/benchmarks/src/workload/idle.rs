//! idle: the agent's own cost in an app that does nothing. The runtime and
//! the instrumentation of the mode are started, the app stays idle for
//! `secs` seconds, and the run reports the CPU time of the threads that are
//! not the app's (the agent's clock ticker, server and render threads, or
//! console-subscriber's) and the process's resident memory.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{probe, Error};

/// The app's own threads: the main thread, the runtime's workers and
/// blocking threads (`tokio-rt-worker`, or `tokio-runtime-worker` cut to
/// 15 bytes in older tokio), and the
/// benchmark's helper threads. Every other thread is the instrumentation's.
fn is_app_thread(t: &probe::Thread) -> bool {
    t.tid == std::process::id() || t.comm.starts_with("tokio-") || t.comm.starts_with("bench-")
}

pub fn run(secs: u64) -> Result<Value, Error> {
    // Let the agent's threads start and its first second pass.
    sleep(Duration::from_millis(200));
    let before = probe::threads();
    let begin = Instant::now();
    sleep(Duration::from_secs(secs));
    let after = probe::threads();
    let wall = begin.elapsed().as_secs_f64();
    let rss_bytes = probe::rss_bytes()?;

    // CPU per thread name over the window; a thread that started during it
    // counts whole.
    let mut agent: BTreeMap<String, f64> = BTreeMap::new();
    let (mut agent_ns, mut app_ns) = (0u64, 0u64);
    for t in &after {
        let start = before.iter().find(|b| b.tid == t.tid).map_or(0, |b| b.cpu_ns);
        let ns = t.cpu_ns.saturating_sub(start);
        if is_app_thread(t) {
            app_ns += ns;
        } else {
            agent_ns += ns;
            *agent.entry(t.comm.clone()).or_default() += ns as f64 / 1e6;
        }
    }
    Ok(json!({
        "secs": wall,
        "idle_secs": secs,
        "agent_cpu_ms": agent_ns as f64 / 1e6,
        // Percent of one core over the window.
        "agent_cpu_pct": agent_ns as f64 / 1e9 / wall * 100.0,
        "app_cpu_ms": app_ns as f64 / 1e6,
        "agent_threads": after.iter().filter(|t| !is_app_thread(t)).count(),
        "threads": after.len(),
        "agent_cpu_ms_by_thread": agent,
        "rss_bytes": rss_bytes,
    }))
}
