//! The soak's short variants, as CI runs them: 30 s of task churn with
//! periodic dumps, memory bounded after warm-up (loosely: a leak of the
//! agent's memory per task or per request would be far larger), and 20 s of
//! `--stress` in which every request must succeed. No timing is asserted.

use std::process::Command;

fn soak(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args(args)
        .env("TASKSCOPE_ADDR", "127.0.0.1:0")
        .output()
        .expect("the soak binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "soak {args:?} failed:\n{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("soak: done after")), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
    stdout
}

#[test]
fn a_quick_soak_keeps_memory_bounded() {
    let out = soak(&["--quick", "--max-growth-mib", "64"]);
    let reports = out.lines().filter(|l| l.starts_with("soak: t=")).count();
    assert!(reports >= 10, "{out}");
}

#[test]
fn a_short_stress_answers_every_request() {
    let out = soak(&["--seconds", "20", "--stress"]);
    let done = out.lines().find(|l| l.starts_with("soak: done after")).unwrap();
    assert!(done.ends_with(", 0 failed"), "{done}");
    // Every kind of request was made, CPU profiles and heap deltas included.
    for path in [
        "/debug/pprof/profile?seconds=5",
        "/debug/pprof/heap?seconds=3",
        "/debug/pprof/tasks?debug=2",
        "/metrics",
    ] {
        assert!(out.contains(&format!(" x {path}\n")), "no {path} in:\n{out}");
    }
}
