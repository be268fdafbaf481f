//! The text commands: `dump` (the agent's Go-style task dump, as is),
//! `findings` (grouped by severity, coloured) and `check` (the same, then a
//! verdict and an exit code for CI; `--wait` polls for smoke tests).

use std::time::{Duration, Instant};

use anyhow::Result;

use super::print;
use crate::client::Client;
use crate::model::check::{self, exit};
use crate::model::{Severity, Snapshot};
use crate::output::{findings as render, ColorChoice, Painter};

/// The snapshot query of commands that read only findings: one task is
/// enough (`tasks_total` still counts all), so a million tasks cost nothing
/// to send.
const FINDINGS_ONLY: &str = "limit=1";

/// How often `check --wait` asks again.
const POLL_EVERY: Duration = Duration::from_millis(500);

pub fn dump(client: &Client, debug: u8) -> Result<u8> {
    print(&client.text(&format!("/debug/pprof/tasks?debug={debug}"))?)?;
    Ok(exit::CLEAN)
}

pub fn findings(client: &Client, color: ColorChoice) -> Result<u8> {
    let (snapshot, _) = client.snapshot(FINDINGS_ONLY)?;
    let p = Painter { color: color.enabled() };
    let mut out = render::notes(&snapshot, p);
    out.push_str(&render::grouped(&snapshot.findings, p));
    out.push_str(&render::summary(&snapshot));
    out.push('\n');
    print(&out)?;
    Ok(exit::CLEAN)
}

pub fn check(client: &Client, level: Severity, wait: Option<Duration>, color: ColorChoice) -> Result<u8> {
    let snapshot = match wait {
        None => client.snapshot(FINDINGS_ONLY)?.0,
        Some(wait) => poll(client, level, wait)?,
    };
    let p = Painter { color: color.enabled() };
    let verdict = check::check(&snapshot, level);
    let mut out = render::notes(&snapshot, p);
    out.push_str(&render::grouped(verdict.failing.iter().copied(), p));
    let summary = verdict.summary(snapshot.tasks_total);
    out.push_str(&if verdict.passed() { p.green(&summary) } else { p.red(&summary) });
    out.push('\n');
    print(&out)?;
    Ok(verdict.exit_code())
}

/// Polls until a finding at or above `level` shows or `wait` has passed; an
/// agent that cannot be reached yet is retried until then.
fn poll(client: &Client, level: Severity, wait: Duration) -> Result<Snapshot> {
    let deadline = Instant::now() + wait;
    loop {
        let result = client.snapshot(FINDINGS_ONLY);
        let left = deadline.saturating_duration_since(Instant::now());
        match result {
            Ok((s, _)) if left.is_zero() || !check::check(&s, level).passed() => return Ok(s),
            Err(e) if left.is_zero() => {
                let waited = crate::model::format::human(wait.as_millis() as u64);
                return Err(e.context(format!("still failing after --wait {waited}")));
            }
            _ => std::thread::sleep(POLL_EVERY.min(left)),
        }
    }
}
