//! Which tasks the findings flag: a task is stuck (or has lost its waker, or
//! blocks its worker) when a finding names its id, and leaking when it was
//! spawned at a leaking site. A finding lists at most 100 ids, so past that
//! a task also counts when it matches the finding's site, wait reason and
//! idle time. The TUI colours rows with this; the detail view takes the
//! wait reason and the parked-at stack from the same finding.

use std::collections::HashMap;

use super::{Finding, Severity, Snapshot, Task};

/// Why a task is highlighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Stuck,
    LostWaker,
    Deadlock,
    Blocking,
    /// Wakes itself most of the time: a busy loop through the executor.
    Busy,
    Leaking,
    /// A kind this viewer does not know yet.
    Other,
}

impl Flag {
    fn of_kind(kind: &str) -> Flag {
        match kind {
            "stuck_task" => Flag::Stuck,
            "lost_waker" => Flag::LostWaker,
            "deadlock" => Flag::Deadlock,
            "blocked_worker" => Flag::Blocking,
            "busy_self_wake" => Flag::Busy,
            "leaking_spawn_site" => Flag::Leaking,
            _ => Flag::Other,
        }
    }

    /// The label of a highlighted row.
    pub fn label(self) -> &'static str {
        match self {
            Flag::Stuck => "STUCK",
            Flag::LostWaker => "NO WAKER",
            Flag::Deadlock => "DEADLOCK",
            Flag::Blocking => "BLOCKING",
            Flag::Busy => "BUSY",
            Flag::Leaking => "LEAKING",
            Flag::Other => "FLAGGED",
        }
    }
}

/// A task's flag and the finding behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFlag {
    pub flag: Flag,
    pub severity: Severity,
    /// Index into the snapshot's findings.
    pub finding: usize,
}

impl TaskFlag {
    /// The label of the row: the flag's, except that an info-level stuck
    /// finding (idle past the threshold with no known wait, as lean mode
    /// reports) only says the task has been idle long.
    pub fn label(&self) -> &'static str {
        match (self.flag, self.severity) {
            (Flag::Stuck, Severity::Info) => "LONG IDLE",
            (flag, _) => flag.label(),
        }
    }
}

/// The findings, indexed for looking tasks up.
#[derive(Debug, Default)]
pub struct Flags {
    /// Finding indices in the order to try them: most severe first, and a
    /// finding about tasks before one about a whole site.
    order: Vec<usize>,
    by_task: HashMap<u64, Vec<usize>>,
    findings: Vec<Finding>,
}

impl Flags {
    pub fn new(findings: &[Finding]) -> Flags {
        let mut order: Vec<usize> = (0..findings.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(findings[i].severity), is_site_wide(&findings[i]), i));
        let mut by_task: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, f) in findings.iter().enumerate() {
            for id in &f.task_ids {
                by_task.entry(*id).or_default().push(i);
            }
        }
        Flags { order, by_task, findings: findings.to_vec() }
    }

    pub fn of_snapshot(snapshot: &Snapshot) -> Flags {
        Flags::new(&snapshot.findings)
    }

    /// Whether `finding` covers `task`.
    fn covers(&self, i: usize, task: &Task) -> bool {
        let f = &self.findings[i];
        if self.by_task.get(&task.id).is_some_and(|ids| ids.contains(&i)) {
            return true;
        }
        if task.spawned_at != f.location {
            return false;
        }
        if is_site_wide(f) {
            return true;
        }
        // Past the capped id list: same site, same wait, idle at least as long.
        let capped = f.task_count() > f.task_ids.len() as u64;
        let wait_matches = match (task.wait.as_deref(), f.wait()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        let min_idle = f.evidence.get("idle_ms_min").and_then(|v| v.as_u64()).unwrap_or(u64::MAX);
        capped && wait_matches && !task.is_running() && task.idle_ms >= min_idle
    }

    /// The most severe flag on `task`, if any.
    pub fn of(&self, task: &Task) -> Option<TaskFlag> {
        self.order.iter().copied().find(|&i| self.covers(i, task)).map(|i| TaskFlag {
            flag: Flag::of_kind(&self.findings[i].kind),
            severity: self.findings[i].severity,
            finding: i,
        })
    }

    /// Every finding about `task`, most severe first.
    pub fn findings_about(&self, task: &Task) -> Vec<usize> {
        self.order.iter().copied().filter(|&i| self.covers(i, task)).collect()
    }

    /// What `task` waits on: its own wait reason, else its finding's.
    pub fn wait_of<'a>(&'a self, task: &'a Task) -> Option<&'a str> {
        task.wait
            .as_deref()
            .or_else(|| self.findings_about(task).into_iter().find_map(|i| self.findings[i].wait()))
    }

    /// Whether the site at `location` is leaking.
    pub fn site_is_leaking(&self, location: &str) -> bool {
        self.findings.iter().any(|f| f.kind == "leaking_spawn_site" && f.location == location)
    }
}

/// A finding about a spawn site as a whole rather than some of its tasks.
fn is_site_wide(f: &Finding) -> bool {
    f.kind == "leaking_spawn_site"
}

