//! Tests whose settings are read before `main` (the allocator's, the
//! tables' capacities) run their body in a child process of the same test
//! binary, started with those settings in its environment.

use std::process::Command;
use std::time::{Duration, Instant};

/// Set in the child, so that it runs the body.
const CHILD: &str = "TASKSCOPE_TEST_CHILD";

/// Whether to run the test's body here: true in the child; in the parent,
/// runs `test` in a child process with `env` set, waits for it (failing the
/// test if it fails or hangs) and returns false.
pub fn in_child(test: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{test} hung in its child process (killed after 120 s)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test} failed in its child:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{test} did not run in its child:\n{stdout}\n{stderr}");
    false
}
