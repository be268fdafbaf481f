//! A finding: what is wrong, how sure, where, and the numbers behind it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    StuckTask,
    LeakingSpawnSite,
    BlockedWorker,
    LostWaker,
    Deadlock,
    BusySelfWake,
    HeapGrowth,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::StuckTask => "stuck_task",
            Kind::LeakingSpawnSite => "leaking_spawn_site",
            Kind::BlockedWorker => "blocked_worker",
            Kind::LostWaker => "lost_waker",
            Kind::Deadlock => "deadlock",
            Kind::BusySelfWake => "busy_self_wake",
            Kind::HeapGrowth => "heap_growth",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One finding, in the JSON shape of DESIGN.md.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Finding {
    pub(crate) kind: Kind,
    pub(crate) severity: Severity,
    /// The spawn site, or the allocation site for `heap_growth`.
    pub(crate) location: String,
    pub(crate) task_ids: Vec<u64>,
    /// How long the condition has held.
    pub(crate) since_ms: u64,
    /// A sentence with the numbers behind the finding.
    pub(crate) message: String,
    /// Kind-specific numbers.
    pub(crate) evidence: serde_json::Value,
}
