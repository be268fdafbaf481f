//! million-tasks: a million live idle tasks, then the memory they cost, and
//! with the agent serving, how long its task dump and snapshot take over
//! real HTTP and how late the app's 1 ms ticker gets meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::probe::{self, Ticker};
use super::{App, Error};

/// Idle tasks that have been polled once.
static STARTED: AtomicUsize = AtomicUsize::new(0);

async fn idle() {
    STARTED.fetch_add(1, Relaxed);
    std::future::pending::<()>().await;
}

/// Spawns `tasks` idle tasks, waits until each has been polled, then measures.
pub fn run(app: &App, tasks: usize) -> Result<Value, Error> {
    // Before any task: the runtime's and the instrumentation's fixed memory.
    let rss_start_bytes = probe::rss_bytes()?;
    let start = Instant::now();
    app.rt.block_on(async move {
        tokio::spawn(async move {
            for _ in 0..tasks {
                tokio::spawn(idle());
            }
        })
        .await
    })?;
    while STARTED.load(Relaxed) < tasks {
        sleep(Duration::from_millis(1));
    }
    let settle_secs = start.elapsed().as_secs_f64();
    // Let freed memory and the agent's coarse clock settle before reading.
    sleep(Duration::from_millis(300));
    let rss_bytes = probe::rss_bytes()?;

    let ticker = Ticker::spawn(app.rt.handle());
    sleep(Duration::from_millis(100));
    ticker.take_worst_ms();
    sleep(Duration::from_millis(300));
    let idle_late_ms = ticker.take_worst_ms();
    let mut out = json!({
        "secs": settle_secs, "tasks": tasks, "rss_bytes": rss_bytes, "rss_start_bytes": rss_start_bytes,
        "idle_late_ms": idle_late_ms,
    });
    if let Some(addr) = app.agent_addr() {
        let base = format!("http://{addr}");
        let dump = probe::get(&format!("{base}/debug/pprof/tasks?debug=1"))?;
        let snapshot = probe::get_discarding(&format!("{base}/debug/taskscope/api/snapshot"))?;
        if !snapshot.head.starts_with(b"{\"tasks\":[") || !snapshot.tail.ends_with(b"}") {
            let (head, tail) =
                (String::from_utf8_lossy(&snapshot.head), String::from_utf8_lossy(&snapshot.tail));
            return Err(format!("the snapshot is not the JSON expected: {head} … {tail}").into());
        }
        // A tick delayed by the last request fires just after it ends.
        sleep(Duration::from_millis(20));
        let stall_ms = ticker.take_worst_ms();
        // A page of 100 tasks, as the viewer asks; it also tells how many
        // tasks the agent tracks, in case its capacity dropped some.
        let page = probe::get(&format!("{base}/debug/taskscope/api/snapshot?limit=100&sort=idle"))?;
        let page_json: Value = serde_json::from_slice(&page.body)?;
        out["dump_ms"] = json!(dump.elapsed.as_secs_f64() * 1e3);
        out["dump_bytes"] = json!(dump.body.len());
        out["snapshot_ms"] = json!(snapshot.elapsed.as_secs_f64() * 1e3);
        out["snapshot_bytes"] = json!(snapshot.bytes);
        out["stall_ms"] = json!(stall_ms);
        out["page_ms"] = json!(page.elapsed.as_secs_f64() * 1e3);
        out["tasks_tracked"] = page_json["tasks_total"].clone();
    }
    Ok(out)
}
