//! An app whose own global subscriber (without `taskscope::layer()`) is
//! installed before its first spawn: no panic, deep mode steps aside and
//! says why in `agent.deep_problem`, the dumps still work (lean), and the
//! agent's own problems go to the app's subscriber through `tracing`.
//!
//! One test per binary: the global subscriber and the environment are
//! process-wide.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Keeps the messages of events whose target is `taskscope`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    *self.0 = format!("{value:?}");
                }
            }
        }
        if event.metadata().target().starts_with("taskscope") {
            let mut message = String::new();
            event.record(&mut Message(&mut message));
            self.0.lock().unwrap().push(format!("{} {message}", event.metadata().level()));
        }
    }
}

async fn get(router: &axum::Router, uri: &str) -> String {
    let res = router.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), 200, "{uri}");
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[test]
fn an_apps_own_subscriber_first_degrades_deep_mode_loudly_without_a_panic() {
    // A site table of 2 (`<other>` and one site) overflows at once, a
    // problem the agent reports.
    std::env::set_var("TASKSCOPE_MAX_SITES", "2");
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    taskscope::instrument(&mut builder);
    let runtime = builder.build().unwrap();
    let capture = Capture::default();
    runtime.block_on(async {
        // `init` panics if a global subscriber exists: taskscope must not
        // have installed one yet.
        tracing_subscriber::registry().with(capture.clone()).init();

        let (_keep, rx) = tokio::sync::watch::channel(());
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let mut rx = rx.clone();
            tasks.push(tokio::spawn(async move {
                let _ = rx.changed().await;
            }));
        }
        tasks.push(tokio::spawn(async { tokio::time::sleep(Duration::from_secs(60)).await }));
        tokio::time::sleep(Duration::from_millis(50)).await;

        let router = taskscope::Agent::builder().serve(false).start().unwrap().router();
        let json: serde_json::Value =
            serde_json::from_str(&get(&router, "/debug/taskscope/api/snapshot?limit=0").await).unwrap();
        let agent = &json["agent"];
        assert_eq!(agent["features"]["deep"], false, "{json}");
        let problem = agent["deep_problem"].as_str().unwrap_or_else(|| panic!("no deep_problem in {json}"));
        assert!(problem.contains("installed its own global tracing subscriber"), "{problem}");
        assert!(problem.contains("taskscope::layer()"), "{problem}");

        // Lean mode still dumps every task, without wait reasons.
        let dump = get(&router, "/debug/pprof/tasks?debug=2").await;
        for t in &tasks {
            assert!(dump.contains(&format!("task {} [idle, ", t.id())), "{dump}");
        }

        // The overflowing site table was reported through the app's
        // subscriber, not on stderr.
        let reports = capture.0.lock().unwrap().clone();
        assert!(
            reports.iter().any(|r| r.starts_with("WARN ") && r.contains("counted under <other>")),
            "{reports:?}"
        );
        for t in tasks {
            t.abort();
        }
    });
}
