//! Starting the leaky-server example and talking to it over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The running example; killed when dropped.
pub struct Server {
    child: Child,
    pub app: String,
    pub agent: String,
    pub stderr: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(envs: &[(&str, &str)]) -> Server {
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

/// A request whose failure does not matter (load made to keep the app
/// busy): true if it was answered.
#[allow(dead_code)] // not every test file uses it
pub fn try_get(addr: &str, path: &str) -> bool {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    agent.get(format!("http://{addr}{path}")).call().and_then(|mut r| r.body_mut().read_to_string()).is_ok()
}

pub fn get(addr: &str, path: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut res = agent.get(format!("http://{addr}{path}")).call().expect("request");
    (res.status().as_u16(), res.body_mut().read_to_string().unwrap())
}

/// `examples/leaky-server/src/main.rs:LINE` of the `tokio::spawn` in `fn name`.
pub fn spawn_site(name: &str) -> String {
    let source = include_str!("../../src/main.rs");
    let start = source.lines().position(|l| l.starts_with(&format!("fn {name}("))).unwrap();
    let offset = source.lines().skip(start).position(|l| l.contains("tokio::spawn(")).unwrap();
    format!("examples/leaky-server/src/main.rs:{}:", start + offset + 1)
}
