//! tokio-console interop (cargo feature `console`): taskscope serves
//! console-subscriber's gRPC API beside its own endpoint, and a client built
//! from `console-api` (what `tokio-console` uses) receives the app's tasks,
//! while taskscope's own deep mode still names wait reasons.
//!
//! Run with `cargo test -p taskscope --features console --test console`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use console_api::instrument::instrument_client::InstrumentClient;
use console_api::instrument::InstrumentRequest;
use http_body_util::BodyExt;
use tower::ServiceExt;

#[test]
fn tokio_console_and_taskscope_read_the_same_app() {
    // One test in this binary, so the environment is ours: port 0 picks a
    // free port, which `console_addr` then reports.
    std::env::set_var("TASKSCOPE_CONSOLE_ADDR", "127.0.0.1:0");
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    taskscope::instrument(&mut builder);
    let runtime = builder.build().unwrap();
    runtime.block_on(async {
        // The first spawn installs taskscope's subscriber and the console.
        tokio::spawn(async {}).await.unwrap();
        let addr = wait_for("the console's address", taskscope::console_addr);
        assert!(addr.ip().is_loopback(), "{addr}");

        let (_keep, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let stuck = tokio::spawn(async move {
            let _ = rx.recv().await;
        });

        let mut client =
            InstrumentClient::connect(format!("http://{addr}")).await.expect("connect to the console");
        let mut updates =
            client.watch_updates(InstrumentRequest {}).await.expect("watch updates").into_inner();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut files = Vec::new();
        while !files.iter().any(|f: &String| f.ends_with("tests/console.rs")) {
            assert!(Instant::now() < deadline, "no task of this file in the console's updates: {files:?}");
            let update = tokio::time::timeout(Duration::from_secs(5), updates.message())
                .await
                .expect("an update within 5 s")
                .expect("a well-formed update")
                .expect("the stream stays open");
            for task in update.task_update.map(|u| u.new_tasks).unwrap_or_default() {
                files.extend(task.location.and_then(|l| l.file));
            }
        }

        // taskscope's layer sits in the same subscriber: wait reasons work.
        let router = taskscope::Agent::builder().serve(false).start().unwrap().router();
        let dump = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let res = router
                    .clone()
                    .oneshot(Request::get("/debug/pprof/tasks?debug=2").body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                let text =
                    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
                let id = stuck.id().to_string();
                if text.contains(&format!("task {id} [chan receive, ")) {
                    return text;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the stuck task shows `chan receive`");
        assert!(dump.contains("tests/console.rs"), "{dump}");
        stuck.abort();
    });
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "no {what} after 5 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}
