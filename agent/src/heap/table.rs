//! The allocation-site table: each distinct (stack, spawn site) that was
//! sampled, with its cumulative sample counts and estimates.
//!
//! A fixed, open-addressed table, shared by every thread without locks: the
//! first thread to claim a free entry writes the frames, then marks it
//! ready. A stack whose probe sequence finds no free entry is folded into
//! entry 0 (`<table full>`) and counted. Counts are atomics touched only on
//! the sampled path, about once per 512 KiB allocated.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

use super::stack::MAX_DEPTH;

/// Probes before a stack is folded into entry 0.
const PROBES: usize = 64;

/// `key` set and `state` still `EMPTY`: being written.
const EMPTY: u32 = 0;
const READY: u32 = 1;

/// Adds to an `f64` kept as bits.
fn add_f64(a: &AtomicU64, x: f64) {
    let mut current = a.load(Relaxed);
    loop {
        let new = (f64::from_bits(current) + x).to_bits();
        match a.compare_exchange_weak(current, new, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// `hash | 1`; 0 while free.
    key: AtomicU64,
    state: AtomicU32,
    depth: AtomicU32,
    /// Spawn site + 1 of the task polled when sampled; 0 outside tasks.
    site: AtomicU32,
    frames: [AtomicUsize; MAX_DEPTH],
    alloc_samples: AtomicU64,
    alloc_sampled_bytes: AtomicU64,
    free_samples: AtomicU64,
    free_sampled_bytes: AtomicU64,
    /// Estimates (`f64` bits): objects and bytes allocated and freed.
    alloc_objects: AtomicU64,
    alloc_bytes: AtomicU64,
    free_objects: AtomicU64,
    free_bytes: AtomicU64,
}

impl Entry {
    const fn new() -> Self {
        Entry {
            key: AtomicU64::new(0),
            state: AtomicU32::new(EMPTY),
            depth: AtomicU32::new(0),
            site: AtomicU32::new(0),
            frames: [const { AtomicUsize::new(0) }; MAX_DEPTH],
            alloc_samples: AtomicU64::new(0),
            alloc_sampled_bytes: AtomicU64::new(0),
            free_samples: AtomicU64::new(0),
            free_sampled_bytes: AtomicU64::new(0),
            alloc_objects: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
            free_objects: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
        }
    }

    fn matches(&self, frames: &[usize], site: u32) -> bool {
        self.depth.load(Relaxed) as usize == frames.len()
            && self.site.load(Relaxed) == site
            && frames.iter().zip(&self.frames).all(|(&f, e)| e.load(Relaxed) == f)
    }
}

/// What a reader sees of one entry.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counts {
    pub(crate) alloc_samples: u64,
    pub(crate) alloc_sampled_bytes: u64,
    pub(crate) free_samples: u64,
    pub(crate) free_sampled_bytes: u64,
    pub(crate) alloc_objects: f64,
    pub(crate) alloc_bytes: f64,
    pub(crate) free_objects: f64,
    pub(crate) free_bytes: f64,
}

impl Counts {
    /// Negative only in a delta between two readings.
    pub(crate) fn inuse_objects(&self) -> f64 {
        self.alloc_objects - self.free_objects
    }

    /// Negative only in a delta between two readings.
    pub(crate) fn inuse_bytes(&self) -> f64 {
        self.alloc_bytes - self.free_bytes
    }

    pub(crate) fn inuse_samples(&self) -> i64 {
        self.alloc_samples as i64 - self.free_samples as i64
    }

    /// What happened between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            alloc_samples: self.alloc_samples.saturating_sub(earlier.alloc_samples),
            alloc_sampled_bytes: self.alloc_sampled_bytes.saturating_sub(earlier.alloc_sampled_bytes),
            free_samples: self.free_samples.saturating_sub(earlier.free_samples),
            free_sampled_bytes: self.free_sampled_bytes.saturating_sub(earlier.free_sampled_bytes),
            alloc_objects: self.alloc_objects - earlier.alloc_objects,
            alloc_bytes: self.alloc_bytes - earlier.alloc_bytes,
            free_objects: self.free_objects - earlier.free_objects,
            free_bytes: self.free_bytes - earlier.free_bytes,
        }
    }
}

