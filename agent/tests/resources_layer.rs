//! Resources and deadlocks through `taskscope::layer()` in an app's own
//! `tracing_subscriber` setup, as with taskscope's own subscriber: a lock
//! cycle, and a semaphore's holders with their permits.
//!
//! One test per binary: the global subscriber is process-wide.

use std::sync::Arc;

use tokio::sync::{Barrier, Mutex, Semaphore};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

mod resources_support;
use resources_support::*;

#[test]
fn the_layer_reports_holders_waiters_and_deadlocks() {
    let app = app_with(|rt| {
        rt.block_on(async {
            tracing_subscriber::registry()
                .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(LevelFilter::INFO))
                .with(taskscope::layer())
                .init();
        })
    });

    let (a, b) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let barrier = Arc::new(Barrier::new(2));
    let mut tasks: Vec<_> = [(a.clone(), b.clone()), (b, a)]
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
    let mut ids: Vec<u64> = tasks.iter().map(id_of).collect();
    ids.sort_unstable();

    let s = wait_for(app.addr, "deadlock through the layer", |s| !deadlocks(s, &ids).is_empty());
    let finding = deadlocks(&s, &ids)[0];
    let mut found: Vec<u64> =
        finding["task_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    found.sort_unstable();
    assert_eq!(found, ids, "{finding:#}");
    assert!(finding["message"]
        .as_str()
        .unwrap()
        .contains("tokio::sync::Mutex created at agent/tests/resources_layer.rs:"));
    let dump = http_get(app.addr, "/debug/pprof/tasks?debug=2");
    assert!(
        dump.contains("\twaiting on tokio::sync::Mutex created at agent/tests/resources_layer.rs:"),
        "{dump}"
    );
    assert!(dump.contains(", held by task "), "{dump}");

    // A semaphore: its holder and permits, and a waiter.
    let pool = Arc::new(Semaphore::new(2));
    let site = format!("agent/tests/resources_layer.rs:{}:", line!() - 1);
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let pool = pool.clone();
        app.rt.spawn(async move {
            let _permits = pool.acquire_many(2).await.unwrap();
            let _ = held_tx.send(());
            std::future::pending::<()>().await;
        })
    };
    app.rt.block_on(held_rx).unwrap();
    let waiter = {
        let pool = pool.clone();
        app.rt.spawn(async move {
            let _permit = pool.acquire().await;
        })
    };
    let (h, w) = (id_of(&holder), id_of(&waiter));
    let s = wait_for(app.addr, "the semaphore's holder through the layer", |s| {
        resource(s, &site).is_some_and(|r| r["waiters"] == serde_json::json!([w]))
    });
    let r = resource(&s, &site).unwrap();
    assert_eq!(
        (&r["held_by"], &r["held_permits"]),
        (&serde_json::json!([h]), &serde_json::json!([2])),
        "{r}"
    );
    let dump = http_get(app.addr, "/debug/pprof/tasks?debug=2");
    assert!(block(&dump, w).contains(&format!(", held by task {h} (2 permits)\n")), "{dump}");
    // The holder goes: the waiter gets a permit, returns it, and the
    // semaphore is free.
    holder.abort();
    wait_for(app.addr, "the semaphore free through the layer", |s| resource(s, &site).is_none());
    tasks.push(waiter);
    app.stop(tasks);
}
