//! CPU profiles and flamegraphs over real HTTP, read back with pprof-rs's
//! protobuf types and with `go tool pprof`.
//!
//! A CPU profile covers the whole process and only one runs at a time, so the
//! tests that take one hold `SERIAL`; the race test races on purpose.
//! `go tool pprof` checks are skipped (with a note) when Go is not
//! installed, unless `CI` is set, in which case they fail.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use pprof::protos::{Message, Profile};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The hot function of a plain thread. Plain integer operations only, so
/// that even a debug build spends its time here rather than in helpers.
#[inline(never)]
fn cpu_test_hot_thread_loop(seed: u64) -> u64 {
    let (mut x, mut i) = (seed | 1, 0u32);
    while i < 200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        i += 1;
    }
    x
}

/// The hot function of a tokio task.
#[inline(never)]
fn cpu_test_hot_task_work(seed: u64) -> u64 {
    let (mut x, mut i) = (seed | 1, 0u32);
    while i < 200_000 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        i += 1;
    }
    x
}

/// An instrumented app with the agent on 127.0.0.1:0, and CPU burners that
/// stop when it is dropped.
struct App {
    runtime: Option<tokio::runtime::Runtime>,
    agent: Option<taskscope::Agent>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// `tests/cpu.rs:line:col` of the burning task's spawn.
    task_site: String,
}

impl App {
    fn start(builder: taskscope::Builder) -> App {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2).enable_all();
        taskscope::instrument(&mut b);
        let runtime = b.build().unwrap();
        let agent = {
            let _enter = runtime.enter();
            builder.addr("127.0.0.1:0".parse().unwrap()).start().unwrap()
        };
        App {
            runtime: Some(runtime),
            agent: Some(agent),
            stop: Arc::default(),
            threads: Vec::new(),
            task_site: String::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.agent.as_ref().and_then(|a| a.local_addr()).unwrap()
    }

    /// Burns CPU in `cpu_test_hot_thread_loop` on a thread named `hot-burner`.
    fn burn_in_thread(mut self) -> Self {
        let stop = self.stop.clone();
        let thread = std::thread::Builder::new()
            .name("hot-burner".into())
            .spawn(move || {
                let mut x = 1;
                while !stop.load(Ordering::Relaxed) {
                    x = cpu_test_hot_thread_loop(x);
                }
                std::hint::black_box(x);
            })
            .unwrap();
        self.threads.push(thread);
        self
    }

    /// Burns CPU in `cpu_test_hot_task_work` in a task that yields between
    /// bursts, so that it is polled again and again.
    fn burn_in_task(mut self) -> Self {
        let stop = self.stop.clone();
        let runtime = self.runtime.as_ref().unwrap();
        let line = line!() + 1;
        runtime.spawn(async move {
            let mut x = 1;
            while !stop.load(Ordering::Relaxed) {
                x = cpu_test_hot_task_work(x);
                tokio::task::yield_now().await;
            }
            std::hint::black_box(x);
        });
        self.task_site = format!("{}:{line}:", file!());
        self
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        drop(self.agent.take());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn profile(&self) -> Profile {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(&self.body[..2], [0x1f, 0x8b], "gzip");
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&self.body[..]).read_to_end(&mut raw).expect("gunzip");
        Profile::decode(&raw[..]).expect("profile.proto")
    }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut res = agent.get(format!("http://{addr}{path}")).call().expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.body_mut().with_config().limit(64 << 20).read_to_vec().expect("body");
    Reply { status, headers, body }
}

fn strings(p: &Profile, i: i64) -> &str {
    &p.string_table[i as usize]
}

/// A sample's function names (leaf first), labels and values.
type Sample = (Vec<String>, Vec<(String, String)>, Vec<i64>);

