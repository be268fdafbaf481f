//! Per-task state of deep mode. The lean subscriber hands out span ids that
//! name their slot, so a waker event finds its task without a lookup; the
//! layer gets the `Registry`'s ids and finds slots through [`Keys`].
// Lean builds (no `deep` feature) keep the types but never fill them.
#![cfg_attr(not(feature = "deep"), allow(dead_code))]

use std::sync::atomic::{AtomicU64, Ordering::*};

use std::sync::OnceLock;

use super::keys::Keys;
use crate::stacks::StackTable;
use crate::tasks::{Cache, Entry, Slab};

/// One task seen through tokio's instrumentation: 64 bytes, one cache line
/// (the alignment keeps a slot from straddling two).
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct DeepSlot {
    /// tokio's task id; 0 while free.
    pub(crate) task_id: AtomicU64,
    /// The span id this slot answers to: `generation << 32 | slot + 1` from
    /// the lean subscriber (the generation is bumped on every reuse), or the
    /// `Registry`'s id for the layer. Late events of a finished task carry
    /// an old id and find nothing.
    pub(crate) key: AtomicU64,
    /// `wakes << 32` plus the live waker clones (clones − drops − wakes by
    /// value), in wrapping arithmetic, so that one atomic add records any
    /// waker event; [`split_wakers`] takes the word apart.
    pub(crate) wakers: AtomicU64,
    /// 1 when woken since its last poll started.
    pub(crate) woken: AtomicU64,
    /// Where the task parked: the stack id + 1 of its last waker clone made
    /// inside its own poll (0: none; [`PARKED_STACK_MASK`]), how many
    /// captures in a row found that same stack ([`PARKED_STREAK_SHIFT`]),
    /// the coarse-clock tick of the capture ([`PARKED_TICK_SHIFT`]), and
    /// [`PARKED_STALE`] if it has parked again since without a new capture.
    pub(crate) parked: AtomicU64,
    /// The task's name while it lives (0 or an id from `names::intern`);
    /// the slab's free-list link otherwise.
    pub(crate) spare: AtomicU64,
    /// Wakes made by the task itself while being polled.
    pub(crate) self_wakes: AtomicU64,
    /// References to its span (tracing's clone/close counting).
    pub(crate) refs: AtomicU64,
}

impl Entry for DeepSlot {
    fn id(&self) -> &AtomicU64 {
        &self.task_id
    }
    fn next(&self) -> &AtomicU64 {
        &self.spare
    }
    fn next_batch(&self) -> &AtomicU64 {
        &self.self_wakes
    }
    fn batch_len(&self) -> &AtomicU64 {
        &self.parked
    }
}

/// One wake, in [`DeepSlot::wakers`].
pub(crate) const ONE_WAKE: u64 = 1 << 32;
/// [`DeepSlot::parked`]: the stack id + 1, 24 bits.
pub(crate) const PARKED_STACK_MASK: u64 = (1 << 24) - 1;
/// [`DeepSlot::parked`]: captures in a row that found the same stack, to 15.
pub(crate) const PARKED_STREAK_SHIFT: u32 = 24;
pub(crate) const PARKED_STREAK_MASK: u64 = 0xf;
/// [`DeepSlot::parked`]: the capture's tick, 31 bits of coarse-clock ms.
pub(crate) const PARKED_TICK_SHIFT: u32 = 28;
pub(crate) const PARKED_TICK_MASK: u64 = (1 << 31) - 1;
/// [`DeepSlot::parked`]: the task parked again after the stack was taken.
pub(crate) const PARKED_STALE: u64 = 1 << 63;

/// `(live wakers, wakes)` of a [`DeepSlot::wakers`] word.
pub(crate) fn split_wakers(word: u64) -> (i64, u64) {
    let live = word as u32 as i32 as i64;
    (live, word.wrapping_sub(live as u64) >> 32)
}

