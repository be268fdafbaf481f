//! A [`Diff`] as text: the spawn sites that grew, the heap per site, and the
//! findings that appeared or went away between two snapshots.

use std::fmt::Write;

use super::style::Painter;
use crate::model::diff::{Change, Diff, HeapDiff};
use crate::model::format::{bytes, human, signed};
use crate::model::Finding;

/// Sites listed per section; the rest are counted.
const SHOWN: usize = 20;

pub fn render(d: &Diff, p: Painter) -> String {
    let mut out = String::new();
    let (a, b) = d.uptime_ms;
    if b >= a && a > 0 {
        let _ = writeln!(out, "{} apart (agent uptime {} then {})", human(b - a), human(a), human(b));
    } else {
        let _ = writeln!(
            out,
            "the second snapshot is not a later one of the same run (uptime {} then {})",
            human(a),
            human(b)
        );
    }
    let delta = d.tasks.1 as i64 - d.tasks.0 as i64;
    let _ = writeln!(out, "live tasks: {} -> {} ({})", d.tasks.0, d.tasks.1, signed(delta));

    out.push('\n');
    let _ = writeln!(out, "{}", p.bold("spawn sites that grew (live tasks):"));
    table(&mut out, &d.grew, |n| n.to_string(), signed, p);
    if d.shrank > 0 {
        let sites = if d.shrank == 1 { "site" } else { "sites" };
        let _ = writeln!(out, "  ({} {sites} shrank)", d.shrank);
    }

    out.push('\n');
    match &d.heap {
        HeapDiff::Missing(why) => {
            let _ = writeln!(out, "{} not compared: {why}", p.bold("in-use heap per spawn site:"));
        }
        HeapDiff::Sites { before_total, after_total, grew } => {
            let change = *after_total as i64 - *before_total as i64;
            let _ = writeln!(
                out,
                "{} {} -> {} ({})",
                p.bold("in-use heap:"),
                bytes(*before_total),
                bytes(*after_total),
                signed_bytes(change)
            );
            let _ = writeln!(out, "{}", p.bold("spawn sites whose in-use heap grew:"));
            table(&mut out, grew, bytes, signed_bytes, p);
        }
    }

    out.push('\n');
    findings(&mut out, "new findings", &d.new_findings, p);
    if !d.gone_findings.is_empty() {
        out.push('\n');
        findings(&mut out, "findings gone", &d.gone_findings, p);
    }
    out
}

fn signed_bytes(delta: i64) -> String {
    let sign = if delta > 0 {
        "+"
    } else if delta < 0 {
        "-"
    } else {
        ""
    };
    format!("{sign}{}", bytes(delta.unsigned_abs()))
}

/// `  +20   5 -> 25     location`, aligned.
fn table(
    out: &mut String,
    changes: &[Change],
    value: impl Fn(u64) -> String,
    delta: impl Fn(i64) -> String,
    p: Painter,
) {
    if changes.is_empty() {
        let _ = writeln!(out, "  none");
        return;
    }
    let shown = &changes[..changes.len().min(SHOWN)];
    let deltas: Vec<String> = shown.iter().map(|c| delta(c.delta())).collect();
    let spans: Vec<String> =
        shown.iter().map(|c| format!("{} -> {}", value(c.before), value(c.after))).collect();
    let dw = deltas.iter().map(String::len).max().unwrap_or(0);
    let sw = spans.iter().map(String::len).max().unwrap_or(0);
    for ((c, d), s) in shown.iter().zip(&deltas).zip(&spans) {
        let _ = writeln!(out, "  {}  {s:<sw$}  {}", p.red(&format!("{d:>dw$}")), c.location);
    }
    if changes.len() > SHOWN {
        let _ = writeln!(out, "  ... and {} more", changes.len() - SHOWN);
    }
}

fn findings(out: &mut String, title: &str, list: &[Finding], p: Painter) {
    let _ = writeln!(out, "{}", p.bold(&format!("{title} ({}):", list.len())));
    if list.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for f in list {
        let _ = writeln!(
            out,
            "  {} {} at {}: {}",
            p.severity(f.severity, f.severity.as_str()),
            f.kind,
            f.location,
            f.message
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::diff::diff;
    use crate::model::fixtures::{snapshot, AFTER, BEFORE};

    #[test]
    fn the_recorded_diff_reads_top_down() {
        let text = render(&diff(&snapshot(BEFORE), &snapshot(AFTER)), Painter::PLAIN);
        let growth = text.find("  +20  5 -> 25  examples/leaky-server/src/main.rs:48:5\n").expect(&text);
        let heap = text.find("in-use heap per spawn site: not compared: heap profiling is off").expect(&text);
        let new = text.find("new findings (1):\n  warning blocked_worker at").expect(&text);
        assert!(growth < heap && heap < new, "{text}");
        assert_eq!(signed_bytes(-2048), "-2.0 KiB");
    }
}
