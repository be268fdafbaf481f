//! The snapshot as JSON, with server-side filtering, sorting and paging of
//! tasks so that clients stay fast with a million of them.
//!
//! Next to the selected tasks go the counts of all live tasks by state and
//! wait reason (`task_counts`, taken before the selection, for a client's
//! summary and filters) and the parked-at stacks that the selected tasks
//! refer to (`stacks`, trimmed to the frames worth showing), so that one
//! answer is enough to draw a page of the viewer.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::snapshot::{Frame, Snapshot, State, Task};

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
    /// Only tasks waiting on this (`chan receive`, ...); [`NO_WAIT`] for
    /// tasks without a wait reason (running, or lean mode).
    pub(crate) wait: Option<String>,
    /// Only these tasks, e.g. those a finding names.
    pub(crate) ids: Option<Vec<u64>>,
    /// Only tasks idle for at least this long (running tasks never match).
    pub(crate) min_idle_ms: Option<u64>,
    /// Only tasks polled at least / at most this often.
    pub(crate) min_polls: Option<u64>,
    pub(crate) max_polls: Option<u64>,
}

/// The `wait` filter of tasks that have no wait reason.
pub(crate) const NO_WAIT: &str = "none";

impl TaskQuery {
    fn filters(&self) -> bool {
        self.state.is_some()
            || self.site.is_some()
            || self.wait.is_some()
            || self.ids.is_some()
            || self.min_idle_ms.is_some()
            || self.min_polls.is_some()
            || self.max_polls.is_some()
    }

    /// Filters, sorts and pages the snapshot's tasks: the indices into
    /// `snapshot.tasks` of the tasks selected, in order. `tasks_total`
    /// becomes the count before paging (after filtering). The tasks
    /// themselves are not moved: with a million of them, sorting the
    /// 144-byte tasks took 150 ms, sorting 24-byte keys takes a few.
    pub(crate) fn select(&self, snapshot: &mut Snapshot) -> Vec<u32> {
        let tasks = &snapshot.tasks;
        let ids: Option<BTreeSet<u64>> = self.ids.as_ref().map(|ids| ids.iter().copied().collect());
        let keep = |t: &Task| {
            self.state.is_none_or(|s| s == t.state)
                && self.site.is_none_or(|s| s == t.site)
                && self.wait.as_deref().is_none_or(|w| t.wait.unwrap_or(NO_WAIT) == w)
                && ids.as_ref().is_none_or(|ids| ids.contains(&t.id))
                && self.min_idle_ms.is_none_or(|ms| t.state == State::Idle && t.idle_ms >= ms)
                && self.min_polls.is_none_or(|n| t.polls >= n)
                && self.max_polls.is_none_or(|n| t.polls <= n)
        };
        let descending = self.descending.unwrap_or(self.sort != SortKey::Id);
        // Ascending order of (key, id) is the order asked for: descending
        // flips both, and ids are unique, so the index never decides.
        let flip = if descending { u64::MAX } else { 0 };
        let filters = self.filters();
        let mut keys: Vec<(u64, u64, u32)> = tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| !filters || keep(t))
            // Sorting by id, the key is the id: leave it out of the sort.
            .map(|(i, t)| {
                (if self.sort == SortKey::Id { 0 } else { self.sort.key(t) ^ flip }, t.id ^ flip, i as u32)
            })
            .collect();
        snapshot.tasks_total = keys.len();
        let end = self.limit.map_or(keys.len(), |l| self.offset.saturating_add(l).min(keys.len()));
        let start = self.offset.min(end);
        if end == 0 {
            // `limit=0`: the counts and the rest of the snapshot only.
            return Vec::new();
        }
        if end < keys.len() {
            // Only the first `end` need ordering.
            keys.select_nth_unstable(end - 1);
            keys.truncate(end);
        }
        // A stable sort: it finds runs, and the registry hands out tasks
        // in a few runs of ascending ids (its window, then its slab in
        // spawn order), so the default order costs a few ms for a million.
        keys.sort();
        keys[start..].iter().map(|&(_, _, i)| i).collect()
    }

    /// [`Self::select`], moving the selected tasks into `snapshot.tasks` in
    /// order (for small snapshots and tests).
    #[cfg(test)]
    pub(crate) fn apply(&self, snapshot: &mut Snapshot) {
        let order = self.select(snapshot);
        let mut tasks: Vec<Option<Task>> =
            std::mem::take(&mut snapshot.tasks).into_iter().map(Some).collect();
        snapshot.tasks = order.iter().filter_map(|&i| tasks[i as usize].take()).collect();
    }
}

