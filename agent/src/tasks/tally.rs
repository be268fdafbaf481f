//! Each thread's tally of the polls it ends.
//!
//! When a poll's end wrote the task's slot, that write was most of the lean
//! hooks' own cost on the poll-heavy benchmark: one more cache line per
//! poll, in a slot that the spawning worker wrote and that any worker may
//! poll (BENCHMARKS.md, "A tally per thread"). A thread with a shard of its
//! own now counts the polls it ends in its tally instead: a direct-mapped
//! table of 32-byte entries, keyed by task id, that only that thread writes.
//!
//! - A task's entry goes to its slot when another task needs the entry's
//!   place, and when the thread exits.
//! - A task's slot has one bit per tally that may hold some of its polls
//!   ([`super::slab::holder_bit`]), set when the entry is made. The task's
//!   end collects those entries into its completed record.
//! - Readers add the entries to the slots.
//!
//! Races: a thread may flush an entry while the entry's task ends, or while
//! a reader copies the registry. That end or that copy may then count the
//! entry's polls twice, never zero times: both read the tallies before the
//! slot. A flush that also loses to the spawn of a new task into the same
//! window slot adds to the newcomer. Each takes a thread flushing the entry
//! at the moment of the task's end: for the few nanoseconds of an eviction
//! (ending a poll of another task whose id is a multiple of [`ENTRIES`]
//! away), or during the sweep of the whole tally when the thread exits.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering::*};

use super::sites::SHARED;
use super::slab::zeroed_slots;

/// Entries per tally: 128 KiB per thread, of which only the pages that its
/// tasks' ids map to are ever touched.
pub(crate) const ENTRIES: usize = 4096;

/// What a tally holds for one task: the polls that ended on its thread
/// since the entry was made.
#[derive(Debug, Default)]
#[repr(align(32))]
pub(crate) struct Entry {
    /// The task's id; 0 while the entry is free. Written last when the
    /// entry is made, so readers can detect an entry that changed.
    pub(crate) id: AtomicU64,
    polls: AtomicU64,
    /// The coarse ms of the last poll's end.
    last: AtomicU64,
    busy_ms: AtomicU64,
}

/// The polls an entry holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delta {
    pub(crate) polls: u64,
    /// The end of the last of them, in coarse ms.
    pub(crate) last: u64,
    pub(crate) busy_ms: u64,
}

impl Delta {
    /// One poll that started at `started` and ended at `now`.
    pub(crate) fn one(started: u64, now: u64) -> Delta {
        Delta { polls: 1, last: now, busy_ms: now.saturating_sub(started) }
    }

    pub(crate) fn add(&mut self, other: Delta) {
        self.polls += other.polls;
        self.last = self.last.max(other.last);
        self.busy_ms += other.busy_ms;
    }
}

impl Entry {
    /// Another poll of the entry's task ended. Only the owning thread writes
    /// an entry, so a load and a store suffice; readers see either value.
    #[inline(always)]
    pub(crate) fn count(&self, started: u64, now: u64) {
        self.polls.store(self.polls.load(Relaxed) + 1, Relaxed);
        // Written only when it changes: most polls end in the millisecond
        // of the task's previous one.
        if self.last.load(Relaxed) != now {
            self.last.store(now, Relaxed);
        }
        if now > started {
            self.busy_ms.store(self.busy_ms.load(Relaxed) + (now - started), Relaxed);
        }
    }

    /// Makes the entry task `id`'s, holding `delta` (owning thread only;
    /// `id` 0 frees it).
    pub(crate) fn reset(&self, id: u64, delta: Delta) {
        // Release: a reader that sees the entry empty sees the flush of
        // what it held (into the task's slot) too.
        self.id.store(0, Release);
        fence(Release);
        self.polls.store(delta.polls, Relaxed);
        self.last.store(delta.last, Relaxed);
        self.busy_ms.store(delta.busy_ms, Relaxed);
        self.id.store(id, Release);
    }

    /// The entry's task and what it holds; `None` if the entry is free or
    /// changed task while being read. Any thread.
    pub(crate) fn read(&self) -> Option<(u64, Delta)> {
        let id = self.id.load(Acquire);
        if id == 0 {
            return None;
        }
        let delta = Delta {
            polls: self.polls.load(Relaxed),
            last: self.last.load(Relaxed),
            busy_ms: self.busy_ms.load(Relaxed),
        };
        fence(Acquire);
        (self.id.load(Relaxed) == id).then_some((id, delta))
    }
}

