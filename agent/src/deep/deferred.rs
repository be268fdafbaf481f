//! Which parked-at stacks hand the task's waker to the scheduler's defer
//! list: `tokio::task::yield_now()` (and anything else that goes through
//! `context::defer`).
//!
//! Why it matters: a busy loop through the executor wakes itself. A future
//! that calls `cx.waker().wake_by_ref()` and returns `Pending` does so inside
//! its own poll, which the waker event shows. But tokio's `yield_now` does
//! not wake the task during its poll: it clones the waker into the worker's
//! defer list (a `waker.clone` inside the task's own poll) and returns
//! `Pending`; the worker wakes it by value (`waker.wake`) after the poll,
//! once its run queue is empty, from its scheduler loop, outside any task's
//! poll. The event alone cannot tell that wake from a timer's or an I/O
//! readiness, which the driver delivers from the same place. What tells
//! them apart is where the task parked: the stack of its last clone in its
//! own poll goes through tokio's `yield_now`/`Defer::defer` for a yield, and
//! through the timer or the I/O driver otherwise.
//!
//! Stacks are symbolized lazily, off the hot path, when a snapshot reads
//! them; the snapshot marks the deferring ones here (one bit per stack id).
//! From then on, a wake that comes from outside any poll to a task parked at
//! a marked stack counts as a self-wake: one relaxed load on the waker path.
//! Wakes before the first snapshot that saw the stack are not counted as
//! self-wakes, so the share of self-wakes of a task that yielded long before
//! anyone looked starts low and rises with each snapshot.
// Lean builds never read waker events.
#![cfg_attr(not(feature = "deep"), allow(dead_code))]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Stack ids covered: the deep stack table's capacity.
const STACKS: usize = 8192;

static MARKED: [AtomicU64; STACKS / 64] = [const { AtomicU64::new(0) }; STACKS / 64];

/// Marks stack `id` as handing the waker to the defer list.
pub(crate) fn mark(id: u32) {
    if let Some(word) = MARKED.get(id as usize / 64) {
        let bit = 1 << (id % 64);
        if word.load(Relaxed) & bit == 0 {
            word.fetch_or(bit, Relaxed);
        }
    }
}

/// Whether stack `id` hands the waker to the defer list (as far as the
/// snapshots so far have seen).
#[inline]
pub(crate) fn is_marked(id: u32) -> bool {
    MARKED.get(id as usize / 64).is_some_and(|w| w.load(Relaxed) & (1 << (id % 64)) != 0)
}

/// Whether a task whose [`DeepSlot::parked`](super::table::DeepSlot::parked)
/// word is `parked` last parked at a marked stack. The stack id + 1 is in
/// the word's low 24 bits (ids are below the stack table's 8192).
#[inline]
pub(crate) fn parked_at(parked: u64) -> bool {
    let stack = parked & 0xff_ffff;
    stack != 0 && is_marked(stack as u32 - 1)
}

/// Whether symbolized `frames` (leaf first) go through tokio's defer list.
pub(crate) fn defers(frames: &[crate::snapshot::Frame]) -> bool {
    frames.iter().any(|f| {
        let file = f.file.as_deref().unwrap_or("").replace('\\', "/");
        let tokio = file.contains("/tokio-");
        (tokio
            && (file.ends_with("/src/task/yield_now.rs")
                || file.ends_with("/src/runtime/scheduler/defer.rs")))
            || f.function.starts_with("tokio::task::yield_now")
            || f.function.contains("tokio::runtime::scheduler::defer::Defer::defer")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Frame;

    fn frame(function: &str, file: &str) -> Frame {
        Frame { function: function.into(), file: Some(file.into()), line: Some(1), user: false }
    }

    #[test]
    fn marks_are_per_stack_and_out_of_range_ids_are_never_marked() {
        assert!(!is_marked(70));
        mark(70);
        assert!(is_marked(70));
        assert!(!is_marked(71) && !is_marked(6));
        mark(u32::MAX);
        assert!(!is_marked(u32::MAX));
        // The stack id + 1 in the low bits of a parked word, whatever the
        // tick and other bits above them say.
        assert!(parked_at((123 << 28) | (3 << 24) | 71));
        assert!(!parked_at((123 << 28) | 72) && !parked_at(0));
    }

    #[test]
    fn a_yield_goes_through_the_defer_list_and_a_sleep_does_not() {
        let tokio = "/r/tokio-1.54.1/src";
        let yielded = [
            frame("tokio::runtime::task::waker::clone_waker", &format!("{tokio}/runtime/task/waker.rs")),
            frame(
                "tokio::runtime::scheduler::defer::Defer::defer",
                &format!("{tokio}/runtime/scheduler/defer.rs"),
            ),
            frame("tokio::task::yield_now::yield_now::{{closure}}", &format!("{tokio}/task/yield_now.rs")),
        ];
        assert!(defers(&yielded));
        // Inlined: only the file says so.
        assert!(defers(&[frame("{{closure}}", &format!("{tokio}/task/yield_now.rs"))]));
        let slept = [
            frame("tokio::runtime::task::waker::clone_waker", &format!("{tokio}/runtime/task/waker.rs")),
            frame("<tokio::time::sleep::Sleep as Future>::poll", &format!("{tokio}/time/sleep.rs")),
        ];
        assert!(!defers(&slept));
    }
}
