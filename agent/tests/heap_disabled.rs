//! With the agent disabled (`TASKSCOPE_DISABLE=1`, read before `main`), the
//! allocator is a plain wrapper: every call goes straight to the inner
//! allocator. Blocks of every shape must still come back intact and be
//! freed to the inner allocator exactly as they were allocated: the inner
//! allocator here checks that each free and realloc names a live block with
//! the layout it was given.
//!
//! The setting is read before `main`, so the test runs itself in a child
//! process with the variable set.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::Mutex;

mod child_support;
use child_support::in_child;

/// The system allocator, keeping the layout of every live block it handed
/// out, so that a free with another layout (as a sampled block's free would
/// be if mistaken for an ordinary one) is caught.
struct Checked;

static LIVE: Mutex<Option<HashMap<usize, (usize, usize)>>> = Mutex::new(None);
static MISMATCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    static INSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on the live-block map, unless this thread is already inside it
/// (the map's own allocations are not tracked).
fn with_live(f: impl FnOnce(&mut HashMap<usize, (usize, usize)>)) {
    if INSIDE.try_with(|i| i.replace(true)).unwrap_or(true) {
        return;
    }
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    f(live.get_or_insert_with(HashMap::new));
    drop(live);
    let _ = INSIDE.try_with(|i| i.set(false));
}

fn forget(ptr: *mut u8, layout: Layout) {
    with_live(|live| {
        if let Some(was) = live.remove(&(ptr as usize)) {
            if was != (layout.size(), layout.align()) {
                MISMATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
}

// SAFETY: every call is forwarded to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Checked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        with_live(|live| {
            live.insert(p as usize, (layout.size(), layout.align()));
        });
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        forget(ptr, layout);
        // SAFETY: forwarded: a block `System` gave with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        forget(ptr, layout);
        // SAFETY: forwarded with the caller's arguments.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        with_live(|live| {
            live.insert(p as usize, (new_size, layout.align()));
        });
        p
    }
}

#[global_allocator]
static GLOBAL: taskscope::Allocator<Checked> = taskscope::Allocator::new(Checked);

#[test]
fn a_disabled_agent_leaves_a_plain_allocator_that_frees_every_block_as_it_was_made() {
    if !in_child(
        "a_disabled_agent_leaves_a_plain_allocator_that_frees_every_block_as_it_was_made",
        &[("TASKSCOPE_DISABLE", "1"), ("TASKSCOPE_HEAP_SAMPLE_BYTES", "1")],
    ) {
        return;
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for round in 0..2_000usize {
                    let mut v: Vec<u64> = Vec::new();
                    for i in 0..(round % 300) {
                        v.push((t * 1_000_000 + round * 1_000 + i) as u64);
                    }
                    assert!(v
                        .iter()
                        .enumerate()
                        .all(|(i, &x)| x == (t * 1_000_000 + round * 1_000 + i) as u64));
                    let zeroed = vec![0u8; 1 + round * 37 % 100_000];
                    assert!(zeroed.iter().all(|&b| b == 0));
                    let layout = Layout::from_size_align(64 + round % 512, 4096).unwrap();
                    // SAFETY: a non-zero size; freed with the same layout.
                    unsafe {
                        let p = std::alloc::alloc(layout);
                        assert!(!p.is_null() && p as usize % 4096 == 0);
                        p.write_bytes(0xab, layout.size());
                        std::alloc::dealloc(p, layout);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        MISMATCHES.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "frees with another layout than given"
    );
}
