//! End to end: start the leaky-server binary, read the agent's startup line,
//! and query the debug endpoint over HTTP like a user would.

mod common;

use std::time::Duration;

use common::{get, spawn_site, start};

#[test]
fn leaks_and_stuck_tasks_show_in_the_dumps_at_their_spawn_sites() {
    let server = start(&[]);
    for _ in 0..5 {
        assert_eq!(get(&server.app, "/leak").0, 200);
    }
    assert_eq!(get(&server.app, "/stuck").0, 200);
    std::thread::sleep(Duration::from_millis(100));

    let (status, grouped) = get(&server.agent, "/debug/pprof/tasks?debug=1");
    assert_eq!(status, 200);
    let leak = spawn_site("leak");
    assert!(grouped.contains(&format!("5 @ spawned at {leak}")), "no leak group {leak} in:\n{grouped}");
    let stuck = spawn_site("stuck");
    assert!(grouped.contains(&format!("1 @ spawned at {stuck}")), "{grouped}");

    let (_, dump) = get(&server.agent, "/debug/pprof/tasks?debug=2");
    let leaked: Vec<&str> = dump.split("\n\n").filter(|b| b.contains(&leak)).collect();
    assert_eq!(leaked.len(), 5, "{dump}");
    // Deep mode (the default) names the wait: a oneshot receive.
    assert!(leaked.iter().all(|b| b.starts_with("task ") && b.contains(" [chan receive, ")), "{leaked:?}");

    let (_, json) = get(&server.agent, "/debug/taskscope/api/snapshot");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let site = v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["location"].as_str().unwrap().starts_with(&leak))
        .expect("the leak site");
    assert_eq!((site["live"].as_u64(), site["spawned"].as_u64()), (Some(5), Some(5)));

    let (status, index) = get(&server.agent, "/debug/pprof/");
    assert_eq!(status, 200);
    assert!(index.contains("tasks?debug=1"), "{index}");
}

#[test]
fn a_blocking_task_shows_as_running_while_it_blocks_its_worker() {
    let server = start(&[]);
    assert_eq!(get(&server.app, "/block?ms=2000").0, 200);
    std::thread::sleep(Duration::from_millis(300));
    let block = spawn_site("block");
    let (_, dump) = get(&server.agent, "/debug/pprof/tasks?debug=2");
    let blocks: Vec<&str> = dump.split("\n\n").filter(|b| b.contains(&block)).collect();
    assert_eq!(blocks.len(), 1, "{dump}");
    assert!(blocks[0].contains(" [running, "), "{}", blocks[0]);
}

#[test]
fn disabled_the_agent_leaves_the_app_alone() {
    let server = start(&[("TASKSCOPE_DISABLE", "1")]);
    assert_eq!(get(&server.app, "/leak").0, 200);
    std::thread::sleep(Duration::from_millis(200));
    let said: Vec<String> = server.stderr.try_iter().collect();
    assert!(said.iter().all(|l| !l.starts_with("taskscope")), "{said:?}");
}
