//! The in-use history of every sampled stack, for the growth detector.
//!
//! A thread of the agent (`taskscope-heap`) reads each stack's estimated
//! in-use bytes [`POINTS`] times per growth window (by default once a
//! second over 60 s). Memory is bounded: [`POINTS`] readings per stack, and
//! only stacks with memory in use during the window are kept.
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

/// Readings kept per stack: one growth window.
pub(crate) const POINTS: usize = 60;

/// Readings of every stack, aligned on common instants.
#[derive(Debug, Default)]
pub(crate) struct History {
    times: VecDeque<u64>,
    series: BTreeMap<u32, VecDeque<f64>>,
}

impl History {
    /// Adds a reading at `t_ms` of the in-use bytes of each stack; stacks
    /// not listed read 0.
    pub(crate) fn push(&mut self, t_ms: u64, inuse: &[(u32, f64)]) {
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
            s.push_back(bytes.max(0.0));
        }
        for s in self.series.values_mut() {
            s.resize(n, 0.0);
        }
        self.series.retain(|_, s| s.iter().any(|&b| b > 0.0));
    }

    /// The instants, and each stack's readings at them.
    pub(crate) fn read(&self) -> (Vec<u64>, Vec<(u32, Vec<f64>)>) {
        let series = self.series.iter().map(|(&id, s)| (id, s.iter().copied().collect())).collect();
        (self.times.iter().copied().collect(), series)
    }
}

static HISTORY: Mutex<History> = Mutex::new(History { times: VecDeque::new(), series: BTreeMap::new() });
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
    let (times, series) = HISTORY.lock().unwrap_or_else(|e| e.into_inner()).read();
    if series.is_empty() {
        return Vec::new();
    }
    let mut sites: HashMap<String, SiteHistory> = HashMap::new();
    for (id, values) in series {
        let Some(Some(site)) = symbols::cached_site(id) else { continue };
        let entry = sites.entry(site.location()).or_insert_with(|| SiteHistory {
            location: site.location(),
            function: site.function.clone(),
            points: times.iter().map(|&t_ms| Point { t_ms, bytes: 0.0 }).collect(),
        });
        for (p, v) in entry.points.iter_mut().zip(values) {
            p.bytes += v;
        }
    }
    let mut sites: Vec<SiteHistory> = sites.into_values().collect();
    sites.sort_by(|a, b| a.location.cmp(&b.location));
    sites
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
        let (times, series) = h.read();
        assert_eq!(times, [0, 1, 2]);
        assert_eq!(series, vec![(1, vec![10.0, 20.0, 0.0]), (2, vec![0.0, 5.0, 6.0])]);
        for t in 3..(3 + POINTS as u64) {
            h.push(t, &[(2, 1.0)]);
        }
        let (times, series) = h.read();
        assert_eq!(times.len(), POINTS);
        // Stack 1 has had nothing in use for a whole window: forgotten.
        assert_eq!(series.len(), 1);
        assert!(series.iter().all(|(_, s)| s.len() == POINTS));
    }
}
