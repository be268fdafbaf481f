//! Run with: cargo run --release -p alloc-bench
//!
//! The alloc-heavy benchmark of BENCHMARKS.md: the same workload (2 threads
//! × 20,000,000 small boxes, then Vec growth) under
//! - `baseline`: the system allocator;
//! - `off`: `taskscope::Allocator` with sampling off
//!   (`TASKSCOPE_HEAP_SAMPLE_BYTES=0`, exact totals only);
//! - `default`: `taskscope::Allocator` at its default rate (512 KiB);
//! - `16KiB`: one sample per 16 KiB, 32 times the default rate, to measure
//!   what one sample costs;
//! - `disabled`: `taskscope::Allocator` with the agent disabled
//!   (`TASKSCOPE_DISABLE=1`), the `off` mode of BENCHMARKS.md;
//! - with `ALLOC_BENCH_BEFORE=<path>`, the `alloc-workload-taskscope` binary
//!   of another build (say, the commit before a change) at the default rate
//!   and disabled, as `before` and `before-dis`, so that a change of the
//!   allocator is judged side by side.
//!
//! The modes run in turn (A B C D A B C D …) after a warm-up, each round at
//! another stack depth for the workload's threads (the layout of stack and
//! heap alone moves a malloc/free loop by up to a quarter), and the tables
//! give each mode's median and min–max, and its ratio to the baseline, in
//! CPU time (steadier on a shared machine) and in wall-clock time.
//! `ALLOC_BENCH_RUNS` sets the counted runs per mode (default 7). A last
//! table runs the box phase with both allocators in one process, in
//! alternating slices of a few milliseconds, which a busy machine disturbs
//! least.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Mode {
    name: &'static str,
    binary: PathBuf,
    /// `TASKSCOPE_HEAP_SAMPLE_BYTES`, or unset.
    rate: Option<u64>,
    /// `TASKSCOPE_DISABLE=1`.
    disabled: bool,
}

/// taskscope's default mean sampling interval.
const DEFAULT_RATE: u64 = 512 << 10;

/// The modes, in the order the tables print them. The first four are used
/// by position: the baseline, sampling off, and 16 KiB for a sample's cost.
fn modes(dir: &Path) -> Vec<Mode> {
    let ours = dir.join("alloc-workload-taskscope");
    let mode =
        |name, binary: &Path, rate, disabled| Mode { name, binary: binary.to_path_buf(), rate, disabled };
    let mut modes = vec![
        mode("baseline", &dir.join("alloc-workload-system"), None, false),
        mode("off", &ours, Some(0), false),
        mode("default", &ours, None, false),
        mode("16KiB", &ours, Some(16 << 10), false),
        mode("disabled", &ours, None, true),
    ];
    if let Some(before) = std::env::var_os("ALLOC_BENCH_BEFORE") {
        let before = PathBuf::from(before);
        assert!(before.is_file(), "ALLOC_BENCH_BEFORE: no such file: {}", before.display());
        modes.push(mode("before", &before, None, false));
        modes.push(mode("before-dis", &before, None, true));
    }
    modes
}

/// `cargo run` builds only this binary: build the workloads next to it.
fn build_workloads() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("a directory").to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "alloc-bench", "--bins"]);
    if dir.ends_with("release") {
        build.arg("--release");
    } else {
        eprintln!("warning: not a release build; run with --release for meaningful numbers");
    }
    let status = build.status().expect("cargo build");
    assert!(status.success(), "building the workloads failed");
    dir
}

