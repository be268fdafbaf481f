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

fn title(workload: &str) -> &'static str {
    match workload {
        "poll" => "poll-heavy",
        "spawn" => "spawn-heavy",
        _ => "million-tasks",
    }
}

fn size(run: &Value) -> String {
    let n = |k: &str| run[k].as_u64().unwrap_or(0);
    match run["workload"].as_str() {
        Some("poll") => format!("{} tasks × {} yields", n("tasks"), n("yields")),
        Some("spawn") => format!("{} rounds × {} tasks", n("rounds"), n("per_round")),
        _ => format!("{} live idle tasks", n("tasks")),
    }
}

fn baseline(w: &WorkloadRuns) -> Option<&ModeRuns> {
    w.modes.iter().find(|m| m.mode.name == "baseline")
}

/// Each run's `key` (`secs` or `cpu_secs`) over the baseline's in the same round.
fn ratio(runs: &ModeRuns, base: Option<&ModeRuns>, key: &str) -> Option<Summary> {
    Summary::of(&paired(&runs.field(key), &base?.field(key), |m, b| m / b))
}

/// The extra resident memory per live task over the baseline's, per round.
fn bytes_per_task(runs: &ModeRuns, base: Option<&ModeRuns>) -> Option<Summary> {
    let base = base.filter(|b| b.mode.name != runs.mode.name)?;
    let tasks = runs.runs.first()?["tasks"].as_f64()?;
    Summary::of(&paired(&runs.field("rss_bytes"), &base.field("rss_bytes"), |m, b| (m - b) / tasks))
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
    let timed: Vec<_> = results.iter().filter(|w| w.workload != "million").collect();
    if !timed.is_empty() {
        out += "\n| workload | mode | wall time (ms) | wall mode / baseline | CPU time (ms) \
                | CPU mode / baseline |\n| --- | --- | --- | --- | --- | --- |\n";
        for w in &timed {
            let size = w.modes.first().and_then(|m| m.runs.first()).map(size).unwrap_or_default();
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
    for w in results.iter().filter(|w| w.workload == "million") {
        let size = w.modes.first().and_then(|m| m.runs.first()).map(size).unwrap_or_default();
        out += &format!(
            "\nmillion-tasks ({size}); the requests go over HTTP to the agent, so only modes with a serving \
             agent have them.\n\n\
             | mode | spawn + settle (s) | VmRSS (MiB) | bytes per live task vs baseline | `tasks?debug=1` (ms) \
             | snapshot JSON (ms) | snapshot size (MB) | `snapshot?limit=100` (ms) | ticker lateness idle (ms) \
             | ticker lateness during requests (ms) |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        );
        for m in &w.modes {
            let f = |key: &str, scale: f64| scaled(m, key, scale);
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                m.mode.name,
                cell(f("secs", 1.0), 2),
                cell(f("rss_bytes", 1.0 / 1048576.0), 0),
                cell(bytes_per_task(m, baseline(w)), 1),
                cell(f("dump_ms", 1.0), 0),
                cell(f("snapshot_ms", 1.0), 0),
                cell(f("snapshot_bytes", 1e-6), 0),
                cell(f("page_ms", 1.0), 0),
                cell(f("idle_late_ms", 1.0), 1),
                cell(f("stall_ms", 1.0), 1),
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
    }
    out
}

/// The same data as JSON: every numeric field summarized, plus the raw runs.
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
                    json!({
                        "mode": m.mode.name, "features": m.mode.features, "env": m.mode.env,
                        "fields": fields,
                        "ratio_to_baseline": ratio(m, baseline(w), "secs").filter(|_| w.workload != "million"),
                        "cpu_ratio_to_baseline": ratio(m, baseline(w), "cpu_secs")
                            .filter(|_| w.workload != "million"),
                        "bytes_per_task": bytes_per_task(m, baseline(w)).filter(|_| w.workload == "million"),
                        "panics": m.panics, "panic": m.panic, "runs": m.runs,
                    })
                })
                .collect();
            json!({ "workload": w.workload, "title": title(w.workload), "modes": modes })
        })
        .collect();
    json!({
        "machine": { "nproc": machine.nproc, "cpu": machine.cpu, "loadavg_1m_at_start": machine.loadavg },
        "quick": opts.quick, "runs": opts.runs, "warmup": opts.warmup,
        "workloads": workloads,
    })
}
