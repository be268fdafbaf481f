//! What the resource tests share: an instrumented runtime with the agent on
//! 127.0.0.1 port 0, HTTP reads of its pages, polling the snapshot until a
//! condition holds, and `debug=2` blocks by task.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

pub fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut res = agent.get(format!("http://{addr}{path}")).call().expect("request");
    assert_eq!(res.status().as_u16(), 200, "{path}");
    res.body_mut().read_to_string().expect("body")
}

pub fn snapshot(addr: std::net::SocketAddr) -> Value {
    serde_json::from_str(&http_get(addr, "/debug/taskscope/api/snapshot")).unwrap()
}

pub struct App {
    pub rt: tokio::runtime::Runtime,
    pub agent: taskscope::Agent,
    pub addr: std::net::SocketAddr,
}

/// A two-worker runtime with taskscope's hooks; deep mode's subscriber is
/// installed by the first spawn (that task itself has no deep data).
pub fn app() -> App {
    app_with(|rt| rt.block_on(async { tokio::spawn(async {}).await.unwrap() }))
}

/// As [`app`], with `setup` run on the runtime before the agent starts (to
/// install the app's own subscriber instead).
pub fn app_with(setup: impl FnOnce(&tokio::runtime::Runtime)) -> App {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    taskscope::instrument(&mut b);
    let rt = b.build().unwrap();
    setup(&rt);
    let agent = {
        let _enter = rt.enter();
        taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).start().unwrap()
    };
    let addr = agent.local_addr().unwrap();
    App { rt, agent, addr }
}

impl App {
    /// Aborts `tasks`, stops the agent and the runtime.
    pub fn stop(self, tasks: Vec<tokio::task::JoinHandle<()>>) {
        for t in &tasks {
            t.abort();
        }
        drop(self.agent);
        self.rt.shutdown_timeout(Duration::from_secs(5));
    }
}

/// Polls the snapshot until `done` says yes (at most 30 s).
pub fn wait_for(addr: std::net::SocketAddr, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = snapshot(addr);
        if done(&s) {
            return s;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "no {what}:\n{}\n{}\n{}",
                http_get(addr, "/debug/pprof/tasks?debug=2"),
                s["resources"],
                s["findings"]
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The deadlock findings about any of `tasks` (the tests of a binary share
/// one process, so one test's cycle shows in the others' snapshots).
pub fn deadlocks<'a>(s: &'a Value, tasks: &[u64]) -> Vec<&'a Value> {
    s["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "deadlock")
        .filter(|f| f["task_ids"].as_array().unwrap().iter().any(|t| tasks.contains(&t.as_u64().unwrap())))
        .collect()
}

/// Waits for the one deadlock finding about `tasks`, checks that it is
/// critical and names exactly them, and returns it.
pub fn the_deadlock(addr: std::net::SocketAddr, what: &str, tasks: &[u64]) -> Value {
    let s = wait_for(addr, what, |s| !deadlocks(s, tasks).is_empty());
    let found = deadlocks(&s, tasks);
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = found[0].clone();
    assert_eq!(f["severity"], "critical");
    let mut in_cycle: Vec<u64> =
        f["task_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    in_cycle.sort_unstable();
    let mut expected = tasks.to_vec();
    expected.sort_unstable();
    assert_eq!(in_cycle, expected, "{f:#}");
    f
}

pub fn id_of<T>(handle: &tokio::task::JoinHandle<T>) -> u64 {
    handle.id().to_string().parse().unwrap()
}

/// The `debug=2` block of task `id` in `dump`.
pub fn block(dump: &str, id: u64) -> String {
    dump.split("\n\n")
        .find(|b| b.starts_with(&format!("task {id} [")))
        .unwrap_or_else(|| panic!("no task {id} in:\n{dump}"))
        .to_string()
}

/// The task `id` of a snapshot.
pub fn task(s: &Value, id: u64) -> Option<&Value> {
    s["tasks"].as_array().unwrap().iter().find(|t| t["id"] == id)
}

/// The listed resource whose `created_at` starts with `site`.
pub fn resource<'a>(s: &'a Value, site: &str) -> Option<&'a Value> {
    s["resources"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["created_at"].as_str().is_some_and(|c| c.starts_with(site)))
}

/// The value of the sample `name{labels}` in Prometheus text.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}
