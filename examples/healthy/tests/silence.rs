//! The healthy example yields no warning or critical finding, in deep mode
//! and in lean mode (`TASKSCOPE_DEEP=off`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn findings_after(wait: Duration, envs: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_healthy"))
        .env("TASKSCOPE_ADDR", "127.0.0.1:0")
        .env("TASKSCOPE_STUCK_AFTER", "1s")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let child = Killed(child);
    let addr = line
        .trim()
        .strip_prefix("taskscope: listening on http://")
        .and_then(|s| s.strip_suffix("/debug/pprof/"))
        .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
        .to_string();
    std::thread::sleep(wait);
    let json = ureq::get(format!("http://{addr}/debug/taskscope/api/snapshot?limit=0"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    drop(child);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["findings"].as_array().unwrap().clone()
}

fn assert_silent(envs: &[(&str, &str)]) {
    // Long enough for idle tasks to pass the 1 s stuck threshold several times
    // and for the leak detector to see a window of samples.
    let findings = findings_after(Duration::from_secs(8), envs);
    let loud: Vec<_> = findings.iter().filter(|f| f["severity"] != "info").collect();
    assert!(loud.is_empty(), "a healthy app got findings: {loud:#?}");
}

#[test]
fn deep_mode_finds_nothing_wrong() {
    assert_silent(&[]);
}

#[test]
fn lean_mode_finds_nothing_wrong() {
    assert_silent(&[("TASKSCOPE_DEEP", "off")]);
}
