//! `leaking_spawn_site`: a spawn site whose live task count keeps rising.
//!
//! Each site's live count is sampled once a second (`Site::history`, up to a
//! minute, oldest first). A leak shows as a floor that keeps rising: tasks are
//! spawned and some never finish, so even the quietest moment of each stretch
//! is higher than the last. Normal shapes do not: a fixed pool is flat,
//! request churn goes up and down around a level, a one-time burst steps up
//! once and stays, a cache fills and levels off.
//!
//! The rule, for a window of the last 20, 40 or 60 samples (the longest one
//! that matches is reported; a history shorter than 20 samples gives no
//! verdict):
//!
//! 1. Split the window into 4 equal buckets and take each one's minimum, the
//!    floor. The floors rise strictly from each bucket to the next. Churn has
//!    flat floors; a one-time burst raises the floor once, not three times.
//! 2. The last floor is at least [`MIN_GROWTH`] tasks above the first.
//! 3. The last bucket holds a new high: its largest sample exceeds every
//!    earlier sample of the history, so a load cycle that comes back to a
//!    level seen in the last minute is not a leak.
//! 4. The rise is a trend, not noise: the Mann–Kendall statistic of the
//!    window is at least [`MIN_TREND_Z`] (about one chance in a thousand for
//!    random churn).
//!
//! A ramp that is still going (a pool or cache filling for more than 20 s)
//! matches until it levels off, and the finding clears a few seconds later;
//! so does the rising half of a load cycle slower than a minute. The finding
//! carries the growth rate (least-squares slope) as evidence. It works in
//! both modes: the counts come from the runtime hooks.

use serde_json::json;

use super::{capped_ids, Finding, Kind, Severity};
use crate::clock::human;
use crate::snapshot::{Site, Snapshot};

/// Window lengths tried, in samples (seconds), longest first.
const WINDOWS: [usize; 3] = [60, 40, 20];
/// Buckets per window.
const BUCKETS: usize = 4;
/// The least rise of the floor, in tasks, worth a warning.
pub(super) const MIN_GROWTH: u64 = 10;
/// The least Mann–Kendall z-score of the window.
const MIN_TREND_Z: f64 = 3.0;

/// What the rule found in a site's history.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Growth {
    /// Samples in the window that matched.
    pub(super) window: usize,
    pub(super) floors: [u64; BUCKETS],
    /// Least-squares slope over the window, in tasks per second.
    pub(super) per_second: f64,
    pub(super) trend_z: f64,
}

/// Applies the rule of this module to one history, oldest sample first.
pub(super) fn growth(history: &[u64]) -> Option<Growth> {
    WINDOWS.iter().filter(|&&n| n <= history.len()).find_map(|&n| {
        let start = history.len() - n;
        let window = &history[start..];
        let bucket = n / BUCKETS;
        let mut floors = [0; BUCKETS];
        for (floor, chunk) in floors.iter_mut().zip(window.chunks(bucket)) {
            *floor = chunk.iter().copied().min().unwrap_or(0);
        }
        let rising = floors.windows(2).all(|w| w[0] < w[1]);
        if !rising || floors[BUCKETS - 1] - floors[0] < MIN_GROWTH {
            return None;
        }
        let last = start + n - bucket;
        let new_high = history[last..].iter().max() > history[..last].iter().max();
        let trend_z = mann_kendall_z(window);
        (new_high && trend_z >= MIN_TREND_Z).then(|| Growth {
            window: n,
            floors,
            per_second: slope(window),
            trend_z,
        })
    })
}

/// The Mann–Kendall trend statistic as a z-score: how many standard
/// deviations the count of rising pairs exceeds that of falling pairs, for a
/// series without a trend. Ties are not corrected for, which only lowers z.
fn mann_kendall_z(xs: &[u64]) -> f64 {
    let n = xs.len() as f64;
    let mut s: i64 = 0;
    for (i, a) in xs.iter().enumerate() {
        for b in &xs[i + 1..] {
            s += (b > a) as i64 - (b < a) as i64;
        }
    }
    let variance = n * (n - 1.0) * (2.0 * n + 5.0) / 18.0;
    if s == 0 || variance <= 0.0 {
        return 0.0;
    }
    // The continuity correction of the test.
    (s - s.signum()) as f64 / variance.sqrt()
}

