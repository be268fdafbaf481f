//! An app that sets up `tracing_subscriber` itself adds `taskscope::layer()`
//! to it, next to its own `fmt` layer, and still gets deep mode: a task
//! stuck on a channel shows `chan receive` in the dump. The app builds its
//! subscriber after the runtime, as it would under `#[taskscope::main]`.
//!
//! One test per binary: the global subscriber is process-wide.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

async fn get(router: &axum::Router, uri: &str) -> String {
    let res = router.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), 200, "{uri}");
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[test]
fn an_apps_own_subscriber_with_the_layer_gets_wait_reasons() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    taskscope::instrument(&mut builder);
    let runtime = builder.build().unwrap();
    runtime.block_on(async {
        // What the app's `main` does first. Without the fix this panicked:
        // taskscope had already installed its own global subscriber.
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(LevelFilter::INFO))
            .with(taskscope::layer())
            .init();
        tracing::info!("the app's own logging works");

        let (_keep, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let stuck = tokio::spawn(async move {
            let _ = rx.recv().await;
        });
        let sleeper = tokio::spawn(tokio::time::sleep(Duration::from_secs(60)));

        let router = taskscope::Agent::builder().serve(false).start().unwrap().router();
        let header = |id: tokio::task::Id, wait: &str| format!("task {id} [{wait}, ");
        let dump = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let text = get(&router, "/debug/pprof/tasks?debug=2").await;
                if text.contains(&header(stuck.id(), "chan receive"))
                    && text.contains(&header(sleeper.id(), "sleep"))
                {
                    return text;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let dump = match dump {
            Ok(d) => d,
            Err(_) => panic!(
                "no wait reasons through the layer:\n{}",
                get(&router, "/debug/pprof/tasks?debug=2").await
            ),
        };
        assert!(dump.contains("agent/tests/compose_layer.rs:"), "{dump}");

        let json: serde_json::Value =
            serde_json::from_str(&get(&router, "/debug/taskscope/api/snapshot?limit=0").await).unwrap();
        assert_eq!(json["agent"]["features"]["deep"], true, "{json}");
        assert!(json["agent"].get("deep_problem").is_none(), "{json}");
        stuck.abort();
        sleeper.abort();
    });
}
