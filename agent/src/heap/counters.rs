//! Exact totals, kept per thread and merged on read, and each thread's
//! sampling countdown.
//!
//! Each thread owns one slot (a cache line) of a static array. Only its owner
//! writes it, with relaxed loads and stores that compile to plain moves: no
//! read-modify-write, no line that another thread writes. Readers sum the
//! slots. A slot holds running totals, so when a thread exits its slot is
//! handed to the next new thread, which keeps adding to them; the sum stays
//! exact. The thread-local holds a pointer to the thread's slot; it is null
//! for a thread without one (not registered yet, exited, or one too many),
//! which takes the slow path on every allocation and free and counts into
//! shared atomics there.
//!
//! Bytes allocated are not counted separately: the countdown already
//! subtracts every size, so `base + interval - countdown` is the thread's
//! total. The slow path moves the consumed interval into `base` under a
//! sequence lock, which readers use to get a consistent triple.

use std::cell::Cell;
use std::sync::atomic::{
    fence, AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*,
};

use serde::Serialize;

use super::sampler::{self, Rng};

/// Threads with a slot of their own at once; more share the slow path.
pub(crate) const SLOTS: usize = 4096;

/// 128 bytes: Intel's adjacent-line prefetcher fetches lines in pairs, so
/// two threads' slots must not share a pair.
#[repr(C, align(128))]
struct Slot {
    /// Bytes until this thread's next sampling decision.
    countdown: AtomicI64,
    /// The length of the interval the countdown started from.
    interval: AtomicI64,
    /// Bytes allocated before the current interval.
    base: AtomicU64,
    allocs: AtomicU64,
    freed_bytes: AtomicU64,
    frees: AtomicU64,
    /// The size of the last allocation counted on the fast path, to take it
    /// back if the inner allocator fails: kept here rather than in a
    /// register across the call, so the fast path saves no registers.
    pending: AtomicU64,
    /// Odd while the slow path rewrites `countdown`, `interval` and `base`.
    seq: AtomicU32,
    owned: AtomicBool,
}

impl Slot {
    const fn new(countdown: i64) -> Self {
        Slot {
            countdown: AtomicI64::new(countdown),
            interval: AtomicI64::new(0),
            base: AtomicU64::new(0),
            allocs: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            seq: AtomicU32::new(0),
            owned: AtomicBool::new(false),
        }
    }

    /// Only the owner calls this: bump a counter without a locked instruction.
    #[inline(always)]
    fn bump(counter: &AtomicU64, by: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
    }

    /// Folds the consumed part of the interval into `base` and starts a new
    /// interval of `next` bytes. Owner only.
    fn restart(&self, next: i64) {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        let consumed = self.interval.load(Relaxed).wrapping_sub(self.countdown.load(Relaxed));
        Slot::bump(&self.base, consumed as u64);
        self.interval.store(next, Relaxed);
        self.countdown.store(next, Relaxed);
        self.seq.store(seq.wrapping_add(2), Release);
    }

    fn allocated_bytes(&self) -> u64 {
        // A writer stuck mid-update (a fork child of a thread that was in
        // it) must not hang readers: after a few tries take what is there.
        let mut read = (0, 0, 0);
        for _ in 0..64 {
            let before = self.seq.load(Acquire);
            read = (self.base.load(Relaxed), self.interval.load(Relaxed), self.countdown.load(Relaxed));
            fence(Acquire);
            if before % 2 == 0 && self.seq.load(Relaxed) == before {
                break;
            }
            std::hint::spin_loop();
        }
        let (base, interval, countdown) = read;
        base.wrapping_add(interval.wrapping_sub(countdown) as u64)
    }
}

/// All zeros, so that it lives in `.bss` and works before `main`.
static SLOT_TABLE: [Slot; SLOTS] = [const { Slot::new(0) }; SLOTS];

/// One past the highest slot ever claimed.
static HIGH: AtomicUsize = AtomicUsize::new(0);