/// Every sample of `p`, its locations' functions by name.
fn samples(p: &Profile) -> Vec<Sample> {
    let function = |id: u64| p.function.iter().find(|f| f.id == id).map(|f| strings(p, f.name).to_string());
    let location = |id: u64| p.location.iter().find(|l| l.id == id).unwrap();
    p.sample
        .iter()
        .map(|s| {
            let names = s
                .location_id
                .iter()
                .flat_map(|&id| location(id).line.iter().filter_map(|l| function(l.function_id)))
                .collect();
            let labels = s
                .label
                .iter()
                .map(|l| (strings(p, l.key).to_string(), strings(p, l.str).to_string()))
                .collect();
            (names, labels, s.value.clone())
        })
        .collect()
}

/// Runs `go tool pprof -top` on `body`; `None` when Go is not installed
/// (which fails the test when `CI` is set).
fn go_pprof_top(name: &str, body: &[u8]) -> Option<String> {
    if Command::new("go").arg("version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "go is not installed and CI is set: install it (apt-get install -y golang-go)"
        );
        eprintln!("skipped go tool pprof checks: go is not installed (apt-get install -y golang-go)");
        return None;
    }
    let path: PathBuf =
        std::env::temp_dir().join(format!("taskscope-cpu-{}-{name}.pb.gz", std::process::id()));
    std::fs::write(&path, body).unwrap();
    let out = Command::new("go").args(["tool", "pprof", "-top"]).arg(&path).output().expect("go tool pprof");
    let _ = std::fs::remove_file(&path);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "go tool pprof -top failed on {name}:\n{stderr}\n{stdout}");
    Some(format!("{stderr}{stdout}"))
}

#[test]
fn a_profile_names_the_hot_functions_threads_and_tasks_and_go_reads_it() {
    let _serial = serial();
    let app = App::start(taskscope::Agent::builder()).burn_in_thread().burn_in_task();
    let reply = get(app.addr(), "/debug/pprof/profile?seconds=2");
    assert_eq!(reply.header("content-type"), "application/octet-stream");
    assert_eq!(reply.header("content-disposition"), "attachment; filename=\"profile\"");
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    let p = reply.profile();

    let types: Vec<_> = p.sample_type.iter().map(|t| (strings(&p, t.ty), strings(&p, t.unit))).collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    assert_eq!(p.period, 1_000_000_000 / 99);
    assert!(p.duration_nanos >= 2_000_000_000, "duration {}", p.duration_nanos);
    let samples = samples(&p);
    let total: i64 = samples.iter().map(|s| s.2[0]).sum();
    // Two busy threads for 2 s at 99 Hz give about 400 samples on an idle
    // machine; a loaded one gives fewer.
    assert!(total >= 20, "only {total} samples");
    for (_, _, values) in &samples {
        assert_eq!(values[1], values[0] * p.period, "cpu time is samples times the period");
    }

    // The hot function is there, demangled, with file and line, and it is
    // the leaf of its samples: the running function itself, not its caller.
    let hot = p
        .function
        .iter()
        .find(|f| strings(&p, f.name).ends_with("cpu_test_hot_thread_loop"))
        .unwrap_or_else(|| panic!("no hot function in {samples:?}"));
    assert_eq!(strings(&p, hot.name), "cpu::cpu_test_hot_thread_loop");
    assert!(strings(&p, hot.filename).ends_with("tests/cpu.rs"), "{}", strings(&p, hot.filename));
    let count = |leaf_only: bool| -> i64 {
        let hot = |f: &String| f.ends_with("cpu_test_hot_thread_loop");
        let hit = |s: &&Sample| if leaf_only { s.0.first().is_some_and(hot) } else { s.0.iter().any(hot) };
        samples.iter().filter(hit).map(|s| s.2[0]).sum()
    };
    let (as_leaf, in_stack) = (count(true), count(false));
    assert!(
        as_leaf * 10 >= in_stack * 9,
        "the hot function is the leaf of only {as_leaf} of its {in_stack} samples"
    );

    // Threads are named; the task's samples carry its spawn site.
    let label = |s: &Sample, key: &str| s.1.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let in_thread =
        samples.iter().find(|s| s.0.iter().any(|f| f.ends_with("cpu_test_hot_thread_loop"))).unwrap();
    assert_eq!(label(in_thread, "thread").as_deref(), Some("hot-burner"));
    assert_eq!(label(in_thread, "spawn_site"), None, "a plain thread polls no task");
    let in_task: Vec<_> =
        samples.iter().filter(|s| s.0.iter().any(|f| f.ends_with("cpu_test_hot_task_work"))).collect();
    assert!(!in_task.is_empty(), "the task's hot function is missing");
    for s in &in_task {
        let thread = label(s, "thread").unwrap_or_default();
        assert!(thread.starts_with("tokio-"), "a worker thread: {thread}");
        let site = label(s, "spawn_site").unwrap_or_default();
        assert!(site.starts_with(&app.task_site), "{site} is not {}", app.task_site);
    }

    if let Some(top) = go_pprof_top("profile", &reply.body) {
        assert!(top.contains("cpu_test_hot_thread_loop"), "{top}");
        assert!(top.contains("Duration: 2"), "{top}");
        eprintln!("{top}");
    }
}

