//! Text task dumps in the shapes of Go's `goroutine?debug=1` and `debug=2`.

use std::collections::HashMap;
use std::fmt::Write;

use crate::clock::human;
use crate::snapshot::{Snapshot, State};

/// One group of `debug=1`: the tasks of one spawn site parked at one stack.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) site: u32,
    /// The parked-at stack (deep mode).
    pub(crate) stack: Option<u32>,
    pub(crate) running: u64,
    pub(crate) idle: u64,
    /// The longest time any task of the group has been idle.
    pub(crate) max_idle_ms: u64,
    /// The wait reasons of its idle tasks, with counts (deep mode).
    pub(crate) waits: Vec<(&'static str, u64)>,
    /// The names of its named tasks, with counts (deep mode).
    pub(crate) names: Vec<(std::sync::Arc<str>, u64)>,
}

impl Group {
    pub(crate) fn count(&self) -> u64 {
        self.running + self.idle
    }
}

/// A frame as the dumps show it: function, file, line.
type ShownFrame<'a> = (&'a str, Option<&'a str>, Option<u32>);

/// Live tasks grouped by spawn site and parked-at stack, largest first.
/// Stacks that differ only in folded frames (tokio's scheduler reaches a
/// task's poll by more than one path) make one group: the dump shows them
/// alike.
pub(crate) fn groups(snapshot: &Snapshot) -> Vec<Group> {
    let mut shown: HashMap<Vec<ShownFrame>, u32> = HashMap::new();
    let same: HashMap<u32, u32> = snapshot
        .stacks
        .iter()
        .map(|stack| {
            let key =
                stack.trimmed().0.iter().map(|f| (f.function.as_str(), f.file.as_deref(), f.line)).collect();
            (stack.id, *shown.entry(key).or_insert(stack.id))
        })
        .collect();
    let mut by_key: HashMap<(u32, Option<u32>), Group> = HashMap::new();
    for t in &snapshot.tasks {
        let stack = t.parked_at.map(|id| same.get(&id).copied().unwrap_or(id));
        let g = by_key.entry((t.site, stack)).or_insert(Group {
            site: t.site,
            stack,
            running: 0,
            idle: 0,
            max_idle_ms: 0,
            waits: Vec::new(),
            names: Vec::new(),
        });
        match t.state {
            State::Running => g.running += 1,
            State::Idle => g.idle += 1,
        }
        g.max_idle_ms = g.max_idle_ms.max(t.idle_ms);
        if let Some(wait) = t.wait {
            match g.waits.iter_mut().find(|(w, _)| *w == wait) {
                Some((_, n)) => *n += 1,
                None => g.waits.push((wait, 1)),
            }
        }
        if let Some(name) = &t.name {
            match g.names.iter_mut().find(|(m, _)| m == name) {
                Some((_, n)) => *n += 1,
                None => g.names.push((name.clone(), 1)),
            }
        }
    }
    let mut groups: Vec<Group> = by_key.into_values().collect();
    for g in &mut groups {
        g.waits.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        g.names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    groups.sort_by(|a, b| {
        b.count()
            .cmp(&a.count())
            .then_with(|| snapshot.location(a.site).cmp(snapshot.location(b.site)))
            .then(a.stack.cmp(&b.stack))
    });
    groups
}

/// The shown frames of stack `id` as (function, `file:line`), and how many
/// frames were folded away.
fn frames(snapshot: &Snapshot, id: Option<u32>) -> (Vec<(String, String)>, usize) {
    let Some(stack) = id.and_then(|id| snapshot.stacks.iter().find(|s| s.id == id)) else {
        return (Vec::new(), 0);
    };
    let (shown, folded) = stack.trimmed();
    let lines = shown
        .into_iter()
        .map(|f| {
            let file = f.file.as_deref().unwrap_or("?");
            let at = match f.line {
                Some(line) => format!("{file}:{line}"),
                None => file.to_string(),
            };
            (f.function.clone(), at)
        })
        .collect();
    (lines, folded)
}

fn notice(out: &mut String, snapshot: &Snapshot) {
    if let Some(problem) = snapshot.agent.problem {
        let _ = writeln!(out, "# task tracking is off: {problem}");
    }
    if let Some(problem) = snapshot.agent.deep_problem {
        let _ = writeln!(out, "# {problem}");
    }
    if snapshot.agent.dropped.tasks > 0 {
        let _ = writeln!(
            out,
            "# {} spawns were not tracked because the task table was full (TASKSCOPE_MAX_TASKS={})",
            snapshot.agent.dropped.tasks, snapshot.agent.max_tasks
        );
    }
}

/// `debug=1`: tasks grouped by spawn site, with counts, as Go groups
/// goroutines by stack (`N @ ...`).
pub(crate) fn grouped(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "tasks profile: total {}", snapshot.tasks_total);
    notice(&mut out, snapshot);
    for g in groups(snapshot) {
        let _ = writeln!(out, "{} @ spawned at {}", g.count(), snapshot.location(g.site));
        let waits: Vec<String> = g.waits.iter().map(|(w, n)| format!("{n} {w}")).collect();
        let idle = if waits.is_empty() { format!("{} idle", g.idle) } else { waits.join(", ") };
        let _ = write!(out, "#\t{idle}, {} running; longest idle {}", g.running, human(g.max_idle_ms));
        // A snapshot lists every site its tasks name; should one be missing,
        // the group is shown without the site's counts.
        if let Some(site) = snapshot.sites.get(g.site as usize) {
            let _ = write!(
                out,
                "; spawned {}, completed {}, peak live {}",
                site.spawned, site.completed, site.peak_live
            );
        }
        out.push('\n');
        if !g.names.is_empty() {
            const SHOWN: usize = 10;
            let names: Vec<String> =
                g.names.iter().take(SHOWN).map(|(name, n)| format!("{name:?} ({n})")).collect();
            let more = g.names.len().saturating_sub(SHOWN);
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            let _ = writeln!(out, "#\tnamed {}{more}", names.join(", "));
        }
        let (lines, _) = frames(snapshot, g.stack);
        for (function, at) in lines {
            let _ = writeln!(out, "#\t{function}\t{at}");
        }
        out.push('\n');
    }
    out
}

