//! Resources and deadlocks through `taskscope::layer()` in an app's own
//! `tracing_subscriber` setup, as with taskscope's own subscriber.
//!
//! One test per binary: the global subscriber is process-wide.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Barrier, Mutex};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut res = agent.get(format!("http://{addr}{path}")).call().expect("request");
    assert_eq!(res.status().as_u16(), 200, "{path}");
    res.body_mut().read_to_string().expect("body")
}

#[test]
fn the_layer_reports_holders_waiters_and_deadlocks() {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    taskscope::instrument(&mut b);
    let rt = b.build().unwrap();
    rt.block_on(async {
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(LevelFilter::INFO))
            .with(taskscope::layer())
            .init();
    });
    let agent = {
        let _enter = rt.enter();
        taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).start().unwrap()
    };
    let addr = agent.local_addr().unwrap();

    let (a, b) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let barrier = Arc::new(Barrier::new(2));
    let tasks: Vec<_> = [(a.clone(), b.clone()), (b, a)]
        .into_iter()
        .map(|(mine, next)| {
            let barrier = barrier.clone();
            rt.spawn(async move {
                let _held = mine.lock().await;
                barrier.wait().await;
                let _never = next.lock().await;
            })
        })
        .collect();
    let mut ids: Vec<u64> = tasks.iter().map(|t| t.id().to_string().parse().unwrap()).collect();
    ids.sort_unstable();

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let finding = loop {
        let s: Value = serde_json::from_str(&http_get(addr, "/debug/taskscope/api/snapshot")).unwrap();
        if let Some(f) = s["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "deadlock") {
            break f.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no deadlock through the layer:\n{}\n{}",
            http_get(addr, "/debug/pprof/tasks?debug=2"),
            s["resources"]
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut found: Vec<u64> =
        finding["task_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    found.sort_unstable();
    assert_eq!(found, ids, "{finding:#}");
    assert!(finding["message"]
        .as_str()
        .unwrap()
        .contains("tokio::sync::Mutex created at agent/tests/resources_layer.rs:"));
    let dump = http_get(addr, "/debug/pprof/tasks?debug=2");
    assert!(
        dump.contains("\twaiting on tokio::sync::Mutex created at agent/tests/resources_layer.rs:"),
        "{dump}"
    );
    assert!(dump.contains(", held by task "), "{dump}");

    for t in &tasks {
        t.abort();
    }
    drop(agent);
    rt.shutdown_timeout(Duration::from_secs(5));
}
