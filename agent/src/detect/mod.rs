//! Detect: pure functions from snapshots to findings (stuck tasks, lost
//! wakers, leaking spawn sites, blocked workers, busy self-wakes, growing
//! allocation sites). They need no runtime, so they are tested on synthetic
//! snapshots.
//!
//! Each detector lives in its own file and returns its findings; [`run`]
//! gathers them and puts the most severe and the longest-standing first.
//! Tasks of one spawn site with the same problem make one finding, not one
//! per task, so that a thousand leaked tasks read as one line.

mod blocked;
mod busy;
mod deadlock;
mod finding;
mod leak;
mod lost_waker;
mod stuck;
#[cfg(test)]
mod synthetic;

pub(crate) use finding::{Finding, Kind, Severity};

use std::collections::BTreeMap;

use crate::clock::human;
use crate::snapshot::{Snapshot, Task};

/// The thresholds of the detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Idle time after which a waiting task counts as stuck
    /// (`TASKSCOPE_STUCK_AFTER`, default 60 s).
    pub(crate) stuck_after_ms: u64,
    /// Poll time after which a running task counts as blocking its worker
    /// (`TASKSCOPE_BLOCKED_AFTER`, default 100 ms).
    pub(crate) blocked_after_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { stuck_after_ms: 60_000, blocked_after_ms: 100 }
    }
}

/// At most this many task ids go into one finding; its evidence gives the
/// total.
pub(crate) const MAX_TASK_IDS: usize = 100;

/// Every finding about `snapshot`: most severe first, then the one that has
/// held the longest.
pub(crate) fn run(snapshot: &Snapshot, settings: &Settings) -> Vec<Finding> {
    let mut findings = lost_waker::detect(snapshot);
    findings.extend(deadlock::detect(snapshot));
    findings.extend(stuck::detect(snapshot, settings));
    findings.extend(blocked::detect(snapshot, settings));
    findings.extend(leak::detect(snapshot));
    findings.extend(busy::detect(snapshot));
    // The heap's growth detector runs when the snapshot reads the heap (it
    // needs the per-site history); its results become findings here.
    findings.extend(snapshot.heap.growth.iter().map(crate::heap::growth::HeapGrowth::finding));
    sort(&mut findings);
    findings
}

fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.since_ms.cmp(&a.since_ms))
            .then_with(|| a.kind.as_str().cmp(b.kind.as_str()))
            .then_with(|| a.location.cmp(&b.location))
    });
}

