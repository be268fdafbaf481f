//! `taskscope`: the terminal client of taskscope's debug endpoint. `top` is a
//! live TUI in the spirit of tokio-console; `dump`, `findings` and `check`
//! print what the agent sees (`check` fails CI on leaks); `flamegraph`,
//! `heap`, `pprof` and `snapshot` save profiles; `serve` and `diff` work on
//! saved snapshots, offline. This file is the command line (clap) and the
//! one place errors become `taskscope: <error>` and an exit code.

mod client;
mod commands;
mod model;
mod output;
mod tui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use model::check::exit;
use model::Severity;
use output::ColorChoice;

const EXIT_CODES: &str = "\
Exit status:
  0  success; for check, no finding at or above the level
  1  check found findings at or above the level
  2  usage error, agent unreachable or not an agent, token refused (401),
     unreadable or invalid snapshot file

The agent's address may be given as http://127.0.0.1:6060, 127.0.0.1:6060, or
any URL of its pages; TASKSCOPE_URL gives a default.";

/// Terminal client of taskscope's debug endpoint: live task table, dumps,
/// findings, CI checks, profiles and saved snapshots.
#[derive(Debug, Parser)]
#[command(name = "taskscope", version, after_help = EXIT_CODES)]
struct Cli {
    /// Bearer token for an agent started with TASKSCOPE_TOKEN.
    #[arg(long, global = true, env = "TASKSCOPE_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,

    #[command(subcommand)]
    command: Command,
}

/// The agent to talk to.
#[derive(Debug, Clone, Args)]
struct Agent {
    /// The agent's address, e.g. http://127.0.0.1:6060.
    #[arg(env = "TASKSCOPE_URL", hide_env_values = true, value_name = "URL")]
    url: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Live table of tasks, findings and spawn sites (stuck tasks in red).
    Top {
        #[command(flatten)]
        agent: Agent,
        /// How often to refresh, e.g. 500ms, 2s.
        #[arg(long, default_value = "1s", value_parser = duration, value_name = "DURATION")]
        interval: std::time::Duration,
        /// Tasks fetched per refresh; the agent sorts and pages them.
        #[arg(long, default_value_t = 500, value_name = "N")]
        limit: usize,
    },
    /// Print the agent's task dump (Go's goroutine?debug=1 or 2).
    Dump {
        #[command(flatten)]
        agent: Agent,
        /// 1: tasks grouped by spawn site and stack, with counts; 2: one block per task.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
        debug: u8,
    },
    /// Print the agent's findings, grouped by severity.
    Findings {
        #[command(flatten)]
        agent: Agent,
        /// When to colour the output.
        #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
        color: ColorChoice,
    },
    /// Exit 1 when findings at or above a severity exist, printing them (for CI).
    Check {
        #[command(flatten)]
        agent: Agent,
        /// The least severity that fails the check.
        #[arg(long, value_enum, default_value_t = Level::Warning, value_name = "SEVERITY")]
        fail_on: Level,
        /// Keep polling until findings appear or this long has passed (e.g. 10s);
        /// an agent that is not up yet is retried meanwhile.
        #[arg(long, value_parser = duration, value_name = "DURATION")]
        wait: Option<std::time::Duration>,
        /// When to colour the output.
        #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
        color: ColorChoice,
    },
    /// Profile the CPU for some seconds and save a flamegraph SVG.
    Flamegraph {
        #[command(flatten)]
        agent: Agent,
        /// How long to profile.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// Where to write the SVG; - for stdout.
        #[arg(short, long, default_value = "cpu.svg", value_name = "FILE")]
        output: PathBuf,
    },
    /// Save the in-use heap flamegraph SVG (needs taskscope's allocator in the app).
    Heap {
        #[command(flatten)]
        agent: Agent,
        /// Where to write the SVG; - for stdout.
        #[arg(short, long, default_value = "heap.svg", value_name = "FILE")]
        output: PathBuf,
    },
    /// Save a gzip'd pprof profile, for go tool pprof, Parca or Pyroscope.
    Pprof {
        #[command(flatten)]
        agent: Agent,
        /// Which profile.
        #[arg(value_enum)]
        profile: commands::profiles::Pprof,
        /// Profile length for `profile` (CPU), or the delta window for `heap`/`allocs`.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: Option<u64>,
        /// Where to write it [default: <profile>.pb.gz]; - for stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Save the agent's snapshot (tasks, sites, findings, heap) as JSON.
    Snapshot {
        #[command(flatten)]
        agent: Agent,
        /// Where to write it; - for stdout.
        #[arg(short, long, default_value = "snapshot.json", value_name = "FILE")]
        output: PathBuf,
    },
    /// Open a saved snapshot in the web viewer, offline and read-only.
    Serve {
        /// A file written by `taskscope snapshot`.
        file: PathBuf,
        /// Where to listen; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
        addr: std::net::SocketAddr,
    },
    /// What grew between two saved snapshots: tasks and heap per spawn site, new findings.
    Diff {
        /// The earlier snapshot.
        before: PathBuf,
        /// The later snapshot.
        after: PathBuf,
        /// When to colour the output.
        #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
        color: ColorChoice,
    },
}

/// A `--fail-on` level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Level {
    Info,
    Warning,
    Critical,
}

impl From<Level> for Severity {
    fn from(l: Level) -> Severity {
        match l {
            Level::Info => Severity::Info,
            Level::Warning => Severity::Warning,
            Level::Critical => Severity::Critical,
        }
    }
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    model::format::parse_duration(text)
}

fn main() -> ExitCode {
    commands::quiet_panics();
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // `{:#}` gives the whole chain of context on one line.
            eprintln!("taskscope: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(exit::ERROR)
        }
    }
}