/// Where `task` is parked, as `function at file:line` lines, leaf first: from
/// the snapshot's stacks when the agent exports them, else from the finding
/// that flags it. Empty when neither knows.
pub fn backtrace(snapshot: &Snapshot, flags: &Flags, task: &Task) -> Vec<String> {
    if let Some(stack) = task.parked_at.and_then(|id| snapshot.stacks.iter().find(|s| s.id == id)) {
        let mut lines: Vec<String> = stack
            .frames
            .iter()
            .map(|f| match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{} at {file}:{line}", f.function),
                (Some(file), None) => format!("{} at {file}", f.function),
                _ => f.function.clone(),
            })
            .collect();
        if stack.folded > 0 && !lines.is_empty() {
            lines.push(format!("... {} frames of tokio, std and taskscope folded", stack.folded));
        }
        return lines;
    }
    flags
        .findings_about(task)
        .into_iter()
        .map(|i| snapshot.findings[i].parked_at())
        .find(|frames| !frames.is_empty())
        .map(|frames| frames.into_iter().map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{snapshot, HEALTHY, LEAKY};

    fn task(s: &Snapshot, id: u64) -> &Task {
        s.tasks.iter().find(|t| t.id == id).unwrap()
    }

    #[test]
    fn named_tasks_are_flagged_by_their_finding() {
        let s = snapshot(LEAKY);
        let flags = Flags::of_snapshot(&s);
        let lost = s.findings.iter().find(|f| f.kind == "lost_waker").unwrap();
        let f = flags.of(task(&s, lost.task_ids[0])).unwrap();
        assert_eq!((f.flag, f.severity), (Flag::LostWaker, Severity::Critical));
        assert_eq!(flags.wait_of(task(&s, lost.task_ids[0])), Some("no waker"));
    }

    #[test]
    fn tasks_past_the_capped_id_list_are_still_flagged() {
        let s = snapshot(LEAKY);
        let flags = Flags::of_snapshot(&s);
        let capped = s.findings.iter().find(|f| f.kind == "stuck_task" && f.task_count() > 100).unwrap();
        let unnamed: Vec<&Task> = s
            .tasks
            .iter()
            .filter(|t| t.spawned_at == capped.location && !capped.task_ids.contains(&t.id))
            .collect();
        let threshold = capped.evidence["idle_ms_min"].as_u64().unwrap();
        let (stuck, young): (Vec<&Task>, Vec<&Task>) =
            unnamed.into_iter().partition(|t| t.idle_ms >= threshold);
        assert!(!stuck.is_empty() && !young.is_empty());
        for t in stuck {
            let f = flags.of(t).unwrap();
            assert_eq!(f.flag, Flag::Stuck, "task {} is stuck, a task-level finding beats the leak", t.id);
            assert!(!backtrace(&s, &flags, t).is_empty());
        }
        for t in young {
            assert_eq!(flags.of(t).unwrap().flag, Flag::Leaking, "task {} is too young to be stuck", t.id);
        }
        assert!(flags.site_is_leaking(&capped.location));
    }

    #[test]
    fn the_agents_own_wait_reasons_and_stacks_come_first() {
        // Agents that export per-task wait reasons and parked-at stacks.
        let mut s = snapshot(HEALTHY);
        let json = r#"{"id": 7, "frames": [
            {"function": "tokio::time::sleep::Sleep::poll", "file": "tokio/src/time/sleep.rs", "line": 457},
            {"function": "app::ticker::{{closure}}", "file": "src/main.rs", "line": 41, "user": true}],
            "folded": 12, "reason": "sleep"}"#;
        s.stacks.push(serde_json::from_str(json).unwrap());
        s.tasks[0].wait = Some("sleep".into());
        s.tasks[0].parked_at = Some(7);
        let flags = Flags::of_snapshot(&s);
        assert_eq!(flags.wait_of(&s.tasks[0]), Some("sleep"));
        assert_eq!(
            backtrace(&s, &flags, &s.tasks[0]),
            [
                "tokio::time::sleep::Sleep::poll at tokio/src/time/sleep.rs:457",
                "app::ticker::{{closure}} at src/main.rs:41",
                "... 12 frames of tokio, std and taskscope folded"
            ]
        );
    }

    #[test]
    fn info_level_idleness_is_not_called_stuck() {
        let f = TaskFlag { flag: Flag::Stuck, severity: Severity::Info, finding: 0 };
        assert_eq!(f.label(), "LONG IDLE");
        assert_eq!(TaskFlag { severity: Severity::Warning, ..f }.label(), "STUCK");
    }

    #[test]
    fn healthy_tasks_are_not_flagged() {
        let s = snapshot(HEALTHY);
        let flags = Flags::of_snapshot(&s);
        assert!(s.tasks.iter().all(|t| flags.of(t).is_none()));
        let s = snapshot(LEAKY);
        let flags = Flags::of_snapshot(&s);
        let ticker = s.tasks.iter().find(|t| t.spawned_at.ends_with("main.rs:126:5")).unwrap();
        assert_eq!(flags.of(ticker), None, "the interval ticker is fine");
        assert!(backtrace(&s, &flags, ticker).is_empty());
    }

    #[test]
    fn a_busy_self_wake_finding_flags_its_tasks_busy() {
        assert_eq!(Flag::of_kind("busy_self_wake"), Flag::Busy);
        assert_eq!(Flag::Busy.label(), "BUSY");
    }
}
