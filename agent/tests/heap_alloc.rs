//! `taskscope::Allocator` as the global allocator of this test binary: heap
//! profiles over real HTTP, read back with pprof-rs's protobuf types and with
//! `go tool pprof`; estimates within statistical bounds; frees of sampled
//! blocks recognized; per-task attribution; growth found and plateaus not;
//! and no deadlock with task dumps and a CPU profile, across `fork` or
//! before `main`.
//!
//! The sampling rate is read before `main`, so tests that need another rate
//! run themselves in a child process of this binary with it set.
//! `go tool pprof` checks are skipped (with a note) when Go is not installed,
//! unless `CI` is set, in which case they fail.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pprof::protos::{Message, Profile};

mod child_support;
use child_support::in_child;

#[global_allocator]
static GLOBAL: taskscope::Allocator = taskscope::Allocator::system();

/// Allocations before `main` must work: 16 MiB, kept.
#[used]
#[link_section = ".init_array"]
static BEFORE_MAIN: extern "C" fn() = before_main;
static EARLY: AtomicUsize = AtomicUsize::new(0);
const EARLY_BYTES: usize = 16 << 20;

extern "C" fn before_main() {
    let early: &'static mut [u8] = Box::leak(vec![7u8; EARLY_BYTES].into_boxed_slice());
    EARLY.store(early.as_ptr() as usize, Ordering::Relaxed);
}

/// An instrumented runtime with the agent on 127.0.0.1:0.
struct App {
    runtime: Option<tokio::runtime::Runtime>,
    agent: Option<taskscope::Agent>,
}

impl App {
    fn start() -> App {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2).enable_all();
        taskscope::instrument(&mut b);
        let runtime = b.build().unwrap();
        let agent = {
            let _enter = runtime.enter();
            taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).start().unwrap()
        };
        App { runtime: Some(runtime), agent: Some(agent) }
    }

    fn addr(&self) -> SocketAddr {
        self.agent.as_ref().and_then(|a| a.local_addr()).unwrap()
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().unwrap()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        drop(self.agent.take());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut res = agent.get(format!("http://{addr}{path}")).call().expect("request");
    let status = res.status().as_u16();
    (status, res.body_mut().with_config().limit(256 << 20).read_to_vec().expect("body"))
}

fn get_ok(addr: SocketAddr, path: &str) -> Vec<u8> {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    body
}

fn profile(body: &[u8]) -> Profile {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut raw).expect("gzip");
    Profile::decode(raw.as_slice()).expect("profile.proto")
}

fn json(addr: SocketAddr) -> serde_json::Value {
    serde_json::from_slice(&get_ok(addr, "/debug/taskscope/api/snapshot")).expect("json")
}

/// The snapshot once `ready(heap)` holds. Allocation sites appear once the
/// agent's heap thread has symbolized their stacks, which a request asks
/// for but does not wait for.
fn json_when(addr: SocketAddr, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let snapshot = json(addr);
        if ready(&snapshot["heap"]) {
            return snapshot;
        }
        assert!(Instant::now() < deadline, "the heap section never got ready: {}", snapshot["heap"]);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn s(p: &Profile, i: i64) -> &str {
    &p.string_table[i as usize]
}

/// Each sample as (function names leaf first, labels, values).
type Sample = (Vec<String>, HashMap<String, String>, Vec<i64>);

fn samples(p: &Profile) -> Vec<Sample> {
    let functions: HashMap<u64, &str> = p.function.iter().map(|f| (f.id, s(p, f.name))).collect();
    let locations: HashMap<u64, Vec<String>> = p
        .location
        .iter()
        .map(|l| (l.id, l.line.iter().map(|line| functions[&line.function_id].to_string()).collect()))
        .collect();
    p.sample
        .iter()
        .map(|x| {
            let names = x.location_id.iter().flat_map(|id| locations[id].clone()).collect();
            let labels = x.label.iter().map(|l| (s(p, l.key).to_string(), s(p, l.str).to_string())).collect();
            (names, labels, x.value.clone())
        })
        .collect()
}

/// The sum of value `index` over samples whose stack has `function` or one
/// of its closures. (Optimized builds turn calls in tail position into
/// jumps, which leave no return address: a stack may show a closure of a
/// function and not the function itself.)
fn sum_for(p: &Profile, function: &str, index: usize) -> i64 {
    samples(p)
        .iter()
        .filter(|(names, _, _)| names.iter().any(|n| n.contains(function)))
        .map(|x| x.2[index])
        .sum()
}

const ALLOC_OBJECTS: usize = 0;
const ALLOC_SPACE: usize = 1;
const INUSE_OBJECTS: usize = 2;
const INUSE_SPACE: usize = 3;

/// The standard deviation of the byte estimate of `n` blocks of `size`
/// sampled every `rate` bytes: sqrt(n s^2 (1-p)/p).
fn sigma(n: usize, size: usize, rate: usize) -> f64 {
    let p = 1.0 - (-(size as f64) / rate as f64).exp();
    (n as f64 * (size as f64).powi(2) * (1.0 - p) / p).sqrt()
}

#[inline(never)]
fn heap_test_allocate_known(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![i as u8 | 1; size]).collect()
}