/// Counts of the threads without a slot, shared (slow path only).
static ORPHAN_ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static ORPHAN_ALLOCS: AtomicU64 = AtomicU64::new(0);
static ORPHAN_FREED_BYTES: AtomicU64 = AtomicU64::new(0);
static ORPHAN_FREES: AtomicU64 = AtomicU64::new(0);

/// What the allocator does on every call: [`PASSTHROUGH`] when the agent is
/// disabled (`TASKSCOPE_DISABLE=1`, read before `main`), and [`SAMPLED`]
/// once any block has been sampled. Alone in its cache line, and written at
/// most twice: every allocation and free reads it.
#[repr(C, align(128))]
struct Mode(AtomicU8);

static MODE: Mode = Mode(AtomicU8::new(0));
/// The agent is disabled: allocations and frees go straight to the inner
/// allocator, uncounted and unsampled.
pub(crate) const PASSTHROUGH: u8 = 1;
/// A block was sampled (it has a header that its free must find).
pub(crate) const SAMPLED: u8 = 2;

/// The allocator's [`MODE`] bits.
#[inline(always)]
pub(crate) fn mode() -> u8 {
    MODE.0.load(Relaxed)
}

/// Turns the allocator into a plain wrapper (the agent is disabled). Called
/// before `main`; blocks sampled before it are still freed as sampled.
pub(crate) fn set_passthrough() {
    MODE.0.fetch_or(PASSTHROUGH, Relaxed);
}

/// Notes that a block is being sampled, before it is handed out.
pub(crate) fn note_sampled() {
    if MODE.0.load(Relaxed) & SAMPLED == 0 {
        MODE.0.fetch_or(SAMPLED, Relaxed);
    }
}

/// Set once any thread has allocated through [`Allocator`](crate::Allocator).
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The mean sampling interval in bytes; 0 turns sampling off.
static RATE: AtomicU64 = AtomicU64::new(sampler::DEFAULT_SAMPLE_BYTES);
static NEXT_SEED: AtomicU64 = AtomicU64::new(0x5EED);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Has not allocated yet.
    Fresh,
    /// Owns a slot.
    Active,
    /// Every slot was taken when it registered.
    Homeless,
    /// Its thread-local destructors have run; it owns no slot anymore.
    Exited,
}

/// This thread's allocator state. `const`-initialized and without a
/// destructor, so that reading it never allocates or registers anything.
struct Local {
    /// This thread's slot in `SLOT_TABLE`; null while it owns none.
    slot: Cell<*const Slot>,
    phase: Cell<Phase>,
    /// Set while this thread is inside the allocator's slow path.
    busy: Cell<bool>,
    rng: Cell<u64>,
    /// The countdown of a thread without a slot.
    spare: Cell<i64>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            slot: Cell::new(std::ptr::null()),
            phase: Cell::new(Phase::Fresh),
            busy: Cell::new(false),
            rng: Cell::new(0),
            spare: Cell::new(0),
        }
    };
}

/// Runs when a thread's thread-locals are destroyed, to hand its slot on.
/// Registered from the slow path, under the reentrancy guard, because
/// registering a destructor may allocate.
struct Exit;

impl Drop for Exit {
    fn drop(&mut self) {
        retire();
    }
}

thread_local! {
    static EXIT: Exit = const { Exit };
}

/// This thread's slot, if it owns one.
#[inline(always)]
fn own(l: &Local) -> Option<&'static Slot> {
    // SAFETY: `Local::slot` is null or points into the static `SLOT_TABLE`.
    unsafe { l.slot.get().as_ref() }
}

/// The mean sampling interval in bytes (0 = off).
pub(crate) fn rate() -> u64 {
    RATE.load(Relaxed)
}

/// Sets the mean sampling interval. Threads pick it up at their next draw.
pub(crate) fn set_rate(bytes: u64) {
    RATE.store(bytes, Relaxed);
}

