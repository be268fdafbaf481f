//! The registry: slab of task slots, id index, spawn sites, completed ring.

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::*};

use super::completed::{Completed, Ring};
use super::index::Index;
use super::sites::{SiteCounts, Sites};
use super::slab::{Cache, Slab, RUNNING, SITE_SHIFT, TIME_MASK};

/// How much the registry may hold. Fixed when the first runtime is
/// instrumented; every table is allocated zeroed up front so that untouched
/// pages cost nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capacity {
    /// Live tasks tracked at once (`TASKSCOPE_MAX_TASKS`).
    pub(crate) tasks: u32,
    /// Distinct spawn sites, `<other>` included (`TASKSCOPE_MAX_SITES`).
    pub(crate) sites: u32,
    /// Completed tasks kept (`TASKSCOPE_COMPLETED`).
    pub(crate) completed: usize,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity { tasks: 1 << 20, sites: 4096, completed: 4096 }
    }
}

#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) capacity: Capacity,
    slab: Slab,
    index: Index,
    pub(crate) sites: Sites,
    completed: Ring,
    /// Spawns not tracked because the slab or index was full. Only the
    /// failing path writes it.
    pub(crate) dropped_tasks: AtomicU64,
}

/// One live task, read from its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskRecord {
    pub(crate) id: u64,
    pub(crate) site: u32,
    pub(crate) spawned_ms: u64,
    pub(crate) running: bool,
    /// Start of the current poll if running, end of the last one if idle.
    pub(crate) last_ms: u64,
    pub(crate) polls: u64,
    pub(crate) busy_ms: u64,
}

impl Registry {
    pub(crate) fn new(capacity: Capacity) -> Self {
        Registry {
            capacity,
            slab: Slab::new(capacity.tasks),
            index: Index::new(capacity.tasks),
            sites: Sites::new(capacity.sites),
            completed: Ring::new(capacity.completed),
            dropped_tasks: AtomicU64::new(0),
        }
    }

    /// A task was spawned. Returns its slot, or `None` if it is not tracked.
    #[inline]
    pub(crate) fn spawn(
        &self,
        cache: &mut Cache,
        shard: usize,
        id: u64,
        location: &'static Location<'static>,
        now: u64,
    ) -> Option<u32> {
        let site = self.sites.intern(location);
        let Some(slot_index) = self.slab.alloc(cache) else {
            self.dropped_tasks.fetch_add(1, Relaxed);
            return None;
        };
        let slot = self.slab.slot(slot_index);
        slot.spawned.store(((site as u64) << SITE_SHIFT) | (now & TIME_MASK), Relaxed);
        slot.last.store(now, Relaxed);
        slot.polls.store(0, Relaxed);
        slot.busy_ms.store(0, Relaxed);
        slot.id.store(id, Release);
        if !self.index.insert(id, slot_index) {
            self.slab.free(cache, slot_index);
            self.dropped_tasks.fetch_add(1, Relaxed);
            return None;
        }
        self.sites.counter(shard, site).spawned.fetch_add(1, Relaxed);
        Some(slot_index)
    }

    /// The slot of a live task.
    #[inline]
    pub(crate) fn lookup(&self, id: u64) -> Option<u32> {
        self.index.get(&self.slab, id)
    }

    /// A poll of the task in `slot` starts. Returns the task's site.
    #[inline]
    pub(crate) fn poll_start(&self, slot: u32, now: u64) -> u32 {
        let slot = self.slab.slot(slot);
        // Only the polling thread writes these fields while the task lives,
        // so a load and a store suffice; readers see either value.
        slot.polls.store(slot.polls.load(Relaxed) + 1, Relaxed);
        slot.last.store(now | RUNNING, Relaxed);
        (slot.spawned.load(Relaxed) >> SITE_SHIFT) as u32
    }

    /// The poll of task `id` that started at `started` ends.
    ///
    /// A task that completes in this poll has already been terminated (tokio
    /// runs the terminate hook inside the poll), so its slot may be free, or
    /// even another task's: the id check keeps this from writing into it.
    #[inline]
    pub(crate) fn poll_end(&self, slot: u32, id: u64, started: Option<u64>, now: u64) {
        let slot = self.slab.slot(slot);
        if slot.id.load(Relaxed) != id {
            return;
        }
        slot.last.store(now, Relaxed);
        if let Some(started) = started {
            if now > started {
                slot.busy_ms.store(slot.busy_ms.load(Relaxed) + (now - started), Relaxed);
            }
        }
    }

    /// A task terminated: it leaves the registry for the completed ring.
    #[inline]
    pub(crate) fn terminate(&self, cache: &mut Cache, shard: usize, id: u64, now: u64) {
        let Some(slot_index) = self.index.remove(&self.slab, id) else {
            return;
        };
        let slot = self.slab.slot(slot_index);
        let spawned = slot.spawned.load(Relaxed);
        let site = (spawned >> SITE_SHIFT) as u32;
        self.completed.push(
            shard,
            Completed {
                id,
                spawned,
                ended_ms: now,
                polls: slot.polls.load(Relaxed),
                busy_ms: slot.busy_ms.load(Relaxed),
            },
        );
        self.slab.free(cache, slot_index);
        self.sites.counter(shard, site).completed.fetch_add(1, Relaxed);
    }