#[inline(never)]
fn heap_test_grow_vec(bytes: usize) -> Vec<u64> {
    let mut v = Vec::new();
    for i in 0..bytes / 8 {
        v.push(i as u64);
    }
    v
}

#[test]
fn known_allocations_are_estimated_attributed_and_freed() {
    const RATE: usize = 32 << 10;
    if !in_child(
        "known_allocations_are_estimated_attributed_and_freed",
        &[("TASKSCOPE_HEAP_SAMPLE_BYTES", "32768")],
    ) {
        return;
    }
    let app = App::start();
    let addr = app.addr();
    let (n, size) = (4096, 16 << 10);
    let known = heap_test_allocate_known(n, size);

    // 32 MiB allocated in a task, kept by it until told to stop.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, is_ready) = std::sync::mpsc::channel();
    let task_line = line!() + 1;
    let task = app.rt().spawn(async move {
        let kept = heap_test_allocate_known(2048, 16 << 10);
        ready.send(()).unwrap();
        let _ = stopped.await;
        drop(kept);
    });
    is_ready.recv().unwrap();

    let heap = profile(&get_ok(addr, "/debug/pprof/heap"));
    assert_eq!(s(&heap, heap.default_sample_type), "inuse_space");
    assert_eq!(heap.period, RATE as i64);
    let types: Vec<_> = heap.sample_type.iter().map(|t| (s(&heap, t.ty), s(&heap, t.unit))).collect();
    assert_eq!(
        types,
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes")
        ]
    );
    let period = heap.period_type.as_ref().unwrap();
    assert_eq!((s(&heap, period.ty), s(&heap, period.unit)), ("space", "bytes"));

    // Outside any task: the 64 MiB plus the outer Vec's 96 KiB, within 6
    // standard deviations (a false failure has probability 2e-9).
    let tagged = |x: &Sample| {
        x.1.get("task_site").is_some_and(|site| site.contains(&format!("heap_alloc.rs:{task_line}:")))
    };
    let untagged_known: i64 = samples(&heap)
        .iter()
        .filter(|x| !tagged(x) && x.0.iter().any(|f| f.contains("heap_test_allocate_known")))
        .map(|x| x.2[INUSE_SPACE])
        .sum();
    let expected = (n * size + n * 24) as f64;
    let tolerance = 6.0 * sigma(n, size, RATE) + 6.0 * sigma(1, n * 24, RATE);
    assert!(
        (untagged_known as f64 - expected).abs() < tolerance,
        "estimated {untagged_known} bytes in use, expected {expected} ± {tolerance}"
    );

    // In the task: labelled with its spawn site, and in the JSON per site
    // and per task.
    let in_task: i64 = samples(&heap).iter().filter(|x| tagged(x)).map(|x| x.2[INUSE_SPACE]).sum();
    let expected_task = (2048 * size + 2048 * 24) as f64;
    let tolerance_task = 6.0 * sigma(2048, size, RATE) + 6.0 * sigma(1, 2048 * 24, RATE);
    assert!((in_task as f64 - expected_task).abs() < tolerance_task, "{in_task} in the task");
    let snapshot = json_when(addr, |h| h["symbolizing"] == false);
    let h = &snapshot["heap"];
    assert_eq!(h["enabled"], true);
    assert_eq!(snapshot["agent"]["features"]["heap"], true);
    let site = h["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["location"].as_str().unwrap().contains(&format!("heap_alloc.rs:{task_line}:")))
        .unwrap_or_else(|| panic!("no heap entry for the task's site: {h}"));
    assert!((site["inuse_bytes"].as_f64().unwrap() - expected_task).abs() < tolerance_task, "{site}");
    let t = h["tasks"].as_array().unwrap().iter().find(|x| x["site"] == site["site"]).expect("the task");
    assert!(t["id"].as_u64().unwrap() > 0 && t["inuse_bytes"].as_u64().unwrap() > 0, "{t}");
    let allocation_site = h["allocation_sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["function"].as_str().unwrap().contains("heap_test_allocate_known"))
        .unwrap_or_else(|| panic!("no allocation site for heap_test_allocate_known: {h}"));
    assert!(allocation_site["location"].as_str().unwrap().contains("heap_alloc.rs:"), "{allocation_site}");

    // Frees of sampled blocks are recognized: nothing of it stays in use,
    // while the allocs profile remembers it.
    drop(known);
    stop.send(()).unwrap();
    app.rt().block_on(task).unwrap();
    let heap = profile(&get_ok(addr, "/debug/pprof/heap"));
    assert_eq!(sum_for(&heap, "heap_test_allocate_known", INUSE_SPACE), 0);
    assert_eq!(sum_for(&heap, "heap_test_allocate_known", INUSE_OBJECTS), 0);
    let allocs = profile(&get_ok(addr, "/debug/pprof/allocs"));
    assert_eq!(s(&allocs, allocs.default_sample_type), "alloc_space");
    let allocated = sum_for(&allocs, "heap_test_allocate_known", ALLOC_SPACE) as f64;
    let expected_all = expected + expected_task;
    assert!((allocated - expected_all).abs() < tolerance + tolerance_task, "{allocated} allocated");
    let objects = sum_for(&allocs, "heap_test_allocate_known", ALLOC_OBJECTS) as f64;
    assert!(objects > 3000.0 && objects < 12000.0, "{objects} objects for 6146 allocations");

    // Vec growth goes through realloc: a grown Vec is in use once, and
    // nothing once dropped.
    let grown = heap_test_grow_vec(32 << 20);
    let heap = profile(&get_ok(addr, "/debug/pprof/heap"));
    let inuse = sum_for(&heap, "heap_test_grow_vec", INUSE_SPACE) as f64;
    assert!((inuse - grown.capacity() as f64 * 8.0).abs() < 0.05 * (32 << 20) as f64, "{inuse} for 32 MiB");
    drop(grown);
    let heap = profile(&get_ok(addr, "/debug/pprof/heap"));
    assert_eq!(sum_for(&heap, "heap_test_grow_vec", INUSE_SPACE), 0);
    assert!(sum_for(&heap, "heap_test_grow_vec", ALLOC_SPACE) > 32 << 20);
}

#[test]
fn exact_totals_count_every_allocation_and_free() {
    let app = App::start();
    let addr = app.addr();
    let before = json(addr)["heap"]["totals"].clone();
    let kept: Vec<Box<[u8; 1000]>> = (0..10_000).map(|_| Box::new([1u8; 1000])).collect();
    let middle = json(addr)["heap"]["totals"].clone();
    drop(kept);
    let after = json(addr)["heap"]["totals"].clone();
    let d = |a: &serde_json::Value, b: &serde_json::Value, k: &str| {
        a[k].as_u64().unwrap() - b[k].as_u64().unwrap()
    };
    // Other threads (the agent's) allocate too: at least ours are there.
    assert!(d(&middle, &before, "allocated_objects") >= 10_000);
    assert!(d(&middle, &before, "allocated_bytes") >= 10_000_000);
    assert!(d(&after, &middle, "freed_objects") >= 10_000);
    assert!(d(&after, &middle, "freed_bytes") >= 10_000_000);
    // And allocations before main were counted.
    assert!(EARLY.load(Ordering::Relaxed) != 0);
    assert!(after["allocated_bytes"].as_u64().unwrap() >= EARLY_BYTES as u64);
    assert!(after["inuse_bytes"].as_u64().unwrap() >= EARLY_BYTES as u64, "{after}");
}

#[test]
fn with_sampling_off_only_the_totals_are_kept() {
    if !in_child("with_sampling_off_only_the_totals_are_kept", &[("TASKSCOPE_HEAP_SAMPLE_BYTES", "0")]) {
        return;
    }
    let app = App::start();
    let addr = app.addr();
    let kept = heap_test_allocate_known(1000, 64 << 10);
    let heap = profile(&get_ok(addr, "/debug/pprof/heap"));
    // (Allocations before taskscope's constructor read the variable may
    // have been sampled at the default rate; none since.)
    assert_eq!(sum_for(&heap, "heap_test_allocate_known", ALLOC_OBJECTS), 0);
    assert!(heap.comment.iter().any(|&c| s(&heap, c).contains("sampling is off")));
    let h = json(addr)["heap"].clone();
    assert_eq!(h["sample_bytes"], 0);
    assert!(h["problem"].as_str().unwrap().contains("TASKSCOPE_HEAP_SAMPLE_BYTES=0"), "{h}");
    assert!(h["totals"]["inuse_bytes"].as_u64().unwrap() >= 64_000_000, "{h}");
    drop(kept);
}

/// `go tool pprof -top` on `body`; `None` when Go is not installed (which
/// fails the test when `CI` is set).
fn go_pprof_top(name: &str, body: &[u8], sample_index: &str) -> Option<String> {
    if Command::new("go").arg("version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "go is not installed and CI is set: install it (apt-get install -y golang-go)"
        );
        eprintln!("skipped go tool pprof checks: go is not installed (apt-get install -y golang-go)");
        return None;
    }
    let path = std::env::temp_dir().join(format!("taskscope-heap-{}-{name}.pb.gz", std::process::id()));
    std::fs::write(&path, body).unwrap();
    let out = Command::new("go")
        .args(["tool", "pprof", "-top", &format!("-sample_index={sample_index}")])
        .arg(&path)
        .output()
        .expect("go tool pprof");
    let _ = std::fs::remove_file(&path);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "go tool pprof -top failed on {name}:\n{stderr}\n{stdout}");
    Some(format!("{stderr}{stdout}"))
}

