//! Fixed-capacity storage of per-task slots, with per-thread free lists.
//!
//! The slab is allocated zeroed once (so untouched pages cost no memory) and
//! never moves. Spawns and terminations take and return slots through a
//! thread-local cache; only every `BATCH`-th operation touches shared state
//! (a lock-free stack of batches, or the bump pointer of fresh slots).

use std::alloc::{alloc_zeroed, Layout};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// Slots moved between a thread's cache and the shared stack at once.
pub(crate) const BATCH: u32 = 64;

/// The running bit of [`Slot::last`].
pub(crate) const RUNNING: u64 = 1 << 63;
/// Spawn-site index in the high bits of [`Slot::spawned`].
const SITE_SHIFT: u32 = 48;
const TIME_MASK: u64 = (1 << SITE_SHIFT) - 1;

/// The word of [`Slot::spawned`] (and of a completed task) for a task
/// spawned at `site` at `ms`.
#[inline(always)]
pub(crate) fn spawned_word(site: u32, ms: u64) -> u64 {
    ((site as u64) << SITE_SHIFT) | (ms & TIME_MASK)
}

/// The spawn site of a [`spawned_word`].
#[inline(always)]
pub(crate) fn site_of_word(spawned: u64) -> u32 {
    (spawned >> SITE_SHIFT) as u32
}

/// The spawn time, in coarse ms, of a [`spawned_word`].
#[inline(always)]
pub(crate) fn ms_of_word(spawned: u64) -> u64 {
    spawned & TIME_MASK
}

/// Which tallies may hold polls of a window slot's task
/// ([`super::tally`]): one bit per ownable shard, above the busy ms in
/// [`Slot::busy_ms`].
const HOLDERS_SHIFT: u32 = 48;
const _: () = assert!(HOLDERS_SHIFT as usize + super::sites::SHARED <= 64);

/// The bit of [`Slot::busy_ms`] that says `shard`'s tally may hold polls of
/// the task.
#[inline(always)]
pub(crate) fn holder_bit(shard: usize) -> u64 {
    1 << (HOLDERS_SHIFT as usize + shard)
}

/// The shards whose tallies may hold polls of the task, from its
/// [`Slot::busy_ms`] word: bit `i` for shard `i`.
#[inline(always)]
pub(crate) fn holders_of_word(busy: u64) -> u64 {
    busy >> HOLDERS_SHIFT
}

/// The busy ms of a [`Slot::busy_ms`] word.
#[inline(always)]
pub(crate) fn busy_of_word(busy: u64) -> u64 {
    busy & ((1 << HOLDERS_SHIFT) - 1)
}

/// One live task, 40 bytes. While the slot is free, `polls` links it to the
/// next free slot and `busy_ms` links a batch to the next batch.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// tokio's task id; 0 while the slot is free. Written last on spawn and
    /// first on termination, so readers can detect a slot that changed.
    pub(crate) id: AtomicU64,
    /// `site << 48 | spawned_ms`.
    pub(crate) spawned: AtomicU64,
    /// `RUNNING | ms of the last poll start or end`.
    pub(crate) last: AtomicU64,
    pub(crate) polls: AtomicU64,
    /// `holders << 48 | busy ms` (see [`holder_bit`]); holders only in
    /// window slots.
    pub(crate) busy_ms: AtomicU64,
}

/// A thread's private list of free slots.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// Slot index + 1 of the first free slot; 0 when empty.
    head: u32,
    len: u32,
}

/// What the slab needs of an entry: an id (0 = free) and three words it may
/// use as links while the entry is free.
pub(crate) trait Entry: Default {
    fn id(&self) -> &AtomicU64;
    /// The next free entry of a list.
    fn next(&self) -> &AtomicU64;
    /// The next batch of the shared stack.
    fn next_batch(&self) -> &AtomicU64;
    /// The length of a batch, kept in its head.
    fn batch_len(&self) -> &AtomicU64;
}

