//! The in-use history of every sampled stack, for the growth detector.
//!
//! A thread of the agent (`taskscope-heap`) reads each stack's estimated
//! in-use bytes [`POINTS`] times per growth window (by default once a
//! second over 60 s). The readings are kept at three scales ([`SCALES`]):
//! every reading, every 10th and every 60th, [`POINTS`] of each, so by
//! default the last minute at 1 s, the last 10 minutes at 10 s and the last
//! hour at 1 minute. A slow leak (a few KiB/s at the default 512 KiB
//! sampling interval) gives too few samples in one minute to tell from
//! noise; over an hour it does. Memory is bounded: `3 × POINTS` readings
//! (`f32`) per stack, and only stacks with memory in use at some reading of
//! a scale are kept at that scale.
//!
//! Grouping stacks by allocation site needs symbols. The first
//! symbolization reads the binary's debug info, which can take a second, so
//! requests never do it: they use the sites known so far and ask this
//! thread to symbolize the rest, on its next reading.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::growth::{Point, SiteHistory};
use super::sample::STACKS;
use super::symbols;

/// Readings kept per stack and scale: one growth window at the finest.
pub(crate) const POINTS: usize = 60;

/// Every how many readings each scale keeps one: the growth window, ten
/// windows and sixty windows.
pub(crate) const SCALES: [u64; 3] = [1, 10, 60];

/// Readings of every stack at one scale, aligned on common instants.
#[derive(Debug, Default)]
struct Scale {
    times: VecDeque<u64>,
    series: BTreeMap<u32, VecDeque<f32>>,
}

impl Scale {
    const fn new() -> Self {
        Scale { times: VecDeque::new(), series: BTreeMap::new() }
    }

    fn push(&mut self, t_ms: u64, inuse: &[(u32, f64)]) {
        if self.times.len() == POINTS {
            self.times.pop_front();
            for s in self.series.values_mut() {
                s.pop_front();
            }
        }
        self.times.push_back(t_ms);
        let n = self.times.len();
        for &(id, bytes) in inuse {
            let s = self.series.entry(id).or_insert_with(|| std::iter::repeat_n(0.0, n - 1).collect());
            // A stack listed twice (never, from the table) keeps its first.
            if s.len() < n {
                s.push_back(bytes.max(0.0) as f32);
            }
        }
        for s in self.series.values_mut() {
            s.resize(n, 0.0);
        }
        self.series.retain(|_, s| s.iter().any(|&b| b > 0.0));
    }
}

/// One scale as read: the instants, and each stack's readings at them.
pub(crate) type ScaleRead = (Vec<u64>, Vec<(u32, Vec<f64>)>);

/// Readings of every stack at every scale of [`SCALES`].
#[derive(Debug, Default)]
pub(crate) struct History {
    scales: [Scale; SCALES.len()],
    /// Readings pushed so far.
    readings: u64,
}

impl History {
    const fn new() -> Self {
        History { scales: [Scale::new(), Scale::new(), Scale::new()], readings: 0 }
    }

    /// Adds a reading at `t_ms` of the in-use bytes of each stack; stacks
    /// not listed read 0.
    pub(crate) fn push(&mut self, t_ms: u64, inuse: &[(u32, f64)]) {
        for (scale, &every) in self.scales.iter_mut().zip(&SCALES) {
            if self.readings % every == 0 {
                scale.push(t_ms, inuse);
            }
        }
        self.readings += 1;
    }

    /// Each scale, finest first.
    pub(crate) fn read(&self) -> Vec<ScaleRead> {
        self.scales
            .iter()
            .map(|s| {
                let series =
                    s.series.iter().map(|(&id, v)| (id, v.iter().map(|&b| b as f64).collect())).collect();
                (s.times.iter().copied().collect(), series)
            })
            .collect()
    }
}