#[inline(never)]
fn heap_test_during_delta(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![i as u8; 64 << 10]).collect()
}

#[test]
fn go_tool_pprof_reads_heap_allocs_and_a_delta() {
    let app = App::start();
    let addr = app.addr();
    let kept = heap_test_allocate_known(2048, 32 << 10);
    for (name, path, index) in
        [("heap", "/debug/pprof/heap", "inuse_space"), ("allocs", "/debug/pprof/allocs", "alloc_space")]
    {
        let body = get_ok(addr, path);
        let Some(top) = go_pprof_top(name, &body, index) else { return };
        assert!(top.contains("heap_test_allocate_known"), "{name}:\n{top}");
        assert!(top.contains(&format!("Type: {index}")), "{name}:\n{top}");
    }
    // A delta over 1 s during which 64 MiB are allocated.
    let during = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        heap_test_during_delta(1024)
    });
    let started = Instant::now();
    let (status, body) = get(addr, "/debug/pprof/heap?seconds=1");
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_secs(1));
    let delta = profile(&body);
    assert!(sum_for(&delta, "heap_test_during_delta", INUSE_SPACE) > 16 << 20);
    assert_eq!(sum_for(&delta, "heap_test_allocate_known", ALLOC_SPACE), 0, "allocated before the delta");
    if let Some(top) = go_pprof_top("delta", &body, "inuse_space") {
        assert!(top.contains("heap_test_during_delta"), "{top}");
    }
    drop(during.join().unwrap());
    drop(kept);

    // Bad parameters get a 400 with a one-line reason.
    for (bad, why) in [
        ("/debug/pprof/heap?seconds=0", "from 1 to 600"),
        ("/debug/pprof/allocs?seconds=abc", "from 1 to 600"),
        ("/debug/pprof/heap?seconds=601", "from 1 to 600"),
        ("/debug/pprof/heap?seconds=1&debug=1", "seconds and debug params are incompatible"),
        ("/debug/pprof/heap/flamegraph?sample=bytes", "want one of inuse_space"),
    ] {
        let (status, body) = get(addr, bad);
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains(why) && body.lines().count() == 1, "{bad}: {body}");
    }
}

