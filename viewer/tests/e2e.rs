//! End to end: the `taskscope` binary against the real example apps.
//! `check` fails on `leaky-server` once a task is stuck and passes on
//! `healthy`; `flamegraph` writes a valid SVG; a token-protected agent
//! needs `--token`. The example binaries are the ones `cargo test
//! --workspace` builds; see [`example`] for other ways of running this.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use support::Running;

/// The executable of an example package. `cargo test --workspace` has built
/// it next to this test already; when it is missing or older than the
/// sources (`cargo test -p taskscope-viewer` after an edit), cargo builds it
/// with this test's profile and target dir.
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/e2e-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test's profile dir").to_path_buf();
    let sibling = profile_dir.join(name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sources =
        [root.join("agent"), root.join("assets"), root.join("examples").join(name), root.join("Cargo.lock")];
    let built_at = std::fs::metadata(&sibling).and_then(|m| m.modified()).ok();
    if built_at.is_some_and(|t| sources.iter().all(|s| newest(s) <= t)) {
        return sibling;
    }
    let built = BUILT.get_or_init(|| {
        let target_dir =
            profile_dir.ancestors().find(|d| d.join("CACHEDIR.TAG").exists()).unwrap_or(&profile_dir);
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "leaky-server",
                "-p",
                "healthy",
                "--message-format=json",
                "--profile",
                profile,
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(root)
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build");
        assert!(out.status.success(), "building the examples failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|m| {
                let exe = m.get("executable")?.as_str()?;
                Some((m["target"]["name"].as_str()?.to_string(), PathBuf::from(exe)))
            })
            .collect()
    });
    built
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("no binary {name}"))
}

/// The newest modification time of a file, or of any file under a folder.
fn newest(path: &Path) -> std::time::SystemTime {
    let Ok(meta) = std::fs::metadata(path) else { return std::time::SystemTime::UNIX_EPOCH };
    let own = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    if !meta.is_dir() {
        return own;
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name() != "target")
        .map(|e| newest(&e.path()))
        .fold(own, std::cmp::max)
}

/// A running example: the process, the agent's URL and the app's address.
struct App {
    _process: Running,
    agent: String,
    app: Option<String>,
}

/// Starts `name` with the agent on 127.0.0.1:0; waits for its startup line.
fn start(name: &str, args: &[&str], envs: &[(&str, &str)]) -> App {
    let mut child = Command::new(example(name))
        .args(args)
        .env("TASKSCOPE_ADDR", "127.0.0.1:0")
        .env("LEAKY_ADDR", "127.0.0.1:0")
        .env_remove("TASKSCOPE_TOKEN")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let (lines, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
    }
    let process = Running(child);
    let (mut agent, mut app) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.is_none() || (name == "leaky-server" && app.is_none()) {
        let line =
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("startup lines");
        if let Some(rest) = line.strip_prefix("taskscope: listening on ") {
            agent = Some(rest.trim_end_matches("/debug/pprof/").to_string());
        }
        if let Some(rest) = line.strip_prefix("leaky-server: listening on http://") {
            app = rest.split('/').next().map(str::to_string);
        }
    }
    App { _process: process, agent: agent.unwrap(), app }
}

fn taskscope(args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskscope"));
    cmd.args(args).env_remove("TASKSCOPE_URL").env_remove("TASKSCOPE_TOKEN");
    if let Some(t) = token {
        cmd.env("TASKSCOPE_TOKEN", t);
    }
    cmd.output().expect("run taskscope")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn get(url: &str) -> String {
    let agent = ureq::Agent::config_builder().proxy(None).build().new_agent();
    agent.get(url).call().expect("GET").body_mut().read_to_string().unwrap()
}

/// `examples/leaky-server/src/main.rs:LINE:` of the `tokio::spawn` in `fn name`.
fn spawn_site(name: &str) -> String {
    let source = include_str!("../../examples/leaky-server/src/main.rs");
    let start = source.lines().position(|l| l.starts_with(&format!("fn {name}("))).unwrap();
    let offset = source.lines().skip(start).position(|l| l.contains("tokio::spawn(")).unwrap();
    format!("examples/leaky-server/src/main.rs:{}:", start + offset + 1)
}

#[test]
fn check_fails_on_a_stuck_task_and_waits_for_it() {
    let leaky = start("leaky-server", &["--manual"], &[("TASKSCOPE_STUCK_AFTER", "1s")]);
    get(&format!("http://{}/stuck", leaky.app.as_deref().unwrap()));
    // --wait: polls until a finding shows, then fails.
    let o = taskscope(&["check", &leaky.agent, "--wait", "30s"], None);
    assert_eq!(o.status.code(), Some(1), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("check failed: "), "{}", text(&o.stdout));
    // Once the stuck task is past the threshold, check names it.
    let site = spawn_site("stuck");
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let o = taskscope(&["check", &leaky.agent], None);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
        let out = text(&o.stdout);
        if out.contains(&format!("stuck_task at {site}")) || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    println!("{out}");
    assert!(out.contains(&format!("stuck_task at {site}")), "{out}");
    assert!(out.contains("has waited on chan receive"), "{out}");
    assert!(out.contains("parked at: "), "{out}");
}

#[test]
fn check_passes_on_a_healthy_app() {
    let healthy = start("healthy", &[], &[]);
    let o = taskscope(&["check", &healthy.agent, "--wait", "3s"], None);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("check passed: no finding at or above warning"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn flamegraph_writes_a_valid_svg() {
    let healthy = start("healthy", &[], &[]);
    let path = std::env::temp_dir().join(format!("taskscope-e2e-cpu-{}.svg", std::process::id()));
    let o = taskscope(&["flamegraph", &healthy.agent, "--seconds", "1", "-o", path.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let svg = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(&svg, options).expect("the SVG parses as XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
}

#[test]
fn a_protected_agent_needs_the_token() {
    let leaky = start("leaky-server", &["--manual"], &[("TASKSCOPE_TOKEN", "t0k3n")]);
    let o = taskscope(&["findings", &leaky.agent], None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        format!(
            "taskscope: the agent at {} wants a token (401): pass --token or set TASKSCOPE_TOKEN\n",
            leaky.agent
        )
    );
    let o = taskscope(&["findings", &leaky.agent, "--token", "t0k3n"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = taskscope(&["dump", &leaky.agent, "--debug", "1"], Some("t0k3n"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).starts_with("tasks profile: total "), "{}", text(&o.stdout));
}

#[test]
fn an_agent_that_went_away_is_a_clear_error() {
    let agent = {
        let healthy = start("healthy", &[], &[]);
        let o = taskscope(&["snapshot", &healthy.agent, "-o", "-"], None);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        assert!(text(&o.stdout).starts_with("{\"tasks\":"));
        healthy.agent.clone()
    };
    let o = taskscope(&["check", &agent], None);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.starts_with(&format!("taskscope: cannot reach the agent at {agent}: "))
            && err.lines().count() == 1,
        "{err}"
    );
}