/// The least-squares slope of `ys` over their index, in units per sample.
fn slope(ys: &[u64]) -> f64 {
    let n = ys.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = ys.iter().map(|&y| y as f64).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for (x, &y) in ys.iter().enumerate() {
        let dx = x as f64 - mean_x;
        cov += dx * (y as f64 - mean_y);
        var += dx * dx;
    }
    if var == 0.0 {
        0.0
    } else {
        cov / var
    }
}

fn finding(snapshot: &Snapshot, site: &Site, g: Growth) -> Finding {
    let window = &site.history[site.history.len() - g.window..];
    let (first, last) = (window[0], window[window.len() - 1]);
    let mut tasks: Vec<_> = snapshot.tasks.iter().filter(|t| t.site == site.id).collect();
    // The oldest tasks are the likeliest leaked ones.
    tasks.sort_unstable_by(|a, b| b.age_ms.cmp(&a.age_ms).then(a.id.cmp(&b.id)));
    let since_ms = g.window as u64 * 1_000;
    Finding {
        kind: Kind::LeakingSpawnSite,
        severity: Severity::Warning,
        location: site.location.clone(),
        task_ids: capped_ids(&tasks),
        since_ms,
        message: format!(
            "live tasks spawned at {} rose from {first} to {last} over the last {} ({:.1} per second) \
             and keep setting new highs: {} live, {} spawned, {} completed",
            site.location,
            human(since_ms),
            g.per_second,
            site.live,
            site.spawned,
            site.completed,
        ),
        evidence: json!({
            "window_s": g.window,
            "floors": g.floors,
            "growth": g.floors[BUCKETS - 1] - g.floors[0],
            "rate_per_s": (g.per_second * 100.0).round() / 100.0,
            "rate_per_min": (g.per_second * 60.0 * 10.0).round() / 10.0,
            "trend_z": (g.trend_z * 10.0).round() / 10.0,
            "live": site.live,
            "spawned": site.spawned,
            "completed": site.completed,
            "peak_live": site.peak_live,
            "tasks": tasks.len(),
            "history": window,
        }),
    }
}

