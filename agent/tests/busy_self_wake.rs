//! `busy_self_wake` end to end (deep mode): a task that loops on
//! `yield_now()` and a future that wakes itself and returns `Pending` are
//! flagged; a channel consumer fed by a fast producer, which is woken as
//! often, and the producer, which a 1 ms timer wakes from the scheduler's
//! loop just as the defer list does, are not.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn snapshot(router: &axum::Router) -> serde_json::Value {
    let req = Request::get("/debug/taskscope/api/snapshot").body(Body::empty()).unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

/// Wakes its task inside its own poll until told to stop.
struct WakesItself(Arc<AtomicBool>);

impl Future for WakesItself {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.load(Relaxed) {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn at(site: &str) -> impl Fn(&serde_json::Value) -> bool + '_ {
    move |v| v["location"].as_str().is_some_and(|l| l.starts_with(&format!("{site}:")))
}

#[test]
fn busy_loops_through_the_executor_are_flagged_and_a_busy_consumer_is_not() {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    taskscope::instrument(&mut b);
    b.build().unwrap().block_on(async {
        // Deep mode installs its subscriber at the first spawn.
        tokio::spawn(async {}).await.unwrap();
        let router = taskscope::Agent::builder().serve(false).start().unwrap().router();
        let stop = Arc::new(AtomicBool::new(false));

        let s = stop.clone();
        let yields = format!("{}:{}", file!(), line!() + 1);
        let spinner = tokio::spawn(async move {
            while !s.load(Relaxed) {
                tokio::task::yield_now().await;
            }
        });
        let wakes = format!("{}:{}", file!(), line!() + 1);
        let waker = tokio::spawn(WakesItself(stop.clone()));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(64);
        let consumes = format!("{}:{}", file!(), line!() + 1);
        let consumer = tokio::spawn(async move {
            let mut sum = 0;
            while let Some(n) = rx.recv().await {
                sum += n;
            }
            sum
        });
        let s = stop.clone();
        let produces = format!("{}:{}", file!(), line!() + 1);
        let producer = tokio::spawn(async move {
            while !s.load(Relaxed) {
                for _ in 0..16 {
                    let _ = tx.send(1).await;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });

        // A first look symbolizes the stacks the tasks parked at: that is
        // what tells a yield's wakes from a timer's (see deep/deferred.rs).
        tokio::time::sleep(Duration::from_millis(300)).await;
        snapshot(&router).await;

        let started = Instant::now();
        let s = loop {
            let s = snapshot(&router).await;
            let busy: Vec<&serde_json::Value> =
                s["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == "busy_self_wake").collect();
            if busy.iter().any(|f| at(&yields)(f)) && busy.iter().any(|f| at(&wakes)(f)) {
                break s;
            }
            assert!(started.elapsed() < Duration::from_secs(40), "not both flagged: {busy:#?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let findings = s["findings"].as_array().unwrap();
        for site in [&yields, &wakes] {
            let f = findings.iter().find(|f| f["kind"] == "busy_self_wake" && at(site)(f)).unwrap();
            assert_eq!(f["severity"], "warning");
            assert_eq!(f["task_ids"].as_array().unwrap().len(), 1, "{f}");
            let (all, own) =
                (f["evidence"]["wakes"].as_u64().unwrap(), f["evidence"]["self_wakes"].as_u64().unwrap());
            assert!(all >= 1_000 && own * 2 >= all, "{f}");
            assert!(f["message"].as_str().unwrap().contains("by themselves"), "{f}");
        }
        for site in [&consumes, &produces] {
            let flagged: Vec<_> = findings.iter().filter(|f| at(site)(f)).collect();
            assert!(flagged.is_empty(), "{site}: {flagged:#?}");
        }
        // The counts are in the tasks too: the consumer was woken often, and
        // (nearly) never by itself. It may wake itself now and then: when a
        // backlog uses up its coop budget, tokio's `recv` hands its waker to
        // the scheduler and returns `Pending`, which is a genuine self-wake
        // (seen once in 2,531 wakes on a loaded machine).
        let task = |site: &str| {
            s["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["spawned_at"].as_str().is_some_and(|l| l.starts_with(&format!("{site}:"))))
                .cloned()
                .unwrap_or_else(|| panic!("no task at {site}"))
        };
        let consumer_task = task(&consumes);
        assert!(consumer_task["wakes"].as_u64().unwrap() >= 1_000, "{consumer_task}");
        let (wakes, own) =
            (consumer_task["wakes"].as_u64().unwrap(), consumer_task["self_wakes"].as_u64().unwrap());
        assert!(own * 100 <= wakes, "{consumer_task}");
        let spinner_task = task(&yields);
        assert!(spinner_task["self_wakes"].as_u64().unwrap() >= 1_000, "{spinner_task}");
        assert_eq!(spinner_task["wait"].as_str().unwrap_or("yield"), "yield", "{spinner_task}");

        stop.store(true, Relaxed);
        spinner.await.unwrap();
        waker.await.unwrap();
        producer.await.unwrap();
        assert!(consumer.await.unwrap() > 0);
    });
}