impl Entry for Slot {
    fn id(&self) -> &AtomicU64 {
        &self.id
    }
    fn next(&self) -> &AtomicU64 {
        &self.polls
    }
    fn next_batch(&self) -> &AtomicU64 {
        &self.busy_ms
    }
    fn batch_len(&self) -> &AtomicU64 {
        &self.spawned
    }
}

#[derive(Debug)]
pub(crate) struct Slab<T = Slot> {
    slots: Box<[T]>,
    /// Slots `fresh..` have never been handed out.
    fresh: AtomicU32,
    /// `tag << 32 | head index + 1` of the stack of free batches.
    batches: AtomicU64,
}

impl<T: Entry> Slab<T> {
    pub(crate) fn new(capacity: u32) -> Self {
        Slab { slots: zeroed_slots(capacity as usize), fresh: AtomicU32::new(0), batches: AtomicU64::new(0) }
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Every slot that has ever been handed out lies below this mark.
    pub(crate) fn high_water(&self) -> u32 {
        self.fresh.load(Acquire).min(self.capacity())
    }

    #[inline]
    pub(crate) fn slot(&self, index: u32) -> &T {
        &self.slots[index as usize]
    }

    /// Takes a free slot, or `None` when the slab is full.
    #[inline]
    pub(crate) fn alloc(&self, cache: &mut Cache) -> Option<u32> {
        if cache.head == 0 && !self.refill(cache) {
            return None;
        }
        let index = cache.head - 1;
        cache.head = self.slot(index).next().load(Relaxed) as u32;
        cache.len = cache.len.saturating_sub(1);
        Some(index)
    }

    /// Returns a slot to the thread's cache, spilling a batch to the shared
    /// stack when the cache holds too many.
    #[inline]
    pub(crate) fn free(&self, cache: &mut Cache, index: u32) {
        let slot = self.slot(index);
        slot.id().store(0, Release);
        slot.next().store(cache.head as u64, Relaxed);
        cache.head = index + 1;
        cache.len += 1;
        if cache.len >= 2 * BATCH {
            self.spill(cache);
        }
    }

    /// Gives the whole cache back, e.g. when its thread exits.
    pub(crate) fn flush(&self, cache: &mut Cache) {
        if cache.head != 0 {
            self.push_batch(cache.head - 1, cache.len);
        }
        *cache = Cache::default();
    }

    #[cold]
    fn refill(&self, cache: &mut Cache) -> bool {
        if let Some((head, len)) = self.pop_batch() {
            cache.head = head + 1;
            cache.len = len;
            return true;
        }
        let start = self.fresh.fetch_add(BATCH, AcqRel);
        let end = start.saturating_add(BATCH).min(self.capacity());
        if start >= end {
            return false;
        }
        for index in start..end {
            let next = if index + 1 < end { index + 2 } else { 0 };
            self.slot(index).next().store(next as u64, Relaxed);
        }
        cache.head = start + 1;
        cache.len = end - start;
        true
    }

    #[cold]
    fn spill(&self, cache: &mut Cache) {
        let head = cache.head - 1;
        let mut tail = head;
        for _ in 1..BATCH {
            tail = self.slot(tail).next().load(Relaxed) as u32 - 1;
        }
        let rest = self.slot(tail).next().load(Relaxed) as u32;
        self.slot(tail).next().store(0, Relaxed);
        cache.head = rest;
        cache.len -= BATCH;
        self.push_batch(head, BATCH);
    }

    fn push_batch(&self, head: u32, len: u32) {
        let slot = self.slot(head);
        slot.batch_len().store(len as u64, Relaxed);
        let mut current = self.batches.load(Acquire);
        loop {
            slot.next_batch().store(current & 0xffff_ffff, Relaxed);
            let tag = (current >> 32).wrapping_add(1);
            let new = (tag << 32) | (head as u64 + 1);
            match self.batches.compare_exchange_weak(current, new, AcqRel, Acquire) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    fn pop_batch(&self) -> Option<(u32, u32)> {
        let mut current = self.batches.load(Acquire);
        loop {
            let head = (current & 0xffff_ffff) as u32;
            if head == 0 {
                return None;
            }
            let slot = self.slot(head - 1);
            // If another thread pops this batch first, the tag changes and the
            // exchange below fails, so a stale `next` is never installed.
            let next = slot.next_batch().load(Relaxed) & 0xffff_ffff;
            let tag = (current >> 32).wrapping_add(1);
            match self.batches.compare_exchange_weak(current, (tag << 32) | next, AcqRel, Acquire) {
                Ok(_) => return Some((head - 1, slot.batch_len().load(Relaxed) as u32)),
                Err(seen) => current = seen,
            }
        }
    }

    /// Bytes reserved for the slots (virtual; pages are touched as used).
    pub(crate) fn reserved_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }
}

/// Allocates `n` zeroed slots without touching their pages.
pub(crate) fn zeroed_slots<T: Default>(n: usize) -> Box<[T]> {
    if n == 0 || std::mem::size_of::<T>() == 0 {
        return (0..n).map(|_| T::default()).collect();
    }
    let layout = Layout::array::<T>(n).expect("capacity overflows the address space");
    // SAFETY: the layout has a non-zero size (checked above). Only types whose
    // all-zero bit pattern is their `Default` (atomics and plain integers) are
    // used with this function, so the zeroed memory is a valid `[T]`.
    unsafe {
        let ptr = alloc_zeroed(layout) as *mut T;
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn slots_are_unique_until_freed_and_reused_after() {
        let slab: Slab = Slab::new(1000);
        let mut cache = Cache::default();
        let taken: Vec<u32> = (0..1000).map(|_| slab.alloc(&mut cache).unwrap()).collect();
        assert_eq!(taken.iter().collect::<HashSet<_>>().len(), 1000);
        assert!(slab.alloc(&mut cache).is_none(), "a full slab must refuse");
        for &i in &taken[..500] {
            slab.free(&mut cache, i);
        }
        let again: HashSet<u32> = (0..500).map(|_| slab.alloc(&mut cache).unwrap()).collect();
        assert_eq!(again, taken[..500].iter().copied().collect());
        assert!(slab.alloc(&mut cache).is_none());
    }

    #[test]
    fn slots_freed_on_one_thread_serve_spawns_on_another() {
        // Spawning on one thread and terminating on another must not grow the
        // slab forever: spilled batches come back through the shared stack.
        let slab: std::sync::Arc<Slab> = std::sync::Arc::new(Slab::new(4 * BATCH));
        for _ in 0..100 {
            let mut spawner = Cache::default();
            let taken: Vec<u32> = (0..3 * BATCH).map(|_| slab.alloc(&mut spawner).unwrap()).collect();
            slab.flush(&mut spawner);
            let slab2 = slab.clone();
            std::thread::spawn(move || {
                let mut terminator = Cache::default();
                for i in taken {
                    slab2.free(&mut terminator, i);
                }
                slab2.flush(&mut terminator);
            })
            .join()
            .unwrap();
        }
        assert!(slab.high_water() <= 4 * BATCH);
    }

    #[test]
    fn concurrent_alloc_and_free_never_hand_out_a_slot_twice() {
        let slab: std::sync::Arc<Slab> = std::sync::Arc::new(Slab::new(100_000));
        let owners: std::sync::Arc<Vec<AtomicU32>> =
            std::sync::Arc::new((0..100_000).map(|_| AtomicU32::new(0)).collect());
        let threads: Vec<_> = (1..=4u32)
            .map(|t| {
                let (slab, owners) = (slab.clone(), owners.clone());
                std::thread::spawn(move || {
                    let mut cache = Cache::default();
                    let mut held = Vec::new();
                    for round in 0..20_000u32 {
                        if round % 3 != 2 {
                            let i = slab.alloc(&mut cache).expect("capacity is ample");
                            let prev = owners[i as usize].swap(t, Relaxed);
                            assert_eq!(prev, 0, "slot {i} handed out twice");
                            held.push(i);
                        } else if let Some(i) = held.pop() {
                            owners[i as usize].store(0, Relaxed);
                            slab.free(&mut cache, i);
                        }
                    }
                    for i in held {
                        owners[i as usize].store(0, Relaxed);
                        slab.free(&mut cache, i);
                    }
                    slab.flush(&mut cache);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