/// One warning per spawn site whose history matches the rule.
pub(super) fn detect(snapshot: &Snapshot) -> Vec<Finding> {
    snapshot
        .sites
        .iter()
        .filter_map(|site| growth(&site.history).map(|g| finding(snapshot, site, g)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::synthetic::Builder;
    use super::*;

    fn flagged(history: &[u64]) -> bool {
        growth(history).is_some()
    }

    #[test]
    fn a_slow_steady_rise_is_flagged_with_its_rate() {
        let history: Vec<u64> = (1..=20).collect();
        let g = growth(&history).expect("1 more task a second for 20 s is a leak");
        assert_eq!(g.window, 20);
        assert_eq!(g.floors, [1, 6, 11, 16]);
        assert!((g.per_second - 1.0).abs() < 1e-9, "{g:?}");
        assert!(g.trend_z > 6.0, "{g:?}");
    }

    #[test]
    fn the_longest_matching_window_is_reported() {
        let history: Vec<u64> = (0..60).map(|i| 100 + i / 2).collect();
        assert_eq!(growth(&history).map(|g| g.window), Some(60));
        // A leak that began 25 s ago, after a flat half minute.
        let mut late = vec![50; 35];
        late.extend((1..=25).map(|i| 50 + 2 * i));
        assert_eq!(growth(&late).map(|g| g.window), Some(20));
    }

    #[test]
    fn a_leak_under_churn_is_still_flagged() {
        // 1 leaked task a second, under request churn of +-12.
        let history: Vec<u64> = (0..60).map(|i| 200 + i + (i * 37 % 25)).collect();
        assert!(flagged(&history));
    }

    #[test]
    fn a_fixed_pool_is_not_flagged() {
        assert!(!flagged(&[4; 60]));
        assert!(!flagged(&[4; 20]));
    }

    #[test]
    fn request_churn_is_not_flagged() {
        let fast: Vec<u64> = (0..60).map(|i| 10 + (i * 7) % 21).collect();
        assert!(!flagged(&fast));
        // A pseudo-random walk between 10 and 30.
        let mut x = 17u64;
        let random: Vec<u64> = (0..60)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                10 + (x >> 33) % 21
            })
            .collect();
        assert!(!flagged(&random));
        // A load cycle of 40 s between 10 and 30, ending on its rising half:
        // it only climbs back to a level already seen.
        let cycle: Vec<u64> = (0..60)
            .map(|i| (20.0 + 10.0 * ((i + 30) as f64 * std::f64::consts::TAU / 40.0).sin()).round() as u64)
            .collect();
        assert_eq!((cycle[40], cycle[59]), (10, 30));
        assert!(!flagged(&cycle));
        assert!(flagged(&cycle[40..]), "without the earlier peak the rise alone looks like a leak");
    }

    #[test]
    fn a_one_time_burst_is_not_flagged() {
        for at in [0, 5, 10, 17, 30, 45, 55] {
            let burst: Vec<u64> = (0..60).map(|i| if i < at { 0 } else { 1000 }).collect();
            assert!(!flagged(&burst), "burst at {at}");
        }
        // A burst that lands over a few samples.
        let mut ramp = vec![0; 40];
        ramp.extend([250, 500, 750]);
        ramp.extend([1000; 17]);
        assert!(!flagged(&ramp));
    }

    #[test]
    fn a_cache_that_filled_and_levelled_off_is_not_flagged() {
        let mut fill: Vec<u64> = (0..30).map(|i| i * 10).collect();
        fill.extend([300; 30]);
        assert!(!flagged(&fill));
        // Purged and refilled to the same size.
        let saw: Vec<u64> = (0..60).map(|i| (i % 30) * 10).collect();
        assert!(!flagged(&saw));
    }

    #[test]
    fn floors_that_rise_without_a_trend_are_not_flagged() {
        // Short dips that happen to get shallower, under a flat level.
        let mut dips: Vec<u64> = (0..4).flat_map(|k| [4 * k, 100, 100, 100, 100]).collect();
        dips[19] = 101;
        assert!(mann_kendall_z(&dips) < MIN_TREND_Z);
        assert!(!flagged(&dips));
    }

    #[test]
    fn a_short_history_gives_no_verdict() {
        let history: Vec<u64> = (1..=19).map(|i| i * 100).collect();
        assert!(!flagged(&history));
        assert!(!flagged(&[]));
    }

    #[test]
    fn a_rise_smaller_than_min_growth_is_not_flagged() {
        let history: Vec<u64> = (0..20).map(|i| 4 + i / 3).collect();
        assert!(!flagged(&history));
    }

    #[test]
    fn the_finding_names_the_site_its_tasks_and_the_rate() {
        for mut s in [Builder::deep(), Builder::lean()] {
            let site = s.site("src/handlers.rs:44:5");
            let old = s.idle(site, 20_000, "chan receive");
            s.task(old).age_ms = 25_000;
            let young = s.idle(site, 1_000, "chan receive");
            s.history(site, &(1..=20).collect::<Vec<_>>());
            let other = s.site("src/pool.rs:3:3");
            s.history(other, &[4; 60]);
            let found = detect(&s.build());
            assert_eq!(found.len(), 1, "{found:#?}");
            let f = &found[0];
            assert_eq!((f.kind, f.severity), (Kind::LeakingSpawnSite, Severity::Warning));
            assert_eq!(f.location, "src/handlers.rs:44:5");
            assert_eq!(f.task_ids, [old, young]);
            assert_eq!(f.since_ms, 20_000);
            assert_eq!(
                f.message,
                "live tasks spawned at src/handlers.rs:44:5 rose from 1 to 20 over the last 20 seconds \
                 (1.0 per second) and keep setting new highs: 2 live, 2 spawned, 0 completed"
            );
            assert_eq!(f.evidence["rate_per_s"], 1.0);
            assert_eq!(f.evidence["rate_per_min"], 60.0);
            assert_eq!(f.evidence["growth"], 15);
            assert_eq!(f.evidence["window_s"], 20);
        }
    }
}
