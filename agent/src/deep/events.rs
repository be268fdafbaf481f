//! What deep mode reads of tokio's instrumentation, shared by the lean
//! subscriber and the layer: the `runtime.spawn` span of each task (entered
//! around every poll) and the `tokio::task::waker` events, whose `task.id`
//! field is the span id of the task whose waker it is.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::*};

use tracing_core::field::{Field, Visit};
use tracing_core::Metadata;

use super::table::{DeepSlot, DeepTable};
use crate::stacks::{capture, MAX_FRAMES};
use crate::tasks::Cache;

thread_local! {
    /// The span id of the task being polled on this thread, 0 if none.
    static POLLING: Cell<u64> = const { Cell::new(0) };
    static CACHE: Cell<Cache> = Cell::new(Cache::default());
}

/// Set once the first spawn span reaches deep mode; written once, then only
/// read.
static SPAWN_SEEN: AtomicBool = AtomicBool::new(false);

/// True once a spawn span has reached deep mode (by either path).
pub(crate) fn spawn_seen() -> bool {
    SPAWN_SEEN.load(Relaxed)
}

pub(super) fn is_spawn(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.name() == "runtime.spawn" && meta.target() == "tokio::task"
}

pub(super) fn is_waker(meta: &Metadata<'_>) -> bool {
    meta.is_event() && meta.target() == "tokio::task::waker"
}

/// Reads `task.id` and `op` from a span or event.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) task_id: u64,
    pub(super) op: Op,
}

#[derive(Default, PartialEq, Eq, Clone, Copy)]
pub(super) enum Op {
    #[default]
    Other,
    Clone,
    Drop,
    Wake,
    WakeByRef,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "task.id" {
            self.task_id = value;
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "task.id" {
            self.task_id = value as u64;
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "op" {
            self.op = match value {
                "waker.clone" => Op::Clone,
                "waker.drop" => Op::Drop,
                "waker.wake" => Op::Wake,
                "waker.wake_by_ref" => Op::WakeByRef,
                _ => Op::Other,
            };
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `op` arrives as a &str, but be lenient about how it is recorded.
        if field.name() == "op" {
            let text = format!("{value:?}");
            self.record_str(field, text.trim_matches('"'));
        }
    }
}

/// Runs `f` with this thread's cache of free slots; a temporary one (given
/// back at once) while the thread-local is being torn down.
pub(super) fn with_cache<R>(table: &DeepTable, f: impl FnOnce(&mut Cache) -> R) -> R {
    let mut f = Some(f);
    CACHE
        .try_with(|c| {
            let mut cache = c.take();
            let out = (f.take().expect("once"))(&mut cache);
            c.set(cache);
            out
        })
        .unwrap_or_else(|_| {
            let mut cache = Cache::default();
            let out = (f.take().expect("not yet called"))(&mut cache);
            table.slots.flush(&mut cache);
            out
        })
}

/// A spawn span reached deep mode.
#[inline]
pub(super) fn note_spawn() {
    if !SPAWN_SEEN.load(Relaxed) {
        SPAWN_SEEN.store(true, Relaxed);
    }
}

/// A waker event of the task whose span is `span` (its slot, `slot`).
#[inline]
pub(super) fn waker(table: &DeepTable, slot: &DeepSlot, span: u64, op: Op) {
    let own_poll = POLLING.try_with(|p| p.get() == span).unwrap_or(false);
    match op {
        Op::Clone => {
            slot.wakers.fetch_add(1, Relaxed);
            if own_poll {
                let mut frames = [0usize; MAX_FRAMES];
                let n = capture(&mut frames);
                if let Some(stack) = table.stacks.intern(&frames[..n]) {
                    slot.parked.store(stack as u64 + 1, Relaxed);
                }
            }
        }
        Op::Drop => {
            slot.wakers.fetch_sub(1, Relaxed);
        }
        Op::Wake | Op::WakeByRef => {
            if op == Op::Wake {
                slot.wakers.fetch_sub(1, Relaxed);
            }
            slot.woken.store(1, Relaxed);
            slot.wakes.fetch_add(1, Relaxed);
            if own_poll {
                slot.self_wakes.fetch_add(1, Relaxed);
            }
        }
        Op::Other => {}
    }
}

/// A poll of the task whose span is `span` begins.
#[inline]
pub(super) fn enter(slot: Option<&DeepSlot>, span: u64) {
    if let Some(slot) = slot {
        slot.woken.store(0, Relaxed);
    }
    let _ = POLLING.try_with(|p| p.set(span));
}

/// A poll of the task whose span is `span` ends.
#[inline]
pub(super) fn exit(span: u64) {
    let _ = POLLING.try_with(|p| {
        if p.get() == span {
            p.set(0)
        }
    });
}