/// One entry, as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StackRecord {
    pub(crate) id: u32,
    /// Return addresses, leaf first; empty for entry 0.
    pub(crate) frames: Vec<usize>,
    /// Spawn site index + 1; 0 outside tasks.
    pub(crate) site: u32,
    pub(crate) counts: Counts,
}

/// `N` entries, `N` a power of two; entry 0 is `<table full>`.
#[derive(Debug)]
pub(crate) struct StackTable<const N: usize> {
    entries: [Entry; N],
    /// Samples folded into entry 0 because no entry was free.
    pub(crate) overflowed: AtomicU64,
}

fn hash(frames: &[usize], site: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ site as u64;
    for &f in frames {
        h = (h ^ f as u64).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h | 1
}

impl<const N: usize> StackTable<N> {
    pub(crate) const fn new() -> Self {
        assert!(N.is_power_of_two() && N >= 2);
        StackTable { entries: [const { Entry::new() }; N], overflowed: AtomicU64::new(0) }
    }

    /// The entry of `frames` (leaf first) sampled in a task of spawn site
    /// `site` (+1, 0 for none), added on first sight. 0 when the table is
    /// full.
    pub(crate) fn intern(&self, frames: &[usize], site: u32) -> u32 {
        let frames = &frames[..frames.len().min(MAX_DEPTH)];
        let key = hash(frames, site);
        let mask = N - 1;
        let mut i = (key >> 17) as usize & mask;
        for _ in 0..PROBES.min(N) {
            if i != 0 {
                let e = &self.entries[i];
                let mut seen = e.key.load(Acquire);
                if seen == 0 {
                    match e.key.compare_exchange(0, key, AcqRel, Acquire) {
                        Ok(_) => {
                            for (slot, &f) in e.frames.iter().zip(frames) {
                                slot.store(f, Relaxed);
                            }
                            e.depth.store(frames.len() as u32, Relaxed);
                            e.site.store(site, Relaxed);
                            e.state.store(READY, Release);
                            return i as u32;
                        }
                        Err(actual) => seen = actual,
                    }
                }
                // An entry still being written by another thread is passed
                // over; at worst the same stack gets two entries.
                if seen == key && e.state.load(Acquire) == READY && e.matches(frames, site) {
                    return i as u32;
                }
            }
            i = (i + 1) & mask;
        }
        self.overflowed.fetch_add(1, Relaxed);
        0
    }

    /// A sample of `size` bytes, standing for `weight` allocations, was taken
    /// at entry `id`.
    pub(crate) fn record_alloc(&self, id: u32, size: u64, weight: f64) {
        let e = &self.entries[id as usize % N];
        e.alloc_samples.fetch_add(1, Relaxed);
        e.alloc_sampled_bytes.fetch_add(size, Relaxed);
        add_f64(&e.alloc_objects, weight);
        add_f64(&e.alloc_bytes, weight * size as f64);
    }

    /// A sampled block of entry `id` was freed.
    pub(crate) fn record_free(&self, id: u32, size: u64, weight: f64) {
        let e = &self.entries[id as usize % N];
        e.free_samples.fetch_add(1, Relaxed);
        e.free_sampled_bytes.fetch_add(size, Relaxed);
        add_f64(&e.free_objects, weight);
        add_f64(&e.free_bytes, weight * size as f64);
    }

    fn counts(e: &Entry) -> Counts {
        Counts {
            alloc_samples: e.alloc_samples.load(Relaxed),
            alloc_sampled_bytes: e.alloc_sampled_bytes.load(Relaxed),
            free_samples: e.free_samples.load(Relaxed),
            free_sampled_bytes: e.free_sampled_bytes.load(Relaxed),
            alloc_objects: f64::from_bits(e.alloc_objects.load(Relaxed)),
            alloc_bytes: f64::from_bits(e.alloc_bytes.load(Relaxed)),
            free_objects: f64::from_bits(e.free_objects.load(Relaxed)),
            free_bytes: f64::from_bits(e.free_bytes.load(Relaxed)),
        }
    }

    /// Every entry with at least one sample.
    pub(crate) fn read(&self) -> Vec<StackRecord> {
        let mut out = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let counts = Self::counts(e);
            if counts.alloc_samples == 0 {
                continue;
            }
            let ready = i == 0 || e.state.load(Acquire) == READY;
            if !ready {
                continue;
            }
            let depth = (e.depth.load(Relaxed) as usize).min(MAX_DEPTH);
            let frames = e.frames[..depth].iter().map(|f| f.load(Relaxed)).collect();
            out.push(StackRecord { id: i as u32, frames, site: e.site.load(Relaxed), counts });
        }
        out
    }

    /// The estimated bytes in use of every entry with samples, by id: cheap
    /// enough to call every second.
    pub(crate) fn inuse_bytes(&self) -> Vec<(u32, f64)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.alloc_samples.load(Relaxed) > 0)
            .map(|(i, e)| (i as u32, Self::counts(e).inuse_bytes()))
            .collect()
    }

    /// Entries in use, entry 0 excluded.
    pub(crate) fn len(&self) -> usize {
        self.entries[1..].iter().filter(|e| e.key.load(Relaxed) != 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_stack_and_site_get_the_same_entry() {
        let t = Box::new(StackTable::<64>::new());
        let a = t.intern(&[1, 2, 3], 0);
        assert_ne!(a, 0);
        assert_eq!(t.intern(&[1, 2, 3], 0), a);
        assert_ne!(t.intern(&[1, 2, 3], 5), a, "another spawn site is another entry");
        assert_ne!(t.intern(&[1, 2], 0), a);
        assert_ne!(t.intern(&[], 0), 0, "an empty stack is a stack");
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn a_full_table_folds_into_entry_0_and_counts() {
        let t = Box::new(StackTable::<8>::new());
        let ids: Vec<u32> = (0..20usize).map(|i| t.intern(&[i + 100], 0)).collect();
        assert_eq!(ids.iter().filter(|&&id| id != 0).count(), 7, "{ids:?}");
        assert_eq!(t.overflowed.load(Relaxed), 13);
        // Entry 0 still counts what lands there.
        t.record_alloc(0, 10, 2.0);
        let read = t.read();
        let zero = read.iter().find(|r| r.id == 0).unwrap();
        assert_eq!((zero.counts.alloc_samples, zero.counts.alloc_bytes), (1, 20.0));
        assert!(zero.frames.is_empty());
    }

    #[test]
    fn counts_accumulate_and_in_use_is_allocated_minus_freed() {
        let t = Box::new(StackTable::<16>::new());
        let id = t.intern(&[7, 8], 3);
        t.record_alloc(id, 100, 10.0);
        t.record_alloc(id, 50, 20.0);
        t.record_free(id, 100, 10.0);
        let r = t.read().into_iter().find(|r| r.id == id).unwrap();
        assert_eq!((r.frames.as_slice(), r.site), (&[7usize, 8][..], 3));
        assert_eq!((r.counts.alloc_samples, r.counts.free_samples), (2, 1));
        assert_eq!((r.counts.alloc_objects, r.counts.alloc_bytes), (30.0, 2000.0));
        assert_eq!((r.counts.inuse_objects(), r.counts.inuse_bytes()), (20.0, 1000.0));
        assert_eq!(t.inuse_bytes(), vec![(id, 1000.0)]);
    }

    #[test]
    fn threads_interning_the_same_stacks_agree() {
        let t: &'static StackTable<1024> = Box::leak(Box::new(StackTable::new()));
        let ids: Vec<Vec<u32>> = (0..4)
            .map(|_| std::thread::spawn(move || (0..200usize).map(|i| t.intern(&[i, i * 3], 0)).collect()))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        // Racing first inserts may create a duplicate entry, never a wrong one.
        for thread in &ids {
            for &id in thread {
                assert_ne!(id, 0);
                t.record_alloc(id, 1, 1.0);
            }
        }
        let frames: std::collections::HashMap<u32, Vec<usize>> =
            t.read().into_iter().map(|r| (r.id, r.frames)).collect();
        for thread in &ids {
            for (i, id) in thread.iter().enumerate() {
                assert_eq!(frames[id], vec![i, i * 3]);
            }
        }
        assert!(t.len() >= 200 && t.len() <= 800);
    }
}
