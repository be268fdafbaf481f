//! The agent's snapshot, as `/debug/taskscope/api/snapshot` serves it and
//! `taskscope snapshot` saves it. Only what the viewer reads is typed; every
//! field the agent may add later defaults, so newer agents still parse, and
//! a document without `tasks`, `sites`, `findings` and `agent` is refused as
//! "not a taskscope snapshot".

use serde::Deserialize;

/// One snapshot of an agent.
#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    /// The tasks the request selected (all of them, or one page).
    pub tasks: Vec<Task>,
    /// Live tasks in all, before paging.
    #[serde(default)]
    pub tasks_total: usize,
    pub sites: Vec<Site>,
    /// Deep mode's parked-at stacks, when the agent exports them.
    #[serde(default)]
    pub stacks: Vec<Stack>,
    #[serde(default)]
    pub heap: Option<Heap>,
    pub findings: Vec<Finding>,
    pub agent: AgentInfo,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    pub id: u64,
    /// Deep mode: the name given with `tokio::task::Builder::name`.
    #[serde(default)]
    pub name: Option<String>,
    /// `idle` or `running`.
    pub state: String,
    #[serde(default)]
    pub spawned_at: String,
    #[serde(default)]
    pub polls: u64,
    #[serde(default)]
    pub busy_ms: u64,
    #[serde(default)]
    pub age_ms: u64,
    #[serde(default)]
    pub idle_ms: u64,
    #[serde(default)]
    pub running_ms: u64,
    /// Deep mode: what the task waits on, when the agent exports it.
    #[serde(default)]
    pub wait: Option<String>,
    /// Deep mode: index into [`Snapshot::stacks`].
    #[serde(default)]
    pub parked_at: Option<u32>,
    /// Deep mode: the tokio lock an idle task waits on, with its holders.
    #[serde(default)]
    pub resource: Option<TaskResource>,
}

/// A tokio resource a task waits on (`resource` of a task in the JSON).
#[derive(Debug, Clone, Deserialize)]
pub struct TaskResource {
    /// `tokio::sync::Mutex`, ...
    #[serde(rename = "type", default)]
    pub type_name: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub held_by: Vec<u64>,
    /// A semaphore's: the permits each task of `held_by` holds.
    #[serde(default)]
    pub held_permits: Vec<u64>,
    /// A semaphore's: permits held by tasks not named.
    #[serde(default)]
    pub more_permits: u64,
}

impl TaskResource {
    /// `tokio::sync::Mutex created at src/db.rs:40:17, held by task 12`;
    /// a semaphore's holders with their permits: `task 12 (2 permits)`.
    pub fn describe(&self) -> String {
        let permits = |n: u64| if n == 1 { "1 permit".to_string() } else { format!("{n} permits") };
        let mut names: Vec<String> = self
            .held_by
            .iter()
            .enumerate()
            .map(|(i, t)| match self.held_permits.get(i) {
                Some(&n) => format!("{t} ({})", permits(n)),
                None => t.to_string(),
            })
            .collect();
        let mut held = match names.len() {
            0 => String::new(),
            1 => format!(", held by task {}", names.remove(0)),
            _ => format!(", held by tasks {}", names.join(", ")),
        };
        if self.more_permits > 0 {
            let others = format!("other tasks ({})", permits(self.more_permits));
            held =
                if held.is_empty() { format!(", held by {others}") } else { format!("{held} and {others}") };
        }
        format!("{} created at {}{held}", self.type_name, self.created_at)
    }
}

