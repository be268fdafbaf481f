//! A lock-free map from tokio task id to slab slot.
//!
//! Open addressing with linear probing over a fixed table of 8-byte entries
//! sized to twice the task capacity. An entry is `low 32 bits of the id << 32
//! | slot + 1`; the full id lives in the slot and is checked on lookup. Eight
//! consecutive ids share a cache line, so a burst of spawns stays local.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};

use super::slab::{zeroed_slots, Slab};

const EMPTY: u64 = 0;
/// A removed entry. Valid entries never have zero low bits.
const TOMBSTONE: u64 = 1 << 32;
/// Probes before giving up; far above what a table at most half full needs.
const MAX_PROBES: usize = 4096;

#[derive(Debug)]
pub(crate) struct Index {
    entries: Box<[AtomicU64]>,
    mask: usize,
    /// The longest probe an insert has needed, which bounds the probes of a
    /// lookup for an id that is not in the table (an untracked task).
    longest: AtomicUsize,
}

impl Index {
    /// A table able to hold `tasks` entries at a load of at most one half.
    pub(crate) fn new(tasks: u32) -> Self {
        let len = (tasks as usize * 2).next_power_of_two().max(64);
        Index { entries: zeroed_slots(len), mask: len - 1, longest: AtomicUsize::new(0) }
    }

    #[inline(always)]
    fn home(&self, id: u64) -> usize {
        let block = (id >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (((block >> 24) << 3) as usize | (id & 7) as usize) & self.mask
    }

    #[inline(always)]
    fn entry(id: u64, slot: u32) -> u64 {
        (id << 32) | (slot as u64 + 1)
    }

    /// Maps `id` to `slot`; false if no free entry was found.
    #[inline]
    pub(crate) fn insert(&self, id: u64, slot: u32) -> bool {
        let value = Self::entry(id, slot);
        let mut i = self.home(id);
        for probe in 0..MAX_PROBES {
            let e = &self.entries[i];
            let mut current = e.load(Relaxed);
            while current == EMPTY || current == TOMBSTONE {
                match e.compare_exchange(current, value, Release, Relaxed) {
                    Ok(_) => {
                        if probe > self.longest.load(Relaxed) {
                            self.longest.fetch_max(probe, Relaxed);
                        }
                        return true;
                    }
                    Err(seen) => current = seen,
                }
            }
            i = (i + 1) & self.mask;
        }
        false
    }

    /// The slot of `id`, verified against the id stored in the slab.
    #[inline]
    pub(crate) fn get(&self, slab: &Slab, id: u64) -> Option<u32> {
        self.find(slab, id).map(|(_, slot)| slot)
    }

    /// Removes `id`, returning its slot.
    #[inline]
    pub(crate) fn remove(&self, slab: &Slab, id: u64) -> Option<u32> {
        let (i, slot) = self.find(slab, id)?;
        self.entries[i].store(TOMBSTONE, Release);
        Some(slot)
    }

    #[inline(always)]
    fn find(&self, slab: &Slab, id: u64) -> Option<(usize, u32)> {
        let tag = id << 32;
        let mut i = self.home(id);
        for _ in 0..=self.longest.load(Relaxed) {
            let e = self.entries[i].load(Acquire);
            if e == EMPTY {
                return None;
            }
            if e & !0xffff_ffff == tag && e != TOMBSTONE {
                let slot = (e & 0xffff_ffff) as u32 - 1;
                if slab.slot(slot).id.load(Relaxed) == id {
                    return Some((i, slot));
                }
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    pub(crate) fn reserved_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::slab::Cache;

    fn put(slab: &Slab, index: &Index, cache: &mut Cache, id: u64) -> u32 {
        let slot = slab.alloc(cache).unwrap();
        slab.slot(slot).id.store(id, Relaxed);
        assert!(index.insert(id, slot));
        slot
    }

    #[test]
    fn finds_what_was_inserted_and_forgets_what_was_removed() {
        let slab: Slab = Slab::new(10_000);
        let index = Index::new(10_000);
        let mut cache = Cache::default();
        let slots: Vec<(u64, u32)> =
            (1..=10_000u64).map(|id| (id, put(&slab, &index, &mut cache, id))).collect();
        for &(id, slot) in &slots {
            assert_eq!(index.get(&slab, id), Some(slot));
        }
        for &(id, slot) in slots.iter().filter(|(id, _)| id % 2 == 0) {
            assert_eq!(index.remove(&slab, id), Some(slot));
            slab.free(&mut cache, slot);
        }
        for &(id, slot) in &slots {
            let expect = if id % 2 == 0 { None } else { Some(slot) };
            assert_eq!(index.get(&slab, id), expect, "id {id}");
        }
        assert_eq!(index.get(&slab, 999_999), None);
    }

    #[test]
    fn ids_that_share_low_bits_are_told_apart_by_the_slab() {
        let slab: Slab = Slab::new(16);
        let index = Index::new(16);
        let mut cache = Cache::default();
        let a = put(&slab, &index, &mut cache, 5);
        let b = put(&slab, &index, &mut cache, 5 + (1 << 32));
        assert_eq!(index.get(&slab, 5), Some(a));
        assert_eq!(index.get(&slab, 5 + (1 << 32)), Some(b));
        assert_eq!(index.get(&slab, 5 + (2 << 32)), None);
    }

    #[test]
    fn churn_reuses_tombstones_instead_of_filling_the_table() {
        let slab: Slab = Slab::new(1024);
        let index = Index::new(1024);
        let mut cache = Cache::default();
        let mut live = std::collections::VecDeque::new();
        for id in 1..=1_000_000u64 {
            live.push_back((id, put(&slab, &index, &mut cache, id)));
            if live.len() > 900 {
                let (old, slot) = live.pop_front().unwrap();
                assert_eq!(index.remove(&slab, old), Some(slot));
                slab.free(&mut cache, slot);
            }
        }
        for &(id, slot) in &live {
            assert_eq!(index.get(&slab, id), Some(slot));
        }
    }
}
