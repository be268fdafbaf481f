//! `stuck_task`: tasks idle for longer than `TASKSCOPE_STUCK_AFTER` while
//! waiting on something that is not a timer and not I/O readiness.
//!
//! A task asleep on a timer or waiting for a socket is normal however long it
//! waits: tickers, long sleeps and accept loops do exactly that. A task that
//! has waited five minutes on a channel, a lock or a join is probably stuck;
//! two tasks each waiting on a lock the other holds are both flagged, since
//! both wait on a lock past the threshold.
//!
//! The wait reason comes from deep mode. In lean mode it is unknown, so long
//! idleness is only `info`: a stuck task and a sleeping one look the same.

use serde_json::json;

use super::{by_site_and_wait, capped_ids, lasted, lost_waker, parked_at, tasks_at, threshold};
use super::{Finding, Kind, Settings, Severity};
use crate::snapshot::{Snapshot, State, Task};

/// Wait reasons that are normal however long they last: a timer, or I/O
/// readiness.
const NEVER_STUCK: [&str; 2] = ["sleep", "io wait"];

/// What deep mode reports when it could not name the wait.
const UNKNOWN: &str = "idle";

/// A task that counts: idle past the threshold, not already scheduled to
/// run, and not one that [`lost_waker`] reports more precisely.
fn is_stuck(task: &Task, settings: &Settings) -> bool {
    task.state == State::Idle
        && task.idle_ms >= settings.stuck_after_ms
        && task.woken != Some(true)
        && !task.wait.is_some_and(|w| NEVER_STUCK.contains(&w))
        && !lost_waker::is_lost(task)
}

