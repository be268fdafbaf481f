//! A smoke test of the benchmarks for CI: each workload runs at tiny size in
//! the mode this test binary's features build (baseline by default) and
//! must print one line of JSON with its fields. No timings are asserted.
//!
//! The http workload needs `wrk`: without it the test is skipped with a
//! message, unless `CI` is set (CI installs wrk), where that is a failure.

use std::process::{Command, Stdio};

use serde_json::Value;

fn run(workload: &str) -> Value {
    run_with(workload, &[])
}

fn run_with(workload: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_workload"))
        .args([workload, "--quick"])
        .args(args)
        .env_remove("BENCH_CPU_PROFILE")
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
    assert!(json["rss_start_bytes"].as_u64().is_some_and(|b| b > 0), "{json}");
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
fn mutex_heavy_reports_its_size() {
    let json = run("mutex");
    assert_eq!(
        (json["tasks"].as_u64(), json["locks"].as_u64(), json["mutexes"].as_u64()),
        (Some(10), Some(100), Some(2))
    );
    assert!(json["cpu_secs"].as_f64().is_some(), "{json}");
}

#[test]
fn alloc_heavy_reports_both_phases() {
    let json = run("alloc");
    assert_eq!((json["threads"].as_u64(), json["boxes"].as_u64()), (Some(2), Some(200_000)), "{json}");
    for key in ["boxes_secs", "vecs_secs", "cpu_secs"] {
        assert!(json[key].as_f64().is_some_and(|s| s >= 0.0), "{key} missing: {json}");
    }
}

#[test]
fn idle_reports_the_agents_threads_and_memory() {
    let json = run("idle");
    assert_eq!(json["idle_secs"].as_u64(), Some(1), "{json}");
    assert!(json["agent_cpu_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{json}");
    assert!(json["agent_cpu_ms_by_thread"].is_object(), "{json}");
    assert!(json["rss_bytes"].as_u64().is_some_and(|b| b > 0), "{json}");
    if json["instrumentation"] == "none" {
        // Only the main thread and the runtime's: nothing counts as agent.
        assert_eq!(json["agent_threads"].as_u64(), Some(0), "{json}");
    }
}

/// Whether `wrk` can be run; without it, a message (or, under CI, a failure).
fn have_wrk(test: &str) -> bool {
    let found =
        Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: wrk is not installed, and CI is set (CI must install the Debian package wrk)"
        );
        eprintln!("{test}: SKIPPED: wrk is not installed (apt-get install wrk); CI runs it");
    }
    found
}

#[test]
fn http_reports_throughput_and_latency() {
    if !have_wrk("http_reports_throughput_and_latency") {
        return;
    }
    let json = run("http");
    assert_eq!((json["http_secs"].as_u64(), json["wrk_threads"].as_u64()), (Some(1), Some(2)), "{json}");
    assert!(json["requests"].as_u64().is_some_and(|n| n > 0), "{json}");
    for key in ["requests_per_sec", "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_request"] {
        assert!(json[key].as_f64().is_some_and(|x| x > 0.0), "{key} missing: {json}");
    }
    assert!(json["errors"].as_u64().is_some(), "{json}");
}

#[test]
fn a_cpu_profile_without_an_agent_fails_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_workload"))
        .args(["poll", "--quick"])
        .env("BENCH_CPU_PROFILE", "1")
        .env_remove("TASKSCOPE_ADDR")
        .env_remove("TASKSCOPE_TOKEN")
        .env("TASKSCOPE_DISABLE", "1")
        .env("TOKIO_CONSOLE_BIND", "127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a serving taskscope agent"));
}

#[test]
fn an_unknown_workload_fails_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_workload")).arg("nope").output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload"));
}