#[test]
fn text_and_flamegraph_show_the_allocating_functions() {
    let app = App::start();
    let addr = app.addr();
    let kept = heap_test_allocate_known(2048, 32 << 10);
    let text = String::from_utf8(get_ok(addr, "/debug/pprof/heap?debug=1")).unwrap();
    assert!(text.starts_with("heap profile: "), "{}", &text[..200.min(text.len())]);
    assert!(text.contains("@ heap/1048576\n"), "{}", &text[..200.min(text.len())]);
    assert!(text.contains("heap_test_allocate_known\ttests/heap_alloc.rs:"), "{text}");
    assert!(text.contains("# taskscope.HeapStats\n"), "{text}");
    for sample in ["", "?sample=alloc_space", "?sample=inuse_objects", "?sample=alloc_objects"] {
        let (status, svg) = get(addr, &format!("/debug/pprof/heap/flamegraph{sample}"));
        let svg = String::from_utf8(svg).unwrap();
        assert_eq!(status, 200);
        assert!(svg.starts_with("<?xml") && svg.contains("heap_test_allocate_known"), "{sample}");
    }
    let index = String::from_utf8(get_ok(addr, "/debug/pprof/")).unwrap();
    assert!(index.contains("href='heap?debug=1'>heap</a>") && index.contains("heap/flamegraph"), "{index}");
    drop(kept);
}

