//! The results as a markdown table (stdout) and as JSON (`--json FILE`):
//! per mode the median and min–max of each number, and the ratio to the
//! baseline of the same round for the timed workloads.

use serde_json::{json, Map, Value};

use super::stats::{paired, Summary};
use super::{ModeRuns, Options, WorkloadRuns};

/// The machine the numbers come from.
#[derive(Debug)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    /// The 1-minute load average when the runner started: other work on a
    /// shared machine shows here.
    pub loadavg: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or("unknown".to_string(), |s| s.trim().to_string());
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            loadavg: loadavg.split_whitespace().next().unwrap_or("?").to_string(),
        }
    }

    pub fn line(&self) -> String {
        format!("nproc {}, CPU {}, load average {}", self.nproc, self.cpu, self.loadavg)
    }
}

/// The workloads whose result is the time of their timed part.
const TIMED: &[&str] = &["poll", "spawn", "mutex", "alloc"];

fn title(workload: &str) -> &'static str {
    match workload {
        "poll" => "poll-heavy",
        "spawn" => "spawn-heavy",
        "mutex" => "mutex-heavy",
        "alloc" => "alloc-heavy",
        "http" => "http",
        "idle" => "idle",
        _ => "million-tasks",
    }
}

fn size(run: &Value) -> String {
    let n = |k: &str| run[k].as_u64().unwrap_or(0);
    match run["workload"].as_str() {
        Some("poll") => format!("{} tasks × {} yields", n("tasks"), n("yields")),
        Some("spawn") => format!("{} rounds × {} tasks", n("rounds"), n("per_round")),
        Some("mutex") => format!("{} tasks × {} locks of {} mutexes", n("tasks"), n("locks"), n("mutexes")),
        Some("alloc") => format!(
            "{} threads × {} boxes, then {} Vecs grown to {} u32",
            n("threads"),
            n("boxes"),
            n("vecs"),
            n("vec_len")
        ),
        Some("http") => format!(
            "wrk, {} threads, {} connections, {} s",
            n("wrk_threads"),
            n("connections"),
            n("http_secs")
        ),
        Some("idle") => format!("idle for {} s", n("idle_secs")),
        _ => format!("{} live idle tasks", n("tasks")),
    }
}

/// The size line of a workload, from its first run.
fn size_of(w: &WorkloadRuns) -> String {
    w.modes.iter().find_map(|m| m.runs.first()).map(size).unwrap_or_default()
}

fn baseline(w: &WorkloadRuns) -> Option<&ModeRuns> {
    w.modes.iter().find(|m| m.mode.name == "baseline")
}

/// Each run's `key` (`secs` or `cpu_secs`) over the baseline's in the same round.
fn ratio(runs: &ModeRuns, base: Option<&ModeRuns>, key: &str) -> Option<Summary> {
    Summary::of(&paired(&runs.field(key), &base?.field(key), |m, b| m / b))
}

/// `(mode − baseline) × scale` of the field `key`, per round; `None` for
/// the baseline itself.
fn over_baseline(runs: &ModeRuns, base: Option<&ModeRuns>, key: &str, scale: f64) -> Option<Summary> {
    let base = base.filter(|b| b.mode.name != runs.mode.name)?;
    Summary::of(&paired(&runs.field(key), &base.field(key), |m, b| (m - b) * scale))
}

/// The extra resident memory per live task over the baseline's, per round.
fn bytes_per_task(runs: &ModeRuns, base: Option<&ModeRuns>) -> Option<Summary> {
    let tasks = runs.runs.first()?["tasks"].as_f64()?;
    over_baseline(runs, base, "rss_bytes", 1.0 / tasks)
}

/// The same without the fixed cost: the growth of VmRSS from before the
/// tasks were spawned, over the baseline's growth, per live task.
fn bytes_per_task_without_fixed(runs: &ModeRuns, base: Option<&ModeRuns>) -> Option<Summary> {
    let base = base.filter(|b| b.mode.name != runs.mode.name)?;
    let tasks = runs.runs.first()?["tasks"].as_f64()?;
    let growth =
        |m: &ModeRuns| paired(&m.field("rss_bytes"), &m.field("rss_start_bytes"), |end, start| end - start);
    Summary::of(&paired(&growth(runs), &growth(base), |m, b| (m - b) / tasks))
}

