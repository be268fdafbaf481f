//! Run with: `cargo run --release -p soak -- --minutes 10`
//!
//! A soak of the agent: an app that spawns and completes tasks as fast as
//! two workers allow (millions over the run), with taskscope's sampling
//! allocator installed and a client asking for task dumps, snapshots and
//! heap profiles all along. Every `--every` seconds it prints the process's
//! resident memory, its exact heap in use, and the app's throughput; at the
//! end, the growth from the end of the warm-up (the first minute, or half of
//! a shorter run) to the last report. The agent's memory is bounded by its
//! caps, so after warm-up the curve must stay flat.
//!
//! `--stress` adds CPU profiles and flamegraphs back to back, heap deltas,
//! and three clients looping over every other endpoint, all at once, to
//! check that nothing deadlocks or crashes and to see what it costs the
//! app's throughput; with `--alternate` the stress clients pause every other
//! report interval, so that the throughput with and without them is
//! compared under the same machine load. `--quick` is a 30-second run for CI;
//! `--max-growth-mib N` makes the run fail when memory grew by more than N
//! MiB after warm-up, and any failed request fails it too.

mod app;
mod clients;

use std::time::{Duration, Instant};

use clients::Clients;

#[global_allocator]
static GLOBAL: taskscope::Allocator = taskscope::Allocator::system();

