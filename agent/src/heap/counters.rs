//! Exact totals, kept per thread and merged on read, and each thread's
//! sampling countdown.
//!
//! **The fast path touches only the thread's own thread-local.** It holds
//! two packed words, one for allocations and one for frees, each
//! `remaining << 20 | objects`: an allocation of `s` bytes subtracts
//! `(s << 20) - 1` from its word, which takes `s` from the bytes remaining
//! in the current stretch and counts one more object, in one load and one
//! store (relaxed atomics, which compile to plain moves). The word going
//! negative sends the call to the slow path, which folds the stretch into
//! the thread's running totals and starts the next. A stretch is at most
//! [`SPAN`] bytes, so that at most `SPAN + 1` objects fit the 20 bits.
//! Calls of more than [`FAST_MAX`] bytes always take the slow path. A
//! thread without a slot (not registered yet, exited, one too many, or the
//! agent is disabled) has words of 0, so every call of it takes the slow
//! path (or, the agent disabled, goes straight to the inner allocator).
//!
//! **Totals.** Each registered thread owns one slot (a cache line pair) of a
//! static array: the totals of its folded stretches, and a pointer to its
//! thread-local, so that readers add the current stretches. Only the owner
//! writes the slot, under a sequence lock that readers use to get a
//! consistent set. When a thread exits it folds its stretches, unpublishes
//! its thread-local (waiting out any reader inside it), and hands the slot
//! to the next new thread, which keeps adding to the totals; the sum stays
//! exact.
//!
//! **Sampling.** The allocation word's stretch ends at the next sampling
//! point, or after [`SPAN`] bytes if that point is farther: the distance
//! left beyond the stretch is carried in the thread-local and continued, so
//! that the points fall where the drawn exponential distances put them (see
//! `sampler`).
//!
//! **Failed allocations.** The fast path counts an allocation and then
//! tail-calls the inner allocator, which saves a call frame and 3 to 5% of
//! the cost on small allocations. So an allocation of at most [`FAST_MAX`]
//! bytes that the inner allocator refuses (out of memory) stays counted;
//! larger ones, which a program may try and survive, are taken back.

use std::cell::Cell;
use std::sync::atomic::{
    fence, AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*,
};

use serde::Serialize;

use super::sampler::{self, Rng};

/// Threads with a slot of their own at once; more share the slow path.
pub(crate) const SLOTS: usize = 4096;

/// Bits of a packed word that count objects.
const COUNT_BITS: u32 = 20;
const COUNT_MASK: i64 = (1 << COUNT_BITS) - 1;
/// The most bytes one stretch of a packed word counts.
pub(crate) const SPAN: i64 = 1 << (COUNT_BITS - 1);
/// Calls of more bytes take the slow path: 64 MiB.
pub(crate) const FAST_MAX: usize = 1 << 26;

/// What one call of `size` bytes subtracts from a packed word: `size` from
/// the bytes remaining, one more object.
#[inline(always)]
fn packed(size: usize) -> i64 {
    ((size as i64) << COUNT_BITS) - 1
}

/// A packed word's remaining bytes and counted objects.
fn unpack(word: i64) -> (i64, u64) {
    (word >> COUNT_BITS, (word & COUNT_MASK) as u64)
}

/// One side's current stretch, in the owner's thread-local.
struct Stretch {
    /// `remaining << COUNT_BITS | objects`.
    word: AtomicI64,
    /// The remaining bytes the stretch started with.
    start: AtomicI64,
}

impl Stretch {
    const fn new() -> Self {
        Stretch { word: AtomicI64::new(0), start: AtomicI64::new(0) }
    }

    /// Bytes and objects counted in the stretch so far.
    fn counted(&self) -> (u64, u64) {
        let (remaining, count) = unpack(self.word.load(Relaxed));
        (self.start.load(Relaxed).wrapping_sub(remaining) as u64, count)
    }

