//! The lean subscriber: interest only in tokio's `runtime.spawn` spans and
//! `tokio::task::waker` events, so every other callsite costs nothing. Its
//! span ids name their slot in the [`DeepTable`], so no lookup is needed.
//! taskscope installs it as the global default when the app has none.

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, LevelFilter, Metadata, Subscriber};

use super::events::{self, is_spawn, is_waker, with_cache, Fields, SpawnFields};
use super::resource_events;
use super::table::DeepTable;

///
/// It holds nothing: the table is found in its static. tokio calls the
/// subscriber on every poll and waker event, and a field of the subscriber,
/// which lives on the heap, is one more load that can miss the cache.
pub(crate) struct DeepSubscriber;

impl std::fmt::Debug for DeepSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeepSubscriber")
    }
}

impl DeepSubscriber {
    /// The subscriber of the deep table, which must have been made.
    pub(crate) fn new() -> Self {
        DeepSubscriber
    }
}

/// The deep table; the subscriber is made only after it.
#[inline(always)]
fn table() -> Option<&'static DeepTable> {
    super::made()
}

impl Subscriber for DeepSubscriber {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_spawn(meta) || is_waker(meta) {
            Interest::always()
        } else {
            resource_events::interest(meta).unwrap_or_else(Interest::never)
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        is_spawn(meta) || is_waker(meta) || resource_events::enabled(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        if !is_spawn(attrs.metadata()) {
            return resource_events::new_span(attrs);
        }
        let Some(table) = table() else { return Id::from_u64(u64::MAX) };
        let mut fields = SpawnFields::default();
        attrs.record(&mut fields);
        events::note_spawn();
        match with_cache(table, |cache| table.open(cache, fields.task_id)) {
            Some(id) => {
                events::name(|| table.get(id), &fields);
                Id::from_u64(id)
            }
            // Untracked: an id that never resolves to a slot.
            None => Id::from_u64(u64::MAX),
        }
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if resource_events::is_event(event.metadata()) {
            return resource_events::event(event);
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = fields.task_id;
        let Some(table) = table() else { return };
        if let Some(slot) = table.get(span) {
            events::waker(table, slot, span, fields.op);
        }
    }

    fn enter(&self, span: &Id) {
        let id = span.into_u64();
        if resource_events::is_id(id) {
            return resource_events::enter(id);
        }
        events::enter(table().and_then(|t| t.get(id)), id);
    }

    fn exit(&self, span: &Id) {
        let id = span.into_u64();
        if resource_events::is_id(id) {
            return resource_events::exit(id);
        }
        events::exit(id);
    }

    fn clone_span(&self, span: &Id) -> Id {
        if resource_events::is_id(span.into_u64()) {
            resource_events::clone_span(span.into_u64());
            return span.clone();
        }
        if let Some(slot) = table().and_then(|t| t.get(span.into_u64())) {
            slot.refs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        if resource_events::is_id(span.into_u64()) {
            return resource_events::try_close(span.into_u64());
        }
        let Some(table) = table() else { return false };
        with_cache(table, |cache| table.release(cache, span.into_u64()))
    }
}