/// What a snapshot reads of a task in deep mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeepView {
    pub(crate) wakers: i64,
    pub(crate) woken: bool,
    pub(crate) parked: Option<u32>,
    /// The task parked again, in the same millisecond, after `parked` was
    /// taken: probably at the same place, but not certainly.
    pub(crate) parked_stale: bool,
    pub(crate) wakes: u64,
    pub(crate) self_wakes: u64,
    /// The name word (see `names::get`).
    pub(crate) name: u64,
}

#[derive(Debug)]
pub(crate) struct DeepTable {
    pub(crate) slots: Slab<DeepSlot>,
    pub(crate) stacks: StackTable,
    /// Spawn spans not tracked because the table was full.
    pub(crate) dropped: AtomicU64,
    /// The layer's map from `Registry` span ids to slots, made when the
    /// first layer is.
    keys: OnceLock<Keys>,
}

/// A span id: `generation << 32 | slot + 1`.
pub(crate) fn span_id(slot: u32, generation: u64) -> u64 {
    (generation << 32) | (slot as u64 + 1)
}

impl DeepTable {
    pub(crate) fn new(capacity: u32) -> Self {
        DeepTable {
            slots: Slab::new(capacity),
            stacks: StackTable::new(8192),
            dropped: AtomicU64::new(0),
            keys: OnceLock::new(),
        }
    }

    /// A new task of the lean subscriber; returns its span id.
    pub(crate) fn open(&self, cache: &mut Cache, task_id: u64) -> Option<u64> {
        let index = self.alloc(cache)?;
        let slot = self.slots.slot(index);
        let generation = ((slot.key.load(Relaxed) >> 32) + 1) & 0xffff_ffff;
        let key = span_id(index, generation);
        Self::reset(slot, key, task_id);
        Some(key)
    }

    /// A new task of the layer, named by the `Registry`'s span id `key`.
    /// False if it is not tracked (a full table).
    pub(crate) fn open_keyed(&self, cache: &mut Cache, task_id: u64, key: u64) -> bool {
        let Some(index) = self.alloc(cache) else { return false };
        let slot = self.slots.slot(index);
        Self::reset(slot, key, task_id);
        if self.keys().insert(key, index) {
            return true;
        }
        self.dropped.fetch_add(1, Relaxed);
        self.slots.free(cache, index);
        false
    }

    fn alloc(&self, cache: &mut Cache) -> Option<u32> {
        let index = self.slots.alloc(cache);
        if index.is_none() {
            self.dropped.fetch_add(1, Relaxed);
        }
        index
    }

    fn reset(slot: &DeepSlot, key: u64, task_id: u64) {
        slot.key.store(key, Relaxed);
        for field in [&slot.wakers, &slot.woken, &slot.parked, &slot.spare, &slot.self_wakes] {
            field.store(0, Relaxed);
        }
        slot.refs.store(1, Relaxed);
        slot.task_id.store(task_id.max(1), Release);
    }

    /// The layer's key map, made on first use (16 bytes per task of
    /// capacity, from zeroed memory).
    pub(crate) fn keys(&self) -> &Keys {
        self.keys.get_or_init(|| Keys::new(self.slots.capacity()))
    }

    /// The live slot of the lean subscriber's span `id`, or `None` for a
    /// finished task's id.
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<&DeepSlot> {
        let index = (id & 0xffff_ffff).checked_sub(1)? as u32;
        if index >= self.slots.capacity() {
            return None;
        }
        self.live(index, id)
    }

    /// The live slot of the layer's span `key`, or `None` for any other span.
    #[inline]
    pub(crate) fn get_keyed(&self, key: u64) -> Option<&DeepSlot> {
        let keys = self.keys.get()?;
        let index = keys.find(key, |index| self.live(index, key).is_some())?.1;
        Some(self.slots.slot(index))
    }

    #[inline(always)]
    fn live(&self, index: u32, key: u64) -> Option<&DeepSlot> {
        let slot = self.slots.slot(index);
        (slot.key.load(Acquire) == key && slot.task_id.load(Relaxed) != 0).then_some(slot)
    }

