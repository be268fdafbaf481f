//! `blocked_worker`: a poll that has run longer than the threshold (default
//! 100 ms, `TASKSCOPE_BLOCKED_AFTER`) without yielding.
//!
//! A future should return to the scheduler within microseconds; one that
//! computes, sleeps the thread or takes a blocking lock inside `poll` keeps
//! its worker thread from running any other task. Only a task in a poll can
//! do that, so one finding names one task (there are at most as many as
//! worker threads). It works in both modes: the poll start comes from the
//! runtime hooks.

use serde_json::json;

use super::{threshold, Finding, Kind, Settings, Severity};
use crate::clock::human;
use crate::snapshot::{Snapshot, State};

/// One warning per task that has been inside one poll for at least
/// `blocked_after_ms`.
pub(super) fn detect(snapshot: &Snapshot, settings: &Settings) -> Vec<Finding> {
    snapshot
        .tasks
        .iter()
        .filter(|t| t.state == State::Running && t.running_ms >= settings.blocked_after_ms)
        .map(|t| {
            let location = snapshot.location(t.site).to_string();
            Finding {
                kind: Kind::BlockedWorker,
                severity: Severity::Warning,
                message: format!(
                    "task {} spawned at {location} has been inside one poll for {} without yielding, \
                     blocking its worker thread (threshold {})",
                    t.id,
                    human(t.running_ms),
                    threshold(settings.blocked_after_ms),
                ),
                location,
                task_ids: vec![t.id],
                since_ms: t.running_ms,
                evidence: json!({
                    "task_id": t.id,
                    "running_ms": t.running_ms,
                    "threshold_ms": settings.blocked_after_ms,
                    "polls": t.polls,
                    "busy_ms": t.busy_ms,
                    "workers": snapshot.workers.len(),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::synthetic::Builder;
    use super::*;

    #[test]
    fn a_long_poll_names_its_task_and_spawn_site() {
        for mut s in [Builder::deep(), Builder::lean()] {
            let site = s.site("src/handlers.rs:40:9");
            let id = s.running(site, 2_500);
            let found = detect(&s.build(), &Settings::default());
            assert_eq!(found.len(), 1);
            let f = &found[0];
            assert_eq!((f.kind, f.severity), (Kind::BlockedWorker, Severity::Warning));
            assert_eq!(
                (f.location.as_str(), f.task_ids.as_slice(), f.since_ms),
                ("src/handlers.rs:40:9", &[id][..], 2_500)
            );
            assert_eq!(
                f.message,
                format!(
                    "task {id} spawned at src/handlers.rs:40:9 has been inside one poll for 2 seconds \
                     without yielding, blocking its worker thread (threshold 100 ms)"
                )
            );
            assert_eq!(f.evidence["running_ms"], 2_500);
        }
    }

    #[test]
    fn short_polls_and_idle_tasks_are_fine() {
        let mut s = Builder::deep();
        let site = s.site("src/pool.rs:1:1");
        s.running(site, 99);
        s.idle(site, 10_000, "chan receive");
        assert!(detect(&s.build(), &Settings::default()).is_empty());
    }

    #[test]
    fn the_threshold_is_inclusive_and_configurable() {
        let mut s = Builder::lean();
        let site = s.site("src/pool.rs:1:1");
        s.running(site, 100);
        s.running(site, 30);
        let snapshot = s.build();
        assert_eq!(detect(&snapshot, &Settings::default()).len(), 1);
        assert_eq!(detect(&snapshot, &Settings { blocked_after_ms: 20, ..Settings::default() }).len(), 2);
    }
}
