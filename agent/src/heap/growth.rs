//! The `heap_growth` detector: an allocation site whose in-use bytes keep
//! growing across a window. A pure function over per-site histories.
//!
//! The figures are sampled estimates, so they jitter even when nothing
//! changes: the in-use estimate of `B` bytes of small objects sampled every
//! `R` bytes has a standard deviation of about `sqrt(R * B)`. A site is
//! flagged only when the medians of the window's first, middle and last
//! thirds each rise above the previous one by several times that noise, and
//! the whole rise is both large in bytes and large relative to where it
//! started. So a cache that filled and then went flat (the last two thirds
//! agree) and steady churn (the thirds agree up to noise) are not flagged;
//! a site that is still growing in the last third is.

use serde::Serialize;

/// One reading of a site's in-use bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Point {
    /// Milliseconds on the agent's clock.
    pub(crate) t_ms: u64,
    pub(crate) bytes: f64,
}

/// The in-use history of one allocation site, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SiteHistory {
    /// `file:line:col` of the first frame in the application's own code.
    pub(crate) location: String,
    /// That frame's function.
    pub(crate) function: String,
    pub(crate) points: Vec<Point>,
}

/// The detector's thresholds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub(crate) struct GrowthOptions {
    /// Only points this recent are looked at.
    pub(crate) window_ms: u64,
    /// The points looked at must span at least this long.
    pub(crate) min_span_ms: u64,
    pub(crate) min_points: usize,
    /// The rise from the first third to the last must reach this many bytes
    pub(crate) min_growth_bytes: f64,
    /// ... and this fraction of the first third.
    pub(crate) min_growth_ratio: f64,
    /// The mean sampling interval the estimates were made with.
    pub(crate) sample_bytes: u64,
    /// Each third must rise above the previous by this many noise sigmas.
    pub(crate) sigmas: f64,
}

impl Default for GrowthOptions {
    fn default() -> Self {
        GrowthOptions::for_window(60_000, super::sampler::DEFAULT_SAMPLE_BYTES)
    }
}

impl GrowthOptions {
    /// The defaults for a window of `window_ms` and estimates sampled every
    /// `sample_bytes`.
    pub(crate) fn for_window(window_ms: u64, sample_bytes: u64) -> Self {
        GrowthOptions {
            window_ms,
            min_span_ms: window_ms / 2,
            min_points: 12,
            min_growth_bytes: (1 << 20) as f64,
            min_growth_ratio: 0.1,
            sample_bytes,
            sigmas: 3.0,
        }
    }
}

/// A site found growing, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct HeapGrowth {
    pub(crate) location: String,
    pub(crate) function: String,
    /// The span of the readings looked at.
    pub(crate) window_ms: u64,
    pub(crate) points: usize,
    pub(crate) first_bytes: f64,
    pub(crate) last_bytes: f64,
    /// Medians of the first, middle and last thirds of the window.
    pub(crate) thirds_bytes: [f64; 3],
    /// Least-squares slope over the window.
    pub(crate) rate_bytes_per_sec: f64,
    /// The sampling noise the rise had to beat, per third.
    pub(crate) noise_bytes: f64,
    pub(crate) sample_bytes: u64,
}

impl HeapGrowth {
    /// The `heap_growth` finding, in the JSON shape of DESIGN.md.
    pub(crate) fn finding(&self) -> crate::detect::Finding {
        use crate::detect::{Finding, Kind, Severity};
        Finding {
            kind: Kind::HeapGrowth,
            severity: Severity::Warning,
            location: self.location.clone(),
            task_ids: Vec::new(),
            since_ms: self.window_ms,
            message: self.message(),
            evidence: serde_json::to_value(self).unwrap_or_default(),
        }
    }

    /// The finding's sentence, with its numbers.
    pub(crate) fn message(&self) -> String {
        format!(
            "in-use memory allocated at {} ({}) grew from {} to {} over {} s ({}/s) and is still \
             growing; estimated from samples every {}",
            self.location,
            self.function,
            bytes(self.first_bytes),
            bytes(self.last_bytes),
            self.window_ms / 1000,
            bytes(self.rate_bytes_per_sec),
            bytes(self.sample_bytes as f64),
        )
    }
}

