//! What each thread is polling, readable by the agent.
//!
//! A poll's start is only written into the polling thread's own
//! thread-local (task id and start time); its end is counted in the
//! thread's tally ([`super::tally`]). Readers learn which tasks are running, and
//! since when, from the thread-locals, which each thread publishes in the
//! table below when it first polls. Of the lean hooks' cost on the
//! poll-heavy benchmark, about half went to the poll start's writes into the
//! slot; see BENCHMARKS.md.
//!
//! A thread owns a table entry through its shard (see
//! [`super::sites::SHARDS`]). Threads without one, and polls nested inside
//! another poll on the same thread, mark the slot itself as running instead.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};

use super::sites::SHARED;

/// [`Current::id`] of a thread that does not publish its polls (yet).
pub(crate) const OFF: u64 = u64::MAX;

/// A thread's current poll, in its thread-local.
#[derive(Debug)]
pub(crate) struct Current {
    /// The task being polled; 0 when none, [`OFF`] while the thread does
    /// not publish.
    pub(crate) id: AtomicU64,
    /// The poll's start, in coarse ms.
    pub(crate) start: AtomicU64,
}

impl Current {
    #[cfg(test)]
    pub(crate) const fn new() -> Self {
        Current { id: AtomicU64::new(0), start: AtomicU64::new(0) }
    }

    /// Not published: the poll hooks see [`OFF`] and take their slow path.
    pub(crate) const fn off() -> Self {
        Current { id: AtomicU64::new(OFF), start: AtomicU64::new(0) }
    }
}

/// One shard's published thread-local.
#[derive(Debug)]
struct Entry {
    current: AtomicPtr<Current>,
    /// Readers between loading `current` and their last read through it.
    readers: AtomicUsize,
}

static TABLE: [Entry; SHARED] =
    [const { Entry { current: AtomicPtr::new(std::ptr::null_mut()), readers: AtomicUsize::new(0) } }; SHARED];

/// The thread owning `shard` publishes its current poll. `current` must
/// stay valid until [`unpublish`] returns.
pub(crate) fn publish(shard: usize, current: &Current) {
    if let Some(entry) = TABLE.get(shard) {
        entry.current.store(current as *const Current as *mut Current, SeqCst);
    }
}

/// The thread owning `shard` takes its current poll back (it exits): no
/// reader reads it once this returns.
pub(crate) fn unpublish(shard: usize) {
    let Some(entry) = TABLE.get(shard) else { return };
    entry.current.store(std::ptr::null_mut(), SeqCst);
    // A reader that saw the pointer counted itself first (SeqCst on both
    // sides): wait it out.
    let mut spins = 0u32;
    while entry.readers.load(SeqCst) != 0 {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// The tasks being polled now by threads that publish their polls, with
/// each poll's start, sorted by id.
pub(crate) fn running() -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = TABLE
        .iter()
        .filter_map(|entry| {
            entry.readers.fetch_add(1, SeqCst);
            let current = entry.current.load(SeqCst);
            // SAFETY: the owning thread does not return from `unpublish`
            // (and its thread-local lives on) until `readers` drops to zero.
            let seen = unsafe { current.as_ref() }.and_then(|c| {
                let id = c.id.load(Acquire);
                let start = c.start.load(Relaxed);
                std::sync::atomic::fence(Acquire);
                (id != 0 && id != OFF && c.id.load(Relaxed) == id).then_some((id, start))
            });
            entry.readers.fetch_sub(1, SeqCst);
            seen
        })
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_published_polls_until_they_are_taken_back() {
        // Shards far from the ones the test threads' hooks may take.
        static A: Current = Current::new();
        static B: Current = Current::new();
        let (a, b) = (SHARED - 1, SHARED - 2);
        A.start.store(100, Relaxed);
        A.id.store(42, Release);
        B.start.store(90, Relaxed);
        B.id.store(7, Release);
        publish(a, &A);
        publish(b, &B);
        let running = running();
        assert!(running.contains(&(42, 100)) && running.contains(&(7, 90)), "{running:?}");
        B.id.store(0, Release);
        assert!(!running_ids().contains(&7));
        unpublish(a);
        unpublish(b);
        assert!(!running_ids().contains(&42));
        // Out of range: ignored.
        publish(SHARED, &A);
        unpublish(SHARED);
    }

    fn running_ids() -> Vec<u64> {
        running().into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn no_reader_reads_a_thread_local_once_it_is_taken_back() {
        // The thread-local's memory is reused once its thread exits: the
        // poison stands for that, and a reader must never see it.
        const POISON: u64 = u64::MAX;
        static C: Current = Current::new();
        let shard = SHARED - 3;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Relaxed) {
                    let running = running();
                    assert!(running.iter().all(|&(id, _)| id != POISON), "read after unpublish");
                    seen += running.iter().filter(|&&(id, _)| id == 5).count() as u64;
                }
                seen
            })
        };
        for _ in 0..20_000 {
            C.id.store(5, Release);
            publish(shard, &C);
            for _ in 0..200 {
                std::hint::spin_loop();
            }
            unpublish(shard);
            C.id.store(POISON, Release);
        }
        stop.store(true, Relaxed);
        let seen = reader.join().expect("a reader saw a thread-local after it was taken back");
        assert!(seen > 0, "the reader never saw the published poll");
    }
}