#[test]
fn every_endpoint_of_the_default_scrape_jobs_answers_a_profile_go_reads() {
    let _serial = serial();
    let app = App::start(taskscope::Agent::builder()).burn_in_thread();
    for path in [
        "/debug/pprof/profile?seconds=1",
        "/debug/pprof/goroutine",
        "/debug/pprof/block",
        "/debug/pprof/mutex",
        "/debug/pprof/allocs",
        "/debug/pprof/heap",
    ] {
        let reply = get(app.addr(), path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.header("content-type"), "application/octet-stream", "{path}");
        assert!(reply.header("content-disposition").starts_with("attachment; filename="), "{path}");
        let p = reply.profile();
        assert!(!p.sample_type.is_empty(), "{path}");
        go_pprof_top(path.trim_start_matches("/debug/pprof/").split('?').next().unwrap(), &reply.body);
    }
    let types = |path| {
        let p = get(app.addr(), path).profile();
        p.sample_type
            .iter()
            .map(|t| format!("{}/{}", strings(&p, t.ty), strings(&p, t.unit)))
            .collect::<Vec<_>>()
    };
    assert_eq!(types("/debug/pprof/block"), ["contentions/count", "delay/nanoseconds"]);
    assert_eq!(types("/debug/pprof/mutex"), ["contentions/count", "delay/nanoseconds"]);

    // The index links the profiles; the snapshot says CPU profiles are on.
    let index = get(app.addr(), "/debug/pprof/").text();
    for link in [
        "<a href='profile?seconds=30'>profile</a>",
        "<a href='flamegraph?seconds=30'>flamegraph</a>",
        "<a href='block?debug=1'>block</a>",
        "<a href='mutex?debug=1'>mutex</a>",
    ] {
        assert!(index.contains(link), "{link} in {index}");
    }
    let snapshot: serde_json::Value =
        serde_json::from_slice(&get(app.addr(), "/debug/taskscope/api/snapshot").body).unwrap();
    assert_eq!(snapshot["agent"]["features"]["cpu"], true);
    assert_eq!(get(app.addr(), "/debug/pprof/block?debug=1").text().lines().count(), 1);
    for path in ["/debug/pprof/allocs", "/debug/pprof/heap"] {
        let t = types(path);
        for want in ["alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"] {
            assert!(t.iter().any(|t| t == want), "{path}: {t:?}");
        }
    }
}

/// inferno's SVGs declare the SVG DTD.
fn xml_options() -> roxmltree::ParsingOptions {
    roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() }
}

