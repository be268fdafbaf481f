//! One workload in one mode: the mode is fixed when the binary is built (its
//! cargo features) plus `TASKSCOPE_DISABLE`; the workload and its sizes come
//! from the command line. The result is one line of JSON on stdout.

mod app;
mod million;
mod overhead;
mod probe;

use std::collections::HashMap;

use serde_json::{json, Value};

pub use app::App;

/// An error with a message fit for the runner's log.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The workloads, by the names the command line uses.
pub const NAMES: &[&str] = &["poll", "spawn", "million"];

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
}

/// Runs the workload `name` on `app` and returns its result as JSON.
pub fn run(app: &App, name: &str, sizes: &Sizes) -> Result<Value, Error> {
    let mut out = match name {
        "poll" => overhead::poll(app, sizes.get("tasks", 200, 20), sizes.get("yields", 5_000, 50)),
        "spawn" => overhead::spawn(app, sizes.get("rounds", 1_000, 10), sizes.get("per-round", 1_000, 100)),
        "million" => million::run(app, sizes.get("tasks", 1_000_000, 10_000))?,
        _ => return Err(format!("unknown workload {name:?}; expected one of {NAMES:?}").into()),
    };
    out["workload"] = json!(name);
    out["instrumentation"] = json!(app.instrumentation());
    Ok(out)
}
