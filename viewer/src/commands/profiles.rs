//! The profile commands: `flamegraph` (CPU, SVG), `heap` (in-use heap, SVG)
//! and `pprof` (gzip'd `profile.proto` for go tool pprof, Parca, Pyroscope).
//! A profile that takes time shows its progress on stderr, and what comes
//! back is checked to be what was asked for before it is written.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::ValueEnum;

use super::write_output;
use crate::client::Client;

/// The profiles `taskscope pprof` saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pprof {
    /// CPU profile (takes --seconds, default 30).
    Profile,
    /// In-use heap (sampled).
    Heap,
    /// Every sampled allocation since start.
    Allocs,
    /// Live tasks by spawn site and stack (goroutine/count).
    Tasks,
    /// Empty block profile, as Go scrapers expect.
    Block,
    /// Empty mutex profile, as Go scrapers expect.
    Mutex,
}

impl Pprof {
    fn name(self) -> &'static str {
        match self {
            Pprof::Profile => "profile",
            Pprof::Heap => "heap",
            Pprof::Allocs => "allocs",
            Pprof::Tasks => "tasks",
            Pprof::Block => "block",
            Pprof::Mutex => "mutex",
        }
    }

    pub fn default_file(self) -> String {
        format!("{}.pb.gz", self.name())
    }
}

pub fn flamegraph(client: &Client, seconds: u64, output: &Path) -> Result<u8> {
    let body = with_progress("profiling CPU", seconds, || {
        client.get(&format!("/debug/pprof/flamegraph?seconds={seconds}"), Duration::from_secs(seconds))
    })?;
    ensure_svg(&body.bytes, "/debug/pprof/flamegraph")?;
    write_output(output, &body.bytes, "the CPU flamegraph")
}

pub fn heap(client: &Client, output: &Path) -> Result<u8> {
    let body = client.get("/debug/pprof/heap/flamegraph", Duration::ZERO)?;
    ensure_svg(&body.bytes, "/debug/pprof/heap/flamegraph")?;
    write_output(output, &body.bytes, "the heap flamegraph")
}

pub fn pprof(client: &Client, profile: Pprof, seconds: Option<u64>, output: &Path) -> Result<u8> {
    if output.as_os_str() == "-" && std::io::stdout().is_terminal() {
        bail!("refusing to write a binary profile to a terminal: pass -o FILE or redirect stdout");
    }
    let mut path = format!("/debug/pprof/{}", profile.name());
    match (profile, seconds) {
        (Pprof::Tasks, _) => path.push_str("?debug=0"),
        (Pprof::Profile | Pprof::Heap | Pprof::Allocs, Some(s)) => path.push_str(&format!("?seconds={s}")),
        _ => {}
    }
    // The agent's default CPU profile lasts 30 s, as Go's does.
    let takes = match profile {
        Pprof::Profile => seconds.unwrap_or(30),
        Pprof::Heap | Pprof::Allocs => seconds.unwrap_or(0),
        _ => 0,
    };
    let what = match profile {
        Pprof::Profile => "the CPU profile".to_string(),
        other => format!("the {} profile", other.name()),
    };
    let body =
        with_progress(&format!("recording {what}"), takes, || client.get(&path, Duration::from_secs(takes)))?;
    if !body.bytes.starts_with(&[0x1f, 0x8b]) {
        bail!("GET {path} from {} did not answer with a gzip'd profile", client.url());
    }
    write_output(output, &body.bytes, &what)
}

/// Fails unless `bytes` look like an SVG document.
fn ensure_svg(bytes: &[u8], path: &str) -> Result<()> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]);
    let head = head.trim_start();
    if head.starts_with("<?xml") || head.starts_with("<svg") {
        Ok(())
    } else {
        bail!("GET {path} did not answer with an SVG")
    }
}

/// Runs `request`, which takes about `seconds`, showing progress on stderr:
/// a bar that redraws on a terminal, one line otherwise (CI logs).
fn with_progress<T>(label: &str, seconds: u64, request: impl FnOnce() -> T) -> T {
    if seconds == 0 {
        return request();
    }
    let terminal = std::io::stderr().is_terminal();
    if !terminal {
        eprintln!("taskscope: {label} for {seconds} s");
        return request();
    }
    let (done, finished) = mpsc::channel::<()>();
    let label = label.to_string();
    let bar = std::thread::spawn(move || {
        let start = Instant::now();
        let total = Duration::from_secs(seconds);
        loop {
            let elapsed = start.elapsed();
            eprint!("\r\x1b[2K{}", progress_line(&label, elapsed.min(total), total));
            let _ = std::io::stderr().flush();
            if finished.recv_timeout(Duration::from_millis(200)).is_ok() {
                break;
            }
        }
        eprint!("\r\x1b[2K");
    });
    let result = request();
    let _ = done.send(());
    let _ = bar.join();
    result
}

/// `taskscope: profiling CPU [#######.............] 3/10 s`
fn progress_line(label: &str, elapsed: Duration, total: Duration) -> String {
    const WIDTH: usize = 20;
    let fraction = if total.is_zero() { 1.0 } else { elapsed.as_secs_f64() / total.as_secs_f64() };
    let filled = ((fraction * WIDTH as f64) as usize).min(WIDTH);
    let waiting = if elapsed >= total { " (waiting for the agent)" } else { "" };
    format!(
        "taskscope: {label} [{}{}] {}/{} s{waiting}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        elapsed.as_secs(),
        total.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_fills_with_time() {
        let total = Duration::from_secs(10);
        assert_eq!(progress_line("x", Duration::ZERO, total), "taskscope: x [....................] 0/10 s");
        assert_eq!(
            progress_line("x", Duration::from_secs(5), total),
            "taskscope: x [##########..........] 5/10 s"
        );
        assert!(progress_line("x", total, total).ends_with("10/10 s (waiting for the agent)"));
    }

    #[test]
    fn only_svgs_pass_as_flamegraphs() {
        assert!(ensure_svg(include_bytes!("../../tests/fixtures/cpu.svg"), "/p").is_ok());
        assert!(ensure_svg(b"  <svg xmlns='http://www.w3.org/2000/svg'/>", "/p").is_ok());
        assert!(ensure_svg(b"no samples", "/p").is_err());
        assert_eq!(Pprof::Allocs.default_file(), "allocs.pb.gz");
    }
}