/// One task in the JSON, as [`TasksJson::write`] writes it (the tests check
/// that both agree).
#[cfg(test)]
#[derive(Serialize)]
struct TaskJson<'a> {
    id: u64,
    /// Deep mode: the name given with `tokio::task::Builder::name`; null
    /// when it has none (or in lean mode).
    name: Option<&'a str>,
    state: State,
    spawned_at: &'a str,
    site: u32,
    polls: u64,
    busy_ms: u64,
    age_ms: u64,
    idle_ms: u64,
    running_ms: u64,
    wait: Option<&'static str>,
    parked_at: Option<u32>,
    /// Only when true: `parked_at` is from an earlier poll of the same ms.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    parked_approximate: bool,
    wakers: Option<i64>,
    woken: Option<bool>,
    /// Deep mode: wakes of its waker, and those the task made itself.
    wakes: Option<u64>,
    self_wakes: Option<u64>,
    /// Deep mode: the tokio resource an idle task waits on, with its
    /// holders; absent when it waits on none.
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<crate::deep::resources::ResourceRef<'a>>,
}

/// Live tasks by state and wait reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct TaskCounts {
    pub(crate) total: usize,
    pub(crate) idle: usize,
    pub(crate) running: usize,
    /// Idle tasks by what they wait on (deep mode); empty in lean mode.
    pub(crate) by_wait: BTreeMap<&'static str, usize>,
}

impl TaskCounts {
    pub(crate) fn of(tasks: &[Task]) -> Self {
        let mut counts = TaskCounts { total: tasks.len(), ..TaskCounts::default() };
        for t in tasks {
            match t.state {
                State::Idle => counts.idle += 1,
                State::Running => counts.running += 1,
            }
            if let Some(w) = t.wait {
                *counts.by_wait.entry(w).or_default() += 1;
            }
        }
        counts
    }
}

/// A parked-at stack, trimmed by [`Stack::trimmed`](crate::snapshot::Stack::trimmed).
#[derive(Serialize)]
struct StackJson<'a> {
    id: u32,
    reason: &'static str,
    frames: Vec<&'a Frame>,
    /// Frames of the runtime and the libraries left out.
    folded: usize,
}

#[derive(Serialize)]
struct SnapshotJson<'a> {
    // `tasks` comes first, written by `TasksJson::write`.
    tasks_total: usize,
    task_counts: &'a TaskCounts,
    stacks: Vec<StackJson<'a>>,
    sites: &'a [crate::snapshot::Site],
    completed: &'a [crate::snapshot::CompletedTask],
    workers: &'a [crate::snapshot::Worker],
    /// Deep mode: tokio resources that are held or waited on.
    resources: &'a crate::deep::resources::Resources,
    heap: &'a crate::heap::HeapSummary,
    findings: &'a [crate::snapshot::Finding],
    agent: &'a crate::snapshot::AgentInfo,
}

/// The tasks of a snapshot at these indices, in their order.
struct TasksJson<'a>(&'a Snapshot, &'a [u32]);

