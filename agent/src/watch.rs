//! The agent watching itself: how long its dumps take (a histogram for
//! `/metrics`), dumps that are slow, and counters of dropped events that
//! grew. Problems are reported through `tracing` (target `taskscope`) when
//! the app has a subscriber to show them, and on stderr when no one would
//! see them: no subscriber at all, or taskscope's own, which shows nothing.
//! Everything here runs off the hot path: on the agent's thread, or on the
//! blocking thread that takes a snapshot.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::clock;

/// Upper bounds of the dump-duration buckets, in seconds.
pub(crate) const DUMP_BOUNDS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// A dump slower than this is reported (at most once a minute).
pub(crate) const SLOW_DUMP: Duration = Duration::from_secs(1);
const SLOW_REPORT_EVERY_MS: u64 = 60_000;

/// One count per bucket of [`DUMP_BOUNDS`], and one for longer dumps.
static DUMP_COUNTS: [AtomicU64; DUMP_BOUNDS.len() + 1] = [const { AtomicU64::new(0) }; DUMP_BOUNDS.len() + 1];
static DUMP_MICROS: AtomicU64 = AtomicU64::new(0);
/// When a slow dump was last reported, in ms since the clock's epoch + 1.
static SLOW_REPORTED: AtomicU64 = AtomicU64::new(0);

/// A histogram, read: what the Prometheus renderer needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    /// Upper bounds, in seconds, ascending; `+Inf` is implied.
    pub(crate) bounds: &'static [f64],
    /// Observations per bucket (not cumulative): one per bound, then the
    /// ones above the last bound.
    pub(crate) counts: Vec<u64>,
    /// The sum of all observations, in seconds.
    pub(crate) sum: f64,
}

impl Histogram {
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The duration of every dump so far: taking a snapshot, running the
/// detectors and rendering the answer.
pub(crate) fn dumps() -> Histogram {
    Histogram {
        bounds: &DUMP_BOUNDS,
        counts: DUMP_COUNTS.iter().map(|c| c.load(Relaxed)).collect(),
        sum: DUMP_MICROS.load(Relaxed) as f64 / 1e6,
    }
}

/// Records one dump of `tasks` live tasks that took `elapsed`; reports it if
/// it was slow.
pub(crate) fn observe_dump(elapsed: Duration, tasks: usize) {
    let seconds = elapsed.as_secs_f64();
    let bucket = DUMP_BOUNDS.iter().position(|&b| seconds <= b).unwrap_or(DUMP_BOUNDS.len());
    DUMP_COUNTS[bucket].fetch_add(1, Relaxed);
    DUMP_MICROS.fetch_add(elapsed.as_micros() as u64, Relaxed);
    if elapsed >= SLOW_DUMP {
        let now = clock::precise_ms() + 1;
        let last = SLOW_REPORTED.load(Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= SLOW_REPORT_EVERY_MS;
        if due && SLOW_REPORTED.compare_exchange(last, now, Relaxed, Relaxed).is_ok() {
            warn(format_args!(
                "a dump took {} ms ({tasks} live tasks): snapshots this slow delay the debug endpoint \
                 and /metrics scrapes; fewer live tasks, a smaller TASKSCOPE_COMPLETED or paging \
                 (limit=) make them cheaper",
                elapsed.as_millis()
            ));
        }
    }
}

/// A counter of dropped events, with what a growth means.
struct Dropped {
    read: fn() -> u64,
    /// The value last reported.
    seen: AtomicU64,
    what: &'static str,
}

static DROPPED: [Dropped; 5] = [
    Dropped {
        read: || crate::tasks::registry().map_or(0, |r| r.dropped_tasks.load(Relaxed)),
        seen: AtomicU64::new(0),
        what: "spawns were not tracked because the task table is full (raise TASKSCOPE_MAX_TASKS)",
    },
    Dropped {
        read: || crate::tasks::registry().map_or(0, |r| r.sites.overflowed.load(Relaxed)),
        seen: AtomicU64::new(0),
        what: "spawn sites were counted under <other> because the spawn-site table is full \
               (raise TASKSCOPE_MAX_SITES)",
    },
    Dropped {
        read: || crate::deep::dropped().0,
        seen: AtomicU64::new(0),
        what: "spawns have no wait reason because deep mode's task table is full \
               (raise TASKSCOPE_MAX_TASKS)",
    },
    Dropped {
        read: || crate::deep::dropped().1,
        seen: AtomicU64::new(0),
        what: "parked-at stacks were not kept because the stack table is full",
    },
    Dropped {
        read: || crate::deep::resources::existing().map_or(0, |t| t.dropped.load(Relaxed)),
        seen: AtomicU64::new(0),
        what: "tokio resources were not tracked because the resource table is full \
               (raise TASKSCOPE_MAX_RESOURCES)",
    },
];

/// Reports each counter of dropped events that grew since the last check.
/// Cheap: a few atomic loads. Safe to call from several threads: each growth
/// is reported once.
pub(crate) fn check_dropped() {
    for d in &DROPPED {
        let now = (d.read)();
        let before = d.seen.swap(now, Relaxed);
        if now > before {
            warn(format_args!("{} more {} ({now} in all)", now - before, d.what));
        }
    }
}

/// Reports a problem of the agent at warning level.
pub(crate) fn warn(message: impl Display) {
    if app_listens() {
        tracing::warn!(target: "taskscope", "{message}");
    } else {
        eprintln!("taskscope: {message}");
    }
}

/// Reports a failure of the agent at error level.
pub(crate) fn error(message: impl Display) {
    if app_listens() {
        tracing::error!(target: "taskscope", "{message}");
    } else {
        eprintln!("taskscope: {message}");
    }
}

/// True when a `tracing` event emitted here reaches a subscriber of the
/// app's: there is one, and it is not taskscope's own (which shows nothing).
pub(crate) fn app_listens() -> bool {
    !crate::deep::owns_global()
        && tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_land_in_the_bucket_of_their_upper_bound() {
        let before = dumps();
        observe_dump(Duration::from_micros(1_000), 1);
        observe_dump(Duration::from_millis(30), 1);
        observe_dump(Duration::from_millis(5_001), 1);
        let after = dumps();
        let grew: Vec<u64> = after.counts.iter().zip(&before.counts).map(|(a, b)| a - b).collect();
        // Other tests may dump concurrently, so only check ours are there.
        assert!(grew[0] >= 1, "1 ms is in the 1 ms bucket: {grew:?}");
        assert!(grew[5] >= 1, "30 ms is in the 50 ms bucket: {grew:?}");
        assert!(grew[DUMP_BOUNDS.len()] >= 1, "5.001 s is above the last bound: {grew:?}");
        assert!(after.sum - before.sum >= 5.032 - 1e-9);
        assert!(after.count() >= before.count() + 3);
    }
}
