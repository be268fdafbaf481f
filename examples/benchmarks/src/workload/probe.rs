//! What the workloads measure with: the CPU time of all the process's
//! threads, its resident memory, timed HTTP requests to the agent (from a
//! plain OS thread, never the app's runtime), and a 1 ms ticker task whose
//! lateness shows how long the app's workers were stalled.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Error;

/// CPU time used so far by the live threads of this process, in seconds,
/// from each thread's schedstat (nanoseconds). On a shared machine this
/// varies far less than wall time, which also counts waiting for a CPU.
pub fn cpu_secs() -> f64 {
    let Ok(threads) = std::fs::read_dir("/proc/self/task") else { return f64::NAN };
    let ns: u64 = threads
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

/// The CPU time of the calling thread so far, in seconds.
pub fn thread_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

/// One live thread of this process: its id, name and CPU time so far.
#[derive(Debug, Clone)]
pub struct Thread {
    pub tid: u32,
    /// `/proc/self/task/<tid>/comm`: the thread's name, cut to 15 bytes.
    pub comm: String,
    pub cpu_ns: u64,
}

/// Every live thread of this process, from `/proc/self/task/*/{comm,schedstat}`.
pub fn threads() -> Vec<Thread> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    dir.filter_map(|t| {
        let t = t.ok()?;
        let tid = t.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?.trim_end().to_string();
        let schedstat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        let cpu_ns = schedstat.split_whitespace().next()?.parse().ok()?;
        Some(Thread { tid, comm, cpu_ns })
    })
    .collect()
}

/// The current wall-clock time in nanoseconds since the Unix epoch, the
/// clock a pprof profile gives its start in.
pub fn unix_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// VmRSS of this process, in bytes, from /proc/self/status.
pub fn rss_bytes() -> Result<u64, Error> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or("no VmRSS line in /proc/self/status")?;
    Ok(kib * 1024)
}

/// One answered request: how long it took to the last byte, and its body.
#[derive(Debug)]
pub struct Answer {
    pub elapsed: Duration,
    pub body: Vec<u8>,
}

/// GETs `url` and reads the whole body.
pub fn get(url: &str) -> Result<Answer, Error> {
    let client = client();
    let start = Instant::now();
    let mut response = client.get(url).call().map_err(|e| format!("GET {url}: {e}"))?;
    let mut body = Vec::new();
    std::io::copy(&mut response.body_mut().as_reader(), &mut body)?;
    Ok(Answer { elapsed: start.elapsed(), body })
}

/// The probes' HTTP client: a generous timeout, for answers of 1M tasks.
fn client() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(300))).build(),
    )
}

/// A large answer read and dropped as it arrives, as `curl -o /dev/null`
/// does: how long it took to the last byte, its size, and its first and
/// last bytes (to check what it is).
#[derive(Debug)]
pub struct Discarded {
    pub elapsed: Duration,
    pub bytes: u64,
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

/// GETs `url` and reads the whole body, keeping only its ends: storing a
/// 250 MB body would time the client's memory more than the server.
pub fn get_discarding(url: &str) -> Result<Discarded, Error> {
    use std::io::Read;
    let client = client();
    let start = Instant::now();
    let mut response = client.get(url).call().map_err(|e| format!("GET {url}: {e}"))?;
    let mut reader = response.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 20];
    let (mut bytes, mut head, mut tail) = (0u64, Vec::new(), Vec::new());
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < 64 {
            head.extend_from_slice(&buf[..n.min(64 - head.len())]);
        }
        tail.extend_from_slice(&buf[n.saturating_sub(64)..n]);
        tail.drain(..tail.len().saturating_sub(64));
        bytes += n as u64;
    }
    Ok(Discarded { elapsed: start.elapsed(), bytes, head, tail })
}

/// A task that ticks every millisecond and keeps the worst lateness seen.
#[derive(Debug)]
pub struct Ticker {
    worst_us: Arc<AtomicU64>,
}

impl Ticker {
    /// Spawns the ticker on the app's runtime.
    pub fn spawn(rt: &tokio::runtime::Handle) -> Ticker {
        let worst_us = Arc::new(AtomicU64::new(0));
        let worst = worst_us.clone();
        rt.spawn(async move {
            // The default `Burst` behaviour keeps each missed tick's own
            // deadline, so a stall shows as that tick's lateness.
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            loop {
                let deadline = interval.tick().await;
                worst.fetch_max(deadline.elapsed().as_micros() as u64, Relaxed);
            }
        });
        Ticker { worst_us }
    }

    /// The worst lateness since the last call, in milliseconds.
    pub fn take_worst_ms(&self) -> f64 {
        self.worst_us.swap(0, Relaxed) as f64 / 1000.0
    }
}