/// The tallies of the [`SHARED`] ownable shards, one per thread that owns a
/// shard. A thread that gives its shard back flushes its tally first, so the
/// next owner starts with an empty one.
#[derive(Debug)]
pub(crate) struct Tallies {
    entries: Box<[Entry]>,
    /// Shards whose tally has been written: readers skip the others.
    used: [AtomicBool; SHARED],
}

/// Task ids are distinct integers: a multiplication spreads them enough.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// What every tally holds, summed per task.
pub(crate) type Tallied = HashMap<u64, Delta, BuildHasherDefault<IdHasher>>;

impl Tallies {
    pub(crate) fn new() -> Self {
        Tallies { entries: zeroed_slots(SHARED * ENTRIES), used: [const { AtomicBool::new(false) }; SHARED] }
    }

    /// The entry of task `id` in `shard`'s tally. `shard` must be an
    /// ownable one (below [`SHARED`]).
    #[inline(always)]
    pub(crate) fn entry(&self, shard: usize, id: u64) -> &Entry {
        &self.entries[shard * ENTRIES + (id as usize & (ENTRIES - 1))]
    }

    /// `shard`'s tally is about to be written.
    pub(crate) fn mark_used(&self, shard: usize) {
        if !self.used[shard].load(Relaxed) {
            self.used[shard].store(true, Relaxed);
        }
    }

    /// The entries of `shard`'s tally (empty if it was never written).
    pub(crate) fn of(&self, shard: usize) -> &[Entry] {
        if shard < SHARED && self.used[shard].load(Relaxed) {
            &self.entries[shard * ENTRIES..(shard + 1) * ENTRIES]
        } else {
            &[]
        }
    }

    /// Everything the tallies hold now, per task.
    pub(crate) fn read_all(&self) -> Tallied {
        let mut out = Tallied::default();
        for shard in 0..SHARED {
            for (id, delta) in self.of(shard).iter().filter_map(Entry::read) {
                out.entry(id).or_default().add(delta);
            }
        }
        out
    }

    /// Address space reserved by the tallies.
    pub(crate) fn reserved_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_counts_the_polls_of_its_task_and_readers_see_them() {
        let t = Tallies::new();
        t.mark_used(2);
        let e = t.entry(2, 7);
        assert_eq!(e.read(), None);
        e.reset(7, Delta::one(10, 10));
        e.count(10, 12);
        e.count(12, 12);
        assert_eq!(e.read(), Some((7, Delta { polls: 3, last: 12, busy_ms: 2 })));
        // The same task in another tally: readers sum them.
        t.mark_used(0);
        t.entry(0, 7).reset(7, Delta::one(20, 25));
        assert_eq!(t.read_all().get(&7), Some(&Delta { polls: 4, last: 25, busy_ms: 7 }));
        // A tally never marked used is not read.
        t.entry(5, 9).reset(9, Delta::one(0, 0));
        assert_eq!(t.read_all().get(&9), None);
        // Ids ENTRIES apart share an entry.
        assert!(std::ptr::eq(t.entry(2, 7), t.entry(2, 7 + ENTRIES as u64)));
        e.reset(0, Delta::default());
        assert_eq!(e.read(), None);
    }

    #[test]
    fn a_reader_never_sees_one_task_with_another_tasks_counts() {
        use std::sync::Arc;
        let t = Arc::new(Tallies::new());
        t.mark_used(1);
        let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let reader = {
            let (t, stop, seen) = (t.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    if let Some((id, d)) = t.entry(1, 0).read() {
                        // Task `id` always holds `id` polls ending at `id`.
                        assert_eq!((d.polls, d.last), (id, id), "a torn entry");
                        seen.fetch_add(1, Relaxed);
                    }
                }
            })
        };
        // Until the reader has read a while (it may start late).
        let started = std::time::Instant::now();
        let mut round = 1u64;
        while round < 200_000 || (seen.load(Relaxed) < 10_000 && started.elapsed().as_secs() < 10) {
            let id = round * ENTRIES as u64;
            t.entry(1, id).reset(id, Delta { polls: id, last: id, busy_ms: 0 });
            round += 1;
        }
        stop.store(true, Relaxed);
        reader.join().expect("a reader saw a torn entry");
        assert!(seen.load(Relaxed) > 0, "the reader never saw an entry");
    }
}
