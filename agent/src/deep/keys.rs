//! The layer's lock-free map from the `Registry`'s span ids to deep slots.
//!
//! Under [`layer`](crate::layer) the `Registry` picks span ids, so they
//! cannot name a slot the way the lean subscriber's ids do. Open addressing
//! with linear probing over a fixed table of 8-byte entries, twice the task
//! capacity, as the registry's task index does: an entry is
//! `tag << 32 | slot + 1` with the tag from the id's hash, and the full id
//! lives in the slot (`DeepSlot::key`), which the caller checks.
// Lean builds (no `deep` feature) keep the types but never fill them.
#![cfg_attr(not(feature = "deep"), allow(dead_code))]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};

use crate::tasks::zeroed;

const EMPTY: u64 = 0;
/// A removed entry; valid entries never have zero low bits.
const TOMBSTONE: u64 = 1 << 32;
/// Probes before giving up; far above what a table at most half full needs.
const MAX_PROBES: usize = 4096;

#[derive(Debug)]
pub(crate) struct Keys {
    entries: Box<[AtomicU64]>,
    mask: usize,
    /// The longest probe an insert has needed, which bounds the probes of a
    /// lookup for an id that is not in the table.
    longest: AtomicUsize,
}

#[inline(always)]
fn mix(key: u64) -> u64 {
    let x = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

impl Keys {
    /// A table able to hold `tasks` ids at a load of at most one half.
    pub(crate) fn new(tasks: u32) -> Self {
        let len = (tasks as usize * 2).next_power_of_two().max(64);
        Keys { entries: zeroed(len), mask: len - 1, longest: AtomicUsize::new(0) }
    }

    #[inline(always)]
    fn home_and_tag(&self, key: u64) -> (usize, u64) {
        let h = mix(key);
        (h as usize & self.mask, h & !0xffff_ffff)
    }

    /// Maps `key` to `slot`; false if no free entry was found.
    pub(crate) fn insert(&self, key: u64, slot: u32) -> bool {
        let (mut i, tag) = self.home_and_tag(key);
        let value = tag | (slot as u64 + 1);
        for probe in 0..MAX_PROBES.min(self.entries.len()) {
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

    /// The entry and slot of `key`; `is_key(slot)` says whether a slot whose
    /// tag matches really holds `key`.
    #[inline]
    pub(crate) fn find(&self, key: u64, is_key: impl Fn(u32) -> bool) -> Option<(usize, u32)> {
        let (mut i, tag) = self.home_and_tag(key);
        for _ in 0..=self.longest.load(Relaxed) {
            let e = self.entries[i].load(Acquire);
            if e == EMPTY {
                return None;
            }
            if e & !0xffff_ffff == tag && e != TOMBSTONE {
                let slot = (e & 0xffff_ffff) as u32 - 1;
                if is_key(slot) {
                    return Some((i, slot));
                }
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Removes `key`, returning its slot.
    pub(crate) fn remove(&self, key: u64, is_key: impl Fn(u32) -> bool) -> Option<u32> {
        let (i, slot) = self.find(key, is_key)?;
        self.entries[i].store(TOMBSTONE, Release);
        Some(slot)
    }

    #[cfg(test)]
    fn reserved_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Slots remember their key, as `DeepSlot::key` does.
    struct Model {
        keys: Keys,
        slots: HashMap<u32, u64>,
    }

    impl Model {
        fn new(tasks: u32) -> Self {
            Model { keys: Keys::new(tasks), slots: HashMap::new() }
        }
        fn put(&mut self, key: u64, slot: u32) {
            self.slots.insert(slot, key);
            assert!(self.keys.insert(key, slot));
        }
        fn get(&self, key: u64) -> Option<u32> {
            self.keys.find(key, |s| self.slots.get(&s) == Some(&key)).map(|(_, s)| s)
        }
        fn remove(&mut self, key: u64) -> Option<u32> {
            let slots = &self.slots;
            let slot = self.keys.remove(key, |s| slots.get(&s) == Some(&key))?;
            self.slots.remove(&slot);
            Some(slot)
        }
    }

    /// Ids shaped like the `Registry`'s: a generation in the high bits.
    fn registry_id(n: u64) -> u64 {
        ((n % 7) << 51) | (n + 1)
    }

    #[test]
    fn finds_what_was_inserted_and_forgets_what_was_removed() {
        let mut m = Model::new(10_000);
        for n in 0..10_000u64 {
            m.put(registry_id(n), n as u32);
        }
        for n in 0..10_000u64 {
            assert_eq!(m.get(registry_id(n)), Some(n as u32));
        }
        for n in (0..10_000u64).filter(|n| n % 2 == 0) {
            assert_eq!(m.remove(registry_id(n)), Some(n as u32));
        }
        for n in 0..10_000u64 {
            let expect = (n % 2 == 1).then_some(n as u32);
            assert_eq!(m.get(registry_id(n)), expect, "id {n}");
        }
        assert_eq!(m.get(u64::MAX), None);
    }

    #[test]
    fn a_stale_id_does_not_find_the_slot_reused_by_another() {
        let mut m = Model::new(16);
        m.put(5, 0);
        assert_eq!(m.remove(5), Some(0));
        m.put(5 | (1 << 40), 0);
        assert_eq!(m.get(5), None);
        assert_eq!(m.get(5 | (1 << 40)), Some(0));
    }

    #[test]
    fn churn_reuses_tombstones_instead_of_filling_the_table() {
        let mut m = Model::new(1024);
        let mut live = std::collections::VecDeque::new();
        for n in 0..200_000u64 {
            let slot = (n % 1000) as u32;
            m.put(registry_id(n), slot);
            live.push_back(registry_id(n));
            if live.len() > 900 {
                let old = live.pop_front().unwrap();
                assert!(m.remove(old).is_some());
            }
        }
        for &key in &live {
            assert!(m.get(key).is_some());
        }
        assert!(m.keys.reserved_bytes() >= 2048 * 8);
    }
}