/// `1.5 MiB`, `640 KiB`, `12 B`.
pub(crate) fn bytes(b: f64) -> String {
    let a = b.abs();
    if a >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if a >= (1 << 20) as f64 {
        format!("{:.1} MiB", b / (1 << 20) as f64)
    } else if a >= 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Least-squares slope in bytes per second.
fn slope(points: &[Point]) -> f64 {
    let n = points.len() as f64;
    let t0 = points[0].t_ms as f64;
    let mean_t = points.iter().map(|p| (p.t_ms as f64 - t0) / 1000.0).sum::<f64>() / n;
    let mean_b = points.iter().map(|p| p.bytes).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for p in points {
        let dt = (p.t_ms as f64 - t0) / 1000.0 - mean_t;
        num += dt * (p.bytes - mean_b);
        den += dt * dt;
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

fn growing(site: &SiteHistory, opts: &GrowthOptions) -> Option<HeapGrowth> {
    let last_t = site.points.last()?.t_ms;
    let start = site.points.partition_point(|p| p.t_ms + opts.window_ms < last_t);
    let points = &site.points[start..];
    let span = last_t - points.first()?.t_ms;
    if points.len() < opts.min_points.max(3) || span < opts.min_span_ms {
        return None;
    }
    let n = points.len();
    let mut thirds = [0.0; 3];
    for (k, third) in thirds.iter_mut().enumerate() {
        let mut values: Vec<f64> = points[k * n / 3..(k + 1) * n / 3].iter().map(|p| p.bytes).collect();
        *third = median(&mut values);
    }
    let [m1, m2, m3] = thirds;
    let noise = (opts.sample_bytes as f64 * m3.max(0.0)).sqrt();
    let step = opts.sigmas * noise;
    let rise = m3 - m1;
    let grows = m2 - m1 > step
        && m3 - m2 > step
        && rise >= opts.min_growth_bytes
        && rise >= opts.min_growth_ratio * m1.max(0.0);
    grows.then(|| HeapGrowth {
        location: site.location.clone(),
        function: site.function.clone(),
        window_ms: span,
        points: n,
        first_bytes: points[0].bytes,
        last_bytes: points[n - 1].bytes,
        thirds_bytes: thirds,
        rate_bytes_per_sec: slope(points),
        noise_bytes: noise,
        sample_bytes: opts.sample_bytes,
    })
}

/// The sites of `histories` whose in-use bytes keep growing, fastest first.
pub(crate) fn detect(histories: &[SiteHistory], opts: &GrowthOptions) -> Vec<HeapGrowth> {
    let mut found: Vec<HeapGrowth> = histories.iter().filter_map(|h| growing(h, opts)).collect();
    found.sort_by(|a, b| {
        b.rate_bytes_per_sec.total_cmp(&a.rate_bytes_per_sec).then(a.location.cmp(&b.location))
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::sampler::Rng;

    const MIB: f64 = (1 << 20) as f64;
    const R: u64 = 512 * 1024;

    /// A Gaussian from two uniforms (Box–Muller).
    fn gauss(rng: &mut Rng) -> f64 {
        let (u, v) = (rng.next_unit(), rng.next_unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// One reading a second for `secs` seconds of `f(second)` bytes, plus
    /// the sampling noise of an estimate of that many bytes.
    fn history(secs: u64, seed: u64, f: impl Fn(f64) -> f64) -> SiteHistory {
        let mut rng = Rng::new(seed);
        let points = (0..secs)
            .map(|s| {
                let b: f64 = f(s as f64);
                let noise = (R as f64 * b).sqrt() * gauss(&mut rng);
                Point { t_ms: 1_000 * s, bytes: (b + noise).max(0.0) }
            })
            .collect();
        SiteHistory { location: "src/cache.rs:42:5".into(), function: "app::Cache::insert".into(), points }
    }

    #[test]
    fn a_site_that_keeps_growing_is_found_with_its_rate() {
        let h = history(60, 1, |s| 20.0 * MIB + s * MIB);
        let found = detect(&[h], &GrowthOptions::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        let g = &found[0];
        assert_eq!(g.location, "src/cache.rs:42:5");
        assert!((g.rate_bytes_per_sec / MIB - 1.0).abs() < 0.1, "{}", g.rate_bytes_per_sec / MIB);
        assert_eq!(g.window_ms, 59_000);
        let m = g.message();
        assert!(m.contains("src/cache.rs:42:5") && m.contains("MiB/s") && m.contains("over 59 s"), "{m}");
        let f = g.finding();
        assert_eq!((f.kind.as_str(), f.severity.as_str(), f.since_ms), ("heap_growth", "warning", 59_000));
        assert_eq!(f.location, "src/cache.rs:42:5");
        assert!(f.task_ids.is_empty());
        assert!(f.evidence["rate_bytes_per_sec"].as_f64().unwrap() > 0.0, "{}", f.evidence);
    }

    #[test]
    fn a_cache_that_filled_and_went_flat_is_not_flagged() {
        // Fills over the first 15 s, then holds 100 MiB.
        let h = history(60, 2, |s| (s / 15.0).min(1.0) * 100.0 * MIB);
        assert!(detect(&[h], &GrowthOptions::default()).is_empty());
    }

    #[test]
    fn steady_churn_is_never_flagged() {
        // 1000 windows of a flat site at several sizes, with sampling noise:
        // none may be flagged.
        let opts = GrowthOptions::default();
        for seed in 0..1000 {
            let level = [0.5, 5.0, 50.0, 500.0][seed as usize % 4] * MIB;
            let h = history(60, 100 + seed, |_| level);
            assert!(detect(&[h], &opts).is_empty(), "seed {seed}");
        }
    }

    #[test]
    fn a_single_step_up_is_not_growth() {
        let h = history(60, 3, |s| if s < 30.0 { 10.0 * MIB } else { 40.0 * MIB });
        assert!(detect(&[h], &GrowthOptions::default()).is_empty());
    }

    #[test]
    fn small_or_short_growth_is_not_flagged() {
        // 2 KiB/s: steady, but 120 KiB in all.
        let h = history(60, 4, |s| 64.0 * 1024.0 + s * 2048.0);
        assert!(detect(&[h], &GrowthOptions::default()).is_empty());
        // Fast, but only 10 s of history in a 60 s window.
        let h = history(10, 5, |s| s * 10.0 * MIB);
        assert!(detect(&[h], &GrowthOptions::default()).is_empty());
    }

    #[test]
    fn only_the_window_counts() {
        // Grew for 5 minutes, flat for the last minute.
        let h = history(360, 6, |s| s.min(300.0) * MIB);
        assert!(detect(std::slice::from_ref(&h), &GrowthOptions::default()).is_empty());
        // With a window that covers the growth, it is found.
        let found = detect(&[h], &GrowthOptions::for_window(360_000, R));
        assert_eq!(found.len(), 1, "{found:#?}");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(12.0), "12 B");
        assert_eq!(bytes(640.0 * 1024.0), "640 KiB");
        assert_eq!(bytes(1.5 * MIB), "1.5 MiB");
        assert_eq!(bytes(3.0 * 1024.0 * MIB), "3.0 GiB");
    }
}
