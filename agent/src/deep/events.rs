//! What deep mode reads of tokio's instrumentation, shared by the lean
//! subscriber and the layer: the `runtime.spawn` span of each task (entered
//! around every poll) and the `tokio::task::waker` events, whose `task.id`
//! field is the span id of the task whose waker it is.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::*};

use tracing_core::field::{Field, Visit};
use tracing_core::Metadata;

use super::table::{
    DeepSlot, DeepTable, ONE_WAKE, PARKED_STACK_MASK, PARKED_STALE, PARKED_STREAK_MASK, PARKED_STREAK_SHIFT,
    PARKED_TICK_MASK, PARKED_TICK_SHIFT,
};

/// Captures in a row at the same place before a task's later parks within
/// the same millisecond are skipped.
const STEADY: u64 = 4;
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

/// Reads `task.id` and `task.name` from a spawn span, the name into a fixed
/// buffer (no allocation).
#[derive(Default)]
pub(super) struct SpawnFields {
    pub(super) task_id: u64,
    name: super::names::NameBuf,
}

impl Visit for SpawnFields {
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
        if field.name() == "task.name" {
            let _ = std::fmt::Write::write_str(&mut self.name, value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // tokio records the name with `%`: Debug of a `DisplayValue` is the
        // name's Display, unquoted. An unnamed task's is empty.
        if field.name() == "task.name" {
            let _ = std::fmt::Write::write_fmt(&mut self.name, format_args!("{value:?}"));
        }
    }
}

/// Gives the new task in `slot` its name, if it has one (see names.rs).
#[inline]
pub(super) fn name<'a>(slot: impl FnOnce() -> Option<&'a DeepSlot>, fields: &SpawnFields) {
    if fields.name.as_bytes().is_empty() {
        return;
    }
    if let Some(slot) = slot() {
        slot.spare.store(super::names::intern(fields.name.as_bytes()), Relaxed);
    }
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
///
/// One atomic read-modify-write per event: the live-waker count and the wake
/// count share a word (see [`DeepSlot::wakers`]).
#[inline]
pub(super) fn waker(table: &DeepTable, slot: &DeepSlot, span: u64, op: Op) {
    // The span being polled on this thread: 0 in the scheduler's own loop
    // (the driver, the defer list), `u64::MAX` if unknown.
    let polling = POLLING.try_with(Cell::get).unwrap_or(u64::MAX);
    let own_poll = polling == span;
    match op {
        Op::Clone => {
            slot.wakers.fetch_add(1, Relaxed);
            if own_poll {
                park(table, slot);
            }
        }
        Op::Drop => {
            slot.wakers.fetch_sub(1, Relaxed);
        }
        Op::Wake | Op::WakeByRef => {
            // A wake by value also drops the waker.
            let delta = if op == Op::Wake { ONE_WAKE - 1 } else { ONE_WAKE };
            slot.wakers.fetch_add(delta, Relaxed);
            slot.woken.store(1, Relaxed);
            // A self-wake: made inside the task's own poll, or a wake from
            // the scheduler's loop of a task whose own poll handed its waker
            // to the defer list (`yield_now`; see deferred.rs).
            if own_poll || (polling == 0 && super::deferred::parked_at(slot.parked.load(Relaxed))) {
                // One writer: the thread polling the task, or the worker
                // that polled it waking it from its defer list. (Another
                // thread outside any poll could race with it only for a
                // task that parked at a yield and at something else at
                // once; a lost increment then undercounts.)
                slot.self_wakes.store(slot.self_wakes.load(Relaxed) + 1, Relaxed);
            }
        }
        Op::Other => {}
    }
}

/// The task cloned its waker inside its own poll: it is parking here, so
/// record where. Walking and interning a stack on every poll would cost more
/// than the poll, so a task that has parked at the same place [`STEADY`]
/// times in a row (a busy loop through the executor) is captured at most
/// once per coarse-clock millisecond; a park skipped that way marks the kept
/// stack [`PARKED_STALE`] (probably, not certainly, still where it parks).
#[inline]
fn park(table: &DeepTable, slot: &DeepSlot) {
    park_at(table, slot, crate::clock::coarse_ms() & PARKED_TICK_MASK);
}

#[inline(always)]
fn park_at(table: &DeepTable, slot: &DeepSlot, tick: u64) {
    let parked = slot.parked.load(Relaxed);
    // Tick 0: the agent's clock is not running, so nothing is throttled.
    let streak = (parked >> PARKED_STREAK_SHIFT) & PARKED_STREAK_MASK;
    if tick != 0 && streak >= STEADY && (parked >> PARKED_TICK_SHIFT) & PARKED_TICK_MASK == tick {
        if parked & PARKED_STALE == 0 {
            // Only the polling thread writes `parked`.
            slot.parked.store(parked | PARKED_STALE, Relaxed);
        }
        return;
    }
    capture_parked(table, slot, parked, tick);
}

#[cold]
#[inline(never)]
fn capture_parked(table: &DeepTable, slot: &DeepSlot, parked: u64, tick: u64) {
    let mut frames = [0usize; MAX_FRAMES];
    let n = capture(&mut frames);
    let stack = table.stacks.intern(&frames[..n]).map_or(0, |s| s as u64 + 1) & PARKED_STACK_MASK;
    let streak = match (parked >> PARKED_STREAK_SHIFT) & PARKED_STREAK_MASK {
        s if stack != 0 && stack == parked & PARKED_STACK_MASK => (s + 1).min(PARKED_STREAK_MASK),
        _ => 0,
    };
    slot.parked.store((tick << PARKED_TICK_SHIFT) | (streak << PARKED_STREAK_SHIFT) | stack, Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::Cache;

    #[test]
    fn a_steady_stack_is_taken_once_a_tick_and_a_skipped_park_marks_it_stale() {
        let table = DeepTable::new(4);
        let span = table.open(&mut Cache::default(), 7).unwrap();
        let slot = table.get(span).unwrap();
        let view = |t: &DeepTable| t.read()[0].1;

        // One call site, so that every park has the same stack.
        let ticks = [5, 5, 5, 5, 5, 5, 5, 6, 6, 0, 0];
        let views: Vec<_> = ticks
            .iter()
            .map(|&tick| {
                park_at(&table, slot, tick);
                view(&table)
            })
            .collect();
        let first = views[0].parked;
        assert!(first.is_some(), "the first park takes a stack");
        assert!(views.iter().all(|v| v.parked == first));
        let stale: Vec<bool> = views.iter().map(|v| v.parked_stale).collect();
        // The first STEADY + 1 parks are taken (until the same place has been
        // seen STEADY times in a row); later ones in the same tick are
        // skipped and mark the stack stale; a new tick takes it again, as
        // does every park without a running clock (tick 0).
        assert_eq!(stale, [false, false, false, false, false, true, true, false, true, false, false]);
    }
}
