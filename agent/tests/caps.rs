//! Every table is bounded, and what does not fit is counted where people
//! look: in the snapshot's `agent.dropped` and in `/metrics`. Spawn sites
//! beyond the cap fold into `<other>`, which keeps their counts.
//!
//! The caps are read from the environment once per process, so the test
//! runs itself in a child process with small caps set.

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

mod child_support;
use child_support::in_child;

const MAX_TASKS: u64 = 100;
/// `<other>` and three sites.
const MAX_SITES: u64 = 4;
const COMPLETED: u64 = 8;
/// Spawns per site.
const ROUNDS: u64 = 20;

async fn get(router: &axum::Router, uri: &str) -> String {
    let res = router.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), 200, "{uri}");
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn overflowing_tables_are_counted_in_the_json_and_in_metrics() {
    let (tasks, sites, completed) = (MAX_TASKS.to_string(), MAX_SITES.to_string(), COMPLETED.to_string());
    if !in_child(
        "overflowing_tables_are_counted_in_the_json_and_in_metrics",
        &[
            ("TASKSCOPE_MAX_TASKS", &tasks),
            ("TASKSCOPE_MAX_SITES", &sites),
            ("TASKSCOPE_COMPLETED", &completed),
        ],
    ) {
        return;
    }

    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    taskscope::instrument(&mut b);
    let rt = b.build().unwrap();
    rt.block_on(async {
        // Six spawn sites, twenty spawns each, all completed: three sites
        // get an entry of their own, the others fold into `<other>`; and
        // 120 completed tasks overflow a ring of about eight.
        for _ in 0..ROUNDS {
            for site in 0..6 {
                let done = match site {
                    0 => tokio::spawn(async {}),
                    1 => tokio::spawn(async {}),
                    2 => tokio::spawn(async {}),
                    3 => tokio::spawn(async {}),
                    4 => tokio::spawn(async {}),
                    _ => tokio::spawn(async {}),
                };
                done.await.unwrap();
            }
        }
        // Then more live tasks than the task table holds: `MAX_TASKS`, and
        // a direct-mapped window of as many slots rounded up to a power of
        // two (128).
        let (release, parked) = tokio::sync::watch::channel(());
        let live: Vec<_> = (0..5 * MAX_TASKS)
            .map(|_| {
                let mut parked = parked.clone();
                tokio::spawn(async move {
                    let _ = parked.changed().await;
                })
            })
            .collect();
        tokio::task::yield_now().await;

        let router = taskscope::Agent::builder().serve(false).start().unwrap().router();
        let json: serde_json::Value =
            serde_json::from_str(&get(&router, "/debug/taskscope/api/snapshot?limit=0").await).unwrap();
        let agent = &json["agent"];
        assert_eq!(agent["max_tasks"], MAX_TASKS, "{agent}");
        assert_eq!(agent["max_sites"], MAX_SITES, "{agent}");
        assert_eq!(agent["completed_kept"], COMPLETED, "{agent}");
        let dropped = &agent["dropped"];
        let (tasks, sites, evicted) = (
            dropped["tasks"].as_u64().unwrap(),
            dropped["sites_overflowed"].as_u64().unwrap(),
            dropped["completed_evicted"].as_u64().unwrap(),
        );
        // At least the 500 - 228 live tasks beyond the caps were not tracked.
        assert!(tasks >= 5 * MAX_TASKS - 228, "{dropped}");
        // The sites beyond the cap, each counted once as it folds: three of
        // the six above, and the parked tasks' site.
        assert!(sites >= 4, "{dropped}");
        assert!(evicted >= 6 * ROUNDS - COMPLETED, "{dropped}");

        // The sites: at most the cap, `<other>` among them with the spawns
        // it took in.
        let all = json["sites"].as_array().unwrap();
        assert!(all.len() as u64 <= MAX_SITES, "{all:#?}");
        let other = all
            .iter()
            .find(|s| s["location"] == "<other>")
            .unwrap_or_else(|| panic!("no <other> site in {all:#?}"));
        // Their spawns are not lost: `<other>` counts them (the three
        // sites' spawns at least).
        assert!(other["spawned"].as_u64().unwrap() >= 3 * ROUNDS, "{other}");
        // The ring keeps about `COMPLETED` (each shard's share is rounded
        // up), far fewer than completed.
        assert!((json["completed"].as_array().unwrap().len() as u64) < 6 * ROUNDS, "{json}");

        // The same counts in /metrics (read after the snapshot: they can
        // only have grown).
        let text = get(&router, "/metrics").await;
        let m = |reason: &str| {
            metric(&text, &format!("taskscope_agent_dropped_events_total{{reason=\"{reason}\"}}"))
        };
        assert!(m("task_table_full") >= tasks, "{text}");
        assert!(m("site_table_full") >= sites, "{text}");
        assert!(m("completed_ring_full") >= evicted, "{text}");
        assert!(text.contains("\ntaskscope_tasks_spawned_total{site=\"other\"} "), "{text}");
        for reason in
            ["unauthorized", "busy", "timed_out", "too_large", "connections_refused", "slow_clients"]
        {
            metric(&text, &format!("taskscope_agent_http_refused_total{{reason=\"{reason}\"}}"));
        }
        metric(&text, "taskscope_agent_panics_total");

        let _ = release.send(());
        for t in live {
            t.await.unwrap();
        }
    });
}
