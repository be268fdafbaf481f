//! Router tests: every endpoint through `oneshot()`, with no socket.
//!
//! The registry is process-wide and these tests run in parallel, so each test
//! looks only at the tasks it spawned itself (by spawn site).

use std::io::Read;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pprof::protos::Message;
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    taskscope::instrument(&mut b);
    b.build().unwrap()
}

async fn get(router: &axum::Router, uri: &str, token: Option<&str>) -> Reply {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply { status, headers, body }
}

fn router() -> axum::Router {
    taskscope::Agent::builder().serve(false).start().unwrap().router()
}

/// Spawns `n` tasks that wait until the returned sender is dropped. Each use
/// of the macro is its own spawn site, whose `file:line` is returned.
macro_rules! park {
    ($n:expr) => {{
        let (tx, rx) = tokio::sync::watch::channel(());
        for _ in 0..$n {
            let mut rx = rx.clone();
            tokio::spawn(async move {
                let _ = rx.changed().await;
            });
        }
        (tx, format!("{}:{}", file!(), line!()))
    }};
}

#[test]
fn tasks_debug_1_groups_the_tasks_of_a_site_with_their_count() {
    runtime().block_on(async {
        let (_keep, site) = park!(7);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let r = get(&router(), "/debug/pprof/tasks?debug=1", None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
        let text = r.text();
        assert!(text.starts_with("tasks profile: total "), "{text}");
        // One group per parked-at stack: the first task of the process has no
        // deep data (deep mode installs at the first spawn), so the site's
        // tasks may come in two groups. Together they are the 7 tasks.
        let marker = format!(" @ spawned at {site}:");
        let groups: Vec<(u64, &str)> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(&marker))
            .map(|(i, l)| (l.split(' ').next().unwrap().parse().unwrap(), text.lines().nth(i + 1).unwrap()))
            .collect();
        assert_eq!(groups.iter().map(|(n, _)| n).sum::<u64>(), 7, "{text}");
        // Lean mode says `N idle`; deep mode names the wait, `N chan receive`.
        for (n, counts) in groups {
            assert!(counts.starts_with(&format!("#\t{n} ")) && counts.contains(", 0 running;"), "{text}");
        }
    });
}

#[test]
fn tasks_debug_2_has_one_go_style_block_per_task() {
    runtime().block_on(async {
        let (_keep, site) = park!(3);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let text = get(&router(), "/debug/pprof/tasks?debug=2", None).await.text();
        let blocks: Vec<&str> = text.split("\n\n").filter(|b| b.contains(&site)).collect();
        assert_eq!(blocks.len(), 3, "{text}");
        for block in blocks {
            let lines: Vec<&str> = block.lines().collect();
            assert!(lines[0].starts_with("task ") && lines[0].ends_with("]:"), "{block}");
            // `[idle, ...]` in lean mode, `[chan receive, ...]` in deep mode.
            assert!(lines[0].contains(" [idle, ") || lines[0].contains(" [chan receive, "), "{block}");
            assert!(lines.iter().any(|l| l.starts_with("\tpolls: 1, busy: ")), "{block}");
            assert!(lines.last().unwrap().starts_with(&format!("spawned at {site}:")), "{block}");
        }
    });
}

#[test]
fn tasks_debug_0_is_a_gzipped_goroutine_profile() {
    runtime().block_on(async {
        let (_keep, site) = park!(4);
        for path in ["/debug/pprof/tasks", "/debug/pprof/goroutine?debug=0"] {
            let r = get(&router(), path, None).await;
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.headers["content-type"], "application/octet-stream");
            assert_eq!(r.headers["content-disposition"], "attachment; filename=\"goroutine\"");
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut raw).unwrap();
            let p = pprof::protos::Profile::decode(&raw[..]).unwrap();
            let s = |i: i64| p.string_table[i as usize].as_str();
            assert_eq!(p.sample_type.len(), 1);
            assert_eq!((s(p.sample_type[0].ty), s(p.sample_type[0].unit)), ("goroutine", "count"));
            let ours: i64 = p
                .sample
                .iter()
                .filter(|sample| {
                    // The root frame names the spawn site.
                    let loc = &p.location[*sample.location_id.last().unwrap() as usize - 1];
                    let f = &p.function[loc.line[0].function_id as usize - 1];
                    s(f.name).contains(&site)
                })
                .map(|sample| sample.value[0])
                .sum();
            assert_eq!(ours, 4, "{path}");
        }
    });
}

