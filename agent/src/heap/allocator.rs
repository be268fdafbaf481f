//! [`Allocator`], the global allocator that samples.
//!
//! Every call goes to the inner allocator. On the way, an allocation
//! subtracts its size from a per-thread word that counts bytes and objects
//! and is the sampling countdown (a thread-local load, subtract, branch and
//! store), and a free tests its address and does the same to a per-thread
//! free word; see `counters` and `block`. When the countdown runs out, the
//! cold path decides whether to sample, and a sampled block is placed where
//! its free recognizes it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::block;
use super::counters::{self, Busy, Decision, Fast};
use super::sample;

/// A global allocator that samples allocations for heap profiles.
///
/// It wraps another allocator (the system's by default) and, as Go's
/// runtime does, samples on average one allocation per 512 KiB allocated
/// (set `TASKSCOPE_HEAP_SAMPLE_BYTES` to change the mean, `0` to only
/// count). Each sample records the stack and the tokio task being polled.
/// It also keeps exact totals of bytes and objects allocated and freed. The
/// profiles are served at `/debug/pprof/heap`, `/debug/pprof/allocs` and
/// `/debug/pprof/heap/flamegraph`, and the in-use memory per task and
/// spawn site is in the snapshot JSON.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: taskscope::Allocator = taskscope::Allocator::system();
///
/// fn main() {
///     let v = vec![0u8; 1 << 20];
///     assert_eq!(v.len(), 1 << 20);
/// }
/// ```
///
/// To profile another allocator, wrap it with [`Allocator::new`]:
///
/// ```
/// use std::alloc::System;
///
/// // e.g. `taskscope::Allocator<mimalloc::MiMalloc>`
/// #[global_allocator]
/// static GLOBAL: taskscope::Allocator<System> = taskscope::Allocator::new(System);
/// # fn main() {}
/// ```
///
/// With the agent disabled (`TASKSCOPE_DISABLE=1`, read before `main`) it
/// is a plain wrapper: each call reads one flag of the allocator and goes to
/// the inner allocator.
///
/// What it costs: an unsampled allocation or free loads and stores one word
/// of its own thread-local (a count of bytes and objects that is also the
/// sampling countdown), with no shared atomics, locks, clock reads or
/// allocation, and then tail-calls the inner allocator. A sample walks the
/// stack by frame pointers and inserts into fixed tables; samples that do
/// not fit are counted as dropped. Allocations aligned to more than 2048
/// bytes are never sampled (they are counted). A sampled block takes 4 KiB
/// more from the inner allocator (about 0.8% of the sampled memory at the
/// default rate), so that it starts 2048 bytes into a page, which is what a
/// free tests first; the free of a block that starts there reads 4 bytes 16
/// bytes in front of it (within its page), which memory checkers such as
/// ASan or Valgrind's memcheck may report. An allocation of up to 64 MiB that
/// the inner allocator refuses stays counted as allocated.
pub struct Allocator<A = System> {
    inner: A,
    /// Set once a call found the agent disabled: every call then goes
    /// straight to `inner`. A field, so that reading it is one compare with
    /// the static that holds the allocator.
    plain: AtomicBool,
}

impl Allocator<System> {
    /// The allocator over the system's allocator.
    pub const fn system() -> Self {
        Allocator { inner: System, plain: AtomicBool::new(false) }
    }
}

impl<A> Allocator<A> {
    /// The allocator over `inner`.
    pub const fn new(inner: A) -> Self {
        Allocator { inner, plain: AtomicBool::new(false) }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

impl<A> fmt::Debug for Allocator<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Allocator").field("inner", &std::any::type_name::<A>()).finish()
    }
}