/// The numbers each mode is judged by, over the baseline of the same round,
/// by workload; for the table and the JSON.
fn derived(w: &WorkloadRuns, m: &ModeRuns) -> Vec<(&'static str, Option<Summary>)> {
    let base = baseline(w);
    match w.workload {
        "http" => vec![
            ("throughput_ratio_to_baseline", ratio(m, base, "requests_per_sec")),
            ("p99_ratio_to_baseline", ratio(m, base, "p99_ms")),
            ("cpu_per_request_ratio_to_baseline", ratio(m, base, "cpu_us_per_request")),
        ],
        "idle" => vec![
            ("rss_over_baseline_bytes", over_baseline(m, base, "rss_bytes", 1.0)),
            ("agent_cpu_ms", scaled(m, "agent_cpu_ms", 1.0)),
        ],
        "million" => vec![
            ("bytes_per_task", bytes_per_task(m, base)),
            ("bytes_per_task_without_fixed", bytes_per_task_without_fixed(m, base)),
            ("rss_over_baseline_bytes", over_baseline(m, base, "rss_bytes", 1.0)),
            ("fixed_rss_over_baseline_bytes", over_baseline(m, base, "rss_start_bytes", 1.0)),
        ],
        _ => vec![
            ("ratio_to_baseline", ratio(m, base, "secs")),
            ("cpu_ratio_to_baseline", ratio(m, base, "cpu_secs")),
        ],
    }
}

/// The field `key` of each run times `scale`, summarized.
fn scaled(runs: &ModeRuns, key: &str, scale: f64) -> Option<Summary> {
    Summary::of(&runs.field(key).iter().map(|x| x * scale).collect::<Vec<_>>())
}

fn cell(s: Option<Summary>, decimals: usize) -> String {
    s.map_or("—".to_string(), |s| s.show(decimals))
}

