//! `TASKSCOPE_RESOURCES=off`: deep mode stays on (wait reasons, parked-at
//! stacks), but resources are not tracked, so a lock cycle is two tasks
//! waiting on a `mutex lock`, with no `deadlock` finding and no resource.
//!
//! Its own binary: the setting is read once per process.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Barrier, Mutex};

mod resources_support;
use resources_support::*;

#[test]
fn resources_off_keeps_deep_mode_without_resources_or_deadlocks() {
    // Set before the runtime and the agent start.
    std::env::set_var("TASKSCOPE_RESOURCES", "off");
    let app = app();
    let addr = app.addr;

    let (a, b) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let barrier = Arc::new(Barrier::new(2));
    let tasks: Vec<_> = [(a.clone(), b.clone()), (b, a)]
        .into_iter()
        .map(|(mine, next)| {
            let barrier = barrier.clone();
            app.rt.spawn(async move {
                let _held = mine.lock().await;
                barrier.wait().await;
                let _never = next.lock().await;
            })
        })
        .collect();
    let ids: Vec<String> = tasks.iter().map(|t| t.id().to_string()).collect();

    // Both wait (deep mode gives a wait reason: `mutex lock`, or where the
    // task parked a moment before) for longer than the deadlock detector's
    // grace.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let s: Value = loop {
        let s: Value = serde_json::from_str(&http_get(addr, "/debug/taskscope/api/snapshot")).unwrap();
        let waiting = s["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| ids.contains(&t["id"].to_string()))
            .filter(|t| t["wait"].is_string() && t["idle_ms"].as_u64().unwrap() >= 1_500)
            .count();
        if waiting == 2 {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "{}", http_get(addr, "/debug/pprof/tasks?debug=2"));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(s["agent"]["features"]["deep"], true);
    assert_eq!(s["resources"]["tracked"], false, "{}", s["resources"]);
    assert_eq!(s["resources"]["list"], serde_json::json!([]));
    assert!(s["tasks"].as_array().unwrap().iter().all(|t| t.get("resource").is_none()));
    assert!(!s["findings"].as_array().unwrap().iter().any(|f| f["kind"] == "deadlock"), "{}", s["findings"]);
    let dump = http_get(addr, "/debug/pprof/tasks?debug=2");
    assert!(!dump.contains("\twaiting on ") && !dump.contains("\tholding "), "{dump}");

    app.stop(tasks);
}