#[test]
fn the_flamegraph_is_an_svg_with_the_hot_function_and_a_title() {
    let _serial = serial();
    let app = App::start(taskscope::Agent::builder()).burn_in_thread();
    let reply = get(app.addr(), "/debug/pprof/flamegraph?seconds=1&width=900&minwidth=0.5");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), "image/svg+xml");
    let svg = reply.text();
    let doc = roxmltree::Document::parse_with_options(&svg, xml_options()).expect("the SVG parses as XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert_eq!(doc.root_element().attribute("width"), Some("900"));
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    let title = texts.iter().find(|t| t.starts_with("CPU profile: ")).expect("a title");
    assert!(title.starts_with("CPU profile: 1 s, ") && title.contains(" samples"), "{title}");
    let frames: Vec<&str> =
        doc.descendants().filter(|n| n.has_tag_name("title")).filter_map(|n| n.text()).collect();
    assert!(frames.iter().any(|f| f.contains("cpu_test_hot_thread_loop")), "{frames:?}");
    assert!(frames.iter().any(|f| f.starts_with("hot-burner ")), "threads are the roots: {frames:?}");
    assert!(svg.contains("<script"), "search and zoom need the script");

    let icicle = get(app.addr(), "/debug/pprof/flamegraph?seconds=1&icicle=1&reverse=1").text();
    roxmltree::Document::parse_with_options(&icicle, xml_options()).expect("the icicle SVG parses");
    assert!(icicle.contains("inverted = true"));
}

#[test]
fn a_second_profile_is_refused_as_go_does_while_the_first_continues() {
    let _serial = serial();
    let app = App::start(taskscope::Agent::builder()).burn_in_thread();
    let addr = app.addr();
    let first = std::thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=2"));
    // Let the first request start its profile.
    std::thread::sleep(Duration::from_millis(700));
    for path in ["/debug/pprof/profile?seconds=1", "/debug/pprof/flamegraph?seconds=1"] {
        let second = get(addr, path);
        assert_eq!(second.status, 500, "{path}");
        assert_eq!(second.text(), "Could not enable CPU profiling: cpu profiling already in use\n");
        assert_eq!(second.header("x-go-pprof"), "1");
        assert_eq!(second.header("content-type"), "text/plain; charset=utf-8");
    }
    let first = first.join().unwrap();
    let p = first.profile();
    let names = samples(&p).into_iter().flat_map(|s| s.0).collect::<Vec<_>>();
    assert!(names.iter().any(|n| n.ends_with("cpu_test_hot_thread_loop")), "the first profile is unharmed");
    // And once it is done, profiling is free again.
    assert_eq!(get(addr, "/debug/pprof/profile?seconds=1").status, 200);
}

#[test]
fn bad_durations_and_options_get_a_400_with_one_line() {
    let app = App::start(taskscope::Agent::builder().cpu_max_seconds(5));
    for (query, reason) in [
        ("seconds=0", "invalid seconds=\"0\": want a whole number of seconds from 1 to 5\n"),
        ("seconds=-1", "invalid seconds=\"-1\": want a whole number of seconds from 1 to 5\n"),
        ("seconds=abc", "invalid seconds=\"abc\": want a whole number of seconds from 1 to 5\n"),
        ("seconds=6", "invalid seconds=\"6\": want a whole number of seconds from 1 to 5\n"),
        ("seconds=1.5", "invalid seconds=\"1.5\": want a whole number of seconds from 1 to 5\n"),
    ] {
        for endpoint in ["profile", "flamegraph"] {
            let reply = get(app.addr(), &format!("/debug/pprof/{endpoint}?{query}"));
            assert_eq!(reply.status, 400, "{endpoint}?{query}");
            assert_eq!(reply.text(), reason, "{endpoint}?{query}");
        }
    }
    for query in ["width=abc", "minwidth=200", "reverse=maybe"] {
        let reply = get(app.addr(), &format!("/debug/pprof/flamegraph?seconds=1&{query}"));
        assert_eq!(reply.status, 400, "{query}");
        assert_eq!(reply.text().lines().count(), 1, "{query}");
    }

    // The default maximum is 300 s.
    let defaults = App::start(taskscope::Agent::builder());
    let reply = get(defaults.addr(), "/debug/pprof/profile?seconds=301");
    assert_eq!((reply.status, reply.text().contains("from 1 to 300")), (400, true), "{}", reply.text());
}

#[test]
fn a_zero_rate_is_a_start_error() {
    let e = taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).cpu_hz(0).start().unwrap_err();
    assert!(e.to_string().contains("cpu_hz=0"), "{e}");
}