    /// The layer's span `key` closed: forgets it and frees its slot.
    pub(crate) fn close_keyed(&self, cache: &mut Cache, key: u64) {
        let Some(keys) = self.keys.get() else { return };
        if let Some(index) = keys.remove(key, |index| self.live(index, key).is_some()) {
            self.slots.free(cache, index);
        }
    }

    /// Drops a reference to span `id`; frees the slot on the last one.
    pub(crate) fn release(&self, cache: &mut Cache, id: u64) -> bool {
        let Some(slot) = self.get(id) else { return false };
        if slot.refs.fetch_sub(1, AcqRel) != 1 {
            return false;
        }
        self.slots.free(cache, (id & 0xffff_ffff) as u32 - 1);
        true
    }

    /// Every tracked task: (tokio task id, view).
    pub(crate) fn read(&self) -> Vec<(u64, DeepView)> {
        let mut out = Vec::with_capacity(self.slots.high_water() as usize);
        for index in 0..self.slots.high_water() {
            let slot = self.slots.slot(index);
            let task_id = slot.task_id.load(Acquire);
            if task_id == 0 {
                continue;
            }
            let parked = slot.parked.load(Relaxed);
            let (wakers, wakes) = split_wakers(slot.wakers.load(Relaxed));
            out.push((
                task_id,
                DeepView {
                    wakers,
                    woken: slot.woken.load(Relaxed) != 0,
                    parked: (parked & PARKED_STACK_MASK).checked_sub(1).map(|p| p as u32),
                    parked_stale: parked & PARKED_STALE != 0,
                    wakes,
                    self_wakes: slot.self_wakes.load(Relaxed),
                    name: slot.spare.load(Relaxed),
                },
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_finished_tasks_find_nothing_even_after_reuse() {
        let t = DeepTable::new(4);
        let mut cache = Cache::default();
        let a = t.open(&mut cache, 10).unwrap();
        assert_eq!(t.get(a).unwrap().task_id.load(Relaxed), 10);
        assert!(t.release(&mut cache, a));
        assert!(t.get(a).is_none());
        let b = t.open(&mut cache, 11).unwrap();
        assert_eq!(a & 0xffff_ffff, b & 0xffff_ffff, "the slot is reused");
        assert!(t.get(a).is_none(), "a stale id must not reach the new task");
        assert_eq!(t.get(b).unwrap().task_id.load(Relaxed), 11);
        assert!(t.get(0).is_none());
        assert!(t.get(u64::MAX).is_none());
    }

    #[test]
    fn one_word_counts_live_wakers_and_wakes() {
        let slot = DeepSlot::default();
        let w = &slot.wakers;
        assert_eq!(split_wakers(w.load(Relaxed)), (0, 0));
        // A drop seen before its clone leaves the count negative for a while.
        w.fetch_sub(1, Relaxed);
        assert_eq!(split_wakers(w.load(Relaxed)), (-1, 0));
        w.fetch_add(1, Relaxed);
        w.fetch_add(1, Relaxed);
        w.fetch_add(ONE_WAKE, Relaxed); // by reference
        assert_eq!(split_wakers(w.load(Relaxed)), (1, 1));
        w.fetch_add(ONE_WAKE - 1, Relaxed); // by value
        assert_eq!(split_wakers(w.load(Relaxed)), (0, 2));
        w.fetch_add(ONE_WAKE - 1, Relaxed);
        assert_eq!(split_wakers(w.load(Relaxed)), (-1, 3));
        for _ in 0..5 {
            w.fetch_add(1, Relaxed);
        }
        assert_eq!(split_wakers(w.load(Relaxed)), (4, 3));
    }

    #[test]
    fn a_span_is_freed_after_its_last_reference() {
        let t = DeepTable::new(4);
        let mut cache = Cache::default();
        let a = t.open(&mut cache, 10).unwrap();
        t.get(a).unwrap().refs.fetch_add(1, Relaxed);
        assert!(!t.release(&mut cache, a));
        assert!(t.release(&mut cache, a));
        assert!(t.read().is_empty());
    }
}
