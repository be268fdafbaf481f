//! The registry: task slots, spawn sites, completed ring.
//!
//! A task's slot is found from its tokio id on every poll, so the common case
//! must cost one load. tokio numbers tasks from one process-wide counter, so
//! most live tasks have ids close together: slot `id % WINDOW` of a
//! direct-mapped window is tried first, and only a task whose window slot is
//! taken by an older one (ids `WINDOW` apart, both alive) goes to the
//! overflow: a slab with per-thread free lists and an id → slot index.
//!
//! A poll's end on a thread with a shard of its own writes the thread's
//! tally ([`super::tally`]), not the task's slot.

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::*};

use super::completed::{Completed, Ring};
use super::index::Index;
use super::sites::{bump, SiteCounts, Sites};
use super::slab::{
    busy_of_word, holder_bit, holders_of_word, ms_of_word, site_of_word, spawned_word, zeroed_slots, Cache,
    Slab, Slot, RUNNING,
};
use super::tally::{Delta, Entry, Tallied, Tallies};

/// The largest direct-mapped window: 65,536 slots, 4 MiB of address space
/// whose pages are touched as tasks use them.
const MAX_WINDOW: u32 = 1 << 16;
/// A slot reference names a window slot when this bit is set, else a slab
/// slot.
pub(crate) const WINDOW_BIT: u32 = 1 << 31;
/// The id of a window slot being filled by a spawn; readers skip it.
const CLAIMED: u64 = u64::MAX;

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

/// A window slot: a [`Slot`] alone in its cache line, so that a task's
/// slot never straddles two lines. (Overflow slots stay packed: there may be
/// a million of them.)
#[derive(Debug, Default)]
#[repr(align(64))]
struct WindowSlot(Slot);

