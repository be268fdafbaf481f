//! End to end: start the leaky-server binary, read the agent's startup line,
//! and query the debug endpoint over HTTP like a user would.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The running example; killed when dropped.
struct Server {
    child: Child,
    app: String,
    agent: String,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(envs: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leaky-server"))
        .arg("--manual")
        .env("TASKSCOPE_ADDR", "127.0.0.1:0")
        .env("LEAKY_ADDR", "127.0.0.1:0")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start leaky-server");
    let (tx, stderr) = mpsc::channel();
    let err = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let app = line
        .trim()
        .strip_prefix("leaky-server: listening on http://")
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    std::thread::spawn(move || for _ in out.lines() {});
    let mut server = Server { child, app, agent: String::new(), stderr };
    if envs.iter().all(|(k, _)| *k != "TASKSCOPE_DISABLE") {
        let line = server.stderr.recv_timeout(Duration::from_secs(30)).expect("a startup line");
        server.agent = line
            .strip_prefix("taskscope: listening on http://")
            .and_then(|s| s.strip_suffix("/debug/pprof/"))
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
            .to_string();
    }
    server
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut res = agent.get(format!("http://{addr}{path}")).call().expect("request");
    (res.status().as_u16(), res.body_mut().read_to_string().unwrap())
}

/// `examples/leaky-server/src/main.rs:LINE` of the `tokio::spawn` in `fn name`.
fn spawn_site(name: &str) -> String {
    let source = include_str!("../src/main.rs");
    let start = source.lines().position(|l| l.starts_with(&format!("fn {name}("))).unwrap();
    let offset = source.lines().skip(start).position(|l| l.contains("tokio::spawn(")).unwrap();
    format!("examples/leaky-server/src/main.rs:{}:", start + offset + 1)
}

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
    assert!(leaked.iter().all(|b| b.starts_with("task ") && b.contains(" [idle, ")), "{leaked:?}");

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