impl Task {
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Site {
    pub id: u32,
    pub location: String,
    #[serde(default)]
    pub live: u64,
    #[serde(default)]
    pub idle: u64,
    #[serde(default)]
    pub spawned: u64,
    /// Live count once a second, oldest first.
    #[serde(default)]
    pub history: Vec<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Stack {
    pub id: u32,
    #[serde(default)]
    pub frames: Vec<Frame>,
    /// Frames of the runtime and libraries the agent left out.
    #[serde(default)]
    pub folded: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Frame {
    pub function: String,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
}

/// How bad a finding is; ordered, so `>=` reads "at least as bad as".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL_DESCENDING: [Severity; 3] = [Severity::Critical, Severity::Warning, Severity::Info];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A finding, in the shape of DESIGN.md. `kind` stays a string so that a
/// newer agent's kinds still show.
#[derive(Debug, Clone, Deserialize)]
pub struct Finding {
    pub kind: String,
    pub severity: Severity,
    pub location: String,
    #[serde(default)]
    pub task_ids: Vec<u64>,
    #[serde(default)]
    pub since_ms: u64,
    pub message: String,
    #[serde(default)]
    pub evidence: serde_json::Value,
}

impl Finding {
    /// The wait reason named in the evidence, if any.
    pub fn wait(&self) -> Option<&str> {
        self.evidence.get("wait").and_then(|w| w.as_str())
    }

    /// The parked-at frames in the evidence (`function at file:line`).
    pub fn parked_at(&self) -> Vec<&str> {
        match self.evidence.get("parked_at").and_then(|p| p.as_array()) {
            Some(frames) => frames.iter().filter_map(|f| f.as_str()).collect(),
            None => Vec::new(),
        }
    }

    /// How many tasks the finding covers (its ids are capped; the evidence
    /// holds the total).
    pub fn task_count(&self) -> u64 {
        self.evidence.get("tasks").and_then(|n| n.as_u64()).unwrap_or(self.task_ids.len() as u64)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AgentInfo {
    pub version: String,
    #[serde(default)]
    pub problem: Option<String>,
    #[serde(default)]
    pub deep_problem: Option<String>,
    #[serde(default)]
    pub uptime_ms: u64,
}

/// The heap section (present when the agent has one; empty sites when
/// taskscope's allocator is not installed).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Heap {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub problem: Option<String>,
    #[serde(default)]
    pub sites: Vec<HeapSite>,
    #[serde(default)]
    pub totals: Option<HeapTotals>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HeapTotals {
    #[serde(default)]
    pub inuse_bytes: u64,
}

/// Estimated in-use memory that tasks of one spawn site allocated.
#[derive(Debug, Clone, Deserialize)]
pub struct HeapSite {
    pub location: String,
    #[serde(default)]
    pub inuse_bytes: u64,
}

/// Why some bytes are not a snapshot.
#[derive(Debug)]
pub struct NotASnapshot(pub String);

impl std::fmt::Display for NotASnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a taskscope snapshot ({})", self.0)
    }
}

impl std::error::Error for NotASnapshot {}

impl Snapshot {
    /// Parses a snapshot, saying in one line why when it is not one.
    pub fn parse(bytes: &[u8]) -> Result<Snapshot, NotASnapshot> {
        let trimmed = bytes.iter().position(|b| !b.is_ascii_whitespace()).map_or(&[][..], |i| &bytes[i..]);
        if trimmed.is_empty() {
            return Err(NotASnapshot("it is empty".into()));
        }
        if trimmed[0] != b'{' {
            return Err(NotASnapshot("it is not a JSON object".into()));
        }
        serde_json::from_slice(bytes).map_err(|e| NotASnapshot(e.to_string()))
    }

    /// The spawn site with this location.
    pub fn site_at(&self, location: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.location == location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_a_task_waits_on_reads_as_a_sentence() {
        let task: Task = serde_json::from_str(
            r#"{"id": 9, "state": "idle", "resource": {"id": 65539, "type": "tokio::sync::Mutex",
                "created_at": "src/db.rs:40:17", "held_by": [8], "held_outside": false,
                "more_holders": 0, "waiters": [9]}}"#,
        )
        .unwrap();
        let r = task.resource.unwrap();
        assert_eq!(r.describe(), "tokio::sync::Mutex created at src/db.rs:40:17, held by task 8");
        let task: Task = serde_json::from_str(r#"{"id": 9, "state": "idle"}"#).unwrap();
        assert!(task.resource.is_none());
        let task: Task = serde_json::from_str(
            r#"{"id": 9, "state": "idle", "resource": {"id": 3, "type": "tokio::sync::Semaphore",
                "created_at": "src/pool.rs:9:16", "held_by": [11, 12], "held_permits": [2, 1],
                "held_outside": false, "more_holders": 0, "more_permits": 3, "waiting": 1}}"#,
        )
        .unwrap();
        assert_eq!(
            task.resource.unwrap().describe(),
            "tokio::sync::Semaphore created at src/pool.rs:9:16, held by tasks 11 (2 permits), 12 (1 permit) \
             and other tasks (3 permits)"
        );
    }

    #[test]
    fn recorded_snapshots_parse() {
        let s = Snapshot::parse(crate::model::fixtures::LEAKY.as_bytes()).unwrap();
        assert!(s.tasks.len() > 10 && s.tasks_total == s.tasks.len());
        assert!(s.findings.iter().any(|f| f.kind == "stuck_task" && f.severity == Severity::Warning));
        let stuck = s.findings.iter().find(|f| f.kind == "stuck_task").unwrap();
        assert!(stuck.wait().is_some() && !stuck.parked_at().is_empty(), "{stuck:?}");
        let healthy = Snapshot::parse(crate::model::fixtures::HEALTHY.as_bytes()).unwrap();
        assert!(healthy.findings.iter().all(|f| f.severity == Severity::Info));
    }

    #[test]
    fn other_documents_are_refused_with_a_reason() {
        for (bytes, why) in [
            (&b""[..], "empty"),
            (b"  \n", "empty"),
            (b"<html>", "not a JSON object"),
            (b"[1,2]", "not a JSON object"),
            (b"{\"tasks\": []}", "missing field"),
            (b"{\"tasks\": [", "EOF"),
        ] {
            let e = Snapshot::parse(bytes).unwrap_err().to_string();
            assert!(e.starts_with("not a taskscope snapshot") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn severities_order_from_info_to_critical() {
        assert!(Severity::Critical > Severity::Warning && Severity::Warning > Severity::Info);
    }
}
