//! Snapshot tests of the command line (trycmd): `--help` of every command,
//! and each command's output on recorded agent output. A fixture agent on
//! 127.0.0.1:0 serves the recordings; `TASKSCOPE_URL` points the cases of
//! each folder at one of its agents, and `[AGENT]` stands for that URL in
//! the expected output. `TRYCMD=overwrite cargo test -p taskscope-viewer
//! --test cli` rewrites the expectations.

mod support;

use support::FixtureAgent;

/// The cases of `tests/cmd/<folder>/`, run against the fixture agent under
/// `prefix` (none for the offline cases).
fn run(folder: &str, agent: Option<(&FixtureAgent, &str)>) {
    let cases = trycmd::TestCases::new();
    cases.register_bin("taskscope", std::path::PathBuf::from(env!("CARGO_BIN_EXE_taskscope")));
    cases.case(format!("tests/cmd/{folder}/*.toml"));
    if let Some((agent, prefix)) = agent {
        let url = agent.url(prefix);
        cases.env("TASKSCOPE_URL", url.clone());
        cases.insert_var("[AGENT]", url).unwrap();
    }
    cases.run();
}

#[test]
fn help_and_offline_commands() {
    run("offline", None);
}

#[test]
fn against_a_leaky_app() {
    let agent = FixtureAgent::start();
    run("leaky", Some((&agent, "leaky")));
}

#[test]
fn against_a_healthy_app() {
    let agent = FixtureAgent::start();
    run("healthy", Some((&agent, "healthy")));
}

#[test]
fn against_a_protected_agent() {
    let agent = FixtureAgent::start();
    run("secure", Some((&agent, "secure")));
}

#[test]
fn against_something_that_is_not_an_agent() {
    let agent = FixtureAgent::start();
    run("elsewhere", Some((&agent, "elsewhere")));
    run("garbage", Some((&agent, "garbage")));
}