    /// Starts a stretch of `bytes`.
    fn restart(&self, bytes: i64) {
        self.start.store(bytes, Relaxed);
        self.word.store(bytes << COUNT_BITS, Relaxed);
    }
}

/// One side's totals of folded stretches, in the slot.
struct Totaled {
    bytes: AtomicU64,
    objects: AtomicU64,
}

impl Totaled {
    const fn new() -> Self {
        Totaled { bytes: AtomicU64::new(0), objects: AtomicU64::new(0) }
    }

    /// Folds `stretch` and `extra` more bytes and objects into the totals
    /// and empties it. Returns the bytes that were remaining in the stretch,
    /// less `extra_bytes` (negative when the stretch ran out inside that
    /// call). Owner only, inside a write of the slot's sequence lock.
    fn fold(&self, stretch: &Stretch, extra_bytes: u64, extra_objects: u64) -> i64 {
        let (bytes, objects) = stretch.counted();
        let (remaining, _) = unpack(stretch.word.load(Relaxed));
        Slot::bump(&self.bytes, bytes.wrapping_add(extra_bytes));
        Slot::bump(&self.objects, objects + extra_objects);
        stretch.restart(0);
        remaining.saturating_sub(extra_bytes.min(i64::MAX as u64) as i64)
    }
}

/// 128 bytes: Intel's adjacent-line prefetcher fetches lines in pairs, so
/// two threads' slots must not share a pair.
#[repr(C, align(128))]
struct Slot {
    allocated: Totaled,
    freed: Totaled,
    /// The owner's thread-local, while it is registered.
    local: AtomicPtr<Local>,
    /// Readers inside `local` now.
    readers: AtomicU32,
    /// Odd while the owner folds stretches.
    seq: AtomicU32,
    owned: AtomicBool,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            allocated: Totaled::new(),
            freed: Totaled::new(),
            local: AtomicPtr::new(std::ptr::null_mut()),
            readers: AtomicU32::new(0),
            seq: AtomicU32::new(0),
            owned: AtomicBool::new(false),
        }
    }

    /// Only the owner calls this: bump a counter without a locked instruction.
    #[inline(always)]
    fn bump(counter: &AtomicU64, by: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
    }

    /// Runs `f` as a write of the sequence lock. Owner only.
    fn write<R>(&self, f: impl FnOnce() -> R) -> R {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        let out = f();
        self.seq.store(seq.wrapping_add(2), Release);
        out
    }

    /// A consistent read of the slot's totals with its owner's current
    /// stretches: (allocated bytes, objects, freed bytes, objects).
    fn read(&self) -> (u64, u64, u64, u64) {
        // A writer stuck mid-update (a fork child of a thread that was in
        // it) must not hang readers: after a few hundred tries take what is
        // there. A writer that is only preempted gets the core back while
        // the reader yields.
        let mut read = (0, 0, 0, 0);
        for attempt in 0..320 {
            let before = self.seq.load(Acquire);
            let ((ab, ao), (fb, fo)) = self.stretches();
            read = (
                self.allocated.bytes.load(Relaxed).wrapping_add(ab),
                self.allocated.objects.load(Relaxed).wrapping_add(ao),
                self.freed.bytes.load(Relaxed).wrapping_add(fb),
                self.freed.objects.load(Relaxed).wrapping_add(fo),
            );
            fence(Acquire);
            if before % 2 == 0 && self.seq.load(Relaxed) == before {
                break;
            }
            if attempt < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        read
    }

    /// What the owner's current stretches have counted, if it is
    /// registered: ((bytes, objects) allocated, (bytes, objects) freed).
    fn stretches(&self) -> ((u64, u64), (u64, u64)) {
        // Announce the read before looking at the pointer: an exiting owner
        // clears the pointer and then waits for readers to leave (SeqCst on
        // both sides, so one of them sees the other).
        self.readers.fetch_add(1, SeqCst);
        let local = self.local.load(SeqCst);
        let out = if local.is_null() {
            Default::default()
        } else {
            // SAFETY: a published thread-local stays alive until its owner
            // has cleared the pointer and seen no reader inside (`release`).
            // Only its atomic fields are read: no reference to the whole
            // `Local`, whose cells its owner writes.
            let (allocated, freed) =
                unsafe { (&*std::ptr::addr_of!((*local).allocated), &*std::ptr::addr_of!((*local).freed)) };
            (allocated.counted(), freed.counted())
        };
        self.readers.fetch_sub(1, Release);
        out
    }
}

