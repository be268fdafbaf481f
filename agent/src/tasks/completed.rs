//! A bounded ring of recently completed tasks.
//!
//! One ring per shard, each with its own cursor, so terminations on different
//! workers write different cache lines. Readers check each entry's id before
//! and after reading it and skip entries overwritten meanwhile.

use std::sync::atomic::{AtomicU64, Ordering::*};

use super::sites::{SHARDS, SHARED};
use super::slab::{ms_of_word, site_of_word, zeroed_slots};

#[derive(Debug, Default)]
struct Entry {
    id: AtomicU64,
    /// `site << 48 | spawned_ms`, as in the slot.
    spawned: AtomicU64,
    ended_ms: AtomicU64,
    polls: AtomicU64,
    busy_ms: AtomicU64,
}

/// A task that has completed, as kept in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completed {
    pub(crate) id: u64,
    pub(crate) spawned: u64,
    pub(crate) ended_ms: u64,
    pub(crate) polls: u64,
    pub(crate) busy_ms: u64,
}

impl Completed {
    /// The task's spawn-site index.
    pub(crate) fn site(&self) -> usize {
        site_of_word(self.spawned) as usize
    }

    /// When the task was spawned, in coarse ms.
    pub(crate) fn spawned_ms(&self) -> u64 {
        ms_of_word(self.spawned)
    }
}

#[repr(align(64))]
#[derive(Debug, Default)]
struct Cursor(AtomicU64);

#[derive(Debug)]
pub(crate) struct Ring {
    entries: Box<[Entry]>,
    per_shard: usize,
    cursors: Box<[Cursor]>,
}

impl Ring {
    /// Keeps about `capacity` tasks in all (each shard's share rounded up to
    /// a power of two); 0 keeps none.
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = match capacity {
            0 => 0,
            n => n.div_ceil(SHARDS).next_power_of_two(),
        };
        Ring {
            entries: zeroed_slots(per_shard * SHARDS),
            per_shard,
            cursors: (0..SHARDS).map(|_| Cursor::default()).collect(),
        }
    }

    #[inline]
    pub(crate) fn push(&self, shard: usize, task: Completed) {
        if self.per_shard == 0 {
            return;
        }
        let shard = shard % SHARDS;
        let cursor = &self.cursors[shard].0;
        // A shard owned by one thread needs no atomic add (see `SHARED`).
        let n = if shard < SHARED {
            let n = cursor.load(Relaxed);
            cursor.store(n + 1, Relaxed);
            n
        } else {
            cursor.fetch_add(1, Relaxed)
        } as usize;
        let e = &self.entries[shard * self.per_shard + (n & (self.per_shard - 1))];
        e.id.store(0, Release);
        e.spawned.store(task.spawned, Relaxed);
        e.ended_ms.store(task.ended_ms, Relaxed);
        e.polls.store(task.polls, Relaxed);
        e.busy_ms.store(task.busy_ms, Relaxed);
        e.id.store(task.id, Release);
    }

    /// The tasks in the ring, most recently ended first.
    pub(crate) fn read(&self) -> Vec<Completed> {
        let mut out: Vec<Completed> = self
            .entries
            .iter()
            .filter_map(|e| {
                let id = e.id.load(Acquire);
                if id == 0 {
                    return None;
                }
                let task = Completed {
                    id,
                    spawned: e.spawned.load(Relaxed),
                    ended_ms: e.ended_ms.load(Relaxed),
                    polls: e.polls.load(Relaxed),
                    busy_ms: e.busy_ms.load(Relaxed),
                };
                std::sync::atomic::fence(Acquire);
                (e.id.load(Relaxed) == id).then_some(task)
            })
            .collect();
        out.sort_unstable_by(|a, b| b.ended_ms.cmp(&a.ended_ms).then(b.id.cmp(&a.id)));
        out
    }

    pub(crate) fn reserved_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.entries) + std::mem::size_of_val(&*self.cursors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64) -> Completed {
        Completed { id, spawned: 0, ended_ms: id, polls: 1, busy_ms: 0 }
    }

    #[test]
    fn keeps_the_most_recent_tasks_up_to_its_capacity() {
        let ring = Ring::new(32);
        for id in 1..=100 {
            ring.push(0, task(id));
        }
        for id in 101..=103 {
            ring.push(5, task(id));
        }
        let ids: Vec<u64> = ring.read().iter().map(|t| t.id).collect();
        // Two entries per shard: shard 0 keeps 99 and 100, shard 5 keeps 102 and 103.
        assert_eq!(ids, vec![103, 102, 100, 99]);
    }

    #[test]
    fn a_ring_of_zero_keeps_nothing() {
        let ring = Ring::new(0);
        ring.push(3, task(1));
        assert!(ring.read().is_empty());
    }
}