impl<A: GlobalAlloc> Allocator<A> {
    #[cold]
    #[inline(never)]
    unsafe fn alloc_event(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        match counters::alloc_event(layout.size()) {
            Decision::Sample => {
                // SAFETY: forwarded from `alloc`/`alloc_zeroed`.
                if let Some(p) = unsafe { self.alloc_sampled(layout, zeroed) } {
                    return p;
                }
            }
            Decision::Reentrant => {
                sample::REENTRANT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Decision::Skip => {}
            Decision::Plain => {
                self.plain.store(true, Relaxed);
                // SAFETY: forwarded from `alloc`/`alloc_zeroed`.
                return unsafe {
                    if zeroed {
                        self.inner.alloc_zeroed(layout)
                    } else {
                        self.inner.alloc(layout)
                    }
                };
            }
        }
        // SAFETY: forwarded from `alloc`/`alloc_zeroed`.
        let p = unsafe {
            if zeroed {
                self.inner.alloc_zeroed(layout)
            } else {
                self.inner.alloc(layout)
            }
        };
        if p.is_null() {
            counters::undo_alloc(layout.size());
        }
        p
    }

    /// Allocates a sampled block for `layout`, already counted. `None` when
    /// it cannot be sampled after all (counted); `Some(null)` when the inner
    /// allocator failed.
    unsafe fn alloc_sampled(&self, layout: Layout, zeroed: bool) -> Option<*mut u8> {
        let _busy = Busy::enter()?;
        let Some(inner) = block::inner_layout(layout) else {
            sample::UNSAMPLEABLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        };
        let ticket = sample::prepare(layout.size())?;
        // SAFETY: `inner` has a non-zero size (it includes the header).
        let base = unsafe {
            if zeroed {
                self.inner.alloc_zeroed(inner)
            } else {
                self.inner.alloc(inner)
            }
        };
        if base.is_null() {
            sample::abandon(ticket);
            counters::undo_alloc(layout.size());
            return Some(base);
        }
        let (addr, offset) = block::place(base as usize);
        // SAFETY: `addr` was placed in the live inner block just allocated
        // with `block::inner_layout`.
        unsafe { block::write_header(addr, sample::index(&ticket), offset) };
        sample::commit(ticket, addr);
        Some(addr as *mut u8)
    }

    /// Frees a block that may be sampled (it starts at the tag).
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_maybe_sampled(&self, ptr: *mut u8, layout: Layout) {
        counters::on_free(layout.size());
        match sample::confirm(ptr as usize) {
            Some((index, offset)) => {
                sample::release(index);
                if let Some(inner) = block::inner_layout(layout) {
                    let base = block::base(ptr as usize, offset);
                    // SAFETY: a confirmed sampled block was allocated at
                    // `base` with `inner_layout` of this same layout.
                    unsafe { self.inner.dealloc(base as *mut u8, inner) };
                }
            }
            // SAFETY: forwarded from `dealloc`: an ordinary block.
            None => unsafe { self.inner.dealloc(ptr, layout) },
        }
    }

    /// Frees an ordinary block on a thread without a slot.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout) {
        counters::free_slow(layout.size());
        // SAFETY: forwarded from `dealloc`: an ordinary block.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    /// The countdown ran out on a `realloc` of an ordinary block.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_event(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `realloc`'s contract makes this a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match counters::alloc_event(new_size) {
            Decision::Sample => {
                // SAFETY: forwarded from `realloc`.
                if let Some(p) = unsafe { self.alloc_sampled(new_layout, false) } {
                    if !p.is_null() {
                        // SAFETY: both blocks are live and distinct; the
                        // copy fits in both.
                        unsafe {
                            std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                            counters::on_free(layout.size());
                            self.inner.dealloc(ptr, layout);
                        }
                    }
                    return p;
                }
            }
            Decision::Reentrant => {
                sample::REENTRANT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Decision::Skip => {}
            // SAFETY: forwarded from `realloc`.
            Decision::Plain => return unsafe { self.inner.realloc(ptr, layout, new_size) },
        }
        // SAFETY: forwarded from `realloc`.
        unsafe { self.realloc_counted(ptr, layout, new_size) }
    }

    /// `realloc` of an ordinary block.
    #[inline(always)]
    unsafe fn realloc_ordinary(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match counters::on_alloc(new_size) {
            // SAFETY: forwarded from `realloc`.
            Fast::Counted => unsafe { self.realloc_counted(ptr, layout, new_size) },
            // SAFETY: forwarded from `realloc`.
            Fast::Plain => unsafe { self.inner.realloc(ptr, layout, new_size) },
            // SAFETY: forwarded from `realloc`.
            Fast::Slow => unsafe { self.realloc_event(ptr, layout, new_size) },
        }
    }

    /// `realloc` of an ordinary block whose new size was already counted.
    #[inline(always)]
    unsafe fn realloc_counted(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from `realloc`.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if p.is_null() {
            counters::undo_alloc(new_size);
        } else {
            counters::on_free(layout.size());
        }
        p
    }

