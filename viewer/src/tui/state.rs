//! The TUI's model, apart from any drawing (as tokio-console keeps `state/`
//! apart from `view/`): the latest snapshot and the flags its findings put
//! on tasks, the connection, the task query the agent sorts and pages, the
//! focused pane and selections.
//! What keys do is in [`super::keys`].

use std::collections::HashMap;
use std::time::Instant;

use crate::model::flags::{self, Flags};
use crate::model::snapshot::Site;
use crate::model::{Snapshot, Task};

/// What the agent sorts tasks by (its `sort` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Idle,
    Polls,
    Busy,
    Age,
}

impl SortKey {
    const ALL: [SortKey; 5] = [SortKey::Id, SortKey::Idle, SortKey::Polls, SortKey::Busy, SortKey::Age];

    pub fn param(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Idle => "idle",
            SortKey::Polls => "polls",
            SortKey::Busy => "busy",
            SortKey::Age => "age",
        }
    }

    /// The value the agent sorts by.
    pub fn of(self, t: &Task) -> u64 {
        match self {
            SortKey::Id => t.id,
            SortKey::Idle => t.idle_ms,
            SortKey::Polls => t.polls,
            SortKey::Busy => t.busy_ms,
            SortKey::Age => t.age_ms,
        }
    }

    pub(super) fn step(self, forward: bool) -> SortKey {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        let n = Self::ALL.len();
        Self::ALL[if forward { (i + 1) % n } else { (i + n - 1) % n }]
    }
}

/// The task selection sent to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub sort: SortKey,
    pub descending: bool,
    pub limit: usize,
    /// Only tasks of this spawn site.
    pub site: Option<u32>,
    /// Only `idle` or `running` tasks.
    pub state: Option<&'static str>,
}

impl Query {
    pub fn new(limit: usize) -> Query {
        // Longest idle first: stuck tasks come to the top.
        Query { sort: SortKey::Idle, descending: true, limit: limit.max(1), site: None, state: None }
    }

    /// The query string of `/debug/taskscope/api/snapshot`.
    pub fn to_params(&self) -> String {
        let order = if self.descending { "desc" } else { "asc" };
        let mut q = format!("sort={}&order={order}&limit={}", self.sort.param(), self.limit);
        if let Some(site) = self.site {
            q.push_str(&format!("&site={site}"));
        }
        if let Some(state) = self.state {
            q.push_str(&format!("&state={state}"));
        }
        q
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Live,
    /// The last request failed; the data shown is from `since` or before.
    Lost {
        error: String,
        since: Instant,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Tasks,
    Findings,
    Sites,
}

/// A task's async backtrace in the detail view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backtrace {
    Lines(Vec<String>),
    Loading,
    Unavailable(String),
}

/// What the fetcher should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Fetch now with this query string.
    Fetch(String),
    /// Fetch the backtrace of this task from the agent's dump.
    Backtrace(u64),
    Pause(bool),
}

#[derive(Debug)]
pub struct State {
    pub url: String,
    pub snapshot: Option<Snapshot>,
    pub flags: Flags,
    pub connection: Connection,
    pub query: Query,
    pub focus: Pane,
    /// Selected row of each pane.
    pub selected: [usize; 3],
    /// The task whose detail view is open.
    pub detail: Option<u64>,
    pub backtraces: HashMap<u64, Backtrace>,
    pub paused: bool,
    pub quit: bool,
}

impl State {
    pub fn new(url: String, limit: usize) -> State {
        State {
            url,
            snapshot: None,
            flags: Flags::default(),
            connection: Connection::Connecting,
            query: Query::new(limit),
            focus: Pane::Tasks,
            selected: [0; 3],
            detail: None,
            backtraces: HashMap::new(),
            paused: false,
            quit: false,
        }
    }

