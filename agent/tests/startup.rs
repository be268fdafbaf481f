//! Starting the agent never hurts the app: a busy port, a refused address or
//! a bad setting is reported (on stderr, and through `tracing` when the app
//! has a subscriber) and the app runs on without the endpoint. And the
//! endpoint only listens beyond loopback with a token or an explicit opt-in.
//!
//! Tests that need environment variables run this binary again in a child
//! process with them set, and read what it prints. No test sends a byte to
//! a non-loopback address: the refusals happen before binding.

use std::process::Command;

const CHILD: &str = "TASKSCOPE_STARTUP_TEST_CHILD";

/// In the parent: runs `test` in a child with `env` set and returns its
/// stdout and stderr; `None` in the child, which runs the body instead.
fn in_child(test: &str, env: &[(&str, &str)]) -> Option<(String, String)> {
    if std::env::var_os(CHILD).is_some() {
        return None;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env_remove("TASKSCOPE_TOKEN")
        .env_remove("TASKSCOPE_ALLOW_REMOTE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{test} failed in its child:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{test} did not run in its child:\n{stdout}\n{stderr}");
    Some((stdout, stderr))
}

#[taskscope::main(flavor = "current_thread")]
async fn app() -> u32 {
    tokio::spawn(async { 42 }).await.unwrap()
}

#[test]
fn an_app_whose_port_is_taken_runs_on_and_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let Some((stdout, stderr)) = in_child(
        "an_app_whose_port_is_taken_runs_on_and_says_why",
        &[("TASKSCOPE_ADDR", &addr), ("TASKSCOPE_DEEP", "off")],
    ) else {
        // The app's own subscriber, on stdout: the agent reports through it.
        tracing_subscriber::fmt().with_writer(std::io::stdout).with_ansi(false).init();
        println!("app returned {}", app());
        return;
    };
    assert!(stdout.contains("app returned 42"), "{stdout}");
    let reason = format!("could not listen on {addr}: ");
    assert!(
        stderr.contains(&format!("taskscope: {reason}")) && stderr.contains("the agent is not running"),
        "stderr: {stderr}"
    );
    let logged =
        stdout.lines().find(|l| l.contains(&reason)).unwrap_or_else(|| panic!("not logged: {stdout}"));
    assert!(logged.contains("ERROR") && logged.contains("taskscope"), "{logged}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    drop(taken);
}

#[test]
fn a_non_loopback_address_without_a_token_is_refused_and_the_app_runs_on() {
    let Some((stdout, stderr)) = in_child(
        "a_non_loopback_address_without_a_token_is_refused_and_the_app_runs_on",
        &[("TASKSCOPE_ADDR", "0.0.0.0:0")],
    ) else {
        println!("app returned {}", app());
        return;
    };
    assert!(stdout.contains("app returned 42"), "{stdout}");
    assert!(
        stderr.contains("taskscope: refusing to serve the debug endpoint on 0.0.0.0:0")
            && stderr.contains("TASKSCOPE_TOKEN")
            && stderr.contains("TASKSCOPE_ALLOW_REMOTE=1"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn non_loopback_addresses_are_refused_before_binding() {
    // In a child without TASKSCOPE_TOKEN and TASKSCOPE_ALLOW_REMOTE, which
    // would let the agent bind.
    if in_child("non_loopback_addresses_are_refused_before_binding", &[]).is_some() {
        return;
    }
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let err = taskscope::Agent::builder().addr(addr.parse().unwrap()).start().unwrap_err();
        assert!(matches!(err, taskscope::Error::Exposed { .. }), "{addr}: {err}");
        assert!(
            err.to_string().contains(&format!("refusing to serve the debug endpoint on {addr}")),
            "{err}"
        );
    }
    // Loopback needs neither a token nor the opt-in.
    let agent = taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).start().unwrap();
    assert!(agent.local_addr().unwrap().ip().is_loopback());
}

#[test]
fn an_unusable_token_is_an_error_at_start() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    for bad in ["", "two words", "line\nbreak", "naïve"] {
        let err = taskscope::Agent::builder().serve(false).token(bad).start().unwrap_err().to_string();
        assert!(err.contains("TASKSCOPE_TOKEN=<hidden> is invalid"), "{bad:?}: {err}");
        // A token is a secret: the error never repeats it.
        assert!(bad.is_empty() || !err.contains(bad), "{err}");
    }
    assert!(taskscope::Agent::builder().serve(false).token("ok-token").start().is_ok());
}

#[test]
fn a_bad_allow_remote_value_is_reported_and_the_app_runs_on() {
    let Some((stdout, stderr)) = in_child(
        "a_bad_allow_remote_value_is_reported_and_the_app_runs_on",
        &[("TASKSCOPE_ALLOW_REMOTE", "maybe"), ("TASKSCOPE_ADDR", "127.0.0.1:0")],
    ) else {
        println!("app returned {}", app());
        return;
    };
    assert!(stdout.contains("app returned 42"), "{stdout}");
    assert!(stderr.contains("TASKSCOPE_ALLOW_REMOTE=maybe is invalid"), "{stderr}");
}

/// The opt-in is loud. The address stays loopback here (no token, opt-in
/// set): the warning is only for other addresses, so this checks that a
/// loopback address is not warned about, and the unit tests of
/// `http::server::exposure` check the decision for the others.
#[test]
fn allow_remote_on_loopback_serves_without_a_warning() {
    let Some((_, stderr)) = in_child(
        "allow_remote_on_loopback_serves_without_a_warning",
        &[("TASKSCOPE_ALLOW_REMOTE", "1"), ("TASKSCOPE_ADDR", "127.0.0.1:0")],
    ) else {
        println!("app returned {}", app());
        return;
    };
    assert!(stderr.contains("taskscope: listening on http://127.0.0.1:"), "{stderr}");
    assert!(!stderr.contains("WARNING"), "{stderr}");
}

/// An address outside loopback that this host does not have (192.0.2.1 is
/// TEST-NET-1, reserved for documentation): binding it fails, so these
/// tests never listen beyond loopback, but the decision about exposure is
/// made before binding, as it is for a real address.
const NOT_OURS: &str = "192.0.2.1:0";

/// The opt-in is loud: serving a non-loopback address without a token
/// prints a warning on stderr, and through the app's `tracing` subscriber
/// when it has one, before binding.
#[test]
fn allow_remote_on_a_non_loopback_address_warns_loudly() {
    let Some((stdout, stderr)) = in_child(
        "allow_remote_on_a_non_loopback_address_warns_loudly",
        &[("TASKSCOPE_ALLOW_REMOTE", "1"), ("TASKSCOPE_ADDR", NOT_OURS)],
    ) else {
        tracing_subscriber::fmt().with_writer(std::io::stdout).with_ansi(false).init();
        println!("app returned {}", app());
        return;
    };
    assert!(stdout.contains("app returned 42"), "{stdout}");
    let warning = format!("WARNING: serving the debug endpoint on {NOT_OURS} without a token");
    assert!(stderr.contains(&format!("taskscope: {warning}")), "stderr: {stderr}");
    assert!(stderr.contains("anyone who can reach it can read"), "stderr: {stderr}");
    let logged =
        stdout.lines().find(|l| l.contains(&warning)).unwrap_or_else(|| panic!("not logged: {stdout}"));
    assert!(logged.contains("WARN") && logged.contains("taskscope"), "{logged}");
    // This host does not have the address: the bind fails, and is reported.
    assert!(stderr.contains(&format!("could not listen on {NOT_OURS}")), "stderr: {stderr}");
    assert!(!stderr.contains("refusing"), "{stderr}");
}

/// With a token, a non-loopback address is allowed without the opt-in and
/// without the warning: every request needs the token.
#[test]
fn a_token_allows_a_non_loopback_address_quietly() {
    let Some((stdout, stderr)) = in_child(
        "a_token_allows_a_non_loopback_address_quietly",
        &[("TASKSCOPE_TOKEN", "s3cret-token"), ("TASKSCOPE_ADDR", NOT_OURS)],
    ) else {
        println!("app returned {}", app());
        return;
    };
    assert!(stdout.contains("app returned 42"), "{stdout}");
    assert!(!stderr.contains("refusing") && !stderr.contains("WARNING"), "{stderr}");
    assert!(stderr.contains(&format!("could not listen on {NOT_OURS}")), "stderr: {stderr}");
    assert!(!stderr.contains("s3cret-token"), "the token is never printed: {stderr}");
}
