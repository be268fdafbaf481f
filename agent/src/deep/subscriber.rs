//! The lean subscriber: interest only in tokio's `runtime.spawn` spans and
//! `tokio::task::waker` events, so every other callsite costs nothing.

use std::cell::Cell;
use std::sync::atomic::Ordering::*;

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, LevelFilter, Metadata, Subscriber};

use super::table::DeepTable;
use crate::stacks::{capture, MAX_FRAMES};
use crate::tasks::Cache;

thread_local! {
    /// The span id of the task being polled on this thread, 0 if none.
    static POLLING: Cell<u64> = const { Cell::new(0) };
    static CACHE: Cell<Cache> = Cell::new(Cache::default());
}

pub(crate) struct DeepSubscriber {
    table: &'static DeepTable,
}

impl std::fmt::Debug for DeepSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeepSubscriber")
    }
}

impl DeepSubscriber {
    pub(crate) fn new(table: &'static DeepTable) -> Self {
        DeepSubscriber { table }
    }

    fn with_cache<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> R {
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
                self.table.slots.flush(&mut cache);
                out
            })
    }
}

fn is_spawn(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.name() == "runtime.spawn" && meta.target() == "tokio::task"
}

fn is_waker(meta: &Metadata<'_>) -> bool {
    meta.is_event() && meta.target() == "tokio::task::waker"
}

/// Reads `task.id` and `op` from a span or event.
#[derive(Default)]
struct Fields {
    task_id: u64,
    op: Op,
}

#[derive(Default, PartialEq, Eq, Clone, Copy)]
enum Op {
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

impl Subscriber for DeepSubscriber {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_spawn(meta) || is_waker(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        is_spawn(meta) || is_waker(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        match self.with_cache(|cache| self.table.open(cache, fields.task_id)) {
            Some(id) => Id::from_u64(id),
            // Untracked: an id that never resolves to a slot.
            None => Id::from_u64(u64::MAX),
        }
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = fields.task_id;
        let Some(slot) = self.table.get(span) else { return };
        let own_poll = POLLING.try_with(|p| p.get() == span).unwrap_or(false);
        match fields.op {
            Op::Clone => {
                slot.wakers.fetch_add(1, Relaxed);
                if own_poll {
                    let mut frames = [0usize; MAX_FRAMES];
                    let n = capture(&mut frames);
                    if let Some(stack) = self.table.stacks.intern(&frames[..n]) {
                        slot.parked.store(stack as u64 + 1, Relaxed);
                    }
                }
            }
            Op::Drop => {
                slot.wakers.fetch_sub(1, Relaxed);
            }
            Op::Wake | Op::WakeByRef => {
                if fields.op == Op::Wake {
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

    fn enter(&self, span: &Id) {
        let id = span.into_u64();
        if let Some(slot) = self.table.get(id) {
            slot.woken.store(0, Relaxed);
        }
        let _ = POLLING.try_with(|p| p.set(id));
    }

    fn exit(&self, _: &Id) {
        let _ = POLLING.try_with(|p| p.set(0));
    }

    fn clone_span(&self, span: &Id) -> Id {
        if let Some(slot) = self.table.get(span.into_u64()) {
            slot.refs.fetch_add(1, Relaxed);
        }
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        self.with_cache(|cache| self.table.release(cache, span.into_u64()))
    }
}