/// The tables, in markdown.
pub fn markdown(opts: &Options, machine: &Machine, results: &[WorkloadRuns]) -> String {
    let mut out = format!(
        "Machine: {}. {} counted runs per mode after {} warm-up, modes interleaved.{}\n\n\
         Cells are `median [min–max]`; a ratio divides each run by the baseline run of the same round. \
         CPU time is that of all the process's threads during the timed part.\n",
        machine.line(),
        opts.runs,
        opts.warmup,
        if opts.quick { " QUICK sizes: a smoke test, not a measurement." } else { "" }
    );
    let timed: Vec<_> = results.iter().filter(|w| TIMED.contains(&w.workload)).collect();
    if !timed.is_empty() {
        out += "\n| workload | mode | wall time (ms) | wall mode / baseline | CPU time (ms) \
                | CPU mode / baseline |\n| --- | --- | --- | --- | --- | --- |\n";
        for w in &timed {
            let size = size_of(w);
            for m in &w.modes {
                out += &format!(
                    "| {} ({size}) | {} | {} | {} | {} | {} |\n",
                    title(w.workload),
                    m.mode.name,
                    cell(scaled(m, "secs", 1e3), 1),
                    cell(ratio(m, baseline(w), "secs"), 3),
                    cell(scaled(m, "cpu_secs", 1e3), 1),
                    cell(ratio(m, baseline(w), "cpu_secs"), 3),
                );
            }
        }
    }
    for w in results.iter().filter(|w| w.workload == "http") {
        out += &format!(
            "\nhttp: axum hello-world on the app's runtime ({}). Requests/s and latencies are wrk's; \
             the server's CPU per request is that of all the app process's threads (wrk is another process).\n\n\
             | mode | requests/s | throughput mode / baseline | p99 (ms) | p99 mode / baseline | p50 (ms) \
             | server CPU per request (µs) | CPU per request mode / baseline | errors |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
            size_of(w)
        );
        for m in &w.modes {
            let f = |key: &str, decimals| cell(scaled(m, key, 1.0), decimals);
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                m.mode.name,
                f("requests_per_sec", 0),
                cell(ratio(m, baseline(w), "requests_per_sec"), 3),
                f("p99_ms", 2),
                cell(ratio(m, baseline(w), "p99_ms"), 3),
                f("p50_ms", 2),
                f("cpu_us_per_request", 2),
                cell(ratio(m, baseline(w), "cpu_us_per_request"), 3),
                f("errors", 0),
            );
        }
    }
    for w in results.iter().filter(|w| w.workload == "idle") {
        out += &format!(
            "\nidle: the runtime and the mode's instrumentation, {}. The agent's threads are every thread but \
             the main thread and the runtime's.\n\n\
             | mode | agent threads' CPU (ms) | % of one core | by thread (median ms) | agent threads \
             | VmRSS (MiB) | VmRSS − baseline (MiB) |\n\
             | --- | --- | --- | --- | --- | --- | --- |\n",
            size_of(w)
        );
        for m in &w.modes {
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                m.mode.name,
                cell(scaled(m, "agent_cpu_ms", 1.0), 1),
                cell(scaled(m, "agent_cpu_pct", 1.0), 2),
                by_thread(m),
                cell(scaled(m, "agent_threads", 1.0), 0),
                cell(scaled(m, "rss_bytes", 1.0 / 1048576.0), 1),
                cell(over_baseline(m, baseline(w), "rss_bytes", 1.0 / 1048576.0), 1),
            );
        }
    }
    for w in results.iter().filter(|w| w.workload == "million") {
        out += &format!(
            "\nmillion-tasks ({}); the requests go over HTTP to the agent, so only modes with a serving \
             agent have them. The agent's share of memory is the mode's VmRSS minus the baseline's in the same \
             round; its fixed part is the same difference before any task was spawned.\n\n\
             | mode | spawn + settle (s) | VmRSS (MiB) | VmRSS − baseline (MiB) | of which fixed (MiB) \
             | bytes per live task vs baseline | the same, fixed part excluded \
             | `tasks?debug=1` (ms) | snapshot JSON (ms) | snapshot size (MB) | `snapshot?limit=100` (ms) \
             | ticker lateness idle (ms) | ticker lateness during requests (ms) |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
            size_of(w)
        );
        let mib = 1.0 / 1048576.0;
        for m in &w.modes {
            let f = |key: &str, scale: f64| scaled(m, key, scale);
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                m.mode.name,
                cell(f("secs", 1.0), 2),
                cell(f("rss_bytes", mib), 0),
                cell(over_baseline(m, baseline(w), "rss_bytes", mib), 1),
                cell(over_baseline(m, baseline(w), "rss_start_bytes", mib), 1),
                cell(bytes_per_task(m, baseline(w)), 1),
                cell(bytes_per_task_without_fixed(m, baseline(w)), 1),
                cell(f("dump_ms", 1.0), 0),
                cell(f("snapshot_ms", 1.0), 0),
                cell(f("snapshot_bytes", 1e-6), 0),
                cell(f("page_ms", 1.0), 0),
                cell(f("idle_late_ms", 1.0), 1),
                cell(f("stall_ms", 1.0), 1),
            );
        }
    }
    let profiled: Vec<_> = results
        .iter()
        .flat_map(|w| w.modes.iter().filter(|m| m.mode.cpu_profile).map(move |m| (w, m)))
        .collect();
    if !profiled.is_empty() {
        out += "\nThe CPU profiles of deep+cpu (`GET /debug/pprof/profile?seconds=N` at 99 Hz, started before each \
                timed part and checked to cover it):\n\n\
                | workload | profile length (s) | samples | started before the timed part (ms) \
                | ended after it (ms) | runs covered |\n| --- | --- | --- | --- | --- | --- |\n";
        for (w, m) in profiled {
            let covered = m.runs.iter().filter(|r| r["cpu_profile_covered"] == true).count();
            out += &format!(
                "| {} | {} | {} | {} | {} | {covered} of {} |\n",
                title(w.workload),
                cell(scaled(m, "cpu_profile_secs", 1.0), 0),
                cell(scaled(m, "cpu_profile_samples", 1.0), 0),
                cell(scaled(m, "cpu_profile_lead_ms", 1.0), 0),
                cell(scaled(m, "cpu_profile_tail_ms", 1.0), 0),
                m.runs.len(),
            );
        }
    }
    for w in results {
        for m in w.modes.iter().filter(|m| m.panics > 0) {
            out += &format!(
                "\nWarning: {} of {} runs of {} in mode {} printed a panic on stderr, e.g. `{}`\n",
                m.panics,
                opts.warmup + opts.runs,
                title(w.workload),
                m.mode.name,
                m.panic.as_deref().unwrap_or_default()
            );
        }
        for m in w.modes.iter().filter(|m| m.profile_problems > 0) {
            out += &format!(
                "\nWarning: in {} of {} runs of {} in mode {} the CPU profile did not cover the timed part or \
                 had no samples (see the log){}\n",
                m.profile_problems,
                opts.warmup + opts.runs,
                title(w.workload),
                m.mode.name,
                if opts.quick { "; at --quick sizes a timed part may be too short for a sample" } else { "" }
            );
        }
        for m in w.modes.iter().filter(|m| m.field("errors").iter().any(|&e| e > 0.0)) {
            out += &format!(
                "\nWarning: wrk reported socket errors or non-2xx answers in mode {} of {}\n",
                m.mode.name,
                title(w.workload)
            );
        }
    }
    out
}