    /// A new snapshot arrived: keep the same task selected if it is still
    /// there. The agent sorted the page already; sorting it again here costs
    /// little and keeps the table right while a new query is on its way.
    pub fn on_snapshot(&mut self, mut snapshot: Snapshot) {
        let selected_id = self.selected_task().map(|t| t.id);
        let (key, descending) = (self.query.sort, self.query.descending);
        snapshot.tasks.sort_by(|a, b| {
            let o = key.of(a).cmp(&key.of(b)).then(a.id.cmp(&b.id));
            if descending {
                o.reverse()
            } else {
                o
            }
        });
        self.flags = Flags::of_snapshot(&snapshot);
        self.snapshot = Some(snapshot);
        self.connection = Connection::Live;
        if let Some(id) = selected_id {
            if let Some(i) = self.tasks().iter().position(|t| t.id == id) {
                self.selected[0] = i;
            }
        }
        self.clamp();
    }

    /// A request failed: keep showing the last data, say why.
    pub fn on_error(&mut self, error: String, now: Instant) {
        let since = match &self.connection {
            Connection::Lost { since, .. } => *since,
            _ => now,
        };
        self.connection = Connection::Lost { error, since };
    }

    pub fn tasks(&self) -> &[Task] {
        self.snapshot.as_ref().map_or(&[], |s| &s.tasks)
    }

    pub fn selected_task(&self) -> Option<&Task> {
        self.tasks().get(self.selected[0])
    }

    /// Spawn sites with live tasks, the most first.
    pub fn sites(&self) -> Vec<&Site> {
        let Some(s) = &self.snapshot else { return Vec::new() };
        let mut sites: Vec<&Site> = s.sites.iter().filter(|s| s.live > 0 || s.spawned > 0).collect();
        sites.sort_by(|a, b| b.live.cmp(&a.live).then(a.location.cmp(&b.location)));
        sites
    }

    pub(super) fn rows(&self, pane: Pane) -> usize {
        match pane {
            Pane::Tasks => self.tasks().len(),
            Pane::Findings => self.snapshot.as_ref().map_or(0, |s| s.findings.len()),
            Pane::Sites => self.sites().len(),
        }
    }

    fn clamp(&mut self) {
        for (i, pane) in [Pane::Tasks, Pane::Findings, Pane::Sites].into_iter().enumerate() {
            self.selected[i] = self.selected[i].min(self.rows(pane).saturating_sub(1));
        }
    }

    /// The backtrace of `task` for the detail view: from the snapshot or a
    /// finding when they have it, else whatever the fetcher brought.
    pub fn backtrace(&self, task: &Task) -> Backtrace {
        if let Some(s) = &self.snapshot {
            let lines = flags::backtrace(s, &self.flags, task);
            if !lines.is_empty() {
                return Backtrace::Lines(lines);
            }
        }
        self.backtraces.get(&task.id).cloned().unwrap_or(Backtrace::Loading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{snapshot, LEAKY};

    fn state() -> State {
        let mut s = State::new("http://127.0.0.1:6060".into(), 500);
        s.on_snapshot(snapshot(LEAKY));
        s
    }

    #[test]
    fn the_page_is_shown_in_the_query_order() {
        let s = state();
        let idle: Vec<u64> = s.tasks().iter().map(|t| t.idle_ms).collect();
        assert!(idle.windows(2).all(|w| w[0] >= w[1]), "{idle:?}");
    }

    #[test]
    fn losing_the_agent_keeps_the_data_and_the_first_failure_time() {
        let mut s = state();
        let t0 = Instant::now();
        s.on_error("connection refused".into(), t0);
        s.on_error("connection refused".into(), t0 + std::time::Duration::from_secs(3));
        assert_eq!(s.connection, Connection::Lost { error: "connection refused".into(), since: t0 });
        assert!(!s.tasks().is_empty());
        s.on_snapshot(snapshot(LEAKY));
        assert_eq!(s.connection, Connection::Live);
    }

    #[test]
    fn the_selection_follows_its_task_across_refreshes() {
        let mut s = state();
        s.selected[0] = 5;
        let id = s.selected_task().unwrap().id;
        let mut next = snapshot(LEAKY);
        // The task before it has gone.
        let before = s.tasks()[4].id;
        next.tasks.retain(|t| t.id != before);
        s.on_snapshot(next);
        assert_eq!(s.selected_task().unwrap().id, id);
        assert_eq!(s.selected[0], 4);
    }
}
