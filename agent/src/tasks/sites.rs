//! Spawn sites: the `file:line:col` where tasks are spawned, with counters.
//!
//! Sites are interned by the address of their `Location` in a fixed table;
//! site 0 is the `<other>` bucket that takes spawns once the table is full.
//! Spawned and completed counts are sharded by thread so that spawns on one
//! worker and terminations on another do not fight over one cache line.

use std::panic::Location;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;

use super::slab::zeroed_slots;

/// Shards of the per-site counters (and of the completed ring). Each of the
/// first `SHARDS - 1` belongs to one thread at a time, which updates it with
/// plain loads and stores; threads that find none free share [`SHARED`],
/// updated with atomic adds.
pub(crate) const SHARDS: usize = 16;
/// The shard of threads that own none.
pub(crate) const SHARED: usize = SHARDS - 1;

/// Adds one to a counter of shard `shard`: a load and a store when one
/// thread owns the shard, an atomic add when threads share it.
#[inline(always)]
pub(crate) fn bump(counter: &AtomicU64, shard: usize) {
    if shard < SHARED {
        counter.store(counter.load(Relaxed) + 1, Relaxed);
    } else {
        counter.fetch_add(1, Relaxed);
    }
}
/// Samples of each site's live count kept for the leak detector.
pub(crate) const HISTORY: usize = 60;

#[derive(Debug, Default)]
pub(crate) struct Counter {
    pub(crate) spawned: AtomicU64,
    pub(crate) completed: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Sites {
    /// Open-addressed keys: the `Location` address, 0 when empty.
    keys: Box<[AtomicUsize]>,
    /// Site index + 1 of the key at the same position; 0 while being added.
    values: Box<[AtomicU32]>,
    /// The location of each site index; null for `<other>`.
    locations: Box<[AtomicPtr<Location<'static>>]>,
    /// `counters[shard * capacity + site]`.
    counters: Box<[Counter]>,
    next: AtomicU32,
    capacity: u32,
    /// Spawns folded into `<other>` because the table was full.
    pub(crate) overflowed: AtomicU64,
    /// Sampled once a second by the ticker: (peak live, ring of live counts).
    history: Mutex<History>,
}

#[derive(Debug, Default)]
struct History {
    peak: Vec<u64>,
    ring: Vec<[u64; HISTORY]>,
    samples: usize,
}

/// What a snapshot reads of one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SiteCounts {
    pub(crate) location: Option<&'static Location<'static>>,
    pub(crate) spawned: u64,
    pub(crate) completed: u64,
    pub(crate) peak: u64,
    /// Oldest first, one sample a second.
    pub(crate) history: Vec<u64>,
}

impl Sites {
    /// `capacity` sites, including the `<other>` bucket.
    pub(crate) fn new(capacity: u32) -> Self {
        let capacity = capacity.max(2);
        let table = (capacity as usize * 2).next_power_of_two();
        Sites {
            keys: zeroed_slots(table),
            values: zeroed_slots(table),
            locations: (0..capacity).map(|_| AtomicPtr::default()).collect(),
            counters: zeroed_slots(SHARDS * capacity as usize),
            next: AtomicU32::new(1),
            capacity,
            overflowed: AtomicU64::new(0),
            history: Mutex::default(),
        }
    }

    /// The site index of `location`, adding it on first sight.
    #[inline]
    pub(crate) fn intern(&self, location: &'static Location<'static>) -> u32 {
        let key = location as *const Location<'static> as usize;
        let mask = self.keys.len() - 1;
        let mut i = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) & mask;
        for _ in 0..self.keys.len() {
            match self.keys[i].load(Acquire) {
                k if k == key => return self.values[i].load(Acquire).saturating_sub(1),
                0 => {}
                _ => {
                    i = (i + 1) & mask;
                    continue;
                }
            }
            // A new site: the rare path.
            match self.keys[i].compare_exchange(0, key, AcqRel, Acquire) {
                Ok(_) => return self.add(i, location),
                // Someone added a key here first; look at it again.
                Err(_) => continue,
            }
        }
        self.overflowed.fetch_add(1, Relaxed);
        0
    }