impl TasksJson<'_> {
    /// Writes the tasks as a JSON array. A million tasks make some 250 MB
    /// of JSON, so this writes each task's fields directly rather than
    /// through serde (whose escaping of every key and string dominated), in
    /// the same order and form as [`TaskJson`], which documents them.
    ///
    /// `flush` is called between tasks once `out` holds [`CHUNK`] bytes or
    /// more, to send them on; it returns false to stop (the client is
    /// gone), and then so does `write`.
    fn write(&self, out: &mut Vec<u8>, flush: &mut dyn FnMut(&mut Vec<u8>) -> bool) -> bool {
        let TasksJson(snapshot, order) = *self;
        let waits = snapshot.resources.wait_index();
        // Each site's location escaped once, not once per task.
        let sites: Vec<Vec<u8>> = snapshot.sites.iter().map(|site| escaped(&site.location)).collect();
        let unknown = escaped("<unknown>");
        let mut n = itoa::Buffer::new();
        out.push(b'[');
        for (i, t) in order.iter().filter_map(|&i| snapshot.tasks.get(i as usize)).enumerate() {
            if i > 0 {
                out.push(b',');
                if out.len() >= CHUNK && !flush(out) {
                    return false;
                }
            }
            out.extend_from_slice(b"{\"id\":");
            out.extend_from_slice(n.format(t.id).as_bytes());
            out.extend_from_slice(b",\"name\":");
            match &t.name {
                Some(name) => out.extend_from_slice(&escaped(name)),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"state\":\"");
            out.extend_from_slice(t.state.as_str().as_bytes());
            out.extend_from_slice(b"\",\"spawned_at\":");
            out.extend_from_slice(sites.get(t.site as usize).unwrap_or(&unknown));
            for (key, value) in [
                (&b",\"site\":"[..], t.site as u64),
                (b",\"polls\":", t.polls),
                (b",\"busy_ms\":", t.busy_ms),
                (b",\"age_ms\":", t.age_ms),
                (b",\"idle_ms\":", t.idle_ms),
                (b",\"running_ms\":", t.running_ms),
            ] {
                out.extend_from_slice(key);
                out.extend_from_slice(n.format(value).as_bytes());
            }
            out.extend_from_slice(b",\"wait\":");
            match t.wait {
                Some(wait) => out.extend_from_slice(&escaped(wait)),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"parked_at\":");
            optional(out, &mut n, t.parked_at.map(u64::from));
            if t.parked_stale {
                out.extend_from_slice(b",\"parked_approximate\":true");
            }
            out.extend_from_slice(b",\"wakers\":");
            match t.wakers {
                Some(w) => out.extend_from_slice(n.format(w).as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"woken\":");
            out.extend_from_slice(match t.woken {
                Some(true) => b"true",
                Some(false) => b"false",
                None => b"null",
            });
            out.extend_from_slice(b",\"wakes\":");
            optional(out, &mut n, t.wakes);
            out.extend_from_slice(b",\"self_wakes\":");
            optional(out, &mut n, t.self_wakes);
            if let Some(r) = waits.get(&t.id).filter(|_| t.state == State::Idle) {
                out.extend_from_slice(b",\"resource\":");
                // Serializing plain data into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, &r.as_ref());
            }
            out.push(b'}');
        }
        out.push(b']');
        true
    }
}

/// `s` as a JSON string, quotes included.
fn escaped(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_else(|_| b"null".to_vec())
}