/// All zeros, so that it lives in `.bss` and works before `main`.
static SLOT_TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// One past the highest slot ever claimed.
static HIGH: AtomicUsize = AtomicUsize::new(0);

/// Counts of the threads without a slot, shared (slow path only).
static ORPHAN_ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static ORPHAN_ALLOCS: AtomicU64 = AtomicU64::new(0);
static ORPHAN_FREED_BYTES: AtomicU64 = AtomicU64::new(0);
static ORPHAN_FREES: AtomicU64 = AtomicU64::new(0);

/// [`PASSTHROUGH`] when the agent is disabled (`TASKSCOPE_DISABLE=1`, read
/// before `main`). Read when a thread registers; the thread then keeps it
/// in its thread-local.
static MODE: AtomicU8 = AtomicU8::new(0);
/// The agent is disabled: allocations and frees go straight to the inner
/// allocator, uncounted and unsampled.
const PASSTHROUGH: u8 = 1;
/// The packed words of a thread of a disabled agent: far enough below 0
/// that subtracting any call's [`packed`] size keeps it negative.
const PLAIN: i64 = i64::MIN / 2;

/// Makes this thread's calls go straight to the inner allocator.
fn go_plain(l: &Local) {
    l.phase.set(Phase::Passthrough);
    l.allocated.word.store(PLAIN, Relaxed);
    l.freed.word.store(PLAIN, Relaxed);
}

/// Turns the allocator into a plain wrapper (the agent is disabled). Called
/// before `main`, on the main thread, which gives its slot back; blocks
/// sampled before it are still freed as sampled.
pub(crate) fn set_passthrough() {
    MODE.fetch_or(PASSTHROUGH, Relaxed);
    let _ = LOCAL.try_with(|l| {
        l.busy.set(true);
        release(l);
        go_plain(l);
        l.busy.set(false);
    });
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
    /// The agent is disabled: nothing is counted on this thread.
    Passthrough,
}

/// This thread's allocator state. `const`-initialized and without a
/// destructor, so that reading it never allocates or registers anything.
struct Local {
    allocated: Stretch,
    freed: Stretch,
    /// This thread's slot in `SLOT_TABLE`; null while it owns none.
    slot: Cell<*const Slot>,
    phase: Cell<Phase>,
    /// Set while this thread is inside the allocator's slow path.
    busy: Cell<bool>,
    rng: Cell<u64>,
    /// Bytes to the next sampling point beyond the current stretch.
    carry: Cell<i64>,
    /// The countdown of a thread without a slot.
    spare: Cell<i64>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            allocated: Stretch::new(),
            freed: Stretch::new(),
            slot: Cell::new(std::ptr::null()),
            phase: Cell::new(Phase::Fresh),
            busy: Cell::new(false),
            rng: Cell::new(0),
            carry: Cell::new(0),
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

/// What the fast path did with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fast {
    /// Counted; nothing else to do.
    Counted,
    /// Not counted: the caller takes the slow path.
    Slow,
    /// The agent is disabled: not counted, and nothing else to do.
    Plain,
}

/// The fast path of either side: one thread-local load, and a store when
/// counted. A thread of a disabled agent has words of [`PLAIN`], the only
/// negative value they take, which no call brings back to 0 or above: its
/// test comes after the counting one and needs no other load.
#[inline(always)]
fn fast(stretch: &Stretch, size: usize) -> Fast {
    let word = stretch.word.load(Relaxed);
    if size <= FAST_MAX {
        let counted = word.wrapping_sub(packed(size));
        if counted >= 0 {
            stretch.word.store(counted, Relaxed);
            return Fast::Counted;
        }
    }
    if word < 0 {
        Fast::Plain
    } else {
        Fast::Slow
    }
}