    #[cold]
    fn add(&self, key_slot: usize, location: &'static Location<'static>) -> u32 {
        let site = self.next.fetch_add(1, Relaxed);
        if site >= self.capacity {
            self.next.store(self.capacity, Relaxed);
            self.values[key_slot].store(1, Release);
            self.overflowed.fetch_add(1, Relaxed);
            return 0;
        }
        self.locations[site as usize].store(location as *const _ as *mut _, Release);
        self.values[key_slot].store(site + 1, Release);
        site
    }

    #[inline(always)]
    pub(crate) fn counter(&self, shard: usize, site: u32) -> &Counter {
        &self.counters[(shard % SHARDS) * self.capacity as usize + site as usize]
    }

    /// The number of site indexes in use, `<other>` included.
    pub(crate) fn len(&self) -> u32 {
        self.next.load(Acquire).min(self.capacity)
    }

    fn totals(&self, site: u32) -> (u64, u64) {
        (0..SHARDS).fold((0, 0), |(s, c), shard| {
            let counter = self.counter(shard, site);
            (s + counter.spawned.load(Relaxed), c + counter.completed.load(Relaxed))
        })
    }

    /// Records every site's live count; called once a second by the ticker.
    pub(crate) fn sample(&self) {
        let n = self.len() as usize;
        let live: Vec<u64> = (0..n as u32)
            .map(|site| {
                let (s, c) = self.totals(site);
                s.saturating_sub(c)
            })
            .collect();
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.peak.resize(n, 0);
        history.ring.resize(n, [0; HISTORY]);
        let at = history.samples % HISTORY;
        for (site, live) in live.into_iter().enumerate() {
            history.peak[site] = history.peak[site].max(live);
            history.ring[site][at] = live;
        }
        history.samples += 1;
    }

    /// Reads every site's counters.
    pub(crate) fn read(&self) -> Vec<SiteCounts> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let kept = history.samples.min(HISTORY);
        (0..self.len())
            .map(|site| {
                let (spawned, completed) = self.totals(site);
                let ptr = self.locations[site as usize].load(Acquire);
                // SAFETY: non-null pointers stored here come from
                // `&'static Location<'static>` references.
                let location = unsafe { ptr.as_ref() };
                let ring = history.ring.get(site as usize);
                let live = spawned.saturating_sub(completed);
                let hist = match ring {
                    Some(ring) => (0..kept).map(|k| ring[(history.samples - kept + k) % HISTORY]).collect(),
                    None => Vec::new(),
                };
                let peak = history.peak.get(site as usize).copied().unwrap_or(0).max(live);
                SiteCounts { location, spawned, completed, peak, history: hist }
            })
            .collect()
    }

    pub(crate) fn reserved_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.keys)
            + std::mem::size_of_val(&*self.values)
            + std::mem::size_of_val(&*self.locations)
            + std::mem::size_of_val(&*self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    #[test]
    fn the_same_location_maps_to_the_same_site() {
        let sites = Sites::new(16);
        let a = here();
        let b = here();
        let sa = sites.intern(a);
        assert_eq!(sites.intern(a), sa);
        let sb = sites.intern(b);
        assert_ne!(sa, sb);
        assert_ne!(sa, 0, "site 0 is reserved for <other>");
        assert_eq!(sites.read()[sa as usize].location, Some(a));
    }

    #[test]
    fn sites_beyond_capacity_fold_into_other_and_are_counted() {
        let sites = Sites::new(3);
        let locs = [here(), here(), here(), here()];
        let got: Vec<u32> = locs.iter().map(|l| sites.intern(l)).collect();
        assert_eq!(&got[..2], &[1, 2]);
        assert_eq!(&got[2..], &[0, 0]);
        assert_eq!(sites.overflowed.load(Relaxed), 2);
        assert_eq!(sites.read()[0].location, None);
    }

    #[test]
    fn counts_sum_over_shards_and_history_keeps_the_last_minute() {
        let sites = Sites::new(8);
        let s = sites.intern(here());
        for shard in 0..SHARDS {
            sites.counter(shard, s).spawned.fetch_add(3, Relaxed);
        }
        sites.counter(1, s).completed.fetch_add(4, Relaxed);
        for _ in 0..(HISTORY + 5) {
            sites.sample();
        }
        let read = &sites.read()[s as usize];
        let spawned = 3 * SHARDS as u64;
        assert_eq!((read.spawned, read.completed), (spawned, 4));
        assert_eq!(read.peak, spawned - 4);
        assert_eq!(read.history.len(), HISTORY);
        assert!(read.history.iter().all(|&n| n == spawned - 4));
    }
}
