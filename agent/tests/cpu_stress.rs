//! A CPU profile under load: while it runs, the app spawns thousands of short
//! tasks and a client keeps asking for task dumps and snapshots. Every
//! request must complete, the app must keep making progress, and no thread
//! may panic: the SIGPROF handler takes no locks, so nothing it interrupts
//! (the heap sampler in the allocator included) can wedge it.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pprof::protos::{Message, Profile};

/// The heap sampler runs too: it walks stacks inside the allocator while
/// SIGPROF lands anywhere, in the allocator included.
#[global_allocator]
static GLOBAL: taskscope::Allocator = taskscope::Allocator::system();

fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut res = agent.get(format!("http://{addr}{path}")).call().expect("request");
    let status = res.status().as_u16();
    (status, res.body_mut().with_config().limit(256 << 20).read_to_vec().expect("body"))
}

#[inline(never)]
fn stress_test_task_work(seed: u64) -> u64 {
    let (mut x, mut i) = (seed | 1, 0u32);
    while i < 2_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        i += 1;
    }
    x
}

/// Counts panics on every thread (the hooks run on the runtime's workers).
fn record_panics() -> Arc<Mutex<Vec<String>>> {
    let panics = Arc::new(Mutex::new(Vec::new()));
    let seen = panics.clone();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.lock().unwrap_or_else(|e| e.into_inner()).push(info.to_string());
        default(info);
    }));
    panics
}

#[test]
fn a_profile_task_dumps_and_many_spawns_all_complete_together() {
    let panics = record_panics();
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2).enable_all();
    taskscope::instrument(&mut b);
    let runtime = b.build().unwrap();
    let agent = {
        let _enter = runtime.enter();
        taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).start().unwrap()
    };
    let addr = agent.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let finished_tasks = Arc::new(AtomicU64::new(0));

    // Long-lived tasks parked on a channel, for the dumps to list.
    let (release, parked) = tokio::sync::watch::channel(());
    for _ in 0..500 {
        let mut parked = parked.clone();
        runtime.spawn(async move {
            let _ = parked.changed().await;
        });
    }
    // A spawner: waves of short tasks that compute, sleep and finish.
    let spawner = {
        let (stop, finished) = (stop.clone(), finished_tasks.clone());
        runtime.spawn(async move {
            let mut wave = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..200 {
                    let finished = finished.clone();
                    tokio::spawn(async move {
                        std::hint::black_box(stress_test_task_work(wave ^ i));
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        tokio::task::yield_now().await;
                        finished.fetch_add(1, Ordering::Relaxed);
                    });
                }
                wave += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let started = Instant::now();
    let profile = std::thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=3"));
    let dumper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut answered = Vec::new();
            let paths = [
                "/debug/pprof/tasks?debug=2",
                "/debug/pprof/goroutine",
                "/debug/taskscope/api/snapshot",
                "/debug/pprof/heap",
                "/debug/pprof/allocs?debug=1",
            ];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let path = paths[i % paths.len()];
                let (status, body) = get(addr, path);
                answered.push((path, status, body.len()));
                i += 1;
            }
            answered
        })
    };

    let (status, body) = profile.join().unwrap();
    let took = started.elapsed();
    let finished_during_profile = finished_tasks.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let answered = dumper.join().unwrap();
    let _ = release.send(());
    runtime.block_on(spawner).unwrap();

    eprintln!(
        "profile in {took:?}; {} dumps answered; {finished_during_profile} short tasks finished meanwhile",
        answered.len()
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(took < Duration::from_secs(20), "the profile took {took:?}");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut raw).unwrap();
    let p = Profile::decode(&raw[..]).unwrap();
    let samples: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    assert!(samples > 0, "an empty profile under load");

    assert!(answered.len() >= 6, "only {} dumps completed during a 3 s profile", answered.len());
    for (path, status, len) in &answered {
        assert_eq!(*status, 200, "{path}");
        assert!(*len > 0, "{path}");
    }
    assert!(
        finished_during_profile >= 1_000,
        "the app made little progress: {finished_during_profile} tasks"
    );

    // Once done, another profile (here a flamegraph) runs fine.
    let (status, svg) = get(addr, "/debug/pprof/flamegraph?seconds=1");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&svg).contains("</svg>"));

    drop(agent);
    runtime.shutdown_timeout(Duration::from_secs(5));
    let panics = panics.lock().unwrap_or_else(|e| e.into_inner());
    assert!(panics.is_empty(), "threads panicked during the run: {panics:#?}");
}