/// The allocation hot path: counts an allocation of `size` bytes in this
/// thread's allocation word. [`Fast::Slow`] when the stretch ran out (or
/// the thread has no slot); the caller then calls [`alloc_event`].
#[inline(always)]
pub(crate) fn on_alloc(size: usize) -> Fast {
    LOCAL.with(|l| fast(&l.allocated, size))
}

/// Counts `size` bytes freed, by whichever path it takes.
#[inline(always)]
pub(crate) fn on_free(size: usize) {
    if on_free_fast(size) == Fast::Slow {
        free_slow(size);
    }
}

/// The free hot path: counts `size` bytes freed in this thread's free
/// word. [`Fast::Slow`] (nothing counted) when the stretch ran out or the
/// thread has no slot; the caller then calls [`free_slow`]. Split so that
/// the allocator's `dealloc` can end in tail calls.
#[inline(always)]
pub(crate) fn on_free_fast(size: usize) -> Fast {
    LOCAL.with(|l| fast(&l.freed, size))
}

/// Counts a free that the fast path did not: registers the thread first if
/// it is new, and folds the free word's stretch.
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
        None if l.phase.get() == Phase::Passthrough => {}
        None => {
            ORPHAN_FREES.fetch_add(1, Relaxed);
            ORPHAN_FREED_BYTES.fetch_add(size as u64, Relaxed);
        }
        Some(s) => s.write(|| {
            s.freed.fold(&l.freed, size as u64, 1);
            l.freed.restart(SPAN);
        }),
    }
}

/// An allocation that was counted did not happen (the inner allocator
/// returned null): take it back.
#[cold]
#[inline(never)]
pub(crate) fn undo_alloc(size: usize) {
    LOCAL.with(|l| match own(l) {
        None => {
            if l.phase.get() != Phase::Passthrough {
                ORPHAN_ALLOCS.fetch_sub(1, Relaxed);
                ORPHAN_ALLOC_BYTES.fetch_sub(size as u64, Relaxed);
            }
        }
        // The countdown keeps it: for sampling, it is as if it happened.
        Some(s) => s.write(|| {
            Slot::bump(&s.allocated.bytes, (size as u64).wrapping_neg());
            Slot::bump(&s.allocated.objects, u64::MAX);
        }),
    })
}

/// What the slow path decided about an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Allocate as usual (counted).
    Skip,
    /// Sample this allocation (counted).
    Sample,
    /// It should have been sampled, but this thread is already inside the
    /// allocator's slow path (the caller counts the drop). Counted.
    Reentrant,
    /// The agent is disabled: allocate as usual, uncounted.
    Plain,
}

/// The slow path of an allocation of `size` bytes that the fast path did
/// not count: registers the thread on its first allocation, counts the
/// allocation, moves to the next stretch, and decides whether to sample.
#[cold]
#[inline(never)]
pub(crate) fn alloc_event(size: usize) -> Decision {
    LOCAL.with(|l| {
        if l.phase.get() == Phase::Fresh && !l.busy.get() {
            register(l);
        }
        let rate = rate();
        let Some(s) = own(l) else {
            if l.phase.get() == Phase::Passthrough {
                return Decision::Plain;
            }
            ORPHAN_ALLOCS.fetch_add(1, Relaxed);
            ORPHAN_ALLOC_BYTES.fetch_add(size as u64, Relaxed);
            let left = l.spare.get().saturating_sub(size.min(i64::MAX as usize) as i64);
            if left >= 0 {
                l.spare.set(left);
                return Decision::Skip;
            }
            l.spare.set(draw(l, rate));
            return decide(l, rate);
        };
        s.write(|| {
            // Count it, and see where the next stretch starts.
            let left = s.allocated.fold(&l.allocated, size as u64, 1);
            let (next, decision) = next_stretch(l, left, rate);
            l.allocated.restart(next);
            decision
        })
    })
}