fn optional(out: &mut Vec<u8>, n: &mut itoa::Buffer, value: Option<u64>) {
    match value {
        Some(v) => out.extend_from_slice(n.format(v).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

/// Bytes of JSON handed on at a time when streaming.
pub(crate) const CHUNK: usize = 256 * 1024;

/// The snapshot as compact JSON, its tasks selected by `query`.
#[cfg(test)]
pub(crate) fn selected(snapshot: Snapshot, query: &TaskQuery) -> Vec<u8> {
    super::collected(|send| stream(snapshot, query, send))
}

/// The snapshot as compact JSON, its tasks selected by `query`, handed to
/// `send` in chunks of about [`CHUNK`] bytes as it is written, so that a
/// million tasks (some 250 MB) are never in memory at once and the first
/// bytes leave before the last are written. `send` returns false to stop.
pub(crate) fn stream(mut snapshot: Snapshot, query: &TaskQuery, send: &mut dyn FnMut(Vec<u8>) -> bool) {
    let counts = TaskCounts::of(&snapshot.tasks);
    let order = query.select(&mut snapshot);
    // Only the stacks the tasks shown refer to.
    let referenced: BTreeSet<u32> =
        order.iter().filter_map(|&i| snapshot.tasks.get(i as usize)?.parked_at).collect();
    let stacks = snapshot
        .stacks
        .iter()
        .filter(|s| referenced.contains(&s.id))
        .map(|s| {
            let (frames, folded) = s.trimmed();
            StackJson { id: s.id, reason: s.reason, frames, folded }
        })
        .collect();
    let body = SnapshotJson {
        tasks_total: snapshot.tasks_total,
        task_counts: &counts,
        stacks,
        sites: &snapshot.sites,
        completed: &snapshot.completed,
        workers: &snapshot.workers,
        resources: &snapshot.resources,
        heap: &snapshot.heap,
        findings: &snapshot.findings,
        agent: &snapshot.agent,
    };
    let mut out = Vec::with_capacity(CHUNK + 4096);
    let mut flush = |out: &mut Vec<u8>| send(std::mem::replace(out, Vec::with_capacity(CHUNK + 4096)));
    out.extend_from_slice(b"{\"tasks\":");
    if !TasksJson(&snapshot, &order).write(&mut out, &mut flush) {
        return;
    }
    // Serializing plain data into a Vec cannot fail.
    let rest = serde_json::to_vec(&body).unwrap_or_default();
    out.push(b',');
    out.extend_from_slice(rest.strip_prefix(b"{").unwrap_or(&rest));
    flush(&mut out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{deep_fixture, fixture};

    fn ids(s: &Snapshot) -> Vec<u64> {
        s.tasks.iter().map(|t| t.id).collect()
    }

    fn json(bytes: Vec<u8>) -> serde_json::Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    /// The tasks as serde writes [`TaskJson`].
    fn by_serde(s: &Snapshot) -> Vec<u8> {
        let waits = s.resources.wait_index();
        let tasks: Vec<TaskJson> = s
            .tasks
            .iter()
            .map(|t| TaskJson {
                id: t.id,
                name: t.name.as_deref(),
                state: t.state,
                spawned_at: s.location(t.site),
                site: t.site,
                polls: t.polls,
                busy_ms: t.busy_ms,
                age_ms: t.age_ms,
                idle_ms: t.idle_ms,
                running_ms: t.running_ms,
                wait: t.wait,
                parked_at: t.parked_at,
                parked_approximate: t.parked_stale,
                wakers: t.wakers,
                woken: t.woken,
                wakes: t.wakes,
                self_wakes: t.self_wakes,
                resource: waits.get(&t.id).filter(|_| t.state == State::Idle).map(|r| r.as_ref()),
            })
            .collect();
        serde_json::to_vec(&tasks).unwrap()
    }

    #[test]
    fn the_task_writer_writes_what_serde_would() {
        let mut deep = deep_fixture();
        deep.tasks[0].name = Some("a \"quoted\"\n name".into());
        deep.tasks[1].parked_stale = true;
        deep.tasks[1].wakers = Some(-2);
        deep.sites[0].location = "src/\u{e9}\\x.rs:1:2".into();
        for s in [fixture(), deep] {
            let mut mine = Vec::new();
            let all: Vec<u32> = (0..s.tasks.len() as u32).collect();
            TasksJson(&s, &all).write(&mut mine, &mut |_| true);
            assert_eq!(String::from_utf8(mine).unwrap(), String::from_utf8(by_serde(&s)).unwrap());
        }
    }

    #[test]
    fn sorts_and_pages_after_filtering() {
        let mut s = fixture();
        TaskQuery { sort: SortKey::Idle, limit: Some(2), ..TaskQuery::default() }.apply(&mut s);
        assert_eq!((ids(&s), s.tasks_total), (vec![42, 43], 4));
        let mut s = fixture();
        TaskQuery { site: Some(2), offset: 1, ..TaskQuery::default() }.apply(&mut s);
        assert_eq!((ids(&s), s.tasks_total), (vec![9], 2));
    }

    #[test]
    fn limit_zero_selects_no_task_but_counts_them() {
        let mut s = fixture();
        TaskQuery { limit: Some(0), state: Some(State::Idle), ..TaskQuery::default() }.apply(&mut s);
        assert_eq!((ids(&s), s.tasks_total), (vec![], 3));
    }

    #[test]
    fn wait_and_id_filters_select_tasks() {
        let query = |wait: Option<&str>, ids: Option<Vec<u64>>| {
            let mut s = deep_fixture();
            s.tasks.iter_mut().find(|t| t.id == 7).unwrap().wait = None;
            TaskQuery { wait: wait.map(String::from), ids, ..TaskQuery::default() }.apply(&mut s);
            super::tests::ids(&s)
        };
        assert_eq!(query(Some("chan receive"), None), [42, 43]);
        assert_eq!(query(Some("sleep"), None), [9]);
        assert_eq!(query(Some(NO_WAIT), None), [7]);
        assert_eq!(query(Some("mutex lock"), None), Vec::<u64>::new());
        assert_eq!(query(None, Some(vec![43, 9, 1000])), [9, 43]);
        assert_eq!(query(Some("chan receive"), Some(vec![9, 43])), [43]);
    }

    #[test]
    fn idle_time_and_poll_filters_select_tasks() {
        let query = |min_idle_ms, min_polls, max_polls| {
            let mut s = fixture();
            TaskQuery { min_idle_ms, min_polls, max_polls, ..TaskQuery::default() }.apply(&mut s);
            ids(&s)
        };
        // 42 idle 300 s, 3 polls; 43 idle 298 s, 1 poll; 9 idle 12 ms, 15 polls; 7 running.
        assert_eq!(query(Some(298_000), None, None), [42, 43]);
        assert_eq!(query(Some(0), None, None), [9, 42, 43], "running tasks are not idle");
        assert_eq!(query(None, None, Some(1)), [43]);
        assert_eq!(query(None, Some(15), None), [7, 9]);
        assert_eq!(query(Some(1), Some(2), Some(10)), [42]);
    }

    #[test]
    fn counts_cover_every_task_whatever_the_selection() {
        let query = TaskQuery { limit: Some(1), wait: Some("sleep".into()), ..TaskQuery::default() };
        let v = json(selected(deep_fixture(), &query));
        assert_eq!(v["tasks"].as_array().unwrap().len(), 1);
        assert_eq!(v["tasks_total"], 1);
        assert_eq!(
            v["task_counts"],
            serde_json::json!({"total": 4, "idle": 3, "running": 1, "by_wait": {"chan receive": 2, "sleep": 1}})
        );
    }

    #[test]
    fn tasks_carry_their_deep_fields_and_the_stacks_they_refer_to_trimmed() {
        let query = TaskQuery { ids: Some(vec![42]), ..TaskQuery::default() };
        let v = json(selected(deep_fixture(), &query));
        let task = &v["tasks"][0];
        assert_eq!(
            (&task["wait"], &task["parked_at"], &task["wakers"], &task["woken"]),
            (&"chan receive".into(), &0.into(), &1.into(), &false.into())
        );
        // Stack 1 (sleep) is not referenced by task 42, so it is left out.
        let stacks = v["stacks"].as_array().unwrap();
        assert_eq!(stacks.len(), 1, "{stacks:?}");
        let functions: Vec<_> =
            stacks[0]["frames"].as_array().unwrap().iter().map(|f| &f["function"]).collect();
        assert_eq!(
            functions,
            [
                "tokio::sync::mpsc::bounded::Receiver<T>::recv",
                "app::handlers::handle_message::{{closure}}",
                "app::handlers::consumer_loop::{{closure}}"
            ]
        );
        assert_eq!((&stacks[0]["reason"], &stacks[0]["folded"]), (&"chan receive".into(), &3.into()));
        assert_eq!(stacks[0]["frames"][1]["user"], true);
    }

    #[test]
    fn lean_tasks_have_null_deep_fields_and_no_stacks() {
        let v = json(selected(fixture(), &TaskQuery::default()));
        assert_eq!(v["tasks"][0]["wait"], serde_json::Value::Null);
        assert_eq!(v["stacks"], serde_json::json!([]));
        assert_eq!(v["task_counts"]["by_wait"], serde_json::json!({}));
    }
}