/// The readings summed per allocation site, `site_of` naming each stack's
/// site (`location`, `function`), or `None` to leave the stack out. Sorted
/// by location.
pub(crate) fn sum_by_site(
    scales: Vec<ScaleRead>,
    mut site_of: impl FnMut(u32) -> Option<(String, String)>,
) -> Vec<SiteHistory> {
    let blank = |scales: &[ScaleRead], location: String, function: String| {
        let mut levels =
            scales.iter().map(|(times, _)| times.iter().map(|&t_ms| Point { t_ms, bytes: 0.0 }).collect());
        SiteHistory {
            location,
            function,
            points: levels.next().unwrap_or_default(),
            longer: levels.collect(),
        }
    };
    let mut sites: HashMap<String, SiteHistory> = HashMap::new();
    let mut names: HashMap<u32, Option<(String, String)>> = HashMap::new();
    for (k, (_, series)) in scales.iter().enumerate() {
        for (id, values) in series {
            let Some((location, function)) = names.entry(*id).or_insert_with(|| site_of(*id)).clone() else {
                continue;
            };
            let entry = sites.entry(location.clone()).or_insert_with(|| blank(&scales, location, function));
            let points = if k == 0 { &mut entry.points } else { &mut entry.longer[k - 1] };
            for (p, v) in points.iter_mut().zip(values) {
                p.bytes += v;
            }
        }
    }
    let mut sites: Vec<SiteHistory> = sites.into_values().collect();
    sites.sort_by(|a, b| a.location.cmp(&b.location));
    sites
}

static HISTORY: Mutex<History> = Mutex::new(History::new());
/// The process id the reader thread runs in; 0 before it starts. A fork
/// child has no such thread, so it starts its own.
static STARTED_IN: AtomicU32 = AtomicU32::new(0);

/// The growth window (`TASKSCOPE_HEAP_GROWTH_WINDOW`, default 60 s).
pub(crate) fn window() -> Duration {
    static WINDOW: OnceLock<Duration> = OnceLock::new();
    *WINDOW.get_or_init(crate::config::heap_growth_window)
}

/// Starts the reader thread, once per process, if the allocator is
/// installed.
pub(crate) fn start() {
    if !super::counters::installed() {
        return;
    }
    let pid = std::process::id();
    if STARTED_IN.swap(pid, Relaxed) == pid {
        return;
    }
    let every = (window() / POINTS as u32).max(Duration::from_millis(10));
    let spawned = std::thread::Builder::new().name("taskscope-heap".into()).spawn(move || {
        let mut reported: Option<std::time::Instant> = None;
        loop {
            // A bug here must not take the thread down for good. Every
            // panic is counted; the first is reported, then one an hour.
            if let Err(payload) = std::panic::catch_unwind(tick) {
                crate::health::count_panic();
                if reported.is_none_or(|at| at.elapsed() >= Duration::from_secs(3_600)) {
                    reported = Some(std::time::Instant::now());
                    crate::health::report_panic_uncounted("the heap history thread", &*payload);
                }
            }
            std::thread::sleep(every);
        }
    });
    if let Err(e) = spawned {
        STARTED_IN.store(0, Relaxed);
        eprintln!("taskscope: could not start the heap history thread: {e}; heap growth is not detected");
    }
}

/// Set by requests that want allocation sites.
static WANTED: AtomicBool = AtomicBool::new(false);
/// Stack-table entries (besides `<table full>`) symbolized by the last pass.
static SYMBOLIZED: AtomicUsize = AtomicUsize::new(0);

/// Asks the reader thread to symbolize the stacks whose allocation site is
/// not known yet.
pub(crate) fn want_sites() {
    WANTED.store(true, Relaxed);
}

fn tick() {
    let inuse = STACKS.inuse_bytes();
    let now = crate::clock::precise_ms();
    HISTORY.lock().unwrap_or_else(|e| e.into_inner()).push(now, &inuse);
    // Entries being added are skipped by `read`; they are caught next time.
    if WANTED.load(Relaxed) && STACKS.len() != SYMBOLIZED.load(Relaxed) {
        let records: Vec<_> = STACKS.read().into_iter().filter(|r| r.id != 0).collect();
        for r in &records {
            symbols::site_of(r.id, &r.frames);
        }
        SYMBOLIZED.store(records.len(), Relaxed);
    }
}

