//! Each pathology of the leaky server yields its finding, at its spawn site,
//! with its severity (deep mode, the default build).

mod common;

use std::time::{Duration, Instant};

use common::{get, spawn_site, start, Server};

fn findings(server: &Server) -> Vec<serde_json::Value> {
    let (status, json) = get(&server.agent, "/debug/taskscope/api/snapshot?limit=0");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["findings"].as_array().unwrap().clone()
}

/// Waits up to 20 s for a finding of `kind` located at `site`.
fn wait_for(server: &Server, kind: &str, site: &str) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    loop {
        let all = findings(server);
        if let Some(f) =
            all.iter().find(|f| f["kind"] == kind && f["location"].as_str().unwrap_or("").starts_with(site))
        {
            eprintln!("{kind} at {site} reported {:?} after the request", started.elapsed());
            return (f.clone(), started.elapsed());
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no {kind} at {site} in {all:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn server() -> Server {
    start(&[("TASKSCOPE_STUCK_AFTER", "1s")])
}

#[test]
fn a_task_stuck_on_a_channel_is_a_stuck_task_warning() {
    let server = server();
    get(&server.app, "/stuck");
    let (f, _) = wait_for(&server, "stuck_task", &spawn_site("stuck"));
    assert_eq!(f["severity"], "warning");
    assert!(f["message"].as_str().unwrap().contains("chan receive"), "{f}");
}

#[test]
fn a_deadlock_flags_both_tasks_waiting_on_a_mutex() {
    let server = server();
    get(&server.app, "/deadlock");
    let source = include_str!("../src/main.rs");
    let start = source.lines().position(|l| l.starts_with("fn deadlock(")).unwrap();
    let spawns: Vec<usize> = source
        .lines()
        .enumerate()
        .skip(start)
        .filter(|(_, l)| l.contains("tokio::spawn("))
        .take(2)
        .map(|(i, _)| i + 1)
        .collect();
    for line in spawns {
        let site = format!("examples/leaky-server/src/main.rs:{line}:");
        let (f, _) = wait_for(&server, "stuck_task", &site);
        assert_eq!(f["severity"], "warning");
        assert!(f["message"].as_str().unwrap().contains("mutex lock"), "{f}");
    }
    // Deep mode also sees the cycle: each task holds the lock the other
    // waits for, a critical deadlock naming both tasks and both locks.
    let (f, _) = wait_for(&server, "deadlock", "examples/leaky-server/src/main.rs:");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["task_ids"].as_array().unwrap().len(), 2, "{f}");
    let message = f["message"].as_str().unwrap();
    let lock = "tokio::sync::Mutex created at examples/leaky-server/src/main.rs:";
    assert!(message.contains(lock), "{message}");
}

#[test]
fn a_future_that_drops_its_waker_is_a_lost_waker() {
    let server = server();
    get(&server.app, "/lost-waker");
    let (f, _) = wait_for(&server, "lost_waker", &spawn_site("lose_waker"));
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["task_ids"].as_array().unwrap().len(), 1);
}

#[test]
fn a_blocking_call_is_a_blocked_worker() {
    let server = server();
    get(&server.app, "/block?ms=3000");
    let (f, _) = wait_for(&server, "blocked_worker", &spawn_site("block"));
    assert_eq!(f["severity"], "warning");
}

#[test]
fn every_worker_blocked_still_gets_an_answer_and_findings() {
    let server = server();
    get(&server.app, "/block?ms=4000");
    get(&server.app, "/block?ms=4000");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let all = findings(&server);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let blocked = all.iter().filter(|f| f["kind"] == "blocked_worker").count();
    assert!(blocked >= 1, "{all:#?}");
}

#[test]
fn the_dump_shows_the_wait_reason_and_where_the_task_parked() {
    let server = server();
    get(&server.app, "/stuck");
    std::thread::sleep(Duration::from_millis(300));
    let site = spawn_site("stuck");
    let (_, dump) = get(&server.agent, "/debug/pprof/tasks?debug=2");
    let block = dump.split("\n\n").find(|b| b.contains(&site)).expect("the stuck task");
    assert!(block.starts_with("task ") && block.contains(" [chan receive, "), "{block}");
    let stuck_line = site.rsplit(':').nth(1).unwrap().parse::<usize>().unwrap();
    // The parked-at stack names the await inside the task's async block.
    let awaits = format!("examples/leaky-server/src/main.rs:{}", stuck_line + 1);
    assert!(block.contains(&awaits), "no {awaits} in:\n{block}");

    // A task spawned with a bare library future (an hour's sleep) has no
    // frame of the app: its stack is that future's poll, then the fold.
    let source = include_str!("../src/main.rs");
    let line = source.lines().position(|l| l.contains("tokio::spawn(tokio::time::sleep(")).unwrap() + 1;
    let sleeper = format!("spawned at examples/leaky-server/src/main.rs:{line}:");
    let block = dump.split("\n\n").find(|b| b.contains(&sleeper)).expect("the hour-long sleeper");
    let lines: Vec<&str> = block.lines().collect();
    assert!(lines[0].starts_with("task ") && lines[0].contains(" [sleep, "), "{block}");
    assert_eq!(lines[1], "<tokio::time::sleep::Sleep as core::future::future::Future>::poll", "{block}");
    assert!(lines[2].starts_with('\t') && lines[2].contains("/src/time/sleep.rs:"), "{block}");
    assert!(lines[3].starts_with("\t... ") && lines[3].ends_with(" folded"), "{block}");
}

/// `src/main.rs:LINE:` of the first line in `fn name` that contains
/// `needle`. (Allocation sites are named relative to the app's working
/// directory, which for tests is the example's own.)
fn line_in(name: &str, needle: &str) -> String {
    let source = include_str!("../src/main.rs");
    let start = source.lines().position(|l| l.starts_with(&format!("fn {name}("))).unwrap();
    let offset = source.lines().skip(start).position(|l| l.contains(needle)).unwrap();
    format!("src/main.rs:{}:", start + offset + 1)
}

#[test]
fn a_cache_that_only_grows_is_a_heap_growth_warning_and_a_bounded_one_is_not() {
    // A short growth window, so that seconds tell, and dense sampling. Each
    // half of the window must show about 8 readings that rose (see
    // heap/growth.rs): 6 s is enough at the loop's pace of a few `/grow` a
    // second, even on a slow machine.
    let server = start(&[("TASKSCOPE_HEAP_GROWTH_WINDOW", "6s"), ("TASKSCOPE_HEAP_SAMPLE_BYTES", "16384")]);
    let (grow_at, bounded_at) = (line_in("grow", "vec!["), line_in("cache", "vec!["));
    // The first snapshot starts the heap's history.
    findings(&server);
    // The bounded cache fills at once, then churns at 16 MiB.
    for _ in 0..16 {
        get(&server.app, "/cache");
    }
    let started = Instant::now();
    let at = |f: &serde_json::Value, site: &str| f["location"].as_str().unwrap_or("").contains(site);
    let (found, snapshot) = loop {
        get(&server.app, "/grow");
        get(&server.app, "/cache");
        let (status, json) = get(&server.agent, "/debug/taskscope/api/snapshot?limit=0");
        assert_eq!(status, 200);
        let snapshot: serde_json::Value = serde_json::from_str(&json).unwrap();
        let found = snapshot["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == "heap_growth" && at(f, &grow_at))
            .cloned();
        if let Some(found) = found {
            break (found, snapshot);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no heap_growth at {grow_at}: {:#}",
            snapshot["heap"]["growth"]
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(found["severity"], "warning");
    assert!(found["evidence"]["rate_bytes_per_sec"].as_f64().unwrap() > 0.0, "{found}");
    assert!(found["message"].as_str().unwrap().contains(&grow_at[..grow_at.len() - 1]), "{found}");

    // The bounded cache was sampled and is known by its allocation site, at
    // its plateau, yet is no finding.
    let sites = snapshot["heap"]["allocation_sites"].as_array().unwrap();
    let bounded =
        sites.iter().find(|s| at(s, &bounded_at)).unwrap_or_else(|| panic!("{bounded_at}: {sites:#?}"));
    assert!(bounded["inuse_bytes"].as_u64().unwrap() > 8 << 20, "{bounded}");
    let flagged: Vec<_> =
        snapshot["findings"].as_array().unwrap().iter().filter(|f| at(f, &bounded_at)).collect();
    assert!(flagged.is_empty(), "{flagged:#?}");

    // The same finding on the text page and in /metrics.
    let (_, text) = get(&server.agent, "/debug/taskscope/findings");
    assert!(text.contains("warning heap_growth at ") && text.contains(&grow_at), "{text}");
    let (_, metrics) = get(&server.agent, "/metrics");
    let count = metrics
        .lines()
        .find_map(|l| l.strip_prefix("taskscope_findings{kind=\"heap_growth\",severity=\"warning\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(count.is_some_and(|n| n >= 1), "{count:?}");
}