/// `debug=2`: one block per task, in Go's shape: `task 42 [idle, 5 minutes]:`,
/// its numbers, then `spawned at file:line:col`, blocks separated by a blank
/// line. Tasks are listed by id.
#[cfg(test)]
pub(crate) fn per_task(snapshot: &Snapshot) -> String {
    String::from_utf8(super::collected(|send| per_task_streamed(snapshot, send))).unwrap_or_default()
}

/// [`per_task`], handed to `send` in chunks of about
/// [`CHUNK`](super::json::CHUNK) bytes as it is written (a million tasks make
/// some 200 MB of text). `send` returns false to stop.
pub(crate) fn per_task_streamed(snapshot: &Snapshot, send: &mut dyn FnMut(Vec<u8>) -> bool) {
    let chunk = super::json::CHUNK;
    let mut out = String::with_capacity(chunk + 4096);
    notice(&mut out, snapshot);
    // Sorted (id, index) pairs, not indices compared through the tasks:
    // the registry hands out tasks in a few runs of ascending ids, which a
    // stable sort finds.
    let mut order: Vec<(u64, u32)> =
        snapshot.tasks.iter().enumerate().map(|(i, t)| (t.id, i as u32)).collect();
    order.sort();
    let waits = snapshot.resources.wait_index();
    let holds = snapshot.resources.hold_index();
    for (_, i) in order {
        if out.len() >= chunk
            && !send(std::mem::replace(&mut out, String::with_capacity(chunk + 4096)).into_bytes())
        {
            return;
        }
        let t = &snapshot.tasks[i as usize];
        let status = match (t.state, t.wait) {
            (State::Idle, Some(wait)) => wait,
            (state, _) => state.as_str(),
        };
        let _ = writeln!(out, "task {} [{status}, {}]:", t.id, human(t.state_ms()));
        if let Some(name) = &t.name {
            let _ = writeln!(out, "\tname: {name:?}");
        }
        resource_lines(&mut out, &waits, &holds, t);
        // A running task's last parking place says nothing about now.
        let parked = if t.state == State::Idle { t.parked_at } else { None };
        let (lines, folded) = frames(snapshot, parked);
        if parked.is_some() && t.parked_stale && !lines.is_empty() {
            out.push_str("\t(approximate: parked again within the millisecond after this stack was taken)\n");
        }
        for (function, at) in &lines {
            let _ = writeln!(out, "{function}\n\t{at}");
        }
        if folded > 0 && !lines.is_empty() {
            let frames = if folded == 1 { "frame" } else { "frames" };
            let _ = writeln!(out, "\t... {folded} {frames} of tokio, std and taskscope folded");
        }
        let _ = writeln!(out, "\tpolls: {}, busy: {}, age: {}", t.polls, human(t.busy_ms), human(t.age_ms));
        let _ = writeln!(out, "spawned at {}", snapshot.location(t.site));
        out.push('\n');
    }
    if !out.is_empty() {
        send(out.into_bytes());
    }
}

