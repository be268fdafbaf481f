//! The runner: builds every mode, runs each workload in every mode in turn
//! (A B A B …, one warm-up round, then the counted runs), and reports each
//! mode as a ratio to the baseline run of the same round.

mod binaries;
pub mod modes;
mod report;
pub mod stats;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::workload::{Error, NAMES};
use modes::{Mode, MODES};

/// The command line of `bench`.
#[derive(Debug)]
pub struct Options {
    pub quick: bool,
    pub runs: usize,
    pub warmup: usize,
    pub workloads: Vec<&'static str>,
    pub modes: Vec<&'static Mode>,
    pub json: Option<PathBuf>,
    pub million_tasks: Option<u64>,
    /// How long wrk loads the http workload in each run (default 10 s, quick 1 s).
    pub http_secs: Option<u64>,
    /// How long the idle workload stays idle (default 10 s, quick 1 s).
    pub idle_secs: Option<u64>,
}

pub const USAGE: &str = "usage: bench [--quick] [--runs N] \
                         [--workloads poll,spawn,mutex,alloc,http,idle,million] \
                         [--modes baseline,off,lean,deep,deep+cpu,console] [--million-tasks N] \
                         [--http-secs N] [--idle-secs N] [--json FILE]";

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse(args: &[String]) -> Result<Options, Error> {
        let mut o = Options {
            quick: false,
            runs: 5,
            warmup: 1,
            workloads: NAMES.to_vec(),
            modes: MODES.iter().collect(),
            json: None,
            million_tasks: None,
            http_secs: None,
            idle_secs: None,
        };
        let mut runs = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
            match arg.as_str() {
                "--quick" => o.quick = true,
                "--runs" => runs = Some(value()?.parse().map_err(|_| "--runs: not a number")?),
                "--workloads" => o.workloads = list(value()?, canonical_workload)?,
                "--modes" => o.modes = list(value()?, modes::find)?,
                "--json" => o.json = Some(PathBuf::from(value()?)),
                "--million-tasks" => {
                    o.million_tasks =
                        Some(value()?.replace('_', "").parse().map_err(|_| "--million-tasks: not a number")?)
                }
                "--http-secs" => {
                    o.http_secs = Some(value()?.parse().map_err(|_| "--http-secs: not a number")?)
                }
                "--idle-secs" => {
                    o.idle_secs = Some(value()?.parse().map_err(|_| "--idle-secs: not a number")?)
                }
                "-h" | "--help" => return Err(USAGE.into()),
                _ => return Err(format!("unknown argument {arg:?}\n{USAGE}").into()),
            }
        }
        if o.quick {
            o.runs = 1;
            o.warmup = 0;
        }
        if let Some(n) = runs {
            o.runs = n;
        }
        if o.runs == 0 {
            return Err("--runs must be at least 1".into());
        }
        if o.http_secs == Some(0) || o.idle_secs == Some(0) {
            return Err("--http-secs and --idle-secs must be at least 1".into());
        }
        Ok(o)
    }

    /// The workload binary's arguments besides the workload's name.
    fn workload_args(&self, workload: &str) -> Vec<String> {
        let mut args = Vec::new();
        if self.quick {
            args.push("--quick".to_string());
        }
        let size = match workload {
            "million" => self.million_tasks.map(|n| ("--tasks", n)),
            "http" => self.http_secs.map(|n| ("--secs", n)),
            "idle" => self.idle_secs.map(|n| ("--secs", n)),
            _ => None,
        };
        if let Some((key, n)) = size {
            args.extend([key.to_string(), n.to_string()]);
        }
        args
    }
}

fn list<T>(csv: &str, find: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, Error> {
    csv.split(',')
        .map(|s| find(s.trim()).ok_or_else(|| format!("unknown name {s:?}\n{USAGE}").into()))
        .collect()
}

fn canonical_workload(name: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|&w| w == name || name.strip_prefix(w).is_some_and(|s| s.starts_with('-')))
}

/// The counted runs of one workload in one mode, in round order.
#[derive(Debug)]
pub struct ModeRuns {
    pub mode: &'static Mode,
    pub runs: Vec<Value>,
    /// The first panic message a run printed on stderr, and how many did.
    pub panic: Option<String>,
    pub panics: usize,
    /// deep+cpu runs whose profile did not cover the timed part or had no
    /// samples.
    pub profile_problems: usize,
}

impl ModeRuns {
    /// The numeric field `key` of each run (NaN where it is missing).
    pub fn field(&self, key: &str) -> Vec<f64> {
        self.runs.iter().map(|r| r[key].as_f64().unwrap_or(f64::NAN)).collect()
    }
}

/// Every mode's runs of one workload.
#[derive(Debug)]
pub struct WorkloadRuns {
    pub workload: &'static str,
    pub modes: Vec<ModeRuns>,
}

