//! `/metrics` over real HTTP: the Prometheus text format, checked by
//! `promtool check metrics` (Debian's `prometheus` package; the test is
//! skipped without it, except in CI where it fails), with live tasks and
//! spawns of this file's spawn sites and the agent's own health.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut res = agent.get(format!("http://{addr}{path}")).call().expect("request");
    let status = res.status().as_u16();
    let content_type =
        res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, res.body_mut().read_to_string().expect("body"))
}

/// `promtool check metrics` on `text`; `None` when promtool is not installed
/// (a failure when `CI` is set).
fn promtool(text: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "CI needs promtool (apt-get install prometheus): {e}");
            eprintln!(
                "skipped the promtool check: promtool is not installed ({e}); apt-get install prometheus"
            );
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success() && said.trim().is_empty(), said))
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_are_valid_prometheus_text_with_this_apps_sites() {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    taskscope::instrument(&mut b);
    let rt = b.build().unwrap();
    let agent = {
        let _enter = rt.enter();
        taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).metrics_top_sites(5).start().unwrap()
    };
    let addr = agent.local_addr().unwrap();

    let (keep, rx) = tokio::sync::watch::channel(());
    let parked_line = line!() + 3;
    for _ in 0..7 {
        let mut rx = rx.clone();
        rt.spawn(async move {
            let _ = rx.changed().await;
        });
    }
    let done_line = line!() + 2;
    for _ in 0..3 {
        rt.block_on(rt.spawn(async {})).unwrap();
    }
    let site = |line: u32| format!("site=\"agent/tests/metrics.rs:{line}:");

    let (status, content_type, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    if let Some((ok, said)) = promtool(&text) {
        assert!(ok, "promtool check metrics: {said}\n{text}");
    }

    let series = |name: &str, line: u32| {
        let prefix = format!("{name}{{{}", site(line));
        text.lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_string()
    };
    assert!(series("taskscope_tasks_live", parked_line).ends_with("} 7"), "{text}");
    assert!(series("taskscope_tasks_spawned_total", parked_line).ends_with("} 7"), "{text}");
    assert!(series("taskscope_tasks_spawned_total", done_line).ends_with("} 3"), "{text}");
    assert!(series("taskscope_tasks_completed_total", done_line).ends_with("} 3"), "{text}");
    let labelled = text.lines().filter(|l| l.starts_with("taskscope_tasks_live{")).count();
    assert!(labelled <= 5 + 1, "top 5 sites plus other:\n{text}");
    assert!(text.contains("\ntaskscope_tasks_live{site=\"other\"} "), "{text}");
    assert_eq!(value(&text, "taskscope_workers"), Some(2.0), "{text}");
    assert!(text.contains("taskscope_worker_polls_total{worker=\"1\"} "), "{text}");
    assert!(text.contains("taskscope_findings{kind=\"stuck_task\",severity=\"warning\"} "), "{text}");
    assert!(text.contains("taskscope_agent_dropped_events_total{reason=\"task_table_full\"} 0\n"), "{text}");

    // The scrape itself was a dump: the next one counts it.
    let (_, _, again) = http_get(addr, "/metrics");
    let dumps = value(&again, "taskscope_agent_dump_duration_seconds_count").expect("the dump histogram");
    assert!(dumps >= 1.0, "{again}");
    assert_eq!(
        value(&again, "taskscope_agent_dump_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(dumps),
        "{again}"
    );

    drop(keep);
    drop(agent);
    rt.shutdown_timeout(Duration::from_secs(5));
}
