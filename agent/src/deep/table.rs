//! Per-task state of deep mode, indexed by the span ids the subscriber hands
//! out, so a waker event finds its task without a lookup.

use std::sync::atomic::{AtomicU64, Ordering::*};

use crate::stacks::StackTable;
use crate::tasks::{Cache, Entry, Slab};

/// One task seen through tokio's instrumentation. 64 bytes.
#[derive(Debug, Default)]
pub(crate) struct DeepSlot {
    /// tokio's task id; 0 while free.
    pub(crate) task_id: AtomicU64,
    /// Bumped on every reuse; span ids carry it so that late events of a
    /// finished task are ignored.
    pub(crate) generation: AtomicU64,
    /// Live waker clones: clones − drops − wakes by value (as i64 bits).
    pub(crate) wakers: AtomicU64,
    /// 1 when woken since its last poll started.
    pub(crate) woken: AtomicU64,
    /// Stack id + 1 of the last waker clone made inside its own poll.
    pub(crate) parked: AtomicU64,
    pub(crate) wakes: AtomicU64,
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
        &self.wakes
    }
    fn next_batch(&self) -> &AtomicU64 {
        &self.self_wakes
    }
    fn batch_len(&self) -> &AtomicU64 {
        &self.parked
    }
}

/// What a snapshot reads of a task in deep mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeepView {
    pub(crate) wakers: i64,
    pub(crate) woken: bool,
    pub(crate) parked: Option<u32>,
    pub(crate) wakes: u64,
    pub(crate) self_wakes: u64,
}

#[derive(Debug)]
pub(crate) struct DeepTable {
    pub(crate) slots: Slab<DeepSlot>,
    pub(crate) stacks: StackTable,
    /// Spawn spans not tracked because the table was full.
    pub(crate) dropped: AtomicU64,
}

/// A span id: `generation << 32 | slot + 1`.
pub(crate) fn span_id(slot: u32, generation: u64) -> u64 {
    (generation << 32) | (slot as u64 + 1)
}

impl DeepTable {
    pub(crate) fn new(capacity: u32) -> Self {
        DeepTable { slots: Slab::new(capacity), stacks: StackTable::new(8192), dropped: AtomicU64::new(0) }
    }

    /// A new task; returns its span id.
    pub(crate) fn open(&self, cache: &mut Cache, task_id: u64) -> Option<u64> {
        let Some(index) = self.slots.alloc(cache) else {
            self.dropped.fetch_add(1, Relaxed);
            return None;
        };
        let slot = self.slots.slot(index);
        let generation = (slot.generation.load(Relaxed) + 1) & 0xffff_ffff;
        slot.generation.store(generation, Relaxed);
        for field in [&slot.wakers, &slot.woken, &slot.parked, &slot.wakes, &slot.self_wakes] {
            field.store(0, Relaxed);
        }
        slot.refs.store(1, Relaxed);
        slot.task_id.store(task_id.max(1), Release);
        Some(span_id(index, generation))
    }

    /// The live slot of span `id`, or `None` for a finished task's id.
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<&DeepSlot> {
        let index = (id & 0xffff_ffff).checked_sub(1)? as u32;
        if index >= self.slots.capacity() {
            return None;
        }
        let slot = self.slots.slot(index);
        (slot.generation.load(Acquire) == id >> 32 && slot.task_id.load(Relaxed) != 0).then_some(slot)
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
        let mut out = Vec::new();
        for index in 0..self.slots.high_water() {
            let slot = self.slots.slot(index);
            let task_id = slot.task_id.load(Acquire);
            if task_id == 0 {
                continue;
            }
            let parked = slot.parked.load(Relaxed);
            out.push((
                task_id,
                DeepView {
                    wakers: slot.wakers.load(Relaxed) as i64,
                    woken: slot.woken.load(Relaxed) != 0,
                    parked: parked.checked_sub(1).map(|p| p as u32),
                    wakes: slot.wakes.load(Relaxed),
                    self_wakes: slot.self_wakes.load(Relaxed),
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