#[test]
fn the_snapshot_lists_tasks_sites_and_agent_info_and_pages_on_request() {
    runtime().block_on(async {
        let (_keep, site) = park!(5);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let r = get(&router(), "/debug/taskscope/api/snapshot", None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        for key in ["tasks", "sites", "workers", "findings", "agent"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let ours: Vec<&serde_json::Value> = v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["spawned_at"].as_str().unwrap().starts_with(&site))
            .collect();
        assert_eq!(ours.len(), 5);
        assert_eq!(ours[0]["state"], "idle");
        assert_eq!(ours[0]["polls"], 1);
        let site_json = v["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["location"].as_str().unwrap().starts_with(&site))
            .unwrap();
        assert_eq!(site_json["live"], 5);
        assert_eq!(site_json["spawned"], 5);
        assert_eq!(v["agent"]["features"]["task_tracking"], true);
        assert_eq!(v["workers"].as_array().unwrap().len(), 2);
        assert!(v["agent"]["version"].is_string());

        let site_id = site_json["id"].as_u64().unwrap();
        let uri = format!("/debug/taskscope/api/snapshot?site={site_id}&limit=2&offset=1&sort=id&order=desc");
        let v: serde_json::Value = serde_json::from_slice(&get(&router(), &uri, None).await.body).unwrap();
        let ids: Vec<u64> = ours.iter().map(|t| t["id"].as_u64().unwrap()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let paged: Vec<u64> =
            v["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
        assert_eq!(paged, sorted[1..3].to_vec());
        assert_eq!(v["tasks_total"], 5);
    });
}

#[test]
fn the_index_lists_profiles_with_counts_like_go() {
    runtime().block_on(async {
        let r = get(&router(), "/debug/pprof/", None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
        let html = r.text();
        assert!(html.contains("<a href='tasks?debug=1'>tasks</a>"), "{html}");
        assert!(html.contains("<a href='goroutine?debug=1'>goroutine</a>"), "{html}");
        assert!(html.contains("Profile Descriptions"), "{html}");
        let r = get(&router(), "/debug/pprof", None).await;
        assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    });
}

#[test]
fn bad_requests_get_a_one_line_reason() {
    runtime().block_on(async {
        for (uri, status, reason) in [
            ("/debug/pprof/tasks?debug=3", 400, "invalid debug=\"3\": want 0, 1 or 2\n"),
            ("/debug/pprof/goroutine?debug=x", 400, "invalid debug=\"x\": want 0, 1 or 2\n"),
            ("/debug/taskscope/api/snapshot?limit=-5", 400, "invalid limit=\"-5\""),
            ("/debug/taskscope/api/snapshot?sort=fun", 400, "invalid sort=\"fun\""),
            ("/debug/pprof/nosuchprofile", 404, "Unknown profile\n"),
            ("/nowhere", 404, "not found"),
        ] {
            let r = get(&router(), uri, None).await;
            assert_eq!(r.status, status, "{uri}");
            let text = r.text();
            assert!(text.starts_with(reason), "{uri}: {text:?}");
            assert_eq!(text.lines().count(), 1, "{uri}: {text:?}");
            assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
        }
        let req = Request::post("/debug/pprof/tasks").body(Body::empty()).unwrap();
        let res = router().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    });
}

#[test]
fn a_token_guards_every_endpoint() {
    runtime().block_on(async {
        let router = taskscope::Agent::builder().serve(false).token("s3cret").start().unwrap().router();
        for uri in ["/debug/pprof/", "/debug/pprof/tasks?debug=1", "/debug/taskscope/api/snapshot", "/x"] {
            let r = get(&router, uri, None).await;
            assert_eq!(r.status, 401, "{uri}");
            assert!(r.text().starts_with("missing or wrong bearer token"), "{uri}");
            assert_eq!(get(&router, uri, Some("wrong")).await.status, 401, "{uri}");
        }
        assert_eq!(get(&router, "/debug/pprof/tasks?debug=1", Some("s3cret")).await.status, 200);
    });
}

/// Deep mode: names from `tokio::task::Builder::name` in both dumps and the
/// JSON (tokio's runtime hooks carry no name, so lean mode has none).
#[cfg(feature = "deep")]
#[test]
fn task_names_show_in_the_dumps_and_the_json() {
    runtime().block_on(async {
        // Deep mode installs at the first spawn of the process.
        tokio::spawn(async {}).await.unwrap();
        let (tx, rx) = tokio::sync::watch::channel(());
        let site = format!("{}:{}", file!(), line!() + 4);
        let mut named = Vec::new();
        for i in 0..3 {
            let mut rx = rx.clone();
            let spawned = tokio::task::Builder::new().name(&format!("router-test-worker-{}", i % 2)).spawn(
                async move {
                    let _ = rx.changed().await;
                },
            );
            named.push(spawned.unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let router = router();
        let text = get(&router, "/debug/pprof/tasks?debug=1", None).await.text();
        let group = text.split("\n\n").find(|g| g.contains(&format!(" @ spawned at {site}:"))).expect(&text);
        assert!(
            group.contains("#\tnamed \"router-test-worker-0\" (2), \"router-test-worker-1\" (1)"),
            "{group}\n\nthe whole dump:\n{text}"
        );
        let text = get(&router, "/debug/pprof/tasks?debug=2", None).await.text();
        let blocks: Vec<&str> =
            text.split("\n\n").filter(|b| b.contains(&format!("spawned at {site}:"))).collect();
        assert_eq!(blocks.len(), 3, "{text}");
        for b in &blocks {
            assert!(b.lines().nth(1).unwrap().starts_with("\tname: \"router-test-worker-"), "{b}");
        }
        let json = get(&router, "/debug/taskscope/api/snapshot", None).await;
        let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        let mut names: Vec<&str> = v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["spawned_at"].as_str().unwrap().starts_with(&format!("{site}:")))
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["router-test-worker-0", "router-test-worker-0", "router-test-worker-1"]);
        drop(tx);
        for t in named {
            t.await.unwrap();
        }
    });
}
