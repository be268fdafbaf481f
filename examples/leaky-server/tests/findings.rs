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
}