    /// Returns a thread's free slots when it exits.
    pub(crate) fn flush(&self, cache: &mut Cache) {
        self.slab.flush(cache);
    }

    /// Copies every live task. Runs concurrently with the hooks and never
    /// blocks them: a slot that changes owner while being read is skipped.
    pub(crate) fn tasks(&self) -> Vec<TaskRecord> {
        let high = self.slab.high_water();
        let mut out = Vec::new();
        for index in 0..high {
            let slot = self.slab.slot(index);
            let id = slot.id.load(Acquire);
            if id == 0 {
                continue;
            }
            let spawned = slot.spawned.load(Relaxed);
            let last = slot.last.load(Relaxed);
            let polls = slot.polls.load(Relaxed);
            let busy_ms = slot.busy_ms.load(Relaxed);
            std::sync::atomic::fence(Acquire);
            if slot.id.load(Relaxed) != id {
                continue;
            }
            out.push(TaskRecord {
                id,
                site: (spawned >> SITE_SHIFT) as u32,
                spawned_ms: spawned & TIME_MASK,
                running: last & RUNNING != 0,
                last_ms: last & !RUNNING,
                polls,
                busy_ms,
            });
        }
        out
    }

    pub(crate) fn completed(&self) -> Vec<Completed> {
        self.completed.read()
    }

    pub(crate) fn sites(&self) -> Vec<SiteCounts> {
        self.sites.read()
    }

    /// Bytes of address space reserved by the registry's tables.
    pub(crate) fn reserved_bytes(&self) -> usize {
        self.slab.reserved_bytes()
            + self.index.reserved_bytes()
            + self.sites.reserved_bytes()
            + self.completed.reserved_bytes()
    }

    /// Bytes the registry costs per tracked live task: a slot and two index
    /// entries (the index is kept at most half full).
    pub(crate) fn bytes_per_task(&self) -> usize {
        (self.slab.reserved_bytes() + self.index.reserved_bytes()) / self.capacity.tasks.max(1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new(Capacity { tasks: 64, sites: 8, completed: 16 })
    }

    #[test]
    fn a_task_lives_from_spawn_to_terminate() {
        let r = registry();
        let mut cache = Cache::default();
        let here = Location::caller();
        let slot = r.spawn(&mut cache, 0, 42, here, 100).unwrap();
        assert_eq!(r.lookup(42), Some(slot));
        r.poll_start(slot, 150);
        let t = r.tasks()[0];
        assert_eq!((t.id, t.running, t.last_ms, t.polls), (42, true, 150, 1));
        r.poll_end(slot, 42, Some(150), 157);
        let t = r.tasks()[0];
        assert_eq!((t.running, t.last_ms, t.busy_ms, t.spawned_ms), (false, 157, 7, 100));
        let site = &r.sites()[t.site as usize];
        assert_eq!(site.location, Some(here));
        assert_eq!((site.spawned, site.completed), (1, 0));

        r.terminate(&mut cache, 3, 42, 200);
        assert!(r.tasks().is_empty());
        assert_eq!(r.lookup(42), None);
        let done = r.completed();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].id, done[0].ended_ms, done[0].polls, done[0].busy_ms), (42, 200, 1, 7));
        assert_eq!(r.sites()[t.site as usize].completed, 1);
    }

    #[test]
    fn the_end_of_a_poll_that_completed_the_task_leaves_its_slot_alone() {
        let r = registry();
        let mut cache = Cache::default();
        let here = Location::caller();
        let slot = r.spawn(&mut cache, 0, 1, here, 0).unwrap();
        r.poll_start(slot, 5);
        // tokio terminates a task inside its last poll, before the end hook.
        r.terminate(&mut cache, 0, 1, 6);
        let reused = r.spawn(&mut cache, 0, 2, here, 7).unwrap();
        assert_eq!(reused, slot, "the freed slot is reused at once");
        r.poll_end(slot, 1, Some(5), 900);
        let t = r.tasks()[0];
        assert_eq!((t.id, t.last_ms, t.busy_ms), (2, 7, 0), "task 1's poll end wrote into task 2");
    }

    #[test]
    fn spawns_beyond_capacity_are_counted_not_lost_silently() {
        let r = registry();
        let mut cache = Cache::default();
        let here = Location::caller();
        let tracked = (1..=100).filter_map(|id| r.spawn(&mut cache, 0, id, here, 0)).count();
        assert_eq!(tracked, 64);
        assert_eq!(r.dropped_tasks.load(Relaxed), 36);
        // Terminating an untracked task is harmless.
        r.terminate(&mut cache, 0, 99, 1);
        assert_eq!(r.tasks().len(), 64);
    }

    #[test]
    fn the_registry_costs_at_most_64_bytes_per_task() {
        let r = Registry::new(Capacity::default());
        assert!(r.bytes_per_task() <= 64, "{} bytes", r.bytes_per_task());
    }
}
