//! Taking a sample, off the allocator's fast path: reserve a live-table
//! entry, walk the stack, note the task being polled, and record it all;
//! and the reverse when a sampled block is freed.
//!
//! Nothing here allocates or blocks. When a table is full the sample is
//! dropped (or folded into the `<table full>` stack) and counted.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::block;
use super::counters;
use super::live::{LiveBlock, LiveTable};
use super::sampler;
use super::stack::{self, MAX_DEPTH};
use super::table::StackTable;

/// Distinct (stack, spawn site) pairs kept.
pub(crate) const STACK_ENTRIES: usize = 8192;
/// Sampled blocks alive at once: at the default rate, a heap of 32 GiB of
/// small objects.
pub(crate) const LIVE_ENTRIES: usize = 1 << 16;

// Zero-initialized statics: in `.bss`, untouched pages cost nothing, and
// they work before `main` without initialization.
pub(crate) static STACKS: StackTable<STACK_ENTRIES> = StackTable::new();
pub(crate) static LIVE: LiveTable<LIVE_ENTRIES, { LIVE_ENTRIES / 64 }> = LiveTable::new();

/// Samples taken since the start.
pub(crate) static SAMPLES: AtomicU64 = AtomicU64::new(0);
/// Samples dropped because the thread was already inside the allocator's
/// slow path.
pub(crate) static REENTRANT: AtomicU64 = AtomicU64::new(0);
/// Samples dropped because the block's alignment is above
/// [`block::MAX_ALIGN`].
pub(crate) static UNSAMPLEABLE: AtomicU64 = AtomicU64::new(0);
/// Samples whose stack could not be walked (recorded with an empty stack).
pub(crate) static NO_STACK: AtomicU64 = AtomicU64::new(0);

/// A sample being taken: its live entry is reserved.
#[derive(Debug)]
pub(crate) struct Ticket {
    index: u32,
    size: u64,
    stack: u32,
    site: u32,
    task: u64,
    weight: f64,
}

/// The stack-table entry of the current stack in the current task, the
/// task's site + 1 and its id.
fn here() -> (u32, u32, u64) {
    let mut frames = [0usize; MAX_DEPTH];
    let n = stack::capture(&mut frames);
    if n == 0 {
        NO_STACK.fetch_add(1, Relaxed);
    }
    let (task, site) = crate::tasks::polling().map_or((0, 0), |(id, site)| (id, site + 1));
    (STACKS.intern(&frames[..n], site), site, task)
}

/// Starts a sample of an allocation of `size` bytes; `None` (counted) when
/// the live table is full. Must run under [`counters::Busy`].
#[inline(never)]
pub(crate) fn prepare(size: usize) -> Option<Ticket> {
    let index = LIVE.reserve()?;
    let (stack, site, task) = here();
    let weight = sampler::weight(size as u64, counters::rate());
    Some(Ticket { index, size: size as u64, stack, site, task, weight })
}

/// The index the block's header must carry.
pub(crate) fn index(t: &Ticket) -> u32 {
    t.index
}

/// The allocation failed: give the entry back.
pub(crate) fn abandon(t: Ticket) {
    LIVE.unreserve(t.index);
}

/// The block is at `addr`, its header written: record the sample.
pub(crate) fn commit(t: Ticket, addr: usize) {
    let block =
        LiveBlock { addr, size: t.size, stack: t.stack, site: t.site, task: t.task, weight: t.weight };
    LIVE.publish(t.index, &block);
    STACKS.record_alloc(t.stack, t.size, t.weight);
    SAMPLES.fetch_add(1, Relaxed);
}

/// Whether the block at `addr` is a live sample: its live-table index and
/// offset in its inner block if so.
#[cold]
#[inline(never)]
pub(crate) fn confirm(addr: usize) -> Option<(u32, u32)> {
    // SAFETY: only called after `block::maybe_sampled(addr)` returned true,
    // for a live block.
    let (index, offset) = unsafe { block::header(addr) }?;
    LIVE.get(index, addr).map(|_| (index, offset))
}

/// The sampled block of entry `index` is being freed.
pub(crate) fn release(index: u32) {
    let b = LIVE.remove(index);
    if b.weight > 0.0 {
        STACKS.record_free(b.stack, b.size, b.weight);
    }
}

/// The sampled block of entry `index` is about to be moved by `realloc`:
/// from now on its old address is not confirmed as sampled. Returns what
/// the entry held, for [`moved`] or [`restore`].
pub(crate) fn moving(index: u32) -> LiveBlock {
    LIVE.unpublish(index)
}

/// The move failed: the block is where it was.
pub(crate) fn restore(index: u32, old: &LiveBlock) {
    LIVE.publish(index, old);
}

/// The sampled block `old` of entry `index` was reallocated to `addr` with
/// `size` bytes: the old sample (if it counted) is freed, and the new block
/// is a new sample if `sampled` (under [`counters::Busy`]), else kept in the
/// entry with weight 0, only so that its free is recognized.
pub(crate) fn moved(index: u32, old: &LiveBlock, addr: usize, size: usize, sampled: bool) {
    if old.weight > 0.0 {
        STACKS.record_free(old.stack, old.size, old.weight);
    }
    if !sampled {
        LIVE.publish(index, &LiveBlock { addr, size: size as u64, weight: 0.0, ..*old });
        return;
    }
    let (stack, site, task) = here();
    let weight = sampler::weight(size as u64, counters::rate());
    let block = LiveBlock { addr, size: size as u64, stack, site, task, weight };
    LIVE.publish(index, &block);
    STACKS.record_alloc(stack, size as u64, weight);
    SAMPLES.fetch_add(1, Relaxed);
}