/// The idle CPU time of each of the agent's threads, by name: the median
/// over the runs.
fn by_thread(m: &ModeRuns) -> String {
    let mut names: Vec<&str> = m
        .runs
        .iter()
        .filter_map(|r| r["agent_cpu_ms_by_thread"].as_object())
        .flat_map(|o| o.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let parts: Vec<String> = names
        .iter()
        .filter_map(|name| {
            let ms: Vec<f64> =
                m.runs.iter().map(|r| r["agent_cpu_ms_by_thread"][name].as_f64().unwrap_or(0.0)).collect();
            Some(format!("{name} {:.1}", Summary::of(&ms)?.median))
        })
        .collect();
    if parts.is_empty() {
        "—".to_string()
    } else {
        parts.join(", ")
    }
}

/// The same data as JSON: every numeric field summarized, the numbers each
/// mode is judged by (`derived`), plus the raw runs.
pub fn json(opts: &Options, machine: &Machine, results: &[WorkloadRuns]) -> Value {
    let workloads: Vec<Value> = results
        .iter()
        .map(|w| {
            let modes: Vec<Value> = w
                .modes
                .iter()
                .map(|m| {
                    let mut fields = Map::new();
                    if let Some(Value::Object(first)) = m.runs.first() {
                        for (key, value) in first {
                            if value.is_number() {
                                fields.insert(key.clone(), json!(Summary::of(&m.field(key))));
                            }
                        }
                    }
                    let mut mode = json!({
                        "mode": m.mode.name, "features": m.mode.features, "env": m.mode.env,
                        "fields": fields,
                        "panics": m.panics, "panic": m.panic,
                        "profile_problems": m.profile_problems,
                        "runs": m.runs,
                    });
                    for (key, summary) in derived(w, m) {
                        mode[key] = json!(summary);
                    }
                    mode
                })
                .collect();
            json!({ "workload": w.workload, "title": title(w.workload), "size": size_of(w), "modes": modes })
        })
        .collect();
    json!({
        "machine": { "nproc": machine.nproc, "cpu": machine.cpu, "loadavg_1m_at_start": machine.loadavg },
        "quick": opts.quick, "runs": opts.runs, "warmup": opts.warmup,
        "workloads": workloads,
    })
}