/// Whether [`Allocator`](crate::Allocator) is the global allocator (it has
/// served at least one allocation).
pub(crate) fn installed() -> bool {
    INSTALLED.load(Relaxed)
}

/// The allocation hot path: subtract `size` from this thread's countdown.
/// Returns true when it ran out; the caller then calls [`alloc_event`].
#[inline(always)]
pub(crate) fn on_alloc(size: usize) -> bool {
    LOCAL.with(|l| {
        let Some(s) = own(l) else { return true };
        let left = s.countdown.load(Relaxed).wrapping_sub(size as i64);
        s.countdown.store(left, Relaxed);
        if left < 0 {
            return true;
        }
        Slot::bump(&s.allocs, 1);
        s.pending.store(size as u64, Relaxed);
        false
    })
}

/// Counts `size` bytes freed.
#[inline(always)]
pub(crate) fn on_free(size: usize) {
    if !on_free_fast(size) {
        free_slow(size);
    }
}

/// The free hot path: counts `size` bytes freed and returns true, or
/// returns false (counting nothing) when this thread owns no slot; the
/// caller then calls [`free_slow`]. Split so that the allocator's `dealloc`
/// can end in tail calls and keep no registers across calls.
#[inline(always)]
pub(crate) fn on_free_fast(size: usize) -> bool {
    LOCAL.with(|l| {
        let Some(s) = own(l) else { return false };
        Slot::bump(&s.freed_bytes, size as u64);
        Slot::bump(&s.frees, 1);
        true
    })
}

/// Counts a free on a thread without a slot, registering it first if it is
/// new.
#[cold]
#[inline(never)]
pub(crate) fn free_slow(size: usize) {
    LOCAL.with(|l| free_slow_in(l, size))
}

fn free_slow_in(l: &Local, size: usize) {
    if l.phase.get() == Phase::Fresh && !l.busy.get() {
        register(l);
    }
    match own(l) {
        None => {
            ORPHAN_FREES.fetch_add(1, Relaxed);
            ORPHAN_FREED_BYTES.fetch_add(size as u64, Relaxed);
        }
        Some(s) => {
            Slot::bump(&s.freed_bytes, size as u64);
            Slot::bump(&s.frees, 1);
        }
    }
}

/// An allocation that was counted did not happen (the inner allocator
/// returned null): take it back.
#[cold]
#[inline(never)]
pub(crate) fn undo_alloc(size: usize) {
    LOCAL.with(|l| match own(l) {
        None => {
            ORPHAN_ALLOCS.fetch_sub(1, Relaxed);
            ORPHAN_ALLOC_BYTES.fetch_sub(size as u64, Relaxed);
        }
        Some(s) => {
            s.countdown.store(s.countdown.load(Relaxed).wrapping_add(size as i64), Relaxed);
            s.allocs.store(s.allocs.load(Relaxed).wrapping_sub(1), Relaxed);
        }
    })
}

/// The allocation just counted by [`on_alloc`] (which returned false) did
/// not happen: take it back.
#[cold]
#[inline(never)]
pub(crate) fn undo_last_alloc() {
    let size = LOCAL.with(|l| own(l).map(|s| s.pending.load(Relaxed)));
    if let Some(size) = size {
        undo_alloc(size as usize);
    }
}

/// What the slow path decided about the allocation that ran the countdown
/// out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Allocate as usual.
    Skip,
    /// Sample this allocation.
    Sample,
    /// It should have been sampled, but this thread is already inside the
    /// allocator's slow path (the caller counts the drop).
    Reentrant,
}