#[derive(Debug)]
struct Options {
    duration: Duration,
    every: Duration,
    stress: bool,
    alternate: bool,
    max_growth_mib: Option<f64>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        duration: Duration::from_secs(600),
        every: Duration::from_secs(30),
        stress: false,
        alternate: false,
        max_growth_mib: None,
    };
    let mut every = None;
    let mut args = std::env::args().skip(1);
    let number = |name: &str, v: Option<String>| -> Result<f64, String> {
        v.as_deref()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|n| *n > 0.0)
            .ok_or_else(|| format!("{name} takes a positive number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--minutes" => o.duration = Duration::from_secs_f64(number(&arg, args.next())? * 60.0),
            "--seconds" => o.duration = Duration::from_secs_f64(number(&arg, args.next())?),
            "--every" => every = Some(Duration::from_secs_f64(number(&arg, args.next())?)),
            "--quick" => o.duration = Duration::from_secs(30),
            "--stress" => o.stress = true,
            "--alternate" => o.alternate = true,
            "--max-growth-mib" => o.max_growth_mib = Some(number(&arg, args.next())?),
            "--help" | "-h" => {
                return Err("usage: soak [--minutes N | --seconds N | --quick] [--stress [--alternate]] [--every SECONDS] \
                            [--max-growth-mib N]"
                    .into())
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    o.every = every.unwrap_or(if o.duration <= Duration::from_secs(60) {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(30)
    });
    Ok(o)
}

/// One line of the curve.
#[derive(Debug, Clone, Copy)]
struct Reading {
    secs: f64,
    rss_mib: f64,
    anon_mib: f64,
    heap_mib: f64,
    /// Freed memory the C allocator holds on to (glibc only; NaN elsewhere).
    free_mib: f64,
    completed: u64,
}

fn main() {
    let options = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    taskscope::instrument(&mut builder);
    let runtime = builder.build().expect("the runtime");
    let agent = {
        let _enter = runtime.enter();
        taskscope::Agent::builder().addr("127.0.0.1:0".parse().unwrap()).start().expect("the agent")
    };
    let addr = agent.local_addr().expect("the agent's address");
    let app = app::start(runtime.handle());
    let clients = Clients::start(addr, options.stress);
    println!(
        "soak: {} s{}, agent on http://{addr}/debug/pprof/; reports every {} s",
        options.duration.as_secs(),
        if options.stress { ", with --stress" } else { "" },
        options.every.as_secs_f64()
    );

    let started = Instant::now();
    // Allocator arenas, symbol caches and the tables' touched pages settle
    // in the first minute.
    let warm_up =
        (options.duration / 10).max(options.every).max((options.duration / 2).min(Duration::from_secs(60)));
    let mut readings: Vec<Reading> = Vec::new();
    let mut warm: Option<Reading> = None;
    let mut next = options.every;
    // Tasks completed and seconds, with the stress clients running and not.
    let (mut with, mut without) = ((0u64, 0f64), (0u64, 0f64));
    let mut stressing = options.stress;
    while started.elapsed() < options.duration {
        std::thread::sleep(next.min(options.duration).saturating_sub(started.elapsed()));
        let secs = started.elapsed().as_secs_f64();
        let completed = app.completed();
        let previous = readings.last().map_or((0.0, 0), |r| (r.secs, r.completed));
        let (rss, anon) = rss_mib();
        let r = Reading {
            secs,
            rss_mib: rss,
            anon_mib: anon,
            heap_mib: clients::heap_inuse_mib(addr),
            free_mib: malloc_free_mib(),
            completed,
        };
        let rate = (completed - previous.1) as f64 / (secs - previous.0).max(1e-9);
        let phase = if stressing { &mut with } else { &mut without };
        phase.0 += completed - previous.1;
        phase.1 += secs - previous.0;
        let c = clients.counts();
        println!(
            "soak: t={secs:6.0} s  rss={:7.1} MiB (anon {:7.1})  heap_inuse={:7.1} MiB  malloc_free={:6.1} MiB  \
             tasks_completed={completed:>11} ({rate:8.0}/s)  live={:>6}  requests={:>6}  failed={}",
            r.rss_mib,
            r.anon_mib,
            r.heap_mib,
            r.free_mib,
            app.live(),
            c.ok + c.failed,
            c.failed
        );
        if warm.is_none() && started.elapsed() >= warm_up {
            warm = Some(r);
        }
        readings.push(r);
        next += options.every;
        if options.stress && options.alternate {
            stressing = !stressing;
            clients.pause_stress(!stressing);
        }
    }

    let counts = clients.stop();
    let completed = app.stop(&runtime);
    drop(agent);
    let secs = started.elapsed().as_secs_f64();
    let (first, last) = (warm.unwrap_or(readings[0]), *readings.last().unwrap());
    let peak = readings.iter().map(|r| r.rss_mib).fold(0.0, f64::max);
    let growth = last.rss_mib - first.rss_mib;
    let anon_growth = last.anon_mib - first.anon_mib;
    println!(
        "soak: done after {secs:.0} s: {completed} tasks spawned and completed ({:.0}/s); rss after warm-up \
         (t={:.0} s) {:.1} MiB, at the end {:.1} MiB ({growth:+.1} MiB; anonymous {anon_growth:+.1} MiB), peak \
         {peak:.1} MiB; heap in use {:.1} -> {:.1} MiB; {} requests answered, {} failed",
        completed as f64 / secs,
        first.secs,
        first.rss_mib,
        last.rss_mib,
        first.heap_mib,
        last.heap_mib,
        counts.ok,
        counts.failed,
    );
    if options.stress && options.alternate && without.1 > 0.0 && with.1 > 0.0 {
        let (w, wo) = (with.0 as f64 / with.1, without.0 as f64 / without.1);
        println!(
            "soak: app throughput {w:.0} tasks/s with the stress clients ({:.0} s), {wo:.0} tasks/s without \
             ({:.0} s): {:.2}x",
            with.1,
            without.1,
            w / wo
        );
    }
    for (what, n) in &counts.by_path {
        println!("soak:   {n:>7} x {what}");
    }
    let mut ok = true;
    if counts.failed > 0 {
        println!("soak: FAILED: {} requests failed; the first: {:?}", counts.failed, counts.first_failures);
        ok = false;
    }
    if let Some(max) = options.max_growth_mib {
        if growth > max {
            println!(
                "soak: FAILED: memory grew {growth:.1} MiB after warm-up, more than --max-growth-mib {max}"
            );
            ok = false;
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}

/// Memory freed by the program that the C allocator keeps in its arenas
/// rather than returning to the system (glibc's `mallinfo2().fordblks`), in
/// MiB: resident memory beyond the heap in use, as long as its pages were
/// touched.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn malloc_free_mib() -> f64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    info.fordblks as f64 / (1u64 << 20) as f64
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_free_mib() -> f64 {
    f64::NAN
}

/// The process's resident memory in MiB: in all (`VmRSS`), and the part
/// that is anonymous memory (`RssAnon`: the heap, stacks, tables) rather
/// than pages of mapped files (the binary's code and the debug info that
/// symbolizing reads).
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let read = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (read("VmRSS:"), read("RssAnon:"))
}
