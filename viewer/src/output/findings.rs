//! Findings as text for a terminal: grouped by severity, most severe first,
//! each with where, how long, the agent's sentence, the tasks it covers and
//! where they are parked. `findings` and `check` print this.

use std::fmt::Write;

use super::style::Painter;
use crate::model::check::counts;
use crate::model::format::{human, short_frame};
use crate::model::{Finding, Severity, Snapshot};

/// Task ids shown per finding; the rest are counted.
const SHOWN_IDS: usize = 10;

/// The agent's notes on what it cannot see (tracking off, lean mode).
pub fn notes(snapshot: &Snapshot, p: Painter) -> String {
    let mut out = String::new();
    for problem in [&snapshot.agent.problem, &snapshot.agent.deep_problem].into_iter().flatten() {
        let _ = writeln!(out, "{} {problem}", p.dim("note:"));
    }
    out
}

/// `findings`, grouped by severity. Empty input renders as nothing.
pub fn grouped<'a>(findings: impl IntoIterator<Item = &'a Finding>, p: Painter) -> String {
    let findings: Vec<&Finding> = findings.into_iter().collect();
    let mut out = String::new();
    for severity in Severity::ALL_DESCENDING {
        let group: Vec<&&Finding> = findings.iter().filter(|f| f.severity == severity).collect();
        if group.is_empty() {
            continue;
        }
        let heading = format!("{} ({})", severity.as_str().to_uppercase(), group.len());
        let _ = writeln!(out, "{}", p.severity(severity, &heading));
        for f in group {
            one(&mut out, f, p);
        }
    }
    out
}

fn one(out: &mut String, f: &Finding, p: Painter) {
    let _ = writeln!(
        out,
        "  {} at {}{}",
        p.severity(f.severity, &f.kind),
        p.bold(&f.location),
        p.dim(&format!(", for {}", human(f.since_ms)))
    );
    let _ = writeln!(out, "    {}", f.message);
    if !f.task_ids.is_empty() {
        let ids: Vec<String> = f.task_ids.iter().take(SHOWN_IDS).map(u64::to_string).collect();
        let more = f.task_count().saturating_sub(ids.len() as u64);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        let label = if f.task_count() == 1 { "task:" } else { "tasks:" };
        let _ = writeln!(out, "    {} {}{more}", p.dim(label), ids.join(", "));
    }
    let frames = f.parked_at();
    for (i, frame) in frames.iter().enumerate() {
        let label = if i == 0 { "parked at:" } else { "          " };
        let _ = writeln!(out, "    {} {}", p.dim(label), short_frame(frame));
    }
    out.push('\n');
}

/// The last line: `7 findings: 1 critical, 6 warning`, or `no findings`.
pub fn summary(snapshot: &Snapshot) -> String {
    match snapshot.findings.len() {
        0 => format!("no findings ({} live tasks)", snapshot.tasks_total),
        n => {
            let findings = if n == 1 { "finding" } else { "findings" };
            format!("{n} {findings}: {}", counts(snapshot.findings.iter()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{snapshot, LEAKY};

    #[test]
    fn groups_come_most_severe_first_with_counts() {
        let s = snapshot(LEAKY);
        let text = grouped(&s.findings, Painter::PLAIN);
        let critical = text.find("CRITICAL (1)\n").unwrap();
        let warning = text.find("WARNING (6)\n").unwrap();
        assert!(critical < warning && !text.contains("INFO"), "{text}");
        assert!(
            text.contains("  lost_waker at examples/leaky-server/src/main.rs:89:5, for 1 minute\n"),
            "{text}"
        );
        assert!(text.contains(" and 109 more\n"), "capped ids are counted: {text}");
        assert!(
            text.contains(
                "    parked at: tokio::sync::mpsc::bounded::Receiver<T>::recv::{{closure}} at tokio-1.54.1/"
            ),
            "{text}"
        );
        assert_eq!(summary(&s), "7 findings: 1 critical, 6 warning");
    }

    #[test]
    fn colour_is_only_there_when_asked_for() {
        let s = snapshot(LEAKY);
        assert!(!grouped(&s.findings, Painter::PLAIN).contains('\x1b'));
        let coloured = grouped(&s.findings, Painter { color: true });
        assert!(coloured.contains("\x1b[1;31mCRITICAL (1)\x1b[0m"), "{coloured}");
    }
}
