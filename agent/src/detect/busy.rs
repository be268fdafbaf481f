//! `busy_self_wake`: tasks whose wakes are mostly their own, a busy loop
//! through the executor: `loop { tokio::task::yield_now().await }` with
//! nothing else to wait for, or a future that wakes itself and returns
//! `Pending` until some condition turns true. Such a task never sleeps: it
//! burns a worker and starves the others of it, though each poll is short.
//!
//! Deep mode counts each task's wakes and its self-wakes: those made inside
//! its own poll, and those the scheduler makes after the poll on the task's
//! behalf because the poll handed its waker to the defer list (that is what
//! `yield_now` does; see `deep/deferred.rs`). A task is flagged when it has
//! lived [`MIN_AGE_MS`], has been woken at least [`MIN_WAKES`] times, at
//! least [`MIN_RATE`] a second on average, and at least [`MIN_SHARE`] of
//! those wakes were its own. The floors keep short-lived tasks and tasks
//! that yield now and then, in a loop that also waits on channels, timers
//! or sockets, out of it. Tasks of one spawn site make one finding.
//! Lean mode counts no wakes, so it reports nothing.

use std::collections::BTreeMap;

use serde_json::json;

use super::{capped_ids, lasted, Finding, Kind, Severity};
use crate::snapshot::{Snapshot, Task};

/// A task must have lived this long.
pub(super) const MIN_AGE_MS: u64 = 5_000;
/// ... been woken this often.
pub(super) const MIN_WAKES: u64 = 1_000;
/// ... this often per second of its life, on average.
pub(super) const MIN_RATE: f64 = 100.0;
/// ... and made at least this share of its wakes itself.
pub(super) const MIN_SHARE: f64 = 0.5;

/// `(wakes, self-wakes)` of a task that counts as busy.
fn busy(task: &Task) -> Option<(u64, u64)> {
    let (wakes, own) = (task.wakes?, task.self_wakes?.min(task.wakes?));
    let rate = wakes as f64 * 1_000.0 / task.age_ms.max(1) as f64;
    (task.age_ms >= MIN_AGE_MS
        && wakes >= MIN_WAKES
        && rate >= MIN_RATE
        && own as f64 >= MIN_SHARE * wakes as f64)
        .then_some((wakes, own))
}

fn percent(part: u64, whole: u64) -> f64 {
    (part as f64 * 1_000.0 / whole.max(1) as f64).round() / 10.0
}

/// One finding per spawn site with busy tasks; within it, the busiest first.
pub(super) fn detect(snapshot: &Snapshot) -> Vec<Finding> {
    let mut by_site: BTreeMap<u32, Vec<(&Task, u64, u64)>> = BTreeMap::new();
    for t in &snapshot.tasks {
        if let Some((wakes, own)) = busy(t) {
            by_site.entry(t.site).or_default().push((t, wakes, own));
        }
    }
    by_site
        .into_iter()
        .map(|(site, mut tasks)| {
            tasks.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.id.cmp(&b.0.id)));
            let location = snapshot.location(site).to_string();
            let wakes: u64 = tasks.iter().map(|t| t.1).sum();
            let own: u64 = tasks.iter().map(|t| t.2).sum();
            let polls: u64 = tasks.iter().map(|t| t.0.polls).sum();
            let busy_ms: u64 = tasks.iter().map(|t| t.0.busy_ms).sum();
            let oldest = tasks.iter().map(|t| t.0.age_ms).max().unwrap_or(0);
            let share = percent(own, wakes);
            let ids: Vec<&Task> = tasks.iter().map(|t| t.0).collect();
            let per_task: Vec<_> = tasks
                .iter()
                .take(super::MAX_TASK_IDS)
                .map(|(t, wakes, own)| {
                    json!({"id": t.id, "wakes": wakes, "self_wakes": own, "polls": t.polls, "age_ms": t.age_ms})
                })
                .collect();
            Finding {
                kind: Kind::BusySelfWake,
                severity: Severity::Warning,
                location: location.clone(),
                task_ids: capped_ids(&ids),
                since_ms: oldest,
                message: format!(
                    "{} woken {wakes} times, {share}% of them by themselves ({own} self-wakes), over \
                     {}: a busy loop through the executor (yield_now in a loop, or a future that \
                     wakes itself and returns Pending) keeps a worker busy without waiting on anything",
                    match tasks.len() {
                        1 => format!("1 task spawned at {location} was"),
                        n => format!("{n} tasks spawned at {location} were"),
                    },
                    lasted(oldest),
                ),
                evidence: json!({
                    "tasks": tasks.len(),
                    "wakes": wakes,
                    "self_wakes": own,
                    "self_wake_percent": share,
                    "polls": polls,
                    "busy_ms": busy_ms,
                    "min_share_percent": MIN_SHARE * 100.0,
                    "min_wakes": MIN_WAKES,
                    "per_task": per_task,
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::synthetic::Builder;
    use super::*;

    fn counted(s: &mut Builder, site: u32, age_ms: u64, wakes: u64, own: u64) -> u64 {
        let id = s.running(site, 0);
        let t = s.task(id);
        (t.age_ms, t.wakes, t.self_wakes, t.polls) = (age_ms, Some(wakes), Some(own), wakes + 1);
        id
    }

    #[test]
    fn a_task_that_wakes_itself_most_of_the_time_is_a_warning() {
        let mut s = Builder::deep();
        let spin = s.site("src/spin.rs:3:5");
        let a = counted(&mut s, spin, 60_000, 600_000, 599_990);
        let b = counted(&mut s, spin, 30_000, 90_000, 80_000);
        let found = detect(&s.build());
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(
            (f.kind, f.severity, f.location.as_str()),
            (Kind::BusySelfWake, Severity::Warning, "src/spin.rs:3:5")
        );
        assert_eq!(f.task_ids, [a, b]);
        assert_eq!(f.since_ms, 60_000);
        assert_eq!(
            (f.evidence["wakes"].as_u64(), f.evidence["self_wakes"].as_u64()),
            (Some(690_000), Some(679_990))
        );
        assert_eq!(f.evidence["self_wake_percent"], 98.5);
        assert_eq!(f.evidence["per_task"][0]["id"], a);
        assert!(
            f.message.starts_with(
                "2 tasks spawned at src/spin.rs:3:5 were woken 690000 times, 98.5% of them by themselves"
            ),
            "{}",
            f.message
        );
        assert!(f.message.contains("over 1 minute"), "{}", f.message);
    }

    #[test]
    fn consumers_short_lived_tasks_and_occasional_yields_are_not_flagged() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:1:1");
        // A channel consumer: many wakes, all from the senders.
        counted(&mut s, site, 600_000, 5_000_000, 0);
        // Yields now and then in a loop that mostly waits on a channel.
        counted(&mut s, site, 600_000, 100_000, 20_000);
        // Busy, but for a moment only.
        counted(&mut s, site, 200, 50_000, 50_000);
        // Old, all its own, but few.
        counted(&mut s, site, 600_000, 500, 500);
        // Woken by itself a few times a second: a slow poll loop, not busy.
        counted(&mut s, site, 3_600_000, 36_000, 36_000);
        assert!(detect(&s.build()).is_empty());
        // Lean mode: no counts.
        let mut s = Builder::lean();
        let site = s.site("src/main.rs:1:1");
        s.running(site, 0);
        assert!(detect(&s.build()).is_empty());
    }
}