/// Deep mode: the resource an idle task waits on and who holds it, and the
/// resources it holds.
fn resource_lines(
    out: &mut String,
    waits: &HashMap<u64, &crate::deep::resources::Resource>,
    holds: &HashMap<u64, Vec<&crate::deep::resources::Resource>>,
    t: &crate::snapshot::Task,
) {
    if t.state == State::Idle {
        if let Some(r) = waits.get(&t.id) {
            let held = match r.holders_text() {
                Some(holders) => format!(", held by {holders}"),
                // A barrier has no holder: its waiters wait for each other.
                None if r.kind == crate::deep::resources::Kind::Barrier => String::new(),
                None if !r.kind.holders_known() => " (its holders are not tracked)".to_string(),
                None => String::new(),
            };
            let _ = writeln!(out, "\twaiting on {}{held}", r.describe());
        }
    }
    for r in holds.get(&t.id).into_iter().flatten() {
        let _ = writeln!(out, "\tholding {}", r.describe());
    }
}

/// `/debug/taskscope/findings`: one paragraph per finding, most severe first.
pub(crate) fn findings(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    notice(&mut out, snapshot);
    if snapshot.findings.is_empty() {
        out.push_str("no findings\n");
    }
    for f in &snapshot.findings {
        let _ = writeln!(out, "{} {} at {}: {}", f.severity.as_str(), f.kind.as_str(), f.location, f.message);
        if !f.task_ids.is_empty() {
            let ids: Vec<String> = f.task_ids.iter().take(20).map(u64::to_string).collect();
            let more = f.task_ids.len().saturating_sub(20);
            let _ = write!(out, "\ttasks: {}", ids.join(", "));
            if more > 0 {
                let _ = write!(out, " and {more} more");
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixture;

    /// Compares with `tests/data/<name>`; `UPDATE_GOLDEN=1` rewrites it.
    fn golden(name: &str, actual: &str) {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(actual, expected, "{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)");
    }

    #[test]
    fn debug_1_matches_its_golden_file() {
        golden("tasks_debug1.txt", &grouped(&fixture()));
    }

    #[test]
    fn a_task_naming_a_site_the_snapshot_lacks_is_shown_not_a_panic() {
        let mut s = fixture();
        let missing = s.sites.len() as u32;
        s.tasks[0].site = missing;
        let out = grouped(&s);
        assert!(out.contains("1 @ spawned at <unknown>\n#\t"), "{out}");
        assert!(per_task(&s).contains("spawned at <unknown>"));
    }

    #[test]
    fn debug_2_matches_its_golden_file() {
        golden("tasks_debug2.txt", &per_task(&fixture()));
    }

    #[test]
    fn deep_dumps_match_their_golden_files() {
        let s = crate::snapshot::deep_fixture();
        golden("tasks_debug1_deep.txt", &grouped(&s));
        golden("tasks_debug2_deep.txt", &per_task(&s));
    }

    #[test]
    fn stacks_that_differ_only_in_folded_frames_make_one_group() {
        let mut s = crate::snapshot::deep_fixture();
        let before = grouped(&s);
        // Task 43 parked at the same place, reached through another path of
        // tokio's scheduler: only the folded frames differ.
        let mut other = s.stacks[0].clone();
        other.id = 7;
        let last = other.frames.len() - 1;
        other.frames[last].line = Some(999);
        s.stacks.push(other);
        s.tasks.iter_mut().find(|t| t.id == 43).unwrap().parked_at = Some(7);
        assert_eq!(grouped(&s), before);
        // A frame that shows makes its own group.
        s.stacks[2].frames[3].line = Some(30);
        let groups = groups(&s);
        assert!(groups.iter().any(|g| g.stack == Some(7) && g.count() == 1), "{groups:?}");
    }

    #[test]
    fn groups_count_states_and_order_by_size_then_location() {
        let g = groups(&fixture());
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].site, g[0].idle, g[0].running, g[0].max_idle_ms), (1, 2, 0, 300_000));
        assert!(g[0].waits.is_empty(), "lean mode knows no wait reasons");
        assert_eq!((g[1].site, g[1].idle, g[1].running), (2, 1, 1));
    }

    #[test]
    fn dumps_say_when_tracking_is_off_and_how_to_turn_it_on() {
        let mut s = fixture();
        s.agent.problem = crate::health::tracking_problem().or(Some("needs --cfg tokio_unstable"));
        s.agent.dropped.tasks = 5;
        for text in [grouped(&s), per_task(&s)] {
            assert!(text.contains("# task tracking is off: "), "{text}");
            assert!(text.contains("5 spawns were not tracked"), "{text}");
        }
    }
}