#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) capacity: Capacity,
    /// Direct-mapped slots: task `id` may live at `id & window_mask`.
    window: Box<[WindowSlot]>,
    window_mask: u64,
    /// The overflow: slots for tasks whose window slot is taken.
    slab: Slab,
    index: Index,
    pub(crate) sites: Sites,
    completed: Ring,
    /// The polls that threads with a shard of their own ended, per thread.
    tallies: Tallies,
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
        let window = capacity.tasks.clamp(1, MAX_WINDOW).next_power_of_two().min(MAX_WINDOW);
        Registry {
            capacity,
            window: zeroed_slots(window as usize),
            window_mask: window as u64 - 1,
            slab: Slab::new(capacity.tasks),
            index: Index::new(capacity.tasks),
            sites: Sites::new(capacity.sites),
            completed: Ring::new(capacity.completed),
            tallies: Tallies::new(),
            dropped_tasks: AtomicU64::new(0),
        }
    }

    /// A task was spawned. Returns its slot reference, or `None` if it is
    /// not tracked.
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
        let spawned = spawned_word(site, now);
        let w = (id & self.window_mask) as u32;
        let slot = self.window_of(id);
        // A free window slot is claimed (another thread may spawn a task with
        // a colliding id at the same time), filled, then published.
        let reference =
            if slot.id.load(Relaxed) == 0 && slot.id.compare_exchange(0, CLAIMED, Acquire, Relaxed).is_ok() {
                Self::fill(slot, spawned, now);
                slot.id.store(id, Release);
                w | WINDOW_BIT
            } else {
                self.spawn_overflow(cache, id, spawned, now)?
            };
        bump(&self.sites.counter(shard, site).spawned, shard);
        Some(reference)
    }

    #[inline(always)]
    fn fill(slot: &Slot, spawned: u64, now: u64) {
        slot.spawned.store(spawned, Relaxed);
        slot.last.store(now, Relaxed);
        slot.polls.store(0, Relaxed);
        slot.busy_ms.store(0, Relaxed);
    }

    #[cold]
    fn spawn_overflow(&self, cache: &mut Cache, id: u64, spawned: u64, now: u64) -> Option<u32> {
        let Some(slot_index) = self.slab.alloc(cache) else {
            self.dropped_tasks.fetch_add(1, Relaxed);
            return None;
        };
        let slot = self.slab.slot(slot_index);
        Self::fill(slot, spawned, now);
        slot.id.store(id, Release);
        if !self.index.insert(id, slot_index) {
            self.slab.free(cache, slot_index);
            self.dropped_tasks.fetch_add(1, Relaxed);
            return None;
        }
        Some(slot_index)
    }

    /// The slot reference of a live task.
    #[inline]
    pub(crate) fn lookup(&self, id: u64) -> Option<u32> {
        let w = (id & self.window_mask) as u32;
        if self.window_of(id).id.load(Relaxed) == id {
            return Some(w | WINDOW_BIT);
        }
        self.lookup_overflow(id)
    }

    #[cold]
    fn lookup_overflow(&self, id: u64) -> Option<u32> {
        self.index.get(&self.slab, id)
    }

    /// The window slot of task `id`.
    #[inline(always)]
    fn window_of(&self, id: u64) -> &Slot {
        // Measured: without the bounds check (the index is masked), the
        // poll-heavy benchmark ran 4% slower, not faster.
        &self.window[(id & self.window_mask) as usize].0
    }

    /// The slot a reference names.
    #[inline(always)]
    fn slot(&self, reference: u32) -> &Slot {
        if reference & WINDOW_BIT != 0 {
            &self.window[(reference & !WINDOW_BIT) as usize].0
        } else {
            self.slab.slot(reference)
        }
    }

    /// A poll of the task in `slot` starts on a thread that does not
    /// publish its polls (see [`super::polls`]), or inside another poll: the
    /// poll is counted, and the slot marked as running.
    #[cold]
    pub(crate) fn poll_start_in_slot(&self, slot: u32, now: u64) {
        let slot = self.slot(slot);
        // A thread flushing its tally may add to a window slot meanwhile.
        slot.polls.fetch_add(1, Relaxed);
        slot.last.store(now | RUNNING, Relaxed);
    }

    /// The spawn site of the task in `slot`.
    pub(crate) fn site_of(&self, slot: u32) -> u32 {
        site_of_word(self.slot(slot).spawned.load(Relaxed))
    }

    /// The poll of task `id` that started at `started` ends, on a thread
    /// that owns `shard` (below [`super::sites::SHARED`]): the thread's tally
    /// counts it.
    ///
    /// A task that completes in this poll has already been terminated (tokio
    /// runs the terminate hook inside the poll): the caller skips this.
    #[inline(always)]
    pub(crate) fn poll_end_tallied(&self, shard: usize, id: u64, started: u64, now: u64) {
        let entry = self.tallies.entry(shard, id);
        if entry.id.load(Relaxed) == id {
            entry.count(started, now);
        } else {
            self.first_tallied_poll_end(shard, entry, id, started, now);
        }
    }

    /// The task's first poll end since its entry in `shard`'s tally was
    /// made: the entry's previous task goes to its slot, and the task's slot
    /// notes the tally. A task in the overflow is counted in its slot: its
    /// slot may be freed and reused as a free-list link while another
    /// thread flushes, which a window slot never is.
    #[cold]
    #[inline(never)]
    fn first_tallied_poll_end(&self, shard: usize, entry: &Entry, id: u64, started: u64, now: u64) {
        let window = self.window_of(id);
        if window.id.load(Relaxed) != id {
            if let Some(index) = self.lookup_overflow(id) {
                Self::count_in_slot(self.slab.slot(index), Some(started), now, true);
            }
            return;
        }
        if let Some((old, delta)) = entry.read() {
            self.flush_tallied(shard, old, delta);
        }
        // Before the entry names the task: the task's end looks for it there.
        window.busy_ms.fetch_or(holder_bit(shard), Relaxed);
        self.tallies.mark_used(shard);
        entry.reset(id, Delta::one(started, now));
    }

    /// Adds what `shard`'s tally held for task `id` to its window slot, if
    /// the task still lives (its end collected the tally otherwise).
    fn flush_tallied(&self, shard: usize, id: u64, delta: Delta) {
        let window = self.window_of(id);
        if window.id.load(Relaxed) != id {
            return;
        }
        window.polls.fetch_add(delta.polls, Relaxed);
        window.last.fetch_max(delta.last, Relaxed);
        window.busy_ms.fetch_add(delta.busy_ms, Relaxed);
        // Release: a task's end that no longer sees the bit sees the adds.
        window.busy_ms.fetch_and(!holder_bit(shard), Release);
    }

    /// A thread gives `shard` back (it exits): its tally goes to the slots,
    /// and the next owner starts with an empty one.
    pub(crate) fn flush_tally(&self, shard: usize) {
        for entry in self.tallies.of(shard) {
            if let Some((id, delta)) = entry.read() {
                self.flush_tallied(shard, id, delta);
                entry.reset(0, Delta::default());
            }
        }
    }

    /// What the tallies in `holders` (bit `i` for shard `i`) hold for task
    /// `id`, which ends on a thread that owns `shard` (its own entry is
    /// freed; the others are left to their owners, whose flush will not
    /// find the task).
    #[cold]
    fn collect_tallied(&self, shard: usize, id: u64, holders: u64) -> Delta {
        let mut sum = Delta::default();
        let mut rest = holders;
        while rest != 0 {
            let holder = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let entry = self.tallies.entry(holder, id);
            if let Some((held, delta)) = entry.read() {
                if held == id {
                    sum.add(delta);
                    if holder == shard {
                        entry.reset(0, Delta::default());
                    }
                }
            }
        }
        sum
    }

    /// The poll of task `id` that started at `started` ends on a thread
    /// without a tally, or the task lives in the overflow; `count` says it
    /// was not counted at its start ([`Self::poll_start_in_slot`]).
    ///
    /// A task that completes in this poll has already been terminated (tokio
    /// runs the terminate hook inside the poll), so it is not found.
    #[inline]
    pub(crate) fn poll_end(&self, id: u64, started: Option<u64>, now: u64, count: bool) {
        let window = self.window_of(id);
        let slot = if window.id.load(Relaxed) == id {
            window
        } else {
            match self.lookup_overflow(id) {
                Some(index) => self.slab.slot(index),
                None => return,
            }
        };
        Self::count_in_slot(slot, started, now, count);
    }

    /// Counts a poll's end in a live task's slot (see [`Self::poll_end`]).
    #[inline]
    fn count_in_slot(slot: &Slot, started: Option<u64>, now: u64, count: bool) {
        // A thread flushing its tally may add to a window slot meanwhile.
        if count {
            slot.polls.fetch_add(1, Relaxed);
        }
        if slot.last.load(Relaxed) != now {
            slot.last.store(now, Relaxed);
        }
        if let Some(started) = started {
            if now > started {
                slot.busy_ms.fetch_add(now - started, Relaxed);
            }
        }
    }

    /// A task terminated: it leaves the registry for the completed ring.
    /// `polling` says the calling thread is in a poll of the task that its
    /// end will count (tokio terminates a task inside its last poll).
    #[inline]
    pub(crate) fn terminate(&self, cache: &mut Cache, shard: usize, id: u64, now: u64, polling: bool) {
        let window = self.window_of(id);
        let (slot, overflow) = if window.id.load(Relaxed) == id {
            (window, None)
        } else {
            let Some(slot_index) = self.index.remove(&self.slab, id) else {
                return;
            };
            (self.slab.slot(slot_index), Some(slot_index))
        };
        // The tallies first, then the slot: an entry flushed meanwhile is
        // then in the slot (and may be counted twice, see `super::tally`).
        let holders = holders_of_word(slot.busy_ms.load(Acquire));
        let tallied = if holders != 0 { self.collect_tallied(shard, id, holders) } else { Delta::default() };
        let spawned = slot.spawned.load(Relaxed);
        let site = site_of_word(spawned);
        self.completed.push(
            shard,
            Completed {
                id,
                spawned,
                ended_ms: now,
                polls: slot.polls.load(Relaxed) + tallied.polls + polling as u64,
                busy_ms: busy_of_word(slot.busy_ms.load(Relaxed)) + tallied.busy_ms,
            },
        );
        match overflow {
            Some(slot_index) => self.slab.free(cache, slot_index),
            None => slot.id.store(0, Release),
        }
        bump(&self.sites.counter(shard, site).completed, shard);
    }

    /// Returns a thread's free slots when it exits.
    pub(crate) fn flush(&self, cache: &mut Cache) {
        self.slab.flush(cache);
    }

    /// Copies every live task. Runs concurrently with the hooks and never
    /// blocks them: a slot that changes owner while being read is skipped.
    pub(crate) fn tasks(&self) -> Vec<TaskRecord> {
        let mut out = Vec::with_capacity(self.tasks_bound());
        self.for_each_task(|t| out.push(t));
        out
    }

    /// At most how many tasks [`Self::for_each_task`] calls back with.
    pub(crate) fn tasks_bound(&self) -> usize {
        self.window.len() + self.slab.high_water() as usize
    }

    /// Calls `f` with each live task (each at most once; tasks spawned or
    /// completed meanwhile may or may not be seen).
    pub(crate) fn for_each_task(&self, mut f: impl FnMut(TaskRecord)) {
        let running = super::polls::running();
        // The tallies before the slots, as at a task's end.
        let tallied: Tallied = self.tallies.read_all();
        let high = self.slab.high_water();
        // Only window tasks have polls in the tallies.
        let window = self.window.iter().map(|w| (&w.0, !tallied.is_empty()));
        let overflow = (0..high).map(|index| (self.slab.slot(index), false));
        for (slot, tallies) in window.chain(overflow) {
            let id = slot.id.load(Acquire);
            if id == 0 || id == CLAIMED {
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
            let current = match running.binary_search_by_key(&id, |&(id, _)| id) {
                Ok(i) => Some(running[i].1),
                Err(_) => None,
            };
            let held =
                if !tallies { Delta::default() } else { tallied.get(&id).copied().unwrap_or_default() };
            let in_slot = last & RUNNING != 0;
            f(TaskRecord {
                id,
                site: site_of_word(spawned),
                spawned_ms: ms_of_word(spawned),
                running: current.is_some() || in_slot,
                last_ms: match current {
                    Some(start) => start,
                    None if in_slot => last & !RUNNING,
                    None => last.max(held.last),
                },
                // The poll running now is counted when it ends.
                polls: polls + held.polls + current.is_some() as u64,
                busy_ms: busy_of_word(busy_ms) + held.busy_ms,
            });
        }
    }

    pub(crate) fn completed(&self) -> Vec<Completed> {
        self.completed.read()
    }

    pub(crate) fn sites(&self) -> Vec<SiteCounts> {
        self.sites.read()
    }

    /// Bytes of address space reserved by the registry's tables.
    pub(crate) fn reserved_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.window)
            + self.slab.reserved_bytes()
            + self.index.reserved_bytes()
            + self.sites.reserved_bytes()
            + self.completed.reserved_bytes()
            + self.tallies.reserved_bytes()
    }

    /// Bytes the registry reserves per tracked live task: a slot and two
    /// index entries (the index is kept at most half full), plus the window
    /// spread over the capacity. Only touched pages cost memory.
    pub(crate) fn bytes_per_task(&self) -> usize {
        (std::mem::size_of_val(&*self.window) + self.slab.reserved_bytes() + self.index.reserved_bytes())
            / self.capacity.tasks.max(1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new(Capacity { tasks: 64, sites: 8, completed: 32 })
    }

    #[test]
    fn a_task_lives_from_spawn_to_terminate() {
        let r = registry();
        let mut cache = Cache::default();
        let here = Location::caller();
        let slot = r.spawn(&mut cache, 0, 42, here, 100).unwrap();
        assert_eq!(r.lookup(42), Some(slot));
        r.poll_start_in_slot(slot, 150);
        let t = r.tasks()[0];
        assert_eq!((t.id, t.running, t.last_ms, t.polls), (42, true, 150, 1));
        r.poll_end(42, Some(150), 157, false);
        let t = r.tasks()[0];
        assert_eq!((t.running, t.last_ms, t.busy_ms, t.spawned_ms), (false, 157, 7, 100));
        let site = &r.sites()[t.site as usize];
        assert_eq!(site.location, Some(here));
        assert_eq!((site.spawned, site.completed), (1, 0));

        r.terminate(&mut cache, 3, 42, 200, false);
        assert!(r.tasks().is_empty());
        assert_eq!(r.lookup(42), None);
        let done = r.completed();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].id, done[0].ended_ms, done[0].polls, done[0].busy_ms), (42, 200, 1, 7));
        assert_eq!(r.sites()[t.site as usize].completed, 1);
    }

    #[test]
    fn a_published_poll_is_running_and_counted_at_its_end() {
        use super::super::polls::{self, Current};
        use super::super::sites::SHARED;
        // What the poll hooks do on a thread with a shard of its own: the
        // start goes to the thread's `Current` only.
        static CURRENT: Current = Current::new();
        let shard = SHARED - 4;
        polls::publish(shard, &CURRENT);
        let r = registry();
        let mut cache = Cache::default();
        let here = Location::caller();
        r.spawn(&mut cache, 0, 42, here, 100).unwrap();
        CURRENT.start.store(150, Relaxed);
        CURRENT.id.store(42, Release);
        let t = r.tasks()[0];
        assert_eq!((t.running, t.last_ms, t.polls), (true, 150, 1), "the running poll counts");
        r.poll_end_tallied(shard, 42, 150, 152);
        CURRENT.id.store(0, Release);
        let t = r.tasks()[0];
        assert_eq!((t.running, t.last_ms, t.polls, t.busy_ms), (false, 152, 1, 2));
        // The last poll: tokio terminates the task inside it, before its end
        // (which the hooks then skip).
        CURRENT.start.store(160, Relaxed);
        CURRENT.id.store(42, Release);
        r.terminate(&mut cache, shard, 42, 161, true);
        CURRENT.id.store(0, Release);
        polls::unpublish(shard);
        assert!(r.tasks().is_empty());
        let done = r.completed();
        assert_eq!((done[0].id, done[0].polls, done[0].busy_ms, done[0].ended_ms), (42, 2, 2, 161));
        assert!(r.tallies.read_all().is_empty(), "the ending thread's entry was not freed");
    }

    #[test]
    fn a_task_polled_on_several_threads_ends_with_every_tally_counted() {
        let r = registry();
        let mut cache = Cache::default();
        let here = Location::caller();
        // Ids that no other test publishes as running (see `super::polls`).
        const T: u64 = 700_007;
        r.spawn(&mut cache, 0, T, here, 100).unwrap();
        // Shards 1 and 2 each end polls of task T (tokio moved it).
        r.poll_end_tallied(1, T, 100, 101);
        r.poll_end_tallied(2, T, 101, 104);
        r.poll_end_tallied(1, T, 104, 104);
        let t = r.tasks()[0];
        assert_eq!((t.polls, t.last_ms, t.busy_ms, t.running), (3, 104, 4, false));
        // It ends on a thread of shard 2; shard 1's entry is left to its
        // owner, whose flush will not find the task.
        r.terminate(&mut cache, 2, T, 110, true);
        let done = r.completed();
        assert_eq!((done[0].id, done[0].polls, done[0].busy_ms), (T, 4, 4));
        assert_eq!(
            r.tallies.read_all().keys().copied().collect::<Vec<_>>(),
            [T],
            "shard 2's entry not freed"
        );
        r.flush_tally(1);
        assert!(r.tallies.read_all().is_empty());
        assert!(r.tasks().is_empty());
    }

    #[test]
    fn a_tally_entry_taken_by_another_task_goes_to_its_slot() {
        use super::super::tally::ENTRIES;
        let r = Registry::new(Capacity { tasks: 2 * ENTRIES as u32, sites: 8, completed: 32 });
        let mut cache = Cache::default();
        let here = Location::caller();
        // Ids that no other test publishes as running (see `super::polls`).
        let (a, b) = (900_005, 900_005 + ENTRIES as u64);
        r.spawn(&mut cache, 0, a, here, 0).unwrap();
        r.spawn(&mut cache, 0, b, here, 0).unwrap();
        r.poll_end_tallied(3, a, 10, 12);
        r.poll_end_tallied(3, a, 12, 13);
        // b takes a's entry: a's two polls go to a's slot.
        r.poll_end_tallied(3, b, 20, 20);
        let slot = r.window_of(a);
        assert_eq!(slot.polls.load(Relaxed), 2);
        assert_eq!((slot.last.load(Relaxed), busy_of_word(slot.busy_ms.load(Relaxed))), (13, 3));
        assert_eq!(holders_of_word(slot.busy_ms.load(Relaxed)), 0, "shard 3 no longer holds a's polls");
        let mut seen: Vec<_> = r.tasks().iter().map(|t| (t.id, t.polls, t.last_ms, t.busy_ms)).collect();
        seen.sort();
        assert_eq!(seen, [(a, 2, 13, 3), (b, 1, 20, 0)]);
        // The thread exits: b's entry goes to its slot too.
        r.flush_tally(3);
        assert!(r.tallies.read_all().is_empty());
        assert_eq!(r.window_of(b).polls.load(Relaxed), 1);
        r.terminate(&mut cache, 0, a, 30, false);
        r.terminate(&mut cache, 0, b, 30, false);
        let mut done: Vec<_> = r.completed().iter().map(|c| (c.id, c.polls, c.busy_ms)).collect();
        done.sort();
        assert_eq!(done, [(a, 2, 3), (b, 1, 0)]);
    }

    #[test]
    fn overflow_tasks_are_counted_in_their_slot_not_in_a_tally() {
        let r = registry();
        let mut cache = Cache::default();
        let here = Location::caller();
        // 3 takes window slot 3; 67 goes to the overflow.
        r.spawn(&mut cache, 0, 3, here, 0).unwrap();
        r.spawn(&mut cache, 0, 67, here, 0).unwrap();
        r.poll_end_tallied(4, 67, 1, 2);
        r.poll_end_tallied(4, 67, 2, 2);
        assert!(r.tallies.read_all().is_empty());
        let t = r.tasks().into_iter().find(|t| t.id == 67).unwrap();
        assert_eq!((t.polls, t.last_ms, t.busy_ms), (2, 2, 1));
        r.terminate(&mut cache, 4, 67, 5, false);
        assert_eq!((r.completed()[0].id, r.completed()[0].polls), (67, 2));
    }

    #[test]
    fn threads_tallying_polls_of_the_same_tasks_at_once_lose_none() {
        // Four threads end polls of the same eight tasks at once, tasks
        // `k` and `k + ENTRIES` sharing an entry: every poll end evicts the
        // other task's entry, so the threads keep flushing into the same
        // slots concurrently.
        use super::super::sites::SHARDS;
        use super::super::tally::ENTRIES;
        use std::sync::Arc;
        // Room for eight completed tasks in shard 0's share of the ring, and
        // a window wide enough for ids ENTRIES apart.
        let capacity = Capacity { tasks: 2 * ENTRIES as u32, sites: 8, completed: 8 * SHARDS };
        let r = Arc::new(Registry::new(capacity));
        let here = Location::caller();
        let mut cache = Cache::default();
        // Ids that no other test publishes as running (see `super::polls`).
        const FIRST: u64 = 800_001;
        let ids: Vec<u64> = (0..4).flat_map(|k| [FIRST + k, FIRST + k + ENTRIES as u64]).collect();
        for &id in &ids {
            r.spawn(&mut cache, 0, id, here, 0).unwrap();
        }
        const ROUNDS: u64 = 20_000;
        let threads: Vec<_> = (0..4usize)
            .map(|shard| {
                let (r, ids) = (r.clone(), ids.clone());
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        for &id in &ids {
                            r.poll_end_tallied(shard, id, round, round + 1);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let polls = 4 * ROUNDS;
        for t in r.tasks() {
            assert_eq!((t.polls, t.busy_ms, t.last_ms), (polls, polls, ROUNDS), "task {}", t.id);
        }
        for &id in &ids {
            r.terminate(&mut cache, 0, id, 50_000, false);
        }
        let done = r.completed();
        assert_eq!(done.len(), 8);
        assert!(done.iter().all(|c| c.polls == polls && c.busy_ms == polls), "{done:?}");
    }

    #[test]
    fn the_end_of_a_poll_that_completed_the_task_leaves_its_slot_alone() {
        let r = registry();
        let mut cache = Cache::default();
        let here = Location::caller();
        let slot = r.spawn(&mut cache, 0, 1, here, 0).unwrap();
        r.poll_start_in_slot(slot, 5);
        // tokio terminates a task inside its last poll, before the end hook.
        r.terminate(&mut cache, 0, 1, 6, false);
        // Task 65 maps to the same window slot as task 1.
        let reused = r.spawn(&mut cache, 0, 65, here, 7).unwrap();
        assert_eq!(reused, slot, "the freed slot is reused at once");
        r.poll_end(1, Some(5), 900, false);
        let t = r.tasks()[0];
        assert_eq!((t.id, t.last_ms, t.busy_ms), (65, 7, 0), "task 1's poll end wrote into task 65");
    }

    #[test]
    fn spawns_beyond_capacity_are_counted_not_lost_silently() {
        let r = registry();
        let mut cache = Cache::default();
        let here = Location::caller();
        // 64 in the window (ids 1..=64), 64 in the overflow (65..=128).
        let tracked = (1..=200).filter_map(|id| r.spawn(&mut cache, 0, id, here, 0)).count();
        assert_eq!(tracked, 128);
        assert_eq!(r.dropped_tasks.load(Relaxed), 72);
        // Terminating an untracked task is harmless.
        r.terminate(&mut cache, 0, 199, 1, false);
        assert_eq!(r.tasks().len(), 128);
    }

    #[test]
    fn tasks_whose_window_slot_is_taken_live_in_the_overflow() {
        let r = registry();
        let mut cache = Cache::default();
        let here = Location::caller();
        // 3, 67 and 131 share window slot 3; the first one spawned gets it.
        let a = r.spawn(&mut cache, 0, 3, here, 0).unwrap();
        let b = r.spawn(&mut cache, 0, 67, here, 0).unwrap();
        let c = r.spawn(&mut cache, 0, 131, here, 0).unwrap();
        assert_ne!(a & WINDOW_BIT, 0);
        assert_eq!(b & WINDOW_BIT, 0);
        assert_eq!(c & WINDOW_BIT, 0);
        assert_eq!((r.lookup(3), r.lookup(67), r.lookup(131)), (Some(a), Some(b), Some(c)));
        r.poll_start_in_slot(b, 10);
        r.poll_end(67, Some(10), 12, false);
        // The window's task ends; an overflow task keeps its slot.
        r.terminate(&mut cache, 0, 3, 20, false);
        assert_eq!(r.lookup(3), None);
        assert_eq!(r.lookup(67), Some(b));
        let mut ids: Vec<_> = r.tasks().iter().map(|t| (t.id, t.polls, t.busy_ms)).collect();
        ids.sort();
        assert_eq!(ids, [(67, 1, 2), (131, 0, 0)]);
        // The next colliding task takes the freed window slot.
        assert_eq!(r.spawn(&mut cache, 0, 195, here, 30), Some(a));
        r.terminate(&mut cache, 0, 67, 40, false);
        r.terminate(&mut cache, 0, 131, 40, false);
        r.terminate(&mut cache, 0, 195, 40, false);
        assert!(r.tasks().is_empty());
        // Each shard's ring holds its share of the capacity; here 2.
        let mut done: Vec<_> = r.completed().iter().map(|c| c.id).collect();
        done.sort();
        assert_eq!(done, [131, 195]);
    }

    #[test]
    fn concurrent_spawns_of_colliding_ids_are_each_tracked_once() {
        // Room for every thread's cache of overflow slots (64 each).
        let r = std::sync::Arc::new(Registry::new(Capacity { tasks: 1024, sites: 8, completed: 32 }));
        let here = Location::caller();
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut cache = Cache::default();
                    for round in 0..2000u64 {
                        // Four threads, ids 1024 apart: the same window slot.
                        let id = 1 + t * 1024 + round * 4096;
                        let slot = r.spawn(&mut cache, t as usize, id, here, 0).expect("room for four");
                        assert_eq!(r.lookup(id), Some(slot));
                        r.poll_start_in_slot(slot, 1);
                        r.poll_end(id, Some(1), 2, false);
                        r.terminate(&mut cache, t as usize, id, 3, false);
                        assert_eq!(r.lookup(id), None);
                    }
                    r.flush(&mut cache);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(r.tasks().is_empty());
        assert_eq!(r.dropped_tasks.load(Relaxed), 0);
    }

    #[test]
    fn the_registry_costs_at_most_64_bytes_per_task() {
        let r = Registry::new(Capacity::default());
        assert!(r.bytes_per_task() <= 64, "{} bytes", r.bytes_per_task());
    }
}