/// The slow path of an allocation of `size` bytes whose countdown ran out:
/// registers the thread on its first allocation, moves the consumed interval
/// into the totals, draws the next interval, and decides whether to sample.
#[cold]
#[inline(never)]
pub(crate) fn alloc_event(size: usize) -> Decision {
    LOCAL.with(|l| {
        if l.phase.get() == Phase::Fresh && !l.busy.get() {
            register(l);
            // Now that the thread has a slot, count this allocation there.
            if own(l).is_some() && !on_alloc(size) {
                return Decision::Skip;
            }
        }
        let rate = rate();
        let Some(s) = own(l) else {
            ORPHAN_ALLOCS.fetch_add(1, Relaxed);
            ORPHAN_ALLOC_BYTES.fetch_add(size as u64, Relaxed);
            let left = l.spare.get().wrapping_sub(size as i64);
            if left >= 0 {
                l.spare.set(left);
                return Decision::Skip;
            }
            l.spare.set(draw(l, rate));
            return decide(l, rate);
        };
        Slot::bump(&s.allocs, 1);
        s.restart(draw(l, rate));
        decide(l, rate)
    })
}

fn decide(l: &Local, rate: u64) -> Decision {
    match (rate, l.busy.get()) {
        (0, _) => Decision::Skip,
        (_, true) => Decision::Reentrant,
        (_, false) => Decision::Sample,
    }
}

fn draw(l: &Local, rate: u64) -> i64 {
    let mut rng = Rng::resume(l.rng.get());
    let next = sampler::next_interval(&mut rng, rate);
    l.rng.set(rng.state());
    next
}

/// Gives this thread a slot, or marks it homeless when all are taken.
fn register(l: &Local) {
    l.busy.set(true);
    if !INSTALLED.load(Relaxed) {
        INSTALLED.store(true, Relaxed);
    }
    let seed = NEXT_SEED.fetch_add(1, Relaxed) ^ (l as *const Local as u64).rotate_left(32);
    l.rng.set(Rng::new(seed).state());
    let next = draw(l, rate());
    match claim() {
        Some(s) => {
            s.restart(next);
            l.slot.set(s);
            l.phase.set(Phase::Active);
        }
        None => {
            l.spare.set(next);
            l.phase.set(Phase::Homeless);
        }
    }
    // Last, now that this thread is set up: registering the destructor may
    // allocate, which comes back here with `busy` set.
    let _ = EXIT.try_with(|_| ());
    l.busy.set(false);
}

fn claim() -> Option<&'static Slot> {
    let i = (0..SLOTS).find(|&i| {
        let s = &SLOT_TABLE[i];
        !s.owned.load(Relaxed) && s.owned.compare_exchange(false, true, Acquire, Relaxed).is_ok()
    })?;
    HIGH.fetch_max(i + 1, Relaxed);
    Some(&SLOT_TABLE[i])
}

/// The thread is exiting: fold its interval into its slot's totals and hand
/// the slot on. Later allocations on this thread count in the shared totals.
fn retire() {
    let _ = LOCAL.try_with(|l| {
        l.busy.set(true);
        if let Some(s) = own(l) {
            l.slot.set(std::ptr::null());
            s.restart(0);
            l.spare.set(draw(l, rate()));
            s.owned.store(false, Release);
        }
        l.phase.set(Phase::Exited);
        l.busy.set(false);
    });
}

/// Marks this thread as inside the allocator's slow path until dropped;
/// `None` if it already is (the caller must then not sample).
#[derive(Debug)]
pub(crate) struct Busy(());

impl Busy {
    pub(crate) fn enter() -> Option<Busy> {
        LOCAL
            .try_with(|l| {
                if l.busy.get() {
                    None
                } else {
                    l.busy.set(true);
                    Some(Busy(()))
                }
            })
            .ok()
            .flatten()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| l.busy.set(false));
    }
}

/// Threads that own a slot now.
pub(crate) fn threads() -> u64 {
    SLOT_TABLE[..HIGH.load(Relaxed).min(SLOTS)].iter().filter(|s| s.owned.load(Relaxed)).count() as u64
}

/// Exact totals of every thread since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Totals {
    pub(crate) allocated_bytes: u64,
    pub(crate) allocated_objects: u64,
    pub(crate) freed_bytes: u64,
    pub(crate) freed_objects: u64,
}

