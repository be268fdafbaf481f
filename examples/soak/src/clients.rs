//! The clients of the agent's endpoint, each on its own thread: one that
//! asks for a dump, a snapshot or a heap profile twice a second; with
//! `--stress` also a CPU profiler (profiles and flamegraphs back to back), a
//! heap-delta client, and three that loop over every other endpoint without
//! pause. Every answer must be a 200.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The periodic client's round.
const DUMPS: &[&str] = &[
    "/debug/pprof/tasks?debug=1",
    "/debug/taskscope/api/snapshot?limit=100&sort=idle",
    "/debug/pprof/heap",
    "/debug/pprof/tasks?debug=2",
    "/debug/pprof/goroutine",
    "/debug/pprof/allocs",
    "/metrics",
];

/// What the stress clients loop over.
const EVERYTHING: &[&str] = &[
    "/debug/pprof/tasks?debug=2",
    "/debug/taskscope/api/snapshot",
    "/debug/pprof/goroutine",
    "/metrics",
    "/debug/pprof/heap?debug=1",
    "/debug/pprof/allocs",
    "/debug/taskscope/findings",
    "/debug/pprof/",
    "/debug/pprof/heap/flamegraph",
    "/debug/pprof/block",
    "/debug/pprof/mutex",
    "/debug/pprof/tasks?debug=1",
];

const CPU: &[&str] = &["/debug/pprof/profile?seconds=5", "/debug/pprof/flamegraph?seconds=3"];
const HEAP_DELTAS: &[&str] = &["/debug/pprof/heap?seconds=3", "/debug/pprof/allocs?seconds=2"];

/// What the clients got.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
    pub first_failures: Vec<String>,
    pub by_path: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
pub struct Clients {
    stop: Arc<AtomicBool>,
    /// Holds the stress clients (not the periodic one) between requests.
    paused: Arc<AtomicBool>,
    counts: Arc<Mutex<Counts>>,
    threads: Vec<JoinHandle<()>>,
}

impl Clients {
    pub fn start(addr: SocketAddr, stress: bool) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(Counts::default()));
        let mut rounds: Vec<(&'static [&'static str], Duration)> = vec![(DUMPS, Duration::from_millis(500))];
        if stress {
            rounds.push((CPU, Duration::ZERO));
            rounds.push((HEAP_DELTAS, Duration::ZERO));
            rounds.extend([(EVERYTHING, Duration::ZERO); 3]);
        }
        let threads = rounds
            .into_iter()
            .enumerate()
            .map(|(i, (paths, pause))| {
                let (stop, counts) = (stop.clone(), counts.clone());
                // The first client is the periodic one: never paused.
                let paused = if i == 0 { Arc::new(AtomicBool::new(false)) } else { paused.clone() };
                std::thread::Builder::new()
                    .name(format!("soak-client-{i}"))
                    .spawn(move || run(addr, paths, pause, i, &stop, &paused, &counts))
                    .expect("a client thread")
            })
            .collect();
        Clients { stop, paused, counts, threads }
    }

    /// Pauses or resumes the stress clients (requests in flight complete).
    pub fn pause_stress(&self, paused: bool) {
        self.paused.store(paused, Relaxed);
    }

    pub fn counts(&self) -> Counts {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the clients once their requests in flight are answered.
    pub fn stop(mut self) -> Counts {
        self.stop.store(true, Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        self.counts()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

fn run(
    addr: SocketAddr,
    paths: &'static [&'static str],
    pause: Duration,
    offset: usize,
    stop: &AtomicBool,
    paused: &AtomicBool,
    counts: &Mutex<Counts>,
) {
    let agent = agent();
    // Start the clients on different paths.
    let mut i = offset;
    while !stop.load(Relaxed) {
        if paused.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let path = paths[i % paths.len()];
        i += 1;
        let outcome = match agent.get(format!("http://{addr}{path}")).call() {
            Ok(mut res) => {
                let status = res.status().as_u16();
                let body = read_discarding(&mut res.body_mut().as_reader());
                match (status, body) {
                    (200, Ok(_)) => Ok(()),
                    (status, Ok(body)) => Err(format!(
                        "{path}: {status} {}",
                        String::from_utf8_lossy(&body).lines().next().unwrap_or("")
                    )),
                    (status, Err(e)) => Err(format!("{path}: {status}, then reading the body: {e}")),
                }
            }
            Err(e) => Err(format!("{path}: {e}")),
        };
        let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.by_path.entry(path).or_default() += 1;
        match outcome {
            Ok(()) => c.ok += 1,
            Err(e) => {
                c.failed += 1;
                if c.first_failures.len() < 5 {
                    c.first_failures.push(e);
                }
            }
        }
        drop(c);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

/// Reads a whole answer through a small buffer and keeps its first bytes
/// only (enough for an error's reason): the soak measures the agent's
/// memory, and its own clients are in the same process.
fn read_discarding(body: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut buf = [0u8; 16 * 1024];
    let mut head = Vec::new();
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            return Ok(head);
        }
        if head.len() < 256 {
            head.extend_from_slice(&buf[..n.min(256 - head.len())]);
        }
    }
}

/// The heap in use, exactly (taskscope's allocator counts every byte), in MiB.
pub fn heap_inuse_mib(addr: SocketAddr) -> f64 {
    let read = || -> Option<f64> {
        let mut res =
            agent().get(format!("http://{addr}/debug/taskscope/api/snapshot?limit=0")).call().ok()?;
        let json: serde_json::Value = serde_json::from_slice(&res.body_mut().read_to_vec().ok()?).ok()?;
        Some(json["heap"]["totals"]["inuse_bytes"].as_f64()? / (1u64 << 20) as f64)
    };
    read().unwrap_or(f64::NAN)
}