/// One run of `mode` with its threads `frames` stack frames deeper:
/// boxes and vecs, wall-clock and CPU time, in ns.
fn run(mode: &Mode, frames: u64) -> Run {
    let mut cmd = Command::new(&mode.binary);
    cmd.env("ALLOC_BENCH_FRAMES", frames.to_string());
    cmd.env_remove("TASKSCOPE_HEAP_SAMPLE_BYTES").env_remove("TASKSCOPE_DISABLE");
    if let Some(rate) = mode.rate {
        cmd.env("TASKSCOPE_HEAP_SAMPLE_BYTES", rate.to_string());
    }
    if mode.disabled {
        cmd.env("TASKSCOPE_DISABLE", "1");
    }
    let out = cmd.output().expect("run the workload");
    assert!(out.status.success(), "{} failed: {}", mode.name, String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |key: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    Run {
        wall: (field("boxes_ns="), field("vecs_ns=")),
        cpu: (field("boxes_cpu_ns="), field("vecs_cpu_ns=")),
    }
}

#[derive(Debug, Clone, Copy)]
struct Run {
    /// (boxes, vecs)
    wall: (f64, f64),
    cpu: (f64, f64),
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min_max(xs: &[f64]) -> (f64, f64) {
    xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    format!("{cpus} CPUs, {model}")
}

fn main() {
    let runs: usize = std::env::var("ALLOC_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(7).max(1);
    let dir = build_workloads();
    println!(
        "alloc-heavy: {} threads x {} boxes (8 and 32 bytes), then {} Vecs per thread grown to {} u64",
        alloc_bench::THREADS,
        alloc_bench::BOXES,
        alloc_bench::VEC_ROUNDS,
        alloc_bench::VEC_LEN
    );
    println!("machine: {}; {runs} counted runs per mode after 1 warm-up, modes interleaved", machine());
    let modes = modes(&dir);
    for mode in &modes {
        run(mode, 0);
    }
    let mut runs_of: Vec<Vec<Run>> = modes.iter().map(|_| Vec::new()).collect();
    for round in 0..runs {
        // Each round at another stack depth, the same for every mode: the
        // medians are over layouts, not of one (see `at_depth` in lib.rs).
        let frames = (round as u64 * 7) % 64;
        for (i, mode) in modes.iter().enumerate() {
            runs_of[i].push(run(mode, frames));
        }
    }
    let cpu = table("CPU time (user + system)", &modes, &runs_of, |r| r.cpu);
    table("wall-clock time", &modes, &runs_of, |r| r.wall);
    // What one sample costs: the extra CPU time at 16 KiB over sampling
    // off, divided by the samples expected at 16 KiB.
    let extra = cpu[3] - cpu[1];
    let samples = alloc_bench::expected_samples(16 << 10);
    println!();
    println!(
        "one sample (stack walk, table inserts, the sampled block's header): about {:.0} ns of CPU \
         ({:.1} ms extra for {:.0} expected samples at 16 KiB; the default rate takes {:.0})",
        extra / samples,
        extra / 1e6,
        samples,
        alloc_bench::expected_samples(DEFAULT_RATE),
    );
    println!("budgets: default / baseline <= 1.02; disabled: throughput >= 0.995 of the baseline");
    interleaved(&dir);
}

/// The box phase with both allocators in one process, in alternating
/// slices: steadier than whole runs on a busy machine.
fn interleaved(dir: &Path) {
    println!();
    println!("box phase in one process, system and taskscope in alternating slices (median ns per pair):");
    let mut per_pair = Vec::new();
    for (name, rate) in [("off", Some(0u64)), ("default", None), ("4KiB", Some(4096))] {
        let mut cmd = Command::new(dir.join("alloc-interleaved"));
        cmd.env_remove("TASKSCOPE_HEAP_SAMPLE_BYTES").env_remove("TASKSCOPE_DISABLE");
        if let Some(rate) = rate {
            cmd.env("TASKSCOPE_HEAP_SAMPLE_BYTES", rate.to_string());
        }
        let out = cmd.output().expect("run alloc-interleaved");
        assert!(out.status.success(), "alloc-interleaved failed");
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |key: &str| -> f64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        let (system, taskscope) = (field("system_ns_per_pair="), field("taskscope_ns_per_pair="));
        println!(
            "{name:<9} system {system:>7.2} ns  taskscope {taskscope:>7.2} ns  time / system {:.4}  throughput {:.4}",
            taskscope / system,
            system / taskscope
        );
        per_pair.push(taskscope - system);
    }
    // One allocation in two is 8 bytes, the other 32: at 4 KiB, a pair is
    // sampled with probability (p(8) + p(32)) / 2.
    let p = |s: f64| -(-s / 4096.0).exp_m1();
    let samples_per_pair = (p(8.0) + p(32.0)) / 2.0;
    println!(
        "one sample, from the 4KiB and off lines: about {:.0} ns (allocation and free of a sampled block)",
        (per_pair[2] - per_pair[0]) / samples_per_pair
    );
}

/// Prints one table; returns each mode's median total.
fn table(title: &str, modes: &[Mode], runs_of: &[Vec<Run>], pick: impl Fn(&Run) -> (f64, f64)) -> Vec<f64> {
    let totals: Vec<Vec<f64>> =
        runs_of.iter().map(|runs| runs.iter().map(|r| pick(r).0 + pick(r).1).collect()).collect();
    let medians: Vec<f64> = totals.iter().map(|t| median(t)).collect();
    let base = medians[0];
    println!();
    println!("{title}, median of each mode (min-max):");
    println!(
        "{:<10} {:>24} {:>10} {:>10} {:>16} {:>11}",
        "mode", "total ms", "boxes ms", "vecs ms", "time / baseline", "throughput"
    );
    for (i, mode) in modes.iter().enumerate() {
        let (lo, hi) = min_max(&totals[i]);
        let boxes: Vec<f64> = runs_of[i].iter().map(|r| pick(r).0).collect();
        let vecs: Vec<f64> = runs_of[i].iter().map(|r| pick(r).1).collect();
        println!(
            "{:<10} {:>8.1} ({:>6.1}-{:>6.1}) {:>10.1} {:>10.1} {:>16.4} {:>11.4}",
            mode.name,
            medians[i] / 1e6,
            lo / 1e6,
            hi / 1e6,
            median(&boxes) / 1e6,
            median(&vecs) / 1e6,
            medians[i] / base,
            base / medians[i]
        );
    }
    medians
}
