//! The commands: each takes its parsed arguments, talks to the agent (or
//! reads files), prints, and returns the exit code. What they share lives
//! here: building the client, writing to a file or stdout, and making sure
//! a panic still ends as one `taskscope:` line.

pub mod profiles;
pub mod serve;
pub mod snapshots;
pub mod text;

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::client::{AgentUrl, Client};
use crate::model::check::exit;
use crate::{Cli, Command};

/// Runs the command line; the exit code on success.
pub fn run(cli: Cli) -> Result<u8> {
    let token = cli.token;
    let client = |url: &str| -> Result<Client> { Ok(Client::new(AgentUrl::parse(url)?, token.clone())) };
    match cli.command {
        Command::Top { agent, interval, limit } => crate::tui::run(client(&agent.url)?, interval, limit),
        Command::Dump { agent, debug } => text::dump(&client(&agent.url)?, debug),
        Command::Findings { agent, color } => text::findings(&client(&agent.url)?, color),
        Command::Check { agent, fail_on, wait, color } => {
            text::check(&client(&agent.url)?, fail_on.into(), wait, color)
        }
        Command::Flamegraph { agent, seconds, output } => {
            profiles::flamegraph(&client(&agent.url)?, seconds, &output)
        }
        Command::Heap { agent, output } => profiles::heap(&client(&agent.url)?, &output),
        Command::Pprof { agent, profile, seconds, output } => {
            let output = output.unwrap_or_else(|| profile.default_file().into());
            profiles::pprof(&client(&agent.url)?, profile, seconds, &output)
        }
        Command::Snapshot { agent, output } => snapshots::save(&client(&agent.url)?, &output),
        Command::Serve { file, addr } => serve::run(&file, addr),
        Command::Diff { before, after, color } => snapshots::diff(&before, &after, color),
    }
}

/// Prints `text` to stdout. A closed pipe (`taskscope dump | head`) is not
/// an error.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path`, or to stdout for `-`; says what it wrote on
/// stderr (not for stdout, which is the data).
pub fn write_output(path: &Path, bytes: &[u8], what: &str) -> Result<u8> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        return match out.write_all(bytes).and_then(|()| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
            _ => Ok(exit::CLEAN),
        };
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "taskscope: wrote {what} to {} ({})",
        path.display(),
        crate::model::format::bytes(bytes.len() as u64)
    );
    Ok(exit::CLEAN)
}

/// Reads a saved snapshot, saying in one line why it is not one.
pub fn read_snapshot(path: &Path) -> Result<crate::model::Snapshot> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    crate::model::Snapshot::parse(&bytes).with_context(|| path.display().to_string())
}

/// Makes a panic print one `taskscope:` line instead of a Rust dump (the
/// TUI restores the terminal first, in its own hook).
pub fn quiet_panics() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".to_string());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!(
            "taskscope: internal error: {what}{at} (a bug: please report it; RUST_BACKTRACE=1 shows more)"
        );
    }));
}