/// One finding per (spawn site, wait reason): `warning` when the reason is
/// known, `info` when it is not (lean mode, or deep mode's `idle`).
pub(super) fn detect(snapshot: &Snapshot, settings: &Settings) -> Vec<Finding> {
    let stuck = snapshot.tasks.iter().filter(|t| is_stuck(t, settings));
    by_site_and_wait(stuck)
        .into_iter()
        .map(|((site, wait), tasks)| {
            let location = snapshot.location(site).to_string();
            let longest = tasks[0].idle_ms;
            let shortest = tasks[tasks.len() - 1].idle_ms;
            let known = wait.filter(|&w| w != UNKNOWN);
            let (severity, message) = match known {
                Some(reason) => (
                    Severity::Warning,
                    format!(
                        "{} waited on {reason} for {} (threshold {})",
                        tasks_at(tasks.len(), &location),
                        lasted(longest),
                        threshold(settings.stuck_after_ms),
                    ),
                ),
                None => (
                    Severity::Info,
                    format!(
                        "{} been idle for {} (threshold {}); what {} waiting on is unknown{}, \
                         so this may be a long sleep or an idle connection",
                        tasks_at(tasks.len(), &location),
                        lasted(longest),
                        threshold(settings.stuck_after_ms),
                        if tasks.len() == 1 { "it is" } else { "they are" },
                        if wait.is_none() { " in lean mode" } else { "" },
                    ),
                ),
            };
            Finding {
                kind: Kind::StuckTask,
                severity,
                location,
                task_ids: capped_ids(&tasks),
                since_ms: longest,
                message,
                evidence: json!({
                    "wait": wait,
                    "tasks": tasks.len(),
                    "idle_ms_max": longest,
                    "idle_ms_min": shortest,
                    "threshold_ms": settings.stuck_after_ms,
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

    fn settings() -> Settings {
        Settings::default()
    }

    #[test]
    fn tasks_waiting_on_a_channel_past_the_threshold_are_one_finding() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:12:5");
        let ids = [
            s.idle(site, 300_000, "chan receive"),
            s.idle(site, 290_000, "chan receive"),
            s.idle(site, 61_000, "chan receive"),
        ];
        s.idle(site, 59_000, "chan receive"); // not yet
        let found = detect(&s.build(), &settings());
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!((f.kind, f.severity), (Kind::StuckTask, Severity::Warning));
        assert_eq!(f.location, "src/main.rs:12:5");
        assert_eq!(f.task_ids, ids);
        assert_eq!(f.since_ms, 300_000);
        assert_eq!(
            f.message,
            "3 tasks spawned at src/main.rs:12:5 have waited on chan receive for 5 minutes (threshold 60 s)"
        );
        assert_eq!(f.evidence["tasks"], 3);
        assert_eq!(f.evidence["wait"], "chan receive");
        assert_eq!(f.evidence["idle_ms_min"], 61_000);
    }

    #[test]
    fn timers_and_sockets_are_never_stuck() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:1:1");
        s.idle(site, 86_400_000, "sleep");
        s.idle(site, 86_400_000, "io wait");
        assert!(detect(&s.build(), &settings()).is_empty());
    }

    #[test]
    fn every_other_known_reason_is_a_warning() {
        for reason in [
            "chan receive",
            "chan send",
            "mutex lock",
            "rwlock",
            "semaphore acquire",
            "join",
            "notify",
            "select",
            "no waker",
        ] {
            let mut s = Builder::deep();
            let site = s.site("src/main.rs:1:1");
            s.idle(site, 120_000, reason);
            let found = detect(&s.build(), &settings());
            assert_eq!(found.len(), 1, "{reason}");
            assert_eq!(found[0].severity, Severity::Warning, "{reason}");
            assert!(found[0].message.contains(&format!("waited on {reason} for 2 minutes")), "{reason}");
        }
    }

    #[test]
    fn two_tasks_waiting_on_each_others_lock_are_both_flagged() {
        let mut s = Builder::deep();
        let a = s.site("src/bank.rs:10:5");
        let b = s.site("src/bank.rs:20:5");
        let ta = s.idle(a, 65_000, "mutex lock");
        let tb = s.idle(b, 65_000, "mutex lock");
        let found = detect(&s.build(), &settings());
        let flagged: Vec<_> = found.iter().map(|f| (f.location.as_str(), f.task_ids.clone())).collect();
        assert_eq!(flagged, [("src/bank.rs:10:5", vec![ta]), ("src/bank.rs:20:5", vec![tb])]);
        assert!(found.iter().all(|f| f.severity == Severity::Warning));
    }

    #[test]
    fn tasks_of_one_site_group_by_wait_reason() {
        let mut s = Builder::deep();
        let site = s.site("src/worker.rs:5:5");
        s.idle(site, 100_000, "chan receive");
        s.idle(site, 100_000, "semaphore acquire");
        s.idle(site, 100_000, "chan receive");
        let found = detect(&s.build(), &settings());
        let groups: Vec<_> = found.iter().map(|f| (f.evidence["wait"].clone(), f.task_ids.len())).collect();
        assert_eq!(groups, [(json!("chan receive"), 2), (json!("semaphore acquire"), 1)]);
    }

    #[test]
    fn lean_mode_reports_long_idleness_as_info_only() {
        let mut s = Builder::lean();
        let site = s.site("src/main.rs:12:5");
        s.idle(site, 300_000, "chan receive");
        let found = detect(&s.build(), &settings());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Info);
        assert_eq!(found[0].evidence["wait"], json!(null));
        assert!(found[0]
            .message
            .starts_with("1 task spawned at src/main.rs:12:5 has been idle for 5 minutes"));
        assert!(found[0].message.contains("unknown in lean mode"), "{}", found[0].message);
    }

    #[test]
    fn an_unnamed_wait_in_deep_mode_is_info_too() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:12:5");
        s.idle(site, 300_000, "idle");
        let found = detect(&s.build(), &settings());
        assert_eq!(found[0].severity, Severity::Info);
    }

    #[test]
    fn running_and_scheduled_tasks_are_not_stuck() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:12:5");
        s.running(site, 300_000);
        let woken = s.idle(site, 300_000, "chan receive");
        s.task(woken).woken = Some(true);
        assert!(detect(&s.build(), &settings()).is_empty());
    }

    #[test]
    fn lost_wakers_are_left_to_their_own_detector() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:12:5");
        s.lost(site, 300_000);
        assert!(detect(&s.build(), &settings()).is_empty());
    }

    #[test]
    fn the_threshold_follows_the_settings() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:12:5");
        s.idle(site, 2_500, "join");
        let snapshot = s.build();
        assert!(detect(&snapshot, &settings()).is_empty());
        let found = detect(&snapshot, &Settings { stuck_after_ms: 2_000, ..settings() });
        assert!(found[0].message.ends_with("for 2 seconds (threshold 2 s)"), "{}", found[0].message);
    }

    #[test]
    fn task_ids_are_capped_and_the_total_is_in_the_evidence() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:12:5");
        for i in 0..250 {
            s.idle(site, 100_000 + i, "chan send");
        }
        let found = detect(&s.build(), &settings());
        assert_eq!(found[0].task_ids.len(), super::super::MAX_TASK_IDS);
        assert_eq!(found[0].task_ids[0], 250, "the longest idle first");
        assert_eq!(found[0].evidence["tasks"], 250);
    }
}