/// Tasks grouped by spawn site and wait reason, in a stable order; within a
/// group the longest idle comes first.
fn by_site_and_wait<'a>(
    tasks: impl Iterator<Item = &'a Task>,
) -> BTreeMap<(u32, Option<&'static str>), Vec<&'a Task>> {
    let mut groups: BTreeMap<(u32, Option<&'static str>), Vec<&'a Task>> = BTreeMap::new();
    for t in tasks {
        groups.entry((t.site, t.wait)).or_default().push(t);
    }
    for tasks in groups.values_mut() {
        tasks.sort_unstable_by(|a, b| b.idle_ms.cmp(&a.idle_ms).then(a.id.cmp(&b.id)));
    }
    groups
}

/// The ids of `tasks`, in their order, capped at [`MAX_TASK_IDS`].
fn capped_ids(tasks: &[&Task]) -> Vec<u64> {
    tasks.iter().take(MAX_TASK_IDS).map(|t| t.id).collect()
}

/// `1 task spawned at X has` / `3 tasks spawned at X have`.
fn tasks_at(n: usize, location: &str) -> String {
    if n == 1 {
        format!("1 task spawned at {location} has")
    } else {
        format!("{n} tasks spawned at {location} have")
    }
}

/// A threshold as configured: `100 ms`, `60 s`, `1.5 s`.
fn threshold(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        _ if ms % 1_000 == 0 => format!("{} s", ms / 1_000),
        _ => format!("{:.1} s", ms as f64 / 1_000.0),
    }
}

/// A measured duration, in words: `5 minutes`, or `250 ms`.
fn lasted(ms: u64) -> String {
    human(ms)
}

/// Where `task` is parked, as `function at file:line` lines (deep mode): the
/// library call the app made, then the app's own frames; the leaf frames
/// when none is the app's.
pub(crate) fn parked_at(snapshot: &Snapshot, task: &Task) -> Option<Vec<String>> {
    let index = task.parked_at?;
    let stack = snapshot
        .stacks
        .get(index as usize)
        .filter(|s| s.id == index)
        .or_else(|| snapshot.stacks.iter().find(|s| s.id == index))?;
    let frames = &stack.frames;
    let shown = match (frames.iter().position(|f| f.user), frames.iter().rposition(|f| f.user)) {
        (Some(first), Some(last)) => &frames[first.saturating_sub(1)..=last],
        _ => &frames[..frames.len().min(3)],
    };
    Some(
        shown
            .iter()
            .take(12)
            .map(|f| match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{} at {file}:{line}", f.function),
                (Some(file), None) => format!("{} at {file}", f.function),
                _ => f.function.clone(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::synthetic::*;
    use super::*;

    #[test]
    fn findings_come_most_severe_first_then_longest_standing() {
        let mut s = Builder::deep();
        let chan = s.site("src/consumer.rs:10:5");
        let lost = s.site("src/lost.rs:3:1");
        let hot = s.site("src/hot.rs:8:9");
        s.idle(chan, 600_000, "chan receive");
        s.idle(chan, 900_000, "mutex lock");
        s.lost(lost, 5_000);
        s.running(hot, 2_000);
        let findings = run(&s.build(), &Settings::default());
        let order: Vec<_> =
            findings.iter().map(|f| (f.severity, f.kind, f.location.as_str(), f.since_ms)).collect();
        assert_eq!(
            order,
            [
                (Severity::Critical, Kind::LostWaker, "src/lost.rs:3:1", 5_000),
                (Severity::Warning, Kind::StuckTask, "src/consumer.rs:10:5", 900_000),
                (Severity::Warning, Kind::StuckTask, "src/consumer.rs:10:5", 600_000),
                (Severity::Warning, Kind::BlockedWorker, "src/hot.rs:8:9", 2_000),
            ]
        );
    }

    /// Principle 4: idle accept loops, busy pools, tickers, long sleeps,
    /// caches that plateau and request churn are normal.
    fn healthy(s: Builder) -> Vec<Finding> {
        run(&healthy_service(s).build(), &Settings::default())
    }

    fn healthy_snapshot() -> Snapshot {
        healthy_service(Builder::deep()).build()
    }

    fn healthy_service(mut s: Builder) -> Builder {
        let accept = s.site("src/main.rs:20:5");
        s.idle(accept, 3_600_000, "io wait");
        let pool = s.site("src/pool.rs:14:13");
        for _ in 0..4 {
            s.busy(pool, 5);
        }
        s.history(pool, &[4; 60]);
        let ticker = s.site("src/metrics.rs:30:5");
        s.idle(ticker, 900, "sleep");
        let nap = s.site("src/janitor.rs:9:5");
        s.idle(nap, 3_600_000, "sleep");
        let cache = s.site("src/cache.rs:50:9");
        let mut fill: Vec<u64> = (0..30).map(|i| i * 10).collect();
        fill.extend([300; 30]);
        for _ in 0..300 {
            s.idle(cache, 30_000, "sleep");
        }
        s.history(cache, &fill);
        let requests = s.site("src/http.rs:77:17");
        s.churn(requests, 40);
        s.history(requests, &(0..60).map(|i| 10 + (i * 7) % 21).collect::<Vec<_>>());
        s
    }

    #[test]
    fn a_healthy_service_has_no_warnings_in_deep_mode() {
        let findings = healthy(Builder::deep());
        assert!(findings.is_empty(), "{findings:#?}");
    }

    #[test]
    fn a_healthy_service_has_no_warnings_in_lean_mode() {
        let findings = healthy(Builder::lean());
        assert!(findings.iter().all(|f| f.severity == Severity::Info), "{findings:#?}");
        // Lean mode cannot tell the long sleeper or the idle accept loop from
        // a stuck task, so it mentions them, as info only.
        assert!(findings.iter().all(|f| f.kind == Kind::StuckTask), "{findings:#?}");
        assert!(!findings.is_empty());
    }

    #[test]
    fn a_growing_allocation_site_is_a_heap_growth_warning_and_a_plateau_is_not() {
        use crate::heap::growth::{self, GrowthOptions, Point, SiteHistory};
        const MIB: f64 = (1 << 20) as f64;
        let site = |location: &str, f: &dyn Fn(f64) -> f64| SiteHistory {
            location: location.into(),
            function: "app::cache".into(),
            points: (0..60).map(|s| Point { t_ms: s * 1_000, bytes: f(s as f64) }).collect(),
            longer: Vec::new(),
        };
        let growing = site("src/cache.rs:42:5", &|s| 8.0 * MIB + s * MIB);
        // Fills for 15 s, then holds 100 MiB.
        let plateau = site("src/lru.rs:7:9", &|s| (s / 15.0).min(1.0) * 100.0 * MIB);
        let mut snapshot = healthy_snapshot();
        snapshot.heap.growth = growth::detect(&[growing, plateau], &GrowthOptions::default());
        let findings = run(&snapshot, &Settings::default());
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let f = &findings[0];
        assert_eq!(
            (f.kind, f.severity, f.location.as_str()),
            (Kind::HeapGrowth, Severity::Warning, "src/cache.rs:42:5")
        );
        assert_eq!(f.since_ms, 59_000);
        assert!(f.task_ids.is_empty());
        assert!(f.message.contains("MiB/s"), "{}", f.message);
        assert!(f.evidence["rate_bytes_per_sec"].as_f64().unwrap() > 0.9 * MIB, "{}", f.evidence);
        assert_eq!(f.evidence["function"], "app::cache");
    }

    #[test]
    fn thresholds_read_as_configured() {
        assert_eq!(threshold(100), "100 ms");
        assert_eq!(threshold(60_000), "60 s");
        assert_eq!(threshold(1_500), "1.5 s");
    }
}