impl Totals {
    pub(crate) fn inuse_bytes(&self) -> u64 {
        self.allocated_bytes.saturating_sub(self.freed_bytes)
    }

    pub(crate) fn inuse_objects(&self) -> u64 {
        self.allocated_objects.saturating_sub(self.freed_objects)
    }
}

/// Sums every thread's slot and the shared counts.
pub(crate) fn totals() -> Totals {
    let mut t = Totals {
        allocated_bytes: ORPHAN_ALLOC_BYTES.load(Relaxed),
        allocated_objects: ORPHAN_ALLOCS.load(Relaxed),
        freed_bytes: ORPHAN_FREED_BYTES.load(Relaxed),
        freed_objects: ORPHAN_FREES.load(Relaxed),
    };
    for s in &SLOT_TABLE[..HIGH.load(Relaxed).min(SLOTS)] {
        t.allocated_bytes = t.allocated_bytes.wrapping_add(s.allocated_bytes());
        t.allocated_objects = t.allocated_objects.wrapping_add(s.allocs.load(Relaxed));
        t.freed_bytes = t.freed_bytes.wrapping_add(s.freed_bytes.load(Relaxed));
        t.freed_objects = t.freed_objects.wrapping_add(s.frees.load(Relaxed));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    // The library's unit tests do not install the allocator, so these drive
    // the counting functions directly, on threads of their own.

    #[test]
    fn a_threads_counts_are_exact_and_survive_its_exit() {
        let before = totals();
        let handle = std::thread::spawn(|| {
            for size in 1..=1000usize {
                if on_alloc(size) {
                    let _ = alloc_event(size);
                }
            }
            for size in 1..=400usize {
                on_free(size);
            }
        });
        handle.join().unwrap();
        let after = totals();
        // Other tests may count concurrently; ours are included at least.
        assert!(after.allocated_objects - before.allocated_objects >= 1000);
        assert!(after.allocated_bytes - before.allocated_bytes >= 500_500);
        assert!(after.freed_objects - before.freed_objects >= 400);
        assert!(after.freed_bytes - before.freed_bytes >= 80_200);
    }

    #[test]
    fn exact_bytes_come_from_the_countdown_across_many_intervals() {
        std::thread::spawn(|| {
            let alloc = |size| {
                if on_alloc(size) {
                    let _ = alloc_event(size);
                }
            };
            // The first allocation registers the thread. Its slot may have
            // been another thread's, so measure from here.
            alloc(1);
            let s = LOCAL.with(own).expect("the thread got a slot");
            let (bytes, objects) = (s.allocated_bytes(), s.allocs.load(Relaxed));
            // Enough bytes to run through hundreds of intervals.
            for _ in 0..200_000 {
                alloc(4096);
            }
            assert_eq!(s.allocs.load(Relaxed) - objects, 200_000);
            assert_eq!(s.allocated_bytes() - bytes, 200_000 * 4096);
            assert!(rate() == 0 || s.base.load(Relaxed) > 0);
            undo_alloc(4096);
            assert_eq!(s.allocated_bytes() - bytes, 199_999 * 4096);
            assert_eq!(s.allocs.load(Relaxed) - objects, 199_999);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn slots_are_handed_on_when_threads_exit() {
        let first = std::thread::spawn(|| {
            on_free(1);
            LOCAL.with(own).expect("the thread got a slot") as *const Slot as usize
        })
        .join()
        .unwrap();
        // The destructor released it: it can be claimed again.
        let s = SLOT_TABLE.iter().find(|s| *s as *const Slot as usize == first).unwrap();
        assert!(!s.owned.load(Acquire));
    }

    #[test]
    fn the_busy_guard_is_exclusive_per_thread() {
        let a = Busy::enter().expect("not busy yet");
        assert!(Busy::enter().is_none());
        drop(a);
        assert!(Busy::enter().is_some());
    }
}
