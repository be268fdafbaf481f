//! The commands whose effects are files, sockets and exit codes rather than
//! text: `pprof`, `flamegraph`, `snapshot` and `serve`, run as processes
//! against the fixture agent, with the agent's URL given the ways users
//! give it.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use support::{fixture, FixtureAgent, Running};

fn taskscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskscope"))
        .args(args)
        .env_remove("TASKSCOPE_URL")
        .env_remove("TASKSCOPE_TOKEN")
        .output()
        .expect("run taskscope")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("taskscope-viewer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn pprof_saves_each_profile_from_a_url_with_a_path() {
    let agent = FixtureAgent::start();
    let dir = temp_dir("pprof");
    // A page's URL, as copied from a browser: normalized to the agent's base.
    let url = format!("{}/debug/pprof/?debug=1", agent.url("leaky"));
    for (profile, fixture_file, path) in [
        ("tasks", "tasks.pb.gz", "/leaky/debug/pprof/tasks?debug=0"),
        ("heap", "heap.pb.gz", "/leaky/debug/pprof/heap"),
        ("allocs", "heap.pb.gz", "/leaky/debug/pprof/allocs"),
        ("profile", "profile.pb.gz", "/leaky/debug/pprof/profile?seconds=1"),
    ] {
        let out = dir.join(format!("{profile}.pb.gz"));
        let mut args = vec!["pprof", &url, profile, "-o", out.to_str().unwrap()];
        if profile == "profile" {
            args.extend(["--seconds", "1"]);
        }
        let o = taskscope(&args);
        assert!(o.status.success(), "{profile}: {}", stderr(&o));
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(fixture(fixture_file)).unwrap());
        assert!(agent.requests().iter().any(|r| r == path), "{path} in {:?}", agent.requests());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flamegraph_writes_an_svg_that_parses_as_xml() {
    let agent = FixtureAgent::start();
    let dir = temp_dir("flamegraph");
    let out = dir.join("cpu.svg");
    let o = taskscope(&["flamegraph", &agent.url("leaky"), "--seconds", "2", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(&out).unwrap();
    // inferno's SVGs carry the SVG 1.1 DOCTYPE.
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(&svg, options).expect("valid XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert!(agent.requests().contains(&"/leaky/debug/pprof/flamegraph?seconds=2".to_string()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn findings_ask_for_one_task_and_snapshots_for_all() {
    let agent = FixtureAgent::start();
    let o = taskscope(&["findings", &agent.url("leaky")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = taskscope(&["snapshot", &agent.url("leaky"), "-o", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, std::fs::read(fixture("leaky.json")).unwrap(), "the JSON is saved as it came");
    assert_eq!(
        agent.requests(),
        ["/leaky/debug/taskscope/api/snapshot?limit=1", "/leaky/debug/taskscope/api/snapshot"]
    );
}

#[test]
fn top_needs_a_terminal() {
    let agent = FixtureAgent::start();
    let o = taskscope(&["top", &agent.url("leaky")]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "taskscope: top needs a terminal; in scripts use `taskscope findings`, `check` or `dump`\n"
    );
}

/// GETs (or POSTs) `url`: status and body.
fn request(method: &str, url: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder().http_status_as_error(false).proxy(None).build().new_agent();
    let mut res = match method {
        "GET" => agent.get(url).call(),
        _ => agent.post(url).send(""),
    }
    .expect("request");
    (res.status().as_u16(), res.body_mut().read_to_string().unwrap())
}

#[test]
fn serve_answers_the_saved_snapshot_read_only() {
    let file = fixture("leaky.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskscope"))
        .args(["serve", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start taskscope serve");
    let err = child.stderr.take().unwrap();
    let _guard = Running(child);
    let mut line = String::new();
    BufReader::new(err).read_line(&mut line).unwrap();
    // taskscope: serving <file> read-only at http://127.0.0.1:PORT/debug/taskscope/?snapshot=snapshot.json (Ctrl-C stops)
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("{line}"));
    let base = url.split("/debug/").next().unwrap();
    assert!(url.ends_with("/debug/taskscope/?snapshot=snapshot.json"), "{line}");

    let saved = std::fs::read_to_string(&file).unwrap();
    assert_eq!(request("GET", &format!("{base}/debug/taskscope/snapshot.json")), (200, saved.clone()));
    assert_eq!(request("GET", &format!("{base}/debug/taskscope/api/snapshot?limit=5")), (200, saved));
    // The web viewer's page, and the files it names, from the agent crate.
    let (status, page) = request("GET", url);
    assert_eq!(status, 200);
    assert!(page.starts_with("<!doctype html>"), "{page}");
    let app = page.split('"').find(|s| s.starts_with("static/") && s.ends_with("/app.js")).expect(&page);
    let (status, js) = request("GET", &format!("{base}/debug/taskscope/{app}"));
    assert_eq!(status, 200);
    assert!(js.contains("snapshot"), "the viewer's script: {}", &js[..js.len().min(200)]);
    let (status, _) = request("GET", &format!("{base}/debug/taskscope/static/x/no-such.js"));
    assert_eq!(status, 404);
    let (status, reason) = request("POST", &format!("{base}/debug/taskscope/snapshot.json"));
    assert_eq!((status, reason.as_str()), (405, "read-only: taskscope serve answers GET only\n"));
    let (status, reason) = request("GET", &format!("{base}/debug/pprof/profile"));
    assert_eq!(status, 404);
    assert!(reason.starts_with("not in a saved snapshot"), "{reason}");
}
