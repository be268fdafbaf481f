//! One workload in one mode: the mode is fixed when the binary is built (its
//! cargo features) plus `TASKSCOPE_DISABLE`; the workload and its sizes come
//! from the command line. The result is one line of JSON on stdout.

mod alloc;
mod app;
pub mod cpuprof;
mod http;
mod idle;
mod million;
mod overhead;
mod probe;

use std::collections::HashMap;

use serde_json::{json, Value};

pub use app::App;

/// An error with a message fit for the runner's log.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The workloads, by the names the command line uses, in the order they run.
pub const NAMES: &[&str] = &["poll", "spawn", "mutex", "alloc", "http", "idle", "million"];

/// Sizes from `--key value` pairs, with full-size or `--quick` defaults.
#[derive(Debug, Default)]
pub struct Sizes {
    quick: bool,
    given: HashMap<String, u64>,
}

impl Sizes {
    /// Parses `[--quick] [--key N]...`.
    pub fn parse(args: &[String]) -> Result<Self, Error> {
        let mut sizes = Sizes::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.strip_prefix("--") {
                Some("quick") => sizes.quick = true,
                Some(key) => {
                    let value = it.next().ok_or_else(|| format!("--{key} needs a number"))?;
                    let n = value
                        .replace('_', "")
                        .parse()
                        .map_err(|_| format!("--{key}: not a number: {value}"))?;
                    sizes.given.insert(key.to_string(), n);
                }
                None => return Err(format!("unexpected argument {arg:?}").into()),
            }
        }
        Ok(sizes)
    }

    /// The size called `key`: as given, else `quick` or `full`.
    fn get(&self, key: &str, full: u64, quick: u64) -> usize {
        let n = self.given.get(key).copied().unwrap_or(if self.quick { quick } else { full });
        n as usize
    }

    /// The size called `key`, if given.
    fn opt(&self, key: &str) -> Option<u64> {
        self.given.get(key).copied()
    }
}

/// Runs the workload `name` on `app` and returns its result as JSON.
///
/// With `BENCH_CPU_PROFILE` set (deep+cpu mode), a CPU profile is taken
/// over HTTP from the agent around the workload's timed part; see
/// [`cpuprof`].
pub fn run(app: &App, name: &str, sizes: &Sizes) -> Result<Value, Error> {
    if !NAMES.contains(&name) {
        return Err(format!("unknown workload {name:?}; expected one of {NAMES:?}").into());
    }
    let secs = |full, quick| sizes.get("secs", full, quick) as u64;
    let (http_secs, idle_secs) = (secs(10, 1), secs(10, 1));
    let work = || -> Result<Value, Error> {
        Ok(match name {
            "poll" => overhead::poll(app, sizes.get("tasks", 200, 20), sizes.get("yields", 5_000, 50)),
            "spawn" => {
                overhead::spawn(app, sizes.get("rounds", 1_000, 10), sizes.get("per-round", 1_000, 100))
            }
            "mutex" => overhead::mutex(
                app,
                sizes.get("tasks", 100, 10),
                sizes.get("locks", 10_000, 100),
                sizes.get("mutexes", 4, 2),
            ),
            "alloc" => alloc::run(
                sizes.get("threads", 2, 2),
                sizes.get("boxes", 20_000_000, 200_000),
                sizes.get("vecs", 2_000, 20),
                sizes.get("vec-len", 65_536, 65_536),
                sizes.get("frames", 0, 0),
            ),
            "http" => http::run(app, http_secs, sizes.get("connections", 50, 50))?,
            "idle" => idle::run(idle_secs)?,
            _ => million::run(app, sizes.get("tasks", 1_000_000, 10_000))?,
        })
    };
    let plan = cpuprof::Plan::from_env(sizes.opt("cpu-profile-secs"));
    let profiled = plan.is_some();
    let mut out = match plan {
        None => window(work)?,
        Some(plan) => {
            // The length of the timed part, for the workloads that know it.
            let known = match name {
                "http" => Some(http_secs as f64 + 0.5),
                "idle" => Some(idle_secs as f64 + 0.5),
                _ => None,
            };
            let default = if sizes.quick { 5 } else { 30 };
            let profile = plan.start(app, known, default)?;
            let start_ns = probe::unix_nanos();
            let mut out = window(work)?;
            profile.finish(start_ns, probe::unix_nanos(), &mut out)?;
            out
        }
    };
    out["workload"] = json!(name);
    let instrumentation = app.instrumentation();
    out["instrumentation"] =
        json!(if profiled { format!("{instrumentation}+cpu") } else { instrumentation.to_string() });
    Ok(out)
}

/// Runs `work` and adds `window_secs`, the wall time a CPU profile must
/// cover in deep+cpu mode: the runner sizes the next profiles from it.
fn window(work: impl FnOnce() -> Result<Value, Error>) -> Result<Value, Error> {
    let start = std::time::Instant::now();
    let mut out = work()?;
    out["window_secs"] = json!(start.elapsed().as_secs_f64());
    Ok(out)
}
