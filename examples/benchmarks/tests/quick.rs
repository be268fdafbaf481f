//! A smoke test of the benchmarks for CI: each workload runs at tiny size in
//! the mode this test binary's features build (baseline by default) and
//! must print one line of JSON with its fields. No timings are asserted.

use std::process::{Command, Stdio};

use serde_json::Value;

fn run(workload: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_workload"))
        .args([workload, "--quick"])
        .env_remove("TASKSCOPE_ADDR")
        .env_remove("TASKSCOPE_TOKEN")
        .env_remove("TASKSCOPE_DISABLE")
        .env("TOKIO_CONSOLE_BIND", "127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .expect("the workload binary runs");
    // `output()` waits for the process: nothing is left running.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{workload} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{workload} must print exactly one line: {stdout}");
    let json: Value = serde_json::from_str(lines[0]).expect("the line is JSON");
    assert_eq!(json["workload"], workload);
    assert!(json["instrumentation"].is_string(), "{json}");
    assert!(json["secs"].as_f64().is_some_and(|s| s >= 0.0), "{json}");
    json
}

#[test]
fn poll_heavy_reports_its_size() {
    let json = run("poll");
    assert_eq!((json["tasks"].as_u64(), json["yields"].as_u64()), (Some(20), Some(50)));
}

#[test]
fn spawn_heavy_reports_its_size() {
    let json = run("spawn");
    assert_eq!((json["rounds"].as_u64(), json["per_round"].as_u64()), (Some(10), Some(100)));
}

#[test]
fn million_tasks_reports_memory_and_lateness() {
    let json = run("million");
    assert_eq!(json["tasks"].as_u64(), Some(10_000));
    assert!(json["rss_bytes"].as_u64().is_some_and(|b| b > 0), "{json}");
    assert!(json["idle_late_ms"].as_f64().is_some(), "{json}");
    // With a serving agent (a taskscope build) the requests were made too.
    if json["instrumentation"] == "taskscope" || json["instrumentation"] == "taskscope-deep" {
        for key in ["dump_ms", "snapshot_ms", "stall_ms", "page_ms"] {
            assert!(json[key].as_f64().is_some(), "{key} missing: {json}");
        }
        assert!(json["tasks_tracked"].as_u64().is_some_and(|n| n >= 10_000), "{json}");
    }
}

#[test]
fn an_unknown_workload_fails_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_workload")).arg("nope").output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload"));
}