/// The history summed per allocation site (the first frame in the
/// application's own code); stacks not symbolized yet are left out.
pub(crate) fn by_site() -> Vec<SiteHistory> {
    let scales = HISTORY.lock().unwrap_or_else(|e| e.into_inner()).read();
    if scales.iter().all(|(_, series)| series.is_empty()) {
        return Vec::new();
    }
    sum_by_site(scales, |id| match symbols::cached_site(id) {
        Some(Some(site)) => Some((site.location(), site.function.clone())),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_stay_aligned_and_bounded() {
        let mut h = History::default();
        h.push(0, &[(1, 10.0)]);
        h.push(1, &[(1, 20.0), (2, 5.0)]);
        h.push(2, &[(2, 6.0)]);
        let (times, series) = h.read().swap_remove(0);
        assert_eq!(times, [0, 1, 2]);
        assert_eq!(series, vec![(1, vec![10.0, 20.0, 0.0]), (2, vec![0.0, 5.0, 6.0])]);
        for t in 3..(3 + POINTS as u64) {
            h.push(t, &[(2, 1.0)]);
        }
        let (times, series) = h.read().swap_remove(0);
        assert_eq!(times.len(), POINTS);
        // Stack 1 has had nothing in use for a whole window: forgotten.
        assert_eq!(series.len(), 1);
        assert!(series.iter().all(|(_, s)| s.len() == POINTS));
    }

    #[test]
    fn coarser_scales_keep_every_tenth_and_sixtieth_reading_for_longer() {
        let mut h = History::default();
        // Five hours of readings, one a second; stack 1 only in the first
        // 100 s, stack 2 throughout.
        let hours = 5 * 3_600;
        for s in 0..hours {
            let mut inuse = vec![(2, s as f64)];
            if s < 100 {
                inuse.push((1, 1.0));
            }
            h.push(s * 1_000, &inuse);
        }
        let scales = h.read();
        assert_eq!(scales.len(), SCALES.len());
        for ((times, series), every) in scales.iter().zip(SCALES) {
            assert_eq!(times.len(), POINTS);
            let last = (hours - 1) / every * every;
            let want: Vec<u64> = (0..POINTS as u64).rev().map(|k| (last - k * every) * 1_000).collect();
            assert_eq!(times, &want, "every {every}");
            // Stack 1 is long forgotten at every scale; stack 2 reads its
            // value at each kept instant.
            assert_eq!(series.len(), 1);
            let values: Vec<f64> = want.iter().map(|&t| (t / 1_000) as f64).collect();
            assert_eq!(series[0], (2, values));
        }
    }

    #[test]
    fn stacks_of_one_site_are_summed_and_unknown_ones_left_out() {
        let mut h = History::default();
        for s in 0..20u64 {
            h.push(s * 1_000, &[(1, 1.0), (2, 2.0), (3, 4.0), (4, s as f64)]);
        }
        let sites = sum_by_site(h.read(), |id| match id {
            1 | 2 => Some(("src/a.rs:1:1".into(), "a".into())),
            4 => Some(("src/b.rs:2:2".into(), "b".into())),
            _ => None,
        });
        assert_eq!(sites.len(), 2);
        let (a, b) = (&sites[0], &sites[1]);
        assert_eq!((a.location.as_str(), a.function.as_str()), ("src/a.rs:1:1", "a"));
        assert_eq!(a.points.len(), 20);
        assert!(a.points.iter().all(|p| p.bytes == 3.0), "{a:?}");
        assert_eq!(a.longer.len(), SCALES.len() - 1);
        // Readings 0 and 10 at the 10 s scale, 0 at the minute scale.
        assert_eq!(
            a.longer[0].iter().map(|p| (p.t_ms, p.bytes)).collect::<Vec<_>>(),
            [(0, 3.0), (10_000, 3.0)]
        );
        assert_eq!(a.longer[1].len(), 1);
        assert_eq!(b.points.iter().map(|p| p.bytes).sum::<f64>(), (0..20).sum::<u64>() as f64);
    }
}
