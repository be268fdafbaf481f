//! `lost_waker`: an idle task that holds no live waker and is not scheduled
//! can never run again.
//!
//! A parked future registers its task's waker with whatever it waits on (a
//! channel, a timer, a socket); being woken is the only way back onto a
//! worker. When every clone of the waker has been dropped without a wake and
//! the task is not in a run queue, nothing can wake it: this is certain, not
//! a heuristic, so the finding is `critical`. It needs deep mode's waker
//! counts; in lean mode they are unknown and this detector says nothing.

use serde_json::json;

use super::{by_site_and_wait, capped_ids, lasted, parked_at, tasks_at};
use super::{Finding, Kind, Severity};
use crate::snapshot::{Snapshot, State, Task};

/// Idle time before a task without a waker is reported: a task between two
/// events (its waker just consumed by a wake that is being delivered) must
/// not be flagged.
pub(super) const GRACE_MS: u64 = 1_000;

/// True when `task` can never be woken: idle past the grace, polled at least
/// once, no live waker, not scheduled. Both deep fields must be known.
pub(super) fn is_lost(task: &Task) -> bool {
    task.state == State::Idle
        && task.polls > 0
        && task.idle_ms >= GRACE_MS
        && matches!(task.wakers, Some(n) if n <= 0)
        && task.woken == Some(false)
}

/// One critical finding per (spawn site, wait reason).
pub(super) fn detect(snapshot: &Snapshot) -> Vec<Finding> {
    let lost = snapshot.tasks.iter().filter(|t| is_lost(t));
    by_site_and_wait(lost)
        .into_iter()
        .map(|((site, wait), tasks)| {
            let location = snapshot.location(site).to_string();
            let longest = tasks[0].idle_ms;
            let parked = match wait {
                Some(w) => format!(", parked on {w}"),
                None => String::new(),
            };
            Finding {
                kind: Kind::LostWaker,
                severity: Severity::Critical,
                message: format!(
                    "{} no live waker and {} not scheduled, so nothing can ever wake {} \
                     (idle for {}{parked})",
                    tasks_at(tasks.len(), &location),
                    if tasks.len() == 1 { "is" } else { "are" },
                    if tasks.len() == 1 { "it" } else { "them" },
                    lasted(longest),
                ),
                location,
                task_ids: capped_ids(&tasks),
                since_ms: longest,
                evidence: json!({
                    "wait": wait,
                    "tasks": tasks.len(),
                    "wakers": tasks[0].wakers,
                    "woken": false,
                    "idle_ms_max": longest,
                    "grace_ms": GRACE_MS,
                    "parked_at": parked_at(snapshot, tasks[0]),
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
    fn a_task_no_one_can_wake_is_critical() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:7:5");
        let a = s.lost(site, 5_000);
        let b = s.lost(site, 3_000);
        let found = detect(&s.build());
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!((f.kind, f.severity), (Kind::LostWaker, Severity::Critical));
        assert_eq!(f.task_ids, [a, b]);
        assert_eq!(f.since_ms, 5_000);
        assert_eq!(
            f.message,
            "2 tasks spawned at src/main.rs:7:5 have no live waker and are not scheduled, \
             so nothing can ever wake them (idle for 5 seconds, parked on chan receive)"
        );
        assert_eq!(f.evidence["wakers"], 0);
    }

    #[test]
    fn a_negative_waker_count_is_lost_too() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:7:5");
        let id = s.lost(site, 5_000);
        s.task(id).wakers = Some(-1);
        assert_eq!(detect(&s.build()).len(), 1);
    }

    #[test]
    fn only_certain_cases_are_reported() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:7:5");
        // Between events: inside the grace.
        s.lost(site, GRACE_MS - 1);
        // Woken: scheduled to run, its waker consumed by the wake.
        let woken = s.lost(site, 60_000);
        s.task(woken).woken = Some(true);
        // Holds a waker: whoever holds it can wake it.
        s.idle(site, 60_000, "chan receive");
        // Unknown fields: lean mode, or deep mode missed the task's events.
        let unknown = s.lost(site, 60_000);
        s.task(unknown).woken = None;
        let unknown = s.lost(site, 60_000);
        s.task(unknown).wakers = None;
        // Never polled yet: it has not parked at all.
        let fresh = s.lost(site, 60_000);
        s.task(fresh).polls = 0;
        // Running.
        let running = s.running(site, 60_000);
        s.task(running).wakers = Some(0);
        s.task(running).woken = Some(false);
        let found = detect(&s.build());
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn lean_mode_says_nothing() {
        let mut s = Builder::lean();
        let site = s.site("src/main.rs:7:5");
        s.lost(site, 600_000);
        assert!(detect(&s.build()).is_empty());
    }
}