/// The stretch after one that has `left` bytes remaining (negative: the
/// allocation that ended it went past its end by that much), and whether
/// that allocation is sampled.
fn next_stretch(l: &Local, left: i64, rate: u64) -> (i64, Decision) {
    // Continue towards the sampling point beyond the stretch, if the
    // allocation did not reach it.
    let beyond = l.carry.get().saturating_add(left);
    let (distance, decision) = if beyond >= 0 {
        (beyond, Decision::Skip)
    } else {
        // The point fell inside this allocation: sample it, and draw the
        // distance to the next point from its end.
        (draw(l, rate), decide(l, rate))
    };
    let next = distance.min(SPAN);
    l.carry.set(distance - next);
    (next, decision)
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

/// Gives this thread a slot, or marks it homeless when all are taken, or
/// passthrough when the agent is disabled.
fn register(l: &Local) {
    if MODE.load(Relaxed) & PASSTHROUGH != 0 {
        go_plain(l);
        return;
    }
    l.busy.set(true);
    if !INSTALLED.load(Relaxed) {
        INSTALLED.store(true, Relaxed);
    }
    let seed = NEXT_SEED.fetch_add(1, Relaxed) ^ (l as *const Local as u64).rotate_left(32);
    l.rng.set(Rng::new(seed).state());
    let first = draw(l, rate());
    match claim() {
        Some(s) => {
            let next = first.min(SPAN);
            l.carry.set(first - next);
            s.write(|| {
                l.allocated.restart(next);
                l.freed.restart(SPAN);
                s.local.store(l as *const Local as *mut Local, SeqCst);
            });
            l.slot.set(s);
            l.phase.set(Phase::Active);
        }
        None => {
            l.spare.set(first);
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

/// Folds this thread's stretches into its slot's totals, unpublishes its
/// thread-local and hands the slot on. Under the reentrancy guard.
fn release(l: &Local) {
    let Some(s) = own(l) else { return };
    s.write(|| {
        s.local.store(std::ptr::null_mut(), SeqCst);
        // A reader that saw the pointer is still reading the stretches.
        while s.readers.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
        s.allocated.fold(&l.allocated, 0, 0);
        s.freed.fold(&l.freed, 0, 0);
    });
    l.slot.set(std::ptr::null());
    l.spare.set(draw(l, rate()));
    s.owned.store(false, Release);
}

/// The thread is exiting: hand its slot on. Later allocations on this
/// thread count in the shared totals.
fn retire() {
    let _ = LOCAL.try_with(|l| {
        l.busy.set(true);
        release(l);
        if l.phase.get() != Phase::Passthrough {
            l.phase.set(Phase::Exited);
        }
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
        let (a, ao, f, fo) = s.read();
        t.allocated_bytes = t.allocated_bytes.wrapping_add(a);
        t.allocated_objects = t.allocated_objects.wrapping_add(ao);
        t.freed_bytes = t.freed_bytes.wrapping_add(f);
        t.freed_objects = t.freed_objects.wrapping_add(fo);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    // The library's unit tests do not install the allocator, so these drive
    // the counting functions directly, on threads of their own.

    fn alloc(size: usize) -> Decision {
        match on_alloc(size) {
            Fast::Counted => Decision::Skip,
            Fast::Plain => Decision::Plain,
            Fast::Slow => alloc_event(size),
        }
    }

    #[test]
    fn a_threads_counts_are_exact_and_survive_its_exit() {
        let before = totals();
        let handle = std::thread::spawn(|| {
            for size in 1..=1000usize {
                alloc(size);
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
    fn exact_counts_across_many_stretches_and_sizes() {
        std::thread::spawn(|| {
            // The first allocation registers the thread. Its slot may have
            // been another thread's, so measure from here.
            alloc(1);
            let s = LOCAL.with(own).expect("the thread got a slot");
            let (a, ao, f, fo) = s.read();
            // Enough bytes to run through hundreds of stretches, with sizes
            // on both sides of the fast path's limit.
            let sizes = [1, 8, 4096, 100_000, SPAN as usize, FAST_MAX, FAST_MAX + 1, 1 << 30];
            let mut bytes = 0u64;
            for i in 0..200_000 {
                let size = sizes[i % sizes.len()];
                alloc(size);
                on_free(size);
                bytes += size as u64;
            }
            let (a2, ao2, f2, fo2) = s.read();
            assert_eq!((ao2 - ao, fo2 - fo), (200_000, 200_000));
            assert_eq!((a2 - a, f2 - f), (bytes, bytes));
            undo_alloc(4096);
            let (a3, ao3, _, _) = s.read();
            assert_eq!((a3 - a, ao3 - ao), (bytes - 4096, 199_999));
        })
        .join()
        .unwrap();
    }

    /// A thread-local of its own, to drive the schedule by hand.
    fn local() -> Local {
        Local {
            allocated: Stretch::new(),
            freed: Stretch::new(),
            slot: Cell::new(std::ptr::null()),
            phase: Cell::new(Phase::Active),
            busy: Cell::new(false),
            rng: Cell::new(Rng::new(7).state()),
            carry: Cell::new(0),
            spare: Cell::new(0),
        }
    }

    #[test]
    fn sampling_points_beyond_a_stretch_are_carried_not_redrawn() {
        // A mean eight times the stretch: if a stretch's end were taken for
        // a sampling point, there would be about 8 times too many samples.
        let mean = 8 * SPAN as u64;
        let l = local();
        let (mut left, mut samples, mut bytes) = (0i64, 0u64, 0u64);
        let (first, _) = next_stretch(&l, -1, mean);
        left += first;
        while bytes < 4 << 30 {
            let size = 1000;
            bytes += size as u64;
            left -= size;
            if left < 0 {
                let (next, decision) = next_stretch(&l, left, mean);
                samples += (decision == Decision::Sample) as u64;
                assert!((0..=SPAN).contains(&next));
                left = next;
            }
        }
        // 1024 expected (4 GiB / 4 MiB), standard deviation 32.
        assert!((1024 - 160..=1024 + 160).contains(&samples), "{samples} samples");
    }

    #[test]
    fn readers_and_exiting_threads_do_not_race() {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Relaxed) {
                    std::hint::black_box(totals());
                    reads += 1;
                }
                reads
            })
        };
        let before = totals();
        for _ in 0..20 {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    std::thread::spawn(|| {
                        for size in 1..=1000usize {
                            alloc(size);
                            on_free(size);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
        stop.store(true, Relaxed);
        assert!(reader.join().unwrap() > 0);
        let after = totals();
        assert!(after.allocated_objects - before.allocated_objects >= 80_000);
        assert!(after.freed_bytes - before.freed_bytes >= 80 * 500_500);
    }

    #[test]
    fn slots_are_handed_on_when_threads_exit() {
        let first = std::thread::spawn(|| {
            on_free(1);
            LOCAL.with(own).expect("the thread got a slot") as *const Slot as usize
        })
        .join()
        .unwrap();
        // The destructor released it: it can be claimed again, and no
        // reader can reach the exited thread's thread-local.
        let s = SLOT_TABLE.iter().find(|s| *s as *const Slot as usize == first).unwrap();
        // Another test's new thread may be between claiming the slot and
        // publishing its thread-local: wait that moment out.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while s.owned.load(Acquire) && s.local.load(Acquire).is_null() && std::time::Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        assert!(!s.owned.load(Acquire) || !s.local.load(Acquire).is_null());
    }

    #[test]
    fn the_busy_guard_is_exclusive_per_thread() {
        let a = Busy::enter().expect("not busy yet");
        assert!(Busy::enter().is_none());
        drop(a);
        assert!(Busy::enter().is_some());
    }
}