static GROW_LINE: AtomicU32 = AtomicU32::new(0);
static PLATEAU_LINE: AtomicU32 = AtomicU32::new(0);

#[test]
fn a_growing_cache_is_found_and_a_plateau_is_not() {
    let env = [("TASKSCOPE_HEAP_SAMPLE_BYTES", "65536"), ("TASKSCOPE_HEAP_GROWTH_WINDOW", "3s")];
    if !in_child("a_growing_cache_is_found_and_a_plateau_is_not", &env) {
        return;
    }
    let app = App::start();
    let addr = app.addr();
    let stop = Arc::new(AtomicBool::new(false));
    const CHUNK: usize = 512 << 10;
    let growing = {
        let stop = stop.clone();
        app.rt().spawn(async move {
            let mut cache = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                GROW_LINE.store(line!() + 1, Ordering::Relaxed);
                cache.push(vec![1u8; CHUNK]);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            cache.len()
        })
    };
    let plateau = {
        let stop = stop.clone();
        app.rt().spawn(async move {
            let mut cache = std::collections::VecDeque::new();
            let mut i = 0u8;
            while !stop.load(Ordering::Relaxed) {
                i = i.wrapping_add(1);
                PLATEAU_LINE.store(line!() + 1, Ordering::Relaxed);
                cache.push_back(vec![i; CHUNK]);
                if cache.len() > 32 {
                    cache.pop_front();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    };
    // Ask for allocation sites now, so that the agent symbolizes meanwhile.
    json(addr);
    std::thread::sleep(Duration::from_millis(4_500));
    let grow_at = format!("heap_alloc.rs:{}:", GROW_LINE.load(Ordering::Relaxed));
    let snapshot = json_when(addr, |h| {
        h["growth"].as_array().unwrap().iter().any(|g| g["location"].as_str().unwrap().contains(&grow_at))
    });
    // While it still grows: the finding on the text page and in /metrics.
    let text = String::from_utf8(get_ok(addr, "/debug/taskscope/findings")).unwrap();
    let metrics = String::from_utf8(get_ok(addr, "/metrics")).unwrap();
    stop.store(true, Ordering::Relaxed);
    let h = snapshot["heap"].clone();
    let grown = app.rt().block_on(growing).unwrap();
    app.rt().block_on(plateau).unwrap();

    let growth = h["growth"].as_array().unwrap();
    let plateau_at = format!("heap_alloc.rs:{}:", PLATEAU_LINE.load(Ordering::Relaxed));
    let found: Vec<&str> = growth.iter().map(|g| g["location"].as_str().unwrap()).collect();
    assert!(found.iter().any(|l| l.contains(&grow_at)), "{grow_at} not in {found:?} ({grown} chunks): {h}");
    assert!(!found.iter().any(|l| l.contains(&plateau_at)), "the plateau was flagged: {found:?}");
    let g = growth.iter().find(|g| g["location"].as_str().unwrap().contains(&grow_at)).unwrap();
    // 512 KiB every 50 ms or so: several MiB/s.
    let rate = g["rate_bytes_per_sec"].as_f64().unwrap();
    assert!(rate > 2.0 * (1 << 20) as f64 && rate < 20.0 * (1 << 20) as f64, "{g}");
    assert_eq!(h["growth_window_ms"], 3000);

    // The growing site is a `heap_growth` finding, the plateau is not.
    let findings: Vec<&serde_json::Value> =
        snapshot["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == "heap_growth").collect();
    let f = findings
        .iter()
        .find(|f| f["location"].as_str().unwrap().contains(&grow_at))
        .unwrap_or_else(|| panic!("no heap_growth finding at {grow_at}: {findings:#?}"));
    assert_eq!(f["severity"], "warning");
    assert!(f["task_ids"].as_array().unwrap().is_empty(), "{f}");
    assert!(f["message"].as_str().unwrap().contains("/s) and is still growing"), "{f}");
    assert_eq!(f["evidence"]["rate_bytes_per_sec"], g["rate_bytes_per_sec"]);
    assert!(!findings.iter().any(|f| f["location"].as_str().unwrap().contains(&plateau_at)), "{findings:#?}");
    assert!(text.contains("warning heap_growth at ") && text.contains(&grow_at), "{text}");
    let count = metrics
        .lines()
        .find_map(|l| l.strip_prefix("taskscope_findings{kind=\"heap_growth\",severity=\"warning\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(count.is_some_and(|n| n >= 1), "{count:?} in:\n{metrics}");
}

#[inline(never)]
fn heap_test_churn(seed: u64) -> usize {
    let mut x = seed | 1;
    let mut kept = Vec::new();
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        kept.push(vec![0u8; (x % 20_000) as usize + 1]);
        // Grown by realloc: sampled blocks move, and others take their
        // place, on this and other threads.
        let mut grown = Vec::new();
        for i in 0..(x % 3_000) {
            grown.push(i as u32);
        }
        kept.push(vec![0u8; grown.len() % 7 + 1]);
    }
    kept.iter().map(Vec::len).sum()
}

#[test]
fn heap_sampling_task_dumps_and_a_cpu_profile_run_together_without_deadlock() {
    // Sampling every 256 bytes: nearly every allocation takes the sampled
    // path (a stack walk and table inserts), so SIGPROF lands inside it all
    // the time. A deadlock hangs the child, which fails the test.
    if !in_child(
        "heap_sampling_task_dumps_and_a_cpu_profile_run_together_without_deadlock",
        &[("TASKSCOPE_HEAP_SAMPLE_BYTES", "256")],
    ) {
        return;
    }
    let app = App::start();
    let addr = app.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..50)
        .map(|seed| {
            let stop = stop.clone();
            app.rt().spawn(async move {
                let mut total = 0;
                while !stop.load(Ordering::Relaxed) {
                    total += heap_test_churn(seed);
                    tokio::task::yield_now().await;
                }
                total
            })
        })
        .collect();
    let has_cpu = get(addr, "/debug/pprof/profile?seconds=1").0 == 200;
    assert!(has_cpu || !cfg!(target_os = "linux"), "the CPU profiler runs on Linux");
    let cpu = has_cpu.then(|| std::thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=3")));
    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_secs(4) {
        for path in [
            "/debug/pprof/tasks?debug=2",
            "/debug/pprof/heap",
            "/debug/pprof/heap?debug=1",
            "/debug/pprof/allocs",
            "/debug/taskscope/api/snapshot",
        ] {
            assert_eq!(get(addr, path).0, 200, "{path}");
            requests += 1;
        }
    }
    if let Some(cpu) = cpu {
        let (status, body) = cpu.join().unwrap();
        assert_eq!(status, 200);
        assert!(!profile(&body).sample.is_empty(), "the CPU profile has samples");
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(app.rt().block_on(w).unwrap() > 0);
    }
    assert!(requests >= 5);
    let h = json(addr)["heap"].clone();
    assert!(h["sampler"]["samples"].as_u64().unwrap() > 1000, "{h}");
}

#[test]
fn a_forked_child_can_allocate_and_sample() {
    if !in_child("a_forked_child_can_allocate_and_sample", &[("TASKSCOPE_HEAP_SAMPLE_BYTES", "4096")]) {
        return;
    }
    // Threads that sample all the time while the fork happens.
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|seed| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    heap_test_churn(seed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: the child only allocates, frees and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut total = 0;
        for seed in 0..200 {
            total += heap_test_churn(seed);
        }
        // SAFETY: leaves the child without running the parent's atexit work.
        unsafe { libc::_exit(if total > 0 { 0 } else { 1 }) };
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: kills our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the forked child hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
}

/// Allocates and frees at thread exit, after the allocator's own
/// thread-local state may already be gone.
struct AllocatesAtExit;

impl Drop for AllocatesAtExit {
    fn drop(&mut self) {
        let kept: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; 100 + i * 37]).collect();
        std::hint::black_box(&kept);
    }
}

thread_local! {
    static AT_EXIT: AllocatesAtExit = const { AllocatesAtExit };
}

#[test]
fn threads_that_allocate_while_they_exit_keep_the_totals_exact() {
    // Sampling every 256 bytes: nearly every allocation takes the sampled
    // path, thread-local destructors included.
    if !in_child(
        "threads_that_allocate_while_they_exit_keep_the_totals_exact",
        &[("TASKSCOPE_HEAP_SAMPLE_BYTES", "256")],
    ) {
        return;
    }
    let app = App::start();
    let addr = app.addr();
    // The exact totals over a window, from a delta profile's comment: read
    // without symbolizing anything first. (A snapshot would have the agent's
    // heap thread read the binary's debug info meanwhile: megabytes that
    // are the agent's own, rightly counted, and would drown the check.)
    const WINDOW: u64 = 30;
    let window = std::thread::spawn(move || get(addr, &format!("/debug/pprof/allocs?seconds={WINDOW}")));
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    // More threads than the allocator has per-thread slots (4096), 50 at a
    // time, so that slots are handed on from exited threads.
    let threads = 5_000;
    for wave in 0..threads / 50 {
        let batch: Vec<_> = (0..50u64)
            .map(|i| {
                std::thread::spawn(move || {
                    AT_EXIT.with(|_| {});
                    let kept: Vec<Vec<u8>> = (0..64)
                        .map(|k| vec![k as u8; ((wave * 50 + i) * 31 + k * 97) as usize % 2_000 + 1])
                        .collect();
                    kept.len()
                })
            })
            .collect();
        for t in batch {
            assert!(t.join().unwrap() > 0);
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(WINDOW - 2), "the threads took {took:?}, longer than the window");
    let (status, body) = window.join().unwrap();
    assert_eq!(status, 200);
    let p = profile(&body);
    let totals = p
        .comment
        .iter()
        .map(|&c| s(&p, c))
        .find(|c| c.starts_with("exact totals: "))
        .unwrap_or_else(|| panic!("no totals in {:?}", p.comment))
        .to_string();
    // "exact totals: allocated A bytes in B objects, freed C bytes in D objects, ..."
    let numbers: Vec<i64> =
        totals.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    let (allocated_bytes, allocated, freed_bytes, freed) = (numbers[0], numbers[1], numbers[2], numbers[3]);
    assert!(
        allocated >= (threads * (64 + 50)) as i64,
        "{allocated} allocations counted for {threads} threads"
    );
    assert!(freed >= (threads * (64 + 50)) as i64, "{freed} frees counted");
    // Everything the threads allocated was freed: over the window, as many
    // bytes were freed as allocated, give or take the agent's own work.
    let grew = allocated_bytes - freed_bytes;
    assert!(grew.abs() < 1 << 20, "in use moved by {grew} bytes over the window: {totals}");
    assert!((allocated - freed).abs() < 1_000, "{allocated} allocations but {freed} frees: {totals}");
}