/// Runs the benchmarks as `args` say, prints the table, writes the JSON.
pub fn main(args: &[String]) -> Result<(), Error> {
    let opts = Options::parse(args)?;
    let machine = report::Machine::read();
    eprintln!(
        "bench: {} | {} counted runs per mode after {} warm-up",
        machine.line(),
        opts.runs,
        opts.warmup
    );
    let bins = binaries::build_all(&opts.modes)?;
    let mut results = Vec::new();
    for &workload in &opts.workloads {
        results.push(run_workload(&opts, workload, &bins)?);
    }
    let table = report::markdown(&opts, &machine, &results);
    println!("{table}");
    if let Some(path) = &opts.json {
        let json = report::json(&opts, &machine, &results);
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

fn run_workload(
    opts: &Options,
    workload: &'static str,
    bins: &[(&'static Mode, PathBuf)],
) -> Result<WorkloadRuns, Error> {
    let bins: Vec<_> =
        bins.iter().filter(|(m, _)| workload != "million" || m.million || opts.quick).collect();
    let mut modes: Vec<ModeRuns> = bins
        .iter()
        .map(|(mode, _)| ModeRuns { mode, runs: Vec::new(), panic: None, panics: 0, profile_problems: 0 })
        .collect();
    let args = opts.workload_args(workload);
    let rounds = opts.warmup + opts.runs;
    // The longest timed part seen so far in a deep build, which sizes the
    // CPU profiles of deep+cpu (deep runs just before it in each round).
    let mut longest_window: Option<f64> = None;
    for round in 0..rounds {
        let label = match round.checked_sub(opts.warmup) {
            None => "warm-up".to_string(),
            Some(i) => format!("run {}/{}", i + 1, opts.runs),
        };
        for ((mode, bin), runs) in bins.iter().zip(&mut modes) {
            let mut args = args.clone();
            if workload == "alloc" {
                // Another stack depth each round, the same for every mode
                // (see `at_depth` in workload/alloc.rs).
                args.extend(["--frames".to_string(), ((round * 7) % 64).to_string()]);
            }
            if let (true, Some(secs)) = (mode.cpu_profile, longest_window) {
                // 1.5 times the longest, plus a second: a profile that ends
                // too early shows as not covering its run.
                args.extend(["--cpu-profile-secs".to_string(), ((secs * 1.5).ceil() as u64 + 1).to_string()]);
            }
            let (value, panic) = run_one(bin, mode, workload, &args)?;
            eprintln!("bench: {workload} {label} {:<9} {}", mode.name, brief(&value));
            if let Some(line) = panic {
                eprintln!("bench: warning: this run printed a panic on stderr: {line}");
                runs.panics += 1;
                runs.panic.get_or_insert(line);
            }
            if mode.features == "deep" {
                if let Some(w) = value["window_secs"].as_f64() {
                    longest_window = Some(longest_window.map_or(w, |l| l.max(w)));
                }
            }
            if let Some(problem) = profile_problem(mode, &value) {
                eprintln!("bench: warning: {problem}");
                runs.profile_problems += 1;
            }
            if round >= opts.warmup {
                runs.runs.push(value);
            }
        }
    }
    Ok(WorkloadRuns { workload, modes })
}

/// Runs one workload binary and returns its JSON and any panic it printed.
fn run_one(
    bin: &Path,
    mode: &Mode,
    workload: &str,
    args: &[String],
) -> Result<(Value, Option<String>), Error> {
    let mut cmd = Command::new(bin);
    cmd.arg(workload).args(args).stdin(Stdio::null());
    // The runner's own TASKSCOPE_* settings (an address, a token) must not
    // leak into the runs.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TASKSCOPE_") {
            cmd.env_remove(key);
        }
    }
    // A panic's backtrace would be symbolized inside the timed part.
    cmd.env("RUST_BACKTRACE", "0").envs(mode.env.iter().copied());
    let out = cmd.output().map_err(|e| format!("could not run {}: {e}", bin.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{workload} in mode {} failed ({}):\n{stderr}", mode.name, out.status).into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let value: Value = serde_json::from_str(line)
        .map_err(|e| format!("{workload} in mode {} printed no JSON ({e}): {stdout}", mode.name))?;
    if value["instrumentation"] != mode.instrumentation {
        return Err(format!(
            "mode {} reports instrumentation {} instead of {}: a wrong build?",
            mode.name, value["instrumentation"], mode.instrumentation
        )
        .into());
    }
    let panic = stderr.lines().find(|l| l.contains("panicked")).map(|l| {
        let next = stderr.lines().skip_while(|x| *x != l).nth(1).unwrap_or_default();
        format!("{l} {next}")
    });
    Ok((value, panic))
}

/// What is wrong with the CPU profile of a deep+cpu run, if anything.
fn profile_problem(mode: &Mode, run: &Value) -> Option<String> {
    if !mode.cpu_profile {
        return None;
    }
    if run["cpu_profile_covered"] != true {
        return Some(format!(
            "the CPU profile did not cover the timed part (it started {} ms before it and ended {} ms after)",
            run["cpu_profile_lead_ms"], run["cpu_profile_tail_ms"]
        ));
    }
    (run["cpu_profile_samples"].as_u64() == Some(0)).then(|| "the CPU profile has no samples".to_string())
}

/// The headline numbers of one run, for the progress log.
fn brief(run: &Value) -> String {
    let mut s = format!("{:.3} s", run["secs"].as_f64().unwrap_or(f64::NAN));
    if let Some(cpu) = run["cpu_secs"].as_f64() {
        s += &format!(" ({cpu:.3} s CPU)");
    }
    if let (Some(rps), Some(p99)) = (run["requests_per_sec"].as_f64(), run["p99_ms"].as_f64()) {
        s += &format!(", {rps:.0} req/s, p99 {p99:.2} ms");
    }
    if let Some(ms) = run["agent_cpu_ms"].as_f64() {
        s += &format!(", agent threads {ms:.1} ms CPU");
    }
    if let Some(n) = run["cpu_profile_samples"].as_u64() {
        s += &format!(", profile {n} samples");
    }
    for (key, unit, scale) in [("rss_bytes", "MiB RSS", 1.0 / 1048576.0), ("dump_ms", "ms dump", 1.0)] {
        if let Some(x) = run[key].as_f64() {
            s += &format!(", {:.1} {unit}", x * scale);
        }
    }
    for key in ["snapshot_ms", "stall_ms"] {
        if let Some(x) = run[key].as_f64() {
            s += &format!(", {x:.1} ms {}", key.trim_end_matches("_ms"));
        }
    }
    s
}