    /// `realloc` of a block that starts at the tag.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_maybe_sampled(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some((index, offset)) = sample::confirm(ptr as usize) else {
            // SAFETY: forwarded from `realloc`: an ordinary block.
            return unsafe { self.realloc_ordinary(ptr, layout, new_size) };
        };
        // SAFETY: `realloc`'s contract makes this a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let decision = match counters::on_alloc(new_size) {
            Fast::Counted => Decision::Skip,
            Fast::Plain => Decision::Plain,
            Fast::Slow => counters::alloc_event(new_size),
        };
        let busy = match decision {
            Decision::Sample => Busy::enter(),
            Decision::Reentrant => {
                sample::REENTRANT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                None
            }
            Decision::Skip | Decision::Plain => None,
        };
        let (Some(old_inner), Some(new_inner)) =
            (block::inner_layout(layout), block::inner_layout(new_layout))
        else {
            // Cannot happen (the layout was sampled once, so it can be
            // again), but if it did: move the data to an ordinary block.
            // SAFETY: forwarded from `realloc`.
            return unsafe { self.realloc_to_ordinary(ptr, layout, new_layout) };
        };
        // Sampled or not this time, the block keeps its sampled shape, so
        // that the inner allocator can grow it in place: a growing Vec is
        // not copied. Not sampled, it is tracked with weight 0.
        let base = block::base(ptr as usize, offset);
        // Unpublished first: once the inner allocator has moved the block,
        // its old address may be reused by another thread, whose free must
        // not mistake the stale header there for ours.
        let old = sample::moving(index);
        // SAFETY: the block was allocated at `base` with `old_inner`.
        let new_base = unsafe { self.inner.realloc(base as *mut u8, old_inner, new_inner.size()) };
        if new_base.is_null() {
            sample::restore(index, &old);
            counters::undo_alloc(new_size);
            return new_base;
        }
        let moved = new_base as usize + (ptr as usize - base);
        let (addr, new_offset) = block::place(new_base as usize);
        if addr != moved {
            // SAFETY: both ranges lie inside the new inner block, which has
            // room for the data at either position.
            unsafe { std::ptr::copy(moved as *const u8, addr as *mut u8, layout.size().min(new_size)) };
        }
        // SAFETY: `addr` was placed in the live inner block.
        unsafe { block::write_header(addr, index, new_offset) };
        sample::moved(index, &old, addr, new_size, busy.is_some());
        drop(busy);
        counters::on_free(layout.size());
        addr as *mut u8
    }

    /// Moves a sampled block's data to an ordinary block.
    #[cold]
    unsafe fn realloc_to_ordinary(&self, ptr: *mut u8, layout: Layout, new_layout: Layout) -> *mut u8 {
        // SAFETY: `new_layout` is valid and non-zero.
        let p = unsafe { self.inner.alloc(new_layout) };
        if p.is_null() {
            counters::undo_alloc(new_layout.size());
            return p;
        }
        // SAFETY: both blocks are live and distinct; the copy fits in both;
        // the old block is freed once, as a sampled block.
        unsafe {
            std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_layout.size()));
            self.dealloc_maybe_sampled(ptr, layout);
        }
        p
    }
}

// SAFETY: every block handed out comes from the inner allocator, either as
// asked or (sampled) as a larger block of at least the asked alignment with
// the asked block placed inside it; every free and realloc passes the inner
// allocator the same pointer and layout it returned and was given.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Allocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.plain.load(Relaxed) {
            // SAFETY: forwarded.
            return unsafe { self.inner.alloc(layout) };
        }
        match counters::on_alloc(layout.size()) {
            Fast::Counted => {}
            Fast::Plain => {
                self.plain.store(true, Relaxed);
                // SAFETY: forwarded.
                return unsafe { self.inner.alloc(layout) };
            }
            // SAFETY: forwarded.
            Fast::Slow => return unsafe { self.alloc_event(layout, false) },
        }
        // A tail call: if it fails, the allocation stays counted (see
        // `counters`).
        // SAFETY: forwarded.
        unsafe { self.inner.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.plain.load(Relaxed) {
            // SAFETY: forwarded.
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        match counters::on_alloc(layout.size()) {
            Fast::Counted => {}
            Fast::Plain => {
                self.plain.store(true, Relaxed);
                // SAFETY: forwarded.
                return unsafe { self.inner.alloc_zeroed(layout) };
            }
            // SAFETY: forwarded.
            Fast::Slow => return unsafe { self.alloc_event(layout, true) },
        }
        // A tail call, as in `alloc`.
        // SAFETY: forwarded.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Every path ends in a tail call: nothing to keep across calls.
        if self.plain.load(Relaxed) && !block::maybe_sampled(ptr as usize) {
            // SAFETY: forwarded: an ordinary block.
            return unsafe { self.inner.dealloc(ptr, layout) };
        }
        if block::maybe_sampled(ptr as usize) {
            // SAFETY: forwarded.
            return unsafe { self.dealloc_maybe_sampled(ptr, layout) };
        }
        if counters::on_free_fast(layout.size()) == Fast::Slow {
            // SAFETY: forwarded.
            return unsafe { self.dealloc_slow(ptr, layout) };
        }
        // SAFETY: forwarded: an ordinary block.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if block::maybe_sampled(ptr as usize) {
            // SAFETY: forwarded.
            return unsafe { self.realloc_maybe_sampled(ptr, layout, new_size) };
        }
        if self.plain.load(Relaxed) {
            // SAFETY: forwarded: an ordinary block.
            return unsafe { self.inner.realloc(ptr, layout, new_size) };
        }
        // SAFETY: forwarded.
        unsafe { self.realloc_ordinary(ptr, layout, new_size) }
    }
}
