//! Deep mode's bounded tables overflow loudly: a resource table of two
//! (`TASKSCOPE_MAX_RESOURCES=2`), a `RwLock` with more readers than are kept
//! by id, and more distinct task names than the name table holds are each
//! counted in the snapshot's `agent.dropped` and in `/metrics` as
//! `taskscope_agent_dropped_events_total{reason=...}`; oneshot channels,
//! sleeps and intervals take no room in the resource table.
//!
//! Its own binary: the caps are read once per process. Deep mode only
//! (task names need tokio's `tracing` feature).
#![cfg(feature = "deep")]

use std::sync::Arc;

use tokio::sync::{Mutex, RwLock};

mod resources_support;
use resources_support::*;

#[test]
fn full_resource_and_name_tables_are_counted_in_the_json_and_metrics() {
    // Set before the runtime and the agent start.
    std::env::set_var("TASKSCOPE_MAX_RESOURCES", "2");
    let app = app();
    // Timers and oneshots are not tracked: they fill nothing.
    app.rt.block_on(async {
        for _ in 0..50 {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            drop(tx);
            let _ = rx.await;
            tokio::time::sleep(std::time::Duration::from_micros(1)).await;
            tokio::time::interval(std::time::Duration::from_millis(1)).tick().await;
        }
    });
    let s = snapshot(app.addr);
    assert_eq!(s["agent"]["dropped"]["resources"], 0, "{}", s["agent"]["dropped"]);

    // Two slots: the RwLock and one Mutex; three more are not tracked.
    let table = Arc::new(RwLock::new(0u32));
    let site = format!("agent/tests/resources_caps.rs:{}:", line!() - 1);
    let locks: Vec<_> = (0..4).map(|_| Mutex::new(0u32)).collect();
    // Six readers hold it; four are kept by id.
    let (held_tx, mut held_rx) = tokio::sync::mpsc::channel::<()>(6);
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let (table, held_tx) = (table.clone(), held_tx.clone());
            app.rt.spawn(async move {
                let _guard = table.read().await;
                held_tx.send(()).await.unwrap();
                std::future::pending::<()>().await;
            })
        })
        .collect();
    app.rt.block_on(async {
        for _ in 0..6 {
            held_rx.recv().await.unwrap();
        }
    });
    // More distinct task names than the name table keeps (1024).
    app.rt.block_on(async {
        for i in 0..1100 {
            tokio::task::Builder::new().name(&format!("caps-{i}")).spawn(async {}).unwrap().await.unwrap();
        }
    });

    let s = wait_for(app.addr, "the readers listed", |s| {
        resource(s, &site).is_some_and(|r| r["held_by"].as_array().unwrap().len() == 4)
    });
    let r = resource(&s, &site).unwrap();
    assert_eq!(r["more_holders"], 2, "{r}");
    let dropped = &s["agent"]["dropped"];
    assert_eq!(dropped["resources"], 3, "{dropped}");
    assert_eq!(dropped["resource_holders"], 2, "{dropped}");
    assert!(dropped["task_names"].as_u64().unwrap() >= 1100 - 1024, "{dropped}");
    assert_eq!(dropped["resource_waits"], 0, "{dropped}");
    assert_eq!(s["resources"]["dropped"], 3);

    let text = http_get(app.addr, "/metrics");
    let m = |reason: &str| {
        metric(&text, &format!("taskscope_agent_dropped_events_total{{reason=\"{reason}\"}}"))
            .unwrap_or_else(|| panic!("no {reason} in:\n{text}"))
    };
    assert_eq!(m("resource_table_full"), 3.0);
    assert_eq!(m("resource_holders_over_cap"), 2.0);
    assert!(m("task_name_table_full") >= dropped["task_names"].as_u64().unwrap() as f64);
    assert_eq!(m("resource_wait_table_full"), 0.0);
    assert_eq!(m("resource_file_table_full"), 0.0);
    drop(locks);
    app.stop(readers);
}
