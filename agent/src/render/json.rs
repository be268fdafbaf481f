//! The snapshot as JSON, with server-side filtering, sorting and paging of
//! tasks so that clients stay fast with a million of them.

use serde::Serialize;

use crate::snapshot::{Snapshot, State, Task};

/// What to sort tasks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SortKey {
    #[default]
    Id,
    Idle,
    Running,
    Age,
    Polls,
    Busy,
}

impl SortKey {
    pub(crate) const NAMES: &'static str = "id, idle, running, age, polls, busy";

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "id" => SortKey::Id,
            "idle" => SortKey::Idle,
            "running" => SortKey::Running,
            "age" => SortKey::Age,
            "polls" => SortKey::Polls,
            "busy" => SortKey::Busy,
            _ => return None,
        })
    }

    fn key(self, t: &Task) -> u64 {
        match self {
            SortKey::Id => t.id,
            SortKey::Idle => t.idle_ms,
            SortKey::Running => t.running_ms,
            SortKey::Age => t.age_ms,
            SortKey::Polls => t.polls,
            SortKey::Busy => t.busy_ms,
        }
    }
}

/// The task selection of `/debug/taskscope/api/snapshot`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskQuery {
    pub(crate) sort: SortKey,
    /// Defaults to ascending for `id`, descending for the others.
    pub(crate) descending: Option<bool>,
    pub(crate) offset: usize,
    /// All tasks when `None`.
    pub(crate) limit: Option<usize>,
    pub(crate) state: Option<State>,
    pub(crate) site: Option<u32>,
}

impl TaskQuery {
    /// Filters, sorts and pages `snapshot.tasks` in place. `tasks_total`
    /// keeps the count before paging (after filtering).
    pub(crate) fn apply(&self, snapshot: &mut Snapshot) {
        let tasks = &mut snapshot.tasks;
        if self.state.is_some() || self.site.is_some() {
            tasks
                .retain(|t| self.state.is_none_or(|s| s == t.state) && self.site.is_none_or(|s| s == t.site));
        }
        snapshot.tasks_total = tasks.len();
        let descending = self.descending.unwrap_or(self.sort != SortKey::Id);
        let sort = self.sort;
        let cmp = |a: &Task, b: &Task| {
            let o = sort.key(a).cmp(&sort.key(b)).then(a.id.cmp(&b.id));
            if descending {
                o.reverse()
            } else {
                o
            }
        };
        let end = self.limit.map_or(tasks.len(), |l| self.offset.saturating_add(l).min(tasks.len()));
        let start = self.offset.min(end);
        if end < tasks.len() && end > 0 {
            // Only the first `end` need ordering.
            tasks.select_nth_unstable_by(end - 1, cmp);
            tasks.truncate(end);
        }
        tasks.sort_unstable_by(cmp);
        tasks.drain(..start);
    }
}

#[derive(Serialize)]
struct TaskJson<'a> {
    id: u64,
    state: State,
    spawned_at: &'a str,
    site: u32,
    polls: u64,
    busy_ms: u64,
    age_ms: u64,
    idle_ms: u64,
    running_ms: u64,
}

#[derive(Serialize)]
struct SnapshotJson<'a> {
    tasks: TasksJson<'a>,
    tasks_total: usize,
    sites: &'a [crate::snapshot::Site],
    completed: &'a [crate::snapshot::CompletedTask],
    workers: &'a [crate::snapshot::Worker],
    heap: &'a crate::heap::HeapSummary,
    findings: &'a [crate::snapshot::Finding],
    agent: &'a crate::snapshot::AgentInfo,
}

struct TasksJson<'a>(&'a Snapshot);

impl Serialize for TasksJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.tasks.iter().map(|t| TaskJson {
            id: t.id,
            state: t.state,
            spawned_at: self.0.location(t.site),
            site: t.site,
            polls: t.polls,
            busy_ms: t.busy_ms,
            age_ms: t.age_ms,
            idle_ms: t.idle_ms,
            running_ms: t.running_ms,
        }))
    }
}

/// The snapshot as compact JSON.
pub(crate) fn snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let body = SnapshotJson {
        tasks: TasksJson(snapshot),
        tasks_total: snapshot.tasks_total,
        sites: &snapshot.sites,
        completed: &snapshot.completed,
        workers: &snapshot.workers,
        heap: &snapshot.heap,
        findings: &snapshot.findings,
        agent: &snapshot.agent,
    };
    let mut out = Vec::with_capacity(snapshot.tasks.len() * 160 + 4096);
    // Serializing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &body);
    out
}
